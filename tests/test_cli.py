"""``python -m spec_ray run``: the smoke job end to end, and bad input exits 2 touching nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import snapshot

from spec_ray.engine.pack import checkpoint_steps
from spec_ray.engine.protocols import RUN_SMOKE
from spec_ray.orchestration.cli import main, run_experiment
from spec_ray.orchestration.commandline import command_parser as build_parser
from spec_ray.storage import schema as S


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spec_ray", "run", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """The smoke job through the command's own ``main``, in this process (the real one: ``test_the_real_process_*``)."""
    out = tmp_path_factory.mktemp("cli")
    assert main(["run", "--smoke", "--out", str(out / "results"), "--no-progress"]) == 0
    return out / "results"


def test_smoke_job_writes_every_checkpoint_of_every_run(smoke: Path) -> None:
    (pack,) = run_experiment(build_parser().parse_args(["run", "--smoke"]))[0].packs()
    assert pack.size == 12 and pack.group_size == 3  # 4 seeds x p in {0, 1, 2}
    ckpts = len(checkpoint_steps(pack.spec))
    counts = {t: len(pd.read_parquet(smoke / "smoke" / t)) for t in S.TABLES}
    assert counts == {
        S.RUNS: 12,
        S.SCALARS: 12 * ckpts,
        S.TEACHER_NODES: 12 * ckpts * 10,
        S.STUDENT_NODES: 12 * ckpts * 50,
    }
    runs = pd.read_parquet(smoke / "smoke" / S.RUNS)
    assert (runs[S.STATUS] == "done").all() and sorted(runs["p"].unique()) == [0.0, 1.0, 2.0]
    assert (runs["iters_per_epoch"] == RUN_SMOKE.settings["train.iters_per_epoch"]).all()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--multi", "0"], "student.multi"),
        (["--p", "0", "-1"], "teacher.p"),
        (["--loss", "hinge"], "train.loss"),
        (["--augmentation", "flip"], "data.augmentation"),
        (["--lr", "nan"], "train.lr"),
        (["--n-train", "4"], "data.n_train"),
        (["--seeds", "0"], "seeds"),
        (["--p", "1", "1"], "p"),
        (["--train-every-epochs", "-2"], "checkpoint.train_every_epochs"),
        (["--train-every-epochs", "often"], "--train-every-epochs"),
        (["--epochs", "two"], "--epochs"),
        (["--name", "../x"], "experiment"),
        (["--iters-per-epoch", "none", "--online"], "train.iters_per_epoch"),
        (["--normalize", "rows"], "teacher.normalize"),
        (["--seeds", "100000000"], "seeds"),
        (["--epochs", "1000000000000"], "train.epochs"),
        (["--name", ""], "experiment"),
        (["--student-bn", "after_relu", "--batch", "1"], "train.batch=1 is invalid: allowed at least 2"),
        (["--leaky-slope", "1.5"], "model.leaky_slope=1.5 is invalid: allowed a number in [0, 1)"),
        (["--arch", "conv", "--widths", "4", "4", "4", "4", "4"], "teacher.widths=(4, 4, 4, 4, 4) is invalid"),
        (["--arch", "conv", "--d", "50"], "data.d=50 is invalid: allowed model.image_size^2 = 100"),
        (["--momentum", "1"], "train.momentum=1.0 is invalid: allowed a number in [0, 1)"),
        (["--optimizer", "adam", "--momentum", "0.9"], "train.momentum=0.9 is invalid: allowed 0 with"),
        (["--student-bn", "yes"], "student.student_bn='yes' is invalid: allowed one of none, after_relu"),
        (["--init-seed", "-1"], "init_seed=-1 is invalid"),
    ],
)
def test_bad_input_exits_2_and_touches_nothing(smoke: Path, args: list[str], field: str, capsys, amd_switch) -> None:
    """Through the command's own ``main``, in this process (``test_unwritable_storage_exits_2``
    runs the real process), with MKL's switch on as on AMD: nothing may exec (conftest)."""
    before = snapshot(smoke)
    try:
        code = main(["run", "--smoke", "--out", str(smoke), "--no-progress", *args])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert field in err and ("allowed" in err or "invalid" in err)
    assert len(err.strip().splitlines()) <= 3  # one message, not a traceback
    assert snapshot(smoke) == before


@pytest.mark.slow  # the real processes
def test_the_real_process_trains_and_refuses_unwritable_storage(tmp_path: Path) -> None:
    proc = run_cli("--smoke", "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "results"), "--no-progress",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0 and "results/smoke" in proc.stdout, proc.stderr
    assert len(pd.read_parquet(tmp_path / "results" / "smoke" / S.RUNS)) == 3
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_cli("--smoke", "--out", str(blocker / "results"), cwd=tmp_path)
    assert proc.returncode == 2 and f"{blocker} is a file, not a folder" in proc.stderr, proc.stderr
    assert blocker.read_text() == "not a directory" and not os.path.exists(blocker / "results")


def test_every_flag_of_every_entry_point_has_help() -> None:
    import argparse

    from analysis.cli import build_parser as analysis_parser
    from spec_ray.engine.protocols import DEEP
    from spec_ray.orchestration.commandline import sweep_parser
    from spec_ray.orchestration.experiment import Experiment

    def actions(parser: argparse.ArgumentParser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from actions(sub)
            elif not isinstance(action, argparse._HelpAction):
                yield action

    parsers = [build_parser(), analysis_parser(), sweep_parser(Experiment(name="x", base=DEEP), "a sweep")]
    flags = [a for p in parsers for a in actions(p)]
    assert len(flags) > 70
    bare = [a.option_strings or a.dest for a in flags if not (a.help or "").strip()]
    assert not bare, f"flags without help: {bare}"
    normalize = next(a for a in actions(parsers[0]) if a.dest == "normalize")
    assert "two-layer protocol" in normalize.help and "(default: first)" in normalize.help


@pytest.mark.parametrize(
    "args",
    [
        ["--arch", "conv", "--student-bn", "after_relu", "--widths", "3", "2"],
        ["--student-bn", "before_relu", "--bn-affine", "true", "--momentum", "0.9", "--weight-decay", "1e-4"],
        ["--teacher-activation", "leaky_relu", "--optimizer", "adam", "--lr", "0.002", "--init-seed", "1", "2"],
    ],
)
def test_smoke_with_the_new_parts_writes_per_layer_traces(args: list[str], tmp_path: Path, capsys, amd_switch) -> None:
    argv = ["run", "--smoke", "--seeds", "1", "--epochs", "1", "--no-progress", "--out", str(tmp_path), *args]
    assert main(argv) == 0, capsys.readouterr().err
    root = tmp_path / "smoke"
    runs = pd.read_parquet(root / S.RUNS)
    seeds = 2 if "--init-seed" in args else 1
    assert len(runs) == 3 * seeds and (runs[S.STATUS] == "done").all() and not runs[S.DIVERGED].any()
    depth = int(runs["depth"].iloc[0])
    for table in (S.TEACHER_NODES, S.STUDENT_NODES):
        layers = pd.read_parquet(root / table, columns=[S.LAYER, S.STEP])
        assert sorted(layers[S.LAYER].unique()) == list(range(1, depth + 1))
    scalars = pd.read_parquet(root / S.SCALARS)
    last = scalars[scalars[S.STEP] == scalars[S.STEP].max()]
    assert (
        last[S.EVAL_LOSS].notna().all() and (last[S.RHO_MEAN] > scalars[scalars[S.STEP] == 0][S.RHO_MEAN].mean()).all()
    )
    if seeds == 2:  # two students under each teacher: same teacher nodes, different students
        assert runs.groupby("p")["init_seed"].nunique().eq(2).all()


def test_abbreviated_flags_are_refused_not_guessed(capsys) -> None:
    """``--seed 4`` is no ``--seeds 4``: argparse's prefix matching is off on every parser."""
    from analysis.cli import build_parser as analysis_parser
    from spec_ray.engine.protocols import DEEP
    from spec_ray.orchestration.commandline import sweep_parser
    from spec_ray.orchestration.experiment import Experiment

    cases = [
        (sweep_parser(Experiment(name="x", base=DEEP), "a sweep"), ["--seed", "4"]),
        (build_parser(), ["run", "--seed", "4"]),
        (build_parser(), ["run", "--no-prog"]),
        (analysis_parser(), ["query", "r", "select 1", "--ou", "x.csv"]),
    ]
    for parser, argv in cases:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(argv)
        assert exit_.value.code == 2
        assert "unrecognized arguments: " + argv[-2 if argv[-1] in ("4", "x.csv") else -1] in capsys.readouterr().err
    assert build_parser().parse_args(["run", "--seeds", "4"]).seeds == 4


def test_spec_ray_run_imports_neither_the_ray_driver_nor_ray() -> None:
    """Module-level imports reachable from ``python -m spec_ray``: no Tune driver, no Ray (a static walk)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def imports(module: str) -> set[str]:
        path = root / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = root / module.replace(".", "/") / "__init__.py"
        if not path.exists():
            return set()
        found = set()
        for node in ast.parse(path.read_text()).body:  # module level only: lazy imports inside functions are fine
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        return found

    seen, todo = set(), ["spec_ray.__main__"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [m for m in imports(module) if m.startswith("spec_ray")]
    outside = {m for s in seen for m in imports(s) if not m.startswith("spec_ray")}
    assert "spec_ray.orchestration.tune_driver" not in seen and "spec_ray.orchestration.sweep" not in seen
    assert not {m for m in outside if m == "ray" or m.startswith("ray.")}, sorted(outside)
    assert "spec_ray.orchestration.cli" in seen and "spec_ray.orchestration.plan" in seen
