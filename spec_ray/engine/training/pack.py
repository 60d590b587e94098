"""A pack: runs with equal tensor shapes trained together, and its checkpoint schedule.

Runs in a pack may differ in anything that leaves shapes and loop length alone (seed,
p, lr, init scale, sigma, augmentation, ...). Runs that share a *data key* (same seed
and data) see the same minibatches, so the packed trainer gives their layer-1 weights
one wider matmul. Runs are kept group-major: group g holds runs g*k .. g*k+k-1.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from spec_ray.engine.nets import arch
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.specs.spec_io import flat_fields, flat_roles, flat_value

if TYPE_CHECKING:  # torch is imported where a pack trains: the read side (verify, analysis) runs without it
    import torch

# The registries the fields' roles give (spec_ray.engine.specs.roles), read on every pack and run id.
ROLES = flat_roles()
PER_RUN_FIELDS = frozenset(name for name, role in ROLES.items() if role.per_run)
"""Fields that change no tensor shape, loop length or code path; all others must agree in a pack."""
DATA_FIELDS = tuple(name for name, role in ROLES.items() if role.data)
"""Fields that decide a run's inputs and minibatch order (teacher-aware data also depends on
the teacher's layer 1, hence its weight choices and bias)."""
NEUTRAL = {name: flat_value(role.neutral) for name, role in ROLES.items() if not role.in_id_always}
"""Fields added after results were first stored, at the value that leaves a run as it was (no
BatchNorm, ReLU, plain SGD, ...): there they stay out of the run id, so ids of stored runs hold
across versions. Fields that act only with another one (image_size with conv, leaky_slope with
leaky_relu, the BN affine flags with BN) are neutral at their defaults."""


def _digest(obj: object, size: int) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:size]


LOCATIONS = frozenset(name for name, role in ROLES.items() if role.location)
"""Fields that say where inputs are read from, never part of a run id (``roles``)."""


def run_id(spec: RunSpec) -> str:
    """Stable id of a run: a hash of every field that shapes its result (``NEUTRAL`` fields only
    off their neutral value, ``LOCATIONS`` never)."""
    return id_of_fields(flat_fields(spec))


def id_of_fields(flat: dict[str, object]) -> str:
    """``run_id`` of a flat record (``flat_fields``, or a runs-table row's spec columns): what ``verify``
    rehashes a stored run by. A field the record lacks counts as neutral (a table older than it)."""
    fields = {name: value for name, value in flat.items() if name in ROLES and name not in LOCATIONS}
    for name, neutral in NEUTRAL.items():
        if fields.get(name, neutral) == neutral:
            fields.pop(name, None)
    return _digest(fields, 16)


def shape_key(spec: RunSpec) -> tuple:
    """Runs with equal shape keys can share a pack."""
    fields = flat_fields(spec)
    return tuple(sorted((k, v) for k, v in fields.items() if k not in PER_RUN_FIELDS))


def data_key(spec: RunSpec) -> tuple:
    """Runs with equal data keys see identical inputs and minibatches."""
    fields = flat_fields(spec)
    return tuple(fields[k] for k in DATA_FIELDS)


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' is invalid: no CUDA device here; allowed auto, cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Pack:
    """Runs of equal shapes, in group-major order.

    Derived values are cached: the trainer asks for the group size on every chunk, and
    each answer hashed every run's fields (10 % of a multi-10 pack's time, profiled).
    """

    runs: tuple[RunSpec, ...]
    """The runs; reordered group-major on construction."""
    placement: str = "cpu"
    """Where the pack trains: cpu | cuda | auto (CUDA when available). A sweep's trial sets it
    from its GPU share; it is part of no run or pack id, and ``trained_on`` records the result."""

    def __post_init__(self) -> None:
        if self.placement not in DEVICES:
            raise ValueError(f"device={self.placement!r} is invalid: allowed " + ", ".join(DEVICES))
        runs = tuple(self.runs)
        if not runs:
            raise ValueError("pack.runs=() is invalid: allowed one or more RunSpec")
        key = shape_key(runs[0])
        for r in runs[1:]:
            if shape_key(r) != key:
                diff = sorted(set(key) ^ set(shape_key(r)))
                raise ValueError(f"pack.runs mix shapes ({diff[:4]}): allowed equal shapes")
        ids = [run_id(r) for r in runs]
        if len(set(ids)) != len(ids):
            raise ValueError("pack.runs holds the same run twice: allowed distinct runs")
        groups: dict[tuple, list[RunSpec]] = {}
        for r in runs:
            groups.setdefault(data_key(r), []).append(r)
        ordered = tuple(r for g in groups.values() for r in g)
        object.__setattr__(self, "runs", ordered)

    @property
    def spec(self) -> RunSpec:
        """The first run; every shape field is the same across the pack."""
        return self.runs[0]

    @property
    def size(self) -> int:
        """R, runs in the pack."""
        return len(self.runs)

    @cached_property
    def group_size(self) -> int:
        """k, runs per shared-minibatch group; 1 when groups are unequal."""
        sizes = {}
        for r in self.runs:
            sizes[data_key(r)] = sizes.get(data_key(r), 0) + 1
        return next(iter(sizes.values())) if len(set(sizes.values())) == 1 else 1

    @cached_property
    def groups(self) -> int:
        """G, shared-minibatch groups (R = G * k)."""
        return self.size // self.group_size

    @cached_property
    def group_leaders(self) -> tuple[RunSpec, ...]:
        """One run per group: the source of the group's data and minibatch order."""
        return self.runs[:: self.group_size]

    @cached_property
    def run_ids(self) -> tuple[str, ...]:
        """Run ids in pack order."""
        return tuple(run_id(r) for r in self.runs)

    @cached_property
    def pack_id(self) -> str:
        """Stable id of the pack: a hash of its sorted run ids."""
        return _digest(sorted(self.run_ids), 12)

    @cached_property
    def device(self) -> torch.device:
        """The resolved device of the pack."""
        return resolve_device(self.placement)

    @cached_property
    def student_arch(self) -> arch.Arch:
        """The students' architecture (asked for on every step)."""
        return arch.student(self.spec)

    @cached_property
    def teacher_arch(self) -> arch.Arch:
        """The teachers' architecture."""
        return arch.teacher(self.spec)

    @cached_property
    def dtype(self) -> torch.dtype:
        """The training dtype."""
        import torch

        return getattr(torch, self.spec.train.dtype)


def checkpoint_steps(spec: RunSpec) -> list[int]:
    """Steps that get metrics: init, log-spaced ones in epoch 1, every k epochs, the end."""
    iters, epochs = spec.steps_per_epoch, spec.train.epochs
    ck = spec.checkpoint
    steps = {0, iters * epochs}
    if ck.first_epoch_points:
        steps.update(int(s) for s in np.unique(np.round(np.logspace(0, np.log10(iters), ck.first_epoch_points + 1))))
    steps.update(e * iters for e in range(ck.every_epochs, epochs + 1, ck.every_epochs))
    return sorted(s for s in steps if 0 <= s <= iters * epochs)


def train_metric_steps(spec: RunSpec) -> set[int]:
    """Checkpoints that also take training-set metrics: init, every k epochs, the end."""
    every = spec.checkpoint.train_every_epochs
    if every == 0:
        return set()
    iters, epochs = spec.steps_per_epoch, spec.train.epochs
    return {0, iters * epochs, *(e * iters for e in range(every, epochs + 1, every))}
