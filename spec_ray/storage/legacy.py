"""Checking a pack that has no ledger (written by a spec-ray older than ledgers): decode every file.

Without checksums, damage shows only where a file is decoded: every column of every file is
read (page CRCs verified where the writer kept them), and the key columns counted, so a row
stored twice, in one file or in two, is found. Bounded memory: file by file, ids as categories
(a large FC pack's correlations are 81 M rows, whose one pandas frame with string ids did not fit
24 GB; measured: a report was killed opening them).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spec_ray.engine.training.pack import Pack
from spec_ray.storage import schema as S
from spec_ray.storage.rows import Finding, expected_rows, pack_files, schema_problem
from spec_ray.storage.traces import TraceStore


def _keys(table: str) -> list[str]:
    keys = [S.RUN_ID, S.STEP]
    if table in (S.CORR_MATRICES, S.WINNER_RANKS):
        keys.append(S.LAYER)
    elif table != S.SCALARS:
        keys += [S.LAYER, S.NODE]
    if table in (S.CORRELATIONS, S.MODULATION):
        keys.append(S.STUDENT)
    return keys


def _read(store: TraceStore, path: str, table: str, keys: list[str]) -> tuple[pa.Table | None, str | None]:
    """The file's key columns after decoding all of them, or the reason it cannot serve."""
    why = schema_problem(store, path, table)
    if why is not None:
        return None, why
    try:
        with store.fs.open_input_file(path) as f:
            data = pq.ParquetFile(f, page_checksum_verification=True)
            for group in range(data.num_row_groups):  # every column decoded: damage shows; one group in memory
                data.read_row_group(group)
        return pq.read_table(path, filesystem=store.fs, columns=keys), None
    except (OSError, pa.ArrowException) as err:
        return None, f"unreadable ({str(err).splitlines()[0][:160]})"


def count_rows(store: TraceStore, pack: Pack, done: bool, tables: tuple[str, ...]):
    """(findings, damaged files) of a pack without a ledger: every file of ``tables`` decoded, rows counted
    once each."""
    findings, bad = [], []
    for table in tables:
        if table == S.RUNS:
            continue
        keys = _keys(table)
        files = pack_files(store, table, pack.pack_id)
        counts = pd.Series(0.0, index=list(pack.run_ids))  # distinct rows of each run
        seen: set[tuple[str, int]] = set()  # (run, step) pairs of the files read so far
        twice = 0
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
            there = "no file holds any" if not files else f"the {len(files)} file(s) there hold too few"
            findings.append(Finding(table, f"missing {want - have} of {want} rows: {len(short)} of the pack's "
                                           f"{pack.size} runs lack rows; {there}"))  # fmt: skip
        if twice > 0:
            findings.append(Finding(table, f"{twice} rows stored twice"))
    return findings, bad
