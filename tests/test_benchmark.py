"""Tiny-budget smoke test of the benchmark script (speed itself is measured, not asserted here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # Ray, processes or servers: not in the fast tier

ROOT = Path(__file__).resolve().parents[1]


def test_engine_benchmark_runs_side_by_side_and_prints_the_ratio() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "engine.py"), "--steps", "30", "--multi", "1", "--no-deep",
         "--no-luck", "--no-parts"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    speedup = next(line for line in lines if line.startswith("speedup_vs_reference="))
    row = next(line.split() for line in lines if line.split()[:1] == ["1"])
    reference, distinct, shared = (float(v.replace(",", "")) for v in row[1:4])
    assert reference > 0 and distinct > 0 and shared > 0
    # 32 runs a pack beat one run at a time by far even at a 30-step budget.
    assert float(speedup.split("=")[1]) > 3
    # The peak is the best of two BLAS, each named with the kernel it ran.
    torch_line = next(line for line in lines if line.startswith("fp32 peak: torch"))
    numpy_line = next(line for line in lines if line.strip().startswith("numpy"))
    assert "[" in torch_line and "[" in numpy_line and "efficiency below is against the best" in proc.stdout
    from spec_ray.engine.spec import NO_BF16, bf16_applies

    if bf16_applies():
        assert lines[-1].startswith("bf16_speedup=") and float(lines[-1].split("=")[1]) > 0
    else:  # said, not measured as a fp32 run under a bf16 label
        assert lines[-1] == f"bf16_speedup=n/a ({NO_BF16.removeprefix('ieee on ')})"


def test_a_luck_checkpoint_is_timed_with_every_row_its_sweep_keeps() -> None:
    """``benchmarks/engine.py``'s checkpoint cost writes what the runner writes: with correlations kept,
    R x layers matrix rows (R x sum(m_l n_l) correlations), R x sum(m_l) teacher and R x sum(n_l) student
    rows, R scalars."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.engine import time_checkpoint
    from spec_ray.engine.pack import Pack
    from spec_ray.engine.protocols import LUCK_FC_SMALL

    spec = LUCK_FC_SMALL.replace(**{"data.n_train": 640, "student.multi": 2, "checkpoint.keep_correlations": True})
    pack = Pack(tuple(spec.replace(seed=s) for s in (1, 2)), placement="cpu")
    seconds, rows = time_checkpoint(pack)
    teacher, student = (10, 15, 20, 25), (20, 30, 40, 50)
    assert rows == 2 * (len(teacher) + sum(teacher) + sum(student) + 1)
    assert set(seconds) == {"metrics", "rows", "write"} and all(0 < t < 30 for t in seconds.values())


def test_analysis_benchmark_quick_builds_and_reports() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "analysis.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    fields = dict(kv.split("=") for kv in proc.stdout.strip().splitlines()[-1].split())
    assert int(fields["rows"]) > 1_000_000 and float(fields["report_seconds"]) > 0
    assert "success_rate.png" in proc.stdout and "lshape.png" in proc.stdout


def test_verify_benchmark_times_both_ways_on_one_experiment() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "verify.py"), "--quick", "--repeat", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    fields = dict(kv.split("=") for kv in proc.stdout.strip().splitlines()[-1].split())
    assert float(fields["verify_ledger_seconds"]) > 0 and float(fields["verify_decode_seconds"]) > 0
    assert float(fields["mib"]) > 1  # both ways passed (exit 0) over the same written experiment


def test_fidelity_check_runs_both_implementations_and_compares_per_cell() -> None:
    from conftest import shared_ray

    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--m", "5", "--multi", "1", "2", "--p", "0", "2",
         "--seeds", "3", "--epochs", "1", "--iters-per-epoch", "300", "--n-train", "1000", "--n-eval", "1000"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **shared_ray()},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    fields = dict(kv.split("=") for kv in proc.stdout.strip().splitlines()[-1].split())
    assert fields["cells"] == "4" and fields["seeds"] == "3" and fields["agree"] in ("yes", "no")
    assert 0 <= float(fields["mean_abs_diff"]) <= 1 and float(fields["max_abs_z"]) >= 0


def test_sweep_benchmark_runs_a_real_sweep_and_compares_it_with_its_estimate() -> None:
    from conftest import shared_ray

    ray_env = shared_ray()  # the suite's Ray head: the benchmark's sweep takes --address like any sweep
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sweep.py"), "--quick", "--smoke", "--seeds", "2", "--epochs", "2",
         "--address", ray_env["RAY_ADDRESS"]],
        capture_output=True, text=True, timeout=300, env={**os.environ, **ray_env},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    fields = dict(kv.split("=") for kv in proc.stdout.strip().splitlines()[-1].split())
    assert float(fields["fit_s"]) > 0 and float(fields["estimate_s"]) > 0 and 0 < float(fields["efficiency"]) < 1
    timeline = [line.split() for line in proc.stdout.splitlines() if line.startswith("x")]
    assert len(timeline) >= 2 and all(float(row[3]) >= float(row[2]) >= 0 for row in timeline)  # end >= start


def test_luck_recipe_checks_a_stored_sweep_per_cell_and_layer(tmp_path: Path) -> None:
    """The held-out Luck Matters recipe against a tiny stored experiment: both sides' numbers per
    (cell, layer, quantity), the sweep's taken from its Parquet tables."""
    import pandas as pd

    from spec_ray.engine.pack import Pack
    from spec_ray.engine.protocols import LUCK_FC_SMALL
    from spec_ray.orchestration.runner import run_pack
    from spec_ray.storage.traces import TraceStore

    tiny = {"teacher.widths": (4, 3), "teacher.c": 6, "student.multi": 3, "data.d": 8, "data.n_train": 512,
            "data.n_eval": 256, "train.batch": 16, "train.epochs": 2, "checkpoint.keep_correlations": True}  # fmt: skip
    store = TraceStore(str(tmp_path), "lm")
    for bn in ("none", "after_relu"):
        specs = [LUCK_FC_SMALL.replace(seed=s, **tiny, **{"student.student_bn": bn}) for s in (1, 2, 3)]
        run_pack(Pack(tuple(specs)), store, progress=False)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "luck_recipe.py"), "--results", str(tmp_path / "lm")]
    proc = subprocess.run([*cmd, "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    fields = dict(kv.split("=") for kv in lines[-1].split())
    assert fields["cells"] == "2" and fields["seeds"] == "3" and fields["agree"] in ("yes", "no")
    rows = [line.split() for line in lines if line.lstrip().startswith("4-3/bn=")]
    table = pd.DataFrame(rows, columns=["cell", "layer", "quantity", "ours", "theirs", "diff", "z", "nonfinite"])
    assert len(table) == 2 * 2 * 2  # cells x layers x (rho_end, rank_init)
    values = table[["ours", "theirs"]].astype(float)
    assert ((values >= 0) & (values <= 1)).all().all() and float(fields["max_abs_z"]) >= 0
    assert (table["nonfinite"] == "0").all()
    rho = table[table["quantity"] == "rho_end"][["ours", "theirs"]].astype(float)
    assert (rho > 0.3).all().all()  # both trained students correlate with their teacher
