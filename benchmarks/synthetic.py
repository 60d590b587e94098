"""Synthetic experiments in the documented trace schema, for the analysis benchmark and tests.

Rows are written through the real ``TraceStore`` (same layout, names and atomic writes
as the engine's), at the engine's own checkpoint steps (``pack.checkpoint_steps``) and in
its Parquet blocks (``runner.blocks``), with best correlations drawn from a ``recovery`` law: the final best
correlation of teacher node j of a run, as a function of (p, multi, node, m). A node
approaches its final value along a logistic curve in log-steps, later for weaker nodes.

Axes: R runs, K checkpoints, m teacher nodes, n student nodes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.specs.spec_io import flat_fields
from spec_ray.engine.training.pack import checkpoint_steps
from spec_ray.storage import schema as S
from spec_ray.storage.traces import TraceStore, block_name, blocks


def paper_like(p: np.ndarray, multi: np.ndarray, node: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Final best correlation: strong nodes near 1, weak ones lower the larger p, better with multi."""
    strength = (node + 1.0) ** -p  # (..) relative fan-out norm
    return np.clip(1.0 - 0.6 * (1 - strength) * (1.5 / (1 + np.log2(multi))), 0.0, 1.0)


def write_experiment(
    storage: str,
    name: str,
    *,
    ps=(0.0, 1.0, 2.0),
    multis=(1, 2),
    seeds=(1, 2, 3),
    m: int = 10,
    epochs: int = 10,
    iters: int = 100,
    recovery: Callable[..., np.ndarray] = paper_like,
    block_epochs: int = 10,
    noise: float = 0.02,
    rng_seed: int = 0,
) -> TraceStore:
    """Write runs, teacher_nodes, student_nodes and scalars for the factorial p x multi x seed."""
    store = TraceStore(storage, name)
    rng = np.random.default_rng(rng_seed)
    for multi in multis:
        n = m * multi
        specs = [
            RunSpec(seed=s).replace(**{"teacher.widths": (m,), "teacher.p": p, "student.multi": multi,
                                       "train.epochs": epochs, "train.iters_per_epoch": iters})
            for p in ps for s in seeds
        ]  # fmt: skip
        steps = np.array(checkpoint_steps(specs[0]), dtype=np.int64)  # (K,)
        ids = np.array([f"syn-{name}-{multi}-{i:05d}" for i in range(len(specs))], dtype=object)  # (R,)
        pack = f"syn{multi}"
        p_run = np.array([s.teacher.p for s in specs])  # (R,)
        final = recovery(p_run[:, None], np.full((len(specs), 1), multi), np.arange(m)[None, :], m)  # (R, m)
        final = np.clip(final + rng.normal(0, noise, final.shape) if noise else final, 0, 1)
        # Onset in log10-steps: strong nodes at step ~10, weak ones later the larger p,
        # every node settled by a tenth of the run.
        span = np.log10(epochs * iters) - 2.5
        onset = 1 + span * (np.arange(m)[None, :] / max(1, m - 1)) * np.minimum(1, p_run[:, None] / 2)  # (R, m)
        rows = []
        for i, spec in enumerate(specs):
            rows.append({S.RUN_ID: ids[i], S.PACK_ID: pack, S.EXPERIMENT: name, S.STATUS: S.STATUS_DONE,
                         S.DIVERGED: False, S.DIVERGED_STEP: None, S.STEPS_DONE: int(steps[-1]), S.WALL_TIME: 1.0,
                         **flat_fields(spec)})  # fmt: skip
        store.write(S.RUNS, pack, "runs.parquet", pa.Table.from_pylist(rows, schema=S.runs_schema(specs[0])))
        for lo, hi in blocks(specs[0], block_epochs):
            block = steps[(steps >= lo) & (steps <= hi)]  # (Kb,)
            logstep = np.log10(np.maximum(block, 1))[None, :, None]  # (1, Kb, 1)
            curve = 1 / (1 + np.exp(-12 * (logstep - onset[:, None, :])))  # (R, Kb, m)
            curve[:, block == 0, :] = 0.0  # init: no node specialized
            t_best = 0.2 + (final[:, None, :] - 0.2) * curve  # (R, Kb, m)
            _write_block(store, pack, ids, block, iters, t_best, n, m, lo, hi, rng)
    return store


def _write_block(store, pack, ids, block, iters, t_best, n, m, lo, hi, rng) -> None:
    r, k = len(ids), len(block)
    key_t = {S.RUN_ID: np.repeat(ids, k * m), S.STEP: np.tile(np.repeat(block, m), r),
             S.EPOCH: np.tile(np.repeat(block / iters, m), r), S.LAYER: np.ones(r * k * m, np.int16),
             S.NODE: np.tile(np.arange(m, dtype=np.int32), r * k)}  # fmt: skip
    best = t_best.ravel()
    teacher = {**key_t, S.BEST_CORR: best, S.BEST_STUDENT: rng.integers(0, n, best.size, dtype=np.int32),
               S.SUCCESS: best > 0.95, S.FANOUT_NORM: np.ones(r * k * m), S.BEST_CORR_TRAIN: best,
               S.BEST_INIT_RANK: rng.random(best.size)}  # fmt: skip
    s_best = np.clip(rng.beta(2, 1, r * k * n), 0, 1)  # (R K n,)
    student = {S.RUN_ID: np.repeat(ids, k * n), S.STEP: np.tile(np.repeat(block, n), r),
               S.EPOCH: np.tile(np.repeat(block / iters, n), r), S.LAYER: np.ones(r * k * n, np.int16),
               S.NODE: np.tile(np.arange(n, dtype=np.int32), r * k), S.BEST_CORR: s_best,
               S.BEST_TEACHER: rng.integers(0, m, s_best.size, dtype=np.int32),
               S.FANOUT_NORM: s_best**4 + rng.normal(0, 0.02, s_best.size) ** 2, S.BEST_CORR_TRAIN: s_best}  # fmt: skip
    eval_loss = 10 ** (1 - 2 * t_best.mean(axis=2)).ravel()  # (R K,)
    scalars = {S.RUN_ID: np.repeat(ids, k), S.STEP: np.tile(block, r), S.EPOCH: np.tile(block / iters, r),
               S.TRAIN_LOSS: eval_loss * 0.8, S.EVAL_LOSS: eval_loss, S.RHO_MEAN: t_best.mean(axis=2).ravel(),
               S.GRAD_NORM: eval_loss * 0.1, S.DIVERGED: np.zeros(r * k, bool),
               S.EVAL_ACCURACY: np.full(r * k, np.nan), S.MEAN_BEST_INIT_RANK: rng.random(r * k)}  # fmt: skip
    name = block_name(lo, hi)
    for table, cols in ((S.TEACHER_NODES, teacher), (S.STUDENT_NODES, student), (S.SCALARS, scalars)):
        schema = S.SCHEMAS[table]  # a declared column the generator does not model is written as nulls
        rows = len(next(iter(cols.values())))
        cols = {f.name: cols[f.name] if f.name in cols else pa.nulls(rows, f.type) for f in schema}
        store.write(table, pack, name, pa.table(cols, schema=schema))
