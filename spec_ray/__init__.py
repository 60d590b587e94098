"""spec-ray: student-specialization experiments with packed teacher-student training.

The engine in one breath: a ``RunSpec`` (spec.py) describes a run; a ``Pack`` (pack.py)
groups runs of equal shapes; ``packed.train_until`` trains them together,
``metrics.measure`` takes per-node metrics, and ``runner.run_pack`` writes them as
Parquet traces (traces.py, schema.py). ``reference.train_run`` is the one-run-at-a-time
ground truth.
"""

from spec_ray.pack import Pack, checkpoint_steps, run_id
from spec_ray.runner import run_pack
from spec_ray.spec import CheckpointSpec, DataSpec, RunSpec, StudentSpec, TeacherSpec, TrainSpec
from spec_ray.traces import TraceStore

__all__ = [
    "CheckpointSpec",
    "DataSpec",
    "Pack",
    "RunSpec",
    "StudentSpec",
    "TeacherSpec",
    "TraceStore",
    "TrainSpec",
    "checkpoint_steps",
    "run_id",
    "run_pack",
]
