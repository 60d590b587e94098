"""A paper within a budget, measured: ``python benchmarks/reproduce.py icml2020 --budget 10m``.

Runs ``python -m spec_ray reproduce PAPER --budget B`` as a user would and prints one JSON line: the budget,
the plan's projected wall time, the measured wall time, their ratios, and each claim's verdict from the
studies' reports (docs/reproduction.md, "One paper, one command", records the runs). Every claim of a
study counts as decided when it is supported or not, not when it lacks data.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the sweeps' declarations, from a checkout
from spec_ray.orchestration.budget import parse_duration  # noqa: E402
from sweeps.papers import PAPERS  # noqa: E402


def verdicts(root: Path, paper: str) -> dict[str, str]:
    """'study:claim' -> verdict, from each study's report.md claims table."""
    out = {}
    for study in PAPERS[paper].studies:
        report = root / paper / study.name / "report" / "report.md"
        if not report.exists():
            continue
        for line in report.read_text().splitlines():
            cells = [c.strip() for c in line.split("|")[1:-1]]
            if len(cells) == 4 and cells[0].isdigit() and int(cells[0]) in study.claims:
                out[f"{study.name}:{cells[0]}"] = cells[3].strip("*")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paper", choices=list(PAPERS))
    parser.add_argument("--budget", default="10m")
    parser.add_argument("--storage", default="results/bench-reproduce")
    args = parser.parse_args()
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "spec_ray", "reproduce", args.paper, "--budget", args.budget,
                           "--storage", args.storage], capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - began
    projected = re.search(r"projected wall \S+ \(([\d,]+) s", done.stderr)
    estimate = float(projected.group(1).replace(",", "")) if projected else float("nan")
    budget = parse_duration(args.budget)
    found = verdicts(Path(args.storage), args.paper)
    decided = sum(v != "not enough data" for v in found.values())
    print(json.dumps({"paper": args.paper, "budget_s": budget, "exit": done.returncode, "wall_s": round(wall, 1),
                      "projected_s": estimate, "wall_over_budget": round(wall / budget, 3),
                      "estimate_over_wall": round(estimate / wall, 3), "verdicts": found, "decided": decided,
                      "claims": len(found)}))  # fmt: skip
    log = Path(args.storage) / args.paper / "reproduce.log"  # the plan's table and the launch's lines, kept
    if log.parent.is_dir():
        log.write_text(done.stderr)
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
