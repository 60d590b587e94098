"""ReLU networks as plain tensor records, single or stacked over runs.

Axes: R runs in a pack, N samples, d input, n_l width of hidden layer l, c outputs.
A single network has weights ``W_l (n_l, n_{l-1})``; a stacked one carries a leading
R axis ``(R, n_l, n_{l-1})``. ``torch.matmul`` broadcasts, so one ``forward`` serves both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


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


def slice_runs(net: Network, lo: int, hi: int) -> Network:
    """Runs lo..hi-1 of a stacked network (views, no copy)."""
    return Network(tuple(w[lo:hi] for w in net.weights), tuple(b[lo:hi] for b in net.biases))


def affine(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """h W^T + b with the bias fused into the matmul: (.., N, n_in) -> (.., N, n_out)."""
    if h.dim() == 2 and w.dim() == 2:
        return torch.addmm(b, h, w.T)  # (N, n_out)
    if h.dim() == 3 and w.dim() == 3:
        return torch.baddbmm(b.unsqueeze(-2), h, w.transpose(-1, -2))  # (R, N, n_out)
    return h @ w.transpose(-1, -2) + b.unsqueeze(-2)  # broadcast, e.g. (T, R, B, n_out)


def forward(net: Network, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """Post-ReLU activations of every hidden layer and the linear output.

    x: (N, d) or (R, N, d). Returns ([(.., N, n_l) per layer], (.., N, c)).
    """
    hidden = []
    h = x  # (.., N, d)
    for w, b in zip(net.weights[:-1], net.biases[:-1]):
        h = affine(h, w, b).clamp_min_(0)  # (.., N, n_l)
        hidden.append(h)
    return hidden, affine(h, net.weights[-1], net.biases[-1])  # (.., N, c)


def fanout_norms(net: Network) -> list[Tensor]:
    """Norm of each hidden node's outgoing weights, bias excluded: [(.., n_l)]."""
    return [w.norm(dim=-2) for w in net.weights[1:]]  # column norms of W_{l+1}
