"""The sections of a run's spec: one frozen dataclass per concept (teacher, student, data, model,
training, checkpoints), every field typed, documented and validated on construction.

Defaults are the two-layer protocol of docs/protocol.md; ``spec.RunSpec`` holds one of each and the
checks across sections. Every invalid value raises ``ValueError`` naming the field and the allowed
values. Field names double as the ``runs`` table's column names (``spec_ray.storage.schema``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spec_ray.engine.inputs.datasets import GAUSSIAN, IMAGE_SETS, ImageSet
from spec_ray.engine.inputs.datasets import NAMES as DATASETS
from spec_ray.engine.kinds.activations import ACTIVATIONS, RELU
from spec_ray.engine.kinds.augmentations import AUGMENTATIONS, NONE
from spec_ray.engine.kinds.batchnorm import BATCHNORMS, NO_BN
from spec_ray.engine.kinds.dtypes import DTYPES, FLOAT32
from spec_ray.engine.kinds.inits import GAUSSIAN_INIT, INITS
from spec_ray.engine.kinds.layer_kinds import LAYER_KINDS, MLP
from spec_ray.engine.kinds.losses import LOSSES, MSE
from spec_ray.engine.kinds.normalizations import FIRST, NORMALIZATIONS
from spec_ray.engine.kinds.optim import OPTIMIZERS, SGD
from spec_ray.engine.kinds.precisions import IEEE, PRECISIONS
from spec_ray.engine.kinds.prune_groupings import AUTHORS, PRUNE_GROUPINGS
from spec_ray.engine.kinds.registry import record_of
from spec_ray.engine.kinds.teacher_sources import DRAWN, TEACHER_SOURCES
from spec_ray.engine.specs.checks import MAX_EPOCHS, MAX_ITERS_PER_EPOCH, MAX_SAMPLES
from spec_ray.engine.specs.checks import check_bool as _check_bool
from spec_ray.engine.specs.checks import check_float as _check_float
from spec_ray.engine.specs.checks import check_int as _check_int
from spec_ray.engine.specs.checks import check_kinds as _check_kinds
from spec_ray.engine.specs.checks import check_unit as _check_unit
from spec_ray.engine.specs.checks import coerce_floats as _coerce_floats
from spec_ray.engine.specs.checks import fail as _fail
from spec_ray.engine.specs.roles import role_field


@dataclass(frozen=True)
class TeacherSpec:
    """The fixed teacher network that labels the data."""

    widths: tuple[int, ...] = role_field((20,), data=True)
    """Hidden widths m_l, lowest layer first; (20,) is the two-layer protocol."""
    c: int = role_field(50, data=True)
    """Output dimension."""
    p: float = role_field(0.0, per_run=True)
    """Polarity: fan-out weights of node j (0-based) are divided by (j+1)^p."""
    weight_choices: tuple[float, ...] = role_field((-0.5, -0.25, 0.0, 0.25, 0.5), per_run=True, data=True)
    """Values the un-normalised teacher weight entries are drawn from."""
    normalize: str = role_field(FIRST.name, per_run=True, data=True, kinds=NORMALIZATIONS)
    """first: layer-1 rows scaled to unit norm, the layers above kept as drawn, then the
    polarity division (two-layer protocol) | all: the polarity division first, then every
    layer's rows and biases divided by the row norm (deep protocol)."""
    teacher_bias: float = role_field(-0.1, per_run=True, data=True)
    """Bias of every teacher node (hidden and output), the centre of its range."""
    teacher_bias_spread: float = role_field(0.0, per_run=True, data=True)
    """Biases drawn from U[teacher_bias - spread, teacher_bias + spread] (deep protocol: 0.5)."""
    calibrate: bool = role_field(False, per_run=True, data=True)
    """Shift hidden biases by the median pre-activation on the eval set and rescale the
    output layer to zero mean and unit std (deep protocol)."""
    teacher_activation: str = role_field(RELU.name, neutral=RELU.name, kinds=ACTIVATIONS)
    """The teacher's hidden nonlinearity, a record of ``activations.ACTIVATIONS`` (leaky_relu's negative
    slope is model.leaky_slope)."""
    teacher_bn: str = role_field(NO_BN.name, neutral=NO_BN.name, kinds=BATCHNORMS)
    """none | after_relu | before_relu: BatchNorm in the teacher, as the authors' --teacher_bn.
    The teacher is never trained and runs in eval mode, so its BN holds PyTorch's fresh running
    statistics (mean 0, variance 1): it scales by 1/sqrt(1 + 1e-5)."""
    teacher_bn_affine: bool = role_field(False, neutral=False)
    """Affine BN parameters in the teacher (fresh: weight 1, bias 0), as --teacher_bn_affine."""
    source: str = role_field(DRAWN.name, neutral=DRAWN.name, kinds=TEACHER_SOURCES)
    """random: drawn as above | pretrained: trained by spec-ray on the dataset's labels (docs/protocol.md,
    "Teachers from data"), once per storage root | file: the authors' checkpoint format ({'net':
    state_dict}), given as teacher.load_teacher. A stored teacher's BN (teacher_bn) is folded into
    its layers in eval mode."""
    load_teacher: str | None = role_field(None, per_run=True, neutral=None)
    """source file: the checkpoint's path; at launch every pretrained or loaded teacher is stored in
    the storage root and this becomes its content hash (sha256:...), which the run id holds."""
    prune: tuple[float, ...] = role_field((), neutral=())
    """Structured pruning of a stored teacher as ICML's model_gen.prune: per hidden layer, the fraction
    of its nodes (channels) with the smallest mean |outgoing weight| removed; the student is
    over-realized on the nodes that remain. Empty: none."""
    prune_grouping: str = role_field(AUTHORS.name, neutral=AUTHORS.name, kinds=PRUNE_GROUPINGS)
    """How a conv teacher's last layer is pruned, where the output layer reads it: authors (as
    model_gen.prune: the output's columns viewed as (H W, C), 'channel' k is every column j with
    j mod C = k, masked; the teacher keeps every channel, and its 'pruned' ones, which still feed the
    output through other columns, are not measured) | channel (a channel's own H W columns, as torch
    flattens it: the pruned channels are dropped). An MLP, a 1x1 last layer or one not pruned: the same."""

    def __post_init__(self) -> None:
        _coerce_floats(self)
        _check_kinds(self, "teacher")
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "weight_choices", tuple(float(v) for v in self.weight_choices))
        if not self.widths:
            _fail("teacher.widths", self.widths, "a non-empty list of integers >= 1")
        for w in self.widths:
            _check_int("teacher.widths", w, 1)
        _check_int("teacher.c", self.c, 1)
        _check_float("teacher.p", self.p, 0.0)
        if not self.weight_choices or all(v == 0 for v in self.weight_choices):
            _fail("teacher.weight_choices", self.weight_choices, "finite values, one non-zero")
        if not all(math.isfinite(v) for v in self.weight_choices):
            _fail("teacher.weight_choices", self.weight_choices, "finite values, one non-zero")
        if len(set(self.weight_choices)) != len(self.weight_choices):
            _fail("teacher.weight_choices", self.weight_choices, "distinct values")
        _check_float("teacher.teacher_bias", self.teacher_bias, -math.inf)
        _check_float("teacher.teacher_bias_spread", self.teacher_bias_spread, 0.0)
        _check_bool("teacher.calibrate", self.calibrate)
        _check_bool("teacher.teacher_bn_affine", self.teacher_bn_affine)
        object.__setattr__(self, "prune", tuple(float(v) for v in self.prune))
        if self.prune and (len(self.prune) != len(self.widths) or not all(0 <= v < 1 for v in self.prune)):
            _fail("teacher.prune", self.prune, f"{len(self.widths)} fractions in [0, 1), one per hidden layer")
        if self.prune and not self.stored:
            _fail("teacher.prune", self.prune, f"() with teacher.source {self.source} (pruning keeps a trained "
                  "teacher's strong nodes)")  # fmt: skip
        if self.source_kind.from_file and not self.load_teacher:
            _fail("teacher.load_teacher", self.load_teacher, f"a checkpoint path with teacher.source {self.source}")
        if not self.stored and self.load_teacher is not None:
            _fail("teacher.load_teacher", self.load_teacher, f"None with teacher.source {self.source}")

    @property
    def active_widths(self) -> tuple[int, ...]:
        """Hidden widths after pruning: what the student is over-realized on."""
        if not self.prune:
            return self.widths
        return tuple(w - int(w * r) for w, r in zip(self.widths, self.prune))

    @property
    def stored(self) -> bool:
        """The teacher is a stored network (pretrained or loaded), not drawn."""
        return self.source_kind.stored

    source_kind = record_of("source", TEACHER_SOURCES)
    normalize_kind = record_of("normalize", NORMALIZATIONS)
    prune_grouping_kind = record_of("prune_grouping", PRUNE_GROUPINGS)
    activation_kind = record_of("teacher_activation", ACTIVATIONS)
    bn_kind = record_of("teacher_bn", BATCHNORMS)

    @property
    def m(self) -> int:
        """Width of the lowest hidden layer (the paper's m), after pruning."""
        return self.active_widths[0]

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.widths)


@dataclass(frozen=True)
class StudentSpec:
    """The over-realised student network."""

    multi: int = role_field(5)
    """Over-realisation: student width n_l = multi * m_l at every hidden layer."""
    init_std: float = role_field(0.005, per_run=True)
    """Standard deviation of the Gaussian student weight init (biases start at 0)."""
    init: str = role_field(GAUSSIAN_INIT.name, per_run=True, kinds=INITS)
    """gaussian: N(0, init_std^2) weights, zero biases | torch: PyTorch's default Linear
    init (U[+-1/sqrt(fan_in)] weights and biases) times init_scale (deep protocol)."""
    init_scale: float = role_field(0.1, per_run=True)
    """Scale of the torch init."""
    student_activation: str = role_field(RELU.name, neutral=RELU.name, kinds=ACTIVATIONS)
    """The student's hidden nonlinearity, a record of ``activations.ACTIVATIONS`` (leaky_relu's negative
    slope is model.leaky_slope)."""
    student_bn: str = role_field(NO_BN.name, neutral=NO_BN.name, kinds=BATCHNORMS)
    """none | after_relu | before_relu: BatchNorm after every hidden layer's activation, or
    between its linear map and the activation (the authors' --bn and --bn_before_relu).
    Training uses batch statistics; checkpoint metrics use the running ones (eval mode)."""
    bn_affine: bool = role_field(False, neutral=False)
    """Trained affine weight and bias in the student's BN (the authors' --bn_affine)."""

    def __post_init__(self) -> None:
        _coerce_floats(self)
        _check_kinds(self, "student")
        _check_int("student.multi", self.multi, 1)
        _check_float("student.init_std", self.init_std, 0.0, strict=True)
        _check_float("student.init_scale", self.init_scale, 0.0, strict=True)
        _check_bool("student.bn_affine", self.bn_affine)

    init_kind = record_of("init", INITS)
    activation_kind = record_of("student_activation", ACTIVATIONS)
    bn_kind = record_of("student_bn", BATCHNORMS)


@dataclass(frozen=True)
class DataSpec:
    """Inputs: Gaussian N(0, sigma^2 I), a fixed training set and a fresh evaluation set."""

    d: int = role_field(100, data=True)
    """Input dimension."""
    sigma: float = role_field(1.5, per_run=True, data=True)
    """Input standard deviation (authors' command 1.5; the paper's text says 10)."""
    n_train: int | None = role_field(10_000, data=True)
    """Training-set size after augmentation (the sample-size axis); None: online, a fresh
    Gaussian batch every step."""
    n_eval: int = role_field(10_000, data=True)
    """Evaluation-set size (fresh Gaussian samples, never augmented)."""
    augmentation: str = role_field(NONE.name, per_run=True, data=True, kinds=AUGMENTATIONS)
    """none | teacher_agnostic (Definition 7a) | teacher_aware (Definition 7b)."""
    agnostic_delta: float = role_field(0.1, per_run=True, data=True)
    """Shift +-delta along every axis for teacher_agnostic augmentation."""
    aware_alpha_lo: float = role_field(1.0, per_run=True, data=True)
    """Lower end of alpha ~ U[lo, hi], the teacher_aware shift off a boundary."""
    aware_alpha_hi: float = role_field(2.0, per_run=True, data=True)
    """Upper end of alpha ~ U[lo, hi]."""
    dataset: str = role_field(GAUSSIAN, data=True, neutral=GAUSSIAN, kinds=DATASETS)
    """gaussian: N(0, sigma^2 I) as above | cifar10 | mnist | digits (scikit-learn's 8x8, no download):
    real images, normalized as the authors' init_dataset, the first n_train training images and the
    first n_eval test ones (``datasets``); data.d must be the images' C x S x S."""
    data_dir: str | None = role_field(None, location=True, neutral=None)
    """The folder holding cifar10 (cifar-10-batches-py/) or mnist (MNIST/raw/), checked by MD5; not
    part of a run id."""

    def __post_init__(self) -> None:
        _coerce_floats(self)
        _check_kinds(self, "data")
        _check_int("data.d", self.d, 1)
        _check_float("data.sigma", self.sigma, 0.0, strict=True)
        if self.n_train is not None:
            _check_int("data.n_train", self.n_train, 1, MAX_SAMPLES)
        _check_int("data.n_eval", self.n_eval, 2, MAX_SAMPLES)
        _check_float("data.agnostic_delta", self.agnostic_delta, 0.0, strict=True)
        _check_float("data.aware_alpha_lo", self.aware_alpha_lo, 0.0)
        _check_float("data.aware_alpha_hi", self.aware_alpha_hi, self.aware_alpha_lo)
        if self.n_train is None and self.augmentation_kind.present:
            _fail("data.augmentation", self.augmentation, f"{NONE.name} when data.n_train is None (online data)")
        if self.real:
            info = self.image_set
            if self.d != info.d:
                _fail("data.d", self.d, f"{info.d} with data.dataset {self.dataset} ({info.channels} x {info.side} "
                      f"x {info.side} images)")  # fmt: skip
            if self.n_train is None or self.n_train > info.train_size:
                _fail("data.n_train", self.n_train, f"1..{info.train_size}: {self.dataset}'s training images")
            if self.n_eval > info.test_size:
                _fail("data.n_eval", self.n_eval, f"2..{info.test_size}: {self.dataset}'s test images")
            if self.augmentation_kind.present:
                _fail("data.augmentation", self.augmentation, f"{NONE.name} with data.dataset {self.dataset}")

    augmentation_kind = record_of("augmentation", AUGMENTATIONS)

    @property
    def image_set(self) -> ImageSet | None:
        """The record of a real ``dataset``; None for Gaussian inputs."""
        return None if self.dataset == GAUSSIAN else IMAGE_SETS[self.dataset]

    @property
    def real(self) -> bool:
        """Inputs are a real image set, not Gaussian."""
        return self.image_set is not None

    @property
    def channels(self) -> int:
        """Channels of an input image: the image set's, 1 for Gaussian images."""
        return self.image_set.channels if self.real else 1


@dataclass(frozen=True)
class ModelSpec:
    """The architecture teacher and student share: layer kind, input image, activation slope."""

    arch: str = role_field(MLP.name, neutral=MLP.name, kinds=LAYER_KINDS)
    """mlp: fully connected layers | conv: 3x3 convolutions without padding (each shrinks the
    image by 2; teacher.widths are channels), then a linear map to c outputs (the authors' ModelConv)."""
    image_size: int = role_field(10, neutral=10)
    """conv: the input is a C x S x S image, so data.d must be C S^2 (Gaussian: C = 1, default 10: d = 100;
    a real image set: its own C and S)."""
    leaky_slope: float = role_field(0.01, neutral=0.01)
    """Negative slope of leaky_relu (PyTorch's default)."""

    def __post_init__(self) -> None:
        _coerce_floats(self)
        _check_kinds(self, "model")
        _check_int("model.image_size", self.image_size, 3)
        _check_unit("model.leaky_slope", self.leaky_slope)

    layer_kind = record_of("arch", LAYER_KINDS)


@dataclass(frozen=True)
class TrainSpec:
    """SGD (with momentum and weight decay) or Adam on minibatches: drawn with replacement,
    or one shuffled pass an epoch."""

    lr: float = role_field(0.01, per_run=True)
    """Learning rate."""
    batch: int = role_field(16, data=True)
    """Minibatch size B."""
    epochs: int = role_field(100)
    """Number of epochs."""
    iters_per_epoch: int | None = role_field(1000, data=True)
    """SGD steps per epoch, minibatches drawn uniformly with replacement (two-layer protocol,
    online data) | None: an epoch is one shuffled pass over the training set without
    replacement, ceil(N/B) steps, the last batch holding the remainder (deep protocol)."""
    loss: str = role_field(MSE.name, kinds=LOSSES)
    """mse: (1/2) mean over the batch of the squared error summed over outputs (two-layer
    protocol) | mse_mean: mean over batch and outputs, as nn.MSELoss (deep protocol) | ce:
    cross-entropy with label = argmax of the teacher output."""
    lr_schedule: tuple[tuple[int, float], ...] = role_field((), per_run=True)
    """(epoch, lr) pairs: from that epoch on, that learning rate (deep protocol: ((20, 0.1),))."""
    dtype: str = role_field(FLOAT32.name, kinds=DTYPES)
    """float32 | float64 (the authors used float64)."""
    optimizer: str = role_field(SGD.name, neutral=SGD.name, kinds=OPTIMIZERS)
    """sgd | adam, each with torch.optim's semantics (Adam: betas 0.9, 0.999, eps 1e-8)."""
    momentum: float = role_field(0.0, neutral=0.0)
    """SGD momentum in [0, 1), dampening 0, as torch.optim.SGD."""
    weight_decay: float = role_field(0.0, neutral=0.0)
    """L2 penalty added to the gradient (torch.optim's weight_decay), SGD and Adam."""
    matmul_precision: str = role_field(IEEE.name, neutral=IEEE.name, kinds=PRECISIONS)
    """Arithmetic of the training steps' float32 matmuls and convolutions: ieee (fp32) | bf16
    (CPU: oneDNN rounds the operands to bfloat16, accumulates in fp32) | tf32 (CUDA tensor
    cores). Weights, updates and every metric stay fp32; float64 runs take ieee only."""

    def __post_init__(self) -> None:
        _coerce_floats(self)
        _check_kinds(self, "train")
        _check_float("train.lr", self.lr, 0.0, strict=True)
        _check_int("train.batch", self.batch, 1)
        _check_int("train.epochs", self.epochs, 1, MAX_EPOCHS)
        if self.iters_per_epoch is not None:
            _check_int("train.iters_per_epoch", self.iters_per_epoch, 1, MAX_ITERS_PER_EPOCH)
        object.__setattr__(self, "lr_schedule", tuple((int(e), float(v)) for e, v in self.lr_schedule))
        for epoch, value in self.lr_schedule:
            if epoch < 0 or not math.isfinite(value) or value <= 0:
                _fail("train.lr_schedule", self.lr_schedule, "(epoch >= 0, finite lr > 0) pairs")
        _check_unit("train.momentum", self.momentum)
        if not self.optimizer_kind.takes_momentum and self.momentum != 0.0:
            _fail("train.momentum", self.momentum, f"0 with train.optimizer {self.optimizer} (its momentum is fixed)")
        _check_float("train.weight_decay", self.weight_decay, 0.0)
        if not self.dtype_kind.reducible and not self.precision_kind.exact:
            exact = " or ".join(PRECISIONS.names_where(exact=True))
            _fail("train.matmul_precision", self.matmul_precision, f"{exact} with train.dtype {self.dtype}")

    loss_kind = record_of("loss", LOSSES)
    dtype_kind = record_of("dtype", DTYPES)
    precision_kind = record_of("matmul_precision", PRECISIONS)
    optimizer_kind = record_of("optimizer", OPTIMIZERS)

    @property
    def plain_sgd(self) -> bool:
        """SGD without momentum or weight decay: the hand-fused update applies."""
        return self.optimizer_kind.plain_step and self.momentum == 0.0 and self.weight_decay == 0.0

    def lr_at(self, epoch: int) -> float:
        """The learning rate during ``epoch`` (0-based), after the schedule."""
        value = self.lr
        for start, rate in sorted(self.lr_schedule):
            if epoch >= start:
                value = rate
        return value


@dataclass(frozen=True)
class CheckpointSpec:
    """When metrics are taken and what counts as a recovered teacher node."""

    first_epoch_points: int = role_field(8)
    """Log-spaced checkpoints inside the first epoch (for the dynamics figure)."""
    every_epochs: int = role_field(1)
    """A checkpoint every this many epochs (the last epoch always has one)."""
    success_threshold: float = role_field(0.95)
    """A teacher node is recovered when its best correlation exceeds this."""
    train_every_epochs: int = role_field(10)
    """Train loss, full-batch gradient norm and train-set correlations every this many
    epochs, at init and at the end (0: never); they cost more than the eval metrics."""
    keep_correlations: bool = role_field(False, neutral=False)
    """Also write every checkpoint's teacher x student correlations (eval set) to the
    ``correlations`` table: Luck Matters' rank of the final winners needs them (sum of m_l n_l
    rows a run and checkpoint)."""
    keep_modulation: bool = role_field(False, neutral=False)
    """Also write the top-down modulation beta* and H* (Luck Matters sec. 5, fig. 16) of every
    hidden layer at the first and the last checkpoint to the ``modulation`` table (MLP only;
    sum of n_l m_l rows a run and checkpoint)."""

    def __post_init__(self) -> None:
        _coerce_floats(self)
        _check_int("checkpoint.first_epoch_points", self.first_epoch_points, 0)
        _check_int("checkpoint.every_epochs", self.every_epochs, 1)
        t = self.success_threshold
        if not isinstance(t, (int, float)) or not -1.0 <= t <= 1.0:
            _fail("checkpoint.success_threshold", t, "a number in [-1, 1]")
        _check_int("checkpoint.train_every_epochs", self.train_every_epochs, 0)
        _check_bool("checkpoint.keep_correlations", self.keep_correlations)
        _check_bool("checkpoint.keep_modulation", self.keep_modulation)
