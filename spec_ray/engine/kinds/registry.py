"""A closed set of kinds (losses, activations, BatchNorm placements, ...): records by name, defined once.

Each set's module declares its records and one ``Registry`` of them; a spec field names a record,
the spec resolves the name when it is checked (an unknown name raises there, naming the field
and the allowed names), and code then asks the record what it does instead of comparing names.
Spec values and stored columns stay the names, so run ids and stored results do not depend on
how a record is written. Torch-free: the read side and every command line import registries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    """A record: its ``name`` is the value a spec field and a stored column hold."""

    @property
    def name(self) -> str: ...


K = TypeVar("K", bound=Named)


class Registry(Generic[K]):
    """The records of one closed set, in declaration order (the order --help and errors list)."""

    def __init__(self, what: str, *records: K) -> None:
        self.what = what
        """What the set is, for errors: "train.loss", "an activation"."""
        self._by_name = {r.name: r for r in records}
        if len(self._by_name) != len(records):
            raise ValueError(f"{what}: two records share a name")

    @property
    def names(self) -> tuple[str, ...]:
        """Every record's name: the values a spec field allows."""
        return tuple(self._by_name)

    def __iter__(self) -> Iterator[K]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> K:
        """The record named ``name``; ValueError naming the set and the allowed names."""
        record = self._by_name.get(name) if isinstance(name, str) else None
        if record is None:
            raise ValueError(f"{self.what}={name!r} is invalid: allowed one of " + ", ".join(self._by_name))
        return record

    def of(self, kind: K | str) -> K:
        """A record given as itself or by name."""
        return self[kind] if isinstance(kind, str) else kind

    def where(self, **asked: object) -> tuple[K, ...]:
        """The records whose attributes equal ``asked``, e.g. ``where(stored=True)``."""
        return tuple(r for r in self if all(getattr(r, k) == v for k, v in asked.items()))

    def names_where(self, **asked: object) -> tuple[str, ...]:
        """The names of ``where(**asked)``: the values a stored column holds for those records."""
        return tuple(r.name for r in self.where(**asked))

    def __repr__(self) -> str:
        return f"Registry({self.what}: {', '.join(self._by_name)})"


def record_of(field: str, registry: Registry[K]) -> property:
    """A spec section's property: the record its ``field`` names (checked when the section was made)."""
    return property(lambda self: registry[getattr(self, field)], doc=f"The record of ``{field}``.")
