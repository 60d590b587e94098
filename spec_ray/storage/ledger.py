"""The manifest of stored files: every file a pack writes, with its rows, bytes and SHA-256.

One JSON file a pack, ``<experiment>/_ledger/<pack_id>.json`` (a leading ``_``: pyarrow, pandas
and DuckDB never read it as data). The pack's writer (``runner.run_pack``, ``reuse.copy_pack``)
records each file after it lands and saves the ledger at every block end, before a resumable
checkpoint is taken, so a pack's ledger names every file of its finished blocks. ``verify``
then checks a pack by its ledger without decoding a row: each listed file is there, with its
bytes and checksum, the rows of its block add up to what the spec gives, and no file of the
pack's folders is unlisted. Packs written before ledgers existed have none; ``verify`` decodes
theirs instead and says that no checksum could be checked.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spec_ray.storage.rows import file_sizes, sha256
from spec_ray.storage.traces import TMP_PREFIX, TraceStore, Written

FOLDER = "_ledger"
VERSION = 1


class LedgerError(ValueError):
    """A ledger file that cannot be read: damage, which ``verify`` names."""


@dataclass
class Ledger:
    """The files one pack has written, by path relative to the experiment folder (``<table>/pack=<id>/<name>``)."""

    store: TraceStore
    pack_id: str
    files: dict[str, Written] = field(default_factory=dict)

    @staticmethod
    def path_of(store: TraceStore, pack_id: str) -> str:
        return posixpath.join(store.root, FOLDER, f"{pack_id}.json")

    @classmethod
    def load(cls, store: TraceStore, pack_id: str) -> Ledger | None:
        """The stored ledger of a pack; None where the pack has none (or an older spec-ray wrote it)."""
        path = cls.path_of(store, pack_id)
        try:
            with store.fs.open_input_stream(path) as f:
                blob = f.read()
        except (FileNotFoundError, OSError, pa.ArrowException):
            return None
        try:
            data = json.loads(blob)
            files = {k: Written(**v) for k, v in data["files"].items()}
            if data.get("pack") != pack_id:
                raise ValueError(f"it names pack {data.get('pack')!r}")
        except (ValueError, KeyError, TypeError) as err:
            raise LedgerError(f"the ledger {path} is unreadable ({str(err)[:120]})") from None
        return cls(store, pack_id, files)

    def relative(self, written: Written) -> str:
        """Where a written file is, relative to the experiment folder."""
        full = self.store.file_path(written.table, self.pack_id, written.name)
        return posixpath.relpath(full, self.store.root)

    def add(self, written: Written) -> Written:
        """Record a file the pack has just written (replacing the entry of an earlier file of that name)."""
        self.files[self.relative(written)] = written
        return written

    def save(self) -> None:
        """Write the ledger atomically (a temp file, then a rename)."""
        folder = posixpath.join(self.store.root, FOLDER)
        self.store.fs.create_dir(folder, recursive=True)
        tmp = posixpath.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        body = {"version": VERSION, "pack": self.pack_id,
                "files": {k: w._asdict() for k, w in sorted(self.files.items())}}  # fmt: skip
        with self.store.fs.open_output_stream(tmp) as out:
            out.write(json.dumps(body, indent=0, sort_keys=True).encode())
        self.store.fs.move(tmp, self.path_of(self.store, self.pack_id))

    def paths(self, table: str) -> list[str]:
        """The listed files of one table, by full path, in block order."""
        return sorted(posixpath.join(self.store.root, rel) for rel, w in self.files.items() if w.table == table)

    def tables(self) -> dict[str, list[tuple[str, Written]]]:
        """The listed files by table: (path relative to the experiment, record), sorted."""
        out: dict[str, list[tuple[str, Written]]] = {}
        for rel, written in sorted(self.files.items()):
            out.setdefault(written.table, []).append((rel, written))
        return out


def of_files(store: TraceStore, pack_id: str, tables: tuple[str, ...]) -> Ledger:
    """A ledger of the pack's files as they are stored, read back: what a pack an older spec-ray wrote
    gets once ``verify`` has decoded it whole, so that later checks read its checksums instead."""
    ledger = Ledger(store, pack_id)
    for table in tables:
        for path, size in sorted(file_sizes(store, table, pack_id).items()):
            rows = pq.read_metadata(path, filesystem=store.fs).num_rows
            ledger.add(Written(table, posixpath.basename(path), rows, size, sha256(store, path)))
    return ledger


def ledger_ids(store: TraceStore) -> list[str]:
    """The pack ids that have a ledger in the experiment."""
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(posixpath.join(store.root, FOLDER)))
    except (FileNotFoundError, OSError):
        return []
    names = [posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.File]
    return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and not n.startswith(TMP_PREFIX))
