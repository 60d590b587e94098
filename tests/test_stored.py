"""Results written by an older spec-ray (commit 530be0f, committed under tests/fixtures) still load,
verify, report and grow with --resume: stored data is part of the contract, as run ids are."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import snapshot

from analysis.load import open_results
from analysis.report import build_report
from spec_ray.orchestration.cli import main
from spec_ray.storage import schema as S
from spec_ray.storage.manifest import packs_from_dict

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "stored-530be0f"
# The flags that wrote each experiment (spec-ray run at commit 530be0f).
WROTE = {
    "v1": ["--seeds", "2", "--epochs", "2", "--widths", "4", "--n-train", "400", "--n-eval", "200",
           "--iters-per-epoch", "50", "--p", "0", "1"],
    "v1-luck": ["--seeds", "2", "--epochs", "2", "--widths", "3", "4", "--c", "8", "--n-train", "256", "--n-eval",
                "128", "--iters-per-epoch", "none", "--batch", "32", "--student-bn", "after_relu",
                "--keep-correlations", "true", "--keep-modulation", "true", "--normalize", "all", "--loss", "mse_mean"],
}  # fmt: skip


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "root")
    return tmp_path / "root"


def test_old_results_keep_their_run_ids_verify_and_report(stored: Path, tmp_path: Path, capsys) -> None:
    for name in WROTE:
        packs = packs_from_dict(json.loads((stored / name / "sweep.json").read_text())["sweep"])
        runs = pd.read_parquet(stored / name / S.RUNS)
        assert sorted(runs[S.RUN_ID]) == sorted(r for p in packs for r in p.run_ids)  # today's ids are the stored ones
        assert sorted(runs[S.PACK_ID].unique()) == sorted(p.pack_id for p in packs)
    assert main(["verify", str(stored)]) == 0
    said = capsys.readouterr().out  # written before ledgers: decoded, and said so
    assert "2 pack(s) have no ledger (written by a spec-ray older than ledgers)" in said
    res = open_results(str(stored))
    assert res.counts()["done"] == 4 + 6  # v1: 2 seeds x p 0 1; v1-luck: 2 seeds x the smoke's p 0 1 2
    report = Path(build_report(str(stored), tmp_path / "report")).read_text()
    for figure in ("success_rate", "dynamics", "luck_rho", "luck_rank", "luck_beta"):
        assert (tmp_path / "report" / f"{figure}.png").stat().st_size > 5_000, figure
    assert "| 1 | " in report and "| 8 | " in report and "| 12 | " in report  # both papers' claims, on their runs


def test_old_results_grow_with_resume_training_only_the_new_runs(stored: Path, capsys) -> None:
    before = snapshot(stored / "v1")
    assert main(["run", "--smoke", *WROTE["v1"][2:], "--seeds", "3", "--storage", str(stored), "--name", "v1",
                 "--resume", "--no-progress"]) == 0  # fmt: skip
    assert "pack " in capsys.readouterr().err
    after = snapshot(stored / "v1")
    assert all(after[path] == digest for path, digest in before.items() if "sweep.json" not in path)  # untouched
    runs = pd.read_parquet(stored / "v1" / S.RUNS)
    assert len(runs) == 6 and sorted(runs[S.SEED].unique()) == [1, 2, 3] and (runs[S.STATUS] == "done").all()
    capsys.readouterr()
    assert main(["verify", str(stored / "v1")]) == 0
    # the old pack, decoded whole at the launch, was given its ledger: from now on it is checked by checksums
    old = packs_from_dict(json.loads((FIXTURE / "v1" / "sweep.json").read_text())["sweep"])[0]
    assert (stored / "v1" / "_ledger" / f"{old.pack_id}.json").exists()
    assert "no ledger" not in capsys.readouterr().out


def test_verify_counts_rows_a_second_file_repeats(stored: Path, capsys) -> None:
    """A block's rows copied under another file name are found (verify reads file by file)."""
    folder = next((stored / "v1-luck" / S.CORRELATIONS).iterdir())
    first = sorted(folder.glob("*.parquet"))[0]
    rows = len(pd.read_parquet(first))
    shutil.copy(first, folder / "steps-copy.parquet")
    assert main(["verify", str(stored / "v1-luck")]) == 1
    assert f"correlations: {rows} rows stored twice" in capsys.readouterr().out
