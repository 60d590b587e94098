"""What a pack's stored rows must be: how many a run writes in each table, and the declared columns.

Shared by ``verify`` (packs with a ledger) and ``legacy`` (packs without), which both name what
they find as a ``Finding``.
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from spec_ray.engine.pack import checkpoint_steps
from spec_ray.engine.spec import RunSpec
from spec_ray.storage import schema as S
from spec_ray.storage.traces import TraceStore


def rows_per_checkpoint(spec: RunSpec, table: str) -> int:
    """Rows one run writes in ``table`` at one checkpoint step (modulation: at its first and last only)."""
    teacher, student = spec.teacher.active_widths, spec.student_widths
    pairs = sum(m * n for m, n in zip(teacher, student))
    return {S.TEACHER_NODES: sum(teacher), S.STUDENT_NODES: sum(student), S.SCALARS: 1, S.CORRELATIONS: pairs,
            S.MODULATION: pairs}[table]  # fmt: skip


def table_steps(spec: RunSpec, table: str) -> list[int]:
    """The checkpoint steps that write rows of ``table``."""
    return sorted({0, spec.total_steps}) if table == S.MODULATION else checkpoint_steps(spec)


def expected_rows(spec: RunSpec, table: str) -> int:
    """Rows one finished run of ``spec`` has in ``table``."""
    return len(table_steps(spec, table)) * rows_per_checkpoint(spec, table)


class Finding(NamedTuple):
    """One thing wrong with a pack's stored rows."""

    table: str
    problem: str
    """One line: what is wrong, with the numbers."""
    path: str | None = None
    """The file at fault, when one is."""


def schema_problem(store: TraceStore, path: str, table: str) -> str | None:
    """Why a file cannot serve as ``table``: unreadable, or off the declared schema; None when it can."""
    try:
        schema = pq.read_schema(path, filesystem=store.fs)
    except (OSError, pa.ArrowException) as err:
        return f"unreadable ({str(err).splitlines()[0][:160]})"
    for f in S.SCHEMAS[table] if table != S.RUNS else []:
        if schema.get_field_index(f.name) < 0 or schema.field(f.name).type != f.type:
            got = "missing" if schema.get_field_index(f.name) < 0 else str(schema.field(f.name).type)
            return f"column {f.name!r} is {got}, declared {f.type}"
    return None
