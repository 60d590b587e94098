"""This machine's true fp32 matmul peak: the best of torch's BLAS and numpy's, with the kernel each ran.

torch's MKL runs AVX2 kernels on AMD CPUs unless its vendor check is answered
(``spec_ray.orchestration.mkl_dispatch``), so torch alone can under-state the peak by 2x there;
numpy's OpenBLAS picks its kernels from the CPU's features. Every benchmark measures efficiency
against the best of the two, measured in the same run, and prints which kernel each ran:
MKL's own banner (``MKL_VERBOSE``), OpenBLAS's core type (threadpoolctl) and oneDNN's ISA.

    python benchmarks/peak.py             # the two peaks and the kernels, about 10 s
    python benchmarks/peak.py --step 10   # and each GEMM of the two-layer step at multi 10, alone
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

SIZES = (2048, 4096)


@dataclass(frozen=True)
class Peak:
    """Best GFLOP/s of large square fp32 matmuls, per library, and what ran them."""

    torch_gflops: float
    numpy_gflops: float
    torch_kernel: str
    """MKL's banner line: its version and the instruction set it dispatched to."""
    numpy_kernel: str
    """OpenBLAS's version and core type (SkylakeX, Zen, Haswell: AVX-512, AVX2, AVX2)."""
    cpu: str
    threads: int

    @property
    def gflops(self) -> float:
        """The machine's fp32 peak: the better of the two."""
        return max(self.torch_gflops, self.numpy_gflops)

    def lines(self) -> list[str]:
        return [
            f"machine: {self.cpu}, {self.threads} threads, torch {torch.__version__}",
            f"fp32 peak: torch {self.torch_gflops:.1f} GFLOP/s [{self.torch_kernel}]",
            f"           numpy {self.numpy_gflops:.1f} GFLOP/s [{self.numpy_kernel}]",
            f"efficiency below is against the best, {self.gflops:.1f} GFLOP/s",
        ]


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's word for it."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _best(matmul, size: int, repeat: int) -> float:
    matmul()  # warm-up
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        matmul()
        best = max(best, 2 * size**3 / (time.perf_counter() - t) / 1e9)
    return best


def torch_peak(dtype: torch.dtype = torch.float32, device: str = "cpu", sizes=SIZES, repeat: int = 6) -> float:
    """Best GFLOP/s of torch's ``a @ b`` over sizes and repeats."""
    best = 0.0
    for size in sizes:
        a = torch.randn(size, size, dtype=dtype, device=device)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        best = max(best, _best(lambda: (a @ a, sync()), size, repeat))  # noqa: B023
    return best


def numpy_peak(sizes=SIZES, repeat: int = 6) -> float:
    """Best GFLOP/s of numpy's ``a @ b`` (its own BLAS) over sizes and repeats."""
    import numpy as np

    best = 0.0
    for size in sizes:
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        best = max(best, _best(lambda: a @ a, size, repeat))  # noqa: B023
    return best


def mkl_kernel() -> str:
    """MKL's banner in a fresh process with this one's environment (LD_PRELOAD included)."""
    if not torch.backends.mkl.is_available():
        return "torch without MKL"
    code = "import torch; a = torch.randn(64, 64); a @ a"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MKL_VERBOSE": "1"}, timeout=120).stdout  # fmt: skip
    line = next((ln for ln in out.splitlines() if "Product build" in ln), "")
    if not line:
        return "MKL (no banner)"
    isa = line.split("architecture ")[-1].split(" with support")[0].split(", Lnx")[0]
    return line.replace("MKL_VERBOSE ", "").split(" Product build")[0] + ": " + isa


def numpy_kernel() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "numpy's BLAS (threadpoolctl not installed)"
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture')}" for i in blas) or "unknown"


def measure(device: str = "cpu", sizes=SIZES) -> Peak:
    """Both peaks and both kernels; numpy's only on the CPU."""
    on_cpu = device == "cpu"
    return Peak(
        torch_gflops=torch_peak(torch.float32, device, sizes),
        numpy_gflops=numpy_peak(sizes) if on_cpu else 0.0,
        torch_kernel=mkl_kernel() if on_cpu else torch.cuda.get_device_name(),
        numpy_kernel=numpy_kernel() if on_cpu else "-",
        cpu=cpu_model(),
        threads=torch.get_num_threads(),
    )


def step_gemms(multi: int = 10, seeds: int = 8, k: int = 4, repeat: int = 400) -> list[tuple[str, float]]:
    """GFLOP/s of each matmul of the fused two-layer step (batch 16, d=100, m=20, c=50), alone, at the
    shapes of a shared pack of seeds x k runs, as ``trainer.sgd_step`` calls them."""
    g, b, d1, n, c = seeds, 16, 101, 20 * multi, 50
    r = g * k
    x, w1 = torch.randn(g, b, d1), torch.randn(r, n, d1).view(g, k * n, d1)  # (G, B, d+1), (G, k n, d+1)
    a, w2 = torch.randn(r, b, n + 1), torch.randn(r, c, n + 1)  # (R, B, n+1), (R, c, n+1)
    err, gg = torch.randn(r, b, c), torch.randn(g, b, k * n)  # (R, B, c), (G, B, k n)
    one, two = g * b * d1 * k * n, r * b * (n + 1) * c  # multiply-adds of a layer-1 and a layer-2 matmul
    cases = {
        "layer 1 forward  (G,B,d+1)x(G,d+1,kn)": (lambda: torch.bmm(x, w1.transpose(1, 2)), one),
        "layer 2 forward  (R,B,n+1)x(R,n+1,c)": (lambda: torch.bmm(a, w2.transpose(1, 2)), two),
        "layer 2 backward (R,B,c)x(R,c,n)": (lambda: torch.bmm(err, w2[..., :-1]), r * b * c * n),
        "layer 2 update   (R,c,B)x(R,B,n+1)": (lambda: w2.baddbmm_(err.transpose(1, 2), a, alpha=-1e-6), two),
        "layer 1 update   (G,kn,B)x(G,B,d+1)": (lambda: w1.baddbmm_(gg.transpose(1, 2), x, alpha=-1e-6), one),
    }
    rates = []
    for name, (gemm, macs) in cases.items():
        for _ in range(20):
            gemm()
        t = time.perf_counter()
        for _ in range(repeat):
            gemm()
        rates.append((name, 2 * macs * repeat / (time.perf_counter() - t) / 1e9))
    return rates


if __name__ == "__main__":
    import argparse

    from spec_ray.orchestration import mkl_dispatch

    mkl_dispatch.reexec()  # torch's peak as a sweep's workers see it (MKL's vendor check answered on AMD)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=None, metavar="MULTI", help="also each GEMM of the two-layer "
                        "step at this over-realization, alone, against the peak")  # fmt: skip
    args = parser.parse_args()
    peak = measure()
    print("\n".join(peak.lines()))
    print(f"oneDNN (bf16 matmuls): {torch.backends.mkldnn.is_available()}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    if args.step:
        print(f"the fused step's GEMMs at multi {args.step}, 32 runs (8 seeds x 4 p), torch fp32:")
        for name, rate in step_gemms(args.step):
            print(f"  {name:<40} {rate:7.1f} GFLOP/s  {100 * rate / peak.gflops:5.1f} % of peak")
