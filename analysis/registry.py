"""Figures and claims as registered records, each naming what it needs of an experiment's runs.

Each paper's sub-package (``analysis.icml``, ``analysis.luck``) registers its figures where they
are drawn (``@figure`` in its ``figures.py``) and its claims where they are judged (``@claim``
in its ``claims.py``); the report renders those whose needs the done runs meet, on exactly the
runs that meet them, and names in one line what the others would need. A new figure with its
claim is three edits: its query (``queries.py``), its drawing and its verdict, each registered
where it is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.load import Results
from analysis.verdicts import NO_DATA, Claim
from spec_ray.storage import schema as S


@dataclass(frozen=True)
class Needs:
    """What a figure or a claim needs of the done runs."""

    where: tuple[tuple[str, tuple], ...] = ()
    """(runs column, allowed values) pairs: only runs holding one of the values are used."""
    varies: tuple[str, ...] = ()
    """Columns that must take two or more distinct non-null values among those runs."""
    tables: tuple[str, ...] = ()
    """Opt-in tables those runs must have written (``correlations``, ``modulation``)."""
    words: str = ""
    """The need in a reader's words, for the report's line on what was not shown."""

    def describe(self) -> str:
        """What a user must run to get it."""
        if self.words:
            return self.words
        parts = [f"{c} in {', '.join(map(str, v))}" for c, v in self.where]
        parts += [f"two or more values of {c}" for c in self.varies]
        parts += [f"the {t} table" for t in self.tables]
        return "; ".join(parts) or "done runs"

    def select(self, res: Results) -> Results | None:
        """A view of ``res`` on the runs that meet the needs (cached per needs), or None where they are not met."""
        key = ("needs", self)
        if key not in res.memo:
            res.memo[key] = self._select(res)
        return res.memo[key]

    def _select(self, res: Results) -> Results | None:
        runs = res.runs
        for column, allowed in self.where:
            if column not in runs:
                return None
            runs = runs[runs[column].isin(allowed)]
        done = runs[runs["state"] == "done"]
        if done.empty or any(c not in done or done[c].nunique() < 2 for c in self.varies):
            return None
        if not all(res.has_any(t) for t in self.tables):
            return None
        return res if len(runs) == len(res.runs) else res.view(runs)


def frame(res: Results, query: Callable[[Results], pd.DataFrame]) -> pd.DataFrame:
    """``query(res)``, computed once per view: a figure and the claims that read it share the frame."""
    key = ("frame", query)
    if key not in res.memo:
        res.memo[key] = query(res)
    return res.memo[key]


@dataclass(frozen=True)
class Figure:
    """One figure of a paper: what it reads, how it is drawn, what it needs."""

    name: str
    """File stem: ``NAME.png``, ``NAME.pdf`` and ``data/NAME.csv``."""
    title: str
    caption: str | Callable[[pd.DataFrame], str]
    """The report's caption; a function of the figure's frame where it depends on the data (which multi, which run)."""
    query: Callable[[Results], pd.DataFrame]
    draw: Callable[[pd.DataFrame, Path], list[Path]]
    needs: Needs = field(default_factory=Needs)

    def caption_for(self, data: pd.DataFrame) -> str:
        """The caption, filled in from the frame where it depends on it."""
        return self.caption(data) if callable(self.caption) else self.caption


def seeds_per_configuration(res: Results) -> int:
    """The fewest seeds any configuration of the done runs has: runs equal in every spec setting but the seed
    (and an init seed drawn from it)."""
    done = res.done
    if done.empty:
        return 0
    key = [c for c in S.SPEC_COLUMNS if c in done.columns and c not in (S.SEED, "init_seed")]
    return int(done.groupby(key, dropna=False)[S.SEED].nunique().min()) if key else done[S.SEED].nunique()


@dataclass(frozen=True)
class ClaimCheck:
    """One claim of a paper: its number, what it needs, and its check over a view of the runs."""

    number: int
    needs: Needs
    check: Callable[[Results], Claim]
    """Takes the view of the runs that meet ``needs``; reads its frames through ``frame``."""
    seeds: int = 2
    """The fewest seeds of every configuration the claim is judged on; with fewer it reads 'not enough data'."""
    noise: str = ""
    """How the claim's criterion keeps clear of seed noise, in a reader's words."""

    def judge(self, res: Results) -> Claim:
        """``check``, gated on ``seeds``: a verdict on fewer seeds is no verdict."""
        found = self.check(res)
        have = seeds_per_configuration(res)
        if found.verdict != NO_DATA and have < self.seeds:
            why = f"{have} seed(s) in a configuration, {self.seeds} needed to judge it; as measured: "
            return found._replace(evidence=why + found.evidence, verdict=NO_DATA)
        return found


@dataclass(frozen=True)
class Paper:
    """A paper's registered figures and claims, and the criteria its report prints."""

    name: str
    figures: tuple[Figure, ...]
    claims: tuple[ClaimCheck, ...]
    criteria: str
    """One paragraph: the thresholds behind the verdicts, with where they are defined."""

    @property
    def seeds_and_noise(self) -> str:
        """Each claim's fewest seeds and noise check, from the claims themselves."""
        return (
            "Seeds and noise, per claim: "
            + "; ".join(
                f"{c.number}: {c.seeds}+ seeds a configuration, {c.noise or 'its threshold'}" for c in self.claims
            )
            + "."
        )


def figure(into: list[Figure], name: str, title: str, caption: str | Callable[[pd.DataFrame], str],
           query: Callable[[Results], pd.DataFrame], needs: Needs | None = None):  # fmt: skip
    """Register the decorated drawing as a figure of ``into`` (a paper's ``FIGURES``), in order."""

    def register(draw: Callable[[pd.DataFrame, Path], list[Path]]):
        into.append(Figure(name, title, caption, query, draw, needs or Needs()))
        return draw

    return register


def claim(into: list[ClaimCheck], number: int, needs: Needs, reads: Callable[[Results], tuple], seeds: int = 2,
          noise: str = ""):  # fmt: skip
    """Register the decorated check as claim ``number`` of ``into`` (a paper's ``CLAIMS``):
    ``reads(view)`` gives its arguments, the frames through ``frame``; ``seeds`` and ``noise`` as
    ``ClaimCheck``'s."""

    def register(check: Callable[..., Claim]):
        into.append(ClaimCheck(number, needs, lambda res: check(*reads(res)), seeds, noise))
        return check

    return register
