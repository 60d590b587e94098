"""The training step, chosen once per pack: the hand-written fused SGD step or the general step.

Axes: R runs, G shared-minibatch groups (R = G * k), B batch, d input, n_l student width of
hidden layer l, c outputs.

``step_for(spec)`` picks it from the spec alone (``RunSpec.fused``), so the trainer and the
scheduler's timing take the same one. Both have one interface:

* ``prepare(spec, lr, alive, rows, like, work)`` once a chunk: the step's own record
  (``FusedArgs``: the scaled output error and the activation buffers; ``AutogradArgs``: the rates);
* ``take(spec, arch, k, tensors, batch, args, count)`` one step of every run, in place;
* ``freeze(args, dying)``: diverged runs stop moving.

The fused step (a plain MLP under plain SGD) is measured 1.5-2x faster than autograd over the
same packed parts (docs/performance.md), which is why it is kept apart; ``general.step`` trains
every other network (BatchNorm, conv, momentum, weight decay, Adam).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from spec_ray.engine.kinds.activations import RELU, Activation
from spec_ray.engine.kinds.losses import LOSSES
from spec_ray.engine.nets.arch import Arch
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.training import general
from spec_ray.engine.training.general import Batch, Tensors
from spec_ray.engine.training.scratch import Workspace

_BY_TARGETS = {labels: LOSSES.where(labels=labels)[0] for labels in (False, True)}
"""The fused step's residual and statistic: one loss on teacher outputs, one on labels (a squared error's
scale is in the step's ``scale``), looked up once, not every step."""


class FusedArgs(NamedTuple):
    """What the fused step needs besides the batch, set once a chunk."""

    scale: Tensor
    """(R, 1, 1): lr x dObjective/dy per unit residual; 0 for diverged runs."""
    acts: list[Tensor]
    """Activation buffers [(R, B, n_l+1)] whose last column holds ones."""


class AutogradArgs(NamedTuple):
    """What the general step needs besides the batch, set once a chunk."""

    lr: Tensor
    """(R,): this epoch's learning rates; 0 for diverged runs."""


class Step(Protocol):
    """One training step of every run of a pack (module docstring)."""

    name: str

    def prepare(self, spec: RunSpec, lr: Tensor, alive: Tensor, rows: int, like: Tensor, work: Workspace): ...

    def take(self, spec: RunSpec, arch: Arch, k: int, tensors: Tensors, batch: Batch, args, count: int) -> None: ...

    def freeze(self, args, dying: Tensor) -> None: ...


def sgd_step(
    params: tuple[Tensor, ...],
    x: Tensor,
    target: Tensor,
    *,
    scale: Tensor,
    stat: Tensor,
    acts: list[Tensor],
    k: int,
    ce: bool,
    act: Activation = RELU,
    slope: float = 0.0,
) -> None:
    """One SGD step of every run, in place (``act``, ``slope``: the hidden activation).

    params: [(R, n_l, n_{l-1}+1)]; x: (G, B, d+1) group minibatch; target: (G, k, B, c) teacher
    outputs (MSE, any strides) or, with ``ce``, labels (R, B) int64; scale: (R, 1, 1) lr / B,
    0 for diverged runs; stat: (R,) receives ||y - t|| (MSE) or the mean loss (CE);
    acts: [(R, B, n_l+1)] activation buffers whose last column holds ones.
    """
    g_count, batch, d1 = x.shape
    n1 = params[0].shape[1]
    w1g = params[0].view(g_count, k * n1, d1)  # (G, k n1, d+1)
    z = torch.bmm(x, w1g.transpose(1, 2))  # (G, B, k n1)
    # The activation written straight into the run-major buffer: the permute costs no extra pass.
    out1 = acts[0][..., :n1].view(g_count, k, batch, n1)  # (G, k, B, n1)
    act.forward(slope, z.view(g_count, batch, k, n1).transpose(1, 2), out=out1)
    for w, a_in, a_out in zip(params[1:-1], acts[:-1], acts[1:]):
        z = torch.bmm(a_in, w.transpose(1, 2))  # (R, B, n_l)
        act.forward(slope, z, out=a_out[..., :-1])  # (R, B, n_l)
    y = torch.bmm(acts[-1], params[-1].transpose(1, 2))  # (R, B, c)
    err = _BY_TARGETS[ce].fused_residual_(y, target, stat)  # (R, B, c)
    g = err.mul_(scale)  # (R, B, c): lr * dLoss/dy
    for layer in range(len(params) - 1, 0, -1):
        a, w = acts[layer - 1], params[layer]  # (R, B, n_{l-1}+1), (R, n_l, n_{l-1}+1)
        g_below = act.backward(slope, torch.bmm(g, w[..., :-1]), a[..., :-1])  # (R, B, n_{l-1})
        w.baddbmm_(g.transpose(1, 2), a, alpha=-1.0)  # (R, n_l, n_{l-1}+1): weights and bias
        g = g_below
    gg = g.view(g_count, k, batch, n1).transpose(1, 2).reshape(g_count, batch, k * n1)  # (G, B, k n1)
    w1g.baddbmm_(gg.transpose(1, 2), x, alpha=-1.0)  # (G, k n1, d+1)


class _Fused:
    """The hand-written fused SGD step (``sgd_step``)."""

    name = "fused"

    def prepare(self, spec: RunSpec, lr: Tensor, alive: Tensor, rows: int, like: Tensor, work: Workspace) -> FusedArgs:
        """lr: (R, 1, 1) this epoch's rates; alive: (R,) bool; like: a tensor of the pack's device and dtype."""
        scale = torch.where(alive.view(-1, 1, 1), lr * spec.train.loss_kind.grad_scale(rows, spec.teacher.c), 0.0)
        acts = [work.get(f"a{i}", like, lr.shape[0], rows, n + 1, ones_column=True)
                for i, n in enumerate(spec.student_widths)]  # fmt: skip
        return FusedArgs(scale, acts)  # (R, 1, 1), [(R, rows, n_l+1)]

    def take(self, spec: RunSpec, arch: Arch, k: int, tensors: Tensors, batch: Batch, args: FusedArgs,
             count: int) -> None:  # fmt: skip
        sgd_step(tensors.params, batch.x, batch.target, scale=args.scale, stat=batch.stat, acts=args.acts, k=k,
                 ce=spec.train.loss_kind.labels, act=arch.activation, slope=arch.slope)  # fmt: skip

    def freeze(self, args: FusedArgs, dying: Tensor) -> None:
        args.scale[dying] = 0.0


class _Autograd:
    """The general step: the packed parts under autograd, then a packed optimizer (``general.step``)."""

    name = "autograd"

    def prepare(self, spec: RunSpec, lr: Tensor, alive: Tensor, rows: int, like: Tensor,
                work: Workspace) -> AutogradArgs:  # fmt: skip
        return AutogradArgs(torch.where(alive, lr.view(-1), 0.0))  # (R,)

    def take(self, spec: RunSpec, arch: Arch, k: int, tensors: Tensors, batch: Batch, args: AutogradArgs,
             count: int) -> None:  # fmt: skip
        general.step(arch, spec.train, tensors, batch, args.lr, count)

    def freeze(self, args: AutogradArgs, dying: Tensor) -> None:
        args.lr[dying] = 0.0


FUSED: Step = _Fused()
AUTOGRAD: Step = _Autograd()


def step_for(spec: RunSpec) -> Step:
    """The step a pack of ``spec``'s shape trains with: fused for a plain MLP under plain SGD."""
    return FUSED if spec.fused else AUTOGRAD
