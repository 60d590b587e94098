"""Real data: the image sets' formats and checks, stored teachers (BN folded, pruned as the authors
prune), multi-channel conv parts against torch.nn, and digits runs against the reference."""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from spec_ray.engine import arch, datasets, parts, pretrain, reference, teachers
from spec_ray.engine.network import Network, forward, with_bias_column
from spec_ray.engine.pack import Pack, run_id
from spec_ray.engine.spec import RunSpec
from spec_ray.engine.trainer import init_state, prepare, train_until

DIGITS = {"data.dataset": "digits", "data.d": 64, "data.n_train": 600, "data.n_eval": 200, "teacher.c": 10,
          "train.iters_per_epoch": None, "train.epochs": 2, "train.dtype": "float64", "teacher.normalize": "all",
          "train.loss": "mse_mean", "checkpoint.first_epoch_points": 0}  # fmt: skip


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _cifar(folder: Path, per_batch: int = 4) -> dict[str, str]:
    """Files in CIFAR-10's python format (uint8 rows of 3 x 32 x 32, row-major), and their MD5s."""
    base = folder / datasets.CIFAR_FOLDER
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in datasets.CIFAR_MD5:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": list(range(per_batch))}
        (base / name).write_bytes(pickle.dumps(entry))
    return {name: _md5(base / name) for name in datasets.CIFAR_MD5}


def test_cifar_files_read_normalized_and_checked(tmp_path: Path) -> None:
    sums = _cifar(tmp_path)
    split = datasets.read_cifar10(str(tmp_path), sums)
    assert split.x_train.shape == (20, 3072) and split.x_test.shape == (4, 3072)
    raw = pickle.loads((tmp_path / datasets.CIFAR_FOLDER / "data_batch_1").read_bytes())["data"][0]
    info = datasets.INFO["cifar10"]
    want = (raw.reshape(3, 32, 32) / 255.0 - np.array(info.mean)[:, None, None]) / np.array(info.std)[:, None, None]
    np.testing.assert_allclose(split.x_train[0], want.reshape(-1), rtol=1e-6)  # channel-major, as ToTensor
    assert split.y_train.tolist()[:5] == [0, 1, 2, 3, 0]
    # the distribution's MD5s: these made files are not it, and the error names the file
    with pytest.raises(datasets.DatasetError, match="data_batch_1 has MD5 .* partial or corrupt"):
        datasets.read_cifar10(str(tmp_path))
    (tmp_path / datasets.CIFAR_FOLDER / "test_batch").unlink()
    with pytest.raises(datasets.DatasetError, match="test_batch is missing .* fix: put the standard cifar10"):
        datasets.read_cifar10(str(tmp_path), sums)


def _idx(path: Path, array: np.ndarray) -> None:
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_mnist_idx_files_read_and_a_corrupt_one_refused(tmp_path: Path) -> None:
    base = tmp_path / datasets.MNIST_FOLDER
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = {"train": rng.integers(0, 256, (6, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    for part, data in images.items():
        _idx(base / f"{part}-images-idx3-ubyte.gz", data)
        _idx(base / f"{part}-labels-idx1-ubyte.gz", np.arange(len(data)))
    sums = {name: _md5(base / name) for name in datasets.MNIST_MD5}
    split = datasets.read_mnist(str(tmp_path), sums)
    assert split.x_train.shape == (6, 784) and split.y_test.tolist() == [0, 1, 2]
    np.testing.assert_allclose(split.x_test[1], (images["t10k"][1].reshape(-1) / 255.0 - 0.5) / 0.5, rtol=1e-6)
    (base / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(8)))
    sums["t10k-labels-idx1-ubyte.gz"] = _md5(base / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(datasets.DatasetError, match="t10k-labels-idx1-ubyte.gz is not an IDX file of 1 dimensions"):
        datasets.read_mnist(str(tmp_path), sums)


def test_digits_need_no_download_and_fix_the_spec() -> None:
    split = datasets.read("digits", None)
    assert split.x_train.shape == (1437, 64) and split.x_test.shape == (360, 64)
    assert set(split.y_train.tolist()) == set(range(10))
    assert abs(float(split.x_train.min()) + 1.0) < 1e-6 and abs(float(split.x_train.max()) - 1.0) < 1e-6
    with pytest.raises(ValueError, match="data.d=100 is invalid: allowed 64 with data.dataset digits"):
        RunSpec().replace(**{"data.dataset": "digits"})
    with pytest.raises(ValueError, match="data.n_train=2000 is invalid: allowed 1..1437"):
        RunSpec().replace(**{**DIGITS, "data.n_train": 2000})
    with pytest.raises(ValueError, match="teacher.c=50 is invalid: allowed 10, the classes of digits"):
        RunSpec().replace(**{**DIGITS, "teacher.c": 50, "teacher.source": "pretrained"})
    with pytest.raises(ValueError, match="data.data_dir: None is invalid with data.dataset cifar10"):
        datasets.read("cifar10", None)


def _authors_prune(weights: list[torch.Tensor], ratios: list[float], conv: bool) -> list[list[int]]:
    """``model_gen.prune`` as the authors wrote it, on their layer shapes (conv layers 4-D), without the
    output layer of a conv stack (whose columns their code views as (H W, C))."""
    out = []
    for i in range(1, len(weights)):
        w = weights[i]
        norms = w.permute(1, 0, 2, 3).contiguous().view(w.size(1), -1).abs().mean(1) if conv else w.abs().mean(0)
        _, order = norms.sort(0)
        out.append(sorted(order[: int(w.size(1) * ratios[i - 1])].tolist()))
    return out


@pytest.mark.parametrize("conv", [False, True])
def test_pruning_chooses_the_authors_nodes_and_drops_them_exactly(conv: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    widths, ratios = (8, 6), (0.5, 0.34)
    if conv:
        shapes = [(8, 1, 3, 3), (6, 8, 3, 3)]
        authors = [torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes]
        flat = [w.reshape(w.shape[0], -1) for w in authors] + [torch.randn(10, 6 * 4 * 4, generator=gen).double()]
    else:
        authors = [torch.randn(o, i, generator=gen, dtype=torch.float64) for o, i in [(8, 64), (6, 8), (10, 6)]]
        flat = authors
    net = Network(tuple(flat), tuple(torch.randn(w.shape[0], generator=gen).double() for w in flat))
    gone = teachers.inactive_nodes(net, widths, ratios)
    assert gone[: 1 if conv else 2] == _authors_prune(authors, list(ratios), conv)[: 1 if conv else 2]
    assert [len(g) for g in gone] == [4, 2]
    # with the pruned nodes' outgoing weights zero (a fine-tuned pruned teacher), dropping them changes nothing
    zeroed = list(net.weights)
    for layer, (n, nodes) in enumerate(zip(widths, gone)):
        zeroed[layer + 1] = zeroed[layer + 1].clone()
        zeroed[layer + 1].view(zeroed[layer + 1].shape[0], n, -1)[:, nodes] = 0.0
    full = Network(tuple(zeroed), net.biases)
    kept = teachers.keep(full, widths, gone)
    shape = arch.Arch("conv" if conv else "mlp", 64, widths, 10, "relu", 0.0, "none", False, 8)
    small = arch.Arch(shape.kind, 64, (4, 4), 10, "relu", 0.0, "none", False, 8)
    x = torch.randn(5, 64, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(forward(kept, x, small)[1], forward(full, x, shape)[1], rtol=1e-12, atol=1e-12)


def _random_network(shape: arch.Arch, gen: torch.Generator) -> Network:
    layers = [(torch.randn(o, i, generator=gen, dtype=torch.float64) / i**0.5, torch.randn(o, generator=gen).double())
              for i, o in zip(shape.fan_ins, shape.outs)]  # fmt: skip
    return Network(tuple(w for w, _ in layers), tuple(b for _, b in layers))


@pytest.mark.parametrize("mode", ["before_relu", "after_relu"])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_bn_folds_exactly_into_the_layers(mode: str, kind: str) -> None:
    """A teacher with BN in eval mode (trained statistics, affine) and its folded plain network agree."""
    spec = RunSpec().replace(**{**DIGITS, "model.arch": kind, "model.image_size": 8, "teacher.widths": (5, 4),
                                "teacher.teacher_bn": mode, "teacher.teacher_bn_affine": True,
                                "teacher.source": "file", "teacher.load_teacher": "t.pt"})  # fmt: skip
    shape = pretrain.unpruned(spec)
    gen = torch.Generator().manual_seed(4)
    init = _random_network(shape, gen)
    net = reference.TorchNet(init, shape).eval()
    for bn in net.bns:  # statistics and affine parameters as training leaves them
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.5, 0.5)
    folded = teachers.network(pretrain.authors_state(net), spec)
    x = torch.from_numpy(datasets.read("digits", None).x_test[:50]).double()
    with torch.no_grad():
        hidden, out = net(x)
    f_hidden, f_out = forward(folded, x, arch.teacher(spec))
    torch.testing.assert_close(f_out, out, rtol=1e-10, atol=1e-10)
    for a, b in zip(f_hidden, hidden):  # node outputs agree up to a positive affine map per node
        a = a.reshape(-1, a.shape[-1]) if kind == "mlp" else a
        corr = [np.corrcoef(a[:, j].numpy(), b[:, j].numpy())[0, 1] for j in range(a.shape[1]) if a[:, j].std() > 0]
        assert min(corr) > 1 - 1e-9


def test_conv_on_three_channel_images_matches_torch_nn() -> None:
    """The packed conv parts read a C x S x S image as nn.Conv2d does (forward and gradients)."""
    shape = arch.Arch("conv", 3 * 32 * 32, (4, 3), 10, "relu", 0.0, "after_relu", True, 32, channels=3)
    gen = torch.Generator().manual_seed(5)
    init = _random_network(shape, gen)
    x = torch.randn(6, 3 * 32 * 32, generator=gen, dtype=torch.float64)
    net = reference.TorchNet(init, shape).train()
    hidden, out = net(x)
    out.square().sum().backward()
    params = tuple(p.unsqueeze(0).requires_grad_() for p in with_bias_column(init))
    bn_params, buffers = parts.init_bn(shape, 1, params[0], True)
    ones = torch.ones(1, 6, 1, dtype=torch.float64)
    p_hidden, p_out = parts.forward(shape, (*params, *bn_params), buffers, torch.cat([x[None], ones], -1), 1, True)
    torch.testing.assert_close(p_out[0], out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(parts.nodes(shape, 1, p_hidden[1])[0], hidden[1], rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(p_out.square().sum(), params)
    torch.testing.assert_close(grads[0][0, :, :-1], net.layers[0].weight.grad.reshape(4, -1), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "extra", [{}, {"model.arch": "conv", "model.image_size": 8, "student.student_bn": "after_relu"}]
)
def test_digits_runs_match_the_reference_with_a_stored_pruned_teacher(extra: dict) -> None:
    """A pretrained, pruned teacher on digits: the packed trainer equals the reference at 1e-6 (float64), and
    the test accuracy is measured on the true labels."""
    spec = RunSpec().replace(**{**DIGITS, **extra, "teacher.widths": (6, 5), "teacher.source": "pretrained",
                                "teacher.prune": (0.5, 0.4), "teacher.teacher_bn": "before_relu",
                                "teacher.teacher_bn_affine": True, "student.multi": 2})  # fmt: skip
    done = pretrain.pretrain(spec, pretrain.Recipe(epochs=3, finetune_epochs=2))
    assert done.extra["inactive_nodes"] and [len(g) for g in done.extra["inactive_nodes"]] == [3, 2]
    blob = teachers.to_bytes(done.state, **done.extra)
    state = teachers.from_bytes(blob, "test")
    spec = spec.replace(**{"teacher.load_teacher": "sha256:0123456789abcdef"})
    assert spec.student_widths == (6, 6) and spec.teacher.m == 3
    ref = reference.train_run(spec, stored=state)
    pack = Pack((spec,))
    data = prepare(pack, {spec.teacher.load_teacher: state})
    final = train_until(pack, data, init_state(pack), spec.total_steps)
    for a, b in zip(ref.student.weights, final.student.weights):
        torch.testing.assert_close(b[0], a, rtol=1e-6, atol=1e-6)
    from spec_ray.engine import metrics

    ckpt = metrics.measure(pack, data, final, metrics.prepare(pack, data))
    acc = ref.tables["scalars"]["eval_accuracy"].iloc[-1]
    assert abs(float(ckpt.eval_accuracy[0]) - acc) < 1e-9 and 0.0 <= acc <= 1.0
    other = spec.replace(**{"teacher.load_teacher": "sha256:fedcba9876543210"})
    assert run_id(other) != run_id(spec)  # the teacher's content hash is part of the run id


def test_a_checkpoint_of_other_shapes_is_refused_naming_the_layer(tmp_path: Path) -> None:
    spec = RunSpec().replace(**{**DIGITS, "teacher.widths": (6, 5), "teacher.source": "file",
                                "teacher.load_teacher": str(tmp_path / "t.pt")})  # fmt: skip
    state = {"ws_linear.0.weight": torch.zeros(6, 64), "ws_linear.0.bias": torch.zeros(6),
             "ws_linear.1.weight": torch.zeros(7, 6), "ws_linear.1.bias": torch.zeros(7),
             "final_w.weight": torch.zeros(10, 5), "final_w.bias": torch.zeros(10)}  # fmt: skip
    with pytest.raises(ValueError, match=r"ws_linear.1.weight is \(7, 6\), the spec's teacher needs 5 rows of 6"):
        teachers.network(state, spec, "t.pt")
    with pytest.raises(ValueError, match="t.pt is not a torch checkpoint"):
        teachers.from_bytes(b"not a checkpoint", "t.pt")


def test_luck_matters_real_cells_are_finite_and_fit_their_images() -> None:
    """``--dataset digits``: the FC nets on finite data only (exclusions), a pretrained BN teacher."""
    import importlib.util

    from spec_ray.orchestration.commandline import experiment_from_args, sweep_parser

    path = Path(__file__).resolve().parents[1] / "sweeps" / "luck_matters.py"
    loader = importlib.util.spec_from_file_location("luck_sweep", path)
    script = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(script)

    def runs(*argv: str) -> list[RunSpec]:
        args = sweep_parser(script.EXPERIMENT, None).parse_args(list(argv))
        return experiment_from_args(script.EXPERIMENT, args, script.SMOKE).runs()

    digits = runs("--dataset", "digits")
    assert len(digits) == 2 * 2 * 5  # fc-small, fc-large x BN or not x 5 seeds
    assert all(r.data.dataset == "digits" and r.data.n_train == 1437 and r.model.arch == "mlp" for r in digits)
    assert all(r.teacher.source == "pretrained" and r.teacher.teacher_bn == "after_relu" for r in digits)
    gaussian = runs()  # the default: Gaussian data only, as before
    assert len(gaussian) == 4 * 2 * 2 * 5 and {r.data.dataset for r in gaussian} == {"gaussian"}


def test_labels_in_blocks_and_calibration_on_fewer_images() -> None:
    """Large sets are labelled in blocks (the same labels); a real set's pack is calibrated on fewer images
    and its costs scaled back to the full sets."""
    from spec_ray.engine import construct
    from spec_ray.orchestration.schedule import CALIBRATION_IMAGES, _calibration_pack

    spec = RunSpec().replace(**{**DIGITS, "model.arch": "conv", "model.image_size": 8, "teacher.widths": (4, 3)})
    teacher, shape = construct.build_teacher(spec), arch.teacher(spec)
    x = construct.train_inputs(spec)  # (600, 64)
    whole = construct.teacher_outputs(teacher, x, shape)
    blocks = construct.teacher_outputs(teacher, x, shape, block_bytes=64 * 1024)  # 32 images a block
    torch.testing.assert_close(blocks, whole, rtol=1e-13, atol=1e-13)
    cifar = RunSpec().replace(**{"data.dataset": "cifar10", "data.d": 3072, "data.n_train": 50_000,
                                 "data.n_eval": 10_000, "teacher.c": 10})  # fmt: skip
    small, scale = _calibration_pack(Pack((cifar,)))
    assert (small.spec.data.n_train, small.spec.data.n_eval) == CALIBRATION_IMAGES
    assert scale == {"prepare": 60_000 / 2560, "step": 1.0, "checkpoint": 10_000 / 512, "train": 50_000 / 2048}
    same, ones = _calibration_pack(Pack((spec,)))
    assert same.spec == spec and set(ones.values()) == {1.0}  # small sets are calibrated as they are


def test_download_without_torchvision_exits_2_naming_the_fix(tmp_path: Path, capsys) -> None:
    try:
        import torchvision  # noqa: F401

        pytest.skip("torchvision is installed here: the command would fetch")
    except ImportError:
        pass
    from spec_ray.orchestration.cli import main

    assert main(["download", "cifar10", "--data-dir", str(tmp_path)]) == 2
    assert "needs torchvision; fix: pip install torchvision" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _sweep_runs(name: str, *argv: str) -> list[RunSpec]:
    """The runs a sweep script's factorial holds for these flags (nothing planned or trained)."""
    import importlib.util

    from spec_ray.orchestration.commandline import experiment_from_args, sweep_parser

    path = Path(__file__).resolve().parents[1] / "sweeps" / f"{name}.py"
    loader = importlib.util.spec_from_file_location(f"{name}_sweep", path)
    script = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(script)
    args = sweep_parser(script.EXPERIMENT, None).parse_args(list(argv))
    return experiment_from_args(script.EXPERIMENT, args, script.SMOKE).runs()


@pytest.mark.parametrize("dataset", ["digits", "mnist", "cifar10"])
def test_no_student_of_the_cifar_sweep_starts_from_its_teachers_init(dataset: str) -> None:
    """The pretrained teacher's init has a stream of its own: at prune 0.5 the multi-2 students have the
    teacher's widths, and the seed-1 one once started from the teacher's very weights (rho-bar 0.911 at
    step 0, against 0.65-0.71 for other seeds)."""
    from spec_ray.engine import construct

    runs = _sweep_runs("cifar", "--dataset", dataset)  # its 3 seeds: a stream's coincidence is by seed and widths
    assert len(runs) == 4 * 3 and any(r.student_widths == r.teacher.widths for r in runs)  # multi 2 at prune 0.5
    teacher = pretrain.initial(runs[0])  # every run of a dataset shares its teacher
    for run in runs:
        student = construct.init_student(run)
        for t, s in zip(teacher.weights, student.weights):
            if t.shape == s.shape:
                assert not torch.equal(t, s), (run.student.multi, run.seed)
                assert abs(float(torch.corrcoef(torch.stack([t.ravel(), s.ravel()]))[0, 1])) < 0.1


def test_the_cifar_smoke_runs_its_own_image_set_where_it_names_no_dataset() -> None:
    """``sweeps/cifar.py --smoke`` without --dataset: the smoke's digits, not an empty set of variants."""
    runs = _sweep_runs("cifar", "--smoke")
    assert len(runs) == 2 and {r.data.dataset for r in runs} == {"digits"} and {r.student.multi for r in runs} == {1, 4}
