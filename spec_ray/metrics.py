"""Checkpoint metrics of a whole pack, computed batched on its device.

Axes: R runs (Rc in a chunk of runs), N samples, d input, m_l teacher width,
n_l student width, c outputs.

rho_jk (PROTOCOL "Metrics") is the Pearson correlation of post-ReLU activations over
a set: mean-subtracted, divided by the norm with 1e-10 under the root, so a constant
node correlates 0 with everything instead of giving NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spec_ray.network import Network, fanout_norms, forward, slice_runs
from spec_ray.pack import Pack, train_metric_steps
from spec_ray.packed import PackData, PackState

# Bytes of activations per run chunk: small temporaries stay in reused heap memory and
# in cache instead of fresh page-faulting mmaps (measured 1.9x faster than 1 GiB chunks).
MEMORY_BUDGET = 1 << 25


class Checkpoint(NamedTuple):
    """Metrics of every run of a pack at one step; tensors on the pack's device."""

    step: int
    """SGD steps taken."""
    eval_loss: Tensor
    """(R,) MSE objective on the evaluation set."""
    train_loss: Tensor | None
    """(R,) MSE objective on the whole training set (None off the train-metric schedule)."""
    grad_norm: Tensor | None
    """(R,) norm of the full-batch training gradient over all parameters."""
    eval_corr: list[Tensor]
    """Per hidden layer, (R, m_l, n_l) teacher x student correlation on the eval set."""
    train_corr: list[Tensor] | None
    """Per hidden layer, (R, m_l, n_l) correlation on the training set."""
    teacher_fanout: list[Tensor]
    """Per hidden layer, (R, m_l) teacher fan-out norms."""
    student_fanout: list[Tensor]
    """Per hidden layer, (R, n_l) student fan-out norms."""
    diverged_step: Tensor
    """(R,) int64, -1 while the run is alive."""


def normalize(a: Tensor) -> Tensor:
    """Centre each node's activations over samples and scale to unit norm: (.., N, n)."""
    centred = a - a.mean(dim=-2, keepdim=True)  # (.., N, n)
    return centred / (centred.square().sum(dim=-2, keepdim=True) + 1e-10).sqrt()  # (.., N, n)


def correlation(teacher_act: Tensor, student_act: Tensor) -> Tensor:
    """rho between every teacher and student node: (.., N, m), (.., N, n) -> (.., m, n).

    The wide student side is centred once and divided after the matmul: three passes
    over it instead of seven (the checkpoint cost is dominated by such passes).
    """
    centred = student_act - student_act.mean(dim=-2, keepdim=True)  # (.., N, n)
    norm = (torch.linalg.vector_norm(centred, dim=-2).square() + 1e-10).sqrt()  # (.., n)
    return (normalize(teacher_act).transpose(-1, -2) @ centred) / norm.unsqueeze(-2)  # (.., m, n)


def mse(out: Tensor, target: Tensor) -> Tensor:
    """(1/2) mean over samples of the squared error summed over outputs: (.., N, c) -> (..)."""
    return 0.5 * (out - target).square().sum(dim=-1).mean(dim=-1)


def full_batch(student: Network, x: Tensor, t: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
    """Activations, MSE loss and full-batch gradient norm of every run on a whole set.

    x: (R, N, d), t: (R, N, c). Returns ([(R, N, n_l)], loss (R,), grad_norm (R,)).
    The gradient is the training objective's, over all weights and biases.
    """
    hidden, out = forward(student, x)  # [(R, N, n_l)], (R, N, c)
    n = x.shape[-2]
    err = out.sub_(t)  # (R, N, c)
    loss = 0.5 * torch.linalg.vector_norm(err, dim=(1, 2)).square() / n  # (R,)
    g = err.div_(n)  # (R, N, c) dLoss/dy
    acts = [x, *hidden]
    sq = torch.zeros_like(loss)  # (R,)
    for layer in range(len(student.weights) - 1, -1, -1):
        a = acts[layer]  # (R, N, n_{l-1})
        sq += torch.linalg.vector_norm(g.transpose(1, 2) @ a, dim=(1, 2)).square()  # weights
        sq += torch.linalg.vector_norm(g.sum(dim=1), dim=1).square()  # biases
        if layer:
            g = torch.ops.aten.threshold_backward(g @ student.weights[layer], a, 0)  # (R, N, n_{l-1})
    return hidden, loss, sq.sqrt()


def _chunk_size(pack: Pack, n_samples: int) -> int:
    spec = pack.spec
    per_run = n_samples * (
        spec.data.d + 3 * sum(spec.student_widths) + 2 * sum(spec.teacher.widths) + 2 * spec.teacher.c
    )
    return max(1, min(pack.size, MEMORY_BUDGET // (per_run * pack.dtype.itemsize)))


@torch.no_grad()
def measure(pack: Pack, data: PackData, state: PackState) -> Checkpoint:
    """All checkpoint metrics of every run of the pack at ``state`` (train-set ones on schedule)."""
    k = pack.group_size
    with_train = state.step in train_metric_steps(pack.spec)
    eval_loss, train_loss, grad_norm = [], [], []
    eval_corr: list[list[Tensor]] = []
    train_corr: list[list[Tensor]] = []
    size = _chunk_size(pack, max(data.x_eval.shape[1], data.x_train.shape[1] if with_train else 0))
    for lo in range(0, pack.size, size):
        hi = min(pack.size, lo + size)
        groups = torch.arange(lo, hi, device=data.x_eval.device) // k  # (Rc,)
        teacher = slice_runs(data.teacher, lo, hi)
        student = slice_runs(state.student, lo, hi)
        x = data.x_eval.index_select(0, groups)  # (Rc, Ne, d)
        t_hidden, _ = forward(teacher, x)  # [(Rc, Ne, m_l)]
        s_hidden, out = forward(student, x)  # [(Rc, Ne, n_l)], (Rc, Ne, c)
        eval_loss.append(mse(out, data.y_eval[lo:hi]))  # (Rc,)
        eval_corr.append([correlation(t, s) for t, s in zip(t_hidden, s_hidden)])
        if with_train:
            x = data.x_train[..., :-1].index_select(0, groups)  # (Rc, N, d), ones column dropped
            t_hidden, _ = forward(teacher, x)  # [(Rc, N, m_l)]
            s_hidden, loss, gnorm = full_batch(student, x, data.y_train[lo:hi])
            train_loss.append(loss)  # (Rc,)
            grad_norm.append(gnorm)  # (Rc,)
            train_corr.append([correlation(t, s) for t, s in zip(t_hidden, s_hidden)])
    layers = range(pack.spec.teacher.depth)
    return Checkpoint(
        step=state.step,
        eval_loss=torch.cat(eval_loss),  # (R,)
        train_loss=torch.cat(train_loss) if with_train else None,  # (R,)
        grad_norm=torch.cat(grad_norm) if with_train else None,  # (R,)
        eval_corr=[torch.cat([c[i] for c in eval_corr]) for i in layers],  # [(R, m_l, n_l)]
        train_corr=[torch.cat([c[i] for c in train_corr]) for i in layers] if with_train else None,
        teacher_fanout=fanout_norms(data.teacher),  # [(R, m_l)]
        student_fanout=fanout_norms(state.student),  # [(R, n_l)]
        diverged_step=state.diverged_step.clone(),  # (R,)
    )
