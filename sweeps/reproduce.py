"""``python -m spec_ray reproduce PAPER --budget 30m``: plan, run and report a whole paper within a time budget.

It builds every study of the paper (``sweeps.papers``) at the paper's seeds, calibrates their pack shapes
on this machine, and fills the budget (``spec_ray.orchestration.budget``): the fewest seeds each claim
needs first, then more seeds, never shorter training. The plan is printed as a table (``--dry-run`` stops
there). Then every planned study is trained in one launch, its packs scheduled together on the slots, each
into its own experiment under ``<storage>/<paper>/``; a second call with a larger budget trains only the
new seeds. Last, each study's report and the paper's page, ``<storage>/<paper>/index.html``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

from spec_ray.engine.training.pack import shape_key
from spec_ray.orchestration import launch_teachers, mkl_dispatch
from spec_ray.orchestration.budget import Candidate, Plan, fill, parse_duration, projected_wall, with_seeds
from spec_ray.orchestration.commandline import experiment_from_args, sweep_parser
from spec_ray.orchestration.costs import FAST_CORE_FLOPS, metric_flops, useful_flops
from spec_ray.orchestration.dryrun import local_cores
from spec_ray.orchestration.experiment import Experiment
from spec_ray.orchestration.flags import Parser
from spec_ray.orchestration.plan import Launch, LaunchRequest, Resources, plan
from spec_ray.orchestration.schedule import measure_shapes
from spec_ray.storage.lease import Lease
from spec_ray.storage.traces import BLOCK_EPOCHS
from sweeps.papers import PAPERS, PaperStudies, Study

ALL = "all"
MARGIN = 1.25
"""The budget named as enough, over the smallest study's estimate (the timing counted twice more): room for
the calibration's own noise (measured: 2 s for the smoke's shapes alone, 9 s beside another launch)."""


def build_parser() -> Parser:
    parser = Parser(prog="python -m spec_ray reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("paper", choices=[*PAPERS, ALL], help="the paper to reproduce, or all of them")
    parser.add_argument("--budget", default="30m", help="the wall time to fill: 30m, 1h, 1h30m, 90s (default 30m)")
    parser.add_argument("--storage", default="./results", help="the storage root; each paper in its folder there")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; start and write nothing")
    parser.add_argument("--smoke", action="store_true", help="every study at its smoke size (tests, a first look)")
    parser.add_argument("--address", default=None, help="Ray address (default: a running cluster, else local)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs a trial (one pack); default 1")
    parser.add_argument(
        "--slots",
        type=int,
        default=None,
        help="packs at a time to plan for (default: this machine's CPUs / --cpus-per-trial; a "
        "cluster: its CPUs / --cpus-per-trial)",
    )
    parser.add_argument("--verbose", action="store_true", help="Tune's own tables instead of one progress line")
    return parser


@dataclass(frozen=True)
class Entry:
    """One study of a paper as planned: its experiment, what is stored, and its cost floor."""

    paper: PaperStudies
    study: Study
    root: str
    """The paper's folder: the storage root of its experiments."""
    candidate: Candidate | None
    """None: the study cannot run here."""
    floor: float
    """Its flops at ``FAST_CORE_FLOPS`` on the slots, at its fewest seeds: no plan is faster."""
    paper_runs: int
    epochs: int

    @property
    def key(self) -> str:
        return f"{self.paper.key}/{self.study.name}"

    @property
    def command(self) -> str:
        """The sweep command that runs the study at the paper's size into this storage root."""
        return self.study.command(self.root[: -len(self.paper.key)].rstrip("/") or ".", self.paper.key)


def study_experiment(study: Study, smoke: bool) -> Experiment:
    """The study's experiment as its sweep script builds it from the study's flags (``--smoke``: the tiny one)."""
    module = importlib.import_module(f"sweeps.{study.script}")
    argv = [*study.args, "--name", study.name, *(["--smoke"] if smoke else [])]
    args = sweep_parser(module.EXPERIMENT, None).parse_args(argv)
    return experiment_from_args(module.EXPERIMENT, args, module.SMOKE)


def seconds_floor(experiment: Experiment, seeds: int, slots: int, cpus: float) -> float:
    """A study's flops at ``FAST_CORE_FLOPS`` on ``slots`` slots of ``cpus`` cores."""
    runs = with_seeds(experiment, seeds).runs()
    flops = sum(useful_flops(r) * r.total_steps + metric_flops(r) for r in runs)
    return flops / (FAST_CORE_FLOPS * max(1.0, cpus) * slots)


def entries(papers: list[PaperStudies], storage: str, smoke: bool, slots: int, cpus: float) -> list[Entry]:
    """Every study, checked and compared with what its experiment folder holds (reads only)."""
    out = []
    for paper in papers:
        root = f"{storage.rstrip('/')}/{paper.key}"
        for study in paper.studies:
            try:
                exp = study_experiment(study, smoke and study.here)
            except ValueError:
                if smoke:  # a study whose variants the script's smoke preset lacks (a large net): no smoke of it
                    continue
                raise
            seeds = len(exp.axes.get("seed", (1,)))
            least = min(study.min_seeds, seeds)
            epochs = exp.base.train.epochs
            floor = seconds_floor(exp, least, slots, cpus)
            if not study.here:
                out.append(Entry(paper, study, root, None, floor, len(exp.runs()), epochs))
                continue
            found = launch_teachers.resolve(exp, root)
            launch = plan(_request(found.experiment, root, smoke, cpus))
            cand = Candidate(
                found.experiment,
                least,
                frozenset(r for p in launch.stored for r in p.run_ids),
                (*launch.retrain, *launch.unfinished),
                len(found.missing),
            )
            out.append(Entry(paper, study, root, cand, floor, len(exp.runs()), epochs))
    return out


def _request(experiment: Experiment, root: str, smoke: bool, cpus: float) -> LaunchRequest:
    """A study's launch request: resumed where its experiment exists (stored runs are kept and grown)."""
    return LaunchRequest(experiment, root, resume="auto", given={"cpus_per_trial": cpus},
                         block_epochs=1 if smoke else BLOCK_EPOCHS)  # fmt: skip


def calibrate(found: list[Entry], budget: float, slots: int, threads: int) -> dict[tuple, object]:
    """Every shape of the studies whose floor fits the budget, timed on this machine (in children, side by
    side, as a launch runs them); a study past the budget on its flops alone is not timed."""
    packs, seen = [], set()
    for entry in found:
        if entry.candidate is None or entry.floor > budget:
            continue
        for pack in entry.candidate.packs(entry.candidate.max_seeds, new=False):
            if shape_key(pack.spec) not in seen:
                seen.add(shape_key(pack.spec))
                packs.append(pack)
    if not packs:
        return {}
    print(f"calibrating {len(packs)} pack shape(s) on this machine ({slots} side by side) ...", file=sys.stderr)
    began = time.perf_counter()
    costs = measure_shapes(packs, threads, workers=slots)
    print(f"calibrated in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return costs


def planned(found: list[Entry], costs: dict, budget: float, slots: int) -> Plan:
    """The budget filled with the studies that can run here and whose shapes were timed."""
    runnable = {e.key: e.candidate for e in found if e.candidate is not None and e.floor <= budget}
    runnable = {
        k: c for k, c in runnable.items() if all(shape_key(p.spec) in costs for p in c.packs(c.max_seeds, new=False))
    }
    return fill(runnable, costs, budget, slots)


def smallest_budget(found: list[Entry], costs: dict, slots: int, spent: float) -> float:
    """The least wall time of any one study at its fewest seeds (what the smallest useful budget is)."""
    walls = [
        projected_wall(e.candidate.packs(e.candidate.min_seeds, new=False), costs, slots, e.candidate.teachers, 1)
        for e in found
        if e.candidate is not None
        and all(shape_key(p.spec) in costs for p in e.candidate.packs(e.candidate.min_seeds, new=False))
    ]
    floors = [e.floor for e in found if e.candidate is not None]
    return spent + min(walls or floors or [0.0])


def runnable_launches(found: list[Entry], chosen: Plan, smoke: bool, cpus: float) -> tuple[list[Launch], list[Lease]]:
    """Each planned study's launch at its seeds, its lease taken and its teachers pretrained, then replanned."""
    launches, leases = [], []
    try:
        for entry in found:
            pick = next((p for p in chosen.picks if p.name == entry.key), None)
            if pick is None or pick.seeds is None:
                continue
            exp = with_seeds(entry.candidate.experiment, max(pick.seeds, entry.candidate.stored_seeds))
            request = _request(exp, entry.root, smoke, cpus)
            launch = plan(request)
            launch.store.check_writable()
            lease = Lease.acquire(launch.store)
            leases.append(lease)
            found_teachers = launch_teachers.resolve(exp, entry.root)
            if found_teachers.missing:
                exp = launch_teachers.provide(found_teachers, entry.root)
            launches.append(plan(dataclasses.replace(request, experiment=exp)))
    except BaseException:
        for lease in leases:
            lease.release()
        raise
    return launches, leases


def provenance(budget: float, wall: float, slots: int) -> dict[str, str]:
    """Commit, machine and times for the page."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    import torch

    cpu = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.processor()
    )
    return {
        "commit": commit or "unknown",
        "machine": f"{cpu}, {local_cores()} CPU(s), {slots} slot(s), torch {torch.__version__}",
        "budget": f"{budget / 60:.0f} min",
        "wall": f"{wall / 60:.1f} min",
    }


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read().splitlines()
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    from sweeps import reproduce_page

    began = time.perf_counter()
    args = build_parser().parse_args(argv)
    papers = list(PAPERS.values()) if args.paper == ALL else [PAPERS[args.paper]]
    try:
        budget = parse_duration(args.budget)
        Resources(cpus_per_trial=args.cpus_per_trial)
        if args.slots is not None and args.slots < 1:
            raise ValueError(f"--slots={args.slots} is invalid: allowed an integer >= 1")
        slots = args.slots or max(1, int(local_cores() // args.cpus_per_trial))
        found = entries(papers, args.storage, args.smoke, slots, args.cpus_per_trial)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mkl_dispatch.preload_environ()  # the calibration's children and the local Ray's workers
    try:
        costs = calibrate(found, budget, slots, max(1, int(args.cpus_per_trial)))
    except KeyboardInterrupt:
        print("stopped by SIGINT while timing the packs; nothing was written", file=sys.stderr)
        return 130
    spent = time.perf_counter() - began
    chosen = planned(found, costs, budget - spent, slots)
    if not any(p.seeds is not None for p in chosen.picks):
        least = smallest_budget(found, costs, slots, spent)
        enough = reproduce_page.duration(MARGIN * least + spent)  # the timing, twice: it varies with the load
        print(f"error: --budget={args.budget} is too small for any claim of {args.paper}: the smallest study takes "
              f"about {reproduce_page.duration(least)} here, its timing included; allowed --budget {enough} or more",
              file=sys.stderr)  # fmt: skip
        return 2
    print(reproduce_page.plan_table(found, chosen, budget, spent), file=sys.stderr)
    if args.dry_run:
        return 0
    command = shlex.join(["python", "-m", "spec_ray", "reproduce", *(argv if argv is not None else sys.argv[2:])])
    try:
        launches, leases = runnable_launches(found, chosen, args.smoke, args.cpus_per_trial)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    code = 0
    try:
        if any(launch.todo for launch in launches):
            from spec_ray.orchestration.tune_driver import train_launches

            stamp = time.strftime("%Y%m%d-%H%M%S")
            trained = train_launches(launches, args.address, args.verbose, command, costs, f"tune-reproduce-{stamp}")
            if isinstance(trained, int):
                return trained
            code = 1 if trained.errors else 0
        else:
            for launch in launches:
                launch.commit()
            print("nothing to train: every planned run is stored", file=sys.stderr)
    finally:
        for lease in leases:
            lease.release()
    info = provenance(budget, time.perf_counter() - began, slots)
    for paper in papers:
        page = reproduce_page.write(paper, [e for e in found if e.paper is paper], chosen, info, costs)
        print(f"wrote {page}")
    return code
