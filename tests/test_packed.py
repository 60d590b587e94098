"""The packed trainer against the reference trainer (float64, relative 1e-6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DEVICE, tiny_spec

from spec_ray.engine.metrics import measure
from spec_ray.engine.pack import Pack, checkpoint_steps, run_id
from spec_ray.engine.reference import train_run
from spec_ray.engine.trainer import init_state, prepare, train_until
from spec_ray.storage import schema as S
from spec_ray.storage.records import checkpoint_tables

STEPS = 300
METRIC_COLS = S.METRICS  # every metric column of every checkpoint table, as declared once


def packed_run(runs, stop):
    """Train a pack to ``stop`` taking metrics at every checkpoint on the way, on ``DEVICE``."""
    pack = Pack(tuple(runs), placement=DEVICE)
    data, state = prepare(pack), init_state(pack)
    parts = {t: [] for t in METRIC_COLS}
    for step in [s for s in checkpoint_steps(pack.spec) if s <= stop] + [stop]:
        state = train_until(pack, data, state, step)
        for table, rows in checkpoint_tables(pack, measure(pack, data, state)).items():
            parts.setdefault(table, []).append(rows.to_pandas())
    keys = (S.RUN_ID, S.STEP, S.LAYER, S.NODE, S.STUDENT)
    tables = {t: pd.concat(p).drop_duplicates([k for k in keys if k in p[0]]) for t, p in parts.items()}
    return pack, state, tables


def assert_same_run(pack, state, tables, spec, ref, stop) -> None:
    i = pack.run_ids.index(run_id(spec))
    for got, want in zip(state.student.weights, ref.student.weights):
        torch.testing.assert_close(got[i].cpu(), want, rtol=1e-6, atol=1e-9)
    for got, want in zip(state.student.biases, ref.student.biases):
        torch.testing.assert_close(got[i].cpu(), want, rtol=1e-6, atol=1e-9)
    for table, cols in METRIC_COLS.items():
        mine = tables[table][tables[table][S.RUN_ID] == run_id(spec)]
        mine = mine[mine[S.STEP] <= max(ref.tables[table][S.STEP])].reset_index(drop=True)
        theirs = ref.tables[table]
        assert len(mine) == len(theirs) > 0
        for col in cols:
            np.testing.assert_allclose(mine[col].to_numpy(float), theirs[col].to_numpy(float), rtol=1e-6, atol=1e-9,
                                       err_msg=f"{table}.{col}")  # fmt: skip


@pytest.mark.parametrize("multi", [1, 2, 5])
def test_packed_matches_reference(multi: int) -> None:
    runs = [tiny_spec(seed=s, **{"teacher.p": p, "student.multi": multi}) for s in (1, 2) for p in (0.0, 1.0, 2.5)]
    pack, state, tables = packed_run(runs, STEPS)
    assert pack.group_size == 3  # the shared-minibatch path is the one under test
    for spec in runs:
        assert_same_run(pack, state, tables, spec, train_run(spec, stop=STEPS), STEPS)


def test_packed_matches_reference_with_augmentation_and_per_run_lr() -> None:
    runs = [
        tiny_spec(seed=3, **{"data.augmentation": "teacher_aware", "train.lr": 0.02}),
        tiny_spec(seed=3, **{"data.augmentation": "teacher_agnostic", "teacher.p": 1.0}),
        tiny_spec(seed=4, **{"train.lr": 0.08, "student.init_std": 0.3}),
    ]
    pack, state, tables = packed_run(runs, STEPS)
    assert pack.group_size == 1
    for spec in runs:
        assert_same_run(pack, state, tables, spec, train_run(spec, stop=STEPS), STEPS)


def test_pack_composition_does_not_change_a_run() -> None:
    target = tiny_spec(seed=5, **{"teacher.p": 1.0})
    alone = packed_run([target], STEPS)
    shared = packed_run([tiny_spec(seed=5, **{"teacher.p": p}) for p in (0.0, 1.0, 2.0, 3.0)], STEPS)
    mixed = packed_run([target, tiny_spec(seed=9), tiny_spec(seed=6, **{"train.lr": 0.01})], STEPS)
    assert (alone[0].group_size, shared[0].group_size, mixed[0].group_size) == (1, 4, 1)
    ref = train_run(target, stop=STEPS)
    for pack, state, tables in (alone, shared, mixed):
        assert_same_run(pack, state, tables, target, ref, STEPS)


def test_diverged_run_is_frozen_and_the_pack_goes_on() -> None:
    good = tiny_spec(seed=1)
    bad = tiny_spec(seed=1, **{"train.lr": 50.0})
    pack, state, tables = packed_run([good, bad], STEPS)
    ref_bad = train_run(bad, stop=STEPS)
    assert ref_bad.diverged_step > 0
    i = pack.run_ids.index(run_id(bad))
    assert int(state.diverged_step[i]) == ref_bad.diverged_step
    assert int(state.diverged_step[pack.run_ids.index(run_id(good))]) == -1
    # Frozen at the last finite weights, exactly where the reference stopped.
    assert all(bool(w[i].isfinite().all()) for w in state.student.weights)
    assert_same_run(pack, state, tables, bad, ref_bad, STEPS)
    assert_same_run(pack, state, tables, good, train_run(good, stop=STEPS), STEPS)
    flags = tables[S.SCALARS].set_index([S.RUN_ID, S.STEP])[S.DIVERGED]
    assert flags.loc[run_id(bad)].iloc[-1] and not flags.loc[run_id(good)].any()


def test_training_in_pieces_equals_training_at_once() -> None:
    runs = [tiny_spec(seed=s) for s in (1, 2)]
    pack = Pack(tuple(runs))
    data = prepare(pack)
    once = train_until(pack, data, init_state(pack), 250)
    pieces = init_state(pack)
    for stop in (1, 37, 150, 151, 250):  # across an epoch boundary and chunk edges
        pieces = train_until(pack, data, pieces, stop)
    for a, b in zip(once.student.weights, pieces.student.weights):
        assert torch.equal(a, b)


def test_float32_agrees_with_float64() -> None:
    spec64 = tiny_spec(seed=2)
    spec32 = tiny_spec(seed=2, **{"train.dtype": "float32"})
    w64 = packed_run([spec64], STEPS)[1].student.weights[0]
    w32 = packed_run([spec32], STEPS)[1].student.weights[0]
    torch.testing.assert_close(w32.double(), w64, rtol=1e-3, atol=1e-4)
