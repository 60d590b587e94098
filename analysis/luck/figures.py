"""Luck Matters' figures (5, 15-20) from the tidy frames of ``analysis.luck``, as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from analysis.luck import modulation
from analysis.luck import queries as Q
from analysis.plots import PANEL, label_rows, save, style, suptitle, wrapped
from analysis.registry import Figure, figure
from spec_ray.storage import schema as S

FIGURES: list[Figure] = []
"""Luck Matters' figures, in the report's order."""


def _luck_layers(frame: pd.DataFrame, value: str, stem: Path, ylim: tuple[float, float], ylabel: str, title: str,
                 median: bool = False) -> list[Path]:  # fmt: skip
    """A panel per (net, BN, Gaussian or real images) cell; a line per layer (dashed: finite data) with its
    min/max band over seeds; ``median``: also the median rank, dotted."""
    # real image sets get panels of their own (the paper's right columns), beside Gaussian data's
    frame = frame.assign(inputs=frame["data"].where(~frame["data"].isin(Q.GAUSSIAN_DATA), "Gaussian"))
    cells = list(frame.groupby(["net", S.STUDENT_BN, "inputs"]).groups)
    fig, axes = wrapped(len(cells))
    layers = sorted(frame[S.LAYER].unique())
    colors = dict(zip(layers, sns.color_palette("colorblind", n_colors=max(2, len(layers)))))
    for ax, (net, bn, inputs) in zip(axes, cells):
        cell = frame[(frame["net"] == net) & (frame[S.STUDENT_BN] == bn) & (frame["inputs"] == inputs)]
        for (layer, data), line in cell.groupby([S.LAYER, "data"]):
            c, style = colors[layer], "--" if data == "finite" else "-"
            ax.plot(line[S.EPOCH], line[value], style, color=c, lw=1.2, label=f"layer {layer}, {data}")
            if median:
                ax.plot(line[S.EPOCH], line["median_rank"], ":", color=c, lw=1.0)
            ax.fill_between(line[S.EPOCH], line[f"{value}_min"], line[f"{value}_max"], color=c, alpha=0.15, lw=0)
        ax.set_title(f"{net}, BN {bn}" + ("" if inputs == "Gaussian" else f", {inputs}"), fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylim(*ylim)
    label_rows(axes, ylabel)
    handles, labels = axes[0].get_legend_handles_labels()
    if median:  # the dotted median's style, beside the layers' colours
        handles.append(Line2D([], [], ls=":", color="gray", lw=1.0))
        labels.append("median (any layer)")
    # below the panels, where it hides no band (inside the first panel it covered part of one)
    fig.legend(handles, labels, fontsize=6, loc="outside lower center", ncols=min(4, len(labels)))
    suptitle(fig, title, len(cells))
    return save(fig, stem)


@figure(FIGURES, "luck_rho", "Luck Matters figs. 5, 19, 20: rho-bar per layer", "Mean over teacher nodes of the "
        "best correlation, per layer (1 = lowest, as in every table), mean over seeds with min/max band; dashed: "
        "a finite training set, solid: infinite data.", Q.luck_rho, Q.LUCK)  # fmt: skip
def luck_rho(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 5 / 19 / 20: rho-bar per layer vs epoch, min/max band over seeds; dashed: finite data."""
    title = "Luck Matters: correlation with the teacher per layer (layer 1 = lowest); band = min/max over seeds"
    return _luck_layers(frame, "rho", stem, (0, 1.02), "rho-bar (mean best correlation)", title)


@figure(FIGURES, "luck_rank", "Luck Matters figs. 5, 17, 18: rank of the final winners", "The rank of each "
        "teacher node's final best student among all students at every epoch (0 = first), mean (min/max band "
        "over seeds; dashed: finite data) and median (dotted) over teacher nodes; 0 at the end by definition.",
        Q.luck_rank, Q.RANKS)  # fmt: skip
def luck_rank(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 5 / 17 / 18: mean (min/max band) and median (dotted) rank of the final winners."""
    top = max(0.1, float(frame["mean_rank_max"].max()) * 1.05)
    title = "Luck Matters: rank of the final winners, mean (dashed: finite data) and median (dotted)"
    return _luck_layers(frame, "mean_rank", stem, (-0.02, top), "rank of the final winner\n(0 = first, 1 = last)",
                        title, median=True)  # fmt: skip


def _rho_lines(frame: pd.DataFrame, panel: str, hue: str, dash: str, title: str, stem: Path) -> list[Path]:
    """rho-bar vs epoch: a panel per ``panel`` value, a color per ``hue``, dashed where ``dash`` is the first value."""
    panels = sorted(frame[panel].unique())
    fig, axes = wrapped(len(panels))
    hues = sorted(frame[hue].unique())
    palette = dict(zip(hues, sns.color_palette("colorblind", n_colors=max(2, len(hues)))))
    dashed = sorted(frame[dash].unique())[0]
    for ax, value in zip(axes, panels):
        for (h, d), line in frame[frame[panel] == value].groupby([hue, dash]):
            ax.plot(
                line[S.EPOCH], line["rho"], "--" if d == dashed else "-", color=palette[h], lw=1.2, label=f"{h}, {d}"
            )
            ax.fill_between(line[S.EPOCH], line["rho_min"], line["rho_max"], color=palette[h], alpha=0.12, lw=0)
        ax.set_title(f"{panel.replace('student_bn', 'BN')} {value}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1.02)
    label_rows(axes, "rho-bar, mean over layers")
    axes[0].legend(fontsize=6, loc="lower right")
    suptitle(fig, title, len(panels))
    return save(fig, stem)


@figure(FIGURES, "luck_size", "Luck Matters fig. 15a: small vs large FC teachers", "rho-bar (mean over layers) "
        "per FC teacher size, panels per student BN; band min/max over seeds.", Q.luck_size, Q.SIZES)  # fmt: skip
def luck_size(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 15a: small vs large FC teachers, with and without BN."""
    return _rho_lines(frame, S.STUDENT_BN, "net", "data", "Luck Matters: small vs large FC teachers", stem)


@figure(FIGURES, "luck_data", "Luck Matters figs. 15b, 20: finite vs infinite data", "rho-bar (mean over "
        "layers), dashed: the fixed training set, solid: a fresh batch every step.", Q.luck_data, Q.DATA)  # fmt: skip
def luck_data(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 15b / 20: a finite training set (dashed) vs infinite data (solid)."""
    return _rho_lines(frame, "net", S.STUDENT_BN, "data", "Luck Matters: finite (dashed) vs infinite data", stem)


def _beta_caption(data: pd.DataFrame) -> str:
    run = data.iloc[0]
    data_kind = "infinite" if pd.isna(run[S.N_TRAIN]) else "finite"
    bn = f"BN {run[S.STUDENT_BN]}" if S.record(S.STUDENT_BN, run[S.STUDENT_BN]).present else "no BN"
    return (f"One run ({bn}, {data_kind} data, seed {int(run[S.SEED])}; no BN, finite data and the lowest seed "
            "are shown where run): the top-down modulation beta* and its activity-gated H*, teacher nodes down, "
            "student nodes across, grouped by their final best teacher (gray lines between groups) and by "
            "falling correlation within a group; colors scaled to each panel's largest |entry|.")  # fmt: skip


@figure(FIGURES, "luck_beta", "Luck Matters fig. 16: beta* and H* before and after training", _beta_caption,
        modulation.matrices, Q.KEPT_MODULATION)  # fmt: skip
def luck_beta(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 16: (transposed) beta* and H* of one run before and after training, a column per
    layer; teacher nodes down, students across, grouped by their final best teacher (gray lines between groups)."""
    layers = sorted(frame[S.LAYER].unique())
    panels = [(value, stage) for value in (S.BETA, S.H) for stage in ("init", "end")]
    style()
    fig, axes = plt.subplots(len(panels), len(layers), figsize=(PANEL * 1.3 * len(layers), 1.5 * len(panels)),
                             squeeze=False, layout="constrained")  # fmt: skip
    for col, layer in enumerate(layers):
        for row, (value, stage) in enumerate(panels):
            sub = frame[(frame[S.LAYER] == layer) & (frame["stage"] == stage)]
            grid = sub.pivot(index=S.NODE, columns="order", values=value).to_numpy()  # (m_l, n_l)
            scale = float(np.abs(grid).max()) or 1.0
            ax = axes[row, col]
            ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
            groups = sub[sub[S.NODE] == 0].sort_values("order")[S.BEST_TEACHER].to_numpy()
            for edge in np.flatnonzero(np.diff(groups)) + 0.5:  # where the next teacher's students begin
                ax.axvline(edge, color="0.6", lw=0.4)
            ax.set_xticks([])
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(False)
            ax.set_title(f"layer {layer}: {'beta*' if value == S.BETA else 'H*'}, {stage} (|max| {scale:.2g})",
                         fontsize=7)  # fmt: skip
            if col == 0:
                ax.set_ylabel("teacher node", fontsize=7)
        axes[-1, col].set_xlabel("student node, by final best teacher", fontsize=7)
    suptitle(fig, "Luck Matters fig. 16: top-down modulation of one run (red > 0, blue < 0)", len(layers))
    return save(fig, stem)
