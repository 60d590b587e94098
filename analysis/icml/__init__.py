"""ICML 2020, *Student Specialization in Deep Rectified Networks*: figures 5-10, the loss curves and
claims 1-6 and 13 (docs/protocol.md). Each figure and claim registers itself where it is written
(``figures.py``, ``claims.py``); their needs are in ``queries.py``."""

from __future__ import annotations

from analysis.icml import claims, figures
from analysis.registry import Paper

PAPER = Paper("ICML 2020 (Student Specialization)", tuple(figures.FIGURES), tuple(claims.CLAIMS), claims.CRITERIA)
