"""MKL's vendor check answered by a preloaded library: it reaches torch's statically linked MKL
(a shim answering 0 sends an Intel CPU to MKL's generic kernels), it changes nothing on Intel,
it puts AVX-512 kernels on AVX-512 AMD CPUs, and the switch is read and passed on as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spec_ray.orchestration import mkl_dispatch

pytestmark = pytest.mark.slow  # processes with and without the preload: not in the fast tier

ROOT = Path(__file__).resolve().parents[1]
BANNER = "import torch; a = torch.randn(256, 256); a @ a"
TRAIN = """
import torch
from spec_ray.engine.pack import Pack
from spec_ray.engine.spec import RunSpec
from spec_ray.engine.trainer import init_state, prepare, train_until
spec = RunSpec().replace(**{"student.multi": 2, "data.n_train": 500, "data.n_eval": 100})
pack = Pack(tuple(spec.replace(seed=s, **{"teacher.p": p}) for s in (1, 2) for p in (0.0, 1.0)))
state = train_until(pack, prepare(pack), init_state(pack), 200)
torch.save([p.clone() for p in state.params], __import__("sys").argv[1])
"""


def child(code: str, *args: str, preload: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", mkl_dispatch.MODE_ENV)}
    environ.update(env)
    if preload is not None:
        environ["LD_PRELOAD"] = str(preload)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, env=environ,
                          timeout=120, check=True)  # fmt: skip


def mkl_banner(preload: Path | None = None) -> str:
    out = child(BANNER, preload=preload, MKL_VERBOSE="1").stdout
    return next(line for line in out.splitlines() if "Product build" in line)


@pytest.fixture(scope="module")
def shims(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("shims")
    one, zero = mkl_dispatch.build(1, folder), mkl_dispatch.build(0, folder)
    if one is None:
        pytest.fail("no C compiler: the shim cannot be built on this machine")
    return one, zero


def test_the_shim_reaches_torchs_mkl_and_sets_its_kernels(shims) -> None:
    one, zero = shims
    plain, answered = mkl_banner(), mkl_banner(one)
    if mkl_dispatch.cpu_vendor() == "GenuineIntel":
        assert "Intel(R) Architecture processors" in mkl_banner(zero)  # the generic kernels: the check is reached
        assert "Intel(R) Architecture processors" not in plain
        assert answered == plain  # on Intel the answer is what MKL already knew
    else:
        avx512 = " avx512f " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
        assert ("AVX-512" in answered) == avx512, answered


def test_results_stay_within_float32_rounding(shims, tmp_path) -> None:
    import torch

    child(TRAIN, str(tmp_path / "plain.pt"))
    child(TRAIN, str(tmp_path / "answered.pt"), preload=shims[0])
    plain, answered = torch.load(tmp_path / "plain.pt"), torch.load(tmp_path / "answered.pt")
    for a, b in zip(plain, answered):
        if mkl_dispatch.cpu_vendor() == "GenuineIntel":
            assert torch.equal(a, b)  # the same kernels: bit for bit
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_switch(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(mkl_dispatch.MODE_ENV, "off")
    assert not mkl_dispatch.wanted()
    monkeypatch.setenv(mkl_dispatch.MODE_ENV, "on")
    assert mkl_dispatch.wanted()
    monkeypatch.setenv(mkl_dispatch.MODE_ENV, "auto")
    assert mkl_dispatch.wanted() == (mkl_dispatch.cpu_vendor() not in ("", "GenuineIntel"))
    monkeypatch.setenv(mkl_dispatch.MODE_ENV, "avx512")
    with pytest.raises(ValueError, match="SPEC_RAY_MKL_ANY_CPU='avx512' is invalid: allowed auto, on, off"):
        mkl_dispatch.wanted()


def test_mkl_preload_runs_a_command_with_it_and_spec_ray_run_restarts_with_it(tmp_path) -> None:
    env = {mkl_dispatch.MODE_ENV: "on", "XDG_CACHE_HOME": str(tmp_path)}  # off: test_the_switch
    probe = "from spec_ray.orchestration import mkl_dispatch as m; print(m.loaded())"
    wrapped = [sys.executable, "-m", "spec_ray", "mkl-preload", "--", sys.executable, "-c", probe]
    environ = {**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, **env}
    out = subprocess.run(wrapped, cwd=ROOT, capture_output=True, text=True, env=environ, timeout=120, check=True)
    assert out.stdout.strip() == "True"
    assert child(probe, **env).stdout.strip() == "False"  # a plain process has no preload
    restarted = child(f"from spec_ray.orchestration import mkl_dispatch as m; m.reexec(); {probe.split('; ')[1]}",
                      **env)  # fmt: skip
    assert restarted.stdout.strip() == "True"


def test_in_process_calls_never_replace_the_caller(amd_switch, capsys, monkeypatch) -> None:
    """``cli.main`` from a notebook or a test: ``mkl-preload -- CMD`` runs CMD as a child and returns
    its exit code; the conftest fixture fails the test on any exec."""
    from spec_ray.orchestration.cli import main

    probe = "import sys; from spec_ray.orchestration import mkl_dispatch as m; sys.exit(7 if m.loaded() else 3)"
    assert main(["mkl-preload", "--", sys.executable, "-c", probe]) == 7
    assert main(["mkl-preload", "--", "/nonexistent/cmd"]) == 2
    assert "cannot run '/nonexistent/cmd'" in capsys.readouterr().err
    monkeypatch.delenv(mkl_dispatch.REEXEC_ENV, raising=False)
    with pytest.raises(AssertionError, match="replace the test process"):
        mkl_dispatch.reexec()  # the entry's restart is refused in-process, as the fixture promises


def test_a_bad_switch_exits_2_before_any_work(tmp_path) -> None:
    environ = {**os.environ, mkl_dispatch.MODE_ENV: "always"}
    for cmd in (["sweeps/polarity.py", "--smoke"], ["-m", "spec_ray", "run", "--smoke"]):
        out = subprocess.run([sys.executable, *cmd, "--storage", str(tmp_path)], cwd=ROOT, capture_output=True,
                             text=True, env=environ, timeout=120)  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert "SPEC_RAY_MKL_ANY_CPU='always' is invalid: allowed auto, on, off" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_driver_without_the_preload_calibrates_in_a_child_that_has_it(shims, monkeypatch) -> None:
    """A sweep's driver puts the preload in its environment for its workers but runs without it: its
    calibration must run where the kernels are the workers' (a Zen 3 priced BN packs 1.4x too high)."""
    from spec_ray.engine.pack import Pack
    from spec_ray.engine.spec import RunSpec
    from spec_ray.orchestration import schedule

    one, _ = shims
    spec = RunSpec().replace(**{"student.multi": 2, "data.n_train": 500, "data.n_eval": 100, "train.epochs": 2})
    pack = Pack(tuple(spec.replace(seed=s) for s in (1, 2)))
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert not mkl_dispatch.pending()  # nothing pending: calibrated here, as before
    monkeypatch.setenv("LD_PRELOAD", str(one))
    assert not mkl_dispatch.loaded() and mkl_dispatch.pending()  # pytest itself runs without it
    (cost,) = schedule.measure_shapes([pack], workers=1).values()  # one shape, one worker: a child all the same
    assert 0 < cost.seconds(pack) < 60


def test_bf16_is_measured_where_the_trials_run_under_the_preload(amd_switch, monkeypatch) -> None:
    """The AMD branch, forced on any CPU: a driver without the preload its trials get asks a child that has it
    (on a Zen 4 the preload made bf16 change nothing: MKL takes the matmuls), and the answer is that child's."""
    from spec_ray.engine import spec as specs

    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert mkl_dispatch.wanted() and not mkl_dispatch.loaded()
    here = child("from spec_ray.engine.spec import bf16_applies; print(bf16_applies())",
                 preload=mkl_dispatch.build()).stdout.strip() == "True"  # fmt: skip
    monkeypatch.setattr(specs, "bf16_applies", lambda: not here)  # this process's answer is not the one asked
    assert mkl_dispatch.bf16_applies_in_workers() is here
    monkeypatch.setenv(mkl_dispatch.MODE_ENV, "off")  # the Intel branch: no preload, this process decides
    assert mkl_dispatch.bf16_applies_in_workers() is (not here)
