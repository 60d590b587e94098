"""Decide what a sweep launch will do, before Ray starts; reads storage, writes nothing.

``plan`` takes a typed ``LaunchRequest`` (the experiment, storage, resume mode, the resource
flags given, the device, reuse) and returns a ``Launch``: a fresh sweep, or a resume of the
stored one. The driver then fixes the new packs' schedule (``Launch.scheduled``) and commits
sweep.json (``Launch.commit``); everything it trains is read off the launch.

A resume reloads the packs and resources from ``sweep.json``, so a rerun of the same command (a
requeued SLURM job, a retried RayJob) finishes exactly the stored sweep; it checks every stored
pack (``storage.verify``) and trains again those with missing or corrupt files; and it grows
the sweep: runs the flags add (more seeds, another axis value) are packed apart and trained, or
copied where another experiment of the storage root has them done. Every refusal is a
ValueError naming the flag and the allowed values.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import partial

from spec_ray.engine.kinds.precisions import PRECISIONS
from spec_ray.engine.specs.spec import NO_BF16, RunSpec, check_matmul_precision
from spec_ray.engine.specs.spec_io import flat_fields
from spec_ray.engine.training.pack import Pack, run_id
from spec_ray.orchestration import mkl_dispatch
from spec_ray.orchestration.experiment import Experiment, axis_path, pack_runs
from spec_ray.storage import manifest
from spec_ray.storage import schema as S
from spec_ray.storage.ledger import Ledger, of_files
from spec_ray.storage.manifest import LEDGERS, has_tables, load_sweep, sweep_digest
from spec_ray.storage.reuse import Source, copy_pack, find_done
from spec_ray.storage.summaries import write_winner_ranks
from spec_ray.storage.traces import BLOCK_EPOCHS, TraceStore
from spec_ray.storage.verify import BROKEN, COMPLETE, UNFINISHED, PackCheck, long_layout, pack_tables, strays, verify

SWEEP_VERSION = 2  # 2: the authors' teachers, reported loss units, shuffled-pass epochs (docs/protocol.md)
RESUME_ENV = "SPEC_RAY_RESUME"  # "auto" makes every launch resume when the sweep exists
RESUME_MODES = ("yes", "auto")
REUSE_MODES = ("root", "none")
"""--reuse: root copies runs another experiment of the storage root has done; none trains every run."""


@dataclass(frozen=True)
class Resources:
    """What each trial gets and how failures are retried; stored in sweep.json, fixed by a resume."""

    cpus_per_trial: float = 1.0
    """CPUs a trial (one pack) reserves; also its torch thread count."""
    gpus_per_trial: float = 0.0
    """GPUs a trial reserves: 0 trains on the CPU, a fraction shares one GPU."""
    max_failures: int = 3
    """Retries of a failed trial, each from its last checkpoint."""
    block_epochs: int = BLOCK_EPOCHS
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


def resume_mode(flag: str | None) -> str | None:
    """None (a fresh sweep), 'yes' (must exist) or 'auto' (resume if it exists); from --resume or the env."""
    mode = flag if flag is not None else (os.environ.get(RESUME_ENV) or None)
    if mode is not None and mode not in RESUME_MODES:
        raise ValueError(f"{RESUME_ENV}={mode!r} is invalid: allowed {', '.join(RESUME_MODES)} or unset")
    return mode


@dataclass(frozen=True)
class LaunchRequest:
    """What a launch is asked to do: the typed inputs of ``plan`` (``commandline.request_from_args``
    builds one from the flags)."""

    experiment: Experiment
    storage: str
    """A local path or a URI: the storage root the experiment's folder is in."""
    resume: str | None = None
    """None: a fresh sweep; 'yes': continue (or grow) the stored one; 'auto': resume if it exists."""
    given: Mapping[str, float] = field(default_factory=dict)
    """The resource flags given, by ``Resources`` field name (a flag left out is absent, not None);
    a resume may not change them."""
    device: str | None = None
    """``spec_ray run``'s --device (checked where it trains); None: a sweep trains by its GPU share."""
    reuse: str = "root"
    """root: copy runs another experiment of the storage root has done; none: train every run."""
    block_epochs: int = BLOCK_EPOCHS
    """A fresh sweep's default epochs per file (a smoke's is shorter)."""

    def __post_init__(self) -> None:
        if self.resume not in (None, *RESUME_MODES):
            raise ValueError(f"--resume={self.resume!r} is invalid: allowed {', '.join(RESUME_MODES)} or none")
        if self.reuse not in REUSE_MODES:
            raise ValueError(f"--reuse={self.reuse!r} is invalid: allowed {', '.join(REUSE_MODES)}")
        unknown = set(self.given) - set(asdict(Resources()))
        if unknown:
            raise ValueError(f"resources {sorted(unknown)} are invalid: allowed {', '.join(asdict(Resources()))}")


def _resources(given: Mapping[str, float], stored: dict | None, default_block: int) -> Resources:
    """The flags over the defaults for a fresh sweep; the stored values for a resume, which a flag may not change."""
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


@dataclass(frozen=True)
class Launch:
    """What a sweep launch will do, decided by ``plan`` before anything starts or is written."""

    experiment: Experiment
    """The experiment as asked (flags and smoke applied)."""
    store: TraceStore
    resources: Resources
    """The flags over the defaults; a resume's stored values."""
    resume: bool
    """A stored sweep is continued (or grown)."""
    stored: tuple[Pack, ...]
    """The stored sweep's packs (empty for a fresh one)."""
    new: tuple[Pack, ...]
    """Packs of runs no stored pack holds, to train (scheduled before launch)."""
    copies: tuple[Pack, ...]
    """Packs of new runs already done in another experiment of the storage root: copied, not trained."""
    sources: Mapping[str, Source]
    """Where each copied run's rows are."""
    checks: tuple[PackCheck, ...]
    """``verify`` of every stored pack."""
    left_out: int
    """Stored runs these flags do not name (kept, and finished if unfinished)."""
    meta: dict
    """sweep.json as it stands before this launch (its packs are replaced at launch)."""
    strays: tuple[str, ...] = ()
    """Files and folders no stored pack lists (a second launch's packs, a copy beside a block): removed at commit."""
    basis: str | None = None
    """The digest of the sweep.json this launch was planned on (None: there was none)."""

    @property
    def retrain(self) -> tuple[Pack, ...]:
        """Stored packs whose files are corrupt or short although their runs are marked done: trained afresh."""
        return tuple(c.pack for c in self.checks if c.state == BROKEN)

    @property
    def unfinished(self) -> tuple[Pack, ...]:
        return tuple(c.pack for c in self.checks if c.state == UNFINISHED)

    @property
    def restore(self) -> bool:
        """Tune's saved state can finish the sweep as it is: nothing new, nothing to retrain."""
        return self.resume and not self.new and not self.copies and not self.retrain

    @property
    def todo(self) -> tuple[Pack, ...]:
        """Every pack this launch trains."""
        return (*self.retrain, *self.unfinished, *self.new)

    def packs(self) -> list[Pack]:
        """The sweep's packs after this launch: the stored ones as they were, then the copies and new ones."""
        return [*self.stored, *self.copies, *self.new]

    def scheduled(self, new: list[Pack]) -> Launch:
        """This launch with its new packs as the scheduler cut and ordered them (the same runs)."""
        if sorted(r for p in new for r in p.run_ids) != sorted(r for p in self.new for r in p.run_ids):
            raise ValueError("a schedule must hold exactly the launch's new runs")
        return dataclasses.replace(self, new=tuple(new))

    def current(self) -> bool:
        """Whether sweep.json is still what this launch was planned on (another launch may have
        committed between the plan and taking the lease)."""
        return sweep_digest(self.store) == self.basis

    def commit(self, rebuild: bool = False) -> str:
        """Remove the strays, give an older spec-ray's complete packs their ledgers, write sweep.json and copy
        the copied packs' rows (``commit_sweep``); the Tune folder. ``rebuild``: Tune's stored state
        is unreadable, so a new Tune run is started."""
        for path in self.strays:
            self.store.remove(path)
        for check in self.checks:
            if check.state == COMPLETE:
                keep_older(self.store, check)
        return commit_sweep(self.store, self.meta, self.packs(), restore=self.restore and not rebuild,
                            resume=self.resume, copies=self.copies, sources=dict(self.sources),
                            block_epochs=self.resources.block_epochs)  # fmt: skip


def keep_older(store: TraceStore, check: PackCheck) -> None:
    """An older spec-ray's complete pack: its ledger, once it has been decoded whole (later checks read
    checksums), and its winner ranks made from its long-layout correlations (later reports read them)."""
    pack = check.pack
    ledger = (
        Ledger.load(store, pack.pack_id)
        if check.checksums
        else of_files(store, pack.pack_id, pack_tables(pack.spec, None))
    )
    if ledger is None:
        return
    changed = not check.checksums
    if pack.spec.checkpoint.keep_correlations and long_layout(ledger) and not ledger.paths(S.WINNER_RANKS):
        files = ledger.paths(S.CORRELATIONS)
        ledger.add(write_winner_ranks(store, pack.pack_id, pack.spec.total_steps, files, long=True))
        changed = True
    if changed:
        ledger.save()


def _changed(stored: list[RunSpec], asked: list[RunSpec], axes: set[str]) -> list[str]:
    """Settings that are no axis of these flags and share no value with the stored sweep's: each is a
    changed fixed setting (the run length, a teacher width), which the stored runs did not run with."""
    ignore = {"seed", "init_seed", *axes}
    before = [flat_fields(r) for r in stored]
    after = [flat_fields(r) for r in asked]
    out = []
    for name in before[0]:
        old, new = {f[name] for f in before}, {f[name] for f in after}
        if name not in ignore and old.isdisjoint(new):
            out.append(f"{name}: stored {' '.join(map(str, sorted(old, key=str)))}, "
                       f"asked {' '.join(map(str, sorted(new, key=str)))}")  # fmt: skip
    return out


def plan(request: LaunchRequest) -> Launch:
    """Validate everything and decide what to train; reads storage, writes nothing.

    A resume reloads the stored packs and resources; runs the request adds are packed apart
    (``Launch.new``), or copied where another experiment of the storage root has them done
    (``Launch.copies``).
    """
    experiment, mode, block = request.experiment, request.resume, request.block_epochs
    storage = request.storage
    resources = _resources(request.given, None, block)  # the flags alone, checked before any lookup
    store = TraceStore(storage, experiment.name)
    asked = experiment.packs()  # validates every run of the factorial, also before a resume
    if request.device is None:  # a sweep trains by its GPU share; spec_ray run checks --device
        where = "cuda" if resources.gpus_per_trial > 0 else "cpu"
        for value in sorted({r.train.matmul_precision for p in asked for r in p.runs}):
            if PRECISIONS[value].needs_bf16_unit and where == "cpu":  # measured once, where the trials run
                if not mkl_dispatch.bf16_applies_in_workers():  # (their MKL preload)
                    raise ValueError(f"train.matmul_precision={value!r} is invalid: allowed {NO_BF16}")
            else:
                check_matmul_precision(value, where)
    found = load_sweep(store)  # read once: its record, packs and digest
    stored = None if found is None else found.meta
    if stored is None and has_tables(store):
        raise ValueError(
            f"name={experiment.name!r} in storage={storage!r} holds tables but no sweep.json (lost, or its launch "
            f"died before writing it), so its rows can be neither checked nor resumed: allowed a new --name, or "
            f"removing {store.uri} first"
        )
    if stored is None and mode == "yes":
        raise ValueError(f"--resume: no sweep {experiment.name!r} in storage={storage!r}: allowed an existing one")
    if stored is not None and mode is None:
        raise ValueError(
            f"name={experiment.name!r} already exists in storage={storage!r}: "
            "allowed --resume to continue or grow it, or a new --name"
        )
    old: list[Pack] = []
    if stored is not None:
        if stored.get("version") != SWEEP_VERSION:
            raise ValueError(
                f"--resume: sweep {experiment.name!r} was written by an older spec-ray (sweep.json version "
                f"{stored.get('version', 1)}), whose teacher, loss units and epochs differ: allowed a sweep of "
                f"version {SWEEP_VERSION}; start it again under a new --name"
            )
        old = found.packs
        resources = _resources(request.given, stored.get("resources", {"block_epochs": stored["block_epochs"]}), block)
    have = {r for p in old for r in p.run_ids}
    added = [r for p in asked for r in p.runs if run_id(r) not in have]
    if old and added:
        axes = {axis_path(n).rpartition(".")[2] for n in experiment.axes}
        variants = experiment.variants.values()
        axes |= {path.rpartition(".")[2] for named in variants for s in named.values() for path in s}
        changed = _changed([r for p in old for r in p.runs], [r for p in asked for r in p.runs], axes)
        if changed:
            raise ValueError(
                f"--resume: these flags change what the stored sweep {experiment.name!r} ran ("
                + "; ".join(changed)
                + "): allowed the stored values, new values of an axis, or a new --name"
            )
    sources = find_done(store, {run_id(r) for r in added}) if added and request.reuse == "root" else {}
    copied = [r for r in added if run_id(r) in sources]
    fresh = [r for r in added if run_id(r) not in sources]
    pack = partial(pack_runs, pack_size=experiment.pack_size, pack_memory=experiment.pack_memory)
    meta = dict(stored) if stored is not None else {"version": SWEEP_VERSION, "name": experiment.name, LEDGERS: 1}
    meta.update(block_epochs=resources.block_epochs, resources=asdict(resources))
    checks = verify(store, old, found is not None and found.ledgers)
    return Launch(
        experiment=experiment,
        store=store,
        resources=resources,
        resume=stored is not None,
        stored=tuple(old),
        new=tuple(pack(fresh) if fresh else ()),
        copies=tuple(pack(copied) if copied else ()),
        sources=sources,
        checks=tuple(checks),
        left_out=len(have - {run_id(r) for p in asked for r in p.runs}),
        meta=meta,
        strays=tuple(strays(store, old) + [f for c in checks for f in c.extra]) if old else (),
        basis=None if found is None else found.digest,
    )


def commit_sweep(store: TraceStore, meta: dict, packs: list[Pack], *, restore: bool, resume: bool,
                 copies: tuple[Pack, ...], sources: dict, block_epochs: int) -> str:  # fmt: skip
    """Write sweep.json (``packs``: the stored ones as they were, then the copied and new ones)
    unless Tune's state is restored as it is, then copy the copied packs' rows from ``sources``.
    Returns the Tune folder of this launch."""
    meta = dict(meta)
    if not restore:
        meta["sweep"] = manifest.packs_to_dict(meta["name"], packs)
        meta["tune_dir"] = manifest.next_tune_dir(meta) if resume else manifest.TUNE_DIR
        manifest.write_sweep(store, meta)
    for pack in copies:
        copy_pack(store, pack, sources, block_epochs)
    return meta.get("tune_dir", manifest.TUNE_DIR)
