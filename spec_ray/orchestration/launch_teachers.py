"""Teachers from data at launch: every stored teacher a sweep names is in its storage root, under
its content hash, before any trial starts; runs read it from there (``load``).

``resolve`` only reads: a pretrained teacher the root already holds (by its key), a checkpoint
file's content hash. ``provide`` does the work, after the launch is planned and storage checked:
it pretrains what is missing (once per root: a later sweep finds it by key) and copies loaded
files in. Bad input (a missing or unreadable checkpoint, shapes the spec does not give) raises
``ValueError`` naming the file and the layer, before any training.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from spec_ray.engine.inputs import recipe
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.training.pack import Pack
from spec_ray.orchestration.experiment import Experiment, teacher_ref
from spec_ray.storage.teacher_store import TeacherStore, digest


@dataclass(frozen=True)
class Resolution:
    """An experiment with the stored teachers it names filled in, and those still to store."""

    experiment: Experiment
    missing: Mapping[str, RunSpec]
    """teacher_ref -> a run that needs it, for the teachers the root does not hold yet."""


def _file_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise ValueError(f"teacher.load_teacher={path!r}: no such file: allowed a checkpoint path (the authors' "
                         "{'net': state_dict} format)")  # fmt: skip
    with open(path, "rb") as f:
        return f.read()


def _check_file(blob: bytes, spec: RunSpec, path: str) -> None:
    """The checkpoint fits the spec's teacher (torch is imported here, not at launch planning)."""
    from spec_ray.engine.inputs import teacher_checkpoints

    teacher_checkpoints.network(teacher_checkpoints.from_bytes(blob, path), spec, path)


def absent_datasets(runs: list[RunSpec]) -> list[str]:
    """The image sets the runs name whose files are not where they look."""
    from spec_ray.engine.inputs import datasets

    return sorted(
        {r.data.dataset for r in runs if r.data.real and not datasets.present(r.data.dataset, r.data.data_dir)}
    )


def check_datasets(runs: list[RunSpec]) -> None:
    """Read every real image set the runs name, once: a missing, partial or corrupt folder raises
    ``DatasetError`` (a ValueError) naming the file, before anything trains."""
    from spec_ray.engine.inputs import datasets

    for name, folder in sorted({(r.data.dataset, r.data.data_dir) for r in runs if r.data.real}, key=str):
        datasets.read(name, folder)


def resolve(experiment: Experiment, storage: str, check_data: bool = True) -> Resolution:
    """Check the image sets (``check_data``: a dry run times absent ones on stand-ins), and fill in
    the hashes of the teachers the storage root holds and of checkpoint files (read here)."""
    store = TeacherStore(storage)
    known, missing = dict(experiment.teachers), {}
    runs = experiment.runs()
    if check_data:
        check_datasets(runs)
    named = {r.teacher.load_teacher for r in runs if r.teacher.stored and teacher_ref(r) is None}
    for name in sorted(named):
        store.get(name)  # a teacher named by its hash must be in this root, unchanged (once each)
    for run in runs:
        ref = teacher_ref(run)
        if ref is None or ref in known or ref in missing:
            continue
        if run.teacher.source_kind.from_file:
            blob = _file_bytes(run.teacher.load_teacher)
            _check_file(blob, run, run.teacher.load_teacher)
            name = digest(blob)
            if store.meta(name) is not None:
                known[ref] = name
            else:
                missing[ref] = run
            continue
        name = store.find(recipe.key(run))
        if name is not None:
            known[ref] = name
        else:
            missing[ref] = run
    return Resolution(dataclasses.replace(experiment, teachers=known), missing)


def provide(resolution: Resolution, storage: str, log=sys.stderr) -> Experiment:
    """Store every missing teacher (pretrain it, or copy its file in) and return the experiment
    naming them all."""
    from spec_ray.engine.inputs import pretrain, teacher_checkpoints

    store = TeacherStore(storage)
    known = dict(resolution.experiment.teachers)
    for ref, run in resolution.missing.items():
        t = run.teacher
        if t.source_kind.from_file:
            blob = _file_bytes(t.load_teacher)
            state = teacher_checkpoints.from_bytes(blob, t.load_teacher)
            known[ref] = store.put(blob, {"source": t.source, "path": t.load_teacher, "bn_bias": bn_biases(state)})
            continue
        shape = "-".join(map(str, t.widths))
        print(f"pretraining a {run.model.arch} teacher {shape} on {run.data.dataset} (once per storage root) ...",
              file=log, flush=True)  # fmt: skip
        done = pretrain.pretrain(run)
        key = recipe.key(run)
        blob = teacher_checkpoints.to_bytes(done.state, test_accuracy=done.test_accuracy, **done.extra)
        name = store.put(blob, {"source": run.teacher.source, "key": key, "test_accuracy": done.test_accuracy,
                                "train_accuracy": done.train_accuracy, "seconds": round(done.seconds, 1),
                                "bn_bias": bn_biases(done.state)})  # fmt: skip
        store.remember(key, name)
        print(f"  test accuracy {done.test_accuracy:.2%} after {done.seconds:.0f} s: stored as {name}", file=log)
        known[ref] = name
    return dataclasses.replace(resolution.experiment, teachers=known)


def bn_biases(state: dict) -> list[list[float]]:
    """The BN biases of a checkpoint's hidden layers, lowest first (Luck Matters figs. 4, 14 read them)."""
    out, layer = [], 0
    while f"ws_bn.{layer}.bias" in state:
        out.append([round(float(b), 6) for b in state[f"ws_bn.{layer}.bias"].reshape(-1).tolist()])
        layer += 1
    return out


def load(pack: Pack, storage: str) -> dict:
    """The state dicts of the pack's stored teachers, by hash, read from the storage root."""
    names = {r.teacher.load_teacher for r in pack.runs if r.teacher.stored}
    if not names:
        return {}
    from spec_ray.engine.inputs import teacher_checkpoints

    store = TeacherStore(storage)
    return {name: teacher_checkpoints.from_bytes(store.get(name), name) for name in names}
