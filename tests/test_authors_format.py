"""Stored teachers in the authors' format, both ways: a pruned teacher spec-ray pretrains passes the
authors' ``--load_teacher`` logic unchanged (recon_multilayer.py, lines 237-254: a strict
``load_state_dict``, then ``model_gen.prune`` run again must give the stored inactive sets and masks),
for every layer; and spec-ray's teacher computes what the authors' loaded network computes.

The authors' classes and ``prune`` are written out below from their code (facebookresearch/luckmatters,
student_specialization/model_gen.py), parameter names and all, in plain torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from spec_ray.engine import arch, datasets, pretrain, teachers
from spec_ray.engine.network import forward
from spec_ray.engine.spec import RunSpec

DIGITS = {"data.dataset": "digits", "data.d": 64, "data.n_train": 600, "data.n_eval": 200, "teacher.c": 10,
          "train.iters_per_epoch": None, "train.epochs": 1, "train.loss": "mse_mean", "teacher.source": "pretrained",
          "teacher.teacher_bn": "before_relu", "teacher.teacher_bn_affine": True, "model.image_size": 8}  # fmt: skip


class AuthorsModel(nn.Module):
    """model_gen.Model's parameters and forward: Linear layers, BatchNorm1d, final_w."""

    def __init__(self, d, ks, d_output, has_bn=True, has_bn_affine=True, bn_before_relu=False):
        super().__init__()
        self.ws_linear, self.ws_bn, self.bn_before_relu = nn.ModuleList(), nn.ModuleList(), bn_before_relu
        last = d
        for k in ks:
            self.ws_linear.append(nn.Linear(last, k))
            if has_bn:
                self.ws_bn.append(nn.BatchNorm1d(k, affine=has_bn_affine))
            last = k
        self.final_w = nn.Linear(last, d_output)

    def hidden(self, x):
        """Each layer's output after its ReLU and BN, in the order the authors' ``bn_before_relu`` says."""
        hs, h = [], x
        for i, w in enumerate(self.ws_linear):
            h = w(h)
            if self.bn_before_relu:
                h = torch.relu(self.ws_bn[i](h) if len(self.ws_bn) else h)
            else:
                h = torch.relu(h)
                h = self.ws_bn[i](h) if len(self.ws_bn) else h
            hs.append(h)
        return hs

    def forward(self, x):
        hs = self.hidden(x)
        return {"hs": hs, "y": self.final_w(hs[-1])}

    def num_layers(self):
        return len(self.ws_linear) + 1

    def from_bottom_linear(self, j):
        return self.ws_linear[j].weight.data if j < len(self.ws_linear) else self.final_w.weight.data


class AuthorsModelConv(AuthorsModel):
    """model_gen.ModelConv's parameters and forward: unpadded 3x3 Conv2d layers, BatchNorm2d, final_w."""

    def __init__(self, input_size, ks, d_output, has_bn=True, bn_before_relu=False):
        nn.Module.__init__(self)
        self.ws_linear, self.ws_bn, self.bn_before_relu = nn.ModuleList(), nn.ModuleList(), bn_before_relu
        last, h, w = input_size
        for k in ks:
            self.ws_linear.append(nn.Conv2d(last, k, 3))
            if has_bn:
                self.ws_bn.append(nn.BatchNorm2d(k))
            last, h, w = k, h - 2, w - 2
        self.final_w = nn.Linear(last * h * w, d_output)

    def forward(self, x):
        hs = self.hidden(x)
        return {"hs": hs, "y": self.final_w(hs[-1].view(x.size(0), -1))}


def authors_prune(net, ratios):
    """model_gen.prune, step by step: per layer above the first, mean |w| of each input node (a conv
    layer's input channel; the output layer above a conv layer viewed as (c, -1, C), its columns mod C),
    the ``int(input_dim ratio)`` smallest inactive, and a mask of ones with their columns at zero."""
    masks, inactive_nodes = [], []
    for i in range(1, net.num_layers()):
        W = net.from_bottom_linear(i)
        input_dim = W.size(1)
        fc_to_conv = False
        if isinstance(net, AuthorsModelConv):
            if len(W.size()) == 4:
                w_norms = W.permute(1, 0, 2, 3).contiguous().view(W.size(1), -1).abs().mean(1)
            else:
                input_dim = net.from_bottom_linear(i - 1).size(0)
                w_norms = W.view(W.size(0), -1, input_dim).view(-1, input_dim).abs().mean(0)
                fc_to_conv = True
        else:
            w_norms = W.abs().mean(0)
        _, sorted_indices = w_norms.sort(0)
        inactive = sorted_indices[: int(input_dim * ratios[i - 1])]
        m = W.clone().fill_(1.0)
        if fc_to_conv:
            m = m.view(m.size(0), -1, input_dim)
            m[:, :, inactive] = 0
            m = m.view(W.size(0), W.size(1))
        else:
            m[:, inactive] = 0
        inactive_nodes.append(inactive.tolist())
        masks.append(m)
    return inactive_nodes, masks


def authors_load(teacher, checkpoint):
    """recon_multilayer.py's --load_teacher: strict load, then prune run again must reproduce the stored
    masks (within 1e-3) and inactive sets; returns the active nodes of each layer."""
    teacher.load_state_dict(checkpoint["net"])  # strict: every key, no other
    inactive_nodes, masks, ratios = checkpoint["inactive_nodes"], checkpoint["masks"], checkpoint["ratios"]
    inactive_nodes2, masks2 = authors_prune(teacher, ratios)
    for layer, (m, m2) in enumerate(zip(masks, masks2)):
        assert (m - m2).norm() <= 1e-3, f"New mask is not the same as old mask (layer {layer + 1})"
    for layer, (inactive, inactive2) in enumerate(zip(inactive_nodes, inactive_nodes2)):
        assert set(inactive) == set(inactive2), f"New inactive set is not the same as old inactive set (layer {layer})"
    ks = [len(w.weight) for w in teacher.ws_linear]
    return [[kk for kk in range(k) if kk not in a] for a, k in zip(inactive_nodes, ks)]


CASES = {
    "conv": {"model.arch": "conv", "teacher.widths": (8, 8, 6), "teacher.prune": (0.5, 0.5, 0.5)},
    "mlp": {"model.arch": "mlp", "teacher.widths": (12, 8), "teacher.prune": (0.5, 0.25),
            "teacher.teacher_bn": "after_relu", "teacher.teacher_bn_affine": False},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_stored_pruned_teacher_passes_the_authors_load_teacher_and_computes_what_theirs_does(case: str) -> None:
    spec = RunSpec().replace(**{**DIGITS, **CASES[case]})
    t = spec.teacher
    done = pretrain.pretrain(spec, pretrain.Recipe(epochs=2, finetune_epochs=2))
    checkpoint = torch.load(__import__("io").BytesIO(teachers.to_bytes(done.state, **done.extra)), weights_only=True)
    assert set(checkpoint) == {"net", "inactive_nodes", "masks", "ratios"}
    if case == "conv":
        theirs = AuthorsModelConv((1, 8, 8), list(t.widths), 10, has_bn=True, bn_before_relu=True)
    else:
        theirs = AuthorsModel(64, list(t.widths), 10, has_bn=True, has_bn_affine=False, bn_before_relu=False)
    active = authors_load(theirs.double(), {**checkpoint, "net": {k: v.double() if v.is_floating_point() else v
                                                                 for k, v in checkpoint["net"].items()}})  # fmt: skip
    assert [len(a) for a in active] == list(t.active_widths)  # every layer, the last included
    # spec-ray's teacher from the same checkpoint: the authors' function, and their active nodes measured first.
    ours = teachers.network(checkpoint["net"], spec.replace(**{"teacher.load_teacher": "sha256:0"}))
    shape = arch.teacher(spec)
    x = torch.from_numpy(datasets.read("digits", None).x_test[:120]).double()  # (N, 64)
    theirs.eval()
    with torch.no_grad():
        want = theirs(x.view(-1, 1, 8, 8) if case == "conv" else x)
    hidden, out = forward(ours, x, shape)
    torch.testing.assert_close(out, want["y"], rtol=1e-9, atol=1e-9)
    for layer, (mine, nodes) in enumerate(zip(hidden, active)):
        h = want["hs"][layer]
        h = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]) if case == "conv" else h  # (N P, C), channels last
        mine = mine.reshape(-1, mine.shape[-1])
        for i, j in enumerate(nodes):  # our i-th measured node is their active node j (up to BN's affine map)
            a, b = mine[:, i], h[:, j]
            if a.std() > 1e-9:
                assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 1 - 1e-9, (layer, i, j)
    if case == "conv":  # the last layer keeps its 'pruned' channels: they still feed the output
        assert spec.authors_last_layer and shape.widths == (4, 4, 6) and t.active_widths == (4, 4, 3)
