"""Stored teachers: the authors' checkpoint format, BN folded in eval mode, ICML's structured pruning.

A checkpoint is the authors' ``{"net": state_dict}`` of ``model_gen.Model`` / ``ModelConv``:
``ws_linear.<l>.weight`` / ``.bias`` (an MLP's (n_l, fan_in), a conv layer's (C_out, C_in, 3, 3)),
``ws_bn.<l>.weight`` / ``bias`` / ``running_mean`` / ``running_var`` when the teacher has BN, and
``final_w.weight`` / ``.bias``. ``network`` turns one into the engine's plain ``Network``:

1. the pruned nodes are chosen on the checkpoint's own weights, as ``model_gen.prune`` does;
2. BN in eval mode is an affine map per node, folded exactly into the layers: before the ReLU
   into the node's own row, after it into the next layer's columns (a node's output then differs
   from the authors' ``hs`` by a per-node affine map, which no Pearson correlation sees, for a
   positive BN scale);
3. the pruned nodes are dropped: their outgoing weights go, so the function is unchanged when
   they were zero, and the student is over-realized on the nodes that remain.

Axes: n_l nodes (channels) of hidden layer l, f_l a node's fan-in, c outputs.
"""

from __future__ import annotations

import io

import torch
from torch import Tensor

from spec_ray.engine.kinds.batchnorm import BatchNorm
from spec_ray.engine.nets.arch import BN_EPS
from spec_ray.engine.nets.network import Network
from spec_ray.engine.specs.spec import RunSpec

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def to_bytes(state: dict[str, Tensor], **extra: object) -> bytes:
    """A checkpoint file's bytes: ``{"net": state, **extra}`` through ``torch.save``."""
    buffer = io.BytesIO()
    torch.save({"net": {k: v.detach().cpu() for k, v in state.items()}, **extra}, buffer)
    return buffer.getvalue()


def from_bytes(blob: bytes, where: str) -> dict[str, Tensor]:
    """The ``net`` state dict of a checkpoint file's bytes; ValueError naming ``where``."""
    try:
        checkpoint = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds on a file that is not a checkpoint
        raise ValueError(f"teacher.load_teacher: {where} is not a torch checkpoint ({str(err)[:120]})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("net"), dict):
        raise ValueError(f"teacher.load_teacher: {where} holds no 'net' state dict: allowed the authors' format "
                         "{'net': model.state_dict(), ...}")  # fmt: skip
    return checkpoint["net"]


def _shapes(spec: RunSpec) -> list[tuple[int, int]]:
    """(rows, fan_in) of every layer of the unpruned teacher, output layer last."""
    t, m = spec.teacher, spec.model
    fan_ins = m.layer_kind.fan_ins(spec.data.d, t.widths, m.image_size, spec.data.channels)
    return list(zip((*t.widths, t.c), fan_ins))


def layers(state: dict[str, Tensor], spec: RunSpec, where: str) -> tuple[Network, list[dict[str, Tensor]]]:
    """The checkpoint's layers, flat (n_l, f_l) in float64, and its BN tensors per hidden layer
    (empty without BN); ValueError naming the first layer whose shape the spec does not give."""
    weights, biases, bns = [], [], []
    shapes = _shapes(spec)
    for layer, (rows, cols) in enumerate(shapes):
        name = "final_w" if layer == len(shapes) - 1 else f"ws_linear.{layer}"
        w, b = state.get(f"{name}.weight"), state.get(f"{name}.bias")
        if w is None or b is None:
            raise ValueError(f"teacher.load_teacher: {where} has no {name}.weight / .bias: allowed a checkpoint of "
                             f"the spec's teacher ({len(shapes) - 1} hidden layers)")  # fmt: skip
        if w.numel() != rows * cols or w.shape[0] != rows or b.shape != (rows,):
            raise ValueError(f"teacher.load_teacher: {where}'s {name}.weight is {tuple(w.shape)}, the spec's teacher "
                             f"needs {rows} rows of {cols} inputs: set teacher.widths, model.arch and data.dataset "
                             "to the checkpoint's")  # fmt: skip
        weights.append(w.detach().reshape(rows, cols).double())
        biases.append(b.detach().double())
        if layer < len(shapes) - 1 and spec.teacher.bn_kind.present:
            bn = {k: state.get(f"ws_bn.{layer}.{k}") for k in BN_KEYS}
            if bn["running_mean"] is None or bn["running_var"] is None:
                raise ValueError(f"teacher.load_teacher: {where} has no ws_bn.{layer} statistics, but "
                                 f"teacher.teacher_bn is {spec.teacher.teacher_bn}: allowed none")  # fmt: skip
            bns.append({k: (torch.ones(rows) if k == "weight" else torch.zeros(rows)) if v is None else v.double()
                        for k, v in bn.items()})  # fmt: skip
    return Network(tuple(weights), tuple(biases)), bns


def _groups(w: Tensor, n: int, authors_mod: bool) -> Tensor:
    """The next layer's weights w (n_{l+1}, f_{l+1}) as (n_{l+1}, n_l, taps), a node's weights along
    dim 1: channel-major (a node's taps contiguous, as torch flattens a conv layer's input), or, with
    ``authors_mod``, column j in group j mod n_l (model_gen.prune's ``W.view(W.size(0), -1, C)`` of the
    output layer above a conv layer)."""
    if authors_mod:
        return w.reshape(w.shape[0], -1, n).transpose(1, 2)  # (n_{l+1}, n_l, taps): groups j mod n_l
    return w.reshape(w.shape[0], n, -1)  # (n_{l+1}, n_l, taps)


def inactive_nodes(net: Network, widths: tuple[int, ...], ratios: tuple[float, ...],
                   authors_last: bool = False) -> list[list[int]]:  # fmt: skip
    """ICML's ``model_gen.prune``: per hidden layer, the ``int(n_l ratio)`` nodes whose outgoing
    weights have the smallest mean |w|, all taken from the unpruned network. A conv channel's
    weights are its taps in every filter of the next layer; above the last conv layer, its own H W
    columns of the output layer, or with ``authors_last`` (the default, ``RunSpec.authors_last_layer``)
    the authors' grouping of those columns mod C (docs/protocol.md, "Pruning")."""
    out = []
    last = len(widths) - 1
    for layer, (n, ratio) in enumerate(zip(widths, ratios)):
        grouped = _groups(net.weights[layer + 1], n, authors_last and layer == last)  # (n_{l+1}, n_l, taps)
        norms = grouped.abs().mean(dim=(0, 2))  # (n_l,)
        order = torch.sort(norms, stable=True).indices  # (n_l,)
        out.append(sorted(order[: int(n * ratio)].tolist()))
    return out


def masks(net: Network, widths: tuple[int, ...], gone: list[list[int]], authors_last: bool = False,
          shapes: list[tuple[int, ...]] | None = None) -> list[Tensor]:  # fmt: skip
    """model_gen.prune's ``masks``: per layer above the first, ones shaped as its weights with the pruned
    nodes' columns (``_groups``) at 0; ``shapes``: the weights' own shapes (a conv layer's 4-d)."""
    out = []
    last = len(widths) - 1
    for layer, (n, nodes) in enumerate(zip(widths, gone)):
        w = net.weights[layer + 1]
        mask = torch.ones_like(w)  # (n_{l+1}, f_{l+1})
        _groups(mask, n, authors_last and layer == last)[:, nodes] = 0.0  # a view of mask
        out.append(mask.reshape(shapes[layer + 1]) if shapes else mask)
    return out


def fold(net: Network, bns: list[dict[str, Tensor]], placement: BatchNorm) -> Network:
    """The network with its eval-mode BN, placed as ``placement``, folded into the layers."""
    weights, biases = list(net.weights), list(net.biases)
    for layer, bn in enumerate(bns):
        scale = bn["weight"] / torch.sqrt(bn["running_var"] + BN_EPS)  # (n_l,)
        shift = bn["bias"] - scale * bn["running_mean"]  # (n_l,)
        if placement.before:  # relu(BN(W x + b)) = relu(s W x + s b + t)
            weights[layer] = weights[layer] * scale[:, None]  # (n_l, f_l)
            biases[layer] = biases[layer] * scale + shift  # (n_l,)
        else:  # the next layer reads s relu(.) + t: its columns of node j scale by s_j, its bias takes W t
            nxt = weights[layer + 1]  # (n_{l+1}, f_{l+1})
            taps = nxt.shape[1] // len(scale)
            biases[layer + 1] = biases[layer + 1] + nxt @ shift.repeat_interleave(taps)  # (n_{l+1},)
            weights[layer + 1] = nxt * scale.repeat_interleave(taps)[None, :]  # (n_{l+1}, f_{l+1})
    return Network(tuple(weights), tuple(biases))


def keep(net: Network, widths: tuple[int, ...], inactive: list[list[int]]) -> Network:
    """The network without the ``inactive`` nodes of each hidden layer (rows and outgoing columns)."""
    weights, biases = list(net.weights), list(net.biases)
    for layer, (n, gone) in enumerate(zip(widths, inactive)):
        if not gone:
            continue
        active = torch.tensor([j for j in range(n) if j not in set(gone)])  # (n_l',)
        weights[layer], biases[layer] = weights[layer][active], biases[layer][active]
        nxt = weights[layer + 1]
        taps = nxt.shape[1] // n
        weights[layer + 1] = nxt.reshape(nxt.shape[0], n, taps)[:, active].reshape(nxt.shape[0], -1)
    return Network(tuple(weights), tuple(biases))


def measured_first(net: Network, widths: tuple[int, ...], layer: int, gone: list[int]) -> Network:
    """The network with ``layer``'s nodes reordered, the active ones first (rows, and the next layer's
    columns channel-major): the function is unchanged, and the measured nodes lead."""
    order = torch.tensor([j for j in range(widths[layer]) if j not in set(gone)] + sorted(gone))  # (n_l,)
    weights, biases = list(net.weights), list(net.biases)
    weights[layer], biases[layer] = weights[layer][order], biases[layer][order]
    nxt = weights[layer + 1]
    weights[layer + 1] = nxt.reshape(nxt.shape[0], widths[layer], -1)[:, order].reshape(nxt.shape[0], -1)
    return Network(tuple(weights), tuple(biases))


def network(state: dict[str, Tensor], spec: RunSpec, where: str = "the stored teacher") -> Network:
    """The engine's teacher from a checkpoint: pruned as ``teacher.prune`` says, BN folded (float64).

    Where ``spec.authors_last_layer``, the last layer keeps every channel, as the authors' teacher does
    (its mask zeroes output columns mod C, not the channel's own, so a 'pruned' channel still feeds the
    output): the mask is applied, and the active channels come first, the ones measured."""
    t = spec.teacher
    authors = spec.authors_last_layer
    net, bns = layers(state, spec, where)
    gone = inactive_nodes(net, t.widths, t.prune, authors) if t.prune else [[] for _ in t.widths]
    if authors:  # the authors' network: its output layer masked as model_gen.prune masks it
        weights = list(net.weights)
        weights[-1] = weights[-1] * masks(net, t.widths, gone, authors)[-1]
        net = Network(tuple(weights), net.biases)
    if bns:
        net = fold(net, bns, t.bn_kind)
    if authors:
        net = measured_first(net, t.widths, len(t.widths) - 1, gone[-1])
        gone = [*gone[:-1], []]
    return keep(net, t.widths, gone)


def placeholder(spec: RunSpec) -> dict[str, Tensor]:
    """A random checkpoint of the spec's teacher shapes: what timing a pack needs, not its result."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for layer, (rows, cols) in enumerate(_shapes(spec)):
        name = "final_w" if layer == len(spec.teacher.widths) else f"ws_linear.{layer}"
        state[f"{name}.weight"] = torch.randn(rows, cols, generator=gen, dtype=torch.float64) / cols**0.5
        state[f"{name}.bias"] = torch.zeros(rows, dtype=torch.float64)
        if name != "final_w" and spec.teacher.bn_kind.present:
            state.update({f"ws_bn.{layer}.{k}": (torch.ones(rows) if k in ("weight", "running_var") else
                          torch.zeros(rows)).double() for k in BN_KEYS})  # fmt: skip
    return state
