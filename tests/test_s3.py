"""A sweep on S3-compatible storage: moto's server on 127.0.0.1 stands in for S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from conftest import assert_complete
from test_sweep import sweep

from spec_ray.storage import schema as S
from spec_ray.storage.manifest import packs_from_dict

pytestmark = pytest.mark.slow  # Ray, processes or servers: not in the fast tier

ROOT = Path(__file__).resolve().parents[1]
STORAGE = "s3://bucket/spec-ray"


def _with(env: dict) -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env


def _files(env: dict, prefix: str) -> list[str]:
    """Every object under ``prefix`` as the given client sees it."""
    old = dict(os.environ)
    os.environ.update(env)
    try:
        fs, path = pafs.FileSystem.from_uri(prefix)
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_smoke_sweep_lands_every_row_once_in_s3_and_the_report_reads_it_back(s3_server) -> None:
    good = s3_server["good"]
    proc = sweep("polarity", "--smoke", "--storage", STORAGE, env=good, own_ray=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    root = f"{STORAGE}/polarity-smoke"
    files = _files(good, root)
    assert any(f.endswith("/sweep.json") for f in files) and any("/tune/" in f for f in files)
    old = dict(os.environ)
    os.environ.update(good)
    try:
        fs, path = pafs.FileSystem.from_uri(f"{root}/sweep.json")
        with fs.open_input_stream(path) as f:
            packs = packs_from_dict(json.loads(f.read())["sweep"])
        assert_complete(root, packs)  # all four tables, every row exactly once
    finally:
        os.environ.clear()
        os.environ.update(old)
    analysis = [sys.executable, "-m", "analysis"]
    report = subprocess.run([*analysis, "report", root], capture_output=True, text=True, env=_with(good), timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    written = _files(good, f"{root}/report")
    assert any(f.endswith("report.md") for f in written) and any(f.endswith(".png") for f in written)
    sql = "select count(*) as n from runs"
    query = subprocess.run([*analysis, "query", root, sql], capture_output=True, text=True, env=_with(good), timeout=99)
    assert query.returncode == 0 and str(sum(p.size for p in packs)) in query.stdout, query.stderr[-2000:]
    # A lost object is found on S3: verify names the pack (tests/test_sweep.py retrains one locally).
    verify = [sys.executable, "-m", "spec_ray", "verify", root]
    lost = packs[0].pack_id
    old = dict(os.environ)
    os.environ.update(good)
    try:
        fs, _ = pafs.FileSystem.from_uri(root)
        for f in _files(good, root):
            if f"/{S.TEACHER_NODES}/pack={lost}/" in f:
                fs.delete_file(f)
    finally:
        os.environ.clear()
        os.environ.update(old)
    check = subprocess.run(verify, capture_output=True, text=True, env=_with(good), timeout=120)
    assert check.returncode == 1 and f"pack {lost}" in check.stdout and "missing" in check.stdout, check.stdout
    assert "Traceback" not in check.stderr


def test_bad_credentials_exit_2_before_any_training(s3_server) -> None:
    before = _files(s3_server["good"], STORAGE)
    proc = sweep(
        "polarity", "--smoke", "--storage", STORAGE, "--name", "denied", env=s3_server["bad"], timeout=60, own_ray=True
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "storage='s3://bucket/spec-ray' is not writable" in proc.stderr and "Traceback" not in proc.stderr
    assert "ACCESS_DENIED" in proc.stderr or "SIGNATURE_DOES_NOT_MATCH" in proc.stderr  # the reason, from S3
    assert _files(s3_server["good"], STORAGE) == before
