"""train.matmul_precision: bf16 matmuls on CPU change the arithmetic by bf16 rounding only, ieee
changes nothing, the backend settings are put back, and a device without the precision fails early."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_spec

from spec_ray.engine import arch, construct, precision
from spec_ray.engine.pack import Pack, run_id
from spec_ray.engine.reference import TorchNet, build_problem, optimizer, train_steps
from spec_ray.engine.spec import RunSpec, bf16_applies
from spec_ray.engine.trainer import init_state, prepare, train_until

# Every matmul of these runs is over torch's 16^3 multiply-add floor for oneDNN, per run, so the
# packed and the reference steps both run each of them in bf16 (smaller ones stay fp32).
ROOT = Path(__file__).resolve().parents[1]
BIG = {"data.d": 24, "teacher.widths": (8,), "teacher.c": 12, "train.dtype": "float32"}


def runs(value: str) -> list[RunSpec]:
    return [tiny_spec(seed=s, **{**BIG, "teacher.p": p, "train.matmul_precision": value}) for s in (1, 2)
            for p in (0.0, 1.0)]  # fmt: skip


def packed_update(specs: list[RunSpec], target: RunSpec, steps: int = 1) -> list[torch.Tensor]:
    """The change of ``target``'s layers (weights with bias column) over ``steps`` packed steps."""
    pack = Pack(tuple(specs))
    start = init_state(pack)
    before = [p.clone() for p in start.params]
    after = train_until(pack, prepare(pack), start, steps)
    i = pack.run_ids.index(run_id(target))
    return [(a[i] - b[i]).double() for a, b in zip(after.params, before)]


def reference_update(spec: RunSpec, steps: int = 1) -> list[torch.Tensor]:
    problem = build_problem(spec)
    net = TorchNet(construct.init_student(spec).to(torch.float32, "cpu"), arch.student(spec))
    layers = lambda: [torch.cat([m.weight, m.bias[:, None]], 1).detach().clone() for m in net.layers]  # noqa: E731
    before = layers()
    assert train_steps(spec, net, optimizer(spec, net), problem, 0, steps) == -1
    after = layers()
    return [(a - b).detach().double() for a, b in zip(after, before)]


def rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).norm() / y.norm()) for x, y in zip(a, b))


def test_bf16_rounds_the_update_like_the_reference_in_bf16() -> None:
    bf, ieee = runs("bf16"), runs("ieee")
    if not bf16_applies():  # a Zen 3, an Ice Lake, a Zen 4 under the MKL preload: fp32 under a bf16 label, refused
        with pytest.raises(ValueError, match="train.matmul_precision='bf16' is invalid: allowed ieee on this CPU"):
            packed_update(bf, bf[1])
        with (
            pytest.raises(ValueError, match="leaves its float32 matmuls as they were"),
            precision.training("bf16", "cpu"),
        ):
            pass
        return
    packed_bf, packed_ieee = packed_update(bf, bf[1]), packed_update(ieee, ieee[1])
    ref_bf, ref_ieee = reference_update(bf[1]), reference_update(ieee[1])
    assert rel(packed_ieee, ref_ieee) < 1e-5  # fp32 rounding
    gap = rel(packed_bf, packed_ieee)  # bf16 operands (8 mantissa bits); the residual's cancellation
    assert 2e-3 < gap < 0.1, gap  # amplifies them in the update (measured 1.9 %)
    assert 2e-3 < rel(ref_bf, ref_ieee) < 0.1
    assert rel(packed_bf, ref_bf) < 0.5 * gap  # the two bf16 steps agree better than bf16 and fp32 (measured 0.19)


@pytest.mark.parametrize("applies", [True, False])
def test_bf16_is_refused_exactly_where_a_measurement_says_it_does_not_apply(applies: bool, monkeypatch) -> None:
    """Both branches, forced, on any CPU: the measurement decides, not the CPU's flags."""
    from spec_ray.engine import spec as specs

    monkeypatch.setattr(specs, "bf16_applies", lambda: applies)
    if applies:
        specs.check_matmul_precision("bf16", "cpu")
    else:
        with pytest.raises(
            ValueError, match=r"train.matmul_precision='bf16' is invalid: allowed ieee on this CPU: a bf16"
        ):
            specs.check_matmul_precision("bf16", "cpu")
    specs.check_matmul_precision("ieee", "cpu")  # never refused


def test_the_bf16_measurement_is_what_the_trainer_sees(monkeypatch) -> None:
    """``bf16_applies`` agrees with a packed step's own arithmetic on this CPU: with the check forced
    open, a bf16 pack moves the update by bf16 rounding where it applies and changes no bit where not."""
    from spec_ray.engine import spec as specs

    measured = specs.bf16_applies()
    monkeypatch.setattr(specs, "bf16_applies", lambda: True)
    bf, ieee = runs("bf16"), runs("ieee")
    gap = rel(packed_update(bf, bf[1]), packed_update(ieee, ieee[1]))
    assert (gap > 1e-3) == measured, gap
    # nothing in between: bf16's rounding, or none (0.0 here; 2.7e-7 of fp32 summation order on a Zen 4)
    assert gap < 1e-5 or gap > 1e-3, gap


def test_ieee_is_fp32_whatever_the_process_setting() -> None:
    specs = runs("ieee")
    plain = packed_update(specs, specs[0], steps=5)
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"  # a user's own setting, left in the process
    try:
        forced = packed_update(specs, specs[0], steps=5)
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"  # put back after training
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = "none"
    for a, b in zip(plain, forced):
        assert torch.equal(a, b)


def test_settings_are_put_back_after_an_error() -> None:
    before = torch.backends.mkldnn.matmul.fp32_precision, torch.backends.mkldnn.conv.fp32_precision
    value = "bf16" if bf16_applies() else "ieee"  # ieee is set explicitly too (not the default "none")
    with pytest.raises(RuntimeError, match="inside"), precision.training(value, "cpu"):
        assert torch.backends.mkldnn.matmul.fp32_precision == value
        assert torch.backends.mkldnn.conv.fp32_precision == value
        raise RuntimeError("inside")
    assert (torch.backends.mkldnn.matmul.fp32_precision, torch.backends.mkldnn.conv.fp32_precision) == before


def test_precision_is_checked_and_keeps_old_run_ids() -> None:
    base = RunSpec()
    assert run_id(base) == run_id(base.replace(**{"train.matmul_precision": "ieee"}))
    assert run_id(base) != run_id(base.replace(**{"train.matmul_precision": "bf16"}))
    with pytest.raises(ValueError, match=r"train.matmul_precision='fp8' is invalid: allowed one of ieee, tf32, bf16"):
        base.replace(**{"train.matmul_precision": "fp8"})
    with pytest.raises(ValueError, match="allowed ieee with train.dtype float64"):
        base.replace(**{"train.dtype": "float64", "train.matmul_precision": "bf16"})
    with pytest.raises(ValueError, match="allowed ieee, bf16 on cpu"), precision.training("tf32", "cpu"):
        pass


@pytest.mark.slow  # the real processes
@pytest.mark.parametrize("cmd", [["sweeps/polarity.py"], ["-m", "spec_ray", "run"]])
def test_a_precision_the_device_lacks_exits_2_before_any_work(cmd: list[str], tmp_path) -> None:
    out = subprocess.run([sys.executable, *cmd, "--smoke", "--matmul-precision", "tf32", "--storage", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2
    assert "train.matmul_precision='tf32' is invalid: allowed ieee, bf16 on cpu" in out.stderr
    assert list(tmp_path.iterdir()) == []
