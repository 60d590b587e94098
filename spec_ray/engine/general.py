"""The general training step: ``parts.forward`` under autograd, then a packed optimizer.

Axes: R runs, G groups of k runs sharing a minibatch, B batch, d input, c outputs.

It trains every network the fused step (``trainer.sgd_step``) does not: BatchNorm, conv
stacks, SGD with momentum or weight decay, and Adam. Runs are independent, so the
gradient of the sum of the runs' objectives is every run's own gradient. BatchNorm's
running statistics are updated in place by the forward pass; a diverged run's are put
back, with its optimizer state, so it freezes whole.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spec_ray.engine import losses, optim, parts
from spec_ray.engine.arch import Arch
from spec_ray.engine.spec import TrainSpec


def step(
    arch: Arch,
    train: TrainSpec,
    params: tuple[Tensor, ...],
    buffers: tuple[Tensor, ...],
    opt: tuple[Tensor, ...],
    x: Tensor,
    target: Tensor,
    lr: Tensor,
    alive: Tensor,
    count: int,
    stat: Tensor,
    any_dead: bool = False,
) -> None:
    """One step of every run, in place.

    x: (G, B, d+1) group minibatch; target: teacher outputs (G, k, B, c) (MSE, any strides)
    or labels (R, B) int64 (cross-entropy); lr: (R,) this epoch's rates, 0 for diverged runs;
    alive: (R,) bool; count: the 1-based step number (Adam's bias correction); stat: (R,)
    receives ||y - t|| (MSE) or the mean loss (CE), as the fused step reports it; any_dead:
    whether some run has diverged, known to the caller (asking ``alive`` would sync a GPU every step).
    """
    runs = params[0].shape[0]
    kept = [s.clone() for s in (*buffers, *opt)] if any_dead else None  # a diverged run's to put back
    leaves = tuple(p.detach().requires_grad_() for p in params)
    with torch.enable_grad():
        _, y = parts.forward(arch, leaves, buffers, x, runs // x.shape[0], train=True)  # (R, B, c)
        if train.loss == "ce":
            values = losses.cross_entropy(y, target)  # (R,)
            stat.copy_(values.detach())
        else:
            t = target.reshape(y.shape)  # (R, B, c)
            values = losses.objective(train.loss, y, t)  # (R,)
            torch.linalg.vector_norm((y - t).detach(), dim=(1, 2), out=stat)
        grads = torch.autograd.grad(values.sum(), leaves)
    optim.update(train, params, grads, opt, lr, count)
    if kept is not None:
        for s, old in zip((*buffers, *opt), kept):
            s.copy_(torch.where(alive.view(-1, *[1] * (s.dim() - 1)), s, old))
