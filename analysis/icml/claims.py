"""ICML 2020's claims (1-6 of docs/protocol.md) checked against an experiment's numbers.

Each check takes tidy frames of ``analysis.icml.queries`` and returns a ``Claim``: the measured
numbers behind it and a verdict. The criteria are stated in each docstring and in the report,
so a reader can disagree with a threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.icml import queries as Q
from analysis.load import Results
from analysis.registry import ClaimCheck, claim, frame
from analysis.verdicts import NO_DATA, Claim, verdict
from spec_ray.storage import schema as S

CLAIMS: list[ClaimCheck] = []
"""ICML 2020's claims, in order."""

UNSPECIALIZED_BELOW = 0.8  # claim 4: a student node this far from every teacher counts as unspecialized


TOLERANCE = 0.05
"""Success rates within this are equal: the seed noise of a rate over ~8 seeds x 5 nodes."""
MIN_RANK_CORR = 0.2
"""Claim 3: the least Spearman correlation between weakness and first-success step."""
BOOTSTRAP = 2000
"""Claim 2: paired bootstrap resamples of the seeds (fixed generator: the verdict is repeatable)."""
MIN_SEEDS_13 = 3
"""Claim 13: seeds of each multi compared, the fewest whose standard error says anything."""
NOISE_SE = 2.0
"""Claim 13: a difference of seed means counts when it is more than this many standard errors."""


def _tie(a, b):
    """Both success rates at 1.0 within TOLERANCE: too easy to tell apart (scalars or Series)."""
    return (a >= 1 - TOLERANCE) & (b >= 1 - TOLERANCE)


def _k(m: int) -> int:
    """How many strongest / weakest nodes are compared: a quarter of the teacher (5 of 20)."""
    return max(1, m // 4)


def strong_vs_weak(success: pd.DataFrame) -> pd.DataFrame:
    """Final success rate of the k strongest and k weakest nodes per p (mean over multi, m)."""
    final = success[success["epoch"] == success["epoch"].max()]
    rows = []
    for p, sub in final.groupby(S.P):
        parts = []
        for m, part in sub.groupby(S.M):
            k = _k(int(m))
            parts.append(
                (part[part["node"] < k]["success_rate"].mean(), part[part["node"] >= m - k]["success_rate"].mean())
            )
        strong, weak = np.mean([a for a, _ in parts]), np.mean([b for _, b in parts])
        rows.append({S.P: p, "strong": strong, "weak": weak, "gap": strong - weak})
    return pd.DataFrame(rows)


@claim(
    CLAIMS,
    1,
    Q.POLARITY,
    lambda res: (frame(res, Q.success_rate),),
    noise=f"gaps over {TOLERANCE}, the seed noise of a rate over ~8 seeds x 5 nodes",
)
def claim1(success: pd.DataFrame) -> Claim:
    """Stronger nodes are recovered more often, and the drop is steeper for larger p.

    At the final epoch, per p: gap = success of the k strongest nodes (k = m/4) minus the k
    weakest, averaged over multi and m. A p > 0 where both reach 1 - TOLERANCE is a tie at
    1.0 (too easy to tell), not a failure. Supported when every other p > 0 has gap >
    TOLERANCE, and the gap never shrinks by more than TOLERANCE from one p to the next
    larger (p = 0 included, ties counting as gap 0). Not enough data: fewer than two p,
    m < 2, or every p > 0 a tie.
    """
    text = "Stronger teacher nodes are recovered more often; the drop with index is steeper for larger p."
    if success.empty or success[S.P].nunique() < 2 or (success[S.M] < 2).all() or (success[S.P] <= 0).all():
        return Claim(1, text, "needs at least two values of p, one > 0, and m >= 2", NO_DATA)
    table = strong_vs_weak(success).sort_values(S.P)
    table["tie"] = _tie(table["strong"], table["weak"])
    table["gap"] = table["gap"].where(~table["tie"], 0.0)
    positive = table[table[S.P] > 0]
    evidence = "; ".join(
        f"p={r.p:g}: strongest {r.strong:.2f} vs weakest {r.weak:.2f}" + (" (tie at 1.0)" if r.tie else "")
        for r in table.itertuples()
    )
    if positive["tie"].all():
        return Claim(1, text, evidence + "; every p > 0 ties at 1.0: nothing to compare", NO_DATA)
    drops = table["gap"].diff().dropna()
    worst = float(drops.min())
    evidence += f"; largest shrink of the gap from one p to the next {max(0.0, -worst):.2f} (tolerance {TOLERANCE})"
    ok = bool((positive["tie"] | (positive["gap"] > TOLERANCE)).all()) and worst >= -TOLERANCE
    return Claim(1, text, evidence, verdict(ok))


def _paired_interval(diff: np.ndarray) -> tuple[float, float]:
    """95 % paired bootstrap interval of the mean of per-seed differences."""
    gen = np.random.default_rng(0)
    means = diff[gen.integers(0, len(diff), (BOOTSTRAP, len(diff)))].mean(axis=1)  # (BOOTSTRAP,)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


@claim(
    CLAIMS,
    2,
    Q.OVER_REALIZATION,
    lambda res: (frame(res, Q.seed_success),),
    seeds=3,
    noise="a 95 % paired bootstrap interval over seeds above 0",
)
def claim2(seeds: pd.DataFrame) -> Claim:
    """More over-realization recovers more nodes, within each p.

    Per (p, m): each seed's fraction of recovered teacher nodes at the final step, at the
    largest multi minus the smallest, paired by seed (equal seeds share teacher and data).
    A (p, m) passes when the 95 % paired bootstrap interval of the mean difference lies
    above 0, or when both multis recover >= 1 - TOLERANCE (a tie at 1.0). Supported when
    every (p, m) passes; the worst one is reported. Not enough data: one multi, fewer than
    3 seeds with both multis in a (p, m), or every (p, m) a tie.
    """
    text = "More over-realization recovers more teacher nodes."
    if seeds.empty or seeds[S.MULTI].nunique() < 2:
        return Claim(2, text, "needs at least two values of multi", NO_DATA)
    lo, hi = seeds[S.MULTI].min(), seeds[S.MULTI].max()
    rows = []
    for (p, m), sub in seeds.groupby([S.P, S.M]):
        paired = sub.pivot_table(index=S.SEED, columns=S.MULTI, values="success")
        if lo not in paired or hi not in paired:
            continue
        paired = paired[[lo, hi]].dropna()
        if len(paired) < 3:
            return Claim(2, text, f"p={p:g}, m={m}: {len(paired)} paired seeds; needs 3 or more", NO_DATA)
        diff = (paired[hi] - paired[lo]).to_numpy()
        low, high = _paired_interval(diff)
        tie = bool(_tie(paired[lo].mean(), paired[hi].mean()))
        rows.append({S.P: p, S.M: m, "lo": paired[lo].mean(), "hi": paired[hi].mean(), "low": low, "high": high,
                     "tie": tie, "ok": tie or low > 0})  # fmt: skip
    if not rows:
        return Claim(2, text, f"no (p, m) has both {lo}x and {hi}x", NO_DATA)
    table = pd.DataFrame(rows)
    worst = table.sort_values(["ok", "tie", "low"]).iloc[0]
    evidence = (
        f"success {lo}x -> {hi}x, 95 % interval of the paired difference: "
        + "; ".join(
            f"p={r.p:g}"
            + (f", m={r.m}" if table[S.M].nunique() > 1 else "")
            + f": {r.lo:.2f} -> {r.hi:.2f} [{r.low:+.2f}, {r.high:+.2f}]"
            + (" (tie at 1.0)" if r.tie else "")
            for r in table.itertuples()
        )
        + f"; worst p={worst['p']:g}"
    )
    if table["tie"].all():
        return Claim(2, text, evidence + ": every p ties at 1.0, nothing to compare", NO_DATA)
    return Claim(2, text, evidence, verdict(bool(table["ok"].all())))


@claim(
    CLAIMS,
    3,
    Q.TWO_LAYER,
    lambda res: (frame(res, Q.success_rate), frame(res, Q.first_success)),
    noise=f"a rank correlation over 10+ node-runs above {MIN_RANK_CORR}",
)
def claim3(success: pd.DataFrame, first: pd.DataFrame) -> Claim:
    """Success does not drop from 5 epochs to the end; strong nodes specialize early, weak ones late.

    Mean success rate (all configurations) at the final epoch >= at the early epoch minus
    TOLERANCE / 5 (0.01). Among node-runs with p > 0 recovered at the end, the Spearman
    correlation between node index (weakness: node 0 is the strongest, relative to m) and
    first-success step is > MIN_RANK_CORR. Not enough data: no early epoch, or fewer than
    10 recovered node-runs with p > 0, or all of them at one node index.
    """
    text = "Success after 100 epochs is at least that after 5; strong nodes specialize early, weak ones late."
    epochs = sorted(success["epoch"].unique()) if not success.empty else []
    if len(epochs) < 2 or first.empty:
        return Claim(3, text, "needs runs longer than 5 epochs", NO_DATA)
    early = float(success[success["epoch"] == epochs[0]]["success_rate"].mean())
    final = float(success[success["epoch"] == epochs[-1]]["success_rate"].mean())
    found = first[(first[S.P] > 0) & first["recovered"] & first["first_step"].notna()]
    if len(found) < 10 or found["node"].nunique() < 2:
        return Claim(3, text, f"needs 10 node-runs with p > 0 recovered at the end ({len(found)})", NO_DATA)
    weakness = found["node"] / (found[S.M] - 1).clip(lower=1)
    rho = float(weakness.rank().corr(found["first_step"].rank()))  # Spearman: Pearson of average ranks
    rho = 0.0 if np.isnan(rho) else rho  # every node recovered at the same step: no ordering
    evidence = (
        f"mean success epoch {epochs[0]:g} {early:.2f} -> epoch {epochs[-1]:g} {final:.2f}; "
        f"Spearman(node index, first-success step) {rho:+.2f} over {len(found)} recovered node-runs with p > 0"
    )
    return Claim(3, text, evidence, verdict(final >= early - TOLERANCE / 5 and rho > MIN_RANK_CORR))


def _threshold(res: Results) -> float:
    return float(res.done[S.SUCCESS_THRESHOLD].iloc[0])


@claim(
    CLAIMS,
    4,
    Q.TWO_LAYER,
    lambda res: (frame(res, Q.lshape), _threshold(res)),
    noise="medians over every node of every seed, a ratio under 0.5",
)
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
    return Claim(4, text, evidence, verdict(bool(ratio < 0.5)))


@claim(CLAIMS, 5, Q.SAMPLES, lambda res: (frame(res, Q.sample_size),), noise="seed means, rises of 0.01 and 1 %")
def claim5(sizes: pd.DataFrame) -> Claim:
    """Between the smallest and largest sample size, rho_mean of layer 1 rises by at least 0.01
    and the eval loss falls by at least 1 % for every loss; with a deep teacher, layer 1 also
    has the highest rho_mean at the largest size."""
    text = "With more samples rho_mean and evaluation loss improve; the lowest layer specializes best."
    if not sizes.empty:  # a loss run at one size only (another experiment of a storage root) is no comparison
        sizes = sizes[sizes.groupby(S.LOSS)[S.N_TRAIN].transform("nunique") >= 2]
    if sizes.empty or sizes[S.N_TRAIN].nunique() < 2:
        return Claim(5, text, "needs at least two sample sizes of one loss", NO_DATA)
    parts, ok = [], True
    for loss, sub in sizes[sizes["layer"] == 1].groupby(S.LOSS):
        lo, hi = sub.iloc[0], sub.iloc[-1]
        ok &= bool(hi["rho_mean"] >= lo["rho_mean"] + 0.01 and hi["eval_loss"] <= 0.99 * lo["eval_loss"])
        parts.append(
            f"{loss}: n={lo['n_train']:g} -> {hi['n_train']:g}: rho_mean {lo['rho_mean']:.2f} -> {hi['rho_mean']:.2f}, "
            f"eval loss {lo['eval_loss']:.3g} -> {hi['eval_loss']:.3g}"
        )
    largest = sizes[sizes[S.N_TRAIN] == sizes[S.N_TRAIN].max()].groupby("layer")["rho_mean"].mean()
    if len(largest) > 1:
        ok &= bool(largest.idxmax() == 1)
        parts.append("rho_mean by layer at the largest size: " + ", ".join(f"{k}: {v:.2f}" for k, v in largest.items()))
    else:
        parts.append("one hidden layer: the lowest-layer comparison needs a deep teacher")
    return Claim(5, text, "; ".join(parts), verdict(ok))


@claim(CLAIMS, 6, Q.AUGMENTED, lambda res: (frame(res, Q.teacher_aware),), noise="seed means, a ratio under 0.5")
def claim6(aware: pd.DataFrame) -> Claim:
    """At the smallest sample size run with both, the teacher-aware eval MSE is under half the agnostic one."""
    text = "With few samples a teacher-aware dataset gives much lower evaluation loss than an agnostic one."
    evals = aware[aware["set"] == "eval"] if not aware.empty else aware
    both = evals.pivot_table(index=S.N_TRAIN, columns=S.AUGMENTATION, values="mse") if not evals.empty else evals
    kinds = S.KINDS[S.AUGMENTATION]
    present = list(getattr(both, "columns", []))
    # the agnostic baseline: plain Gaussian data where run, else Definition 7a's
    agnostic = next((c for c in kinds.names_where(teacher_aware=False) if c in present), None)
    aware = next((c for c in kinds.names_where(teacher_aware=True) if c in present), None)
    if agnostic is None or aware is None or both[[agnostic, aware]].dropna().empty:
        return Claim(6, text, "needs teacher-aware and agnostic runs of the same size", NO_DATA)
    both = both[[agnostic, aware]].dropna()
    n = both.index.min()
    ratio = both.loc[n, aware] / both.loc[n, agnostic]
    evidence = (
        f"n={n:g}: eval MSE teacher-aware {both.loc[n, aware]:.3g} vs agnostic {both.loc[n, agnostic]:.3g} "
        f"(ratio {ratio:.2f})"
    )
    return Claim(6, text, evidence, verdict(bool(ratio < 0.5)))


@claim(
    CLAIMS,
    13,
    Q.REAL,
    lambda res: (frame(res, Q.real_data_seeds),),
    seeds=MIN_SEEDS_13,
    noise="each difference of seed means over twice its standard error",
)
def claim13(real: pd.DataFrame) -> Claim:
    """At the last epoch, on every dataset, the largest multi has a higher rho_mean than the smallest in
    every hidden layer, and a higher test accuracy (figure 10), each difference of the seed means more
    than twice its standard error across seeds (``NOISE_SE``); judged on MIN_SEEDS_13 or more seeds of
    both multis."""
    text = "More over-realization gives better specialization in every layer and higher test accuracy (fig. 10)."
    if real.empty or real[S.MULTI].nunique() < 2:
        return Claim(13, text, "needs real-image runs of two or more multi", NO_DATA)
    parts, ok = [], True
    for name, data in real.groupby(S.DATASET):
        lo, hi = data[S.MULTI].min(), data[S.MULTI].max()
        seeds = data.groupby(S.MULTI)[S.SEED].nunique()
        if min(seeds[lo], seeds[hi]) < MIN_SEEDS_13:
            return Claim(13, text, f"{name}: {seeds[lo]} and {seeds[hi]} seeds of multi {lo} and {hi}; needs "
                                   f"{MIN_SEEDS_13} of each", NO_DATA)  # fmt: skip
        cells = []
        per_layer = [(f"layer {layer} rho_mean", "rho_mean", ".2f", sub) for layer, sub in data.groupby("layer")]
        once = data.drop_duplicates([S.MULTI, S.SEED])  # accuracy: one value a run
        for what, column, fmt, sub in [*per_layer, ("test accuracy", "eval_accuracy", ".1%", once)]:
            a, b = sub[sub[S.MULTI] == lo][column], sub[sub[S.MULTI] == hi][column]
            gap, se = float(b.mean() - a.mean()), float(np.sqrt(a.var() / len(a) + b.var() / len(b)))
            ok &= gap > NOISE_SE * se
            cells.append(f"{what} {a.mean():{fmt}} -> {b.mean():{fmt}} (+-{se:{fmt}})")
        parts.append(f"{name}, multi {lo} -> {hi} ({seeds[lo]} and {seeds[hi]} seeds): " + ", ".join(cells))
    return Claim(13, text, "; ".join(parts), verdict(ok))


CRITERIA = (
    "Criteria are in `analysis/icml/claims.py` and docs/protocol.md: strongest/weakest = the first/last "
    f"quarter of teacher nodes; rates within {TOLERANCE} are equal, both >= {1 - TOLERANCE:g} "
    "is a tie; claim 2 is a paired bootstrap over seeds within each p; claim 3 a Spearman correlation > "
    f"{MIN_RANK_CORR}; 'much lower' = under half; unspecialized = best correlation < {UNSPECIALIZED_BELOW}; "
    f"claim 13 compares the smallest and largest multi at the last epoch, each layer's rho_mean and the test "
    f"accuracy, every difference of seed means over {NOISE_SE:g}x its standard error, on {MIN_SEEDS_13}+ seeds of each."
)
"""The thresholds behind the verdicts, as the report states them."""
