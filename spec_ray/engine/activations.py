"""Each hidden nonlinearity defined once: forward, its backward from the output, its torch.nn module.

Axes: any; the functions act elementwise.

The backward is taken from the *output* a = act(z): for relu and leaky_relu (slope in
[0, 1)) a > 0 exactly where z > 0, so the fused trainer keeps only activations, never
pre-activations (one buffer a layer instead of two).

A new nonlinearity is this file alone: its name in ``NAMES`` (which the spec validates
against, and --help lists), then its forward, backward and module. torch is imported inside
the functions, so the spec (and the read side) can read ``NAMES`` without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor, nn

NAMES = ("relu", "leaky_relu", "linear")
"""Every hidden nonlinearity, as ``model``'s teacher_activation / student_activation name it."""


def forward(name: str, slope: float, z: Tensor, out: Tensor | None = None) -> Tensor:
    """act(z), written into ``out`` when given (any strides)."""
    import torch

    if name == "relu":
        return torch.clamp_min(z, 0, out=out) if out is not None else torch.relu(z)
    if name == "leaky_relu":
        a = torch.nn.functional.leaky_relu(z, slope)
        return out.copy_(a) if out is not None else a
    if name == "linear":
        return out.copy_(z) if out is not None else z
    raise ValueError(f"activation={name!r} is invalid: allowed " + ", ".join(NAMES))


def backward(name: str, slope: float, grad: Tensor, a: Tensor) -> Tensor:
    """dLoss/dz from dLoss/da and the output a = act(z): a new tensor (or ``grad`` for linear)."""
    import torch

    if name == "relu":
        return torch.ops.aten.threshold_backward(grad, a, 0)
    if name == "leaky_relu":
        return torch.ops.aten.leaky_relu_backward(grad, a, slope, True)
    return grad


def module(name: str, slope: float) -> nn.Module:
    """The torch.nn module of the reference trainer."""
    from torch import nn

    return {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(slope), "linear": nn.Identity}[name]()
