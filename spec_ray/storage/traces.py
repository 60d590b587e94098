"""Parquet trace storage: atomic, idempotent writes to a local path or a filesystem URI.

A file's name is fixed by what it holds (a pack and a step block), so writing the same
rows again replaces the file instead of adding a second copy. Each write goes to a
hidden temp file (``.tmp-*``, ignored by pyarrow, pandas and ``*.parquet`` globs) and
is then renamed into place; on object stores (s3://, gs://) the final object appears
whole when its upload completes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spec_ray.engine.specs.spec import RunSpec
from spec_ray.storage import schema as S

TMP_PREFIX = ".tmp-"
ENCODINGS: dict[str, dict] = {
    S.CORR_MATRICES: {
        "compression": "zstd",
        "compression_level": 1,
        "use_byte_stream_split": [f"{S.CORR}.list.element"],
    },
}
"""Parquet options of a table beyond the defaults. Correlations: float32 split into byte streams (named
by the list's leaf: the column's own name splits nothing), then zstd; docs/schema.md has the bytes and
times of each choice."""
GROUP_BYTES = 1 << 20
"""A row group holds whole checkpoints, at least this many bytes of them in memory (the last may hold
less): a read of some steps then decodes only their groups (statistics push-down). The report's read
of the first and last steps of 40 Luck runs' student_nodes: see docs/performance.md."""
BLOCK_EPOCHS = 10
"""Epochs of checkpoint rows per Parquet file (and per Tune checkpoint) unless a sweep sets ``block_epochs``."""

PARTITIONING = ds.partitioning(pa.schema([(S.PARTITION, pa.string())]), flavor="hive")
"""A table's folders, ``pack=<id>``, the id read as a string (inferred, an id of digits alone would read
as an integer); a filter on it opens only the folders of the packs it names."""


def row_groups(rows: pa.Table) -> list[pa.Table]:
    """``rows`` cut at checkpoint boundaries into slices of at least ``GROUP_BYTES`` (a table without a
    step column, or an empty one, is one slice)."""
    if S.STEP not in rows.column_names or rows.num_rows == 0:
        return [rows]
    steps = rows.column(S.STEP).to_numpy()  # (rows,)
    starts = np.flatnonzero(steps[1:] != steps[:-1]) + 1  # (checkpoints - 1,) where a checkpoint begins
    per_row = max(rows.nbytes / rows.num_rows, 1.0)
    groups, lo = [], 0
    for start in (*starts.tolist(), rows.num_rows):
        if (start - lo) * per_row >= GROUP_BYTES or start == rows.num_rows:
            groups.append(rows.slice(lo, start - lo))
            lo = start
    return groups


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns written with a dictionary: keys (strings, integers, flags), not measurements. A float
    column would begin every row group dictionary-encoded until its dictionary fills (1 MiB), which
    compresses worse than plain or split pages (measured: see docs/performance.md)."""
    return [f.name for f in schema if not (pa.types.is_floating(f.type) or pa.types.is_list(f.type))]


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


def block_range(name: str) -> tuple[int, int] | None:
    """(lo, hi) of a ``block_name``; None for any other name."""
    parts = name.removesuffix(".parquet").split("-")
    if len(parts) != 3 or parts[0] != "steps" or not name.endswith(".parquet"):
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


class Written(NamedTuple):
    """One file as the writer left it: what the pack's ledger records (``storage.ledger``)."""

    table: str
    name: str
    """The file name within the pack's folder of the table."""
    rows: int
    size: int
    """Bytes."""
    sha256: str


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
    existing = Path(root)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    kind = _mount_type(existing.as_posix())
    if kind in VIRTUAL_FILESYSTEMS:
        return f"{existing} is on the kernel's virtual {kind} filesystem, which holds no user folders"
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if read_only(existing.as_posix()):
        return f"{existing} is on a read-only filesystem"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"no permission to write in {existing}"
    return ""


def read_only(path: str) -> bool:
    """Whether the local filesystem holding ``path`` is mounted read-only (root may write anywhere else)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "[Errno 28]", "[Errno 122]")
"""How a full disk reads in an error's text: the OS's words, or the errno of ENOSPC and EDQUOT."""


def is_disk_full(err: BaseException | str) -> bool:
    """An error (or its text) that says the storage has no space left (ENOSPC or EDQUOT, or pyarrow's words for it)."""
    if isinstance(err, str):
        return any(w in err for w in DISK_FULL_WORDS)
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if is_disk_full(str(err)):
            return True
        err = err.__cause__ or err.__context__
    return False


def free_bytes(storage: str) -> int | None:
    """Bytes free for the storage root (its nearest existing folder); None on a URI or where unknown."""
    if is_uri(storage):
        return None
    path = Path(storage).expanduser().resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def disk_full_message(storage: str) -> str:
    """One line for a storage that has no space left: where, how much is free, and the fix."""
    free = free_bytes(storage)
    left = f"{free / 2**20:,.1f} MiB free" if free is not None else "its quota is used up"
    return (f"storage={storage!r} is full ({left}): no file was left half written; free space there, then "
            "rerun the same command with --resume to finish")  # fmt: skip


def _discard(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError, pa.ArrowException):
        fs.delete_file(path)


class TraceStore:
    """The tables of one experiment under a storage root."""

    def __init__(self, storage: str, experiment: str) -> None:
        if (
            not experiment.strip()
            or experiment != experiment.strip()
            or "/" in experiment
            or experiment.startswith((".", "_"))
        ):
            raise ValueError(
                f"experiment={experiment!r} is invalid: allowed a non-empty name without '/', spaces at its ends, "
                "or a leading '.' or '_'"
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
        """Raise ValueError naming the storage when nothing can be written there; the probe never stays."""
        probe = posixpath.join(self.root, f"{TMP_PREFIX}probe-{uuid.uuid4().hex}")
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(probe) as out:
                out.write(b"ok")
        except (OSError, pa.ArrowException) as err:
            if is_disk_full(err):
                raise ValueError(disk_full_message(self.storage)) from None
            why = str(err) if self.remote else local_unwritable_reason(self.root) or str(err)
            allowed = "allowed a writable directory or URI"
            raise ValueError(f"storage={self.storage!r} is not writable: {why}; {allowed}") from None
        finally:
            _discard(self.fs, probe)  # never written, or written: never left behind

    def remove(self, path: str) -> None:
        """Delete a file or folder of this experiment (a stray: listed by no pack)."""
        if not path.startswith(self.root.rstrip("/") + "/"):
            raise ValueError(f"{path} is not in the experiment folder {self.root}")
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(path)

    def remove_if_empty(self) -> None:
        """Undo ``check_writable``'s folder when a sweep stops before writing anything."""
        try:
            if not self.fs.get_file_info(pafs.FileSelector(self.root)):
                self.fs.delete_dir(self.root)
        except (OSError, pa.ArrowException):
            pass  # nothing to undo, or not ours to remove

    def write_temp(self, table: str, pack_id: str, rows: pa.Table) -> tuple[str, int, str]:
        """First half of an atomic write: the rows in a hidden temp file. Returns its path, bytes and SHA-256.

        The file is made in memory first, so its checksum costs no second read; its pages carry CRCs,
        so a reader that decodes a damaged page fails instead of reading wrong numbers."""
        final = self.file_path(table, pack_id, "x")
        folder = posixpath.dirname(final)
        sink = pa.BufferOutputStream()
        options = {"use_dictionary": dictionary_columns(rows.schema), **ENCODINGS.get(table, {})}
        with pq.ParquetWriter(sink, rows.schema, write_page_checksum=True, **options) as out:
            for group in row_groups(rows):
                out.write_table(group, row_group_size=max(group.num_rows, 1))
        data = sink.getvalue()
        self.fs.create_dir(folder, recursive=True)
        tmp = posixpath.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        try:
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
        except BaseException:
            _discard(self.fs, tmp)  # a full disk leaves no half file behind
            raise
        return tmp, data.size, hashlib.sha256(memoryview(data)).hexdigest()

    def write(self, table: str, pack_id: str, name: str, rows: pa.Table) -> Written:
        """Write ``rows`` as ``name`` atomically, replacing any earlier file of that name."""
        tmp, size, digest = self.write_temp(table, pack_id, rows)
        self.fs.move(tmp, self.file_path(table, pack_id, name))
        return Written(table, name, rows.num_rows, size, digest)

    def dataset(self, table: str) -> ds.Dataset:
        """A pyarrow dataset of one table (hive partitions, push-down filters)."""
        return ds.dataset(self.table_dir(table), filesystem=self.fs, format="parquet", partitioning=PARTITIONING)

    def read(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        """One whole table as a pandas frame."""
        return self.dataset(table).to_table(columns=columns).to_pandas()
