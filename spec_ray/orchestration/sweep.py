"""The entry point of every sweep script: ``main(EXPERIMENT, smoke=SMOKE)``.

It reads the flags (``commandline``), plans the launch (``plan``: bad input exits 2 before Ray
starts or storage is touched), prints what it will do, then either projects it (``--dry-run``,
``dryrun``) or runs it on Ray Tune (``tune_driver``); what the cluster cannot do (GPUs,
storage on every node) exits 2 before any trial starts.
"""

from __future__ import annotations

import dataclasses
import sys

from spec_ray.engine.specs.protocols import Smoke
from spec_ray.orchestration import dryrun, launch_teachers, mkl_dispatch
from spec_ray.orchestration.cluster import check_address
from spec_ray.orchestration.commandline import experiment_from_args, request_from_args, resume_command, sweep_parser
from spec_ray.orchestration.experiment import Experiment
from spec_ray.orchestration.plan import plan
from spec_ray.orchestration.summary import launch_summary, planned_ray
from spec_ray.orchestration.tune_driver import report_end, run_sweep
from spec_ray.storage.lease import Lease


def main(experiment: Experiment, smoke: Smoke | None = None, argv: list[str] | None = None) -> int:
    """Entry point of every sweep script."""
    doc = (sys.modules["__main__"].__doc__ or "").strip()
    parser = sweep_parser(experiment, " ".join(doc.split("\n\n")[0].split()) if doc else None)  # its first paragraph
    args = parser.parse_args(argv)
    lease = None
    try:
        smoke = smoke or Smoke()
        exp = experiment_from_args(experiment, args, smoke)
        check_address(args.address)
        absent = launch_teachers.absent_datasets(exp.runs()) if args.dry_run else []
        found = launch_teachers.resolve(exp, args.storage, check_data=not absent)  # reads only: data, stored teachers
        request = request_from_args(found.experiment, args, smoke if args.smoke else None)
        launch = plan(request)
        mkl_dispatch.preload_environ()  # for the local Ray and calibration processes this driver starts
        if args.dry_run:
            dryrun.check_flags(args, launch.resources)
            if found.missing:
                print(f"{len(found.missing)} teacher(s) to pretrain or store first; timed with stand-ins of "
                      "their shapes", file=sys.stderr)  # fmt: skip
            if absent:
                print(f"{', '.join(absent)}: not under --data-dir; timed on random images of its shapes (a real "
                      "launch exits 2 until the files are there)", file=sys.stderr)  # fmt: skip
        else:
            launch.store.check_writable()  # before the launch summary: a refused launch prints one error
            lease = Lease.acquire(launch.store)  # one writer an experiment, from here to the end
            if not launch.current():  # another launch committed between the plan and the lease
                launch = plan(request)
            if found.missing:  # every input checked: now the teachers are trained and stored, then replanned
                exp = launch_teachers.provide(found, args.storage)
                launch = plan(dataclasses.replace(request, experiment=exp))
    except ValueError as err:
        _give_back(lease)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _give_back(lease)
        print("stopped by SIGINT before any training", file=sys.stderr)
        return 130
    if args.dry_run:
        print(launch_summary(launch, planned_ray(args.address)), file=sys.stderr)
        if launch.resume and not launch.todo:
            print("nothing to train: every run these flags name is stored, and every stored pack is complete; "
                  "projected wall 0 s")  # fmt: skip
            return 0
        todo = list(launch.todo) if launch.resume else launch.packs()
        try:
            print(dryrun.report(todo, args, launch.resources))
        except KeyboardInterrupt:  # its calibration workers die with it (``children``)
            print("stopped by SIGINT while timing the packs; nothing was written", file=sys.stderr)
            return 130
        return 0
    command = resume_command(argv)
    try:
        if launch.resume and not launch.todo and not launch.copies:
            print(launch_summary(launch, "not started: nothing to train"), file=sys.stderr)
            print("nothing to train: every run these flags name is stored, and every stored pack is complete")
            launch.commit()  # removes what no pack lists
            return report_end(launch.store, launch.packs(), 0.0, [], command)
        code = run_sweep(launch, args.address, args.verbose, command)
    except KeyboardInterrupt:
        print(f"stopped by SIGINT; finish the sweep with:\nresume:  {command}", file=sys.stderr)
        code = 130
    finally:
        _give_back(lease)  # a launch the cluster refused leaves no folder either
    return code


def _give_back(lease: Lease | None) -> None:
    if lease is not None:
        lease.release()
        lease.store.remove_if_empty()  # a refused fresh launch leaves no folder
