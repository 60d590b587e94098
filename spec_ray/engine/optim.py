"""Packed optimizers, each with torch.optim's update rule, over the R runs of a pack.

Axes: R runs; a parameter is (R, ...).

The state is a flat tuple of tensors shaped like the parameters (SGD with momentum: one
momentum buffer each; Adam: the first moments, then the second moments), so checkpoints,
snapshots and the freezing of diverged runs treat it like the parameters. The update runs
in place for every run; ``general.step`` puts a diverged run's state back, so it freezes whole.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spec_ray.engine.spec import TrainSpec

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults
ADAM_EPS = 1e-8


def init(train: TrainSpec, params: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Fresh optimizer state for ``params`` (empty for plain SGD)."""
    if train.optimizer == "adam":
        return tuple(torch.zeros_like(p) for p in (*params, *params))
    if train.momentum > 0:
        return tuple(torch.zeros_like(p) for p in params)
    return ()


def state_count(train: TrainSpec, params: int) -> int:
    """Tensors of state per set of ``params`` tensors (the memory estimate counts them)."""
    return 2 * params if train.optimizer == "adam" else params if train.momentum > 0 else 0


@torch.no_grad()
def update(
    train: TrainSpec, params: tuple[Tensor, ...], grads: tuple[Tensor, ...], state: tuple[Tensor, ...], lr: Tensor,
    step: int,
) -> None:  # fmt: skip
    """One optimizer step of every run, in place; lr: (R,), 0 for a frozen run; step: 1-based count."""
    n = len(params)
    for i, (p, g) in enumerate(zip(params, grads)):
        rate = lr.view(-1, *([1] * (p.dim() - 1)))  # (R, 1, ..)
        if train.weight_decay:
            g = g.add(p, alpha=train.weight_decay)
        if train.optimizer == "adam":
            m, v = state[i], state[n + i]
            b1, b2 = ADAM_BETAS
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(1 - b2**step)).add_(ADAM_EPS)
            p.addcdiv_(m, denom.div_(rate / (1 - b1**step)).neg_())  # a zero rate: -inf, m / -inf = -0
        else:
            if train.momentum > 0:
                g = state[i].mul_(train.momentum).add_(g)
            p.addcmul_(g, rate, value=-1.0)
