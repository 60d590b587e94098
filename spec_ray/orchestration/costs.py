"""What a pack costs, as numbers: calibrated curves in its runs (``ShapeCost``), and what its flops alone say.

``schedule`` times shapes into ``ShapeCost``s; here are the records, the flops of a run's step and metrics,
the GPU projection (``gpu_cost``), the floor of a launch's work (``at_most``), and the price of a shape too
large to time (``flops_cost``, past ``CALIBRATION_BOUND_S``).
"""

from __future__ import annotations

from dataclasses import dataclass

from spec_ray.engine.nets import arch
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.training.pack import Pack, checkpoint_steps, train_metric_steps

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


FAST_CORE_FLOPS = 2e11
"""More fp32 flops a second than one core of any CPU this runs on reaches (the 2-core Ice Lake: 170-186 G a
core, benchmarks/peak.py): a pack's flops at this rate are a floor on its time, known without timing it."""
PACKED_CORE_FLOPS = 5e10
"""What the packed trainer reaches a core on large shapes (docs/performance.md: 50-114 GFLOP/s on 2 cores)."""
CALIBRATION_BOUND_S = 30.0
"""Longer than this, by its flops floor, and a shape is priced from its flops instead of timed (measured
before: the 640-channel CNN's calibration alone ran 20 minutes)."""


def calibration_floor(pack: Pack, threads: int = 1) -> float:
    """Seconds the calibration of this pack's shape takes at least: its timed steps and checkpoints."""
    runs = pack.group_size + min(pack.size, CALIBRATION_RUNS)
    flops = (8 + CALIBRATION_STEPS) * useful_flops(pack.spec) * runs + 2 * metric_flops(pack.spec) / max(
        1, len(checkpoint_steps(pack.spec)))  # fmt: skip
    return flops / (FAST_CORE_FLOPS * threads)


def flops_cost(pack: Pack, threads: int = 1) -> ShapeCost:
    """A shape too large to time: its steps and checkpoints at ``PACKED_CORE_FLOPS`` a thread, an estimate."""
    rate, checkpoints = PACKED_CORE_FLOPS * threads, len(checkpoint_steps(pack.spec)) + 1
    sizes = sorted({1, 2, pack.size})

    def curve(flops_a_run: float) -> Curve:
        return Curve.through([(r, r * flops_a_run / rate) for r in sizes])

    return ShapeCost(prepare=_flat(1.0), step=curve(useful_flops(pack.spec)),
                     checkpoint=curve(metric_flops(pack.spec) / checkpoints), train_checkpoint=_flat(0.0))  # fmt: skip
