"""Checkpoint metrics of a whole pack, computed batched on its device.

Axes: R runs (Rc in a chunk of runs), N samples, P positions of a conv layer, d input,
m_l teacher width, n_l student width, c outputs.

rho_jk (docs/protocol.md, "Metrics") is the Pearson correlation of the hidden blocks' outputs
(after the activation and, where the network has it, BN: the authors' ``hs``) over a set:
mean-subtracted, divided by the norm with 1e-10 under the root, so a constant node
correlates 0 with everything instead of giving NaN. A conv node is a channel, correlated
over samples and positions (the authors' utils_corrs.py). Networks run in eval mode, BN on
its running statistics, as the authors' ``get_stats`` takes them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spec_ray.engine.measure import names as N
from spec_ray.engine.measure import passes
from spec_ray.engine.measure.modulation import Modulation, modulation
from spec_ray.engine.measure.passes import WholeSet
from spec_ray.engine.nets import parts
from spec_ray.engine.nets.network import fanout_norms, fixed_buffers
from spec_ray.engine.training.pack import Pack, train_metric_steps
from spec_ray.engine.training.scratch import Workspace
from spec_ray.engine.training.trainer import PackData, PackState, init_state, run_targets


class Checkpoint(NamedTuple):
    """Metrics of every run of a pack at one step; tensors on the pack's device."""

    step: int
    """SGD steps taken."""
    eval_loss: Tensor
    """(R,) loss on the evaluation set, in the loss record's ``unit``."""
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
    student_in_norm: list[Tensor]
    """Per hidden layer, (R, n_l) norms of each student node's incoming weights and bias."""
    diverged_step: Tensor
    """(R,) int64, -1 while the run is alive."""
    eval_accuracy: Tensor | None
    """(R,) fraction of eval samples whose argmax matches the label: a real image set's class, else the
    teacher's argmax (losses on labels only); None otherwise."""
    init_rank: list[Tensor]
    """Per hidden layer, (R, m_l): rank at init of each teacher node's current best student
    among all students by correlation with that teacher, scaled to [0, 1] (Luck Matters)."""
    modulation: list[Modulation] | None = None
    """Per hidden layer, beta* and H* (R, n_l, m_l), at the first and last checkpoint of a run
    that keeps them (``checkpoint.keep_modulation``); else None."""


def normalize(a: Tensor) -> Tensor:
    """Centre each node's activations over samples and scale to unit norm: (.., N, n)."""
    centred = a - a.mean(dim=-2, keepdim=True)  # (.., N, n)
    return centred / (centred.square().sum(dim=-2, keepdim=True) + 1e-10).sqrt()  # (.., N, n)


def correlation(teacher_act: Tensor, student_act: Tensor) -> Tensor:
    """rho between every teacher and student node: (.., N, m), (.., N, n) -> (.., m, n)."""
    return passes.correlate(normalize(teacher_act), student_act, Workspace())


class EvalCache(NamedTuple):
    """What every checkpoint of a pack reuses, computed once per pack by ``prepare``."""

    teacher_params: tuple[Tensor, ...]
    """Teachers with the bias as last column, (R, m_l, fan_in+1)."""
    teacher_buffers: tuple[Tensor, ...]
    """Teachers' fixed BN statistics (``network.fixed_buffers``); empty without BN."""
    teacher_unit: list[Tensor]
    """Per hidden layer, the teachers' ``normalize``d eval activations, (R, N_eval, m_l):
    fixed, so no checkpoint recomputes them (a quarter of a multi-1 checkpoint, measured)."""
    init_corr: list[Tensor]
    """Per hidden layer, (R, m_l, n_l) eval correlations of the initial students."""
    work: Workspace
    """Scratch buffers of the pack's checkpoints."""


def _widths(pack: Pack) -> int:
    """Floats per sample and run a chunk holds at once: activations, temporaries, outputs."""
    s, t = pack.student_arch, pack.teacher_arch
    student = sum((n + 1) * p for n, p in zip(s.widths, s.positions))
    teacher = sum((m + 1) * p for m, p in zip(t.widths, t.positions))
    return 3 * student + 2 * teacher + 2 * pack.spec.teacher.c


def _chunk(
    net: WholeSet, lo: int, hi: int, output: bool = True
) -> tuple[list[Tensor], list[Tensor] | None, Tensor | None]:
    """Runs lo..hi-1 of ``net`` on its whole set, in eval mode: per-node outputs [(Rc, N P_l, n_l)], the
    plain passes' hidden buffers [(Rc, N, n_l+1)] (None through ``parts``) and the outputs (Rc, N, c)
    (the plain passes skip them unless ``output``)."""
    shape = net.arch
    if shape.plain:
        hidden, out = passes.forward(net, lo, hi, output)
        return [h[..., :-1] for h in hidden], hidden, out
    sliced = tuple(p[lo:hi] for p in net.params), tuple(b[lo:hi] for b in net.buffers)
    hidden, out = parts.forward(shape, *sliced, *passes.group_inputs(net.pack, net.x, lo, hi))
    return [parts.nodes(shape, layer, h) for layer, h in enumerate(hidden)], None, out


def measured(pack: Pack, per_node: list[Tensor]) -> list[Tensor]:
    """The teacher's measured nodes of each hidden layer, [(.., m_l)]: the first ``active_widths`` of the
    nodes it keeps (above a conv teacher pruned as the authors prune, its last layer keeps every
    channel, the active ones first; ``RunSpec.authors_last_layer``)."""
    return [a[..., :m] for a, m in zip(per_node, pack.spec.teacher.active_widths)]


@torch.no_grad()
def prepare(pack: Pack, data: PackData) -> EvalCache:
    """The teachers' normalized eval activations and the initial students' correlations.

    The init correlations are recomputed from the deterministic init, so a resumed trial
    ranks exactly as a fresh one.
    """
    teacher_params = tuple(torch.cat([w, b.unsqueeze(-1)], dim=-1) for w, b in zip(*data.teacher))
    shape = pack.teacher_arch
    buffers = fixed_buffers(shape, teacher_params[0])
    work = Workspace()
    unit: list[list[Tensor]] = []
    for lo, hi in passes.chunks(pack, data.x_eval.shape[1], _widths(pack)):
        acts, _, _ = _chunk(WholeSet(pack, shape, data.x_eval, teacher_params, buffers, work, "t"), lo, hi, False)
        unit.append([normalize(a) for a in measured(pack, acts)])  # [(Rc, Ne P, m_l)]
    teacher_unit = [torch.cat(layer) for layer in zip(*unit)]  # [(R, Ne P, m_l)]
    cache = EvalCache(teacher_params, buffers, teacher_unit, [], work)
    init = init_state(pack)
    return cache._replace(init_corr=_evaluate(pack, data, cache, init.params, init.buffers)[2])


def _evaluate(
    pack: Pack, data: PackData, cache: EvalCache, params: tuple[Tensor, ...], buffers: tuple[Tensor, ...]
) -> tuple[Tensor, Tensor | None, list[Tensor]]:
    """Eval loss (R,), accuracy (R,) (real image sets: of the true labels; else cross-entropy runs:
    of the teacher's argmax) and correlations [(R, m_l, n_l)]."""
    loss = pack.spec.train.loss_kind
    student = WholeSet(pack, pack.student_arch, data.x_eval, params, buffers, cache.work, "s")
    values, accuracy, corr = [], [], []
    for lo, hi in passes.chunks(pack, data.x_eval.shape[1], _widths(pack)):
        acts, _, out = _chunk(student, lo, hi)  # .., (Rc, Ne, c)
        t = data.y_eval[lo:hi]  # (Rc, Ne, c)
        if data.labels_eval is not None:  # a real image set: the true class labels
            truth = data.labels_eval.repeat_interleave(pack.group_size, dim=0)[lo:hi]  # (Rc, Ne)
            accuracy.append((out.argmax(dim=-1) == truth).to(out.dtype).mean(dim=-1))  # (Rc,)
        elif loss.labels:
            accuracy.append((out.argmax(dim=-1) == t.argmax(dim=-1)).to(out.dtype).mean(dim=-1))  # (Rc,)
        values.append(loss.reported_(out, t))  # (Rc,)
        corr.append([passes.correlate(u[lo:hi], a, cache.work) for u, a in zip(cache.teacher_unit, acts)])
    layers = [torch.cat(layer) for layer in zip(*corr)]  # [(R, m_l, n_l)]
    return torch.cat(values), torch.cat(accuracy) if accuracy else None, layers


def _train_set(
    pack: Pack, data: PackData, cache: EvalCache, params: tuple[Tensor, ...], buffers: tuple[Tensor, ...]
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Training-set loss (R,), full-batch gradient norm (R,) and correlations [(R, m_l, n_l)]."""
    loss = pack.spec.train.loss_kind
    student, teacher = pack.student_arch, pack.teacher_arch
    values, norms, corr = [], [], []
    x = data.x_train  # (G, N, d+1)
    for lo, hi in passes.chunks(pack, x.shape[1], _widths(pack)):
        t_params, t_buffers = cache.teacher_params, cache.teacher_buffers
        t_acts, _, _ = _chunk(WholeSet(pack, teacher, x, t_params, t_buffers, cache.work, "t"), lo, hi, False)
        net = WholeSet(pack, student, x, params, buffers, cache.work, "s")
        acts, hidden, out = _chunk(net, lo, hi)  # .., (Rc, N, c)
        t = run_targets(data.y_train, pack.group_size, lo, hi)  # (Rc, N, c)
        units = [normalize(a) for a in measured(pack, t_acts)]  # [(Rc, N P, m_l)]
        corr.append([passes.correlate(u, a, cache.work) for u, a in zip(units, acts)])
        values.append(loss.reported(out, t))  # (Rc,)
        if hidden is not None:
            norms.append(passes.grad_norm(pack, student, x, params, hidden, out, t, lo))  # (Rc,)
        else:
            sliced = tuple(p[lo:hi] for p in params), tuple(b[lo:hi] for b in buffers)
            norms.append(passes.grad_norm_parts(pack, student, x, *sliced, t, lo))  # (Rc,)
    return torch.cat(values), torch.cat(norms), [torch.cat(layer) for layer in zip(*corr)]


def ranks(init_corr: Tensor, corr: Tensor) -> Tensor:
    """Rank at init of each teacher node's current best student, scaled to [0, 1]: (R, m)."""
    best = corr.argmax(dim=2, keepdim=True)  # (R, m, 1)
    above = (init_corr > init_corr.gather(2, best)).sum(dim=2)  # (R, m) students ranked higher
    return above.to(corr.dtype) / max(1, corr.shape[2] - 1)


@torch.no_grad()
def measure(
    pack: Pack, data: PackData, state: PackState, cache: EvalCache | None = None, with_train: bool | None = None
) -> Checkpoint:
    """All checkpoint metrics of every run of the pack at ``state`` (train-set ones on schedule).

    ``cache``: ``prepare(pack, data)``, taken once per pack (built here when not given).
    """
    spec = pack.spec
    ends = spec.checkpoint.keep_modulation and state.step in (0, spec.total_steps)  # fig. 16: before and after
    if with_train is None:
        with_train = state.step in train_metric_steps(spec) and spec.data.n_train is not None
    cache = prepare(pack, data) if cache is None else cache
    params = state.shown  # [(R, n_l, fan_in+1)], then BN parameters
    eval_loss, accuracy, corr = _evaluate(pack, data, cache, params, state.buffers)
    train_loss, grad_norm, train_corr = (
        _train_set(pack, data, cache, params, state.buffers) if with_train else (None, None, None)
    )
    return Checkpoint(
        step=state.step,
        eval_loss=eval_loss,  # (R,)
        train_loss=train_loss,  # (R,)
        grad_norm=grad_norm,  # (R,)
        eval_corr=corr,  # [(R, m_l, n_l)]
        train_corr=train_corr,  # [(R, m_l, n_l)]
        teacher_fanout=measured(pack, fanout_norms(data.teacher, spec.teacher_kept_widths)),  # [(R, m_l)]
        student_fanout=fanout_norms(state.student, spec.student_widths),  # [(R, n_l)]
        student_in_norm=[p.norm(dim=2) for p in params[: spec.teacher.depth]],  # [(R, n_l)] rows with the bias
        diverged_step=state.diverged_step.clone(),  # (R,)
        eval_accuracy=accuracy,  # (R,)
        init_rank=[ranks(i, c) for i, c in zip(cache.init_corr, corr)],  # [(R, m_l)]
        modulation=_modulation(pack, data, cache, params, state.buffers) if ends else None,
    )


def _modulation(
    pack: Pack, data: PackData, cache: EvalCache, params: tuple[Tensor, ...], buffers: tuple[Tensor, ...]
) -> list[Modulation]:
    """beta* and H* of every run on its eval set (``modulation``)."""
    x = data.x_eval.repeat_interleave(pack.group_size, dim=0)  # (R, Ne, d+1): runs are group-major
    return modulation(pack.student_arch, params, buffers, pack.teacher_arch, cache.teacher_params,
                      cache.teacher_buffers, x)  # fmt: skip


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
        N.BEST_CORR: best,
        N.BEST_STUDENT: arg,
        N.SUCCESS: success(best, threshold),
        N.FANOUT_NORM: ckpt.teacher_fanout[layer],
        N.BEST_CORR_TRAIN: nan if ckpt.train_corr is None else ckpt.train_corr[layer].amax(dim=2),
        N.BEST_INIT_RANK: ckpt.init_rank[layer] if ckpt.init_rank else nan,
    }


def student_columns(ckpt: Checkpoint, layer: int) -> dict[str, Tensor]:
    """Every metric column of ``student_nodes`` for one hidden layer: {name: (R, n_l)}."""
    corr = ckpt.eval_corr[layer]  # (R, m, n)
    best, arg = corr.max(dim=1)  # (R, n)
    return {
        N.BEST_CORR: best,
        N.BEST_TEACHER: arg,
        N.FANOUT_NORM: ckpt.student_fanout[layer],
        N.IN_NORM: ckpt.student_in_norm[layer],
        N.BEST_CORR_TRAIN: torch.full_like(best, float("nan")) if ckpt.train_corr is None
        else ckpt.train_corr[layer].amax(dim=1),
    }  # fmt: skip


def scalar_columns(ckpt: Checkpoint) -> dict[str, Tensor]:
    """Every metric column of ``scalars``: {name: (R,)}."""
    nan = torch.full_like(ckpt.eval_loss, float("nan"))  # (R,)
    return {
        N.TRAIN_LOSS: nan if ckpt.train_loss is None else ckpt.train_loss,
        N.EVAL_LOSS: ckpt.eval_loss,
        N.RHO_MEAN: rho_mean(ckpt.eval_corr[0].amax(dim=2)),
        N.GRAD_NORM: nan if ckpt.grad_norm is None else ckpt.grad_norm,
        N.DIVERGED: ckpt.diverged_step >= 0,
        N.EVAL_ACCURACY: nan if ckpt.eval_accuracy is None else ckpt.eval_accuracy,
        N.MEAN_BEST_INIT_RANK: ckpt.init_rank[0].mean(dim=1) if ckpt.init_rank else nan,
    }
