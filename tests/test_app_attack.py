"""AppTest of the Attack lab page, run through app.py's navigation with the real EfficientNet-Lite0."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 180  # a PGD run on a shared 2-core CPU
CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat"}
PREDICTION = re.compile(r"^(Clean|Adversarial) prediction: (.+) \((\d+\.\d)%\)$")


def attack_page(upload: tuple[str, bytes, str] | None = None, **widgets: object) -> AppTest:
    """The Attack lab reached from the Home page; ``widgets`` preset by key, ``upload`` sent through the sidebar."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if upload is not None:
        at.radio(key="sidebar_image_source").set_value("Upload").run()
        at.file_uploader(key="sidebar_upload").set_value(upload)
    for key, value in widgets.items():
        at.session_state[key] = value
    at.switch_page("pages/attack.py").run()
    assert not at.exception, at.exception
    return at


def predictions(at: AppTest) -> dict[str, tuple[str, float]]:
    found = {}
    for m in at.markdown:
        match = PREDICTION.match(m.value)
        if match:
            found[match[1]] = (match[2], float(match[3]))
    return found


def metrics(at: AppTest) -> dict[str, str]:
    df = at.dataframe[0].value
    return dict(zip(df["Metric"], df["Value"], strict=True))


def test_default_fgsm_flips_the_cat() -> None:
    at = attack_page()
    assert at.title[0].value == "Attack lab"
    assert at.markdown[0].value.startswith("Pick a photo and an attack, then move eps")
    assert at.selectbox(key="attack_name").label == "Attack"
    assert at.selectbox(key="attack_name").value == "fgsm"
    assert at.selectbox(key="attack_name").options == ["FGSM", "I-FGSM (BIM)", "PGD", "MI-FGSM",
                                                       "AGR (adaptive gradient refinement)"]
    assert at.slider(key="attack_eps_linf").label == "eps (x/255)"
    assert at.slider(key="attack_eps_linf").value == 4
    assert at.slider(key="attack_steps").disabled  # FGSM takes one step

    preds = predictions(at)
    assert set(preds) == {"Clean", "Adversarial"}
    clean, adv = preds["Clean"][0], preds["Adversarial"][0]
    assert clean in CAT_CLASSES
    assert adv != clean
    assert 0 < preds["Clean"][1] <= 100 and 0 < preds["Adversarial"][1] <= 100

    m = metrics(at)
    assert m["Success"] == "yes"
    assert m["Success after 8-bit rounding"] == "yes"
    assert m["L-inf"] == "0.01569 (4.00/255)"
    assert m["Gradient evaluations"] == "1"
    assert 0.99 < float(m["Cosine similarity"]) < 1.0
    assert 25 < float(m["PSNR"].split()[0]) < 60
    assert any("still succeeds after the image is rounded to 8 bits" in s.value for s in at.success)

    assert len(at.get("plotly_chart")) == 5  # top-5 x2, loss, probability, heat map
    captions = [c for image in at.get("image") for c in image.captions]
    assert captions == ["Clean: the 224x224 centre crop the model sees",
                        captions[1], "Adversarial: the 8-bit PNG you download"]
    assert captions[1].startswith("Perturbation x") and "(grey = unchanged)" in captions[1]
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download adversarial PNG", "Download metrics JSON"]
    cli = at.code[0].value
    assert cli.startswith("python -m advcore attack")
    for flag in ("--model efficientnet-lite0", "--image assets/samples/cat.jpg", "--attack fgsm",
                 "--norm linf", "--eps 4/255", "--json metrics.json"):
        assert flag in cli
    assert not at.error


def test_view_only_change_reuses_the_result() -> None:
    at = attack_page()
    seconds = metrics(at)["Seconds"]
    at.select_slider(key="attack_amplification").set_value(10).run()
    assert not at.exception
    assert metrics(at)["Seconds"] == seconds  # the cached result, not a new attack
    captions = [c for image in at.get("image") for c in image.captions]
    assert "Perturbation x10 around grey (grey = unchanged)" in captions


def test_eps_change_recomputes() -> None:
    at = attack_page()
    at.slider(key="attack_eps_linf").set_value(1).run()
    assert not at.exception
    m = metrics(at)
    assert m["L-inf"] == "0.00392 (1.00/255)"
    assert "--eps 1/255" in at.code[0].value
    assert set(predictions(at)) == {"Clean", "Adversarial"}


def test_switching_to_pgd_reruns_and_shows_a_prediction() -> None:
    at = attack_page()
    clean_before = predictions(at)["Clean"]
    at.selectbox(key="attack_name").set_value("pgd").run()
    assert not at.exception
    assert not at.slider(key="attack_steps").disabled
    assert at.checkbox(key="attack_random_start").value is True
    preds = predictions(at)
    assert preds["Clean"] == clean_before
    assert preds["Adversarial"][0] != preds["Clean"][0]
    m = metrics(at)
    assert m["Gradient evaluations"] == "10"
    assert m["L-inf"].endswith("(4.00/255)")  # PGD uses the whole ball
    cli = at.code[0].value
    assert "--attack pgd" in cli and "--steps 10" in cli and "--seed 0" in cli


def test_l2_norm_uses_pixel_units() -> None:
    at = attack_page()
    at.radio(key="attack_norm").set_value("l2").run()
    assert not at.exception
    eps = at.slider(key="attack_eps_l2")
    assert eps.label == "eps (pixel L2)" and eps.value == 1.0
    m = metrics(at)
    assert float(m["L2"]) <= 1.0 + 1e-4
    assert "--norm l2" in at.code[0].value and "--eps 1" in at.code[0].value


def test_large_jobs_wait_for_the_button() -> None:
    at = attack_page(attack_name="ifgsm", attack_steps=200)
    assert at.button(key="attack_run").label == "Run attack"
    assert "press Run attack" in at.info[0].value
    assert predictions(at) == {}
    assert "--steps 200" in at.code[0].value


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.open(ROOT / "assets" / "samples" / "cat.jpg").save(buf, format="PNG")
    return buf.getvalue()


def test_bad_upload_shows_an_error_not_a_traceback() -> None:
    at = attack_page(upload=("notes.png", b"this is not an image at all", "image/png"))
    assert len(at.error) == 1
    assert "notes.png is not an image that can be read" in at.error[0].value
    assert predictions(at) == {}
    assert "notes.png cannot be used (see the message on the page)." in [c.value for c in at.sidebar.caption]
    # Back to a sample: the page recovers in the same session.
    at.radio(key="sidebar_image_source").set_value("Bundled sample").run()
    assert not at.exception and not at.error
    assert predictions(at)["Clean"][0] in CAT_CLASSES


def test_good_upload_is_attacked() -> None:
    at = attack_page(upload=("chelsea.png", _png_bytes(), "image/png"))
    assert not at.error
    assert predictions(at)["Clean"][0] in CAT_CLASSES
    assert "--image upload.png" in at.code[0].value


def test_targeted_pgd_reaches_the_target() -> None:
    at = attack_page(attack_name="pgd", attack_targeted=True)
    target = at.selectbox(key="attack_target_imagenet")
    assert target.value == 859 and target.options[859] == "859: toaster"
    assert not at.exception
    preds = predictions(at)
    assert preds["Adversarial"][0] == "toaster"
    assert metrics(at)["Success"] == "yes"
    assert "--target 859" in at.code[0].value


def test_run_button_runs_a_large_job(monkeypatch: pytest.MonkeyPatch) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # app.py puts the repository on sys.path
    # A small automatic budget keeps this test fast: 3 steps at 224 px run by themselves, 5 wait for the button.
    monkeypatch.setattr("ui.attack_view.AUTO_RUN_BUDGET", 3 * 224 * 224)
    at.session_state["attack_name"] = "ifgsm"
    at.session_state["attack_steps"] = 5
    at.switch_page("pages/attack.py").run()
    assert not at.exception
    assert predictions(at) == {}
    at.button(key="attack_run").click().run()
    assert not at.exception
    assert set(predictions(at)) == {"Clean", "Adversarial"}
    assert metrics(at)["Gradient evaluations"] == "5"
    # The result is cached: a view-only rerun shows it again without the button.
    at.select_slider(key="attack_amplification").set_value(5).run()
    assert metrics(at)["Gradient evaluations"] == "5"
    assert not at.button


def test_agr_stops_on_success_and_prints_its_flags() -> None:
    at = attack_page(attack_name="agr")
    assert at.selectbox(key="attack_accumulator").value == "gradient"
    assert at.number_input(key="attack_phi").value == 1.0
    assert at.select_slider(key="attack_delta").value == 1e-8
    assert at.checkbox(key="attack_stop").value is True
    m = metrics(at)
    assert m["Success"] == "yes"
    assert 1 <= int(m["Gradient evaluations"]) < 10  # Algorithm 1 stops once the label flips
    cli = at.code[0].value
    for flag in ("--attack agr", "--phi 1.0", "--delta 1e-08", "--accumulator gradient"):
        assert flag in cli


def test_settings_survive_a_visit_to_the_home_page() -> None:
    at = attack_page()
    at.slider(key="attack_eps_linf").set_value(7).run()
    at.switch_page("pages/home.py").run()
    assert at.title[0].value == "advlab"
    at.switch_page("pages/attack.py").run()
    assert not at.exception
    assert at.slider(key="attack_eps_linf").value == 7
    assert metrics(at)["L-inf"].endswith("(7.00/255)")
