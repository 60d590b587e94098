"""``python -m spec_ray run``: train one pack on this machine (no Ray) and write its traces;
``python -m spec_ray verify RESULTS``: check a sweep's stored tables.

Every spec field is a flag (``--n-train 2000``, ``--widths 50 75``); ``--p``, ``--lr`` and
``--init-seed`` take several values and ``--seeds N`` runs seeds 1..N, all in one pack. The
flags become an ``Experiment`` as a sweep script's do, planned by the same ``plan``, so a run
writes sweep.json, can be verified, resumed and grown. Bad input exits with code 2 and one
message naming the field, before any work or write.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from spec_ray.engine.inputs import datasets
from spec_ray.engine.kinds.layer_kinds import LAYER_KINDS
from spec_ray.engine.specs.protocols import CONV_SMOKE, RUN_SMOKE, Smoke
from spec_ray.engine.specs.spec import RunSpec, check_matmul_precision
from spec_ray.engine.training.pack import Pack
from spec_ray.orchestration import launch_teachers, mkl_dispatch
from spec_ray.orchestration.commandline import command_parser, experiment_from_args, request_from_args, resume_command
from spec_ray.orchestration.experiment import Experiment
from spec_ray.orchestration.flags import NOT_GIVEN
from spec_ray.orchestration.plan import plan
from spec_ray.orchestration.runner import run_pack
from spec_ray.storage import schema as S
from spec_ray.storage import verify
from spec_ray.storage.lease import Lease, held_by
from spec_ray.storage.manifest import experiment_stores, load_sweep
from spec_ray.storage.traces import disk_full_message, is_disk_full


def run_experiment(args: argparse.Namespace) -> tuple[Experiment, Smoke]:
    """The flags as an ``Experiment`` of one shape, built as every sweep builds its own
    (``commandline.experiment_from_args``): the smoke preset, then the flags; p, lr and init seeds are
    per-run fields, so their values stay one pack."""
    settings = dict(RUN_SMOKE.settings)
    arch = getattr(args, "arch", NOT_GIVEN)
    if args.smoke and arch in LAYER_KINDS and LAYER_KINDS[arch].conv:
        settings.update(CONV_SMOKE)  # the flags given still win
    smoke = Smoke(settings=settings, axes={"p": RUN_SMOKE.axes["p"]} if args.smoke else {})
    if args.seeds is None:
        args.seeds = len(RUN_SMOKE.axes["seed"]) if args.smoke else 1
    name = args.name if args.name is not None else ("smoke" if args.smoke else "local")
    args.name = name  # experiment_from_args would add "-smoke"
    return experiment_from_args(Experiment(name=name, base=RunSpec()), args, smoke), smoke


def main(argv: list[str] | None = None, at_entry: bool = False) -> int:
    """The command line; ``at_entry``: called by ``python -m spec_ray`` itself, which may let
    ``mkl-preload -- CMD`` replace the process. Called in-process, nothing replaces the caller."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reproduce"]:  # the one command above the sweeps: it plans and runs their declarations
        from sweeps.reproduce import main as reproduce

        return reproduce(argv[1:])
    args = command_parser().parse_args(argv)
    if args.command == "verify":
        return verify_command(args.results)
    if args.command == "mkl-preload":
        return mkl_dispatch.main(args.cmd, replace=at_entry)
    if args.command == "download":
        try:
            datasets.download(args.dataset, args.data_dir)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{args.dataset}: in {args.data_dir}, checked; use it with --dataset {args.dataset} --data-dir "
              f"{args.data_dir}")  # fmt: skip
        return 0
    if args.out is not None:
        if args.storage is not None and args.storage != args.out:
            print(f"error: --out={args.out!r} and --storage={args.storage!r} disagree: --out is the old name of "
                  "--storage; allowed one of them", file=sys.stderr)  # fmt: skip
            return 2
        print("note: --out is the old name of --storage", file=sys.stderr)
    args.storage = args.storage or args.out or "results"
    lease = None
    try:
        mkl_dispatch.mode()  # a bad switch exits 2 here; the preload itself is the entry's (__main__)
        exp, smoke = run_experiment(args)
        found = launch_teachers.resolve(exp, args.storage)  # reads only: image sets, stored teachers, checkpoint files
        request = request_from_args(found.experiment, args, smoke if args.smoke else None)
        launch = plan(request)
        todo = [Pack(p.runs, placement=args.device) for p in launch.todo]
        for pack in todo:
            # a CUDA request without CUDA, or a precision the device lacks, fails here, before any work
            check_matmul_precision(pack.spec.train.matmul_precision, pack.device.type)
        launch.store.check_writable()
        lease = Lease.acquire(launch.store)  # one writer an experiment, as a sweep
        if not launch.current():
            launch = plan(request)
            todo = [Pack(p.runs, placement=args.device) for p in launch.todo]
        if found.missing:  # every input checked: the teachers are trained and stored, then the launch replanned
            launch = plan(dataclasses.replace(request, experiment=launch_teachers.provide(found, args.storage)))
            todo = [Pack(p.runs, placement=args.device) for p in launch.todo]
    except ValueError as err:
        if lease is not None:
            lease.release()
        print(f"error: {err}", file=sys.stderr)
        return 2
    store, packs = launch.store, launch.packs()
    wall, block = 0.0, launch.resources.block_epochs
    with lease:
        launch.commit()  # sweep.json and the copied runs, as a sweep launch writes them
        for pack in todo:
            spec = pack.spec
            print(f"pack {pack.pack_id}: {pack.size} runs (m={spec.teacher.widths}, multi={spec.student.multi}, "
                  f"{spec.total_steps} steps, {spec.train.dtype} on {pack.device})", file=sys.stderr)  # fmt: skip
            try:
                wall += run_pack(pack, store, block_epochs=block, progress=not args.no_progress).wall_time
            except OSError as err:
                if not is_disk_full(err):
                    raise
                print(f"error: {disk_full_message(store.storage)}\nresume:  {resume_command(argv)}", file=sys.stderr)
                return 1
    tables = dict.fromkeys(t for p in packs for t in S.written_tables(p.spec))
    copied = f", {sum(p.size for p in launch.copies)} runs copied" if launch.copies else ""
    print(f"wrote {store.uri} ({wall:.1f} s{copied}); tables: {', '.join(tables)}")
    print(f"read them with: pandas.read_parquet('{store.table_dir('scalars')}')")
    return 0


def verify_command(results: str) -> int:
    """Print what is missing, damaged or extra, pack by pack; 0 when every pack is complete and every file
    listed, 1 if not, 2 on bad input (no sweep there, an unreadable sweep.json)."""
    try:
        stores = experiment_stores(results)
        found = [(store, load_sweep(store)) for store in stores]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failing, extra, unchecked = 0, 0, 0
    for store, stored in found:
        packs = stored.packs
        checks = verify.verify(store, packs, stored.ledgers)
        states = {s: sum(c.state == s for c in checks) for s in (verify.COMPLETE, verify.UNFINISHED, verify.BROKEN)}
        print(f"{store.root}: {len(checks)} packs, " + ", ".join(f"{n} {s}" for s, n in states.items()))
        holder = held_by(store)
        if holder is not None:
            print(f"  note: a launch is writing it now: {holder.describe(time.time())}")
        for check in checks:
            if check.state != verify.COMPLETE or check.extra:
                print("\n".join(verify.describe(check)))
        stray = verify.strays(store, packs)
        for path in stray:
            print(f"stray {path}: a folder of no pack of sweep.json; no reader should use it")
        unchecked += sum(1 for c in checks if not c.checksums)
        failing += len(checks) - states[verify.COMPLETE]
        extra += len(stray) + sum(len(c.extra) for c in checks)
    if unchecked:
        print(f"{unchecked} pack(s) have no ledger (written by a spec-ray older than ledgers): their files were "
              "decoded, no checksum could be checked")  # fmt: skip
    if failing or extra:
        print(f"{failing} pack(s) incomplete, {extra} file(s) or folder(s) listed by no pack. Fix: rerun the sweep's "
              "command with --resume; it retrains exactly these packs, removes what no pack lists and leaves the "
              "rest untouched.")  # fmt: skip
    return 1 if failing or extra else 0
