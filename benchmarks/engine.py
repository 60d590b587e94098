"""Packed vs reference trainer, side by side in one process, on the two-layer protocol.

d=100, m=20, c=50, batch 16, float32, for multi in {1, 2, 5, 10}. The packed trainer
trains 32 runs a pack; two compositions are timed:
  * ``shared``: 8 seeds x p in {0, 1, 2, 3}, as the sweep layer packs a polarity sweep
    (runs of one seed share minibatches, so layer 1 is one wider matmul);
  * ``distinct``: 32 seeds, nothing shared (a plain bmm over runs).
Only SGD steps are timed, against this machine's true fp32 peak (``benchmarks/peak.py``: the
best of torch's and numpy's BLAS, with the kernel each ran). One checkpoint's metrics (eval set only, and with the
training-set pass) and one epoch of the shared pack are shown in seconds beside them.
A second section times figure 6's 4-layer setting (MSE and CE). The two-layer result is
``speedup_vs_reference=<geometric mean over multi of shared/reference>``. Then the shared pack
with reduced-precision matmuls (``train.matmul_precision``: bf16 on CPU, tf32 on CUDA) beside
ieee: ``bf16_speedup=<geometric mean of bf16/ieee>``. A third section times
the general step (autograd over ``parts``, packed optimizers): Luck Matters' small FC with
student BN, a small conv stack, and SGD with momentum; its last line is ``bn_speedup=<packed/reference
for the BN MLP>``. The last section times Luck Matters' networks at their size, a pack of 5
seeds as its sweep packs them, against the true peak: ``large_fc_bn_vs_plain=`` (one large-FC step
with BN over one without, a time ratio), ``large_fc_peak_share=`` (the large FC with BN, SGD flops
over the peak) and ``cnn_narrow_peak_share=``, the script's last three lines. Before them, one
checkpoint of each network as its sweep keeps it (metrics, rows with every correlation, the Parquet
writes), and ``luck_checkpoint_share=``: the largest share of a run's time its checkpoints
take at the sweep's schedule.

    python benchmarks/engine.py            # about 3 minutes on a 2-core CPU
    python benchmarks/engine.py --quick    # under 60 s
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/analysis.py would shadow the analysis package: the root goes first.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from benchmarks import peak as peak_of  # noqa: E402
from spec_ray.engine.inputs import construct  # noqa: E402
from spec_ray.engine.measure import metrics  # noqa: E402
from spec_ray.engine.nets import arch  # noqa: E402
from spec_ray.engine.reference import TorchNet, build_problem, optimizer, train_steps  # noqa: E402
from spec_ray.engine.specs.protocols import DEEP, LUCK_CNN, LUCK_FC_LARGE  # noqa: E402
from spec_ray.engine.specs.spec import NO_BF16, RunSpec, bf16_applies  # noqa: E402
from spec_ray.engine.training.pack import Pack, checkpoint_steps  # noqa: E402
from spec_ray.engine.training.trainer import init_state, prepare, train_until  # noqa: E402
from spec_ray.orchestration import mkl_dispatch  # noqa: E402
from spec_ray.storage.records import checkpoint_tables  # noqa: E402
from spec_ray.storage.traces import TraceStore  # noqa: E402

MULTIS = (1, 2, 5, 10)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def flops_per_run_step(spec: RunSpec) -> float:
    """Multiply-adds x 2 of one SGD step: forward, output and hidden gradients, weight gradients."""
    b, d, c = spec.train.batch, spec.data.d, spec.teacher.c
    widths = (d, *spec.student_widths, c)
    fwd = sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1))
    back_input = sum(widths[i] * widths[i + 1] for i in range(1, len(widths) - 1))  # no dx at the input
    return 2.0 * b * (2 * fwd + back_input)


def shared_runs(spec: RunSpec) -> tuple[RunSpec, ...]:
    """8 seeds x p in {0, 1, 2, 3}: runs of one seed share minibatches, as a polarity sweep packs them."""
    return tuple(spec.replace(seed=s, **{"teacher.p": p}) for s in range(1, 9) for p in (0.0, 1.0, 2.0, 3.0))


def protocol(multi: int) -> RunSpec:
    return RunSpec().replace(**{"student.multi": multi, "train.dtype": "float32"})


def time_reference(spec: RunSpec, steps: int, device: str) -> float:
    """Reference steps per second (one run, autograd + torch.optim.SGD)."""
    problem = build_problem(spec, device)
    net = TorchNet(construct.init_student(spec).to(problem.x_train.dtype, device), arch.student(spec))
    opt = optimizer(spec, net)
    diverged = train_steps(spec, net, opt, problem, 0, 50)  # warm-up
    _sync(device)
    t = time.perf_counter()
    diverged = max(diverged, train_steps(spec, net, opt, problem, 50, 50 + steps))
    _sync(device)
    if diverged >= 0:  # a diverged reference stops early and would time nothing
        raise SystemExit(f"the reference run diverged at step {diverged}: its timing would be meaningless")
    return steps / (time.perf_counter() - t)


def time_packed(pack: Pack, steps: int, metrics_too: bool = True, warmup: int = 64) -> tuple[float, float, float]:
    """Packed run-steps per second; seconds of one checkpoint without and with train-set metrics."""
    data = prepare(pack)
    state = train_until(pack, data, init_state(pack), warmup)
    dev = str(pack.device)
    _sync(dev)
    t = time.perf_counter()
    state = train_until(pack, data, state, warmup + steps)
    _sync(dev)
    rate = pack.size * steps / (time.perf_counter() - t)
    if not metrics_too:
        return rate, float("nan"), float("nan")
    seconds = []
    cache = metrics.prepare(pack, data)  # once per pack, as the runner does
    for at in (state, state._replace(step=0)):  # step 0 is on the train-metric schedule
        t = time.perf_counter()
        metrics.measure(pack, data, at, cache)
        _sync(dev)
        seconds.append(time.perf_counter() - t)
    return rate, seconds[0], seconds[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (under 60 s)")
    parser.add_argument("--steps", type=int, default=None, help="packed steps per measurement")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--multi", type=int, nargs="+", default=list(MULTIS), help="over-realizations to time")
    parser.add_argument("--no-deep", dest="deep", action="store_false", help="skip the 4-layer section")
    parser.add_argument("--no-parts", dest="parts", action="store_false", help="skip the BN / conv / momentum section")
    parser.add_argument("--no-precision", dest="precision", action="store_false", help="skip the bf16 / tf32 section")
    parser.add_argument("--no-luck", dest="luck", action="store_false", help="skip Luck Matters' large FC and CNN")
    parser.add_argument("--profile", type=int, default=None, metavar="MULTI",
                        help="only profile 256 steps of the shared pack at this multi (torch.profiler)")  # fmt: skip
    args = parser.parse_args()
    if args.profile:
        return profile_step(args.profile, args.device)
    packed_steps = args.steps or (300 if args.quick else 1500)
    ref_steps = max(20, packed_steps * 4 // 3 if args.quick else packed_steps * 2)
    dev = args.device
    sizes = (1024,) if args.steps and args.steps < 100 else (2048, 4096)
    measured = peak_of.measure(dev, sizes)
    peak = measured.gflops
    print("\n".join(measured.lines()) + f" (device {dev})")
    header = (
        f"{'multi':>5} {'reference':>11} {'distinct32':>11} {'shared32':>11} {'x distinct':>10} "
        f"{'x shared':>9} {'GFLOP/s':>8} {'% peak':>7} {'ckpt s':>7} {'+train s':>8} {'epoch s':>7}"
    )
    print("run-steps/s (float32, d=100, m=20, c=50, batch 16)")
    print(header)
    ratios = []
    for multi in args.multi:
        spec = protocol(multi)
        ref = time_reference(spec, ref_steps, dev)
        distinct = Pack(tuple(spec.replace(seed=s) for s in range(1, 33)), placement=dev)
        shared = Pack(shared_runs(spec), placement=dev)
        rate_distinct, _, _ = time_packed(distinct, packed_steps)
        rate_shared, ckpt, ckpt_train = time_packed(shared, packed_steps)
        gflops = rate_shared * flops_per_run_step(spec) / 1e9
        ratios.append(rate_shared / ref)
        print(
            f"{multi:>5} {ref:>11,.0f} {rate_distinct:>11,.0f} {rate_shared:>11,.0f} {rate_distinct / ref:>10.1f} "
            f"{rate_shared / ref:>9.1f} {gflops:>8.1f} {100 * gflops / peak:>6.1f}% {ckpt:>7.2f} {ckpt_train:>8.2f} "
            f"{shared.size * spec.train.iters_per_epoch / rate_shared:>7.2f}"
        )
    if args.deep:
        deep_section(packed_steps, ref_steps, dev, peak)
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"speedup_vs_reference={geo:.2f}")
    if args.precision:
        precision_section(args.multi, packed_steps, dev, peak)
    if args.parts:
        parts_section(packed_steps, ref_steps, dev, peak)
    if args.luck:
        luck_section(packed_steps, dev, peak, args.quick)


def profile_step(multi: int, dev: str) -> None:
    """Where the packed step's time goes: torch.profiler's table by op over 256 steps."""
    from torch.profiler import profile

    pack = Pack(shared_runs(protocol(multi)), placement=dev)
    data = prepare(pack)
    state = train_until(pack, data, init_state(pack), 64)  # warm-up
    with profile() as prof:
        train_until(pack, data, state, 64 + 256)
    threads = torch.get_num_threads()
    print(f"the fused step, multi {multi}, {pack.size} runs (8 seeds x 4 p), 256 steps, {threads} threads")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=16))


def precision_section(multis: list[int], packed_steps: int, dev: str, peak: float) -> None:
    """The shared two-layer pack with ieee matmuls and with the device's reduced precision (bf16 on
    CPU, tf32 on CUDA), alternated twice, the best of each kept: the VM's rate drifts within a run."""
    reduced = "tf32" if dev.startswith("cuda") else "bf16"
    if reduced == "bf16" and not bf16_applies():
        print(f"bf16_speedup=n/a ({NO_BF16.removeprefix('ieee on ')})")
        return
    print(f"matmul precision: shared pack of 32 runs, ieee vs {reduced}; run-steps/s (best of 2, alternated)")
    print(f"{'multi':>5} {'ieee':>11} {reduced:>11} {'x ' + reduced:>9} {'GFLOP/s ' + reduced:>13} {'% peak':>7}")
    ratios = []
    for multi in multis:
        best = {"ieee": 0.0, reduced: 0.0}
        for _ in range(2):
            for value in best:
                spec = protocol(multi).replace(**{"train.matmul_precision": value})
                pack = Pack(shared_runs(spec), placement=dev)
                best[value] = max(best[value], time_packed(pack, packed_steps, False)[0])
        ratios.append(best[reduced] / best["ieee"])
        gflops = best[reduced] * flops_per_run_step(protocol(multi)) / 1e9
        print(f"{multi:>5} {best['ieee']:>11,.0f} {best[reduced]:>11,.0f} {ratios[-1]:>9.2f} {gflops:>13.1f} "
              f"{100 * gflops / peak:>6.1f}%")  # fmt: skip
    print(f"{reduced}_speedup={math.exp(sum(math.log(r) for r in ratios) / len(ratios)):.2f}")


def deep_protocol(loss: str) -> RunSpec:
    """Figure 6's setting (``protocols.DEEP``): teacher 50-75-100-125, student 2x, d=20, c=100,
    batch 64, with its calibrated teacher (an uncalibrated one diverges under MSE in 6 steps)."""
    return DEEP.replace(**{"train.loss": loss, "train.dtype": "float32"})


def deep_section(packed_steps: int, ref_steps: int, dev: str, peak: float) -> None:
    """4 hidden layers: packed (32 runs = 16 seeds x 2 p) vs reference, per loss."""
    print("4-layer teacher 50-75-100-125, student 2x, d=20, c=100, batch 64, float32; run-steps/s")
    print(f"{'loss':>8} {'reference':>11} {'shared32':>11} {'x shared':>9} {'GFLOP/s':>8} {'% peak':>7}")
    for loss in ("mse_mean", "ce"):
        spec = deep_protocol(loss)
        ref = time_reference(spec, max(20, ref_steps // 4), dev)
        pack = Pack(tuple(spec.replace(seed=s, **{"teacher.p": p}) for s in range(1, 17) for p in (0.0, 1.0)), dev)
        rate, _, _ = time_packed(pack, max(20, packed_steps // 4))
        gflops = rate * flops_per_run_step(spec) / 1e9
        print(f"{loss:>8} {ref:>11,.0f} {rate:>11,.0f} {rate / ref:>9.1f} {gflops:>8.1f} {100 * gflops / peak:>6.1f}%")


def parts_specs() -> dict[str, tuple[RunSpec, int]]:
    """The general step's settings, each with its pack size (seeds x 2 p)."""
    base = {"train.dtype": "float32", "data.n_eval": 1024, "data.n_train": 10_000}
    luck_fc = DEEP.replace(**{**base, "teacher.widths": (10, 15, 20, 25), "student.multi": 10, "train.lr": 0.01,
                              "train.lr_schedule": (), "student.student_bn": "after_relu"})  # fmt: skip
    conv = DEEP.replace(**{**base, "model.arch": "conv", "model.image_size": 10, "data.d": 100,
                           "teacher.widths": (8, 8), "student.multi": 4, "teacher.calibrate": False, "train.lr": 0.01,
                           "train.lr_schedule": (), "student.student_bn": "after_relu"})  # fmt: skip
    momentum = protocol(5).replace(**{"train.momentum": 0.9, "train.lr": 0.002})
    return {"bn_mlp": (luck_fc, 32), "conv_bn": (conv, 8), "momentum": (momentum, 32)}


def parts_section(packed_steps: int, ref_steps: int, dev: str, peak: float) -> None:
    """The general step (autograd over packed parts, packed optimizers) vs the reference."""
    print("general step: BN MLP = Luck Matters' small FC 10-15-20-25, student 10x + BN after ReLU, d=20, c=100,")
    print("batch 64; conv_bn = 8-8 channels on 10x10, student 4x + BN; momentum = two-layer multi 5, momentum 0.9")
    print(f"{'setting':>9} {'runs':>5} {'reference':>11} {'packed':>11} {'x packed':>9} {'GFLOP/s':>8} {'% peak':>7}")
    ratios = {}
    for name, (spec, runs) in parts_specs().items():
        ref = time_reference(spec, max(20, ref_steps // 4), dev)
        pack = Pack(
            tuple(spec.replace(seed=s, **{"teacher.p": p}) for s in range(1, runs // 2 + 1) for p in (0.0, 1.0)), dev
        )
        rate, _, _ = time_packed(pack, max(20, packed_steps // 4), metrics_too=False)
        gflops = rate * 6 * spec.train.batch * sum(arch.student(spec).macs) / 1e9
        ratios[name] = rate / ref
        share = 100 * gflops / peak
        print(f"{name:>9} {runs:>5} {ref:>11,.0f} {rate:>11,.0f} {rate / ref:>9.1f} {gflops:>8.1f} {share:>6.1f}%")
    print(f"bn_speedup={ratios['bn_mlp']:.2f}")


def luck_specs(quick: bool) -> dict[str, RunSpec]:
    """Luck Matters' large FC (teacher 50-75-100-125, student 10x) without and with BN after ReLU, and
    cnn-narrow (teacher 8-8-8-8 channels on 16x16, student 80 channels, BN), as sweeps/luck_matters.py
    runs them; a smaller training set only shortens the setup (a step's cost does not depend on it)."""
    small = {"train.dtype": "float32", "data.n_train": 10_000 if quick else 100_000}
    large = LUCK_FC_LARGE.replace(**small)
    cnn = LUCK_CNN.replace(**small, **{"teacher.widths": (8, 8, 8, 8), "student.bn_affine": True,
                                       "student.student_bn": "after_relu"})  # fmt: skip
    return {"large_fc": large, "large_fc_bn": large.replace(**{"student.student_bn": "after_relu"}), "cnn_narrow": cnn}


def luck_section(packed_steps: int, dev: str, peak: float, quick: bool) -> None:
    """Luck Matters' large networks, a pack of 5 seeds each as its sweep packs them: SGD steps only."""
    print("Luck Matters at scale: large FC 50-75-100-125 x10 (no BN, BN after ReLU), cnn-narrow 8x4 channels x10 + BN;")
    print("a pack of 5 seeds, batch 64, float32, SGD steps only")
    print(f"{'setting':>12} {'runs':>5} {'run-steps/s':>12} {'s/step':>8} {'GFLOP/s':>8} {'% peak':>7}")
    step_s, share = {}, {}
    for name, spec in luck_specs(quick).items():
        pack = Pack(tuple(spec.replace(seed=s) for s in range(1, 6)), placement=dev)
        steps = max(10, packed_steps // (30 if spec.model.arch == "conv" else 10))
        rate, _, _ = time_packed(pack, steps, metrics_too=False, warmup=2)
        gflops = rate * 6 * spec.train.batch * sum(arch.student(spec).macs) / 1e9
        step_s[name], share[name] = pack.size / rate, gflops / peak
        print(
            f"{name:>12} {pack.size:>5} {rate:>12,.1f} {step_s[name]:>8.4f} {gflops:>8.1f} {100 * share[name]:>6.1f}%"
        )
    checkpoint_section(step_s, dev, quick)
    print(f"large_fc_bn_vs_plain={step_s['large_fc_bn'] / step_s['large_fc']:.2f}")
    print(f"large_fc_peak_share={share['large_fc_bn']:.3f}")
    print(f"cnn_narrow_peak_share={share['cnn_narrow']:.3f}")


def time_checkpoint(pack: Pack, steps: int = 3) -> tuple[dict[str, float], int]:
    """Seconds of one checkpoint after ``steps`` steps, as ``runner.run_pack`` makes it (the metrics,
    their rows, the Parquet files: the runner writes a block's rows at once, about the sum of these),
    and how many rows it wrote."""
    data = prepare(pack)
    state = train_until(pack, data, init_state(pack), steps)
    cache = metrics.prepare(pack, data)
    dev = str(pack.device)
    _sync(dev)
    clock = time.perf_counter()
    ckpt = metrics.measure(pack, data, state, cache)
    _sync(dev)
    seconds = {"metrics": time.perf_counter() - clock}
    clock = time.perf_counter()
    tables = checkpoint_tables(pack, ckpt)
    seconds["rows"], clock = time.perf_counter() - clock, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = TraceStore(tmp, "bench")
        for table, rows in tables.items():
            store.write(table, pack.pack_id, "block.parquet", rows)
    seconds["write"] = time.perf_counter() - clock
    return seconds, sum(rows.num_rows for rows in tables.values())


def checkpoint_section(step_s: dict[str, float], dev: str, quick: bool) -> None:
    """One checkpoint of each Luck network with what its sweep keeps, against a run's SGD at the
    sweep's schedule (the full 100,000 samples x 40 epochs, whatever ``quick`` trains on)."""
    print("one checkpoint as sweeps/luck_matters.py keeps it (every correlation), 5-seed pack;")
    print("share: the run's checkpoints over its SGD steps at the sweep's schedule")
    print(f"{'setting':>12} {'rows':>10} {'metrics s':>10} {'rows s':>7} {'write s':>8} {'ckpts':>6} {'share':>7}")
    shares = []
    for (name, spec), full in zip(luck_specs(quick).items(), luck_specs(False).values(), strict=True):
        keep = {"checkpoint.keep_correlations": True}  # modulation only for the small FC, as the sweep keeps it
        pack = Pack(tuple(spec.replace(seed=s, **keep) for s in range(1, 6)), placement=dev)
        seconds, rows = time_checkpoint(pack)
        each = sum(seconds.values())
        count = len(checkpoint_steps(full))
        shares.append(count * each / (full.total_steps * step_s[name]))
        print(
            f"{name:>12} {rows:>10,} {seconds['metrics']:>10.2f} {seconds['rows']:>7.2f}"
            f" {seconds['write']:>8.2f} {count:>6} {100 * shares[-1]:>6.2f}%"
        )
    print(f"luck_checkpoint_share={max(shares):.3f}")


if __name__ == "__main__":
    mkl_dispatch.reexec()  # time the kernels a sweep's workers run (MKL's vendor check answered on AMD)
    main()
