"""Luck Matters' claims (7-12 of docs/protocol.md) checked against an experiment's numbers.

Each check takes tidy frames of ``analysis.luck`` (``luck_rho``, ``luck_rank``, ``in_norm_change``,
``modulation.winners_in_modulation``) and returns a ``Claim``; the criteria are in the docstrings.
"""

from __future__ import annotations

import pandas as pd

from analysis.luck import modulation
from analysis.luck import queries as Q
from analysis.registry import ClaimCheck, claim, frame
from analysis.tidy import has_bn
from analysis.verdicts import NO_DATA, Claim, verdict
from spec_ray.storage import schema as S

CLAIMS: list[ClaimCheck] = []
"""Luck Matters' claims, in order."""

GROWTH = 0.02
"""Claim 7: the least rise of rho-bar from init to the end that counts as growth."""
LUCKY_BELOW = 0.25
"""Claim 8: the winners' mean rank at init must be under half the 0.5 of a random pick."""
BN_MARGIN = 0.01
"""Claims 9 and 10: differences of rho-bar (or mean rank) smaller than this are no difference."""
CONSERVED_BELOW = 0.05
"""Claim 11: the median relative change of a BN node's incoming norm that still counts as conserved."""
CONCENTRATED_BELOW = 0.1
"""Claim 12: the final winners' mean rank in their teacher's column of H*, at the end, must be in the top tenth."""

CELL = ["net", S.STUDENT_BN, "data"]


def _ends(rho: pd.DataFrame) -> pd.DataFrame:
    """rho-bar at init and at the last epoch per cell and layer."""
    first = rho[rho[S.EPOCH] == rho.groupby(CELL)[S.EPOCH].transform("min")]
    last = rho[rho[S.EPOCH] == rho.groupby(CELL)[S.EPOCH].transform("max")]
    start = first.set_index([*CELL, S.LAYER])["rho"].rename("rho_init")
    return start.to_frame().join(last.set_index([*CELL, S.LAYER])["rho"].rename("rho_end"))


@claim(CLAIMS, 7, Q.LUCK, lambda res: (Q.gaussian(frame(res, Q.luck_rho)),), noise=f"seed means, rises of {GROWTH}")
def claim7(rho: pd.DataFrame) -> Claim:
    """In every cell (net, BN, data) rho-bar of every layer rises by at least GROWTH, and the lowest
    layer ends highest (within BN_MARGIN)."""
    text = "rho-bar grows during training in every layer; the lowest layer ends highest."
    if rho.empty or rho[S.LAYER].nunique() < 2:
        return Claim(7, text, "needs a network with two or more hidden layers", NO_DATA)
    ends = _ends(rho)
    grows = (ends["rho_end"] >= ends["rho_init"] + GROWTH).groupby(level=CELL).all()
    last = ends["rho_end"].unstack(S.LAYER)
    lowest_top = last[1] >= last.max(axis=1) - BN_MARGIN
    evidence = "; ".join(
        f"{net} BN {bn} {data}: " + ", ".join(f"L{layer} {a:.2f}->{b:.2f}" for (layer, a, b) in zip(
            sub.index.get_level_values(S.LAYER), sub["rho_init"], sub["rho_end"]))
        for (net, bn, data), sub in ends.groupby(level=CELL)
    )  # fmt: skip
    return Claim(7, text, evidence, verdict(bool(grows.all() and lowest_top.all())))


@claim(CLAIMS, 8, Q.RANKS, lambda res: (Q.gaussian(frame(res, Q.luck_rank)),),
       noise=f"seed means under {LUCKY_BELOW}, half a random pick's")  # fmt: skip
def claim8(rank: pd.DataFrame) -> Claim:
    """In every cell and layer the final winners' mean rank at init is under LUCKY_BELOW, and it is 0 at the end."""
    text = "Final winners were lucky: their rank at initialization is well below a random pick's 0.5, and falls to 0."
    if rank.empty:
        return Claim(8, text, "needs the corr_matrices table (--keep-correlations true)", NO_DATA)
    first = rank[rank[S.EPOCH] == rank.groupby(CELL)[S.EPOCH].transform("min")]
    last = rank[rank[S.EPOCH] == rank.groupby(CELL)[S.EPOCH].transform("max")]
    evidence = (
        f"mean rank at init {first['mean_rank'].min():.3f} to {first['mean_rank'].max():.3f} over "
        f"{len(first)} cell-layers; at the end {last['mean_rank'].max():.3f} at most"
    )
    ok = bool((first["mean_rank"] < LUCKY_BELOW).all() and (last["mean_rank"] <= 1e-12).all())
    return Claim(8, text, evidence, verdict(ok))


def _bn_effect(rho: pd.DataFrame, rank: pd.DataFrame) -> pd.DataFrame:
    """Per net and data: final rho-bar (mean over layers) and the mean rank averaged over epochs, BN vs none."""
    ends = _ends(rho)["rho_end"].groupby(level=CELL).mean()
    frame = ends.rename("rho").to_frame()
    if not rank.empty:
        frame = frame.join(rank.groupby(CELL)["mean_rank"].mean().rename("rank"))
    return frame.reset_index()


@claim(CLAIMS, 9, Q.BN, lambda res: (Q.gaussian(frame(res, Q.luck_rho)), Q.gaussian(frame(res, Q.luck_rank))),
       noise=f"seed means, differences of {BN_MARGIN}")  # fmt: skip
def claim9(rho: pd.DataFrame, rank: pd.DataFrame) -> Claim:
    """For the largest FC teacher, BN raises the final rho-bar or lowers the epoch-averaged mean rank by at
    least BN_MARGIN; for the smallest, BN does not raise rho-bar by more than BN_MARGIN (it does not help)."""
    text = "BN raises rho-bar or lowers the rank in large models, and does not help small ones."
    if rho.empty:
        return Claim(9, text, "needs Luck Matters runs", NO_DATA)
    effect = _bn_effect(rho, rank)
    fc = effect[effect["net"].str.startswith("FC")]
    both = fc.groupby("net")[S.STUDENT_BN].nunique()
    nets = sorted(both[both > 1].index, key=lambda n: sum(int(w) for w in n.split()[1].split("-")))
    if len(nets) < 2:
        return Claim(9, text, "needs a small and a large FC teacher, each with and without BN", NO_DATA)
    small, large = nets[0], nets[-1]

    def gain(net: str, column: str) -> float:
        sub = fc[fc["net"] == net].groupby(S.STUDENT_BN)[column].mean()
        return float(sub.drop("none").mean() - sub["none"])

    rho_large, rho_small = gain(large, "rho"), gain(small, "rho")
    rank_large = gain(large, "rank") if "rank" in fc else float("nan")
    helps_large = rho_large >= BN_MARGIN or rank_large <= -BN_MARGIN
    evidence = (
        f"{large}: BN changes final rho-bar by {rho_large:+.3f}, mean rank by {rank_large:+.3f}; "
        f"{small}: rho-bar by {rho_small:+.3f}"
    )
    return Claim(9, text, evidence, verdict(bool(helps_large and rho_small <= BN_MARGIN)))


@claim(CLAIMS, 10, Q.LUCK, lambda res: (Q.gaussian(frame(res, Q.luck_rho)),), noise=f"seed means, gaps of {BN_MARGIN}")
def claim10(rho: pd.DataFrame) -> Claim:
    """In every (net, BN) with both, the final rho-bar (mean over layers) on finite data is below the
    infinite data's by at least BN_MARGIN."""
    text = "With finite data rho-bar stalls below infinite data's."
    if rho.empty or rho["data"].nunique() < 2:
        return Claim(10, text, "needs finite and infinite runs of the same net", NO_DATA)
    final = _ends(rho)["rho_end"].groupby(level=CELL).mean().unstack("data").dropna()
    if final.empty:
        return Claim(10, text, "needs finite and infinite runs of the same net", NO_DATA)
    gap = final["infinite"] - final["finite"]
    evidence = "; ".join(f"{net} BN {bn}: finite {r['finite']:.3f} vs infinite {r['infinite']:.3f}"
                         for (net, bn), r in final.iterrows())  # fmt: skip
    return Claim(10, text, evidence, verdict(bool((gap >= BN_MARGIN).all())))


@claim(CLAIMS, 11, Q.BN_ANY, lambda res: (frame(res, Q.in_norm_change),),
       noise=f"medians over every node of every seed under {CONSERVED_BELOW}")  # fmt: skip
def claim11(norms: pd.DataFrame) -> Claim:
    """Under BN the median relative change of a student node's incoming weight norm, init to end, is
    under CONSERVED_BELOW in every layer (gradient flow conserves it; SGD adds O(lr^2) a step)."""
    text = "Under BN each student node's incoming weight norm is conserved."
    bn = norms[has_bn(norms[S.STUDENT_BN])] if not norms.empty else norms
    if bn.empty:
        return Claim(11, text, "needs runs with BN", NO_DATA)
    evidence = "; ".join(f"BN {r[S.STUDENT_BN]} layer {r[S.LAYER]}: median change {r['median_change']:.3f}"
                         for _, r in norms.iterrows())  # fmt: skip
    return Claim(11, text, evidence, verdict(bool((bn["median_change"] < CONSERVED_BELOW).all())))


@claim(CLAIMS, 12, Q.KEPT_MODULATION, lambda res: (frame(res, modulation.winners_in_modulation),),
       noise=f"means over runs under {CONCENTRATED_BELOW}")  # fmt: skip
def claim12(ranks: pd.DataFrame) -> Claim:
    """At the end of training, in every hidden layer, the final winners' mean rank in their teacher node's
    column of H* (0 = the highest entry; ``modulation.winners_in_modulation``, averaged over runs) is under
    CONCENTRATED_BELOW, against 0.5 for a random student. Judged on the runs without BN: beta* and H*
    are taken as the authors' ``compute_Hs`` takes them, without BN's Jacobian, which makes them the
    theory's (LM eq. 5) only without BN; BN runs are reported beside."""
    text = "beta* (through H*, which gates it by the nodes' activity) concentrates on the final winners (fig. 16)."
    if ranks.empty:
        return Claim(12, text, "needs the modulation table (--keep-modulation true, MLP runs)", NO_DATA)
    per = ranks.groupby([S.STUDENT_BN, S.LAYER, "stage"])[["h_rank", "beta_rank"]].mean().unstack("stage")
    if "end" not in per["h_rank"] or "none" not in per.index.get_level_values(S.STUDENT_BN):
        return Claim(12, text, "needs modulation rows of finished runs without BN", NO_DATA)
    evidence = "winners' mean rank in H* / beta*, init -> end: " + "; ".join(
        f"BN {bn} L{layer} {r[('h_rank', 'init')]:.3f}->{r[('h_rank', 'end')]:.3f} / "
        f"{r[('beta_rank', 'init')]:.3f}->{r[('beta_rank', 'end')]:.3f}"
        for (bn, layer), r in per.iterrows()
    )
    judged = per.loc["none"][("h_rank", "end")]
    return Claim(12, text, evidence, verdict(bool((judged < CONCENTRATED_BELOW).all())))


ACCURACY_MARGIN = 0.01
"""Claim 14: a student's final test accuracy this far below its teacher's still counts as matching it (the
teacher's is on the whole test split, the students' on their evaluation images)."""


@claim(CLAIMS, 14, Q.REAL, lambda res: (frame(res, Q.luck_rank), frame(res, Q.luck_accuracy)),
       noise=f"seed means, differences of {BN_MARGIN}, accuracy within {ACCURACY_MARGIN:.0%}")  # fmt: skip
def claim14(rank: pd.DataFrame, accuracy: pd.DataFrame) -> Claim:
    """On real images, in every net with both, BN lowers the epoch-averaged mean rank of the final winners by
    at least BN_MARGIN, and every cell's final test accuracy is at least its teacher's less ACCURACY_MARGIN."""
    text = "On real images BN lowers the winners' rank r-bar; students end at least as accurate as the teacher."
    real = rank[~rank["data"].isin(Q.GAUSSIAN_DATA)] if not rank.empty else rank
    if real.empty or real[S.STUDENT_BN].nunique() < 2:
        return Claim(14, text, "needs real-image Luck Matters runs with and without BN", NO_DATA)
    mean = real.groupby(CELL)["mean_rank"].mean().unstack(S.STUDENT_BN)
    bn = [c for c in mean.columns if S.record(S.STUDENT_BN, c).present]
    plain = next((c for c in mean.columns if c not in bn), None)
    if plain is None or not bn:
        return Claim(14, text, "needs real-image Luck Matters runs with and without BN", NO_DATA)
    mean = mean.dropna()
    gain = mean[bn].mean(axis=1) - mean[plain]
    parts = [f"{net} on {data}: mean rank {row[plain]:.3f} without BN, {row[bn].mean():.3f} with"
             for (net, data), row in mean.iterrows()]  # fmt: skip
    ok = bool(len(gain) and (gain <= -BN_MARGIN).all())
    for _, row in accuracy.iterrows():
        ok &= bool(row["accuracy"] >= row["teacher_accuracy"] - ACCURACY_MARGIN)
        parts.append(f"{row['net']} BN {row[S.STUDENT_BN]} on {row['data']}: test accuracy {row['accuracy']:.1%} "
                     f"(teacher {row['teacher_accuracy']:.1%})")  # fmt: skip
    return Claim(14, text, "; ".join(parts), verdict(ok))


CRITERIA = (
    f"Criteria are in `analysis/luck/claims.py`: growth = rho-bar up by >= {GROWTH}; lucky = winners' mean rank at "
    f"init < {LUCKY_BELOW}; differences under {BN_MARGIN} are none; conserved = median relative change < "
    f"{CONSERVED_BELOW}; concentrated = winners' mean rank in H* < {CONCENTRATED_BELOW}; claims 7-10 on Gaussian "
    f"data; claim 14 on real images, accuracy within {ACCURACY_MARGIN:.0%} of the teacher's."
)
"""The thresholds behind the verdicts, as the report states them."""
