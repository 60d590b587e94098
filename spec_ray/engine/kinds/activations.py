"""Each hidden nonlinearity defined once, as a record: forward, its backward from the output, its module.

Axes: any; the functions act elementwise.

The backward is taken from the *output* a = act(z): for relu and leaky_relu (slope in
[0, 1)) a > 0 exactly where z > 0, so the fused trainer keeps only activations, never
pre-activations (one buffer a layer instead of two).

A new nonlinearity is this file alone: a record in ``ACTIVATIONS`` (which the spec's
teacher.teacher_activation and student.student_activation validate against, and --help lists).
torch is imported inside the methods, so the spec (and the read side) can read the registry without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from spec_ray.engine.kinds.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor, nn


@dataclass(frozen=True)
class Activation:
    """A hidden nonlinearity; ``slope`` is model.leaky_slope, which only leaky_relu reads."""

    name: str
    """The value of teacher.teacher_activation and student.student_activation."""

    def forward(self, slope: float, z: Tensor, out: Tensor | None = None) -> Tensor:
        """act(z), written into ``out`` when given (any strides)."""
        raise NotImplementedError

    def backward(self, slope: float, grad: Tensor, a: Tensor) -> Tensor:
        """dLoss/dz from dLoss/da and the output a = act(z): a new tensor (or ``grad`` itself)."""
        raise NotImplementedError

    def module(self, slope: float) -> nn.Module:
        """The torch.nn module of the reference trainer."""
        raise NotImplementedError


@dataclass(frozen=True)
class ReLU(Activation):
    def forward(self, slope: float, z: Tensor, out: Tensor | None = None) -> Tensor:
        import torch

        return torch.clamp_min(z, 0, out=out) if out is not None else torch.relu(z)

    def backward(self, slope: float, grad: Tensor, a: Tensor) -> Tensor:
        import torch

        return torch.ops.aten.threshold_backward(grad, a, 0)

    def module(self, slope: float) -> nn.Module:
        from torch import nn

        return nn.ReLU()


@dataclass(frozen=True)
class LeakyReLU(Activation):
    def forward(self, slope: float, z: Tensor, out: Tensor | None = None) -> Tensor:
        import torch

        a = torch.nn.functional.leaky_relu(z, slope)
        return out.copy_(a) if out is not None else a

    def backward(self, slope: float, grad: Tensor, a: Tensor) -> Tensor:
        import torch

        return torch.ops.aten.leaky_relu_backward(grad, a, slope, True)

    def module(self, slope: float) -> nn.Module:
        from torch import nn

        return nn.LeakyReLU(slope)


@dataclass(frozen=True)
class Linear(Activation):
    def forward(self, slope: float, z: Tensor, out: Tensor | None = None) -> Tensor:
        return out.copy_(z) if out is not None else z

    def backward(self, slope: float, grad: Tensor, a: Tensor) -> Tensor:
        return grad

    def module(self, slope: float) -> nn.Module:
        from torch import nn

        return nn.Identity()


RELU = ReLU("relu")
"""The papers' nonlinearity: a network given without an ``Arch`` uses it."""
LEAKY_RELU = LeakyReLU("leaky_relu")
LINEAR = Linear("linear")
ACTIVATIONS: Registry[Activation] = Registry("activation", RELU, LEAKY_RELU, LINEAR)
