"""The sweep's one progress line, fed trial results as Tune's driver would feed them."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

pytest.importorskip("ray")

from spec_ray.orchestration.console import SweepConsole  # noqa: E402


def trial(pack: str, status: str = "RUNNING") -> SimpleNamespace:
    return SimpleNamespace(config={"pack": {"id": pack}}, status=status)


def test_one_line_counts_runs_rate_eta_and_the_latest_metrics() -> None:
    out = io.StringIO()
    console = SweepConsole({"a": (4, 100), "b": (2, 100)}, stream=out, every=0.0)  # 600 run-steps in all
    summary = {"runs": 4, "success_rate": 0.5, "rho_mean": 0.9, "device": "cpu", "start_step": 0}
    console.on_trial_result(0, [], trial("a"), {**summary, "progress": 0.5})
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("runs 0/6 done | 1 pack(s) running | ") and "success 0.50 | rho_mean 0.900 | cpu" in line
    console.on_trial_complete(0, [], trial("a"))
    console.on_trial_result(0, [], trial("b"), {**summary, "runs": 2, "success_rate": 0.8, "rho_mean": 0.6,
                                                "device": "cuda:0 H100", "progress": 0.5})  # fmt: skip
    line = out.getvalue().splitlines()[-1]
    # success and rho_mean weighted by runs: (4 x 0.5 + 2 x 0.8) / 6, (4 x 0.9 + 2 x 0.6) / 6
    assert "runs 4/6 done | 1 pack(s) running" in line and "success 0.60 | rho_mean 0.800 | cpu, cuda:0 H100" in line
    console.on_trial_error(0, [], trial("b"))
    assert out.getvalue().splitlines()[-1].endswith("| 1 pack(s) failed")
    console.on_experiment_end([])
    assert out.getvalue().splitlines()[-1].endswith("| 1 pack(s) failed")  # the last word stands


def test_the_console_pickles_without_its_stream() -> None:
    """Tune saves its run config, callbacks included, for a restore."""
    import pickle

    console = SweepConsole({"a": (1, 1)}, stream=io.StringIO())
    assert pickle.loads(pickle.dumps(console)).work == {"a": (1, 1)}


def test_a_restored_console_counts_only_its_own_launch(monkeypatch) -> None:
    """``--resume`` restores the console Tune pickled at the first launch: the rate and ETA are this
    launch's (its clock, the steps trained since a trial's checkpoint), and packs finished earlier count
    as done, not as work left."""
    import pickle
    import time

    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    first = SweepConsole({"a": (2, 100), "b": (2, 100)}, stream=io.StringIO(), every=0.0)
    now[0] = 1000.0  # the first launch died; a second restores Tune's state 1,000 s after the first began
    console = pickle.loads(pickle.dumps(first))
    console.out._stream = out = io.StringIO()
    console.on_step_begin(0, [trial("a", "TERMINATED"), trial("b", "PENDING")])
    now[0] = 1010.0  # b resumed from its checkpoint at step 50 and reached 75 in 10 s: 2 runs x 25 steps
    result = {"runs": 2, "success_rate": 0.5, "rho_mean": 0.9, "device": "cpu", "start_step": 50, "progress": 0.75}
    console.on_trial_result(1, [], trial("b"), result)
    line = out.getvalue().splitlines()[-1]
    # 5 run-steps/s; left: b's last 25 steps of 2 runs, 10 s
    assert line.startswith("runs 2/4 done | 1 pack(s) running | 5 run-steps/s | ETA 0:00:10 |"), line
    # A pack the killed launch stored as done but Tune had not saved as such: its trial ends at once, no result.
    console = pickle.loads(pickle.dumps(first))
    console.out._stream = out = io.StringIO()
    console.on_step_begin(0, [trial("a", "PENDING"), trial("b", "PENDING")])
    now[0] = 1020.0
    console.on_trial_complete(1, [], trial("a"))
    assert out.getvalue().splitlines()[-1] == "runs 2/4 done | 0 pack(s) running | 0 run-steps/s | ETA ?"
