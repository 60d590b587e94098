"""Teachers pretrained by spec-ray on an image set's labels (docs/protocol.md, "Teachers from data").

A pretrained teacher is a pure function of its ``recipe.key``: the image set, the teacher's
architecture with its BN, and the ``Recipe``. It is trained once per storage root (the
orchestration stores it in the authors' checkpoint format) and read back by every run.

Axes: N images, B batch, d input, c classes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from spec_ray.engine import arch, construct, datasets, teachers
from spec_ray.engine.network import Network
from spec_ray.engine.recipe import RECIPE, Recipe, unpruned
from spec_ray.engine.reference import TorchNet
from spec_ray.engine.spec import RunSpec


@dataclass(frozen=True)
class Pretrained:
    """A teacher trained on labels, in the authors' format, and how well it classifies."""

    state: dict[str, Tensor]
    """The authors' ``state_dict`` (``teachers`` module docstring), BN unfolded."""
    test_accuracy: float
    """Its accuracy on the test split (all of it), BN folded as runs use it."""
    train_accuracy: float
    """Its accuracy on the training split."""
    seconds: float
    """Training time."""
    extra: dict
    """What the authors' checkpoint adds for a pruned teacher: ``inactive_nodes`` and ``ratios``."""


def authors_state(net: TorchNet) -> dict[str, Tensor]:
    """The module's tensors under the authors' names (``ws_linear``, ``ws_bn``, ``final_w``)."""
    state = {}
    for i, layer in enumerate(net.layers):
        name = "final_w" if i == len(net.layers) - 1 else f"ws_linear.{i}"
        state[f"{name}.weight"], state[f"{name}.bias"] = layer.weight.detach(), layer.bias.detach()
    for i, bn in enumerate(net.bns):
        for k in teachers.BN_KEYS:
            value = getattr(bn, k)  # None: BN without affine parameters, whose identity is stored
            fresh = torch.ones_like(bn.running_mean) if k == "weight" else torch.zeros_like(bn.running_mean)
            state[f"ws_bn.{i}.{k}"] = fresh if value is None else value.detach()
    return state


def accuracy(net: Network, shape: arch.Arch, x: Tensor, labels: Tensor) -> float:
    """Share of images whose output argmax is their label: x (N, d), labels (N,); in the labelling's
    memory-bounded blocks (a float64 ConvNet over CIFAR-10's test split unfolds to 36 GB at once)."""
    with torch.no_grad():
        return float((construct.teacher_outputs(net, x, shape).argmax(dim=1) == labels).double().mean())


def _zero_outgoing(net: TorchNet, widths: tuple[int, ...], gone: list[list[int]]) -> None:
    """Keep pruned nodes out of the network: their outgoing weights (columns of the next layer) set to 0."""
    with torch.no_grad():
        for layer, (n, nodes) in enumerate(zip(widths, gone)):
            w = net.layers[layer + 1].weight  # (n_{l+1}, n_l [, 3, 3]) or conv -> output (c, C H W)
            w.view(w.shape[0], n, -1)[:, nodes] = 0.0


def _fit(
    net: TorchNet,
    x: Tensor,
    y: Tensor,
    recipe: Recipe,
    epochs: int,
    gen: torch.Generator,
    widths: tuple[int, ...],
    gone: list[list[int]] | None,
) -> None:
    """SGD on cross-entropy for ``epochs`` passes, the rate / 10 in the last third; ``gone``: pruned
    nodes kept at zero outgoing weight after every step (the fine-tuning of ``model_gen.prune``)."""
    opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    bn = net.shape is not None and net.shape.bn != "none"
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = recipe.lr * (0.1 if epoch >= 2 * epochs // 3 else 1.0)
        net.train()
        order = torch.randperm(len(x), generator=gen)  # (N,)
        for lo in range(0, len(x), recipe.batch):
            rows = order[lo : lo + recipe.batch]  # (B,)
            if len(rows) < 2 and bn:
                continue  # BN needs two samples
            opt.zero_grad()
            F.cross_entropy(net(x[rows])[1], y[rows]).backward()  # (B, c) logits
            opt.step()
            if gone is not None:
                _zero_outgoing(net, widths, gone)
    net.eval()


def pretrain(spec: RunSpec, recipe: Recipe = RECIPE) -> Pretrained:
    """Train the spec's teacher on its image set's labels (``spec.data.dataset``); with
    ``teacher.prune``, then prune it as ``model_gen.prune`` and fine-tune what remains."""
    began = time.perf_counter()
    split = datasets.read(spec.data.dataset, spec.data.data_dir)
    shape, t = unpruned(spec), spec.teacher
    x = torch.from_numpy(split.x_train)  # (N, d) float32
    y = torch.from_numpy(split.y_train)  # (N,)
    init_spec = spec.replace(**{"student.multi": 1, "student.init": "torch", "student.init_scale": 1.0,
                                "teacher.prune": (), "teacher.source": "random", "teacher.load_teacher": None,
                                "seed": recipe.seed, "init_seed": None})  # fmt: skip
    net = TorchNet(construct.init_student(init_spec).to(torch.float32, "cpu"), shape)
    gen = construct.stream(recipe.seed, "pretrain", spec.data.dataset)
    _fit(net, x, y, recipe, recipe.epochs, gen, t.widths, None)
    extra: dict[str, object] = {}
    if t.prune:
        raw, _ = teachers.layers(authors_state(net), spec, "the pretrained teacher")
        gone = teachers.inactive_nodes(raw, t.widths, t.prune)
        _zero_outgoing(net, t.widths, gone)
        _fit(net, x, y, recipe, recipe.finetune_epochs, gen, t.widths, gone)
        extra = {"inactive_nodes": gone, "ratios": list(t.prune)}
    state = authors_state(net)
    folded = teachers.network(state, spec)  # as runs read it: pruned, BN folded
    plain = arch.teacher(spec)
    test = accuracy(folded, plain, torch.from_numpy(split.x_test).double(), torch.from_numpy(split.y_test))
    train = accuracy(folded, plain, x.double(), y)
    return Pretrained(state, test, train, time.perf_counter() - began, extra)
