"""Luck Matters' rank of the final winners (sec. 7, figs. 5, 17, 18), made from a pack's stored correlation
matrices where the pack trains: the ``winner_ranks`` table, which the report reads instead of every correlation.

After training, each teacher node j has its most correlated student, the final winner k*. At every
checkpoint, k*'s rank among all students by rho_jk (0 = first) is divided by n - 1 so that it lies in
[0, 1]; a finished run's is 0 at its last step by definition. A run's row per checkpoint and layer holds
the mean and median over its teacher nodes.

The ranks are taken from the float32 matrices as stored, so the summary a pack writes and one made later
from its files are equal. Two passes over the pack's files, one file in memory at a time: the final
step's matrices give each (run, layer) its winners, then every file's rows their ranks. Files in the long
layout of spec-ray before 0.2 (``correlations``) are turned into matrices file by file first.

Axes: m teacher nodes, n student nodes.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spec_ray.storage import schema as S
from spec_ray.storage.traces import TMP_PREFIX, TraceStore, Written, block_name, block_range

Winners = dict[tuple[str, int], np.ndarray]
"""Per (run id, layer), each teacher node's final winner: (m,) student indices."""


def layer_ranks(corr: np.ndarray, winners: np.ndarray) -> np.ndarray:
    """Each teacher node's final-winner rank in one matrix ``corr`` (m, n), scaled to [0, 1]: (m,)."""
    m, n = corr.shape
    at_winner = corr[np.arange(m), winners][:, None]  # (m, 1)
    above = (corr > at_winner).sum(axis=1)  # (m,) students ranked higher; NaN ranks no one
    return above / max(n - 1, 1)


def winners_of(corr: np.ndarray) -> np.ndarray:
    """Each teacher node's most correlated student in ``corr`` (m, n), a NaN never chosen: (m,)."""
    return np.where(np.isnan(corr), -np.inf, corr).argmax(axis=1)


def _matrices(table: pa.Table) -> Iterator[tuple[int, np.ndarray]]:
    """(row, matrix (m, n)) of each row of a ``corr_matrices`` table, views of one flat array."""
    column = table.column(S.CORR).combine_chunks()
    values = column.values.to_numpy(zero_copy_only=False)  # (sum m n,) float32
    offsets = column.offsets.to_numpy()  # (rows + 1,)
    teachers = table.column(S.TEACHERS).to_numpy()
    students = table.column(S.STUDENTS).to_numpy()
    for i in range(table.num_rows):
        yield i, values[offsets[i] : offsets[i + 1]].reshape(teachers[i], students[i])


def _matrix_starts(run, step, layer, node, student) -> np.ndarray | None:
    """Where each matrix begins when the pairs come a whole matrix at a time, each row-major, no matrix
    twice (the writer's order: step, run, layer, node, student); None otherwise."""
    new = np.flatnonzero((run[1:] != run[:-1]) | (step[1:] != step[:-1]) | (layer[1:] != layer[:-1])) + 1
    starts = np.concatenate([[0], new]).astype(np.int64)  # (rows,)
    sizes = np.diff(np.append(starts, len(run)))  # (rows,)
    students = np.repeat(np.maximum.reduceat(student, starts) + 1, sizes)  # (pairs,)
    if not np.array_equal(node * students + student, np.arange(len(run)) - np.repeat(starts, sizes)):
        return None
    heads = np.lexsort((layer[starts], step[starts], run[starts]))  # (rows,)
    keys = np.stack([run[starts], step[starts], layer[starts]])[:, heads]  # (3, rows)
    return starts if (np.diff(keys, axis=1) != 0).any(axis=0).all() else None


def long_to_matrices(rows: pa.Table) -> pa.Table:
    """Rows of the long ``correlations`` layout (a row per teacher x student pair) as ``corr_matrices`` rows.
    In NumPy on integer keys, sorting only pairs out of the writer's order: the pandas sort and group-by
    this replaced held a 6-run large-FC sweep's report at 3.7 GiB (docs/performance.md)."""
    if rows.num_rows == 0:
        return S.SCHEMAS[S.CORR_MATRICES].empty_table()
    ids = pc.dictionary_encode(rows.column(S.RUN_ID)).combine_chunks()  # (pairs,) a code a run
    names = ids.dictionary.to_numpy(zero_copy_only=False)  # (runs,)
    run = ids.indices.to_numpy()  # (pairs,)
    step, layer = rows.column(S.STEP).to_numpy(), rows.column(S.LAYER).to_numpy()  # (pairs,)
    node, student = rows.column(S.NODE).to_numpy(), rows.column(S.STUDENT).to_numpy()  # (pairs,)
    epoch = rows.column(S.EPOCH).to_numpy()  # (pairs,)
    corr = rows.column(S.CORR).to_numpy().astype(np.float32)  # (pairs,) stored float64 of float32 metrics
    starts = _matrix_starts(run, step, layer, node, student)
    if starts is None:  # pairs in another order: sorted into matrices first
        order = np.lexsort((student, node, layer, step, run))  # (pairs,) the last key first
        run, step, layer, node, student, epoch, corr = (
            a[order] for a in (run, step, layer, node, student, epoch, corr)
        )
        starts = _matrix_starts(run, step, layer, node, student)
        if starts is None:
            raise ValueError("correlation rows that form no matrices: a pair missing or stored twice")
    out = {
        S.RUN_ID: names[run[starts]],
        S.STEP: step[starts].astype(np.int64),
        S.EPOCH: epoch[starts].astype(np.float64),
        S.LAYER: layer[starts].astype(np.int16),
        S.TEACHERS: (np.maximum.reduceat(node, starts) + 1).astype(np.int32),
        S.STUDENTS: (np.maximum.reduceat(student, starts) + 1).astype(np.int32),
        S.CORR: pa.ListArray.from_arrays(pa.array(np.append(starts, len(run)).astype(np.int32)), pa.array(corr)),
    }
    return pa.table(out, schema=S.SCHEMAS[S.CORR_MATRICES])


def matrices_to_long(rows: pa.Table) -> pa.Table:
    """``corr_matrices`` rows in the long layout: a row per run, checkpoint, layer, teacher j and student k
    (``CORRELATION_COLUMNS``), what a pandas user groups by node."""
    column = rows.column(S.CORR).combine_chunks()
    sizes = np.diff(column.offsets.to_numpy())  # (rows,) m n each
    students = np.repeat(rows.column(S.STUDENTS).to_numpy(), sizes)  # (pairs,)
    within = np.arange(sizes.sum()) - np.repeat(column.offsets.to_numpy()[:-1], sizes)  # (pairs,) j n + k
    out = {k: pc.take(rows.column(k), pa.array(np.repeat(np.arange(rows.num_rows), sizes)))
           for k in (S.RUN_ID, S.STEP, S.EPOCH, S.LAYER)}  # fmt: skip
    out[S.NODE] = pa.array((within // students).astype(np.int32))
    out[S.STUDENT] = pa.array((within % students).astype(np.int32))
    out[S.CORR] = pc.cast(column.values, pa.float64())
    return pa.table(out, schema=S.SCHEMAS[S.CORRELATIONS])


def read_matrices(fs: pafs.FileSystem, path: str, long: bool, run_ids: list[str] | None = None) -> pa.Table:
    """One stored file of a pack's correlations as ``corr_matrices`` rows, whatever its layout; ``run_ids``:
    only theirs."""
    where = None if run_ids is None else pc.field(S.RUN_ID).isin(pa.array(list(run_ids), pa.string()))
    if not long:
        return pq.read_table(path, filesystem=fs, filters=where)
    try:
        return pa.concat_tables(list(_long_in_groups(fs, path, where)))
    except ValueError:  # pairs out of the writer's order across row groups: the file sorted whole
        return long_to_matrices(pq.read_table(path, filesystem=fs, filters=where, read_dictionary=[S.RUN_ID]))


def _long_in_groups(fs: pafs.FileSystem, path: str, where) -> Iterator[pa.Table]:
    """A long-layout file's matrices a row group at a time, a matrix cut by a group's end carried into the
    next: memory of a group, not of the file (a 6-run large-FC sweep's report held 2.3 GiB reading files
    whole; docs/performance.md)."""
    with fs.open_input_file(path) as source:
        reader = pq.ParquetFile(source)
        carry = None
        for group in range(reader.num_row_groups):
            rows = reader.read_row_group(group, columns=list(S.SCHEMAS[S.CORRELATIONS].names))
            rows = rows if where is None else rows.filter(where)
            rows = rows if carry is None else pa.concat_tables([carry, rows])
            if group < reader.num_row_groups - 1 and rows.num_rows:
                cut = _last_start(rows)
                rows, carry = rows.slice(0, cut), rows.slice(cut)
            if rows.num_rows:
                yield long_to_matrices(rows)


def _last_start(rows: pa.Table) -> int:
    """The first row of the last (run, step, layer) in ``rows``, which the next row group may continue."""
    keys = [rows.column(k).combine_chunks() for k in (S.RUN_ID, S.STEP, S.LAYER)]
    last = [k[-1] for k in keys]
    same = pc.and_(pc.and_(pc.equal(keys[0], last[0]), pc.equal(keys[1], last[1])), pc.equal(keys[2], last[2]))
    differs = np.flatnonzero(~same.to_numpy(zero_copy_only=False))  # (rows,)
    return int(differs[-1]) + 1 if len(differs) else 0


def _final_winners(fs: pafs.FileSystem, files: list[str], long: bool, final_step: int, run_ids) -> Winners:
    """Each (run, layer)'s final winners, from the file(s) whose block holds ``final_step``."""
    holding = [f for f in files if (r := block_range(posixpath.basename(f))) is None or r[0] <= final_step <= r[1]]
    winners: Winners = {}
    for path in holding or files:
        table = read_matrices(fs, path, long, run_ids)
        table = table.filter(pc.equal(table.column(S.STEP), final_step))
        ids, layers = table.column(S.RUN_ID).to_pylist(), table.column(S.LAYER).to_pylist()
        for i, corr in _matrices(table):
            winners[(ids[i], layers[i])] = winners_of(corr)
    return winners


def winner_ranks(fs: pafs.FileSystem, files: list[str], final_step: int, long: bool = False,
                 run_ids: list[str] | None = None) -> pa.Table:  # fmt: skip
    """The ``winner_ranks`` rows of the runs whose correlations ``files`` hold (a pack's, each file in
    memory alone); ``long``: files of the long layout; ``run_ids``: only these runs. Runs, then layers,
    then steps, in order; a run without a final step has no rows."""
    winners = _final_winners(fs, files, long, final_step, run_ids)
    parts = []
    for path in files:
        table = read_matrices(fs, path, long, run_ids)
        ids, layers = table.column(S.RUN_ID).to_pylist(), table.column(S.LAYER).to_pylist()
        mean, median, keep = np.zeros(table.num_rows), np.zeros(table.num_rows), np.zeros(table.num_rows, bool)
        for i, corr in _matrices(table):
            won = winners.get((ids[i], layers[i]))
            if won is not None:
                rank = layer_ranks(corr, won)  # (m,)
                mean[i], median[i], keep[i] = rank.mean(), np.median(rank), True
        parts.append(pa.table({
            S.RUN_ID: table.column(S.RUN_ID), S.STEP: table.column(S.STEP), S.EPOCH: table.column(S.EPOCH),
            S.LAYER: table.column(S.LAYER), S.MEAN_RANK: pa.array(mean), S.MEDIAN_RANK: pa.array(median),
            S.TEACHERS: table.column(S.TEACHERS),
        }).filter(pa.array(keep)))  # fmt: skip
    if not parts:
        return S.SCHEMAS[S.WINNER_RANKS].empty_table()
    out = pa.concat_tables(parts).cast(S.SCHEMAS[S.WINNER_RANKS])
    return out.sort_by([(S.RUN_ID, "ascending"), (S.LAYER, "ascending"), (S.STEP, "ascending")])


def correlation_files(fs: pafs.FileSystem, folder: str) -> list[str]:
    """A pack's stored correlation files in one table's folder (``<table>/pack=<id>``), in block order."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(folder))
    except (FileNotFoundError, OSError):
        return []
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                  and not posixpath.basename(i.path).startswith((TMP_PREFIX, ".", "_")))  # fmt: skip


def write_winner_ranks(store: TraceStore, pack_id: str, final_step: int, files: list[str], long: bool) -> Written:
    """Make a pack's ``winner_ranks`` from its stored correlation ``files`` and write them as one file, named
    as the block of every step (what the pack's ledger then records)."""
    rows = winner_ranks(store.fs, files, final_step, long)
    return store.write(S.WINNER_RANKS, pack_id, block_name(0, final_step), rows)
