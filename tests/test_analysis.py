"""The analysis package: queries and claim verdicts on traces with known answers, figures from
real engine output (including diverged and unfinished runs), and its CLI's bad-input paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_spec
from PIL import Image

from analysis import verdicts
from analysis.icml import claims, queries
from analysis.load import AnalysisError, open_results
from analysis.luck import queries as luck_queries
from analysis.report import build_report
from benchmarks.synthetic import write_experiment
from spec_ray.engine.pack import Pack
from spec_ray.orchestration.runner import run_pack
from spec_ray.storage import schema as S
from spec_ray.storage.summaries import matrices_to_long
from spec_ray.storage.traces import TraceStore


def strong_first(p, multi, node, m):
    """Strong half always recovered; the weak half only at p = 0."""
    weak = node >= m // 2
    return np.where(weak & (p > 0), 0.5, 1.0) + 0 * multi


def weak_first(p, multi, node, m):
    """The reverse: the strong half fails at p > 0."""
    strong = node < m // 2
    return np.where(strong & (p > 0), 0.5, 1.0) + 0 * multi


def more_with_multi(p, multi, node, m):
    """Recovery of the weak half grows with over-realization."""
    return np.where((node >= m // 2) & (multi < 2), 0.5, 1.0) + 0 * p


def synthetic(tmp_path: Path, recovery, **kw):
    write_experiment(str(tmp_path), "syn", recovery=recovery, noise=0.0, **kw)
    return open_results(str(tmp_path / "syn"))


def test_success_rate_has_known_values(tmp_path: Path) -> None:
    res = synthetic(tmp_path, strong_first, ps=(0.0, 2.0), multis=(1,), seeds=(1, 2), m=8, epochs=6, iters=50)
    sr = queries.success_rate(res)
    final = sr[sr["epoch"] == 6]
    assert set(sr["epoch"]) == {5.0, 6.0} and (final["seeds"] == 2).all()
    at_p2 = final[final["p"] == 2.0].set_index("node")["success_rate"]
    assert list(at_p2) == [1.0] * 4 + [0.0] * 4
    assert (final[final["p"] == 0.0]["success_rate"] == 1.0).all()


def test_claim1_supported_when_strong_nodes_win_and_not_when_reversed(tmp_path: Path) -> None:
    kw = {"ps": (0.0, 1.0, 2.0), "multis": (1,), "m": 8, "epochs": 6, "iters": 50}
    good = claims.claim1(queries.success_rate(synthetic(tmp_path / "a", strong_first, **kw)))
    bad = claims.claim1(queries.success_rate(synthetic(tmp_path / "b", weak_first, **kw)))
    assert good.verdict == verdicts.SUPPORTED and "p=2: strongest 1.00 vs weakest 0.00" in good.evidence
    assert bad.verdict == verdicts.NOT_SUPPORTED and "p=2: strongest 0.00 vs weakest 1.00" in bad.evidence
    one_p = claims.claim1(queries.success_rate(synthetic(tmp_path / "c", strong_first, ps=(2.0,), m=8)))
    assert one_p.verdict == verdicts.NO_DATA


def test_claim2_through_the_per_seed_query(tmp_path: Path) -> None:
    res = synthetic(tmp_path / "a", more_with_multi, ps=(1.0,), multis=(1, 2, 5), m=8, epochs=6, iters=50)
    seeds = queries.seed_success(res)
    assert len(seeds) == 3 * 3 and set(seeds[seeds["multi"] == 1]["success"]) == {0.5}
    claim = claims.claim2(seeds)
    assert claim.verdict == verdicts.SUPPORTED and "p=1: 0.50 -> 1.00 [+0.50, +0.50]" in claim.evidence
    flat = synthetic(tmp_path / "b", strong_first, ps=(0.0,), multis=(1, 2), m=8, epochs=6, iters=50)
    assert claims.claim2(queries.seed_success(flat)).verdict == verdicts.NO_DATA  # all 1.0: a tie, nothing to test
    worse = synthetic(tmp_path / "c", lambda p, multi, node, m: more_with_multi(p, 6 - multi, node, m), ps=(1.0,),
                      multis=(1, 5), m=8, epochs=6, iters=50)  # fmt: skip
    assert claims.claim2(queries.seed_success(worse)).verdict == verdicts.NOT_SUPPORTED


def test_claim3_early_vs_final_and_strong_nodes_first(tmp_path: Path) -> None:
    res = synthetic(tmp_path, strong_first, ps=(0.0, 2.0), multis=(1,), m=8, epochs=20, iters=100)
    first = queries.first_success(res)
    strong = first[(first["p"] == 2.0) & (first["node"] < 2)]
    assert strong["first_step"].notna().all() and (strong["first_step"] < 100).all()  # onset ~ step 10
    assert strong["recovered"].all()
    weak = first[(first["p"] == 2.0) & (first["node"] >= 4)]
    assert weak["first_step"].isna().all() and not weak["recovered"].any()  # never recovered
    claim = claims.claim3(queries.success_rate(res), first)
    assert claim.verdict == verdicts.SUPPORTED
    short = synthetic(tmp_path / "short", strong_first, ps=(0.0, 2.0), epochs=5, iters=50)
    assert claims.claim3(queries.success_rate(short), queries.first_success(short)).verdict == verdicts.NO_DATA


def test_claim4_fanout_of_unspecialized_students(tmp_path: Path) -> None:
    lshape = queries.lshape(synthetic(tmp_path, strong_first, m=6))
    assert lshape["on_train"].all() and len(lshape) == 3 * 2 * 3 * 6 * 1.5  # p x multi{1,2} x seeds x n
    assert claims.claim4(lshape, 0.95).verdict == verdicts.SUPPORTED  # synthetic: norm ~ corr^4
    flipped = lshape.assign(fanout_norm=1.0 / (0.1 + lshape["fanout_norm"]))
    assert claims.claim4(flipped, 0.95).verdict == verdicts.NOT_SUPPORTED


def _rows(n_train, loss, layer, rho, eval_loss):
    import pandas as pd

    return pd.DataFrame({"n_train": n_train, "loss": loss, "layer": layer, "rho_mean": rho, "eval_loss": eval_loss})


def test_claim5_and_claim6_on_known_tables() -> None:
    import pandas as pd

    up = _rows([1000, 1000, 8000, 8000], ["mse"] * 4, [1, 2, 1, 2], [0.6, 0.5, 0.9, 0.7], [1.0, 1.0, 0.1, 0.1])
    assert claims.claim5(up).verdict == verdicts.SUPPORTED
    top_layer_best = up.assign(rho_mean=[0.6, 0.7, 0.8, 0.95])
    assert claims.claim5(top_layer_best).verdict == verdicts.NOT_SUPPORTED
    assert claims.claim5(up[up["n_train"] == 1000]).verdict == verdicts.NO_DATA
    # two experiments of a root, each at its own size and loss: no loss has two sizes, so no comparison
    mixed = up.assign(loss=["mse", "mse", "ce", "ce"])
    assert claims.claim5(mixed).verdict == verdicts.NO_DATA
    aware = pd.DataFrame({"n_train": [100, 100, 1000, 1000], "augmentation": ["none", "teacher_aware"] * 2,
                          "set": "eval", "mse": [4.0, 0.5, 0.2, 0.2], "std": 0.0, "seeds": 3})  # fmt: skip
    claim = claims.claim6(aware)
    assert claim.verdict == verdicts.SUPPORTED and "ratio 0.12" in claim.evidence
    assert claims.claim6(aware.assign(mse=[1.0, 0.9, 0.2, 0.2])).verdict == verdicts.NOT_SUPPORTED
    assert claims.claim6(aware[aware["augmentation"] == "none"]).verdict == verdicts.NO_DATA


@pytest.fixture(scope="module")
def engine_experiment(tmp_path_factory) -> Path:
    """A small real experiment from the engine, with one diverged run and one unfinished pack."""
    storage = tmp_path_factory.mktemp("engine")
    store = TraceStore(str(storage), "real")
    kw = {"train.epochs": 6, "train.iters_per_epoch": 100, "teacher.widths": (5,), "data.d": 20, "train.lr": 0.02}
    for multi in (1, 2):
        runs = [
            tiny_spec(seed=s, **kw, **{"teacher.p": p, "student.multi": multi}) for s in (1, 2, 3) for p in (0.0, 2.0)
        ]
        if multi == 2:
            runs.append(tiny_spec(seed=9, **{**kw, "student.multi": 2, "train.lr": 50.0}))  # diverges
        run_pack(Pack(tuple(runs)), store, block_epochs=1, progress=False)

    def crash(state, ckpt, flushed):
        if flushed and state.step >= 200:
            raise RuntimeError("node lost")

    unfinished = Pack(tuple(tiny_spec(seed=s, **kw, **{"student.multi": 3}) for s in (1, 2)))
    with pytest.raises(RuntimeError, match="node lost"):
        run_pack(unfinished, store, block_epochs=1, progress=False, on_checkpoint=crash)
    return storage / "real"


def test_report_from_engine_output_counts_and_excludes_bad_runs(engine_experiment: Path, tmp_path: Path) -> None:
    res = open_results(str(engine_experiment))
    assert res.counts() == {"done": 12, "diverged": 1, "unfinished": 2, "incomplete": 0}
    sr = queries.success_rate(res)
    assert set(sr["multi"]) == {1, 2} and (sr["seeds"] == 3).all()  # neither bad run mixed in
    report = Path(build_report(str(engine_experiment), tmp_path / "out"))
    text = report.read_text()
    assert "**12 done**, 1 diverged, 2 unfinished, 0 incomplete" in text
    assert "Not checked (no sweep.json)" in text  # written by run_pack alone: nothing to check its rows against
    for name in ("success_rate", "dynamics", "lshape", "loss_curves"):
        png = tmp_path / "out" / f"{name}.png"
        assert (tmp_path / "out" / f"{name}.pdf").stat().st_size > 1000
        with Image.open(png) as img:
            assert img.width >= 400 and img.height >= 300
            assert len(np.unique(np.asarray(img.convert("L")))) > 20  # drawn, not blank
        assert f"]({name}.png)" in text
    assert not (tmp_path / "out" / "sample_size.png").exists()  # one sample size: figure 6 not supported
    assert text.count("| ") > 20 and "not enough data" in text
    assert set(queries.loss_curves(res)["loss"]) == {"mse"}  # the figure names the unit of this loss


def test_a_run_stored_in_several_experiments_of_a_root_is_read_once(tmp_path: Path) -> None:
    """Begun in one experiment and finished in another (or copied by reuse): one run, its rows read once."""
    kw = {"train.epochs": 3, "train.iters_per_epoch": 100, "teacher.widths": (5,), "data.d": 20}
    pack = Pack(tuple(tiny_spec(seed=s, **kw, **{"student.student_bn": "after_relu"}) for s in (1, 2)))

    def crash(state, ckpt, flushed):
        if flushed and state.step >= 100:
            raise RuntimeError("node lost")

    with pytest.raises(RuntimeError, match="node lost"):
        run_pack(pack, TraceStore(str(tmp_path), "a-begun"), block_epochs=1, progress=False, on_checkpoint=crash)
    for name in ("b-finished", "c-copied"):
        run_pack(pack, TraceStore(str(tmp_path), name), block_epochs=1, progress=False)
    alone, root = open_results(str(tmp_path / "b-finished")), open_results(str(tmp_path))
    assert len(root.roots) == 3 and root.counts() == {"done": 2, "diverged": 0, "unfinished": 0, "incomplete": 0}
    assert root.runs[S.RUN_ID].is_unique
    cols, key = [S.RUN_ID, S.STEP, S.LAYER, S.NODE, S.IN_NORM], [S.RUN_ID, S.STEP, S.LAYER, S.NODE]
    rows = root.read(S.STUDENT_NODES, cols, root.done[S.RUN_ID], steps={0, 300})
    assert not rows.duplicated(key).any() and len(rows) == 2 * 2 * 15  # 2 runs x 2 steps x 15 student nodes
    pd.testing.assert_frame_equal(
        rows.sort_values(key).reset_index(drop=True),
        alone.read(S.STUDENT_NODES, cols, steps={0, 300}).sort_values(key).reset_index(drop=True),
    )
    assert luck_queries.in_norm_change(root).equals(luck_queries.in_norm_change(alone))  # raised on duplicates


def test_facets_wrap_at_three_panels_a_row(tmp_path: Path) -> None:
    import pandas as pd

    from analysis import plots
    from analysis.icml import figures

    frame = pd.DataFrame([{"p": p, "multi": 1, "m": 4, "loss": "mse", "epoch": e, "log10_eval_loss": -e, "std": 0.1,
                           "seeds": 2} for p in (0, 0.5, 1, 1.5, 2, 2.5) for e in range(4)])  # fmt: skip
    figures.loss_curves(frame, tmp_path / "curves")
    with Image.open(tmp_path / "curves.png") as img:
        assert 1.2 < img.width / img.height < 2.0  # 3 x 2 panels, not 6 x 1 (2496 x 416 px)
    assert plots.loss_label(["mse"]) == "evaluation loss\n(MSE, mean over samples and outputs)"
    assert plots.loss_label(["mse_mean", "ce"]).splitlines()[1:] == [
        "(cross-entropy (nats), mean over samples)",
        "(MSE, mean over samples and outputs)",
    ]


def test_report_draws_sample_size_and_teacher_aware_when_data_exists(tmp_path: Path) -> None:
    store = TraceStore(str(tmp_path), "aware")
    kw = {"train.epochs": 2, "train.iters_per_epoch": 100, "teacher.widths": (5,), "data.d": 20}
    for n in (60, 240):
        runs = [tiny_spec(seed=s, **kw, **{"data.n_train": n, "data.augmentation": a})
                for s in (1, 2) for a in ("none", "teacher_aware")]  # fmt: skip
        run_pack(Pack(tuple(runs)), store, progress=False)
    report = Path(build_report(str(tmp_path / "aware"), tmp_path / "out"))
    assert (tmp_path / "out" / "sample_size.png").exists() and (tmp_path / "out" / "teacher_aware.png").exists()
    assert "| 6 | With few samples" in report.read_text()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # a process
def test_cli_bad_paths_exit_2(engine_experiment: Path, tmp_path: Path, capsys) -> None:
    """The real process once for each exit code; the other cases through the same ``main`` in this
    process (a process per case spent about 1.5 s importing)."""
    from analysis.cli import main as analysis_main

    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    (broken / S.RUNS).mkdir(parents=True)
    proc = run_cli("report", str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "not a directory" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    for path, says in {tmp_path / "empty": "is not an experiment", broken: "no runs yet"}.items():
        assert analysis_main(["report", str(path), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()
    with pytest.raises(AnalysisError, match="table 'scalars' is missing"):
        import shutil

        shutil.copytree(engine_experiment, tmp_path / "partial")
        shutil.rmtree(tmp_path / "partial" / S.SCALARS)
        queries.loss_curves(open_results(str(tmp_path / "partial")))
    proc = run_cli("query", str(engine_experiment), "select count(*) as n from teacher_nodes")
    assert proc.returncode == 0
    assert int(proc.stdout.split()[-1]) == len(open_results(str(engine_experiment)).dataset(S.TEACHER_NODES).to_table())
    assert analysis_main(["query", str(engine_experiment), "select nope"]) == 2
    assert "sql is invalid" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        analysis_main(["--help"])
    help_text = capsys.readouterr().out
    assert done.value.code == 0 and "report" in help_text and "query" in help_text


def test_query_writes_csv_or_parquet_and_names_a_missing_opt_in_table(engine_experiment: Path, tmp_path: Path,
                                                                      capsys) -> None:  # fmt: skip
    from analysis.cli import main as analysis_main

    sql = "select p, count(*) as n from runs where status = 'done' group by p order by p"
    assert analysis_main(["query", str(engine_experiment), sql, "--out", str(tmp_path / "n.csv")]) == 0
    frame = pd.read_csv(tmp_path / "n.csv")
    runs = open_results(str(engine_experiment)).runs
    assert frame["n"].sum() == (runs["status"] == "done").sum() and list(frame.columns) == ["p", "n"]
    assert "wrote 2 rows x 2 columns" in capsys.readouterr().out
    assert analysis_main(["query", str(engine_experiment), sql, "--out", str(tmp_path / "n.xlsx")]) == 2
    assert analysis_main(["query", str(engine_experiment), "select * from modulation"]) == 2
    err = capsys.readouterr().err
    assert "n.xlsx' is invalid: allowed a file name ending in .csv or .parquet" in err
    assert "modulation: not kept by these runs; see checkpoint.keep_modulation" in err
    assert not (tmp_path / "n.xlsx").exists()


def test_query_without_duckdb_says_how_to_install(engine_experiment: Path, monkeypatch) -> None:
    from analysis.cli import query

    monkeypatch.setitem(sys.modules, "duckdb", None)  # the optional extra is not installed
    with pytest.raises(AnalysisError, match=r"pip install 'spec-ray\[duckdb\]'"):
        query(str(engine_experiment), "select 1")


@pytest.mark.slow  # a process
def test_the_read_side_imports_no_torch_and_no_ray() -> None:
    engine = ("torch", "ray", "spec_ray.engine.training.trainer", "spec_ray.orchestration.runner",
              "spec_ray.engine.inputs.construct")  # fmt: skip
    code = (
        "import sys, analysis.report, analysis.cli, analysis.icml, analysis.luck, analysis.load\n"
        f"print([m for m in {engine!r} if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@pytest.mark.slow  # a process
def test_report_to_a_uri_writes_through_pyarrow_fs_and_a_bad_uri_exits_2(tmp_path: Path) -> None:
    synthetic(tmp_path / "store", strong_first, ps=(0.0, 2.0), multis=(1,), m=6, epochs=6, iters=50)
    results = f"file://{tmp_path}/store/syn"
    cli = [sys.executable, "-m", "analysis", "report", results]
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # default: RESULTS/report
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {results}/report/report.md" in proc.stdout
    assert (tmp_path / "store" / "syn" / "report" / "success_rate.png").stat().st_size > 1000
    assert not any(p.name.endswith(":") for p in tmp_path.iterdir())  # no local folder named 'file:'
    bad = subprocess.run([*cli, "--out", "nosuch://bucket/x"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "out='nosuch://bucket/x' is invalid" in bad.stderr, bad.stderr


def test_winner_ranks_are_luck_matters_rank_of_the_final_winners(tmp_path: Path) -> None:
    """The paper's r-bar (LM sec. 7): the final winner's rank at every checkpoint, checked against a
    brute-force loop over the stored correlations; 0 at the last step; the table agrees with best_corr."""
    store = TraceStore(str(tmp_path), "luck")
    runs = [tiny_spec(seed=s, **{"teacher.widths": (4, 3), "checkpoint.keep_correlations": True}) for s in (1, 2)]
    run_pack(Pack(tuple(runs)), store, block_epochs=1, progress=False)
    res = open_results(str(tmp_path / "luck"))
    got = luck_queries.winner_ranks(res).set_index([S.RUN_ID, S.LAYER, S.STEP])
    corr = matrices_to_long(res.dataset(S.CORR_MATRICES).to_table()).to_pandas()
    assert len(corr) == len(res.read(S.SCALARS, [S.STEP])) * (4 * 12 + 3 * 9)  # every pair of every checkpoint
    final = int(res.done["final_step"].iloc[0])
    for (run, layer, _node), rows in corr.groupby([S.RUN_ID, S.LAYER, S.NODE]):
        at_end = rows[rows[S.STEP] == final]
        winner = int(at_end[S.STUDENT].iloc[int(np.argmax(at_end[S.CORR].to_numpy()))])
        for step, now in rows.groupby(S.STEP):
            mine = float(now[now[S.STUDENT] == winner][S.CORR].iloc[0])
            rank = (now[S.CORR] > mine).sum() / (len(now) - 1)
            rows_ranks = got.loc[(run, layer, step)]
            assert 0.0 <= rank <= 1.0 and rows_ranks["teachers"] == (4 if layer == 1 else 3)
            corr.loc[now.index, "rank"] = rank
    expected = corr.groupby([S.RUN_ID, S.LAYER, S.STEP, S.NODE])["rank"].first().groupby(level=[0, 1, 2])
    np.testing.assert_allclose(got["mean_rank"], expected.mean().reindex(got.index), atol=1e-12)
    np.testing.assert_allclose(got["median_rank"], expected.median().reindex(got.index), atol=1e-12)
    assert (got.xs(final, level=S.STEP)["mean_rank"] == 0).all()
    assert (got.xs(0, level=S.STEP)["mean_rank"] > 0).any()  # the winners were not all first at init
    from analysis.cli import main as analysis_main

    out = tmp_path / "ranks.parquet"  # `query` reads the opt-in tables too, and lands a result in pandas
    sql = "select run_id, layer, step, node, max(corr) as best from correlations group by all order by all"
    assert analysis_main(["query", str(tmp_path / "luck"), sql, "--out", str(out)]) == 0
    maxima = pd.read_parquet(out)
    assert len(maxima) == len(corr.groupby([S.RUN_ID, S.LAYER, S.STEP, S.NODE]))
    expected_max = corr.groupby([S.RUN_ID, S.LAYER, S.STEP, S.NODE])[S.CORR].max().sort_values()
    np.testing.assert_allclose(maxima["best"].sort_values().to_numpy(), expected_max.to_numpy())
    best = res.read(S.TEACHER_NODES, [S.RUN_ID, S.STEP, S.LAYER, S.NODE, S.BEST_CORR])
    table_best = corr.groupby([S.RUN_ID, S.STEP, S.LAYER, S.NODE])[S.CORR].max()
    np.testing.assert_allclose(
        best.set_index(table_best.index.names)[S.BEST_CORR].reindex(table_best.index), table_best
    )


def test_winner_ranks_without_the_correlations_table_say_how_to_get_it(engine_experiment: Path) -> None:
    with pytest.raises(AnalysisError, match="--keep-correlations true"):
        luck_queries.winner_ranks(open_results(str(engine_experiment)))


def test_a_registered_figure_and_claim_reach_the_report_through_their_needs(engine_experiment: Path, tmp_path: Path,
                                                                           monkeypatch) -> None:  # fmt: skip
    """A new figure with its claim is its query, drawing and check, each registered where it is written:
    the report picks them up, on exactly the runs their needs select, or names what they would need."""
    import matplotlib.pyplot as plt

    from analysis import report as R
    from analysis.registry import ClaimCheck, Figure, Needs, Paper, claim, figure, frame
    from analysis.verdicts import Claim

    figures: list[Figure] = []
    checks: list[ClaimCheck] = []
    multi2 = Needs(where=((S.MULTI, (2,)),), words="runs at multi 2")

    def runs_per_p(res) -> pd.DataFrame:
        return res.done.groupby(S.P, as_index=False).size()

    @figure(figures, "per_p", "Runs per p", lambda data: f"{int(data['size'].sum())} runs", runs_per_p, multi2)
    def draw(data: pd.DataFrame, stem: Path) -> list[Path]:
        fig, ax = plt.subplots()
        ax.bar(data[S.P].astype(str), data["size"])
        fig.savefig(stem.with_suffix(".png"))
        plt.close(fig)
        return [stem.with_suffix(".png")]

    @claim(checks, 99, multi2, lambda res: (frame(res, runs_per_p),))
    def even(data: pd.DataFrame) -> Claim:
        return Claim(99, "as many runs at every p", f"{data['size'].tolist()}", verdicts.SUPPORTED)

    unmet = Needs(varies=(S.LOSS,), words="two losses")
    figure(figures, "never", "Never", "-", runs_per_p, unmet)(draw)
    test_paper = Paper("test", tuple(figures), tuple(checks), "criteria of the test paper")
    monkeypatch.setattr(R, "PAPERS", (test_paper,))
    text = Path(build_report(str(engine_experiment), tmp_path / "out")).read_text()
    assert "| 99 | as many runs at every p | [3, 3] | **supported** |" in text  # multi 2's 6 done runs, 3 per p
    assert "### Runs per p" in text and "6 runs" in text and (tmp_path / "out" / "per_p.png").exists()
    assert "Not shown, for want of data:\n\n- never (two losses)\n" in text  # one item a line
    assert "criteria of the test paper" in text and "Figure 7" not in text


def test_report_html_is_one_page_with_every_figure_inside(engine_experiment: Path, tmp_path: Path) -> None:
    """``analysis report --html``: index.html holds each figure as a data URI (it opens from disk, alone), the
    claims table with every verdict, and the runs table with infinite data's training set named, not nan."""
    import base64
    import re
    from io import BytesIO

    from analysis.cli import main

    assert main(["report", str(engine_experiment), "--out", str(tmp_path / "out"), "--html"]) == 0
    page = (tmp_path / "out" / "index.html").read_text()
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(pngs) >= 4  # every drawn figure, inside the page
    for data in images:
        with Image.open(BytesIO(base64.b64decode(data))) as img:
            assert img.width >= 400 and len(np.unique(np.asarray(img.convert("L")))) > 20
    claims = page.split('<table class="claims">')[1].split("</table>")[0]
    assert claims.count("<tr>") == 1 + (tmp_path / "out" / "report.md").read_text().split("## Claims")[1].split(
        "## Figures")[0].count("\n| ") - 1  # fmt: skip
    assert "not enough data" in claims and "nan" not in page.split("Runs and configurations")[1]
    assert 'src="http' not in page and "<script" not in page
