"""Luck Matters (Tian et al.): figures 5, 15-20 and claims 7-12 (docs/protocol.md). Each figure and
claim registers itself where it is written (``figures.py``, ``claims.py``); their needs are in
``queries.py``."""

from __future__ import annotations

from analysis.luck import claims, figures
from analysis.registry import Paper

PAPER = Paper("Luck Matters", tuple(figures.FIGURES), tuple(claims.CLAIMS), claims.CRITERIA)
