"""The paper's figures from the tidy frames of ``analysis.queries``, as PNG and PDF.

One style for all (seaborn "paper" context, white grid), panels about 2.6 inches wide so
a row of panels fits a paper's text width. Every function takes a tidy frame and an
output stem and returns the files it wrote.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from spec_ray.engine.losses import UNITS  # noqa: E402
from spec_ray.storage import schema as S  # noqa: E402

PANEL = 2.6  # inches per panel side
WRAP = 3  # panels a row: six in a row (2496 px at 160 dpi) do not read on a page


def _style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)


def _grid(n: int, rows: int = 1, sharey: bool = True) -> tuple[plt.Figure, np.ndarray]:
    _style()
    # Constrained layout: it makes room for a colorbar shared by several panels; tight_layout cannot.
    fig, axes = plt.subplots(
        rows, n, figsize=(PANEL * n, PANEL * rows), sharey=sharey, squeeze=False, layout="constrained"
    )
    return fig, axes


def _wrapped(n: int, sharey: bool = True) -> tuple[plt.Figure, list[plt.Axes]]:
    """n panels, at most WRAP a row, row by row; unused cells hidden. Returns the n axes in order."""
    cols = min(n, WRAP)
    rows = -(-n // cols)
    fig, axes = _grid(cols, rows, sharey=sharey)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _label_rows(axes: list[plt.Axes], label: str, **kw) -> None:
    """The y label on the first panel of every row."""
    for i, ax in enumerate(axes):
        if i % WRAP == 0:
            ax.set_ylabel(label, **kw)


def _save(fig: plt.Figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=160)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def loss_label(kinds, what: str = "evaluation loss") -> str:
    """Axis label naming the unit of every loss present, e.g. 'evaluation loss (MSE, mean over ...)'."""
    units = list(dict.fromkeys(UNITS.get(k, k) for k in sorted(kinds)))
    return "\n".join([what, *(f"({u})" for u in units)])


def _multi_colors(values) -> dict:
    palette = sns.color_palette("viridis", n_colors=max(2, len(values)))
    return {v: palette[i] for i, v in enumerate(sorted(values))}


def success_rate(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 7: success rate vs teacher node index; line per multi, panel per p (and m)."""
    ps, ms = sorted(frame[S.P].unique()), sorted(frame[S.M].unique())
    if len(ms) == 1:
        fig, flat = _wrapped(len(ps))
        panels = {(ms[0], p): ax for p, ax in zip(ps, flat)}
    else:  # a row of p panels per m
        fig, grid = _grid(len(ps), len(ms))
        panels = {(m, p): grid[i, j] for i, m in enumerate(ms) for j, p in enumerate(ps)}
    colors = _multi_colors(frame[S.MULTI].unique())
    final = frame["epoch"].max()
    for (m, p), ax in panels.items():
        sub = frame[(frame[S.P] == p) & (frame[S.M] == m)]
        for (multi, epoch), line in sub.groupby([S.MULTI, "epoch"]):
            is_final = epoch == final
            ax.plot(line["node"], line["success_rate"], color=colors[multi], lw=1.4,
                    ls="-" if is_final else ":", label=f"{multi}x" if is_final else None)  # fmt: skip
        ax.set_title(f"p = {p:g}" + (f", m = {m}" if len(ms) > 1 else ""))
        ax.set_xlabel("teacher node (strongest first)")
        ax.set_ylim(-0.03, 1.03)
    axes = list(panels.values())
    if len(ms) == 1:
        _label_rows(axes, "success rate")
    else:
        axes[0].set_ylabel("success rate")
    axes[0].legend(title=S.MULTI, fontsize=7, title_fontsize=7, loc="lower left")
    early = sorted(frame["epoch"].unique())[:-1]
    dotted = f"dotted: epoch {early[0]:g}, " if early else ""
    fig.suptitle(f"Success rate ({dotted}solid: epoch {final:g})", fontsize=9)
    return _save(fig, stem)


def dynamics(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 8: best correlation of each teacher node vs iteration, rainbow by strength."""
    ps = sorted(frame[S.P].unique())
    fig, axes = _wrapped(len(ps))
    frame = frame[frame["step"] > 0]
    m = int(frame["node"].max()) + 1
    cmap = plt.get_cmap("jet")  # blue: strongest (node 0), red: weakest
    for ax, p in zip(axes, ps):
        for node, line in frame[frame[S.P] == p].groupby("node"):
            ax.plot(line["step"], line["best_corr"], color=cmap(node / max(1, m - 1)), lw=1.0)
        ax.set_xscale("log")
        ax.set_title(f"p = {p:g}")
        ax.set_xlabel("iteration")
        ax.set_ylim(0, 1.02)
    _label_rows(axes, "best correlation\n(mean over seeds)")
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, m - 1))
    fig.colorbar(mappable, ax=axes, label="teacher node (0 = strongest)", fraction=0.04, aspect=30)
    fig.suptitle(f"Specialization dynamics, multi = {int(frame['multi'].iloc[0])}", fontsize=9)
    return _save(fig, stem)


def lshape(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 5: student specialization vs fan-out norm, panels p x multi, seeds coloured."""
    ps, multis = sorted(frame[S.P].unique()), sorted(frame[S.MULTI].unique())
    fig, axes = _grid(len(multis), len(ps), sharey=False)
    seeds = sorted(frame[S.SEED].unique())
    palette = dict(zip(seeds, sns.color_palette("husl", n_colors=len(seeds))))
    for i, p in enumerate(ps):
        for j, multi in enumerate(multis):
            ax = axes[i, j]
            sub = frame[(frame[S.P] == p) & (frame[S.MULTI] == multi)]
            ax.scatter(sub["specialization"], sub["fanout_norm"], s=5, alpha=0.7,
                       c=[palette[s] for s in sub[S.SEED]], linewidths=0)  # fmt: skip
            ax.set_title(f"p = {p:g}, {multi}x", fontsize=8)
            ax.set_xlim(-0.05, 1.05)
            if i == len(ps) - 1:
                ax.set_xlabel("specialization (max corr.)")
            if j == 0:
                ax.set_ylabel("fan-out norm")
    where = "training set" if frame["on_train"].all() else "evaluation set"
    fig.suptitle(f"Student specialization ({where}) vs fan-out norm; colour = seed", fontsize=9)
    return _save(fig, stem)


def loss_curves(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """log10 evaluation loss vs epoch, mean +- std over seeds; line per multi, panel per p."""
    ps = sorted(frame[S.P].unique())
    fig, axes = _wrapped(len(ps))
    colors = _multi_colors(frame[S.MULTI].unique())
    for ax, p in zip(axes, ps):
        for multi, line in frame[frame[S.P] == p].groupby(S.MULTI):
            mean, std = line["log10_eval_loss"], line["std"].fillna(0)
            ax.plot(line["epoch"], mean, color=colors[multi], lw=1.4, label=f"{multi}x")
            ax.fill_between(line["epoch"], mean - std, mean + std, color=colors[multi], alpha=0.2, lw=0)
        ax.set_title(f"p = {p:g}")
        ax.set_xlabel("epoch")
    _label_rows(axes, loss_label(frame[S.LOSS].unique(), "log10 evaluation loss"), fontsize=7)
    axes[0].legend(title=S.MULTI, fontsize=7, title_fontsize=7)
    return _save(fig, stem)


def _loss_name(loss: str) -> str:
    return {"mse": "MSE", "mse_mean": "MSE", "ce": "CE"}.get(loss, loss)


def sample_size(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 6: rho_mean per layer and evaluation loss vs sample size, MSE vs CE."""
    fig, axes = _grid(2, sharey=False)
    fig.set_size_inches(PANEL * 2.4, PANEL * 1.25)  # room for the loss units on the right axis
    frame = frame.assign(samples_k=frame[S.N_TRAIN] / 1000)
    layers = sorted(frame["layer"].unique())
    colors = dict(zip(layers, sns.color_palette("crest", n_colors=max(2, len(layers)))))
    styles = {"mse": "-", "mse_mean": "-", "ce": "--"}
    for (loss, layer), line in frame.groupby([S.LOSS, "layer"]):
        axes[0, 0].plot(line["samples_k"], line["rho_mean"], ls=styles.get(loss, "-"), color=colors[layer],
                        marker="o", ms=3, label=f"layer {layer}, {_loss_name(loss)}")  # fmt: skip
    for loss, line in frame[frame["layer"] == layers[0]].groupby(S.LOSS):
        axes[0, 1].plot(line["samples_k"], line["eval_loss"], ls=styles.get(loss, "-"), color="k", marker="o",
                        ms=3, label=_loss_name(loss))  # fmt: skip
    axes[0, 0].set(xlabel="samples (x1000)", ylabel="rho_mean", title="specialization per layer")
    axes[0, 1].set(xlabel="samples (x1000)", title="evaluation loss", yscale="log")
    axes[0, 1].set_ylabel(loss_label(frame[S.LOSS].unique()), fontsize=7)
    axes[0, 0].legend(fontsize=6)
    axes[0, 1].legend(fontsize=7)
    return _save(fig, stem)


def teacher_aware(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 9: train and evaluation MSE vs samples, teacher-aware vs agnostic data."""
    fig, axes = _grid(1)
    ax = axes[0, 0]
    colors = {"teacher_aware": "tab:blue", "none": "tab:orange", "teacher_agnostic": "tab:green"}
    names = {"teacher_aware": "teacher-aware", "none": "agnostic (Gaussian)", "teacher_agnostic": "agnostic (7a)"}
    for (aug, which), line in frame.groupby([S.AUGMENTATION, "set"]):  # one loss per experiment
        ax.errorbar(line[S.N_TRAIN], line["mse"], yerr=line["std"].fillna(0), color=colors.get(aug, "k"),
                    ls="-" if which == "eval" else "--", marker="o", ms=3, capsize=2, lw=1.2,
                    label=f"{names.get(aug, aug)}, {which}")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="training samples")
    ax.set_ylabel(loss_label(frame[S.LOSS].unique(), S.LOSS), fontsize=7)
    ax.legend(fontsize=6)
    fig.set_size_inches(PANEL * 1.6, PANEL * 1.2)
    return _save(fig, stem)


def _suptitle(fig: plt.Figure, title: str, panels: int) -> None:
    """A title wrapped to the figure's width: a 2.6-inch panel holds about 34 characters."""
    fig.suptitle(textwrap.fill(title, 34 * min(panels, WRAP)), fontsize=9)


def _luck_layers(frame: pd.DataFrame, value: str, stem: Path, ylim: tuple[float, float], ylabel: str, title: str,
                 median: bool = False) -> list[Path]:  # fmt: skip
    """A panel per (net, BN) cell; a line per layer (dashed: finite data) with its min/max band over seeds;
    ``median``: also the median rank, dotted."""
    cells = list(frame.groupby(["net", S.STUDENT_BN]).groups)
    fig, axes = _wrapped(len(cells))
    layers = sorted(frame[S.LAYER].unique())
    colors = dict(zip(layers, sns.color_palette("crest", n_colors=max(2, len(layers)))))
    for ax, (net, bn) in zip(axes, cells):
        cell = frame[(frame["net"] == net) & (frame[S.STUDENT_BN] == bn)]
        for (layer, data), line in cell.groupby([S.LAYER, "data"]):
            c, style = colors[layer], "--" if data == "finite" else "-"
            ax.plot(line[S.EPOCH], line[value], style, color=c, lw=1.2, label=f"layer {layer - 1}, {data}")
            if median:
                ax.plot(line[S.EPOCH], line["median_rank"], ":", color=c, lw=1.0)
            ax.fill_between(line[S.EPOCH], line[f"{value}_min"], line[f"{value}_max"], color=c, alpha=0.15, lw=0)
        ax.set_title(f"{net}, BN {bn}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylim(*ylim)
    _label_rows(axes, ylabel)
    axes[0].legend(fontsize=6, loc="lower right" if not median else "upper right")
    _suptitle(fig, title, len(cells))
    return _save(fig, stem)


def luck_rho(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 5 / 19 / 20: rho-bar per layer vs epoch, min/max band over seeds; dashed: finite data."""
    title = "Luck Matters: correlation with the teacher per layer (layer 0 = lowest); band = min/max over seeds"
    return _luck_layers(frame, "rho", stem, (0, 1.02), "rho-bar (mean best correlation)", title)


def luck_rank(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 5 / 17 / 18: mean (min/max band) and median (dotted) rank of the final winners."""
    top = max(0.1, float(frame["mean_rank_max"].max()) * 1.05)
    title = "Luck Matters: rank of the final winners, mean (dashed: finite data) and median (dotted)"
    return _luck_layers(frame, "mean_rank", stem, (-0.02, top), "rank of the final winner\n(0 = first, 1 = last)",
                        title, median=True)  # fmt: skip


def _rho_lines(frame: pd.DataFrame, panel: str, hue: str, dash: str, title: str, stem: Path) -> list[Path]:
    """rho-bar vs epoch: a panel per ``panel`` value, a color per ``hue``, dashed where ``dash`` is the first value."""
    panels = sorted(frame[panel].unique())
    fig, axes = _wrapped(len(panels))
    hues = sorted(frame[hue].unique())
    palette = dict(zip(hues, sns.color_palette("colorblind", n_colors=max(2, len(hues)))))
    dashed = sorted(frame[dash].unique())[0]
    for ax, value in zip(axes, panels):
        for (h, d), line in frame[frame[panel] == value].groupby([hue, dash]):
            ax.plot(
                line[S.EPOCH], line["rho"], "--" if d == dashed else "-", color=palette[h], lw=1.2, label=f"{h}, {d}"
            )
            ax.fill_between(line[S.EPOCH], line["rho_min"], line["rho_max"], color=palette[h], alpha=0.12, lw=0)
        ax.set_title(f"{panel.replace('student_bn', 'BN')} {value}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1.02)
    _label_rows(axes, "rho-bar, mean over layers")
    axes[0].legend(fontsize=6, loc="lower right")
    _suptitle(fig, title, len(panels))
    return _save(fig, stem)


def luck_size(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 15a: small vs large FC teachers, with and without BN."""
    return _rho_lines(frame, S.STUDENT_BN, "net", "data", "Luck Matters: small vs large FC teachers", stem)


def luck_data(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 15b / 20: a finite training set (dashed) vs infinite data (solid)."""
    return _rho_lines(frame, "net", S.STUDENT_BN, "data", "Luck Matters: finite (dashed) vs infinite data", stem)


def luck_beta(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Luck Matters fig. 16: (transposed) beta* and H* of one run before and after training, a column per
    layer; teacher nodes down, students across, grouped by their final best teacher (gray lines between groups)."""
    layers = sorted(frame[S.LAYER].unique())
    panels = [(value, stage) for value in (S.BETA, S.H) for stage in ("init", "end")]
    _style()
    fig, axes = plt.subplots(len(panels), len(layers), figsize=(PANEL * 1.3 * len(layers), 1.5 * len(panels)),
                             squeeze=False, layout="constrained")  # fmt: skip
    for col, layer in enumerate(layers):
        for row, (value, stage) in enumerate(panels):
            sub = frame[(frame[S.LAYER] == layer) & (frame["stage"] == stage)]
            grid = sub.pivot(index=S.NODE, columns="order", values=value).to_numpy()  # (m_l, n_l)
            scale = float(np.abs(grid).max()) or 1.0
            ax = axes[row, col]
            ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
            groups = sub[sub[S.NODE] == 0].sort_values("order")[S.BEST_TEACHER].to_numpy()
            for edge in np.flatnonzero(np.diff(groups)) + 0.5:  # where the next teacher's students begin
                ax.axvline(edge, color="0.6", lw=0.4)
            ax.set_xticks([])
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(False)
            ax.set_title(f"layer {layer - 1}: {'beta*' if value == S.BETA else 'H*'}, {stage} (|max| {scale:.2g})",
                         fontsize=7)  # fmt: skip
            if col == 0:
                ax.set_ylabel("teacher node", fontsize=7)
        axes[-1, col].set_xlabel("student node, by final best teacher", fontsize=7)
    _suptitle(fig, "Luck Matters fig. 16: top-down modulation of one run (red > 0, blue < 0)", len(layers))
    return _save(fig, stem)
