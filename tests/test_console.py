"""The sweep's one progress line, fed trial results as Tune's driver would feed them."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

pytest.importorskip("ray")

from spec_ray.orchestration.console import SweepConsole  # noqa: E402


def trial(pack: str) -> SimpleNamespace:
    return SimpleNamespace(config={"pack": {"id": pack}})


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
