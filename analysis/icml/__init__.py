"""ICML 2020, *Student Specialization in Deep Rectified Networks*: figures 5-9, the loss curves and
claims 1-6 (docs/protocol.md), registered for the report."""

from __future__ import annotations

from analysis.icml import claims, figures, queries
from analysis.load import Results
from analysis.registry import ClaimCheck, Figure, Needs, Paper, frame
from spec_ray.storage import schema as S

TWO_LAYER = Needs(where=((S.DEPTH, (1,)),), words="two-layer runs (depth 1)")
"""Figures 5, 7 and 8 order a two-layer teacher's nodes by strength (polarity p)."""
POLARITY = Needs(where=TWO_LAYER.where, varies=(S.P,), words="two-layer runs over two or more p")
OVER_REALIZATION = Needs(where=TWO_LAYER.where, varies=(S.MULTI,), words="two-layer runs over two or more multi")
SAMPLES = Needs(varies=(S.N_TRAIN,), words="runs over two or more finite training-set sizes (sweeps/sample_size.py)")
AUGMENTED = Needs(varies=(S.AUGMENTATION,), words="runs with and without teacher-aware data (sweeps/teacher_aware.py)")


def _dynamics_caption(data) -> str:
    multi = int(data[S.MULTI].iloc[0])
    return (f"Best correlation of each teacher node vs iteration at multi = {multi} (5 where run, else the "
            "largest), mean over seeds; blue strongest, red weakest.")  # fmt: skip


def _threshold(res: Results) -> float:
    return float(res.done[S.SUCCESS_THRESHOLD].iloc[0])


FIGURES = (
    Figure("success_rate", "Figure 7: success rate",
           "Success rate over seeds per teacher node (strongest first); dotted after 5 epochs, solid at the end.",
           queries.success_rate, figures.success_rate, TWO_LAYER),
    Figure("dynamics", "Figure 8: specialization dynamics", _dynamics_caption, queries.dynamics, figures.dynamics,
           TWO_LAYER),
    Figure("lshape", "Figure 5: specialization vs fan-out norm",
           "Every student node at the end; unspecialized nodes should have small fan-out norms.",
           queries.lshape, figures.lshape, TWO_LAYER),
    Figure("loss_curves", "Loss curves", "log10 evaluation loss, mean +- std over seeds.",
           queries.loss_curves, figures.loss_curves),
    Figure("sample_size", "Figure 6: sample size", "rho_mean per layer and evaluation loss vs training samples.",
           queries.sample_size, figures.sample_size, SAMPLES),
    Figure("teacher_aware", "Figure 9: teacher-aware vs agnostic data",
           "Final train (dashed) and evaluation (solid) MSE vs training samples.",
           queries.teacher_aware, figures.teacher_aware, AUGMENTED),
)  # fmt: skip

CLAIMS = (
    ClaimCheck(1, POLARITY, lambda res: claims.claim1(frame(res, queries.success_rate))),
    ClaimCheck(2, OVER_REALIZATION, lambda res: claims.claim2(frame(res, queries.seed_success))),
    ClaimCheck(3, TWO_LAYER, lambda res: claims.claim3(frame(res, queries.success_rate),
                                                       frame(res, queries.first_success))),
    ClaimCheck(4, TWO_LAYER, lambda res: claims.claim4(frame(res, queries.lshape), _threshold(res))),
    ClaimCheck(5, SAMPLES, lambda res: claims.claim5(frame(res, queries.sample_size))),
    ClaimCheck(6, AUGMENTED, lambda res: claims.claim6(frame(res, queries.teacher_aware))),
)  # fmt: skip

PAPER = Paper(
    "ICML 2020 (Student Specialization)",
    FIGURES,
    CLAIMS,
    "Criteria are in `analysis/icml/claims.py` and docs/protocol.md: strongest/weakest = the first/last "
    f"quarter of teacher nodes; rates within {claims.TOLERANCE} are equal, both >= {1 - claims.TOLERANCE:g} "
    "is a tie; claim 2 is a paired bootstrap over seeds within each p; claim 3 a Spearman correlation > "
    f"{claims.MIN_RANK_CORR}; 'much lower' = under half; unspecialized = best correlation < "
    f"{claims.UNSPECIALIZED_BELOW}.",
)
