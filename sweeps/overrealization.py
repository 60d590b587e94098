"""Figure 5: student specialization vs fan-out norm for m = 10 under over-realization 1x-10x and p in {0, 1, 2}."""

from spec_ray.experiment import Experiment
from spec_ray.spec import RunSpec
from spec_ray.sweep import main

EXPERIMENT = Experiment(
    name="overrealization",
    base=RunSpec().replace(**{"teacher.widths": (10,)}),
    axes={"multi": (1, 2, 5, 10), "p": (0.0, 1.0, 2.0), "seed": tuple(range(1, 33))},
)
SMOKE = {"m": 5, "multi": [1, 5], "p": [0.0, 2.0], "seeds": 2, "epochs": 6, "iters_per_epoch": 300,
         "n_train": 1000, "n_eval": 1000, "block_epochs": 1}  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
