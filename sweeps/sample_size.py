"""Figure 6: specialization per layer and evaluation loss vs sample size, MSE vs cross-entropy, 4-layer teacher."""

from spec_ray.engine.kinds.losses import CE, MSE_MEAN
from spec_ray.engine.specs.protocols import DEEP, DEEP_SMOKE, Smoke
from spec_ray.orchestration.experiment import Experiment
from spec_ray.orchestration.sweep import main

# The deep protocol of docs/protocol.md (spec_ray.engine.specs.protocols.DEEP). An epoch is one shuffled
# pass over the training set, ceil(N / 64) steps, as the authors' DataLoader makes it: 16
# steps at N = 1k, 782 at 50k, so small sets get few SGD steps, as in the paper's figure 6.
# Sizes 1k-50k, log-spaced.
EXPERIMENT = Experiment(
    name="sample_size",
    base=DEEP,
    axes={
        "n_train": (1_000, 2_000, 5_000, 10_000, 20_000, 50_000),
        "loss": (MSE_MEAN.name, CE.name),  # the deep protocol's MSE is the mean over outputs
        "seed": (1, 2, 3, 4),
    },
)
SMOKE = Smoke(settings=DEEP_SMOKE, axes={"n_train": (500, 4000), "seed": (1, 2)})

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
