"""One style for every figure (seaborn "paper" context, white grid), panels about 2.6 inches wide
so a row of panels fits a paper's text width, and the helpers each paper's figures share.
Every figure function takes a tidy frame and an output stem and returns the files it wrote.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from spec_ray.engine.kinds.losses import UNITS  # noqa: E402

PANEL = 2.6  # inches per panel side

WRAP = 3  # panels a row: six in a row (2496 px at 160 dpi) do not read on a page


def style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)


def panel_grid(n: int, rows: int = 1, sharey: bool = True) -> tuple[plt.Figure, np.ndarray]:
    style()
    # Constrained layout: it makes room for a colorbar shared by several panels; tight_layout cannot.
    fig, axes = plt.subplots(
        rows, n, figsize=(PANEL * n, PANEL * rows), sharey=sharey, squeeze=False, layout="constrained"
    )
    return fig, axes


def wrapped(n: int, sharey: bool = True) -> tuple[plt.Figure, list[plt.Axes]]:
    """n panels, at most WRAP a row, row by row; unused cells hidden. Returns the n axes in order."""
    cols = min(n, WRAP)
    rows = -(-n // cols)
    fig, axes = panel_grid(cols, rows, sharey=sharey)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def label_rows(axes: list[plt.Axes], label: str, **kw) -> None:
    """The y label on the first panel of every row."""
    for i, ax in enumerate(axes):
        if i % WRAP == 0:
            ax.set_ylabel(label, **kw)


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=160)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def loss_label(kinds, what: str = "evaluation loss") -> str:
    """Axis label naming the unit of every loss present, e.g. 'evaluation loss (MSE, mean over ...)'."""
    units = list(dict.fromkeys(UNITS.get(k, k) for k in sorted(kinds)))
    return "\n".join([what, *(f"({u})" for u in units)])


def suptitle(fig: plt.Figure, title: str, panels: int) -> None:
    """A title wrapped to the figure's width: a 2.6-inch panel holds about 34 characters."""
    fig.suptitle(textwrap.fill(title, 34 * min(panels, WRAP)), fontsize=9)
