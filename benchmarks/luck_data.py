"""A synthetic Luck Matters experiment of the reproduction's shape, written through the trainer's own writer.

The 40 runs of ``sweeps/luck_matters.py --net fc-small fc-large`` (FC small 10-15-20-25 and large
50-75-100-125, student 10x; finite and infinite data; BN and not; 5 seeds; 40 epochs), cut into the
sweep's own packs (of one net, data and BN each), at the sweep's own checkpoints. Each pack is written
by ``storage.writer.PackWriter`` block by block with its ledger and its winner ranks, and listed in
sweep.json as a launch lists them. The metrics are drawn, not trained: each teacher node's final
winner, a student picked at random, rises from its random init correlation to about 0.95 along a
logistic in log-steps, the other students drift.

Axes: R runs of a pack, m teacher nodes, n student nodes.
"""

from __future__ import annotations

import torch

from spec_ray.engine.measure.metrics import Checkpoint, ranks
from spec_ray.engine.measure.modulation import Modulation
from spec_ray.engine.training.pack import Pack, checkpoint_steps
from spec_ray.orchestration.plan import SWEEP_VERSION
from spec_ray.storage import schema as S
from spec_ray.storage.manifest import LEDGERS, packs_to_dict, write_sweep
from spec_ray.storage.records import runs_table
from spec_ray.storage.traces import BLOCK_EPOCHS, TraceStore, blocks
from spec_ray.storage.writer import PackWriter


def luck_packs() -> list[Pack]:
    """The reproduction's 40 runs in the sweep's packs, in pairs that differ in every factor (net, data and
    BN), so that every prefix of whole pairs holds every cell the report draws and judges."""
    from sweeps.luck_matters import EXPERIMENT

    exp = EXPERIMENT.select("net", ["fc-small", "fc-large"]).select("data", ["finite", "infinite"])
    packs = exp.select("dataset", ["gaussian"]).packs()

    def cell(p: Pack) -> tuple:
        return p.spec.teacher.widths[0] == 50, p.spec.data.n_train is None, p.spec.student.student_bn != "none"

    small = {cell(p)[1:]: p for p in packs if not cell(p)[0]}
    pairs = [(p, small[tuple(not f for f in cell(p)[1:])]) for p in packs if cell(p)[0]]
    return [p for pair in pairs for p in pair]


def _checkpoints(pack: Pack, seed: int):
    """The pack's drawn checkpoints, in step order."""
    gen = torch.Generator().manual_seed(seed)
    spec, runs = pack.spec, pack.size
    widths = list(zip(spec.teacher.widths, spec.student_widths))
    init = [torch.rand(runs, m, n, generator=gen) * 0.6 - 0.3 for m, n in widths]  # [(R, m, n)]
    winners = [torch.randint(0, n, (runs, m, 1), generator=gen) for m, n in widths]  # [(R, m, 1)]
    steps = checkpoint_steps(spec)
    last = torch.tensor(float(steps[-1])).log1p()
    for step in steps:
        rise = torch.sigmoid(8 * (torch.tensor(float(step)).log1p() / last - 0.5))  # 0 -> 1 over the run
        corr = []
        for start, won in zip(init, winners):
            drift = start + 0.1 * rise * torch.randn(start.shape, generator=gen)  # (R, m, n)
            target = start.gather(2, won) + rise * (0.95 - start.gather(2, won))  # (R, m, 1)
            corr.append(drift.scatter(2, won, target).clamp(-1, 1))
        ends = spec.checkpoint.keep_modulation and step in (0, spec.total_steps)
        yield Checkpoint(
            step=step,
            eval_loss=torch.rand(runs, generator=gen),  # (R,)
            train_loss=None,
            grad_norm=None,
            eval_corr=corr,  # [(R, m, n)]
            train_corr=None,
            teacher_fanout=[torch.rand(runs, m, generator=gen) for m, _ in widths],  # [(R, m)]
            student_fanout=[torch.rand(runs, n, generator=gen) for _, n in widths],  # [(R, n)]
            student_in_norm=[torch.rand(runs, n, generator=gen) for _, n in widths],  # [(R, n)]
            diverged_step=torch.full((runs,), -1, dtype=torch.int64),  # (R,)
            eval_accuracy=None,
            init_rank=[ranks(a, b) for a, b in zip(init, corr)],  # [(R, m)]
            modulation=[Modulation(c.transpose(1, 2), c.transpose(1, 2)) for c in corr] if ends else None,
        )


def write_pack(store: TraceStore, pack: Pack, seed: int = 0) -> None:
    """One pack's files, as ``runner.run_pack`` writes them while it trains."""
    writer = PackWriter(store, pack)
    alive = torch.full((pack.size,), -1).numpy()
    writer.runs(runs_table(pack, store.experiment, S.STATUS_RUNNING, 0, alive, 0.0, "cpu"))
    drawn = _checkpoints(pack, seed)
    for lo, hi in blocks(pack.spec, BLOCK_EPOCHS):
        for _ in [s for s in checkpoint_steps(pack.spec) if lo <= s <= hi]:
            writer.add(next(drawn))
        writer.flush(lo, hi)
    writer.summarize()
    total = pack.spec.total_steps
    writer.runs(runs_table(pack, store.experiment, S.STATUS_DONE, total, alive, 1.0, "cpu"))


def list_packs(store: TraceStore, packs: list[Pack]) -> None:
    """sweep.json naming ``packs``, as a launch commits it."""
    meta = {"version": SWEEP_VERSION, "name": store.experiment, LEDGERS: 1, "block_epochs": BLOCK_EPOCHS,
            "sweep": packs_to_dict(store.experiment, packs)}  # fmt: skip
    write_sweep(store, meta)
