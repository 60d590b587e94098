"""What a pack's stored rows must be (how many a run writes in each table, the declared columns), and
its stored files as they are: listed, sized and hashed.

Shared by ``verify`` (packs with a ledger) and ``legacy`` (packs without), which both name what
they find as a ``Finding``.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.training.pack import checkpoint_steps
from spec_ray.storage import schema as S
from spec_ray.storage.traces import TMP_PREFIX, TraceStore


def rows_per_checkpoint(spec: RunSpec, table: str) -> int:
    """Rows one run writes in ``table`` at one checkpoint step (modulation: at its first and last only)."""
    teacher, student = spec.teacher.active_widths, spec.student_widths
    pairs = sum(m * n for m, n in zip(teacher, student))
    layers = len(teacher)
    return {S.TEACHER_NODES: sum(teacher), S.STUDENT_NODES: sum(student), S.SCALARS: 1, S.CORRELATIONS: pairs,
            S.CORR_MATRICES: layers, S.WINNER_RANKS: layers, S.MODULATION: pairs}[table]  # fmt: skip


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


CHUNK = 8 << 20
"""Bytes hashed at a time: memory stays flat whatever a file's size."""


def pack_files(store: TraceStore, table: str, pack_id: str) -> list[str]:
    """The pack's stored files of one table (hidden temp files excluded), sorted."""
    return sorted(file_sizes(store, table, pack_id))


def file_sizes(store: TraceStore, table: str, pack_id: str) -> dict[str, int]:
    """The pack's stored files of one table by path, with their bytes (hidden temp files excluded)."""
    folder = posixpath.dirname(store.file_path(table, pack_id, "x"))
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(folder))
    except (FileNotFoundError, OSError):
        return {}
    return {i.path: i.size for i in infos if i.type == pafs.FileType.File
            and not posixpath.basename(i.path).startswith((TMP_PREFIX, ".", "_"))}  # fmt: skip


def sha256(store: TraceStore, path: str) -> str:
    """The SHA-256 of a stored file, read in chunks."""
    digest = hashlib.sha256()
    with store.fs.open_input_stream(path) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
