"""Shared small specs: shapes tiny enough for float64 reference checks in seconds."""

from __future__ import annotations

import pytest

from spec_ray.spec import CheckpointSpec, DataSpec, RunSpec, StudentSpec, TeacherSpec, TrainSpec


def tiny_spec(**changes: object) -> RunSpec:
    """A small float64 two-layer run; ``changes`` are dotted overrides."""
    spec = RunSpec(
        teacher=TeacherSpec(widths=(6,), c=5),
        student=StudentSpec(multi=3, init_std=0.1),
        data=DataSpec(d=12, n_train=400, n_eval=300),
        train=TrainSpec(lr=0.05, epochs=2, iters_per_epoch=150, dtype="float64", device="cpu"),
        checkpoint=CheckpointSpec(first_epoch_points=3, train_every_epochs=1),
    )
    return spec.replace(**changes)


@pytest.fixture
def tiny() -> RunSpec:
    return tiny_spec()
