"""Tidy frames behind the paper's figures and claims, over finished, non-diverged runs only.

Each helper reads only the columns and steps it needs (push-down through ``Results.read``)
and returns one row per plotted point, with the configuration columns (p, multi, m, ...)
joined from the ``runs`` table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import AnalysisError, Results
from spec_ray.storage import schema as S

CONFIG = [S.P, S.MULTI, S.M]
EARLY_EPOCHS = 5  # figure 7's dotted line: success after 5 epochs


def with_runs(frame: pd.DataFrame, res: Results, cols: list[str]) -> pd.DataFrame:
    keep = [c for c in dict.fromkeys([S.RUN_ID, *cols]) if c in res.done.columns]
    return frame.merge(res.done[keep], on=S.RUN_ID, how="inner")


def final_steps(res: Results) -> set[int]:
    """The last step of every done run."""
    return set(res.done["final_step"].astype(int))


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
    whose unit is ``spec_ray.engine.losses.UNITS[loss]``).
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
    plain = res.done[res.done[S.AUGMENTATION] == "none"]
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


def winner_ranks(res: Results) -> pd.DataFrame:
    """Luck Matters' rank of the final winners (sec. 7, figs. 5, 17, 18), per run, layer and checkpoint.

    After training, each teacher node j has its most correlated student, the final winner k*. At
    every checkpoint, k*'s rank among all students by correlation with j (0 = first), divided by
    n - 1, so that it lies in [0, 1]; a finished run's is 0 at its last step by definition. Needs
    the ``correlations`` table (``checkpoint.keep_correlations``). Columns: run_id, layer, step,
    epoch, mean_rank, median_rank (over teacher nodes), teachers.
    """
    if not res.has(S.CORRELATIONS):
        raise AnalysisError("winner ranks need the correlations table: rerun with --keep-correlations true")
    cols = [S.RUN_ID, S.STEP, S.EPOCH, S.LAYER, S.NODE, S.STUDENT, S.CORR]
    rows = res.read(S.CORRELATIONS, cols, res.done[S.RUN_ID])
    rows = with_runs(rows, res, ["final_step"])
    last = rows[rows[S.STEP] == rows["final_step"]]
    key = [S.RUN_ID, S.LAYER, S.NODE]
    winners = last.loc[last.groupby(key)[S.CORR].idxmax(), key + [S.STUDENT]].rename(columns={S.STUDENT: "winner"})
    rows = rows.merge(winners, on=key)
    at = [S.RUN_ID, S.LAYER, S.NODE, S.STEP]
    winner_corr = rows[rows[S.STUDENT] == rows["winner"]].set_index(at)[S.CORR].rename("winner_corr")
    rows = rows.join(winner_corr, on=at)
    rows["above"] = rows[S.CORR] > rows["winner_corr"]
    per_node = rows.groupby(at + [S.EPOCH], as_index=False).agg(above=("above", "sum"), n=(S.STUDENT, "size"))
    per_node["rank"] = per_node["above"] / (per_node["n"] - 1).clip(lower=1)
    out = per_node.groupby([S.RUN_ID, S.LAYER, S.STEP, S.EPOCH], as_index=False).agg(
        mean_rank=("rank", "mean"), median_rank=("rank", "median"), teachers=(S.NODE, "nunique")
    )
    return out.sort_values([S.RUN_ID, S.LAYER, S.STEP]).reset_index(drop=True)


LUCK_CONFIG = ["net", S.STUDENT_BN, "data"]


def _luck_config(res: Results, frame: pd.DataFrame) -> pd.DataFrame:
    """Luck Matters' cells: net (arch and teacher widths), student BN, finite / infinite data."""
    runs = res.done[[S.RUN_ID, S.ARCH, S.WIDTHS, S.STUDENT_BN, S.N_TRAIN]].copy()
    runs["net"] = runs[S.ARCH].map({"mlp": "FC", "conv": "CNN"}) + " " + runs[S.WIDTHS].str.replace("_", "-")
    runs["data"] = np.where(runs[S.N_TRAIN].isna(), "infinite", "finite")
    return frame.merge(runs[[S.RUN_ID, *LUCK_CONFIG]], on=S.RUN_ID, how="inner")


def luck_per_run(res: Results) -> pd.DataFrame:
    """Per run, layer and epoch: rho-bar (mean over teacher nodes of best_corr), with the Luck
    Matters cell; read once per report (``res.memo``). Empty unless the runs keep their correlations
    (the Luck Matters sweep). Columns: run_id, layer, epoch, best_corr, net, student_bn, data."""
    if "luck_per_run" not in res.memo:
        keep = res.done.get(S.KEEP_CORRELATIONS)
        if keep is None or not keep.fillna(False).astype(bool).any():
            res.memo["luck_per_run"] = pd.DataFrame()
        else:
            rows = res.read(S.TEACHER_NODES, [S.RUN_ID, S.EPOCH, S.LAYER, S.BEST_CORR], res.done[S.RUN_ID])
            per_run = rows.groupby([S.RUN_ID, S.LAYER, S.EPOCH], as_index=False)[S.BEST_CORR].mean()
            res.memo["luck_per_run"] = _luck_config(res, per_run)
    return res.memo["luck_per_run"]


def _over_seeds(per_run: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """rho-bar's mean, min and max over seeds per ``keys``."""
    out = per_run.groupby(keys, as_index=False).agg(
        rho=(S.BEST_CORR, "mean"), rho_min=(S.BEST_CORR, "min"), rho_max=(S.BEST_CORR, "max"),
        seeds=(S.RUN_ID, "nunique"),
    )  # fmt: skip
    return out.sort_values(keys).reset_index(drop=True)


def luck_rho(res: Results) -> pd.DataFrame:
    """Luck Matters' rho-bar (fig. 5, 15, 19, 20) per cell, layer and epoch: mean, min and max over
    seeds. Columns: net, student_bn, data, layer, epoch, rho, rho_min, rho_max, seeds."""
    per_run = luck_per_run(res)
    return per_run if per_run.empty else _over_seeds(per_run, [*LUCK_CONFIG, S.LAYER, S.EPOCH])


def _over_layers(res: Results) -> pd.DataFrame:
    """Each run's rho-bar averaged over its layers, per epoch."""
    per_run = luck_per_run(res)
    return per_run.groupby([S.RUN_ID, *LUCK_CONFIG, S.EPOCH], as_index=False)[S.BEST_CORR].mean()


def luck_rank(res: Results) -> pd.DataFrame:
    """Luck Matters' mean and median rank of the final winners (figs. 5, 17, 18) per cell, layer and
    epoch: ``winner_ranks`` averaged over seeds, with the min/max of the mean rank. Empty without the
    correlations table. Columns: net, student_bn, data, layer, epoch, mean_rank, median_rank,
    mean_rank_min, mean_rank_max, seeds."""
    if not res.has(S.CORRELATIONS):
        return pd.DataFrame()
    ranks = _luck_config(res, winner_ranks(res))
    out = ranks.groupby([*LUCK_CONFIG, S.LAYER, S.EPOCH], as_index=False).agg(
        mean_rank=("mean_rank", "mean"), median_rank=("median_rank", "mean"),
        mean_rank_min=("mean_rank", "min"), mean_rank_max=("mean_rank", "max"), seeds=(S.RUN_ID, "nunique"),
    )  # fmt: skip
    return out.sort_values([*LUCK_CONFIG, S.LAYER, S.EPOCH]).reset_index(drop=True)


def in_norm_change(res: Results) -> pd.DataFrame:
    """Relative change of each student node's incoming weight norm from init to the end (LM sec. 6.1),
    median and max over nodes per student BN and layer. Columns: student_bn, layer, median_change,
    max_change, nodes."""
    if S.STUDENT_BN not in res.done:
        return pd.DataFrame()
    steps = {0, *final_steps(res)}
    rows = res.read(S.STUDENT_NODES, [S.RUN_ID, S.STEP, S.LAYER, S.NODE, S.IN_NORM], res.done[S.RUN_ID], steps)
    rows = with_runs(rows, res, ["final_step", S.STUDENT_BN])
    key = [S.RUN_ID, S.LAYER, S.NODE]
    start = rows[rows[S.STEP] == 0].set_index(key)[S.IN_NORM]
    end = rows[rows[S.STEP] == rows["final_step"]].set_index(key)
    change = ((end[S.IN_NORM] - start.reindex(end.index)).abs() / start.reindex(end.index)).rename("change")
    frame = end[[S.STUDENT_BN]].join(change).reset_index()
    out = frame.groupby([S.STUDENT_BN, S.LAYER], as_index=False).agg(
        median_change=("change", "median"), max_change=("change", "max"), nodes=("change", "size")
    )
    return out


def luck_size(res: Results) -> pd.DataFrame:
    """Luck Matters fig. 15a: rho-bar (each run's mean over layers, then mean, min and max over seeds)
    of FC teachers of different sizes, per BN, data and epoch; empty unless two FC sizes were run.
    Columns: net, student_bn, data, epoch, rho, rho_min, rho_max, seeds."""
    per_run = luck_per_run(res)
    if per_run.empty or per_run[per_run["net"].str.startswith("FC")]["net"].nunique() < 2:
        return pd.DataFrame()
    runs = _over_layers(res)
    return _over_seeds(runs[runs["net"].str.startswith("FC")], [*LUCK_CONFIG, S.EPOCH])


def luck_data(res: Results) -> pd.DataFrame:
    """Luck Matters fig. 15b / 20: rho-bar (as ``luck_size``) on finite vs infinite data per net and
    BN; empty unless both were run. Columns: net, student_bn, data, epoch, rho, rho_min, rho_max, seeds."""
    per_run = luck_per_run(res)
    if per_run.empty or per_run["data"].nunique() < 2:
        return pd.DataFrame()
    return _over_seeds(_over_layers(res), [*LUCK_CONFIG, S.EPOCH])
