"""Comparing a result's JSON with a golden copy: keys in the same order at every level, the same types, and floats
to a stated tolerance."""

from __future__ import annotations

import pytest


def same_json(got, want, where: str = "", *, rel: float = 0.0, abs: float = 0.0) -> None:  # noqa: A002
    """``got`` equals ``want``: the same keys in the same order at every level (``==`` on dicts ignores the order),
    the same values and types, floats within ``rel``/``abs`` (``pytest.approx``; exact by default)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (where, list(got), list(want))
        for k in want:
            same_json(got[k], want[k], f"{where}.{k}", rel=rel, abs=abs)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same_json(g, w, f"{where}[{i}]", rel=rel, abs=abs)
    elif isinstance(want, float):
        assert isinstance(got, float) and (got == want or got == pytest.approx(want, rel=rel, abs=abs)), \
            (where, got, want)
    else:
        assert got == want and type(got) is type(want), (where, got, want)


def untimed(record):
    """``record`` (a result's JSON) without its wall-clock ``seconds`` entries, the only values two equal runs may
    differ in."""
    if isinstance(record, dict):
        return {k: untimed(v) for k, v in record.items() if k != "seconds"}
    if isinstance(record, list):
        return [untimed(v) for v in record]
    return record
