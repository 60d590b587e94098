"""Luck Matters figs. 4 and 14: the signs of the BatchNorm biases of a pre-trained network, per layer.

Sec. 3.1: in a Linear-BN-ReLU network the BN bias sets how much of the whitened data passes the
ReLU; mostly negative biases mean teacher nodes that rarely fire together (Assumption 3). Three
sources: the stored teachers of a storage root with BN before the ReLU (their biases are kept in
``<storage>/teachers/*.json`` at launch, so the report needs no torch), a checkpoint path (the
authors' ``{"net": state_dict}``, a bare state dict, or ``{"state_dict": ...}``), or torchvision's
``vgg11_bn`` / ``vgg16_bn`` ImageNet weights where torchvision is installed and can fetch them;
the last two read the file with torch (``python -m analysis bn-bias``).
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from analysis.load import AnalysisError, Results
from analysis.luck.claims import CLAIMS
from analysis.luck.figures import FIGURES
from analysis.plots import label_rows, save, suptitle, wrapped
from analysis.registry import Needs, claim, figure, frame
from analysis.verdicts import NO_DATA, Claim, verdict
from spec_ray.storage import schema as S
from spec_ray.storage.teacher_store import TeacherStore

STORED = Needs(where=((S.SOURCE, S.KINDS[S.SOURCE].names_where(stored=True)),
                      (S.TEACHER_BN, S.KINDS[S.TEACHER_BN].names_where(before=True))),
               words="runs of a stored teacher with BN before the ReLU (sweeps/cifar.py)")  # fmt: skip
VGG = ("vgg11_bn", "vgg16_bn")
MOSTLY = 0.5
"""Claim 15: the share of negative biases over all layers that counts as 'the majority'."""


def from_state(state: dict, name: str) -> pd.DataFrame:
    """One row per BN bias of a state dict (a BN layer is a prefix with ``running_mean`` and ``bias``),
    layers numbered from the input: columns source, layer, bias."""
    prefixes = [k[: -len(".running_mean")] for k in state if k.endswith(".running_mean")]
    rows = []
    for layer, prefix in enumerate(prefixes, start=1):
        bias = state.get(prefix + ".bias")
        if bias is not None:
            rows += [{"source": name, S.LAYER: layer, "bias": float(b)} for b in bias.reshape(-1).tolist()]
    return pd.DataFrame(rows, columns=["source", S.LAYER, "bias"])


def read_checkpoint(source: str) -> pd.DataFrame:
    """BN biases of ``vgg11_bn`` / ``vgg16_bn`` (torchvision) or of a checkpoint file (imports torch)."""
    if source in VGG:
        try:
            import torchvision.models as models
        except ImportError:
            raise AnalysisError(f"{source}: needs torchvision (pip install torchvision) and a network, or give a "
                                "checkpoint path") from None  # fmt: skip
        weights = {"vgg11_bn": models.VGG11_BN_Weights, "vgg16_bn": models.VGG16_BN_Weights}[source].DEFAULT
        return from_state(getattr(models, source)(weights=weights).state_dict(), source)
    if not Path(source).is_file():
        raise AnalysisError(
            f"checkpoint={source!r}: no such file: allowed a checkpoint path or one of " + ", ".join(VGG)
        )
    import torch

    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds on a file that is not a checkpoint
        raise AnalysisError(f"checkpoint={source!r} is not a torch checkpoint ({str(err)[:120]})") from None
    for key in ("net", "state_dict"):
        state = state.get(key, state) if isinstance(state, dict) else state
    frame_ = from_state(state, Path(source).name) if isinstance(state, dict) else pd.DataFrame()
    if frame_.empty:
        raise AnalysisError(f"checkpoint={source!r} holds no BatchNorm layer (no '*.running_mean' with a '*.bias')")
    return frame_


def stored(res: Results) -> pd.DataFrame:
    """BN biases of the stored teachers the runs use, from the storage root's records."""
    parts = []
    for root in res.roots:
        store = TeacherStore(posixpath.dirname(root.rstrip("/")), res.fs)
        for name in res.done[S.LOAD_TEACHER].dropna().unique():
            meta = store.meta(name) or {}
            for layer, biases in enumerate(meta.get("bn_bias", []), start=1):
                parts += [{"source": name, S.LAYER: layer, "bias": b} for b in biases]
    return pd.DataFrame(parts, columns=["source", S.LAYER, "bias"]).drop_duplicates()


def draw(biases: pd.DataFrame, stem: Path) -> list[Path]:
    """A histogram per layer (and source), negative blue and positive orange as the paper's."""
    cells = list(biases.groupby(["source", S.LAYER]).groups)
    fig, axes = wrapped(len(cells))
    blue, orange = sns.color_palette("colorblind")[0], sns.color_palette("colorblind")[1]
    for ax, (source, layer) in zip(axes, cells):
        values = biases[(biases["source"] == source) & (biases[S.LAYER] == layer)]["bias"]
        edges = np.linspace(values.min(), values.max(), 21) if values.max() > values.min() else 20
        ax.hist(values[values < 0], bins=edges, color=blue)
        ax.hist(values[values >= 0], bins=edges, color=orange)
        ax.set_title(f"{str(source)[:18]} layer {layer}: {(values < 0).mean():.0%} < 0", fontsize=7)
        ax.set_xlabel("BN bias")
    for ax in axes:  # counts of biases: whole numbers only on the axis
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    label_rows(axes, "count")
    suptitle(fig, "BatchNorm biases per layer (blue: negative, orange: positive)", len(cells))
    return save(fig, stem)


@figure(FIGURES, "bn_bias", "Luck Matters figs. 4, 14: BatchNorm biases", "The BN biases of each stored "
        "teacher with BN before the ReLU, a histogram per layer (lowest first).", stored, STORED)  # fmt: skip
def bn_bias(biases: pd.DataFrame, stem: Path) -> list[Path]:
    return draw(biases, stem)


def check(biases: pd.DataFrame) -> Claim:
    """Claim 15: over every layer of every source, more than MOSTLY of the BN biases are negative."""
    text = "Most BatchNorm biases of a pre-trained network are negative (figs. 4, 14)."
    if biases.empty:
        return Claim(15, text, "needs a network with BatchNorm", NO_DATA)
    shares = biases.assign(neg=biases["bias"] < 0).groupby(["source", S.LAYER])["neg"].mean()
    overall = biases.groupby("source")["bias"].apply(lambda b: float((b < 0).mean()))
    by_layer = {src: ", ".join(f"{v:.0%}" for v in shares[src].tolist()) for src in overall.index}
    evidence = "; ".join(f"{src}: {overall[src]:.0%} negative (by layer {by_layer[src]})" for src in overall.index)
    return Claim(15, text, evidence, verdict(bool((overall > MOSTLY).all())))


@claim(
    CLAIMS,
    15,
    STORED,
    lambda res: (frame(res, stored),),
    seeds=1,
    noise="every stored teacher's BN biases, no seeds: a teacher is trained once",
)
def claim15(biases: pd.DataFrame) -> Claim:
    return check(biases)
