"""Each way of pruning a conv teacher's last layer defined once, as a record (ICML's ``model_gen.prune``).

A new grouping is a record in ``PRUNE_GROUPINGS`` (read by teacher.prune_grouping and --help).
"""

from __future__ import annotations

from dataclasses import dataclass

from spec_ray.engine.kinds.registry import Registry


@dataclass(frozen=True)
class PruneGrouping:
    """Which output columns a pruned channel of a conv teacher's last layer owns."""

    name: str
    """The value of teacher.prune_grouping."""
    authors_mod: bool
    """Columns j with j mod C = k, as model_gen.prune views them (the teacher keeps every channel, masked);
    else the channel's own H W columns, as torch flattens it (the pruned channels are dropped)."""


AUTHORS = PruneGrouping("authors", authors_mod=True)
CHANNEL = PruneGrouping("channel", authors_mod=False)
PRUNE_GROUPINGS: Registry[PruneGrouping] = Registry("teacher.prune_grouping", AUTHORS, CHANNEL)
