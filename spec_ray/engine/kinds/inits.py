"""Each student initialisation defined once, as a record: how a layer's weights and biases are drawn.

Axes: n_l rows (nodes) of a layer, f its fan-in. A new initialisation is a record in ``INITS`` (read
by student.init and --help); it draws from the run's own stream (``inputs.construct.init_student``),
so its draws must keep their order for stored runs to replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from spec_ray.engine.kinds.registry import Registry

if TYPE_CHECKING:
    from torch import Generator, Tensor

    from spec_ray.engine.specs.sections import StudentSpec


@dataclass(frozen=True)
class Init:
    """A student initialisation."""

    name: str
    """The value of student.init."""

    def draw(self, student: StudentSpec, gen: Generator, rows: int, cols: int) -> tuple[Tensor, Tensor]:
        """One layer's float64 weights (rows, cols) and biases (rows,), drawn from ``gen``."""
        raise NotImplementedError


@dataclass(frozen=True)
class _Gaussian(Init):
    def draw(self, student: StudentSpec, gen: Generator, rows: int, cols: int) -> tuple[Tensor, Tensor]:
        import torch

        w = torch.randn(rows, cols, generator=gen, dtype=torch.float64) * student.init_std  # (n_l, f)
        return w, torch.zeros(rows, dtype=torch.float64)  # (n_l,)


@dataclass(frozen=True)
class _Torch(Init):
    def draw(self, student: StudentSpec, gen: Generator, rows: int, cols: int) -> tuple[Tensor, Tensor]:
        import torch

        # nn.Linear's default (kaiming_uniform with a=sqrt(5)): U[-1/sqrt(fan_in), 1/sqrt(fan_in)].
        bound = student.init_scale / cols**0.5
        w = (torch.rand(rows, cols, generator=gen, dtype=torch.float64) * 2 - 1) * bound  # (n_l, f)
        return w, (torch.rand(rows, generator=gen, dtype=torch.float64) * 2 - 1) * bound  # (n_l,)


GAUSSIAN_INIT = _Gaussian("gaussian")
"""N(0, init_std^2) weights, zero biases (the two-layer protocol)."""
TORCH_INIT = _Torch("torch")
"""PyTorch's default Linear init times init_scale, weights then biases (the deep protocol)."""
INITS: Registry[Init] = Registry("student.init", GAUSSIAN_INIT, TORCH_INIT)
