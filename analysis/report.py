"""``python -m analysis report``: every figure the data supports, and a claims table, in one folder."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs

from analysis import icml, luck
from analysis.load import AnalysisError, Results, open_results
from analysis.registry import Paper, frame
from analysis.verdicts import NO_DATA, Claim
from spec_ray.storage import schema as S
from spec_ray.storage import verify
from spec_ray.storage.traces import is_uri, open_storage

# Columns that describe a run but are not an experimental axis.
NOT_AXES = {"run_id", "pack_id", "status", "diverged", "diverged_step", "steps_done", "wall_time_s", S.SEED,
            "state", "final_step", "root", "device", "pack", S.TRAINED_ON}  # fmt: skip

PAPERS: tuple[Paper, ...] = (icml.PAPER, luck.PAPER)
"""Every paper whose figures and claims the report can render, in the report's order."""


def configurations(res: Results) -> pd.DataFrame:
    """One row per configuration (the columns that vary across runs): runs by state."""
    axes = [c for c in res.runs.columns if c not in NOT_AXES and res.runs[c].nunique(dropna=False) > 1]
    keys = axes or ["experiment"]
    table = res.runs.groupby(keys + ["state"], dropna=False).size().unstack("state", fill_value=0)
    for state in ("done", "diverged", "unfinished"):
        if state not in table.columns:
            table[state] = 0
    seeds = res.runs.groupby(keys, dropna=False)[S.SEED].nunique().rename("seeds")
    return table[["done", "diverged", "unfinished"]].join(seeds).reset_index()


def cell(value: object, column: str = "") -> str:
    """A table cell: numbers compactly, infinite data's training set as 'infinite', other gaps as '-'."""
    if value is None or (isinstance(value, float) and value != value):
        return "infinite" if column == S.N_TRAIN else "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v, c) for v, c in zip(row, cols)) + " |")
    return "\n".join(lines)


def build_report(path: str, out: Path | str, html: bool = False) -> str:
    """Render figures and write ``out/report.md`` (and ``out/index.html``, one self-contained page, with
    ``html``); ``out`` may be a URI, like storage. Returns the report's path.

    A URI is written through pyarrow.fs: the report is rendered into a local temporary
    folder, then copied, so a figure never lands in a local folder named 's3:'.
    """
    if not is_uri(str(out)):
        return str(_render(path, Path(out), html=html))
    try:
        fs, root = open_storage(str(out))
    except ValueError as err:
        raise AnalysisError(str(err).replace("storage=", "out=", 1)) from None
    res = open_results(path)  # a bad results path fails before anything is written
    with tempfile.TemporaryDirectory() as tmp:
        written = _render(path, Path(tmp), res, html)
        try:
            fs.create_dir(root, recursive=True)
            pafs.copy_files(tmp, root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        except OSError as err:
            raise AnalysisError(f"out={str(out)!r} is not writable: {err}") from None
    return f"{str(out).rstrip('/')}/{written.name}"


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


@dataclass
class Section:
    """One drawn figure: its registered name, title, caption and PNG."""

    name: str
    title: str
    caption: str
    png: Path


@dataclass
class Content:
    """What a report holds, before it is written as Markdown or HTML (``collect``)."""

    path: str
    res: Results
    sections: list[Section]
    claims: list[Claim]
    missing: list[str]
    """Figures and claims not shown, each with what it needs."""
    criteria: list[str]
    """Each paper's criteria paragraph, for papers with a claim decided here."""
    seconds: float = 0.0


def collect(path: str, out: Path, res: Results | None = None) -> Content:
    """Every figure the data supports drawn into ``out``, with its data in ``out/data``, and every claim judged."""
    began = time.perf_counter()
    res = open_results(path) if res is None else res
    for line in res.warnings():  # said where the user looks, besides report.md
        print(line, file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    content = Content(path, res, [], [], [], [])
    if not res.counts()["done"]:
        return content
    for paper in PAPERS:
        decided = False
        for fig in paper.figures:
            view = fig.needs.select(res)
            data = frame(view, fig.query) if view is not None else pd.DataFrame()
            if data.empty:
                content.missing.append(f"{fig.name} ({fig.needs.describe()})")
                continue
            data.to_csv(out / "data" / f"{fig.name}.csv", index=False)
            fig.draw(data, out / fig.name)
            content.sections.append(Section(fig.name, fig.title, fig.caption_for(data), out / f"{fig.name}.png"))
        for check in paper.claims:
            view = check.needs.select(res)
            if view is None:
                content.missing.append(f"claim {check.number} ({check.needs.describe()})")
                continue
            content.claims.append(check.judge(view))
            decided |= content.claims[-1].verdict != NO_DATA
        if decided:  # a paper's thresholds where one of its claims was decided on these runs
            content.criteria.append(f"{paper.criteria} {paper.seeds_and_noise}")
    content.seconds = time.perf_counter() - began
    return content


def _render(path: str, out: Path, res: Results | None = None, html: bool = False) -> Path:
    """The report rendered into a local folder: report.md, and index.html with ``html``."""
    content = collect(path, out, res)
    report = out / "report.md"
    report.write_text(markdown(content))
    if html:
        from analysis.page import report_page

        (out / "index.html").write_text(report_page(content, configurations(content.res)))
        return out / "index.html"
    return report


def markdown(content: Content) -> str:
    """The report as Markdown, its figures linked beside it."""
    res, counts = content.res, content.res.counts()
    text = [
        "# spec-ray report",
        "",
        f"Results: `{content.path}` ({len(res.roots)} experiment(s): "
        f"{', '.join(sorted(res.runs['experiment'].unique()))})",
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
        *[f"| {c.number} | {c.text} | {c.evidence} | **{c.verdict}** |" for c in content.claims],
        "",
        *[line for c in content.criteria for line in (c, "")],
        "## Figures",
        "",
    ]
    for section in content.sections:
        text += [f"### {section.title}", "", section.caption, "", f"![{section.title}]({section.png.name})", ""]
    if not content.sections:
        text += ["No finished runs yet: nothing to draw.", ""]
    if content.missing:
        text += ["Not shown, for want of data:", "", *[f"- {m}" for m in content.missing], ""]
    text += ["## Runs and configurations", "", _markdown(configurations(res)), ""]
    text += [f"Report built in {content.seconds:.1f} s; figure data as CSV in `data/`.", ""]
    return "\n".join(text)
