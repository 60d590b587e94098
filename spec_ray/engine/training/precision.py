"""The arithmetic of float32 matmuls and convolutions during training (``train.matmul_precision``).

torch keeps this as process-wide backend settings; ``training`` sets them for one block of
steps and puts back what was there, so a pack's metrics, the next pack in the same worker and
the user's own code see their settings again.

* ieee: set explicitly, not left to the defaults, because torch's default for cuDNN
  convolutions is tf32: without it a CUDA conv pack would not be fp32.
* bf16 (CPU): oneDNN runs the matmul with bfloat16 operands and fp32 accumulation
  (AVX512_BF16 or AMX); MKL, which runs fp32 matmuls otherwise, has no such mode. The result
  and the weights stay fp32.
* tf32 (CUDA): tensor cores round the operands to 10 mantissa bits.

Metrics always run in ieee: a correlation read against a 0.95 threshold should not move with
the training arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from spec_ray.engine.specs.spec import check_matmul_precision


def _backends(device_type: str) -> list[object]:
    """The torch backend objects whose ``fp32_precision`` a device's matmuls and convolutions follow."""
    if device_type == "cuda":
        return [torch.backends.cuda.matmul, torch.backends.cudnn.conv]
    return [torch.backends.mkldnn.matmul, torch.backends.mkldnn.conv]


@contextmanager
def training(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the block's float32 matmuls and convolutions at ``precision`` on ``device``."""
    kind = torch.device(device).type
    check_matmul_precision(precision, kind)
    backends = _backends(kind)
    before = [b.fp32_precision for b in backends]
    try:
        for b in backends:
            b.fp32_precision = precision
        yield
    finally:
        for b, value in zip(backends, before):
            b.fp32_precision = value
