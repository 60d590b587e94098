"""The sweep's console: one progress line over the whole sweep, in place of Tune's tables.

Each trial reports a summary per epoch (``trial.summary``); this Tune callback, run in the
driver, folds them into one line: runs done, packs running, run-steps per second, ETA, and
the latest mean success rate and rho_mean over the packs with their devices. On a terminal
the line is redrawn in place; elsewhere (a log, ``ray exec``) a line is printed every
``every`` seconds. ``--verbose`` gives Tune's own status tables instead.
"""

from __future__ import annotations

import time
from typing import TextIO

from ray.tune import Callback

from spec_ray.orchestration.progress import Line, clock


class SweepConsole(Callback):
    """Progress of every trial of a sweep, as one line."""

    def __init__(self, work: dict[str, tuple[int, int]], stream: TextIO | None = None, every: float = 30.0) -> None:
        """``work``: per pack id, (runs, SGD steps of each run) of the packs this launch trains."""
        self.work = work
        self.total = sum(runs * steps for runs, steps in work.values())
        self.out = Line(stream, every, tty_every=1.0)
        self._begin()

    def _begin(self) -> None:
        """What one launch counts: its clock and what its trials have reported."""
        self.began = time.perf_counter()
        self.progress: dict[str, float] = {}  # pack id -> fraction of its steps done
        self.start: dict[str, float] = {}  # pack id -> fraction it started from (a trial resumed from a checkpoint)
        self.latest: dict[str, dict] = {}  # pack id -> its last summary
        self.finished: set[str] = set()
        self.failed: set[str] = set()
        self.looked = False  # whether this launch has seen Tune's trials (those an earlier one finished)

    def __setstate__(self, state: dict) -> None:
        """``Tuner.restore`` (``--resume``) brings back the console pickled with the first launch's run
        config: it begins a new launch. Else its rate divided this launch's work by the time since the
        first launch began, and its ETA counted packs an earlier launch finished (measured: 9 h shown
        for a resumed sweep of 2 h)."""
        self.__dict__.update(state)
        self._begin()

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self.looked or not trials:
            return
        self.looked = True  # the first step of a launch: only earlier launches can have finished a trial
        for t in trials:
            pack = self._pack(t)
            if t.status == "TERMINATED" and pack in self.work:
                self.progress[pack] = self.start[pack] = 1.0  # done before this launch: no new work
                self.finished.add(pack)

    @staticmethod
    def _pack(trial) -> str:
        return trial.config["pack"]["id"]

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        pack = self._pack(trial)
        if pack not in self.start:
            self.start[pack] = float(result.get("start_step", 0)) / max(1, self.work.get(pack, (1, 1))[1])
        self.progress[pack] = float(result.get("progress", 0.0))
        if "success_rate" in result:
            self.latest[pack] = result
        self.draw()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        pack = self._pack(trial)
        self.start.setdefault(pack, 1.0)  # no result this launch: stored as done by an earlier one, no new work
        self.progress[pack] = 1.0
        self.finished.add(pack)
        self.draw(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.failed.add(self._pack(trial))
        self.draw(force=True)

    def on_experiment_end(self, trials: list, **info) -> None:
        if not self.finished >= set(self.work):  # else the last trial's line said it all
            self.draw(force=True)
        self.out.close()

    def line(self) -> str:
        """The progress line as it stands."""
        now = time.perf_counter()
        done_work = sum(self.work[p][0] * self.work[p][1] * f for p, f in self.progress.items() if p in self.work)
        new_work = sum(self.work[p][0] * self.work[p][1] * (f - self.start.get(p, 0.0))
                       for p, f in self.progress.items() if p in self.work)  # fmt: skip
        rate = new_work / (now - self.began) if now > self.began else 0.0
        eta = clock((self.total - done_work) / rate) if rate > 0 else "?"
        runs_done = sum(self.work[p][0] for p in self.finished if p in self.work)
        runs = sum(r for r, _ in self.work.values())
        running = len([p for p in self.progress if p not in self.finished and p not in self.failed])
        parts = [f"runs {runs_done}/{runs} done", f"{running} pack(s) running", f"{rate:,.0f} run-steps/s",
                 f"ETA {eta}"]  # fmt: skip
        if self.latest:
            weights = {p: r["runs"] for p, r in self.latest.items()}
            total = sum(weights.values())
            success = sum(r["success_rate"] * weights[p] for p, r in self.latest.items()) / total
            rho = sum(r["rho_mean"] * weights[p] for p, r in self.latest.items()) / total
            devices = ", ".join(sorted({r["device"] for r in self.latest.values()}))
            parts += [f"success {success:.2f}", f"rho_mean {rho:.3f}", devices]
        if self.failed:
            parts.append(f"{len(self.failed)} pack(s) failed")
        return " | ".join(parts)

    def draw(self, force: bool = False) -> None:
        if self.out.due(force):
            self.out.draw(self.line())
