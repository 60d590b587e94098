"""Runs already done in another experiment of the same storage root, found and copied rather than trained.

A run id hashes everything that shapes a run's result, and a result does not depend on the pack
it trained in, so a done run's rows serve every experiment that names the same id. They are
copied, not referenced, so each experiment's folder stays self-contained for its readers; only
packs that ``verify`` finds complete serve as sources.
"""

from __future__ import annotations

import posixpath
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from spec_ray.engine.training.pack import Pack
from spec_ray.storage import schema as S
from spec_ray.storage.manifest import SWEEP_FILE, load_sweep
from spec_ray.storage.records import runs_table
from spec_ray.storage.summaries import read_matrices
from spec_ray.storage.traces import TraceStore, blocks, open_storage
from spec_ray.storage.verify import COMPLETE, RUNS_FILE, check_pack, pack_files
from spec_ray.storage.writer import PackWriter


class Source(NamedTuple):
    """Where a done run's rows are."""

    store: TraceStore
    pack: Pack


def find_done(store: TraceStore, run_ids: set[str]) -> dict[str, Source]:
    """The runs of ``run_ids`` done in a complete pack of another experiment under ``store``'s root."""
    fs, root = open_storage(store.storage)
    try:
        folders = [i.path for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory]
    except (FileNotFoundError, OSError):
        return {}
    found: dict[str, Source] = {}
    for folder in sorted(folders):
        name = posixpath.basename(folder)
        if name == store.experiment or name.startswith((".", "_")):
            continue
        if fs.get_file_info(posixpath.join(folder, SWEEP_FILE)).type != pafs.FileType.File:
            continue
        other = TraceStore(store.storage, name)
        try:
            stored = load_sweep(other)
        except ValueError:
            continue  # a damaged sweep.json: nothing of that experiment can be trusted as a source
        for pack in stored.packs if stored else []:
            wanted = (run_ids & set(pack.run_ids)) - set(found)
            if wanted and check_pack(other, pack, stored.ledgers).state == COMPLETE:
                found.update(dict.fromkeys(wanted, Source(other, pack)))
    return found


def _rows(source: Source, table: str, ids: list[str]) -> pa.Table:
    """The rows of ``ids`` in one table of a source pack, with the declared columns; correlations in this
    spec-ray's layout, whichever the source holds them in."""
    files = pack_files(source.store, table, source.pack.pack_id)
    if table == S.CORR_MATRICES and not files:  # a source of spec-ray before 0.2: the long layout
        long = pack_files(source.store, S.CORRELATIONS, source.pack.pack_id)
        parts = [read_matrices(source.store.fs, f, True, ids) for f in long]
        return pa.concat_tables(parts) if parts else S.SCHEMAS[table].empty_table()
    if table == S.RUNS:
        files = [f for f in files if posixpath.basename(f) == RUNS_FILE]
    data = ds.dataset(files, filesystem=source.store.fs, format="parquet")
    rows = data.to_table(filter=pc.field(S.RUN_ID).isin(pa.array(ids, pa.string())))
    return rows if table == S.RUNS else rows.select(S.SCHEMAS[table].names).cast(S.SCHEMAS[table])


def copy_pack(store: TraceStore, pack: Pack, sources: dict[str, Source], block_epochs: int) -> None:
    """Write ``pack``'s rows into ``store`` from ``sources`` (every run of the pack), in this sweep's
    blocks, and its runs.parquet last: a copy cut short is a pack with rows but no runs file, which
    ``verify`` calls broken and ``--resume`` trains."""
    by_source: dict[tuple[str, str], tuple[Source, list[str]]] = {}
    for rid in pack.run_ids:
        src = sources[rid]
        by_source.setdefault((src.store.root, src.pack.pack_id), (src, []))[1].append(rid)
    writer = PackWriter(store, pack)
    for table in S.written_tables(pack.spec):
        if table in (S.RUNS, S.WINNER_RANKS):
            continue
        rows = pa.concat_tables([_rows(src, table, ids) for src, ids in by_source.values()])
        run = pc.index_in(rows.column(S.RUN_ID), value_set=pa.array(pack.run_ids, pa.string()))
        keys = [k for k in (S.STEP, "_run", S.LAYER, S.NODE, S.STUDENT) if k == "_run" or k in rows.column_names]
        rows = rows.append_column("_run", run).sort_by([(k, "ascending") for k in keys]).drop_columns("_run")
        steps = rows.column(S.STEP)
        for lo, hi in blocks(pack.spec, block_epochs):  # the writer's order: step, run, node
            part = rows.filter(pc.and_(pc.greater_equal(steps, lo), pc.less_equal(steps, hi)))
            if part.num_rows:  # a block without checkpoints of an opt-in table writes no file, as the trainer
                writer.write(table, lo, hi, part.cast(S.SCHEMAS[table]))
    writer.summarize()  # made from the copy, as a pack that trained makes them
    runs = pa.concat_tables([_rows(src, S.RUNS, ids) for src, ids in by_source.values()]).to_pandas()
    runs = runs.set_index(S.RUN_ID).loc[list(pack.run_ids)]
    diverged = runs[S.DIVERGED_STEP].fillna(-1).to_numpy(dtype=np.int64)  # (R,)
    trained_on = str(runs[S.TRAINED_ON].iloc[0])
    table = runs_table(pack, store.experiment, S.STATUS_DONE, pack.spec.total_steps, diverged, 0.0, trained_on)
    writer.runs(table)
