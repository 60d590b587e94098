"""The general training step: ``parts.forward`` under autograd, then a packed optimizer.

Axes: R runs, G groups of k runs sharing a minibatch, B batch, d input, c outputs.

It trains every network the fused step (``steps.sgd_step``) does not: BatchNorm, conv
stacks, SGD with momentum or weight decay, and Adam. Under plain SGD an MLP's layers are
updated inside the backward (``parts._SGDMatmul``); the optimizer then moves only the BN
weights and biases. Runs are independent, so the
gradient of the sum of the runs' objectives is every run's own gradient. BatchNorm's
running statistics are updated in place by the forward pass; a diverged run's are put
back, with its optimizer state, so it freezes whole.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spec_ray.engine.kinds import optim
from spec_ray.engine.nets import parts
from spec_ray.engine.nets.arch import Arch
from spec_ray.engine.specs.spec import TrainSpec


class Tensors(NamedTuple):
    """A pack's trained tensors, updated in place by a step."""

    params: tuple[Tensor, ...]
    """Layers with the bias as last column (R, n_l, fan_in+1), then affine BN weights and biases (R, n_l)."""
    buffers: tuple[Tensor, ...] = ()
    """BN running means, then variances, (R, n_l) per hidden layer."""
    opt: tuple[Tensor, ...] = ()
    """Optimizer state shaped like params (``optim``)."""


class Batch(NamedTuple):
    """One step's minibatch, and what the step writes for the divergence check."""

    x: Tensor
    """(G, B, d+1) group minibatch with a ones column."""
    target: Tensor
    """Teacher outputs (G, k, B, c) (MSE, any strides) or labels (R, B) int64 (cross-entropy)."""
    stat: Tensor
    """(R,) receives ||y - t|| (MSE) or the mean loss (CE)."""
    alive: Tensor
    """(R,) bool: runs not diverged."""
    any_dead: bool = False
    """Some run has diverged, known to the caller (asking ``alive`` would sync a GPU every step)."""


def step(arch: Arch, train: TrainSpec, tensors: Tensors, batch: Batch, lr: Tensor, count: int) -> None:
    """One step of every run, in place: lr (R,) this epoch's rates, 0 for diverged runs; count the
    1-based step number (Adam's bias correction)."""
    params, buffers, opt = tensors
    x, target, stat, alive, any_dead = batch
    runs = params[0].shape[0]
    kept = [s.clone() for s in (*buffers, *opt)] if any_dead else None  # a diverged run's to put back
    leaves = tuple(p.detach().requires_grad_() for p in params)
    # Plain SGD on an MLP: each layer's backward updates it in place (parts._SGDMatmul); autograd
    # returns only the BN parameters' gradients.
    in_backward = train.plain_sgd and not arch.conv
    layers = arch.depth + 1
    with torch.enable_grad():
        _, y = parts.forward(arch, leaves, buffers, x, runs // x.shape[0], train=True,
                             sgd_rate=lr if in_backward else None)  # fmt: skip  # (R, B, c)
        values = train.loss_kind.step_values(y, target, stat)  # (R,)
        if in_backward:
            values.sum().backward()  # the layers move here; the BN weights and biases get .grad
            grads = tuple(leaf.grad for leaf in leaves[layers:])
        else:
            grads = torch.autograd.grad(values.sum(), leaves)
    if in_backward:
        if len(params) > layers:
            optim.update(train, params[layers:], grads, opt, lr, count)
    else:
        optim.update(train, params, grads, opt, lr, count)
    if kept is not None:
        for s, old in zip((*buffers, *opt), kept):
            s.copy_(torch.where(alive.view(-1, *[1] * (s.dim() - 1)), s, old))
