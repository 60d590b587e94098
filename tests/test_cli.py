"""``python -m spec_ray run``: the smoke job end to end, and bad input exits 2 touching nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import snapshot

from spec_ray import schema as S
from spec_ray.cli import SMOKE, build_parser, runs_from_args
from spec_ray.pack import Pack, checkpoint_steps


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spec_ray", "run", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli")
    proc = run_cli("--smoke", "--out", str(out / "results"), "--no-progress", cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert "results/smoke" in proc.stdout
    return out / "results"


def test_smoke_job_writes_every_checkpoint_of_every_run(smoke: Path) -> None:
    parser, dests = build_parser()
    pack = Pack(tuple(runs_from_args(parser.parse_args(["run", "--smoke"]), dests)))
    assert pack.size == 12 and pack.group_size == 3  # 4 seeds x p in {0, 1, 2}
    ckpts = len(checkpoint_steps(pack.spec))
    counts = {t: len(pd.read_parquet(smoke / "smoke" / t)) for t in S.TABLES}
    assert counts == {
        S.RUNS: 12,
        S.SCALARS: 12 * ckpts,
        S.TEACHER_NODES: 12 * ckpts * 10,
        S.STUDENT_NODES: 12 * ckpts * 50,
    }
    runs = pd.read_parquet(smoke / "smoke" / S.RUNS)
    assert (runs[S.STATUS] == "done").all() and sorted(runs["p"].unique()) == [0.0, 1.0, 2.0]
    assert (runs["iters_per_epoch"] == SMOKE["train.iters_per_epoch"]).all()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--multi", "0"], "student.multi"),
        (["--p", "0", "-1"], "teacher.p"),
        (["--loss", "hinge"], "train.loss"),
        (["--augmentation", "flip"], "data.augmentation"),
        (["--lr", "nan"], "train.lr"),
        (["--n-train", "4"], "data.n_train"),
        (["--seeds", "0"], "seeds"),
        (["--p", "1", "1"], "p"),
        (["--train-every-epochs", "-2"], "checkpoint.train_every_epochs"),
        (["--train-every-epochs", "often"], "--train-every-epochs"),
        (["--epochs", "two"], "--epochs"),
        (["--name", "../x"], "experiment"),
        (["--iters-per-epoch", "none", "--online"], "train.iters_per_epoch"),
        (["--normalize", "rows"], "teacher.normalize"),
        (["--seeds", "100000000"], "seeds"),
        (["--epochs", "1000000000000"], "train.epochs"),
        (["--name", ""], "experiment"),
    ],
)
def test_bad_input_exits_2_and_touches_nothing(smoke: Path, args: list[str], field: str) -> None:
    before = snapshot(smoke)
    proc = run_cli("--smoke", "--out", str(smoke), "--no-progress", *args, cwd=smoke.parent)
    assert proc.returncode == 2, proc.stderr
    assert field in proc.stderr and ("allowed" in proc.stderr or "invalid" in proc.stderr)
    assert len(proc.stderr.strip().splitlines()) <= 3  # one message, not a traceback
    assert snapshot(smoke) == before


def test_unwritable_storage_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_cli("--smoke", "--out", str(blocker / "results"), cwd=tmp_path)
    assert proc.returncode == 2 and "storage" in proc.stderr
    assert blocker.read_text() == "not a directory" and not os.path.exists(blocker / "results")
