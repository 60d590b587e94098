"""The sweep's cost model and schedule: splits keep every run and every result, packs start longest first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_spec
from test_sweep import sweep

from spec_ray.engine.pack import Pack, checkpoint_steps, shape_key, train_metric_steps
from spec_ray.engine.protocols import LUCK_CNN
from spec_ray.engine.trainer import init_state, prepare, train_until
from spec_ray.orchestration.costs import (
    GPU_CHECKPOINT_S,
    GPU_FP32_FLOPS,
    GPU_STEP_S,
    Curve,
    ShapeCost,
    gpu_cost,
    metric_flops,
    useful_flops,
)
from spec_ray.orchestration.schedule import balance, lpt, makespan, measure, resize


def seeds_pack(seeds: int, ps=(0.0, 1.0)) -> Pack:
    return Pack(tuple(tiny_spec(seed=s, **{"teacher.p": p}) for s in range(1, seeds + 1) for p in ps))


def test_useful_flops_count_forward_and_backward_of_each_layer() -> None:
    spec = tiny_spec()  # d 12, student 3 x 6 = 18, c 5, batch 16 (tiny_spec's defaults)
    b, d, n, c = spec.train.batch, spec.data.d, spec.student_widths[0], spec.teacher.c
    assert useful_flops(spec) == 6 * b * ((d + 1) * n + (n + 1) * c)


def test_metric_flops_count_the_checkpoint_matmuls_by_hand() -> None:
    spec = tiny_spec()  # d 12, teacher 6, student 18, c 5; n_eval 300, n_train 400; 2 epochs x 150
    assert checkpoint_steps(spec) == [0, 1, 5, 28, 150, 300] and train_metric_steps(spec) == {0, 150, 300}
    forward, teacher, corr = 13 * 18 + 19 * 5, 13 * 6, 6 * 18  # multiply-adds a sample
    evals = 300 * (7 * (forward + corr) + teacher)  # 6 checkpoints and the init, teacher once
    trains = 400 * 3 * (teacher + 3 * forward + corr)
    assert metric_flops(spec) == 2 * (evals + trains)


def test_longest_first_fills_the_slot_that_frees_first() -> None:
    costs = {i: c for i, c in enumerate([2.0, 4.0, 3.0, 3.0, 2.0])}
    packs = [seeds_pack(1, ps=(float(i),)) for i in costs]
    cost = {p.pack_id: costs[i] for i, p in enumerate(packs)}.__getitem__
    placed = lpt(packs, lambda p: cost(p.pack_id), slots=2)
    assert [p.end - p.start for p in placed] == [4.0, 3.0, 3.0, 2.0, 2.0]  # started longest first
    assert makespan(placed) == 8.0  # 4+2+2 | 3+3: longest first is within 4/3 of the best (7)
    assert makespan(lpt(packs, lambda p: cost(p.pack_id), slots=1)) == 14.0


def test_balance_splits_a_long_pack_along_whole_seed_groups() -> None:
    long, short = seeds_pack(8), Pack((tiny_spec(seed=99, **{"student.multi": 2}),))
    cost = lambda p: float(p.size)  # noqa: E731 - seconds proportional to runs
    out = balance([long, short], cost, slots=2)
    assert len(out) > 2 and sorted(r for p in out for r in p.run_ids) == sorted(long.run_ids + short.run_ids)
    assert all(p.size % 2 == 0 for p in out if p.spec.student.multi == 3)  # whole groups of 2 p values
    assert [cost(p) for p in out] == sorted((cost(p) for p in out), reverse=True)
    assert makespan(lpt(out, cost, 2)) == 9  # the best whole groups of 2 runs and one 1-run pack allow
    assert balance([long, short], cost, slots=1) == [long, short]  # one slot: nothing to balance


def test_a_split_pack_trains_every_run_exactly_as_the_whole_pack() -> None:
    whole = seeds_pack(4)
    halves = balance([whole], lambda p: float(p.size), slots=4)
    assert len(halves) >= 2

    def final(pack: Pack) -> dict[str, torch.Tensor]:
        data = prepare(pack)
        state = train_until(pack, data, init_state(pack), 200)
        return {r: state.params[0][i] for i, r in enumerate(pack.run_ids)}

    together = final(whole)
    apart = {r: w for p in halves for r, w in final(p).items()}
    assert together.keys() == apart.keys()
    for r in together:
        assert torch.equal(together[r], apart[r]), r  # bit for bit: float64, same groups, same order


def test_costs_run_through_the_measured_points() -> None:
    curve = Curve.through([(4, 1.0), (32, 4.5), (160, 30.0)])
    assert [curve.at(r) for r in (4, 32, 160)] == pytest.approx([1.0, 4.5, 30.0])
    assert curve.at(18) == pytest.approx(2.75) and curve.at(96) == pytest.approx(17.25)  # on the segments
    assert curve.at(2) == pytest.approx(0.75) and curve.at(192) == pytest.approx(36.375)  # extended
    noisy = Curve.through([(4, 1.0), (32, 0.9)])  # a slower small pack: never cheaper with more runs
    assert noisy.at(32) == pytest.approx(1.0) and noisy.at(64) >= noisy.at(32)
    assert Curve.through([(8, 2.0)]).at(16) == pytest.approx(4.0)


def test_gpu_costs_are_the_h100_constants_or_the_flops_at_its_peak_whichever_is_longer() -> None:
    tiny = seeds_pack(8)  # 16 two-layer runs: launch-bound, the measured constants
    cost = gpu_cost(tiny)
    assert [cost.step.at(r) for r in (1, 5, 16)] == pytest.approx([GPU_STEP_S] * 3)
    assert cost.checkpoint.at(16) == pytest.approx(GPU_CHECKPOINT_S)
    wide = Pack(tuple(LUCK_CNN.replace(seed=s) for s in (1, 2, 3)))  # 640 channels a layer: flop-bound
    cost, runs = gpu_cost(wide), wide.size
    assert cost.step.at(runs) == pytest.approx(runs * useful_flops(wide.spec) / GPU_FP32_FLOPS["ieee"])
    assert cost.step.at(runs) > 10 * GPU_STEP_S and cost.step.at(1) == pytest.approx(cost.step.at(runs) / runs)
    per_checkpoint = metric_flops(wide.spec) / (len(checkpoint_steps(wide.spec)) + 1) / GPU_FP32_FLOPS["ieee"]
    assert cost.checkpoint.at(runs) == pytest.approx(max(GPU_CHECKPOINT_S, runs * per_checkpoint))
    tf32 = Pack(tuple(r.replace(**{"train.matmul_precision": "tf32"}) for r in wide.runs))  # tensor cores: 7.4x
    assert gpu_cost(tf32).step.at(runs) == pytest.approx(cost.step.at(runs) * 67 / 495)


def test_packs_larger_than_their_cheapest_size_are_cut_into_whole_groups() -> None:
    pack = seeds_pack(8)  # 16 runs, groups of 2
    flat = Curve.through([(1, 1.0)])
    costs = {shape_key(pack.spec): ShapeCost(flat, flat, flat, flat, best_runs=5)}
    pieces = resize([pack], costs)
    assert [p.size for p in pieces] == [4, 4, 4, 4]  # at most 5 runs, whole groups: 4
    assert sorted(r for p in pieces for r in p.run_ids) == sorted(pack.run_ids)
    assert resize([pack], {shape_key(pack.spec): ShapeCost(flat, flat, flat, flat)}) == [pack]  # any size


def test_calibration_gives_a_positive_cost_that_grows_with_runs_and_steps() -> None:
    pack = seeds_pack(6)
    cost = measure(pack)
    assert cost.best_runs is not None and 2 <= cost.best_runs <= pack.size and cost.best_runs % 2 == 0
    assert 0 < cost.seconds(Pack(pack.runs[:2])) < cost.seconds(pack) < 60
    longer = Pack(tuple(r.replace(**{"train.epochs": 4}) for r in pack.runs))
    assert cost.seconds(longer) > cost.seconds(pack)


@pytest.mark.slow  # a process that calibrates in processes
def test_dry_run_prints_every_pack_and_a_projection_and_writes_nothing(tmp_path: Path) -> None:
    storage = tmp_path / "never"
    args = ["--smoke", "--storage", str(storage), "--dry-run", "--nodes", "4", "--node-cpus", "8"]
    proc = sweep("polarity", *args, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not storage.exists()  # nothing written, not even the storage probe
    lines = proc.stdout.splitlines()
    packs = [line for line in lines if line.startswith("m5 x")]
    assert len(packs) == 2 and all(float(line.split()[6]) > 0 for line in packs)
    assert any(line.startswith("this machine: ") and "projected wall" in line for line in lines)
    assert any(line.startswith("cluster of 4 node(s), 8 CPUs a node: 32 pack(s) at a time") for line in lines)
    assert "Tune" not in proc.stdout + proc.stderr and "ray.init" not in proc.stderr
    bad = sweep("polarity", "--smoke", "--storage", str(storage), "--dry-run", "--nodes", "0", timeout=60)
    assert bad.returncode == 2 and "--nodes=0" in bad.stderr and not storage.exists()


def test_a_shape_too_large_to_time_is_priced_from_its_flops_at_once() -> None:
    """A pack whose calibration would itself take minutes (the 640-channel CNN's took 20) is not timed: its
    flops at the packed trainer's rate price it, in well under a second."""
    import time

    from spec_ray.engine.specs.spec import RunSpec
    from spec_ray.engine.training.pack import Pack, shape_key
    from spec_ray.orchestration.costs import CALIBRATION_BOUND_S, calibration_floor, flops_cost
    from spec_ray.orchestration.schedule import measure_shapes

    huge = RunSpec().replace(**{"teacher.widths": (2000, 2000), "data.d": 2000, "student.multi": 10})
    small = RunSpec().replace(**{"teacher.widths": (5,), "data.d": 10, "train.epochs": 1, "train.iters_per_epoch": 20})
    big, little = Pack(tuple(huge.replace(seed=s) for s in (1, 2))), Pack((small,))
    assert calibration_floor(big) > CALIBRATION_BOUND_S > calibration_floor(little)
    began = time.perf_counter()
    costs = measure_shapes([big, little])
    assert time.perf_counter() - began < 5  # the small shape timed, the huge one not
    assert costs[shape_key(huge)] == flops_cost(big)
    per_step = costs[shape_key(huge)].step.at(2)
    assert per_step == pytest.approx(2 * useful_flops(huge) / 5e10)  # its flops at 50 GFLOP/s a thread
    assert costs[shape_key(small)] != flops_cost(little)  # timed
