"""Networks as plain tensor records, single or stacked over runs.

Axes: R runs in a pack, N samples, d input, n_l width of hidden layer l, c outputs.
A single network has weights ``W_l (n_l, fan_in)`` (conv filters flattened, ``arch``); a
stacked one carries a leading R axis ``(R, n_l, fan_in)``. ``torch.matmul`` broadcasts, so
one ``forward`` serves both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spec_ray.engine.kinds.activations import RELU
from spec_ray.engine.nets import parts
from spec_ray.engine.nets.arch import Arch


class Network(NamedTuple):
    """Weights and biases, lowest layer first; the last pair is the output layer."""

    weights: tuple[Tensor, ...]
    """W_l: (n_l, n_{l-1}) or (R, n_l, n_{l-1}); W_0 takes the input."""
    biases: tuple[Tensor, ...]
    """b_l: (n_l,) or (R, n_l)."""

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.weights) - 1

    def to(self, dtype: torch.dtype, device: torch.device | str) -> Network:
        """Copy onto ``device`` in ``dtype``."""
        return Network(
            tuple(w.to(device=device, dtype=dtype) for w in self.weights),
            tuple(b.to(device=device, dtype=dtype) for b in self.biases),
        )

    def clone(self) -> Network:
        """Deep copy (training updates tensors in place)."""
        return Network(tuple(w.clone() for w in self.weights), tuple(b.clone() for b in self.biases))


def stack(nets: list[Network]) -> Network:
    """Stack single networks of equal shapes into one with a leading R axis."""
    depth = len(nets[0].weights)
    return Network(
        tuple(torch.stack([n.weights[i] for n in nets]) for i in range(depth)),  # (R, n_l, n_{l-1})
        tuple(torch.stack([n.biases[i] for n in nets]) for i in range(depth)),  # (R, n_l)
    )


def affine(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """h W^T + b with the bias fused into the matmul: (.., N, n_in) -> (.., N, n_out)."""
    if h.dim() == 2 and w.dim() == 2:
        return torch.addmm(b, h, w.T)  # (N, n_out)
    if h.dim() == 3 and w.dim() == 3:
        return torch.baddbmm(b.unsqueeze(-2), h, w.transpose(-1, -2))  # (R, N, n_out)
    return h @ w.transpose(-1, -2) + b.unsqueeze(-2)  # broadcast, e.g. (T, R, B, n_out)


def with_bias_column(net: Network) -> tuple[Tensor, ...]:
    """[W | b] per layer: (.., n_l, fan_in+1)."""
    return tuple(torch.cat([w, b.unsqueeze(-1)], dim=-1) for w, b in zip(net.weights, net.biases))


def fixed_buffers(arch: Arch, like: Tensor) -> tuple[Tensor, ...]:
    """A teacher's BN statistics: PyTorch's fresh ones (mean 0, variance 1), since the teacher
    is never trained and runs in eval mode (the authors' ``teacher.eval()``); [(R, n_l)]."""
    return parts.init_bn(arch, like.shape[0], like, affine=False)[1]


def forward(net: Network, x: Tensor, arch: Arch | None = None) -> tuple[list[Tensor], Tensor]:
    """Hidden blocks' outputs per node and the linear output, in eval mode.

    x: (N, d) or (R, N, d). Returns ([(.., N, n_l) per layer; conv: (.., N P_l, C_l)], (.., N, c)).
    ``arch`` None: a ReLU MLP.
    """
    if arch is not None and not arch.plain:
        return _forward_parts(net, x, arch)
    act = RELU if arch is None else arch.activation
    slope = 0.0 if arch is None else arch.slope
    hidden = []
    h = x  # (.., N, d)
    for w, b in zip(net.weights[:-1], net.biases[:-1]):
        h = act.forward(slope, affine(h, w, b))  # (.., N, n_l)
        hidden.append(h)
    return hidden, affine(h, net.weights[-1], net.biases[-1])  # (.., N, c)


def _forward_parts(net: Network, x: Tensor, arch: Arch) -> tuple[list[Tensor], Tensor]:
    """``forward`` through ``parts`` (conv, BN): every run its own group of one."""
    single = net.weights[0].dim() == 2
    params = with_bias_column(net)
    if single:
        params, x = tuple(p.unsqueeze(0) for p in params), x.unsqueeze(0)  # (1, ..)
    ones = torch.ones_like(x[..., :1])  # (R, N, 1)
    hidden, out = parts.forward(arch, params, fixed_buffers(arch, params[0]), torch.cat([x, ones], -1), 1)
    hidden = [parts.nodes(arch, layer, h) for layer, h in enumerate(hidden)]  # [(R, N P, C)]
    if single:
        return [h[0] for h in hidden], out[0]
    return hidden, out


def fanout_norms(net: Network, widths: tuple[int, ...] | None = None) -> list[Tensor]:
    """Norm of each hidden node's outgoing weights, bias excluded: [(.., n_l)].

    An MLP node's column of W_{l+1}; a conv channel's slice of the next filters or, below the
    output layer, its positions' columns. ``widths``: the hidden widths (needed for conv).
    """
    widths = widths or tuple(w.shape[-2] for w in net.weights[:-1])
    norms = []
    for w, n in zip(net.weights[1:], widths):
        per_node = w.unflatten(-1, (n, -1))  # (.., n_out, n_l, taps)
        norms.append(torch.linalg.vector_norm(per_node, dim=(-3, -1)))  # (.., n_l)
    return norms
