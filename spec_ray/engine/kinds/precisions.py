"""Each arithmetic of float32 training matmuls defined once, as a record (``training.precision``).

A new precision is a record in ``PRECISIONS`` (read by train.matmul_precision, --help and the device
checks) whose name is torch's ``fp32_precision`` setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec_ray.engine.kinds.registry import Registry


@dataclass(frozen=True)
class Precision:
    """How float32 matmuls and convolutions round their operands during training."""

    name: str
    """The value of train.matmul_precision, and torch's backend setting."""
    exact: bool
    """IEEE fp32: no rounding (float64 runs take only this)."""
    devices: tuple[str, ...]
    """The device types that run it: CPUs have no tf32 unit, and torch's CUDA backend takes no bf16 setting."""
    needs_bf16_unit: bool = False
    """On a CPU it applies only where a bf16 setting changes the matmuls (``specs.spec.bf16_applies``, measured)."""


IEEE = Precision("ieee", exact=True, devices=("cpu", "cuda"))
TF32 = Precision("tf32", exact=False, devices=("cuda",))
BF16 = Precision("bf16", exact=False, devices=("cpu",), needs_bf16_unit=True)
PRECISIONS: Registry[Precision] = Registry("train.matmul_precision", IEEE, TF32, BF16)
