"""Names and Arrow schemas of the trace tables, shared by the writer and ``analysis``.

Layout on storage (hive-partitioned, docs/schema.md):
``<storage>/<experiment>/<table>/pack=<pack_id>/<file>.parquet``.
``layer`` is 1-based (1 = lowest hidden layer); teacher ``node`` 0 is the strongest.
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

# Tables and metric names: the engine names what it measures (spec_ray.engine.names).
from spec_ray.engine.names import (
    BEST_CORR,
    BEST_CORR_TRAIN,
    BEST_INIT_RANK,
    BEST_STUDENT,
    BEST_TEACHER,
    BETA,
    CORR,
    CORRELATIONS,
    DIVERGED,
    EPOCH,
    EVAL_ACCURACY,
    EVAL_LOSS,
    FANOUT_NORM,
    GRAD_NORM,
    IN_NORM,
    LAYER,
    MEAN_BEST_INIT_RANK,
    MODULATION,
    NODE,
    RHO_MEAN,
    RUN_ID,
    SCALARS,
    STEP,
    STUDENT,
    STUDENT_NODES,
    SUCCESS,
    TEACHER_NODES,
    TRAIN_LOSS,
    H,
)
from spec_ray.engine.spec import RunSpec
from spec_ray.engine.spec_io import flat_fields, flat_roles

RUNS = "runs"
TABLES = (RUNS, TEACHER_NODES, STUDENT_NODES, SCALARS)
OPTIONAL_TABLES = (CORRELATIONS, MODULATION)
"""Written only when a run asks for them (``checkpoint.keep_correlations`` / ``keep_modulation``)."""


def written_tables(spec: RunSpec) -> tuple[str, ...]:
    """The tables a run of ``spec`` writes."""
    kept = {CORRELATIONS: spec.checkpoint.keep_correlations, MODULATION: spec.checkpoint.keep_modulation}
    return (*TABLES, *(t for t in OPTIONAL_TABLES if kept[t]))


PARTITION = "pack"

# Spec-field columns of the runs table that analysis reads, named once: a renamed spec field
# fails tests/test_traces.py instead of a figure.
P = "p"
MULTI = "multi"
M = "m"
SEED = "seed"
N_TRAIN = "n_train"
LOSS = "loss"
AUGMENTATION = "augmentation"
EPOCHS = "epochs"
ITERS_PER_EPOCH = "iters_per_epoch"
STEPS_PER_EPOCH = "steps_per_epoch"
SUCCESS_THRESHOLD = "success_threshold"
DEPTH = "depth"
ARCH = "arch"
WIDTHS = "widths"
STUDENT_BN = "student_bn"
KEEP_CORRELATIONS = "keep_correlations"
KEEP_MODULATION = "keep_modulation"
SPEC_COLUMNS = tuple(flat_roles())
"""Every spec column of the runs table, in order (spec_ray.engine.spec_io)."""

# Columns of the runs table beyond the spec fields.
PACK_ID = "pack_id"
EXPERIMENT = "experiment"
STATUS = "status"
DIVERGED_STEP = "diverged_step"
STEPS_DONE = "steps_done"
WALL_TIME = "wall_time_s"
TRAINED_ON = "trained_on"
STATUS_RUNNING = "running"
STATUS_DONE = "done"


class Column(NamedTuple):
    """One column of a trace table: declared once, read by the writer, analysis, tests and docs/schema.md."""

    name: str
    dtype: pa.DataType
    meaning: str
    unit: str = ""


_KEY = (
    Column(
        RUN_ID,
        pa.string(),
        "stable hash of the spec fields that shape the run (new fields at their neutral value left out)",
    ),
    Column(STEP, pa.int64(), "SGD steps taken; 0 is initialization"),
    Column(EPOCH, pa.float64(), "step / steps_per_epoch"),
)
_NODE = (Column(LAYER, pa.int16(), "hidden layer, 1 = lowest"),)
_CORR, _FRACTION = "Pearson correlation", "fraction in [0, 1]"
_LOSS = "MSE: mean over samples and outputs; CE: nats"
COLUMNS: dict[str, tuple[Column, ...]] = {
    TEACHER_NODES: _KEY + _NODE + (
        Column(NODE, pa.int32(), "teacher node j; 0 is the strongest"),
        Column(BEST_CORR, pa.float64(), "max over student nodes k of rho_jk on the evaluation set", _CORR),
        Column(BEST_STUDENT, pa.int32(), "the k attaining it"),
        Column(SUCCESS, pa.bool_(), "best_corr > success_threshold: the teacher node is recovered"),
        Column(FANOUT_NORM, pa.float64(), "norm of the teacher node's outgoing weights, bias excluded"),
        Column(BEST_CORR_TRAIN, pa.float64(), "the same max on the training set; NaN off the train-metric schedule",
               _CORR),
        Column(BEST_INIT_RANK, pa.float64(), "rank at initialization of this node's *current* best student among all "
               "students, by correlation with this teacher node; 0 = first, 1 = last. Not Luck Matters' rank of the "
               "final winners: that is `analysis.luck.queries.winner_ranks`, over the `correlations` table", _FRACTION),
    ),
    STUDENT_NODES: _KEY + _NODE + (
        Column(NODE, pa.int32(), "student node k"),
        Column(BEST_CORR, pa.float64(), "specialization: max over teacher nodes j of rho_jk (evaluation set)", _CORR),
        Column(BEST_TEACHER, pa.int32(), "the j attaining it"),
        Column(FANOUT_NORM, pa.float64(), "norm of the student node's outgoing weights, bias excluded"),
        Column(IN_NORM, pa.float64(), "norm of the student node's incoming weights and bias (a conv channel: its "
               "filter); Luck Matters sec. 6.1: conserved under BN"),
        Column(BEST_CORR_TRAIN, pa.float64(), "specialization on the training set (figure 5); NaN off the "
               "train-metric schedule", _CORR),
    ),
    SCALARS: _KEY + (
        Column(TRAIN_LOSS, pa.float64(), "loss on the whole training set in the authors' unit; NaN off schedule and "
               "for online data", _LOSS),
        Column(EVAL_LOSS, pa.float64(), "the same on the evaluation set", _LOSS),
        Column(RHO_MEAN, pa.float64(), "mean over teacher nodes of best_corr, lowest layer", _CORR),
        Column(GRAD_NORM, pa.float64(), "norm of the full-batch gradient of the SGD objective (`mse`: 1/2 x squared "
               "error summed over outputs), all weights and biases; NaN off schedule"),
        Column(DIVERGED, pa.bool_(), "the run has diverged by this step"),
        Column(EVAL_ACCURACY, pa.float64(), "cross-entropy runs: eval samples whose argmax matches the teacher's; "
               "NaN for MSE", _FRACTION),
        Column(MEAN_BEST_INIT_RANK, pa.float64(), "mean of `best_init_rank` over the lowest layer's teacher nodes",
               _FRACTION),
    ),
}  # fmt: skip
"""Every column of the three checkpoint tables, in order; the Arrow schemas derive from it."""

CORRELATION_COLUMNS = _KEY + _NODE + (
    Column(NODE, pa.int32(), "teacher node j; 0 is the strongest"),
    Column(STUDENT, pa.int32(), "student node k"),
    Column(CORR, pa.float64(), "rho_jk on the evaluation set: what Luck Matters' rank of the final winners is "
           "taken from (analysis.luck.queries.winner_ranks)", _CORR),
)  # fmt: skip
"""The opt-in ``correlations`` table: one row per run, checkpoint, layer, teacher and student node."""

MODULATION_COLUMNS = _KEY + _NODE + (
    Column(NODE, pa.int32(), "teacher node j°; 0 is the strongest"),
    Column(STUDENT, pa.int32(), "student node j"),
    Column(BETA, pa.float64(), "beta*_jj°: E_x of the top-down modulation of Luck Matters eq. 5 on the evaluation "
           "set (the output layers' W^T W* at the top hidden layer)"),
    Column(H, pa.float64(), "H*_jj° = E_x f'_j(x) beta*_jj°(x) f'_j°(x): beta* gated by both nodes' activity"),
)  # fmt: skip
"""The opt-in ``modulation`` table: at a run's first and last checkpoint, a row per layer, teacher and student."""

KEYS = {t: tuple(c for c in cols if c.name in (RUN_ID, STEP, EPOCH, LAYER, NODE)) for t, cols in COLUMNS.items()}
"""The columns that locate a row; the others of a table are its metrics."""

METRICS: dict[str, list[str]] = {t: [c.name for c in cols if c not in KEYS[t]] for t, cols in COLUMNS.items()}
"""Metric column names of each checkpoint table: what the engine computes and the reference checks."""

SCHEMAS: dict[str, pa.Schema] = {t: pa.schema([(c.name, c.dtype) for c in cols]) for t, cols in COLUMNS.items()}
SCHEMAS[CORRELATIONS] = pa.schema([(c.name, c.dtype) for c in CORRELATION_COLUMNS])
SCHEMAS[MODULATION] = pa.schema([(c.name, c.dtype) for c in MODULATION_COLUMNS])

RUN_COLUMNS = (
    Column(
        RUN_ID,
        pa.string(),
        "stable hash of the spec fields that shape the run (new fields at their neutral value left out)",
    ),
    Column(PACK_ID, pa.string(), "the pack the run was trained in"),
    Column(EXPERIMENT, pa.string(), "experiment name"),
    Column(STATUS, pa.string(), "`running` (written when the pack starts) or `done`"),
    Column(DIVERGED, pa.bool_(), "the run's minibatch loss became non-finite; it was frozen from then on"),
    Column(DIVERGED_STEP, pa.int64(), "the step whose loss was non-finite; null if none"),
    Column(STEPS_DONE, pa.int64(), "SGD steps taken"),
    Column(
        WALL_TIME,
        pa.float64(),
        "the whole pack: construction, training, metrics, writes; 0 for runs copied "
        "from another experiment of the storage root",
        "s",
    ),  # fmt: skip
    Column(TRAINED_ON, pa.string(), "the device the run trained on: `cpu`, or `cuda:` and the GPU's name"),
)
"""The runs table's columns before the spec fields (every field of ``RunSpec``, then m, depth, steps_per_epoch)."""


def markdown(table: str) -> str:
    """The column table of ``docs/schema.md`` for one table, generated from the declarations.

    For ``runs``, the columns before the spec fields; ``python -m spec_ray.storage.schema`` prints all four.
    """
    special = {RUNS: RUN_COLUMNS, CORRELATIONS: CORRELATION_COLUMNS, MODULATION: MODULATION_COLUMNS}
    columns = special.get(table) or COLUMNS[table]
    rows = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    rows += [f"| {c.name} | {c.dtype} | {c.unit} | {c.meaning} |" for c in columns]
    return "\n".join(rows)


if __name__ == "__main__":
    for name in (*TABLES, *OPTIONAL_TABLES):
        print(f"## {name}\n\n{markdown(name)}\n")


_ARROW_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
# Nullable fields (the roles read them from `int | None`: online data, shuffled passes, the init
# drawn from `seed`) are integers wherever they are used.
_NULLABLE = {name: pa.int64() for name, role in flat_roles().items() if role.nullable}


def runs_schema(spec: RunSpec | None = None) -> pa.Schema:
    """Schema of the runs table: ids and status, then every spec field."""
    spec = spec or RunSpec()
    fields = [(c.name, c.dtype) for c in RUN_COLUMNS]
    fields += [(k, _NULLABLE.get(k) or _ARROW_TYPES[type(v)]) for k, v in flat_fields(spec).items()]
    return pa.schema(fields)


SCHEMAS[RUNS] = runs_schema()
