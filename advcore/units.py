"""Budgets and numbers as people type and read them: ``4/255``, ``0:0.3:0.03``, ``12.5%``.

Parsing (for the command line, model cards and URLs) and formatting (for pages and summaries)
are defined here once. Every parser raises :class:`~advcore.errors.AdvlabError` with a plain message.
"""

from __future__ import annotations

import math
import re

from advcore.errors import AdvlabError

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
MAX_EPS_VALUES = 1001
# The largest L2 budget or radius anyone may type, in [0, 1] pixel units: the largest input the models take
# (260x260x3) spans at most about 450, and each lab checks its own model's sqrt(D) once it knows it.
MAX_L2 = 1000.0


def parse_eps(text: str | float, *, name: str = "eps", allow_zero: bool = True) -> float:
    """A budget from ``"4/255"``, ``"0.0157"`` or ``"1e-2"``; refuses garbage, negatives, nan and inf."""
    s = str(text).strip()
    parts = [p.strip() for p in s.split("/")]
    if any(p.lower().lstrip("+-") in ("nan", "inf", "infinity") for p in parts):
        raise AdvlabError(f"{name} must be a finite number, got {s!r}.")
    if len(parts) > 2 or not all(_NUMBER.fullmatch(p) for p in parts):
        raise AdvlabError(f"{name} must be a number such as 0.0157 or a fraction such as 4/255, got {s!r}.")
    value = float(parts[0])
    if len(parts) == 2:
        denominator = float(parts[1])
        if denominator == 0:
            raise AdvlabError(f"{name} {s!r} divides by zero.")
        value /= denominator
    if not math.isfinite(value):
        raise AdvlabError(f"{name} must be a finite number, got {s!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "positive"
        raise AdvlabError(f"{name} must be {bound}, got {s!r}.")
    return value


def parse_int(text: str, *, name: str, low: int, high: int) -> int:
    """A whole number in ``[low, high]``."""
    s = str(text).strip()
    if not re.fullmatch(r"[+-]?\d+", s):
        raise AdvlabError(f"{name} must be a whole number, got {s!r}.")
    value = int(s)
    if not low <= value <= high:
        raise AdvlabError(f"{name} must be between {low} and {high}, got {value}.")
    return value


def parse_eps_list(text: str, *, name: str = "eps", allow_zero: bool = True, high: float = 1.0) -> list[float]:
    """Budgets from a range ``"0:0.3:0.03"`` (start:stop:step, stop included), a list ``"0,0.05,0.1"`` or one value.

    Each number may be a fraction (``8/255``). A range is robust to float rounding: ``0:0.3:0.03``
    gives exactly the eleven values 0, 0.03, ..., 0.3. Values above ``high`` are refused.
    """
    s = str(text).strip()
    if not s:
        raise AdvlabError(f"{name} needs at least one value, e.g. 0:0.3:0.03 or 0,0.05,0.1.")
    if ":" in s:
        parts = s.split(":")
        if len(parts) != 3:
            raise AdvlabError(f"A {name} range is start:stop:step, such as 0:0.3:0.03, got {s!r}.")
        start = parse_eps(parts[0], name=f"{name} range start", allow_zero=allow_zero)
        stop = parse_eps(parts[1], name=f"{name} range stop", allow_zero=allow_zero)
        step = parse_eps(parts[2], name=f"{name} range step", allow_zero=False)
        if stop < start:
            raise AdvlabError(f"The {name} range {s!r} ends before it starts.")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_EPS_VALUES:
            raise AdvlabError(f"The {name} range {s!r} has {count} values; at most {MAX_EPS_VALUES} are allowed.")
        values = [round(start + i * step, 12) for i in range(count)]
    else:
        values = [parse_eps(p, name=name, allow_zero=allow_zero) for p in s.split(",")]
        if len(values) > MAX_EPS_VALUES:
            raise AdvlabError(f"At most {MAX_EPS_VALUES} {name} values are allowed, got {len(values)}.")
    for v in values:
        if v > high:
            raise AdvlabError(f"{name} {v:g} exceeds {high:g} (the pixel range is [0, 1]).")
    if len(set(values)) != len(values):
        raise AdvlabError(f"{name} lists a value twice: {s!r}.")
    return values


def format_eps(eps: float, norm: str = "linf") -> str:
    """A budget for people: ``0.0157 (4/255)`` under L-infinity, plain under L2."""
    return f"{eps:.4g} ({eps * 255:.3g}/255)" if norm == "linf" else f"{eps:.4g}"


DASH = "–"  # what a table shows for a value it does not have (an en dash)


def percent(value: float | None, digits: int = 1, *, signed: bool = False, width: int = 0, missing: str = "n/a",
            nan_missing: bool = True) -> str:
    """A fraction in [0, 1] as a percentage (``0.125`` -> ``12.5%``); ``missing`` for None (and for NaN unless
    ``nan_missing`` is false: then ``nan%``). ``width`` pads the number (not the ``%``) to that many characters,
    and ``missing`` to one more, so that a column lines up."""
    if value is None or (nan_missing and isinstance(value, float) and math.isnan(value)):
        return missing.rjust(width + 1) if width else missing
    return f"{100 * value:{'+' if signed else ''}{width or ''}.{digits}f}%"


def percent_cell(value: float | None, digits: int = 1, *, signed: bool = False, width: int = 0) -> str:
    """:func:`percent` as the tables show it: an en dash for None, ``nan%`` for NaN."""
    return percent(value, digits, signed=signed, width=width, missing=DASH, nan_missing=False)


def number(value: float | None, fmt: str, missing: str = DASH, *, finite: bool = False) -> str:
    """``format(value, fmt)``, or ``missing`` for None. With ``finite``, NaN and -inf read as ``missing`` too and
    +inf as ``inf`` (e.g. a metric of an unchanged image)."""
    if value is None or (finite and isinstance(value, float) and not math.isfinite(value)):
        return "inf" if value is not None and value > 0 else missing
    return format(value, fmt)


def eps_fraction_text(eps: float) -> str:
    """A budget as short as it reads: ``4/255`` for a whole number of 8-bit levels that is not a short
    decimal (``0.0156862...``), else the decimal itself (``0.1``, ``0``). ``parse_eps`` reads both back."""
    k = round(eps * 255)
    if eps and abs(eps * 255 - k) < 1e-6 and len(f"{eps:g}") > 6:
        return f"{k}/255"
    return f"{eps:g}"
