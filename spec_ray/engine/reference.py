"""The reference trainer: one run at a time, written for clarity, as the paper's code trains.

``torch.nn`` layers (Linear, Conv2d, BatchNorm1d/2d, ReLU/LeakyReLU), autograd and
``torch.optim`` (SGD with momentum and weight decay, Adam); metrics in plain NumPy, from the
papers' definitions, sharing no code with the packed metrics they check. It is the ground truth
of the packed trainer in tests and its baseline in the benchmark. It reads the same construction
(teacher, data, init, minibatch order) and the same records of the spec's kinds (loss, activation,
BN placement, optimizer: each defined once), so the two must agree.
Training runs in train mode; metrics in eval mode (BN on its running statistics).

Axes: N samples, B batch, d input, P positions of a conv layer, m_l teacher width,
n_l student width, c outputs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from spec_ray.engine.inputs import construct
from spec_ray.engine.kinds.activations import RELU
from spec_ray.engine.measure import names as N
from spec_ray.engine.nets import arch
from spec_ray.engine.nets.arch import KERNEL, Arch
from spec_ray.engine.nets.network import Network
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.training import precision
from spec_ray.engine.training.pack import checkpoint_steps, run_id, train_metric_steps


class TorchNet(nn.Module):
    """The authors' ``Model`` / ``ModelConv`` built from a ``Network`` record and its ``Arch``
    (None: a ReLU MLP); a teacher too, in eval mode."""

    def __init__(self, init: Network, shape: Arch | None = None) -> None:
        super().__init__()
        self.shape = shape
        conv = shape is not None and shape.conv
        self.layers = nn.ModuleList()
        self.bns = nn.ModuleList()
        for i, (w, b) in enumerate(zip(init.weights, init.biases)):
            if conv and i < len(init.weights) - 1:
                c_in = w.shape[1] // KERNEL**2
                layer = nn.Conv2d(c_in, w.shape[0], KERNEL, dtype=w.dtype)
            else:
                layer = nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype)
            with torch.no_grad():
                layer.weight.copy_(w.view(layer.weight.shape))
                layer.bias.copy_(b)
            self.layers.append(layer)
            if shape is not None and shape.bn.present and i < len(init.weights) - 1:
                norm = nn.BatchNorm2d if conv else nn.BatchNorm1d
                self.bns.append(norm(w.shape[0], affine=shape.bn_affine, dtype=w.dtype))
        self.act = RELU.module(0.0) if shape is None else shape.activation.module(shape.slope)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x (N, d) -> (hidden block outputs per node [(N P, n_l)], outputs (N, c))."""
        shape = self.shape
        conv = shape is not None and shape.conv
        if conv:
            x = x.view(x.shape[0], shape.channels, shape.image_size, shape.image_size)  # (N, C, S, S)
        hidden = []
        for i, layer in enumerate(self.layers[:-1]):
            x = layer(x)
            if shape is not None and shape.bn.before:
                x = self.act(self.bns[i](x))
            else:
                x = self.act(x)
                if self.bns:
                    x = self.bns[i](x)
            # (N, n_l), or per channel over samples and positions (N P, C)
            hidden.append(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) if conv else x)
        return hidden, self.layers[-1](x.flatten(1))  # (N, c)

    def network(self) -> Network:
        """The current layer weights as a record, flat as ``arch`` stores them."""
        return Network(
            tuple(layer.weight.detach().reshape(layer.weight.shape[0], -1).clone() for layer in self.layers),
            tuple(layer.bias.detach().clone() for layer in self.layers),
        )


def correlation(teacher_act: np.ndarray, student_act: np.ndarray) -> np.ndarray:
    """Pearson correlation of every teacher/student node pair: (N, m), (N, n) -> (m, n)."""

    def unit(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(axis=0)
        return a / np.sqrt((a**2).sum(axis=0) + 1e-10)

    return unit(teacher_act).T @ unit(student_act)


class Problem(NamedTuple):
    """One run's fixed inputs, in the training dtype."""

    teacher: Network
    x_train: torch.Tensor  # (N, d)
    y_train: torch.Tensor  # (N, c)
    x_eval: torch.Tensor  # (Ne, d)
    y_eval: torch.Tensor  # (Ne, c)


def build_problem(spec: RunSpec, device: str = "cpu", stored: dict[str, torch.Tensor] | None = None) -> Problem:
    """Teacher, data and labels of a run (float64 construction, then cast); ``stored``: the state
    dict of a stored teacher."""
    dtype = getattr(torch, spec.train.dtype)
    teacher = construct.build_teacher(spec, stored)
    x_train, x_eval = construct.train_inputs(spec), construct.eval_inputs(spec)
    with torch.no_grad():
        model = TorchNet(teacher, arch.teacher(spec)).eval()
        y_train, y_eval = model(x_train)[1], model(x_eval)[1]
    cast = [t.to(device=device, dtype=dtype) for t in (x_train, y_train, x_eval, y_eval)]
    return Problem(teacher.to(dtype, device), *cast)


def teacher_model(spec: RunSpec, problem: Problem) -> TorchNet:
    """The teacher as a module in eval mode (fresh BN statistics), as the authors keep it."""
    return TorchNet(problem.teacher, arch.teacher(spec)).eval()


def optimizer(spec: RunSpec, net: TorchNet) -> torch.optim.Optimizer:
    """torch.optim's SGD or Adam with the spec's settings."""
    return spec.train.optimizer_kind.reference(spec.train, net.parameters())


def train_steps(
    spec: RunSpec, net: TorchNet, opt: torch.optim.Optimizer, problem: Problem, start: int, stop: int
) -> int:
    """The run's optimizer (SGD, momentum, Adam: ``optimizer``) from step ``start`` to ``stop`` at
    the run's matmul precision. Returns the first non-finite step or -1."""
    with precision.training(spec.train.matmul_precision, problem.x_train.device):
        return _steps(spec, net, opt, problem, start, stop)


def _steps(spec: RunSpec, net: TorchNet, opt: torch.optim.Optimizer, problem: Problem, start: int, stop: int) -> int:
    iters = spec.steps_per_epoch
    online = spec.data.n_train is None
    teacher = teacher_model(spec, problem) if online else None
    net.train()
    epoch_batches = None
    for step in range(start, stop):
        if epoch_batches is None or step % iters == 0:
            epoch = step // iters
            for group in opt.param_groups:
                group["lr"] = spec.train.lr_at(epoch)
            make = construct.online_inputs if online else construct.batch_indices
            epoch_batches = make(spec, epoch).to(problem.x_train.device)
        if online:
            x = epoch_batches[step % iters].to(problem.x_train.dtype)  # (B, d)
            with torch.no_grad():
                target = teacher(x)[1]  # (B, c)
        else:
            idx = epoch_batches[step % iters]  # (B,)
            if step % iters == iters - 1:
                idx = idx[: spec.last_batch]  # a shuffled pass ends on the remainder
            x, target = problem.x_train[idx], problem.y_train[idx]
        opt.zero_grad()
        loss = spec.train.loss_kind.objective(net(x)[1], target)
        if not torch.isfinite(loss):
            return step
        loss.backward()
        opt.step()
    return -1


def outgoing_norms(net: Network, widths: tuple[int, ...]) -> list[np.ndarray]:
    """The fan-out norm of every hidden node (docs/protocol.md): the norm of all the weights that read it, bias
    excluded. The next layer's flat weight (n_out, n_l taps) holds node k's taps as one block of columns:
    an MLP's column k, a 3x3 filter's channel k (C_in-major), or channel k's H W positions of a flattened
    conv output. [(n_l,)] per hidden layer."""
    norms = []
    for w, n in zip(net.weights[1:], widths):
        flat = w.detach().double().cpu().numpy().reshape(w.shape[0], n, -1)  # (n_out, n_l, taps)
        with np.errstate(over="ignore"):  # a diverged run's weights: inf, as the packed norm gives
            norms.append(np.sqrt((flat**2).sum(axis=(0, 2))))  # (n_l,)
    return norms


def _rank(init_corr: np.ndarray, corr: np.ndarray, j: int) -> float:
    """Rank at init of teacher j's current best student among all students, in [0, 1]."""
    best = corr[j].argmax()
    return float((init_corr[j] > init_corr[j, best]).sum() / max(1, corr.shape[1] - 1))


def _metrics(
    spec: RunSpec, net: TorchNet, problem: Problem, step: int, diverged: bool, init_corr: list[np.ndarray]
) -> dict[str, pd.DataFrame]:
    """Rows of the three checkpoint tables for one run at one step."""
    rid = run_id(spec)
    epoch = step / spec.steps_per_epoch
    key = {N.RUN_ID: rid, N.STEP: step, N.EPOCH: epoch}
    net.eval()
    teacher = teacher_model(spec, problem)
    with torch.no_grad():
        s_eval, out_eval = net(problem.x_eval)
        t_eval, _ = teacher(problem.x_eval)
    with_train = step in train_metric_steps(spec) and spec.data.n_train is not None
    train_loss, grad_norm = float("nan"), float("nan")
    if with_train:
        net.zero_grad()
        s_train, out_train = net(problem.x_train)
        loss = spec.train.loss_kind.objective(out_train, problem.y_train)
        loss.backward()
        train_loss = float(loss.detach()) * spec.train.loss_kind.report_factor(spec.teacher.c)
        grad_norm = float(np.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in net.parameters())))
        with torch.no_grad():
            t_train, _ = teacher(problem.x_train)
    teacher_rows, student_rows = [], []
    # The measured teacher nodes: the first active_widths of those it keeps (RunSpec.teacher_kept_widths).
    active = spec.teacher.active_widths
    t_fan = [f[:m] for f, m in zip(outgoing_norms(problem.teacher, spec.teacher_kept_widths), active)]
    t_eval = [t[:, :m] for t, m in zip(t_eval, active)]
    t_train = [t[:, :m] for t, m in zip(t_train, active)] if with_train else None
    student = net.network()
    s_fan = outgoing_norms(student, spec.student_widths)
    s_in = [torch.cat([w, b.unsqueeze(1)], dim=1).norm(dim=1) for w, b in zip(student.weights, student.biases)]
    for layer in range(spec.teacher.depth):
        corr = correlation(t_eval[layer].double().numpy(), s_eval[layer].detach().double().numpy())
        if len(init_corr) == layer:  # the first call, at step 0, records the init correlations
            init_corr.append(corr)
        corr_train = (
            correlation(t_train[layer].double().numpy(), s_train[layer].detach().double().numpy())
            if with_train
            else np.full_like(corr, np.nan)
        )
        for j in range(corr.shape[0]):
            best = corr[j].max()
            teacher_rows.append(
                {**key, N.LAYER: layer + 1, N.NODE: j, N.BEST_CORR: best, N.BEST_STUDENT: int(corr[j].argmax()),
                 N.SUCCESS: bool(best > spec.checkpoint.success_threshold),  # recovered (docs/protocol.md)
                 N.FANOUT_NORM: float(t_fan[layer][j]), N.BEST_CORR_TRAIN: corr_train[j].max(),
                 N.BEST_INIT_RANK: _rank(init_corr[layer], corr, j)}
            )  # fmt: skip
        for k in range(corr.shape[1]):
            student_rows.append(
                {**key, N.LAYER: layer + 1, N.NODE: k, N.BEST_CORR: corr[:, k].max(),
                 N.BEST_TEACHER: int(corr[:, k].argmax()), N.FANOUT_NORM: float(s_fan[layer][k]),
                 N.BEST_CORR_TRAIN: corr_train[:, k].max(), N.IN_NORM: float(s_in[layer][k])}
            )  # fmt: skip
    first = correlation(t_eval[0].double().numpy(), s_eval[0].detach().double().numpy())
    truth = construct.eval_labels(spec)  # a real image set's class labels, else the teacher's argmax
    truth = problem.y_eval.argmax(dim=1) if truth is None else truth.to(out_eval.device)
    accuracy = float((out_eval.argmax(dim=1) == truth).double().mean())
    scalars = {
        **key,
        N.TRAIN_LOSS: train_loss,
        N.EVAL_LOSS: float(spec.train.loss_kind.reported(out_eval, problem.y_eval)),
        N.RHO_MEAN: float(first.max(axis=1).mean()),  # mean over teacher nodes of their best correlation
        N.GRAD_NORM: grad_norm,
        N.DIVERGED: diverged,
        N.EVAL_ACCURACY: accuracy if spec.train.loss_kind.labels or spec.data.real else float("nan"),
        N.MEAN_BEST_INIT_RANK: float(np.mean([_rank(init_corr[0], first, j) for j in range(first.shape[0])])),
    }
    return {
        N.TEACHER_NODES: pd.DataFrame(teacher_rows),
        N.STUDENT_NODES: pd.DataFrame(student_rows),
        N.SCALARS: pd.DataFrame([scalars]),
    }


class ReferenceResult(NamedTuple):
    """A reference run's final weights, checkpoint rows and divergence step."""

    student: Network
    tables: dict[str, pd.DataFrame]
    diverged_step: int
    module: TorchNet
    """The trained module itself: its BN parameters and running statistics."""


def train_run(
    spec: RunSpec, stop: int | None = None, device: str = "cpu", stored: dict[str, torch.Tensor] | None = None
) -> ReferenceResult:
    """Train one run to ``stop`` (default: the end), taking metrics at its checkpoints."""
    stop = spec.total_steps if stop is None else stop
    problem = build_problem(spec, device, stored)
    net = TorchNet(construct.init_student(spec).to(problem.x_train.dtype, device), arch.student(spec))
    opt = optimizer(spec, net)
    parts: dict[str, list[pd.DataFrame]] = {t: [] for t in (N.TEACHER_NODES, N.STUDENT_NODES, N.SCALARS)}
    step, diverged = 0, -1
    init_corr: list[np.ndarray] = []
    for ckpt in [s for s in checkpoint_steps(spec) if s <= stop]:
        if diverged < 0:
            diverged = train_steps(spec, net, opt, problem, step, ckpt)
        step = ckpt
        for table, rows in _metrics(spec, net, problem, step, diverged >= 0, init_corr).items():
            parts[table].append(rows)
    if step < stop and diverged < 0:
        diverged = train_steps(spec, net, opt, problem, step, stop)
    tables = {t: pd.concat(p, ignore_index=True) for t, p in parts.items()}
    return ReferenceResult(net.network(), tables, diverged, net)
