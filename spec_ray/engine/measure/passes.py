"""Whole-set passes of a pack's networks for checkpoint metrics, in memory-bounded run chunks.

Axes: R runs (Rc in a chunk), G groups of k runs sharing their inputs (Gc in a chunk, q runs
of each), N samples, d input, n_l width of hidden layer l, c outputs.

Layers carry their bias as a last weight column and activations a ones column, as in the
trainer, so a layer is one bmm and the output needs no broadcast bias copy (that copy was
8 % of a checkpoint, measured). Runs of a group share their inputs, so layer 1 of a chunk is
one (N, d+1) x (d+1, q n_1) matmul per group instead of q skinny ones: at multi 1 a
run's own (10,000 x 101) x (101 x 20) product ran at a third of the wide one's rate.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spec_ray.engine.nets import parts
from spec_ray.engine.nets.arch import Arch
from spec_ray.engine.training.pack import Pack
from spec_ray.engine.training.scratch import Workspace

# Bytes of activations per run chunk. CPU: tensors up to 32 MiB are served again from the
# heap, larger ones are fresh page-faulting mmaps (glibc's mmap threshold; measured 1.9x
# slower with 1 GiB chunks). CUDA: one run of the two-layer protocol alone is 34 MB, so the
# CPU budget made one chunk per run and a 192-run checkpoint took 1.8-3.8 s on an H100
# (docs/performance.md).
MEMORY_BUDGET = {"cpu": 1 << 25, "cuda": 1 << 31}


def chunks(pack: Pack, samples: int, widths: int) -> list[tuple[int, int]]:
    """Run ranges [lo, hi) whose ``widths`` floats per sample fit the budget: whole groups,
    or pieces of one group when a group alone is over it."""
    budget = MEMORY_BUDGET.get(pack.device.type, MEMORY_BUDGET["cpu"])
    size = max(1, min(pack.size, budget // (samples * widths * pack.dtype.itemsize)))
    k = pack.group_size
    if size >= k:
        size -= size % k
        return [(lo, min(pack.size, lo + size)) for lo in range(0, pack.size, size)]
    return [(lo, min(g + k, lo + size)) for g in range(0, pack.size, k) for lo in range(g, g + k, size)]


def group_inputs(pack: Pack, x: Tensor, lo: int, hi: int) -> tuple[Tensor, int]:
    """The inputs (Gc, N, d+1) of the groups that runs lo..hi-1 belong to, from every group's
    (G, N, d+1), and q, the chunk's runs of each group (whole groups, or a piece of one)."""
    k = pack.group_size
    return x[lo // k : (hi - 1) // k + 1], min(k, hi - lo)


class WholeSet(NamedTuple):
    """The networks of a pack's runs over one whole set, as a checkpoint's passes read them in run chunks."""

    pack: Pack
    arch: Arch
    """The networks' shape (teacher or student)."""
    x: Tensor
    """Every group's inputs with a ones column (G, N, d+1)."""
    params: tuple[Tensor, ...]
    """Every run's layers (R, n_l, fan_in+1), then affine BN weights and biases (``parts``)."""
    buffers: tuple[Tensor, ...]
    """BN running statistics (R, n_l); empty without BN."""
    work: Workspace
    """Scratch buffers, reused chunk after chunk."""
    tag: str
    """Names this network's buffers in ``work`` (a teacher's and a student's apart)."""


def forward(net: WholeSet, lo: int, hi: int, output: bool = True) -> tuple[list[Tensor], Tensor | None]:
    """Hidden activations with a ones column [(Rc, N, n_l+1)] and outputs (Rc, N, c) (or None)
    of runs lo..hi-1 of a plain MLP (``arch.plain``), in ``work``'s buffers named by ``tag``."""
    arch, params, work, tag = net.arch, net.params, net.work, net.tag
    x, q = group_inputs(net.pack, net.x, lo, hi)  # (Gc, N, d+1), runs of each group in the chunk
    g_count, n, d1 = x.shape
    n1 = params[0].shape[1]
    z = work.get("z", x, g_count, n, q * n1)  # (Gc, N, q n1)
    torch.bmm(x, params[0][lo:hi].reshape(g_count, q * n1, d1).transpose(1, 2), out=z)
    h = work.get(f"{tag}0", x, hi - lo, n, n1 + 1, ones_column=True)  # (Rc, N, n1+1)
    out1 = h[..., :n1].view(g_count, q, n, n1)  # (Gc, q, N, n1)
    arch.activation.forward(arch.slope, z.view(g_count, n, q, n1).transpose(1, 2), out=out1)
    hidden = [h]
    for layer, w in enumerate(params[1:-1], start=1):
        z = work.get("z", x, hi - lo, n, w.shape[1])  # (Rc, N, n_l)
        torch.bmm(h, w[lo:hi].transpose(1, 2), out=z)
        h = work.get(f"{tag}{layer}", x, hi - lo, n, w.shape[1] + 1, ones_column=True)  # (Rc, N, n_l+1)
        arch.activation.forward(arch.slope, z, out=h[..., :-1])
        hidden.append(h)
    if not output:
        return hidden, None
    out = work.get("out", x, hi - lo, n, params[-1].shape[1])  # (Rc, N, c)
    return hidden, torch.bmm(h, params[-1][lo:hi].transpose(1, 2), out=out)


def correlate(teacher_unit: Tensor, student_act: Tensor, work: Workspace) -> Tensor:
    """rho of ``metrics.normalize``d teacher activations (.., N, m) with student ones (.., N, n)
    -> (.., m, n).

    The wide student side is centred once into a scratch buffer and divided after the
    matmul, then squared in place for its norm: no temporaries of its size.
    """
    centred = work.get("centred", student_act, *student_act.shape)  # (.., N, n)
    torch.sub(student_act, student_act.mean(dim=-2, keepdim=True), out=centred)
    num = teacher_unit.transpose(-1, -2) @ centred  # (.., m, n)
    norm = (centred.square_().sum(dim=-2) + 1e-10).sqrt()  # (.., n)
    return num.div_(norm.unsqueeze(-2))


def grad_norm(
    pack: Pack,
    arch: Arch,
    x: Tensor,
    params: tuple[Tensor, ...],
    hidden: list[Tensor],
    out: Tensor,
    target: Tensor,
    lo: int,
) -> Tensor:
    """Norm of the full-batch gradient of the SGD objective over all weights and biases: (Rc,).

    x: (G, N, d+1) every group's inputs; hidden, out: ``forward``'s of runs lo..lo+Rc-1 of a
    plain MLP; target: their teacher outputs (Rc, N, c). Overwrites ``out``.
    """
    loss = pack.spec.train.loss_kind
    rc, n, c = out.shape
    g = loss.residual_(out, target).mul_(loss.grad_scale(n, c))  # (Rc, N, c) dObjective/dy
    sq = out.new_zeros(rc)  # (Rc,)
    for layer in range(len(params) - 1, 0, -1):
        a = hidden[layer - 1]  # (Rc, N, n_{l-1}+1)
        sq += torch.bmm(g.transpose(1, 2), a).square().sum(dim=(1, 2))  # weights and bias
        # Contiguous: with 10,000 rows the strided weight view made this matmul 1.8x slower (measured).
        w = params[layer][lo : lo + rc, :, :-1].contiguous()  # (Rc, n_l, n_{l-1})
        g = arch.activation.backward(arch.slope, torch.bmm(g, w), a[..., :-1])  # (Rc, N, n_{l-1})
    xg, q = group_inputs(pack, x, lo, lo + rc)  # (Gc, N, d+1)
    n1 = g.shape[2]
    gg = g.view(-1, q, n, n1).transpose(1, 2).reshape(-1, n, q * n1)  # (Gc, N, q n1)
    grad = torch.bmm(gg.transpose(1, 2), xg).view(-1, q, n1, xg.shape[2])  # (Gc, q, n1, d+1)
    return (sq + grad.square().sum(dim=(2, 3)).view(rc)).sqrt()


def grad_norm_parts(
    pack: Pack, arch: Arch, x: Tensor, params: tuple[Tensor, ...], buffers: tuple[Tensor, ...], target: Tensor, lo: int
) -> Tensor:
    """``grad_norm`` of any network (``parts``, eval mode) by autograd: (Rc,).

    params, buffers: runs lo..lo+Rc-1 only; x: (G, N, d+1) every group's inputs; target:
    the runs' teacher outputs (Rc, N, c). BN parameters count among the weights.
    """
    xg, q = group_inputs(pack, x, lo, lo + target.shape[0])  # (Gc, N, d+1)
    leaves = tuple(p.detach().requires_grad_() for p in params)
    with torch.enable_grad():
        _, out = parts.forward(arch, leaves, buffers, xg, q)  # (Rc, N, c)
        grads = torch.autograd.grad(pack.spec.train.loss_kind.objective(out, target).sum(), leaves)
    return torch.stack([g.square().flatten(1).sum(dim=1) for g in grads]).sum(dim=0).sqrt()  # (Rc,)
