"""Names and Arrow schemas of the trace tables, shared by the writer and ``analysis``.

Layout on storage (hive-partitioned, docs/schema.md):
``<storage>/<experiment>/<table>/pack=<pack_id>/<file>.parquet``.
``layer`` is 1-based (1 = lowest hidden layer); teacher ``node`` 0 is the strongest.
"""

from __future__ import annotations

import pyarrow as pa

from spec_ray.spec import RunSpec, flat_fields

# Tables.
RUNS = "runs"
TEACHER_NODES = "teacher_nodes"
STUDENT_NODES = "student_nodes"
SCALARS = "scalars"
TABLES = (RUNS, TEACHER_NODES, STUDENT_NODES, SCALARS)
PARTITION = "pack"

# Columns shared by the per-checkpoint tables.
RUN_ID = "run_id"
STEP = "step"
EPOCH = "epoch"
LAYER = "layer"
NODE = "node"
BEST_CORR = "best_corr"
BEST_CORR_TRAIN = "best_corr_train"
BEST_STUDENT = "best_student"
BEST_TEACHER = "best_teacher"
SUCCESS = "success"
FANOUT_NORM = "fanout_norm"
TRAIN_LOSS = "train_loss"
EVAL_LOSS = "eval_loss"
RHO_MEAN = "rho_mean"
GRAD_NORM = "grad_norm"
DIVERGED = "diverged"
EVAL_ACCURACY = "eval_accuracy"
MEAN_RANK = "mean_rank"
INIT_RANK = "init_rank"

# Columns of the runs table beyond the spec fields.
PACK_ID = "pack_id"
EXPERIMENT = "experiment"
STATUS = "status"
DIVERGED_STEP = "diverged_step"
STEPS_DONE = "steps_done"
WALL_TIME = "wall_time_s"
STATUS_RUNNING = "running"
STATUS_DONE = "done"

_KEY = [(RUN_ID, pa.string()), (STEP, pa.int64()), (EPOCH, pa.float64())]

SCHEMAS: dict[str, pa.Schema] = {
    TEACHER_NODES: pa.schema(
        _KEY
        + [
            (LAYER, pa.int16()),
            (NODE, pa.int32()),
            (BEST_CORR, pa.float64()),
            (BEST_STUDENT, pa.int32()),
            (SUCCESS, pa.bool_()),
            (FANOUT_NORM, pa.float64()),
            (BEST_CORR_TRAIN, pa.float64()),
            (INIT_RANK, pa.float64()),
        ]
    ),
    STUDENT_NODES: pa.schema(
        _KEY
        + [
            (LAYER, pa.int16()),
            (NODE, pa.int32()),
            (BEST_CORR, pa.float64()),
            (BEST_TEACHER, pa.int32()),
            (FANOUT_NORM, pa.float64()),
            (BEST_CORR_TRAIN, pa.float64()),
        ]
    ),
    SCALARS: pa.schema(
        _KEY
        + [
            (TRAIN_LOSS, pa.float64()),
            (EVAL_LOSS, pa.float64()),
            (RHO_MEAN, pa.float64()),
            (GRAD_NORM, pa.float64()),
            (DIVERGED, pa.bool_()),
            (EVAL_ACCURACY, pa.float64()),
            (MEAN_RANK, pa.float64()),
        ]
    ),
}

_ARROW_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
_NULLABLE = {"n_train": pa.int64(), "iters_per_epoch": pa.int64()}  # None: online data, shuffled passes


def runs_schema(spec: RunSpec | None = None) -> pa.Schema:
    """Schema of the runs table: ids and status, then every spec field."""
    spec = spec or RunSpec()
    fields = [
        (RUN_ID, pa.string()),
        (PACK_ID, pa.string()),
        (EXPERIMENT, pa.string()),
        (STATUS, pa.string()),
        (DIVERGED, pa.bool_()),
        (DIVERGED_STEP, pa.int64()),
        (STEPS_DONE, pa.int64()),
        (WALL_TIME, pa.float64()),
    ]
    fields += [(k, _NULLABLE.get(k) or _ARROW_TYPES[type(v)]) for k, v in flat_fields(spec).items()]
    return pa.schema(fields)


SCHEMAS[RUNS] = runs_schema()
