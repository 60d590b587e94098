"""Each optimizer defined once, as a record: torch.optim's update rule over the R runs of a pack,
and torch.optim's own class for the reference trainer.

Axes: R runs; a parameter is (R, ...).

The state is a flat tuple of tensors shaped like the parameters (SGD with momentum: one
momentum buffer each; Adam: the first moments, then the second moments), so checkpoints,
snapshots and the freezing of diverged runs treat it like the parameters. The update runs
in place for every run; ``general.step`` puts a diverged run's state back, so it freezes whole.

A new optimizer is this file alone: a record in ``OPTIMIZERS`` (which train.optimizer and --help
read). torch is imported inside the methods, so the spec can read the registry without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spec_ray.engine.kinds.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from spec_ray.engine.specs.sections import TrainSpec

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class Optimizer:
    """An optimizer as torch.optim defines it; ``train`` supplies momentum and weight decay."""

    name: str
    """The value of train.optimizer."""
    takes_momentum: bool
    """train.momentum applies (Adam's betas are fixed, so its momentum must be 0)."""
    plain_step: bool
    """Without momentum and weight decay its update is W -= lr g, which the hand-fused step and the
    in-backward update (``parts._SGDMatmul``) apply."""

    def state_count(self, train: TrainSpec, params: int) -> int:
        """Tensors of state per set of ``params`` tensors (the memory estimate counts them)."""
        raise NotImplementedError

    def init(self, train: TrainSpec, params: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Fresh state for ``params``: ``state_count`` tensors shaped like them, in their order."""
        import torch

        count = self.state_count(train, len(params))
        return tuple(torch.zeros_like(params[i % len(params)]) for i in range(count)) if params else ()

    def move_(self, train: TrainSpec, p: Tensor, g: Tensor, state: tuple[Tensor, ...], i: int, rate: Tensor,
              step: int) -> None:  # fmt: skip
        """Parameter ``i`` of ``state_count``'s sets, with gradient ``g`` (weight decay in it), one step at
        ``rate`` (R, 1, ..) in place; step: 1-based count."""
        raise NotImplementedError

    def reference(self, train: TrainSpec, params: object) -> torch.optim.Optimizer:
        """torch.optim's optimizer over a module's ``params`` with ``train``'s settings."""
        raise NotImplementedError


@dataclass(frozen=True)
class _SGD(Optimizer):
    def state_count(self, train: TrainSpec, params: int) -> int:
        return params if train.momentum > 0 else 0

    def move_(self, train: TrainSpec, p: Tensor, g: Tensor, state: tuple[Tensor, ...], i: int, rate: Tensor,
              step: int) -> None:  # fmt: skip
        if train.momentum > 0:
            g = state[i].mul_(train.momentum).add_(g)  # dampening 0, as torch.optim.SGD
        p.addcmul_(g, rate, value=-1.0)

    def reference(self, train: TrainSpec, params: object) -> torch.optim.Optimizer:
        import torch

        return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)


@dataclass(frozen=True)
class _Adam(Optimizer):
    def state_count(self, train: TrainSpec, params: int) -> int:
        return 2 * params  # first moments, then second moments

    def move_(self, train: TrainSpec, p: Tensor, g: Tensor, state: tuple[Tensor, ...], i: int, rate: Tensor,
              step: int) -> None:  # fmt: skip
        n = len(state) // 2
        m, v = state[i], state[n + i]
        b1, b2 = ADAM_BETAS
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v.sqrt() / math.sqrt(1 - b2**step)).add_(ADAM_EPS)
        p.addcdiv_(m, denom.div_(rate / (1 - b1**step)).neg_())  # a zero rate: -inf, m / -inf = -0

    def reference(self, train: TrainSpec, params: object) -> torch.optim.Optimizer:
        import torch

        return torch.optim.Adam(params, lr=train.lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=train.weight_decay)


SGD = _SGD("sgd", takes_momentum=True, plain_step=True)
"""torch.optim.SGD: momentum and dampening 0 unless train.momentum says."""
ADAM = _Adam("adam", takes_momentum=False, plain_step=False)
"""torch.optim.Adam with its default betas and eps."""
OPTIMIZERS: Registry[Optimizer] = Registry("train.optimizer", SGD, ADAM)


def init(train: TrainSpec, params: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Fresh optimizer state for ``params`` (empty for plain SGD)."""
    return train.optimizer_kind.init(train, params)


def state_count(train: TrainSpec, params: int) -> int:
    """Tensors of state per set of ``params`` tensors (the memory estimate counts them)."""
    return train.optimizer_kind.state_count(train, params)


def update(
    train: TrainSpec, params: tuple[Tensor, ...], grads: tuple[Tensor, ...], state: tuple[Tensor, ...], lr: Tensor,
    step: int,
) -> None:  # fmt: skip
    """One optimizer step of every run, in place; lr: (R,), 0 for a frozen run; step: 1-based count."""
    import torch

    kind = train.optimizer_kind
    with torch.no_grad():
        for i, (p, g) in enumerate(zip(params, grads)):
            rate = lr.view(-1, *([1] * (p.dim() - 1)))  # (R, 1, ..)
            if train.weight_decay:
                g = g.add(p, alpha=train.weight_decay)
            kind.move_(train, p, g, state, i, rate, step)
