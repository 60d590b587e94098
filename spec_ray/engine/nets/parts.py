"""Packed network parts: linear, 3x3 conv, BatchNorm and activation over the R runs of a pack.

Axes: R runs (Rc in a chunk), G groups of q runs that share inputs (Rc = Gc q), B samples,
d input, n_l width or channels of hidden layer l, S image side, H x W a conv output, c outputs.

One ``forward`` serves the general training step (train mode, under autograd), the
checkpoint metrics (eval mode) and the full-batch gradient of any network the spec
describes. Its backward is autograd's: this path trains what the hand-written fused step
(``steps.sgd_step``) does not, BatchNorm, convolutions and stateful optimizers, where a
measured batched-autograd step is about 1.5-2x the fused one, not 20x. Under plain SGD an
MLP's layers update inside their own backward (``_SGDMatmul``, as the fused step does), so no
weight-sized gradient is written and read again: a large BN MLP step went from 1.5x to 1.15x
the plain one (docs/performance.md).

Layout of a network's tensors (``unpack``):
* ``params``: every layer's weight with its bias as last column ``(R, n_l, fan_in+1)``
  (conv filters flattened in ``nn.Conv2d`` order, ``arch``), then, with affine BN, the BN
  weights ``(R, n_l)`` of every hidden layer and then their biases;
* ``buffers``: with BN, the running means ``(R, n_l)`` of every hidden layer, then the
  running variances, updated in place in train mode as ``nn.BatchNorm`` does.
Runs of a group share their inputs, so layer 1 is one matmul (or one grouped convolution)
per group, as in the fused step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from spec_ray.engine.nets.arch import BN_EPS, BN_MOMENTUM, KERNEL, Arch


class Net(NamedTuple):
    """Named views of a packed network's tensors."""

    layers: tuple[Tensor, ...]
    """(R, n_l, fan_in+1) per layer, output layer last."""
    bn_weight: tuple[Tensor | None, ...]
    """(R, n_l) per hidden layer, or None without affine BN."""
    bn_bias: tuple[Tensor | None, ...]
    """(R, n_l) per hidden layer, or None."""
    running_mean: tuple[Tensor, ...]
    """(R, n_l) per hidden layer with BN, else empty."""
    running_var: tuple[Tensor, ...]
    """(R, n_l) per hidden layer with BN, else empty."""


def unpack(arch: Arch, params: tuple[Tensor, ...], buffers: tuple[Tensor, ...]) -> Net:
    """Split the flat tensors of a network (module docstring) into named parts."""
    n = arch.depth + 1
    affine = arch.bn.present and arch.bn_affine and len(params) > n
    none = (None,) * arch.depth
    bn_w = params[n : n + arch.depth] if affine else none
    bn_b = params[n + arch.depth : n + 2 * arch.depth] if affine else none
    return Net(params[:n], bn_w, bn_b, buffers[: arch.bn_layers], buffers[arch.bn_layers :])


def init_bn(arch: Arch, runs: int, like: Tensor, affine: bool) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Fresh BN tensors as ``nn.BatchNorm`` makes them: (weights 1 and biases 0 when ``affine``,
    running means 0 and variances 1), [(R, n_l)] each."""
    if not arch.bn.present:
        return (), ()
    ones = [like.new_ones(runs, n) for n in arch.widths]
    zeros = [like.new_zeros(runs, n) for n in arch.widths]
    params = (*ones, *[z.clone() for z in zeros]) if affine else ()
    return params, (*zeros, *[o.clone() for o in ones])


class _SGDMatmul(torch.autograd.Function):
    """h1 W^T whose backward applies plain SGD to W in place: W -= (rate g)^T h1, the fused
    step's update, instead of returning W's gradient for a separate update pass. That pass
    (``optim.update``'s addcmul over every weight) was 22 % of a large BN MLP step (profiled)."""

    @staticmethod
    def forward(ctx, h1: Tensor, w: Tensor, rate: Tensor) -> Tensor:
        # h1: (P, B, n_in+1) with a ones column; w: (P, n_out, n_in+1); rate: (P, 1, n_out) lr per row
        ctx.save_for_backward(h1, w, rate)
        return torch.bmm(h1, w.transpose(1, 2))  # (P, B, n_out)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None, None]:
        h1, w, rate = ctx.saved_tensors
        grad_h1 = torch.bmm(g, w) if ctx.needs_input_grad[0] else None  # (P, B, n_in+1), before W moves
        w.baddbmm_((g * rate).transpose(1, 2), h1, alpha=-1.0)  # (P, n_out, n_in+1)
        return grad_h1, None, None


def _linear(h: Tensor, w: Tensor, rate: Tensor | None = None) -> Tensor:
    """(Rc, B, n_in) through (Rc, n_out, n_in+1) -> (Rc, B, n_out); ``rate`` (Rc, 1, 1): the
    backward applies plain SGD to w at that rate (``_SGDMatmul``) instead of returning its gradient.

    The input gets a ones column rather than the weight being sliced: autograd's backward of
    a slice zero-fills and copies a whole weight-sized gradient (a fifth of a BN MLP step,
    profiled), while that of a concatenation is a view.
    """
    ones = h.new_ones(1, 1, 1).expand(h.shape[0], h.shape[1], 1)  # (Rc, B, 1)
    h1 = torch.cat([h, ones], dim=2)  # (Rc, B, n_in+1)
    if rate is not None:
        return _SGDMatmul.apply(h1, w, rate)
    return torch.bmm(h1, w.transpose(1, 2))


def _conv(h: Tensor, w: Tensor, groups: int, c_in: int) -> Tensor:
    """(B, groups c_in, H, W) through per-run filters (Rc, C, c_in 9 + 1) -> (B, Rc C, H-2, W-2)."""
    rc, c_out = w.shape[:2]
    kernel = w[..., :-1].reshape(rc * c_out, c_in, KERNEL, KERNEL)  # (Rc C, c_in, 3, 3)
    if h.device.type == "cpu":  # oneDNN's channels-last kernels: a cnn-narrow step 7-13 % faster (measured)
        layout = torch.channels_last
        h, kernel = h.contiguous(memory_format=layout), kernel.contiguous(memory_format=layout)  # views if already
    return F.conv2d(h, kernel, w[..., -1].reshape(-1), groups=groups)


def _batchnorm(arch: Arch, net: Net, layer: int, h: Tensor, train: bool) -> Tensor:
    """BN of every run's nodes: batch statistics in train mode (updating the running ones), else
    the running ones. MLP h (Rc, B, n) is normalized as (B, Rc n); conv h is (B, Rc C, H, W)."""
    w, b = net.bn_weight[layer], net.bn_bias[layer]
    args = (
        net.running_mean[layer].view(-1),  # views: batch_norm updates the stored statistics
        net.running_var[layer].view(-1),
        None if w is None else w.reshape(-1),
        None if b is None else b.reshape(-1),
        train,
        BN_MOMENTUM,
        BN_EPS,
    )
    if arch.conv:
        return F.batch_norm(h, *args)  # (B, Rc C, H, W)
    rc, batch, n = h.shape
    flat = F.batch_norm(h.transpose(0, 1).reshape(batch, rc * n), *args)  # (B, Rc n)
    return flat.view(batch, rc, n).transpose(0, 1)  # (Rc, B, n)


def _block(arch: Arch, net: Net, layer: int, z: Tensor, train: bool) -> Tensor:
    """Activation and BN in the authors' order (``Model.forward``): the block's output ``hs``."""
    return arch.bn.block(lambda t: arch.activation.forward(arch.slope, t),
                         lambda t: _batchnorm(arch, net, layer, t, train), z)  # fmt: skip


def forward(
    arch: Arch,
    params: tuple[Tensor, ...],
    buffers: tuple[Tensor, ...],
    x: Tensor,
    q: int,
    train: bool = False,
    sgd_rate: Tensor | None = None,
) -> tuple[list[Tensor], Tensor]:
    """Hidden blocks' outputs and the network outputs of Rc = Gc q runs.

    x: (Gc, B, d+1) each group's inputs with a ones column; runs are group-major. Returns
    ([MLP (Rc, B, n_l) | conv (B, Rc C_l, H, W)], (Rc, B, c)); ``nodes`` views a hidden one
    per node. In train mode BN uses batch statistics and updates ``buffers`` in place.
    ``sgd_rate`` (Rc,), an MLP only: the backward applies plain SGD to every layer at these
    rates, in place, and returns no layer gradients (``_SGDMatmul``).
    """
    net = unpack(arch, params, buffers)
    rate = None if sgd_rate is None else sgd_rate.view(-1, 1, 1)  # (Rc, 1, 1)
    g_count, batch, d1 = x.shape
    w = net.layers[0]  # (Rc, n1, fan_in+1)
    rc, n1 = w.shape[:2]
    if arch.conv:
        side, c_in = arch.image_size, arch.channels
        image = x[..., :-1].reshape(g_count, batch, c_in, side, side).transpose(0, 1)  # (B, Gc, C, S, S)
        z = _conv(image.reshape(batch, g_count * c_in, side, side), w, g_count, c_in)  # (B, Rc C1, S-2, S-2)
    elif rate is not None:  # the group's runs share x: one matmul per group, each row at its run's rate
        group_rate = rate.view(g_count, 1, q, 1).expand(g_count, 1, q, n1).reshape(g_count, 1, q * n1)
        z = _SGDMatmul.apply(x, w.reshape(g_count, q * n1, d1), group_rate)  # (Gc, B, q n1)
        z = z.view(g_count, batch, q, n1).transpose(1, 2).reshape(rc, batch, n1)  # (Rc, B, n1)
    else:
        z = torch.bmm(x, w.reshape(g_count, q * n1, d1).transpose(1, 2))  # (Gc, B, q n1)
        z = z.view(g_count, batch, q, n1).transpose(1, 2).reshape(rc, batch, n1)  # (Rc, B, n1)
    hidden = [_block(arch, net, 0, z, train)]
    for layer in range(1, arch.depth):
        h, w = hidden[-1], net.layers[layer]  # .., (Rc, n_l, fan_in+1)
        z = _conv(h, w, rc, arch.widths[layer - 1]) if arch.conv else _linear(h, w, rate)
        hidden.append(_block(arch, net, layer, z, train))
    h = hidden[-1]
    if arch.conv:
        h = h.reshape(batch, rc, math.prod(h.shape[1:]) // rc).transpose(0, 1)  # (Rc, B, C H W), per run
    return hidden, _linear(h, net.layers[-1], rate)  # (Rc, B, c)


def nodes(arch: Arch, layer: int, h: Tensor) -> Tensor:
    """Hidden layer ``layer``'s block output per node: MLP (Rc, B, n); conv channels over
    samples and positions, (B, Rc C, H, W) -> (Rc, B H W, C), as the authors' correlations take them."""
    if not arch.conv:
        return h
    batch, rc_c, height, width = h.shape
    c = arch.widths[layer]
    per_run = h.reshape(batch, rc_c // c, c, height * width)  # (B, Rc, C, P)
    return per_run.permute(1, 0, 3, 2).reshape(rc_c // c, batch * height * width, c)  # (Rc, B P, C)


def gates(arch: Arch, params: tuple[Tensor, ...], buffers: tuple[Tensor, ...], x: Tensor) -> list[Tensor]:
    """f'_j(x) of every hidden node of an MLP in eval mode, the derivative of the activation at
    its input (after BN when BN comes first): x (R, N, d+1), each run's own inputs -> [(R, N, n_l)]."""
    net = unpack(arch, params, buffers)
    h, out = x[..., :-1], []  # (R, N, d)
    for layer in range(arch.depth):
        z = _linear(h, net.layers[layer])  # (R, N, n_l)
        if arch.bn.before:
            z = _batchnorm(arch, net, layer, z, False)
        a = arch.activation.forward(arch.slope, z)  # (R, N, n_l)
        out.append(arch.activation.backward(arch.slope, torch.ones_like(a), a))  # (R, N, n_l)
        h = _batchnorm(arch, net, layer, a, False) if arch.bn.after else a
    return out
