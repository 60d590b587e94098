"""Luck Matters (Tian et al.): figures 5, 15-20 and claims 7-12 (docs/protocol.md), registered for the report."""

from __future__ import annotations

from analysis.luck import claims, figures, modulation, queries
from analysis.registry import ClaimCheck, Figure, Needs, Paper, frame
from spec_ray.storage import schema as S

LUCK = Needs(
    where=((S.KEEP_CORRELATIONS, (True,)),), words="runs that keep their correlations (sweeps/luck_matters.py)"
)
"""Luck Matters' runs keep every checkpoint's correlations: its rank of the final winners needs them."""
RANKS = Needs(where=LUCK.where, tables=(S.CORRELATIONS,), words=LUCK.words)
BN = Needs(where=LUCK.where, varies=(S.STUDENT_BN,), words="Luck Matters runs with and without student BN")
BN_ANY = Needs(varies=(S.STUDENT_BN,), words="runs with and without student BN")
MODULATION = Needs(
    where=((S.KEEP_MODULATION, (True,)),),
    tables=(S.MODULATION,),
    words="runs that keep beta* and H* (--keep-modulation true, the small FC of sweeps/luck_matters.py)",
)


def _beta_caption(data) -> str:
    run = data.iloc[0]
    data_kind = "infinite" if run["n_train"] != run["n_train"] else "finite"  # NaN: online data
    return (f"One run ({'no BN' if run[S.STUDENT_BN] == 'none' else 'BN ' + run[S.STUDENT_BN]}, {data_kind} data, "
            f"seed {int(run[S.SEED])}; no BN, finite data and the lowest seed are shown where run): the top-down "
            "modulation beta* and its activity-gated H*, teacher nodes down, student nodes across, grouped by their "
            "final best teacher (gray lines between groups) and by falling correlation within a group; colors "
            "scaled to each panel's largest |entry|.")  # fmt: skip


FIGURES = (
    Figure("luck_rho", "Luck Matters figs. 5, 19, 20: rho-bar per layer",
           "Mean over teacher nodes of the best correlation, per layer (0 = lowest), mean over seeds with min/max "
           "band; dashed: a finite training set, solid: infinite data.",
           queries.luck_rho, figures.luck_rho, LUCK),
    Figure("luck_rank", "Luck Matters figs. 5, 17, 18: rank of the final winners",
           "The rank of each teacher node's final best student among all students at every epoch (0 = first), "
           "mean (min/max band over seeds; dashed: finite data) and median (dotted) over teacher nodes; 0 at the "
           "end by definition.",
           queries.luck_rank, figures.luck_rank, RANKS),
    Figure("luck_size", "Luck Matters fig. 15a: small vs large FC teachers",
           "rho-bar (mean over layers) per FC teacher size, panels per student BN; band min/max over seeds.",
           queries.luck_size, figures.luck_size,
           Needs(where=LUCK.where, varies=(S.WIDTHS,), words="Luck Matters runs of two FC teacher sizes")),
    Figure("luck_data", "Luck Matters figs. 15b, 20: finite vs infinite data",
           "rho-bar (mean over layers), dashed: the fixed training set, solid: a fresh batch every step.",
           queries.luck_data, figures.luck_data,
           Needs(where=LUCK.where, words="Luck Matters runs on finite and infinite data")),
    Figure("luck_beta", "Luck Matters fig. 16: beta* and H* before and after training", _beta_caption,
           modulation.matrices, figures.luck_beta, MODULATION),
)  # fmt: skip

CLAIMS = (
    ClaimCheck(7, LUCK, lambda res: claims.claim7(frame(res, queries.luck_rho))),
    ClaimCheck(8, RANKS, lambda res: claims.claim8(frame(res, queries.luck_rank))),
    ClaimCheck(9, BN, lambda res: claims.claim9(frame(res, queries.luck_rho), frame(res, queries.luck_rank))),
    ClaimCheck(10, LUCK, lambda res: claims.claim10(frame(res, queries.luck_rho))),
    ClaimCheck(11, BN_ANY, lambda res: claims.claim11(frame(res, queries.in_norm_change))),
    ClaimCheck(12, MODULATION, lambda res: claims.claim12(frame(res, modulation.winners_in_modulation))),
)  # fmt: skip

PAPER = Paper(
    "Luck Matters",
    FIGURES,
    CLAIMS,
    f"Criteria are in `analysis/luck/claims.py`: growth = rho-bar up by >= {claims.GROWTH}; lucky = winners' mean "
    f"rank at init < {claims.LUCKY_BELOW}; differences under {claims.BN_MARGIN} are none; conserved = median "
    f"relative change < {claims.CONSERVED_BELOW}; concentrated = winners' mean rank in H* < "
    f"{claims.CONCENTRATED_BELOW}.",
)
