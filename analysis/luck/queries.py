"""Tidy frames behind Luck Matters' figures and claims (figs. 5, 15, 17-20; sec. 6.1 and 7), over
finished, non-diverged runs that keep their correlations (the Luck Matters sweep).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import AnalysisError, Results
from analysis.registry import Needs
from analysis.tidy import asked, final_steps, teacher_accuracy, with_runs
from spec_ray.storage import schema as S

# What the figures and claims need of the runs (``analysis.registry``).
LUCK = Needs(
    where=((S.KEEP_CORRELATIONS, (True,)),), words="runs that keep their correlations (sweeps/luck_matters.py)"
)
"""Luck Matters' runs keep every checkpoint's correlations: its rank of the final winners needs them."""
RANKS = Needs(where=LUCK.where, tables=(S.CORR_MATRICES,), words=LUCK.words)
BN = Needs(where=LUCK.where, varies=(S.STUDENT_BN,), words="Luck Matters runs with and without student BN")
BN_ANY = Needs(varies=(S.STUDENT_BN,), words="runs with and without student BN")
SIZES = Needs(where=LUCK.where, varies=(S.WIDTHS,), words="Luck Matters runs of two FC teacher sizes")
DATA = Needs(where=LUCK.where, words="Luck Matters runs on finite and infinite data")
REAL = Needs(where=(*LUCK.where, (S.DATASET, S.REAL_DATASETS)), varies=(S.STUDENT_BN,),
             words="Luck Matters runs on real images with and without student BN (--dataset cifar10)")  # fmt: skip
"""Fig. 6 and the right columns of 17-18: a teacher pretrained on real images."""
KEPT_MODULATION = Needs(where=((S.KEEP_MODULATION, (True,)),), tables=(S.MODULATION,),
                        words="runs that keep beta* and H* (--keep-modulation true, the small FC of "
                        "sweeps/luck_matters.py)")  # fmt: skip


RANK_COLUMNS = [S.RUN_ID, S.LAYER, S.STEP, S.EPOCH, S.MEAN_RANK, S.MEDIAN_RANK, S.TEACHERS]


def winner_ranks(res: Results) -> pd.DataFrame:
    """Luck Matters' rank of the final winners (sec. 7, figs. 5, 17, 18), per run, layer and checkpoint.

    After training, each teacher node j has its most correlated student, the final winner k*. At
    every checkpoint, k*'s rank among all students by correlation with j (0 = first), divided by
    n - 1, so that it lies in [0, 1]; a finished run's is 0 at its last step by definition. Read from
    the ``winner_ranks`` table each pack writes when it ends (``spec_ray.storage.summaries``); a run
    stored without it (spec-ray before 0.2, until a ``--resume``) has its ranks made from its
    correlations, a pack at a time. Columns: run_id, layer, step, epoch, mean_rank, median_rank (over
    teacher nodes), teachers.
    """
    if not res.has_any(S.CORR_MATRICES):  # a storage root may mix experiments with and without it
        raise AnalysisError("winner ranks need the corr_matrices table: rerun with --keep-correlations true")
    if "winner_ranks" not in res.memo:
        ids = list(res.done[S.RUN_ID])
        stored = (res.read(S.WINNER_RANKS, RANK_COLUMNS, ids, optional=True) if res.has_any(S.WINNER_RANKS)
                  else S.SCHEMAS[S.WINNER_RANKS].empty_table().to_pandas())  # fmt: skip
        made = res.made_ranks(sorted(set(ids) - set(stored[S.RUN_ID])))
        frames = [f for f in (stored, made) if len(f)] or [stored]
        out = pd.concat(frames, ignore_index=True)[RANK_COLUMNS]
        res.memo["winner_ranks"] = out.sort_values([S.RUN_ID, S.LAYER, S.STEP]).reset_index(drop=True)
    return res.memo["winner_ranks"]


LUCK_CONFIG = ["net", S.STUDENT_BN, "data"]


def _luck_config(res: Results, frame: pd.DataFrame) -> pd.DataFrame:
    """Luck Matters' cells: net (arch and teacher widths), student BN, data: finite / infinite Gaussian,
    or the real image set's name."""
    cols = [S.RUN_ID, S.ARCH, S.WIDTHS, S.STUDENT_BN, S.N_TRAIN]
    runs = res.done[[*cols, S.DATASET]].copy() if S.DATASET in res.done else res.done[cols].assign(dataset=None)
    runs["net"] = asked(runs[S.ARCH], "short") + " " + runs[S.WIDTHS].str.replace("_", "-")  # FC 10-15-20-25
    real = runs[S.DATASET].isin(S.REAL_DATASETS)
    runs["data"] = np.where(real, runs[S.DATASET], np.where(runs[S.N_TRAIN].isna(), "infinite", "finite"))
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
            rows = res.arrow(S.TEACHER_NODES, [S.RUN_ID, S.EPOCH, S.LAYER, S.BEST_CORR], res.done[S.RUN_ID])
            keys = [S.RUN_ID, S.LAYER, S.EPOCH]  # reduced in Arrow: a node's row never reaches pandas
            per_run = rows.group_by(keys).aggregate([(S.BEST_CORR, "mean")]).to_pandas()
            per_run = per_run.rename(columns={f"{S.BEST_CORR}_mean": S.BEST_CORR}).sort_values(keys, ignore_index=True)
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
    if not res.has_any(S.CORR_MATRICES):
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


GAUSSIAN_DATA = ("finite", "infinite")


def gaussian(frame: pd.DataFrame) -> pd.DataFrame:
    """The Gaussian-data cells of a Luck Matters frame (claims 7-10 are the paper's for GAUS)."""
    return frame if frame.empty else frame[frame["data"].isin(GAUSSIAN_DATA)]


def luck_accuracy(res: Results) -> pd.DataFrame:
    """Fig. 6's accuracies: each real-image cell's final test accuracy (mean, min, max over seeds) and its
    teacher's on the whole test split. Columns: net, student_bn, data, accuracy, accuracy_min,
    accuracy_max, teacher_accuracy, seeds."""
    ids = res.done[S.RUN_ID]
    rows = res.read(S.SCALARS, [S.RUN_ID, S.STEP, S.EVAL_ACCURACY], ids, final_steps(res))
    rows = with_runs(rows, res, ["final_step", S.LOAD_TEACHER])
    rows = _luck_config(res, rows[rows[S.STEP] == rows["final_step"]])
    rows = rows[~rows["data"].isin(GAUSSIAN_DATA)].merge(teacher_accuracy(res), on=S.LOAD_TEACHER, how="left")
    out = rows.groupby(LUCK_CONFIG, as_index=False).agg(
        accuracy=(S.EVAL_ACCURACY, "mean"), accuracy_min=(S.EVAL_ACCURACY, "min"),
        accuracy_max=(S.EVAL_ACCURACY, "max"), teacher_accuracy=("teacher_accuracy", "mean"),
        seeds=(S.RUN_ID, "nunique"),
    )  # fmt: skip
    return out.sort_values(LUCK_CONFIG).reset_index(drop=True)
