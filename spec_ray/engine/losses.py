"""Each training loss defined once: its value, its output gradient and the unit it is reported in.

Axes: N samples (B in a minibatch), c outputs; leading axes (R runs, ...) broadcast.

The SGD objective and the reported number differ for the two-layer MSE: the authors'
update is the gradient of (1/2) mean over samples of the squared error summed over
outputs, while their logs report the mean over samples *and* outputs (docs/protocol.md,
"Losses"), c/2 = 25x smaller at c = 50. Tables report the latter, in ``UNITS``.

Torch is not imported: every operation is a tensor method, so the read side can import
``UNITS`` without the training engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

UNITS = {
    "mse": "MSE, mean over samples and outputs",
    "mse_mean": "MSE, mean over samples and outputs",
    "ce": "cross-entropy (nats), mean over samples",
}
"""What ``train_loss`` and ``eval_loss`` hold for each ``train.loss``: figure axes say this."""


def objective(loss: str, out: Tensor, target: Tensor) -> Tensor:
    """The SGD objective, mean over samples: (.., N, c) outputs and teacher outputs -> (..).

    mse: (1/2) sum over outputs of the squared error | mse_mean: mean over outputs
    (``nn.MSELoss``) | ce: cross-entropy against label = argmax of the teacher output.
    """
    if loss == "ce":
        return cross_entropy(out, target.argmax(dim=-1))
    per_sample = (out - target).square()  # (.., N, c)
    if loss == "mse_mean":
        return per_sample.mean(dim=(-1, -2))
    return 0.5 * per_sample.sum(dim=-1).mean(dim=-1)


def cross_entropy(out: Tensor, label: Tensor, lse: Tensor | None = None) -> Tensor:
    """Mean cross-entropy of outputs (.., N, c) against labels (.., N) -> (..); ``lse``: logsumexp (.., N, 1)."""
    lse = out.logsumexp(dim=-1, keepdim=True) if lse is None else lse  # (.., N, 1)
    return (lse - out.gather(-1, label.unsqueeze(-1))).squeeze(-1).mean(dim=-1)


def report_factor(loss: str, c: int) -> float:
    """reported = objective x this: 2/c for the two-layer MSE, 1 otherwise."""
    return 2.0 / c if loss == "mse" else 1.0


def reported(loss: str, out: Tensor, target: Tensor) -> Tensor:
    """The loss in the authors' units (``UNITS``): (.., N, c) -> (..)."""
    return objective(loss, out, target) * report_factor(loss, out.shape[-1])


def residual_(
    loss: str, out: Tensor, target: Tensor | None, label: Tensor | None = None, lse: Tensor | None = None
) -> Tensor:
    """The per-sample output error, written into ``out``: (.., N, c).

    MSE: y - t. CE: softmax(y) - onehot(label), label = argmax of the teacher output or
    the ``label`` (.., N) given; ``lse`` reuses a logsumexp (.., N, 1) already taken.
    dObjective/dy = ``grad_scale(loss, N, c)`` x this.
    """
    if loss != "ce":
        return out.sub_(target)
    label = target.argmax(dim=-1) if label is None else label  # (.., N)
    lse = out.logsumexp(dim=-1, keepdim=True) if lse is None else lse  # (.., N, 1)
    err = out.sub_(lse).exp_()  # (.., N, c) softmax
    return err.scatter_add_(-1, label.unsqueeze(-1), err.new_full((*label.shape, 1), -1.0))


def grad_scale(loss: str, rows: int, c: int) -> float:
    """dObjective/dy = this x residual, for a mean over ``rows`` samples of ``c`` outputs."""
    return 2.0 / (rows * c) if loss == "mse_mean" else 1.0 / rows


def minibatch_objective(loss: str, stat: Tensor, rows: int, c: int) -> Tensor:
    """The objective of a minibatch from the packed step's statistic: ||y - t|| (MSE) or the CE itself.

    Computed as the reference computes the objective, so both call the same step non-finite.
    """
    if loss == "ce":
        return stat
    return stat.square() * (1.0 / (rows * c) if loss == "mse_mean" else 0.5 / rows)
