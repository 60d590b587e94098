"""Figure 9: train and evaluation MSE vs number of samples, teacher-aware (Definition 7b) vs plain Gaussian data."""

from spec_ray.engine.kinds.augmentations import NONE, TEACHER_AWARE
from spec_ray.engine.specs.protocols import TWO_LAYER_SMOKE, Smoke
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.orchestration.experiment import Experiment
from spec_ray.orchestration.sweep import main

EXPERIMENT = Experiment(
    name="teacher_aware",
    # The teacher-agnostic baseline of docs/protocol.md is the plain Gaussian set of the same size.
    base=RunSpec().replace(**{"teacher.widths": (20,), "student.multi": 5}),
    axes={
        "augmentation": (NONE.name, TEACHER_AWARE.name),
        "n_train": (60, 120, 240, 480, 960, 1920, 3840),
        "seed": tuple(range(1, 11)),
    },
)
SMOKE = Smoke(
    settings={**TWO_LAYER_SMOKE, "data.n_eval": 500},
    axes={"multi": (2,), "n_train": (60, 240), "seed": (1, 2)},
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
