"""Parquet traces: round trip, exact row counts, idempotent rewrites, atomic writes."""

from __future__ import annotations

import os

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from conftest import tiny_spec

from spec_ray.engine.pack import Pack, checkpoint_steps
from spec_ray.orchestration.runner import run_pack
from spec_ray.storage import schema as S
from spec_ray.storage.traces import TraceStore, blocks


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    runs = [tiny_spec(seed=s, **{"teacher.p": p}) for s in (1, 2) for p in (0.0, 2.0)]
    pack = Pack(tuple(runs))
    store = TraceStore(str(tmp_path_factory.mktemp("store")), "exp")
    result = run_pack(pack, store, block_epochs=1, progress=False)
    return pack, store, result


def expected_rows(pack: Pack) -> dict[str, int]:
    spec = pack.spec
    ckpts = len(checkpoint_steps(spec))
    m, n = sum(spec.teacher.widths), sum(spec.student_widths)
    return {
        S.RUNS: pack.size,
        S.TEACHER_NODES: pack.size * ckpts * m,
        S.STUDENT_NODES: pack.size * ckpts * n,
        S.SCALARS: pack.size * ckpts,
    }


def test_every_table_round_trips_with_exact_counts(written) -> None:
    pack, store, result = written
    for table, count in expected_rows(pack).items():
        frame = store.read(table)
        assert len(frame) == count, table
        assert set(S.SCHEMAS[table].names) <= set(frame.columns)
        assert set(frame[S.RUN_ID]) == set(pack.run_ids)
        assert set(frame[S.PARTITION]) == {pack.pack_id}
    runs = store.read(S.RUNS).set_index(S.RUN_ID)
    assert (runs[S.STATUS] == S.STATUS_DONE).all() and (runs[S.STEPS_DONE] == 300).all()
    assert sorted(runs["p"].unique()) == [0.0, 2.0] and (runs["multi"] == 3).all() and (runs["m"] == 6).all()
    # The rows hold the final checkpoint's numbers exactly.
    last = store.read(S.SCALARS)
    last = last[last[S.STEP] == 300].set_index(S.RUN_ID).loc[list(pack.run_ids)]
    np.testing.assert_array_equal(last[S.EVAL_LOSS].to_numpy(), result.last.eval_loss.numpy())
    teacher = store.read(S.TEACHER_NODES)
    assert teacher[S.LAYER].eq(1).all() and sorted(teacher[S.NODE].unique()) == list(range(6))
    # Train-set metrics exactly on their schedule (init and every epoch here), NaN elsewhere.
    scalars = store.read(S.SCALARS)
    assert set(scalars.loc[scalars[S.TRAIN_LOSS].notna(), S.STEP]) == {0, 150, 300}
    assert set(scalars.loc[scalars[S.GRAD_NORM].notna(), S.STEP]) == {0, 150, 300}
    assert scalars[S.EVAL_LOSS].notna().all()


def test_readable_by_pandas_pyarrow_and_duckdb(written) -> None:
    pack, store, _ = written
    folder = store.table_dir(S.TEACHER_NODES)
    by_pandas = pd.read_parquet(folder)
    by_arrow = ds.dataset(folder, format="parquet", partitioning="hive").to_table(
        filter=ds.field(S.STEP) == 300, columns=[S.RUN_ID, S.SUCCESS]
    )
    by_duck = duckdb.sql(
        f"select count(*) as n, count(distinct pack) as packs "
        f"from read_parquet('{folder}/*/*.parquet', hive_partitioning=true)"
    ).fetchall()[0]
    count = expected_rows(pack)[S.TEACHER_NODES]
    assert len(by_pandas) == count and by_duck == (count, 1)
    assert by_arrow.num_rows == pack.size * 6


def test_block_files_cover_each_step_once(written) -> None:
    pack, store, _ = written
    assert blocks(pack.spec, 1) == [(0, 150), (151, 300)]
    names = sorted(os.listdir(os.path.join(store.table_dir(S.SCALARS), f"pack={pack.pack_id}")))
    assert names == ["steps-0000000000-0000000150.parquet", "steps-0000000151-0000000300.parquet"]


def test_rewriting_a_pack_replaces_and_never_duplicates(written, tmp_path) -> None:
    pack, _, _ = written
    store = TraceStore(str(tmp_path), "again")
    run_pack(pack, store, block_epochs=1, progress=False)
    first = {t: store.read(t) for t in S.TABLES}
    run_pack(pack, store, block_epochs=1, progress=False)
    for table, count in expected_rows(pack).items():
        frame = store.read(table)
        assert len(frame) == count
        key = [S.RUN_ID] + ([S.STEP] if table != S.RUNS else []) + ([S.LAYER, S.NODE] if "nodes" in table else [])
        assert not frame.duplicated(key).any()
        if table != S.RUNS:  # same numbers again: training is deterministic
            cols = [c for c in frame.columns if c != S.PARTITION]
            pd.testing.assert_frame_equal(
                frame[cols].sort_values(key).reset_index(drop=True),
                first[table][cols].sort_values(key).reset_index(drop=True),
            )


def test_crash_between_temp_write_and_rename_leaves_nothing_visible(written, tmp_path) -> None:
    pack, _, _ = written
    store = TraceStore(str(tmp_path), "crash")
    run_pack(pack, store, block_epochs=1, progress=False)
    before = {t: len(store.read(t)) for t in S.TABLES}
    rows = store.dataset(S.SCALARS).to_table()
    tmp, _, _ = store.write_temp(S.SCALARS, pack.pack_id, rows.drop_columns([S.PARTITION]))  # "crash" here
    assert os.path.exists(tmp) and os.path.basename(tmp).startswith(".tmp-")
    assert {t: len(store.read(t)) for t in S.TABLES} == before
    assert len(pd.read_parquet(store.table_dir(S.SCALARS))) == before[S.SCALARS]
    glob = f"{store.table_dir(S.SCALARS)}/*/*.parquet"
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall()[0][0] == before[S.SCALARS]


def test_storage_uri_and_bad_storage(tmp_path) -> None:
    store = TraceStore(f"file://{tmp_path}", "uri")
    store.check_writable()
    assert store.root == f"{tmp_path}/uri"
    with pytest.raises(ValueError, match="storage"):
        TraceStore("/proc/no/such", "x").check_writable()
    with pytest.raises(ValueError, match="storage"):
        TraceStore("nosuchscheme://bucket/x", "x")
    with pytest.raises(ValueError, match="experiment"):
        TraceStore(str(tmp_path), "../up")


def test_schema_page_is_the_declarations() -> None:
    from pathlib import Path

    from spec_ray.engine.spec import RunSpec
    from spec_ray.engine.spec_io import flat_fields

    page = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text()
    for table in (*S.TABLES, *S.OPTIONAL_TABLES):
        assert S.markdown(table) in page, f"docs/schema.md's {table} table is not the one declared in schema.py"
    rows = {
        name.strip() for line in page.splitlines() if line.startswith("| ") for name in line.split("|")[1].split(",")
    }
    missing = [k for k in flat_fields(RunSpec()) if k not in rows]
    assert not missing, f"spec columns of the runs table missing from docs/schema.md: {missing}"
    assert S.runs_schema().names[: len(S.RUN_COLUMNS)] == [c.name for c in S.RUN_COLUMNS]
    assert tuple(flat_fields(RunSpec())) == S.SPEC_COLUMNS  # derived from the roles, in the record's order
    named = (S.P, S.MULTI, S.M, S.SEED, S.N_TRAIN, S.LOSS, S.AUGMENTATION, S.EPOCHS, S.ITERS_PER_EPOCH,
             S.STEPS_PER_EPOCH, S.SUCCESS_THRESHOLD, S.DEPTH, S.ARCH, S.WIDTHS, S.STUDENT_BN, S.KEEP_CORRELATIONS,
             S.KEEP_MODULATION)  # fmt: skip
    assert set(named) <= set(S.SPEC_COLUMNS)  # analysis reads no column the runs table lacks
