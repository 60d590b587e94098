"""How a launch ends when it is stopped or its storage fails: its trials stop at their last
checkpoint, and one line says what happened and the command that finishes the sweep.

* SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop, ``kill``) both take Tune's own graceful stop
  (the handler it keeps for SIGUSR1): trials end, their last block's checkpoint is kept, Tune
  saves its state. A second signal stops at once.
* A full disk: the first trial that cannot write stops every trial the same way (the disk is
  full for all of them; retrying would only fail again).
* Tune's saved state that cannot be read back (a file cut short by a full disk or a kill) is not
  restored: the launch starts a new Tune run from sweep.json (``tune_state_readable``).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import signal
import threading

import pyarrow as pa
import pyarrow.fs as pafs
from ray.tune import Callback

from spec_ray.storage.traces import TraceStore, free_bytes, is_disk_full

LOW_SPACE = 64 << 20
"""Bytes free under which a trial's failure is taken to be the full disk it usually is."""
TUNE_LOGGERS = ("ray.tune", "ray.train", "ray.air")


ACTIVE: list[Stop] = []
"""The launch's ``Stop`` while its trials run (one a driver process)."""


class Stop:
    """SIGINT and SIGTERM, and a full disk (``FullDisk``), turned into Tune's graceful stop while the
    trials run; ``reason`` says which came."""

    def __init__(self) -> None:
        self.reason: str | None = None
        """None, a signal's name (SIGINT, SIGTERM), or 'disk full'."""
        self._old: dict[int, object] = {}

    def __enter__(self) -> Stop:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours takes SIGINT: the same stop as SIGTERM
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._signal)
        ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        ACTIVE.remove(self)
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _signal(self, sig: int, frame: object) -> None:
        if self.reason is not None:
            raise KeyboardInterrupt  # a second signal: stop now
        self.stop(signal.Signals(sig).name)

    def stop(self, reason: str) -> None:
        """End every trial at its last checkpoint: Tune's handler for SIGUSR1, which it keeps while it runs."""
        if self.reason is None:
            self.reason = reason
        handler = signal.getsignal(signal.SIGUSR1)
        if callable(handler):
            handler(signal.SIGUSR1, None)
        else:
            raise KeyboardInterrupt

    def exit_code(self) -> int:
        return {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}.get(self.reason or "", 1)


class FullDisk(Callback):
    """The first trial that fails on a full disk stops every trial (the disk is full for all of them;
    a retry would only fail again). Kept with Tune's run config, so a restored launch has it too."""

    def __init__(self, storage: str) -> None:
        self.storage = storage

    def _failed(self, trial) -> None:
        if not ACTIVE or ACTIVE[-1].reason is not None:
            return
        free = free_bytes(self.storage)
        try:
            text = trial.get_error() or ""
        except Exception:  # noqa: BLE001 - its error file may not have been written (the disk is full)
            text = ""
        if (
            "No space left on device" in text
            or "Disk quota exceeded" in text
            or (free is not None and free < LOW_SPACE)
        ):
            ACTIVE[-1].stop("disk full")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._failed(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._failed(trial)


def quiet_tune() -> None:
    """Tune's own warnings and trial tracebacks off the console (``--verbose`` keeps them): the sweep
    says what failed in one line a pack, and each trial's error file keeps the whole trace."""
    for name in TUNE_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def ended_by(stop: Stop, err: BaseException | None, store: TraceStore, command: str) -> tuple[str, int] | None:
    """The line and exit code for a launch stopped by a signal or a full disk; None for any other end."""
    from spec_ray.storage.traces import disk_full_message

    full = stop.reason == "disk full" or (err is not None and is_disk_full(err))
    if err is not None and not full:
        free = free_bytes(store.storage)
        full = free is not None and free < LOW_SPACE
    if full:
        return f"error: {disk_full_message(store.storage)}\nresume:  {command}", 1
    if stop.reason is not None or isinstance(err, KeyboardInterrupt):
        why = stop.reason or "SIGINT"
        return (f"stopped by {why}: every pack keeps its last checkpoint; finish the sweep with:\nresume:  {command}",
                stop.exit_code() if stop.reason else 128 + signal.SIGINT)  # fmt: skip
    return None


def tune_state_readable(store: TraceStore, tune_dir: str) -> bool:
    """Whether Tune's saved state of ``tune_dir`` parses: a state file cut short (a full disk, a kill while
    saving) makes ``Tuner.restore`` fail on every later resume."""
    folder = posixpath.join(store.root, tune_dir)
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(folder))
    except (FileNotFoundError, OSError, pa.ArrowException):
        return False
    states = [i.path for i in infos if posixpath.basename(i.path).startswith("experiment_state")]
    if not states:
        return False
    for path in states:
        try:
            with store.fs.open_input_stream(path) as f:
                json.loads(f.read())
        except (OSError, ValueError, pa.ArrowException):
            return False
    return True
