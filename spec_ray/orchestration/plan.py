"""Decide what a sweep launch will do, before Ray starts or storage is touched.

``plan`` validates the flags and resources, decides between a fresh sweep and a resume,
and returns the packs. A resume reloads the packs and resources from ``sweep.json``, so
a rerun of the same command (a requeued SLURM job, a retried RayJob) finishes exactly
the stored sweep. Every refusal is a ValueError naming the flag and the allowed values.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import textwrap
from dataclasses import asdict, dataclass

from spec_ray.engine.pack import Pack
from spec_ray.engine.spec import RunSpec, flat_fields
from spec_ray.orchestration.experiment import Experiment, axis_path, packs_from_dict, packs_to_dict
from spec_ray.storage.traces import TraceStore

SWEEP_FILE = "sweep.json"
SWEEP_VERSION = 2  # 2: the authors' teachers, reported loss units, shuffled-pass epochs (docs/protocol.md)
RESUME_ENV = "SPEC_RAY_RESUME"  # "auto" makes every launch resume when the sweep exists
RESUME_MODES = ("yes", "auto")


@dataclass(frozen=True)
class Resources:
    """What each trial gets and how failures are retried; stored in sweep.json, fixed by a resume."""

    cpus_per_trial: float = 1.0
    """CPUs a trial (one pack) reserves; also its torch thread count."""
    gpus_per_trial: float = 0.0
    """GPUs a trial reserves: 0 trains on the CPU, a fraction shares one GPU."""
    max_failures: int = 3
    """Retries of a failed trial, each from its last checkpoint."""
    block_epochs: int = 10
    """Epochs per Parquet file and Tune checkpoint; fixes the stored files' names."""

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0:
            raise ValueError(f"--cpus-per-trial={self.cpus_per_trial:g} is invalid: allowed a number > 0")
        gpus = self.gpus_per_trial
        if not gpus >= 0 or (gpus > 1 and gpus != int(gpus)):
            raise ValueError(
                f"--gpus-per-trial={gpus:g} is invalid: allowed 0, a fraction of one GPU, or a whole number"
            )
        if self.max_failures < 0:
            raise ValueError(f"--max-failures={self.max_failures} is invalid: allowed an integer >= 0")
        if self.block_epochs < 1:
            raise ValueError(f"--block-epochs={self.block_epochs} is invalid: allowed an integer >= 1")


def resume_mode(args: argparse.Namespace) -> str | None:
    """None (a fresh sweep), 'yes' (must exist) or 'auto' (resume if it exists); from --resume or the env."""
    mode = args.resume if args.resume is not None else (os.environ.get(RESUME_ENV) or None)
    if mode is not None and mode not in RESUME_MODES:
        raise ValueError(f"{RESUME_ENV}={mode!r} is invalid: allowed {', '.join(RESUME_MODES)} or unset")
    return mode


def _read_sweep(store: TraceStore) -> dict | None:
    try:
        with store.fs.open_input_stream(posixpath.join(store.root, SWEEP_FILE)) as f:
            return json.loads(f.read().decode())
    except (FileNotFoundError, OSError):
        return None


def write_sweep(store: TraceStore, meta: dict) -> None:
    """Write sweep.json atomically (a temp file, then a rename)."""
    tmp = posixpath.join(store.root, f".tmp-{SWEEP_FILE}")
    with store.fs.open_output_stream(tmp) as f:
        f.write(json.dumps(meta, indent=1, sort_keys=True).encode())
    store.fs.move(tmp, posixpath.join(store.root, SWEEP_FILE))


def _resources(args: argparse.Namespace, stored: dict | None, default_block: int) -> Resources:
    """The flags over the defaults for a fresh sweep; the stored values for a resume, which a flag may not change."""
    given = {k: getattr(args, k) for k in asdict(Resources()) if getattr(args, k, None) is not None}
    if stored is None:
        return Resources(**{"block_epochs": default_block, **given})
    kept = Resources(**stored)
    for name, value in given.items():
        if value != getattr(kept, name):
            flag = "--" + name.replace("_", "-")
            raise ValueError(
                f"{flag}={value:g} cannot change on --resume: the stored sweep's trials run with "
                f"{flag} {getattr(kept, name):g}, and Tune restores them as they were: allowed {flag} "
                f"{getattr(kept, name):g} or leaving the flag out; or start a new --name"
            )
    return kept


def _check_device(experiment: Experiment, resources: Resources) -> None:
    device, gpus = experiment.base.train.device, resources.gpus_per_trial
    if device == "cuda" and gpus == 0:
        raise ValueError("train.device='cuda' is invalid with --gpus-per-trial 0: allowed auto or cpu, or give GPUs")
    if device == "cpu" and gpus > 0:
        raise ValueError(f"train.device='cpu' is invalid with --gpus-per-trial={gpus:g}: allowed auto or cuda")


def plan(
    experiment: Experiment, args: argparse.Namespace, default_block: int, dry: bool = False
) -> tuple[TraceStore, list[Pack], dict]:
    """Validate everything and decide the packs; raises ValueError before any side effect.

    Sets ``args.resume`` to whether this launch resumes a stored sweep. ``dry``: nothing is
    written, not even the storage probe.
    """
    mode = resume_mode(args)
    resources = _resources(args, None, default_block)  # the flags alone, checked before any lookup
    _check_device(experiment, resources)
    store = TraceStore(os.path.abspath(args.storage) if "://" not in args.storage else args.storage, experiment.name)
    packs = experiment.packs()  # validates every run of the factorial, also before a resume
    stored = _read_sweep(store)
    if stored is None and mode == "yes":
        raise ValueError(f"--resume: no sweep {experiment.name!r} in storage={args.storage!r}: allowed an existing one")
    if stored is not None and mode is None:
        raise ValueError(
            f"name={experiment.name!r} already exists in storage={args.storage!r}: "
            "allowed --resume to continue it, or a new --name"
        )
    args.resume = stored is not None
    if stored is not None:
        if stored.get("version") != SWEEP_VERSION:
            raise ValueError(
                f"--resume: sweep {experiment.name!r} was written by an older spec-ray (sweep.json version "
                f"{stored.get('version', 1)}), whose teacher, loss units and epochs differ: allowed a sweep of "
                f"version {SWEEP_VERSION}; start it again under a new --name"
            )
        old = {r for p in packs_from_dict(stored["sweep"]) for r in p.run_ids}
        new = {r for p in packs for r in p.run_ids}
        if old != new:
            raise ValueError(
                f"--resume: these flags describe another sweep than the stored {experiment.name!r} "
                f"({len(old - new)} of its {len(old)} runs left out, {len(new - old)} new): allowed the first "
                "launch's axis and spec flags again, or a new --name"
            )
        packs = packs_from_dict(stored["sweep"])
        kept = stored.get("resources", {"block_epochs": stored["block_epochs"]})
        resources = _resources(args, kept, default_block)
        _check_device(experiment, resources)
    for name, value in asdict(resources).items():
        setattr(args, name, value)
    if not dry:
        store.check_writable()
    fresh = {"version": SWEEP_VERSION, "name": experiment.name, "sweep": packs_to_dict(experiment.name, packs)}
    meta = dict(stored or fresh)
    meta.update(block_epochs=resources.block_epochs, resources=asdict(resources))
    return store, packs, meta


def _values(values: tuple) -> str:
    """'1 2 5 10', or '1..32' for a run of consecutive integers."""
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if ints and len(values) > 3 and list(values) == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}..{values[-1]}"
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def launch_summary(exp: Experiment, packs: list[Pack], store: TraceStore, args: argparse.Namespace) -> str:
    """What the sweep will do, on one screen: settings off the defaults, axes, runs and packs, storage, Ray."""
    default, base = flat_fields(RunSpec()), flat_fields(exp.base)
    shown_elsewhere = {axis_path(n).rpartition(".")[2] for n in exp.axes} | {"m", "depth", "steps_per_epoch"}
    shown_elsewhere |= {p.rpartition(".")[2] for named in exp.variants.values() for s in named.values() for p in s}
    changed = [f"{k}={v}" for k, v in base.items() if k not in shown_elsewhere and v != default.get(k)]
    spec = packs[0].spec
    small, large = min(p.size for p in packs), max(p.size for p in packs)
    steps = sorted({p.spec.steps_per_epoch for p in packs})
    per_epoch = str(steps[0]) if len(steps) == 1 else f"{steps[0]} to {steps[-1]}"
    lines = [
        f"sweep {exp.name}: {sum(p.size for p in packs)} runs in {len(packs)} packs "
        f"({small if small == large else f'{small} to {large}'} runs a pack)",
        textwrap.fill(
            ", ".join(changed) if changed else "the two-layer protocol's defaults",
            width=110,
            initial_indent="  settings: ",
            subsequent_indent=" " * 12,
            break_long_words=False,
        ),
        "  axes:     "
        + " x ".join(
            [
                *(f"{a} {_values(tuple(v))}" for a, v in exp.variants.items()),
                *(f"{n} {_values(v)}" for n, v in exp.axes.items()),
            ]
        ),  # fmt: skip
        f"  length:   {spec.train.epochs} epochs x {per_epoch} steps"
        + (" (one shuffled pass)" if spec.passes else "")
        + f", {spec.train.dtype} on {spec.train.device}",
        f"  storage:  {store.root}" + ("  (resuming the stored sweep)" if args.resume else ""),
        f"  ray:      {args.address or os.environ.get('RAY_ADDRESS') or 'a running cluster, else a new local Ray'}; "
        f"{args.cpus_per_trial:g} CPU, {args.gpus_per_trial:g} GPU a trial, {args.max_failures} retries",
    ]
    return "\n".join(lines)
