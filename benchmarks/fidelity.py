"""Held-out check: ``sweeps/polarity.py`` against the authors' recipe, success rate per (multi, p).

Runs the polarity sweep through its real path (Ray Tune, Parquet), then the independent
re-implementation of the authors' two-layer script (``benchmarks/authors_recipe.py``,
NumPy float64, its own random streams) for the same cells and seeds, and compares each
cell's mean over seeds of the fraction of teacher nodes recovered at the end.

The two share no random numbers, so they agree only in distribution: per cell,
z = (ours - theirs) / sqrt(var_ours / n + var_theirs / n) over the n seeds. They agree
within seed noise when every |z| <= 3 (24 cells: a chance failure about 6 % of the time)
and the pooled z (sum / sqrt(cells)) is within +-3 too. ``--normalize all`` gives the
sweep another teacher (rows normalized after the polarity division, the deep script's
recipe), to show the check can fail. ``--matmul-precision bf16`` trains the sweep with bf16
matmuls: the check then decides whether the success rates hold at that precision.

    python benchmarks/fidelity.py --seeds 8 --epochs 5        # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/analysis.py would shadow the analysis package: import the recipe by path instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from analysis.icml.queries import seed_success  # noqa: E402
from analysis.load import open_results  # noqa: E402
from benchmarks.authors_recipe import Recipe, train  # noqa: E402

Z_LIMIT = 3.0


def run_sweep(args: argparse.Namespace, storage: str) -> str:
    """The polarity sweep for the check's cells; returns its experiment folder."""
    name = f"fidelity-{args.normalize}-{args.matmul_precision}"
    cmd = [sys.executable, str(ROOT / "sweeps" / "polarity.py"), "--storage", storage, "--name", name,
           "--m", str(args.m), "--multi", *map(str, args.multi), "--p", *map(str, args.p),
           "--seeds", str(args.seeds), "--epochs", str(args.epochs), "--iters-per-epoch", str(args.iters_per_epoch),
           "--n-train", str(args.n_train), "--n-eval", str(args.n_eval), "--normalize", args.normalize,
           "--matmul-precision", args.matmul_precision]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return f"{storage}/{name}"


def recipe_success(job: tuple[Recipe, int]) -> float:
    """Fraction of teacher nodes the authors' recipe recovers at the end of one run."""
    recipe, seed = job
    best = train(recipe, seed, (recipe.num_epoch,))[recipe.num_epoch]  # (m,)
    return float((best > 0.95).mean())


def compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Per (multi, p): both means, the difference and its z over seeds."""
    rows = []
    for (multi, p), a in ours.groupby(["multi", "p"]):
        b = theirs[(theirs["multi"] == multi) & (theirs["p"] == p)]["success"].to_numpy()
        a = a["success"].to_numpy()
        diff = a.mean() - b.mean()
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        z = 0.0 if diff == 0 else (diff / se if se > 0 else math.inf)
        rows.append({"multi": multi, "p": p, "ours": a.mean(), "authors": b.mean(), "diff": diff, "z": z})
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=20, help="teacher nodes (default 20, figure 7)")
    parser.add_argument("--multi", type=int, nargs="+", default=[1, 2, 5, 10], help="over-realizations")
    parser.add_argument("--p", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0, 2.5], help="polarities")
    parser.add_argument("--seeds", type=int, default=8, help="seeds 1..N per cell, for both implementations")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (default 5, figure 7's dotted line)")
    parser.add_argument("--iters-per-epoch", type=int, default=1000, help="SGD steps per epoch")
    parser.add_argument("--n-train", type=int, default=10_000, help="training samples")
    parser.add_argument("--n-eval", type=int, default=10_000, help="evaluation samples")
    parser.add_argument("--normalize", default="first", help="the sweep's teacher.normalize (all: the old teacher)")
    parser.add_argument(
        "--matmul-precision",
        default="ieee",
        help="the sweep's train.matmul_precision (bf16: is the science unchanged with bf16 matmuls?)",
    )
    parser.add_argument("--results", default=None, help="an existing sweep folder for these cells (skips the sweep)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the recipe's runs")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.results or run_sweep(args, tmp)
        ours = seed_success(open_results(folder))[["multi", "p", "seed", "success"]]
    sweep_s = time.perf_counter() - began
    jobs = [(Recipe(m=args.m, multi=multi, p=p, num_epoch=args.epochs, num_iter_per_epoch=args.iters_per_epoch,
                    n_train=args.n_train, n_eval=args.n_eval), seed)
            for multi in args.multi for p in args.p for seed in range(1, args.seeds + 1)]  # fmt: skip
    with ProcessPoolExecutor(args.workers) as pool:
        success = list(pool.map(recipe_success, jobs))
    theirs = pd.DataFrame([{"multi": r.multi, "p": r.p, "seed": s, "success": v} for (r, s), v in zip(jobs, success)])
    table = compare(ours, theirs)
    recipe_s = time.perf_counter() - began - sweep_s
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    pooled = float(table["z"].sum() / math.sqrt(len(table)))
    worst = float(table["z"].abs().max())
    agree = worst <= Z_LIMIT and abs(pooled) <= Z_LIMIT
    print(f"sweep {sweep_s:.0f} s, authors' recipe {recipe_s:.0f} s ({len(jobs)} runs, {args.workers} workers)")
    print(
        f"agree={'yes' if agree else 'no'} max_abs_z={worst:.2f} pooled_z={pooled:+.2f} "
        f"mean_abs_diff={float(table['diff'].abs().mean()):.3f} cells={len(table)} seeds={args.seeds} "
        f"normalize={args.normalize} matmul_precision={args.matmul_precision}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
