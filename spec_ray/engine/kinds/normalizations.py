"""Each normalisation of a drawn teacher defined once, as a record (docs/protocol.md, "Teacher").

A new normalisation is a record in ``NORMALIZATIONS`` (read by teacher.normalize and --help) that
says which of the two steps ``inputs.construct.build_teacher`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec_ray.engine.kinds.registry import Registry


@dataclass(frozen=True)
class Normalization:
    """How a drawn teacher's rows are scaled."""

    name: str
    """The value of teacher.normalize."""
    unit_first_layer: bool
    """Layer 1's rows scaled to unit norm (its bias kept), before the polarity division above it."""
    every_layer: bool
    """After the polarity division, every layer's rows and biases divided by the row norm."""


FIRST = Normalization("first", unit_first_layer=True, every_layer=False)
"""The two-layer protocol's."""
ALL = Normalization("all", unit_first_layer=False, every_layer=True)
"""The deep protocol's, and the authors' conv teacher's (``teacher.normalize()``)."""
NORMALIZATIONS: Registry[Normalization] = Registry("teacher.normalize", FIRST, ALL)
