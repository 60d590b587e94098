"""spec-ray: student-specialization experiments with packed teacher-student training.

Three parts:
- ``engine``: a ``RunSpec`` (spec.py) describes a run; a ``Pack`` (pack.py) groups runs of
  equal shapes; ``trainer.train_until`` trains them together and ``metrics.measure`` takes
  per-node metrics; ``reference.train_run`` is the one-run-at-a-time ground truth.
- ``storage``: every column declared once (schema.py), rows (records.py), atomic Parquet
  files (traces.py).
- ``orchestration``: ``runner.run_pack`` trains one pack and writes its traces; experiments,
  Ray Tune trials and sweeps, and the command lines.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"
"""The one place the version is kept (pyproject reads it); a cluster refuses nodes of another."""

# Exports load on first use (PEP 562): the read side imports spec_ray.storage.schema or
# spec_ray.orchestration.flags without pulling in torch through the trainer.
_EXPORTS = {
    "CheckpointSpec": "spec_ray.engine.specs.spec",
    "DataSpec": "spec_ray.engine.specs.spec",
    "ModelSpec": "spec_ray.engine.specs.spec",
    "Pack": "spec_ray.engine.training.pack",
    "RunSpec": "spec_ray.engine.specs.spec",
    "StudentSpec": "spec_ray.engine.specs.spec",
    "TeacherSpec": "spec_ray.engine.specs.spec",
    "TraceStore": "spec_ray.storage.traces",
    "TrainSpec": "spec_ray.engine.specs.spec",
    "checkpoint_steps": "spec_ray.engine.training.pack",
    "run_id": "spec_ray.engine.training.pack",
    "run_pack": "spec_ray.orchestration.runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spec_ray' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
