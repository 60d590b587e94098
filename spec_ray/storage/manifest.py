"""``sweep.json``: the packs of an experiment as launched, beside its tables.

A sweep writes it before its first trial; ``--resume``, ``verify`` and the analysis read it
back. It names every run (its whole spec), so what a complete experiment holds can be
computed from it: the rows ``verify`` expects.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs

from spec_ray.engine.specs.spec_io import spec_from_dict, spec_to_dict
from spec_ray.engine.training.pack import Pack
from spec_ray.storage import schema as S
from spec_ray.storage.ledger import FOLDER as LEDGER_FOLDER
from spec_ray.storage.traces import TMP_PREFIX, TraceStore, is_uri, open_storage

SWEEP_FILE = "sweep.json"
TUNE_DIR = "tune"
"""Ray Tune's state under the experiment folder (``tune-2``, ... for each launch that grew or repaired it)."""


def packs_to_dict(name: str, packs: list[Pack]) -> dict:
    """Packs as stored in sweep.json: each pack's runs, in the order they are launched."""
    return {"name": name, "packs": [[spec_to_dict(r) for r in p.runs] for p in packs]}


def packs_from_dict(data: dict) -> list[Pack]:
    """The packs stored by ``packs_to_dict``."""
    return [Pack(tuple(spec_from_dict(r) for r in runs)) for runs in data["packs"]]


LEDGERS = "ledgers"
"""sweep.json's mark of a sweep begun by a spec-ray that writes a ledger for every pack."""


class SweepUnreadable(ValueError):
    """A sweep.json that exists but cannot be read: the message names the file and the fix."""


def _sweep_bytes(store: TraceStore) -> bytes | None:
    try:
        with store.fs.open_input_stream(posixpath.join(store.root, SWEEP_FILE)) as f:
            return f.read()
    except (FileNotFoundError, OSError, pa.ArrowException):
        return None


class StoredSweep(NamedTuple):
    """sweep.json as read once: its record, its packs and the digest of its bytes."""

    meta: dict
    packs: list[Pack]
    digest: str
    """SHA-256 of the file's bytes: whether it changed since (``plan.Launch.current``)."""

    @property
    def ledgers(self) -> bool:
        """Every finished pack of the sweep must have a ledger (a missing one is damage)."""
        return bool(self.meta.get(LEDGERS))


def _parse(store: TraceStore, blob: bytes) -> dict:
    try:
        meta = json.loads(blob.decode())
        if not isinstance(meta["sweep"]["packs"], list):
            raise TypeError("its packs are no list")
        return meta
    except (ValueError, KeyError, TypeError) as err:
        raise unreadable(store, err) from None


def read_sweep(store: TraceStore) -> dict | None:
    """The stored sweep.json's record (its packs not built), or None where there is none;
    ``SweepUnreadable`` where it is damaged."""
    blob = _sweep_bytes(store)
    return None if blob is None else _parse(store, blob)


def load_sweep(store: TraceStore) -> StoredSweep | None:
    """The stored sweep, read once, or None where there is none; ``SweepUnreadable`` where it is damaged."""
    blob = _sweep_bytes(store)
    if blob is None:
        return None
    meta = _parse(store, blob)
    try:
        packs = packs_from_dict(meta["sweep"])
    except (ValueError, KeyError, TypeError) as err:
        raise unreadable(store, err) from None
    return StoredSweep(meta, packs, hashlib.sha256(blob).hexdigest())


def unreadable(store: TraceStore, err: Exception) -> SweepUnreadable:
    """The error for a damaged sweep.json: the file, what is wrong, the fix."""
    path = posixpath.join(store.uri, SWEEP_FILE)
    return SweepUnreadable(
        f"{path} is unreadable ({type(err).__name__}: {str(err)[:120]}): it lists the sweep's packs, without "
        "which its tables can be neither checked nor resumed; allowed a sweep.json as a launch wrote it: "
        "restore it from a copy, or start again under a new --name"
    )


def sweep_digest(store: TraceStore) -> str | None:
    """A digest of the stored sweep.json's bytes, None where there is none: whether it changed since."""
    blob = _sweep_bytes(store)
    return None if blob is None else hashlib.sha256(blob).hexdigest()


def has_tables(store: TraceStore) -> bool:
    """Whether the experiment folder holds a table or a ledger: results written by some launch."""
    names = (*S.TABLES, *S.OPTIONAL_TABLES, LEDGER_FOLDER)
    try:
        return any(store.fs.get_file_info(posixpath.join(store.root, n)).type != pafs.FileType.NotFound for n in names)
    except (OSError, pa.ArrowException):
        return False  # unreadable storage: the writability check names it


def write_sweep(store: TraceStore, meta: dict) -> None:
    """Write sweep.json atomically (a temp file, then a rename)."""
    tmp = posixpath.join(store.root, f"{TMP_PREFIX}{SWEEP_FILE}")
    store.fs.create_dir(store.root, recursive=True)
    with store.fs.open_output_stream(tmp) as f:
        f.write(json.dumps(meta, indent=1, sort_keys=True).encode())
    store.fs.move(tmp, posixpath.join(store.root, SWEEP_FILE))


def experiment_stores(path: str) -> list[TraceStore]:
    """The experiments at ``path``: itself when it holds a sweep.json, else its sub-folders that do.
    Raises ValueError naming the path when there are none."""
    fs, root = open_storage(path)
    base = path.rstrip("/") if is_uri(path) else root

    def store(folder: str) -> TraceStore:  # the storage root and name of an experiment folder
        parent, name = posixpath.split(folder.rstrip("/"))
        return TraceStore(parent, name)

    def is_file(p: str) -> bool:
        return fs.get_file_info(p).type == pafs.FileType.File

    if is_file(posixpath.join(root, SWEEP_FILE)):
        return [store(base)]
    try:
        subs = [i for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory]
    except (FileNotFoundError, OSError):
        subs = []
    names = sorted(posixpath.basename(i.path) for i in subs if is_file(posixpath.join(i.path, SWEEP_FILE)))
    if not names:
        raise ValueError(f"results={path!r} is not a sweep: no {SWEEP_FILE} in it or its sub-folders "
                         "(allowed: a folder written by a sweep or `python -m spec_ray run`)")  # fmt: skip
    return [store(posixpath.join(base, n)) for n in names]


def next_tune_dir(meta: dict) -> str:
    """A fresh folder for Tune's state when a resume adds or retrains packs: Tune cannot add trials
    to a stored experiment (ray-project/ray#18847), so each such launch is a new Tune run."""
    now = meta.get("tune_dir", TUNE_DIR)
    generation = int(now.rpartition("-")[2]) + 1 if now != TUNE_DIR else 2
    return f"{TUNE_DIR}-{generation}"
