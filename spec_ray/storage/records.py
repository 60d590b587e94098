"""Long-format Arrow tables from checkpoint metrics and run status.

Axes: R runs, m_l teacher width, n_l student width. Rows are run-major, then layer,
then node, so a run's rows at one step are contiguous.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from spec_ray.engine.measure.metrics import Checkpoint, scalar_columns, student_columns, teacher_columns
from spec_ray.engine.specs.spec_io import flat_fields
from spec_ray.engine.training.pack import Pack
from spec_ray.storage import schema as S


def _np(t) -> np.ndarray:
    return t.detach().to("cpu").double().numpy() if t.is_floating_point() else t.detach().to("cpu").numpy()


def _node_rows(ids: np.ndarray, step: int, epoch: float, layer: int, count: int) -> dict[str, np.ndarray]:
    runs = len(ids)
    return {
        S.RUN_ID: np.repeat(ids, count),
        S.STEP: np.full(runs * count, step, dtype=np.int64),
        S.EPOCH: np.full(runs * count, epoch),
        S.LAYER: np.full(runs * count, layer, dtype=np.int16),
        S.NODE: np.tile(np.arange(count, dtype=np.int32), runs),
    }


def _concat(parts: list[dict[str, np.ndarray]], table: str) -> pa.Table:
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return pa.table(cols, schema=S.SCHEMAS[table])


def checkpoint_tables(pack: Pack, ckpt: Checkpoint) -> dict[str, pa.Table]:
    """The teacher_nodes, student_nodes and scalars rows of one checkpoint.

    Generic over the columns: each table's metric columns (``schema.METRICS``) come from
    ``metrics.teacher_columns`` / ``student_columns`` / ``scalar_columns`` by name.
    """
    ids = np.array(pack.run_ids, dtype=object)
    step = ckpt.step
    epoch = step / pack.spec.steps_per_epoch
    threshold = pack.spec.checkpoint.success_threshold
    parts: dict[str, list[dict[str, np.ndarray]]] = {S.TEACHER_NODES: [], S.STUDENT_NODES: []}
    for layer in range(len(ckpt.eval_corr)):
        for table, columns in ((S.TEACHER_NODES, teacher_columns(ckpt, layer, threshold)),
                               (S.STUDENT_NODES, student_columns(ckpt, layer))):  # fmt: skip
            count = columns[S.BEST_CORR].shape[1]  # m_l or n_l
            rows = _node_rows(ids, step, epoch, layer + 1, count)
            rows.update({name: _np(columns[name]).ravel() for name in S.METRICS[table]})  # (R count,) each
            parts[table].append(rows)
    scalars = {S.RUN_ID: ids, S.STEP: np.full(len(ids), step, dtype=np.int64), S.EPOCH: np.full(len(ids), epoch)}
    columns = scalar_columns(ckpt)
    scalars.update({name: _np(columns[name]) for name in S.METRICS[S.SCALARS]})  # (R,) each
    tables = {
        S.TEACHER_NODES: _concat(parts[S.TEACHER_NODES], S.TEACHER_NODES),
        S.STUDENT_NODES: _concat(parts[S.STUDENT_NODES], S.STUDENT_NODES),
        S.SCALARS: pa.table(scalars, schema=S.SCHEMAS[S.SCALARS]),
    }
    if pack.spec.checkpoint.keep_correlations:
        tables[S.CORR_MATRICES] = correlation_rows(ids, step, epoch, ckpt)
    if ckpt.modulation is not None:
        tables[S.MODULATION] = modulation_rows(ids, step, epoch, ckpt)
    return tables


def _pair_rows(ids: np.ndarray, step: int, epoch: float, layer: int, m: int, n: int) -> dict[str, np.ndarray]:
    """Keys of R m n (teacher j, student k) rows: run-major, then teacher, then student."""
    rows = _node_rows(ids, step, epoch, layer, m * n)  # node runs over the m n pairs here
    rows[S.NODE] = np.tile(np.repeat(np.arange(m, dtype=np.int32), n), len(ids))
    rows[S.STUDENT] = np.tile(np.arange(n, dtype=np.int32), len(ids) * m)
    return rows


def correlation_rows(ids: np.ndarray, step: int, epoch: float, ckpt: Checkpoint) -> pa.Table:
    """Every run's and hidden layer's teacher x student correlations, one row each holding the m_l x n_l
    matrix as float32, row-major: what the metrics measured, in the precision they were measured."""
    parts = []
    for layer, corr in enumerate(ckpt.eval_corr):
        runs, m, n = corr.shape  # (R, m_l, n_l)
        rows = _node_rows(ids, step, epoch, layer + 1, 1)
        del rows[S.NODE]
        rows[S.TEACHERS] = np.full(runs, m, dtype=np.int32)
        rows[S.STUDENTS] = np.full(runs, n, dtype=np.int32)
        values = corr.detach().to("cpu", torch.float32).numpy().reshape(runs * m * n)  # (R m n,) run-major
        rows[S.CORR] = matrices(values, runs, m * n)
        parts.append(rows)
    cols = {k: pa.concat_arrays([p[k] for p in parts]) if k == S.CORR else np.concatenate([p[k] for p in parts])
            for k in parts[0]}  # fmt: skip
    return pa.table(cols, schema=S.SCHEMAS[S.CORR_MATRICES])


def matrices(values: np.ndarray, rows: int, size: int) -> pa.ListArray:
    """``rows`` lists of ``size`` float32 values each, from one flat array (no copy of the values)."""
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * size)  # (rows + 1,)
    return pa.ListArray.from_arrays(offsets, pa.array(values, pa.float32()))


def modulation_rows(ids: np.ndarray, step: int, epoch: float, ckpt: Checkpoint) -> pa.Table:
    """beta* and H* of every (teacher j°, student j) pair of every run and hidden layer."""
    parts = []
    for layer, mod in enumerate(ckpt.modulation):
        _, n, m = mod.beta.shape  # (R, n_l, m_l)
        rows = _pair_rows(ids, step, epoch, layer + 1, m, n)
        rows[S.BETA] = _np(mod.beta.transpose(1, 2)).ravel()  # (R m n,), as the keys
        rows[S.H] = _np(mod.h.transpose(1, 2)).ravel()
        parts.append(rows)
    return _concat(parts, S.MODULATION)


def runs_table(
    pack: Pack,
    experiment: str,
    status: str,
    steps_done: int,
    diverged_step: np.ndarray,
    wall_time: float,
    trained_on: str,
) -> pa.Table:
    """One row per run of the pack: ids, status, the device it trained on and every spec field."""
    rows = []
    for i, (rid, spec) in enumerate(zip(pack.run_ids, pack.runs)):
        rows.append(
            {
                S.RUN_ID: rid,
                S.PACK_ID: pack.pack_id,
                S.EXPERIMENT: experiment,
                S.STATUS: status,
                S.DIVERGED: bool(diverged_step[i] >= 0),
                S.DIVERGED_STEP: int(diverged_step[i]) if diverged_step[i] >= 0 else None,
                S.STEPS_DONE: steps_done,
                S.WALL_TIME: wall_time,
                S.TRAINED_ON: trained_on,
                **flat_fields(spec),
            }
        )
    return pa.Table.from_pylist(rows, schema=S.runs_schema(pack.spec))
