"""Widgets generated from declarations: one Streamlit widget per attack parameter.

A :class:`~advcore.attacks.params.Param` says what a value is (type, default, range,
choices, help); this module turns it into a widget: a checkbox for a bool, a number input
(within the declared range, or the declaration's ``widget_range``) for a float or an int, a
select slider over ``widget_values`` (e.g. a log-spaced ladder), and a radio for a choice.
Widget keys are the declaration's (``attack_<name>`` unless it names its own), so page
tests can set them by key.
"""

from __future__ import annotations

from collections.abc import Sequence

from advcore.attacks import Param


def _number_bounds(p: Param) -> tuple[float | int | None, float | int | None]:
    low, high = p.widget_range if p.widget_range is not None else (p.low, p.high)
    if p.kind == "int":
        return (None if low is None else int(low)), (None if high is None else int(high))
    return (None if low is None else float(low)), (None if high is None else float(high))


def param_widget(container, p: Param, *, disabled: bool = False, persist_state: str | None = None) -> object:
    """Draw the widget of ``p`` in ``container`` (``st`` or a column) and return its value."""
    keep = {} if persist_state is None else {"persist_state": persist_state}
    common = dict(key=p.key, help=p.help or None, disabled=disabled, **keep)
    if p.kind == "bool":
        return bool(container.checkbox(p.title, bool(p.default), **common))
    if p.kind == "choice":
        options = list(p.choices)
        return container.radio(p.title, options, index=options.index(p.default), format_func=p.choice_label,
                               **common)
    if p.widget_values:
        values = list(p.widget_values)
        return container.select_slider(p.title, values, p.default, format_func=lambda v: format(v, p.widget_format),
                                       **common)
    low, high = _number_bounds(p)
    if p.kind == "int":
        step = int(p.widget_step or 1)
        return int(container.number_input(p.title, low, high, int(p.default), step=step, **common))
    step = float(p.widget_step) if p.widget_step is not None else None
    return float(container.number_input(p.title, low, high, float(p.default), step=step, **common))


def _compact(p: Param) -> bool:
    """A number that fits half the width (two sit side by side)."""
    return p.kind in ("float", "int") and p.enabled_by is None


def param_widgets(container, params: Sequence[Param], *, persist_state: str | None = None) -> dict[str, object]:
    """One widget per parameter, in order; ``{name: value}``.

    Two numbers in a row share a line. A parameter whose ``enabled_by`` switch is off is drawn
    disabled and its value is None (it is unused, e.g. PGD's seed without a random start).
    """
    values: dict[str, object] = {}
    i = 0
    while i < len(params):
        p = params[i]
        if _compact(p) and i + 1 < len(params) and _compact(params[i + 1]):
            left, right = container.columns(2)
            for col, q in ((left, p), (right, params[i + 1])):
                values[q.name] = param_widget(col, q, persist_state=persist_state)
            i += 2
            continue
        off = p.enabled_by is not None and not values.get(p.enabled_by, False)
        value = param_widget(container, p, disabled=off, persist_state=persist_state)
        values[p.name] = None if off else value
        i += 1
    return values
