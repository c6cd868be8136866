"""Issue 11 (links and downloads) on Compare, Defense, Geometry, Poisoning and Training: a link's settings reach
the widgets, the page writes them back into the URL, a bad value falls back to its default with a note, and the
downloads are offered. Small settings (Fashion-MNIST, few points) keep each page run short."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from app_util import APP
from streamlit.testing.v1 import AppTest

from advcore.labs import defense as defense_lab
from ui.frame import gallery_image

TIMEOUT = 180
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def open_link(page: str, **query: str) -> AppTest:
    """A page opened from a link: a fresh session whose URL holds ``query``."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def no_note(at: AppTest) -> None:
    assert not any("could not be used" in w.value for w in at.warning), [w.value for w in at.warning]


def written(at: AppTest, **expected: str) -> None:
    """The page wrote these settings back into the URL, in the widgets' units."""
    q = dict(at.query_params)
    for k, v in expected.items():
        assert q.get(k) in (v, [v]), (k, q.get(k))


def downloads(at: AppTest) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def test_compare_link() -> None:
    at = open_link("app_pages/compare.py", model="fmnist-naive", sources="fmnist-naive",
                   targets="fmnist-pgd", attacks="fgsm,pgd", norm="l2", eps="2.5", steps="7", seed="5",
                   n="10", stop="none", agr_alpha="eps/steps")
    no_note(at)
    assert at.multiselect(key="compare_sources_fashion-mnist").value == ["fmnist-naive"]
    assert at.multiselect(key="compare_targets_fashion-mnist").value == ["fmnist-pgd"]
    assert at.multiselect(key="compare_attacks").value == ["fgsm", "pgd"]
    assert at.radio(key="compare_norm").value == "l2" and at.slider(key="compare_eps_l2").value == 2.5
    assert at.slider(key="compare_steps").value == 7 and at.number_input(key="compare_seed").value == 5
    assert at.select_slider(key="compare_limit").value == 10
    assert at.radio(key="compare_stop").value == "none" and at.radio(key="compare_agr_alpha").value == "eps/steps"
    written(at, sources="fmnist-naive", targets="fmnist-pgd", attacks="fgsm,pgd", eps="2.5", steps="7", n="10")
    assert "--eps 2.5" in at.code[0].value and "--steps 7" in at.code[0].value


def test_defense_link_and_downloads() -> None:
    at = open_link("app_pages/defense.py", model="fmnist-naive", halftone="floyd-steinberg",
                   attack="fgsm", eps="0.05",
                   adaptive="1", table_attacks="fgsm", table_eps="0,0.1", n="50", steps="3", strong_steps="0",
                   restarts="1")
    no_note(at)
    assert at.selectbox(key="defense_method").value == "floyd-steinberg"
    assert at.selectbox(key="defense_attack").value == "fgsm" and at.slider(key="defense_eps_px").value == 0.05
    assert at.toggle(key="defense_adaptive").value is True
    assert at.multiselect(key="defense_table_attacks").value == ["fgsm"]
    assert at.multiselect(key="defense_table_eps").value == [0.0, 0.1]
    assert at.selectbox(key="defense_table_n").value == 50
    assert [at.number_input(key=f"defense_table_{k}").value for k in ("steps", "strong", "restarts")] == [3, 0, 1]
    written(at, halftone="floyd-steinberg", eps="0.05", adaptive="1", table_eps="0,0.1", steps="3")
    labels = set(downloads(at))
    shipped = defense_lab.saved_table("fmnist-naive", "floyd-steinberg") is not None
    assert ({"Download table (CSV)", "Download result (JSON)", "Download chart (HTML)"} <= labels) == shipped, labels


def test_geometry_link_and_its_json_names_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    from ui import widgets

    saved: list = []
    real = widgets.result_json
    monkeypatch.setattr(widgets, "result_json", lambda obj: saved.append(obj) or real(obj))
    at = open_link("app_pages/geometry.py", model="fmnist-naive", image="5", T="5", radii="0.02,0.05", norm="l2",
                   seed="4", perms="0", score="margin")
    no_note(at)
    assert at.select_slider(key="geo_T_small").value == 5
    assert at.text_input(key="geo_radii_small").value == "0.02,0.05"
    assert at.radio(key="geo_norm").value == "l2" and at.number_input(key="geo_seed").value == 4
    assert at.select_slider(key="geo_permutations").value == 0 and at.selectbox(key="geo_score").value == "margin"
    written(at, T="5", radii="0.02,0.05", norm="l2", seed="4", perms="0", score="margin", image="5")
    assert {"Download the results (JSON)", "Download isotropy chart (HTML)"} <= set(downloads(at))
    image, _ = gallery_image("fashion-mnist", 5)
    rgb = np.repeat(np.asarray(image)[..., None], 3, axis=2)  # the hash of advcore.records, written out here
    record = next(r for r in saved if "isotropy" in r)
    assert record["image"] == "fashion-mnist-5.png" and record["model"] == "fmnist-naive"
    assert record["image_sha256"] == hashlib.sha256(b"28x28\n" + rgb.tobytes()).hexdigest()


def test_poisoning_link_and_downloads() -> None:
    at = open_link("app_pages/poisoning.py", features="naive", eps="5", method="fgsm", trials="2", share="0.05",
                   seed="2", C="0.5", bases="nearest", poisons="2")
    no_note(at)
    assert at.multiselect(key="poison_kinds").value == ["naive"]
    assert at.slider(key="poison_eps").value == 5 and at.radio(key="poison_method").value == "fgsm"
    assert at.number_input(key="poison_trials").value == 2 and at.slider(key="poison_share").value == 0.05
    assert at.number_input(key="poison_C").value == 0.5 and at.radio(key="poison_bases").value == "nearest"
    assert at.number_input(key="poison_k").value == 2 and at.number_input(key="poison_seed").value == 2
    written(at, features="naive", eps="5", method="fgsm", share="0.05", C="0.5")
    # the label flip table is computed on load: its CSV and JSON are offered
    assert {"Download table (CSV)", "Download result (JSON)"} <= set(downloads(at))


def test_training_link_downloads_and_a_bad_link_note() -> None:
    at = open_link("app_pages/training.py", recipe="mat-mixed", strengths="0.05,0.2", epochs="2", images="500",
                   eval="200", seed="9")
    no_note(at)
    assert at.selectbox(key="train_recipe").value == "mat-mixed"
    assert at.multiselect(key="train_strengths").value == [0.05, 0.2]
    assert at.slider(key="train_epochs").value == 2 and at.select_slider(key="train_limit").value == 500
    assert at.select_slider(key="train_eval_n").value == 200 and at.number_input(key="train_seed").value == 9
    written(at, recipe="mat-mixed", strengths="0.05,0.2", epochs="2", images="500", eval="200", seed="9")
    assert {"Download table (CSV)", "Download the model cards (JSON)", "Download FGSM chart (HTML)"} <= set(
        downloads(at))
    bad = open_link("app_pages/training.py", recipe="sgd", strengths="0.05,0.7", epochs="99", images="123",
                    seed="-1", colour="red")
    note = " ".join(w.value for w in bad.warning if "could not be used" in w.value)
    for part in ("recipe=sgd: not one of", "strengths=0.05,0.7: not one of", "epochs=99: outside 1 to",
                 "images=123: not one of", "seed=-1: outside 0 to", "colour=red: not a setting of this page"):
        assert part in note, (part, note)
    assert bad.selectbox(key="train_recipe").value == "standard" and bad.slider(key="train_epochs").value == 1
    assert bad.multiselect(key="train_strengths").value == [0.1] and bad.number_input(key="train_seed").value == 0
