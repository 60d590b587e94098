"""Stored teachers in the storage root, beside the experiments, on any pyarrow filesystem.

Layout: ``<storage>/teachers/<hash>.pt``, a checkpoint in the authors' format whose content hash
(``digest``) is its name and the runs' ``teacher.load_teacher``, and
``<storage>/teachers/<hash>.json``, what it is: its source, the pretraining key and recipe, its
test accuracy. ``<storage>/teachers/key-<digest>.json`` points a pretraining key at its
teacher, so every later sweep of the root reuses it. Files are written to a temporary name and
moved into place, so a reader never sees half a teacher.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import uuid

import pyarrow.fs as pafs

from spec_ray.storage.traces import TMP_PREFIX, open_storage

FOLDER = "teachers"


def digest(blob: bytes) -> str:
    """The content hash a stored teacher is known by, in run ids: ``sha256:`` and 16 hex digits."""
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]


def key_name(key: dict) -> str:
    """The file that points a pretraining key at its teacher."""
    return "key-" + hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16] + ".json"


class TeacherStore:
    """The teachers of one storage root."""

    def __init__(self, storage: str, fs: pafs.FileSystem | None = None) -> None:
        """``storage``: the root's URI or path; with ``fs``, a path on that filesystem (analysis has both)."""
        self.storage = storage
        self.fs, root = (fs, storage) if fs is not None else open_storage(storage)
        self.folder = posixpath.join(root, FOLDER)

    def _path(self, name: str) -> str:
        return posixpath.join(self.folder, name.replace(":", "-"))

    def _write(self, name: str, blob: bytes) -> None:
        self.fs.create_dir(self.folder, recursive=True)
        tmp = posixpath.join(self.folder, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        with self.fs.open_output_stream(tmp) as out:
            out.write(blob)
        self.fs.move(tmp, self._path(name))

    def _read(self, name: str) -> bytes | None:
        path = self._path(name)
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def put(self, blob: bytes, meta: dict) -> str:
        """Store a checkpoint's bytes and what it is; returns its content hash."""
        name = digest(blob)
        if self._read(name + ".pt") is None:
            self._write(name + ".pt", blob)
        self._write(name + ".json", json.dumps({"hash": name, **meta}, indent=1, sort_keys=True, default=str).encode())
        return name

    def get(self, name: str) -> bytes:
        """A stored checkpoint's bytes, checked against its name; ValueError when missing or changed."""
        blob = self._read(name + ".pt")
        if blob is None:
            raise ValueError(f"teacher.load_teacher={name!r}: no such teacher under {self.folder}: allowed a teacher "
                             "this storage root holds (a sweep's launch stores it)")  # fmt: skip
        if digest(blob) != name:
            raise ValueError(f"teacher.load_teacher={name!r}: the stored file {self._path(name + '.pt')} has content "
                             f"{digest(blob)}: it changed after it was stored")  # fmt: skip
        return blob

    def meta(self, name: str) -> dict | None:
        """What a stored teacher is (source, key, accuracy), or None."""
        blob = self._read(name + ".json")
        return None if blob is None else json.loads(blob)

    def find(self, key: dict) -> str | None:
        """The hash of the teacher pretrained for ``key``, if this root holds it."""
        blob = self._read(key_name(key))
        if blob is None:
            return None
        name = json.loads(blob)["hash"]
        return name if self._read(name + ".pt") is not None else None

    def remember(self, key: dict, name: str) -> None:
        """Point ``key`` at the stored teacher ``name``."""
        self._write(key_name(key), json.dumps({"hash": name, "key": key}, sort_keys=True, default=str).encode())

    def all(self) -> dict[str, dict]:
        """Every stored teacher's record, by hash."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.folder))
        except (FileNotFoundError, OSError):
            return {}
        names = [posixpath.basename(i.path) for i in infos if i.path.endswith(".json")]
        out = {}
        for n in names:
            if n.startswith("sha256-"):
                record = self.meta(n[: -len(".json")].replace("sha256-", "sha256:"))
                if record is not None:
                    out[record["hash"]] = record
        return out
