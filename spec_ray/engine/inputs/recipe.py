"""How spec-ray pretrains a teacher on labels, and what identifies a pretrained teacher (torch-free:
a launch resolves teachers by key before anything trains).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from spec_ray.engine.nets import arch
from spec_ray.engine.specs.spec import RunSpec


@dataclass(frozen=True)
class Recipe:
    """How a teacher is trained on labels: SGD with momentum on cross-entropy, the rate divided by
    10 for the last third of the epochs, float32, the training split in shuffled passes; a pruned
    teacher is then fine-tuned likewise with its pruned nodes held out."""

    epochs: int = 30
    """Passes over the training split."""
    batch: int = 64
    """Minibatch size."""
    lr: float = 0.05
    """Learning rate of the first two thirds."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """L2 penalty."""
    seed: int = 1
    """Seed of the init and of the minibatch order."""
    finetune_epochs: int = 10
    """With teacher.prune: passes of fine-tuning after pruning, the pruned nodes held at zero."""
    streams: int = 2
    """Which random streams draw the init and the fine-tuning order. 2: each its own purpose's stream;
    1 (stored before): the init was the seed-1 student's of equal widths, and fine-tuning went on with
    the pretraining's order. A part of the key, so a root's teachers of streams 1 are not reused."""


RECIPE = Recipe()


def unpruned(spec: RunSpec) -> arch.Arch:
    """The architecture the teacher is trained with: every node, its BN in place (affine or not)."""
    t, m = spec.teacher, spec.model
    return arch.Arch(m.arch, spec.data.d, t.widths, t.c, t.teacher_activation, m.leaky_slope, t.teacher_bn,
                     t.teacher_bn_affine, m.image_size, spec.data.channels)  # fmt: skip


def key(spec: RunSpec, recipe: Recipe = RECIPE) -> dict:
    """What decides a pretrained teacher: its image set, architecture and recipe (``engine.pretrain``)."""
    grouping = {"prune_grouping": spec.teacher.prune_grouping} if spec.teacher.prune else {}  # its fine-tuning's masks
    return {"dataset": spec.data.dataset, **dataclasses.asdict(unpruned(spec)), **dataclasses.asdict(recipe),
            "prune": list(spec.teacher.prune), **grouping}  # fmt: skip
