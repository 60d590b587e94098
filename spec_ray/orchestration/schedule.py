"""How long each pack takes, and how a sweep's packs fill the slots it has.

A pack's time is its construction, its SGD steps and its checkpoints. Each part is timed
on sub-packs of the real shape: one shared-minibatch group, then up to 32 runs. The SGD step
is also timed at the pack's full size on random tensors, since large packs step slower per
run. Between and beyond those points, costs are straight lines in the pack's runs
(``measure``); checked against real sweeps in benchmarks/sweep.py (docs/performance.md).
Packs then start longest first, and packs too long to balance are split along their
shared-minibatch groups (seeds). A split keeps every result unchanged: a run's data,
minibatches and initialisation depend on its own spec only (tests/test_packed.py).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from spec_ray.engine.nets import arch
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.training.pack import Pack, checkpoint_steps, shape_key, train_metric_steps
from spec_ray.orchestration import mkl_dispatch
from spec_ray.orchestration.children import in_children

CALIBRATION_RUNS = 32  # the larger calibration sub-pack: enough runs for the per-run slope
CALIBRATION_STEPS = 64  # one chunk of the trainer
# An H100 runs these shapes launch-bound: 0.3-0.55 ms a pack step whatever the width, and
# 11-24 ms a checkpoint (docs/performance.md, "GPU"). The GPU projection uses the middle.
GPU_STEP_S = 4.5e-4
GPU_CHECKPOINT_S = 0.02
GPU_PREPARE_S = 1.0
GPU_FP32_FLOPS = {"ieee": 67e12, "tf32": 495e12}
"""An H100 SXM's fp32 peak by ``train.matmul_precision`` (NVIDIA's datasheet, dense; an H200's is the same):
no pack can step or measure faster than its flops at this rate. The constants above were measured on
launch-bound two-layer packs and say nothing of a wide ConvNet."""
# Below this much estimated work a sweep keeps its packs as planned: cutting them gains
# seconds at most, and a smoke sweep stays the same from run to run.
MIN_SCHEDULED_S = 60.0


def useful_flops(spec: RunSpec) -> float:
    """Useful SGD flops of one run's step: forward and backward of each layer, 6 B (fan_in+1) fan_out
    (a conv layer: at each output position)."""
    return 6.0 * spec.train.batch * sum(arch.student(spec).macs)


def metric_flops(spec: RunSpec) -> float:
    """Matmul flops of one run's checkpoint metrics over its whole schedule, as
    ``spec_ray.engine.measure.metrics`` takes them: the eval set's student forward and correlations
    at every checkpoint and once at init, the teacher's eval activations once, and on the
    train-metric schedule the training set's teacher and student forward, the gradient
    (about two forwards) and the correlations."""
    student, teacher = arch.student(spec), arch.teacher(spec)
    forward = sum(student.macs)  # multiply-adds a sample
    teacher_forward = sum(teacher.macs[:-1])  # its hidden layers
    corr = sum(m * n * p for m, n, p in zip(teacher.widths, student.widths, student.positions))
    steps = checkpoint_steps(spec)
    train = len(set(steps) & train_metric_steps(spec)) if spec.data.n_train is not None else 0
    evals = spec.data.n_eval * ((len(steps) + 1) * (forward + corr) + teacher_forward)
    trains = (spec.data.n_train or 0) * train * (teacher_forward + 3 * forward + corr)
    return 2.0 * (evals + trains)


@dataclass(frozen=True)
class Curve:
    """Seconds as a function of a pack's runs: straight lines between measured (runs, seconds)
    points, extended from the end segments; proportional to runs through a single point."""

    points: tuple[tuple[int, float], ...]
    """Measured (runs, seconds), sorted by runs; seconds made non-decreasing against noise."""

    @staticmethod
    def through(points: list[tuple[int, float]]) -> Curve:
        best, out = 0.0, []
        for runs, seconds in sorted(points):
            best = max(best, seconds)
            out.append((runs, best))
        return Curve(tuple(out))

    def at(self, runs: int) -> float:
        pts = self.points
        if len(pts) == 1:
            return pts[0][1] * runs / pts[0][0]
        segment = next((i for i in range(len(pts) - 1) if runs <= pts[i + 1][0]), len(pts) - 2)
        (r0, t0), (r1, t1) = pts[segment], pts[segment + 1]
        return max(0.0, t0 + (t1 - t0) / (r1 - r0) * (runs - r0)) if r1 > r0 else t1


@dataclass(frozen=True)
class ShapeCost:
    """Calibrated costs of one pack shape on one device and thread count."""

    prepare: Curve
    """Building teachers, data and labels."""
    step: Curve
    """One SGD step of every run."""
    checkpoint: Curve
    """Eval-set metrics and their rows."""
    train_checkpoint: Curve
    """What the training-set metrics add on their schedule."""
    best_runs: int | None = None
    """The pack size with the cheapest step per run (None: any size); larger packs are split."""

    def seconds(self, pack: Pack) -> float:
        """Estimated wall time of the whole pack."""
        spec, runs = pack.spec, pack.size
        steps = checkpoint_steps(spec)
        with_train = len(set(steps) & train_metric_steps(spec)) if spec.data.n_train is not None else 0
        return (
            self.prepare.at(runs)
            + spec.total_steps * self.step.at(runs)
            + (len(steps) + 1) * self.checkpoint.at(runs)  # + 1: the initial correlations
            + with_train * self.train_checkpoint.at(runs)
        )


def _flat(seconds: float) -> Curve:
    return Curve(((1, seconds), (2, seconds)))


def gpu_cost(pack: Pack) -> ShapeCost:
    """A GPU's costs for this pack's shape: the measured H100 constants, or the pack's flops at the fp32
    peak (``GPU_FP32_FLOPS``) where those take longer. A floor, not a measurement, for packs that big."""
    spec, checkpoints = pack.spec, len(checkpoint_steps(pack.spec)) + 1
    peak = GPU_FP32_FLOPS.get(spec.train.matmul_precision, GPU_FP32_FLOPS["ieee"])
    sizes = sorted({1, 2, pack.size, *(2**i for i in range(pack.size.bit_length()))})

    def curve(launch_bound: float, flops_a_run: float) -> Curve:
        return Curve.through([(r, max(launch_bound, r * flops_a_run / peak)) for r in sizes])

    metrics_a_checkpoint = metric_flops(spec) / checkpoints
    return ShapeCost(
        prepare=_flat(GPU_PREPARE_S),
        step=curve(GPU_STEP_S, useful_flops(spec)),
        checkpoint=curve(GPU_CHECKPOINT_S, metrics_a_checkpoint),
        train_checkpoint=_flat(GPU_CHECKPOINT_S),
    )


def synthetic_step_seconds(spec: RunSpec, runs: int, k: int, steps: int = 16) -> float:
    """Seconds of the trainer's step (fused, or ``general.step``) on random tensors of a pack's
    shapes: no data to build, so a whole large pack is timed in a fraction of a second."""
    import torch

    from spec_ray.engine.nets import arch
    from spec_ray.engine.training import precision
    from spec_ray.engine.training.general import Batch, Tensors
    from spec_ray.engine.training.scratch import Workspace
    from spec_ray.engine.training.steps import step_for
    from spec_ray.engine.training.trainer import fresh_state

    dt = getattr(torch, spec.train.dtype)
    shape = arch.student(spec)
    b, c, groups = spec.train.batch, spec.teacher.c, max(1, runs // k)
    layers = tuple(0.1 * torch.randn(runs, o, i + 1, dtype=dt) for i, o in zip(shape.fan_ins, shape.outs))
    x = torch.randn(groups, b, spec.data.d + 1, dtype=dt)  # (G, B, d+1)
    stat = torch.empty(runs, dtype=dt)  # (R,)
    labels = spec.train.loss_kind.labels
    t = torch.randint(0, c, (runs, b)) if labels else torch.randn(runs, b, c, dtype=dt)  # (R, B) or (R, B, c)
    step = step_for(spec)  # the trainer's own choice, state and step wiring, on random layers
    state = fresh_state(spec, shape, layers)
    tensors = Tensors(state.params, state.buffers, state.opt)
    lr, alive = torch.full((runs, 1, 1), 1e-4, dtype=dt), torch.ones(runs, dtype=torch.bool)  # (R, 1, 1), (R,)
    args = step.prepare(spec, lr, alive, b, x, Workspace())
    batch = Batch(x, t, stat, alive)

    def one() -> None:
        step.take(spec, shape, k, tensors, batch, args, 1)

    with precision.training(spec.train.matmul_precision, "cpu"):  # timed as the trainer runs it
        one()  # warm
        clock = time.perf_counter()
        for _ in range(steps):
            one()
    return (time.perf_counter() - clock) / steps


def measure(pack: Pack, threads: int = 1) -> ShapeCost:
    """Time construction, steps and checkpoints of this pack's shape on this machine (about a second)."""
    import torch

    from spec_ray.engine.inputs import datasets, teacher_checkpoints
    from spec_ray.engine.measure import metrics
    from spec_ray.engine.training.trainer import init_state, prepare, train_until
    from spec_ray.storage.records import checkpoint_tables

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    pack, scale = _calibration_pack(pack)
    k, spec = pack.group_size, pack.spec
    sizes = sorted({1, min(pack.groups, max(2, CALIBRATION_RUNS // k))})
    warm = min(8, spec.total_steps // 4)  # buffers, first kernels
    steps = max(1, min(CALIBRATION_STEPS, spec.total_steps - warm))  # never past the run's last step
    points: dict[str, list[tuple[int, float]]] = {"prepare": [], "step": [], "checkpoint": [], "train": []}
    try:
        for groups in sizes:
            sub = Pack(pack.runs[: groups * k])
            stand_ins = {
                r.teacher.load_teacher: teacher_checkpoints.placeholder(r) for r in sub.runs if r.teacher.stored
            }
            d = spec.data  # an image set not at hand (a dry run's projection) is timed on random images
            images = datasets.stand_in(d.dataset) if d.real and not datasets.present(d.dataset, d.data_dir) else None
            clock = time.perf_counter()
            data = prepare(sub, stand_ins, images)  # a stored teacher's shapes, not its weights: timing only
            points["prepare"].append((sub.size, time.perf_counter() - clock))
            state = train_until(sub, data, init_state(sub), warm)
            clock = time.perf_counter()
            state = train_until(sub, data, state, state.step + steps)
            points["step"].append((sub.size, (time.perf_counter() - clock) / steps))
            cache = metrics.prepare(sub, data)  # once per pack; also warms the metrics' kernels
            clock = time.perf_counter()
            checkpoint_tables(sub, metrics.measure(sub, data, state, cache, with_train=False))
            t_ck = time.perf_counter() - clock
            points["checkpoint"].append((sub.size, t_ck))
            t_tr = 0.0
            if spec.data.n_train is not None and spec.checkpoint.train_every_epochs:
                clock = time.perf_counter()
                metrics.measure(sub, data, state, cache, with_train=True)
                t_tr = max(0.0, time.perf_counter() - clock - t_ck)
            points["train"].append((sub.size, t_tr))
        # Past some size a pack steps slower per run (measured on the 2-core CPU at multi 10:
        # 33 us a run-step up to 48 runs, 55 us at 162): its weights leave the caches. The
        # trainer's step on random tensors, at sizes up to the whole pack, scaled to the measured
        # step, gives the curve and the cheapest size.
        mid, t_mid = points["step"][-1]
        sizes = sorted({k * g for g in (1, 2, 4, 8, 16, 32, 64) if k * g <= pack.size} | {mid, pack.size})
        synthetic = {r: synthetic_step_seconds(spec, r, k) for r in sizes}
        ratio = t_mid / synthetic[mid]
        points["step"] += [(r, t * ratio) for r, t in synthetic.items() if r > mid]
        cheapest = min(t / r for r, t in synthetic.items())
        best = max(r for r, t in synthetic.items() if t / r <= 1.05 * cheapest)  # the largest within 5 %
    finally:
        torch.set_num_threads(old_threads)
    scaled = {name: [(r, t * scale[name]) for r, t in pts] for name, pts in points.items()}
    return ShapeCost(
        prepare=Curve.through(scaled["prepare"]),
        step=Curve.through(scaled["step"]),
        checkpoint=Curve.through(scaled["checkpoint"]),
        train_checkpoint=Curve.through(scaled["train"]),
        best_runs=best,
    )


CALIBRATION_IMAGES = (2048, 512)
"""Training and evaluation images a real image set is calibrated on; its construction and checkpoint
costs are scaled up to the full sets (labelling CIFAR-10's 50,000 images through a float64 ConvNet
teacher took 375 s of one calibration, measured)."""


def _calibration_pack(pack: Pack) -> tuple[Pack, dict[str, float]]:
    """A real image set's pack on fewer images, and the factors that scale its costs back: construction
    with the images labelled, checkpoints with the evaluation set, train-set metrics with the training set."""
    d = pack.spec.data
    n, ne = CALIBRATION_IMAGES
    if not d.real or (d.n_train <= n and d.n_eval <= ne):
        return pack, dict.fromkeys(("prepare", "step", "checkpoint", "train"), 1.0)
    n, ne = min(n, d.n_train), min(ne, d.n_eval)
    runs = tuple(r.replace(**{"data.n_train": n, "data.n_eval": ne}) for r in pack.runs)
    scale = {"prepare": (d.n_train + d.n_eval) / (n + ne), "step": 1.0, "checkpoint": d.n_eval / ne,
             "train": d.n_train / n}  # fmt: skip
    return Pack(runs, placement=pack.placement), scale


SLOW_STEP_S = 2e-3
"""More than any small pack's SGD step costs besides its flops (measured: 0.1-0.5 ms on a 2-core CPU)."""
SLOW_FLOPS = 1e9
"""Fewer flops a second than any CPU this runs on reaches on a pack's matmuls (a 2-core CPU: 60-180 G)."""


def at_most(packs: list[Pack]) -> float:
    """An upper bound of the packs' seconds from their steps and flops alone, without timing anything: where
    it is under ``MIN_SCHEDULED_S`` the packs are launched as planned, and calibrating them beside each other
    in processes of their own (3.5 s for a smoke sweep, measured) would buy nothing."""
    total = 0.0
    for pack in packs:
        spec = pack.spec
        steps = spec.total_steps * (SLOW_STEP_S + pack.size * useful_flops(spec) / SLOW_FLOPS)
        total += steps + pack.size * metric_flops(spec) / SLOW_FLOPS + 0.05 * len(checkpoint_steps(spec))
    return total


def measure_shapes(packs: list[Pack], threads: int = 1, gpu: bool = False, workers: int = 1) -> dict[tuple, ShapeCost]:
    """One ``ShapeCost`` per distinct shape, calibrated on its largest pack (GPU: ``gpu_cost``).

    ``workers`` > 1 calibrates shapes side by side in that many processes: packs of a sweep
    share the machine's memory bandwidth, and one pack timed alone ran up to 35 % faster
    than beside another (docs/performance.md). A driver without the MKL preload its workers get
    calibrates in children too (``mkl_dispatch.pending``).
    """
    largest: dict[tuple, Pack] = {}
    for p in packs:
        key = shape_key(p.spec)
        if key not in largest or p.size > largest[key].size:
            largest[key] = p
    if gpu:
        return {key: gpu_cost(p) for key, p in largest.items()}
    # Measured on a Zen 3: a large-FC BN step 57 ms without the MKL preload, 38 ms with it, so a driver
    # that calibrated in its own process priced BN packs 1.4x too high.
    here = (workers <= 1 or len(largest) <= 1) and not mkl_dispatch.pending()
    if here or at_most(packs) < MIN_SCHEDULED_S:  # a sweep too small to schedule: timed here, 0.4 s not 3.5 s
        return {key: measure(p, threads) for key, p in largest.items()}
    costs = in_children(measure, list(largest.values()), [threads] * len(largest), workers=min(workers, len(largest)))
    return dict(zip(largest, costs))


def cost_function(costs: dict[tuple, ShapeCost]) -> Callable[[Pack], float]:
    """Estimated seconds of any pack whose shape was calibrated."""
    return lambda pack: costs[shape_key(pack.spec)].seconds(pack)


@dataclass(frozen=True)
class SlotRun:
    """Where and when a pack runs in a projected schedule."""

    pack: Pack
    slot: int
    start: float
    end: float


def lpt(packs: list[Pack], cost: Callable[[Pack], float], slots: int) -> list[SlotRun]:
    """Longest first, each pack on the slot that frees up first: what Tune does with packs in this order."""
    free = [(0.0, s) for s in range(max(1, slots))]
    heapq.heapify(free)
    out = []
    for pack in sorted(packs, key=cost, reverse=True):
        start, slot = heapq.heappop(free)
        end = start + cost(pack)
        out.append(SlotRun(pack, slot, start, end))
        heapq.heappush(free, (end, slot))
    return out


def makespan(slot_runs: list[SlotRun]) -> float:
    return max((p.end for p in slot_runs), default=0.0)


def cut(pack: Pack, parts: int) -> list[Pack]:
    """``pack`` in about ``parts`` pieces of whole shared-minibatch groups, in order."""
    k, groups = pack.group_size, pack.groups
    parts = max(1, min(groups, parts))
    edges = [round(i * groups / parts) for i in range(parts + 1)]
    return [Pack(pack.runs[a * k : b * k]) for a, b in zip(edges[:-1], edges[1:]) if b > a] if parts > 1 else [pack]


def split(packs: list[Pack], cost: Callable[[Pack], float], piece: float) -> list[Pack]:
    """Each pack cut into about cost/piece parts."""
    return [part for pack in packs for part in cut(pack, math.ceil(cost(pack) / piece))]


def resize(packs: list[Pack], costs: dict[tuple, ShapeCost]) -> list[Pack]:
    """Packs larger than their shape's cheapest size cut into pieces of whole groups no larger
    (a split changes no result, and each piece steps faster per run)."""
    out: list[Pack] = []
    for pack in packs:
        best = costs[shape_key(pack.spec)].best_runs
        fits = best is None or pack.size <= best
        out += [pack] if fits else cut(pack, math.ceil(pack.size / max(best, pack.group_size)))
    return out


def schedule(packs: list[Pack], costs: dict[tuple, ShapeCost], slots: int) -> list[Pack]:
    """The packs a sweep launches: at their cheapest size, balanced over the slots, longest first."""
    cost = cost_function(costs)
    if sum(cost(p) for p in packs) < MIN_SCHEDULED_S:
        return sorted(packs, key=cost, reverse=True)
    return balance(resize(packs, costs), cost, slots)


def balance(packs: list[Pack], cost: Callable[[Pack], float], slots: int, tolerance: float = 0.05) -> list[Pack]:
    """Packs longest first, split along whole groups where that brings the schedule's end closer
    to a perfect share (within ``tolerance``); the fewest splits that do it best. One slot, or a
    balanced sweep: the packs as they are."""
    total = sum(cost(p) for p in packs)
    best = sorted(packs, key=cost, reverse=True)
    best_end = makespan(lpt(best, cost, slots))
    for per_slot in (2, 3, 4, 6, 8):  # pieces a slot on average: room to even out the tail
        if slots <= 1 or best_end <= (1 + tolerance) * total / slots:
            break
        candidate = sorted(split(packs, cost, total / (per_slot * slots)), key=cost, reverse=True)
        end = makespan(lpt(candidate, cost, slots))
        if end < 0.999 * best_end:
            best, best_end = candidate, end
    return best
