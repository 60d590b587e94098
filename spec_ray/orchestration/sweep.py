"""Run an ``Experiment`` on Ray Tune: one trial per pack, fault tolerant and resumable.

Every sweep script calls ``main(EXPERIMENT, smoke=...)``, which provides the common flags
(``--storage --name --seeds --epochs --iters-per-epoch --smoke --resume --address
--cpus-per-trial --gpus-per-trial --pack-size``) plus one flag per axis or spec field, e.g.
``--m 10 --multi 1 5 --p 0 2``. Bad input exits 2 before Ray starts or storage is touched.

Storage layout under ``<storage>/<name>/``: the four Parquet tables (docs/schema.md),
``sweep.json`` (the packs, reloaded by ``--resume``) and ``tune/`` (Tune's own state).
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import socket
import sys
import textwrap
import time
import typing
from urllib.parse import urlparse

from spec_ray.engine.pack import Pack
from spec_ray.engine.protocols import Smoke
from spec_ray.engine.spec import RunSpec, flat_fields, seed_range
from spec_ray.orchestration.experiment import AXES, Experiment, axis_path, packs_from_dict
from spec_ray.orchestration.flags import Parser, add_spec_flags
from spec_ray.orchestration.runner import FLUSH_EPOCHS
from spec_ray.storage import schema as S
from spec_ray.storage.traces import TraceStore

SWEEP_FILE = "sweep.json"
SWEEP_VERSION = 2  # 2: the authors' teachers, reported loss units, shuffled-pass epochs (docs/protocol.md)
TUNE_DIR = "tune"


def _field_type(path: str) -> type:
    if path == "seed":
        return int
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
    add("--resume", action="store_true", help="continue an interrupted sweep: finish only what is missing")
    add("--address", default=None, help="Ray address (default: RAY_ADDRESS, a running cluster, else a local Ray)")
    add("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (one pack); default 1")
    add("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial, may be fractional; default 0")
    add("--pack-size", type=int, default=None, help="most runs per pack (default: all seeds x p of one shape)")
    add("--pack-memory-gib", type=float, default=2.0, help="device memory per pack; larger packs are split; default 2")
    add("--max-failures", type=int, default=3, help="retries of a failed trial from its last checkpoint; default 3")
    add(
        "--block-epochs",
        type=int,
        default=None,
        help=f"epochs per Parquet file and Tune checkpoint; default {FLUSH_EPOCHS}",
    )
    add("--seeds", type=int, default=None, help="seeds 1..N")
    add("--online", action="store_true", help="online data: a fresh Gaussian batch every step (n_train = None)")
    parser.add_argument_group("axes").add_argument(
        "--m", type=int, nargs="+", default=None, help="one-hidden-layer teacher width(s) m (teacher.widths)"
    )
    add_spec_flags(parser)  # every spec field; several values make an axis
    return parser


def experiment_from_args(experiment: Experiment, args: argparse.Namespace, smoke: Smoke) -> Experiment:
    """Apply the --smoke preset, then the flags, to the declared experiment."""
    given = {name: getattr(args, name) for name in ["m", "seeds", *AXES] if getattr(args, name, None) is not None}
    if args.block_epochs is None:
        args.block_epochs = smoke.block_epochs if args.smoke else FLUSH_EPOCHS
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
    return Experiment(name=name, base=base, axes=axes, pack_size=args.pack_size, pack_memory=memory)


def check_address(address: str | None) -> str | None:
    """Fail fast (ValueError) when an explicit Ray address does not answer."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return address
    url = urlparse(address if "://" in address else f"ray://{address}")
    host, port = url.hostname, url.port or (10001 if address.startswith("ray://") else 6379)
    try:
        with socket.create_connection((host, port), timeout=3):
            return address
    except OSError as err:
        raise ValueError(f"address={address!r} is unreachable ({err}): allowed a running Ray head host:port") from None


def _sweep_path(store: TraceStore) -> str:
    return posixpath.join(store.root, SWEEP_FILE)


def _read_sweep(store: TraceStore) -> dict | None:
    try:
        with store.fs.open_input_stream(_sweep_path(store)) as f:
            return json.loads(f.read().decode())
    except (FileNotFoundError, OSError):
        return None


def plan(experiment: Experiment, args: argparse.Namespace) -> tuple[TraceStore, list[Pack], dict]:
    """Validate everything and decide the packs; raises ValueError before any side effect."""
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0 or args.max_failures < 0 or args.block_epochs < 1:
        raise ValueError(
            "resources are invalid: allowed --cpus-per-trial > 0, --gpus-per-trial >= 0, "
            "--max-failures >= 0, --block-epochs >= 1"
        )
    gpus, device = args.gpus_per_trial, experiment.base.train.device
    if gpus > 1 and gpus != int(gpus):
        raise ValueError(f"--gpus-per-trial={gpus:g} is invalid: allowed 0, a fraction of one GPU, or a whole number")
    if device == "cuda" and gpus == 0:
        raise ValueError("train.device='cuda' is invalid with --gpus-per-trial 0: allowed auto or cpu, or give GPUs")
    if device == "cpu" and gpus > 0:
        raise ValueError(f"train.device='cpu' is invalid with --gpus-per-trial={gpus:g}: allowed auto or cuda")
    store = TraceStore(os.path.abspath(args.storage) if "://" not in args.storage else args.storage, experiment.name)
    packs = experiment.packs()  # validates every run of the factorial, also before a resume
    stored = _read_sweep(store)
    if args.resume:
        if stored is None:
            raise ValueError(
                f"--resume: no sweep {experiment.name!r} in storage={args.storage!r}: allowed an existing one"
            )
        if stored.get("version") != SWEEP_VERSION:
            raise ValueError(
                f"--resume: sweep {experiment.name!r} was written by an older spec-ray (sweep.json version "
                f"{stored.get('version', 1)}), whose teacher, loss units and epochs differ: allowed a sweep of "
                f"version {SWEEP_VERSION}; start it again under a new --name"
            )
        packs = packs_from_dict(stored["sweep"])
    elif stored is not None:
        raise ValueError(
            f"name={experiment.name!r} already exists in storage={args.storage!r}: "
            "allowed --resume to continue it, or a new --name"
        )
    store.check_writable()
    meta = stored or {
        "version": SWEEP_VERSION,
        "name": experiment.name,
        "sweep": experiment.to_dict(),
        "block_epochs": args.block_epochs,
    }
    return store, packs, meta


def _write_sweep(store: TraceStore, meta: dict) -> None:
    tmp = posixpath.join(store.root, f".tmp-{SWEEP_FILE}")
    with store.fs.open_output_stream(tmp) as f:
        f.write(json.dumps(meta, indent=1, sort_keys=True).encode())
    store.fs.move(tmp, _sweep_path(store))


def label(pack: Pack) -> str:
    """Readable trial name part: the shape of the pack."""
    s = pack.spec
    return f"m{'-'.join(map(str, s.teacher.widths))}_x{s.student.multi}_n{s.data.n_train}_{s.train.loss}"


def gpu_shortfall(gpus: float) -> str | None:
    """Why no trial asking for ``gpus`` could ever be placed, or None: the trials would pend forever.

    A trial's GPUs must sit on one node. They can when an alive node has them, or when the
    cluster's autoscaler config has a node type with GPUs (Ray's own cluster config).
    """
    import ray

    if gpus <= 0:
        return None
    alive = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((n.get("Resources", {}).get("GPU", 0.0) for n in alive), default=0.0)
    if largest >= gpus:
        return None
    try:
        possible = ray._private.state.state.get_max_resources_from_cluster_config() or {}
    except Exception:  # an older Ray without the cluster config: judge by the nodes alone
        possible = {}
    if possible.get("GPU", 0) > 0:
        return None  # an autoscaler can add a GPU node
    return (
        f"--gpus-per-trial={gpus:g} is invalid here: no node of this Ray cluster has that many GPUs "
        f"(largest: {largest:g}, {len(alive)} node(s)) and no autoscaler can add one: allowed "
        "--gpus-per-trial 0 (CPU), or a cluster whose nodes or node types have GPUs"
    )


def run_sweep(store: TraceStore, packs: list[Pack], meta: dict, args: argparse.Namespace) -> int:
    """Start Ray and Tune (or restore), wait, print where the results are. Returns an exit code."""
    import ray
    from ray import tune

    from spec_ray.orchestration.trial import train_pack

    # Two kept checkpoints force a state snapshot per save: harmless at our block rate.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not os.environ.get("RAY_ADDRESS", "x"):
        del os.environ["RAY_ADDRESS"]  # an empty value means unset, not an address
    address = check_address(args.address)
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    shortfall = gpu_shortfall(args.gpus_per_trial)
    if shortfall:
        print(f"error: {shortfall}", file=sys.stderr)
        ray.shutdown()
        if not args.resume:
            store.remove_if_empty()
        return 2
    if not args.resume:
        _write_sweep(store, meta)
    trainable = tune.with_parameters(
        train_pack, sweep=meta["sweep"], storage=store.storage, experiment=store.experiment,
        block_epochs=meta["block_epochs"],
    )  # fmt: skip
    trainable = tune.with_resources(trainable, {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial})
    tune_path = posixpath.join(store.storage.rstrip("/"), store.experiment)
    began = time.perf_counter()
    if args.resume:
        tuner = tune.Tuner.restore(posixpath.join(tune_path, TUNE_DIR), trainable, resume_errored=True)
    else:
        space = {
            # The trial finds its pack by id; the shape makes the console and trial names readable.
            "pack": tune.grid_search([{"id": p.pack_id, "shape": f"{label(p)}_r{p.size}"} for p in packs]),
            "threads": max(1, int(args.cpus_per_trial)),
            "gpu_fraction": args.gpus_per_trial,
        }  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(
                name=TUNE_DIR,
                storage_path=tune_path,
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=1,  # the live status table only: per-trial detail goes to Parquet
            ),
        )
    results = tuner.fit()
    wall = time.perf_counter() - began
    errors = sum(1 for r in results if r.error is not None)
    return report_end(store, packs, wall, errors)


def report_end(store: TraceStore, packs: list[Pack], wall: float, errors: int) -> int:
    """Print what landed where and the next command; exit 1 if any pack failed."""
    expected = sum(p.size for p in packs)
    try:
        runs = store.read(S.RUNS, columns=[S.RUN_ID, S.STATUS])
        done = int((runs[S.STATUS] == S.STATUS_DONE).sum())
    except (FileNotFoundError, OSError):
        done = 0
    where = store.root if "://" not in store.storage else f"{store.storage.rstrip('/')}/{store.experiment}"
    print(f"\n{done}/{expected} runs done in {len(packs)} packs, {wall:.1f} s; {errors} pack(s) failed")
    print(f"results: {where}  (tables: runs, teacher_nodes, student_nodes, scalars)")
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
        exp = experiment_from_args(experiment, args, smoke or Smoke())
        check_address(args.address)
        store, packs, meta = plan(exp, args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(launch_summary(exp, packs, store, args), file=sys.stderr)
    return run_sweep(store, packs, meta, args)


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
        "  axes:     " + " x ".join(f"{n} {_values(v)}" for n, v in exp.axes.items()),
        f"  length:   {spec.train.epochs} epochs x {per_epoch} steps"
        + (" (one shuffled pass)" if spec.passes else "")
        + f", {spec.train.dtype} on {spec.train.device}",
        f"  storage:  {store.root}" + ("  (--resume)" if args.resume else ""),
        f"  ray:      {args.address or os.environ.get('RAY_ADDRESS') or 'a running cluster, else a new local Ray'}; "
        f"{args.cpus_per_trial:g} CPU, {args.gpus_per_trial:g} GPU a trial",
    ]
    return "\n".join(lines)
