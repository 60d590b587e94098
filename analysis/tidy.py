"""Helpers every paper's queries share: the done runs' columns joined to a table's rows, their final
steps, the accuracy of their stored teachers."""

from __future__ import annotations

import posixpath

import pandas as pd

from analysis.load import Results
from spec_ray.storage import schema as S
from spec_ray.storage.teacher_store import TeacherStore


def with_runs(frame: pd.DataFrame, res: Results, cols: list[str]) -> pd.DataFrame:
    keep = [c for c in dict.fromkeys([S.RUN_ID, *cols]) if c in res.done.columns]
    return frame.merge(res.done[keep], on=S.RUN_ID, how="inner")


def final_steps(res: Results) -> set[int]:
    """The last step of every done run."""
    return set(res.done["final_step"].astype(int))


def teacher_accuracy(res: Results) -> pd.DataFrame:
    """Each stored teacher's test accuracy on its whole test split, from the storage root beside the
    experiments (``spec_ray.storage.teacher_store``). Columns: load_teacher, teacher_accuracy."""
    rows = []
    for root in res.roots:
        store = TeacherStore(posixpath.dirname(root.rstrip("/")), res.fs)
        for name in res.done[S.LOAD_TEACHER].dropna().unique():
            meta = store.meta(name)
            if meta is not None and "test_accuracy" in meta:
                rows.append({S.LOAD_TEACHER: name, "teacher_accuracy": meta["test_accuracy"]})
    return pd.DataFrame(rows, columns=[S.LOAD_TEACHER, "teacher_accuracy"]).drop_duplicates(S.LOAD_TEACHER)


def asked(column: pd.Series, what: str) -> pd.Series:
    """What each value of a kind column (``schema.KINDS``) names answers to ``what``: its record's attribute."""
    return column.map(lambda name: getattr(S.record(str(column.name), name), what))


def has_bn(placements: pd.Series) -> pd.Series:
    """Whether each BatchNorm placement named (a student_bn or teacher_bn column) puts BN in the network."""
    return asked(placements, "present").astype(bool)
