"""Claims 1-3 on hand-made tables: every verdict (supported, not supported, not enough data) is reachable,
and the traps the old criteria fell into (ties at 1.0, never-recovered nodes, pooled noise) are closed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import verdicts
from analysis.icml import claims

M = 8  # teacher nodes: the 2 strongest (0, 1) and 2 weakest (6, 7) are compared


def success_table(by_p: dict[float, tuple[float, float]], epochs=(100.0,), multis=(1, 5)) -> pd.DataFrame:
    """Success rate per node: ``by_p[p] = (strong, weak)``; nodes 0-3 get strong, 4-7 weak."""
    rows = [
        {"p": p, "multi": multi, "m": M, "node": node, "epoch": epoch, "seeds": 8,
         "success_rate": strong if node < M // 2 else weak}
        for p, (strong, weak) in by_p.items() for multi in multis for node in range(M) for epoch in epochs
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_claim1_every_verdict() -> None:
    steeper = success_table({0.0: (1.0, 1.0), 1.0: (1.0, 0.6), 2.0: (0.9, 0.1)})
    assert claims.claim1(steeper).verdict == verdicts.SUPPORTED
    reversed_ = success_table({0.0: (1.0, 1.0), 1.0: (0.6, 1.0), 2.0: (0.1, 0.9)})
    assert claims.claim1(reversed_).verdict == verdicts.NOT_SUPPORTED
    # Strong beats weak at every p, but the drop gets *flatter* with p: the old max-vs-min
    # comparison missed the middle; now a shrink beyond the tolerance fails.
    flatter = success_table({0.0: (1.0, 1.0), 1.0: (1.0, 0.1), 2.0: (0.9, 0.6)})
    claim = claims.claim1(flatter)
    assert (
        claim.verdict == verdicts.NOT_SUPPORTED
        and "largest shrink of the gap from one p to the next 0.60" in claim.evidence
    )
    assert claims.claim1(success_table({2.0: (1.0, 0.0)})).verdict == verdicts.NO_DATA  # one p
    assert claims.claim1(success_table({0.0: (1.0, 1.0), 0.5: (1.0, 0.97)})).verdict == verdicts.NO_DATA  # all ties


def test_claim1_a_tie_at_one_is_not_a_failure() -> None:
    # After 100 epochs p = 0.5 recovers every node: both ends at 1.0 is a tie, and p = 2 still separates.
    table = success_table({0.0: (1.0, 1.0), 0.5: (1.0, 0.98), 2.0: (1.0, 0.2)})
    claim = claims.claim1(table)
    assert (
        claim.verdict == verdicts.SUPPORTED and "p=0.5: strongest 1.00 vs weakest 0.98 (tie at 1.0)" in claim.evidence
    )


def seed_table(effect: dict[float, float], seeds: int = 8, noise: float = 0.05, base: float = 0.5) -> pd.DataFrame:
    """Per-seed success at multi 1 and 5: multi 5 = multi 1 + effect[p] + noise."""
    gen = np.random.default_rng(1)
    rows = []
    for p, gain in effect.items():
        for seed in range(1, seeds + 1):
            low = base + gen.normal(0, 0.1)
            rows.append({"p": p, "multi": 1, "m": M, "seed": seed, "success": low})
            rows.append({"p": p, "multi": 5, "m": M, "seed": seed, "success": low + gain + gen.normal(0, noise)})
    return pd.DataFrame(rows)


def test_claim2_every_verdict_and_the_worst_p() -> None:
    assert claims.claim2(seed_table({0.0: 0.3, 1.0: 0.2, 2.0: 0.15})).verdict == verdicts.SUPPORTED
    # A reversal at one p is no longer hidden by pooling every p together.
    reversal = claims.claim2(seed_table({0.0: 0.4, 1.0: 0.4, 2.0: -0.1}))
    assert reversal.verdict == verdicts.NOT_SUPPORTED and reversal.evidence.endswith("worst p=2")
    # Pure noise: the pooled means differ by chance, the paired interval straddles 0.
    assert claims.claim2(seed_table({1.0: 0.0}, noise=0.1)).verdict == verdicts.NOT_SUPPORTED
    assert claims.claim2(seed_table({1.0: 0.3}, seeds=2)).verdict == verdicts.NO_DATA
    one_multi = seed_table({1.0: 0.3})
    assert claims.claim2(one_multi[one_multi["multi"] == 1]).verdict == verdicts.NO_DATA
    saturated = seed_table({0.0: 0.0}, noise=0.0, base=1.0).assign(success=1.0)
    assert claims.claim2(saturated).verdict == verdicts.NO_DATA  # every p a tie at 1.0


def first_table(step_of_node, recovered_nodes=range(M), p: float = 2.0, seeds: int = 4) -> pd.DataFrame:
    """First-success step per node-run; nodes outside ``recovered_nodes`` never succeed."""
    rows = []
    for seed in range(seeds):
        for node in range(M):
            ok = node in recovered_nodes
            rows.append({"run_id": f"r{seed}", "node": node, "first_step": step_of_node(node, seed) if ok else np.nan,
                         "recovered": ok, "p": p, "multi": 5, "m": M})  # fmt: skip
    return pd.DataFrame(rows)


def test_claim3_every_verdict() -> None:
    success = success_table({0.0: (1.0, 1.0), 2.0: (1.0, 0.5)}, epochs=(5.0, 100.0))
    strong_early = first_table(lambda node, seed: 10 * 2**node + seed)
    claim = claims.claim3(success, strong_early)
    assert claim.verdict == verdicts.SUPPORTED and "Spearman(node index, first-success step) +0.9" in claim.evidence
    weak_early = first_table(lambda node, seed: 10 * 2 ** (M - node) + seed)
    assert claims.claim3(success, weak_early).verdict == verdicts.NOT_SUPPORTED
    dropping = success_table({2.0: (1.0, 0.5)}, epochs=(5.0,)).assign(epoch=5.0)
    dropping = pd.concat([dropping, success_table({2.0: (0.8, 0.3)}).assign(epoch=100.0)])
    assert claims.claim3(dropping, strong_early).verdict == verdicts.NOT_SUPPORTED  # success fell after epoch 5
    assert claims.claim3(success, first_table(lambda n, s: 10, recovered_nodes=range(2))).verdict == verdicts.NO_DATA
    assert claims.claim3(success[success["epoch"] == 100.0], strong_early).verdict == verdicts.NO_DATA


def test_claim3_never_recovered_nodes_do_not_make_it_pass() -> None:
    # Weak nodes never recovered; the recovered ones specialize in an order unrelated to strength.
    # The old criterion (never = infinite first step) called this "weak ones late": supported.
    success = success_table({2.0: (1.0, 0.0)}, epochs=(5.0, 100.0))
    unordered = first_table(lambda node, seed: [40, 10, 30, 20][(node + seed) % 4], recovered_nodes=range(4))
    claim = claims.claim3(success, unordered)
    assert claim.verdict == verdicts.NOT_SUPPORTED and "over 16 recovered node-runs" in claim.evidence
