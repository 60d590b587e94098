"""Each source of a teacher defined once, as a record: drawn at random, pretrained here, or loaded.

A stored teacher (pretrained or loaded) is a network training made: its rows are whatever it learned,
it is kept once per storage root under its content hash, and its BN is folded into its layers. A new
source is a record in ``TEACHER_SOURCES`` (read by teacher.source and --help) plus how it is stored
(``spec_ray.orchestration.launch_teachers``).
"""

from __future__ import annotations

from dataclasses import dataclass

from spec_ray.engine.kinds.registry import Registry


@dataclass(frozen=True)
class TeacherSource:
    """Where a run's teacher comes from."""

    name: str
    """The value of teacher.source."""
    stored: bool
    """A stored network (pretrained or loaded), not drawn: it can be pruned, and a run names it by its hash."""
    from_file: bool = False
    """Read from the checkpoint file teacher.load_teacher names (the authors' format)."""
    needs_labels: bool = False
    """Trained here on an image set's labels (docs/protocol.md, "Teachers from data")."""


DRAWN = TeacherSource("random", stored=False)
"""The papers' teacher: drawn from the weight choices (the two-layer and deep protocols)."""
PRETRAINED = TeacherSource("pretrained", stored=True, needs_labels=True)
FROM_FILE = TeacherSource("file", stored=True, from_file=True)
TEACHER_SOURCES: Registry[TeacherSource] = Registry("teacher.source", DRAWN, PRETRAINED, FROM_FILE)
