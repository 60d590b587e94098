"""One writer per experiment: a lease in the experiment folder, taken before a launch plans and
held until it ends.

``<experiment>/.lease`` names its holder (an id, host, pid, command, start and heartbeat). How it
is held depends on what the storage offers:

* a local or NFS path: an exclusive ``flock`` on the file, which the kernel (or the NFS lock
  manager) drops with the process, however it dies, so a dead holder's lease is free at once;
* ``s3://`` (with boto3): a conditional create (``If-None-Match: *``), renewed every
  ``HEARTBEAT_S`` by a conditional replace (``If-Match`` on its ETag); a lease whose heartbeat is
  ``EXPIRES_S`` old is stale, and a launch takes it over by the same conditional replace, so two
  launches cannot both take it;
* any other filesystem: the same heartbeat, with a create that is checked by reading it back
  (best effort: no such store offers an atomic create through pyarrow).

A second launch gets ``LeaseHeld`` (exit 2) naming the holder and how to take over.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from spec_ray.storage.traces import TraceStore

LEASE_FILE = ".lease"
HEARTBEAT_S = 20.0
"""How often a holder renews its lease."""
EXPIRES_S = 120.0
"""A lease not renewed for this long is stale: its holder is taken to be dead (object stores)."""


class LeaseHeld(ValueError):
    """Another launch holds the experiment: the message names it and how to take over."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as its file records it."""

    id: str
    host: str
    pid: int
    command: str
    started: float
    """Unix time the lease was taken."""
    heartbeat: float
    """Unix time it was last renewed."""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_bytes(blob: bytes) -> Holder | None:
        try:
            return Holder(**json.loads(blob))
        except (ValueError, TypeError):
            return None  # being written, or not ours

    def describe(self, now: float) -> str:
        began = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return (f"pid {self.pid} on host {self.host}, since {began}, last heartbeat {now - self.heartbeat:.0f} s "
                f"ago ({self.command[:160]})")  # fmt: skip


def me(command: str | None = None) -> Holder:
    now = time.time()
    cmd = command if command is not None else " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
    return Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), cmd, now, now)


class Lease:
    """A held lease; ``release`` (or leaving its ``with`` block) gives it back."""

    def __init__(self, store: TraceStore, holder: Holder, backend: _Backend) -> None:
        self.store, self.holder, self._backend = store, holder, backend
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="spec-ray-lease", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, store: TraceStore, command: str | None = None) -> Lease:
        """Take the experiment's lease, or raise ``LeaseHeld`` naming its holder."""
        holder = me(command)
        backend = _backend(store)
        backend.take(holder)
        return cls(store, holder, backend)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.holder = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
            try:
                self._backend.renew(self.holder)
            except Exception as err:  # noqa: BLE001 - a lost lease is said, never fatal to the sweep's own writes
                print(f"warning: the lease on {self.store.uri} could not be renewed: {err}", file=sys.stderr)

    def release(self) -> None:
        """Give the lease back (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=30)  # a renewal in flight ends before the lease goes
        self._backend.give_back(self.holder)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def held_by(store: TraceStore) -> Holder | None:
    """The live holder of the experiment's lease, if any (read only: a note for ``verify``)."""
    try:
        with store.fs.open_input_stream(posixpath.join(store.root, LEASE_FILE)) as f:
            holder = Holder.from_bytes(f.read())
    except (FileNotFoundError, OSError, pa.ArrowException):
        return None
    if holder is None:
        return None
    if holder.host == socket.gethostname():
        try:
            os.kill(holder.pid, 0)
            return holder
        except ProcessLookupError:
            return None
        except PermissionError:
            return holder
    return holder if time.time() - holder.heartbeat < EXPIRES_S else None


class _Backend:
    def take(self, holder: Holder) -> None: ...

    def renew(self, holder: Holder) -> None: ...

    def give_back(self, holder: Holder) -> None: ...


def _backend(store: TraceStore) -> _Backend:
    if isinstance(store.fs, pafs.LocalFileSystem):
        return _Flock(posixpath.join(store.root, LEASE_FILE))
    if store.storage.startswith("s3://"):
        try:
            return _S3(store)
        except ImportError:
            pass  # no boto3: the best effort below
    return _ReadBack(store)


def _refusal(where: str, holder: Holder | None, how: str) -> LeaseHeld:
    who = holder.describe(time.time()) if holder else "another launch (its record is being written)"
    return LeaseHeld(f"experiment {where} is being written by {who}: allowed one launch of an experiment at a "
                     f"time; {how}")  # fmt: skip


class _Flock(_Backend):
    """A local or NFS file held with ``flock``: the kernel drops it with its process."""

    def __init__(self, path: str) -> None:
        self.path, self.fd = path, -1

    def take(self, holder: Holder) -> None:
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                record = Holder.from_bytes(os.pread(fd, 65536, 0))
                os.close(fd)
                who = f"pid {record.pid} on {record.host}" if record else "it"
                raise _refusal(os.path.dirname(self.path), record, f"wait for it to end, or stop {who}, then "
                               "rerun: a dead launch's lease is free at once") from None  # fmt: skip
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last holder removed after we opened it
                break
            os.close(fd)
        self.fd = fd
        self.renew(holder)

    def renew(self, holder: Holder) -> None:
        blob = holder.to_bytes()
        os.pwrite(self.fd, blob, 0)
        os.ftruncate(self.fd, len(blob))

    def give_back(self, holder: Holder) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # before the lock goes: a waiter then finds no file, or a new one
        os.close(self.fd)
        self.fd = -1


class _S3(_Backend):
    """An S3 object created and renewed with conditional writes (compare-and-swap on its ETag)."""

    def __init__(self, store: TraceStore) -> None:
        from urllib.parse import parse_qs, urlparse

        import boto3  # ImportError: the caller falls back

        url = urlparse(store.storage)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        endpoint = query.get("endpoint_override")
        if endpoint and "://" not in endpoint:
            endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name=query.get("region"))
        self.bucket = url.netloc
        self.key = posixpath.join(url.path.lstrip("/"), store.experiment, LEASE_FILE)
        self.uri = f"s3://{self.bucket}/{self.key}"
        self.etag: str | None = None

    def _failed(self, err: Exception) -> bool:
        code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
        return code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")

    def take(self, holder: Holder) -> None:
        try:
            self.etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=holder.to_bytes(),
                                               IfNoneMatch="*")["ETag"]  # fmt: skip
            return
        except Exception as err:  # noqa: BLE001 - botocore's ClientError, by its code
            if not self._failed(err):
                raise
        got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        record, etag = Holder.from_bytes(got["Body"].read()), got["ETag"]
        if record is not None and time.time() - record.heartbeat < EXPIRES_S:
            ends = time.strftime("%H:%M:%S", time.localtime(record.heartbeat + EXPIRES_S))
            raise _refusal(self.uri.rpartition("/")[0], record, f"if that launch is dead, its lease expires at {ends} "
                           f"({EXPIRES_S:.0f} s after its last heartbeat): rerun then, or delete {self.uri} to take "
                           "over now")  # fmt: skip
        try:  # stale: replaced only as it was read, so of two launches taking it over one wins
            self.etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=holder.to_bytes(),
                                               IfMatch=etag)["ETag"]  # fmt: skip
        except Exception as err:  # noqa: BLE001
            if self._failed(err):
                raise _refusal(self.uri.rpartition("/")[0], None, "another launch took it over just now") from None
            raise

    def renew(self, holder: Holder) -> None:
        self.etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=holder.to_bytes(),
                                           IfMatch=self.etag)["ETag"]  # fmt: skip

    def give_back(self, holder: Holder) -> None:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
            if got["ETag"] == self.etag:
                self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except Exception:  # noqa: BLE001 - gone already, or taken over: nothing of ours to remove
            pass


class _ReadBack(_Backend):
    """A filesystem without conditional writes: create if absent or stale, then read back (best effort)."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self.path = posixpath.join(store.root, LEASE_FILE)

    def _read(self) -> Holder | None:
        try:
            with self.store.fs.open_input_stream(self.path) as f:
                return Holder.from_bytes(f.read())
        except (FileNotFoundError, OSError, pa.ArrowException):
            return None

    def take(self, holder: Holder) -> None:
        record = self._read()
        if record is not None and time.time() - record.heartbeat < EXPIRES_S:
            raise _refusal(self.store.uri, record, f"if that launch is dead, its lease expires {EXPIRES_S:.0f} s "
                           f"after its last heartbeat: rerun then, or delete {self.path} to take over now")  # fmt: skip
        self.renew(holder)
        time.sleep(1.0)  # a launch that wrote at the same moment has overwritten ours by now
        if (self._read() or holder).id != holder.id:
            raise _refusal(self.store.uri, self._read(), "another launch took it at the same moment")

    def renew(self, holder: Holder) -> None:
        self.store.fs.create_dir(self.store.root, recursive=True)
        with self.store.fs.open_output_stream(self.path) as out:
            out.write(holder.to_bytes())

    def give_back(self, holder: Holder) -> None:
        record = self._read()
        if record is not None and record.id == holder.id:
            with contextlib.suppress(OSError, pa.ArrowException):
                self.store.fs.delete_file(self.path)
