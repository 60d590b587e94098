"""Protocol construction: the authors' two teachers, exact polarity, shuffled passes, common random numbers."""

from __future__ import annotations

import math

import numpy as np
import torch

from benchmarks import authors_recipe  # held out: imports nothing from spec_ray
from spec_ray.engine import construct, protocols
from spec_ray.engine.spec import RunSpec


def test_teacher_rows_distinct_nonzero_unit_norm() -> None:
    spec = RunSpec()
    teacher = construct.build_teacher(spec)
    w1, v = teacher.weights
    assert w1.shape == (20, 100) and v.shape == (50, 20)
    torch.testing.assert_close(w1.norm(dim=1), torch.ones(20, dtype=torch.float64), rtol=0, atol=1e-14)
    assert len({tuple(r.tolist()) for r in w1}) == 20
    # Entries are the choices scaled by the row norm: each row's non-zero magnitudes
    # are multiples of 0.25 / norm.
    raw = construct.build_teacher(spec.replace(**{"teacher.p": 0.0})).weights[1]
    assert len({tuple(r.tolist()) for r in raw}) == 50 and bool((raw.abs().sum(dim=1) > 0).all())
    assert torch.equal(teacher.biases[0], torch.full((20,), -0.1, dtype=torch.float64))
    assert torch.equal(teacher.biases[1], torch.full((50,), -0.1, dtype=torch.float64))


def test_two_layer_output_layer_is_kept_as_drawn_then_divided_by_polarity() -> None:
    spec = RunSpec(seed=3).replace(**{"teacher.p": 1.5})
    v = construct.build_teacher(spec).weights[1]  # (c, m)
    raw = v * torch.arange(1, 21, dtype=torch.float64) ** 1.5  # undo the polarity division
    choices = torch.tensor(spec.teacher.weight_choices, dtype=torch.float64)
    assert bool(torch.isclose(raw[..., None], choices).any(dim=-1).all())  # every entry a raw choice: no norm


def test_two_layer_teacher_statistics_equal_the_authors_recipe() -> None:
    # m = 20, p = 0: output std and node fan-out norms, mean over 12 seeds, ours vs the held-out
    # re-implementation (independent random streams). Row-normalizing the output layer, as
    # spec-ray once did, gives std 1.00 and fan-out norms 1.51 instead.
    ours_std, ours_fan, their_std, their_fan = [], [], [], []
    gen = np.random.default_rng(0)
    for seed in range(1, 13):
        spec = RunSpec(seed=seed).replace(**{"data.n_eval": 4000})
        teacher = construct.build_teacher(spec)
        ours_std.append(float(construct.teacher_outputs(teacher, construct.eval_inputs(spec)).std()))
        ours_fan.append(teacher.weights[1].norm(dim=0).numpy())  # (m,)
        w1, w2 = authors_recipe.teacher(authors_recipe.Recipe(), seed)
        x = gen.standard_normal((4000, 100)) * 1.5
        their_std.append(float(authors_recipe.forward(x, w1, w2)[2].std()))
        their_fan.append(np.linalg.norm(w2[:-1], axis=1))  # (m,)
    assert abs(np.mean(ours_std) - np.mean(their_std)) < 0.1 and 1.45 < np.mean(ours_std) < 1.75
    assert abs(np.mean(ours_fan) - np.mean(their_fan)) < 0.05 and abs(np.mean(ours_fan) - math.sqrt(50 * 0.125)) < 0.05
    # Node by node (strength order matters, p = 0 or not): each fan-out norm within seed noise of 2.5.
    assert abs(np.mean(ours_fan, axis=0) - np.mean(their_fan, axis=0)).max() < 0.25


def test_deep_teacher_normalizes_rows_after_polarity() -> None:
    spec = RunSpec(seed=2).replace(**{**protocols.DEEP_TEACHER, "teacher.calibrate": False, "teacher.p": 2.0,
                                      "teacher.widths": (8, 6), "data.d": 10, "teacher.c": 5})  # fmt: skip
    teacher = construct.build_teacher(spec)
    for w in teacher.weights:
        torch.testing.assert_close(w.norm(dim=1), torch.ones(w.shape[0], dtype=torch.float64))
    # "first" keeps the layers above 1 as drawn / (j+1)^p, biases raw: the same draws, divided by the row norm.
    first = construct.build_teacher(spec.replace(**{"teacher.normalize": "first"}))
    for w_all, b_all, w, b in zip(teacher.weights[1:], teacher.biases[1:], first.weights[1:], first.biases[1:]):
        norm = w.norm(dim=1)  # (m_l,) row norms after the polarity division
        torch.testing.assert_close(w_all, w / norm[:, None])
        torch.testing.assert_close(b_all, b / norm)


def test_separated_rows_with_few_choices_still_distinct() -> None:
    rows = construct.separated_rows(construct.stream(3, "x"), 7, 3, (0.0, 1.0))
    assert len({tuple(r.tolist()) for r in rows}) == 7 and bool((rows.abs().sum(1) > 0).all())


def test_polarity_divides_fanout_by_j_to_the_p() -> None:
    base = construct.build_teacher(RunSpec().replace(**{"teacher.p": 0.0}))
    for p in (0.5, 1.0, 2.5):
        teacher = construct.build_teacher(RunSpec().replace(**{"teacher.p": p}))
        ratio = teacher.weights[1] / base.weights[1]  # (c, m); 0/0 where an entry is 0
        expected = torch.arange(1, 21, dtype=torch.float64) ** -p
        for j in range(20):
            col = ratio[:, j][base.weights[1][:, j] != 0]
            torch.testing.assert_close(col, torch.full_like(col, expected[j].item()), rtol=1e-15, atol=0)
        norms = teacher.weights[1].norm(dim=0)
        # Node 0 is the strongest once p > 0 dominates the base-norm spread.
        if p >= 1:
            assert int(norms.argmax()) == 0


def test_same_seed_different_p_shares_everything_but_the_fanout() -> None:
    a, b = RunSpec(seed=7), RunSpec(seed=7).replace(**{"teacher.p": 2.0})
    assert torch.equal(construct.build_teacher(a).weights[0], construct.build_teacher(b).weights[0])
    assert torch.equal(construct.train_inputs(a), construct.train_inputs(b))
    assert torch.equal(construct.eval_inputs(a), construct.eval_inputs(b))
    for wa, wb in zip(construct.init_student(a).weights, construct.init_student(b).weights):
        assert torch.equal(wa, wb)
    assert torch.equal(construct.batch_indices(a, 3), construct.batch_indices(b, 3))
    c = RunSpec(seed=8)
    assert not torch.equal(construct.train_inputs(a), construct.train_inputs(c))
    assert not torch.equal(construct.batch_indices(a, 3), construct.batch_indices(a, 4))


def test_student_init_and_data_statistics() -> None:
    spec = RunSpec()
    student = construct.init_student(spec)
    assert [tuple(w.shape) for w in student.weights] == [(100, 100), (50, 100)]
    assert abs(student.weights[0].std().item() - 0.005) < 0.0002
    assert all(bool((b == 0).all()) for b in student.biases)
    x = construct.train_inputs(spec)
    assert x.shape == (10_000, 100) and abs(x.std().item() - 1.5) < 0.01
    idx = construct.batch_indices(spec, 0)
    assert idx.shape == (1000, 16) and int(idx.min()) >= 0 and int(idx.max()) < 10_000


def test_teacher_agnostic_is_definition_7a() -> None:
    spec = RunSpec().replace(**{"data.d": 5, "data.n_train": 100, "data.augmentation": "teacher_agnostic"})
    x = construct.train_inputs(spec)
    assert x.shape == (100, 5)
    delta = spec.data.agnostic_delta
    # Base point, then +delta along each axis, then -delta along each axis.
    for u in range(5):
        e = torch.zeros(5, dtype=torch.float64)
        e[u] = delta
        torch.testing.assert_close(x[1 + u] - x[0], e)
        torch.testing.assert_close(x[6 + u] - x[0], -e)


def test_teacher_aware_is_definition_7b() -> None:
    spec = RunSpec().replace(**{"data.n_train": 600, "data.augmentation": "teacher_aware"})
    x = construct.train_inputs(spec)
    assert x.shape == (600, 100)
    norms = x.norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 1.5 * math.sqrt(100)))
    # Point 3i+t belongs to teacher node (i mod m): t=0 on its boundary, t=1,2 shifted off.
    teacher = construct.build_teacher(spec)
    pre = x @ teacher.weights[0].T + teacher.biases[0]  # (N, m)
    node = (torch.arange(600) // 3) % 20
    own = pre[torch.arange(600), node].abs()  # (N,)
    gauss = (construct.eval_inputs(spec) @ teacher.weights[0].T + teacher.biases[0]).abs()
    assert float(own[0::3].median()) < 0.02 * float(gauss.median())
    assert 0.8 < float(own[1::3].median()) < 2.2 and 0.8 < float(own[2::3].median()) < 2.2
