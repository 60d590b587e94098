"""The packed trainer: R runs of one pack trained at once with batched tensor ops.

Axes: R runs, G shared-minibatch groups (R = G * k), T steps in a chunk, B batch,
N samples, d input, n_l student width of hidden layer l, c outputs.

A pack picks its step once (``steps.step_for``): the hand-written fused step for a plain MLP
under plain SGD, ``general.step`` (the packed parts under autograd) for every other network.
The loop below gives both the same chunks of minibatches.

Which forward serves what, each kept apart for a measured reason:

=====================  ==========================================  ===================================
forward                serves                                      kept apart because
=====================  ==========================================  ===================================
``steps.sgd_step``     training a plain MLP under plain SGD        hand-fused backward and update:
                                                                   1.5-2x the autograd step
``parts.forward``      training everything else (``general``);     the one packed definition of linear,
                       metrics of BN and conv networks             conv, BN and activation
``passes.forward``     checkpoint metrics of plain MLPs            whole-set passes in bounded run
                                                                   chunks, layer 1 shared by a group
``network.forward``    teacher labels (float64), a teacher or a    through ``parts`` its float64 outputs
                       stack; BN and conv teachers via ``parts``   move by up to 7e-15 (measured): stored
                                                                   float64 runs would not replay
``calibrate``          the deep protocol's teacher calibration     each layer's bias moves before the
                       (``construct``)                             next layer runs: no whole forward
``parts.gates``        f'(x) of every node, for beta* and H*       derivatives, not outputs
``reference``          the ground truth of every equivalence       torch.nn modules, autograd, torch.optim;
                       test (``torch.nn``, one run)                its metrics its own (NumPy); it shares
                                                                   the construction and the kinds' records
=====================  ==========================================  ===================================

Measured choices of the fused step (docs/performance.md), each cutting kernels on the hot path:
* Gradients are written out by hand (``spec_ray.engine.kinds.losses``: residual x scale) and fused
  into the update with ``baddbmm_``; lr is folded into the output error.
* Biases live in the last column of each weight ``(R, n_l, n_{l-1} + 1)`` and inputs carry
  a ones column, so a layer is one bmm forward and one ``baddbmm_`` update.
* Runs of a group share their minibatch, so layer 1 of a whole group is one
  (B, d+1) x (d+1, k*n_1) matmul; weights are run-major, so the group view is free.
* Cross-entropy (label = argmax of the teacher output) shares the path: its output
  error is softmax(y) - onehot(label) instead of y - t.
* A shuffled pass whose last minibatch is short (N not a multiple of B) takes that step
  alone, on the first rows of the padded batch, with the gradient scaled to its rows.
* Divergence costs nothing per step: each step records its loss statistic, and a chunk
  with a non-finite loss is replayed from its snapshot with the diverged runs frozen
  (their last finite weights kept aside, their live weights zeroed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from spec_ray.engine.inputs import construct, datasets
from spec_ray.engine.kinds import optim
from spec_ray.engine.nets import parts
from spec_ray.engine.nets.arch import Arch
from spec_ray.engine.nets.network import Network, forward, stack, with_bias_column
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.training import precision, steps
from spec_ray.engine.training.general import Batch, Tensors
from spec_ray.engine.training.pack import Pack
from spec_ray.engine.training.scratch import Workspace

STEPS_PER_CHUNK = 64  # minibatches gathered in one index_select (bounds memory)


class PackData(NamedTuple):
    """Everything fixed during training, on the pack's device and dtype."""

    teacher: Network
    """Stacked teachers, (R, ..)."""
    x_train: Tensor
    """Training inputs per group with a ones column, (G, N, d+1); N = 0 for online data. A real
    image set's is one copy, expanded (stride 0 over G)."""
    y_train: Tensor
    """Teacher outputs on them, computed once, group-major: (G, N, k, c). A minibatch then
    gathers one contiguous row per sample for a whole group, 2.3x faster than a row per run
    (measured at 48 runs, where the table outgrows the caches)."""
    x_eval: Tensor
    """Evaluation inputs per group with a ones column, (G, N_eval, d+1)."""
    y_eval: Tensor
    """Teacher outputs on them per run, (R, N_eval, c)."""
    lr: Tensor
    """Learning rate per run and epoch, (epochs, R, 1, 1): the schedules, resolved."""
    labels_eval: Tensor | None = None
    """A real image set's class labels of the evaluation images per group, (G, N_eval) int64; None
    for Gaussian data."""


Stored = Mapping[str, dict[str, Tensor]]
"""Stored teachers' state dicts by content hash (``teacher.load_teacher``), read by the caller."""


class PackState(NamedTuple):
    """The loop state of a pack: what a checkpoint must save to resume exactly."""

    params: tuple[Tensor, ...]
    """Student layers with the bias as last column, (R, n_l, fan_in+1), then affine BN weights
    and biases (R, n_l) (``parts``); zero for diverged runs."""
    step: int
    """Optimizer steps taken."""
    diverged_step: Tensor
    """(R,) int64: the step whose minibatch loss was non-finite, -1 while the run is alive."""
    frozen: tuple[Tensor, ...] | None
    """Last finite params of diverged runs (same shapes as params), None until one diverges."""
    buffers: tuple[Tensor, ...] = ()
    """BN running means, then variances, (R, n_l) per hidden layer; empty without BN."""
    opt: tuple[Tensor, ...] = ()
    """Optimizer state shaped like params (``optim``); empty for plain SGD."""

    @property
    def shown(self) -> tuple[Tensor, ...]:
        """``params`` with diverged runs showing their frozen weights."""
        if self.frozen is None:
            return self.params
        dead = self.diverged_step >= 0  # (R,)
        return tuple(torch.where(dead.view(-1, *[1] * (p.dim() - 1)), f, p) for f, p in zip(self.frozen, self.params))

    @property
    def student(self) -> Network:
        """The students' layers as a record of views; diverged runs show their frozen weights."""
        layers = [p for p in self.shown if p.dim() == 3]  # BN parameters are (R, n_l)
        return Network(tuple(p[..., :-1] for p in layers), tuple(p[..., -1] for p in layers))


def run_targets(y: Tensor, k: int, lo: int, hi: int) -> Tensor:
    """Teacher outputs (Rc, N, c) of runs lo..hi-1 from group-major ones (G, N, k, c); the
    runs are whole groups (copied) or a piece of one group (a view)."""
    q = min(k, hi - lo)  # runs of each group
    t = y[lo // k : lo // k + (hi - lo) // q, :, lo % k : lo % k + q]  # (Gc, N, q, c)
    return t.transpose(1, 2).reshape(hi - lo, t.shape[1], t.shape[3])  # (Rc, N, c)


def with_ones(x: Tensor) -> Tensor:
    """Append a ones column: (.., N, d) -> (.., N, d+1)."""
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def prepare(pack: Pack, stored: Stored | None = None, images: datasets.Split | None = None) -> PackData:
    """Build teachers, datasets and labels of a pack (float64 on CPU, then cast); ``stored``: the
    state dicts of its stored teachers (``teacher.source`` pretrained or file); ``images``: its image
    set as given (a stand-in for timing), else read."""
    dev, dt = pack.device, pack.dtype
    shape = pack.teacher_arch
    stored = stored or {}
    teachers = [construct.build_teacher(r, stored.get(r.teacher.load_teacher)) for r in pack.runs]
    k = pack.group_size
    leaders = pack.group_leaders
    # A real image set gives every group the same images (only their order differs): one copy, a
    # stride-0 view per group (CIFAR-10's training set is 0.6 GB in float32).
    shared = pack.spec.data.real
    if shared:
        x_one = construct.train_inputs(leaders[0], images)  # (N, d)
        x_train = x_one.expand(pack.groups, *x_one.shape)  # (G, N, d), a view
    else:
        x_train = torch.stack([construct.train_inputs(r, images) for r in leaders])  # (G, N, d)
    x_eval = torch.stack([construct.eval_inputs(r, images) for r in pack.group_leaders])  # (G, Ne, d)
    # Labels in float64 before the cast, so float32 runs see rounded exact labels.
    y_train = torch.stack([construct.teacher_outputs(t, x_train[i // k], shape) for i, t in enumerate(teachers)])
    # (R, N, c) above
    y_train = y_train.view(pack.groups, k, *y_train.shape[1:]).transpose(1, 2).contiguous()  # (G, N, k, c)
    y_eval = torch.stack([construct.teacher_outputs(t, x_eval[i // k], shape) for i, t in enumerate(teachers)])
    epochs = pack.spec.train.epochs
    lr = torch.tensor([[r.train.lr_at(e) for r in pack.runs] for e in range(epochs)], dtype=torch.float64)
    lr = lr.view(epochs, pack.size, 1, 1)  # (E, R, 1, 1)
    labels = [construct.eval_labels(r, images) for r in pack.group_leaders]
    return PackData(
        teacher=stack(teachers).to(dt, dev),
        x_train=with_ones(x_one).to(device=dev, dtype=dt).expand(pack.groups, -1, -1)
        if shared
        else with_ones(x_train).to(device=dev, dtype=dt),  # (G, N, d+1)
        y_train=y_train.to(device=dev, dtype=dt),  # (G, N, k, c)
        x_eval=with_ones(x_eval).to(device=dev, dtype=dt),  # (G, Ne, d+1)
        y_eval=y_eval.to(device=dev, dtype=dt),  # (R, Ne, c)
        lr=lr.to(device=dev, dtype=dt),  # (E, R, 1, 1)
        labels_eval=None if labels[0] is None else torch.stack(labels).to(dev),  # (G, Ne)
    )


def init_state(pack: Pack) -> PackState:
    """Students at initialisation (fresh BN and optimizer state), step 0, every run alive."""
    student = stack([construct.init_student(r) for r in pack.runs]).to(pack.dtype, pack.device)
    return fresh_state(pack.spec, pack.student_arch, with_bias_column(student))


def fresh_state(spec: RunSpec, student: Arch, layers: tuple[Tensor, ...]) -> PackState:
    """A pack's state at step 0 around its students' layers [(R, n_l, fan_in+1)]: fresh BN tensors
    (``parts.init_bn``) and optimizer state (the spec's optimizer record), every run alive."""
    runs = layers[0].shape[0]
    bn_params, buffers = parts.init_bn(student, runs, layers[0], spec.student.bn_affine)
    params = (*layers, *bn_params)
    diverged = torch.full((runs,), -1, dtype=torch.int64, device=layers[0].device)  # (R,)
    return PackState(params, 0, diverged, None, buffers, optim.init(spec.train, params))


def epoch_indices(pack: Pack, epoch: int) -> Tensor:
    """Minibatch indices of every group for one epoch: (iters, G, B)."""
    idx = torch.stack([construct.batch_indices(r, epoch) for r in pack.group_leaders], dim=1)
    return idx.to(pack.device)  # (iters, G, B)


def minibatches(
    pack: Pack,
    data: PackData,
    epoch_data: Tensor,
    lo: int,
    hi: int,
    rows: int | None = None,
    work: Workspace | None = None,
) -> tuple[Tensor, Tensor]:
    """Inputs (T, G, B, d+1) and targets of steps lo..hi-1 of an epoch; ``rows``: the first B only.

    ``epoch_data`` is the epoch's minibatch indices (iters, G, B), or for online data its
    fresh inputs (iters, G, B, d). Targets: teacher outputs (T, G, k, B, c), or labels
    (T, R, B) for cross-entropy. Gathered into ``work``'s buffers when given.
    """
    work = Workspace() if work is None else work
    k, r_count = pack.group_size, pack.size
    dev = data.x_eval.device
    if pack.spec.data.n_train is None:
        x = epoch_data[lo:hi].to(data.x_eval.dtype)  # (T, G, B, d)
        shape = pack.teacher_arch
        if shape.plain:
            t = forward(data.teacher, x.repeat_interleave(k, dim=1), shape)[1]  # (T, R, B, c)
        else:  # conv and BN teachers take (R, B, d) inputs
            t = torch.stack([forward(data.teacher, xi.repeat_interleave(k, dim=0), shape)[1] for xi in x])
        t = t.view(t.shape[0], -1, k, *t.shape[2:])  # (T, G, k, B, c)
        x = with_ones(x)  # (T, G, B, d+1)
    else:
        g_count, n_train, d1 = data.x_train.shape
        idx = epoch_data[lo:hi]  # (T, G, B)
        g_offset = (torch.arange(g_count, device=dev) * n_train).view(1, g_count, 1)  # (1, G, 1)
        rows_at = (idx + g_offset).view(-1)  # (T G B,)
        if data.x_train.stride(0) == 0:  # one copy of the images for every group (prepare)
            x = _gather(data.x_train[0], idx.reshape(-1), work, "x").view(*idx.shape, d1)  # (T, G, B, d+1)
        else:
            x = _gather(data.x_train.view(-1, d1), rows_at, work, "x").view(*idx.shape, d1)  # (T, G, B, d+1)
        t = _gather(data.y_train.view(g_count * n_train, -1), rows_at, work, "t")  # (T G B, k c)
        t = t.view(*idx.shape, k, -1).transpose(2, 3)  # (T, G, k, B, c)
    if rows is not None:
        x, t = x[:, :, :rows], t[:, :, :, :rows]  # a pass's short last batch
    if pack.spec.train.loss_kind.labels:
        t = construct.labels(t).reshape(t.shape[0], r_count, -1)  # (T, R, B)
    return x, t


def _gather(table: Tensor, rows: Tensor, work: Workspace, name: str) -> Tensor:
    """Rows of a (M, w) table into a scratch buffer: (len(rows), w)."""
    return torch.index_select(table, 0, rows, out=work.get(name, table, rows.numel(), table.shape[1]))


def epoch_data(pack: Pack, epoch: int) -> Tensor:
    """Minibatch indices (iters, G, B), or fresh online inputs (iters, G, B, d), of one epoch."""
    if pack.spec.data.n_train is None:
        x = torch.stack([construct.online_inputs(r, epoch) for r in pack.group_leaders], dim=1)
        return x.to(pack.device)  # (iters, G, B, d)
    return epoch_indices(pack, epoch)  # (iters, G, B)


class Chunk(NamedTuple):
    """The minibatches of a chunk of steps and what its steps write."""

    xs: Tensor
    """Inputs (T, G, B, d+1)."""
    ts: Tensor
    """Teacher outputs (T, G, k, B, c) or labels (T, R, B)."""
    stats: Tensor
    """(T, R): each step's ||y - t|| (MSE) or mean loss (CE)."""
    alive: Tensor
    """(R,) bool: runs not diverged; updated in place when one diverges in the chunk."""
    any_dead: bool
    """Some run has diverged (known without a device sync)."""

    def batch(self, i: int) -> Batch:
        """Step i's minibatch and what it writes."""
        return Batch(self.xs[i], self.ts[i], self.stats[i], self.alive, self.any_dead)


def train_until(
    pack: Pack,
    data: PackData,
    state: PackState,
    stop: int,
    on_progress: Callable[[int], None] | None = None,
) -> PackState:
    """Train from ``state.step`` to step ``stop`` at the runs' matmul precision; updates the
    state's tensors in place."""
    with precision.training(pack.spec.train.matmul_precision, pack.device):
        return _train_until(pack, data, state, stop, on_progress)


def _train_until(
    pack: Pack,
    data: PackData,
    state: PackState,
    stop: int,
    on_progress: Callable[[int], None] | None,
) -> PackState:
    spec, step_kind, arch, k = pack.spec, steps.step_for(pack.spec), pack.student_arch, pack.group_size
    iters, batch, c, loss = spec.steps_per_epoch, spec.train.batch, spec.teacher.c, spec.train.loss_kind
    r_count = pack.size
    dev, dt = data.x_eval.device, data.x_eval.dtype
    work = Workspace()
    params, frozen = state.params, state.frozen
    diverged = state.diverged_step.clone()  # (R,)
    step, this_epoch, epoch = state.step, None, -1
    while step < stop:
        if step // iters != epoch:
            epoch = step // iters
            this_epoch = epoch_data(pack, epoch)  # (iters, G, B) or (iters, G, B, d)
        lo = step % iters
        count = min(iters - lo, STEPS_PER_CHUNK, stop - step)
        short = spec.last_batch < batch and lo + count == iters  # the chunk holds a pass's short last batch
        if short and count > 1:
            count -= 1  # the short step goes alone, next
            short = False
        rows = spec.last_batch if short else batch
        xs, ts = minibatches(
            pack, data, this_epoch, lo, lo + count, rows if short else None, work
        )  # (T, G, B, d+1), ..
        saved = (*params, *state.buffers, *state.opt)
        snapshot = [work.get(f"s{i}", p, *p.shape).copy_(p) for i, p in enumerate(saved)]
        alive = diverged < 0  # (R,)
        args = step_kind.prepare(spec, data.lr[epoch], alive, rows, data.x_eval, work)  # the step's own record
        stats = torch.empty(count, r_count, dtype=dt, device=dev)  # (T, R)
        chunk = Chunk(xs, ts, stats, alive, frozen is not None)
        tensors = Tensors(params, state.buffers, state.opt)
        for i in range(count):
            step_kind.take(spec, arch, k, tensors, chunk.batch(i), args, step + i + 1)
        values = loss.minibatch_objective(stats, rows, c)  # (T, R) as the reference computes it
        bad = ~values.isfinite() & (diverged < 0)  # (T, R)
        if bool(bad.any()):
            frozen = frozen or tuple(torch.zeros_like(p) for p in params)
            first = torch.where(bad.any(dim=0), bad.to(torch.int64).argmax(dim=0), -1)  # (R,)
            for p, snap in zip(saved, snapshot):
                p.copy_(snap)
            chunk = chunk._replace(any_dead=True)
            for i in range(count):
                dying = (first == i).nonzero().flatten()  # (D,)
                if dying.numel():
                    for p, f in zip(params, frozen):
                        f[dying] = p[dying]
                        p[dying] = 0.0  # a zero student's loss stays finite; its update is 0
                    step_kind.freeze(args, dying)
                    chunk.alive[dying] = False
                    diverged[dying] = step + i
                step_kind.take(spec, arch, k, tensors, chunk.batch(i), args, step + i + 1)
        step += count
        if on_progress is not None:
            on_progress(step)
    return state._replace(params=params, step=step, diverged_step=diverged, frozen=frozen)
