"""Time ``python -m analysis report`` on a synthetic experiment of 10 million trace rows.

The experiment has the polarity sweep's shape, written in the documented schema through
the real writer: m=20, multi {1,2,5,10} x p {0,...,2.5} x 32 seeds (768 runs), 120
checkpoints each. That is 1.8M teacher_nodes rows and 8.3M student_nodes rows. The
report runs in a child process, so its wall time and peak memory (max RSS) are its own.

    python benchmarks/analysis.py             # ~10M rows
    python benchmarks/analysis.py --quick     # ~1M rows, for a smoke test
"""

from __future__ import annotations

import argparse
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
from spec_ray.storage import schema as S  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a tenth of the rows")
    parser.add_argument("--dir", default=None, help="where to write the experiment (default: a temp dir)")
    args = parser.parse_args()
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
