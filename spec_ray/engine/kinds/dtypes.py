"""Each training dtype defined once, as a record: its bytes, and whether its matmuls may be rounded.

A new dtype is a record in ``DTYPES`` (read by train.dtype and --help) whose name is a torch dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec_ray.engine.kinds.registry import Registry


@dataclass(frozen=True)
class DType:
    """A floating-point type a pack trains in (``getattr(torch, name)``)."""

    name: str
    """The value of train.dtype."""
    bytes: int
    """Bytes of one element (the memory estimate counts them)."""
    reducible: bool
    """Its matmuls may run at a reduced precision (train.matmul_precision bf16, tf32)."""


FLOAT32 = DType("float32", 4, reducible=True)
FLOAT64 = DType("float64", 8, reducible=False)
"""The authors' dtype."""
DTYPES: Registry[DType] = Registry("train.dtype", FLOAT32, FLOAT64)
