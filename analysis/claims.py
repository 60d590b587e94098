"""The claims of PROTOCOL.md checked against an experiment's numbers.

Each check returns a ``Claim``: the measured numbers behind it and a verdict, one of
``supported``, ``not supported`` or ``not enough data``. The criteria are stated in
each docstring and in the report, so a reader can disagree with a threshold.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

SUPPORTED, NOT_SUPPORTED, NO_DATA = "supported", "not supported", "not enough data"
UNSPECIALIZED_BELOW = 0.8  # claim 4: a student node this far from every teacher counts as unspecialized


class Claim(NamedTuple):
    number: int
    text: str
    evidence: str
    verdict: str


def _verdict(ok: bool) -> str:
    return SUPPORTED if ok else NOT_SUPPORTED


def _k(m: int) -> int:
    """How many strongest / weakest nodes are compared: a quarter of the teacher (5 of 20)."""
    return max(1, m // 4)


def strong_vs_weak(success: pd.DataFrame) -> pd.DataFrame:
    """Final success rate of the k strongest and k weakest nodes per p (mean over multi, m)."""
    final = success[success["epoch"] == success["epoch"].max()]
    rows = []
    for p, sub in final.groupby("p"):
        parts = []
        for m, part in sub.groupby("m"):
            k = _k(int(m))
            parts.append(
                (part[part["node"] < k]["success_rate"].mean(), part[part["node"] >= m - k]["success_rate"].mean())
            )
        strong, weak = np.mean([a for a, _ in parts]), np.mean([b for _, b in parts])
        rows.append({"p": p, "strong": strong, "weak": weak, "gap": strong - weak})
    return pd.DataFrame(rows)


def claim1(success: pd.DataFrame) -> Claim:
    """Stronger nodes are recovered more often, and the drop is steeper for larger p.

    Supported when, at the final epoch, the k strongest nodes (k = m/4) beat the k weakest
    at every p > 0, and the strong-weak gap at the largest p exceeds that at the smallest.
    """
    text = "Stronger teacher nodes are recovered more often; the drop with index is steeper for larger p."
    if success.empty or success["p"].nunique() < 2 or (success["m"] < 2).all():
        return Claim(1, text, "needs at least two values of p and m >= 2", NO_DATA)
    table = strong_vs_weak(success)
    evidence = "; ".join(f"p={r.p:g}: strongest {r.strong:.2f} vs weakest {r.weak:.2f}" for r in table.itertuples())
    positive = table[table["p"] > 0]
    ok = bool((positive["gap"] > 0).all()) and table.iloc[-1]["gap"] > table.iloc[0]["gap"]
    return Claim(1, text, evidence, _verdict(ok))


def claim2(success: pd.DataFrame) -> Claim:
    """More over-realization recovers more nodes: final success rises from the smallest to the largest multi."""
    text = "More over-realization recovers more teacher nodes."
    if success.empty or success["multi"].nunique() < 2:
        return Claim(2, text, "needs at least two values of multi", NO_DATA)
    final = success[success["epoch"] == success["epoch"].max()]
    by_multi = final.groupby("multi")["success_rate"].mean()
    slope = np.polyfit(by_multi.index.to_numpy(float), by_multi.to_numpy(), 1)[0]
    evidence = ", ".join(f"{m}x: {v:.2f}" for m, v in by_multi.items()) + f"; slope {slope:+.3f} per unit of multi"
    return Claim(2, text, evidence, _verdict(bool(by_multi.iloc[-1] > by_multi.iloc[0] and slope > 0)))


def claim3(success: pd.DataFrame, first: pd.DataFrame) -> Claim:
    """Success at the end >= after 5 epochs (tolerance 0.02 for every configuration), and the
    k strongest nodes reach success earlier (median first-success step, never = infinity)
    than the k weakest, over runs with p > 0."""
    text = "Success after 100 epochs is at least that after 5; strong nodes specialize early, weak ones late."
    epochs = sorted(success["epoch"].unique()) if not success.empty else []
    if len(epochs) < 2 or first.empty:
        return Claim(3, text, "needs runs longer than 5 epochs", NO_DATA)
    keys = ["p", "multi", "m"]
    early = success[success["epoch"] == epochs[0]].groupby(keys)["success_rate"].mean()
    final = success[success["epoch"] == epochs[-1]].groupby(keys)["success_rate"].mean()
    worst = float((final - early).min())
    steps = first[first["p"] > 0].assign(first_step=lambda f: f["first_step"].fillna(np.inf))
    if steps.empty:
        return Claim(3, text, "needs runs with p > 0 for the strong/weak timing", NO_DATA)
    k = steps["m"].map(lambda m: _k(int(m)))
    strong = float(steps[steps["node"] < k]["first_step"].median())
    weak = float(steps[steps["node"] >= steps["m"] - k]["first_step"].median())
    evidence = (
        f"mean success epoch {epochs[0]:g} {early.mean():.2f} -> epoch {epochs[-1]:g} {final.mean():.2f} "
        f"(worst configuration change {worst:+.2f}); median first-success step: strongest {strong:g}, weakest {weak:g}"
    )
    return Claim(3, text, evidence, _verdict(worst >= -0.02 and strong < weak))


def claim4(lshape: pd.DataFrame, threshold: float) -> Claim:
    """Unspecialized students (specialization < 0.8) have a median fan-out norm under half
    that of specialized ones (specialization > the success threshold)."""
    text = "Student nodes that specialize to no teacher have small fan-out norms."
    special = lshape[lshape["specialization"] > threshold]["fanout_norm"]
    loose = lshape[lshape["specialization"] < UNSPECIALIZED_BELOW]["fanout_norm"]
    if special.empty or loose.empty:
        return Claim(
            4, text, f"needs both specialized and unspecialized student nodes ({len(special)}, {len(loose)})", NO_DATA
        )
    ratio = loose.median() / special.median()
    evidence = (
        f"median fan-out norm: specialized {special.median():.3g} (n={len(special)}), "
        f"unspecialized {loose.median():.3g} (n={len(loose)}); ratio {ratio:.2f}"
    )
    return Claim(4, text, evidence, _verdict(bool(ratio < 0.5)))


def claim5(sizes: pd.DataFrame) -> Claim:
    """Between the smallest and largest sample size, rho_mean of layer 1 rises by at least 0.01
    and the eval loss falls by at least 1 % for every loss; with a deep teacher, layer 1 also
    has the highest rho_mean at the largest size."""
    text = "With more samples rho_mean and evaluation loss improve; the lowest layer specializes best."
    if sizes.empty or sizes["n_train"].nunique() < 2:
        return Claim(5, text, "needs at least two sample sizes", NO_DATA)
    parts, ok = [], True
    for loss, sub in sizes[sizes["layer"] == 1].groupby("loss"):
        lo, hi = sub.iloc[0], sub.iloc[-1]
        ok &= bool(hi["rho_mean"] >= lo["rho_mean"] + 0.01 and hi["eval_loss"] <= 0.99 * lo["eval_loss"])
        parts.append(
            f"{loss}: n={lo['n_train']:g} -> {hi['n_train']:g}: rho_mean {lo['rho_mean']:.2f} -> {hi['rho_mean']:.2f}, "
            f"eval loss {lo['eval_loss']:.3g} -> {hi['eval_loss']:.3g}"
        )
    largest = sizes[sizes["n_train"] == sizes["n_train"].max()].groupby("layer")["rho_mean"].mean()
    if len(largest) > 1:
        ok &= bool(largest.idxmax() == 1)
        parts.append("rho_mean by layer at the largest size: " + ", ".join(f"{k}: {v:.2f}" for k, v in largest.items()))
    else:
        parts.append("one hidden layer: the lowest-layer comparison needs a deep teacher")
    return Claim(5, text, "; ".join(parts), _verdict(ok))


def claim6(aware: pd.DataFrame) -> Claim:
    """At the smallest sample size run with both, the teacher-aware eval MSE is under half the agnostic one."""
    text = "With few samples a teacher-aware dataset gives much lower evaluation loss than an agnostic one."
    evals = aware[aware["set"] == "eval"] if not aware.empty else aware
    both = evals.pivot_table(index="n_train", columns="augmentation", values="mse") if not evals.empty else evals
    agnostic = next((c for c in ("none", "teacher_agnostic") if c in getattr(both, "columns", [])), None)
    if agnostic is None or "teacher_aware" not in both.columns or both[[agnostic, "teacher_aware"]].dropna().empty:
        return Claim(6, text, "needs teacher-aware and agnostic runs of the same size", NO_DATA)
    both = both[[agnostic, "teacher_aware"]].dropna()
    n = both.index.min()
    ratio = both.loc[n, "teacher_aware"] / both.loc[n, agnostic]
    evidence = (
        f"n={n:g}: eval MSE teacher-aware {both.loc[n, 'teacher_aware']:.3g} vs agnostic {both.loc[n, agnostic]:.3g} "
        f"(ratio {ratio:.2f})"
    )
    return Claim(6, text, evidence, _verdict(bool(ratio < 0.5)))
