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

from spec_ray.engine.inputs import construct, datasets, teacher_checkpoints
from spec_ray.engine.inputs.recipe import RECIPE, Recipe, unpruned
from spec_ray.engine.kinds.inits import TORCH_INIT
from spec_ray.engine.kinds.teacher_sources import DRAWN
from spec_ray.engine.nets import arch
from spec_ray.engine.nets.network import Network
from spec_ray.engine.reference import TorchNet
from spec_ray.engine.specs.spec import RunSpec


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
    """What the authors' checkpoint adds for a pruned teacher: ``inactive_nodes``, ``masks`` and ``ratios``."""


def authors_state(net: TorchNet) -> dict[str, Tensor]:
    """The module's tensors under the authors' names (``ws_linear``, ``ws_bn``, ``final_w``), exactly the
    keys of their ``Model`` / ``ModelConv`` state dict, so their ``load_state_dict`` (strict) takes it:
    a BN's ``num_batches_tracked``, and an MLP BN without affine parameters stores none (their
    ``BatchNorm1d(affine=False)``); a conv BN always has them (their ``BatchNorm2d``), identity if not trained."""
    state = {}
    for i, layer in enumerate(net.layers):
        name = "final_w" if i == len(net.layers) - 1 else f"ws_linear.{i}"
        state[f"{name}.weight"], state[f"{name}.bias"] = layer.weight.detach(), layer.bias.detach()
    conv = net.shape is not None and net.shape.conv
    for i, bn in enumerate(net.bns):
        for k in teacher_checkpoints.BN_KEYS:
            value = getattr(bn, k)  # None: BN without affine parameters
            if value is None and not conv:
                continue
            fresh = torch.ones_like(bn.running_mean) if k == "weight" else torch.zeros_like(bn.running_mean)
            state[f"ws_bn.{i}.{k}"] = fresh if value is None else value.detach()
        tracked = bn.num_batches_tracked
        state[f"ws_bn.{i}.num_batches_tracked"] = torch.tensor(0) if tracked is None else tracked.detach()
    return state


def accuracy(net: Network, shape: arch.Arch, x: Tensor, labels: Tensor) -> float:
    """Share of images whose output argmax is their label: x (N, d), labels (N,); in the labelling's
    memory-bounded blocks (a float64 ConvNet over CIFAR-10's test split unfolds to 36 GB at once)."""
    with torch.no_grad():
        return float((construct.teacher_outputs(net, x, shape).argmax(dim=1) == labels).double().mean())


def _apply(net: TorchNet, held: list[Tensor]) -> None:
    """Keep pruned nodes out of the network: each layer above the first times its mask
    (``teacher_checkpoints.masks``)."""
    with torch.no_grad():
        for layer, mask in zip(net.layers[1:], held):
            layer.weight.mul_(mask.reshape(layer.weight.shape))


def _fit(
    net: TorchNet,
    x: Tensor,
    y: Tensor,
    recipe: Recipe,
    epochs: int,
    gen: torch.Generator,
    held: list[Tensor] | None,
) -> None:
    """SGD on cross-entropy for ``epochs`` passes, the rate / 10 in the last third; ``held``: the pruning
    masks, applied after every step (the fine-tuning of ``model_gen.prune``)."""
    opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    bn = net.shape is not None and net.shape.bn.present
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
            if held is not None:
                _apply(net, held)
    net.eval()


def initial(spec: RunSpec, recipe: Recipe = RECIPE) -> Network:
    """The teacher's weights before pretraining: torch's default init of every node, drawn in the
    pretraining's own stream (never a student's)."""
    init_spec = spec.replace(**{"student.multi": 1, "student.init": TORCH_INIT.name, "student.init_scale": 1.0,
                                "teacher.prune": (), "teacher.source": DRAWN.name, "teacher.load_teacher": None,
                                "seed": recipe.seed, "init_seed": None})  # fmt: skip
    return construct.init_student(init_spec, purpose="pretrain")


def pretrain(spec: RunSpec, recipe: Recipe = RECIPE) -> Pretrained:
    """Train the spec's teacher on its image set's labels (``spec.data.dataset``); with
    ``teacher.prune``, then prune it as ``model_gen.prune`` and fine-tune what remains."""
    began = time.perf_counter()
    split = datasets.read(spec.data.dataset, spec.data.data_dir)
    shape, t = unpruned(spec), spec.teacher
    x = torch.from_numpy(split.x_train)  # (N, d) float32
    y = torch.from_numpy(split.y_train)  # (N,)
    net = TorchNet(initial(spec, recipe).to(torch.float32, "cpu"), shape)
    gen = construct.stream(recipe.seed, "pretrain", spec.data.dataset)  # its minibatch order
    _fit(net, x, y, recipe, recipe.epochs, gen, None)
    extra: dict[str, object] = {}
    if t.prune:
        raw, _ = teacher_checkpoints.layers(authors_state(net), spec, "the pretrained teacher")
        authors = spec.authors_last_layer
        gone = teacher_checkpoints.inactive_nodes(raw, t.widths, t.prune, authors)
        shapes = [tuple(layer.weight.shape) for layer in net.layers]
        held = [m.to(torch.float32) for m in teacher_checkpoints.masks(raw, t.widths, gone, authors, shapes)]
        _apply(net, held)
        order = construct.stream(recipe.seed, "finetune", spec.data.dataset)  # a stream of its own
        _fit(net, x, y, recipe, recipe.finetune_epochs, order, held)
        extra = {"inactive_nodes": gone, "masks": held, "ratios": list(t.prune)}
    state = authors_state(net)
    folded = teacher_checkpoints.network(state, spec)  # as runs read it: pruned, BN folded
    plain = arch.teacher(spec)
    test = accuracy(folded, plain, torch.from_numpy(split.x_test).double(), torch.from_numpy(split.y_test))
    train = accuracy(folded, plain, x.double(), y)
    return Pretrained(state, test, train, time.perf_counter() - began, extra)
