"""Shared small specs: shapes tiny enough for float64 reference checks in seconds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The repository root: tests import the held-out recipe and the synthetic traces from benchmarks/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spec_ray.engine.spec import CheckpointSpec, DataSpec, RunSpec, StudentSpec, TeacherSpec, TrainSpec

_SHARED_RAY: dict[str, str] = {}

FAST_TIER = "not slow"
DEVICE = os.environ.get("SPEC_RAY_TEST_DEVICE", "cpu")
"""Where the equivalence tests train their packs (``cuda`` on a GPU machine); the reference stays on the CPU."""
"""``pytest -m "not slow"``: the fast tier (README), the tests that start no Ray and no process."""


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: starts Ray or a process, or trains for long: not in the fast tier")
    if config.getoption("markexpr", "") == FAST_TIER:  # a test that starts a process is mislabeled: fail it
        import matplotlib.font_manager  # noqa: F401  (a fresh machine builds its font cache with `fc-list` once)

        def refuse(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("a fast-tier test started a process (or Ray): mark it @pytest.mark.slow")

        import subprocess

        subprocess.Popen.__init__ = refuse


def shared_ray() -> dict[str, str]:
    """The environment of a client of one local Ray head shared by the tests' sweeps, started on first use.

    Each sweep otherwise starts and stops a Ray of its own (about 5 s each). The head runs
    ``ray start --head --block`` under its own temp folder, so no other test finds it by Ray's
    address file, with token authentication as ``ray start`` enables it; it stops with the session.
    """
    if _SHARED_RAY:
        return _SHARED_RAY
    import atexit
    import os
    import secrets
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={folder}"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def stop() -> None:
        head.terminate()
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    _SHARED_RAY.update(env, RAY_ADDRESS=f"127.0.0.1:{port}")
    return _SHARED_RAY


_EXECS = ("execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe")


@pytest.fixture(autouse=True)
def nothing_replaces_the_test_process(monkeypatch) -> None:
    """Code called in-process must never exec (MKL's preload restarts a process only at its entry,
    ``spec_ray/__main__.py``): any attempt fails the test instead of silently restarting pytest."""
    import os

    def refuse(*args: object) -> None:
        raise AssertionError(f"an in-process call tried to replace the test process: os.exec*{args[:2]}")

    for name in _EXECS:
        monkeypatch.setattr(os, name, refuse)


@pytest.fixture
def amd_switch(monkeypatch, tmp_path_factory) -> None:
    """MKL's preload switch forced on, as ``auto`` is on an AMD CPU, so a test runs the AMD path on any vendor."""
    monkeypatch.setenv("SPEC_RAY_MKL_ANY_CPU", "on")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def tiny_spec(**changes: object) -> RunSpec:
    """A small float64 two-layer run; ``changes`` are dotted overrides."""
    spec = RunSpec(
        teacher=TeacherSpec(widths=(6,), c=5),
        student=StudentSpec(multi=3, init_std=0.1),
        data=DataSpec(d=12, n_train=400, n_eval=300),
        train=TrainSpec(lr=0.05, epochs=2, iters_per_epoch=150, dtype="float64"),
        checkpoint=CheckpointSpec(first_epoch_points=3, train_every_epochs=1),
    )
    return spec.replace(**changes)


@pytest.fixture
def tiny() -> RunSpec:
    return tiny_spec()


def sweep_exit(path: Path, argv: list[str]) -> int:
    """A sweep script's ``main`` run in this process on ``argv``: its exit code (argparse's too)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{path.stem}_sweep", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    try:
        return script.main(script.EXPERIMENT, smoke=script.SMOKE, argv=argv)
    except SystemExit as exit_:
        return exit_.code


def snapshot(root) -> dict[str, str]:
    """Content hash of every file under ``root``: proves bad input touched nothing."""
    import hashlib
    from pathlib import Path

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def assert_complete(root: str, packs) -> None:
    """Every (run, step, node) row of every pack exists exactly once under an experiment root (a path or URI)."""
    import pyarrow.dataset as ds

    from spec_ray.engine.pack import checkpoint_steps
    from spec_ray.storage import schema as S

    keys = {
        S.RUNS: [S.RUN_ID],
        S.SCALARS: [S.RUN_ID, S.STEP],
        S.TEACHER_NODES: [S.RUN_ID, S.STEP, S.LAYER, S.NODE],
        S.STUDENT_NODES: [S.RUN_ID, S.STEP, S.LAYER, S.NODE],
    }
    frames = {t: ds.dataset(f"{root}/{t}", format="parquet", partitioning="hive").to_table().to_pandas() for t in keys}
    for table, key in keys.items():
        assert not frames[table].duplicated(key).any(), f"duplicate rows in {table}"
    for pack in packs:
        spec, ids = pack.spec, set(pack.run_ids)
        ckpts = len(checkpoint_steps(spec))
        mine = {t: f[f[S.RUN_ID].isin(ids)] for t, f in frames.items()}
        assert len(mine[S.RUNS]) == pack.size and (mine[S.RUNS][S.STATUS] == S.STATUS_DONE).all()
        assert len(mine[S.SCALARS]) == pack.size * ckpts
        assert len(mine[S.TEACHER_NODES]) == pack.size * ckpts * sum(spec.teacher.active_widths)
        assert len(mine[S.STUDENT_NODES]) == pack.size * ckpts * sum(spec.student_widths)
    assert set(frames[S.RUNS][S.RUN_ID]) == {r for p in packs for r in p.run_ids}


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 (and IAM) server on 127.0.0.1 with authentication on: only the key it issued works.

    Yields the environment of a client holding that key. ``AWS_EC2_METADATA_DISABLED`` keeps
    the AWS SDKs from asking an instance-metadata address for credentials: no traffic leaves
    this machine.
    """
    import json
    import os
    import socket
    import subprocess
    import time

    boto3 = pytest.importorskip("boto3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The first four calls (user, policy, key, bucket) are made without credentials; then auth is on.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    base = {"AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    anon = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    iam = boto3.client("iam", **anon)
    iam.create_user(UserName="sweeper")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="sweeper", PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="sweeper")["AccessKey"]
    good = {**base, "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    keyed = {**anon, "aws_access_key_id": good["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": key["SecretAccessKey"]}
    boto3.client("s3", **keyed).create_bucket(Bucket="bucket")
    yield {"good": good, "bad": {**good, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "url": url}
    server.terminate()
    server.wait(timeout=10)
