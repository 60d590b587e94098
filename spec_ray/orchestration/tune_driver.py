"""The Ray Tune driver: one trial per pack, fault tolerant and resumable.

``run_sweep`` takes a planned ``Launch``, starts (or joins) Ray, checks what the cluster can
do (GPUs, storage on every node), fixes the new packs' schedule, commits sweep.json and runs
the trials, with one progress line (``console``) unless ``--verbose``. ``report_end`` prints
where the results landed and the next command.

Storage layout under ``<storage>/<name>/``: the Parquet tables (docs/schema.md),
``sweep.json`` (the packs, reloaded by ``--resume``) and ``tune/`` (Tune's own state).
"""

from __future__ import annotations

import logging
import os
import posixpath
import shlex
import sys
import time
from typing import NamedTuple

from spec_ray.engine.specs.spec_io import spec_to_dict
from spec_ray.engine.training.pack import Pack, shape_key
from spec_ray.orchestration.cluster import (
    check_address,
    cluster_slots,
    code_identity,
    gpu_shortfall,
    init_address,
    local_gpu_shortfall,
    storage_shortfall,
)
from spec_ray.orchestration.commandline import resume_command
from spec_ray.orchestration.plan import Launch, Resources
from spec_ray.orchestration.schedule import cost_function, lpt, makespan, measure_shapes, schedule
from spec_ray.orchestration.summary import launch_summary
from spec_ray.storage import schema as S
from spec_ray.storage.manifest import TUNE_DIR
from spec_ray.storage.traces import TraceStore

GPU_NOTE = ", GPU: H100 constants or fp32 peak"  # costs.gpu_cost


def label(pack: Pack) -> str:
    """Readable trial name part: the shape of the pack."""
    s = pack.spec
    n = "online" if s.data.n_train is None else f"n{s.data.n_train}"
    bn = f"_bn-{s.student.student_bn}" if s.student.bn_kind.present else ""
    return f"m{'-'.join(map(str, s.teacher.widths))}_x{s.student.multi}_{n}_{s.train.loss}{bn}"


def trial_config(pack: Pack, fresh: bool, launch: Launch | None = None) -> dict:
    """A trial's ``pack`` setting: its own runs (a trial parses nothing else), whether to train it afresh
    although its runs are stored as done (its files are short or corrupt), where it writes when several
    launches train together (``launch``: its storage root, experiment and block length), and its shape,
    last: Tune's console shows the end of this value."""
    config = {"id": pack.pack_id, "fresh": fresh, "runs": [spec_to_dict(r) for r in pack.runs]}
    if launch is not None:
        store = launch.store
        config.update(storage=store.storage, experiment=store.experiment, block_epochs=launch.resources.block_epochs)
    return {**config, "shape": f"{label(pack)}_r{pack.size}"}


def schedule_packs(packs: list[Pack], res: Resources) -> list[Pack]:
    """Longest first, split along seeds where one pack would finish long after the rest (``schedule``)."""
    began = time.perf_counter()
    gpu = res.gpus_per_trial > 0
    slots = cluster_slots(res.cpus_per_trial, res.gpus_per_trial)
    costs = measure_shapes(packs, max(1, int(res.cpus_per_trial)), gpu=gpu, workers=slots)
    cost = cost_function(costs)
    ordered = schedule(packs, costs, slots)
    wall = makespan(lpt(ordered, cost, slots))
    split = f"split into {len(ordered)}, " if len(ordered) != len(packs) else ""
    print(
        f"  schedule: {len(packs)} packs {split}longest first on {slots} slot(s); estimated {wall:,.0f} s of "
        f"training (calibrated in {time.perf_counter() - began:.1f} s{GPU_NOTE if gpu else ''})",
        file=sys.stderr,
    )
    return ordered


def run_sweep(launch: Launch, address: str | None = None, verbose: bool = False, command: str | None = None) -> int:
    """Start Ray and Tune (or restore), wait, print where the results are. Returns an exit code;
    2 (nothing written) when the cluster cannot run the sweep."""
    store = launch.store
    command = command or resume_command()
    if not launch.todo:  # every run copied from other experiments: no Ray needed
        print(launch_summary(launch, "not started: every run to add is copied"), file=sys.stderr)
        launch.commit()
        return report_end(store, launch.packs(), 0.0, [], command)
    trained = train_launches([launch], address, verbose, command)
    if isinstance(trained, int):
        return trained
    return report_end(store, trained.launches[0].packs(), trained.wall, trained.errors, command)


class Trained(NamedTuple):
    """What ``train_launches`` ran: the launches as scheduled, Tune's wall time and each failed trial's error."""

    launches: list[Launch]
    wall: float
    errors: list


def train_launches(launches: list[Launch], address: str | None, verbose: bool, command: str,
                   costs: dict | None = None, together: str | None = None) -> Trained | int:  # fmt: skip
    """Train every launch's packs in one Tune run: one launch restores Tune's saved state where it can;
    several (``together``: the Tune folder's name under the first launch's storage root) are scheduled as
    one sweep on ``costs`` (calibrated already) and always start a new Tune run. Returns an exit code
    where the cluster refused the launch or a signal or a full disk stopped it."""
    import ray

    from spec_ray.orchestration.faults import Stop, ended_by

    store, res = launches[0].store, launches[0].resources
    # Every checkpoint is kept (one a block, a few MB): a driver killed between a checkpoint
    # and Tune's next state save leaves a state that names an older one, which must still
    # exist for --resume (measured: with two kept, a SIGKILLed sweep could not resume).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not os.environ.get("RAY_ADDRESS", "x"):
        del os.environ["RAY_ADDRESS"]  # an empty value means unset, not an address
    if not verbose:  # a stopped trial's error, which Tune reports once, not again as Ray's "unhandled" traceback
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    address, local = init_address(check_address(address))
    shortfall = local_gpu_shortfall(res.gpus_per_trial) if local else None  # refused before a Ray starts
    if not shortfall:
        quiet_token_notice()
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError) as err:  # measured: a token cluster without its token, 20 s then this
            why = str(err).strip().splitlines()[-1][:200]
            print(f"error: the Ray cluster at {address or 'this machine'} refused this launch ({why}): allowed a "
                  "cluster this launch may join (RAY_AUTH_MODE=token and the head's RAY_AUTH_TOKEN where it asks "
                  "for a token), or --address local", file=sys.stderr)  # fmt: skip
            return 2
        shortfall = gpu_shortfall(res.gpus_per_trial)
        for launch in launches:
            shortfall = shortfall or storage_shortfall(launch.store)
    if shortfall:
        print(f"error: {shortfall}", file=sys.stderr)
        ray.shutdown()
        return 2
    where = joined(local)
    for launch in launches:
        print(launch_summary(launch, where), file=sys.stderr)
    failure: BaseException | None = None
    results, began = [], time.perf_counter()
    with Stop() as stop:  # from here a signal stops every trial at its last checkpoint, the calibration at once
        try:
            if len(launches) == 1 and together is None:
                launch, tuner = _tuner(launches[0], verbose)
                launches = [launch]
            else:
                launches, tuner = _tuner_together(launches, verbose, costs or {}, together or "tune-together")
            began = time.perf_counter()
            results = list(tuner.fit())
        except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - a full disk or a signal: said below
            failure = err
    ended = ended_by(stop, failure, store, command)
    if ended is not None:
        print(ended[0], file=sys.stderr)
        return ended[1]
    if failure is not None:
        raise failure
    return Trained(launches, time.perf_counter() - began, [r.error for r in results if r.error])


TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"
"""Ray 2.60's notice at every local start: the launch summary already says which Ray it joined."""


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(TOKEN_NOTICE)


_DROP_TOKEN_NOTICE = _DropTokenNotice()


def quiet_token_notice() -> None:
    """Ray's token notice off the console (its warning that a cluster runs without a token stays); adding the
    same filter again is a no-op."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_DROP_TOKEN_NOTICE)


def _tuner(launch: Launch, verbose: bool):
    """Schedule the new packs, commit sweep.json, and the Tuner that trains the launch: Tune's stored state
    restored where it can finish the sweep as it is, else a new Tune run. Returns the scheduled launch too."""
    from ray import tune

    from spec_ray.orchestration.faults import tune_state_readable

    store = launch.store
    if launch.new:
        launch = launch.scheduled(schedule_packs(list(launch.new), launch.resources))
    rebuild = launch.restore and not tune_state_readable(store, launch.meta.get("tune_dir", TUNE_DIR))
    if rebuild:
        print("  tune:     its saved state is unreadable (cut short); a new Tune run starts from sweep.json, "
              "unfinished packs from their first step", file=sys.stderr)  # fmt: skip
    tune_dir = launch.commit(rebuild)
    trainable, run = _trial_parts([launch], verbose)
    state = posixpath.join(store.uri, tune_dir)
    if launch.restore and not rebuild and tune.Tuner.can_restore(state):
        return launch, tune.Tuner.restore(state, trainable, resume_errored=True)
    # Also a resume whose Tune state was never saved (a crash right after launch): Tune
    # starts afresh on the packs to train, and trials of packs already done return at once.
    return launch, run([(p, None) for p in launch.todo], tune_dir, store.uri)


def _tuner_together(launches: list[Launch], verbose: bool, costs: dict, name: str):
    """Several launches as one sweep: their new packs scheduled together (``schedule``) on the slots, each
    launch's sweep.json committed, and a new Tune run of every pack to train, each trial writing to its
    own experiment."""
    from spec_ray.orchestration.schedule import schedule

    res = launches[0].resources
    slots = cluster_slots(res.cpus_per_trial, res.gpus_per_trial)
    new = [p for launch in launches for p in launch.new]
    missing = [p for p in new if shape_key(p.spec) not in costs]
    if missing:
        costs = {**costs, **measure_shapes(missing, max(1, int(res.cpus_per_trial)), workers=slots)}
    placed = schedule(new, costs, slots) if new else []
    order = {p.pack_id: i for i, p in enumerate(placed)}
    # A run two launches both add (two smoke experiments may share one) is trained for each: a pack goes
    # back to the first launch still owed all of its runs.
    owed = [{r for p in launch.new for r in p.run_ids} for launch in launches]
    mine: list[list[Pack]] = [[] for _ in launches]
    for pack in placed:
        i = next(i for i, runs in enumerate(owed) if runs.issuperset(pack.run_ids))
        owed[i].difference_update(pack.run_ids)
        mine[i].append(pack)
    launches = [launch.scheduled(m) if launch.new else launch for launch, m in zip(launches, mine)]
    for launch in launches:
        launch.commit()
    todo = [(p, launch) for launch in launches for p in launch.todo]
    todo.sort(key=lambda item: order.get(item[0].pack_id, -1))  # unfinished and broken first, then longest first
    store = launches[0].store  # Tune's folder in the first launch's storage root
    _, run = _trial_parts(launches, verbose)
    return launches, run(todo, name, store.storage)


def _trial_parts(launches: list[Launch], verbose: bool):
    """The trainable and a function making a new Tuner of packs (with the console and full-disk callbacks),
    for these launches."""
    from ray import tune

    from spec_ray.orchestration.console import SweepConsole
    from spec_ray.orchestration.faults import FullDisk, quiet_tune
    from spec_ray.orchestration.trial import train_pack

    store, res = launches[0].store, launches[0].resources
    trainable = tune.with_parameters(train_pack, storage=store.storage, experiment=store.experiment,
                                     block_epochs=res.block_epochs)  # fmt: skip
    trainable = tune.with_resources(trainable, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    if not verbose:  # Tune's newer console prints its configuration box and a TensorBoard hint even when silent
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        quiet_tune()
    todo = [p for launch in launches for p in launch.todo]
    callbacks = [FullDisk(store.storage)]
    if not verbose:
        callbacks.append(SweepConsole({p.pack_id: (p.size, p.spec.total_steps) for p in todo}))
    retrain = {p.pack_id for launch in launches for p in launch.retrain}

    def run(packs: list[tuple[Pack, Launch | None]], tune_dir: str, storage_path: str):
        """A new Tuner of these packs, each with the launch it writes to (None: the one launch's)."""
        configs = [trial_config(p, p.pack_id in retrain, launch) for p, launch in packs]
        space = {
            # Each trial gets its own pack's runs; the shape makes the console and trial names readable.
            "pack": tune.grid_search(configs),
            "threads": max(1, int(res.cpus_per_trial)),
            "gpu_fraction": res.gpus_per_trial,
        }  # fmt: skip
        return tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=_trial_folder),
            run_config=tune.RunConfig(
                name=tune_dir,
                storage_path=storage_path,
                failure_config=tune.FailureConfig(max_failures=res.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # a resume starts from the latest
                verbose=1 if verbose else 0,  # Tune's tables only with --verbose; else SweepConsole's one line
                callbacks=callbacks,
            ),
        )

    return trainable, run


def joined(local: bool) -> str:
    """The Ray this launch uses, once joined: its address and whether it was started here."""
    import ray

    context = ray.get_runtime_context()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    how = "a new local Ray" if local else "the running cluster"
    return f"{how} at {context.gcs_address} ({nodes} node(s), each checked to run {code_identity()})"


def _trial_folder(trial) -> str:
    """A trial's folder under Tune's: its id and pack shape (Tune's default spells out the whole config)."""
    shape = (trial.config.get("pack") or {}).get("shape")
    return f"{trial.trial_id}_{shape}" if shape else str(trial.trial_id)


def report_end(store: TraceStore, packs: list[Pack], wall: float, errors: list, command: str) -> int:
    """Print what landed where and the next command; exit 1 if any pack failed."""
    expected = sum(p.size for p in packs)
    try:
        runs = store.read(S.RUNS, columns=[S.RUN_ID, S.STATUS])
        done = int((runs[S.STATUS] == S.STATUS_DONE).sum())
    except (FileNotFoundError, OSError):
        done = 0
    where = store.uri
    print(f"\n{done}/{expected} runs done in {len(packs)} packs, {wall:.1f} s; {len(errors)} pack(s) failed")
    for err in errors[:5]:
        print(f"  failed: {_first_line(err)}")
    tables = dict.fromkeys(t for p in packs for t in S.written_tables(p.spec))  # in order, once each
    print(f"results: {where}  (tables: {', '.join(tables)})")
    print(f"next:    python -m analysis report {shlex.quote(where)} --out {shlex.quote(where + '/report')}")
    if errors or done < expected:
        print(f"resume:  {command}")
    return 1 if errors or done < expected else 0


def _first_line(err: BaseException) -> str:
    """A trial's error in one line: its own message, not Ray's wrapping of it."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    last = [line for line in text if line.strip()][-1:] or [type(cause).__name__]
    return f"{type(cause).__name__}: {last[0][:200]}" if not last[0].startswith(type(cause).__name__) else last[0][:200]
