"""The two protocols of docs/protocol.md as base specs: sweeps and tests start from these.

``TWO_LAYER`` is ``RunSpec()`` itself (the defaults are the two-layer protocol). ``DEEP`` is
figure 6's setting; its teacher is also available as overrides, for smaller deep specs.
"""

from __future__ import annotations

from spec_ray.spec import RunSpec

TWO_LAYER = RunSpec()
"""Figures 5, 7, 8, 9: d=100, m=20, c=50, sigma 1.5, SGD lr 0.01, batch 16 with replacement,
100 epochs x 1,000 steps."""

DEEP_TEACHER = {
    "teacher.weight_choices": (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0),
    "teacher.teacher_bias": 0.0,
    "teacher.teacher_bias_spread": 0.5,
    "teacher.calibrate": True,
    "teacher.normalize": "all",
}
"""The deep script's teacher: entries from -1..1, biases U[-0.5, 0.5], polarity then
row normalization, calibrated to half-active nodes and standardized outputs."""

DEEP = RunSpec().replace(
    **DEEP_TEACHER,
    **{
        "teacher.widths": (50, 75, 100, 125),
        "teacher.c": 100,
        "student.multi": 2,
        # Scale 1.0, not the text's 0.1: the authors' reset_parameters() undid their scaling
        # (docs/protocol.md, "Where we differ").
        "student.init": "torch",
        "student.init_scale": 1.0,
        "data.d": 20,
        "data.sigma": 10.0,
        "data.n_eval": 10_240,
        "train.batch": 64,
        "train.lr": 0.2,
        "train.lr_schedule": ((20, 0.1),),
        "train.epochs": 100,
        "train.iters_per_epoch": None,  # one shuffled pass an epoch: ceil(N / 64) steps
    },
)
"""Figure 6: 4-layer teacher 50-75-100-125, student 2x, d=20, sigma 10, c=100, SGD batch 64,
lr 0.2 then 0.1 from epoch 20, 100 epochs of one shuffled pass each."""
