"""Every packed part (BN, conv, activations, optimizers, init seeds) against the reference, float64 at 1e-6."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from conftest import tiny_spec
from test_packed import assert_same_run, packed_run

from spec_ray.engine import parts
from spec_ray.engine.arch import student
from spec_ray.engine.pack import Pack
from spec_ray.engine.reference import train_run
from spec_ray.engine.trainer import init_state, prepare, train_until

STEPS = 200  # 1.3 epochs: both epochs' minibatch orders, every checkpoint kind (the fused path's tests run 300)
CONV = {"model.arch": "conv", "data.d": 36, "model.image_size": 6, "teacher.widths": (3, 2), "student.multi": 2}
BN_MOMENTUM = {"student.student_bn": "before_relu", "student.bn_affine": True, "train.momentum": 0.9,
               "train.weight_decay": 1e-4}  # fmt: skip

CASES = {
    "bn_after": {"student.student_bn": "after_relu"},
    "bn_before_affine": {"student.student_bn": "before_relu", "student.bn_affine": True},
    "momentum_wd": {"train.momentum": 0.9, "train.weight_decay": 1e-3},
    "adam": {"train.optimizer": "adam", "train.lr": 0.005, "train.weight_decay": 1e-3},
    "leaky_teacher_relu_student": {"teacher.teacher_activation": "leaky_relu", "model.leaky_slope": 0.2},
    "leaky_student": {"student.student_activation": "leaky_relu", "model.leaky_slope": 0.1},
    "linear_student": {"student.student_activation": "linear", "train.lr": 0.02},
    "teacher_bn": {"teacher.teacher_bn": "after_relu", "teacher.teacher_bn_affine": True},
    "mlp_bn_momentum": BN_MOMENTUM,
    "conv": CONV,
    "conv_bn": {**CONV, "student.student_bn": "after_relu"},
    # Adam with BN after the activation: before it, a layer's bias has an exactly zero gradient
    # and Adam's m / sqrt(v) turns its rounding noise into steps of size lr, in any two programs.
    "conv_bn_affine_adam": {
        **CONV,
        "student.student_bn": "after_relu",
        "student.bn_affine": True,
        "train.optimizer": "adam",
        "train.lr": 0.005,
    },  # fmt: skip
    "deep_bn_ce_passes": {
        "teacher.widths": (5, 4),
        "student.student_bn": "after_relu",
        "train.loss": "ce",
        "train.iters_per_epoch": None,
        "data.n_train": 250,
        "train.batch": 16,
        "train.epochs": 6,
    },  # fmt: skip
    "bn_momentum_online": {**BN_MOMENTUM, "data.n_train": None},
}


def assert_bn_state(pack, state, spec, ref) -> None:
    """Running statistics and affine BN parameters equal the reference module's."""
    i = pack.runs.index(spec)
    net = parts.unpack(student(spec), state.params, state.buffers)
    for layer, bn in enumerate(ref.module.bns):
        torch.testing.assert_close(net.running_mean[layer][i].cpu(), bn.running_mean, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(net.running_var[layer][i].cpu(), bn.running_var, rtol=1e-6, atol=1e-9)
        if bn.affine:
            torch.testing.assert_close(net.bn_weight[layer][i].cpu(), bn.weight.detach(), rtol=1e-6, atol=1e-9)
            torch.testing.assert_close(net.bn_bias[layer][i].cpu(), bn.bias.detach(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("case", sorted(CASES))
def test_part_matches_reference(case: str) -> None:
    runs = [tiny_spec(seed=s, **{**CASES[case], "teacher.p": p}) for s in (1, 2) for p in (0.0, 1.5)]
    stop = min(STEPS, runs[0].total_steps)
    pack, state, tables = packed_run(runs, stop)
    fused = {"leaky_teacher_relu_student", "leaky_student", "linear_student", "teacher_bn"}
    assert pack.group_size == 2 and pack.spec.fused == (case in fused)  # both steps are under test
    for spec in runs[::3]:  # (seed 1, p 0) and (seed 2, p 1.5): both groups, both positions
        ref = train_run(spec, stop=stop)
        assert ref.diverged_step < 0
        assert_same_run(pack, state, tables, spec, ref, stop)
        assert_bn_state(pack, state, spec, ref)


def test_plain_sgd_on_a_bn_mlp_applies_each_runs_rate_in_the_backward() -> None:
    """Under plain SGD the general step updates each MLP layer inside its backward (parts._SGDMatmul),
    layer 1 once for a whole group: runs of one group at three rates each match the reference."""
    runs = [tiny_spec(seed=4, **{"student.student_bn": "after_relu", "student.bn_affine": True, "train.lr": lr})
            for lr in (0.01, 0.03, 0.05)]  # fmt: skip
    pack, state, tables = packed_run(runs, STEPS)
    assert pack.group_size == 3 and not pack.spec.fused  # one minibatch stream, the general step
    for spec in runs:
        ref = train_run(spec, stop=STEPS)
        assert_same_run(pack, state, tables, spec, ref, STEPS)
        assert_bn_state(pack, state, spec, ref)


def test_general_path_is_pack_invariant() -> None:
    target = tiny_spec(seed=5, **{**CASES["conv_bn"], "teacher.p": 1.0})
    alone = packed_run([target], STEPS)[1]
    shared = packed_run([tiny_spec(seed=5, **{**CASES["conv_bn"], "teacher.p": p}) for p in (0.0, 1.0, 2.0)], STEPS)
    i = shared[0].run_ids.index(Pack((target,)).run_ids[0])
    for a, b in zip(alone.params, shared[1].params):
        torch.testing.assert_close(a[0], b[i], rtol=1e-12, atol=1e-14)
    for a, b in zip(alone.buffers, shared[1].buffers):
        torch.testing.assert_close(a[0], b[i], rtol=1e-12, atol=1e-14)


def test_init_seeds_train_several_students_under_one_teacher() -> None:
    runs = [tiny_spec(seed=3, init_seed=s, **BN_MOMENTUM) for s in (1, 2, 3)]
    pack, state, tables = packed_run(runs, STEPS)
    assert pack.group_size == 3  # one teacher, one data set, one minibatch order
    first = [w[0] for w in state.student.weights]
    assert all(not torch.allclose(a, w[1]) for a, w in zip(first, state.student.weights))  # students differ
    teacher = tables["teacher_nodes"]
    assert teacher.groupby("run_id")["fanout_norm"].sum().nunique() == 1  # the teacher is shared
    for spec in runs:
        assert_same_run(pack, state, tables, spec, train_run(spec, stop=STEPS), STEPS)


@pytest.mark.parametrize("settings", [BN_MOMENTUM, {"student.student_bn": "after_relu"}], ids=["momentum", "sgd"])
def test_a_diverged_run_freezes_its_optimizer_and_bn_state(settings: dict) -> None:
    """With momentum (the optimizer's update) and plain SGD (the update inside the backward)."""
    runs = [tiny_spec(seed=1, **{**settings, "train.lr": lr, "train.epochs": 3}) for lr in (0.05, 1e6)]
    pack, state, tables = packed_run(runs, STEPS)
    dead = pack.runs.index(runs[1])
    ref = train_run(runs[1], stop=STEPS)
    assert int(state.diverged_step[dead]) == ref.diverged_step >= 0
    assert_same_run(pack, state, tables, runs[0], train_run(runs[0], stop=STEPS), STEPS)
    again = packed_run(runs, STEPS + 100)[1]
    for a, b in zip(state.shown, again.shown):  # frozen: the dead run's weights no longer move
        torch.testing.assert_close(a[dead], b[dead], equal_nan=True)
    if settings is not BN_MOMENTUM:
        return  # plain SGD at lr 1e6: BN keeps the loss finite a step after the weights overflow
    # With momentum the shown weights are the last finite ones; its buffers stay finite and fixed.
    assert all(bool(p[dead].isfinite().all()) for p in state.shown)
    for a, b in zip(state.opt, again.opt):
        torch.testing.assert_close(a[dead], b[dead])
    for a, b in zip(state.buffers, again.buffers):
        torch.testing.assert_close(a[dead], b[dead])


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"student.student_bn": "after_relu", "train.batch": 1}, "train.batch"),
        (
            {"student.student_bn": "after_relu", "data.n_train": 401, "train.iters_per_epoch": None, "train.batch": 16},
            "data.n_train",
        ),  # fmt: skip
        ({"model.leaky_slope": 1.0}, "model.leaky_slope"),
        ({"model.leaky_slope": -0.1}, "model.leaky_slope"),
        ({**CONV, "teacher.widths": (2, 2, 2)}, "teacher.widths"),
        ({"model.arch": "conv"}, "data.d"),
        ({"train.momentum": 1.0}, "train.momentum"),
        ({"train.optimizer": "adam", "train.momentum": 0.9}, "train.momentum"),
        ({"train.optimizer": "rmsprop"}, "train.optimizer"),
        ({"student.student_bn": "sometimes"}, "student.student_bn"),
        ({"teacher.teacher_activation": "tanh"}, "teacher.teacher_activation"),
    ],
)
def test_bad_part_settings_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}=.* is invalid: allowed "):
        tiny_spec(**changes)


def test_engine_imports_nothing_from_storage() -> None:
    engine = Path(__file__).resolve().parents[1] / "spec_ray" / "engine"
    offenders = []
    for path in engine.rglob("*.py"):  # every concept folder
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [
                f"{path.name}: {n}" for n in names if n.startswith(("spec_ray.storage", "spec_ray.orchestration"))
            ]
    assert not offenders


def test_run_ids_of_runs_that_use_no_new_part_hold() -> None:
    """Ids as spec-ray computed them before the parts existed: stored results stay growable."""
    from spec_ray.engine.pack import run_id
    from spec_ray.engine.protocols import DEEP
    from spec_ray.engine.spec import RunSpec

    assert run_id(RunSpec()) == "98262c66dd00a93b"
    assert run_id(RunSpec().replace(seed=7, **{"teacher.p": 1.5, "student.multi": 10})) == "eba5c8aefe9aa29e"
    assert run_id(DEEP.replace(**{"train.loss": "ce"})) == "4203e13cbb504c9e"
    assert run_id(RunSpec().replace(**{"train.momentum": 0.9})) != run_id(RunSpec())


def test_a_saved_state_resumes_exactly(tmp_path) -> None:
    """BN statistics and optimizer state travel through a trial checkpoint: a resumed pack is
    bit-identical to one trained straight through."""
    from spec_ray.orchestration.trial import load_state, save_state

    runs = [tiny_spec(seed=s, **{**CASES["conv_bn_affine_adam"]}) for s in (1, 2)]
    pack = Pack(tuple(runs))
    data = prepare(pack)
    straight = train_until(pack, data, init_state(pack), 250)
    half = train_until(pack, data, init_state(pack), 120)
    save_state(pack, half, str(tmp_path))
    resumed = train_until(pack, data, load_state(pack, str(tmp_path)), 250)
    assert len(resumed.opt) == 2 * len(resumed.params) and len(resumed.buffers) == 4
    for a, b in zip(
        (*straight.params, *straight.buffers, *straight.opt), (*resumed.params, *resumed.buffers, *resumed.opt)
    ):
        assert torch.equal(a, b)


def test_the_last_blocks_checkpoint_is_a_marker_that_restores_to_a_fresh_start(tmp_path) -> None:
    """At the pack's last step no state is saved (its rows are all written): a restore from that checkpoint,
    say after the runs table was lost, starts from step 0, and trains to the same bits."""
    from spec_ray.orchestration.trial import STATE_FILE, STORED_FILE, load_state, save_state

    pack = Pack(tuple(tiny_spec(seed=s) for s in (1, 2)))
    data = prepare(pack)
    end = train_until(pack, data, init_state(pack), pack.spec.total_steps)
    save_state(pack, end, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [STORED_FILE]
    assert load_state(pack, str(tmp_path)) is None
    again = train_until(pack, data, init_state(pack), pack.spec.total_steps)
    assert again.step == end.step and all(torch.equal(a, b) for a, b in zip(end.params, again.params))
    before = tmp_path / "before"
    before.mkdir()
    save_state(pack, train_until(pack, data, init_state(pack), pack.spec.total_steps - 1), str(before))
    assert sorted(p.name for p in before.iterdir()) == [STATE_FILE]
    assert load_state(pack, str(before)).step == pack.spec.total_steps - 1


def test_incoming_weight_norms_are_nearly_conserved_under_bn_only() -> None:
    """Luck Matters sec. 6.1: under BN a node's output is invariant to the scale of its incoming
    weights and bias, so gradient flow conserves their norm; SGD grows it by O(lr^2) a step."""
    change = {}
    for bn in ("none", "before_relu", "after_relu"):
        spec = tiny_spec(
            **{"student.student_bn": bn, "teacher.widths": (6, 4), "student.init_std": 0.5, "train.lr": 0.01}
        )
        nodes = packed_run([spec], STEPS)[2]["student_nodes"]
        start, end = (nodes[nodes["step"] == s].set_index(["layer", "node"])["in_norm"] for s in (0, STEPS))
        change[bn] = float(((end - start).abs() / start).max())
    assert change["before_relu"] < 0.02 and change["after_relu"] < 0.05 and change["none"] > 0.1, change
