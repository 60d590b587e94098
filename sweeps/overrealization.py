"""Figure 5: student specialization vs fan-out norm for m = 10 under over-realization 1x-10x and p in {0, 1, 2}."""

from spec_ray.engine.specs.protocols import TWO_LAYER_SMOKE, Smoke
from spec_ray.engine.specs.spec import RunSpec
from spec_ray.orchestration.experiment import Experiment
from spec_ray.orchestration.sweep import main

EXPERIMENT = Experiment(
    name="overrealization",
    base=RunSpec().replace(**{"teacher.widths": (10,)}),
    axes={"multi": (1, 2, 5, 10), "p": (0.0, 1.0, 2.0), "seed": tuple(range(1, 33))},
)
SMOKE = Smoke(settings=TWO_LAYER_SMOKE, axes={"multi": (1, 5), "p": (0.0, 2.0), "seed": (1, 2)})

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
