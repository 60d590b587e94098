"""Check an experiment's stored tables against what its sweep.json says they hold.

For every pack: each file of each table it writes is readable and has the declared columns
and types; and, once the pack's runs are stored as done, every run has every row exactly
once: a row per checkpoint step (``pack.checkpoint_steps``) and, per node table, per hidden
layer and node (``expected_rows``). A pack is ``complete``, ``unfinished`` (not all its runs
done: a sweep in progress, or one to resume) or ``broken`` (done, but a file is corrupt or rows
are missing or doubled); ``--resume`` retrains exactly the broken and unfinished ones.
"""

from __future__ import annotations

import posixpath
from typing import NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spec_ray.engine.pack import Pack, checkpoint_steps
from spec_ray.engine.spec import RunSpec
from spec_ray.storage import schema as S
from spec_ray.storage.traces import TMP_PREFIX, TraceStore

COMPLETE, UNFINISHED, BROKEN = "complete", "unfinished", "broken"
RUNS_FILE = "runs.parquet"


def expected_rows(spec: RunSpec, table: str) -> int:
    """Rows one finished run of ``spec`` has in ``table``."""
    steps = len(checkpoint_steps(spec))
    teacher, student = spec.teacher.active_widths, spec.student_widths
    pairs = sum(m * n for m, n in zip(teacher, student))
    return {
        S.TEACHER_NODES: steps * sum(teacher),
        S.STUDENT_NODES: steps * sum(student),
        S.SCALARS: steps,
        S.CORRELATIONS: steps * pairs,
        S.MODULATION: len({0, spec.total_steps}) * pairs,  # the first and the last checkpoint
    }[table]


class Finding(NamedTuple):
    """One thing wrong with a pack's stored rows."""

    table: str
    problem: str
    """One line: what is wrong, with the numbers."""
    path: str | None = None
    """The file at fault, when one is."""


class PackCheck(NamedTuple):
    """What ``check_pack`` found for one pack."""

    pack: Pack
    state: str
    """complete | unfinished | broken."""
    findings: list[Finding]
    bad_files: list[str]
    """Files no reader should open (unreadable, or with the wrong columns)."""


def pack_files(store: TraceStore, table: str, pack_id: str) -> list[str]:
    """The pack's stored files of one table (hidden temp files excluded), sorted."""
    folder = posixpath.dirname(store.file_path(table, pack_id, "x"))
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(folder))
    except (FileNotFoundError, OSError):
        return []
    names = [i.path for i in infos if i.type == pafs.FileType.File]
    return sorted(p for p in names if not posixpath.basename(p).startswith((TMP_PREFIX, ".", "_")))


def _read(store: TraceStore, path: str, table: str, columns: list[str]) -> tuple[pa.Table | None, str | None]:
    """The file's key columns, or the reason it cannot serve: unreadable, or off the declared schema."""
    try:
        schema = pq.read_schema(path, filesystem=store.fs)
        declared = S.SCHEMAS[table] if table != S.RUNS else None
        if declared is not None:
            for f in declared:
                if schema.get_field_index(f.name) < 0 or schema.field(f.name).type != f.type:
                    got = "missing" if schema.get_field_index(f.name) < 0 else str(schema.field(f.name).type)
                    return None, f"column {f.name!r} is {got}, declared {f.type}"
        return pq.read_table(path, filesystem=store.fs, columns=columns), None
    except (OSError, pa.ArrowException) as err:
        return None, f"unreadable ({str(err).splitlines()[0][:160]})"


def runs_done(store: TraceStore, pack: Pack) -> tuple[bool, Finding | None]:
    """Whether every run of the pack is stored as done at its last step; a finding if runs.parquet is corrupt."""
    path = store.file_path(S.RUNS, pack.pack_id, RUNS_FILE)
    if store.fs.get_file_info(path).type != pafs.FileType.File:
        return False, None
    rows, why = _read(store, path, S.RUNS, [S.RUN_ID, S.STATUS, S.STEPS_DONE])
    if rows is None:
        return False, Finding(S.RUNS, f"corrupt file {path}: {why}", path)
    runs = rows.to_pandas()
    done = (runs[S.STATUS] == S.STATUS_DONE) & (runs[S.STEPS_DONE] == pack.spec.total_steps)
    return set(runs.loc[done, S.RUN_ID]) == set(pack.run_ids), None


def _keys(table: str) -> list[str]:
    keys = [S.RUN_ID, S.STEP]
    if table != S.SCALARS:
        keys += [S.LAYER, S.NODE]
    if table in (S.CORRELATIONS, S.MODULATION):
        keys.append(S.STUDENT)
    return keys


def check_pack(store: TraceStore, pack: Pack) -> PackCheck:
    """Check one pack's files and, when its runs are done, its rows."""
    done, corrupt = runs_done(store, pack)
    findings = [corrupt] if corrupt else []
    bad = [corrupt.path] if corrupt else []
    for table in S.written_tables(pack.spec):
        if table == S.RUNS:
            continue
        keys = _keys(table)
        files = pack_files(store, table, pack.pack_id)
        counts = pd.Series(0.0, index=list(pack.run_ids))  # distinct rows of each run
        seen: set[tuple[str, int]] = set()  # (run, step) pairs of the files read so far
        twice = 0
        # File by file, ids as categories: a large FC pack's correlations are 81 M rows, whose one
        # pandas frame with string ids did not fit 24 GB (measured: a report was killed opening them).
        for path in files:
            rows, why = _read(store, path, table, keys)
            if rows is None:
                findings.append(Finding(table, f"corrupt file {path}: {why}", path))
                bad.append(path)
                continue
            if not done:
                continue
            ids = rows.column(S.RUN_ID).dictionary_encode()
            frame = rows.set_column(rows.schema.get_field_index(S.RUN_ID), S.RUN_ID, ids).to_pandas()
            unique = frame.drop_duplicates(keys)
            twice += len(frame) - len(unique)
            steps = unique[[S.RUN_ID, S.STEP]].drop_duplicates()  # a few thousand (run, step) pairs
            pairs = set(zip(steps[S.RUN_ID].astype(str), steps[S.STEP]))
            again = pairs & seen  # a step of a run in two files: the later file's rows of it are extra
            if again:
                at = pd.MultiIndex.from_arrays([unique[S.RUN_ID].astype(str), unique[S.STEP]])
                extra = at.isin(list(again))
                twice += int(extra.sum())
                unique = unique[~extra]
            seen |= pairs
            mine = unique[unique[S.RUN_ID].isin(pack.run_ids)]
            twice += len(unique) - len(mine)  # rows of runs the pack does not hold
            per_id = mine[S.RUN_ID].value_counts()
            counts = counts.add(pd.Series(per_id.to_numpy(), index=per_id.index.astype(str)), fill_value=0)
        if not done:
            continue
        per_run = expected_rows(pack.runs[0], table)  # a pack's runs share their shape
        want = per_run * pack.size
        have = int(counts.reindex(pack.run_ids, fill_value=0).sum())
        if have < want:
            short = [r for r, n in counts.reindex(pack.run_ids, fill_value=0).items() if n < per_run]
            where = "no files" if not files else f"{len(files)} file(s)"
            findings.append(Finding(table, f"missing {want - have} of {want} rows ({where}; "
                                           f"{len(short)} of {pack.size} runs short)"))  # fmt: skip
        if twice > 0:
            findings.append(Finding(table, f"{twice} rows stored twice"))
    started = store.fs.get_file_info(store.file_path(S.RUNS, pack.pack_id, RUNS_FILE)).type == pafs.FileType.File
    if not started and any(pack_files(store, t, pack.pack_id) for t in S.written_tables(pack.spec)):
        # runs.parquet is a pack's first write: rows without it mean it was lost.
        findings.append(Finding(S.RUNS, f"{RUNS_FILE} is missing, but the pack has rows"))
    # A corrupt file of an unfinished pack is broken too: a resume from a later block would not rewrite it.
    state = BROKEN if findings else (COMPLETE if done else UNFINISHED)
    return PackCheck(pack, state, findings, bad)


def verify(store: TraceStore, packs: list[Pack]) -> list[PackCheck]:
    """``check_pack`` for every pack, in order."""
    return [check_pack(store, p) for p in packs]


def describe(check: PackCheck) -> list[str]:
    """Lines for a person: the pack and what is wrong with it."""
    head = f"pack {check.pack.pack_id} ({check.pack.size} runs): {check.state}"
    return [head, *(f"  {f.table}: {f.problem}" for f in check.findings)]
