"""What makes stored results trustworthy, in this process: one writer per experiment (the lease, on a
local path and on S3), the ledger of every stored file, a verify that reads every byte and rehashes
every run, and the words a user gets when storage or a sweep.json fails."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_complete, snapshot, tiny_spec

from spec_ray.engine.pack import Pack, checkpoint_steps, id_of_fields, run_id
from spec_ray.engine.spec_io import flat_fields
from spec_ray.orchestration import cli
from spec_ray.orchestration.commandline import resume_command
from spec_ray.orchestration.runner import run_pack
from spec_ray.storage import schema as S
from spec_ray.storage.lease import EXPIRES_S, Lease, LeaseHeld, held_by
from spec_ray.storage.ledger import Ledger
from spec_ray.storage.manifest import LEDGERS, packs_to_dict, write_sweep
from spec_ray.storage.traces import TraceStore, disk_full_message, is_disk_full
from spec_ray.storage.verify import BROKEN, COMPLETE, UNFINISHED, check_pack, strays, verify


def _sweep(tmp_path: Path, name: str = "trust", seeds: int = 2) -> tuple[TraceStore, list[Pack]]:
    """A stored two-pack sweep written as a launch writes it: sweep.json with the ledger mark, then each pack."""
    store = TraceStore(str(tmp_path), name)
    packs = [Pack(tuple(tiny_spec(seed=s, **{"student.multi": m, "train.epochs": 2, "train.iters_per_epoch": 40})
                        for s in range(1, seeds + 1))) for m in (1, 2)]  # fmt: skip
    write_sweep(store, {"version": 2, "name": name, LEDGERS: 1, "block_epochs": 1,
                        "sweep": packs_to_dict(name, packs)})  # fmt: skip
    for pack in packs:
        run_pack(pack, store, block_epochs=1, progress=False)
    return store, packs


def test_a_run_id_is_the_hash_of_its_stored_row() -> None:
    spec = tiny_spec(**{"teacher.p": 1.5, "train.lr": 0.02})
    assert id_of_fields(flat_fields(spec)) == run_id(spec)
    row = {k: v for k, v in flat_fields(spec).items() if k != "student_bn"}  # a table older than a field
    assert id_of_fields(row) == run_id(spec)
    assert id_of_fields({**flat_fields(spec), "p": 0.5}) != run_id(spec)


def test_the_ledger_lists_every_file_and_verify_reads_every_byte(tmp_path: Path) -> None:
    store, packs = _sweep(tmp_path)
    assert [c.state for c in verify(store, packs, True)] == [COMPLETE, COMPLETE]
    ledger = Ledger.load(store, packs[0].pack_id)
    on_disk = {p.relative_to(store.root).as_posix() for p in Path(store.root).glob("*/pack=*/*.parquet")
               if packs[0].pack_id in str(p)}  # fmt: skip
    assert set(ledger.files) == on_disk and len(on_disk) == 1 + 3 * 2  # runs.parquet, 3 tables x 2 blocks
    for rel, w in ledger.files.items():
        assert (
            w.rows == len(pq.read_table(Path(store.root) / rel)) and w.size == (Path(store.root) / rel).stat().st_size
        )
    # one flipped byte anywhere in a file is found, whatever column it hits
    victim = Path(store.root) / sorted(r for r in ledger.files if r.startswith(S.STUDENT_NODES))[-1]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    victim.write_bytes(bytes(raw))
    check = check_pack(store, packs[0], True)
    assert check.state == BROKEN and check.bad_files == [str(victim)]
    assert f"corrupt file {victim}" in check.findings[0].problem


def test_an_edited_run_is_named_with_the_fields_that_changed(tmp_path: Path) -> None:
    """Even where the ledger was made to match the edited file, the run's settings no longer hash to its id."""
    import hashlib

    store, packs = _sweep(tmp_path)
    path = Path(store.file_path(S.RUNS, packs[1].pack_id, "runs.parquet"))
    runs = pq.read_table(path).to_pandas()
    edited = runs[S.RUN_ID].iloc[1]
    ran = flat_fields(dict(zip(packs[1].run_ids, packs[1].runs))[edited])
    runs.loc[1, [S.P, "lr"]] = [0.5, 0.3]
    pq.write_table(pa.Table.from_pandas(runs, schema=pq.read_schema(path), preserve_index=False), path)
    ledger = Ledger.load(store, packs[1].pack_id)
    rel = path.relative_to(store.root).as_posix()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    ledger.files[rel] = ledger.files[rel]._replace(size=path.stat().st_size, sha256=digest)
    ledger.save()
    check = check_pack(store, packs[1], True)
    assert check.state == BROKEN and len(check.findings) == 1
    problem = check.findings[0].problem
    assert problem.startswith(f"run {edited}: stored settings changed after it ran: ")
    assert f"p 0.5 (ran {ran['p']!r})" in problem and f"lr 0.3 (ran {ran['lr']!r})" in problem


def test_unlisted_files_and_foreign_pack_folders_are_named_and_resume_removes_them(tmp_path: Path) -> None:
    store, packs = _sweep(tmp_path)
    folder = Path(store.file_path(S.SCALARS, packs[0].pack_id, "x")).parent
    shutil.copy(sorted(folder.glob("*.parquet"))[0], folder / "steps-copy.parquet")
    foreign = Path(store.table_dir(S.SCALARS)) / "pack=aaaaaaaaaaaa"
    shutil.copytree(folder, foreign)
    checks = verify(store, packs, True)
    assert [c.state for c in checks] == [COMPLETE, COMPLETE]  # the rows are all there, once
    assert checks[0].extra == [str(folder / "steps-copy.parquet")]
    assert strays(store, packs) == [str(foreign)]
    assert cli.main(["verify", store.root]) == 1
    from analysis.load import open_results

    res = open_results(store.root)  # a reader leaves them out
    want = sum(p.size * len(checkpoint_steps(p.spec)) for p in packs)
    assert len(res.read(S.SCALARS, [S.RUN_ID, S.STEP])) == want  # neither the copy nor the foreign pack
    from spec_ray.orchestration.experiment import Experiment
    from spec_ray.orchestration.plan import LaunchRequest, plan

    exp = Experiment(name="trust", base=packs[0].runs[0], axes={"multi": (1, 2), "seed": (1, 2)})
    launch = plan(LaunchRequest(exp, str(tmp_path), resume="yes", given={"block_epochs": 1}))
    assert sorted(launch.strays) == sorted([str(folder / "steps-copy.parquet"), str(foreign)])
    assert not launch.todo
    launch.commit()
    assert not foreign.exists() and not (folder / "steps-copy.parquet").exists()
    assert cli.main(["verify", store.root]) == 0
    assert_complete(store.root, packs)


def test_a_finished_pack_that_lost_its_ledger_is_broken_and_an_older_one_is_decoded(tmp_path: Path) -> None:
    store, packs = _sweep(tmp_path)
    os.remove(Ledger.path_of(store, packs[0].pack_id))
    assert check_pack(store, packs[0], require_ledger=True).state == BROKEN  # this version's sweep: damage
    older = check_pack(store, packs[0], require_ledger=False)  # an older spec-ray's sweep: decoded instead
    assert older.state == COMPLETE and not older.checksums


def test_an_unreadable_sweep_json_exits_2_naming_the_file_and_the_fix(tmp_path: Path, capsys) -> None:
    store, _ = _sweep(tmp_path)
    path = Path(store.root) / "sweep.json"
    path.write_text(path.read_text()[:600])  # cut short
    before = snapshot(store.root)
    assert cli.main(["verify", store.root]) == 2
    err = capsys.readouterr().err
    assert f"error: {path} is unreadable (JSONDecodeError" in err and "restore it from a copy" in err
    from analysis.cli import main as analysis

    assert analysis(["report", store.root, "--out", str(tmp_path / "report")]) == 2
    assert f"{path} is unreadable" in capsys.readouterr().err
    assert snapshot(store.root) == before


def test_one_lease_an_experiment_and_a_dead_holder_frees_it_at_once(tmp_path: Path) -> None:
    store = TraceStore(str(tmp_path), "leased")
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # another launch: takes the lease, then is killed with it held
        try:
            Lease.acquire(store, "python sweeps/polarity.py --smoke")
            os.write(write, b"1")
            time.sleep(120)
        finally:
            os._exit(0)
    assert os.read(read, 1) == b"1"
    with pytest.raises(LeaseHeld, match=rf"being written by pid {child} on host .* \(python sweeps/polarity.py "
                       r"--smoke\): allowed one launch of an experiment at a time; wait for it to end"):  # fmt: skip
        Lease.acquire(store)
    assert held_by(store).pid == child
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    with Lease.acquire(store) as lease:  # the kernel dropped its lock with it
        assert lease.holder.pid == os.getpid() and held_by(store).pid == os.getpid()
        with pytest.raises(LeaseHeld):
            Lease.acquire(store)
    assert not (Path(store.root) / ".lease").exists() and held_by(store) is None
    with Lease.acquire(store):  # given back: free again
        pass


def test_the_s3_lease_is_a_conditional_create_and_a_stale_one_is_taken_over(monkeypatch) -> None:
    """In-process S3 (moto's mock around boto3): If-None-Match creates, If-Match renews and takes over."""
    import dataclasses

    moto = pytest.importorskip("moto")
    import boto3

    from spec_ray.storage import lease as L

    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="bucket1")
        store = TraceStore.__new__(TraceStore)  # the lease needs the URI and name only
        store.storage, store.experiment = "s3://bucket1/root", "exp"

        def record() -> dict:
            return json.loads(client.get_object(Bucket="bucket1", Key="root/exp/.lease")["Body"].read())

        first, holder = L._S3(store), L.me("first launch")
        first.take(holder)
        with pytest.raises(LeaseHeld, match=r"being written by pid .*first launch.*expires at .*delete s3://"):
            L._S3(store).take(L.me("second"))
        first.renew(dataclasses.replace(holder, heartbeat=time.time()))  # its heartbeat
        stale = {**record(), "heartbeat": time.time() - EXPIRES_S - 1}  # then it dies: no heartbeat for long
        client.put_object(Bucket="bucket1", Key="root/exp/.lease", Body=json.dumps(stale).encode())
        third, fourth = L._S3(store), L._S3(store)
        third.take(L.me("third"))  # the stale lease is taken over, by one launch only
        with pytest.raises(LeaseHeld):
            fourth.take(L.me("fourth"))
        assert record()["command"] == "third"
        with pytest.raises(Exception, match="PreconditionFailed|pre-conditions"):
            first.renew(holder)  # the dead one, back: its lease is gone, its renewal refused
        third.give_back(L.me("third"))
        fourth.take(L.me("fourth"))  # free again
        assert record()["command"] == "fourth"


def test_commands_and_paths_are_quoted_for_a_shell(tmp_path: Path, capsys) -> None:
    from spec_ray.orchestration.tune_driver import report_end

    command = resume_command(["--smoke", "--storage", str(tmp_path / "my results")])
    assert command.endswith(f"--smoke --storage '{tmp_path / 'my results'}' --resume")
    store = TraceStore(str(tmp_path / "my results"), "x")
    assert report_end(store, [], 0.0, [], command) == 0
    out = capsys.readouterr().out
    assert f"next:    python -m analysis report '{store.uri}' --out '{store.uri}/report'" in out


def test_a_full_disk_reads_as_one_line_naming_the_storage() -> None:
    err = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise err
        except OSError as inner:
            raise RuntimeError("pyarrow: writing failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert is_disk_full("OSError: [Errno 28] storage='x' is full") and not is_disk_full(ValueError("other"))
    assert disk_full_message("/tmp").startswith("storage='/tmp' is full (") and "--resume" in disk_full_message("/tmp")


@pytest.mark.parametrize("name", [" ", " padded", ""])
def test_a_blank_or_padded_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="experiment=.* is invalid: allowed a non-empty name"):
        TraceStore(str(tmp_path), name)


def test_a_pack_being_trained_again_has_no_extra_files(tmp_path: Path) -> None:
    """A retrained pack's runs say running and its ledger starts anew: the files it will rewrite are not extra."""
    import numpy as np

    from spec_ray.storage.records import runs_table

    store, packs = _sweep(tmp_path)
    ledger = Ledger(store, packs[0].pack_id)
    table = runs_table(packs[0], store.experiment, S.STATUS_RUNNING, 0, np.full(packs[0].size, -1), 0.0, "cpu")
    ledger.add(store.write(S.RUNS, packs[0].pack_id, "runs.parquet", table))
    ledger.save()
    check = check_pack(store, packs[0], True)
    assert check.state == UNFINISHED and check.extra == [] and check.findings == []
