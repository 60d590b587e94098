"""``--dry-run``: the packs, their estimated times and the projected wall time, before paying for anything.

Costs are calibrated on this machine (``schedule.measure``, a second or so a shape; one whose timing would
run past 30 s is priced from its flops, ``costs.flops_cost``), plus Tune's own second a trial. The
cluster projection (``--nodes``, ``--node-cpus``, ``--node-gpus``) uses the same CPU
calibration per core, or for GPU trials the constants measured on an H100, or a pack's flops
at its fp32 peak where those take longer (``costs.gpu_cost``).
Nothing is started and nothing is written.
"""

from __future__ import annotations

import argparse
import os
import time

from spec_ray.engine.training.pack import Pack
from spec_ray.orchestration.budget import TRIAL_S
from spec_ray.orchestration.plan import Resources
from spec_ray.orchestration.schedule import cost_function, lpt, makespan, measure_shapes, schedule

SHOWN_PACKS = 40
"""The dry run's table lists this many packs, longest first (one of 70,000 runs printed 5,067 lines)."""
RAY_OVERHEAD_S = 10.0  # starting a local Ray (about 7 s) and Tune's fixed cost (2.3 s), docs/performance.md


def local_cores() -> int:
    """CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def slots_for(cpus: float, gpus: float, nodes: int, node_cpus: int, node_gpus: int) -> int:
    """Packs at full speed at once on ``nodes`` equal nodes. Packs sharing a GPU are counted as
    taking turns on it: they are launch-bound, and how much they overlap was not measured."""
    per_node = int(node_gpus // max(gpus, 1.0)) if gpus > 0 else int(node_cpus // cpus)
    return max(1, nodes * per_node)


def check_flags(args: argparse.Namespace, res: Resources) -> None:
    """The cluster projection's flags, validated before any calibration."""
    if args.nodes < 1 or args.node_cpus is not None and args.node_cpus < 1 or args.node_gpus < 0:
        raise ValueError(
            f"--nodes={args.nodes}, --node-cpus={args.node_cpus}, --node-gpus={args.node_gpus} are invalid: "
            "allowed --nodes >= 1, --node-cpus >= 1, --node-gpus >= 0"
        )
    if res.gpus_per_trial > 0 and args.nodes > 1 and args.node_gpus < res.gpus_per_trial:
        raise ValueError(
            f"--node-gpus={args.node_gpus} is invalid with --gpus-per-trial={res.gpus_per_trial:g}: "
            "allowed --node-gpus >= the GPUs a trial asks for"
        )


def _label(pack: Pack) -> str:
    """A pack's shape in at most 28 characters: widths, multi, training set (online: infinite data), loss, BN."""
    s = pack.spec
    n = "online" if s.data.n_train is None else f"n{s.data.n_train}"
    bn = f" bn:{s.student.student_bn}" if s.student.bn_kind.present else ""
    text = f"m{'-'.join(map(str, s.teacher.widths))} x{s.student.multi} {n} {s.train.loss}{bn}"
    return text if len(text) <= 28 else text[:27] + "~"


def report(packs: list[Pack], args: argparse.Namespace, res: Resources) -> str:
    """The dry run's text: per-pack estimates on this machine, then the projections (``res``: the plan's resources)."""
    threads = max(1, int(res.cpus_per_trial))
    cores = local_cores()
    here = slots_for(res.cpus_per_trial, 0.0, 1, cores, 0)
    began = time.perf_counter()
    costs = measure_shapes(packs, threads, workers=here)
    cost = cost_function(costs)
    took = time.perf_counter() - began
    timed = cost
    cost = lambda pack: timed(pack) + TRIAL_S  # noqa: E731 - Tune's own cost a trial: it dominates tiny packs
    local = lpt(schedule(packs, costs, here), cost, here)
    lines = [
        f"dry run: nothing started, nothing written; calibrated {len(costs)} shape(s) on this machine "
        f"in {took:.1f} s ({threads} thread(s) a pack)",
        f"{'pack':<28} {'runs':>5} {'steps':>9} {'est. s':>8} {'slot':>4} {'start s':>8} {'end s':>8}",
    ]
    for p in local[:SHOWN_PACKS]:
        lines.append(
            f"{_label(p.pack):<28} {p.pack.size:>5} {p.pack.spec.total_steps:>9,} {p.end - p.start:>8.1f} "
            f"{p.slot:>4} {p.start:>8.1f} {p.end:>8.1f}"
        )
    if len(local) > SHOWN_PACKS:  # a factorial of thousands of packs: the longest, then the rest in one line
        rest = local[SHOWN_PACKS:]
        lines.append(f"... {len(rest):,} more packs of {min(p.end - p.start for p in rest):.1f}-"
                     f"{max(p.end - p.start for p in rest):.1f} s each")  # fmt: skip
    total = sum(p.end - p.start for p in local)
    split = f" (the plan's {len(packs)} split along seeds to fill the slots)" if len(local) != len(packs) else ""
    wall = makespan(local) + RAY_OVERHEAD_S
    lines.append(
        f"this machine: {cores} CPU(s), {here} pack(s) at a time ({res.cpus_per_trial:g} CPU a trial): "
        f"{len(local)} packs{split}, {total:,.0f} s of pack time, projected wall {wall:,.0f} s ({wall / 60:.1f} min)"
    )
    if args.nodes > 1 or args.node_gpus > 0 or args.node_cpus is not None:
        node_cpus = args.node_cpus if args.node_cpus is not None else cores
        gpus = res.gpus_per_trial
        slots = slots_for(res.cpus_per_trial, gpus, args.nodes, node_cpus, args.node_gpus)
        remote_costs = measure_shapes(packs, gpu=True) if gpus > 0 else costs
        remote = cost_function(remote_costs)
        placed = lpt(schedule(packs, remote_costs, slots), remote, slots)
        wall = makespan(placed) + RAY_OVERHEAD_S
        what = f"{args.node_gpus} GPU(s) a node, {gpus:g} a trial" if gpus > 0 else f"{node_cpus} CPUs a node"
        gpu_basis = "H100-measured step and checkpoint times, or the flops at its fp32 peak where longer"
        basis = gpu_basis if gpus > 0 else "this machine's per-core speed"
        lines.append(
            f"cluster of {args.nodes} node(s), {what}: {slots} pack(s) at a time, {len(placed)} packs, "
            f"projected wall {wall:,.0f} s ({wall / 60:.1f} min), from {basis}"
        )
    return "\n".join(lines)
