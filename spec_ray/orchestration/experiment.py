"""An experiment: fixed settings plus axes, expanded to the full factorial and packed.

Axes are named by spec field (``p``, ``multi``, ``n_train``, ``seed``, ...; see
``AXES``) or by dotted path (``teacher.p``). ``m`` sets a one-hidden-layer teacher of
width m. Runs with equal shapes go to one pack (all seeds x p of a shape by default),
split into packs of at most ``pack_size`` runs, keeping shared-minibatch groups whole.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from spec_ray.engine.inputs import recipe
from spec_ray.engine.kinds import optim
from spec_ray.engine.nets import arch
from spec_ray.engine.specs.spec import SECTIONS, RunSpec, apply_overrides
from spec_ray.engine.training.pack import Pack, data_key, shape_key

MAX_RUNS = 10_000_000  # a factorial past this is refused before it is expanded


def _axis_paths() -> dict[str, str]:
    spec = RunSpec()
    paths = {"seed": "seed", "init_seed": "init_seed"}
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(spec, section)):
            paths[f.name] = f"{section}.{f.name}"
    return paths


AXES = _axis_paths()
"""Axis name -> dotted spec path; ``m`` is added as a shorthand for ``teacher.widths=(m,)``."""


def axis_path(name: str) -> str:
    """The dotted spec path of an axis name; raises ValueError naming the allowed ones."""
    if name == "m":
        return "teacher.widths"
    if name in AXES:
        return AXES[name]
    if name in AXES.values():
        return name
    raise ValueError(f"axis {name!r} is unknown: allowed m, " + ", ".join(sorted(AXES)))


@dataclass(frozen=True)
class Experiment:
    """A named sweep: fixed settings, axes of values, and how to pack the runs."""

    name: str
    """Experiment name: the folder under storage."""
    base: RunSpec = field(default_factory=RunSpec)
    """Fixed settings shared by every run."""
    axes: Mapping[str, tuple] = field(default_factory=dict)
    """Axis name -> values; the runs are their full factorial."""
    pack_size: int | None = None
    """Most runs per pack (None: all runs of one shape in one pack, memory permitting)."""
    pack_memory: int = 2 << 30
    """Bytes of device memory a pack may hold (data, labels, parameters); larger packs are split."""
    variants: Mapping[str, Mapping[str, Mapping[str, object]]] = field(default_factory=dict)
    """Axes of named bundles of settings that change together (a CNN is arch, image size, d and
    widths at once): {axis: {name: {dotted path: value}}}; crossed with each other and ``axes``."""
    exclude: tuple[Mapping[str, str], ...] = ()
    """Crossings of variants left out of the factorial, each {axis: name} (a real image set has no
    infinite data)."""
    default_variants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Variant names a command line runs when it names none of an axis (absent: every variant)."""
    teachers: Mapping[str, str] = field(default_factory=dict)
    """Stored teachers by ``teacher_ref`` -> content hash, set in every run's ``teacher.load_teacher``
    (``orchestration.launch_teachers.resolve`` fills it at launch)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", {k: tuple(v) for k, v in self.axes.items()})
        object.__setattr__(self, "variants", {k: dict(v) for k, v in self.variants.items()})
        for axis, named in self.variants.items():
            if not named:
                raise ValueError(f"variants {axis}={{}} is invalid: allowed one or more named settings")
            for settings in named.values():
                for path in settings:
                    axis_path(path)
        for name, values in self.axes.items():
            axis_path(name)
            if not values:
                raise ValueError(f"axis {name}=() is invalid: allowed one or more values")
            if len(set(values)) != len(values):
                raise ValueError(f"axis {name}={list(values)} is invalid: allowed distinct values")
        runs = math.prod(len(v) for v in (*self.axes.values(), *self.variants.values()))
        if runs > MAX_RUNS:
            sizes = " x ".join(f"{k} {len(v):,}" for k, v in self.axes.items())
            raise ValueError(f"axes={sizes} is invalid: {runs:,} runs; allowed at most {MAX_RUNS:,} runs a sweep")
        if self.pack_size is not None and (not isinstance(self.pack_size, int) or self.pack_size < 1):
            raise ValueError(f"pack_size={self.pack_size!r} is invalid: allowed an integer >= 1 or None")
        if not isinstance(self.pack_memory, int) or self.pack_memory < 1 << 20:
            raise ValueError(f"pack_memory={self.pack_memory!r} is invalid: allowed at least 1 MiB")

    def runs(self) -> list[RunSpec]:
        """Every run of the factorial, validated (raises ValueError on the first bad one)."""
        names = list(self.axes)
        runs = []
        axes = list(self.variants)
        for picked in itertools.product(*(named.items() for named in self.variants.values())):
            names_of = dict(zip(axes, (name for name, _ in picked)))
            if any(all(names_of.get(a) == n for a, n in rule.items()) for rule in self.exclude):
                continue
            base = apply_overrides(self.base, {k: v for _, settings in picked for k, v in settings.items()})
            for values in itertools.product(*(self.axes[n] for n in names)):
                changes = {axis_path(n): ((v,) if n == "m" else v) for n, v in zip(names, values)}
                run = apply_overrides(base, changes)
                ref = teacher_ref(run)
                if ref in self.teachers:
                    run = run.replace(**{"teacher.load_teacher": self.teachers[ref]})
                runs.append(run)
        return runs

    def select(self, axis: str, names: list[str]) -> Experiment:
        """Only the named variants of one variant axis (ValueError naming the allowed ones)."""
        named = self.variants.get(axis, {})
        unknown = [n for n in names if n not in named]
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"--{axis}={' '.join(names)} is invalid: allowed distinct names from {', '.join(named)}")
        return dataclasses.replace(self, variants={**self.variants, axis: {n: named[n] for n in names}})

    def packs(self) -> list[Pack]:
        """Runs grouped by shape, split to ``pack_size`` along shared-minibatch groups."""
        return pack_runs(self.runs(), self.pack_size, self.pack_memory)


def teacher_ref(spec: RunSpec) -> str | None:
    """What names a run's stored teacher before it is stored: its pretraining key, or the checkpoint
    path it loads; None for a drawn teacher or one already named by its hash."""
    t = spec.teacher
    if not t.stored or (t.load_teacher or "").startswith("sha256:"):
        return None
    if t.source_kind.from_file:
        return "file:" + t.load_teacher
    return "pretrained:" + json.dumps(recipe.key(spec), sort_keys=True)


def pack_runs(runs: list[RunSpec], pack_size: int | None, pack_memory: int) -> list[Pack]:
    """Runs grouped by shape, each shape split into packs of at most ``pack_size`` runs (and
    ``pack_memory`` bytes) along shared-minibatch groups."""
    by_shape: dict[tuple, list[RunSpec]] = {}
    for run in runs:
        by_shape.setdefault(shape_key(run), []).append(run)
    packs = []
    for runs in by_shape.values():
        limit = min(pack_size or len(runs), max(1, pack_memory // run_bytes(runs[0])))
        groups: dict[tuple, list[RunSpec]] = {}
        for run in runs:
            groups.setdefault(data_key(run), []).append(run)
        pieces = []  # whole groups, or slices of groups larger than a pack
        for group in groups.values():
            pieces += [group[i : i + limit] for i in range(0, len(group), limit)]
        chunk: list[RunSpec] = []
        for piece in pieces:
            if chunk and len(chunk) + len(piece) > limit:
                packs.append(Pack(tuple(chunk)))
                chunk = []
            chunk.extend(piece)
        packs.append(Pack(tuple(chunk)))
    return packs


def run_bytes(spec: RunSpec) -> int:
    """Device memory one run adds to a pack: its inputs and teacher labels on both sets (an
    upper bound: runs of a group share inputs), the teacher's eval activations kept for the
    metrics, parameters with their diverged copy and snapshot, optimizer state and BN
    statistics, minibatch buffers, and a step's activations kept for autograd. Checkpoint
    metrics work in bounded chunks on top of this."""
    item = spec.train.dtype_kind.bytes
    d, c, batch = spec.data.d, spec.teacher.c, spec.train.batch
    student, teacher = arch.student(spec), arch.teacher(spec)
    samples = (spec.data.n_train or 0) + spec.data.n_eval
    params = sum((f + 1) * n for f, n in zip(student.fan_ins, student.outs)) + 4 * sum(student.widths)
    state = 3 + optim.state_count(spec.train, 1)  # live, frozen, snapshot, optimizer state
    buffers = 64 * batch * (d + 1 + c)  # a chunk of gathered minibatches
    step = 4 * batch * sum(n * p for n, p in zip(student.widths, student.positions))  # autograd's saved tensors
    kept = spec.data.n_eval * sum(m * p for m, p in zip(teacher.widths, teacher.positions))  # EvalCache.teacher_unit
    return item * (samples * (d + 1 + c) + kept + state * params + buffers + step)
