"""Check an experiment's stored tables against what its sweep.json says they hold.

For every pack: its runs table is read whole, and each run's stored settings are hashed again
against its id (an edited run is damage). Its other files are checked by the pack's ledger
(``storage.ledger``): every listed file is there with its bytes and SHA-256, and the rows of
its blocks add up to a row per checkpoint step and, per node table, per hidden layer and node
(``expected_rows``). A file in the pack's folders that the ledger does not list is *extra*.
A pack without a ledger (written by an older spec-ray) has every file decoded instead, and its
rows counted once each. A pack is ``complete``, ``unfinished`` (not all its runs done: a sweep
in progress, or one to resume) or ``broken`` (a file damaged, missing or short, a run edited);
``--resume`` retrains exactly the broken and unfinished ones and removes the extra files and
the ``strays`` (folders of packs sweep.json does not hold).
"""

from __future__ import annotations

import posixpath
from typing import NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.specs.spec_io import flat_fields
from spec_ray.engine.training.pack import Pack, id_of_fields
from spec_ray.storage import schema as S
from spec_ray.storage.ledger import FOLDER as LEDGER_FOLDER
from spec_ray.storage.ledger import Ledger, LedgerError, ledger_ids
from spec_ray.storage.legacy import count_rows
from spec_ray.storage.rows import (
    Finding,
    expected_rows,
    file_sizes,
    pack_files,
    rows_per_checkpoint,
    schema_problem,
    sha256,
    table_steps,
)
from spec_ray.storage.traces import TraceStore, Written, block_range

__all__ = ["BROKEN", "COMPLETE", "UNFINISHED", "Finding", "PackCheck", "check_pack", "describe", "expected_rows",
           "pack_files", "strays", "verify"]  # fmt: skip

COMPLETE, UNFINISHED, BROKEN = "complete", "unfinished", "broken"
RUNS_FILE = "runs.parquet"


class PackCheck(NamedTuple):
    """What ``check_pack`` found for one pack."""

    pack: Pack
    state: str
    """complete | unfinished | broken."""
    findings: list[Finding]
    bad_files: list[str]
    """Files no reader should open (damaged, or with the wrong columns)."""
    extra: list[str] = []
    """Files in the pack's folders that its ledger does not list: no reader should open them, and
    ``--resume`` removes them."""
    checksums: bool = True
    """False for a finished pack without a ledger (an older spec-ray's): its files were decoded, not checksummed."""


def _differs(a: object, b: object) -> bool:
    nan = lambda v: isinstance(v, float) and v != v  # noqa: E731 - a null read back as NaN
    return not (a == b or (a is None and nan(b)) or (b is None and nan(a)) or (nan(a) and nan(b)))


def check_runs(store: TraceStore, pack: Pack) -> tuple[bool, list[Finding]]:
    """Whether every run of the pack is stored as done at its last step, and what is wrong with its
    runs table: unreadable, a row of another pack, or a run whose stored settings no longer hash to its id."""
    path = store.file_path(S.RUNS, pack.pack_id, RUNS_FILE)
    if store.fs.get_file_info(path).type != pafs.FileType.File:
        return False, []
    try:
        rows = pq.read_table(path, filesystem=store.fs, page_checksum_verification=True).to_pylist()
    except (OSError, pa.ArrowException) as err:
        return False, [Finding(S.RUNS, f"corrupt file {path}: unreadable ({str(err).splitlines()[0][:160]})", path)]
    specs = dict(zip(pack.run_ids, pack.runs))
    findings = []
    for row in rows:
        rid = row.get(S.RUN_ID)
        if rid not in specs:
            findings.append(Finding(S.RUNS, f"{path} holds run {rid}, which pack {pack.pack_id} does not", path))
            continue
        stored = {k: row[k] for k in S.SPEC_COLUMNS if k in row}
        if id_of_fields(stored) != rid:
            ran = flat_fields(specs[rid])
            edits = [f"{k} {stored[k]!r} (ran {ran[k]!r})" for k in stored if k in ran and _differs(stored[k], ran[k])]
            findings.append(Finding(S.RUNS, f"run {rid}: stored settings changed after it ran: "
                                            f"{', '.join(edits) or 'its fields'} in {path}", path))  # fmt: skip
    total = pack.spec.total_steps
    done = {r[S.RUN_ID] for r in rows if r.get(S.STATUS) == S.STATUS_DONE and r.get(S.STEPS_DONE) == total}
    return done == set(pack.run_ids), findings


def _block_rows(spec: RunSpec, table: str, name: str, runs: int) -> int | None:
    """Rows the file ``name`` of ``table`` must hold for ``runs`` runs; None where its name is no block."""
    if table == S.RUNS:
        return runs if name == RUNS_FILE else None
    edges = block_range(name)
    if edges is None:
        return None
    steps = [s for s in table_steps(spec, table) if edges[0] <= s <= edges[1]]
    return runs * len(steps) * rows_per_checkpoint(spec, table)


def long_layout(ledger: Ledger | None, require_ledger: bool = False) -> bool:
    """Whether a pack keeps its correlations in the long layout of spec-ray before 0.2: it has no ledger
    (and its sweep is older than ledgers), or its ledger lists long ``correlations`` files."""
    if ledger is None:
        return not require_ledger
    return any(w.table == S.CORRELATIONS for w in ledger.files.values())


def pack_tables(spec: RunSpec, ledger: Ledger | None, require_ledger: bool = False) -> tuple[str, ...]:
    """The tables a pack holds: what ``spec`` writes, in the layout its writer used; a pack of the long layout
    holds ``winner_ranks`` once a resume has made them (its ledger lists them)."""
    long = long_layout(ledger, require_ledger)
    tables = S.written_tables(spec, long_correlations=long)
    if long and ledger is not None and any(w.table == S.WINNER_RANKS for w in ledger.files.values()):
        tables = (*tables, S.WINNER_RANKS)
    return tables


LARGE_TABLES = (S.CORR_MATRICES, S.CORRELATIONS)
"""Tables whose files opening results checks by size, not checksum: nearly all of a Luck sweep's bytes
(hashing runs at 0.9 GB/s here), read only by a query that asks for them, which verifies their page CRCs."""


def _by_ledger(store: TraceStore, pack: Pack, ledger: Ledger, done: bool,
               checksums: bool = True) -> tuple[list[Finding], list[str], list[str]]:  # fmt: skip
    """Check the pack's files by its ledger: (findings, damaged files, extra files); ``checksums``: hash
    every byte, else all but the ``LARGE_TABLES``' (opening results in a second)."""
    findings: list[Finding] = []
    bad: list[str] = []
    extra: list[str] = []
    listed = ledger.tables()
    for table in pack_tables(pack.spec, ledger):
        sizes = file_sizes(store, table, pack.pack_id)
        entries: list[tuple[str, Written]] = listed.get(table, [])
        mine = {posixpath.join(store.root, rel): w for rel, w in entries}
        extra += [p for p in sorted(sizes) if p not in mine]
        have = 0
        for path, w in mine.items():
            want = _block_rows(pack.spec, table, w.name, pack.size)
            if path not in sizes:
                findings.append(Finding(table, f"missing file {path} (listed with {w.rows} rows)", path))
                continue
            hashed = checksums or table not in LARGE_TABLES
            if sizes[path] != w.size or (hashed and sha256(store, path) != w.sha256):
                why = schema_problem(store, path, table) or "its bytes changed after it was written (SHA-256 differs)"
                findings.append(Finding(table, f"corrupt file {path}: {why}", path))
                bad.append(path)
                continue
            if want is not None and w.rows != want:
                findings.append(Finding(table, f"{path} holds {w.rows} rows, its block {want}", path))
            have += w.rows if table != S.RUNS else 0
        if done and table != S.RUNS:
            want = expected_rows(pack.spec, table) * pack.size
            if have < want:
                findings.append(
                    Finding(
                        table,
                        f"missing {want - have} of {want} rows: the {len(mine)} file(s) its ledger lists, all present, "
                        "hold too few",
                    )
                )
            elif have > want:
                findings.append(Finding(table, f"{have - want} rows stored twice"))
    return findings, bad, extra


def check_pack(store: TraceStore, pack: Pack, require_ledger: bool = False, checksums: bool = True) -> PackCheck:
    """Check one pack's runs and files: by its ledger where it has one, else by decoding every file.
    ``require_ledger``: the sweep was begun by a spec-ray that writes ledgers, so a finished pack without
    one has lost it (damage), not an older writer's pack. ``checksums``: hash every listed file (``verify``);
    else the ``LARGE_TABLES``' by size only (opening results)."""
    done, findings = check_runs(store, pack)
    bad = sorted({f.path for f in findings if f.path and f.problem.startswith("corrupt")})
    started = store.fs.get_file_info(store.file_path(S.RUNS, pack.pack_id, RUNS_FILE)).type == pafs.FileType.File
    try:
        ledger = Ledger.load(store, pack.pack_id)
    except LedgerError as err:
        ledger = None
        findings.append(Finding(S.RUNS, str(err), Ledger.path_of(store, pack.pack_id)))
    tables = pack_tables(pack.spec, ledger, require_ledger)
    has_rows = any(pack_files(store, t, pack.pack_id) for t in tables)
    extra: list[str] = []
    if ledger is not None:
        more, damaged, extra = _by_ledger(store, pack, ledger, done, checksums)
        findings += more
        bad += damaged
        if not done:
            extra = []  # a pack being trained again rewrites these names
    elif started or has_rows:
        more, damaged = count_rows(store, pack, done, tables)
        findings += more
        bad += damaged
        if done and require_ledger:
            findings.append(Finding(S.RUNS, f"its ledger {Ledger.path_of(store, pack.pack_id)} is missing"))
    if not started and has_rows:
        # runs.parquet is a pack's first write: rows without it mean it was lost.
        findings.append(Finding(S.RUNS, f"{RUNS_FILE} is missing, but the pack has rows"))
    # A corrupt file of an unfinished pack is broken too: a resume from a later block would not rewrite it.
    state = BROKEN if findings else (COMPLETE if done else UNFINISHED)
    return PackCheck(pack, state, findings, sorted(set(bad)), extra, ledger is not None or not done)


def verify(store: TraceStore, packs: list[Pack], require_ledger: bool = False,
           checksums: bool = True) -> list[PackCheck]:  # fmt: skip
    """``check_pack`` for every pack, in order."""
    return [check_pack(store, p, require_ledger, checksums) for p in packs]


def strays(store: TraceStore, packs: list[Pack]) -> list[str]:
    """Folders of packs that no pack of ``packs`` is (a second launch's split, a lost sweep.json's
    packs) in any table, and their ledgers: no reader should open them, and ``--resume`` removes them."""
    known = {p.pack_id for p in packs}
    out = []
    for table in (*S.TABLES, *S.OPTIONAL_TABLES, *S.LEGACY_TABLES):
        try:
            infos = store.fs.get_file_info(pafs.FileSelector(store.table_dir(table)))
        except (FileNotFoundError, OSError):
            continue
        for info in infos:
            name = posixpath.basename(info.path)
            is_pack = info.type == pafs.FileType.Directory and name.startswith(f"{S.PARTITION}=")
            if is_pack and name.partition("=")[2] not in known:
                out.append(info.path)
    out += [posixpath.join(store.root, LEDGER_FOLDER, f"{i}.json") for i in ledger_ids(store) if i not in known]
    return sorted(out)


def describe(check: PackCheck) -> list[str]:
    """Lines for a person: the pack and what is wrong with it."""
    head = f"pack {check.pack.pack_id} ({check.pack.size} runs): {check.state}"
    lines = [head, *(f"  {f.table}: {f.problem}" for f in check.findings)]
    lines += [f"  extra file {p}: listed by no pack" for p in check.extra]
    return lines
