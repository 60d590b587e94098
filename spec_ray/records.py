"""Long-format Arrow tables from checkpoint metrics and run status.

Axes: R runs, m_l teacher width, n_l student width. Rows are run-major, then layer,
then node, so a run's rows at one step are contiguous.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from spec_ray import schema as S
from spec_ray.metrics import Checkpoint
from spec_ray.pack import Pack
from spec_ray.spec import flat_fields


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
    """The teacher_nodes, student_nodes and scalars rows of one checkpoint."""
    ids = np.array(pack.run_ids, dtype=object)
    step = ckpt.step
    epoch = step / pack.spec.steps_per_epoch
    threshold = pack.spec.checkpoint.success_threshold
    teacher_parts, student_parts = [], []
    for i, corr in enumerate(ckpt.eval_corr):
        r, m, n = corr.shape
        t_best, t_arg = corr.max(dim=2)  # (R, m)
        s_best, s_arg = corr.max(dim=1)  # (R, n)
        if ckpt.train_corr is not None:
            t_train = _np(ckpt.train_corr[i].amax(dim=2)).ravel()  # (R m,)
            s_train = _np(ckpt.train_corr[i].amax(dim=1)).ravel()  # (R n,)
        else:
            t_train, s_train = np.full(r * m, np.nan), np.full(r * n, np.nan)
        t_rows = _node_rows(ids, step, epoch, i + 1, m)
        t_rows[S.BEST_CORR] = _np(t_best).ravel()
        t_rows[S.BEST_STUDENT] = _np(t_arg).ravel().astype(np.int32)
        t_rows[S.SUCCESS] = t_rows[S.BEST_CORR] > threshold
        t_rows[S.FANOUT_NORM] = _np(ckpt.teacher_fanout[i]).ravel()
        t_rows[S.BEST_CORR_TRAIN] = t_train
        t_rows[S.INIT_RANK] = _np(ckpt.init_rank[i]).ravel() if ckpt.init_rank else np.full(r * m, np.nan)
        teacher_parts.append(t_rows)
        s_rows = _node_rows(ids, step, epoch, i + 1, n)
        s_rows[S.BEST_CORR] = _np(s_best).ravel()
        s_rows[S.BEST_TEACHER] = _np(s_arg).ravel().astype(np.int32)
        s_rows[S.FANOUT_NORM] = _np(ckpt.student_fanout[i]).ravel()
        s_rows[S.BEST_CORR_TRAIN] = s_train
        student_parts.append(s_rows)
    nan = np.full(len(ids), np.nan)
    scalars = {
        S.RUN_ID: ids,
        S.STEP: np.full(len(ids), step, dtype=np.int64),
        S.EPOCH: np.full(len(ids), epoch),
        S.TRAIN_LOSS: nan if ckpt.train_loss is None else _np(ckpt.train_loss),
        S.EVAL_LOSS: _np(ckpt.eval_loss),
        S.RHO_MEAN: _np(ckpt.eval_corr[0].amax(dim=2).mean(dim=1)),
        S.GRAD_NORM: nan if ckpt.grad_norm is None else _np(ckpt.grad_norm),
        S.DIVERGED: _np(ckpt.diverged_step) >= 0,
        S.EVAL_ACCURACY: nan if ckpt.eval_accuracy is None else _np(ckpt.eval_accuracy),
        S.MEAN_RANK: _np(ckpt.init_rank[0].mean(dim=1)) if ckpt.init_rank else nan,
    }
    return {
        S.TEACHER_NODES: _concat(teacher_parts, S.TEACHER_NODES),
        S.STUDENT_NODES: _concat(student_parts, S.STUDENT_NODES),
        S.SCALARS: pa.table(scalars, schema=S.SCHEMAS[S.SCALARS]),
    }


def runs_table(
    pack: Pack, experiment: str, status: str, steps_done: int, diverged_step: np.ndarray, wall_time: float
) -> pa.Table:
    """One row per run of the pack: ids, status and every spec field."""
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
                **flat_fields(spec),
            }
        )
    return pa.Table.from_pylist(rows, schema=S.runs_schema(pack.spec))
