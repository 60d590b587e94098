"""Spec validation: every invalid field raises ValueError naming it and what is allowed."""

from __future__ import annotations

import math

import pytest

from spec_ray.engine.pack import Pack, run_id
from spec_ray.engine.spec import RunSpec, apply_overrides
from spec_ray.engine.spec_io import flat_fields

INVALID = [
    ("teacher.widths", ()),
    ("teacher.widths", (20, 0)),
    ("teacher.c", 0),
    ("teacher.p", -0.5),
    ("teacher.p", math.nan),
    ("teacher.weight_choices", (0.0, 0.0)),
    ("teacher.weight_choices", (0.0,)),
    ("teacher.weight_choices", (1.0, math.inf)),
    ("teacher.teacher_bias", math.nan),
    ("student.multi", 0),
    ("student.multi", 1.5),
    ("student.init_std", 0.0),
    ("data.d", 0),
    ("data.sigma", -1.0),
    ("data.n_train", 0),
    ("data.n_train", 8),  # fewer than batch 16
    ("data.n_eval", 1),
    ("data.augmentation", "rotate"),
    ("data.agnostic_delta", 0.0),
    ("data.aware_alpha_hi", 0.5),  # below aware_alpha_lo = 1
    ("train.lr", 0.0),
    ("train.lr", math.inf),
    ("train.lr", math.nan),
    ("train.batch", 0),
    ("train.epochs", 0),
    ("train.iters_per_epoch", -1),
    ("teacher.normalize", "none"),
    ("train.loss", "hinge"),
    ("train.dtype", "float16"),
    ("checkpoint.first_epoch_points", -1),
    ("checkpoint.every_epochs", 0),
    ("checkpoint.success_threshold", 1.5),
    ("checkpoint.train_every_epochs", -1),
    ("seed", -1),
]


@pytest.mark.parametrize(("field", "value"), INVALID, ids=[f"{f}={v!r}" for f, v in INVALID])
def test_invalid_field_names_field_and_allowed(field: str, value: object) -> None:
    with pytest.raises(ValueError, match="allowed") as err:
        RunSpec().replace(**{field: value})
    assert str(err.value).startswith(field.split(".")[-1]) or field in str(err.value)


def test_online_data_needs_a_step_count_per_epoch() -> None:
    with pytest.raises(ValueError, match=r"train.iters_per_epoch=None is invalid: allowed an integer >= 1 with online"):
        RunSpec().replace(**{"train.iters_per_epoch": None, "data.n_train": None})


def test_shuffled_pass_epoch_length() -> None:
    spec = RunSpec().replace(**{"train.iters_per_epoch": None, "data.n_train": 50_000, "train.batch": 64})
    assert (spec.steps_per_epoch, spec.last_batch, spec.total_steps) == (782, 16, 78_200)
    exact = spec.replace(**{"data.n_train": 1024})
    assert (exact.steps_per_epoch, exact.last_batch) == (16, 64)
    assert (RunSpec().steps_per_epoch, RunSpec().last_batch, RunSpec().total_steps) == (1000, 16, 100_000)


def test_unknown_override_lists_allowed_fields() -> None:
    with pytest.raises(ValueError, match="teacher.polarity") as err:
        apply_overrides(RunSpec(), {"teacher.polarity": 1.0})
    assert "p" in str(err.value) and "widths" in str(err.value)


def test_too_many_teacher_rows_for_choices() -> None:
    # 2 choices, fan-in 2 -> only 3 distinct non-zero rows, but 5 nodes asked for.
    with pytest.raises(ValueError, match="teacher.widths"):
        RunSpec().replace(**{"data.d": 2, "teacher.widths": (5,), "teacher.weight_choices": (0.0, 1.0)})


def test_defaults_are_the_two_layer_protocol() -> None:
    f = flat_fields(RunSpec())
    assert (f["d"], f["m"], f["c"], f["sigma"], f["lr"], f["batch"]) == (100, 20, 50, 1.5, 0.01, 16)
    assert (f["n_train"], f["n_eval"], f["epochs"], f["iters_per_epoch"]) == (10_000, 10_000, 100, 1000)
    assert f["teacher_bias"] == -0.1 and f["init_std"] == 0.005 and f["success_threshold"] == 0.95


def test_int_and_float_give_the_same_run_id() -> None:
    assert run_id(RunSpec().replace(**{"teacher.p": 1})) == run_id(RunSpec().replace(**{"teacher.p": 1.0}))
    assert run_id(RunSpec().replace(**{"teacher.p": 1.0})) != run_id(RunSpec().replace(**{"teacher.p": 2.0}))


def test_pack_rejects_mixed_shapes_and_duplicates() -> None:
    a = RunSpec()
    with pytest.raises(ValueError, match="pack.runs"):
        Pack((a, a.replace(**{"student.multi": 2})))
    with pytest.raises(ValueError, match="pack.runs"):
        Pack((a, a))
    with pytest.raises(ValueError, match="pack.runs"):
        Pack(())


def test_pack_groups_runs_sharing_data() -> None:
    runs = [RunSpec().replace(seed=s, **{"teacher.p": p}) for p in (0.0, 1.0, 2.0) for s in (1, 2)]
    pack = Pack(tuple(runs))
    assert (pack.groups, pack.group_size) == (2, 3)
    assert [r.seed for r in pack.runs] == [1, 1, 1, 2, 2, 2]
    # An unequal grouping falls back to one run per group.
    assert Pack(tuple(runs[:5])).group_size == 1


def test_experiment_splits_packs_to_fit_memory_along_groups() -> None:
    from spec_ray.orchestration.experiment import Experiment, run_bytes

    axes = {"seed": tuple(range(1, 9)), "p": (0.0, 1.0, 2.0)}
    whole = Experiment("e", axes=axes).packs()
    assert [p.size for p in whole] == [24] and whole[0].group_size == 3
    per_run = run_bytes(RunSpec())
    # 20k samples x (101 inputs + 50 labels) + 10k x 20 kept teacher activations, x 4 bytes, mostly
    assert 12_880_000 < per_run < 13_800_000
    split = Experiment("e", axes=axes, pack_memory=7 * per_run).packs()
    assert [p.size for p in split] == [6, 6, 6, 6] and all(p.group_size == 3 for p in split)
    assert sorted(r for p in split for r in p.run_ids) == sorted(whole[0].run_ids)
    with pytest.raises(ValueError, match="pack_memory"):
        Experiment("e", axes=axes, pack_memory=10)


def test_a_factorial_past_the_limit_is_refused_before_it_is_expanded() -> None:
    from spec_ray.orchestration.experiment import MAX_RUNS, Experiment

    axes = {"seed": tuple(range(1, 100_001)), "p": tuple(float(p) for p in range(101)), "multi": (1, 2)}
    with pytest.raises(ValueError, match=r"seed 100,000 x p 101 x multi 2 is invalid: 20,200,000 runs") as err:
        Experiment(name="huge", axes=axes)
    assert f"at most {MAX_RUNS:,}" in str(err.value)  # counted from the axes, never expanded


# The five registries as they were kept by hand before the fields declared their roles: the
# derived ones must equal them, or run ids, packing and shared data would change.
_HAND_PER_RUN = {
    "seed", "p", "weight_choices", "normalize", "teacher_bias", "teacher_bias_spread", "calibrate", "init_std",
    "init", "init_scale", "sigma", "augmentation", "agnostic_delta", "aware_alpha_lo", "aware_alpha_hi", "lr",
    "lr_schedule", "init_seed",
}  # fmt: skip
_HAND_DATA = {
    "seed", "d", "sigma", "n_train", "n_eval", "augmentation", "agnostic_delta", "aware_alpha_lo", "aware_alpha_hi",
    "batch", "iters_per_epoch", "weight_choices", "normalize", "teacher_bias", "teacher_bias_spread", "calibrate",
    "widths", "c",
}  # fmt: skip
_HAND_NEUTRAL = {
    "arch": "mlp", "image_size": 10, "leaky_slope": 0.01, "teacher_activation": "relu", "teacher_bn": "none",
    "teacher_bn_affine": False, "student_activation": "relu", "student_bn": "none", "bn_affine": False,
    "optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0, "init_seed": None, "keep_correlations": False,
    "keep_modulation": False, "matmul_precision": "ieee",
}  # fmt: skip


def test_the_registries_derive_from_the_fields_roles() -> None:
    import pyarrow as pa

    from spec_ray.engine import pack
    from spec_ray.engine.spec_io import flat_roles
    from spec_ray.storage import schema as S

    # the hand-kept lists of before the roles, plus the fields of real data (datasets, stored teachers)
    assert _HAND_PER_RUN | {"load_teacher"} == pack.PER_RUN_FIELDS
    assert set(pack.DATA_FIELDS) == _HAND_DATA | {"dataset"}
    real = {"source": "random", "load_teacher": None, "prune": "", "prune_grouping": "authors", "dataset": "gaussian",
            "data_dir": None}  # fmt: skip
    assert {**_HAND_NEUTRAL, **real} == pack.NEUTRAL
    assert {"data_dir"} == pack.LOCATIONS  # never in a run id
    assert list(flat_roles()) == list(flat_fields(RunSpec()))  # one role per flat column, in order
    nullable = {f.name for f in S.runs_schema() if f.name in flat_roles() and flat_roles()[f.name].nullable}
    assert nullable == {"n_train", "iters_per_epoch", "init_seed", "load_teacher", "data_dir"}
    assert all(S.runs_schema().field(n).type == pa.int64() for n in ("n_train", "iters_per_epoch", "init_seed"))
    assert all(S.runs_schema().field(n).type == pa.string() for n in ("load_teacher", "data_dir"))


def test_a_field_without_a_role_or_with_a_taken_name_is_refused(monkeypatch) -> None:
    import dataclasses

    from spec_ray.engine import spec as specs
    from spec_ray.engine import spec_io
    from spec_ray.engine.roles import role_field

    @dataclasses.dataclass(frozen=True)
    class Bare:
        lr2: float = 0.1

    monkeypatch.setitem(spec_io._SECTION_CLASSES, "train", Bare)
    with pytest.raises(ValueError, match="spec field 'lr2' declares no role: define it with roles.role_field"):
        spec_io.flat_roles()

    @dataclasses.dataclass(frozen=True)
    class Clash:
        p: float = role_field(0.0, per_run=True)  # teacher.p's name

    monkeypatch.setitem(spec_io._SECTION_CLASSES, "train", Clash)
    with pytest.raises(ValueError, match="spec field name 'p' is used twice"):
        spec_io.flat_roles()
    monkeypatch.setitem(spec_io._SECTION_CLASSES, "train", specs.TrainSpec)
    assert "lr" in spec_io.flat_roles()
