"""Figure 6: specialization per layer and evaluation loss vs sample size, MSE vs cross-entropy, 4-layer teacher."""

from spec_ray.experiment import Experiment
from spec_ray.protocols import DEEP
from spec_ray.sweep import main

# The deep protocol of docs/protocol.md (spec_ray.protocols.DEEP). An epoch is one shuffled
# pass over the training set, ceil(N / 64) steps, as the authors' DataLoader makes it: 16
# steps at N = 1k, 782 at 50k, so small sets get few SGD steps, as in the paper's figure 6.
# Sizes 1k-50k, log-spaced.
EXPERIMENT = Experiment(
    name="sample_size",
    base=DEEP,
    axes={
        "n_train": (1_000, 2_000, 5_000, 10_000, 20_000, 50_000),
        "loss": ("mse_mean", "ce"),  # the deep protocol's MSE is the mean over outputs
        "seed": (1, 2, 3, 4),
    },
)
SMOKE = {"widths": [10, 15, 20, 25], "c": 20, "n_train": [500, 4000], "seeds": 2, "epochs": 3, "n_eval": 1024,
         "lr_schedule": [(2, 0.1)], "block_epochs": 1}  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT, smoke=SMOKE))
