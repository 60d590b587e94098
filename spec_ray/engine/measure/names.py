"""The metrics the engine computes, each declared once: name, type, meaning and unit.

The engine declares what it measures here and imports nothing from storage; ``storage.schema``
derives the Arrow schemas and docs/schema.md from these declarations. A new metric column is
this declaration, its computation (``metrics``) and its ground truth (``reference``).
"""

from __future__ import annotations

from typing import NamedTuple

# Keys of a checkpoint row.
RUN_ID = "run_id"
STEP = "step"
EPOCH = "epoch"
LAYER = "layer"
NODE = "node"

# Per-node metrics.
BEST_CORR = "best_corr"
BEST_CORR_TRAIN = "best_corr_train"
BEST_STUDENT = "best_student"
BEST_TEACHER = "best_teacher"
SUCCESS = "success"
FANOUT_NORM = "fanout_norm"
IN_NORM = "in_norm"
BEST_INIT_RANK = "best_init_rank"

# Per-run metrics.
TRAIN_LOSS = "train_loss"
EVAL_LOSS = "eval_loss"
RHO_MEAN = "rho_mean"
GRAD_NORM = "grad_norm"
DIVERGED = "diverged"
EVAL_ACCURACY = "eval_accuracy"
MEAN_BEST_INIT_RANK = "mean_best_init_rank"

# Tables the rows belong to.
TEACHER_NODES = "teacher_nodes"
STUDENT_NODES = "student_nodes"
SCALARS = "scalars"
CORR_MATRICES = "corr_matrices"
"""Opt-in (``checkpoint.keep_correlations``): every teacher x student correlation at every checkpoint, one
row per run, checkpoint and layer holding the layer's m x n matrix."""
WINNER_RANKS = "winner_ranks"
"""Written with ``corr_matrices`` when a pack ends: Luck Matters' rank of the final winners per run,
checkpoint and layer, the summary its report reads instead of every correlation."""
CORRELATIONS = "correlations"
"""The long layout of ``corr_matrices`` (a row per teacher x student pair) that spec-ray wrote before
0.2: read, verified and grown as it is, never written."""
STUDENT = "student"
CORR = "corr"
TEACHERS = "teachers"
STUDENTS = "students"
MEAN_RANK = "mean_rank"
MEDIAN_RANK = "median_rank"
MODULATION = "modulation"
"""Opt-in (``checkpoint.keep_modulation``): beta* and H* at the first and last checkpoint."""
BETA = "beta"
H = "h"


class Col(NamedTuple):
    """One column of a trace table: its name, type (an Arrow type's name), meaning and unit."""

    name: str
    kind: str
    """string | int16 | int32 | int64 | float64 | bool | list<float32>."""
    meaning: str
    unit: str = ""


_KEY = (
    Col(
        RUN_ID,
        "string",
        "stable hash of the spec fields that shape the run (new fields at their neutral value left out)",
    ),
    Col(STEP, "int64", "SGD steps taken; 0 is initialization"),
    Col(EPOCH, "float64", "step / steps_per_epoch"),
)
_NODE = (Col(LAYER, "int16", "hidden layer, 1 = lowest"),)
_CORR, _FRACTION = "Pearson correlation", "fraction in [0, 1]"
_LOSS = "MSE: mean over samples and outputs; CE: nats"
COLUMNS: dict[str, tuple[Col, ...]] = {
    TEACHER_NODES: _KEY + _NODE + (
        Col(NODE, "int32", "teacher node j; 0 is the strongest"),
        Col(BEST_CORR, "float64", "max over student nodes k of rho_jk on the evaluation set", _CORR),
        Col(BEST_STUDENT, "int32", "the k attaining it"),
        Col(SUCCESS, "bool", "best_corr > success_threshold: the teacher node is recovered"),
        Col(FANOUT_NORM, "float64", "norm of the teacher node's outgoing weights, bias excluded"),
        Col(BEST_CORR_TRAIN, "float64", "the same max on the training set; NaN off the train-metric schedule",
               _CORR),
        Col(BEST_INIT_RANK, "float64", "rank at initialization of this node's *current* best student among all "
               "students, by correlation with this teacher node; 0 = first, 1 = last. Not Luck Matters' rank of the "
               "final winners: that is the `winner_ranks` table, made from `corr_matrices`", _FRACTION),
    ),
    STUDENT_NODES: _KEY + _NODE + (
        Col(NODE, "int32", "student node k"),
        Col(BEST_CORR, "float64", "specialization: max over teacher nodes j of rho_jk (evaluation set)", _CORR),
        Col(BEST_TEACHER, "int32", "the j attaining it"),
        Col(FANOUT_NORM, "float64", "norm of the student node's outgoing weights, bias excluded"),
        Col(IN_NORM, "float64", "norm of the student node's incoming weights and bias (a conv channel: its "
               "filter); Luck Matters sec. 6.1: conserved under BN"),
        Col(BEST_CORR_TRAIN, "float64", "specialization on the training set (figure 5); NaN off the "
               "train-metric schedule", _CORR),
    ),
    SCALARS: _KEY + (
        Col(TRAIN_LOSS, "float64", "loss on the whole training set in the authors' unit; NaN off schedule and "
               "for online data", _LOSS),
        Col(EVAL_LOSS, "float64", "the same on the evaluation set", _LOSS),
        Col(RHO_MEAN, "float64", "mean over teacher nodes of best_corr, lowest layer", _CORR),
        Col(GRAD_NORM, "float64", "norm of the full-batch gradient of the SGD objective (`mse`: 1/2 x squared "
               "error summed over outputs), all weights and biases; NaN off schedule"),
        Col(DIVERGED, "bool", "the run has diverged by this step"),
        Col(EVAL_ACCURACY, "float64", "a real image set (data.dataset): test images whose output argmax is "
               "their class label; Gaussian data: cross-entropy runs' eval samples whose argmax matches the "
               "teacher's, NaN for MSE", _FRACTION),
        Col(MEAN_BEST_INIT_RANK, "float64", "mean of `best_init_rank` over the lowest layer's teacher nodes",
               _FRACTION),
    ),
}  # fmt: skip
"""Every column of the three checkpoint tables, in order: ``storage.schema`` derives the Arrow schemas."""

CORR_MATRIX_COLUMNS = _KEY + _NODE + (
    Col(TEACHERS, "int32", "m_l: the matrix's rows, teacher nodes j (0 is the strongest)"),
    Col(STUDENTS, "int32", "n_l: its columns, student nodes k"),
    Col(CORR, "list<float32>", "rho_jk on the evaluation set, row-major: rho_jk is element j * students + k. "
           "Luck Matters' rank of the final winners is taken from it (``winner_ranks``)", _CORR),
)  # fmt: skip
"""The opt-in ``corr_matrices`` table: one row per run, checkpoint and hidden layer."""

WINNER_RANK_COLUMNS = _KEY + _NODE + (
    Col(MEAN_RANK, "float64", "mean over teacher nodes j of the rank of j's final winner k* (its most "
           "correlated student at the run's last step) among all students by rho_jk at this checkpoint; "
           "0 = first, 1 = last (rank / (n_l - 1))", _FRACTION),
    Col(MEDIAN_RANK, "float64", "the median of the same ranks over teacher nodes", _FRACTION),
    Col(TEACHERS, "int32", "m_l: the teacher nodes averaged over"),
)  # fmt: skip
"""The ``winner_ranks`` table (with ``corr_matrices``): one row per run, checkpoint and hidden layer."""

CORRELATION_COLUMNS = _KEY + _NODE + (
    Col(NODE, "int32", "teacher node j; 0 is the strongest"),
    Col(STUDENT, "int32", "student node k"),
    Col(CORR, "float64", "rho_jk on the evaluation set: what Luck Matters' rank of the final winners is "
           "taken from (analysis.luck.queries.winner_ranks)", _CORR),
)  # fmt: skip
"""The long ``correlations`` table of spec-ray before 0.2: a row per run, checkpoint, layer, teacher and student."""

MODULATION_COLUMNS = _KEY + _NODE + (
    Col(NODE, "int32", "teacher node j°; 0 is the strongest"),
    Col(STUDENT, "int32", "student node j"),
    Col(BETA, "float64", "beta*_jj°: E_x of the top-down modulation of Luck Matters eq. 5 on the evaluation "
           "set (the output layers' W^T W* at the top hidden layer)"),
    Col(H, "float64", "H*_jj° = E_x f'_j(x) beta*_jj°(x) f'_j°(x): beta* gated by both nodes' activity"),
)  # fmt: skip
"""The opt-in ``modulation`` table: at a run's first and last checkpoint, a row per layer, teacher and student."""
