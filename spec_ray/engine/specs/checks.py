"""Validation of spec fields: each bad value raises one ``ValueError`` naming the field and the allowed values.

Torch-free: the read side and every command line validate through ``spec`` before any work.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from spec_ray.engine.specs.roles import ROLE

# Sizes past these fit no machine or no run time; refused at once instead of planned for minutes.
MAX_EPOCHS = 1_000_000
MAX_ITERS_PER_EPOCH = 10_000_000
MAX_SAMPLES = 100_000_000
MAX_SEEDS = 100_000


def fail(name: str, value: object, allowed: str) -> None:
    raise ValueError(f"{name}={value!r} is invalid: allowed {allowed}")


def coerce_floats(obj: object) -> None:
    """Store float fields as floats, so 1 and 1.0 give the same run id."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(obj, f.name, float(value))


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        fail(name, value, f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi:,}")


def check_float(name: str, value: object, lo: float, *, strict: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < lo or (strict and value == lo):
        fail(name, value, f"a finite number {'>' if strict else '>='} {lo}")


def check_unit(name: str, value: object) -> None:
    """A number in [0, 1): a momentum, a leaky slope."""
    if isinstance(value, bool) or not isinstance(value, float) or not 0.0 <= value < 1.0:
        fail(name, value, "a number in [0, 1)")


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        fail(name, value, "one of " + ", ".join(allowed))


def check_kinds(obj: object, section: str) -> None:
    """Each field of a section that declares its kinds (``roles.role_field(kinds=...)``) names one of them."""
    for name, allowed in _kind_fields(type(obj)):
        value = getattr(obj, name)
        if value not in allowed:
            fail(f"{section}.{name}", value, "one of " + ", ".join(allowed))


@functools.cache
def _kind_fields(cls: type) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(field, allowed names) of a section's kind fields, read once a class: specs are made by the thousand."""
    roles = ((f.name, f.metadata.get(ROLE)) for f in dataclasses.fields(cls))
    return tuple((name, tuple(getattr(r.kinds, "names", r.kinds))) for name, r in roles if r and r.kinds is not None)


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        fail(name, value, "true or false")
