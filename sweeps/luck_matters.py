"""Luck Matters (figs. 5, 6, 15, 17-20): rho-bar and the rank of the final winners, per layer.

On Gaussian data (default) for FC small / large and CNN teachers, with and without BN, finite and infinite
data. The full CNN (a 640-channel student) is GPU work; on CPUs run ``--net fc-small fc-large cnn-narrow``,
the CNN at an eighth of its width (teacher 8-8-8-8 channels, student 80).

``--dataset cifar10`` (fig. 6 and the right columns of 17-18; ``--data-dir``), ``mnist`` or ``digits``: the
teacher is pretrained on the image set's labels with BN (once per storage root), the data finite; on digits'
8x8 images the FC nets only (four 3x3 layers need 9x9).
"""

from spec_ray.engine.inputs.datasets import IMAGE_SETS
from spec_ray.engine.kinds.batchnorm import AFTER_RELU, NO_BN
from spec_ray.engine.kinds.layer_kinds import CONV, LAYER_KINDS, MLP
from spec_ray.engine.kinds.teacher_sources import PRETRAINED
from spec_ray.engine.specs.protocols import LUCK_CNN, LUCK_FC_LARGE, LUCK_FC_SMALL, LUCK_INFINITE, Smoke, real_data
from spec_ray.orchestration.experiment import Experiment
from spec_ray.orchestration.sweep import main

CNN = {
    "model.arch": CONV.name,
    "model.image_size": LUCK_CNN.model.image_size,
    "data.d": LUCK_CNN.data.d,
    "teacher.widths": LUCK_CNN.teacher.widths,
    "student.bn_affine": True,  # ModelConv's nn.BatchNorm2d(k) is affine
    "checkpoint.keep_modulation": False,  # beta* and H* are taken for MLPs
}
REAL = IMAGE_SETS.names
NETS = {
    "fc-small": {},
    "fc-large": {"teacher.widths": LUCK_FC_LARGE.teacher.widths, "checkpoint.keep_modulation": False},
    "cnn": CNN,
    "cnn-narrow": {**CNN, "teacher.widths": (8, 8, 8, 8)},
}


def fits(net: dict[str, object], name: str) -> bool:
    """Whether a net's layers fit an image set's image (``LayerKind.max_depth``)."""
    kind = LAYER_KINDS[str(net.get("model.arch", MLP.name))]
    return len(net.get("teacher.widths", LUCK_FC_SMALL.teacher.widths)) <= kind.max_depth(IMAGE_SETS[name].side)


def real(name: str) -> dict[str, object]:
    """An image set with a teacher pretrained on it, with BN after the ReLU as the authors' --teacher_bn; the
    checkpoint metrics on 1,024 test images at most, as on Gaussian data."""
    settings = {**real_data(name), "teacher.source": PRETRAINED.name, "teacher.teacher_bn": AFTER_RELU.name,
                "teacher.teacher_bn_affine": True}  # fmt: skip
    return {**settings, "data.n_eval": min(1024, settings["data.n_eval"])}


EXPERIMENT = Experiment(
    name="luck_matters",
    # the rank of the final winners; fig. 16's beta* and H* (the small FC only: 20x fewer rows)
    base=LUCK_FC_SMALL.replace(**{"checkpoint.keep_correlations": True, "checkpoint.keep_modulation": True}),
    variants={
        "net": NETS,
        "data": {"finite": {}, "infinite": LUCK_INFINITE},
        "dataset": {"gaussian": {}, **{name: real(name) for name in REAL}},
    },
    default_variants={"dataset": ("gaussian",)},
    exclude=(
        *({"dataset": name, "data": "infinite"} for name in REAL),  # a real image set is finite
        *({"dataset": name, "net": net} for name in REAL for net, v in NETS.items() if not fits(v, name)),
    ),  # fmt: skip
    axes={"student_bn": (NO_BN.name, AFTER_RELU.name), "seed": (1, 2, 3, 4, 5)},
)
SMOKE = Smoke(
    settings={"train.epochs": 3, "data.n_train": 2048, "data.n_eval": 512, "checkpoint.first_epoch_points": 2},
    variants={
        "net": {
            "fc-small": {"teacher.widths": (5, 6)},
            "cnn": {**CNN, "model.image_size": 8, "data.d": 64, "teacher.widths": (3, 3), "student.multi": 4},
        },
        "data": {"finite": {}, "infinite": {"data.n_train": None, "train.iters_per_epoch": 32}},
        "dataset": {"gaussian": {}, "digits": {**real("digits"), "data.n_train": 512, "data.n_eval": 256}},
    },
    axes={"student_bn": (AFTER_RELU.name,), "seed": (1, 2)},  # BN and not: the equivalence tests cover both
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
