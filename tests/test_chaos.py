"""Every fault a careful user can cause, injected into one sweep on a real local Ray and a real (small)
filesystem: a second launch at once, a full disk, flipped bytes, an edited run, SIGTERM. At the end not
one row is lost or stored twice, ``verify`` named every damage, and each fault was undone by one
``--resume``."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_complete, sweep_exit
from test_sweep import stored_packs, sweep

from spec_ray.orchestration.cli import main as spec_ray
from spec_ray.storage import schema as S

pytestmark = pytest.mark.slow  # Ray, processes and a mount: not in the fast tier

NAME = "polarity-smoke"
SCRIPT = Path(__file__).resolve().parents[1] / "sweeps" / "polarity.py"
ARGS = ["--smoke", "--multi", "1", "2", "4", "--epochs", "4", "--iters-per-epoch", "400", "--block-epochs", "1"]


@pytest.fixture
def disk(tmp_path: Path):
    """A 64 MiB tmpfs: a real filesystem that can be filled, then given back its space."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"the chaos test mounts a tmpfs (it runs as root in CI): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _wait(what, timeout: float = 120.0, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what.__doc__}")


def _done_packs(root: Path) -> set[str]:
    """Packs whose runs.parquet says done."""
    out = set()
    for path in root.glob(f"{S.RUNS}/pack=*/runs.parquet"):
        try:
            if (pd.read_parquet(path)[S.STATUS] == S.STATUS_DONE).all():
                out.add(path.parent.name.partition("=")[2])
        except Exception:  # noqa: BLE001 - a file being replaced right now
            continue
    return out


def _fill(mount: Path) -> Path:
    """Take every free byte of the filesystem."""
    filler = mount / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    return filler


def test_one_sweep_survives_every_fault_with_every_row_once(disk: Path, capsys) -> None:
    storage = str(disk)
    root = disk / NAME
    args = [*ARGS, "--storage", storage]

    # 1. Two launches at once: the second is refused, naming the first; nothing of it is written.
    first = sweep("polarity", *args, background=True)

    def leased() -> bool:
        """the first launch to take its lease"""
        return (root / ".lease").exists() and (root / ".lease").read_text().startswith("{")

    _wait(leased)
    second = sweep_exit(SCRIPT, [*args, "--resume", "auto"])  # in this process: refused before Ray, in a second
    said = capsys.readouterr().err
    assert second == 2 and f"is being written by pid {first.pid} on host" in said and "Traceback" not in said

    # 2. A full disk while the first launch trains: it stops with one message, no traceback.
    def one_done() -> set[str]:
        """a pack of the first launch to finish"""
        return _done_packs(root)

    done = _wait(one_done, timeout=180, every=0.05)
    filler = _fill(disk)
    out, _ = first.communicate(timeout=180)
    assert first.returncode == 1, out[-3000:]
    assert f"error: storage='{storage}' is full (" in out and "Traceback" not in out, out[-3000:]
    assert "resume:  python " in out and out.rstrip().endswith("--resume")
    assert not list(root.rglob(".tmp-probe-*"))
    assert 1 <= len(done) <= len(_done_packs(root)) < 3  # it stopped before the end
    filler.unlink()  # space freed: one --resume finishes it
    resumed = sweep("polarity", *args, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    packs = stored_packs(root)
    assert_complete(str(root), packs)
    assert spec_ray(["verify", str(root)]) == 0

    # 3. Flipped bytes in one pack's file, an edited run in another's table, a copy of a block beside it
    #    and a folder of a pack sweep.json does not hold: verify names each.
    flipped_pack, edited_pack = packs[0].pack_id, packs[1].pack_id
    victim = sorted((root / S.STUDENT_NODES / f"pack={flipped_pack}").glob("*.parquet"))[2]
    raw = bytearray(victim.read_bytes())
    for i in range(8):
        raw[len(raw) // 2 + i] ^= 0xFF
    victim.write_bytes(bytes(raw))
    runs_file = root / S.RUNS / f"pack={edited_pack}" / "runs.parquet"
    table = pq.read_table(runs_file).to_pandas()
    edited_run = table[S.RUN_ID].iloc[0]
    table.loc[0, S.P] = 0.5
    pq.write_table(pa.Table.from_pandas(table, schema=pq.read_schema(runs_file), preserve_index=False), runs_file)
    spare = sorted((root / S.SCALARS / f"pack={packs[2].pack_id}").glob("*.parquet"))[0]
    shutil.copy(spare, spare.parent / "steps-copy.parquet")
    shutil.copytree(root / S.SCALARS / f"pack={packs[2].pack_id}", root / S.SCALARS / "pack=000000000000")
    said = io.StringIO()
    with redirect_stdout(said):
        assert spec_ray(["verify", str(root)]) == 1
    said = said.getvalue()
    assert f"corrupt file {victim}" in said
    assert f"run {edited_run}: stored settings changed after it ran: p 0.5" in said
    assert f"extra file {spare.parent / 'steps-copy.parquet'}: listed by no pack" in said
    assert f"stray {root / S.SCALARS / 'pack=000000000000'}" in said
    assert "2 pack(s) incomplete, 2 file(s) or folder(s) listed by no pack" in said

    # 4. SIGTERM during the repair: one line with the command that finishes it; the packs keep their checkpoints.
    kept = {p: p.stat().st_mtime_ns for p in (root / S.SCALARS / f"pack={packs[2].pack_id}").glob("steps-0*")}
    repair = sweep("polarity", *args, "--resume", background=True)

    def retraining() -> bool:
        """the repair to begin training a damaged pack again"""
        return not {flipped_pack, edited_pack} <= _done_packs(root)

    _wait(retraining, timeout=120, every=0.05)
    time.sleep(0.5)
    repair.send_signal(signal.SIGTERM)
    out, _ = repair.communicate(timeout=120)
    assert repair.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "stopped by SIGTERM: every pack keeps its last checkpoint" in out and "Traceback" not in out, out[-3000:]
    assert "Tuner.restore" not in out and out.rstrip().endswith("--resume")

    # 5. One more --resume: every row once, every damage undone, nothing unlisted left.
    final = sweep("polarity", *args, "--resume")
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert spec_ray(["verify", str(root)]) == 0
    assert_complete(str(root), packs)
    assert not (root / S.SCALARS / "pack=000000000000").exists() and not (spare.parent / "steps-copy.parquet").exists()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the undamaged pack was not trained again
    runs = pd.read_parquet(root / S.RUNS)
    assert len(runs) == 12 and runs[S.RUN_ID].is_unique and sorted(runs[S.P].unique()) == [0.0, 2.0]
    assert not (root / ".lease").exists() and os.listdir(disk) == [NAME]


def test_read_only_storage_is_named_as_such(disk: Path, capsys) -> None:
    """A read-only mount (a snapshot, an exported results folder) is named for what it is, not as a missing
    permission, and the launch exits 2 with nothing written."""
    (disk / "kept").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    code = sweep_exit(SCRIPT, ["--smoke", "--storage", str(disk / "kept"), "--multi", "1", "--p", "0"])
    err = capsys.readouterr().err
    assert (
        code == 2 and f"storage='{disk / 'kept'}' is not writable: {disk / 'kept'} is on a read-only filesystem" in err
    )
    assert os.listdir(disk) == ["kept"] and not os.listdir(disk / "kept")
