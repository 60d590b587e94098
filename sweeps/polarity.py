"""Figures 7 and 8 and the loss curves: recovery of strong and weak teacher nodes vs polarity p and over-realization."""

from spec_ray.experiment import Experiment
from spec_ray.spec import RunSpec
from spec_ray.sweep import main

EXPERIMENT = Experiment(
    name="polarity",
    base=RunSpec().replace(**{"teacher.widths": (20,)}),  # two-layer protocol, m = 20
    axes={"multi": (1, 2, 5, 10), "p": (0.0, 0.5, 1.0, 1.5, 2.0, 2.5), "seed": tuple(range(1, 33))},
)
SMOKE = {"m": 5, "multi": [1, 2], "p": [0.0, 2.0], "seeds": 2, "epochs": 6, "iters_per_epoch": 300,
         "n_train": 1000, "n_eval": 1000, "block_epochs": 1}  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
