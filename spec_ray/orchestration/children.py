"""Work a driver hands to processes of its own (a launch's calibration): they die with it.

Measured before: three calibration workers, 860 MB between them, alive two hours after their
driver was SIGKILLed; and Ctrl-C of a dry run waited for them to finish their shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def die_with_parent(parent: int) -> None:
    """In a worker: die with the driver, however it dies (a SIGKILL included; Linux's PR_SET_PDEATHSIG)."""
    import contextlib
    import ctypes
    import os
    import signal

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the workers end with their pool
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the driver died before the line above ran
        os._exit(1)
    # Ctrl-C reaches the whole process group: the driver alone says it stopped and kills its workers, which
    # would each have printed a KeyboardInterrupt traceback (measured: two, 51 lines).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def in_children(fn: Callable, *arguments: Sequence, workers: int) -> list:
    """``map(fn, *arguments)`` in up to ``workers`` spawned processes (no fork of a process whose torch
    threads run) that die with this one; an interrupt (Ctrl-C, a signal) kills them at once."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=spawn, initializer=die_with_parent,
                               initargs=(os.getpid(),))  # fmt: skip
    futures = [pool.submit(fn, *args) for args in zip(*arguments)]  # not map: on an interrupt it cancels
    try:  # them, and the pool, breaking, then fails setting an error on a cancelled one (a traceback)
        out = [f.result() for f in futures]
    except BaseException:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False)  # its pending futures fail as the pool breaks
        raise
    pool.shutdown()
    return out
