"""Sweeps on a real multi-node Ray on this machine: trials spread over nodes and survive a node's death."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import assert_complete
from ray.cluster_utils import Cluster
from test_sweep import stored_packs, sweep

from spec_ray.storage import schema as S

pytestmark = pytest.mark.slow  # Ray, processes or servers: not in the fast tier

ROOT = Path(__file__).resolve().parents[1]
# Two packs of 8 runs, long enough (several seconds each) to kill a node mid-trial.
ARGS = ["--smoke", "--m", "20", "--multi", "5", "10", "--seeds", "4", "--n-train", "2000", "--epochs", "10",
        "--iters-per-epoch", "1000", "--block-epochs", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    """A head that runs no trials (0 CPUs) and two 1-CPU worker nodes."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    c.shutdown()


def trial_results(root: Path) -> dict[str, list[dict]]:
    out = {}
    for f in (root / "tune").glob("*/result.json"):
        out[f.parent.name] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def test_sweep_survives_a_worker_node_dying_mid_trial(cluster, tmp_path: Path) -> None:
    """Trials spread over the worker nodes and land in the shared storage; one node dies mid-trial."""
    c, workers = cluster
    driver = sweep("polarity", *ARGS, "--storage", str(tmp_path), "--address", c.address, background=True)
    root = tmp_path / "polarity-smoke"
    deadline = time.time() + 120
    while time.time() < deadline:  # both packs have written their first block: mid-trial
        if len({p.parent.name for p in root.glob(f"{S.SCALARS}/pack=*/*.parquet")}) >= 2:
            break
        time.sleep(0.2)
    else:
        driver.kill()
        pytest.fail("trials did not start")
    c.remove_node(workers[1], allow_graceful=False)  # kills the node's raylet and its trial
    c.add_node(num_cpus=1)  # a replacement, as an autoscaler would bring
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, out[-4000:]
    assert_complete(str(root), stored_packs(root))  # every row landed once in the shared storage
    first_nodes = {rows[0]["node_id"] for rows in trial_results(root).values() if rows}
    assert len(first_nodes) == 2  # before the death each pack trained on its own worker node
    # The retried trial went on from its last checkpoint, not from step 0: every row it
    # reported after the restart names the step it started from.
    resumed = {name: {r.get("start_step", 0) for r in rows} - {0} for name, rows in trial_results(root).items()}
    resumed = {name: steps for name, steps in resumed.items() if steps}
    assert resumed, "no trial went on from a checkpoint after the node died"
    steps_per_block = 1000  # --iters-per-epoch 1000, --block-epochs 1: checkpoints fall on block ends
    assert all(s % steps_per_block == 0 and s > 0 for steps in resumed.values() for s in steps), resumed


def test_storage_a_worker_node_cannot_write_exits_2_naming_the_node(s3_server, monkeypatch) -> None:
    """The driver holds S3 credentials, the worker nodes do not (Ray gives an instance profile
    to the head only): refused before any trial, with the node and the fix."""
    for key, value in s3_server["bad"].items():
        monkeypatch.setenv(key, value)  # the nodes below start with these
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:
        args = ["--smoke", "--multi", "1", "--p", "0", "--storage", "s3://bucket/nodes", "--address", c.address]
        proc = sweep("polarity", *args, env=s3_server["good"], timeout=120)
    finally:
        c.shutdown()
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "storage='s3://bucket/nodes' is not usable from node " in proc.stderr
    assert "2 of 2 node(s) failed" in proc.stderr and "IAM instance profile" in proc.stderr
    assert "Traceback" not in proc.stderr and "ACCESS_DENIED" in proc.stderr, proc.stderr


def test_a_node_that_does_not_share_a_local_path_is_told_so(tmp_path: Path) -> None:
    from spec_ray.orchestration.cluster import code_identity, probe_node

    token = tmp_path / "exp" / ".tmp-shared-x"
    here = code_identity()
    assert "this path is not shared with the driver" in probe_node(str(tmp_path), "exp", str(token), b"x", here)
    token.parent.mkdir()
    token.write_bytes(b"other")
    assert "reads a different file" in probe_node(str(tmp_path), "exp", str(token), b"x", here)
    token.write_bytes(b"x")
    assert probe_node(str(tmp_path), "exp", str(token), b"x", here) is None
    assert probe_node(str(tmp_path), "exp", str(token), b"x", "0.0.9 (code 000)") == (
        f"it runs spec-ray {here} where the driver runs 0.0.9 (code 000)"
    )


def test_a_cluster_running_another_spec_ray_is_refused_naming_the_node(tmp_path: Path, monkeypatch) -> None:
    """Nodes started from another tree (a colleague's checkout, another virtual environment): the sweep
    exits 2 before any trial, naming the node and both versions, and leaves no folder behind."""
    import re
    import shutil

    import spec_ray

    other = tmp_path / "other"
    shutil.copytree(ROOT / "spec_ray", other / "spec_ray", ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "spec_ray" / "__init__.py"
    version = spec_ray.__version__
    init.write_text(init.read_text().replace(f'__version__ = "{version}"', f'__version__ = "{version}+other"'))
    monkeypatch.setenv("PYTHONPATH", str(other))  # the nodes below start with it; the driver does not
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.wait_for_nodes()
    try:
        storage = tmp_path / "results"
        args = ["--smoke", "--multi", "1", "--p", "0", "--storage", str(storage), "--address", c.address]
        # Run from outside the tree: Ray puts the driver's folder on its workers' path, which on one machine
        # would hand them the driver's code (a node elsewhere has only its own).
        proc = sweep("polarity", *args, env={"PYTHONPATH": ""}, timeout=120, cwd=tmp_path)
    finally:
        c.shutdown()
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(
        r"the Ray cluster's node \S+ \(\w+; 1 of 1 node\(s\) failed\): it runs spec-ray "
        + re.escape(f"{version}+other")
        + r" \(code \w+\) where the driver runs "
        + re.escape(version)
        + r" \(code \w+\)",
        proc.stderr,
    ), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "sweep polarity-smoke" not in proc.stderr  # refused before the header
    assert not storage.exists() or not any(storage.rglob("*"))


def test_logical_gpus_place_fractional_trials_that_then_fail_loudly_without_cuda(tmp_path: Path) -> None:
    """A worker node declaring one logical GPU: half-GPU trials are placed on it, and with no
    CUDA device they fail with the reason instead of training on the CPU; two GPUs a trial
    fit on no node of this autoscaler-less cluster and exit 2 before any trial."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.add_node(num_cpus=2, num_gpus=1)
    c.wait_for_nodes()
    try:
        args = ["--smoke", "--multi", "1", "--p", "0", "--storage", str(tmp_path), "--address", c.address]
        too_many = sweep("polarity", *args, "--gpus-per-trial", "2", "--name", "two", timeout=120)
        assert too_many.returncode == 2 and "(largest: 1, 2 node(s))" in too_many.stderr, too_many.stderr[-2000:]
        half = sweep("polarity", *args, "--gpus-per-trial", "0.5", "--max-failures", "0", "--name", "half", timeout=300)
        assert half.returncode == 1 and "1 pack(s) failed" in half.stdout, half.stdout[-3000:]
        errors = [f.read_text() for f in (tmp_path / "half" / "tune").glob("*/error.txt")]
        assert errors and all("given 0.5 GPU but sees no CUDA device" in e for e in errors)
        assert not (tmp_path / "half" / S.SCALARS).exists() or not list(
            (tmp_path / "half" / S.SCALARS).rglob("*.parquet")
        )
    finally:
        c.shutdown()
