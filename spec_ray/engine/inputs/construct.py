"""Protocol construction: teacher, student init, datasets and minibatch order.

Everything is a pure function of a ``RunSpec`` and drawn on the CPU in float64, so a
run is the same on any device and pack. Each random stream is keyed by the seed and
the shapes it fills, never by p, lr or init scale: runs that differ only in those share
teacher base weights, data, student init noise and minibatch order (common random
numbers), so a sweep over p isolates p.

Axes: N samples, d input, m_l teacher width, n_l student width, c outputs, B batch.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

from spec_ray.engine.inputs import datasets, teacher_checkpoints
from spec_ray.engine.nets import arch
from spec_ray.engine.nets.network import Network, forward
from spec_ray.engine.specs.spec import RunSpec

F64 = torch.float64


def stream(seed: int, *key: object) -> torch.Generator:
    """A CPU generator determined by (seed, key); independent across keys."""
    digest = hashlib.sha256(repr((seed, *key)).encode()).digest()
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return gen


def separated_rows(gen: torch.Generator, rows: int, cols: int, choices: tuple[float, ...]) -> Tensor:
    """Rows with entries from ``choices``, each non-zero and distinct from the others."""
    values = torch.tensor(choices, dtype=F64)  # (k,)
    codes = torch.randint(len(choices), (rows, cols), generator=gen)  # (rows, cols)
    seen: set[bytes] = set()
    for i in range(rows):
        # Redraw a row that is all zero or repeats an earlier one (docs/protocol.md).
        while not values[codes[i]].any() or codes[i].numpy().tobytes() in seen:
            codes[i] = torch.randint(len(choices), (cols,), generator=gen)  # (cols,)
        seen.add(codes[i].numpy().tobytes())
    return values[codes]  # (rows, cols)


def build_teacher(spec: RunSpec, stored: dict[str, Tensor] | None = None) -> Network:
    """The teacher: separated rows, biases, fan-out of node j / (j+1)^p, row norms, calibration;
    or, for ``teacher.source`` pretrained or file, the ``stored`` checkpoint's state dict, pruned and
    with its BN folded (``teacher_checkpoints.network``).

    ``teacher.normalize`` follows the authors' two scripts (docs/protocol.md, "Teacher"):
    ``first`` scales layer-1 rows to unit norm and keeps the layers above as drawn before
    dividing them by (j+1)^p; ``all`` divides by (j+1)^p first, then every row and its bias
    by the row norm, so polarity only reweights fan-in within each row.
    """
    t, shape = spec.teacher, arch.teacher(spec)
    if t.stored:
        if stored is None:
            raise ValueError(f"teacher.source={t.source!r}: the stored teacher {t.load_teacher} was not given; "
                             "allowed a launch that stores it first "
                             "(spec_ray.orchestration.launch_teachers)")  # fmt: skip
        return teacher_checkpoints.network(stored, spec)
    conv = ("conv", spec.model.image_size) if shape.conv else ()  # MLP streams keyed as they always were
    gen = stream(spec.seed, "teacher", spec.data.d, t.widths, t.c, t.weight_choices, *conv)
    fan_in, fan_out = shape.fan_ins, shape.outs
    weights, biases = [], []
    for layer, (rows, cols) in enumerate(zip(fan_out, fan_in)):
        w = separated_rows(gen, rows, cols, t.weight_choices)  # (m_l, m_{l-1})
        # Uniform noise is drawn even at spread 0, so the rest of the stream never shifts.
        noise = torch.rand(rows, generator=gen, dtype=F64) * 2 - 1  # (m_l,) U[-1, 1]
        b = t.teacher_bias + t.teacher_bias_spread * noise  # (m_l,)
        if layer == 0 and t.normalize_kind.unit_first_layer:
            w = w / w.norm(dim=1, keepdim=True)  # unit-norm rows; the bias is kept
        if layer > 0:
            # Eqn. 10: ||v*_j|| ~ 1/j^p on every layer above the first (a conv channel: all its taps).
            strength = torch.arange(1, fan_out[layer - 1] + 1, dtype=F64) ** -t.p  # (m_{l-1},)
            w = w * strength.repeat_interleave(cols // fan_out[layer - 1])  # (m_l, fan_in)
        if t.normalize_kind.every_layer:
            norm = w.norm(dim=1)  # (m_l,)
            w, b = w / norm[:, None], b / norm  # (m_l, m_{l-1}), (m_l,)
        weights.append(w)
        biases.append(b)
    teacher = Network(tuple(weights), tuple(biases))
    return calibrate(teacher, eval_inputs(spec), shape) if t.calibrate else teacher


def calibrate(teacher: Network, x: Tensor, shape: arch.Arch) -> Network:
    """Deep protocol: every hidden node active on half of ``x``, outputs standardised.

    Hidden layers, lowest first: the bias is shifted by the median pre-activation over x.
    The output layer is rescaled so each output has zero mean and unit std over x.
    """
    weights, biases = list(teacher.weights), list(teacher.biases)
    h = x  # (N, d)
    for layer in range(len(weights) - 1):
        pre = h @ weights[layer].T + biases[layer]  # (N, m_l)
        biases[layer] = biases[layer] - pre.median(dim=0).values  # (m_l,)
        h = shape.activation.forward(shape.slope, h @ weights[layer].T + biases[layer])  # (N, m_l)
    out = h @ weights[-1].T + biases[-1]  # (N, c)
    mean, std = out.mean(dim=0), out.std(dim=0).clamp_min(1e-12)  # (c,), (c,)
    weights[-1] = weights[-1] / std[:, None]  # (c, m_L)
    biases[-1] = (biases[-1] - mean) / std  # (c,)
    return Network(tuple(weights), tuple(biases))


INIT_PURPOSES = ("student", "pretrain")
"""What a network's init is drawn for; each its own stream, so a pretrained teacher never starts
from a student's init whatever the widths and seeds (they once shared the seed-1 student's)."""


def init_student(spec: RunSpec, purpose: str = "student") -> Network:
    """Student init: N(0, init_std^2) weights and zero biases, or torch's default x init_scale.

    Drawn from ``init_seed`` when set, else from ``seed``, in the stream of ``purpose`` (a student,
    or a teacher about to be pretrained on labels); a conv filter's fan-in is C_in x 9
    (``nn.Conv2d``'s default init bound).
    """
    if purpose not in INIT_PURPOSES:
        raise ValueError(f"purpose={purpose!r} is invalid: allowed {', '.join(INIT_PURPOSES)}")
    widths, shape = spec.student_widths, arch.student(spec)
    seed = spec.seed if spec.init_seed is None else spec.init_seed
    conv = ("conv", spec.model.image_size) if shape.conv else ()
    gen = stream(seed, purpose, spec.data.d, widths, spec.teacher.c, *conv)
    fan_in, fan_out = shape.fan_ins, shape.outs
    s = spec.student
    weights, biases = [], []
    for rows, cols in zip(fan_out, fan_in):
        w, b = s.init_kind.draw(s, gen, rows, cols)  # (n_l, n_{l-1}), (n_l,)
        weights.append(w)
        biases.append(b)
    return Network(tuple(weights), tuple(biases))


def _images(spec: RunSpec, split: datasets.Split | None) -> datasets.Split:
    return datasets.read(spec.data.dataset, spec.data.data_dir) if split is None else split


def eval_inputs(spec: RunSpec, split: datasets.Split | None = None) -> Tensor:
    """Fresh Gaussian evaluation set, or a real image set's first n_eval test images: (N_eval, d);
    ``split``: the image set as given (``datasets.stand_in`` for timing), else read."""
    d = spec.data
    if d.real:
        return torch.from_numpy(_images(spec, split).x_test[: d.n_eval]).to(F64)  # (N_eval, d)
    gen = stream(spec.seed, "eval", d.d, d.n_eval)
    return torch.randn(d.n_eval, d.d, generator=gen, dtype=F64) * d.sigma  # (N_eval, d)


def train_inputs(spec: RunSpec, split: datasets.Split | None = None) -> Tensor:
    """The fixed training set, augmented as the spec says: (N_train, d); online runs: (0, d);
    ``split`` as for ``eval_inputs``."""
    d = spec.data
    if d.real:
        return torch.from_numpy(_images(spec, split).x_train[: d.n_train]).to(F64)  # (N, d)
    if d.n_train is None:
        return torch.zeros(0, d.d, dtype=F64)
    if d.augmentation_kind.present:
        return (_aware if d.augmentation_kind.teacher_aware else _agnostic)(spec)
    gen = stream(spec.seed, "train", d.d, d.n_train)
    return torch.randn(d.n_train, d.d, generator=gen, dtype=F64) * d.sigma  # (N, d)


def _agnostic(spec: RunSpec) -> Tensor:
    """Definition 7a: every base point and its copies shifted +-delta along each axis."""
    d = spec.data
    copies = 2 * d.d + 1
    base_n = math.ceil(d.n_train / copies)
    gen = stream(spec.seed, "train_agnostic", d.d, d.n_train)
    base = torch.randn(base_n, d.d, generator=gen, dtype=F64) * d.sigma  # (N0, d)
    eye = torch.eye(d.d, dtype=F64) * d.agnostic_delta  # (d, d)
    shifts = torch.cat([torch.zeros(1, d.d, dtype=F64), eye, -eye])  # (2d+1, d)
    points = base[:, None, :] + shifts[None]  # (N0, 2d+1, d)
    return points.reshape(-1, d.d)[: d.n_train]  # (N, d)


def _aware(spec: RunSpec) -> Tensor:
    """Definition 7b: points on each teacher boundary and shifted off it by +-alpha w~_i.

    Per teacher node i: ceil(N / 3m) Gaussian points projected onto w_i . x + b_i = 0,
    plus copies at +-alpha w~_i (alpha ~ U[lo, hi]); every point rescaled to norm
    sigma * sqrt(d). Nodes are interleaved so truncating to N keeps them balanced.
    """
    d = spec.data
    teacher = build_teacher(spec)
    w, b = teacher.weights[0], teacher.biases[0]  # (m, d), (m,)
    m = w.shape[0]
    per_node = math.ceil(d.n_train / (3 * m))
    gen = stream(spec.seed, "train_aware", d.d, d.n_train, spec.teacher.widths)
    x = torch.randn(m, per_node, d.d, generator=gen, dtype=F64) * d.sigma  # (m, q, d)
    alpha = d.aware_alpha_lo + (d.aware_alpha_hi - d.aware_alpha_lo) * torch.rand(
        m, per_node, 1, generator=gen, dtype=F64
    )  # (m, q, 1)
    w_unit = w / w.norm(dim=1, keepdim=True)  # (m, d)
    offset = (torch.einsum("iqd,id->iq", x, w) + b[:, None]) / w.norm(dim=1)[:, None] ** 2  # (m, q)
    on_plane = x - offset[..., None] * w[:, None, :]  # (m, q, d)
    shift = alpha * w_unit[:, None, :]  # (m, q, d)
    points = torch.stack([on_plane, on_plane + shift, on_plane - shift], dim=2)  # (m, q, 3, d)
    points = points.transpose(0, 1).reshape(-1, d.d)  # (q*m*3, d)
    points = points * (d.sigma * math.sqrt(d.d) / points.norm(dim=1, keepdim=True))  # (.., d)
    return points[: d.n_train]  # (N, d)


def eval_labels(spec: RunSpec, split: datasets.Split | None = None) -> Tensor | None:
    """A real image set's class labels of the evaluation images, (N_eval,); None for Gaussian data."""
    if not spec.data.real:
        return None
    return torch.from_numpy(_images(spec, split).y_test[: spec.data.n_eval])  # (N_eval,)


LABEL_BLOCK_BYTES = 1 << 30
"""Teacher activations held at once while labelling; larger sets are labelled in blocks of samples. A
CIFAR-10 ConvNet's second layer over 50,000 images unfolds to 180 GB in float64 (measured: a 20 GB
peak at 2,300 images a block); below this nothing is cut, so the labels of every run stored so far
are computed as they were."""


def teacher_outputs(
    teacher: Network, x: Tensor, shape: arch.Arch | None = None, block_bytes: int = LABEL_BLOCK_BYTES
) -> Tensor:
    """Labels: the teacher's output on x, (N, c); ``shape`` None: a ReLU MLP; in blocks of samples
    whose activations fit ``block_bytes``."""
    if shape is None:
        per_sample = 8 * max(w.shape[-2] + w.shape[-1] for w in teacher.weights)
    else:  # a layer's outputs and, for a float64 conv, its unfolded inputs (fan-in x positions)
        per_sample = 8 * max((f + n) * p for f, n, p in zip(shape.fan_ins, shape.outs, (*shape.positions, 1)))
    block = max(1, block_bytes // per_sample)
    if x.shape[0] <= block:
        return forward(teacher, x, shape)[1]  # (N, c)
    return torch.cat([forward(teacher, x[i : i + block], shape)[1] for i in range(0, x.shape[0], block)])  # (N, c)


def online_inputs(spec: RunSpec, epoch: int) -> Tensor:
    """Online data: a fresh Gaussian minibatch for every step of one epoch, (iters, B, d)."""
    t, d = spec.train, spec.data
    gen = stream(spec.seed, "online", d.d, t.batch, t.iters_per_epoch, epoch)
    return torch.randn(t.iters_per_epoch, t.batch, d.d, generator=gen, dtype=F64) * d.sigma  # (iters, B, d)


def labels(outputs: Tensor) -> Tensor:
    """Cross-entropy labels: the argmax of the teacher output, (.., N, c) -> (.., N)."""
    return outputs.argmax(dim=-1)


def batch_indices(spec: RunSpec, epoch: int) -> Tensor:
    """Minibatch sample indices of one epoch: (steps, B).

    With replacement: uniform draws. A shuffled pass: one permutation of the training set,
    cut into batches; the last batch holds ``spec.last_batch`` indices, and its row is
    padded with the permutation's first ones so the tensor stays rectangular (the
    trainers read only the first ``last_batch`` of that row).
    """
    t, n = spec.train, spec.data.n_train
    steps = spec.steps_per_epoch
    if not spec.epoch_is_pass:
        gen = stream(spec.seed, "batches", n, t.batch, t.iters_per_epoch, epoch)
        return torch.randint(n, (steps, t.batch), generator=gen)
    gen = stream(spec.seed, "pass", n, t.batch, epoch)
    order = torch.randperm(n, generator=gen)  # (N,)
    return torch.cat([order, order[: steps * t.batch - n]]).view(steps, t.batch)  # (steps, B)
