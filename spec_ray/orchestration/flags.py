"""Command-line words for spec fields, shared by ``python -m spec_ray run``, every sweep script and ``analysis``.

Torch-free and Ray-free: the read side imports ``Parser`` from here.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Collection

from spec_ray.engine.specs import spec as specs
from spec_ray.engine.specs.roles import role_of
from spec_ray.engine.specs.spec_io import field_docs

NOT_GIVEN = argparse.SUPPRESS  # a flag left out (None is a value: --iters-per-epoch none)


class Parser(argparse.ArgumentParser):
    """One line on bad flags instead of the whole usage block; exit code 2. No abbreviations:
    ``--seed 4`` is an error, not ``--seeds 4``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: allowed true, false")


def _epoch_lr(text: str) -> tuple[int, float]:
    epoch, sep, lr = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(epoch), float(lr)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not EPOCH:LR, e.g. 20:0.1") from None


def _or_none(parse):
    """A parser that also takes the word 'none' (an optional spec field)."""

    def parse_optional(text: str):
        return None if text.lower() == "none" else parse(text)

    parse_optional.__name__ = getattr(parse, "__name__", "value")  # argparse names it in errors
    return parse_optional


def value_parser(hint: object) -> tuple[object, bool]:
    """(parse one command-line word, is the field a tuple) for a spec field's type hint."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        inner = args[0]
        return (_epoch_lr if typing.get_origin(inner) is tuple else inner), True
    if type(None) in args:  # Optional[X]: the word "none" gives None
        inner = next(a for a in args if a is not type(None))
        return _or_none(inner), False
    return (_parse_bool if hint is bool else hint), False


def add_spec_flags(
    parser: argparse.ArgumentParser, several: Collection[str] | None = None, skip: Collection[str] = ()
) -> dict[str, str]:
    """One flag per spec field, a group per section, help from the field's docstring; returns {dest: path}.

    ``several``: the fields whose flag takes one or more values; None, every field (a
    sweep's axes). A flag left out leaves no attribute (``NOT_GIVEN``); 'none' gives None.
    ``skip``: fields whose flag the caller defines itself (a variant axis of that name).
    """
    dests = {}
    top = [f for f in dataclasses.fields(specs.RunSpec) if f.name not in specs.SECTIONS and f.name != "seed"]
    groups = [(section, type(getattr(specs.RunSpec(), section))) for section in specs.SECTIONS] + [("run", None)]
    for section, cls in groups:
        hints = typing.get_type_hints(cls or specs.RunSpec)
        docs = field_docs(cls or specs.RunSpec)
        title = f"{section} (several values make an axis)" if several is None else section
        group = parser.add_argument_group(title)
        for f in dataclasses.fields(cls) if cls else top:  # run: top-level fields; seeds come from --seeds
            if f.name in skip:
                continue
            parse, is_tuple = value_parser(hints[f.name])
            many = several is None or f.name in several
            extra = "One or more values: a pack axis." if many and several is not None else ""
            kinds = role_of(f).kinds
            if kinds is not None:  # the registry's names, never a list kept in the doc
                extra = f"Allowed: {', '.join(getattr(kinds, 'names', kinds))}. {extra}"
            default = f.default
            shown = (
                "none" if default is None else " ".join(map(str, default)) if isinstance(default, tuple) else default
            )
            text = " ".join(f"{docs.get(f.name, '')} {extra} (default: {shown})".split()).replace("%", "%%")
            kwargs: dict = {"dest": f.name, "default": NOT_GIVEN, "type": parse, "help": text}
            if is_tuple or many:
                kwargs["nargs"] = "+"
            kwargs["metavar"] = "BOOL" if hints[f.name] is bool else f.name.upper()
            group.add_argument("--" + f.name.replace("_", "-"), **kwargs)
            dests[f.name] = f.name if cls is None else f"{section}.{f.name}"
    return dests
