"""Shared small specs: shapes tiny enough for float64 reference checks in seconds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The repository root: tests import the held-out recipe and the synthetic traces from benchmarks/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spec_ray.engine.spec import CheckpointSpec, DataSpec, RunSpec, StudentSpec, TeacherSpec, TrainSpec


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


def snapshot(root) -> dict[str, str]:
    """Content hash of every file under ``root``: proves bad input touched nothing."""
    import hashlib
    from pathlib import Path

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def assert_complete(root: str, packs) -> None:
    """Every (run, step, node) row of every pack exists exactly once under an experiment root."""
    import pandas as pd

    from spec_ray.engine.pack import checkpoint_steps
    from spec_ray.storage import schema as S

    keys = {
        S.RUNS: [S.RUN_ID],
        S.SCALARS: [S.RUN_ID, S.STEP],
        S.TEACHER_NODES: [S.RUN_ID, S.STEP, S.LAYER, S.NODE],
        S.STUDENT_NODES: [S.RUN_ID, S.STEP, S.LAYER, S.NODE],
    }
    frames = {t: pd.read_parquet(f"{root}/{t}") for t in keys}
    for table, key in keys.items():
        assert not frames[table].duplicated(key).any(), f"duplicate rows in {table}"
    for pack in packs:
        spec, ids = pack.spec, set(pack.run_ids)
        ckpts = len(checkpoint_steps(spec))
        mine = {t: f[f[S.RUN_ID].isin(ids)] for t, f in frames.items()}
        assert len(mine[S.RUNS]) == pack.size and (mine[S.RUNS][S.STATUS] == S.STATUS_DONE).all()
        assert len(mine[S.SCALARS]) == pack.size * ckpts
        assert len(mine[S.TEACHER_NODES]) == pack.size * ckpts * sum(spec.teacher.widths)
        assert len(mine[S.STUDENT_NODES]) == pack.size * ckpts * sum(spec.student_widths)
    assert set(frames[S.RUNS][S.RUN_ID]) == {r for p in packs for r in p.run_ids}
