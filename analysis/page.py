"""Reports as one self-contained HTML page: figures embedded as data URIs, no script, no network.

``report_page`` is ``python -m analysis report --html``'s page of any experiment; the pieces (``document``,
``figure``, ``claims_table``, ``table``) also make ``reproduce``'s page of a whole paper.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from analysis.verdicts import NO_DATA, NOT_SUPPORTED, SUPPORTED, Claim

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } img { max-width: 100%; border: 1px solid #eee; }
.supported { color: #176317; font-weight: bold; } .not-supported { color: #a11; font-weight: bold; }
.no-data { color: #8a6d00; font-weight: bold; } .note { color: #555; font-size: .92em; }
.summary { background: #f6f8fa; border: 1px solid #dde; padding: .6em 1em; border-radius: 4px; }
figure { margin: 1em 0; } figcaption { color: #444; font-size: .92em; }
"""
VERDICT_CLASS = {SUPPORTED: "supported", NOT_SUPPORTED: "not-supported", NO_DATA: "no-data"}


def esc(text: object) -> str:
    return html.escape(str(text))


def data_uri(png: Path) -> str:
    """A PNG as a data URI: the page opens from disk, alone, with every figure."""
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def document(title: str, body: Iterable[str]) -> str:
    """A whole page: its title, the style, the body's parts in order."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )


def figure(png: Path, title: str, caption: str) -> str:
    return f'<figure><img src="{data_uri(png)}" alt="{esc(title)}"><figcaption>{esc(caption)}</figcaption></figure>'


def verdict(text: str) -> str:
    return f'<span class="{VERDICT_CLASS.get(text, "no-data")}">{esc(text)}</span>'


def claims_table(claims: Iterable[Claim], extra: dict[int, str] | None = None) -> str:
    """One row per claim: number, statement, the numbers measured, the verdict (and ``extra`` by number)."""
    extra = extra or {}
    head = "<tr><th>#</th><th>claim</th><th>measured</th><th>verdict</th>" + ("<th>runs</th>" if extra else "")
    rows = [
        f"<tr><td>{c.number}</td><td>{esc(c.text)}</td><td>{esc(c.evidence)}</td><td>{verdict(c.verdict)}</td>"
        + (f"<td>{esc(extra.get(c.number, ''))}</td>" if extra else "")
        + "</tr>"
        for c in claims
    ]
    return f'<table class="claims">{head}</tr>{"".join(rows)}</table>'


def table(frame: pd.DataFrame, cell=str) -> str:
    """A frame as an HTML table; ``cell(value, column)`` formats each value."""
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(cell(v, c))}</td>" for v, c in zip(row, frame.columns)) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def report_page(content, configurations: pd.DataFrame) -> str:
    """``analysis report --html``: the report of ``content`` (``analysis.report.Content``) as one page."""
    from analysis.report import cell

    res, counts = content.res, content.res.counts()
    names = ", ".join(sorted(res.runs["experiment"].unique()))
    body = [
        f"<h1>spec-ray report: {esc(names)}</h1>",
        f'<p class="summary">Runs: <b>{counts["done"]} done</b>, {counts["diverged"]} diverged, '
        f"{counts['unfinished']} unfinished, {counts['incomplete']} incomplete; figures and claims use done runs "
        f"only. Results: <code>{esc(content.path)}</code>.</p>",
        "<h2>Claims</h2>",
        claims_table(content.claims),
        *[f'<p class="note">{esc(c)}</p>' for c in content.criteria],
        "<h2>Figures</h2>",
    ]
    for s in content.sections:
        body += [f"<h3>{esc(s.title)}</h3>", figure(s.png, s.title, s.caption)]
    if not content.sections:
        body.append("<p>No finished runs yet: nothing to draw.</p>")
    if content.missing:
        body += ["<p>Not shown, for want of data:</p><ul>", *[f"<li>{esc(m)}</li>" for m in content.missing], "</ul>"]
    body += ["<h2>Runs and configurations</h2>", table(configurations, cell)]
    return document(f"spec-ray report: {names}", body)
