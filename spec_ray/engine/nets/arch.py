"""The shape of one network, teacher or student: layer kind, widths, activation, BatchNorm.

Axes: S image side, P positions of a conv layer's output (H x W), C channels, n_l width
(or channels) of hidden layer l, c outputs.

Every layer's weight is stored flat as ``(n_l, fan_in)``: a linear map's rows, or a 3x3
convolution's filters ``(C_out, C_in * 9)`` in ``nn.Conv2d``'s order, so the teacher's
separated rows, the student inits, bias columns and fan-out norms serve both kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec_ray.engine.kinds.activations import ACTIVATIONS, Activation
from spec_ray.engine.kinds.batchnorm import BATCHNORMS, NO_BN, BatchNorm
from spec_ray.engine.kinds.layer_kinds import KERNEL, LAYER_KINDS, LayerKind
from spec_ray.engine.specs.spec import RunSpec

__all__ = ["BN_EPS", "BN_MOMENTUM", "KERNEL", "Arch", "student", "teacher"]

BN_EPS = 1e-5  # torch.nn.BatchNorm's eps and momentum: the reference uses the modules themselves
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class Arch:
    """One network's architecture (derived from a ``RunSpec`` by ``teacher`` / ``student``)."""

    kind: LayerKind
    """Fully connected or conv layers (a name of ``LAYER_KINDS`` is taken too)."""
    d: int
    """Input features (conv: S^2 pixels of one channel)."""
    widths: tuple[int, ...]
    """Hidden widths, or channels of each conv layer."""
    c: int
    """Outputs."""
    activation: Activation
    """The hidden nonlinearity (a name of ``ACTIVATIONS`` is taken too)."""
    slope: float
    """leaky_relu's negative slope."""
    bn: BatchNorm
    """Where the hidden blocks normalize, if anywhere (a name of ``BATCHNORMS`` is taken too)."""
    bn_affine: bool
    """BN layers carry a weight and a bias."""
    image_size: int
    """S, conv only."""
    channels: int = 1
    """C of the input image, conv only (a real image set's; Gaussian images have 1)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LAYER_KINDS.of(self.kind))
        object.__setattr__(self, "activation", ACTIVATIONS.of(self.activation))
        object.__setattr__(self, "bn", BATCHNORMS.of(self.bn))

    @property
    def conv(self) -> bool:
        return self.kind.conv

    @property
    def depth(self) -> int:
        """Hidden layers."""
        return len(self.widths)

    @property
    def sides(self) -> tuple[int, ...]:
        """Image side after each hidden layer (1 for an MLP)."""
        if not self.conv:
            return (1,) * self.depth
        return tuple(self.image_size - (KERNEL - 1) * (layer + 1) for layer in range(self.depth))

    @property
    def positions(self) -> tuple[int, ...]:
        """P of each hidden layer: samples of a node per input (1 for an MLP)."""
        return tuple(s * s for s in self.sides)

    @property
    def fan_ins(self) -> tuple[int, ...]:
        """Inputs of each layer's node, output layer last (without the bias)."""
        return self.kind.fan_ins(self.d, self.widths, self.image_size, self.channels)

    @property
    def outs(self) -> tuple[int, ...]:
        """Nodes of each layer, output layer last."""
        return (*self.widths, self.c)

    @property
    def macs(self) -> tuple[int, ...]:
        """Multiply-adds of each layer's forward pass for one sample, bias included."""
        positions = (*self.positions, 1)
        return tuple((f + 1) * n * p for f, n, p in zip(self.fan_ins, self.outs, positions))

    @property
    def bn_layers(self) -> int:
        """Hidden layers with BN (all or none)."""
        return self.depth if self.bn.present else 0

    @property
    def plain(self) -> bool:
        """An MLP without BN: the hand-written passes apply."""
        return not self.conv and not self.bn.present


def teacher(spec: RunSpec) -> Arch:
    """The teacher's architecture: a stored teacher's as pruned (every node it keeps, ``teacher_kept_widths``),
    with its BN folded into its layers."""
    t, m = spec.teacher, spec.model
    bn = NO_BN if t.stored else t.teacher_bn
    return Arch(m.arch, spec.data.d, spec.teacher_kept_widths, t.c, t.teacher_activation, m.leaky_slope, bn,
                t.teacher_bn_affine, m.image_size, spec.data.channels)  # fmt: skip


def student(spec: RunSpec) -> Arch:
    """The student's architecture: every width times ``multi``."""
    s, m = spec.student, spec.model
    return Arch(m.arch, spec.data.d, spec.student_widths, spec.teacher.c, s.student_activation, m.leaky_slope,
                s.student_bn, s.bn_affine, m.image_size, spec.data.channels)  # fmt: skip
