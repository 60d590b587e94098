"""Luck Matters' FC recipe, re-implemented apart from spec-ray, and a fidelity check against the sweep.

Written from facebookresearch/luckmatters ``luckmatter/recon_multilayer.py`` (``init_dataset``,
``optimize``, the argparse defaults), ``model_gen.py`` (``Model``, ``init_w``, ``normalize_layer``)
and ``theory_utils.init_separate_w``: torch.nn modules, torch.optim.SGD, nn.MSELoss, one run at a
time with its own random streams. It imports nothing from ``spec_ray``, so agreement with the
sweep is evidence about the science, not about shared code.

Axes: N samples, B batch, d input, m_l teacher width, n_l student width, c outputs.

The check: per (teacher widths, student BN) cell and hidden layer, the rho-bar after E epochs and
the mean rank at initialization of the winners after E epochs (Luck Matters' luck; the final
winners when E is the last epoch), each seed of the sweep
(``sweeps/luck_matters.py --data finite``) against the same seed count of this recipe. They share
no random numbers, so they agree in distribution only: z = diff / sqrt(var_a / n + var_b / n) per
quantity, agreement when every |z| <= 3 and the pooled z is within +-3. ``--control unnormalized``
drops the teacher's row normalization from the recipe (as if ``teacher.normalize()`` were
forgotten), a mistake the check must catch.

    python benchmarks/luck_recipe.py --seeds 5 --epochs 10          # about 6 minutes on 2 cores
    python benchmarks/luck_recipe.py --results results/repro/lm-fc-small --at-epoch 20   # reuse a sweep
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CHOICES = [-0.5, -0.25, 0, 0.25, 0.5]  # init_w
Z_LIMIT = 3.0


class Recipe(NamedTuple):
    """One run of ``recon_multilayer.py`` on Gaussian data (its defaults but what a sweep's runs table sets)."""

    ks: tuple[int, ...] = (10, 15, 20, 25)
    node_multi: int = 10
    data_d: int = 20
    data_std: float = 10.0
    d_output: int = 100
    n_train: int = 100_000
    n_eval: int = 1024
    batchsize: int = 64
    lr: float = 0.01
    num_epoch: int = 40
    bn: bool = False
    control: str = "none"


class Model(nn.Module):
    """``model_gen.Model``: Linear, ReLU, then BN (not affine) when asked; ``hs`` are the blocks' outputs."""

    def __init__(self, d: int, ks: tuple[int, ...], d_output: int, multi: int = 1, bn: bool = False) -> None:
        super().__init__()
        sizes = [d, *(k * multi for k in ks)]
        self.ws_linear = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.ws_bn = nn.ModuleList(nn.BatchNorm1d(k, affine=False) for k in sizes[1:]) if bn else None
        self.final_w = nn.Linear(sizes[-1], d_output)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        hs, h = [], x  # (B, d)
        for i, w in enumerate(self.ws_linear):
            h = torch.relu(w(h))  # (B, n_l)
            if self.ws_bn is not None:
                h = self.ws_bn[i](h)
            hs.append(h)
        return hs, self.final_w(h)  # (B, c)


def init_teacher(teacher: Model, rng: random.Random, gen: torch.Generator, normalize: bool) -> None:
    """``init_w`` (distinct rows from CHOICES, biases U[-0.5, 0.5]) then ``normalize_layer`` on every layer."""
    for layer in [*teacher.ws_linear, teacher.final_w]:
        rows, cols = layer.weight.shape
        seen, w = {tuple([0] * cols)}, np.zeros((rows, cols))
        for i in range(rows):
            while (code := tuple(rng.sample(CHOICES, 1)[0] for _ in range(cols))) in seen:
                pass
            seen.add(code)
            w[i] = code
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.uniform_(-0.5, 0.5, generator=gen)
            if normalize:
                norm = layer.weight.norm(dim=1) + 1e-5  # (rows,)
                layer.weight /= norm[:, None]
                layer.bias /= norm


def correlations(t: list[torch.Tensor], s: list[torch.Tensor]) -> list[torch.Tensor]:
    """``utils_corrs.act2corrMat`` per layer: (N, m_l), (N, n_l) -> (m_l, n_l)."""
    out = []
    for a, b in zip(t, s):
        a, b = a - a.mean(0), b - b.mean(0)
        out.append((a.T @ b) * a.square().sum(0).add(1e-10).rsqrt()[:, None] * b.square().sum(0).add(1e-10).rsqrt())
    return out


def train(job: tuple[Recipe, int]) -> list[dict]:
    """One seed: per hidden layer, rho-bar at the end and the final winners' mean rank at init."""
    recipe, seed = job
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(seed)
    teacher = Model(recipe.data_d, recipe.ks, recipe.d_output)
    init_teacher(teacher, random.Random(seed), gen, normalize=recipe.control != "unnormalized")
    torch.manual_seed(seed + 7919)
    student = Model(recipe.data_d, recipe.ks, recipe.d_output, recipe.node_multi, recipe.bn)  # reset_parameters()
    x_train = torch.randn(recipe.n_train, recipe.data_d, generator=gen) * recipe.data_std  # (N, d)
    x_eval = torch.randn(recipe.n_eval, recipe.data_d, generator=gen) * recipe.data_std  # (Ne, d)
    teacher.eval()
    with torch.no_grad():
        hs_t, _ = teacher(x_eval)

    def corrs() -> list[torch.Tensor]:
        student.eval()
        with torch.no_grad():
            return correlations(hs_t, student(x_eval)[0])

    init = corrs()
    opt = torch.optim.SGD(student.parameters(), lr=recipe.lr)
    loss = nn.MSELoss()
    for _ in range(recipe.num_epoch):
        student.train()
        for sel in torch.randperm(recipe.n_train, generator=gen).split(recipe.batchsize):  # DataLoader(shuffle)
            x = x_train[sel]  # (B, d)
            with torch.no_grad():
                target = teacher(x)[1]  # (B, c)
            opt.zero_grad()
            loss(student(x)[1], target).backward()
            opt.step()
    rows = []
    for layer, (start, end) in enumerate(zip(init, corrs()), start=1):
        winner = end.argmax(dim=1, keepdim=True)  # (m_l, 1)
        above = (start > start.gather(1, winner)).sum(1).double() / (start.shape[1] - 1)  # (m_l,)
        rows.append({"layer": layer, "seed": seed, "rho_end": float(end.amax(1).mean()),
                     "rank_init": float(above.mean())})  # fmt: skip
    return rows


def sweep_runs(folder: str) -> pd.DataFrame:
    """The done runs of a sweep with the fields the recipe needs."""
    runs = pq.read_table(f"{folder}/runs").to_pandas()
    return runs[(runs["status"] == "done") & ~runs["diverged"].astype(bool) & (runs["arch"] == "mlp")]


def recipe_of(run: pd.Series, control: str) -> Recipe:
    return Recipe(tuple(int(w) for w in str(run["widths"]).split("_")), int(run["multi"]), int(run["d"]),
                  float(run["sigma"]), int(run["c"]), int(run["n_train"]), int(run["n_eval"]), int(run["batch"]),
                  float(run["lr"]), int(run["epochs"]), run["student_bn"] != "none", control)  # fmt: skip


def ours(folder: str, epoch: int) -> pd.DataFrame:
    """The sweep's per-seed numbers at ``epoch`` from its Parquet tables, taken here from the stored
    correlations (not through spec-ray's analysis): rho-bar, and the mean rank at init of each
    teacher node's best student at ``epoch``. Columns: run_id, layer, rho_end, rank_init."""
    runs = pq.read_table(f"{folder}/runs", columns=["run_id", "steps_per_epoch"]).to_pandas()
    at = {r: int(n) * epoch for r, n in zip(runs["run_id"], runs["steps_per_epoch"])}
    data = ds.dataset(f"{folder}/corr_matrices", format="parquet", partitioning="hive")
    steps = pa.array(sorted({0, *at.values()}), pa.int64())
    table = data.to_table(columns=["run_id", "step", "layer", "teachers", "students", "corr"],
                          filter=pc.field("step").isin(steps))  # fmt: skip
    # One row a run, checkpoint and layer; corr is its teacher x student matrix, row-major (docs/schema.md).
    matrices = {}
    for run, step, layer, m, n, corr in zip(*(table.column(c).to_pylist() for c in table.column_names)):
        matrices[run, step, layer] = np.asarray(corr, dtype=np.float32).reshape(m, n)  # (m_l, n_l)
    rows = []
    for (run, step, layer), now in sorted(matrices.items()):
        if step != at[run] or step == 0:
            continue
        init = matrices[run, 0, layer]  # (m_l, n_l)
        winner = now.argmax(axis=1)  # (m_l,)
        lucky = init[np.arange(len(winner)), winner][:, None]  # (m_l, 1)
        rank = (init > lucky).sum(axis=1) / (now.shape[1] - 1)  # (m_l,)
        rows.append({"run_id": run, "layer": layer, "rho_end": float(now.max(axis=1).mean()),
                     "rank_init": float(rank.mean())})  # fmt: skip
    return pd.DataFrame(rows)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per cell, layer and quantity: both means over seeds, the difference and its z; a side with a
    non-finite value (a diverged run) disagrees outright (z = inf) and is counted in ``nonfinite``."""
    rows = []
    for (cell, layer), mine in a.groupby(["cell", "layer"]):
        theirs = b[(b["cell"] == cell) & (b["layer"] == layer)]
        for q in ("rho_end", "rank_init"):
            x, y = mine[q].to_numpy(), theirs[q].to_numpy()
            bad = int((~np.isfinite(x)).sum() + (~np.isfinite(y)).sum())
            diff = x.mean() - y.mean()
            se = math.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
            z = math.inf if bad else 0.0 if diff == 0 else (diff / se if se > 0 else math.inf)
            rows.append({"cell": cell, "layer": layer, "quantity": q, "spec_ray": x.mean(), "recipe": y.mean(),
                         "diff": diff, "z": z, "nonfinite": bad})  # fmt: skip
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=None, help="a finished Luck Matters sweep folder (skips the sweep)")
    parser.add_argument("--net", default="fc-small", help="the sweep's --net (fc-small, fc-large)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N for both")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of one pass over 100,000 samples")
    parser.add_argument("--at-epoch", type=int, default=None,
                        help="with --results: compare at this epoch (default: the sweep's last)")  # fmt: skip
    parser.add_argument("--control", default="none", choices=["none", "unnormalized"],
                        help="a recipe that must disagree")  # fmt: skip
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the recipe's runs")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.results
        if folder is None:
            folder = f"{tmp}/lm"
            cmd = [sys.executable, str(ROOT / "sweeps" / "luck_matters.py"), "--net", args.net, "--data", "finite",
                   "--seeds", str(args.seeds), "--epochs", str(args.epochs),
                   "--storage", tmp, "--name", "lm"]  # fmt: skip
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        runs = sweep_runs(folder)
        epoch = args.at_epoch or int(runs["epochs"].max())
        mine = ours(folder, epoch).merge(runs[["run_id", "seed"]], on="run_id")
    runs = runs[runs["n_train"].notna()]  # the recipe trains on the fixed set (the authors' default)
    runs = runs.assign(cell=runs["widths"].str.replace("_", "-") + "/bn=" + runs["student_bn"])
    mine = mine.merge(runs[["run_id", "cell"]], on="run_id")
    sweep_s = time.perf_counter() - began
    jobs = [(recipe_of(r, args.control)._replace(num_epoch=epoch), int(r["seed"])) for _, r in runs.iterrows()]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(train, jobs))
    theirs = pd.DataFrame([{**row, "cell": cell} for cell, rows in zip(runs["cell"], results) for row in rows])
    table = compare(mine, theirs)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    pooled = float(table["z"].sum() / math.sqrt(len(table)))
    worst = float(table["z"].abs().max())
    agree = worst <= Z_LIMIT and abs(pooled) <= Z_LIMIT
    print(f"sweep {sweep_s:.0f} s, recipe {time.perf_counter() - began - sweep_s:.0f} s ({len(jobs)} runs)")
    print(f"agree={'yes' if agree else 'no'} max_abs_z={worst:.2f} pooled_z={pooled:+.2f} "
          f"cells={table['cell'].nunique()} seeds={runs.groupby('cell').size().min()} "
          f"control={args.control}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
