"""What ``reproduce`` prints and writes: the plan as a table, and the paper's page, ``<storage>/<paper>/index.html``.

The page holds, for each study in the paper's order, what the paper shows, our figures, the verdicts of its
claims with the runs behind them, and what the budget cut; then every claim in one table, the provenance,
and links to each experiment's own report. Everything is embedded: it opens from disk, with no network.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from analysis import page as H
from analysis.load import AnalysisError, Results, open_results
from analysis.report import collect, configurations, markdown
from analysis.verdicts import NO_DATA
from spec_ray.orchestration.budget import Plan, duration
from spec_ray.orchestration.schedule import cost_function

__all__ = ["duration", "plan_table", "write"]


def _seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def _claims(numbers: tuple[int, ...]) -> str:
    return ", ".join(map(str, numbers))


def plan_table(found: list, chosen: Plan, budget: float, spent: float) -> str:
    """The plan: one row per study (paper size, planned size, what was cut, estimated time, claims), then
    the studies that do not fit with their cost and command, and the projected wall time."""
    lines = [f"{'study':<28} {'figures':<34} {'paper size':<26} {'planned':<22} {'est.':>7}  claims"]
    later = []
    for e in found:
        cand = e.candidate
        pick = next((p for p in chosen.picks if p.name == e.key), None)
        size = f"{e.paper_runs} runs x {e.epochs} ep" + (f", {_seeds(cand.max_seeds)}" if cand is not None else "")
        name, figs = f"{e.paper.key}/{e.study.name}"[-28:], e.study.figures[:34]
        if pick is not None and pick.seeds is not None:
            runs = sum(p.size for p in pick.packs)
            stored = f", {len(cand.stored)} stored" if cand.stored else ""
            planned = f"{_seeds(pick.seeds)}: {runs} new{stored}" if runs else f"{_seeds(pick.seeds)}, all stored"
            lines.append(
                f"{name:<28} {figs:<34} {size:<26} {planned:<22} {duration(pick.seconds):>7}  {_claims(e.study.claims)}"
            )
            continue
        if cand is None:
            why = f"not on this machine: needs {e.study.needs}; at least {duration(e.floor)} here on its flops"
        elif pick is None:
            why = f"does not fit: at least {duration(e.floor)} on its flops at {_seeds(cand.min_seeds)} (not timed)"
        else:
            why = (
                f"does not fit in what the budget leaves: {duration(pick.min_seconds)} of packs at "
                f"{_seeds(cand.min_seeds)}, besides its report and any teacher to pretrain"
            )
        lines.append(f"{name:<28} {figs:<34} {size:<26} {'-':<22} {'-':>7}  {_claims(e.study.claims)}")
        later.append(f"  {e.study.name}: {why}; run it where it fits: {e.command}")
    cut = [f"{p.name.split('/')[-1]} {p.seeds}" for p in chosen.picks if p.seeds is not None]
    lines.append(f"planned on {chosen.slots} slot(s): seeds {', '.join(cut)}; never fewer epochs than the paper")
    if later:
        lines += ["not planned:", *later]
    total = spent + chosen.wall
    whole = (
        f"; the whole plan, stored runs included, {duration(spent + chosen.whole)}"
        if chosen.whole > chosen.wall + 1
        else ""
    )
    lines.append(
        f"projected wall {duration(total)} ({total:,.0f} s: timing {spent:.0f} s, launch {chosen.wall:,.0f} s)"
        f"{whole}; budget {duration(budget)}"
    )
    return "\n".join(lines)


def _study_report(entry) -> tuple[object | None, str]:
    """The study's own report (report.md and index.html beside its figures), and the words on its runs."""
    folder = Path(entry.root) / entry.study.name
    if not (folder / "runs").is_dir():
        return None, "not run"
    try:
        res = open_results(str(folder))
        beside = [str((Path(entry.root) / name).resolve()) for name in entry.study.judged_with]
        beside = [b for b in beside if (Path(b) / "runs").is_dir()]
        if beside:  # its figures and claims read these studies' runs too, each checked by its sweep.json
            res = Results(path=str(Path(entry.root).resolve()), fs=res.fs, roots=[*res.roots, *beside])
    except AnalysisError as err:
        return None, str(err)
    content = collect(str(folder), folder / "report", res)
    (folder / "report" / "report.md").write_text(markdown(content))
    (folder / "report" / "index.html").write_text(H.report_page(content, configurations(res)))
    done = res.done
    seeds = int(done["seed"].nunique()) if len(done) else 0
    names = ", ".join([entry.study.name, *entry.study.judged_with])
    return content, f"{len(done)} done runs, seeds 1..{seeds}, of experiment(s) {names}"


def write(paper, found: list, chosen: Plan, info: dict[str, str], costs: dict) -> Path:
    """The paper's page; returns its path."""
    cost = cost_function(costs)
    root = Path(found[0].root)
    body = [f"<h1>Reproducing {H.esc(paper.title)}</h1>"]
    rows, provenance, parts, glance = [], [], [], []
    for e in found:
        content, runs = _study_report(e)
        pick = next((p for p in chosen.picks if p.name == e.key), None)
        part = [
            f'<h2 id="{e.study.name}">{H.esc(e.study.figures)}</h2>',
            f"<p><b>The paper.</b> {H.esc(e.study.shows)}</p>",
        ]
        if content is not None:
            for s in sorted(
                (s for s in content.sections if s.name in e.study.shown), key=lambda s: e.study.shown.index(s.name)
            ):
                part.append(H.figure(s.png, s.title, f"{s.title}. {s.caption}"))
            claims = [c for c in content.claims if c.number in e.study.claims]
            part.append(H.claims_table(claims, {c.number: runs for c in claims}))
            rows += [(e.study.name, c) for c in claims]
            part.append(
                f'<p class="note">Its own report: <a href="{e.study.name}/report/index.html">'
                f"{e.study.name}/report/index.html</a> (every figure and claim its runs support).</p>"
            )
        part.append(f"<p><b>Budget.</b> {H.esc(_budget_words(e, pick, cost, content is not None))}</p>")
        parts.append("\n".join(part))
        glance.append(_glance(e, content, runs, pick))
        provenance.append((e.study.name, runs))
    decided = [c for _, c in rows if c.verdict != NO_DATA]
    supported = sum(c.verdict == "supported" for c in decided)
    body.append(
        f'<p class="summary"><b>{len(decided)} of {len(rows)} claim verdicts decided</b>: {supported} '
        f"supported, {len(decided) - supported} not supported, {len(rows) - len(decided)} without enough "
        f"data. Budget {H.esc(info['budget'])}, wall time {H.esc(info['wall'])}, on {H.esc(info['machine'])}."
        " Each section below: what the paper shows, our figure, the verdicts and what the budget cut; "
        "then every claim, the provenance and each experiment's own report.</p>"
    )
    head = "<tr><th>figure</th><th>runs</th><th>claims</th></tr>"
    body += [f'<table class="glance">{head}{"".join(glance)}</table>']
    body += parts
    body += ["<h2>Claims</h2>", _claims_by_study(rows)]
    body += [
        "<h2>Provenance</h2>",
        "<table>",
        *[f"<tr><th>{H.esc(k)}</th><td>{H.esc(v)}</td></tr>" for k, v in info.items()],
        *[f"<tr><th>{H.esc(n)}</th><td>{H.esc(r)}</td></tr>" for n, r in provenance],
        "</table>",
    ]
    out = root / "index.html"
    out.write_text(H.document(f"Reproducing {paper.title}", body))
    return out


def _glance(entry, content, runs: str, pick) -> str:
    """A study's row of the table at the top: its figure (a link to its section), its runs, its verdicts."""
    if content is None:
        least = pick.min_seconds if pick is not None else entry.floor
        cut = f"not planned: about {duration(least)} at its fewest seeds, over the budget"
        what, verdicts = ("not run here: " + entry.study.needs) if entry.candidate is None else cut, "-"
    else:
        what = runs.split(", of experiment")[0]
        what += f" (the paper's: {entry.candidate.max_seeds})" if entry.candidate is not None else ""
        mine = [c for c in content.claims if c.number in entry.study.claims]
        verdicts = ", ".join(f"{c.number} {H.verdict(c.verdict)}" for c in mine) or "-"
    link = f'<a href="#{entry.study.name}">{H.esc(entry.study.figures)}</a>'
    return f"<tr><td>{link}</td><td>{H.esc(what)}</td><td>{verdicts}</td></tr>"


def _claims_by_study(rows: list) -> str:
    head = "<tr><th>study</th><th>#</th><th>claim</th><th>measured</th><th>verdict</th></tr>"
    body = "".join(
        f"<tr><td>{H.esc(s)}</td><td>{c.number}</td><td>{H.esc(c.text)}</td><td>{H.esc(c.evidence)}</td>"
        f"<td>{H.verdict(c.verdict)}</td></tr>"
        for s, c in rows
    )
    return f'<table class="claims">{head}{body}</table>'


def _budget_words(entry, pick, cost, stored: bool) -> str:
    """What the budget cut from the study, and what more budget would add."""
    cand = entry.candidate
    if cand is None:
        return (
            f"Not run here: it needs {entry.study.needs}, and its flops alone take at least "
            f"{duration(entry.floor)} on this machine. Run: {entry.command}."
        )
    if pick is None or pick.seeds is None:
        least = pick.min_seconds if pick is not None else entry.floor
        kept = "Its runs above are kept from an earlier launch; this budget planned no more. " if stored else ""
        return (
            f"{kept}Not planned: at its fewest seeds ({cand.min_seeds}) it takes about {duration(least)}, more "
            f"than the budget left. A budget that large, or: {entry.command}."
        )
    if pick.seeds >= cand.max_seeds:
        return f"Nothing cut: the paper's {cand.max_seeds} seeds, at its length ({entry.epochs} epochs)."
    more = sum(map(cost, cand.packs(cand.max_seeds, new=False))) - sum(map(cost, cand.packs(pick.seeds, new=False)))
    return textwrap.shorten(
        f"{pick.seeds} of the paper's {cand.max_seeds} seeds, at its full length ({entry.epochs} epochs). The "
        f"remaining {cand.max_seeds - pick.seeds} seeds would add about {duration(max(0.0, more))} of pack time "
        "here (divided among the slots); a second reproduce with a larger budget trains only those.",
        width=400,
    )
