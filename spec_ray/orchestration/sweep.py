"""Run an ``Experiment`` on Ray Tune: one trial per pack, fault tolerant and resumable.

Every sweep script calls ``main(EXPERIMENT, smoke=...)``, which provides the common flags
(``--storage --name --seeds --epochs --iters-per-epoch --smoke --resume [auto] --address
--cpus-per-trial --gpus-per-trial --pack-size``) plus one flag per axis or spec field, e.g.
``--m 10 --multi 1 5 --p 0 2``. Bad input exits 2 before Ray starts or storage is touched
(``plan``); what the cluster cannot do (GPUs, storage on every node) exits 2 before any
trial starts (``cluster``).

Storage layout under ``<storage>/<name>/``: the four Parquet tables (docs/schema.md),
``sweep.json`` (the packs, reloaded by ``--resume``) and ``tune/`` (Tune's own state).
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
import time
import typing

from spec_ray.engine.pack import Pack
from spec_ray.engine.protocols import Smoke
from spec_ray.engine.spec import RunSpec, seed_range
from spec_ray.engine.spec_io import spec_to_dict
from spec_ray.orchestration import dryrun, mkl_dispatch
from spec_ray.orchestration.cluster import (
    check_address,
    cluster_slots,
    gpu_shortfall,
    init_address,
    storage_shortfall,
)
from spec_ray.orchestration.experiment import AXES, Experiment, axis_path
from spec_ray.orchestration.flags import Parser, add_spec_flags
from spec_ray.orchestration.plan import (
    RESUME_ENV,
    RESUME_MODES,
    REUSE_MODES,
    Launch,
    Resources,
    launch_summary,
    plan,
)
from spec_ray.orchestration.schedule import calibrate_shapes, cost_function, lpt, makespan, schedule
from spec_ray.storage import schema as S
from spec_ray.storage.manifest import packs_to_dict, write_sweep
from spec_ray.storage.reuse import copy_pack
from spec_ray.storage.traces import BLOCK_EPOCHS, TraceStore

TUNE_DIR = "tune"


def _field_type(path: str) -> type:
    if "." not in path:  # seed, init_seed
        return typing.get_type_hints(RunSpec)[path]
    section, name = path.split(".")
    return typing.get_type_hints(type(getattr(RunSpec(), section)))[name]


def build_parser(experiment: Experiment, description: str) -> Parser:
    """The common sweep flags plus one flag per axis or spec field."""
    parser = Parser(description=description)
    add = parser.add_argument
    add("--storage", default="./results", help="local path, shared NFS path or URI (s3://, gs://); default ./results")
    add(
        "--name",
        default=None,
        help=f"experiment name (default {experiment.name}, {experiment.name}-smoke with --smoke)",
    )
    add("--smoke", action="store_true", help="a tiny version that finishes in under 2 minutes on a 2-core CPU")
    add(
        "--resume",
        nargs="?",
        const="yes",
        choices=RESUME_MODES,
        default=None,
        help="continue the stored sweep, finishing only what is missing; 'auto' resumes if it exists and starts "
        f"it otherwise (for requeued jobs; also {RESUME_ENV}=auto)",
    )
    add("--address", default=None, help="Ray address (default: RAY_ADDRESS, a running cluster, else a local Ray)")
    d = Resources()
    add("--cpus-per-trial", type=float, default=None, help=f"CPUs per trial (one pack); default {d.cpus_per_trial:g}")
    add("--gpus-per-trial", type=float, default=None, help="GPUs per trial, may be fractional; default 0")
    add("--pack-size", type=int, default=None, help="most runs per pack (default: all seeds x p of one shape)")
    add("--pack-memory-gib", type=float, default=2.0, help="device memory per pack; larger packs are split; default 2")
    add(
        "--max-failures",
        type=int,
        default=None,
        help=f"retries of a failed trial from its last checkpoint; default {d.max_failures}",
    )
    add(
        "--block-epochs",
        type=int,
        default=None,
        help=f"epochs per Parquet file and Tune checkpoint; default {BLOCK_EPOCHS}",
    )
    add("--seeds", type=int, default=None, help="seeds 1..N")
    add(
        "--reuse",
        choices=REUSE_MODES,
        default="root",
        help="root (default): copy runs another experiment of the "
        "storage root has done instead of training them; none: train every run (to compare devices or re-check)",
    )
    add("--verbose", action="store_true", help="Tune's own status tables and messages instead of one progress line")
    dry = parser.add_argument_group("dry run")
    dry.add_argument(
        "--dry-run",
        action="store_true",
        help="print the packs, their estimated times and the projected wall time; start and write nothing",
    )
    dry.add_argument("--nodes", type=int, default=1, help="with --dry-run: also project onto this many nodes")
    dry.add_argument("--node-cpus", type=int, default=None, help="with --dry-run: CPUs a node (default: this one's)")
    dry.add_argument("--node-gpus", type=int, default=0, help="with --dry-run: GPUs a node (default 0)")
    add("--online", action="store_true", help="online data: a fresh Gaussian batch every step (n_train = None)")
    parser.add_argument_group("axes").add_argument(
        "--m", type=int, nargs="+", default=None, help="one-hidden-layer teacher width(s) m (teacher.widths)"
    )
    add_spec_flags(parser)  # every spec field; several values make an axis
    variants = parser.add_argument_group("variants (settings that change together)")
    for axis, named in experiment.variants.items():
        variants.add_argument(f"--{axis}", nargs="+", default=None, metavar="NAME", help=_variant_help(named))
    return parser


def _variant_help(named: dict[str, dict[str, object]]) -> str:
    """'which of a, b to run (default: all); a: as set; b: widths=(50, 75), ...' for --help."""

    def settings(changes: dict[str, object]) -> str:
        return ", ".join(f"{path.rpartition('.')[2]}={value}" for path, value in changes.items()) or "as set"

    text = f"which of {', '.join(named)} to run (default: all); "
    return (text + "; ".join(f"{name}: {settings(changes)}" for name, changes in named.items())).replace("%", "%%")


def experiment_from_args(experiment: Experiment, args: argparse.Namespace, smoke: Smoke) -> Experiment:
    """Apply the --smoke preset, then the flags, to the declared experiment."""
    given = {name: getattr(args, name) for name in ["m", "seeds"] if getattr(args, name, None) is not None}
    given |= {name: getattr(args, name) for name in AXES if hasattr(args, name)}  # a flag left out sets nothing;
    # 'none' sets None (--iters-per-epoch none)
    values: dict[str, object] = dict(given)
    base, axes = experiment.base, dict(experiment.axes)
    if args.smoke:
        base = base.replace(**smoke.settings)
        axes.update(smoke.axes)
    fixed: dict[str, object] = {}
    for name, value in values.items():
        if name == "seeds":
            axes["seed"] = seed_range(value)
            continue
        path = axis_path(name)
        if typing.get_origin(_field_type(path)) is tuple and name != "m":
            items = [tuple(value) if isinstance(value, (list, tuple)) else (value,)]  # one tuple value
        else:
            items = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(items) == 1 and name not in axes:
            fixed[path] = (items[0],) if name == "m" else items[0]
        else:
            axes[name] = tuple(items)
        if name in ("m", "widths"):
            axes.pop("widths" if name == "m" else "m", None)
    if args.online:
        fixed["data.n_train"] = None
        axes.pop("n_train", None)
    base = base.replace(**fixed) if fixed else base
    name = args.name if args.name is not None else (f"{experiment.name}-smoke" if args.smoke else experiment.name)
    if not args.pack_memory_gib > 0:
        raise ValueError(f"--pack-memory-gib={args.pack_memory_gib} is invalid: allowed a number > 0")
    memory = int(args.pack_memory_gib * 2**30)
    variants = {**experiment.variants, **(smoke.variants if args.smoke else {})}
    exp = Experiment(name=name, base=base, axes=axes, pack_size=args.pack_size, pack_memory=memory, variants=variants)
    for axis in variants:
        if getattr(args, axis, None) is not None:
            exp = exp.select(axis, list(getattr(args, axis)))
    return exp


def label(pack: Pack) -> str:
    """Readable trial name part: the shape of the pack."""
    s = pack.spec
    return f"m{'-'.join(map(str, s.teacher.widths))}_x{s.student.multi}_n{s.data.n_train}_{s.train.loss}"


def trial_config(pack: Pack, fresh: bool) -> dict:
    """A trial's ``pack`` setting: its own runs (a trial parses nothing else), whether to train it afresh
    although its runs are stored as done (its files are short or corrupt), and its shape, last: Tune's
    console shows the end of this value."""
    return {"id": pack.pack_id, "fresh": fresh, "runs": [spec_to_dict(r) for r in pack.runs],
            "shape": f"{label(pack)}_r{pack.size}"}  # fmt: skip


def schedule_packs(packs: list[Pack], res: Resources) -> list[Pack]:
    """Longest first, split along seeds where one pack would finish long after the rest (``schedule``)."""
    began = time.perf_counter()
    gpu = res.gpus_per_trial > 0
    slots = cluster_slots(res.cpus_per_trial, res.gpus_per_trial)
    costs = calibrate_shapes(packs, max(1, int(res.cpus_per_trial)), gpu=gpu, workers=slots)
    cost = cost_function(costs)
    ordered = schedule(packs, costs, slots)
    wall = makespan(lpt(ordered, cost, slots))
    split = f"split into {len(ordered)}, " if len(ordered) != len(packs) else ""
    print(
        f"  schedule: {len(packs)} packs {split}longest first on {slots} slot(s); estimated {wall:,.0f} s of "
        f"training (calibrated in {time.perf_counter() - began:.1f} s{', GPU: H100 constants' if gpu else ''})",
        file=sys.stderr,
    )
    return ordered


def run_sweep(launch: Launch, args: argparse.Namespace) -> int:
    """Start Ray and Tune (or restore), wait, print where the results are. Returns an exit code."""
    import ray
    from ray import tune

    from spec_ray.orchestration.console import SweepConsole
    from spec_ray.orchestration.trial import train_pack

    store, res = launch.store, launch.resources
    if not launch.todo:  # every run copied from other experiments: no Ray needed
        commit(launch, launch.packs())
        return report_end(store, launch.packs(), 0.0, 0)
    # Every checkpoint is kept (one a block, a few MB): a driver killed between a checkpoint
    # and Tune's next state save leaves a state that names an older one, which must still
    # exist for --resume (measured: with two kept, a SIGKILLed sweep could not resume).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not os.environ.get("RAY_ADDRESS", "x"):
        del os.environ["RAY_ADDRESS"]  # an empty value means unset, not an address
    address = init_address(check_address(args.address))
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    shortfall = gpu_shortfall(res.gpus_per_trial) or storage_shortfall(store)
    if shortfall:
        print(f"error: {shortfall}", file=sys.stderr)
        ray.shutdown()
        if not launch.resume:
            store.remove_if_empty()
        return 2
    new = schedule_packs(list(launch.new), res) if launch.new else []
    packs = launch.packs(new)
    tune_dir = commit(launch, packs)
    todo = [*launch.retrain, *launch.unfinished, *new]
    trainable = tune.with_parameters(train_pack, storage=store.storage, experiment=store.experiment,
                                     block_epochs=res.block_epochs)  # fmt: skip
    trainable = tune.with_resources(trainable, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    verbose = bool(getattr(args, "verbose", False))
    if not verbose:  # Tune's newer console prints its configuration box and a TensorBoard hint even when silent
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    callbacks = [] if verbose else [SweepConsole({p.pack_id: (p.size, p.spec.total_steps) for p in todo})]
    began = time.perf_counter()
    state = posixpath.join(store.uri, tune_dir)
    if launch.restore and tune.Tuner.can_restore(state):
        tuner = tune.Tuner.restore(state, trainable, resume_errored=True)
    else:
        # Also a resume whose Tune state was never saved (a crash right after launch): Tune
        # starts afresh on the packs to train, and trials of packs already done return at once.
        retrain = {p.pack_id for p in launch.retrain}
        space = {
            # Each trial gets its own pack's runs; the shape makes the console and trial names readable.
            "pack": tune.grid_search([trial_config(p, p.pack_id in retrain) for p in todo]),
            "threads": max(1, int(res.cpus_per_trial)),
            "gpu_fraction": res.gpus_per_trial,
        }  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=_trial_folder),
            run_config=tune.RunConfig(
                name=tune_dir,
                storage_path=store.uri,
                failure_config=tune.FailureConfig(max_failures=res.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                verbose=1 if verbose else 0,  # Tune's tables only with --verbose; else SweepConsole's one line
                callbacks=callbacks,
            ),
        )
    results = tuner.fit()
    wall = time.perf_counter() - began
    errors = sum(1 for r in results if r.error is not None)
    return report_end(store, packs, wall, errors)


def commit(launch: Launch, packs: list[Pack]) -> str:
    """Write sweep.json (the stored packs as they were, then the copied and new ones) unless Tune's
    state is restored as it is, then copy the copied packs' rows. Returns the Tune folder."""
    meta = dict(launch.meta)
    if not launch.restore:
        meta["sweep"] = packs_to_dict(meta["name"], packs)
        meta["tune_dir"] = _next_tune_dir(meta) if launch.resume else TUNE_DIR
        write_sweep(launch.store, meta)
    for pack in launch.copies:
        copy_pack(launch.store, pack, launch.sources, launch.resources.block_epochs)
    return meta.get("tune_dir", TUNE_DIR)


def _trial_folder(trial) -> str:
    """A trial's folder under Tune's: its id and pack shape (Tune's default spells out the whole config)."""
    return f"{trial.trial_id}_{trial.config['pack']['shape']}"


def _next_tune_dir(meta: dict) -> str:
    """A fresh folder for Tune's state when a resume adds or retrains packs: Tune cannot add trials
    to a stored experiment (ray-project/ray#18847), so each such launch is a new Tune run."""
    now = meta.get("tune_dir", TUNE_DIR)
    generation = int(now.rpartition("-")[2]) + 1 if now != TUNE_DIR else 2
    return f"{TUNE_DIR}-{generation}"


def report_end(store: TraceStore, packs: list[Pack], wall: float, errors: int) -> int:
    """Print what landed where and the next command; exit 1 if any pack failed."""
    expected = sum(p.size for p in packs)
    try:
        runs = store.read(S.RUNS, columns=[S.RUN_ID, S.STATUS])
        done = int((runs[S.STATUS] == S.STATUS_DONE).sum())
    except (FileNotFoundError, OSError):
        done = 0
    where = store.uri
    print(f"\n{done}/{expected} runs done in {len(packs)} packs, {wall:.1f} s; {errors} pack(s) failed")
    tables = dict.fromkeys(t for p in packs for t in S.written_tables(p.spec))  # in order, once each
    print(f"results: {where}  (tables: {', '.join(tables)})")
    print(f"next:    python -m analysis report {where} --out {where}/report")
    if errors:
        print("resume:  rerun the same command with --resume to retry what failed")
    return 1 if errors or done < expected else 0


def main(experiment: Experiment, smoke: Smoke | None = None, argv: list[str] | None = None) -> int:
    """Entry point of every sweep script."""
    doc = (sys.modules["__main__"].__doc__ or "").strip()
    parser = build_parser(experiment, doc.splitlines()[0] if doc else None)
    args = parser.parse_args(argv)
    try:
        smoke = smoke or Smoke()
        exp = experiment_from_args(experiment, args, smoke)
        check_address(args.address)
        launch = plan(exp, args, smoke if args.smoke else None)
        mkl_dispatch.preload_environ()  # for the local Ray and calibration processes this driver starts
        if args.dry_run:
            dryrun.check_flags(args, launch.resources)
        else:
            launch.store.check_writable()  # before the launch summary: a refused launch prints one error
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(launch_summary(exp, launch, args), file=sys.stderr)
    if args.dry_run:
        todo = [*launch.todo] or launch.packs()
        print(dryrun.report(todo, args, launch.resources))
        return 0
    if launch.resume and not launch.todo and not launch.copies:
        print("nothing to train: every run these flags name is stored, and every stored pack is complete")
        return report_end(launch.store, launch.packs(), 0.0, 0)
    return run_sweep(launch, args)
