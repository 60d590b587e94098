"""The authors' two-layer recipe, re-implemented apart from spec-ray: a held-out check of its science.

Written from facebookresearch/luckmatters ``student_specialization/recon_two_layer.py`` (its
``init``, ``forward``, ``backward`` and the SGD loop of ``run``) in plain NumPy float64, one
run at a time, with its own random streams. It imports nothing from ``spec_ray``, so it
shares no construction, minibatch or metric code with the engine it checks: agreement
between the two is evidence about the science, not about shared code.

Axes: N samples, B batch, d input, m teacher nodes, n student nodes, c outputs. Weights
are augmented as in the authors' code: ``W1 (d+1, m)`` and ``W2 (m+1, c)``, the last row
the bias, inputs and hidden activations carrying a ones column.

    python benchmarks/authors_recipe.py --m 20 --multi 5 --p 1 --seeds 4 --epochs 5
"""

from __future__ import annotations

import argparse
import random
from typing import NamedTuple

import numpy as np

CHOICES = (-0.5, -0.25, 0.0, 0.25, 0.5)  # the protocol's set; the stored script hard-codes -1..1 in steps of 0.25


class Recipe(NamedTuple):
    """The settings of one run of the authors' command line (their defaults where the protocol agrees)."""

    m: int = 20
    multi: int = 5
    p: float = 0.0
    d: int = 100
    c: int = 50
    data_std: float = 1.5
    bias: float = -0.1
    student_scale: float = 0.005
    lr: float = 0.01
    batchsize: int = 16
    n_train: int = 10_000
    n_eval: int = 10_000
    num_epoch: int = 100
    num_iter_per_epoch: int = 1000
    choices: tuple[float, ...] = CHOICES


def separate_rows(rng: random.Random, rows: int, cols: int, choices: tuple[float, ...]) -> np.ndarray:
    """``init_separate_w``: rows of entries from ``choices``, distinct from each other and from zero."""
    seen = {tuple([0.0] * cols)}
    w = np.zeros((rows, cols))  # (rows, cols)
    for i in range(rows):
        while True:
            row = tuple(rng.choice(choices) for _ in range(cols))
            if row not in seen:
                break
        seen.add(row)
        w[i] = row
    return w


def teacher(recipe: Recipe, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """W1 (d+1, m) with unit-norm columns and bias row; W2 (m+1, c) kept as drawn, row j / (j+1)^p."""
    rng = random.Random(seed)
    w1 = np.empty((recipe.d + 1, recipe.m))  # (d+1, m)
    w1[:-1] = separate_rows(rng, recipe.m, recipe.d, recipe.choices).T
    w1[:-1] /= np.linalg.norm(w1[:-1], axis=0)  # their normalize(W1_t): layer 1 only
    w1[-1] = recipe.bias
    w2 = np.empty((recipe.m + 1, recipe.c))  # (m+1, c)
    w2[:-1] = separate_rows(rng, recipe.c, recipe.m, recipe.choices).T
    w2[:-1] /= (np.arange(1, recipe.m + 1) ** recipe.p)[:, None]  # teacher_strength_decay
    w2[-1] = recipe.bias
    return w1, w2


def forward(x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augmented input (N, d+1), post-ReLU hidden with ones column (N, m+1), output (N, c)."""
    ones = np.ones((x.shape[0], 1))
    x_aug = np.concatenate([x, ones], axis=1)  # (N, d+1)
    h = np.concatenate([np.maximum(x_aug @ w1, 0.0), ones], axis=1)  # (N, m+1)
    return x_aug, h, h @ w2  # (N, c)


def correlation(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``act2corrMat``: Pearson correlation of teacher (N, m) and student (N, n) activations -> (m, n)."""
    t = t - t.mean(axis=0)
    s = s - s.mean(axis=0)
    t = t / np.sqrt((t**2).sum(axis=0) + 1e-10)
    s = s / np.sqrt((s**2).sum(axis=0) + 1e-10)
    return t.T @ s


def train(recipe: Recipe, seed: int, eval_epochs: tuple[int, ...] = ()) -> dict[int, np.ndarray]:
    """One run; returns each teacher node's best eval correlation (m,) after each epoch in ``eval_epochs``."""
    w1_t, w2_t = teacher(recipe, seed)
    gen = np.random.default_rng(seed)
    n = recipe.m * recipe.multi
    w1_s = gen.standard_normal((recipe.d + 1, n)) * recipe.student_scale  # (d+1, n)
    w2_s = gen.standard_normal((n + 1, recipe.c)) * recipe.student_scale  # (n+1, c)
    w1_s[-1], w2_s[-1] = 0.0, 0.0  # student biases start at 0
    x_eval = gen.standard_normal((recipe.n_eval, recipe.d)) * recipe.data_std  # (Ne, d)
    x_train = gen.standard_normal((recipe.n_train, recipe.d)) * recipe.data_std  # (N, d)
    _, h_eval_t, _ = forward(x_eval, w1_t, w2_t)
    _, _, y_train = forward(x_train, w1_t, w2_t)  # (N, c) labels, computed once
    picks = random.Random(seed + 1_000_003)
    out: dict[int, np.ndarray] = {}
    for epoch in range(1, max(eval_epochs, default=recipe.num_epoch) + 1):
        for _ in range(recipe.num_iter_per_epoch):
            sel = picks.choices(range(recipe.n_train), k=recipe.batchsize)  # with replacement
            x_aug, h, y = forward(x_train[sel], w1_s, w2_s)  # (B, d+1), (B, n+1), (B, c)
            g2 = y_train[sel] - y  # (B, c): minus dLoss/dy per sample
            g1 = g2 @ w2_s.T  # (B, n+1)
            g1[h <= 0] = 0.0  # ReLU gate (the ones column is never gated)
            w2_s += recipe.lr * (h.T @ g2) / recipe.batchsize  # (n+1, c)
            w1_s += recipe.lr * (x_aug.T @ g1[:, :-1]) / recipe.batchsize  # (d+1, n)
        if epoch in eval_epochs:
            _, h_eval_s, _ = forward(x_eval, w1_s, w2_s)
            out[epoch] = correlation(h_eval_t[:, :-1], h_eval_s[:, :-1]).max(axis=1)  # (m,)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=20, help="teacher nodes")
    parser.add_argument("--multi", type=int, default=5, help="over-realization")
    parser.add_argument("--p", type=float, default=0.0, help="polarity")
    parser.add_argument("--seeds", type=int, default=2, help="seeds 1..N")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of 1,000 steps")
    args = parser.parse_args()
    recipe = Recipe(m=args.m, multi=args.multi, p=args.p, num_epoch=args.epochs)
    for seed in range(1, args.seeds + 1):
        best = train(recipe, seed, (args.epochs,))[args.epochs]
        print(f"seed {seed}: success {float((best > 0.95).mean()):.2f}, rho_mean {float(best.mean()):.3f}")


if __name__ == "__main__":
    main()
