"""A polarity sweep through the real sweep path (Ray Tune included), against the machine's peak.

    python benchmarks/sweep.py                          # 8 seeds x 10 epochs: 192 runs
    python benchmarks/sweep.py --quick --smoke          # seconds: a smoke sweep, no figure-7 projection

Other flags go to the sweep script (``--multi 1 2``, ``--smoke``, ...).

Prints, from one run:
- the fp32 matmul peak, measured here first;
- the useful SGD flops (forward and backward of each layer, 6 B (fan_in+1) fan_out per run-step)
  over the sweep's fit time, and their share of the peak;
- each pack's timeline (start, end, core) against its estimate from the cost model;
- the sweep's projected wall time (``--dry-run``'s number) against the measured one;
- figure 7 (32 seeds x 100 epochs) projected on this machine, from the model and scaled by
  this run's measured/estimated ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import peak as peak_of  # noqa: E402
from spec_ray.orchestration import dryrun, mkl_dispatch  # noqa: E402
from spec_ray.orchestration.commandline import experiment_from_args, request_from_args  # noqa: E402
from spec_ray.orchestration.commandline import sweep_parser as build_parser  # noqa: E402
from spec_ray.orchestration.costs import metric_flops, useful_flops  # noqa: E402
from spec_ray.orchestration.plan import plan  # noqa: E402
from spec_ray.orchestration.schedule import cost_function, lpt, makespan, measure_shapes, schedule  # noqa: E402
from spec_ray.storage import schema as S  # noqa: E402
from spec_ray.storage.manifest import packs_from_dict  # noqa: E402
from sweeps.polarity import EXPERIMENT, SMOKE  # noqa: E402


def planned(flags: list[str]):
    """The packs the sweep script would plan for these flags (no side effects)."""
    never_written = os.path.join(tempfile.gettempdir(), "spec-ray-plan-only")  # plan() writes nothing
    args = build_parser(EXPERIMENT, None).parse_args([*flags, "--storage", never_written])
    exp = experiment_from_args(EXPERIMENT, args, SMOKE)
    return plan(request_from_args(exp, args)).packs(), args


def projection(packs, slots: int, threads: int) -> tuple[float, dict]:
    """Model makespan on ``slots`` and the cost function (calibrated here)."""
    costs = measure_shapes(packs, threads, workers=slots)
    cost = cost_function(costs)
    return makespan(lpt(schedule(packs, costs, slots), cost, slots)), cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="a small peak matmul and no figure-7 projection")
    args, extra = parser.parse_known_args()
    flags = ["--seeds", str(args.seeds), "--epochs", str(args.epochs), "--cpus-per-trial", f"{args.cpus_per_trial:g}"]
    flags += extra
    torch.set_num_threads(dryrun.local_cores())
    sizes = (1024,) if args.quick else (2048, 4096)
    measured = peak_of.measure("cpu", sizes)
    peak = measured.gflops
    print("\n".join(measured.lines()))

    cores = dryrun.local_cores()
    slots = max(1, int(cores // args.cpus_per_trial))
    threads = max(1, int(args.cpus_per_trial))
    packs, _ = planned(flags)
    began = time.perf_counter()
    estimate, cost = projection(packs, slots, threads)
    took = time.perf_counter() - began
    print(f"model: {len(packs)} planned packs, projected fit {estimate:.1f} s (calibrated in {took:.1f} s)")

    storage = tempfile.mkdtemp(prefix="sweep-bench-")
    cmd = [sys.executable, str(ROOT / "sweeps" / "polarity.py"), *flags, "--storage", storage, "--name", "bench"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    command_wall = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    fit = float(re.search(r"runs done in \d+ packs, ([\d.]+) s", proc.stdout).group(1))
    root = Path(storage) / "bench"
    stored = packs_from_dict(json.loads((root / "sweep.json").read_text())["sweep"])
    runs = pd.read_parquet(root / S.RUNS, columns=[S.RUN_ID, S.PARTITION, "wall_time_s"])
    flops = sum(useful_flops(p.spec) * p.spec.total_steps * p.size for p in stored)
    gflops = flops / fit / 1e9
    all_flops = flops + sum(metric_flops(p.spec) * p.size for p in stored)

    timeline = {}  # pack id -> (start, end, core), unix times from the trials' own reports
    for result in (root / "tune").glob("*/result.json"):
        last = [json.loads(line) for line in result.read_text().splitlines() if line.strip()][-1]
        timeline[last["config"]["pack"]["id"]] = (last["started_at"], last["reported_at"], last["core"])
    t0 = min(t[0] for t in timeline.values())
    wall = runs.groupby(S.PARTITION, observed=True)["wall_time_s"].first()
    head = ["runs", "start s", "end s", "core", "pack s", "est. s", "est/meas"]
    print(f"\n{'pack':<14} " + " ".join(f"{h:>8}" for h in head))
    for pack in stored:
        start, end, core = timeline[pack.pack_id]
        est, meas = cost(pack), float(wall.get(pack.pack_id, float("nan")))
        print(
            f"x{pack.spec.student.multi:<13} {pack.size:>5} {start - t0:>8.1f} {end - t0:>8.1f} {core:>4} "
            f"{meas:>8.1f} {est:>8.1f} {est / meas:>8.2f}"
        )
    print(f"\nsweep: {sum(p.size for p in stored)} runs in {len(stored)} packs on {slots} slots")
    print(
        f"  whole command {command_wall:.1f} s; Tune fit {fit:.1f} s; model {estimate:.1f} s "
        f"(estimate / measured fit = {estimate / fit:.2f})"
    )
    print(f"  useful SGD flops {flops / 1e12:.2f} Tflop: {gflops:.1f} GFLOP/s = {100 * gflops / peak:.1f} % of peak")
    print(
        f"  with the protocol's checkpoint metrics {all_flops / 1e12:.2f} Tflop: "
        f"{all_flops / fit / 1e9:.1f} GFLOP/s = {100 * all_flops / fit / 1e9 / peak:.1f} % of peak"
    )

    fit7 = float("nan")
    if not args.quick:
        fit7 = figure7(args, slots, threads, fit / estimate)
    print(
        f"fit_s={fit:.2f} estimate_s={estimate:.2f} ratio={estimate / fit:.3f} "
        f"efficiency={gflops / peak:.4f} figure7_min={fit7 / 60:.2f}"
    )


def figure7(args: argparse.Namespace, slots: int, threads: int, correction: float) -> float:
    """Figure 7's projected fit here: the model, scaled by this run's measured/estimated ratio."""
    fig7, _ = planned(["--seeds", "32", "--epochs", "100", "--cpus-per-trial", f"{args.cpus_per_trial:g}"])
    full, _ = projection(fig7, slots, threads)
    print(
        f"figure 7 (768 runs x 100 epochs) on this machine: model {full / 60:.1f} min; "
        f"scaled by this run's measured/estimated fit {full * correction / 60:.1f} min (+ ~10 s Ray start)"
    )
    return full * correction


if __name__ == "__main__":
    mkl_dispatch.reexec()  # time the kernels a sweep's workers run (MKL's vendor check answered on AMD)
    main()
