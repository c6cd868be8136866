"""AppTest of app.py: the Home page, the shared sidebar and the error boundary."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 120  # first model import on a shared 2-core CPU


def test_home_page_runs_and_describes_every_lab() -> None:
    from ui.frame import LABS

    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert not at.error
    assert at.title[0].value == "advlab"
    text = " ".join(m.value for m in at.markdown)
    assert "FGSM" in text and "AGR" in text
    labs = [lab for lab in LABS if lab.title != "Home"]
    assert [lab.title for lab in labs][-1] == "Papers" and len(labs) == 7  # six labs and the Papers page
    for lab in labs:  # one paragraph per lab, starting with its name in bold
        assert f"**{lab.title}**" in text, lab.title
    assert not any("Coming" in c.value for c in at.caption)


def test_shared_sidebar_defaults() -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    model = at.selectbox(key="sidebar_model")
    assert model.label == "Model"
    assert model.value == "efficientnet-lite0"
    assert "EfficientNet-Lite0 (ImageNet)" in model.options
    assert len(model.options) >= 3
    assert at.selectbox(key="sidebar_sample").value == "coffee.jpg"  # Lite0 gets it right with confidence
    assert at.selectbox(key="sidebar_sample").options[0] == "Chelsea the cat"
    assert at.toggle(key="sidebar_force_cpu").label == "Force CPU"
    captions = [c.value for c in at.sidebar.caption]
    assert any(c.startswith("Device: ") for c in captions), captions
    assert any(c.startswith("coffee.jpg: 600x400 px") for c in captions), captions

    at.toggle(key="sidebar_force_cpu").set_value(True).run()
    assert not at.exception
    assert any(c.value.startswith("Device: CPU") for c in at.sidebar.caption)


def _boundary_script(root: str) -> None:
    import sys

    sys.path.insert(0, root)
    import streamlit as st

    from advcore.errors import AdvlabError
    from ui.frame import error_boundary

    with error_boundary():
        raise AdvlabError("eps must be at least 0, got -1.")
    with error_boundary():
        raise RuntimeError("internal detail that must not reach the page")
    st.write("after the boundaries")


def test_error_boundary_shows_messages_and_never_a_traceback() -> None:
    at = AppTest.from_function(_boundary_script, args=(str(ROOT),), default_timeout=TIMEOUT).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors[0] == "eps must be at least 0, got -1."
    assert errors[1].startswith("Something went wrong")
    assert "internal detail" not in " ".join(errors)
    assert at.markdown[-1].value == "after the boundaries"


def test_every_lab_in_the_page_table_has_its_script() -> None:
    from ui.frame import LABS

    assert [lab.title for lab in LABS][:2] == ["Home", "Attack lab"]
    for lab in LABS:
        assert (ROOT / lab.script).is_file(), lab.script


def test_a_bad_worker_setting_is_one_message_on_the_page(monkeypatch) -> None:
    monkeypatch.setenv("ADVLAB_RUN_WORKERS", "yes")  # read when the page runs: workers.prepare
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "ADVLAB_RUN_WORKERS must be 0 (runs in the server process) or 1 (in workers), not 'yes'"]
