"""The command lines: every sweep script's flags and ``python -m spec_ray``'s, and the typed
launch request they become (``plan.LaunchRequest``).

Beside ``flags`` (the words for spec fields): parsing only, no Ray, no torch. Every spec field
is a flag; one value sets it, several make an axis (``--lr 0.01 0.02``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import typing
from dataclasses import asdict

from spec_ray.engine.inputs.datasets import DOWNLOADABLE
from spec_ray.engine.specs.protocols import Smoke
from spec_ray.engine.specs.spec import RunSpec, seed_range
from spec_ray.engine.training.pack import DEVICES
from spec_ray.orchestration.experiment import AXES, Experiment, axis_path
from spec_ray.orchestration.flags import Parser, add_spec_flags
from spec_ray.orchestration.plan import RESUME_ENV, RESUME_MODES, REUSE_MODES, LaunchRequest, Resources, resume_mode
from spec_ray.storage.traces import BLOCK_EPOCHS

PACK_AXES = ("p", "lr", "init_seed")
"""``python -m spec_ray run``: the fields that take several values in its one pack."""


def _field_type(path: str) -> type:
    if "." not in path:  # seed, init_seed
        return typing.get_type_hints(RunSpec)[path]
    section, name = path.split(".")
    return typing.get_type_hints(type(getattr(RunSpec(), section)))[name]


def sweep_parser(experiment: Experiment, description: str | None) -> Parser:
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
    add_spec_flags(parser, skip=set(experiment.variants))  # every spec field (a variant axis of its name
    # replaces it: --dataset picks a dataset's bundle of settings); several values make an axis
    variants = parser.add_argument_group("variants (settings that change together)")
    for axis, named in experiment.variants.items():
        default = " ".join(experiment.default_variants.get(axis, ())) or "all"
        variants.add_argument(f"--{axis}", nargs="+", default=None, metavar="NAME", help=_variant_help(named, default))
    return parser


def _variant_help(named: dict[str, dict[str, object]], default: str = "all") -> str:
    """'which of a, b to run (default: all); a: as set; b: widths=(50, 75), ...' for --help."""

    def settings(changes: dict[str, object]) -> str:
        return ", ".join(f"{path.rpartition('.')[2]}={value}" for path, value in changes.items()) or "as set"

    text = f"which of {', '.join(named)} to run (default: {default}); "
    return (text + "; ".join(f"{name}: {settings(changes)}" for name, changes in named.items())).replace("%", "%%")


def command_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m spec_ray",
        description="Train one pack locally, verify stored results, or run a command with MKL's vendor check answered.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="train one pack locally and write Parquet traces")
    run.add_argument("--storage", default=None, help="a local path or a URI (s3://, gs://); default: results")
    run.add_argument("--out", default=None, help="the old name of --storage, kept as an alias")
    run.add_argument("--name", default=None, help="experiment name (default: local, or smoke with --smoke)")
    run.add_argument("--smoke", action="store_true", help="a tiny pack that finishes in seconds")
    run.add_argument("--seeds", type=int, default=None, help="run seeds 1..N (default 1; 4 with --smoke)")
    run.add_argument("--resume", nargs="?", const="yes", choices=RESUME_MODES, default=None,
                     help="continue or grow the stored experiment of this name, as a sweep's --resume")  # fmt: skip
    run.add_argument("--device", default="auto", choices=DEVICES, help="where the pack trains: auto (CUDA when "
                     "available), cpu or cuda; part of no run id (default: auto)")  # fmt: skip
    run.add_argument("--no-progress", action="store_true", help="no progress line")
    run.add_argument("--online", action="store_true", help="online data: a fresh batch every step (n_train = None)")
    run.set_defaults(pack_size=None, pack_memory_gib=2.0, m=None)
    add_spec_flags(run, several=PACK_AXES)
    check = sub.add_parser("verify", help="check every table of a sweep: readable, declared schema, every row once")
    check.add_argument("results", help="an experiment folder (with sweep.json) or a storage root of them; a URI too")
    mkl = sub.add_parser(
        "mkl-preload",
        help="run CMD (e.g. ray start) with MKL's vendor check answered, so MKL runs "
        "its AVX-512 kernels on AMD CPUs; no CMD: print the library (docs/performance.md)",
    )
    mkl.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    repro = sub.add_parser(
        "reproduce",
        add_help=False,
        help="plan, run and report a whole paper within a time "
        "budget: reproduce {icml2020,luck-matters,all} --budget 30m (see reproduce --help)",
    )
    repro.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    fetch = sub.add_parser("download", help=f"fetch {' or '.join(DOWNLOADABLE)} with torchvision (pip install "
                           "torchvision) into --data-dir and check their MD5s")  # fmt: skip
    fetch.add_argument("dataset", choices=DOWNLOADABLE, help="the image set")
    fetch.add_argument("--data-dir", required=True, help="the folder to fetch it into (the sweeps' --data-dir)")
    return parser


def experiment_from_args(experiment: Experiment, args: argparse.Namespace, smoke: Smoke) -> Experiment:
    """Apply the --smoke preset, then the flags, to the declared experiment."""
    given = {name: getattr(args, name) for name in ["m", "seeds"] if getattr(args, name, None) is not None}
    given |= {name: getattr(args, name) for name in AXES if hasattr(args, name) and name not in experiment.variants}
    # a flag left out sets nothing; a variant axis's flag names variants;
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
    exp = Experiment(name=name, base=base, axes=axes, pack_size=args.pack_size, pack_memory=memory, variants=variants,
                     default_variants=experiment.default_variants, exclude=experiment.exclude)  # fmt: skip
    for axis in variants:
        chosen = getattr(args, axis, None)
        if chosen is None and axis in experiment.default_variants:
            # a smoke's own variants where it names none of the defaults (cifar.py's smoke runs digits)
            chosen = [n for n in experiment.default_variants[axis] if n in variants[axis]] or None
        if chosen is not None:
            exp = exp.select(axis, list(chosen))
    return exp


def request_from_args(experiment: Experiment, args: argparse.Namespace, smoke: Smoke | None = None) -> LaunchRequest:
    """The flags as the typed request ``plan`` takes; ``smoke``: the launch is a smoke run (its block
    length is the default). ValueError on a bad resume mode (the flag or ``SPEC_RAY_RESUME``)."""
    given = {k: getattr(args, k) for k in asdict(Resources()) if getattr(args, k, None) is not None}
    return LaunchRequest(
        experiment=experiment,
        storage=args.storage,
        resume=resume_mode(args.resume),
        given=given,
        device=getattr(args, "device", None),
        reuse=getattr(args, "reuse", "root"),
        block_epochs=smoke.block_epochs if smoke is not None else BLOCK_EPOCHS,
    )


def resume_command(argv: list[str] | None = None) -> str:
    """The command that was run, with ``--resume``, quoted for a shell (a path with spaces pastes as it is)."""
    args = list(sys.argv[1:] if argv is None else argv)
    args = [a for a in args if a not in ("--resume",)]
    return shlex.join(["python", sys.argv[0], *args, "--resume"])
