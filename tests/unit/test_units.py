"""The shared formatters of advcore.units and the small-model test: the exact text the pages and tables show."""

from __future__ import annotations

import numpy as np
import pytest

from advcore import models
from advcore.units import number, percent, percent_cell

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("value", "kwargs", "text"), [
    (None, {}, "n/a"), (NAN, {}, "n/a"), (0.125, {}, "12.5%"), (0, {}, "0.0%"), (1.0, {"digits": 2}, "100.00%"),
    (-0.05, {"signed": True}, "-5.0%"), (0.05, {"signed": True}, "+5.0%"),
    (0.1234, {"width": 5}, " 12.3%"), (None, {"width": 5, "missing": "–"}, "     –"),
    (NAN, {"nan_missing": False}, "nan%"),
])
def test_percent(value, kwargs, text):
    assert percent(value, **kwargs) == text


@pytest.mark.parametrize(("value", "kwargs", "text"), [
    (None, {}, "–"), (NAN, {}, "nan%"), (0.1234, {}, "12.3%"), (1, {"digits": 2}, "100.00%"),
    (np.float64(-0.25), {"signed": True}, "-25.0%"), (None, {"width": 5}, "     –"), (1.0, {"width": 5}, "100.0%"),
])
def test_percent_cell(value, kwargs, text):
    assert percent_cell(value, **kwargs) == text


@pytest.mark.parametrize(("value", "fmt", "args", "kwargs", "text"), [
    (None, ".4g", (), {}, "–"), (NAN, ".4g", (), {}, "nan"), (0.1234, ".2f", (), {}, "0.12"),
    (None, ".4f", ("-",), {}, "-"), (-1.5, ".1e", (), {}, "-1.5e+00"),
    (None, ".4f", ("n/a",), {"finite": True}, "n/a"), (NAN, ".4f", ("n/a",), {"finite": True}, "n/a"),
    (-INF, ".4f", ("n/a",), {"finite": True}, "n/a"), (INF, ".4f", ("n/a",), {"finite": True}, "inf"),
    (0, ".3f", ("n/a",), {"finite": True}, "0.000"),
])
def test_number(value, fmt, args, kwargs, text):
    assert number(value, fmt, *args, **kwargs) == text


def test_small_input_is_below_64_pixels_a_side():
    assert models.is_small_input((28, 28)) and models.is_small_input((1, 8, 8)) and models.is_small_input(63)
    assert not models.is_small_input((3, 224, 224)) and not models.is_small_input((64, 32))
    for name in models.names():
        spec = models.get_spec(name)
        assert spec.small == (spec.dataset != "imagenet") == models.is_small_input(spec), name
