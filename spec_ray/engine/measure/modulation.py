"""The top-down modulation beta* and H* of Luck Matters (sec. 5, eqs. 4-5, fig. 16), per run.

Axes: R runs, N samples (Nc in a chunk), n_l student width, m_l teacher width, c outputs.

The gradient a student node j of hidden layer l receives from the teacher's signal is
f'_j(x) sum_j° beta*_jj°(x) f_j°(x) (eq. 4). At the top hidden layer beta*(x) = W^T W*
(the output layers, no ReLU above: H = I there); below, eq. 5 recurses through the layer above:
  H*_l(x) = f'_s,l(x) o beta*_l(x) o f'_t,l(x)   (student gates on rows, teacher gates on columns)
  beta*_{l-1}(x) = W_l^T H*_l(x) W*_l.
Both are averaged over the evaluation set, as the authors' ``compute_Hs`` (recon_multilayer.py)
averages them over its batch. As there, BN enters only through the gates (its Jacobian is not
chained); the bias's augmented row and column are dropped, which leaves the node block exact,
since the augmented weight's last row is (0, ..., 0, 1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spec_ray.engine.nets import parts
from spec_ray.engine.nets.arch import Arch

CHUNK_ELEMENTS = 1 << 24
"""Per-sample H entries held at once (64 MiB in float32): bounds a large FC's memory."""


class Modulation(NamedTuple):
    """One hidden layer's modulation, averaged over samples."""

    beta: Tensor
    """(R, n_l, m_l) E_x beta*_jj°(x): student node j (rows) x teacher node j° (columns)."""
    h: Tensor
    """(R, n_l, m_l) E_x H*_jj°(x) = E_x f'_j beta*_jj° f'_j°."""


@torch.no_grad()
def modulation(
    student: Arch,
    student_params: tuple[Tensor, ...],
    student_buffers: tuple[Tensor, ...],
    teacher: Arch,
    teacher_params: tuple[Tensor, ...],
    teacher_buffers: tuple[Tensor, ...],
    x: Tensor,
) -> list[Modulation]:
    """beta* and H* of every hidden layer, lowest first, for R runs on their inputs x (R, N, d+1)."""
    g_s = parts.gates(student, student_params, student_buffers, x)  # [(R, N, n_l)]
    g_t = parts.gates(teacher, teacher_params, teacher_buffers, x)  # [(R, N, m_l)]
    w_s = [w[..., :-1] for w in student_params[: student.depth + 1]]  # [(R, n_l, n_{l-1})], output last
    w_t = [w[..., :-1] for w in teacher_params[: teacher.depth + 1]]  # [(R, m_l, m_{l-1})]
    runs, samples = x.shape[:2]
    top = w_s[-1].transpose(1, 2) @ w_t[-1]  # (R, n_L, m_L): beta* of the top hidden layer, any x
    sums = [[torch.zeros_like(top[:, :1, :1].expand(runs, n, m)) for n, m in zip(student.widths, teacher.widths)]
            for _ in range(2)]  # fmt: skip
    step = max(1, CHUNK_ELEMENTS // max(n * m for n, m in zip(student.widths, teacher.widths)))
    for r in range(runs):
        for lo in range(0, samples, step):
            hi = min(samples, lo + step)
            beta = top[r].expand(hi - lo, *top.shape[1:])  # (Nc, n_L, m_L)
            for layer in reversed(range(student.depth)):
                h = g_s[layer][r, lo:hi, :, None] * beta * g_t[layer][r, lo:hi, None, :]  # (Nc, n_l, m_l)
                sums[0][layer][r] += beta.sum(0)
                sums[1][layer][r] += h.sum(0)
                if layer:
                    beta = w_s[layer][r].T @ h @ w_t[layer][r]  # (Nc, n_{l-1}, m_{l-1})
    return [Modulation(b / samples, h / samples) for b, h in zip(*sums)]
