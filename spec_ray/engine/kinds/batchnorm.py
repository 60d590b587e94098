"""Each BatchNorm placement defined once, as a record: whether a hidden block has BN, and where.

Axes: any; a block maps a layer's pre-activations z to its output.

The authors' ``Model.forward`` (--bn, --bn_before_relu) puts BN after the nonlinearity, or between
the linear map and it; the teacher's --teacher_bn takes the same values. A new placement is this
file alone: a record in ``BATCHNORMS``, which teacher.teacher_bn, student.student_bn and --help read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from spec_ray.engine.kinds.registry import Registry

T = TypeVar("T")


@dataclass(frozen=True)
class BatchNorm:
    """Where a hidden block normalizes its nodes, if anywhere."""

    name: str
    """The value of teacher.teacher_bn and student.student_bn."""
    present: bool
    """Every hidden layer has a BN layer (its statistics, and with affine BN its weight and bias)."""
    before: bool = False
    """BN normalizes the pre-activations, relu(BN(W x + b)); else the activations, BN(relu(W x + b))."""

    @property
    def after(self) -> bool:
        """BN normalizes the activations."""
        return self.present and not self.before

    def block(self, act: Callable[[T], T], norm: Callable[[T], T], z: T) -> T:
        """A hidden block's output in this order from pre-activations ``z``."""
        if self.before:
            return act(norm(z))
        return norm(act(z)) if self.present else act(z)


NO_BN = BatchNorm("none", present=False)
"""No BN; a stored teacher's BN is folded into its layers, so it runs as this."""
AFTER_RELU = BatchNorm("after_relu", present=True)
"""The authors' --bn."""
BEFORE_RELU = BatchNorm("before_relu", present=True, before=True)
"""The authors' --bn --bn_before_relu."""
BATCHNORMS: Registry[BatchNorm] = Registry("BatchNorm placement", NO_BN, AFTER_RELU, BEFORE_RELU)
