"""ICML 2020 fig. 10 on real images: a ConvNet teacher pretrained on CIFAR-10, pruned to its strong channels,
students over-realized 1x-10x on the channels that remain; rho_mean per layer over epochs and test accuracy.

``--dataset cifar10`` (default; the folder in ``--data-dir``), ``mnist``, or ``digits`` (scikit-learn's 8x8
digits: no download, three conv layers fit its image). The teacher is pretrained once per storage root
(docs/protocol.md, "Teachers from data"); ``--source file --load-teacher PATH`` loads the authors' checkpoint.
"""

from spec_ray.engine.inputs.datasets import IMAGE_SETS
from spec_ray.engine.kinds.batchnorm import BEFORE_RELU
from spec_ray.engine.kinds.layer_kinds import CONV
from spec_ray.engine.kinds.losses import MSE_MEAN
from spec_ray.engine.kinds.normalizations import FIRST
from spec_ray.engine.kinds.teacher_sources import PRETRAINED
from spec_ray.engine.specs.protocols import DEEP, Smoke, real_data
from spec_ray.orchestration.experiment import Experiment
from spec_ray.orchestration.sweep import main

PRUNE = 0.5  # the paper prunes "to keep strong teacher nodes" without a ratio: half of each layer's channels


def layers(name: str) -> int:
    """The teacher's conv layers on an image set: 4, or as many as its image holds (digits' 8x8: 3)."""
    return min(4, CONV.max_depth(IMAGE_SETS[name].side))


def real(name: str, layers: int) -> dict[str, object]:
    """An image set's settings (``protocols.real_data``) with ``layers`` conv layers of 64 channels, half pruned."""
    return {**real_data(name), "teacher.widths": (64,) * layers, "teacher.prune": (PRUNE,) * layers}


EXPERIMENT = Experiment(
    name="cifar",
    # The deep protocol's student and schedule (SGD batch 64, nn.MSELoss on the teacher's outputs, 100 epochs
    # of one shuffled pass, the rate halved at epoch 20) at a quarter of its rate: at lr 0.2 the 10x student
    # diverges on digits within 10 steps (measured). The teacher is a pretrained ConvNet, BN before the ReLU.
    base=DEEP.replace(
        **{
            **real("cifar10", 4),
            "model.arch": CONV.name,
            "teacher.source": PRETRAINED.name,
            "teacher.teacher_bn": BEFORE_RELU.name,
            "teacher.teacher_bn_affine": True,
            "teacher.weight_choices": (-0.5, -0.25, 0.0, 0.25, 0.5),
            "teacher.teacher_bias_spread": 0.0,
            "teacher.calibrate": False,
            "teacher.normalize": FIRST.name,
            "train.loss": MSE_MEAN.name,
            "train.lr": 0.05,
            "train.lr_schedule": ((20, 0.025),),
            "checkpoint.train_every_epochs": 0,
            "checkpoint.keep_correlations": False,
        }
    ),  # fmt: skip
    variants={"dataset": {s.name: real(s.name, layers(s.name)) for s in IMAGE_SETS}},
    default_variants={"dataset": ("cifar10",)},
    axes={"multi": (1, 2, 5, 10), "seed": (1, 2, 3)},
)
SMOKE = Smoke(
    settings={"train.epochs": 3, "train.lr_schedule": ((2, 0.025),), "checkpoint.first_epoch_points": 2},
    variants={
        "dataset": {
            "digits": {**real("digits", 3), "teacher.widths": (8, 8, 8), "data.n_train": 512, "data.n_eval": 200}
        }
    },  # fmt: skip
    axes={"multi": (1, 4), "seed": (1,)},
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
