"""Figures 7 and 8 and the loss curves: recovery of strong and weak teacher nodes vs polarity p and over-realization."""

from spec_ray.engine.specs.protocols import TWO_LAYER_SMOKE, Smoke
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.orchestration.experiment import Experiment
from spec_ray.orchestration.sweep import main

EXPERIMENT = Experiment(
    name="polarity",
    base=RunSpec().replace(**{"teacher.widths": (20,)}),  # two-layer protocol, m = 20
    axes={"multi": (1, 2, 5, 10), "p": (0.0, 0.5, 1.0, 1.5, 2.0, 2.5), "seed": tuple(range(1, 33))},
)
SMOKE = Smoke(settings=TWO_LAYER_SMOKE, axes={"multi": (1, 2), "p": (0.0, 2.0), "seed": (1, 2)})

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
