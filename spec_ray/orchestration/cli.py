"""``python -m spec_ray run``: train one pack on this machine (no Ray) and write its traces.

Every spec field is a flag (``--n-train 2000``, ``--widths 50 75``); ``--p`` and ``--lr``
take several values and ``--seeds N`` runs seeds 1..N, all in one pack. Bad input exits
with code 2 and one message naming the field, before any work or write.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys

from spec_ray.engine import spec as specs
from spec_ray.engine.pack import Pack
from spec_ray.engine.protocols import CONV_SMOKE, RUN_SMOKE
from spec_ray.orchestration.flags import NOT_GIVEN, Parser, add_spec_flags
from spec_ray.orchestration.runner import run_pack
from spec_ray.storage import schema as S
from spec_ray.storage.traces import TraceStore

PACK_AXES = {"p": "teacher.p", "lr": "train.lr", "init_seed": "init_seed"}  # several values in one pack


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, str]]:
    parser = Parser(prog="python -m spec_ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="train one pack locally and write Parquet traces")
    run.add_argument("--out", default="results", help="storage: a local path or a URI (default: results)")
    run.add_argument("--name", default=None, help="experiment name (default: local, or smoke with --smoke)")
    run.add_argument("--smoke", action="store_true", help="a tiny pack that finishes in seconds")
    run.add_argument("--seeds", type=int, default=None, help="run seeds 1..N (default 1; 4 with --smoke)")
    run.add_argument("--no-progress", action="store_true", help="no progress line")
    run.add_argument("--online", action="store_true", help="online data: a fresh batch every step (n_train = None)")
    return parser, add_spec_flags(run, several=PACK_AXES)


def runs_from_args(args: argparse.Namespace, dests: dict[str, str]) -> list[specs.RunSpec]:
    """The runs of the pack the flags describe (raises ValueError on bad values)."""
    changes: dict[str, object] = dict(RUN_SMOKE.settings) if args.smoke else {}
    default = specs.RunSpec()
    axes = {name: [functools.reduce(getattr, path.split("."), default)] for name, path in PACK_AXES.items()}
    if args.smoke:
        axes["p"] = list(RUN_SMOKE.axes["p"])
    for dest, path in dests.items():
        value = getattr(args, dest, NOT_GIVEN)
        if value is NOT_GIVEN:
            continue
        if dest in PACK_AXES:
            axes[dest] = list(value)
        else:
            changes[path] = tuple(value) if isinstance(value, list) else value
    if args.online:
        changes["data.n_train"] = None
    if args.smoke and changes.get("model.arch") == "conv":
        for path, value in CONV_SMOKE.items():
            changes.setdefault(path, value)
    seeds = specs.seed_range(
        args.seeds if args.seeds is not None else (len(RUN_SMOKE.axes["seed"]) if args.smoke else 1)
    )
    for name, values in axes.items():
        if len(set(values)) != len(values):
            raise ValueError(f"{name}={values} is invalid: allowed distinct values")
    base = specs.apply_overrides(specs.RunSpec(), changes)
    names = list(PACK_AXES)
    return [
        specs.apply_overrides(base, {"seed": seed, **{PACK_AXES[n]: v for n, v in zip(names, values)}})
        for seed in seeds
        for values in itertools.product(*(axes[n] for n in names))
    ]


def main(argv: list[str] | None = None) -> int:
    parser, dests = build_parser()
    args = parser.parse_args(argv)
    try:
        pack = Pack(tuple(runs_from_args(args, dests)))
        _ = pack.device  # a CUDA request without CUDA fails here, before any work
        store = TraceStore(args.out, args.name if args.name is not None else ("smoke" if args.smoke else "local"))
        store.check_writable()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    spec = pack.spec
    print(
        f"pack {pack.pack_id}: {pack.size} runs (m={spec.teacher.widths}, multi={spec.student.multi}, "
        f"{spec.total_steps} steps, {spec.train.dtype} on {pack.device})",
        file=sys.stderr,
    )
    result = run_pack(pack, store, progress=not args.no_progress)
    print(f"wrote {store.root} ({result.wall_time:.1f} s); tables: {', '.join(S.written_tables(spec))}")
    print(f"read them with: pandas.read_parquet('{store.table_dir('scalars')}')")
    return 0
