"""deploy/: the SLURM batch script run on this machine through srun/scontrol shims, and the
Kubernetes manifests checked against cluster.yaml's pins and the sweep's own flag parser."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import assert_complete
from test_cluster import trial_results
from test_sweep import stored_packs

pytestmark = pytest.mark.slow  # Ray, processes or servers: not in the fast tier

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "deploy" / "slurm" / "spec-ray.sbatch"
K8S = ROOT / "deploy" / "k8s"

SHIMS = {
    # Two "nodes" that are both this machine: every srun step runs here, and the head's address is 127.0.0.1.
    "scontrol": '[ "$1 $2" = "show hostnames" ] || exit 1\nprintf "node-a\\nnode-b\\n"',
    "srun": 'while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do\n'
    '  case "$1" in -w|--nodelist|-N|-n) shift 2 ;; *) shift ;; esac\ndone\nexec "$@"',
    "hostname": "echo 127.0.0.1",
}


RAY_FIXED_PORTS = {6379, 8076, 8265, 10001, 52365}
"""Ports every local Ray takes by default (GCS, object manager, dashboard, client, dashboard agent): a head
started on one of them fails (seen once: the kernel handed out 52365, which the tests' shared Ray held)."""


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in RAY_FIXED_PORTS:
            return port


def _ray_files() -> tuple:
    """The default Ray folder's address file (its mtime) and the job folders under /tmp."""
    address = Path("/tmp/ray/ray_current_cluster")
    return (address.stat().st_mtime_ns if address.exists() else None, sorted(Path("/tmp").glob("ray-job-*")))


def run_sbatch(tmp_path: Path, storage: Path, *args: str) -> subprocess.CompletedProcess:
    shims = tmp_path / "shims"
    shims.mkdir(exist_ok=True)
    for name, body in SHIMS.items():
        (shims / name).write_text(f"#!/bin/bash\n{body}\n")
        (shims / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SLURM_"))}
    env.update(
        PATH=f"{shims}:{Path(sys.executable).parent}:{env['PATH']}",
        PYTHON=sys.executable,
        SLURM_SUBMIT_DIR=str(ROOT),
        SLURM_JOB_NODELIST="node-[a-b]",
        SLURM_CPUS_PER_TASK="1",
        SPEC_RAY_STORAGE=str(storage),
        RAY_PORT=str(_free_port()),
        PYTHONUNBUFFERED="1",
    )
    return subprocess.run(["bash", str(SBATCH), *args], capture_output=True, text=True, env=env, timeout=400)


def test_sbatch_runs_a_two_node_sweep_and_a_requeue_resumes_it(tmp_path: Path) -> None:
    storage = tmp_path / "shared"
    before = _ray_files()
    # Two packs of about 2 s each: both start at once, one on each node. (At 10 epochs they
    # took under a second, and the first could end before the second was placed.)
    args = [
        "--smoke",
        "--multi",
        "5",
        "10",
        "--p",
        "0",
        "--n-train",
        "2000",
        "--epochs",
        "20",
        "--iters-per-epoch",
        "1000",
    ]
    first = run_sbatch(tmp_path, storage, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Ray head on node-a (127.0.0.1:" in first.stdout and "2 node(s)" in first.stdout
    root = storage / "polarity-smoke"
    packs = stored_packs(root)
    assert_complete(str(root), packs)
    nodes = {rows[-1]["node_id"] for rows in trial_results(root).values()}
    assert len(nodes) == 2  # one pack on each node: the worker joined the head
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}
    again = run_sbatch(tmp_path, storage, *args)  # what a requeue does: the same script, the same arguments
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "(resuming the stored sweep)" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")} == mtimes
    assert "ray start --head" in SBATCH.read_text() and "#SBATCH --requeue" in SBATCH.read_text()
    # Nothing is left behind that a later plain `ray.init()` on the node would find and hang on.
    assert _ray_files() == before


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _kind(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def test_k8s_manifests_agree_with_cluster_yaml_and_the_sweep_parser() -> None:
    from spec_ray.orchestration.commandline import sweep_parser as build_parser
    from sweeps.polarity import EXPERIMENT

    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    base = cluster["docker"]["image"]
    ray_version = base.split(":")[1].split("-")[0]
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    assert f"ARG BASE={base}" in dockerfile and "torch==2.13.0" in dockerfile
    assert "COPY --chown=ray:users . /home/ray/spec-ray" in dockerfile

    cluster_docs, job_docs = _docs("raycluster.yaml"), _docs("rayjob.yaml")
    raycluster, rayjob = _kind(cluster_docs, "RayCluster"), _kind(job_docs, "RayJob")
    assert raycluster["apiVersion"] == rayjob["apiVersion"] == "ray.io/v1"
    spec = raycluster["spec"]
    assert rayjob["spec"]["rayClusterSpec"] == spec  # the job's cluster is the interactive one
    assert spec["rayVersion"] == ray_version
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # no trial on the head, as in cluster.yaml
    pods = [head["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    images = {c["image"] for p in pods for c in p["containers"]}
    assert len(images) == 1 and images.pop().endswith("/spec-ray:0.2.0")  # built from deploy/docker/Dockerfile
    account = _kind(cluster_docs, "ServiceAccount")
    assert {p["serviceAccountName"] for p in pods} == {account["metadata"]["name"]}  # S3 through IRSA, every pod
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == 1 and "nvidia.com/gpu" not in str(groups["cpu"])

    job = rayjob["spec"]
    assert job["shutdownAfterJobFinishes"] is True and job["backoffLimit"] >= 1  # a retry resumes
    words = shlex.split(job["entrypoint"])
    script = words.index("/home/ray/spec-ray/sweeps/polarity.py")  # the image's WORKDIR (deploy/docker)
    flags = words[script + 1 :]
    args = build_parser(EXPERIMENT, None).parse_args(flags)  # the sweep itself accepts them
    assert args.resume == "auto" and args.storage.startswith("s3://") and args.gpus_per_trial == 0.25
    assert json.dumps(job).count("spec-ray:0.2.0") == 3


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_k8s_manifests_name_every_required_field(name: str) -> None:
    for doc in _docs(name):
        assert {"apiVersion", "kind", "metadata"} <= set(doc) and doc["metadata"].get("name"), doc.get("kind")
