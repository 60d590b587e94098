"""Each training loss defined once, as a record: its objective, output gradient, reported unit, labels.

Axes: N samples (B in a minibatch), c outputs; leading axes (R runs, ...) broadcast.

The SGD objective and the reported number differ for the two-layer MSE: the authors'
update is the gradient of (1/2) mean over samples of the squared error summed over
outputs, while their logs report the mean over samples *and* outputs (docs/protocol.md,
"Losses"), c/2 = 25x smaller at c = 50. Tables report the latter, in each record's ``unit``.

A new loss is this file alone: a record (a subclass where its arithmetic is new) in ``LOSSES``,
which ``train.loss``, --help and the figures' units read. Torch is not imported: every
operation is a tensor method, so the read side can import ``LOSSES`` without the training engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from spec_ray.engine.kinds.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class Loss:
    """A training loss: what the trainers, the metrics and the figures ask of it."""

    name: str
    """The value of ``train.loss`` and of the runs table's ``loss`` column."""
    unit: str
    """What ``train_loss`` and ``eval_loss`` hold (figure axes say this)."""
    short: str
    """Its name in a figure's legend."""
    labels: bool
    """Trained against class labels (argmax of the teacher output) rather than the teacher outputs;
    its runs report an accuracy, and their minibatch targets are labels."""

    def objective(self, out: Tensor, target: Tensor) -> Tensor:
        """The SGD objective, mean over samples: (.., N, c) outputs and teacher outputs -> (..)."""
        raise NotImplementedError

    def report_factor(self, c: int) -> float:
        """reported = objective x this."""
        return 1.0

    def reported(self, out: Tensor, target: Tensor) -> Tensor:
        """The loss in the authors' units (``unit``): (.., N, c) -> (..)."""
        return self.objective(out, target) * self.report_factor(out.shape[-1])

    def reported_(self, out: Tensor, target: Tensor) -> Tensor:
        """``reported`` of (Rc, N, c) outputs, free to overwrite ``out`` where that saves a pass."""
        return self.reported(out, target)

    def residual_(self, out: Tensor, target: Tensor | None, label: Tensor | None = None,
                  lse: Tensor | None = None) -> Tensor:  # fmt: skip
        """The per-sample output error, written into ``out``: (.., N, c); dObjective/dy = ``grad_scale`` x this.
        ``label`` (.., N): the labels given (else the teacher output's argmax); ``lse``: a logsumexp (.., N, 1)."""
        raise NotImplementedError

    def grad_scale(self, rows: int, c: int) -> float:
        """dObjective/dy = this x residual, for a mean over ``rows`` samples of ``c`` outputs."""
        return 1.0 / rows

    def minibatch_objective(self, stat: Tensor, rows: int, c: int) -> Tensor:
        """The objective of a minibatch from the packed step's statistic (``step_values``), as the
        reference computes the objective, so both call the same step non-finite."""
        raise NotImplementedError

    def step_values(self, y: Tensor, target: Tensor, stat: Tensor) -> Tensor:
        """A training step's objective per run (R,) of outputs y (R, B, c) against its minibatch targets
        (teacher outputs, or labels (R, B) where ``labels``), under autograd; the step's statistic
        (``minibatch_objective``'s input) detached into ``stat`` (R,)."""
        raise NotImplementedError

    def fused_residual_(self, y: Tensor, target: Tensor, stat: Tensor) -> Tensor:
        """The hand-written step's residual (R, B, c), written into ``y``, and its statistic into ``stat`` (R,);
        ``target``: teacher outputs shaped as the step keeps them, or labels (R, B)."""
        raise NotImplementedError


@dataclass(frozen=True)
class SquaredError(Loss):
    """Squared error against the teacher outputs: (1/2) summed over outputs, or the mean over them."""

    mean_outputs: bool = False
    """The mean over outputs (``nn.MSELoss``), not (1/2) the sum."""

    def objective(self, out: Tensor, target: Tensor) -> Tensor:
        per_sample = (out - target).square()  # (.., N, c)
        if self.mean_outputs:
            return per_sample.mean(dim=(-1, -2))
        return 0.5 * per_sample.sum(dim=-1).mean(dim=-1)

    def report_factor(self, c: int) -> float:
        return 1.0 if self.mean_outputs else 2.0 / c

    def reported_(self, out: Tensor, target: Tensor) -> Tensor:
        import torch

        n, c = out.shape[1:]
        err = out.sub_(target).view(out.shape[0], -1)  # (Rc, N c)
        norm = torch.linalg.vecdot(err, err).sqrt()  # (Rc,): one pass, no squared copy
        return self.minibatch_objective(norm, n, c) * self.report_factor(c)

    def residual_(self, out: Tensor, target: Tensor | None, label: Tensor | None = None,
                  lse: Tensor | None = None) -> Tensor:  # fmt: skip
        return out.sub_(target)  # y - t

    def grad_scale(self, rows: int, c: int) -> float:
        return 2.0 / (rows * c) if self.mean_outputs else 1.0 / rows

    def minibatch_objective(self, stat: Tensor, rows: int, c: int) -> Tensor:
        return stat.square() * (1.0 / (rows * c) if self.mean_outputs else 0.5 / rows)  # stat = ||y - t||

    def step_values(self, y: Tensor, target: Tensor, stat: Tensor) -> Tensor:
        import torch

        t = target.reshape(y.shape)  # (R, B, c)
        values = self.objective(y, t)  # (R,)
        torch.linalg.vector_norm((y - t).detach(), dim=(1, 2), out=stat)
        return values

    def fused_residual_(self, y: Tensor, target: Tensor, stat: Tensor) -> Tensor:
        import torch

        err = self.residual_(y.view(target.shape), target).view(y.shape)  # (R, B, c) y - t
        torch.linalg.vector_norm(err, dim=(1, 2), out=stat)  # (R,)
        return err


@dataclass(frozen=True)
class CrossEntropy(Loss):
    """Cross-entropy against label = argmax of the teacher output."""

    def objective(self, out: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(out, target.argmax(dim=-1))

    def residual_(self, out: Tensor, target: Tensor | None, label: Tensor | None = None,
                  lse: Tensor | None = None) -> Tensor:  # fmt: skip
        label = target.argmax(dim=-1) if label is None else label  # (.., N)
        lse = out.logsumexp(dim=-1, keepdim=True) if lse is None else lse  # (.., N, 1)
        err = out.sub_(lse).exp_()  # (.., N, c) softmax
        return err.scatter_add_(-1, label.unsqueeze(-1), err.new_full((*label.shape, 1), -1.0))  # softmax - onehot

    def minibatch_objective(self, stat: Tensor, rows: int, c: int) -> Tensor:
        return stat  # the cross-entropy itself

    def step_values(self, y: Tensor, target: Tensor, stat: Tensor) -> Tensor:
        values = cross_entropy(y, target)  # (R,)
        stat.copy_(values.detach())
        return values

    def fused_residual_(self, y: Tensor, target: Tensor, stat: Tensor) -> Tensor:
        lse = y.logsumexp(dim=2, keepdim=True)  # (R, B, 1)
        stat.copy_(cross_entropy(y, target, lse))  # (R,)
        return self.residual_(y, None, target, lse)  # (R, B, c)


def cross_entropy(out: Tensor, label: Tensor, lse: Tensor | None = None) -> Tensor:
    """Mean cross-entropy of outputs (.., N, c) against labels (.., N) -> (..); ``lse``: logsumexp (.., N, 1)."""
    lse = out.logsumexp(dim=-1, keepdim=True) if lse is None else lse  # (.., N, 1)
    return (lse - out.gather(-1, label.unsqueeze(-1))).squeeze(-1).mean(dim=-1)


_MSE_UNIT = "MSE, mean over samples and outputs"
MSE = SquaredError("mse", _MSE_UNIT, "MSE", labels=False)
"""The two-layer protocol's."""
MSE_MEAN = SquaredError("mse_mean", _MSE_UNIT, "MSE", labels=False, mean_outputs=True)
"""The deep protocol's, as nn.MSELoss."""
CE = CrossEntropy("ce", "cross-entropy (nats), mean over samples", "CE", labels=True)
LOSSES: Registry[Loss] = Registry("train.loss", MSE, MSE_MEAN, CE)
UNITS = {loss.name: loss.unit for loss in LOSSES}
"""Each ``train.loss``'s unit, for the read side's figure axes."""


def objective(loss: Loss | str, out: Tensor, target: Tensor) -> Tensor:
    """``Loss.objective`` of a record or its name."""
    return LOSSES.of(loss).objective(out, target)


def reported(loss: Loss | str, out: Tensor, target: Tensor) -> Tensor:
    """``Loss.reported`` of a record or its name."""
    return LOSSES.of(loss).reported(out, target)


def grad_scale(loss: Loss | str, rows: int, c: int) -> float:
    """``Loss.grad_scale`` of a record or its name."""
    return LOSSES.of(loss).grad_scale(rows, c)


def minibatch_objective(loss: Loss | str, stat: Tensor, rows: int, c: int) -> Tensor:
    """``Loss.minibatch_objective`` of a record or its name."""
    return LOSSES.of(loss).minibatch_objective(stat, rows, c)
