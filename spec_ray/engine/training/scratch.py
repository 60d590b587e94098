"""Scratch tensors reused across the chunks of a loop instead of allocated afresh.

On CPU a fresh multi-MB tensor is page-faulted in again on most allocations (glibc hands
large blocks back to the system): 25 minor faults a step and 10 % of a multi-1 training
step, and half of a multi-10 eval checkpoint in one profile (docs/performance.md).
"""

from __future__ import annotations

import math

from torch import Tensor


class Workspace:
    """Named buffers, each grown to the largest shape asked of it and handed out as views."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, like: Tensor, *shape: int, ones_column: bool = False) -> Tensor:
        """A (*shape) tensor of ``like``'s dtype and device under ``name``.

        Shapes that differ only in the leading axis share one buffer and its layout, so a
        ``ones_column`` (the last column set to 1 for a folded bias) is written only when
        the buffer is allocated; callers never write that column.
        """
        key = f"{name}:{shape[1:]}"
        size = math.prod(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < size:
            buf = like.new_empty(size)
            if ones_column:
                buf.view(-1, shape[-1])[:, -1] = 1.0
            self._buffers[key] = buf
        return buf[:size].view(shape)
