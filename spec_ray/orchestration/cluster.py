"""What the Ray cluster can do for a sweep, checked before any trial starts.

Each check returns the reason a sweep cannot work there (an error message naming the flag
or the node and the fix) or None. They run after ``ray.init`` and before ``sweep.json``
is written, so a refused sweep leaves storage as it was.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import socket
import uuid
from pathlib import Path
from urllib.parse import urlparse

from spec_ray.storage.traces import TMP_PREFIX, TraceStore

PROBE_TIMEOUT_S = 60.0  # a node that cannot answer in this time counts as failing the probe
CODE_MISMATCH = "it runs spec-ray"


def check_address(address: str | None) -> str | None:
    """Fail fast (ValueError) when an explicit Ray address does not answer."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return address
    url = urlparse(address if "://" in address else f"ray://{address}")
    err = _unreachable(url.hostname, url.port or (10001 if address.startswith("ray://") else 6379))
    if err:
        raise ValueError(f"address={address!r} is unreachable ({err}): allowed a running Ray head host:port")
    return address


def _unreachable(host: str | None, port: int | str) -> str | None:
    """Why nothing answers at host:port within 3 s, or None."""
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return None
    except (OSError, ValueError) as err:
        return str(err)


def _autoscaler_max() -> dict:
    """The most resources the cluster's autoscaler config can bring ({} without an autoscaler)."""
    import ray

    try:
        return ray._private.state.state.get_max_resources_from_cluster_config() or {}
    except Exception:  # noqa: BLE001 - an older Ray, or no cluster config: judge by the nodes alone
        return {}


def init_address(address: str | None) -> tuple[str | None, bool]:
    """The address for ``ray.init`` (the given one, else a running cluster, else a new local Ray),
    and whether that is a new local Ray started by this launch.

    ``ray start`` leaves its address in Ray's address file, and a Ray killed without
    ``ray stop`` leaves it stale; ``ray.init()`` would then wait for that dead head for
    minutes. A stale file is ignored here and a new local Ray started.
    """
    if address:
        return address, address == "local"
    try:
        from ray._private.services import find_bootstrap_address

        found = find_bootstrap_address(None)
    except Exception:  # noqa: BLE001 - a Ray without the file: let ray.init decide
        return None, False
    if found and _unreachable(*found.rpartition(":")[::2]):
        print(f"note: the Ray address file names {found}, which does not answer: starting a new local Ray")
        return "local", True
    return None, not found


def local_gpu_shortfall(gpus: float) -> str | None:
    """``gpu_shortfall`` for the local Ray a launch would start: asked of CUDA here, before any Ray starts."""
    if gpus <= 0:
        return None
    import torch

    have = torch.cuda.device_count()
    if have >= gpus:
        return None
    return (
        f"--gpus-per-trial={gpus:g} is invalid here: this machine has {have} GPU(s) for the local Ray this launch "
        "would start: allowed --gpus-per-trial 0 (CPU), a fraction or a count this machine has, or --address of a "
        "cluster with GPUs"
    )


def gpu_shortfall(gpus: float) -> str | None:
    """Why no trial asking for ``gpus`` could ever be placed, or None: the trials would pend forever.

    A trial's GPUs must sit on one node. They can when an alive node has them, or when the
    cluster's autoscaler config has a node type with GPUs (Ray's own cluster config).
    """
    import ray

    if gpus <= 0:
        return None
    alive = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((n.get("Resources", {}).get("GPU", 0.0) for n in alive), default=0.0)
    if largest >= gpus:
        return None
    if _autoscaler_max().get("GPU", 0) > 0:
        return None  # an autoscaler can add a GPU node
    return (
        f"--gpus-per-trial={gpus:g} is invalid here: no node of this Ray cluster has that many GPUs "
        f"(largest: {largest:g}, {len(alive)} node(s)) and no autoscaler can add one: allowed "
        "--gpus-per-trial 0 (CPU), or a cluster whose nodes or node types have GPUs"
    )


def cluster_slots(cpus: float, gpus: float) -> int:
    """Trials the cluster can run at once: on its alive nodes, or on the most nodes its autoscaler may add."""
    import ray

    key, need = ("GPU", gpus) if gpus > 0 else ("CPU", cpus)
    alive = sum(int(n["Resources"].get(key, 0) // need) for n in ray.nodes() if n.get("Alive"))
    return max(1, alive, int(_autoscaler_max().get(key, 0) // need))


@functools.cache
def code_identity() -> str:
    """This process's spec-ray: its version and a digest of its package's source files, e.g.
    ``0.2.0 (code 3f2a...)``. Two trees of one version with other code differ in the digest."""
    import spec_ray

    root = Path(spec_ray.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{spec_ray.__version__} (code {digest.hexdigest()[:12]})"


def probe_node(storage: str, experiment: str, token_path: str, token: bytes, code: str) -> str | None:
    """On one node: the same spec-ray as the driver's (``code``), then read the driver's token, then
    write, read back and delete a probe. None if all worked.

    Reading the token proves the node sees the same storage as the driver (the same bucket,
    or the same shared filesystem at the same path); the probe proves it may write there.
    """
    try:
        here = code_identity()
        if here != code:
            return f"{CODE_MISMATCH} {here} where the driver runs {code}"
        store = TraceStore(storage, experiment)
        with store.fs.open_input_stream(token_path) as f:
            seen = f.read()
        if seen != token:
            return f"it reads a different file at {token_path}"
        store.check_writable()
        return None
    except FileNotFoundError:
        return f"it cannot see the driver's probe {token_path}: this path is not shared with the driver"
    except Exception as err:  # noqa: BLE001 - any failure is the node's answer
        return f"{type(err).__name__}: {err}".strip()


def storage_shortfall(store: TraceStore) -> str | None:
    """Probe the storage from every alive node with a Ray task pinned there; the first failure, or None."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex.encode()
    token_path = posixpath.join(store.root, f"{TMP_PREFIX}shared-{token.decode()}")
    store.fs.create_dir(store.root, recursive=True)
    with store.fs.open_output_stream(token_path) as f:
        f.write(token)
    try:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(num_cpus=0, max_retries=0)(probe_node)
        pending = {
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                store.storage, store.experiment, token_path, token, code_identity()
            ): n
            for n in alive
        }
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=PROBE_TIMEOUT_S)
        answers = [(pending[r], _answer(r)) for r in ready] + [
            (pending[r], f"no answer within {PROBE_TIMEOUT_S:g} s") for r in late
        ]
    finally:
        store.fs.delete_file(token_path)
    failed = [(n, why) for n, why in answers if why is not None]
    if not failed:
        return None
    node, why = failed[0]
    where = (
        f"node {node.get('NodeManagerAddress')} ({node['NodeID'][:12]}; {len(failed)} of {len(answers)} node(s) failed)"
    )
    if why.startswith(CODE_MISMATCH):
        return (
            f"the Ray cluster's {where}: {why}: allowed a cluster whose every node runs this spec-ray (start its "
            "nodes from this tree and virtual environment), or --address local for a Ray of this launch's own"
        )
    shared = "s3://, gs://" if store.remote else "a filesystem mounted at the same path on every node"
    return (
        f"storage={store.storage!r} is not usable from {where}: {why}. Every node writes "
        f"its trials' Parquet files there: allowed storage every node can read and write ({shared}); on AWS "
        "give every node type an IAM instance profile with S3 access (cluster.yaml)"
    )


def _answer(ref) -> str | None:
    import ray

    try:
        return ray.get(ref)
    except Exception as err:  # noqa: BLE001 - the task could not run there at all
        return f"the probe task failed: {type(err).__name__}: {err}"
