"""The names of the metrics the engine computes: ``storage.schema`` declares them as columns.

The engine names what it measures here and imports nothing from storage; storage takes
these names for its column declarations (types, units, meanings), so each name is spelled once.
"""

from __future__ import annotations

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
CORRELATIONS = "correlations"
"""Opt-in (``checkpoint.keep_correlations``): every teacher x student correlation at every checkpoint."""
STUDENT = "student"
CORR = "corr"
MODULATION = "modulation"
"""Opt-in (``checkpoint.keep_modulation``): beta* and H* at the first and last checkpoint."""
BETA = "beta"
H = "h"
