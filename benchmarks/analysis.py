"""Time ``python -m analysis report`` on a synthetic experiment of 10 million trace rows, or (``--luck``) the
read side of a Luck Matters experiment of the 40-run reproduction's size.

The experiment has the polarity sweep's shape, written in the documented schema through
the real writer: m=20, multi {1,2,5,10} x p {0,...,2.5} x 32 seeds (768 runs), 120
checkpoints each. That is 1.8M teacher_nodes rows and 8.3M student_nodes rows. The
report runs in a child process, so its wall time and peak memory (max RSS) are its own.

    python benchmarks/analysis.py             # ~10M rows
    python benchmarks/analysis.py --quick     # ~1M rows, for a smoke test
    python benchmarks/analysis.py --luck      # 10, 20 and 40 Luck Matters runs (344 M correlations at 40)

``--luck`` writes the runs through the trainer's writer (``benchmarks/luck_data.py``) in whole packs,
and after 10, 20 and 40 runs times, each in a fresh process with its own peak memory (max RSS):
opening the results, ``verify``, the report, and a DuckDB query of the winners' ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds

# This file's name would shadow the analysis package when run as a script; the repository
# root makes benchmarks.synthetic importable.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from benchmarks.synthetic import write_experiment  # noqa: E402
from spec_ray.engine.training.pack import checkpoint_steps  # noqa: E402
from spec_ray.storage import schema as S  # noqa: E402

RANKS_SQL = ("SELECT r.student_bn, w.layer, w.step, avg(w.mean_rank) AS mean_rank FROM winner_ranks w "
             "JOIN runs r USING (run_id) GROUP BY ALL ORDER BY ALL")  # fmt: skip


def measure(what: str, path: str) -> None:
    """Run one read in this process and print its seconds and peak memory as one JSON line (VmHWM: this
    process's own; ru_maxrss would carry the writer's over exec)."""
    t = time.perf_counter()
    if what == "open":
        from analysis.load import open_results

        open_results(path)
    elif what == "verify":
        from spec_ray.orchestration.cli import main as cli

        if cli(["verify", path]) != 0:
            sys.exit("verify failed")
    elif what == "report":
        from analysis.report import build_report

        build_report(path, os.path.join(path, "report"))
    elif what == "query":
        from analysis.cli import query_frame

        query_frame(path, RANKS_SQL)
    seconds = time.perf_counter() - t
    status = Path("/proc/self/status").read_text().splitlines()
    peak = int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 2**20  # KiB
    print(json.dumps({"what": what, "seconds": round(seconds, 2), "peak_gib": round(peak, 2)}))


def folder_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def luck(args: argparse.Namespace) -> None:
    """Write the Luck experiment in whole packs; after 10, 20 and 40 runs, time every read."""
    from benchmarks.luck_data import list_packs, luck_packs, write_pack
    from spec_ray.storage.traces import TraceStore

    packs = luck_packs()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store = TraceStore(tmp, "luck")
        done: list = []
        rows = []
        for stage in args.runs:
            t = time.perf_counter()
            while sum(p.size for p in done) < stage and len(done) < len(packs):
                write_pack(store, packs[len(done)], seed=len(done))
                done.append(packs[len(done)])
            list_packs(store, done)
            written = time.perf_counter() - t
            runs = sum(p.size for p in done)
            corrs = sum(p.size * len(checkpoint_steps(p.spec)) * sum(
                m * n for m, n in zip(p.spec.teacher.widths, p.spec.student_widths)) for p in done)  # fmt: skip
            size = folder_bytes(store.root) - folder_bytes(os.path.join(store.root, "report"))
            line = {"runs": runs, "correlations": corrs, "bytes_per_correlation": round(size / corrs, 3),
                    "written_s": round(written, 1)}  # fmt: skip
            for what in ("open", "verify", "report", "query"):
                cmd = [sys.executable, __file__, "--measure", what, store.root]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(proc.stderr[-3000:])
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                line[f"{what}_s"], line[f"{what}_gib"] = got["seconds"], got["peak_gib"]
            print(json.dumps(line), flush=True)
            rows.append(line)
        first, last = rows[0], rows[-1]
        for what in ("open", "verify", "report", "query"):
            grew = last[f"{what}_s"] / max(first[f"{what}_s"], 1e-9)
            print(f"{what}: {first['runs']} -> {last['runs']} runs: time x{grew:.2f}, "
                  f"peak memory x{last[f'{what}_gib'] / first[f'{what}_gib']:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a tenth of the rows")
    parser.add_argument("--dir", default=None, help="where to write the experiment (default: a temp dir)")
    parser.add_argument("--luck", action="store_true", help="the Luck Matters read side at 10, 20 and 40 runs")
    parser.add_argument("--runs", type=int, nargs="+", default=[10, 20, 40], help="--luck: the stages, in runs")
    parser.add_argument("--measure", nargs=2, metavar=("WHAT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(*args.measure)
    if args.luck:
        return luck(args)
    seeds = tuple(range(1, 5 if args.quick else 33))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        t = time.perf_counter()
        write_experiment(tmp, "bench", ps=(0.0, 0.5, 1.0, 1.5, 2.0, 2.5), multis=(1, 2, 5, 10), seeds=seeds,
                         m=20, epochs=111, iters=1000)  # fmt: skip
        written = time.perf_counter() - t
        rows = {t: ds.dataset(f"{tmp}/bench/{t}", partitioning="hive").count_rows() for t in S.TABLES}
        trace_rows = rows[S.TEACHER_NODES] + rows[S.STUDENT_NODES]
        print(f"synthetic experiment: {rows[S.RUNS]} runs, {trace_rows:,} teacher+student rows "
              f"({rows[S.TEACHER_NODES]:,} + {rows[S.STUDENT_NODES]:,}), {rows[S.SCALARS]:,} scalars; "
              f"written in {written:.1f} s")  # fmt: skip
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "analysis", "report", f"{tmp}/bench", "--out", f"{tmp}/report"],
                              capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t
        if proc.returncode:
            sys.exit(proc.stderr)
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
        figures = sorted(p.name for p in Path(f"{tmp}/report").glob("*.png"))
        print(f"report: {wall:.1f} s, peak memory {peak_gib:.2f} GiB, figures: {', '.join(figures)}")
        print(f"report_seconds={wall:.1f} peak_gib={peak_gib:.2f} rows={trace_rows}")


if __name__ == "__main__":
    main()
