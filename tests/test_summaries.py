"""Correlation matrices and the long layout of before 0.2: read back equal whatever a file's row groups
and order; node and matrix files cut at checkpoints, measurements without dictionaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from spec_ray.storage import schema as S
from spec_ray.storage.summaries import matrices_to_long, read_matrices
from spec_ray.storage.traces import GROUP_BYTES, TraceStore, dictionary_columns

KEY = [(S.RUN_ID, "ascending"), (S.STEP, "ascending"), (S.LAYER, "ascending")]


def matrices(seed: int = 0) -> pa.Table:
    """3 runs x 4 checkpoints x 2 layers of (m, n) float32 matrices, in the writer's order (step, run, layer)."""
    rng = np.random.default_rng(seed)
    shapes = {1: (3, 5), 2: (2, 7)}
    rows = []
    for step in (0, 1, 10, 100):
        for run in ("b-run", "a-run", "c-run"):
            for layer, (m, n) in shapes.items():
                corr = rng.uniform(-1, 1, m * n).astype(np.float32)
                rows.append({S.RUN_ID: run, S.STEP: step, S.EPOCH: step / 10, S.LAYER: layer, S.TEACHERS: m,
                             S.STUDENTS: n, S.CORR: corr})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=S.SCHEMAS[S.CORR_MATRICES])


def test_a_long_file_reads_back_as_its_matrices_whatever_its_row_groups_and_order(tmp_path: Path) -> None:
    """Row groups of 7 pairs cut most matrices in two (carried into the next group); shuffled pairs are
    sorted; a run filter keeps that run's matrices only; a missing pair is an error, not a short matrix."""
    want = matrices()
    long = matrices_to_long(want)
    assert long.num_rows == 3 * 4 * (15 + 14)
    fs = pafs.LocalFileSystem()
    shuffled = long.take(pa.array(np.random.default_rng(1).permutation(long.num_rows)))
    for name, rows, group in (("whole", long, None), ("groups", long, 7), ("shuffled", shuffled, 7)):
        path = str(tmp_path / f"{name}.parquet")
        pq.write_table(rows, path, row_group_size=group)
        got = read_matrices(fs, path, long=True)
        assert got.sort_by(KEY).equals(want.sort_by(KEY)), name
        one = read_matrices(fs, path, long=True, run_ids=["c-run"])
        assert one.sort_by(KEY).equals(want.filter(pa.compute.equal(want[S.RUN_ID], "c-run")).sort_by(KEY)), name
    path = str(tmp_path / "short.parquet")
    pq.write_table(long.slice(1), path, row_group_size=7)
    with pytest.raises(ValueError, match="form no matrices"):
        read_matrices(fs, path, long=True)


def test_files_are_cut_at_checkpoints_and_measurements_have_no_dictionary(tmp_path: Path) -> None:
    """A row group holds whole checkpoints (a read of some steps decodes only theirs); key columns keep a
    dictionary, float and list columns none."""
    store = TraceStore(str(tmp_path), "exp")
    per_step = GROUP_BYTES // 16 + 1  # two float64-ish columns: each checkpoint over GROUP_BYTES
    steps = np.repeat(np.array([0, 5, 9], np.int64), per_step)  # (rows,)
    rows = pa.table({S.STEP: steps, S.CORR: np.random.default_rng(0).random(len(steps))})
    written = store.write("t", "p", "b.parquet", rows)
    meta = pq.ParquetFile(store.file_path("t", "p", "b.parquet")).metadata
    assert written.rows == 3 * per_step and meta.num_row_groups == 3
    for g in range(3):
        stats = meta.row_group(g).column(0).statistics
        assert stats.min == stats.max == [0, 5, 9][g] and meta.row_group(g).num_rows == per_step
    small = pa.table({S.STEP: np.arange(100, dtype=np.int64), S.CORR: np.zeros(100)})
    store.write("t", "p", "s.parquet", small)
    assert pq.ParquetFile(store.file_path("t", "p", "s.parquet")).metadata.num_row_groups == 1  # under GROUP_BYTES
    assert dictionary_columns(S.SCHEMAS[S.CORR_MATRICES]) == [S.RUN_ID, S.STEP, S.LAYER, S.TEACHERS, S.STUDENTS]
    store.write(S.CORR_MATRICES, "p", "m.parquet", matrices())
    column = pq.ParquetFile(store.file_path(S.CORR_MATRICES, "p", "m.parquet")).metadata.row_group(0).column(6)
    assert column.path_in_schema.startswith(S.CORR) and "PLAIN_DICTIONARY" not in column.encodings
    assert "BYTE_STREAM_SPLIT" in column.encodings
