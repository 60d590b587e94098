"""``python -m analysis report``: every figure the data supports, and a claims table, in one folder."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs

from analysis import claims, figures, luck_claims, luck_modulation, queries
from analysis.load import AnalysisError, Results, open_results
from spec_ray.storage import schema as S
from spec_ray.storage import verify
from spec_ray.storage.traces import is_uri, open_storage

# Columns that describe a run but are not an experimental axis.
NOT_AXES = {"run_id", "pack_id", "status", "diverged", "diverged_step", "steps_done", "wall_time_s", S.SEED,
            "state", "final_step", "device", "pack", S.TRAINED_ON}  # fmt: skip


def _if_varies(column: str, query):
    """Run ``query`` only when the done runs vary in ``column`` (else: no data, no figure)."""
    return lambda res: query(res) if res.done[column].nunique() > 1 else pd.DataFrame()


# name, title, caption, query, draw: every figure the report can render.
FIGURES = [
    ("success_rate", "Figure 7: success rate",
     "Success rate over seeds per teacher node (strongest first); dotted after 5 epochs, solid at the end.",
     queries.success_rate, figures.success_rate),
    ("dynamics", "Figure 8: specialization dynamics",
     "Best correlation of each teacher node vs iteration, mean over seeds; blue strongest, red weakest.",
     queries.dynamics, figures.dynamics),
    ("lshape", "Figure 5: specialization vs fan-out norm",
     "Every student node at the end; unspecialized nodes should have small fan-out norms.",
     queries.lshape, figures.lshape),
    ("loss_curves", "Loss curves", "log10 evaluation loss, mean +- std over seeds.",
     queries.loss_curves, figures.loss_curves),
    ("sample_size", "Figure 6: sample size", "rho_mean per layer and evaluation loss vs training samples.",
     _if_varies(S.N_TRAIN, queries.sample_size), figures.sample_size),
    ("teacher_aware", "Figure 9: teacher-aware vs agnostic data",
     "Final train (dashed) and evaluation (solid) MSE vs training samples.",
     _if_varies(S.AUGMENTATION, queries.teacher_aware), figures.teacher_aware),
    ("luck_rho", "Luck Matters figs. 5, 19, 20: rho-bar per layer",
     "Mean over teacher nodes of the best correlation, per layer (0 = lowest), mean over seeds with min/max band; "
     "dashed: a finite training set, solid: infinite data.",
     queries.luck_rho, figures.luck_rho),
    ("luck_rank", "Luck Matters figs. 5, 17, 18: rank of the final winners",
     "The rank of each teacher node's final best student among all students at every epoch (0 = first), mean "
     "(min/max band over seeds; dashed: finite data) and median (dotted) over teacher nodes; 0 at the end by "
     "definition.",
     queries.luck_rank, figures.luck_rank),
    ("luck_size", "Luck Matters fig. 15a: small vs large FC teachers",
     "rho-bar (mean over layers) per FC teacher size, panels per student BN; band min/max over seeds.",
     queries.luck_size, figures.luck_size),
    ("luck_data", "Luck Matters figs. 15b, 20: finite vs infinite data",
     "rho-bar (mean over layers), dashed: the fixed training set, solid: a fresh batch every step.",
     queries.luck_data, figures.luck_data),
    ("luck_beta", "Luck Matters fig. 16: beta* and H* before and after training",
     "One run (no BN, finite data, lowest seed): the top-down modulation beta* and its activity-gated H*, teacher "
     "nodes down, student nodes across, grouped by their final best teacher (gray lines between groups) and by falling "
     "correlation within a group; colors scaled to each panel's largest |entry|.",
     luck_modulation.matrices, figures.luck_beta),
]  # fmt: skip


def configurations(res: Results) -> pd.DataFrame:
    """One row per configuration (the columns that vary across runs): runs by state."""
    axes = [c for c in res.runs.columns if c not in NOT_AXES and res.runs[c].nunique(dropna=False) > 1]
    keys = axes or ["experiment"]
    table = res.runs.groupby(keys + ["state"]).size().unstack("state", fill_value=0)
    for state in ("done", "diverged", "unfinished"):
        if state not in table.columns:
            table[state] = 0
    seeds = res.runs.groupby(keys)[S.SEED].nunique().rename("seeds")
    return table[["done", "diverged", "unfinished"]].join(seeds).reset_index()


def _markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def build_report(path: str, out: Path | str) -> str:
    """Render figures and write ``out/report.md``; ``out`` may be a URI, like storage. Returns the report's path.

    A URI is written through pyarrow.fs: the report is rendered into a local temporary
    folder, then copied, so a figure never lands in a local folder named 's3:'.
    """
    if not is_uri(str(out)):
        return str(_render(path, Path(out)))
    try:
        fs, root = open_storage(str(out))
    except ValueError as err:
        raise AnalysisError(str(err).replace("storage=", "out=", 1)) from None
    res = open_results(path)  # a bad results path fails before anything is written
    with tempfile.TemporaryDirectory() as tmp:
        _render(path, Path(tmp), res)
        try:
            fs.create_dir(root, recursive=True)
            pafs.copy_files(tmp, root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        except OSError as err:
            raise AnalysisError(f"out={str(out)!r} is not writable: {err}") from None
    return f"{str(out).rstrip('/')}/report.md"


def _incomplete(res: Results) -> list[str]:
    """The report's words on packs whose files are short or corrupt, and on folders it could not check."""
    lines = []
    if res.broken:
        lines += ["**Incomplete data** (`python -m spec_ray verify` finds these packs stored as done, but short or "
                  "corrupt; their runs are left out of every figure and claim):", ""]  # fmt: skip
        for check in res.broken:
            head, *found = verify.describe(check)
            lines += [f"- {head}: " + "; ".join(f.strip() for f in found) + f" (runs {', '.join(check.pack.run_ids)})"]
        lines += ["", "Fix: rerun the sweep's command with `--resume`; it trains exactly these packs again.", ""]
    if res.unchecked:
        lines += [f"Not checked (no sweep.json): {', '.join(res.unchecked)}.", ""]
    return lines


def _render(path: str, out: Path, res: Results | None = None) -> Path:
    """The report rendered into a local folder."""
    began = time.perf_counter()
    res = open_results(path) if res is None else res
    for line in res.warnings():  # said where the user looks, besides report.md
        print(line, file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    counts = res.counts()
    sections: list[tuple[str, str, str]] = []  # (title, caption, png file name)
    found = []

    def render(name: str, title: str, caption: str, frame: pd.DataFrame, draw) -> pd.DataFrame:
        if not frame.empty:
            frame.to_csv(out / "data" / f"{name}.csv", index=False)
            draw(frame, out / name)
            sections.append((title, caption, f"{name}.png"))
        return frame

    if counts["done"]:
        threshold = float(res.done[S.SUCCESS_THRESHOLD].iloc[0])
        frames = {name: render(name, title, caption, query(res), draw) for name, title, caption, query, draw in FIGURES}
        success = frames["success_rate"]
        found = [
            claims.claim1(success),
            claims.claim2(queries.seed_success(res)),
            claims.claim3(success, queries.first_success(res)),
            claims.claim4(frames["lshape"], threshold),
            claims.claim5(frames["sample_size"]),
            claims.claim6(frames["teacher_aware"]),
            luck_claims.claim7(frames["luck_rho"]),
            luck_claims.claim8(frames["luck_rank"]),
            luck_claims.claim9(frames["luck_rho"], frames["luck_rank"]),
            luck_claims.claim10(frames["luck_rho"]),
            luck_claims.claim11(queries.in_norm_change(res)),
            luck_claims.claim12(luck_modulation.winner_ranks(res)),
        ]
    text = [
        "# spec-ray report",
        "",
        f"Results: `{path}` ({len(res.roots)} experiment(s): {', '.join(sorted(res.runs['experiment'].unique()))})",
        "",
        f"Runs: **{counts['done']} done**, {counts['diverged']} diverged, {counts['unfinished']} unfinished, "
        f"{counts['incomplete']} incomplete. Figures and claims use done runs only; the others are counted here "
        "and left out.",
        "",
        *_incomplete(res),
        "## Claims",
        "",
        "| # | claim | measured | verdict |",
        "|---|---|---|---|",
        *[f"| {c.number} | {c.text} | {c.evidence} | **{c.verdict}** |" for c in found],
        "",
        "Criteria are in `analysis/claims.py` and docs/protocol.md: strongest/weakest = the first/last "
        f"quarter of teacher nodes; rates within {claims.TOLERANCE} are equal, both >= {1 - claims.TOLERANCE:g} "
        "is a tie; claim 2 is a paired bootstrap over seeds within each p; claim 3 a Spearman correlation > "
        f"{claims.MIN_RANK_CORR}; 'much lower' = under half; unspecialized = best correlation < "
        f"{claims.UNSPECIALIZED_BELOW}. Luck Matters (`analysis/luck_claims.py`): growth = rho-bar up by "
        f">= {luck_claims.GROWTH}; lucky = winners' mean rank at init < {luck_claims.LUCKY_BELOW}; differences "
        f"under {luck_claims.BN_MARGIN} are none; conserved = median relative change < {luck_claims.CONSERVED_BELOW}; "
        f"concentrated = winners' mean rank in H* < {luck_claims.CONCENTRATED_BELOW}.",
        "",
        "## Figures",
        "",
    ]
    for title, caption, png in sections:
        text += [f"### {title}", "", caption, "", f"![{title}]({png})", ""]
    if not sections:
        text += ["No finished runs yet: nothing to draw.", ""]
    text += ["## Runs and configurations", "", _markdown(configurations(res)), ""]
    text += [f"Report built in {time.perf_counter() - began:.1f} s; figure data as CSV in `data/`.", ""]
    report = out / "report.md"
    report.write_text("\n".join(text))
    return report
