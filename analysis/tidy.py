"""Helpers every paper's queries share: the done runs' columns joined to a table's rows, their final steps."""

from __future__ import annotations

import pandas as pd

from analysis.load import Results
from spec_ray.storage import schema as S


def with_runs(frame: pd.DataFrame, res: Results, cols: list[str]) -> pd.DataFrame:
    keep = [c for c in dict.fromkeys([S.RUN_ID, *cols]) if c in res.done.columns]
    return frame.merge(res.done[keep], on=S.RUN_ID, how="inner")


def final_steps(res: Results) -> set[int]:
    """The last step of every done run."""
    return set(res.done["final_step"].astype(int))
