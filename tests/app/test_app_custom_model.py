"""AppTest of your own model in the sidebar: a session's models are in its model list only, and pages use them.

The sidebar's uploaders are filled with AppTest's ``file_uploader().set_value``; a model can also be put straight
into one session's state, and ``ui.frame.load_session_model`` / ``add_session_model`` run in a script of their own.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from app_util import APP, TIMEOUT, naive_files
from streamlit.testing.v1 import AppTest

from advcore import models
from advcore.models import custom

ROOT = Path(__file__).resolve().parents[2]
SESSION_KEY = "_advlab_session_models"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_sessions_model_is_in_its_list_only_and_the_attack_lab_uses_it() -> None:
    weights, card = naive_files()
    sm = custom.load_custom(weights, json.loads(card), weights_name="naive.pt")
    mine = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    other = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    mine.session_state[SESSION_KEY] = {sm.spec.name: sm}
    mine.run()
    assert not mine.exception, mine.exception
    options = mine.selectbox(key="sidebar_model").options
    assert options[-1] == "my-naive (yours)" and len(options) == len(models.names()) + 1
    other.run()
    assert "my-naive (yours)" not in other.selectbox(key="sidebar_model").options
    assert models.names() == [n for n in models.names() if not n.startswith("mine:")]  # the process is untouched

    mine.session_state["sidebar_model"] = sm.spec.name
    mine.run()
    assert at_caption(mine, "mine:my-naive: state_dict, fashion-mnist, 1x28x28 input, 10 classes")
    mine.switch_page("app_pages/attack.py").run()
    assert not mine.exception, mine.exception
    assert mine.selectbox(key="sidebar_model").value == sm.spec.name
    assert mine.selectbox(key="sidebar_gallery_fashion-mnist").value == 3  # its dataset's test images
    # the same network as fmnist-naive: the page's clean prediction is the shipped model's
    shipped = models.load("fmnist-naive", "cpu")
    from advcore import datasets

    x = datasets.to_float(datasets.load_subset(4)[0][3:4])
    p = shipped(x).softmax(1)[0]
    label = int(p.argmax())
    text = " ".join(m.value for m in mine.markdown) + " ".join(m.value for m in mine.caption)
    assert models.class_names("fmnist-naive")[label] in text
    assert f"{100 * float(p[label]):.1f}%" in text


def at_caption(at: AppTest, start: str) -> bool:
    return any(c.value.startswith(start) for c in at.sidebar.caption)


def _upload_script(root: str, weights: bytes, card: bytes) -> None:
    import sys

    sys.path.insert(0, root)
    import streamlit as st

    from advcore.errors import AdvlabError
    from ui import frame

    if "done" not in st.session_state:  # the Load button's work, once
        st.session_state["done"] = frame.load_session_model(weights, "naive.pt", card, "naive.json")
        trained = frame.session_models()[st.session_state["done"]]
        frame.add_session_model("your run 1", trained.model, {**trained.spec.card, "recipe": {"name": "pgd"}})
        for bad in (b"not a model", b"\x80\x04junk"):
            try:
                frame.load_session_model(bad, "bad.pt", card, "naive.json")
            except AdvlabError as exc:
                st.session_state.setdefault("errors", []).append(str(exc))
    frame.sidebar()


def test_upload_function_and_training_runs_join_the_sidebar_list() -> None:
    weights, card = naive_files()
    at = AppTest.from_function(_upload_script, args=(str(ROOT), weights, card), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert at.session_state["done"] == "mine:my-naive"
    assert at.selectbox(key="sidebar_model").options[-2:] == ["my-naive (yours)", "your run 1: my-naive (this session)"]
    assert all("is not a PyTorch model file" in e for e in at.session_state["errors"])
    assert at.session_state[SESSION_KEY]["mine:your-run-1"].spec.role == "pgd"
    at.button(key="sidebar_own_forget_mine:my-naive").click().run()
    assert at.selectbox(key="sidebar_model").options[-1:] == ["your run 1: my-naive (this session)"]


def test_sidebar_upload_loads_and_selects_the_model_and_refuses_pickled_code() -> None:
    weights, card = naive_files()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.file_uploader(key="sidebar_own_file").set_value(("naive.pt", weights, "application/octet-stream"))
    at.file_uploader(key="sidebar_own_card").set_value(("naive.json", card, "application/json"))
    at.run()
    at.button(key="sidebar_own_load").click().run()
    assert not at.exception, at.exception
    assert not at.sidebar.error, [e.value for e in at.sidebar.error]
    assert at.selectbox(key="sidebar_model").value == "mine:my-naive"  # loaded and selected
    assert at.selectbox(key="sidebar_gallery_fashion-mnist").value == 3
    # a pickle with a __reduce__ calling os.system, as the model file: refused, the list unchanged
    buf = io.BytesIO()
    torch.save({"w": _Shell()}, buf)
    at.file_uploader(key="sidebar_own_file").set_value(("evil.pt", buf.getvalue(), "application/octet-stream"))
    at.run()
    at.button(key="sidebar_own_load").click().run()
    assert not at.exception, at.exception
    assert "was refused" in at.sidebar.error[0].value and "weights_only=True" in at.sidebar.error[0].value
    assert list(at.session_state[SESSION_KEY]) == ["mine:my-naive"]


class _Shell:
    def __reduce__(self):
        import os

        return os.system, ("echo this must never run",)


def test_load_without_a_file_says_what_is_missing() -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.radio(key="sidebar_own_card_source").set_value("Card fields").run()
    assert at.selectbox(key="sidebar_own_arch").options[0] == "none (TorchScript file)"
    assert at.text_input(key="sidebar_own_mean").value == "0.5"
    at.button(key="sidebar_own_load").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.sidebar.error] == [
        "Choose a model file first (TorchScript, or a state_dict saved with torch.save)."]


def test_card_fields_make_a_card() -> None:
    from ui.frame import TORCHSCRIPT, card_from_fields

    card = card_from_fields(TORCHSCRIPT, "custom", 3, 32, 32, "0.5, 0.4, 0.3", "0.2,0.2,0.2", "cat\ndog, bird", "m")
    assert card == {"input_size": [3, 32, 32], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2], "name": "m",
                    "classes": ["cat", "dog", "bird"]}
    assert card_from_fields("small-cnn", "fashion-mnist", 1, 28, 28, "0.3", "0.4", "", "m")["dataset"] == \
        "fashion-mnist"
    with pytest.raises(ValueError, match="Mean must be numbers"):
        card_from_fields("small-cnn", "digits", 1, 8, 8, "a", "1", "", "m")
