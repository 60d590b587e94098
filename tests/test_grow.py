"""Sweeps that grow, runs reused across experiments, and results that check themselves, without Ray.

Stored sweeps are made here by the same ``plan`` a sweep script runs, with each pack trained by
``runner.run_pack`` in this process; the Ray paths are in tests/test_sweep.py and tests/test_s3.py.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import assert_complete, snapshot

from analysis.load import open_results
from analysis.report import build_report
from spec_ray.orchestration import cli
from spec_ray.orchestration.commandline import experiment_from_args, request_from_args
from spec_ray.orchestration.commandline import sweep_parser as build_parser
from spec_ray.orchestration.plan import plan
from spec_ray.orchestration.runner import run_pack
from spec_ray.storage import schema as S
from spec_ray.storage.verify import BROKEN, COMPLETE, check_pack, pack_files

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--smoke", "--multi", "1", "--p", "0", "2", "--epochs", "2"]  # 2 p x seeds, one shape


def _polarity():
    spec = importlib.util.spec_from_file_location("polarity_sweep", ROOT / "sweeps" / "polarity.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


POLARITY = _polarity()


def launch(storage: Path, *flags: str, name: str = "grow"):
    args = build_parser(POLARITY.EXPERIMENT, None).parse_args([*SMALL, "--storage", str(storage), "--name", name,
                                                                *flags])  # fmt: skip
    exp = experiment_from_args(POLARITY.EXPERIMENT, args, POLARITY.SMOKE)
    return plan(request_from_args(exp, args, POLARITY.SMOKE)), args


def train(result) -> list:
    """What ``tune_driver.run_sweep`` does with a launch, each pack trained in this process."""
    packs = result.packs()
    result.commit()
    for pack in result.todo:
        run_pack(pack, result.store, block_epochs=result.resources.block_epochs, progress=False)
    return packs


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*.parquet")}


@pytest.fixture
def grown(tmp_path: Path):
    """A stored sweep of seeds 1-2 (4 runs), then grown to seeds 1-4."""
    first, _ = launch(tmp_path, "--seeds", "2")
    old = train(first)
    before = mtimes(tmp_path / "grow")
    return tmp_path, old, before


def test_plan_writes_nothing_and_changes_no_flag(tmp_path: Path) -> None:
    args_before = None
    result, args = launch(tmp_path / "never", "--seeds", "2")
    args_before = dict(vars(args))
    result, again = launch(tmp_path / "never", "--seeds", "2")
    assert not (tmp_path / "never").exists()
    assert vars(again) == args_before and again.resume is None  # nothing written into the flags
    assert result.resources.block_epochs == POLARITY.SMOKE.block_epochs and not result.resume
    assert sum(p.size for p in result.new) == 4 and not result.stored and not result.copies


def test_more_seeds_train_only_the_new_runs(grown) -> None:
    storage, old, before = grown
    result, _ = launch(storage, "--seeds", "4", "--resume")
    old_ids = {r for p in old for r in p.run_ids}
    new_ids = {r for p in result.new for r in p.run_ids}
    assert len(new_ids) == 4 and not new_ids & old_ids  # seeds 3 and 4 x p 0, 2
    assert {r.seed for p in result.new for r in p.runs} == {3, 4}
    assert all(c.state == COMPLETE for c in result.checks) and not result.retrain and not result.restore
    packs = train(result)
    assert mtimes(storage / "grow") | before == mtimes(storage / "grow")  # the first packs' files untouched
    assert_complete(str(storage / "grow"), packs)  # 8 done runs, every row exactly once
    runs = pd.read_parquet(storage / "grow" / S.RUNS)
    assert len(runs) == 8 and runs[S.RUN_ID].is_unique and (runs[S.STATUS] == S.STATUS_DONE).all()
    again, _ = launch(storage, "--seeds", "4", "--resume")
    assert not again.todo and not again.new  # all stored: nothing to train


def test_fewer_values_train_nothing_and_changed_settings_are_refused(grown) -> None:
    storage, _, _ = grown
    result, _ = launch(storage, "--seeds", "1", "--resume")
    assert not result.todo and not result.new and result.left_out == 2
    with pytest.raises(ValueError, match=r"epochs: stored 2, asked 3"):
        launch(storage, "--seeds", "4", "--epochs", "3", "--resume")


def test_a_run_done_in_another_experiment_is_copied_not_trained(grown) -> None:
    storage, old, _ = grown
    fresh, _ = launch(storage, "--seeds", "3", "--reuse", "none", name="other")  # to compare devices, or re-check
    assert not fresh.copies and not fresh.sources and sum(p.size for p in fresh.new) == 6
    result, _ = launch(storage, "--seeds", "3", name="other")
    assert sum(p.size for p in result.copies) == 4 and sum(p.size for p in result.new) == 2
    assert {s.store.experiment for s in result.sources.values()} == {"grow"}
    packs = train(result)
    assert_complete(str(storage / "other"), packs)
    assert all(check_pack(result.store, p).state == COMPLETE for p in packs)
    cols = [S.RUN_ID, S.STEP, S.LAYER, S.NODE, S.BEST_CORR, S.FANOUT_NORM]
    mine = pd.read_parquet(storage / "other" / S.TEACHER_NODES, columns=cols)
    theirs = pd.read_parquet(storage / "grow" / S.TEACHER_NODES, columns=cols)
    key = [S.RUN_ID, S.STEP, S.LAYER, S.NODE]
    both = theirs.merge(mine, on=key, suffixes=("", "_copy"))
    assert len(both) == len(theirs) and (both[S.BEST_CORR] == both[f"{S.BEST_CORR}_copy"]).all()
    runs = pd.read_parquet(storage / "other" / S.RUNS)
    assert set(runs[S.EXPERIMENT]) == {"other"} and len(runs) == 6  # self-contained: its own runs rows


def _damage(folder: Path, pack_id: str, how: str) -> None:
    if how == "deleted":
        for f in (folder / S.TEACHER_NODES / f"pack={pack_id}").glob("*.parquet"):
            f.unlink()
    else:
        f = sorted((folder / S.STUDENT_NODES / f"pack={pack_id}").glob("*.parquet"))[-1]
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_lost_files_are_found_reported_and_retrained_alone(grown, how: str, capsys) -> None:
    storage, old, _ = grown
    folder = storage / "grow"
    victim = old[0]
    _damage(folder, victim.pack_id, how)
    code = cli.main(["verify", str(folder)])
    out = capsys.readouterr().out
    assert code == 1 and f"pack {victim.pack_id}" in out and "broken" in out
    assert ("missing" if how == "deleted" else "corrupt file") in out and "Traceback" not in out
    report = build_report(str(folder), storage / "report")  # one warning line, no traceback
    text = Path(report).read_text()
    assert "Incomplete data" in text and victim.pack_id in text and f"{victim.size} incomplete" in text
    warning = capsys.readouterr().err
    assert f"warning: pack {victim.pack_id} ({victim.size} runs) left out: " in warning
    assert "fix: rerun the sweep's command with --resume" in warning and "Traceback" not in warning
    res = open_results(str(folder))
    assert set(res.done[S.RUN_ID]).isdisjoint(victim.run_ids)  # nothing drawn from the short pack
    others = {str(p): p.stat().st_mtime_ns for p in folder.rglob("*.parquet") if victim.pack_id not in str(p)}
    result, _ = launch(storage, "--seeds", "2", "--resume")
    assert [p.pack_id for p in result.retrain] == [victim.pack_id] and not result.new and not result.restore
    train(result)
    assert {str(p): p.stat().st_mtime_ns for p in folder.rglob("*.parquet") if victim.pack_id not in str(p)} == others
    assert cli.main(["verify", str(folder)]) == 0
    assert_complete(str(folder), old)


def test_verify_names_a_missing_runs_file_and_bad_input(grown, capsys) -> None:
    storage, old, _ = grown
    folder = storage / "grow"
    (folder / S.RUNS / f"pack={old[0].pack_id}" / "runs.parquet").unlink()
    assert check_pack(open_store(storage), old[0]).state == BROKEN
    before = snapshot(folder)
    assert cli.main(["verify", str(storage / "nothing-here")]) == 2
    assert "is not a sweep" in capsys.readouterr().err
    assert cli.main(["verify", str(storage)]) == 1  # a storage root: every experiment in it
    assert "runs.parquet is missing, but the pack has rows" in capsys.readouterr().out
    assert snapshot(folder) == before  # verify reads only


def open_store(storage: Path):
    from spec_ray.storage.traces import TraceStore

    return TraceStore(str(storage), "grow")


def test_schema_drift_is_a_finding(grown) -> None:
    storage, old, _ = grown
    path = pack_files(open_store(storage), S.SCALARS, old[0].pack_id)[0]
    table = pq.read_table(path).drop_columns([S.EVAL_LOSS])
    pq.write_table(table, path)
    check = check_pack(open_store(storage), old[0])
    assert check.state == BROKEN and "column 'eval_loss' is missing" in check.findings[0].problem
    assert os.path.basename(path) in check.findings[0].problem
