"""Parquet trace storage: atomic, idempotent writes to a local path or a filesystem URI.

A file's name is fixed by what it holds (a pack and a step block), so writing the same
rows again replaces the file instead of adding a second copy. Each write goes to a
hidden temp file (``.tmp-*``, ignored by pyarrow, pandas and ``*.parquet`` globs) and
is then renamed into place; on object stores (s3://, gs://) the final object appears
whole when its upload completes.
"""

from __future__ import annotations

import posixpath
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spec_ray.engine.spec import RunSpec
from spec_ray.storage import schema as S

TMP_PREFIX = ".tmp-"
BLOCK_EPOCHS = 10
"""Epochs of checkpoint rows per Parquet file (and per Tune checkpoint) unless a sweep sets ``block_epochs``."""


def is_uri(storage: str) -> bool:
    """A URI (s3://, gs://, file://) rather than a local path."""
    return "://" in storage


def open_storage(storage: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and root path for a local path or a URI."""
    if is_uri(storage):
        try:
            return pafs.FileSystem.from_uri(storage)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
            raise ValueError(
                f"storage={storage!r} is invalid: allowed a local path, s3://, gs:// or file:// URI ({err})"
            ) from None
    return pafs.LocalFileSystem(), Path(storage).expanduser().resolve().as_posix()


def block_name(lo: int, hi: int) -> str:
    """File name of the rows with lo <= step <= hi."""
    return f"steps-{lo:010d}-{hi:010d}.parquet"


def blocks(spec: RunSpec, block_epochs: int = BLOCK_EPOCHS) -> list[tuple[int, int]]:
    """Step blocks, one Parquet file each: [0, L], (L, 2L], ... fixed by the spec alone."""
    total = spec.total_steps
    length = block_epochs * spec.steps_per_epoch
    edges = list(range(0, total, length)) + [total]
    return [(lo if lo == 0 else lo + 1, hi) for lo, hi in zip(edges[:-1], edges[1:])]


# Kernel filesystems that exist as files but never hold a user's folders: mkdir there fails with
# ENOENT or EPERM, which would otherwise read as "No such file or directory".
VIRTUAL_FILESYSTEMS = ("proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "securityfs", "tracefs",
                       "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs")  # fmt: skip


def _mount_type(path: str) -> str:
    """The filesystem type of the mount holding ``path`` (longest mount point), '' where unknown."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return ""
    holding = [(point, kind) for point, kind in mounts if path == point or path.startswith(point.rstrip("/") + "/")]
    return max(holding, key=lambda m: len(m[0]))[1] if holding else ""


def local_unwritable_reason(root: str) -> str:
    """Why a local folder cannot be made or written, in a user's words; '' where no cause is found."""
    import os

    existing = Path(root)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    kind = _mount_type(existing.as_posix())
    if kind in VIRTUAL_FILESYSTEMS:
        return f"{existing} is on the kernel's virtual {kind} filesystem, which holds no user folders"
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"no permission to write in {existing}"
    return ""


class TraceStore:
    """The tables of one experiment under a storage root."""

    def __init__(self, storage: str, experiment: str) -> None:
        if not experiment or "/" in experiment or experiment.startswith((".", "_")):
            raise ValueError(
                f"experiment={experiment!r} is invalid: allowed a non-empty name without '/', "
                "not starting with '.' or '_'"
            )
        self.fs, root = open_storage(storage)
        self.storage = storage if is_uri(storage) else root
        """The storage root as every process names it: the URI, or the local path made absolute."""
        self.experiment = experiment
        self.root = posixpath.join(root, experiment)
        """The experiment folder in ``fs``'s terms."""

    @property
    def remote(self) -> bool:
        """On an object store or another filesystem named by URI."""
        return is_uri(self.storage)

    @property
    def uri(self) -> str:
        """The experiment folder as a user and Ray Tune name it: an absolute path, or the storage URI and name."""
        return posixpath.join(self.storage.rstrip("/"), self.experiment) if self.remote else self.root

    def table_dir(self, table: str) -> str:
        """Directory of one table (the dataset root for readers)."""
        return posixpath.join(self.root, table)

    def file_path(self, table: str, pack_id: str, name: str) -> str:
        """Final path of one file of a table."""
        return posixpath.join(self.table_dir(table), f"{S.PARTITION}={pack_id}", name)

    def check_writable(self) -> None:
        """Raise ValueError naming the storage when nothing can be written there."""
        probe = posixpath.join(self.root, f"{TMP_PREFIX}probe-{uuid.uuid4().hex}")
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(probe) as out:
                out.write(b"ok")
            self.fs.delete_file(probe)
        except (OSError, pa.ArrowException) as err:
            why = str(err) if self.remote else local_unwritable_reason(self.root) or str(err)
            allowed = "allowed a writable directory or URI"
            raise ValueError(f"storage={self.storage!r} is not writable: {why}; {allowed}") from None

    def remove_if_empty(self) -> None:
        """Undo ``check_writable``'s folder when a sweep stops before writing anything."""
        try:
            if not self.fs.get_file_info(pafs.FileSelector(self.root)):
                self.fs.delete_dir(self.root)
        except (OSError, pa.ArrowException):
            pass  # nothing to undo, or not ours to remove

    def write_temp(self, table: str, pack_id: str, rows: pa.Table) -> str:
        """First half of an atomic write: the rows in a hidden temp file. Returns its path."""
        final = self.file_path(table, pack_id, "x")
        folder = posixpath.dirname(final)
        self.fs.create_dir(folder, recursive=True)
        tmp = posixpath.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        pq.write_table(rows, tmp, filesystem=self.fs)
        return tmp

    def write(self, table: str, pack_id: str, name: str, rows: pa.Table) -> str:
        """Write ``rows`` as ``name`` atomically, replacing any earlier file of that name."""
        tmp = self.write_temp(table, pack_id, rows)
        final = self.file_path(table, pack_id, name)
        self.fs.move(tmp, final)
        return final

    def dataset(self, table: str) -> ds.Dataset:
        """A pyarrow dataset of one table (hive partitions, push-down filters)."""
        return ds.dataset(self.table_dir(table), filesystem=self.fs, format="parquet", partitioning="hive")

    def read(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        """One whole table as a pandas frame."""
        return self.dataset(table).to_table(columns=columns).to_pandas()
