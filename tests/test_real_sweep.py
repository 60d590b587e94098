"""``sweeps/cifar.py`` on digits end to end: pretrain -> store -> reuse, the report's figure 10 and
claim 13, and the bad inputs of real data refused with exit 2 before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import assert_complete, snapshot, sweep_exit
from test_sweep import ROOT, stored_packs, sweep

from spec_ray.storage import schema as S


@pytest.mark.slow
def test_digits_smoke_pretrains_once_reports_and_a_second_sweep_trains_no_teacher(tmp_path: Path) -> None:
    proc = sweep("cifar", "--dataset", "digits", "--smoke", "--storage", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pretraining a conv teacher 8-8-8 on digits" in proc.stderr
    root = tmp_path / "cifar-smoke"
    assert_complete(str(root), stored_packs(root))
    runs = pd.read_parquet(root / S.RUNS)
    assert len(runs) == 2 and (runs[S.DATASET] == "digits").all() and runs[S.LOAD_TEACHER].nunique() == 1
    name = runs[S.LOAD_TEACHER].iloc[0]
    stored = sorted(p.name for p in (tmp_path / "teachers").iterdir())
    assert f"{name.replace(':', '-')}.pt" in stored and len([s for s in stored if s.endswith(".pt")]) == 1
    meta = json.loads((tmp_path / "teachers" / f"{name.replace(':', '-')}.json").read_text())
    assert meta["source"] == "pretrained" and 0.5 < meta["test_accuracy"] <= 1.0  # digits at 8-8-8, pruned by half
    checkpoint = torch.load(tmp_path / "teachers" / f"{name.replace(':', '-')}.pt", weights_only=True)
    assert checkpoint["ratios"] == [0.5, 0.5, 0.5] and [len(g) for g in checkpoint["inactive_nodes"]] == [4, 4, 4]
    assert (runs["m"] == 4).all()  # the teacher's lowest layer after pruning: students over-realize on it
    scalars = pd.read_parquet(root / S.SCALARS)
    assert scalars[S.EVAL_ACCURACY].between(0, 1).all()  # the true labels of the test images
    # Another sweep of the root finds the teacher by its key and trains none (its runs are copied).
    again = sweep("cifar", "--dataset", "digits", "--smoke", "--storage", str(tmp_path), "--name", "again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "pretraining" not in again.stderr
    assert set(pd.read_parquet(tmp_path / "again" / S.RUNS)[S.LOAD_TEACHER]) == {name}
    assert sorted(p.name for p in (tmp_path / "teachers").iterdir()) == stored
    from analysis.report import build_report

    build_report(str(root), tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "### Figure 10: specialization on real images" in text and "| 13 | More over-realization" in text
    assert (tmp_path / "report" / "real_data.png").stat().st_size > 10_000
    assert "| 15 | Most BatchNorm biases" in text and (tmp_path / "report" / "bn_bias.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "report" / "data" / "bn_bias.csv")) == 24  # 8 + 8 + 8 BN biases, kept at launch
    frame = pd.read_csv(tmp_path / "report" / "data" / "real_data.csv")
    assert set(frame["multi"]) == {1, 4} and set(frame["layer"]) == {1, 2, 3}
    assert frame["teacher_accuracy"].iloc[0] == pytest.approx(meta["test_accuracy"])


@pytest.mark.parametrize(
    "args, says",
    [
        (["--dataset", "cifar10", "--data-dir", "{tmp}/none"], "cifar-10-batches-py/data_batch_1 is missing"),
        (["--dataset", "cifar10"], "data.data_dir: None is invalid with data.dataset cifar10"),
        (["--dataset", "digits", "--source", "file", "--load-teacher", "{tmp}/no.pt"], "no.pt': no such file"),
        (
            ["--dataset", "digits", "--source", "file", "--load-teacher", "{tmp}/bad.pt"],
            "bad.pt's ws_linear.0.weight is (3, 1, 3, 3), the spec's teacher needs 64 rows",
        ),
        (["--dataset", "digits", "--prune", "0.5"], "teacher.prune=(0.5,) is invalid: allowed"),
        (["--dataset", "svhn"], "--dataset=svhn is invalid: allowed distinct names from cifar10, mnist, digits"),
    ],
)
def test_bad_real_data_exits_2_before_anything_trains(tmp_path: Path, args: list[str], says: str, capsys) -> None:
    """In this process, through the script's own ``main``: nothing is trained or written."""
    torch.save({"net": {"ws_linear.0.weight": torch.zeros(3, 1, 3, 3), "ws_linear.0.bias": torch.zeros(3)}},
               tmp_path / "bad.pt")  # fmt: skip
    storage = tmp_path / "results"
    storage.mkdir()
    before = snapshot(storage)
    code = sweep_exit(
        ROOT / "sweeps" / "cifar.py", ["--storage", str(storage), *[a.format(tmp=tmp_path) for a in args]]
    )
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert says in err and "Traceback" not in err
    assert snapshot(storage) == before
