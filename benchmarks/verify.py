"""Time ``python -m spec_ray verify`` on one stored experiment two ways, side by side in one run: by its
ledgers (every byte against its SHA-256, every run rehashed, rows counted from the ledger), and decoded
whole, as a pack an older spec-ray wrote is checked (every column of every file, the keys counted).

The experiment is written by the real trainer and writer (``runner.run_pack``): Luck Matters' large FC
with every correlation kept, as ``sweeps/luck_matters.py`` keeps them, with and without BN, a short
schedule. Each verify runs in a process of its own, alternated; its wall time and peak memory are its own.

    python benchmarks/verify.py            # large FC: 2 packs x 3 runs, about 17 M correlation rows
    python benchmarks/verify.py --quick    # the small FC: a smoke test
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from benchmarks.luck_data import list_packs  # noqa: E402
from spec_ray.engine.specs.protocols import LUCK_FC_LARGE, LUCK_FC_SMALL  # noqa: E402
from spec_ray.engine.training.pack import Pack  # noqa: E402
from spec_ray.orchestration.runner import run_pack  # noqa: E402
from spec_ray.storage import schema as S  # noqa: E402
from spec_ray.storage.ledger import FOLDER  # noqa: E402
from spec_ray.storage.manifest import LEDGERS, SWEEP_FILE  # noqa: E402
from spec_ray.storage.summaries import matrices_to_long  # noqa: E402
from spec_ray.storage.traces import TraceStore  # noqa: E402

# Peak memory as the process's own high-water mark (VmHWM): ru_maxrss would carry over the parent's,
# which trained the experiment, across the child's exec (measured: 1.49 GiB for a verify of 0.3).
CHILD = """
import re, sys, time
from spec_ray.orchestration.cli import main
began = time.perf_counter()
code = main(["verify", sys.argv[1]])
kib = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(f"code={code} seconds={time.perf_counter() - began:.2f} peak_gib={kib / 2**20:.2f}")
"""


def write(storage: str, quick: bool) -> TraceStore:
    """The experiment, trained and written as a sweep writes it: sweep.json with the ledgers' mark, then each pack."""
    base = (LUCK_FC_SMALL if quick else LUCK_FC_LARGE).replace(**{
        "data.n_train": 2_000, "train.epochs": 2 if quick else 8, "train.iters_per_epoch": 10,
        "checkpoint.keep_correlations": True})  # fmt: skip
    packs = [Pack(tuple(base.replace(**{"seed": s, "student.student_bn": bn}) for s in (1, 2, 3)))
             for bn in ("none", "after_relu")]  # fmt: skip
    store = TraceStore(storage, "verify-bench")
    list_packs(store, packs)
    for pack in packs:
        run_pack(pack, store, progress=False)
    return store


def older(store: TraceStore) -> str:
    """A copy as an older spec-ray left it: no ledgers, no mark in sweep.json, its correlations in the long
    layout and no winner ranks (spec-ray before 0.2)."""
    copy = Path(store.root).with_name("verify-bench-older")
    shutil.copytree(store.root, copy)
    shutil.rmtree(copy / FOLDER)
    shutil.rmtree(copy / S.WINNER_RANKS)
    for path in sorted((copy / S.CORR_MATRICES).rglob("*.parquet")):
        long = copy / S.CORRELATIONS / path.relative_to(copy / S.CORR_MATRICES)
        long.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(matrices_to_long(pq.read_table(path, partitioning=None)), long)
    shutil.rmtree(copy / S.CORR_MATRICES)
    meta = json.loads((copy / SWEEP_FILE).read_text())
    meta.pop(LEDGERS)
    (copy / SWEEP_FILE).write_text(json.dumps(meta))
    return str(copy)


def timed(path: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, cwd=ROOT, check=True)
    fields = dict(kv.split("=") for kv in out.stdout.strip().splitlines()[-1].split())
    if fields["code"] != "0":
        sys.exit(f"verify of {path} failed:\n{out.stdout}")
    return {k: float(v) for k, v in fields.items() if k != "code"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small FC: a smoke test")
    parser.add_argument("--repeat", type=int, default=2, help="alternations of the two ways (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        store = write(tmp, args.quick)
        plain = older(store)
        size = sum(p.stat().st_size for p in Path(store.root).rglob("*") if p.is_file())
        print(f"experiment: {size / 2**20:.0f} MiB, written in {time.perf_counter() - clock:.0f} s")
        runs: dict[str, list[dict[str, float]]] = {"ledger": [], "decode": []}
        for _ in range(args.repeat):
            runs["ledger"].append(timed(store.root))
            runs["decode"].append(timed(plain))
        for way, got in runs.items():
            print(f"verify by {way}: " + ", ".join(f"{r['seconds']:.2f} s / {r['peak_gib']:.2f} GiB" for r in got))
        best = {way: min(r["seconds"] for r in got) for way, got in runs.items()}
        peak = {way: max(r["peak_gib"] for r in got) for way, got in runs.items()}
        print(f"verify_ledger_seconds={best['ledger']:.2f} verify_decode_seconds={best['decode']:.2f} "
              f"ledger_peak_gib={peak['ledger']:.2f} decode_peak_gib={peak['decode']:.2f} "
              f"speedup={best['decode'] / best['ledger']:.1f} mib={size / 2**20:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
