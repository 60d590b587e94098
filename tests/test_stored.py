"""Results written by an older spec-ray (commit 530be0f, committed under tests/fixtures) still load,
verify, report and grow with --resume: stored data is part of the contract, as run ids are."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import snapshot

from analysis.load import open_results
from analysis.luck import queries as luck_queries
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


def reference_ranks(corr: pd.DataFrame, final: int) -> pd.DataFrame:
    """Luck Matters' rank of the final winners by the paper's definition, in pandas over long rows (the
    report's own query before 0.2): mean and median over teacher nodes, per run, layer and step."""
    key = [S.RUN_ID, S.LAYER, S.NODE]
    last = corr[corr[S.STEP] == final]
    winners = last.loc[last.groupby(key)[S.CORR].idxmax(), key + [S.STUDENT]].rename(columns={S.STUDENT: "winner"})
    rows = corr.merge(winners, on=key)
    at = [*key, S.STEP]
    mine = rows[rows[S.STUDENT] == rows["winner"]].set_index(at)[S.CORR].rename("mine")
    rows = rows.join(mine, on=at)
    per_node = rows.assign(above=rows[S.CORR] > rows["mine"]).groupby(at, as_index=False).agg(
        above=("above", "sum"), n=(S.STUDENT, "size"))  # fmt: skip
    per_node["rank"] = per_node["above"] / (per_node["n"] - 1).clip(lower=1)
    return per_node.groupby([S.RUN_ID, S.LAYER, S.STEP]).agg(mean_rank=("rank", "mean"),
                                                             median_rank=("rank", "median"))  # fmt: skip


def test_old_long_correlations_give_the_same_winner_ranks_and_a_resume_keeps_them(stored: Path, capsys) -> None:
    """The long layout of before 0.2 is read as it is: the ranks made from it equal the paper's definition
    over its rows; a --resume keeps them in the pack's ledger, and verify and the report read them after."""
    root = stored / "v1-luck"
    corr = pd.read_parquet(root / S.CORRELATIONS)
    res = open_results(str(root))
    final = int(res.done["final_step"].iloc[0])
    expected = reference_ranks(corr, final)
    made = luck_queries.winner_ranks(res).set_index([S.RUN_ID, S.LAYER, S.STEP])
    assert len(made) == len(expected) == 6 * 2 * corr[S.STEP].nunique()  # 6 runs, 2 layers, every checkpoint
    for column in (S.MEAN_RANK, S.MEDIAN_RANK):
        np.testing.assert_allclose(made[column], expected[column].reindex(made.index), atol=1e-12)
    assert not (root / S.WINNER_RANKS).exists()
    assert main(["run", "--smoke", *WROTE["v1-luck"], "--storage", str(stored), "--name", "v1-luck",
                 "--resume", "--no-progress"]) == 0  # fmt: skip
    kept = pd.read_parquet(root / S.WINNER_RANKS).set_index([S.RUN_ID, S.LAYER, S.STEP])
    np.testing.assert_allclose(kept[S.MEAN_RANK], made[S.MEAN_RANK].reindex(kept.index), atol=1e-12)
    assert len(kept) == len(made)
    capsys.readouterr()
    assert main(["verify", str(root)]) == 0
    assert "no ledger" not in capsys.readouterr().out
    again = luck_queries.winner_ranks(open_results(str(root))).set_index([S.RUN_ID, S.LAYER, S.STEP])
    np.testing.assert_allclose(again[S.MEAN_RANK], made[S.MEAN_RANK].reindex(again.index), atol=1e-12)
