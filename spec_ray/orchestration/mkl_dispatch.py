"""MKL's CPU-vendor check, answered for AMD CPUs so torch's fp32 matmuls use their full vector width.

torch's CPU wheels link MKL statically. MKL asks ``mkl_serv_intel_cpu()`` before it picks a
kernel, and on a non-Intel CPU runs its AVX2 kernels even where the CPU has AVX-512 (Zen 4
and 5): 223-233 GFLOP/s against 476 with the check answered, on a 2-core EPYC (the performance
issue's measurement). The check is an exported function that torch's library calls through its
PLT, so a library preloaded ahead of torch answers it. Measured here, on an Intel CPU: a shim
answering 0 drops MKL to its generic kernels (banner "Intel(R) Architecture processors",
32-42 GFLOP/s instead of 140-290); the shim answering 1 changes nothing on Intel.

A preload acts only when a process starts, so it is set where processes start, and no
function called from a user's code ever replaces the caller's process:
* ``preload_environ()``: the sweep driver, before it starts a local Ray or calibration
  processes (they inherit the environment);
* ``reexec()``: only at a process boundary, the ``__main__`` of ``python -m spec_ray run`` and
  of the benchmarks, which then restart with the preload; ``cli.main`` called in-process never does;
* ``python -m spec_ray mkl-preload -- ray start ...`` starts each node of a cluster with it
  (cluster.yaml, deploy/slurm); without a command it prints the library's path.

``SPEC_RAY_MKL_ANY_CPU``: auto (default: on for non-Intel x86 CPUs), on, off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MODE_ENV = "SPEC_RAY_MKL_ANY_CPU"
MODES = ("auto", "on", "off")
REEXEC_ENV = "SPEC_RAY_MKL_REEXEC"  # set on the re-executed process, so it never loops
SHIM_NAME = "mkl_intel_cpu_{value}_"  # a shim's file name before its source hash
SHIM_PREFIX = SHIM_NAME.format(value=1)  # the shim answering 1: the one preloaded

# Both names: mkl_serv_intel_cpu is the one torch 2.13's MKL 2024.2 calls through its PLT;
# mkl_serv_intel_cpu_true is the one MKL's shared libraries call in other builds.
SOURCE = """int mkl_serv_intel_cpu(void) {{ return {value}; }}
int mkl_serv_intel_cpu_true(void) {{ return {value}; }}
"""


def mode() -> str:
    """The switch's value; ValueError naming it on a bad one."""
    value = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{MODE_ENV}={value!r} is invalid: allowed " + ", ".join(MODES))
    return value


def cpu_vendor() -> str:
    """The CPU's vendor id (GenuineIntel, AuthenticAMD, ...), '' where /proc/cpuinfo is not."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "")
    except OSError:
        return ""


def wanted() -> bool:
    """Whether this machine's processes should preload the answer: on, or auto on a non-Intel x86 CPU."""
    value = mode()
    if value != "auto":
        return value == "on"
    return sys.platform == "linux" and cpu_vendor() not in ("", "GenuineIntel")


def build(value: int = 1, folder: Path | None = None) -> Path | None:
    """The shim answering ``value``, compiled once per source into the cache; None without a working C compiler."""
    source = SOURCE.format(value=value)
    folder = folder or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spec-ray"
    path = folder / f"{SHIM_NAME.format(value=value)}{hashlib.sha256(source.encode()).hexdigest()[:8]}.so"
    if path.exists():
        return path
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            (Path(tmp) / "shim.c").write_text(source)
            out = Path(tmp) / path.name
            built = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(Path(tmp) / "shim.c")],
                                   capture_output=True)  # fmt: skip
            if built.returncode != 0:
                return None
            os.replace(out, path)  # atomic: a node's processes may build it at once
    except OSError:  # an unwritable cache folder
        return None
    return path


def loaded() -> bool:
    """Whether this process runs with the shim preloaded."""
    try:
        return SHIM_PREFIX in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def pending() -> bool:
    """Whether this process starts its children with the shim (``preload_environ``) but runs without it:
    work timed here would not run the kernels they run (a calibration, ``schedule.measure_shapes``)."""
    return SHIM_PREFIX in os.environ.get("LD_PRELOAD", "") and not loaded()


def bf16_applies_in_workers() -> bool:
    """``spec.bf16_applies`` where a sweep's trials run: measured in a child with the MKL preload when this
    process would give its children one it lacks (with it, MKL takes the matmuls oneDNN would run in bf16)."""
    from spec_ray.engine.specs.spec import bf16_applies

    if not wanted() or loaded():
        return bf16_applies()
    path = build()
    if path is None:
        return bf16_applies()
    code = "from spec_ray.engine.specs.spec import bf16_applies; print(bf16_applies())"
    env = {k: v for k, v in _with_preload(dict(os.environ), path).items() if k != REEXEC_ENV}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    return out.stdout.strip() == "True"


def _with_preload(env: dict[str, str], path: Path) -> dict[str, str]:
    present = env.get("LD_PRELOAD", "").split()
    return env if str(path) in present else {**env, "LD_PRELOAD": " ".join([str(path), *present])}


def preload_environ() -> Path | None:
    """Put the shim into this process's LD_PRELOAD for the processes it starts; its path, or None."""
    if not wanted():
        return None
    path = build()
    if path is None:
        print(f"note: {MODE_ENV}: no working C compiler (cc) here, so MKL keeps its AVX2 kernels on this CPU",
              file=sys.stderr)  # fmt: skip
        return None
    os.environ.update(_with_preload(dict(os.environ), path))
    return path


def reexec() -> None:
    """Start this command again with the shim preloaded, where it is wanted and not yet loaded.

    It replaces the running process, so it is called only from a ``__main__`` block, never from
    a function a user may call in-process (a notebook, pytest). ValueError on a bad switch."""
    if os.environ.get(REEXEC_ENV) or loaded():
        return
    path = preload_environ()
    if path is not None:
        os.environ[REEXEC_ENV] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, getattr(sys, "orig_argv", [sys.executable, *sys.argv]))


def main(command: list[str], replace: bool = False) -> int:
    """``python -m spec_ray mkl-preload [-- CMD ...]``: print the library to put in LD_PRELOAD on this
    node (nothing where it does not apply), or run CMD with it preloaded (``ray start`` of a node)
    and return its exit code. ``replace``: exec CMD in place of this process, so it gets the
    process's signals (``ray start --block`` under SLURM); only the console entry asks for it."""
    try:
        path = build() if wanted() else None
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = command[1:] if command[:1] == ["--"] else command
    if command:
        env = _with_preload(dict(os.environ), path) if path is not None else dict(os.environ)
        if replace:
            os.execvpe(command[0], command, env)
        try:
            return subprocess.call(command, env=env)
        except OSError as err:
            print(f"error: mkl-preload: cannot run {command[0]!r}: {err.strerror}", file=sys.stderr)
            return 2
    if path is not None:
        print(path)
    return 0
