"""Checkpoint metrics of a whole pack, computed batched on its device.

Axes: R runs (Rc in a chunk of runs), N samples, d input, m_l teacher width,
n_l student width, c outputs.

rho_jk (docs/protocol.md, "Metrics") is the Pearson correlation of post-ReLU activations over
a set: mean-subtracted, divided by the norm with 1e-10 under the root, so a constant
node correlates 0 with everything instead of giving NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spec_ray.engine import losses
from spec_ray.engine.network import Network, fanout_norms, forward, slice_runs
from spec_ray.engine.pack import Pack, train_metric_steps
from spec_ray.engine.trainer import PackData, PackState, init_state
from spec_ray.storage import schema as S

# Bytes of activations per run chunk. CPU: small temporaries stay in reused heap memory and
# in cache instead of fresh page-faulting mmaps (measured 1.9x faster than 1 GiB chunks).
# CUDA: one run of the two-layer protocol alone is 34 MB, so the CPU budget made one chunk
# per run and a 192-run checkpoint took 1.8-3.8 s on an H100 (docs/performance.md).
MEMORY_BUDGET = {"cpu": 1 << 25, "cuda": 1 << 31}


class Checkpoint(NamedTuple):
    """Metrics of every run of a pack at one step; tensors on the pack's device."""

    step: int
    """SGD steps taken."""
    eval_loss: Tensor
    """(R,) loss on the evaluation set, in ``losses.UNITS``."""
    train_loss: Tensor | None
    """(R,) loss on the whole training set, same unit (None off the train-metric schedule)."""
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
    eval_accuracy: Tensor | None
    """(R,) fraction of eval samples whose argmax matches the teacher's (cross-entropy only)."""
    init_rank: list[Tensor]
    """Per hidden layer, (R, m_l): rank at init of each teacher node's current best student
    among all students by correlation with that teacher, scaled to [0, 1] (Luck Matters)."""


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
    # A product and a sum over samples: 6x faster than vector_norm over a strided axis (measured).
    norm = ((centred * centred).sum(dim=-2) + 1e-10).sqrt()  # (.., n)
    return (normalize(teacher_act).transpose(-1, -2) @ centred) / norm.unsqueeze(-2)  # (.., m, n)


def full_batch(student: Network, x: Tensor, t: Tensor, loss: str = "mse") -> tuple[list[Tensor], Tensor, Tensor]:
    """Activations, reported loss and full-batch gradient norm of every run on a whole set.

    x: (R, N, d), t: (R, N, c) teacher outputs. Returns ([(R, N, n_l)], loss (R,) in
    ``losses.UNITS``, grad_norm (R,)). The gradient is the SGD objective's, over all
    weights and biases.
    """
    hidden, out = forward(student, x)  # [(R, N, n_l)], (R, N, c)
    n, c = x.shape[-2], t.shape[-1]
    value = losses.reported(loss, out, t)  # (R,)
    g = losses.residual_(loss, out, t).mul_(losses.grad_scale(loss, n, c))  # (R, N, c) dObjective/dy
    acts = [x, *hidden]
    sq = torch.zeros_like(value)  # (R,)
    for layer in range(len(student.weights) - 1, -1, -1):
        a = acts[layer]  # (R, N, n_{l-1})
        sq += torch.linalg.vector_norm(g.transpose(1, 2) @ a, dim=(1, 2)).square()  # weights
        sq += torch.linalg.vector_norm(g.sum(dim=1), dim=1).square()  # biases
        if layer:
            g = torch.ops.aten.threshold_backward(g @ student.weights[layer], a, 0)  # (R, N, n_{l-1})
    return hidden, value, sq.sqrt()


def _chunk_size(pack: Pack, n_samples: int) -> int:
    spec = pack.spec
    per_run = n_samples * (
        spec.data.d + 3 * sum(spec.student_widths) + 2 * sum(spec.teacher.widths) + 2 * spec.teacher.c
    )
    budget = MEMORY_BUDGET.get(pack.device.type, MEMORY_BUDGET["cpu"])
    return max(1, min(pack.size, budget // (per_run * pack.dtype.itemsize)))


def _runs(pack: Pack, data: PackData, lo: int, hi: int, which: str) -> tuple[Tensor, Tensor]:
    """Inputs (Rc, N, d) and teacher outputs (Rc, N, c) of runs lo..hi-1 on the eval or train set."""
    if hi - lo == 1:  # one run (CPU chunks of large sets): a view of its group's inputs, no copy
        g = lo // pack.group_size
        x = data.x_eval[g : g + 1] if which == "eval" else data.x_train[g : g + 1, :, :-1]  # (1, N, d)
        return x, (data.y_eval if which == "eval" else data.y_train)[lo:hi]
    groups = torch.arange(lo, hi, device=data.x_eval.device) // pack.group_size  # (Rc,)
    if which == "eval":
        return data.x_eval.index_select(0, groups), data.y_eval[lo:hi]
    return data.x_train[..., :-1].index_select(0, groups), data.y_train[lo:hi]  # ones column dropped


@torch.no_grad()
def init_correlations(pack: Pack, data: PackData) -> list[Tensor]:
    """Teacher x student correlations of the initial students on the eval set: [(R, m_l, n_l)].

    Recomputed from the deterministic init, so a resumed trial ranks exactly as a fresh one.
    """
    return measure(pack, data, init_state(pack), init_corr=[], with_train=False).eval_corr


def ranks(init_corr: Tensor, corr: Tensor) -> Tensor:
    """Rank at init of each teacher node's current best student, scaled to [0, 1]: (R, m)."""
    best = corr.argmax(dim=2, keepdim=True)  # (R, m, 1)
    above = (init_corr > init_corr.gather(2, best)).sum(dim=2)  # (R, m) students ranked higher
    return above.to(corr.dtype) / max(1, corr.shape[2] - 1)


@torch.no_grad()
def measure(
    pack: Pack, data: PackData, state: PackState, init_corr: list[Tensor] | None = None, with_train: bool | None = None
) -> Checkpoint:
    """All checkpoint metrics of every run of the pack at ``state`` (train-set ones on schedule)."""
    spec = pack.spec
    loss = spec.train.loss
    if with_train is None:
        with_train = state.step in train_metric_steps(spec) and spec.data.n_train is not None
    eval_loss, train_loss, grad_norm, accuracy = [], [], [], []
    eval_corr: list[list[Tensor]] = []
    train_corr: list[list[Tensor]] = []
    size = _chunk_size(pack, max(data.x_eval.shape[1], data.x_train.shape[1] if with_train else 0))
    for lo in range(0, pack.size, size):
        hi = min(pack.size, lo + size)
        teacher = slice_runs(data.teacher, lo, hi)
        student = slice_runs(state.student, lo, hi)
        x, t = _runs(pack, data, lo, hi, "eval")  # (Rc, Ne, d), (Rc, Ne, c)
        t_hidden, _ = forward(teacher, x, output=False)  # [(Rc, Ne, m_l)]: its outputs are data.y_eval
        s_hidden, out = forward(student, x)  # [(Rc, Ne, n_l)], (Rc, Ne, c)
        eval_loss.append(losses.reported(loss, out, t))  # (Rc,)
        if loss == "ce":
            accuracy.append((out.argmax(dim=-1) == t.argmax(dim=-1)).to(out.dtype).mean(dim=-1))  # (Rc,)
        eval_corr.append([correlation(a, b) for a, b in zip(t_hidden, s_hidden)])
        if with_train:
            x, t = _runs(pack, data, lo, hi, "train")  # (Rc, N, d), (Rc, N, c)
            t_hidden, _ = forward(teacher, x, output=False)  # [(Rc, N, m_l)]
            s_hidden, value, gnorm = full_batch(student, x, t, loss)
            train_loss.append(value)  # (Rc,)
            grad_norm.append(gnorm)  # (Rc,)
            train_corr.append([correlation(a, b) for a, b in zip(t_hidden, s_hidden)])
    layers = range(spec.teacher.depth)
    corr = [torch.cat([c[i] for c in eval_corr]) for i in layers]  # [(R, m_l, n_l)]
    init_corr = init_correlations(pack, data) if init_corr is None else init_corr
    return Checkpoint(
        step=state.step,
        eval_loss=torch.cat(eval_loss),  # (R,)
        train_loss=torch.cat(train_loss) if with_train else None,  # (R,)
        grad_norm=torch.cat(grad_norm) if with_train else None,  # (R,)
        eval_corr=corr,
        train_corr=[torch.cat([c[i] for c in train_corr]) for i in layers] if with_train else None,
        teacher_fanout=fanout_norms(data.teacher),  # [(R, m_l)]
        student_fanout=fanout_norms(state.student),  # [(R, n_l)]
        diverged_step=state.diverged_step.clone(),  # (R,)
        eval_accuracy=torch.cat(accuracy) if loss == "ce" else None,  # (R,)
        init_rank=[ranks(i, c) for i, c in zip(init_corr, corr)] if init_corr else [],  # [(R, m_l)]
    )


def success(best, threshold: float):
    """A teacher node is recovered when its best correlation exceeds the threshold (docs/protocol.md)."""
    return best > threshold


def rho_mean(best):
    """Mean over teacher nodes (the last axis) of their best correlation."""
    return best.mean(-1)


def teacher_columns(ckpt: Checkpoint, layer: int, threshold: float) -> dict[str, Tensor]:
    """Every metric column of ``teacher_nodes`` (``schema.METRICS``) for one hidden layer: {name: (R, m_l)}."""
    corr = ckpt.eval_corr[layer]  # (R, m, n)
    best, arg = corr.max(dim=2)  # (R, m)
    nan = torch.full_like(best, float("nan"))  # (R, m)
    return {
        S.BEST_CORR: best,
        S.BEST_STUDENT: arg,
        S.SUCCESS: success(best, threshold),
        S.FANOUT_NORM: ckpt.teacher_fanout[layer],
        S.BEST_CORR_TRAIN: nan if ckpt.train_corr is None else ckpt.train_corr[layer].amax(dim=2),
        S.INIT_RANK: ckpt.init_rank[layer] if ckpt.init_rank else nan,
    }


def student_columns(ckpt: Checkpoint, layer: int) -> dict[str, Tensor]:
    """Every metric column of ``student_nodes`` for one hidden layer: {name: (R, n_l)}."""
    corr = ckpt.eval_corr[layer]  # (R, m, n)
    best, arg = corr.max(dim=1)  # (R, n)
    return {
        S.BEST_CORR: best,
        S.BEST_TEACHER: arg,
        S.FANOUT_NORM: ckpt.student_fanout[layer],
        S.BEST_CORR_TRAIN: torch.full_like(best, float("nan")) if ckpt.train_corr is None
        else ckpt.train_corr[layer].amax(dim=1),
    }  # fmt: skip


def scalar_columns(ckpt: Checkpoint) -> dict[str, Tensor]:
    """Every metric column of ``scalars``: {name: (R,)}."""
    nan = torch.full_like(ckpt.eval_loss, float("nan"))  # (R,)
    return {
        S.TRAIN_LOSS: nan if ckpt.train_loss is None else ckpt.train_loss,
        S.EVAL_LOSS: ckpt.eval_loss,
        S.RHO_MEAN: rho_mean(ckpt.eval_corr[0].amax(dim=2)),
        S.GRAD_NORM: nan if ckpt.grad_norm is None else ckpt.grad_norm,
        S.DIVERGED: ckpt.diverged_step >= 0,
        S.EVAL_ACCURACY: nan if ckpt.eval_accuracy is None else ckpt.eval_accuracy,
        S.MEAN_RANK: ckpt.init_rank[0].mean(dim=1) if ckpt.init_rank else nan,
    }
