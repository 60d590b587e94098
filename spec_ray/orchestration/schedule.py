"""How long each pack takes, and how a sweep's packs fill the slots it has.

A pack's time is its construction, its SGD steps and its checkpoints. Each part is timed
on sub-packs of the real shape: one shared-minibatch group, then up to 32 runs. The SGD step
is also timed at the pack's full size on random tensors, since large packs step slower per
run. Between and beyond those points, costs are straight lines in the pack's runs
(``measure``, into ``costs.ShapeCost``); checked against real sweeps in benchmarks/sweep.py
(docs/performance.md). A shape whose calibration would itself run past ``costs.CALIBRATION_BOUND_S`` is
priced from its flops instead (``costs.flops_cost``).
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

from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.training.pack import Pack, shape_key
from spec_ray.orchestration import mkl_dispatch
from spec_ray.orchestration.children import in_children
from spec_ray.orchestration.costs import (  # the records and flops a schedule is made of; their old home
    CALIBRATION_BOUND_S,
    CALIBRATION_RUNS,
    CALIBRATION_STEPS,
    Curve,
    ShapeCost,
    at_most,
    calibration_floor,
    flops_cost,
    gpu_cost,
)

# Below this much estimated work a sweep keeps its packs as planned: cutting them gains
# seconds at most, and a smoke sweep stays the same from run to run.
MIN_SCHEDULED_S = 60.0


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


def measure_shapes(packs: list[Pack], threads: int = 1, gpu: bool = False, workers: int = 1) -> dict[tuple, ShapeCost]:
    """One ``ShapeCost`` per distinct shape, calibrated on its largest pack (GPU: ``gpu_cost``; a shape whose
    calibration would take over ``CALIBRATION_BOUND_S``: ``flops_cost``).

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
    huge = {
        key: flops_cost(p, threads) for key, p in largest.items() if calibration_floor(p, threads) > CALIBRATION_BOUND_S
    }
    largest = {key: p for key, p in largest.items() if key not in huge}
    if not largest:
        return huge
    # Measured on a Zen 3: a large-FC BN step 57 ms without the MKL preload, 38 ms with it, so a driver
    # that calibrated in its own process priced BN packs 1.4x too high.
    here = (workers <= 1 or len(largest) <= 1) and not mkl_dispatch.pending()
    if here or at_most(packs) < MIN_SCHEDULED_S:  # a sweep too small to schedule: timed here, 0.4 s not 3.5 s
        return {**huge, **{key: measure(p, threads) for key, p in largest.items()}}
    costs = in_children(measure, list(largest.values()), [threads] * len(largest), workers=min(workers, len(largest)))
    return {**huge, **dict(zip(largest, costs))}


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
