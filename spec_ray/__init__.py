"""spec-ray: student-specialization experiments with packed teacher-student training.

The engine in one breath: a ``RunSpec`` (spec.py) describes a run; a ``Pack`` (pack.py)
groups runs of equal shapes; ``packed.train_until`` trains them together,
``metrics.measure`` takes per-node metrics, and ``runner.run_pack`` writes them as
Parquet traces (traces.py, schema.py). ``reference.train_run`` is the one-run-at-a-time
ground truth.
"""

from __future__ import annotations

import importlib

# Exports load on first use (PEP 562): importing spec_ray.schema or spec_ray.flags from the
# read side must not pull in torch through the trainer.
_EXPORTS = {
    "CheckpointSpec": "spec_ray.spec",
    "DataSpec": "spec_ray.spec",
    "Pack": "spec_ray.pack",
    "RunSpec": "spec_ray.spec",
    "StudentSpec": "spec_ray.spec",
    "TeacherSpec": "spec_ray.spec",
    "TraceStore": "spec_ray.traces",
    "TrainSpec": "spec_ray.spec",
    "checkpoint_steps": "spec_ray.pack",
    "run_id": "spec_ray.pack",
    "run_pack": "spec_ray.runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spec_ray' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
