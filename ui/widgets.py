"""Widgets generated from declarations: one Streamlit widget per attack parameter.

A :class:`~advcore.attacks.params.Param` says what a value is (type, default, range,
choices, help); this module turns it into a widget: a checkbox for a bool, a number input
(within the declared range, or the declaration's ``widget_range``) for a float or an int, a
select slider over ``widget_values`` (e.g. a log-spaced ladder), and a radio for a choice.
Widget keys are the declaration's (``attack_<name>`` unless it names its own), so page
tests can set them by key. Each widget is also bound to the URL parameter of its name
(``ui.frame.url_value``), so a link carries it and restores it within the declared range.

The download helpers at the end give every page the same buttons: a table as CSV, a result as
JSON, a figure as interactive HTML (a PNG needs kaleido, which is not a dependency; images are
PNG already).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence

from advcore.attacks import Param
from advcore.records import json_safe
from ui.frame import url_bool, url_choice, url_number, url_show_bool, url_show_number, url_value


def _number_bounds(p: Param) -> tuple[float | int | None, float | int | None]:
    low, high = p.widget_range if p.widget_range is not None else (p.low, p.high)
    if p.kind == "int":
        return (None if low is None else int(low)), (None if high is None else int(high))
    return (None if low is None else float(low)), (None if high is None else float(high))


def param_widget(container, p: Param, *, disabled: bool = False, persist_state: str | None = None) -> object:
    """Draw the widget of ``p`` in ``container`` (``st`` or a column) and return its value."""
    keep = {} if persist_state is None else {"persist_state": persist_state}
    _bind_url(p)
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


def _bind_url(p: Param) -> None:
    """The URL parameter ``p.name`` for the widget of ``p``, parsed within what the widget offers."""
    if p.kind == "bool":
        url_value(p.name, p.key, url_bool, url_show_bool)
    elif p.kind == "choice":
        url_value(p.name, p.key, url_choice(list(p.choices)))
    elif p.widget_values:
        values = list(p.widget_values)
        url_value(p.name, p.key, url_choice([format(v, p.widget_format) for v in values], values=values,
                                            aliases={url_show_number(v): v for v in values}),
                  lambda v: format(v, p.widget_format))
    else:
        low, high = _number_bounds(p)
        url_value(p.name, p.key, url_number(low, high, integer=p.kind == "int"), url_show_number)


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


# --------------------------------------------------------------------------- downloads


def table_csv(rows: Sequence[Mapping[str, object]]) -> bytes:
    """Rows (dicts with the same keys, in order) as CSV bytes with a header line; None as an empty cell."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue().encode("utf-8")


def result_json(obj: object) -> bytes:
    """A result as strict JSON (non-finite floats as null), indented."""
    return (json.dumps(json_safe(obj), indent=2) + "\n").encode("utf-8")


def figure_html(fig) -> bytes:
    """A plotly figure as a self-contained interactive HTML page (plotly.js inlined: it opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")


def download_table(container, rows: Sequence[Mapping[str, object]], file_name: str, *, key: str,
                   label: str = "Download table (CSV)") -> None:
    """A CSV download button of ``rows``."""
    container.download_button(label, table_csv(rows), file_name=file_name, mime="text/csv", on_click="ignore",
                              key=key)


def download_json(container, obj: object, file_name: str, *, key: str, label: str = "Download result (JSON)") -> None:
    """A JSON download button of ``obj``."""
    container.download_button(label, result_json(obj), file_name=file_name, mime="application/json",
                              on_click="ignore", key=key)


def download_figure(container, fig, file_name: str, *, key: str, label: str = "Download chart (HTML)") -> None:
    """An interactive-HTML download button of a plotly figure (made on the click: a page with plotly.js inlined
    is about 4 MB, too much to send on every rerun)."""
    container.download_button(label, lambda: figure_html(fig), file_name=file_name, mime="text/html", on_click="ignore",
                              key=key)
