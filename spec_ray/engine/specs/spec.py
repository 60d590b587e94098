"""Typed experiment specs: one frozen dataclass per concept, validated on construction.

Defaults are the two-layer protocol of docs/protocol.md (d=100, m=20, c=50, sigma=1.5,
SGD lr 0.01, batch 16, 100 epochs x 1,000 iterations). Every invalid value raises
``ValueError`` naming the field and the allowed values, before any tensor exists.
Field names double as the ``runs`` table's column names (see ``spec_ray.storage.schema``).
This module holds ``RunSpec`` and the checks across sections; each section's dataclass and its
choices are in ``spec_ray.engine.specs.sections`` and are importable from here too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

from spec_ray.engine.kinds.precisions import PRECISIONS
from spec_ray.engine.specs.checks import MAX_SEEDS
from spec_ray.engine.specs.checks import check_int as _check_int
from spec_ray.engine.specs.checks import fail as _fail
from spec_ray.engine.specs.roles import role_field
from spec_ray.engine.specs.sections import (
    AUGMENTATIONS,
    BATCHNORMS,
    DTYPES,
    INITS,
    LAYER_KINDS,
    LOSSES,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRUNE_GROUPINGS,
    TEACHER_SOURCES,
    CheckpointSpec,
    DataSpec,
    ModelSpec,
    StudentSpec,
    TeacherSpec,
    TrainSpec,
)

__all__ = [
    "AUGMENTATIONS", "BATCHNORMS", "DTYPES", "INITS", "LAYER_KINDS", "LOSSES", "PRECISIONS", "NORMALIZATIONS",
    "OPTIMIZERS", "PRUNE_GROUPINGS", "TEACHER_SOURCES", "CheckpointSpec", "DataSpec", "ModelSpec", "StudentSpec",
    "TeacherSpec", "TrainSpec", "NO_BF16", "PRECISIONS_ON", "SECTIONS", "RunSpec", "apply_overrides",
    "check_matmul_precision", "bf16_applies", "seed_range",
]  # fmt: skip

PRECISIONS_ON = {device: tuple(p.name for p in PRECISIONS if device in p.devices) for device in ("cpu", "cuda")}
"""The matmul precisions each device runs (``spec_ray.engine.training.precision``), from their records."""


NO_BF16 = ("ieee on this CPU: a bf16 setting leaves its float32 matmuls as they were (measured), so bf16 would "
           "train in fp32 under a bf16 label")  # fmt: skip
BF16_MIN_CHANGE = 1e-4
"""Relative change of a product that only bf16 operands make: their 8 mantissa bits move it by about
1e-3, fp32's other summation orders by about 1e-7 (measured 2.7e-7 on a Zen 4 where bf16 did not apply)."""


@functools.cache
def bf16_applies() -> bool:
    """Whether a bf16 setting changes this process's float32 matmuls, measured on the trainer's batched
    matmul; not read off CPU flags, which mislead both ways: an Ice Lake without a bf16 unit passes
    torch's own test and still runs fp32 (measured: 0.0 change), and so does a Zen 4 with AVX512_BF16
    under the MKL preload (MKL, not oneDNN, takes its matmuls)."""
    try:
        import torch

        backend = torch.backends.mkldnn.matmul
        before = backend.fp32_precision
    except (ImportError, AttributeError):
        return False
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 64, 96, generator=gen), torch.randn(4, 96, 48, generator=gen)  # (P, B, n), (P, n, m)
    try:
        backend.fp32_precision = "ieee"
        exact = torch.bmm(a, b)  # (P, B, m)
        backend.fp32_precision = "bf16"
        rounded = torch.bmm(a, b)  # (P, B, m)
    except RuntimeError:
        return False
    finally:
        backend.fp32_precision = before
    return float((rounded - exact).norm() / exact.norm()) > BF16_MIN_CHANGE


def check_matmul_precision(value: str, device_type: str) -> None:
    """ValueError naming ``train.matmul_precision`` unless ``value`` runs on ``device_type`` (cpu, cuda)
    of this process: bf16 also needs a bf16 setting that changes its matmuls (``bf16_applies``, measured)."""
    allowed = PRECISIONS_ON.get(device_type, PRECISIONS.names_where(exact=True))
    if value not in allowed:
        _fail("train.matmul_precision", value, f"{', '.join(allowed)} on {device_type}")
    if PRECISIONS[value].needs_bf16_unit and device_type == "cpu" and not bf16_applies():
        _fail("train.matmul_precision", value, NO_BF16)


def seed_range(count: object) -> tuple[int, ...]:
    """Seeds 1..count, the ``--seeds N`` of every command line (ValueError past MAX_SEEDS)."""
    _check_int("seeds", count, 1, MAX_SEEDS)
    return tuple(range(1, count + 1))


@dataclass(frozen=True)
class RunSpec:
    """One training run: everything that determines its trajectory."""

    model: ModelSpec = field(default_factory=ModelSpec)
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    student: StudentSpec = field(default_factory=StudentSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    seed: int = role_field(1, per_run=True, data=True)
    """Seed of every random stream of the run (teacher, data, init, minibatch order)."""
    init_seed: int | None = role_field(None, per_run=True, neutral=None)
    """Seed of the student init alone; None: ``seed``. Runs that differ only in it share the
    teacher, data and minibatches: several students under one teacher."""

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0)
        if self.init_seed is not None:
            _check_int("init_seed", self.init_seed, 0)
        self._check_model()
        if self.data.n_train is not None and self.data.n_train < self.train.batch:
            _fail("data.n_train", self.data.n_train, f"at least train.batch={self.train.batch}")
        if self.data.n_train is None and self.train.iters_per_epoch is None:
            _fail("train.iters_per_epoch", None, "an integer >= 1 with online data (data.n_train None)")
        # Teacher rows must be distinct and non-zero (docs/protocol.md): the choice set
        # must hold enough distinct rows for every layer, fan-in = row length (a conv filter:
        # C_in x 3 x 3; the output layer: every channel at every position).
        fan_ins = self.model.layer_kind.fan_ins(self.data.d, self.teacher.widths, self.model.image_size,
                                                self.data.channels)  # fmt: skip
        fan_outs = (*self.teacher.widths, self.teacher.c)
        k = len(self.teacher.weight_choices)
        for layer, (rows, cols) in enumerate(zip(fan_outs, fan_ins), start=1):
            if self.teacher.stored:
                break  # a stored teacher's rows are what training made them
            if cols * math.log(k) < 60 and rows > k**cols - 1:
                _fail(
                    "teacher.widths",
                    self.teacher.widths,
                    f"layer {layer} needs {rows} distinct non-zero rows of length {cols}, "
                    f"but {k} weight choices give only {k**cols - 1}",
                )

    def _check_model(self) -> None:
        """Checks across sections: BN needs two samples, a conv stack must fit its image."""
        self._check_real()
        conv = self.model.layer_kind.conv
        if conv:
            side, channels = self.model.image_size, self.data.channels
            if self.data.d != channels * side * side:
                times = f"{channels} x " if channels > 1 else ""
                _fail("data.d", self.data.d, f"{times}model.image_size^2 = {channels * side * side} with "
                      "model.arch conv (set --d)")  # fmt: skip
            if self.teacher.depth > self.model.layer_kind.max_depth(side):
                most = self.model.layer_kind.max_depth(side)
                allowed = f"at most {most} conv layers on a {side} x {side} image (3x3 layers take 2 each)"
                _fail("teacher.widths", self.teacher.widths, allowed)
        if self.teacher.calibrate and (conv or self.teacher.bn_kind.present):
            _fail("teacher.calibrate", True, "false with a conv or BN teacher (calibration is the deep MLP protocol's)")
        if conv and self.checkpoint.keep_modulation:
            _fail("checkpoint.keep_modulation", True, "false with model.arch conv (beta* and H* are taken for MLPs)")
        if conv and self.data.augmentation_kind.teacher_aware:
            allowed = " or ".join(AUGMENTATIONS.names_where(teacher_aware=False))
            _fail("data.augmentation", self.data.augmentation, f"{allowed} with model.arch {self.model.arch}")
        if self.student.bn_kind.present:
            if self.train.batch < 2:
                _fail("train.batch", self.train.batch, "at least 2 with student.student_bn (batch statistics)")
            if not conv and self.last_batch < 2:
                _fail("data.n_train", self.data.n_train,
                      "a size whose last shuffled batch holds 2 or more samples with student.student_bn")  # fmt: skip

    def _check_real(self) -> None:
        """A real image set fixes the conv image; a stored teacher needs labels and the classes as outputs."""
        d, t = self.data, self.teacher
        if d.real and self.model.layer_kind.conv and self.model.image_size != d.image_set.side:
            _fail("model.image_size", self.model.image_size, f"{d.image_set.side} with data.dataset {d.dataset}")
        if t.source_kind.needs_labels and not d.real:
            unlabelled = " or ".join(TEACHER_SOURCES.names_where(needs_labels=False))
            _fail("teacher.source", t.source, f"{unlabelled} with data.dataset {d.dataset} (pretraining needs labels)")
        if t.stored and d.real and t.c != d.image_set.classes:
            _fail("teacher.c", t.c, f"{d.image_set.classes}, the classes of {d.dataset}, with teacher.source "
                  f"{t.source}")  # fmt: skip
        if t.stored and t.calibrate:
            _fail("teacher.calibrate", True, f"false with teacher.source {t.source}")

    @property
    def fused(self) -> bool:
        """A plain MLP student (no BN) under plain SGD: the hand-written fused step and passes apply."""
        return not self.model.layer_kind.conv and not self.student.bn_kind.present and self.train.plain_sgd

    @property
    def epoch_is_pass(self) -> bool:
        """True when an epoch is one shuffled pass over the training set (iters_per_epoch None)."""
        return self.train.iters_per_epoch is None

    @property
    def steps_per_epoch(self) -> int:
        """SGD steps in one epoch: iters_per_epoch, or ceil(N/B) for a shuffled pass."""
        if self.epoch_is_pass:
            return -(-self.data.n_train // self.train.batch)
        return self.train.iters_per_epoch

    @property
    def last_batch(self) -> int:
        """Rows of an epoch's last minibatch: the remainder N - (steps - 1) B of a pass, else B."""
        if self.epoch_is_pass:
            return self.data.n_train - (self.steps_per_epoch - 1) * self.train.batch
        return self.train.batch

    @property
    def total_steps(self) -> int:
        """SGD steps of the whole run."""
        return self.train.epochs * self.steps_per_epoch

    @property
    def student_widths(self) -> tuple[int, ...]:
        """Hidden widths n_l = multi * m_l of the student, over the teacher's nodes left after pruning."""
        return tuple(self.student.multi * w for w in self.teacher.active_widths)

    @property
    def authors_last_layer(self) -> bool:
        """The teacher's last hidden layer is pruned as model_gen.prune groups a conv net's output columns
        (mod C), which differs from its channels: the network keeps those 'pruned' channels, unmeasured."""
        t, m = self.teacher, self.model
        last = m.image_size - 2 * len(t.widths)  # an unpadded 3x3 conv layer trims a side by 2
        pruned = bool(t.prune) and int(t.widths[-1] * t.prune[-1]) > 0
        return pruned and t.prune_grouping_kind.authors_mod and m.layer_kind.conv and last > 1

    @property
    def teacher_kept_widths(self) -> tuple[int, ...]:
        """Nodes of each hidden layer the teacher network keeps: the active ones (``teacher.active_widths``,
        the ones measured, first), and the last layer whole where ``authors_last_layer``."""
        kept = self.teacher.active_widths
        return (*kept[:-1], self.teacher.widths[-1]) if self.authors_last_layer else kept

    def replace(self, **changes: object) -> RunSpec:
        """Copy with dotted-path changes, e.g. ``replace(**{"teacher.p": 1.0})``."""
        return apply_overrides(self, changes)


SECTIONS = tuple(f.name for f in dataclasses.fields(RunSpec) if f.default_factory is not dataclasses.MISSING)
"""RunSpec's sections (its fields that are dataclasses), in its order: model, teacher, ..., checkpoint."""


def apply_overrides(spec: RunSpec, changes: dict[str, object]) -> RunSpec:
    """Return ``spec`` with ``{"section.field": value}`` changes; unknown keys raise."""
    sections: dict[str, dict[str, object]] = {}
    top: dict[str, object] = {}
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        if section == "" and name in {f.name for f in dataclasses.fields(RunSpec)}:
            top[name] = value
            continue
        if section not in SECTIONS:
            _fail("override", key, "section.field with section in " + ", ".join(SECTIONS))
        names = {f.name for f in dataclasses.fields(getattr(spec, section))}
        if name not in names:
            _fail("override", key, f"a field of {section}: " + ", ".join(sorted(names)))
        sections.setdefault(section, {})[name] = value
    for section, fields_ in sections.items():
        top[section] = dataclasses.replace(getattr(spec, section), **fields_)
    return dataclasses.replace(spec, **top)
