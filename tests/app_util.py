"""Helpers for the AppTest page tests: open a lab through app.py's navigation, read its plotly charts."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 180  # a model load plus a computation on a shared 2-core CPU


def open_page(script: str, *, timeout: float = TIMEOUT, **state: object) -> AppTest:
    """``script`` (e.g. ``app_pages/compare.py``) reached from the Home page, with ``state`` preset by widget
    key (``sidebar_model="fmnist-naive"``); fails if the page shows an exception."""
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(script).run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """Every plotly chart on the page as {title: figure dict}."""
    figures = (json.loads(el.proto.spec) for el in at.get("plotly_chart"))
    return {fig["layout"]["title"]["text"]: fig for fig in figures}
