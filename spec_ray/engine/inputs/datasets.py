"""Real image sets as inputs: CIFAR-10, MNIST and scikit-learn's digits, read from their standard
distribution formats, checked, normalized as the authors' ``init_dataset`` does, and flattened.

Axes: N images, C channels, S image side, d = C S S input features.

Each image set is a record of ``IMAGE_SETS`` (shapes, splits, normalization, files and checksums,
reader, downloader); a new one is this file alone: its reader and its record, which data.dataset,
the flags, the sweeps' image sets and ``download`` read. ``read(name, folder)`` is cached per
process: every pack of a node shares one copy. Pixels are laid out (N, C, S, S) row-major, as
``torchvision``'s ``ToTensor`` gives them, so a conv layer reads the flat row as its (C, S, S) image
and an MLP reads the same vector. A missing, partial or corrupt folder raises ``DatasetError``
naming the file and the fix, before any training.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from spec_ray.engine.kinds.registry import Registry

GAUSSIAN = "gaussian"


CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
"""The distribution's files and their MD5s (those torchvision checks)."""
MNIST_FOLDER = os.path.join("MNIST", "raw")
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


class DatasetError(ValueError):
    """A dataset folder that cannot serve: the message names the file and the fix."""


@dataclass(frozen=True)
class Split:
    """One image set, flattened and normalized: float32 inputs (every value exact in float64) and int64 labels."""

    x_train: np.ndarray
    """(N_train, d)."""
    y_train: np.ndarray
    """(N_train,) class labels."""
    x_test: np.ndarray
    """(N_test, d)."""
    y_test: np.ndarray
    """(N_test,)."""


def _fix(name: str, folder: str) -> str:
    return (f"fix: put the standard {name} files under --data-dir {folder!r}, or run `python -m spec_ray "
            f"download {name} --data-dir {folder}` where torchvision and a network are at hand")  # fmt: skip


def _md5(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(name: str, folder: str, sub: str, checksums: dict[str, str]) -> dict[str, str]:
    """Paths of a distribution's files, each present and matching its checksum."""
    paths = {}
    for file, want in checksums.items():
        path = os.path.join(folder, sub, file)
        if not os.path.isfile(path):
            raise DatasetError(f"data.data_dir: {path} is missing ({name} needs {', '.join(checksums)}); "
                               + _fix(name, folder))  # fmt: skip
        got = _md5(path)
        if got != want:
            raise DatasetError(f"data.data_dir: {path} has MD5 {got}, the distribution's is {want}: the file is "
                               f"partial or corrupt; " + _fix(name, folder))  # fmt: skip
        paths[file] = path
    return paths


def _normalized(name: str, pixels: np.ndarray) -> np.ndarray:
    """(N, C, S, S) in [0, 1] -> (N, d) float64 after the per-channel Normalize."""
    info = IMAGE_SETS[name]
    mean = np.asarray(info.mean, dtype=np.float64)[None, :, None, None]  # (1, C, 1, 1)
    std = np.asarray(info.std, dtype=np.float64)[None, :, None, None]
    # float32 in the cache: CIFAR-10's training set is 0.6 GB so, 1.2 GB in float64
    return ((pixels - mean) / std).reshape(len(pixels), -1).astype(np.float32)  # (N, d)


def read_cifar10(folder: str, checksums: dict[str, str] = CIFAR_MD5) -> Split:
    """CIFAR-10's python pickles under ``folder/cifar-10-batches-py``."""
    paths = _checked("cifar10", folder, CIFAR_FOLDER, checksums)

    def batches(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for file in files:
            try:
                with open(paths[file], "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
                xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))  # (n, 3, 32, 32)
                ys.append(np.asarray(entry["labels"], dtype=np.int64))
            except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as err:
                raise DatasetError(f"data.data_dir: {paths[file]} is not a CIFAR-10 batch ({err}); "
                                   + _fix("cifar10", folder)) from None  # fmt: skip
        return np.concatenate(xs).astype(np.float64) / 255.0, np.concatenate(ys)

    x_train, y_train = batches([f for f in checksums if f.startswith("data_batch")])
    x_test, y_test = batches(["test_batch"])
    return Split(_normalized("cifar10", x_train), y_train, _normalized("cifar10", x_test), y_test)


def _idx(path: str, folder: str, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip or raw): magic 0x0000080N, N big-endian sizes, then data."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DatasetError(f"data.data_dir: {path} cannot be read ({err}); " + _fix("mnist", folder)) from None
    magic = int.from_bytes(raw[:4], "big")
    sizes = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if magic != 0x0800 + dims or body.size != int(np.prod(sizes)):
        raise DatasetError(f"data.data_dir: {path} is not an IDX file of {dims} dimensions; " + _fix("mnist", folder))
    return body.reshape(sizes)


def read_mnist(folder: str, checksums: dict[str, str] = MNIST_MD5) -> Split:
    """MNIST's IDX files under ``folder/MNIST/raw`` (torchvision's layout), gzipped as distributed."""
    paths = _checked("mnist", folder, MNIST_FOLDER, checksums)

    def part(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images = _idx(paths[f"{prefix}-images-idx3-ubyte.gz"], folder, 3)  # (N, 28, 28)
        labels = _idx(paths[f"{prefix}-labels-idx1-ubyte.gz"], folder, 1).astype(np.int64)  # (N,)
        if len(images) != len(labels):
            raise DatasetError(f"data.data_dir: {prefix} holds {len(images)} images and {len(labels)} labels; "
                               + _fix("mnist", folder))  # fmt: skip
        return _normalized("mnist", images[:, None].astype(np.float64) / 255.0), labels

    (x_train, y_train), (x_test, y_test) = part("train"), part("t10k")
    return Split(x_train, y_train, x_test, y_test)


def read_digits(folder: str | None = None) -> Split:
    """scikit-learn's bundled 8x8 digits (no download): the first 1,437 train, the last 360 test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError("data.dataset: digits needs scikit-learn; fix: pip install scikit-learn") from None
    bunch = load_digits()
    pixels = bunch.images[:, None].astype(np.float64) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    x, y = _normalized("digits", pixels), bunch.target.astype(np.int64)
    n = IMAGE_SETS["digits"].train_size
    return Split(x[:n], y[:n], x[n:], y[n:])


@dataclass(frozen=True)
class ImageSet:
    """One real image set: what a spec needs to know of it without reading it, and how it is read."""

    name: str
    """The value of data.dataset."""
    channels: int
    side: int
    classes: int
    train_size: int
    test_size: int
    mean: tuple[float, ...]
    """Per-channel mean subtracted after scaling pixels to [0, 1] (the authors' Normalize)."""
    std: tuple[float, ...]
    reader: Callable[[str | None], Split] = field(repr=False)
    """``reader(folder)``: the set read from its distribution files and checked."""
    folder: str | None = None
    """Where its files lie under --data-dir; None: it needs no folder (it ships with ``package``)."""
    checksums: tuple[tuple[str, str], ...] = ()
    """Its distribution files and their MD5s (those torchvision checks)."""
    torchvision: str | None = None
    """The torchvision.datasets class that downloads it; None: nothing to download."""
    package: str | None = None
    """The Python package it ships with (no folder, no download)."""

    @property
    def d(self) -> int:
        """Input features of one image, C S S."""
        return self.channels * self.side * self.side

    @property
    def needs_folder(self) -> bool:
        """Its files are read from --data-dir."""
        return self.folder is not None

    def present(self, folder: str | None) -> bool:
        """Whether its files (or its package) are where ``read`` looks (not checked: ``read`` does that)."""
        if not self.needs_folder:
            return (
                self.package is None
                or self.package in sys.modules
                or importlib.util.find_spec(self.package) is not None
            )
        return folder is not None and all(os.path.isfile(os.path.join(folder, self.folder, f))
                                          for f, _ in self.checksums)  # fmt: skip


IMAGE_SETS: Registry[ImageSet] = Registry(
    "data.dataset",
    # init_dataset: CIFAR-10's test transform; its train-time RandomCrop and flip are not applied
    # (a teacher labels fixed inputs; docs/protocol.md).
    ImageSet(
        "cifar10",
        3,
        32,
        10,
        50_000,
        10_000,
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
        read_cifar10,
        CIFAR_FOLDER,
        tuple(CIFAR_MD5.items()),
        "CIFAR10",
    ),  # fmt: skip
    # init_dataset's transform: Normalize((0.5,), (0.5,))
    ImageSet(
        "mnist", 1, 28, 10, 60_000, 10_000, (0.5,), (0.5,), read_mnist, MNIST_FOLDER, tuple(MNIST_MD5.items()), "MNIST"
    ),  # fmt: skip
    # sklearn's 1,797 digits: the first 1,437 (80 %) train, the last 360 test; pixels 0..16, scaled
    # to [0, 1] and normalized as MNIST.
    ImageSet("digits", 1, 8, 10, 1437, 360, (0.5,), (0.5,), read_digits, package="sklearn"),
)
INFO = IMAGE_SETS
"""An image set's record by name (the name the shapes were first read under)."""
NAMES = (GAUSSIAN, *IMAGE_SETS.names)
"""Every value of data.dataset."""


@functools.lru_cache(maxsize=4)
def read(name: str, folder: str | None) -> Split:
    """The named image set, read and checked once per process."""
    image_set = IMAGE_SETS[name]
    if image_set.needs_folder and folder is None:
        raise DatasetError(f"data.data_dir: None is invalid with data.dataset {name}: allowed the folder that holds "
                           "it; " + _fix(name, "DIR"))  # fmt: skip
    return image_set.reader(folder)


def present(name: str, folder: str | None) -> bool:
    """Whether the image set's files are where ``read`` looks (not checked: ``read`` does that)."""
    return IMAGE_SETS[name].present(folder)


@functools.lru_cache(maxsize=2)
def stand_in(name: str) -> Split:
    """Random images of the set's shapes and sizes, for timing a pack where the set is not at hand
    (``--dry-run``); never trained on."""
    info = IMAGE_SETS[name]
    rng = np.random.default_rng(0)

    def part(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.standard_normal((n, info.d), dtype=np.float32), rng.integers(0, info.classes, n)

    (x_train, y_train), (x_test, y_test) = part(info.train_size), part(info.test_size)
    return Split(x_train, y_train, x_test, y_test)


DOWNLOADABLE = tuple(s.name for s in IMAGE_SETS if s.torchvision is not None)
"""The image sets ``download`` fetches (the others ship with a package)."""


def download(name: str, folder: str) -> None:
    """Fetch an image set into ``folder`` with torchvision (an optional extra) and check it."""
    if name not in DOWNLOADABLE:
        shipped = ", ".join(f"{s.name} ships with {s.package}" for s in IMAGE_SETS if s.package)
        raise DatasetError(f"download {name!r} is invalid: allowed {', '.join(DOWNLOADABLE)} ({shipped})")
    try:
        import torchvision.datasets as tv
    except ImportError:
        raise DatasetError(f"download {name}: needs torchvision; fix: pip install torchvision (matching your "
                           "torch), or copy the standard files into --data-dir") from None  # fmt: skip
    cls = getattr(tv, IMAGE_SETS[name].torchvision)
    for train in (True, False):
        cls(root=folder, train=train, download=True)
    read.cache_clear()
    read(name, folder)
