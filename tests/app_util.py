"""Helpers for the AppTest page tests: open a lab through app.py's navigation, read its plotly charts, make a
model file of your own."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from streamlit.testing.v1 import AppTest

from advcore import models

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


def vega_specs(at: AppTest) -> list[dict]:
    """Every Vega-Lite chart on the page (the Attack lab's charts) as a spec dict, in page order, with the rows
    Streamlit sent apart (as Arrow) back in ``spec["data"]["values"]``."""
    import pyarrow as pa

    out = []
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        if el.proto.data.data:
            spec["data"] = {"values": pa.ipc.open_stream(el.proto.data.data).read_all().to_pylist()}
        out.append(spec)
    return out


def naive_files() -> tuple[bytes, bytes]:
    """fmnist-naive's network as a state_dict file and a card naming its architecture and normalisation."""
    spec = models.get_spec("fmnist-naive")
    buf = io.BytesIO()
    torch.save(models.load("fmnist-naive", "cpu").net.state_dict(), buf)
    card = {"architecture": "small-cnn", "dataset": "fashion-mnist", "input_size": [1, 28, 28],
            "mean": list(spec.mean), "std": list(spec.std), "name": "my naive"}
    return buf.getvalue(), json.dumps(card).encode()
