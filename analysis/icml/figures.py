"""ICML 2020's figures (5-9 and the loss curves) from the tidy frames of ``analysis.icml.queries``, as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from analysis.icml import queries as Q
from analysis.plots import PANEL, label_rows, loss_label, panel_grid, save, suptitle, wrapped
from analysis.registry import Figure, figure
from analysis.tidy import teacher_accuracy
from spec_ray.storage import schema as S

FIGURES: list[Figure] = []
SEEDS_IN_LEGEND = 10
"""Figure 5's legend names at most this many seeds' colours."""
"""ICML 2020's figures, in the report's order."""


def _multi_colors(values) -> dict:
    palette = sns.color_palette("viridis", n_colors=max(2, len(values)))
    return {v: palette[i] for i, v in enumerate(sorted(values))}


@figure(FIGURES, "success_rate", "Figure 7: success rate", "Success rate over seeds per teacher node (strongest "
        "first); dotted after 5 epochs, solid at the end.", Q.success_rate, Q.TWO_LAYER)  # fmt: skip
def success_rate(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 7: success rate vs teacher node index; line per multi, panel per p (and m)."""
    ps, ms = sorted(frame[S.P].unique()), sorted(frame[S.M].unique())
    if len(ms) == 1:
        fig, flat = wrapped(len(ps))
        panels = {(ms[0], p): ax for p, ax in zip(ps, flat)}
    else:  # a row of p panels per m
        fig, grid = panel_grid(len(ps), len(ms))
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
        label_rows(axes, "success rate")
    else:
        axes[0].set_ylabel("success rate")
    axes[0].legend(title=S.MULTI, fontsize=7, title_fontsize=7, loc="lower left")
    early = sorted(frame["epoch"].unique())[:-1]
    dotted = f"dotted: epoch {early[0]:g}, " if early else ""
    fig.suptitle(f"Success rate ({dotted}solid: epoch {final:g})", fontsize=9)
    return save(fig, stem)


def _dynamics_caption(data: pd.DataFrame) -> str:
    multi = int(data[S.MULTI].iloc[0])
    return (f"Best correlation of each teacher node vs iteration at multi = {multi} (5 where run, else the "
            "largest), mean over seeds; blue strongest, red weakest.")  # fmt: skip


@figure(FIGURES, "dynamics", "Figure 8: specialization dynamics", _dynamics_caption, Q.dynamics, Q.TWO_LAYER)
def dynamics(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 8: best correlation of each teacher node vs iteration, rainbow by strength."""
    ps = sorted(frame[S.P].unique())
    fig, axes = wrapped(len(ps))
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
    label_rows(axes, "best correlation\n(mean over seeds)")
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, m - 1))
    fig.colorbar(mappable, ax=axes, label="teacher node (0 = strongest)", fraction=0.04, aspect=30)
    fig.suptitle(f"Specialization dynamics, multi = {int(frame['multi'].iloc[0])}", fontsize=9)
    return save(fig, stem)


@figure(FIGURES, "lshape", "Figure 5: specialization vs fan-out norm", "Every student node at the end; "
        "unspecialized nodes should have small fan-out norms.", Q.lshape, Q.TWO_LAYER)  # fmt: skip
def lshape(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 5: student specialization vs fan-out norm, panels p x multi, seeds coloured."""
    ps, multis = sorted(frame[S.P].unique()), sorted(frame[S.MULTI].unique())
    fig, axes = panel_grid(len(multis), len(ps), sharey=False)
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
    shown = seeds[:SEEDS_IN_LEGEND]  # a colour a seed; a legend of 32 would crowd the panels out
    handles = [Line2D([], [], ls="", marker="o", ms=3, color=palette[s]) for s in shown]
    more = f" (first {len(shown)} of {len(seeds)})" if len(seeds) > len(shown) else ""
    fig.legend(handles, [str(s) for s in shown], title=f"seed{more}", fontsize=6, title_fontsize=6,
               loc="outside right center")  # fmt: skip
    suptitle(fig, f"Student specialization ({where}) vs fan-out norm, a colour a seed", len(multis))
    return save(fig, stem)


@figure(FIGURES, "loss_curves", "Loss curves", "log10 evaluation loss, mean +- std over seeds.", Q.loss_curves)
def loss_curves(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """log10 evaluation loss vs epoch, mean +- std over seeds; line per multi, panel per p."""
    ps = sorted(frame[S.P].unique())
    fig, axes = wrapped(len(ps))
    colors = _multi_colors(frame[S.MULTI].unique())
    for ax, p in zip(axes, ps):
        for multi, line in frame[frame[S.P] == p].groupby(S.MULTI):
            mean, std = line["log10_eval_loss"], line["std"].fillna(0)
            ax.plot(line["epoch"], mean, color=colors[multi], lw=1.4, label=f"{multi}x")
            ax.fill_between(line["epoch"], mean - std, mean + std, color=colors[multi], alpha=0.2, lw=0)
        ax.set_title(f"p = {p:g}")
        ax.set_xlabel("epoch")
    label_rows(axes, loss_label(frame[S.LOSS].unique(), "log10 evaluation loss"), fontsize=7)
    axes[0].legend(title=S.MULTI, fontsize=7, title_fontsize=7)
    return save(fig, stem)


def _loss_name(loss: str) -> str:
    return S.record(S.LOSS, loss).short


def _loss_style(loss: str) -> str:
    """Losses on labels dashed, squared errors solid."""
    return "--" if S.record(S.LOSS, loss).labels else "-"


@figure(FIGURES, "sample_size", "Figure 6: sample size", "rho_mean per layer and evaluation loss vs training "
        "samples.", Q.sample_size, Q.SAMPLES)  # fmt: skip
def sample_size(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 6: rho_mean per layer and evaluation loss vs sample size, MSE vs CE."""
    fig, axes = panel_grid(2, sharey=False)
    fig.set_size_inches(PANEL * 2.4, PANEL * 1.25)  # room for the loss units on the right axis
    frame = frame.assign(samples_k=frame[S.N_TRAIN] / 1000)
    layers = sorted(frame["layer"].unique())
    colors = dict(zip(layers, sns.color_palette("colorblind", n_colors=max(2, len(layers)))))
    for (loss, layer), line in frame.groupby([S.LOSS, "layer"]):
        axes[0, 0].plot(line["samples_k"], line["rho_mean"], ls=_loss_style(loss), color=colors[layer],
                        marker="o", ms=3, label=f"layer {layer}, {_loss_name(loss)}")  # fmt: skip
    for loss, line in frame[frame["layer"] == layers[0]].groupby(S.LOSS):
        axes[0, 1].plot(line["samples_k"], line["eval_loss"], ls=_loss_style(loss), color="k", marker="o",
                        ms=3, label=_loss_name(loss))  # fmt: skip
    axes[0, 0].set(xlabel="samples (x1000)", ylabel="rho_mean", title="specialization per layer")
    axes[0, 1].set(xlabel="samples (x1000)", title="evaluation loss", yscale="log")
    axes[0, 1].set_ylabel(loss_label(frame[S.LOSS].unique()), fontsize=7)
    axes[0, 0].legend(fontsize=6)
    axes[0, 1].legend(fontsize=7)
    return save(fig, stem)


@figure(FIGURES, "teacher_aware", "Figure 9: teacher-aware vs agnostic data", "Final train (dashed) and "
        "evaluation (solid) MSE vs training samples.", Q.teacher_aware, Q.AUGMENTED)  # fmt: skip
def teacher_aware(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 9: train and evaluation MSE vs samples, teacher-aware vs agnostic data."""
    fig, axes = panel_grid(1)
    ax = axes[0, 0]
    for (aug, which), line in frame.groupby([S.AUGMENTATION, "set"]):  # one loss per experiment
        kind = S.record(S.AUGMENTATION, aug)
        ax.errorbar(line[S.N_TRAIN], line["mse"], yerr=line["std"].fillna(0), color=kind.color,
                    ls="-" if which == "eval" else "--", marker="o", ms=3, capsize=2, lw=1.2,
                    label=f"{kind.label}, {which}")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="training samples")
    ax.set_ylabel(loss_label(frame[S.LOSS].unique(), S.LOSS), fontsize=7)
    ax.legend(fontsize=6)
    fig.set_size_inches(PANEL * 1.6, PANEL * 1.2)
    return save(fig, stem)


def _real_caption(frame: pd.DataFrame) -> str:
    sets = ", ".join(sorted(frame[S.DATASET].unique()))
    return (
        f"rho_mean per hidden layer over epochs, a line per over-realization, and test accuracy of the "
        f"student (solid) and the pretrained teacher (dashed, whole test split), on {sets}; mean over seeds."
    )


def _real(res) -> pd.DataFrame:
    frame = Q.real_data(res)
    teachers = teacher_accuracy(res)
    if teachers.empty or frame.empty:
        return frame.assign(teacher_accuracy=float("nan"))
    pairs = res.done[[S.DATASET, S.LOAD_TEACHER]].drop_duplicates().merge(teachers, on=S.LOAD_TEACHER)
    return frame.merge(pairs.groupby(S.DATASET, as_index=False)["teacher_accuracy"].mean(), on=S.DATASET, how="left")


@figure(FIGURES, "real_data", "Figure 10: specialization on real images", _real_caption, _real, Q.REAL)
def real_data(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 10: a panel per hidden layer (rho_mean vs epoch) and one of test accuracy, a row per dataset."""
    sets, layers = sorted(frame[S.DATASET].unique()), sorted(frame["layer"].unique())
    fig, axes = panel_grid(len(layers) + 1, rows=len(sets), sharey=False)
    colors = _multi_colors(frame[S.MULTI].unique())
    for row, name in enumerate(sets):
        data = frame[frame[S.DATASET] == name]
        for col, layer in enumerate(layers):
            for multi, line in data[data["layer"] == layer].groupby(S.MULTI):
                axes[row, col].plot(line[S.EPOCH], line["rho_mean"], color=colors[multi], label=f"{multi}x")
            axes[row, col].set(title=f"{name}: layer {layer}", xlabel="epoch", ylabel="rho_mean")
        acc = axes[row, len(layers)]
        for multi, line in data[data["layer"] == layers[0]].groupby(S.MULTI):
            acc.plot(line[S.EPOCH], line["eval_accuracy"], color=colors[multi], label=f"{multi}x")
        teacher = data["teacher_accuracy"].dropna()
        if not teacher.empty:
            acc.axhline(teacher.iloc[0], color="k", ls="--", lw=1, label="teacher")
        acc.set(title=f"{name}: test accuracy", xlabel="epoch", ylabel="accuracy")
        axes[row, 0].legend(fontsize=6, title="multi", title_fontsize=6)
        acc.legend(fontsize=6)
    return save(fig, stem)
