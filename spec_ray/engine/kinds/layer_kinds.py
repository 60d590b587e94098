"""Each layer kind defined once, as a record: fully connected or 3x3 convolution, and what follows.

Axes: d input features, S image side, C channels, m_l width (or channels) of hidden layer l.

A conv stack is the authors' ``ModelConv``: 3x3 convolutions without padding (each shrinks the
image by 2), then a linear map to the outputs. A new kind is a record in ``LAYER_KINDS`` (read by
model.arch and --help) plus its packed and reference parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spec_ray.engine.kinds.registry import Registry

KERNEL = 3  # the authors' ModelConv: 3x3, no padding, stride 1


@dataclass(frozen=True)
class LayerKind:
    """The hidden layers of teacher and student."""

    name: str
    """The value of model.arch."""
    short: str
    """Its name in a figure: FC, CNN."""
    conv: bool
    """3x3 convolutions over an image (teacher.widths are channels), not fully connected layers."""

    def max_depth(self, image_size: int) -> float:
        """Hidden layers an S x S image holds: an unpadded 3x3 layer trims its side by 2, and the last must
        keep one pixel; fully connected layers: any number."""
        return (image_size - 1) // (KERNEL - 1) if self.conv else math.inf

    def fan_ins(self, d: int, widths: tuple[int, ...], image_size: int, channels: int = 1) -> tuple[int, ...]:
        """Inputs of each layer's node, output layer last: an MLP row, or a 3x3 conv filter over
        C_in channels (C_in x 9; the image's ``channels`` at layer 1); a conv stack's output layer sees
        every channel at every position."""
        if not self.conv:
            return (d, *widths)
        side = image_size - (KERNEL - 1) * len(widths)
        return (KERNEL**2 * channels, *(KERNEL**2 * w for w in widths[:-1]), widths[-1] * side * side)


MLP = LayerKind("mlp", "FC", conv=False)
CONV = LayerKind("conv", "CNN", conv=True)
LAYER_KINDS: Registry[LayerKind] = Registry("model.arch", MLP, CONV)
