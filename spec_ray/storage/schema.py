"""Names and Arrow schemas of the trace tables, shared by the writer and ``analysis``.

Layout on storage (hive-partitioned, docs/schema.md):
``<storage>/<experiment>/<table>/pack=<pack_id>/<file>.parquet``.
``layer`` is 1-based (1 = lowest hidden layer); teacher ``node`` 0 is the strongest.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pyarrow as pa

from spec_ray.engine.inputs.datasets import IMAGE_SETS
from spec_ray.engine.kinds.registry import Registry

# Tables and metric names: the engine declares what it measures (spec_ray.engine.measure.names).
from spec_ray.engine.measure import names as N

# Every table, key and metric name the engine declares, under this module too: analysis and the
# writer read them as ``S.BEST_CORR`` without a list to keep here (a star import linters and IDEs follow).
from spec_ray.engine.measure.names import *  # noqa: F403
from spec_ray.engine.measure.names import (
    CORR_MATRICES,
    CORRELATIONS,
    DIVERGED,
    EPOCH,
    LAYER,
    MODULATION,
    NODE,
    RUN_ID,
    SCALARS,
    STEP,
    STUDENT_NODES,
    TEACHER_NODES,
    WINNER_RANKS,
)
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.specs.spec_io import flat_fields, flat_roles

RUNS = "runs"
TABLES = (RUNS, TEACHER_NODES, STUDENT_NODES, SCALARS)
OPTIONAL_TABLES = (CORR_MATRICES, WINNER_RANKS, MODULATION)
"""Written only when a run asks for them (``checkpoint.keep_correlations`` / ``keep_modulation``)."""
LEGACY_TABLES = (CORRELATIONS,)
"""Tables an older spec-ray wrote that this one reads, verifies and grows but never writes."""


def written_tables(spec: RunSpec, long_correlations: bool = False) -> tuple[str, ...]:
    """The tables a run of ``spec`` writes; ``long_correlations``: as spec-ray before 0.2 wrote them (the
    long ``correlations`` table, and no ``winner_ranks``, which a resume then adds)."""
    kept = {CORR_MATRICES: spec.checkpoint.keep_correlations, WINNER_RANKS: spec.checkpoint.keep_correlations,
            MODULATION: spec.checkpoint.keep_modulation}  # fmt: skip
    tables = (*TABLES, *(t for t in OPTIONAL_TABLES if kept[t]))
    if long_correlations and spec.checkpoint.keep_correlations:
        tables = tuple(CORRELATIONS if t == CORR_MATRICES else t for t in tables if t != WINNER_RANKS)
    return tables


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
DATASET = "dataset"
SOURCE = "source"
TEACHER_BN = "teacher_bn"
LOAD_TEACHER = "load_teacher"
REAL_DATASETS = IMAGE_SETS.names
"""The real image sets of ``data.dataset`` (``spec_ray.engine.inputs.datasets``)."""
KINDS = {name: role.kinds for name, role in flat_roles().items() if isinstance(role.kinds, Registry)}
"""The runs table's columns that name a kind (loss, arch, student_bn, ...): each holds names of its registry's
records, which the read side asks what they are (``record``) instead of comparing names."""


def record(column: str, name: str) -> Any:
    """The record a kind column's value names, e.g. ``record(STUDENT_BN, "none").present``."""
    return KINDS[column][name]


SPEC_COLUMNS = tuple(flat_roles())
"""Every spec column of the runs table, in order (spec_ray.engine.specs.spec_io)."""

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


_SPECIAL_TYPES = {"bool": pa.bool_(), "string": pa.string(), "list<float32>": pa.list_(pa.float32())}


def _arrow(col: N.Col) -> Column:
    return Column(col.name, _SPECIAL_TYPES.get(col.kind) or getattr(pa, col.kind)(), col.meaning, col.unit)


COLUMNS: dict[str, tuple[Column, ...]] = {t: tuple(map(_arrow, cols)) for t, cols in N.COLUMNS.items()}
"""Every column of the three checkpoint tables, in order (declared in ``spec_ray.engine.measure.names``)."""
CORR_MATRIX_COLUMNS = tuple(map(_arrow, N.CORR_MATRIX_COLUMNS))
"""The opt-in ``corr_matrices`` table: one row per run, checkpoint and layer, its correlation matrix a list."""
WINNER_RANK_COLUMNS = tuple(map(_arrow, N.WINNER_RANK_COLUMNS))
"""The ``winner_ranks`` table, written with ``corr_matrices``: one row per run, checkpoint and layer."""
CORRELATION_COLUMNS = tuple(map(_arrow, N.CORRELATION_COLUMNS))
"""The long ``correlations`` table of spec-ray before 0.2: one row per run, checkpoint, layer, teacher and student."""
MODULATION_COLUMNS = tuple(map(_arrow, N.MODULATION_COLUMNS))
"""The opt-in ``modulation`` table: at a run's first and last checkpoint, a row per layer, teacher and student."""

KEYS = {t: tuple(c for c in cols if c.name in (RUN_ID, STEP, EPOCH, LAYER, NODE)) for t, cols in COLUMNS.items()}
"""The columns that locate a row; the others of a table are its metrics."""

METRICS: dict[str, list[str]] = {t: [c.name for c in cols if c not in KEYS[t]] for t, cols in COLUMNS.items()}
"""Metric column names of each checkpoint table: what the engine computes and the reference checks."""

SCHEMAS: dict[str, pa.Schema] = {t: pa.schema([(c.name, c.dtype) for c in cols]) for t, cols in COLUMNS.items()}
SCHEMAS[CORRELATIONS] = pa.schema([(c.name, c.dtype) for c in CORRELATION_COLUMNS])
SCHEMAS[CORR_MATRICES] = pa.schema([(c.name, c.dtype) for c in CORR_MATRIX_COLUMNS])
SCHEMAS[WINNER_RANKS] = pa.schema([(c.name, c.dtype) for c in WINNER_RANK_COLUMNS])
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
    special = {RUNS: RUN_COLUMNS, CORR_MATRICES: CORR_MATRIX_COLUMNS, WINNER_RANKS: WINNER_RANK_COLUMNS,
               CORRELATIONS: CORRELATION_COLUMNS, MODULATION: MODULATION_COLUMNS}  # fmt: skip
    columns = special.get(table) or COLUMNS[table]
    rows = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    rows += [f"| {c.name} | {c.dtype} | {c.unit} | {c.meaning} |" for c in columns]
    return "\n".join(rows)


if __name__ == "__main__":
    for name in (*TABLES, *OPTIONAL_TABLES, *LEGACY_TABLES):
        print(f"## {name}\n\n{markdown(name)}\n")


_ARROW_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
# Nullable fields take their annotated type (the roles read `int | None`: online data, shuffled
# passes, the init drawn from `seed`; `str | None`: a stored teacher, a dataset folder).
_NULLABLE = {name: {"str": pa.string()}.get(role.base, pa.int64()) for name, role in flat_roles().items()
             if role.nullable}  # fmt: skip


def runs_schema(spec: RunSpec | None = None) -> pa.Schema:
    """Schema of the runs table: ids and status, then every spec field."""
    spec = spec or RunSpec()
    fields = [(c.name, c.dtype) for c in RUN_COLUMNS]
    fields += [(k, _NULLABLE.get(k) or _ARROW_TYPES[type(v)]) for k, v in flat_fields(spec).items()]
    return pa.schema(fields)


SCHEMAS[RUNS] = runs_schema()
