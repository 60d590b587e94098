"""The packed trainer: R runs of one pack trained at once with batched tensor ops.

Axes: R runs, G shared-minibatch groups (R = G * k), T steps in a chunk, B batch,
N samples, d input, n_l student width of hidden layer l, c outputs.

Measured choices (docs/performance.md), each cutting kernels on the hot path:
* Gradients are written out by hand (MSE, PROTOCOL "Loss and update") and fused into
  the update with ``baddbmm_``; lr is folded into the output error.
* Biases live in the last column of each weight ``(R, n_l, n_{l-1} + 1)`` and inputs carry
  a ones column, so a layer is one bmm forward and one ``baddbmm_`` update.
* Runs of a group share their minibatch, so layer 1 of a whole group is one
  (B, d+1) x (d+1, k*n_1) matmul; weights are run-major, so the group view is free.
* Divergence costs nothing per step: each step records its error norm, and a chunk
  with a non-finite loss is replayed from its snapshot with the diverged runs frozen
  (their last finite weights kept aside, their live weights zeroed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from spec_ray import construct
from spec_ray.network import Network, stack
from spec_ray.pack import Pack

STEPS_PER_CHUNK = 64  # minibatches gathered in one index_select (bounds memory)


class PackData(NamedTuple):
    """Everything fixed during training, on the pack's device and dtype."""

    teacher: Network
    """Stacked teachers, (R, ..)."""
    x_train: Tensor
    """Training inputs per group with a ones column, (G, N, d+1)."""
    y_train: Tensor
    """Teacher outputs on them per run, (R, N, c): computed once."""
    x_eval: Tensor
    """Evaluation inputs per group, (G, N_eval, d)."""
    y_eval: Tensor
    """Teacher outputs on them per run, (R, N_eval, c)."""
    lr: Tensor
    """Learning rate per run, (R, 1, 1)."""


class PackState(NamedTuple):
    """The loop state of a pack: what a checkpoint must save to resume exactly."""

    params: tuple[Tensor, ...]
    """Student layers with the bias as last column, (R, n_l, n_{l-1}+1); zero for diverged runs."""
    step: int
    """SGD steps taken."""
    diverged_step: Tensor
    """(R,) int64: the step whose minibatch loss was non-finite, -1 while the run is alive."""
    frozen: tuple[Tensor, ...] | None
    """Last finite params of diverged runs (same shapes as params), None until one diverges."""

    @property
    def student(self) -> Network:
        """The students as a record of views; diverged runs show their frozen weights."""
        params = self.params
        if self.frozen is not None:
            dead = (self.diverged_step >= 0).view(-1, 1, 1)  # (R, 1, 1)
            params = tuple(torch.where(dead, f, p) for f, p in zip(self.frozen, params))
        return Network(tuple(p[..., :-1] for p in params), tuple(p[..., -1] for p in params))


def with_bias_column(net: Network) -> tuple[Tensor, ...]:
    """[W | b] per layer: (.., n_l, n_{l-1}+1)."""
    return tuple(torch.cat([w, b.unsqueeze(-1)], dim=-1) for w, b in zip(net.weights, net.biases))


def with_ones(x: Tensor) -> Tensor:
    """Append a ones column: (.., N, d) -> (.., N, d+1)."""
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def prepare(pack: Pack) -> PackData:
    """Build teachers, datasets and labels of a pack (float64 on CPU, then cast)."""
    dev, dt = pack.device, pack.dtype
    teachers = [construct.build_teacher(r) for r in pack.runs]
    k = pack.group_size
    x_train = torch.stack([construct.train_inputs(r) for r in pack.group_leaders])  # (G, N, d)
    x_eval = torch.stack([construct.eval_inputs(r) for r in pack.group_leaders])  # (G, Ne, d)
    # Labels in float64 before the cast, so float32 runs see rounded exact labels.
    y_train = torch.stack([construct.teacher_outputs(t, x_train[i // k]) for i, t in enumerate(teachers)])
    y_eval = torch.stack([construct.teacher_outputs(t, x_eval[i // k]) for i, t in enumerate(teachers)])
    lr = torch.tensor([r.train.lr for r in pack.runs], dtype=torch.float64).view(-1, 1, 1)  # (R, 1, 1)
    return PackData(
        teacher=stack(teachers).to(dt, dev),
        x_train=with_ones(x_train).to(device=dev, dtype=dt),  # (G, N, d+1)
        y_train=y_train.to(device=dev, dtype=dt),  # (R, N, c)
        x_eval=x_eval.to(device=dev, dtype=dt),  # (G, Ne, d)
        y_eval=y_eval.to(device=dev, dtype=dt),  # (R, Ne, c)
        lr=lr.to(device=dev, dtype=dt),  # (R, 1, 1)
    )


def init_state(pack: Pack) -> PackState:
    """Students at initialisation, step 0, every run alive."""
    student = stack([construct.init_student(r) for r in pack.runs]).to(pack.dtype, pack.device)
    diverged = torch.full((pack.size,), -1, dtype=torch.int64, device=pack.device)  # (R,)
    return PackState(params=with_bias_column(student), step=0, diverged_step=diverged, frozen=None)


def epoch_indices(pack: Pack, epoch: int) -> Tensor:
    """Minibatch indices of every group for one epoch: (iters, G, B)."""
    idx = torch.stack([construct.batch_indices(r, epoch) for r in pack.group_leaders], dim=1)
    return idx.to(pack.device)  # (iters, G, B)


def sgd_step(
    params: tuple[Tensor, ...], x: Tensor, t: Tensor, scale: Tensor, norm: Tensor, acts: list[Tensor], k: int
) -> None:
    """One SGD step of every run, in place.

    params: [(R, n_l, n_{l-1}+1)]; x: (G, B, d+1) group minibatch; t: (R, B, c) targets;
    scale: (R, 1, 1) lr / B, 0 for diverged runs; norm: (R,) receives ||y - t|| per run;
    acts: [(R, B, n_l+1)] activation buffers whose last column holds ones.
    """
    g_count, batch, d1 = x.shape
    n1 = params[0].shape[1]
    w1g = params[0].view(g_count, k * n1, d1)  # (G, k n1, d+1)
    z = torch.bmm(x, w1g.transpose(1, 2))  # (G, B, k n1)
    # ReLU written straight into the run-major buffer: the permute costs no extra pass.
    torch.clamp_min(z.view(g_count, batch, k, n1).transpose(1, 2), 0, out=acts[0][..., :n1].view(g_count, k, batch, n1))
    for w, a_in, a_out in zip(params[1:-1], acts[:-1], acts[1:]):
        z = torch.bmm(a_in, w.transpose(1, 2))  # (R, B, n_l)
        torch.clamp_min(z, 0, out=a_out[..., :-1])  # (R, B, n_l)
    err = torch.bmm(acts[-1], params[-1].transpose(1, 2)).sub_(t)  # (R, B, c)
    torch.linalg.vector_norm(err, dim=(1, 2), out=norm)  # (R,)
    g = err.mul_(scale)  # (R, B, c): lr * dLoss/dy, dLoss/dy = (y - t) / B
    for layer in range(len(params) - 1, 0, -1):
        a, w = acts[layer - 1], params[layer]  # (R, B, n_{l-1}+1), (R, n_l, n_{l-1}+1)
        g_below = torch.ops.aten.threshold_backward(torch.bmm(g, w[..., :-1]), a[..., :-1], 0)  # (R, B, n_{l-1})
        w.baddbmm_(g.transpose(1, 2), a, alpha=-1.0)  # (R, n_l, n_{l-1}+1): weights and bias
        g = g_below
    gg = g.view(g_count, k, batch, n1).transpose(1, 2).reshape(g_count, batch, k * n1)  # (G, B, k n1)
    w1g.baddbmm_(gg.transpose(1, 2), x, alpha=-1.0)  # (G, k n1, d+1)


def train_until(
    pack: Pack,
    data: PackData,
    state: PackState,
    stop: int,
    on_progress: Callable[[int], None] | None = None,
) -> PackState:
    """Train from ``state.step`` to step ``stop``; updates ``state.params`` in place."""
    spec = pack.spec
    iters, k, batch = spec.train.iters_per_epoch, pack.group_size, spec.train.batch
    g_count, n_train, d1 = data.x_train.shape
    r_count, c = pack.size, spec.teacher.c
    dev, dt = data.x_train.device, data.x_train.dtype
    x_flat = data.x_train.view(g_count * n_train, d1)  # (G N, d+1)
    y_flat = data.y_train.view(r_count * n_train, c)  # (R N, c)
    g_offset = (torch.arange(g_count, device=dev) * n_train).view(1, g_count, 1)  # (1, G, 1)
    r_offset = (torch.arange(r_count, device=dev) * n_train).view(1, r_count, 1)  # (1, R, 1)
    acts = [torch.ones(r_count, batch, n + 1, dtype=dt, device=dev) for n in spec.student_widths]  # [(R, B, n_l+1)]
    params, frozen = state.params, state.frozen
    diverged = state.diverged_step.clone()  # (R,)
    scale = torch.where(diverged.view(-1, 1, 1) < 0, data.lr / batch, 0.0)  # (R, 1, 1)
    step, epoch_idx, epoch = state.step, None, -1
    while step < stop:
        if step // iters != epoch:
            epoch = step // iters
            epoch_idx = epoch_indices(pack, epoch)  # (iters, G, B)
        lo = step % iters
        count = min(iters - lo, STEPS_PER_CHUNK, stop - step)
        idx = epoch_idx[lo : lo + count]  # (T, G, B)
        xs = x_flat.index_select(0, (idx + g_offset).view(-1)).view(count, g_count, batch, d1)  # (T, G, B, d+1)
        run_idx = idx.repeat_interleave(k, dim=1) + r_offset  # (T, R, B)
        ts = y_flat.index_select(0, run_idx.view(-1)).view(count, r_count, batch, c)  # (T, R, B, c)
        snapshot = [p.clone() for p in params]
        norms = torch.empty(count, r_count, dtype=dt, device=dev)  # (T, R)
        for i in range(count):
            sgd_step(params, xs[i], ts[i], scale, norms[i], acts, k)
        # The minibatch loss (1/2B)||y - t||^2, as the reference computes it.
        bad = ~(norms.square() * (0.5 / batch)).isfinite() & (diverged < 0)  # (T, R)
        if bool(bad.any()):
            frozen = frozen or tuple(torch.zeros_like(p) for p in params)
            first = torch.where(bad.any(dim=0), bad.to(torch.int64).argmax(dim=0), -1)  # (R,)
            for p, snap in zip(params, snapshot):
                p.copy_(snap)
            for i in range(count):
                dying = (first == i).nonzero().flatten()  # (D,)
                if dying.numel():
                    for p, f in zip(params, frozen):
                        f[dying] = p[dying]
                        p[dying] = 0.0  # a zero student's loss stays finite; its scale is 0
                    scale[dying] = 0.0
                    diverged[dying] = step + i
                sgd_step(params, xs[i], ts[i], scale, norms[i], acts, k)
        step += count
        if on_progress is not None:
            on_progress(step)
    return PackState(params=params, step=step, diverged_step=diverged, frozen=frozen)
