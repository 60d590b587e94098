"""Deep teachers, cross-entropy, online data and the lr schedule: packed vs reference, gradients
vs autograd, teacher calibration and the mean rank."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_spec
from test_packed import STEPS, assert_same_run, packed_run

from spec_ray.engine import construct, losses, protocols
from spec_ray.engine.metrics import ranks
from spec_ray.engine.network import Network, forward
from spec_ray.engine.pack import Pack
from spec_ray.engine.reference import train_run
from spec_ray.engine.spec import RunSpec
from spec_ray.engine.steps import sgd_step
from spec_ray.engine.trainer import init_state, prepare, with_bias_column, with_ones

DEEP = {
    **protocols.DEEP_TEACHER,
    "student.init": "torch",
    "student.init_scale": 0.1,
    "train.lr": 0.05,
    "train.lr_schedule": ((1, 0.02),),  # crosses the epoch boundary at step 150
}
WIDTHS = {1: (6,), 3: (6, 5, 4), 4: (6, 5, 4, 3)}


@pytest.mark.parametrize("loss", ["mse", "mse_mean", "ce"])
@pytest.mark.parametrize("depth", [1, 3, 4])
def test_deep_packed_matches_reference(depth: int, loss: str) -> None:
    kw = {**DEEP, "teacher.widths": WIDTHS[depth], "train.loss": loss}
    runs = [tiny_spec(seed=s, **kw, **{"teacher.p": p}) for s in (1, 2) for p in (0.0, 1.5)]
    pack, state, tables = packed_run(runs, STEPS)
    assert pack.group_size == 2 and len(state.params) == depth + 1
    for spec in runs:
        assert_same_run(pack, state, tables, spec, train_run(spec, stop=STEPS), STEPS)
    layers = set(tables["teacher_nodes"]["layer"])
    assert layers == set(range(1, depth + 1))


@pytest.mark.parametrize("loss", ["mse_mean", "ce"])
@pytest.mark.parametrize("depth", [1, 4])
def test_shuffled_passes_match_reference(depth: int, loss: str) -> None:
    # 410 samples in batches of 16: 26 steps an epoch, the last one of 10 rows; 300 steps
    # cross 11 epoch boundaries, each a fresh permutation shared by the runs of a seed.
    kw = {**DEEP, "teacher.widths": WIDTHS[depth], "train.loss": loss, "data.n_train": 410,
          "train.iters_per_epoch": None, "train.epochs": 12}  # fmt: skip
    runs = [tiny_spec(seed=s, **kw, **{"teacher.p": p}) for s in (1, 2) for p in (0.0, 1.5)]
    spec = runs[0]
    assert (spec.steps_per_epoch, spec.last_batch, spec.total_steps) == (26, 10, 312)
    pack, state, tables = packed_run(runs, STEPS)
    for spec in runs:
        assert_same_run(pack, state, tables, spec, train_run(spec, stop=STEPS), STEPS)
    epochs = tables["scalars"]["epoch"].to_numpy()
    assert {1.0, 2.0, 11.0} <= set(epochs)  # an epoch is 26 steps, not iters_per_epoch


def test_a_pass_visits_every_sample_once() -> None:
    spec = tiny_spec(**{"data.n_train": 410, "train.iters_per_epoch": None})
    for epoch in (0, 1):
        idx = construct.batch_indices(spec, epoch)  # (26, 16)
        seen = torch.cat([idx[:-1].flatten(), idx[-1, : spec.last_batch]])
        assert torch.equal(seen.sort().values, torch.arange(410))
    assert not torch.equal(construct.batch_indices(spec, 0), construct.batch_indices(spec, 1))
    same_seed = spec.replace(**{"teacher.p": 2.0, "train.lr": 0.3})
    assert torch.equal(construct.batch_indices(spec, 3), construct.batch_indices(same_seed, 3))


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_online_data_matches_reference(loss: str) -> None:
    kw = {**DEEP, "teacher.widths": (5, 4), "train.loss": loss, "data.n_train": None}
    runs = [tiny_spec(seed=s, **kw) for s in (1, 2)]
    pack, state, tables = packed_run(runs, STEPS)
    for spec in runs:
        assert_same_run(pack, state, tables, spec, train_run(spec, stop=STEPS), STEPS)
    assert tables["scalars"]["train_loss"].isna().all()  # no training set to measure on


@pytest.mark.parametrize("loss", ["mse", "mse_mean", "ce"])
def test_sgd_step_gradients_equal_autograd(loss: str) -> None:
    spec = tiny_spec(**{**DEEP, "teacher.widths": (6, 5, 4), "train.loss": loss, "student.init_scale": 1.0})
    pack = Pack((spec, spec.replace(**{"teacher.p": 2.0})))
    data, state = prepare(pack), init_state(pack)
    before = [p.clone() for p in state.params]
    idx = construct.batch_indices(spec, 0)[0]  # (B,)
    x = data.x_train[:, idx]  # (G, B, d+1)
    t = data.y_train[:, idx].transpose(1, 2)  # (G, k, B, c): G = 1
    target = t.argmax(dim=-1).view(2, -1) if loss == "ce" else t  # (R, B) labels
    lr = 0.1
    scale = torch.full((2, 1, 1), lr * losses.grad_scale(loss, spec.train.batch, spec.teacher.c), dtype=torch.float64)
    acts = [torch.ones(2, spec.train.batch, n + 1, dtype=torch.float64) for n in spec.student_widths]
    stat = torch.empty(2, dtype=torch.float64)
    sgd_step(state.params, x, target, scale=scale, stat=stat, acts=acts, k=pack.group_size, ce=loss == "ce")
    for r in range(2):
        params = [p[r].clone().requires_grad_(True) for p in before]
        net = Network(tuple(p[:, :-1] for p in params), tuple(p[:, -1] for p in params))
        out = forward(net, x[0, :, :-1])[1]  # (B, c)
        if loss == "ce":
            value = torch.nn.functional.cross_entropy(out, t[0, r].argmax(dim=-1))
        elif loss == "mse_mean":
            value = torch.nn.functional.mse_loss(out, t[0, r])
        else:
            value = 0.5 * ((out - t[0, r]) ** 2).sum(dim=1).mean()
        got = losses.minibatch_objective(loss, stat[r : r + 1], spec.train.batch, spec.teacher.c)[0]
        torch.testing.assert_close(got, value.detach())
        grads = torch.autograd.grad(value, params)
        for p_new, p_old, grad in zip(state.params, before, grads):
            torch.testing.assert_close(p_new[r], p_old[r] - lr * grad, rtol=1e-10, atol=1e-12)


def test_teacher_calibration_half_active_and_standard_outputs() -> None:
    spec = RunSpec(seed=3).replace(**{**DEEP, "teacher.widths": (50, 75, 100, 125), "data.d": 20,
                                      "data.sigma": 10.0, "teacher.c": 100, "teacher.p": 1.0})  # fmt: skip
    teacher = construct.build_teacher(spec)
    hidden, out = forward(teacher, construct.eval_inputs(spec))
    for h in hidden:
        active = (h > 0).double().mean(dim=0)  # (m_l,)
        assert float((active - 0.5).abs().max()) <= 0.05
    assert float(out.mean(dim=0).abs().max()) < 1e-10 and float((out.std(dim=0) - 1).abs().max()) < 1e-10
    # Calibration uses the evaluation set; fresh data sees the same picture within noise.
    fresh = forward(teacher, torch.randn(10_000, 20, dtype=torch.float64) * 10.0)[0]
    assert all(float(((h > 0).double().mean(dim=0) - 0.5).abs().max()) < 0.06 for h in fresh)


def test_mean_rank_hand_made() -> None:
    # Teacher 0's init correlations with 4 students: student 2 ranked first, student 0 last.
    init = torch.tensor([[[0.1, 0.5, 0.9, 0.3], [0.4, 0.3, 0.2, 0.1]]])  # (R=1, m=2, n=4)
    now = torch.tensor([[[0.99, 0.2, 0.1, 0.0], [0.0, 0.1, 0.2, 0.98]]])  # best: student 0, student 3
    r = ranks(init, now)  # (1, 2)
    # Student 0 had 3 students above it for teacher 0 -> 3/3; student 3 had 3 above for teacher 1 -> 1.
    torch.testing.assert_close(r, torch.tensor([[1.0, 1.0]]))
    now2 = torch.tensor([[[0.0, 0.1, 0.99, 0.0], [0.0, 0.97, 0.2, 0.1]]])  # best: 2 (first), 1 (second)
    torch.testing.assert_close(ranks(init, now2), torch.tensor([[0.0, 1 / 3]]))


def test_bias_column_and_ones_layout() -> None:
    net = construct.init_student(tiny_spec(**DEEP))
    merged = with_bias_column(net)
    x = torch.randn(7, 12, dtype=torch.float64)
    torch.testing.assert_close(with_ones(x) @ merged[0].T, x @ net.weights[0].T + net.biases[0])
