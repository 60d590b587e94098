"""The engine: pure functions of (spec, seeds); nothing here knows about storage or Ray.

One folder a concept:

* ``specs``: the typed spec (``RunSpec``, its sections, each field's role), protocols and presets;
* ``kinds``: each closed set of kinds (losses, activations, BatchNorm placements, layer kinds,
  optimizers, teacher sources, augmentations) as records in one registry; torch-free;
* ``nets``: one network's shape, networks as tensor records, the packed parts;
* ``training``: packs, the packed trainer, its steps, scratch tensors and matmul precision;
* ``inputs``: construction (teachers, student init, data, minibatch order), image sets, stored
  teachers, pretraining;
* ``measure``: checkpoint metrics, their whole-set passes, beta* and H*, metric names;
* ``reference``: the one-run ground truth, apart from all of them.

The modules' former flat paths (``spec_ray.engine.spec``, ``spec_ray.engine.losses``, ...) still
import: ``MOVED`` names where each went, and importing an old path gives the module itself.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "spec": "specs.spec", "sections": "specs.sections", "roles": "specs.roles", "spec_io": "specs.spec_io",
    "checks": "specs.checks", "protocols": "specs.protocols",
    "registry": "kinds.registry", "losses": "kinds.losses", "activations": "kinds.activations",
    "batchnorm": "kinds.batchnorm", "layer_kinds": "kinds.layer_kinds", "optim": "kinds.optim",
    "teacher_sources": "kinds.teacher_sources", "augmentations": "kinds.augmentations",
    "arch": "nets.arch", "network": "nets.network", "parts": "nets.parts",
    "trainer": "training.trainer", "steps": "training.steps", "general": "training.general",
    "scratch": "training.scratch", "precision": "training.precision", "pack": "training.pack",
    "construct": "inputs.construct", "datasets": "inputs.datasets", "teachers": "inputs.teacher_checkpoints",
    "recipe": "inputs.recipe", "pretrain": "inputs.pretrain",
    "metrics": "measure.metrics", "passes": "measure.passes", "modulation": "measure.modulation",
    "names": "measure.names",
}  # fmt: skip
"""A module's flat name (before the concept folders) -> where it is now, under ``spec_ray.engine``."""


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a former flat path as the moved module itself (one module object under both names)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: object) -> object:
        return importlib.import_module(f"{__name__}.{MOVED[spec.name.rpartition('.')[2]]}")

    def exec_module(self, module: object) -> None:
        """The module ran where it lives; nothing more to run."""


if not any(isinstance(finder, _Moved) for finder in sys.meta_path):
    sys.meta_path.append(_Moved())
