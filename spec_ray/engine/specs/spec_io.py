"""A spec as data: its flat record (runs table, run ids), its roles, JSON for sweep.json with
the migration of older files, and the field docs that --help shows.

Field names are unique across sections, so one flat ``{name: value}`` record holds a whole
run; ``flat_roles`` checks that, and that every field declares a role (``roles``).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap

from spec_ray.engine.specs.roles import DERIVED, Role, role_of
from spec_ray.engine.specs.spec import (
    SECTIONS,
    RunSpec,
)

_SECTION_CLASSES = {f.name: f.default_factory for f in dataclasses.fields(RunSpec) if f.name in SECTIONS}
"""Each section's dataclass, from RunSpec's own fields."""
_TOP = ("seed", "init_seed")
"""RunSpec's own fields (not sections), in the flat record's order: seed first, init_seed after the sections."""


DERIVED_COLUMNS = ("m", "depth", "steps_per_epoch")
"""Columns of the flat record computed from the fields (``RunSpec`` properties), after them."""


def flat_roles() -> dict[str, Role]:
    """Every flat column's role, in ``flat_fields`` order; ValueError on a field without a role
    or on two sections' fields of one name (they would share a column and a run-id key)."""
    top = {f.name: f for f in dataclasses.fields(RunSpec) if f.name not in SECTIONS}
    if set(top) != set(_TOP):
        raise ValueError(f"RunSpec's own fields {sorted(top)} are not spec_io._TOP {sorted(_TOP)}: add the new one")
    fields = [top["seed"], *(f for s in SECTIONS for f in dataclasses.fields(_SECTION_CLASSES[s])), top["init_seed"]]
    roles: dict[str, Role] = {}
    for f in fields:
        if f.name in roles or f.name in DERIVED_COLUMNS:
            raise ValueError(f"spec field name {f.name!r} is used twice: allowed names unique across sections")
        roles[f.name] = role_of(f)
    return {**roles, **dict.fromkeys(DERIVED_COLUMNS, DERIVED)}


def field_docs(cls: type) -> dict[str, str]:
    """The one-line doc under each field of a spec dataclass (for --help and docs)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = str(after.value.value).strip()
    return docs


def _tuple_text(value: tuple) -> str:
    """(20,) -> '20'; (-0.5, 0.5) -> '-0.5_0.5'; ((20, 0.1),) -> '20:0.1'."""
    items = [":".join(_tuple_text((x,)) for x in v) if isinstance(v, tuple) else f"{v:g}" for v in value]
    return "_".join(items)


def flat_value(value: object) -> object:
    """A field's value as the flat record holds it (tuples as text)."""
    return _tuple_text(value) if isinstance(value, tuple) else value


def flat_fields(spec: RunSpec) -> dict[str, object]:
    """Every spec field as one flat ``{column: value}`` record (tuples as strings): the runs
    table's spec columns and the input of the run id."""
    out: dict[str, object] = {"seed": spec.seed}
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(spec, section)):
            out[f.name] = flat_value(getattr(getattr(spec, section), f.name))
    out["init_seed"] = spec.init_seed
    out["m"] = spec.teacher.m
    out["depth"] = spec.teacher.depth
    out["steps_per_epoch"] = spec.steps_per_epoch
    return out


def spec_to_dict(spec: RunSpec) -> dict:
    """A JSON-ready nested dict of the spec (tuples as lists)."""
    return dataclasses.asdict(spec)


REMOVED = {"train": ("device",)}
"""Fields of older versions that no longer exist, dropped when their sweep.json is read: where a
pack trains is its trial's placement (``Pack.placement``), not part of a run."""


def _without_removed(section: str, fields: dict) -> dict:
    return {k: v for k, v in fields.items() if k not in REMOVED.get(section, ())}


def spec_from_dict(data: dict) -> RunSpec:
    """Inverse of ``spec_to_dict``; validates like the constructor."""
    classes = {f.name: f.type for f in dataclasses.fields(RunSpec)}
    kwargs = {name: _SECTION_CLASSES[name](**_without_removed(name, data.get(name, {}))) for name in SECTIONS}
    kwargs.update({k: v for k, v in data.items() if k not in SECTIONS and k in classes})
    return RunSpec(**kwargs)
