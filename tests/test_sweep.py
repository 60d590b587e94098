"""Sweeps on a real local Ray: each script's smoke run end to end, resume after an interrupt, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_complete, shared_ray, snapshot, sweep_exit

from spec_ray.orchestration.trial import STATE_FILE, STORED_FILE
from spec_ray.storage import schema as S
from spec_ray.storage.manifest import packs_from_dict

pytestmark = pytest.mark.slow  # Ray, processes or servers: not in the fast tier

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["polarity", "overrealization", "teacher_aware", "sample_size", "luck_matters"]


def sweep(script: str, *args: str, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    """Run a sweep script; on the tests' shared Ray unless ``own_ray=True`` (it then starts its own:
    a driver to be killed, and storage whose credentials the head's workers would not have)."""
    cmd = [sys.executable, str(ROOT / "sweeps" / f"{script}.py"), *args]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONUNBUFFERED": "1"}
    if not kwargs.pop("own_ray", False) and "--address" not in args:  # a test's own cluster keeps its address
        env.update(shared_ray())
    env.update(kwargs.pop("env", {}))
    cwd = kwargs.pop("cwd", None)
    if kwargs.pop("background", False):
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kwargs.pop("timeout", 240), env=env, cwd=cwd)


def readme_snippets_run_on(results: Path) -> int:
    """Every README snippet that reads the smoke's results, run as a user would from a folder holding
    ``results/``: the Python blocks in this process, the ``python -m analysis`` lines as commands.
    Returns how many ran; each must print rows (a filter matching nothing would print an empty frame)."""
    import contextlib
    import io
    import re
    import shlex

    text = (ROOT / "README.md").read_text()
    cwd = results.parent / "user"
    cwd.mkdir()
    (cwd / "results").symlink_to(results)
    ran = 0
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        out = io.StringIO()
        with contextlib.chdir(cwd), contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {})
        if "polarity-smoke" in block:
            assert len(out.getvalue().strip().splitlines()) >= 3, f"README snippet printed no rows:\n{block}"
        ran += 1
    for line in re.findall(r"^(python -m analysis .*results/polarity-smoke.*)$", text, flags=re.M):
        cmd = shlex.split(line.split("  #")[0])
        proc = subprocess.run([sys.executable, *cmd[1:]], cwd=cwd, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0 and proc.stdout.strip(), f"{line}: {proc.stderr[-2000:]}"
        ran += 1
    return ran


def stored_packs(root: Path):
    return packs_from_dict(json.loads((root / "sweep.json").read_text())["sweep"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_sweep_lands_every_row_once(script: str, tmp_path: Path) -> None:
    proc = sweep(script, "--smoke", "--storage", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    root = tmp_path / f"{script}-smoke"
    packs = stored_packs(root)
    assert_complete(str(root), packs)
    # A finished trial keeps a marker, not its pack's state: one checkpoint a trial, none with a state file.
    assert len(list(root.rglob(STORED_FILE))) == len(packs) and not list(root.rglob(STATE_FILE))
    runs = pd.read_parquet(root / S.RUNS)
    expected = {"polarity": 8, "overrealization": 8, "teacher_aware": 8, "sample_size": 8, "luck_matters": 8}[script]
    assert len(runs) == expected and sum(p.size for p in packs) == expected
    depth = int(runs["depth"].iloc[0])
    for table in (S.TEACHER_NODES, S.STUDENT_NODES):  # every hidden layer is traced
        assert sorted(pd.read_parquet(root / table, columns=[S.LAYER])[S.LAYER].unique()) == list(range(1, depth + 1))
    if script == "sample_size":
        assert depth == 4 and set(runs["loss"]) == {"mse_mean", "ce"} and runs["calibrate"].all()
        # An epoch is one shuffled pass: epochs x ceil(N / 64) steps, 3 x 8 at N = 500 and 3 x 63 at 4,000.
        assert runs["iters_per_epoch"].isna().all() and (runs["normalize"] == "all").all()
        steps = runs.groupby("n_train")[S.STEPS_DONE].unique().to_dict()
        assert {n: list(v) for n, v in steps.items()} == {500: [3 * 8], 4000: [3 * 63]}
    if script == "polarity":
        assert readme_snippets_run_on(tmp_path) >= 7  # pandas, pyarrow, DuckDB, the Python run, report and query
    if script == "luck_matters":  # FC and CNN x finite and infinite data x 2 seeds, the report's own figures
        assert set(runs["arch"]) == {"mlp", "conv"} and runs["n_train"].isna().sum() == 4
        assert (
            "tables: runs, teacher_nodes, student_nodes, scalars, corr_matrices, winner_ranks, modulation"
            in proc.stdout
        )
        from analysis.report import build_report

        build_report(str(root), tmp_path / "report")
        ranks = pd.read_csv(tmp_path / "report" / "data" / "luck_rank.csv")
        last = ranks[ranks["epoch"] == ranks["epoch"].max()]
        assert (last["mean_rank"] == 0).all() and (ranks["mean_rank"] > 0).any()  # falls to 0 at the end
        assert (tmp_path / "report" / "luck_rho.png").stat().st_size > 10_000
        assert (tmp_path / "report" / "luck_beta.png").stat().st_size > 10_000  # fig. 16 of an FC run
        beta = pd.read_csv(tmp_path / "report" / "data" / "luck_beta.csv")
        assert beta["run_id"].nunique() == 1 and set(beta["stage"]) == {"init", "end"}
        text = (tmp_path / "report" / "report.md").read_text()
        assert "| 12 | beta*" in text
        # Only what applies: no ICML two-layer figure or claim 1-4 on Luck Matters runs, and one line saying why.
        claims = text.split("## Claims")[1].split("## Figures")[0]
        assert not (tmp_path / "report" / "success_rate.png").exists() and "| 1 | " not in claims
        assert "| 4 | " not in claims and "| 7 | " in claims
        assert "Not shown, for want of data:\n\n- success_rate (two-layer runs (depth 1))" in text
        assert "One run (BN after_relu, finite data, seed 1;" in text  # the smoke has BN runs only: says so
        configs = text.split("## Runs and configurations")[1]
        rows = [line for line in configs.splitlines() if line.startswith("| ")]
        assert len(rows) == 1 + 4  # header, then net x data: NaN n_train (infinite data) is a configuration too
    assert f"python -m analysis report {root}" in proc.stdout
    assert (runs[S.TRAINED_ON] == "cpu").all()  # no GPU share: the CPU, whatever is visible
    # The launch says what it will do: settings off the defaults, the axes, storage, Ray.
    assert f"sweep {script}-smoke: {expected} runs in {len(packs)} packs" in proc.stderr
    assert "  settings: " in proc.stderr and "  axes:     " in proc.stderr and f"  storage:  {root}" in proc.stderr
    assert "epochs=" in proc.stderr.split("  settings: ")[1].split("  axes:")[0]  # smoke shortens the runs
    assert "  schedule: " in proc.stderr and "longest first" in proc.stderr


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> Path:
    """A finished smoke sweep whose files bad input must not touch: planned as the script plans it,
    its packs trained in this process (tests/test_grow.py's ``train``; the Ray path is tested above)."""
    from test_grow import POLARITY, train

    from spec_ray.orchestration.commandline import experiment_from_args, request_from_args
    from spec_ray.orchestration.commandline import sweep_parser as build_parser
    from spec_ray.orchestration.plan import plan

    storage = tmp_path_factory.mktemp("existing")
    flags = ["--smoke", "--storage", str(storage), "--multi", "1", "--p", "0"]
    args = build_parser(POLARITY.EXPERIMENT, None).parse_args(flags)
    train(
        plan(request_from_args(experiment_from_args(POLARITY.EXPERIMENT, args, POLARITY.SMOKE), args, POLARITY.SMOKE))
    )
    return storage


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--foo", "1"], "unrecognized arguments: --foo"),
        (["--multi", "0"], "student.multi"),
        (["--p", "1", "-2"], "teacher.p"),
        (["--p"], "expected at least one argument"),
        (["--p", "1", "1"], "distinct"),
        (["--loss", "hinge"], "train.loss"),
        (["--seeds", "0"], "seeds"),
        (["--seeds", "100000000"], "seeds=100000000 is invalid: allowed an integer from 1 to 100,000"),
        (["--epochs", "1000000000000"], "train.epochs=1000000000000 is invalid: allowed an integer from 1 to"),
        (["--n-train", "1000000000000"], "data.n_train"),
        (["--name", ""], "experiment='' is invalid"),
        (["--name", " "], "experiment=' ' is invalid: allowed a non-empty name"),
        (["--gpus-per-trial", "1.5"], "--gpus-per-trial=1.5 is invalid: allowed 0, a fraction of one GPU, or a whole"),
        (["--device", "cuda"], "unrecognized arguments: --device"),  # a trial's GPU share places it
        (["--lr", "inf"], "train.lr"),
        (["--address", "127.0.0.1:1"], "unreachable"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial"),
        ([], "already exists"),  # same name again without --resume
        (["--resume", "--name", "never-ran"], "no sweep"),
        (["--resume", "maybe"], "argument --resume: invalid choice: 'maybe'"),
        (["--resume", "--cpus-per-trial", "2"], "--cpus-per-trial=2 cannot change on --resume"),
        (["--resume", "--max-failures", "0"], "--max-failures=0 cannot change on --resume"),
        (["--resume", "auto", "--block-epochs", "5"], "--block-epochs=5 cannot change on --resume"),
        (
            ["--resume", "--epochs", "4"],
            "these flags change what the stored sweep 'polarity-smoke' ran (epochs: stored 6, asked 4)",
        ),
    ],
)
def test_bad_input_exits_2_before_any_trial(existing: Path, args: list[str], says: str, capsys, monkeypatch) -> None:
    """In this process, through the script's own ``main`` (a subprocess per case spent 3 s importing
    torch and Ray; ``test_the_script_itself_exits_2`` covers the process)."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = snapshot(existing)
    argv = ["--smoke", "--storage", str(existing), "--multi", "1", "--p", "0", *args]
    code = sweep_exit(ROOT / "sweeps" / "polarity.py", argv)
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert says in err and "Traceback" not in err
    assert not ray.is_initialized()  # refused before Ray started
    assert snapshot(existing) == before


def test_the_script_itself_exits_2(existing: Path) -> None:
    before = snapshot(existing)
    proc = sweep("polarity", "--smoke", "--storage", str(existing), "--multi", "0", timeout=60)
    assert proc.returncode == 2 and "student.multi=0 is invalid" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(existing) == before


def test_unwritable_storage_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = sweep("polarity", "--smoke", "--storage", str(blocker / "sub"), timeout=60)
    assert proc.returncode == 2 and "storage" in proc.stderr and blocker.read_text() == "x"


def test_killed_driver_resumes_without_rerun_or_duplicates(tmp_path: Path) -> None:
    args = ["--smoke", "--storage", str(tmp_path), "--multi", "1", "2", "3", "4", "--epochs", "6",
            "--iters-per-epoch", "400", "--cpus-per-trial", "2"]  # fmt: skip
    root = tmp_path / "polarity-smoke"
    # Its own Ray: a SIGKILLed driver's trials live on in a shared cluster until Ray reaps them.
    driver = sweep("polarity", *args, background=True, own_ray=True)
    deadline = time.time() + 180
    done_pack = None
    while time.time() < deadline and done_pack is None:
        time.sleep(0.5)
        for runs_file in root.glob(f"{S.RUNS}/pack=*/runs.parquet"):
            try:
                if (pd.read_parquet(runs_file)[S.STATUS] == S.STATUS_DONE).all():
                    done_pack = runs_file
            except Exception:  # noqa: BLE001 - a file being replaced right now
                continue
    assert done_pack is not None, "no pack finished before the deadline"
    driver.send_signal(signal.SIGKILL)  # no chance to save anything: a dead node, an OOM kill
    out, _ = driver.communicate(timeout=120)
    packs = stored_packs(root)
    finished = {p.parent.name for p in root.glob(f"{S.RUNS}/pack=*/runs.parquet")
                if (pd.read_parquet(p)[S.STATUS] == S.STATUS_DONE).all()}  # fmt: skip
    assert 1 <= len(finished) < len(packs), out[-3000:]
    mtimes = {p: p.stat().st_mtime_ns for name in finished for p in (root / S.SCALARS / name).glob("*.parquet")}
    proc = sweep("polarity", *args, "--resume", own_ray=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_complete(str(root), packs)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # finished packs were not rerun
    runs = sum(p.size for p in packs)  # the resumed console counts the packs the killed launch finished
    assert f"runs {runs}/{runs} done" in proc.stderr, proc.stderr[-3000:]


def test_gpus_no_node_can_offer_exit_2_before_any_trial(tmp_path: Path) -> None:
    # A local Ray without GPUs and without an autoscaler: the trials would pend forever.
    proc = sweep("polarity", "--smoke", "--storage", str(tmp_path), "--gpus-per-trial", "1", timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "--gpus-per-trial=1 is invalid here: no node of this Ray cluster has that many GPUs" in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_gpus_this_machine_lacks_exit_2_before_a_local_ray_starts(tmp_path: Path) -> None:
    """No cluster to join: the local Ray this launch would start is asked of CUDA first, so nothing starts."""
    ray_tmp = tmp_path / "ray"
    ray_tmp.mkdir()
    storage = tmp_path / "results"
    proc = sweep("polarity", "--smoke", "--storage", str(storage), "--gpus-per-trial", "1", timeout=120,
                 own_ray=True, env={"RAY_TMPDIR": str(ray_tmp)})  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "--gpus-per-trial=1 is invalid here: this machine has 0 GPU(s) for the local Ray" in proc.stderr
    assert "sweep polarity-smoke" not in proc.stderr and "Traceback" not in proc.stderr  # before the header
    assert not any(ray_tmp.rglob("session_*")) and not storage.exists() or not any(storage.iterdir())


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_calibration_workers_die_with_their_driver(how: signal.Signals, tmp_path: Path) -> None:
    """A dry run times its shapes in worker processes: killed (SIGKILL, nothing runs after it) or interrupted
    (Ctrl-C), its driver leaves none of them behind, and Ctrl-C ends it in one line."""
    args = ["--dry-run", "--net", "fc-small", "fc-large", "--storage", str(tmp_path)]
    driver = sweep("luck_matters", *args, background=True, own_ray=True)

    def workers() -> set[int]:
        return _children(driver.pid) if driver.poll() is None else set()

    deadline = time.time() + 120
    seen: set[int] = set()
    while time.time() < deadline and len(seen) < 2 and driver.poll() is None:
        seen |= workers()
        time.sleep(0.02)
    assert len(seen) >= 2, "the dry run started no calibration workers"
    time.sleep(0.5)
    driver.send_signal(how)
    out, _ = driver.communicate(timeout=60)
    gone = time.time() + 10
    while time.time() < gone and any(Path(f"/proc/{p}").exists() for p in seen):
        time.sleep(0.1)
    alive = [p for p in seen if Path(f"/proc/{p}").exists() and "zombie" not in Path(f"/proc/{p}/status").read_text()]
    assert not alive, f"calibration workers outlived their driver: {alive}"
    if how == signal.SIGINT:
        assert driver.returncode == 130 and "stopped by SIGINT" in out and "Traceback" not in out, out[-2000:]


def test_a_trial_trains_where_its_gpu_share_says() -> None:
    from spec_ray.orchestration.trial import trial_device

    assert trial_device(0.0, cuda_available=True) == "cpu"  # a visible GPU it was not given is not used
    assert trial_device(0.25, cuda_available=True) == "cuda"
    with pytest.raises(RuntimeError, match="given 1 GPU but sees no CUDA device"):
        trial_device(1.0, cuda_available=False)  # never a silent fallback to the CPU


def trained_here(script: str, *flags: str) -> None:
    """A stored sweep as the script would plan it, its packs trained in this process (no Ray, no
    Tune state): tests/test_grow.py's ``train``."""
    import importlib.util

    from test_grow import train

    from spec_ray.orchestration.commandline import experiment_from_args, request_from_args
    from spec_ray.orchestration.commandline import sweep_parser as build_parser
    from spec_ray.orchestration.plan import plan

    spec = importlib.util.spec_from_file_location(f"{script}_sweep", ROOT / "sweeps" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = build_parser(module.EXPERIMENT, None).parse_args(list(flags))
    smoke = module.SMOKE if args.smoke else None
    train(plan(request_from_args(experiment_from_args(module.EXPERIMENT, args, module.SMOKE), args, smoke)))


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}


def test_resume_auto_starts_a_new_sweep_then_resumes_the_stored_one(tmp_path: Path) -> None:
    """What a requeued job does: the same command, twice."""
    args = ["polarity", "--smoke", "--storage", str(tmp_path), "--multi", "1", "--p", "0", "--resume", "auto"]
    first = sweep(*args)
    assert first.returncode == 0 and "resuming" not in first.stderr, first.stdout[-2000:] + first.stderr[-2000:]
    root = tmp_path / "polarity-smoke"
    before = _mtimes(root)
    second = sweep(*args[:-2], env={"SPEC_RAY_RESUME": "auto"})
    assert second.returncode == 0 and "(resuming the stored sweep)" in second.stderr, second.stderr[-2000:]
    assert_complete(str(root), stored_packs(root))
    assert _mtimes(root) == before  # nothing was trained twice
    bad = sweep(*args[:-2], env={"SPEC_RAY_RESUME": "always"}, timeout=60)
    assert bad.returncode == 2 and "SPEC_RAY_RESUME='always' is invalid: allowed yes, auto or unset" in bad.stderr


def test_resume_before_tunes_first_save_replans_from_sweep_json(tmp_path: Path) -> None:
    """A crash after sweep.json was written but before Tune saved its state: no Tune state to restore
    (the first launch is trained in this process, so it leaves none)."""
    import shutil

    args = ["polarity", "--smoke", "--storage", str(tmp_path), "--multi", "1", "2", "--p", "0"]
    trained_here(*args)
    root = tmp_path / "polarity-smoke"
    packs = stored_packs(root)
    assert not (root / "tune").exists()
    lost = packs[1].pack_id
    for table in (S.RUNS, S.SCALARS, S.TEACHER_NODES, S.STUDENT_NODES):
        shutil.rmtree(root / table / f"pack={lost}")
    kept = _mtimes(root)
    proc = sweep(*args, "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_complete(str(root), packs)
    assert {p: t for p, t in _mtimes(root).items() if p in kept} == kept  # the finished pack was not rerun
    assert len(_mtimes(root)) > len(kept)


def test_a_stale_ray_address_file_is_ignored(tmp_path: Path) -> None:
    """A Ray killed without `ray stop` leaves its address file; a plain launch starts a new local Ray."""
    import shutil
    import tempfile

    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
        args = ["polarity", "--smoke", "--storage", str(tmp_path), "--multi", "1", "--p", "0"]
        proc = sweep(*args, env={"RAY_TMPDIR": str(ray_tmp)}, timeout=120, own_ray=True)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "names 127.0.0.1:1, which does not answer: starting a new local Ray" in proc.stdout


def test_a_sweep_grows_training_only_the_new_runs(tmp_path: Path) -> None:
    """Growth on a real local Ray: --seeds 2, then --seeds 4 --resume trains only the 8 new runs (damaged
    files found and retrained alone on Ray: tests/test_chaos.py; in this process: tests/test_grow.py)."""
    args = ["polarity", "--smoke", "--storage", str(tmp_path), "--epochs", "2"]
    trained_here(*args, "--seeds", "2")  # the first launch in this process; growing on Ray
    root = tmp_path / "polarity-smoke"
    old = stored_packs(root)
    before = _mtimes(root)
    grown = sweep(*args, "--seeds", "4", "--resume")
    assert grown.returncode == 0, grown.stdout[-2000:] + grown.stderr[-2000:]
    assert "runs:     8 of these flags' runs done and reused; 8 new in" in grown.stderr
    packs = stored_packs(root)
    assert packs[: len(old)] == old and {r.seed for p in packs[len(old) :] for r in p.runs} == {3, 4}
    assert {p: t for p, t in _mtimes(root).items() if p in before} == before  # the first packs' files untouched
    runs = pd.read_parquet(root / S.RUNS)
    assert len(runs) == 16 and runs[S.RUN_ID].is_unique and (runs[S.STATUS] == S.STATUS_DONE).all()
    assert_complete(str(root), packs)
