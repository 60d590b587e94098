"""A claim's verdict: the measured numbers behind it and one of supported, not supported, not
enough data. Both papers' claims return a ``Claim``."""

from __future__ import annotations

from typing import NamedTuple

SUPPORTED, NOT_SUPPORTED, NO_DATA = "supported", "not supported", "not enough data"


class Claim(NamedTuple):
    number: int
    text: str
    evidence: str
    verdict: str


def verdict(ok: bool) -> str:
    return SUPPORTED if ok else NOT_SUPPORTED
