"""Field roles: what each spec field means to packing, shared data, run ids and the runs table.

Every field of a spec dataclass declares its role where it is defined, as the dataclass
field's metadata (``role_field``). The registries that used to be kept by hand derive from
the roles (``spec_ray.engine.specs.spec_io.flat_roles``):

* ``per_run``: the field changes no tensor shape, loop length or code path, so runs that
  differ in it share a pack; every other field must agree within a pack (``pack.shape_key``);
* ``data``: the field decides a run's inputs or minibatch order, so runs equal in every data
  field share their leader's data (``pack.data_key``); forgetting it would silently give runs
  that differ in it the same data, which is why every field must say yes or no;
* ``neutral``: for a field added after results were first stored, the value that leaves a run
  as it was; a field at its neutral value stays out of the run id, so stored ids hold;
* ``location``: where something is read from (a dataset folder), never part of a run id: the
  content it names is checked (checksums), so moving it changes no result;
* nullable: read from the annotation (``int | None``), for the runs table's Arrow type.

* ``kinds``: the field names a kind of a closed set (a loss, a BatchNorm placement, ...): the
  registry of its records, whose names are its allowed values.

Adding a spec field is one edit in its section's dataclass (``sections.py``: its role, type, default
and doc) plus its docs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ROLE = "role"
"""The dataclass metadata key of a field's role."""


class _Always:
    """The neutral value of a field that is always part of the run id."""

    def __repr__(self) -> str:
        return "ALWAYS"


ALWAYS: Any = _Always()


@dataclass(frozen=True)
class Role:
    """What one spec field means outside its own dataclass."""

    per_run: bool = False
    """May differ between the runs of one pack (no shape, loop length or code path depends on it)."""
    data: bool = False
    """Decides the run's inputs or minibatch order."""
    neutral: Any = ALWAYS
    """The value at which the field stays out of the run id; ALWAYS: it never does."""
    location: bool = False
    """Names where inputs are read from; never part of a run id (the content is checksummed)."""
    nullable: bool = False
    """None is a valid value (set from the annotation by ``spec_io.flat_roles``)."""
    base: str = ""
    """A nullable field's type besides None, as annotated: int | str (the runs table's column type)."""
    kinds: Any = None
    """The field names a record of this registry (``spec_ray.engine.kinds.registry``), or one of these names:
    the allowed values, which the flags' help lists."""

    @property
    def in_id_always(self) -> bool:
        """Whether the field is part of every run id."""
        return self.neutral is ALWAYS


DERIVED = Role()
"""The role of the derived columns (m, depth, steps_per_epoch): shape, always in the id."""


def role_field(
    default: Any, *, per_run: bool = False, data: bool = False, neutral: Any = ALWAYS, location: bool = False,
    kinds: Any = None,
) -> Any:  # fmt: skip
    """A dataclass field with its default and its role (see the module docstring)."""
    role = Role(per_run=per_run, data=data, neutral=neutral, location=location, kinds=kinds)
    return dataclasses.field(default=default, metadata={ROLE: role})


def role_of(f: dataclasses.Field) -> Role:
    """The role a field declares; ValueError naming it where it declares none."""
    role = f.metadata.get(ROLE)
    if role is None:
        raise ValueError(f"spec field {f.name!r} declares no role: define it with roles.role_field(...)")
    nullable = "None" in str(f.type)
    base = str(f.type).replace("None", "").replace("|", "").strip() if nullable else ""
    return dataclasses.replace(role, nullable=nullable, base=base)
