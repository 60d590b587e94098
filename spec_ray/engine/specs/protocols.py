"""The two protocols of docs/protocol.md as base specs, and their tiny smoke versions: sweeps and tests start here.

``TWO_LAYER`` is ``RunSpec()`` itself (the defaults are the two-layer protocol). ``DEEP`` is
figure 6's setting; its teacher is also available as overrides, for smaller deep specs.
A ``Smoke`` is what ``--smoke`` does to an experiment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from spec_ray.engine.inputs.datasets import IMAGE_SETS
from spec_ray.engine.kinds.inits import TORCH_INIT
from spec_ray.engine.kinds.layer_kinds import CONV
from spec_ray.engine.kinds.losses import MSE_MEAN
from spec_ray.engine.kinds.normalizations import ALL
from spec_ray.engine.specs.spec import RunSpec, apply_overrides


@dataclass(frozen=True)
class Smoke:
    """A tiny version of an experiment that finishes in seconds: fixed settings and short axes."""

    settings: Mapping[str, object] = field(default_factory=dict)
    """Dotted spec paths -> values, applied to the experiment's base spec."""
    axes: Mapping[str, tuple] = field(default_factory=dict)
    """Axis name -> values, replacing the experiment's axes of that name (``seed`` included)."""
    block_epochs: int = 1
    """Epochs per Parquet file and Tune checkpoint."""
    variants: Mapping[str, Mapping[str, Mapping[str, object]]] = field(default_factory=dict)
    """Variant axis -> its named settings, replacing the experiment's axis of that name."""

    def __post_init__(self) -> None:
        apply_overrides(RunSpec(), dict(self.settings))  # unknown or bad settings fail at import
        object.__setattr__(self, "axes", {k: tuple(v) for k, v in self.axes.items()})


TWO_LAYER = RunSpec()
"""Figures 5, 7, 8, 9: d=100, m=20, c=50, sigma 1.5, SGD lr 0.01, batch 16 with replacement,
100 epochs x 1,000 steps."""

DEEP_TEACHER = {
    "teacher.weight_choices": (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0),
    "teacher.teacher_bias": 0.0,
    "teacher.teacher_bias_spread": 0.5,
    "teacher.calibrate": True,
    "teacher.normalize": ALL.name,
}
"""The deep script's teacher: entries from -1..1, biases U[-0.5, 0.5], polarity then
row normalization, calibrated to half-active nodes and standardized outputs."""

DEEP = RunSpec().replace(
    **DEEP_TEACHER,
    **{
        "teacher.widths": (50, 75, 100, 125),
        "teacher.c": 100,
        "student.multi": 2,
        # Scale 1.0, not the text's 0.1: the authors' reset_parameters() undid their scaling
        # (docs/protocol.md, "Where we differ").
        "student.init": TORCH_INIT.name,
        "student.init_scale": 1.0,
        "data.d": 20,
        "data.sigma": 10.0,
        "data.n_eval": 10_240,
        "train.batch": 64,
        "train.lr": 0.2,
        "train.lr_schedule": ((20, 0.1),),
        "train.epochs": 100,
        "train.iters_per_epoch": None,  # one shuffled pass an epoch: ceil(N / 64) steps
    },
)
"""Figure 6: 4-layer teacher 50-75-100-125, student 2x, d=20, sigma 10, c=100, SGD batch 64,
lr 0.2 then 0.1 from epoch 20, 100 epochs of one shuffled pass each."""

LUCK_TEACHER = {
    "teacher.teacher_bias": 0.0,
    "teacher.teacher_bias_spread": 0.5,
    "teacher.normalize": ALL.name,
}
"""Luck Matters' teacher (``model_gen.init_w``, then ``normalize``): entries from {-0.5, ..., 0.5}
(the default choices), biases U[-0.5, 0.5], every row and its bias divided by the row norm, no
polarity, no calibration."""

LUCK_FC_SMALL = RunSpec().replace(
    **LUCK_TEACHER,
    **{
        "teacher.widths": (10, 15, 20, 25),
        "teacher.c": 100,
        "student.multi": 10,
        "student.init": TORCH_INIT.name,  # the students' reset_parameters(): PyTorch's default init
        "student.init_scale": 1.0,
        "data.d": 20,
        "data.sigma": 10.0,
        "data.n_train": 100_000,
        "data.n_eval": 1024,
        "train.batch": 64,
        "train.lr": 0.01,
        "train.epochs": 40,
        "train.iters_per_epoch": None,  # DataLoader(shuffle=True): one pass of ceil(100,000 / 64) steps
        "train.loss": MSE_MEAN.name,
        # The authors take train-set statistics on 3 batches of 64 (getCorrs); a pass over all
        # 100,000 samples would hold a CNN run's activations at once (about 49 GB at 80 channels).
        "checkpoint.train_every_epochs": 0,
    },
)
"""Luck Matters on Gaussian data, small FC (``luckmatter/recon_multilayer.py``'s defaults):
teacher 10-15-20-25, student 10x, d=20, sigma 10, c=100, a fixed 100,000-sample training set,
1,024 evaluation samples, SGD lr 0.01 batch 64, 40 epochs of one shuffled pass, nn.MSELoss."""

LUCK_FC_LARGE = LUCK_FC_SMALL.replace(**{"teacher.widths": (50, 75, 100, 125)})
"""Luck Matters' large FC: teacher 50-75-100-125, otherwise as ``LUCK_FC_SMALL``."""

LUCK_CNN = LUCK_FC_SMALL.replace(
    **{"model.arch": CONV.name, "model.image_size": 16, "data.d": 256, "teacher.widths": (64, 64, 64, 64)}
)
"""Luck Matters' CNN (``--use_cnn``): 1 x 16 x 16 Gaussian images, teacher 64-64-64-64 channels of
3x3 filters (``ModelConv``), student 10x (640 channels a layer: GPU work). Its BN is
``nn.BatchNorm2d``'s default, affine: set ``student.bn_affine`` with ``student.student_bn``."""

LUCK_INFINITE = {"data.n_train": None, "train.iters_per_epoch": 1563}
"""Luck Matters' "infinite" GAUS data (the text's main setting): a fresh Gaussian batch every step,
as many steps an epoch as a pass over the finite set. The authors' code instead regenerates its
100,000 samples once an epoch (``--regen_dataset_each_epoch``); docs/protocol.md."""

TWO_LAYER_SMOKE = {
    "teacher.widths": (5,),
    "data.n_train": 1000,
    "data.n_eval": 1000,
    "train.epochs": 6,
    "train.iters_per_epoch": 300,
}
"""Two-layer runs short enough for a smoke sweep: m = 5, 1,000 samples, 6 epochs x 300 steps."""

DEEP_SMOKE = {"teacher.widths": (10, 15, 20, 25), "teacher.c": 20, "train.epochs": 3, "data.n_eval": 1024,
              "train.lr_schedule": ((2, 0.1),)}  # fmt: skip
"""The deep protocol at a tenth of its widths and 3 epochs."""

RUN_SMOKE = Smoke(
    settings={
        "teacher.widths": (10,),
        "data.n_train": 2000,
        "data.n_eval": 2000,
        "train.epochs": 3,
        "train.iters_per_epoch": 300,
        "checkpoint.first_epoch_points": 4,
    },  # fmt: skip
    axes={"p": (0.0, 1.0, 2.0), "seed": (1, 2, 3, 4)},
)
"""``python -m spec_ray run --smoke``: one pack of 12 runs that finishes in seconds on 2 cores."""

CONV_SMOKE = {"teacher.normalize": ALL.name, "train.loss": MSE_MEAN.name}
"""What ``--smoke`` adds with ``--arch conv`` (flags given win): every teacher row normalized, as
the authors' conv teacher (``teacher.normalize()``), and nn.MSELoss. With the two-layer
protocol's unnormalized 640-wide output layer the smoke teacher's outputs are in the hundreds,
and with BN at lr 0.01 the student's loss grows without bound (the reference's too)."""


def real_data(name: str) -> dict[str, object]:
    """The settings a real image set fixes: its name, image (d, conv side), classes as the teacher's
    outputs, and all of its training and test images."""
    info = IMAGE_SETS[name]
    return {"data.dataset": name, "data.d": info.d, "model.image_size": info.side, "teacher.c": info.classes,
            "data.n_train": info.train_size, "data.n_eval": info.test_size}  # fmt: skip
