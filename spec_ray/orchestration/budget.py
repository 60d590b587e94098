"""Fill a time budget with experiments: which ones fit, at how many seeds, and what they will cost.

Each candidate is an experiment at the paper's seeds and the fewest seeds its claims need. The
planner never shortens training or drops an axis value (a claim reads them); it cuts seeds, then
whole experiments. Every experiment first gets its fewest seeds, in the paper's order, where that
still fits; then seeds are added one at a time to the one furthest below the paper's count, until
the next seed would not fit. An experiment that cannot fit at its fewest seeds is named with its
cost. The wall time of a plan is the calibrated schedule of all its new packs on the slots together
(``schedule``), plus the launch's fixed costs. The budget pays for every run of the plan, stored or not:
the same command twice trains nothing the second time, and a larger budget grows the same experiments,
training only the runs it adds.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.training.pack import Pack, run_id
from spec_ray.orchestration.costs import ShapeCost
from spec_ray.orchestration.experiment import Experiment, pack_runs
from spec_ray.orchestration.schedule import cost_function, lpt, makespan, schedule

RAY_START_S = 10.0
"""A local Ray's start and Tune's fixed cost (docs/performance.md, "Sweeps: Ray Tune overhead")."""
TRIAL_S = 1.0
"""What one trial adds beyond its pack's time: Tune's scheduling, the actor's start, the final state save
(measured on the 2-core machine, docs/reproduction.md, "One paper, one command")."""
PRETRAIN_S = 30.0
"""Pretraining one teacher on a small image set (digits: 5-25 s, measured) and storing it."""
REPORT_S = 15.0
"""One experiment's report and its part of the page (3-10 s a report, docs/reproduction.md)."""

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """Seconds of a duration like ``30m``, ``1h``, ``1h30m``, ``90s`` or ``2.5h``; ValueError naming the forms."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"--budget={text!r} is invalid: allowed a duration such as 30m, 1h, 1h30m or 90s")
    seconds = sum(float(v) * u for v, u in zip(match.groups(), (3600, 60, 1)) if v)
    if seconds <= 0:
        raise ValueError(f"--budget={text!r} is invalid: allowed a duration above 0, such as 30m")
    return seconds


def duration(seconds: float) -> str:
    """``1h05m``, ``12m``, ``45s``: a duration as ``--budget`` takes it, rounded up to a minute from 10 m."""
    if seconds < 600:
        return f"{max(1, round(seconds))}s" if seconds < 60 else f"{-(-seconds // 60):.0f}m"
    minutes = int(-(-seconds // 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def with_seeds(experiment: Experiment, seeds: int) -> Experiment:
    """The experiment on seeds 1..``seeds`` (its other axes as declared)."""
    return dataclasses.replace(experiment, axes={**experiment.axes, "seed": tuple(range(1, seeds + 1))})


@dataclass(frozen=True)
class Candidate:
    """One experiment the budget may hold."""

    experiment: Experiment
    """At the paper's seeds, teachers resolved, named as stored."""
    min_seeds: int
    """The fewest seeds every claim it decides needs."""
    stored: frozenset[str] = frozenset()
    """Run ids stored done or being finished: they cost nothing more."""
    fixed: tuple[Pack, ...] = ()
    """Stored packs this launch must finish or train again (unfinished, broken): paid at any seed count."""
    teachers: int = 0
    """Teachers to pretrain before its packs can start."""

    @property
    def max_seeds(self) -> int:
        return len(self.experiment.axes.get("seed", (1,)))

    @cached_property
    def _runs(self) -> list[RunSpec]:
        """Every run of the paper's seeds, in the factorial's order (made and checked once)."""
        return self.experiment.runs()

    def packs(self, seeds: int, new: bool = True) -> list[Pack]:
        """The packs a launch at ``seeds`` seeds trains, packed as ``plan`` packs them: the runs not stored and
        ``fixed`` (``new``), or every run of those seeds (what the budget pays for, stored or not)."""
        key = (seeds, new)
        if key not in self._packed:  # the planner asks for the same few sizes many times
            exp = self.experiment
            runs = [r for r in self._runs if r.seed <= seeds and not (new and run_id(r) in self.stored)]
            packed = pack_runs(runs, exp.pack_size, exp.pack_memory) if runs else []
            self._packed[key] = [*(self.fixed if new else ()), *packed]
        return list(self._packed[key])

    @property
    def stored_seeds(self) -> int:
        """The most seeds stored already (0: none): a smaller budget keeps them in the sweep."""
        return max((r.seed for r in self._runs if run_id(r) in self.stored), default=0)

    @cached_property
    def _packed(self) -> dict[tuple[int, bool], list[Pack]]:
        return {}


@dataclass(frozen=True)
class Pick:
    """One candidate's place in a plan."""

    name: str
    seeds: int | None
    """Seeds planned; None: it does not fit."""
    packs: tuple[Pack, ...]
    """What it trains (empty: does not fit, or everything stored)."""
    seconds: float
    """Its packs' estimated seconds (on one slot each), the fixed costs apart."""
    min_seconds: float
    """The same at its fewest seeds: what it would take to fit."""


@dataclass(frozen=True)
class Plan:
    """The picks and the projected wall time of the launch that trains them together."""

    picks: tuple[Pick, ...]
    wall: float
    """Estimated wall seconds of this launch: its new packs' schedule on the slots, Ray's start, trials,
    teachers and reports."""
    whole: float
    """The same for every run of the plan, stored or not: what the budget is compared with."""
    slots: int

    def pick(self, name: str) -> Pick:
        return next(p for p in self.picks if p.name == name)


def projected_wall(
    packs: Sequence[Pack], costs: Mapping[tuple, ShapeCost], slots: int, teachers: int, reports: int
) -> float:
    """The launch's wall time: the packs as the launch schedules them (``schedule``: split, balanced, longest
    first on ``slots``, as Tune runs them), and the fixed costs."""
    if not packs:
        return reports * REPORT_S
    cost = cost_function(costs)
    ordered = schedule(list(packs), dict(costs), slots)
    span = makespan(lpt(ordered, lambda p: cost(p) + TRIAL_S, slots))
    return RAY_START_S + teachers * PRETRAIN_S + span + reports * REPORT_S


def _most_studies(candidates: Mapping[str, Candidate], fits: Callable[[list[str]], bool]) -> dict[str, int]:
    """The most studies that fit at their fewest seeds (so a larger budget never decides fewer), of those the
    paper's earliest; every subset is tried where there are few studies, else the paper's order greedily."""
    names = list(candidates)
    if len(names) <= 12:
        subsets = sorted(range(1 << len(names)), key=lambda m: (-bin(m).count("1"), [-(m >> i & 1) for i in
                                                                                       range(len(names))]))  # fmt: skip
        for mask in subsets:
            chosen = [n for i, n in enumerate(names) if mask >> i & 1]
            if fits(chosen):
                return {n: candidates[n].min_seeds for n in chosen}
        return {}
    chosen = []
    for name in names:
        if fits([*chosen, name]):
            chosen.append(name)
    return {n: candidates[n].min_seeds for n in chosen}


def fill(candidates: Mapping[str, Candidate], costs: Mapping[tuple, ShapeCost], budget: float, slots: int) -> Plan:
    """The most seeds that fit ``budget`` seconds on ``slots`` slots (see the module's docstring)."""
    cost = cost_function(costs)

    def plan(seeds: Mapping[str, int]) -> Plan:
        picks, packs, every, teachers = [], [], [], 0
        for name, cand in candidates.items():
            s = seeds.get(name)
            mine = cand.packs(s) if s is not None else []
            lowest = sum(map(cost, cand.packs(cand.min_seeds, new=False)))
            picks.append(Pick(name, s, tuple(mine), sum(map(cost, mine)), lowest))
            packs += mine
            every += cand.packs(s, new=False) if s is not None else []
            teachers += cand.teachers if s is not None and mine else 0
        wall = projected_wall(packs, costs, slots, teachers, len(seeds))
        taught = sum(c.teachers for n, c in candidates.items() if n in seeds)
        whole = projected_wall(every, costs, slots, taught, len(seeds))
        return Plan(tuple(picks), wall, max(wall, whole), slots)

    least = {n: sum(cost(p) + TRIAL_S for p in c.packs(c.min_seeds, new=False)) for n, c in candidates.items()}

    def fits(names: list[str]) -> bool:
        # half the packs' seconds spread evenly over the slots: a bound, cheap to check (the schedule may cut a
        # pack into cheaper pieces, never to half its time)
        if RAY_START_S + 0.5 * sum(least[n] for n in names) / slots > budget:
            return False
        return plan({n: candidates[n].min_seeds for n in names}).whole <= budget

    chosen = _most_studies(candidates, fits)
    full = set()
    while True:
        growable = [n for n in chosen if n not in full and chosen[n] < candidates[n].max_seeds]
        if not growable:
            break
        name = min(growable, key=lambda n: chosen[n] / candidates[n].max_seeds)
        if plan({**chosen, name: chosen[name] + 1}).whole <= budget:
            chosen[name] += 1
        else:
            full.add(name)
    return plan(chosen)
