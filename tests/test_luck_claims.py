"""Luck Matters' claims 7-12 on hand-made frames: each verdict can come out."""

from __future__ import annotations

import pandas as pd

from analysis.luck import claims as L
from analysis.verdicts import NO_DATA, NOT_SUPPORTED, SUPPORTED


def rho_frame(cells: dict[tuple[str, str, str], list[tuple[float, float]]]) -> pd.DataFrame:
    """{(net, bn, data): [(rho at init, rho at the end) per layer]} -> a luck_rho frame over epochs 0, 1."""
    rows = []
    for (net, bn, data), layers in cells.items():
        for layer, (start, end) in enumerate(layers, start=1):
            for epoch, rho in ((0.0, start), (1.0, end)):
                rows.append({"net": net, "student_bn": bn, "data": data, "layer": layer, "epoch": epoch, "rho": rho,
                             "rho_min": rho, "rho_max": rho, "seeds": 5})  # fmt: skip
    return pd.DataFrame(rows)


def rank_frame(cells: dict[tuple[str, str, str], list[tuple[float, float]]]) -> pd.DataFrame:
    frame = rho_frame(cells).rename(columns={"rho": "mean_rank"})
    return frame.assign(median_rank=frame["mean_rank"], mean_rank_min=frame["mean_rank"],
                        mean_rank_max=frame["mean_rank"])  # fmt: skip


def test_claim7_growth_with_the_lowest_layer_on_top() -> None:
    good = rho_frame({("FC 10-15", "none", "finite"): [(0.3, 0.9), (0.2, 0.6)]})
    assert L.claim7(good).verdict == SUPPORTED
    stalled = rho_frame({("FC 10-15", "none", "finite"): [(0.3, 0.31), (0.2, 0.6)]})
    assert L.claim7(stalled).verdict == NOT_SUPPORTED
    upper_on_top = rho_frame({("FC 10-15", "none", "finite"): [(0.3, 0.6), (0.2, 0.9)]})
    assert L.claim7(upper_on_top).verdict == NOT_SUPPORTED
    assert L.claim7(rho_frame({("FC 10", "none", "finite"): [(0.3, 0.9)]})).verdict == NO_DATA


def test_claim8_lucky_winners() -> None:
    assert L.claim8(rank_frame({("FC 10-15", "none", "finite"): [(0.05, 0.0), (0.1, 0.0)]})).verdict == SUPPORTED
    assert L.claim8(rank_frame({("FC 10-15", "none", "finite"): [(0.45, 0.0), (0.1, 0.0)]})).verdict == NOT_SUPPORTED
    assert L.claim8(pd.DataFrame()).verdict == NO_DATA


def _sizes(large_bn: float, small_bn: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    cells = {
        ("FC 10-15-20-25", "none", "finite"): [(0.3, 0.8)],
        ("FC 10-15-20-25", "after_relu", "finite"): [(0.3, small_bn)],
        ("FC 50-75-100-125", "none", "finite"): [(0.3, 0.5)],
        ("FC 50-75-100-125", "after_relu", "finite"): [(0.3, large_bn)],
    }
    return rho_frame(cells), rank_frame({k: [(0.1, 0.0)] for k in cells})


def test_claim9_bn_helps_large_models_only() -> None:
    assert L.claim9(*_sizes(large_bn=0.7, small_bn=0.75)).verdict == SUPPORTED
    assert L.claim9(*_sizes(large_bn=0.5, small_bn=0.75)).verdict == NOT_SUPPORTED  # no help where it should
    assert L.claim9(*_sizes(large_bn=0.7, small_bn=0.95)).verdict == NOT_SUPPORTED  # helps the small one too
    one_size = rho_frame(
        {("FC 10-15", "none", "finite"): [(0.3, 0.8)], ("FC 10-15", "after_relu", "finite"): [(0.3, 0.8)]}
    )
    assert L.claim9(one_size, pd.DataFrame()).verdict == NO_DATA


def test_claim10_finite_data_stalls() -> None:
    cells = {("CNN 64", "none", "finite"): [(0.3, 0.5)], ("CNN 64", "none", "infinite"): [(0.3, 0.8)]}
    assert L.claim10(rho_frame(cells)).verdict == SUPPORTED
    cells[("CNN 64", "none", "finite")] = [(0.3, 0.8)]
    assert L.claim10(rho_frame(cells)).verdict == NOT_SUPPORTED
    assert L.claim10(rho_frame({("CNN 64", "none", "finite"): [(0.3, 0.5)]})).verdict == NO_DATA


def test_claim11_conserved_norms_under_bn() -> None:
    def norms(bn_change: float) -> pd.DataFrame:
        return pd.DataFrame({"student_bn": ["after_relu", "none"], "layer": [1, 1], "median_change": [bn_change, 0.3],
                             "max_change": [bn_change, 0.5], "nodes": [100, 100]})  # fmt: skip

    assert L.claim11(norms(0.01)).verdict == SUPPORTED
    assert L.claim11(norms(0.2)).verdict == NOT_SUPPORTED
    assert L.claim11(norms(0.01).iloc[1:]).verdict == NO_DATA


def test_claim12_winners_high_in_h() -> None:
    def ranks(end: float, bn: str = "none", bn_end: float = 0.3) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "run_id": "a",
                "layer": [1, 1, 2, 2],
                "stage": ["init", "end"] * 2,
                "h_rank": [0.3, 0.02, 0.3, end],
                "beta_rank": 0.2,
                "teachers": 10,
                "student_bn": bn,
            }
        )
        other = frame.assign(run_id="b", student_bn="after_relu", h_rank=[0.3, bn_end, 0.3, bn_end])
        return pd.concat([frame, other])  # fmt: skip

    assert L.claim12(ranks(0.05)).verdict == SUPPORTED  # BN runs are reported, not judged
    assert "BN after_relu L2 0.300->0.300" in L.claim12(ranks(0.05)).evidence  # layers from 1, as stored
    assert L.claim12(ranks(0.4)).verdict == NOT_SUPPORTED  # one layer where the winners sit mid-column
    assert L.claim12(ranks(0.05, bn="after_relu")).verdict == NO_DATA  # no run without BN
    assert L.claim12(pd.DataFrame()).verdict == NO_DATA and L.claim12(pd.DataFrame()).number == 12


def test_size_and_data_figures_draw_from_tidy_frames(tmp_path) -> None:
    from PIL import Image

    from analysis.luck import figures

    cells = {(net, bn, data): [(0.3, 0.7)] for net in ("FC 10-15", "FC 50-75") for bn in ("none", "after_relu")
             for data in ("finite", "infinite")}  # fmt: skip
    frame = (
        rho_frame(cells)
        .groupby(["net", "student_bn", "data", "epoch"], as_index=False)[["rho", "rho_min", "rho_max"]]
        .mean()
    )
    for draw in (figures.luck_size, figures.luck_data):
        png, pdf = draw(frame, tmp_path / draw.__name__)
        assert Image.open(png).size[0] > 600 and pdf.stat().st_size > 1000


def test_claim14_bn_lowers_rank_on_real_images_and_students_match_the_teacher() -> None:
    def ranks(bn_rank: float) -> pd.DataFrame:
        return rank_frame({("FC 50-75", "none", "cifar10"): [(0.3, 0.0)], ("FC 50-75", "after_relu", "cifar10"):
                           [(bn_rank, 0.0)], ("FC 50-75", "none", "finite"): [(0.9, 0.9)]})  # fmt: skip

    def accuracy(student: float) -> pd.DataFrame:
        return pd.DataFrame([{"net": "FC 50-75", "student_bn": bn, "data": "cifar10", "accuracy": student,
                              "teacher_accuracy": 0.55} for bn in ("none", "after_relu")])  # fmt: skip

    assert L.claim14(ranks(0.1), accuracy(0.56)).verdict == SUPPORTED
    assert L.claim14(ranks(0.3), accuracy(0.56)).verdict == NOT_SUPPORTED  # BN changes no rank
    assert L.claim14(ranks(0.1), accuracy(0.50)).verdict == NOT_SUPPORTED  # students below their teacher
    gaussian_only = rank_frame({("FC 50-75", "none", "finite"): [(0.3, 0.0)]})
    assert L.claim14(gaussian_only, pd.DataFrame()).verdict == NO_DATA
    # the Gaussian claims leave real-image cells out: a CIFAR-10 cell that does not grow does not fail claim 7
    from analysis.luck import queries as Q

    rho = rho_frame({("FC 10-15", "none", "finite"): [(0.3, 0.9), (0.2, 0.6)], ("FC 10-15", "none", "digits"):
                     [(0.3, 0.3), (0.2, 0.2)]})  # fmt: skip
    assert L.claim7(Q.gaussian(rho)).verdict == SUPPORTED and L.claim7(rho).verdict == NOT_SUPPORTED


def test_bn_bias_command_reads_a_checkpoint_and_judges_claim15(tmp_path, capsys) -> None:
    import torch

    from analysis.cli import main

    vgg_like = {"features.1.running_mean": torch.zeros(3), "features.1.bias": torch.tensor([-1.0, -2.0, 3.0]),
                "features.1.weight": torch.ones(3), "features.4.running_mean": torch.zeros(4),
                "features.4.bias": torch.tensor([-1.0, -1.0, -1.0, 2.0]),
                "classifier.0.bias": torch.ones(5)}  # fmt: skip
    torch.save(vgg_like, tmp_path / "vgg.pt")
    assert main(["bn-bias", str(tmp_path / "vgg.pt"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "vgg.pt: 71% negative (by layer 67%, 75%)" in out and "verdict: supported" in out
    assert (tmp_path / "out" / "bn_bias.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "out" / "bn_bias.csv")) == 7  # the classifier's bias is no BN bias
    torch.save({"net": {"fc.bias": torch.ones(2)}}, tmp_path / "plain.pt")
    assert main(["bn-bias", str(tmp_path / "plain.pt")]) == 2
    assert "holds no BatchNorm layer" in capsys.readouterr().err
