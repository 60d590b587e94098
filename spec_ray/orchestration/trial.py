"""One pack as one Ray Tune trial (function API), resumable from Tune checkpoints.

The trial trains its pack with ``runner.run_pack``. It reports per-epoch summaries, which
Tune's console shows live. At the end of every Parquet block it saves the pack state as a
Tune checkpoint. A retried or restored trial starts from that state and rewrites only later
blocks, whose file names are fixed, so no row is lost or duplicated. The RNG needs no
saving: every stream is a pure function of (seed, epoch).
"""

from __future__ import annotations

import errno
import os
import tempfile
import time

import ray
import torch
from ray import tune

from spec_ray.engine.measure.metrics import Checkpoint, rho_mean, success
from spec_ray.engine.specs.spec_io import spec_from_dict
from spec_ray.engine.training.pack import Pack
from spec_ray.engine.training.trainer import PackState
from spec_ray.orchestration.runner import device_name, finished, run_pack
from spec_ray.storage.traces import TraceStore, disk_full_message, is_disk_full

STATE_FILE = "pack_state.pt"
STORED_FILE = "stored"
"""The checkpoint of a trial's last block: every row written, no state kept (a restore that finds it
trains afresh unless the pack is stored done)."""


def save_state(pack: Pack, state: PackState, folder: str) -> None:
    """Write a pack state (CPU tensors) into ``folder``; at the pack's last step, a marker instead: no resume
    needs that state, yet it would stay as the largest file of a finished sweep (29 MB a large-FC pack of
    3 runs, 2x the correlations' bytes of a 20-epoch sweep, measured)."""
    if state.step >= pack.spec.total_steps:
        with open(os.path.join(folder, STORED_FILE), "w") as out:
            out.write(pack.pack_id)
        return
    payload = {name: _moved(value, "cpu", list) for name, value in state._asdict().items()}  # every field
    torch.save(payload, os.path.join(folder, STATE_FILE))


def _moved(value: object, device: object, seq: type) -> object:
    """A state field onto ``device``: a tensor, a sequence of them (as ``seq``), or a plain value."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return seq(v.to(device) for v in value)
    return value


def load_state(pack: Pack, folder: str) -> PackState | None:
    """Read a pack state written by ``save_state`` onto the pack's device; None for the marker of a last
    block (the pack, stored whole then, is short since: it trains afresh)."""
    if os.path.exists(os.path.join(folder, STORED_FILE)):
        return None
    payload = torch.load(os.path.join(folder, STATE_FILE), map_location="cpu", weights_only=True)
    # a state saved before BN or optimizers were kept has no buffers or opt: PackState's defaults
    state = PackState(**{name: _moved(value, pack.device, tuple) for name, value in payload.items()})
    return state._replace(step=int(state.step))


def summary(pack: Pack, state: PackState, ckpt: Checkpoint, began: float, start_step: int) -> dict:
    """Per-epoch console metrics: progress, success rate, rho_mean, eval loss, ETA."""
    spec = pack.spec
    total = spec.total_steps
    threshold = spec.checkpoint.success_threshold
    best = ckpt.eval_corr[0].amax(dim=2)  # (R, m) lowest layer
    rate = (state.step - start_step) / max(1e-9, time.perf_counter() - began)
    return {  # the console shows the first few columns: progress and ETA first
        "progress": round(state.step / total, 4),
        "eta_s": round((total - state.step) / rate, 1) if rate > 0 else float("nan"),
        "device": device_name(pack.device),
        "success_rate": float(success(best, threshold).float().mean()),
        "rho_mean": float(rho_mean(best).mean()),
        "eval_loss": float(ckpt.eval_loss.nanmean()),
        "epoch": state.step / spec.steps_per_epoch,
        "runs": pack.size,
        "runs_diverged": int((state.diverged_step >= 0).sum()),
        "runs_done": pack.size if state.step >= total else 0,
        "start_step": start_step,  # > 0: this trial went on from a checkpoint
        "started_at": round(time.time() - (time.perf_counter() - began), 3),  # unix times: the sweep's timeline
        "reported_at": round(time.time(), 3),  # (Tune's own timestamp is whole seconds)
        "core": current_core(),
        "node_id": ray.get_runtime_context().get_node_id(),
    }


def current_core() -> int:
    """The CPU this process last ran on (Linux), else -1: which core a pack occupied."""
    try:
        with open("/proc/self/stat") as f:
            return int(f.read().rpartition(")")[2].split()[36])
    except (OSError, ValueError, IndexError):
        return -1


def trial_device(gpus: float, cuda_available: bool) -> str:
    """The device a trial trains on: its share of GPUs decides, never a silent fallback.

    Ray 2.60 no longer hides GPUs from tasks that asked for none, so 'auto' would put a
    0-GPU trial on a GPU it was not given; and a trial given a GPU it cannot see must not
    quietly train on the CPU.
    """
    if gpus <= 0:
        return "cpu"
    if not cuda_available:
        raise RuntimeError(
            f"this trial was given {gpus:g} GPU but sees no CUDA device (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch {torch.__version__}): refusing to train on the CPU; "
            "install a CUDA build of torch on this node, or run with --gpus-per-trial 0"
        )
    return "cuda"


def train_pack(config: dict, storage: str, experiment: str, block_epochs: int) -> None:
    """Tune trainable: train the pack ``config["pack"]`` describes (``tune_driver.trial_config``), into its own
    experiment where several launches train together."""
    storage = config["pack"].get("storage", storage)
    experiment = config["pack"].get("experiment", experiment)
    block_epochs = config["pack"].get("block_epochs", block_epochs)
    pack = Pack(tuple(spec_from_dict(r) for r in config["pack"]["runs"]))
    if pack.pack_id != config["pack"]["id"]:
        raise RuntimeError(f"trial config names pack {config['pack']['id']} but holds the runs of {pack.pack_id}")
    threads = config.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    gpus = float(config.get("gpu_fraction", 0.0))
    device = trial_device(gpus, torch.cuda.is_available())
    pack = Pack(pack.runs, placement=device)  # same run and pack ids
    if device == "cuda" and 0 < gpus < 1:
        # Fractional GPUs are logical in Ray: cap this process's real share of the memory.
        torch.cuda.set_per_process_memory_fraction(gpus)
    store = TraceStore(storage, experiment)
    try:  # a node that joined after launch was never probed: fail here, loudly, before training
        store.check_writable()
    except ValueError as err:
        node = ray.get_runtime_context().get_node_id()
        raise RuntimeError(f"node {node[:12]} cannot write the sweep's storage: {err}") from None
    restored = tune.get_checkpoint()
    fresh = config["pack"].get("fresh") and restored is None  # stored as done, but short: train it again
    if finished(store, pack) and not fresh:
        # The driver died after this pack's last write, before Tune noted the trial as done (or
        # before Tune saved any state): its rows are all stored, so it is not trained again.
        tune.report({"progress": 1.0, "runs": pack.size, "runs_done": pack.size, "skipped": True,
                     "start_step": pack.spec.total_steps})  # fmt: skip
        return
    start = None
    if restored is not None:
        with restored.as_directory() as folder:
            start = load_state(pack, folder)
    began, start_step = time.perf_counter(), 0 if start is None else start.step
    every = pack.spec.steps_per_epoch

    def report(state: PackState, ckpt: Checkpoint, flushed: bool) -> None:
        if not flushed and state.step % every:
            return  # report per epoch; the first epoch's log-spaced points stay in Parquet
        metrics = summary(pack, state, ckpt, began, start_step)
        if flushed:
            with tempfile.TemporaryDirectory() as folder:
                save_state(pack, state, folder)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)

    try:
        run_pack(pack, store, block_epochs=block_epochs, progress=False, on_checkpoint=report, start=start)
    except Exception as err:
        if is_disk_full(err):  # one line, not a traceback through pyarrow; the driver stops every trial
            raise OSError(errno.ENOSPC, disk_full_message(storage)) from None
        raise
