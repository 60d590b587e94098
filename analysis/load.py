"""Open experiments written by spec-ray and read their tables with push-down.

An experiment is a folder holding the ``runs`` table (docs/schema.md). A path may name one
experiment, or a storage root whose sub-folders are experiments: then all of them are
read together. Every read goes through ``pyarrow.dataset``: hive partitions, column
selection and row filters are pushed down, so a query reads only what it needs.

Runs are classified once: ``done`` (finished, never diverged), ``diverged``, ``unfinished``
(still running, or crashed) and ``incomplete`` (stored as done, but ``verify`` finds its pack's
files short or corrupt). Queries use only done runs and report the rest; files that cannot be
read are left out of every dataset, so a corrupt file costs its pack's runs, not the report.
"""

from __future__ import annotations

import copy
import posixpath
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from spec_ray.storage import schema as S
from spec_ray.storage import summaries
from spec_ray.storage.manifest import experiment_stores, load_sweep
from spec_ray.storage.summaries import correlation_files
from spec_ray.storage.traces import PARTITIONING, open_storage
from spec_ray.storage.verify import BROKEN, PackCheck, strays, verify

CHECKED = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
)
"""Parquet read with its pages' CRCs checked: a byte changed after opening (which checks the large
correlation files by size only, ``verify.LARGE_TABLES``) fails the read instead of a number."""

LAYOUTS = {S.CORR_MATRICES: (S.CORRELATIONS,)}
"""A table's layouts of older spec-rays, which count as holding it (read as they are)."""

STATE_ORDER = {"done": 0, "diverged": 1, "incomplete": 2, "unfinished": 3}
"""Which copy of a run stored in several experiments is kept: the most finished."""


class AnalysisError(ValueError):
    """Bad input to the analysis: a path that is no experiment, a missing table, no runs."""


def _is_dir(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def experiment_roots(path: str) -> tuple[pafs.FileSystem, list[str]]:
    """The experiment folders at ``path``: itself, or its sub-folders that hold a runs table."""
    fs, root = open_storage(path)
    if not _is_dir(fs, root):
        raise AnalysisError(f"results={path!r} is not a directory: allowed an experiment folder or a storage root")
    if _is_dir(fs, posixpath.join(root, S.RUNS)):
        return fs, [root]
    subs = [i.path for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory]
    roots = sorted(p for p in subs if _is_dir(fs, posixpath.join(p, S.RUNS)))
    if not roots:
        raise AnalysisError(
            f"results={path!r} is not an experiment: no '{S.RUNS}' table in it or its sub-folders "
            "(allowed: a folder written by a sweep or `python -m spec_ray run`)"
        )
    return fs, roots


@dataclass
class Results:
    """One or several experiments' tables, with run status resolved."""

    path: str
    fs: pafs.FileSystem
    roots: list[str]
    runs: pd.DataFrame = field(init=False)
    """Every run: spec fields, status, and ``state`` in {done, diverged, unfinished, incomplete}."""
    memo: dict = field(init=False, default_factory=dict)
    """Frames several queries share, computed once (``analysis.registry.frame``, ``luck.queries.luck_per_run``)."""
    broken: list[PackCheck] = field(init=False, default_factory=list)
    """Packs stored as done whose files ``verify`` finds short or corrupt."""
    unchecked: list[str] = field(init=False, default_factory=list)
    """Experiment folders without a sweep.json, whose rows could not be checked."""
    bad_files: set[str] = field(init=False, default_factory=set)
    """Files that are damaged, off the declared schema, or listed by no pack: left out of every dataset."""
    stray_folders: set[str] = field(init=False, default_factory=set)
    """Folders of packs sweep.json does not hold (a second launch's): left out of every dataset."""

    def __post_init__(self) -> None:
        self._check()
        frames = [self._dataset(root, S.RUNS).to_table().to_pandas().assign(root=root) for root in self.roots]
        self.runs = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if self.runs.empty:
            raise AnalysisError(f"results={self.path!r} has no runs yet: allowed an experiment with written runs")
        state = pd.Series("done", index=self.runs.index)
        state[self.runs[S.DIVERGED].fillna(False).astype(bool)] = "diverged"
        state[self.runs[S.STATUS] != S.STATUS_DONE] = "unfinished"
        short = {r for c in self.broken for r in c.pack.run_ids}
        state[self.runs[S.RUN_ID].isin(short)] = "incomplete"
        self.runs["state"] = state
        # A run stored in several experiments of a root (copied by reuse, or begun in one and finished in
        # another) is one run: its most finished copy, whose rows are the only ones read (``read``).
        rank = self.runs["state"].map(STATE_ORDER)
        keep = rank.groupby(self.runs[S.RUN_ID]).transform("min") == rank
        self.runs = self.runs[keep].drop_duplicates(S.RUN_ID).reset_index(drop=True)
        if S.STEPS_PER_EPOCH not in self.runs:  # written before epochs could be shuffled passes
            self.runs[S.STEPS_PER_EPOCH] = self.runs[S.ITERS_PER_EPOCH]
        self.runs["final_step"] = self.runs[S.EPOCHS] * self.runs[S.STEPS_PER_EPOCH]

    def view(self, runs: pd.DataFrame) -> Results:
        """These results restricted to ``runs`` (rows of ``self.runs``), with a memo of their own."""
        out = copy.copy(self)
        out.runs, out.memo = runs, {}
        return out

    def _check(self) -> None:
        """``verify`` every experiment that has a sweep.json: its broken packs, and the files to skip."""
        try:
            stores = {s.root: s for s in experiment_stores(self.path)}
        except ValueError:
            stores = {}
        for root in self.roots:
            if root not in stores:
                self.unchecked.append(root)
                continue
            try:
                stored = load_sweep(stores[root])
            except ValueError as err:  # a damaged sweep.json: named, with the fix
                raise AnalysisError(str(err)) from None
            packs = stored.packs
            checks = verify(stores[root], packs, stored.ledgers, checksums=False)
            self.broken += [c for c in checks if c.state == BROKEN]
            self.bad_files |= {f for c in checks for f in (*c.bad_files, *c.extra)}
            self.stray_folders |= set(strays(stores[root], packs))

    def warnings(self) -> list[str]:
        """One line per pack stored as done but short or corrupt: what is wrong, and the fix."""
        return [
            f"warning: pack {c.pack.pack_id} ({c.pack.size} runs) left out: "
            + "; ".join(f"{f.table}: {f.problem}" for f in c.findings)
            + "; fix: rerun the sweep's command with --resume"
            for c in self.broken
        ]

    def dataset(self, table: str, optional: bool = False) -> ds.Dataset:
        """The union of one table over every experiment (hive partitions), without unreadable files;
        ``optional``: over the experiments that hold it (an opt-in table)."""
        parts = [d for d in (self._dataset(root, table, optional) for root in self.roots) if d is not None]
        return parts[0] if len(parts) == 1 else ds.dataset(parts)

    def _dataset(self, root: str, table: str, optional: bool = False) -> ds.Dataset | None:
        """One experiment's table without unreadable files; None if ``optional`` and it has none."""
        folder = posixpath.join(root, table)
        if not _is_dir(self.fs, folder):
            if optional:
                return None
            raise AnalysisError(f"table {table!r} is missing under {root!r}: allowed a complete experiment folder")
        skipped = (*self.bad_files, *self.stray_folders)
        if any(f.startswith(folder + "/") for f in skipped):
            infos = self.fs.get_file_info(pafs.FileSelector(folder, recursive=True))
            files = [i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                     and not posixpath.basename(i.path).startswith(".")]  # fmt: skip
            files = [f for f in files if f not in self.bad_files
                     and not any(f.startswith(d + "/") for d in self.stray_folders)]  # fmt: skip
            return ds.dataset(files, filesystem=self.fs, format=CHECKED, partitioning=PARTITIONING,
                              partition_base_dir=folder)  # fmt: skip
        return ds.dataset(folder, filesystem=self.fs, format=CHECKED, partitioning=PARTITIONING)

    def holds(self, root: str, table: str) -> bool:
        """Whether the experiment at ``root`` holds ``table`` itself (not in an older layout)."""
        return _is_dir(self.fs, posixpath.join(root, table))

    def _holds(self, root: str, table: str) -> bool:
        """Whether one experiment holds ``table``, or its older layout (``LAYOUTS``)."""
        return any(self.holds(root, t) for t in (table, *LAYOUTS.get(table, ())))

    def has(self, table: str) -> bool:
        """Whether every experiment holds ``table`` (an opt-in table may be absent)."""
        return all(self._holds(root, table) for root in self.roots)

    def has_any(self, table: str) -> bool:
        """Whether some experiment holds ``table``."""
        return any(self._holds(root, table) for root in self.roots)

    def made_ranks(self, run_ids: list[str]) -> pd.DataFrame:
        """The ``winner_ranks`` rows of runs stored without them, made from their correlations a pack at a
        time, in whichever layout their pack holds them (``storage.summaries``)."""
        frames = []
        runs = self.runs[self.runs[S.RUN_ID].isin(run_ids)]
        for (root, pack), group in runs.groupby(["root", S.PACK_ID], sort=True):
            for table, long in ((S.CORR_MATRICES, False), (S.CORRELATIONS, True)):
                folder = posixpath.join(root, table, f"{S.PARTITION}={pack}")
                files = [f for f in correlation_files(self.fs, folder) if f not in self.bad_files]
                if files:
                    final = int(group["final_step"].iloc[0])
                    ranks = summaries.winner_ranks(self.fs, files, final, long, list(group[S.RUN_ID]))
                    frames.append(ranks.to_pandas())
                    break
        empty = S.SCHEMAS[S.WINNER_RANKS].empty_table().to_pandas()
        return pd.concat(frames, ignore_index=True) if frames else empty

    @property
    def done(self) -> pd.DataFrame:
        """Runs that finished without diverging: the only ones queries use."""
        return self.runs[self.runs["state"] == "done"]

    def counts(self) -> dict[str, int]:
        """How many runs are done, diverged, unfinished and incomplete."""
        return {k: int((self.runs["state"] == k).sum()) for k in ("done", "diverged", "unfinished", "incomplete")}

    def read(
        self, table: str, columns: list[str], run_ids=None, steps=None, layer: int | None = None, optional: bool = False
    ) -> pd.DataFrame:
        """Rows of ``table`` for the given runs and steps, only the given columns (push-down); ``optional``:
        from the experiments that hold the table. A run's rows come from the experiment it is kept from."""
        return self.arrow(table, columns, run_ids, steps, layer, optional).to_pandas()

    def arrow(
        self, table: str, columns: list[str], run_ids=None, steps=None, layer: int | None = None, optional: bool = False
    ) -> pa.Table:
        """``read``'s rows as an Arrow table, for a query that reduces them before pandas."""
        expr = None
        if steps is not None:
            expr = pc.field(S.STEP).isin(pa.array(sorted(int(s) for s in steps), pa.int64()))
        if layer is not None:
            expr = (pc.field(S.LAYER) == layer) if expr is None else expr & (pc.field(S.LAYER) == layer)
        wanted = None if run_ids is None else set(run_ids)
        if len(self.roots) == 1 and wanted is None:
            return self.dataset(table, optional).to_table(columns=columns, filter=expr)
        frames = []
        for root, runs in self.runs.groupby("root", sort=False):
            runs = runs if wanted is None else runs[runs[S.RUN_ID].isin(wanted)]
            ids, packs = list(runs[S.RUN_ID]), runs[S.PACK_ID].unique()
            data = self._dataset(root, table, optional)
            if not ids or data is None:
                continue
            only = pc.field(S.PARTITION).isin(pa.array(packs, pa.string()))  # their packs' folders alone
            only &= pc.field(S.RUN_ID).isin(pa.array(ids, pa.string()))
            frames.append(data.to_table(columns=columns, filter=only if expr is None else only & expr))
        if not frames:  # the schema of an empty answer
            return self.dataset(table, optional).to_table(columns=columns, filter=pc.scalar(False))
        return pa.concat_tables(frames, promote_options="permissive") if len(frames) > 1 else frames[0]


def open_results(path: str) -> Results:
    """Open an experiment folder or a storage root of experiments."""
    fs, roots = experiment_roots(path)
    return Results(path=path, fs=fs, roots=roots)
