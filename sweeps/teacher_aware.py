"""Figure 9: train and evaluation MSE vs number of samples, teacher-aware (Definition 7b) vs plain Gaussian data."""

from spec_ray.experiment import Experiment
from spec_ray.spec import RunSpec
from spec_ray.sweep import main

EXPERIMENT = Experiment(
    name="teacher_aware",
    # The teacher-agnostic baseline of docs/protocol.md is the plain Gaussian set of the same size.
    base=RunSpec().replace(**{"teacher.widths": (20,), "student.multi": 5}),
    axes={
        "augmentation": ("none", "teacher_aware"),
        "n_train": (60, 120, 240, 480, 960, 1920, 3840),
        "seed": tuple(range(1, 11)),
    },
)
SMOKE = {"m": 5, "multi": [2], "n_train": [60, 240], "seeds": 2, "epochs": 6, "iters_per_epoch": 300,
         "n_eval": 500, "block_epochs": 1}  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
