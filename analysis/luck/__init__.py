"""Luck Matters (Tian et al.): figures 4-6, 14-20 and claims 7-12, 14, 15 (docs/protocol.md). Each figure
and claim registers itself where it is written (``figures.py``, ``claims.py``, ``bn_bias.py``); their needs
are in ``queries.py``."""

from __future__ import annotations

from analysis.luck import bn_bias, claims, figures  # noqa: F401  (bn_bias registers figs. 4, 14 and claim 15)
from analysis.registry import Paper

PAPER = Paper("Luck Matters", tuple(figures.FIGURES), tuple(claims.CLAIMS), claims.CRITERIA)
