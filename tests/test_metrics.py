"""Metrics on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_spec

from spec_ray.engine import losses, metrics, passes, reference
from spec_ray.engine.metrics import Checkpoint, correlation, measure
from spec_ray.engine.network import Network, fanout_norms
from spec_ray.engine.pack import Pack
from spec_ray.engine.trainer import init_state, prepare, train_until


def test_copied_node_correlates_one_and_constant_node_gives_zero() -> None:
    gen = torch.Generator().manual_seed(0)
    teacher = torch.relu(torch.randn(500, 3, generator=gen, dtype=torch.float64))  # (N, m)
    student = torch.stack(
        [
            2.5 * teacher[:, 1],  # a positive multiple of teacher node 1
            torch.zeros(500, dtype=torch.float64),  # a dead (constant) node
            torch.full((500,), 3.0, dtype=torch.float64),  # a constant non-zero node
            torch.relu(torch.randn(500, generator=gen, dtype=torch.float64)),  # unrelated
        ],
        dim=1,
    )  # (N, n)
    rho = correlation(teacher, student)  # (m, n)
    assert rho.shape == (3, 4) and bool(rho.isfinite().all())
    assert abs(float(rho[1, 0]) - 1.0) < 1e-12
    assert float(rho[:, 1].abs().max()) == 0.0 and float(rho[:, 2].abs().max()) == 0.0
    assert float(rho[:, 3].abs().max()) < 0.2
    best, arg = rho.max(dim=1)
    assert int(arg[1]) == 0 and float(best[1]) > 0.95  # teacher node 1 is recovered


def test_batched_correlation_matches_numpy_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.relu(torch.randn(4, 200, 5, generator=gen, dtype=torch.float64))  # (R, N, m)
    b = torch.relu(a @ torch.randn(4, 5, 7, generator=gen, dtype=torch.float64) + 2.0)  # (R, N, n)
    got = correlation(a, b)  # (R, m, n)
    for r in range(4):
        np.testing.assert_allclose(got[r].numpy(), reference.correlation(a[r].numpy(), b[r].numpy()), rtol=1e-12)
        np.testing.assert_allclose(got[r].numpy(), np.corrcoef(a[r].T, b[r].T)[:5, 5:], rtol=1e-8, atol=1e-12)


def test_fanout_norm_and_losses_by_hand() -> None:
    w_out = torch.tensor([[3.0, 0.0], [4.0, 1.0]], dtype=torch.float64)  # (c, n)
    net = Network((torch.zeros(2, 3, dtype=torch.float64), w_out), (torch.zeros(2), torch.zeros(2)))
    torch.testing.assert_close(fanout_norms(net)[0], torch.tensor([5.0, 1.0], dtype=torch.float64))
    out = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.zeros(2, 2)
    # Two samples, two outputs, squared errors 1, 4, 0, 0.
    assert float(losses.objective("mse", out, target)) == 0.5 * (1 + 4 + 0) / 2  # the SGD objective
    assert float(losses.reported("mse", out, target)) == (1 + 4 + 0) / 4  # the authors' unit
    assert float(losses.objective("mse_mean", out, target)) == float(losses.reported("mse_mean", out, target)) == 5 / 4
    # CE against argmax labels (output 1, then output 0 on a tie): log(1 + e^-1) and log 2.
    ce = float(losses.reported("ce", out, torch.tensor([[0.0, 1.0], [1.0, 0.0]])))
    assert abs(ce - (np.log1p(np.exp(-1.0)) + np.log(2.0)) / 2) < 1e-6
    assert losses.UNITS["mse"] == losses.UNITS["mse_mean"] and "outputs" in losses.UNITS["mse"]


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_checkpoint_is_the_same_in_any_chunking(monkeypatch: pytest.MonkeyPatch, loss: str) -> None:
    """Chunks of one run, pieces of a group and whole groups give the metrics of one chunk."""
    base = tiny_spec(**{"teacher.widths": (6, 5), "train.loss": loss})
    pack = Pack(tuple(base.replace(seed=s, **{"teacher.p": p}) for s in (1, 2) for p in (0.0, 1.0, 2.0)))  # k = 3
    data = prepare(pack)
    state = train_until(pack, data, init_state(pack), 120)
    whole = measure(pack, data, state, with_train=True)
    per_run = 300 * metrics._widths(pack) * 8  # bytes of one run's chunk (n_eval = 300, n_train = 400)
    for runs, want in (
        (1, [(i, i + 1) for i in range(6)]),
        (2, [(0, 2), (2, 3), (3, 5), (5, 6)]),
        (5, [(0, 3), (3, 6)]),
    ):
        monkeypatch.setitem(passes.MEMORY_BUDGET, "cpu", runs * per_run)
        assert passes.chunks(pack, 300, metrics._widths(pack)) == want
        got = measure(pack, data, state, with_train=True)
        for name, a, b in zip(Checkpoint._fields, whole, got):
            for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
                torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-14, msg=f"{name} with {runs}-run chunks")
    assert whole.eval_accuracy is not None if loss == "ce" else whole.eval_accuracy is None
    assert float(whole.grad_norm.min()) > 0 and len(whole.train_corr) == 2
