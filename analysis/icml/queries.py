"""Tidy frames behind ICML 2020's figures and claims (figs. 5-9), over finished, non-diverged runs only.

Each helper reads only the columns and steps it needs (push-down through ``Results.read``)
and returns one row per plotted point, with the configuration columns (p, multi, m, ...)
joined from the ``runs`` table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import Results
from analysis.registry import Needs
from analysis.tidy import asked, final_steps, with_runs
from spec_ray.storage import schema as S

# What the figures and claims need of the runs (``analysis.registry``).
TWO_LAYER = Needs(where=((S.DEPTH, (1,)),), words="two-layer runs (depth 1)")
"""Figures 5, 7 and 8 order a two-layer teacher's nodes by strength (polarity p)."""
POLARITY = Needs(where=TWO_LAYER.where, varies=(S.P,), words="two-layer runs over two or more p")
OVER_REALIZATION = Needs(where=TWO_LAYER.where, varies=(S.MULTI,), words="two-layer runs over two or more multi")
SAMPLES = Needs(varies=(S.N_TRAIN,), words="runs over two or more finite training-set sizes (sweeps/sample_size.py)")
AUGMENTED = Needs(varies=(S.AUGMENTATION,), words="runs with and without teacher-aware data (sweeps/teacher_aware.py)")
REAL = Needs(where=((S.DATASET, S.REAL_DATASETS),), varies=(S.MULTI,),
             words="real-image runs over two or more multi (sweeps/cifar.py)")  # fmt: skip
"""Figure 10: students over-realized on a pretrained teacher of real images."""

CONFIG = [S.P, S.MULTI, S.M]

EARLY_EPOCHS = 5  # figure 7's dotted line: success after 5 epochs


def early_epoch(res: Results) -> float | None:
    """Figure 7's early epoch (5), when every done run is longer than that."""
    return float(EARLY_EPOCHS) if (res.done[S.EPOCHS] > EARLY_EPOCHS).all() else None


def success_rate(res: Results, layer: int = 1) -> pd.DataFrame:
    """Success rate over seeds per (p, multi, m, node, epoch) at the early and final epochs.

    Columns: p, multi, m, node, epoch, success_rate, seeds.
    """
    steps = final_steps(res)
    early = early_epoch(res)
    if early is not None:
        steps |= set((res.done[S.STEPS_PER_EPOCH] * early).astype(int))
    rows = res.read(S.TEACHER_NODES, [S.RUN_ID, S.STEP, S.EPOCH, S.NODE, S.SUCCESS], res.done[S.RUN_ID], steps, layer)
    rows = with_runs(rows, res, CONFIG + ["final_step", S.STEPS_PER_EPOCH])
    wanted = (rows[S.STEP] == rows["final_step"]) | (
        (early is not None) & (rows[S.STEP] == rows[S.STEPS_PER_EPOCH] * (early or 0))
    )
    rows = rows[wanted]
    out = (
        rows.groupby(CONFIG + [S.NODE, S.EPOCH], as_index=False)
        .agg(success_rate=(S.SUCCESS, "mean"), seeds=(S.RUN_ID, "nunique"))
        .sort_values(CONFIG + [S.EPOCH, S.NODE])
    )
    return out.reset_index(drop=True)


def seed_success(res: Results, layer: int = 1) -> pd.DataFrame:
    """Fraction of teacher nodes recovered per run at its final step (claim 2's paired unit).

    Columns: p, multi, m, seed, success.
    """
    rows = res.read(S.TEACHER_NODES, [S.RUN_ID, S.STEP, S.SUCCESS], res.done[S.RUN_ID], final_steps(res), layer)
    rows = with_runs(rows, res, CONFIG + [S.SEED, "final_step"])
    rows = rows[rows[S.STEP] == rows["final_step"]]
    out = rows.groupby(CONFIG + [S.SEED], as_index=False).agg(success=(S.SUCCESS, "mean"))
    return out.sort_values(CONFIG + [S.SEED]).reset_index(drop=True)


def dynamics_multi(res: Results) -> int:
    """Figure 8's over-realization: 5 when present, else the largest."""
    values = sorted(res.done[S.MULTI].unique())
    return 5 if 5 in values else int(values[-1])


def dynamics(res: Results, multi: int | None = None, layer: int = 1) -> pd.DataFrame:
    """Mean best correlation over seeds per (p, m, node, step) for one over-realization.

    Columns: p, m, multi, node, step, best_corr, seeds.
    """
    multi = dynamics_multi(res) if multi is None else multi
    ids = res.done.loc[res.done[S.MULTI] == multi, S.RUN_ID]
    rows = res.read(S.TEACHER_NODES, [S.RUN_ID, S.STEP, S.NODE, S.BEST_CORR], ids, layer=layer)
    rows = with_runs(rows, res, CONFIG)
    out = rows.groupby(CONFIG + [S.NODE, S.STEP], as_index=False).agg(
        best_corr=(S.BEST_CORR, "mean"), seeds=(S.RUN_ID, "nunique")
    )
    return out.sort_values(CONFIG + [S.NODE, S.STEP]).reset_index(drop=True)


def first_success(res: Results, layer: int = 1) -> pd.DataFrame:
    """First checkpoint step at which each teacher node of each run was recovered (NaN: never),
    and whether it is recovered at the run's final step.

    Columns: run_id, node, first_step, recovered, p, multi, m.
    """
    rows = res.read(S.TEACHER_NODES, [S.RUN_ID, S.STEP, S.NODE, S.SUCCESS], res.done[S.RUN_ID], layer=layer)
    rows = with_runs(rows, res, ["final_step"])
    nodes = rows[[S.RUN_ID, S.NODE]].drop_duplicates()
    first = rows[rows[S.SUCCESS]].groupby([S.RUN_ID, S.NODE], as_index=False)[S.STEP].min()
    final = rows[rows[S.STEP] == rows["final_step"]][[S.RUN_ID, S.NODE, S.SUCCESS]]
    out = nodes.merge(first, on=[S.RUN_ID, S.NODE], how="left").rename(columns={S.STEP: "first_step"})
    out = out.merge(final.rename(columns={S.SUCCESS: "recovered"}), on=[S.RUN_ID, S.NODE], how="left")
    out["recovered"] = out["recovered"].fillna(False).astype(bool)
    return with_runs(out, res, CONFIG)


def lshape(res: Results, layer: int = 1) -> pd.DataFrame:
    """Every student node at the final step: specialization and fan-out norm (figure 5).

    Specialization is the training-set best correlation (the paper's figure 5) where it
    was taken, else the evaluation-set one. Columns: p, multi, m, seed, run_id, node,
    specialization, fanout_norm, on_train.
    """
    cols = [S.RUN_ID, S.STEP, S.NODE, S.BEST_CORR, S.BEST_CORR_TRAIN, S.FANOUT_NORM]
    rows = res.read(S.STUDENT_NODES, cols, res.done[S.RUN_ID], final_steps(res), layer)
    rows = with_runs(rows, res, CONFIG + [S.SEED, "final_step"])
    rows = rows[rows[S.STEP] == rows["final_step"]]
    rows["on_train"] = rows[S.BEST_CORR_TRAIN].notna()
    rows["specialization"] = rows[S.BEST_CORR_TRAIN].where(rows["on_train"], rows[S.BEST_CORR])
    return rows[CONFIG + [S.SEED, S.RUN_ID, S.NODE, "specialization", S.FANOUT_NORM, "on_train"]].reset_index(drop=True)


def loss_curves(res: Results) -> pd.DataFrame:
    """log10 eval loss over seeds per (p, multi, m, epoch) at whole epochs: mean and std.

    Columns: p, multi, m, loss, epoch, log10_eval_loss, std, seeds (loss: ``train.loss``,
    whose unit is ``spec_ray.engine.kinds.losses.UNITS[loss]``).
    """
    rows = res.read(S.SCALARS, [S.RUN_ID, S.EPOCH, S.EVAL_LOSS], res.done[S.RUN_ID])
    rows = rows[np.isclose(rows[S.EPOCH] % 1, 0)]
    rows = with_runs(rows, res, CONFIG + [S.LOSS])
    rows["log10_eval_loss"] = np.log10(rows[S.EVAL_LOSS].clip(lower=1e-300))
    out = rows.groupby(CONFIG + [S.LOSS, S.EPOCH], as_index=False).agg(
        log10_eval_loss=("log10_eval_loss", "mean"), std=("log10_eval_loss", "std"), seeds=(S.RUN_ID, "nunique")
    )
    return out.sort_values(CONFIG + [S.LOSS, S.EPOCH]).reset_index(drop=True)


def final_scalars(res: Results) -> pd.DataFrame:
    """Each done run's final train and eval loss with its configuration."""
    rows = res.read(S.SCALARS, [S.RUN_ID, S.STEP, S.TRAIN_LOSS, S.EVAL_LOSS], res.done[S.RUN_ID], final_steps(res))
    rows = with_runs(rows, res, CONFIG + ["final_step", S.N_TRAIN, S.LOSS, S.AUGMENTATION, S.DEPTH, S.SEED])
    return rows[rows[S.STEP] == rows["final_step"]].reset_index(drop=True)


def sample_size(res: Results) -> pd.DataFrame:
    """rho_mean per hidden layer and eval loss vs sample size, per loss (figure 6).

    Uses plain-data runs (augmentation none) when the experiment has any.
    Columns: n_train, loss, layer, rho_mean, eval_loss, seeds (layer-level rows).
    """
    plain = res.done[~asked(res.done[S.AUGMENTATION], "present").astype(bool)]
    ids = (plain if not plain.empty else res.done)[S.RUN_ID]
    rows = res.read(S.TEACHER_NODES, [S.RUN_ID, S.STEP, S.LAYER, S.BEST_CORR], ids, final_steps(res))
    rows = with_runs(rows, res, ["final_step", S.N_TRAIN, S.LOSS])
    rows = rows[rows[S.STEP] == rows["final_step"]]
    per_run = rows.groupby([S.RUN_ID, S.N_TRAIN, S.LOSS, S.LAYER], as_index=False)[S.BEST_CORR].mean()
    per_run = per_run.merge(final_scalars(res)[[S.RUN_ID, S.EVAL_LOSS]], on=S.RUN_ID)
    out = per_run.groupby([S.N_TRAIN, S.LOSS, S.LAYER], as_index=False).agg(
        rho_mean=(S.BEST_CORR, "mean"), eval_loss=(S.EVAL_LOSS, "mean"), seeds=(S.RUN_ID, "nunique")
    )
    return out.sort_values([S.LOSS, S.LAYER, S.N_TRAIN]).reset_index(drop=True)


def teacher_aware(res: Results) -> pd.DataFrame:
    """Final train and eval MSE vs number of samples, per augmentation (figure 9).

    Columns: n_train, augmentation, loss, set (train | eval), mse, std, seeds.
    """
    rows = final_scalars(res)
    long = rows.melt(
        id_vars=[S.RUN_ID, S.N_TRAIN, S.AUGMENTATION, S.LOSS], value_vars=[S.TRAIN_LOSS, S.EVAL_LOSS], var_name="set"
    )
    long["set"] = long["set"].map({S.TRAIN_LOSS: "train", S.EVAL_LOSS: "eval"})
    out = long.groupby([S.N_TRAIN, S.AUGMENTATION, S.LOSS, "set"], as_index=False).agg(
        mse=("value", "mean"), std=("value", "std"), seeds=(S.RUN_ID, "nunique")
    )
    return out.sort_values([S.AUGMENTATION, "set", S.N_TRAIN]).reset_index(drop=True)


def real_data(res: Results) -> pd.DataFrame:
    """Figure 10: rho_mean of every hidden layer and test accuracy over epochs, per dataset and multi,
    mean over seeds at whole epochs. Columns: dataset, multi, epoch, layer, rho_mean, eval_accuracy, seeds."""
    ids = res.done[S.RUN_ID]
    nodes = res.read(S.TEACHER_NODES, [S.RUN_ID, S.EPOCH, S.LAYER, S.BEST_CORR], ids)
    nodes = nodes[np.isclose(nodes[S.EPOCH] % 1, 0)]
    per_run = nodes.groupby([S.RUN_ID, S.EPOCH, S.LAYER], as_index=False)[S.BEST_CORR].mean()
    scalars = res.read(S.SCALARS, [S.RUN_ID, S.EPOCH, S.EVAL_ACCURACY], ids)
    per_run = per_run.merge(scalars, on=[S.RUN_ID, S.EPOCH])
    per_run = with_runs(per_run, res, [S.DATASET, S.MULTI])
    out = per_run.groupby([S.DATASET, S.MULTI, S.EPOCH, S.LAYER], as_index=False).agg(
        rho_mean=(S.BEST_CORR, "mean"), eval_accuracy=(S.EVAL_ACCURACY, "mean"), seeds=(S.RUN_ID, "nunique")
    )
    return out.sort_values([S.DATASET, S.LAYER, S.MULTI, S.EPOCH]).reset_index(drop=True)


def real_data_seeds(res: Results) -> pd.DataFrame:
    """Claim 13: every run's last checkpoint, per hidden layer: rho_mean and test accuracy. Columns: dataset,
    multi, seed, layer, rho_mean, eval_accuracy."""
    runs = res.done
    ids = runs[S.RUN_ID]
    last = dict(zip(runs[S.RUN_ID], runs["final_step"]))
    nodes = res.read(S.TEACHER_NODES, [S.RUN_ID, S.STEP, S.LAYER, S.BEST_CORR], ids)
    nodes = nodes[nodes[S.STEP] == nodes[S.RUN_ID].map(last)]
    per_run = (
        nodes.groupby([S.RUN_ID, S.LAYER], as_index=False)[S.BEST_CORR].mean().rename(columns={S.BEST_CORR: "rho_mean"})
    )
    scalars = res.read(S.SCALARS, [S.RUN_ID, S.STEP, S.EVAL_ACCURACY], ids)
    scalars = scalars[scalars[S.STEP] == scalars[S.RUN_ID].map(last)].drop(columns=S.STEP)
    per_run = with_runs(per_run.merge(scalars, on=S.RUN_ID), res, [S.DATASET, S.MULTI, S.SEED])
    return (
        per_run[[S.DATASET, S.MULTI, S.SEED, S.LAYER, "rho_mean", S.EVAL_ACCURACY]]
        .sort_values([S.DATASET, S.MULTI, S.SEED, S.LAYER])
        .reset_index(drop=True)
    )
