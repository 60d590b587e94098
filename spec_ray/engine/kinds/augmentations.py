"""Each augmentation of a fixed training set defined once, as a record (ICML 2020, Definition 7).

A new augmentation is a record in ``AUGMENTATIONS`` (read by data.augmentation and --help) plus its
construction in ``construct.train_inputs``'s builders, keyed by the record.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec_ray.engine.kinds.registry import Registry


@dataclass(frozen=True)
class Augmentation:
    """How a fixed Gaussian training set is made from its base points."""

    name: str
    """The value of data.augmentation and of the runs table's ``augmentation`` column."""
    label: str
    """Its name in a figure (figure 9)."""
    color: str
    """Its colour in a figure (figure 9)."""
    present: bool
    """The set holds shifted copies of its base points (it needs a fixed set: not online data, not images)."""
    teacher_aware: bool = False
    """The shifts are placed off the teacher's own boundaries (Definition 7b): an MLP teacher's rows."""


NONE = Augmentation("none", "agnostic (Gaussian)", "tab:orange", present=False)
"""Every sample drawn on its own."""
TEACHER_AGNOSTIC = Augmentation("teacher_agnostic", "agnostic (7a)", "tab:green", present=True)
"""Definition 7a: each base point and its copies shifted +-delta along every axis."""
TEACHER_AWARE = Augmentation("teacher_aware", "teacher-aware", "tab:blue", present=True, teacher_aware=True)
"""Definition 7b: copies shifted alpha ~ U[lo, hi] off each teacher boundary."""
AUGMENTATIONS: Registry[Augmentation] = Registry("data.augmentation", NONE, TEACHER_AGNOSTIC, TEACHER_AWARE)
