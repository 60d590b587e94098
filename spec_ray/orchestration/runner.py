"""Train one pack end to end and write its traces: the unit of work of every sweep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from spec_ray.engine.measure import metrics
from spec_ray.engine.measure.metrics import Checkpoint
from spec_ray.engine.training.pack import Pack, checkpoint_steps
from spec_ray.engine.training.trainer import PackState, init_state, prepare, train_until
from spec_ray.orchestration import launch_teachers
from spec_ray.orchestration.progress import Progress
from spec_ray.storage import schema as S
from spec_ray.storage.records import runs_table
from spec_ray.storage.traces import BLOCK_EPOCHS, TraceStore, blocks
from spec_ray.storage.writer import PackWriter


class PackResult(NamedTuple):
    """What a finished pack leaves behind besides its traces."""

    state: PackState
    """Final students and divergence steps."""
    last: Checkpoint
    """Metrics at the final step."""
    wall_time: float
    """Seconds spent on the pack (construction, training, metrics, writes)."""


def run_pack(
    pack: Pack,
    store: TraceStore,
    *,
    block_epochs: int = BLOCK_EPOCHS,
    progress: bool = True,
    on_checkpoint: Callable[[PackState, Checkpoint, bool], None] | None = None,
    start: PackState | None = None,
) -> PackResult:
    """Train ``pack`` to the end, writing every checkpoint's rows block by block.

    ``start`` resumes from a saved state taken at a block end. ``on_checkpoint(state,
    metrics, flushed)`` runs after every metric checkpoint; ``flushed`` is True once the
    block's files are written and listed in the pack's ledger, the moment a sweep may save a
    resumable checkpoint.
    """
    began = time.perf_counter()
    data = prepare(pack, launch_teachers.load(pack, store.storage))  # stored teachers, read from the storage root
    state = start if start is not None else init_state(pack)
    cache = metrics.prepare(pack, data)
    spec = pack.spec
    total = spec.total_steps
    writer = PackWriter(store, pack, resumed=start is not None)
    writer.runs(_runs(pack, store, S.STATUS_RUNNING, state, 0.0))
    bar = Progress(total, pack.size, start_step=state.step) if progress else None
    ckpt = None
    todo = [s for s in checkpoint_steps(spec) if s > state.step or (s == 0 and state.step == 0)]
    for lo, hi in blocks(spec, block_epochs):
        steps = [s for s in todo if lo <= s <= hi]
        for step in steps:
            state = train_until(pack, data, state, step, bar.update if bar else None)
            ckpt = metrics.measure(pack, data, state, cache)
            writer.add(ckpt)
            last = step == steps[-1]  # the block's last checkpoint: write its file
            if last:
                writer.flush(lo, hi)
            if on_checkpoint is not None:
                on_checkpoint(state, ckpt, last)
    if bar:
        bar.close(state.step)
    writer.summarize()
    wall = time.perf_counter() - began
    writer.runs(_runs(pack, store, S.STATUS_DONE, state, wall))
    return PackResult(state=state, last=ckpt, wall_time=wall)


def finished(store: TraceStore, pack: Pack) -> bool:
    """Whether every run of ``pack`` is stored as done, at its last step (``run_pack``'s last write)."""
    path = store.file_path(S.RUNS, pack.pack_id, "runs.parquet")
    try:
        runs = pq.read_table(path, filesystem=store.fs, columns=[S.STATUS, S.STEPS_DONE]).to_pandas()
    except (FileNotFoundError, OSError):
        return False
    done = (runs[S.STATUS] == S.STATUS_DONE) & (runs[S.STEPS_DONE] == pack.spec.total_steps)
    return len(runs) == pack.size and bool(done.all())


def device_name(device: torch.device) -> str:
    """'cpu', or 'cuda:' and the GPU's name: what a run row records as ``trained_on``."""
    return f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else device.type


def _runs(pack: Pack, store: TraceStore, status: str, state: PackState, wall: float) -> pa.Table:
    diverged = state.diverged_step.to("cpu").numpy()
    return runs_table(pack, store.experiment, status, state.step, diverged, wall, device_name(pack.device))
