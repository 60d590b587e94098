"""What a launch says it will do, on one screen, before it starts: the settings off the defaults, the
axes, runs and packs, the run length, storage and the Ray it uses (``launch_summary``)."""

from __future__ import annotations

import os
import textwrap

from spec_ray.engine.specs.spec import RunSpec
from spec_ray.engine.specs.spec_io import flat_fields
from spec_ray.orchestration.experiment import axis_path
from spec_ray.orchestration.plan import Launch
from spec_ray.storage.verify import COMPLETE


def _values(values: tuple) -> str:
    """'1 2 5 10', or '1..32' for a run of consecutive integers."""
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if ints and len(values) > 3 and list(values) == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}..{values[-1]}"
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _runs_line(launch: Launch) -> str | None:
    """How many runs are reused, new, copied or retrained; None for a plain fresh sweep."""
    count = lambda packs: sum(p.size for p in packs)  # noqa: E731
    named = {r for p in launch.experiment.packs() for r in p.run_ids} if launch.left_out else None
    done = sum(sum(named is None or r in named for r in c.pack.run_ids) for c in launch.checks if c.state == COMPLETE)
    parts = []
    if launch.resume:
        parts.append(f"{done} of these flags' runs done and reused")
    if launch.new:
        parts.append(f"{count(launch.new)} new in {len(launch.new)} pack(s)")
    if launch.copies:
        names = sorted({s.store.experiment for s in launch.sources.values()})
        parts.append(f"{count(launch.copies)} done in {', '.join(names)}: copied, not trained")
    if launch.unfinished:
        parts.append(f"{count(launch.unfinished)} unfinished in {len(launch.unfinished)} pack(s)")
    if launch.retrain:
        parts.append(f"{count(launch.retrain)} in {len(launch.retrain)} pack(s) with missing or corrupt files, "
                     "trained again")  # fmt: skip
    if launch.left_out:
        parts.append(f"{launch.left_out} more stored, which these flags do not name: kept as they are")
    if not parts or parts == ["0 of these flags' runs done and reused"]:
        return None
    if launch.resume and not launch.todo and not launch.copies:
        parts.append("nothing to train")
    return textwrap.fill("; ".join(parts), width=110, initial_indent="  runs:     ", subsequent_indent=" " * 12)


def planned_ray(address: str | None) -> str:
    """The Ray a launch will use, as planned (``tune_driver.joined`` says which it joined)."""
    return address or os.environ.get("RAY_ADDRESS") or "a running cluster, else a new local Ray"


def launch_summary(launch: Launch, ray: str) -> str:
    """What the sweep will do, on one screen: settings off the defaults, axes, runs and packs, storage, Ray."""
    exp = launch.experiment
    default, base = flat_fields(RunSpec()), flat_fields(exp.base)
    shown_elsewhere = {axis_path(n).rpartition(".")[2] for n in exp.axes} | {"m", "depth", "steps_per_epoch"}
    shown_elsewhere |= {p.rpartition(".")[2] for named in exp.variants.values() for s in named.values() for p in s}
    changed = [f"{k}={v}" for k, v in base.items() if k not in shown_elsewhere and v != default.get(k)]
    packs = launch.packs()
    spec = packs[0].spec
    small, large = min(p.size for p in packs), max(p.size for p in packs)
    steps = sorted({p.spec.steps_per_epoch for p in packs})
    per_epoch = str(steps[0]) if len(steps) == 1 else f"{steps[0]} to {steps[-1]}"
    res = launch.resources
    lines = [
        f"sweep {exp.name}: {sum(p.size for p in packs)} runs in {len(packs)} packs "
        f"({small if small == large else f'{small} to {large}'} run{'s' if large > 1 else ''} a pack)",
        textwrap.fill(
            ", ".join(changed) if changed else "the two-layer protocol's defaults",
            width=110,
            initial_indent="  settings: ",
            subsequent_indent=" " * 12,
            break_long_words=False,
        ),
        "  axes:     "
        + " x ".join(
            [
                *(f"{a} {_values(tuple(v))}" for a, v in exp.variants.items()),
                *(f"{n} {_values(v)}" for n, v in exp.axes.items()),
            ]
        ),  # fmt: skip
        f"  length:   {spec.train.epochs} epochs x {per_epoch} steps"
        + (" (one shuffled pass)" if spec.epoch_is_pass else "")
        + f", {spec.train.dtype}",
        f"  storage:  {launch.store.uri}" + ("  (resuming the stored sweep)" if launch.resume else ""),
        _runs_line(launch),
        f"  ray:      {ray}; {res.cpus_per_trial:g} CPU, {res.gpus_per_trial:g} GPU a trial, "
        f"{res.max_failures} retries",
    ]
    return "\n".join(line for line in lines if line is not None)
