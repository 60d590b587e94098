"""``python -m spec_ray reproduce``: durations, the budget's fill, bad input, and a whole paper end to end,
its page opened in headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from conftest import shared_ray

from spec_ray.orchestration import budget as B
from spec_ray.orchestration.costs import Curve, ShapeCost
from spec_ray.storage import schema as S

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("90s", 90), ("2.5h", 9000), ("1m30s", 90)]
)
def test_durations_read_as_seconds(text: str, seconds: float) -> None:
    assert B.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "3x", "m", "-5m", "0m", "1h-2m", "30 minutes"])
def test_a_malformed_duration_names_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"--budget=.* is invalid: allowed a duration"):
        B.parse_duration(text)


def _flat_cost(step_s: float) -> ShapeCost:
    """A shape whose pack costs ``step_s`` a step a run, nothing else."""
    zero = Curve(((1, 0.0), (2, 0.0)))
    return ShapeCost(prepare=zero, step=Curve(((1, step_s), (2, 2 * step_s))), checkpoint=zero, train_checkpoint=zero)


def _candidates(stored: frozenset[str] = frozenset()) -> dict[str, B.Candidate]:
    """Two small studies: 4 multi x 2 p at up to 8 seeds (3 at least), and 2 multi x 2 p at up to 4."""
    from spec_ray.engine.specs.spec import RunSpec
    from spec_ray.orchestration.experiment import Experiment

    base = RunSpec().replace(**{"teacher.widths": (5,), "data.d": 10, "train.epochs": 2, "train.iters_per_epoch": 50})
    a = Experiment("a", base, axes={"multi": (1, 2, 5, 10), "p": (0.0, 2.0), "seed": tuple(range(1, 9))})
    b = Experiment("b", base.replace(**{"teacher.widths": (6,)}), axes={"multi": (1, 2), "p": (0.0, 1.0),
                                                                        "seed": (1, 2, 3, 4)})  # fmt: skip
    return {"a": B.Candidate(a, 3, stored), "b": B.Candidate(b, 2)}


def _costs(cands: dict[str, B.Candidate], step_s: float = 0.01) -> dict:
    from spec_ray.engine.training.pack import shape_key

    return {shape_key(p.spec): _flat_cost(step_s) for c in cands.values() for p in c.packs(c.max_seeds, new=False)}


def test_the_budget_is_filled_seeds_first_and_never_exceeded() -> None:
    cands = _candidates()
    costs = _costs(cands)
    seeds_at = []
    for budget in (30, 40, 45, 50, 60, 70, 90, 150, 300, 10_000):
        plan = B.fill(cands, costs, budget, slots=2)
        seeds = {p.name: p.seeds for p in plan.picks}
        assert plan.whole <= budget or all(s is None for s in seeds.values())
        for p in plan.picks:  # a planned study has at least its fewest seeds, at most the paper's
            assert p.seeds is None or cands[p.name].min_seeds <= p.seeds <= cands[p.name].max_seeds
            assert (
                p.seeds is None
                or sum(r.size for r in p.packs) == len(cands[p.name].experiment.axes["multi"]) * 2 * p.seeds
            )
        seeds_at.append(seeds)
    assert seeds_at[0] == {"a": None, "b": 2}  # a's 24 runs at 3 seeds: 4 packs of 7 s on 2 slots, Ray and a report
    for smaller, larger in zip(seeds_at, seeds_at[1:]):  # more budget never decides fewer studies ...
        planned = lambda seeds: {n for n, s in seeds.items() if s is not None}  # noqa: E731
        assert len(planned(larger)) >= len(planned(smaller))
        if planned(larger) == planned(smaller):  # ... nor, with the same ones, plans fewer seeds
            assert all((larger[n] or 0) >= (smaller[n] or 0) for n in cands)
    assert seeds_at[-1] == {"a": 8, "b": 4}  # everything, at the paper's seeds
    assert {"a": 4, "b": None} in seeds_at  # a study left out while another grows: named with its cost


def test_stored_runs_cost_nothing_more_but_the_budget_still_pays_for_them() -> None:
    from spec_ray.engine.training.pack import run_id

    fresh = B.fill(_candidates(), _costs(_candidates()), 60, slots=2)
    seeds = fresh.pick("a").seeds
    stored = frozenset(r for p in fresh.pick("a").packs for r in p.run_ids)
    again = B.fill(_candidates(stored), _costs(_candidates()), 60, slots=2)
    assert again.pick("a").seeds == seeds and not again.pick("a").packs  # the same plan, nothing of a to train
    assert again.wall < fresh.wall and again.whole == pytest.approx(fresh.whole)
    grown = B.fill(_candidates(stored), _costs(_candidates()), 10_000, slots=2)
    new = {r for p in grown.pick("a").packs for r in p.run_ids}
    assert new and not new & stored  # a larger budget trains only the runs it adds
    assert {run_id(r) for r in _candidates()["a"].experiment.runs()} == new | stored


def run_reproduce(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spec_ray", "reproduce", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})  # fmt: skip


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["nature2021"],
            "argument paper: invalid choice: 'nature2021' (choose from 'icml2020', 'luck-matters', 'all')",
        ),
        (["icml2020", "--budget", "half an hour"], "--budget='half an hour' is invalid: allowed a duration such as"),
        pytest.param(
            ["icml2020", "--smoke", "--budget", "1s"],
            "--budget=1s is too small for any claim of icml2020",
            marks=pytest.mark.slow,
        ),  # it times the smoke's shapes, twice: 15 s
        (["icml2020", "--smoke", "--slots", "0"], "--slots=0 is invalid: allowed an integer >= 1"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args: list[str], says: str, tmp_path: Path,
                                                            capsys) -> None:  # fmt: skip
    """In-process (the command line's own ``main``): before any training, nothing written."""
    from spec_ray.orchestration.cli import main

    storage = tmp_path / "store"
    try:
        code = main(["reproduce", *args, "--storage", str(storage)])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and says in errors[0], errors
    if "too small" in says:  # it names a budget that works, and that one plans
        assert "allowed --budget " in errors[0] and " or more" in errors[0]
        least = errors[0].split("allowed --budget ")[1].split()[0]
        assert (
            main(["reproduce", "icml2020", "--smoke", "--budget", least, "--dry-run", "--storage", str(storage)]) == 0
        )
        assert "projected wall" in capsys.readouterr().err
    assert not storage.exists()


def _done(folder: Path) -> dict[str, int]:
    runs = ds.dataset(folder / S.RUNS, format="parquet", partitioning="hive").to_table().to_pandas()
    assert not runs[S.RUN_ID].duplicated().any()
    return {"runs": len(runs), "done": int((runs[S.STATUS] == S.STATUS_DONE).sum())}


@pytest.mark.slow
def test_a_paper_in_one_command_then_again_trains_nothing_and_its_page_opens(tmp_path: Path) -> None:
    from browser import browser, open_page

    storage = tmp_path / "results"
    env = shared_ray()
    first = run_reproduce("icml2020", "--smoke", "--budget", "10m", "--storage", str(storage), env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    paper = storage / "icml2020"
    studies = {"overrealization": 8, "polarity": 8, "sample_size": 8, "teacher_aware": 8, "cifar_digits": 2}
    for name, runs in studies.items():  # every planned study in its own experiment, every run done once
        assert _done(paper / name) == {"runs": runs, "done": runs}, name
    assert "cifar10: not on this machine" in first.stderr and "python sweeps/cifar.py --dataset cifar10" in first.stderr
    assert not (paper / "cifar10").exists()
    verify = subprocess.run([sys.executable, "-m", "spec_ray", "verify", str(paper)], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stdout.count(" 0 unfinished, 0 broken") == len(studies), verify.stdout
    page = paper / "index.html"
    text = page.read_text()
    assert text.count('<img src="data:image/png;base64,') >= 6  # every figure inside the page
    assert 'src="http' not in text and "<script" not in text and "<link" not in text  # nothing fetched
    for name in studies:
        assert f'href="{name}/report/index.html"' in text and (paper / name / "report" / "index.html").exists()

    again = run_reproduce("icml2020", "--smoke", "--budget", "10m", "--storage", str(storage), env=env)
    assert again.returncode == 0 and "nothing to train" in again.stderr, again.stderr[-3000:]
    for name, runs in studies.items():
        assert _done(paper / name) == {"runs": runs, "done": runs}, name

    if browser() is None:
        pytest.fail("no Chromium on PATH: install Debian's chromium package (.ci/run installs it)")
    opened = open_page(page, ("table.claims", "h2", "figure img"))
    assert opened.errors == []
    assert opened.images and all(ok and w > 100 and h > 100 for ok, w, h in opened.images), opened.images
    assert opened.matches["table.claims"] >= 2 and opened.matches["figure img"] == len(opened.images)
    from matplotlib.image import imread

    pixels = imread(BytesIO(opened.screenshot), format="png")
    assert pixels.shape[0] > 500 and float(np.std(pixels[..., :3])) > 0.05  # drawn, not a blank screen


@pytest.mark.slow
def test_the_browser_check_sees_a_broken_image_and_a_console_error(tmp_path: Path) -> None:
    """The page checks can fail: a picture that does not decode and an error on the console are reported."""
    from browser import browser, open_page

    if browser() is None:
        pytest.fail("no Chromium on PATH: install Debian's chromium package (.ci/run installs it)")
    page = tmp_path / "bad.html"
    page.write_text('<html><body><table class="claims"></table><img src="data:image/png;base64,AAAA">'
                    "<script>console.error('lost a figure')</script></body></html>")  # fmt: skip
    opened = open_page(page, ("table.claims", "figure img"))
    assert opened.images == [(True, 0, 0)] and opened.matches == {"table.claims": 1, "figure img": 0}
    assert any("lost a figure" in e for e in opened.errors)
