"""Luck Matters fig. 16: beta* and H* before and after training, and how high the final winners sit in them.

Reads the opt-in ``modulation`` table (``checkpoint.keep_modulation``: a run's first and last
checkpoint) with the ``teacher_nodes`` / ``student_nodes`` rows of the final step, which name each
teacher node's final winner and each student node's best teacher.
"""

from __future__ import annotations

import pandas as pd

from analysis.load import Results
from analysis.tidy import has_bn, with_runs
from spec_ray.storage import schema as S

STAGE = "stage"
INIT, END = "init", "end"


def _runs(res: Results) -> pd.DataFrame:
    """Done runs that kept beta* and H*, or none when the table is absent."""
    keep = res.done.get(S.KEEP_MODULATION)
    if keep is None or not res.has_any(S.MODULATION):
        return res.done.iloc[:0]
    return res.done[keep.fillna(False).astype(bool)]


def _staged(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs' modulation rows, each marked init or end."""
    cols = [S.RUN_ID, S.STEP, S.LAYER, S.NODE, S.STUDENT, S.BETA, S.H]
    rows = with_runs(res.read(S.MODULATION, cols, runs[S.RUN_ID], optional=True), res, ["final_step"])
    rows = rows[(rows[S.STEP] == 0) | (rows[S.STEP] == rows["final_step"])]
    rows[STAGE] = (rows[S.STEP] == 0).map({True: INIT, False: END})
    return rows


def _finals(res: Results, table: str, runs: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``table``'s rows of the runs' final steps."""
    rows = with_runs(res.read(table, [S.RUN_ID, S.STEP, S.LAYER, S.NODE, *cols], runs[S.RUN_ID]), res, ["final_step"])
    return rows[rows[S.STEP] == rows["final_step"]].drop(columns=[S.STEP, "final_step"])


def figure_run(res: Results) -> str | None:
    """The run fig. 16 shows: no BN, finite data and the lowest seed where such runs exist."""
    runs = _runs(res)
    if runs.empty:
        return None
    order = runs.assign(bn=has_bn(runs[S.STUDENT_BN]), online=runs[S.N_TRAIN].isna())
    return str(order.sort_values(["bn", "online", S.SEED, S.RUN_ID]).iloc[0][S.RUN_ID])


def matrices(res: Results) -> pd.DataFrame:
    """One run's beta* and H* at init and at the end, each student placed by its final best teacher and,
    within it, by falling correlation (the paper's ordering). Columns: run_id, layer, stage, node
    (teacher), student, order, beta, h, best_teacher, student_bn, n_train, seed."""
    run = figure_run(res)
    if run is None:
        return pd.DataFrame()
    runs = res.done[res.done[S.RUN_ID] == run]
    rows = _staged(res, runs)
    best = _finals(res, S.STUDENT_NODES, runs, [S.BEST_TEACHER, S.BEST_CORR]).rename(columns={S.NODE: S.STUDENT})
    best = best.sort_values([S.LAYER, S.BEST_TEACHER, S.BEST_CORR], ascending=[True, True, False])
    best["order"] = best.groupby(S.LAYER).cumcount()
    keep = [S.RUN_ID, S.LAYER, STAGE, S.NODE, S.STUDENT, S.BETA, S.H]
    out = rows[keep].merge(best[[S.LAYER, S.STUDENT, "order", S.BEST_TEACHER]], on=[S.LAYER, S.STUDENT])
    out = with_runs(out, res, [S.STUDENT_BN, S.N_TRAIN, S.SEED])  # the caption names the run
    return out.sort_values([S.LAYER, STAGE, S.NODE, "order"]).reset_index(drop=True)


def winners_in_modulation(res: Results) -> pd.DataFrame:
    """Claim 12: how high each teacher node's final winner sits in its column of H* and beta*: the winner's rank
    among all students by value (0 = highest), scaled to [0, 1] and averaged over teacher nodes, per
    run, layer and stage. A random student's is 0.5. Columns: run_id, layer, stage, h_rank, beta_rank, teachers,
    student_bn."""
    runs = _runs(res)
    if runs.empty:
        return pd.DataFrame()
    # A pack at a time: its m x n rows a layer and stage are the table's bulk (337,500 pairs a large-FC
    # run), so the memory held is one pack's, whatever the runs (docs/performance.md).
    parts = [_winner_ranks(res, group) for _, group in runs.groupby(["root", S.PACK_ID], sort=True)]
    out = pd.concat(parts, ignore_index=True)
    out = with_runs(out, res, [S.STUDENT_BN])
    return out.sort_values([S.RUN_ID, S.LAYER, STAGE]).reset_index(drop=True)


def _winner_ranks(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """Claim 12's ranks of some runs' final winners in H* and beta*, per run, layer and stage."""
    rows = _staged(res, runs)
    winners = _finals(res, S.TEACHER_NODES, runs, [S.BEST_STUDENT])
    rows = rows.merge(winners, on=[S.RUN_ID, S.LAYER, S.NODE])
    key = [S.RUN_ID, S.LAYER, STAGE, S.NODE]
    for value in (S.H, S.BETA):
        rank = rows.groupby(key)[value].rank(ascending=False, method="min") - 1  # students strictly above
        rows[f"{value}_rank"] = rank / (rows.groupby(key)[S.STUDENT].transform("size") - 1).clip(lower=1)
    won = rows[rows[S.STUDENT] == rows[S.BEST_STUDENT]]
    return won.groupby([S.RUN_ID, S.LAYER, STAGE], as_index=False).agg(
        h_rank=("h_rank", "mean"), beta_rank=("beta_rank", "mean"), teachers=(S.NODE, "nunique")
    )
