"""AppTest of the Geometry lab page through app.py's navigation: figures, numbers, cache, cancel, compare."""

from __future__ import annotations

import shlex

import pytest
from app_util import APP, charts, open_page
from streamlit.testing.v1 import AppTest

from advcore.cli.framework import build_parser, load_image
from advcore.labs import geometry
from ui.frame import DEFAULT_GALLERY
from ui.session import GEOMETRY_RUN
from ui.views import geometry as gv

TIMEOUT = 180
SMALL = {"sidebar_model": "fmnist-naive", "geo_T_small": 20, "geo_radii_small": "0.02,0.05,0.1"}
RADII = [0.02, 0.05, 0.1]
DEFAULT_IMAGE = f"fashion-mnist:{DEFAULT_GALLERY}"  # the sidebar's default test image
FIGURES = ["Isotropy: range of the score against the radius (Figure 1)",
           "Symmetry: range over permutations of one perturbation (Figure 3)",
           "Mantel r against the radius (Figure 4)", "Local Lipschitz (Figure 6)"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def geometry_page(**widgets: object) -> AppTest:
    return open_page("app_pages/geometry.py", timeout=TIMEOUT, **widgets)


def ys(trace: dict) -> list:
    """A trace's y values (plotly 7 may store arrays as base64 'bdata')."""
    y = trace["y"]
    if isinstance(y, dict):
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist()
    return list(y)


def test_fmnist_page_shows_the_figures_with_the_librarys_numbers() -> None:
    at = geometry_page(**SMALL)
    assert not at.error
    assert at.title[0].value == "Geometry lab"
    intro = at.markdown[0].value
    assert intro.count(". ") == 0 and intro.endswith("."), "the page opens with one sentence"
    figs = charts(at)
    for title in FIGURES:
        assert title in figs, list(figs)
    assert any(t.startswith("Input space, r = ") for t in figs) and any(t.startswith("Layer penultimate") for t in figs)

    ref = geometry.probe_image("fmnist-naive", load_image(DEFAULT_IMAGE), radii=RADII, T=20,
                               permutations=gv.PAGE_PERMUTATIONS, seed=0)
    fig1 = figs[FIGURES[0]]["data"][0]
    assert ys(fig1) == pytest.approx(ref.report.isotropy.range, rel=1e-9)
    symbols = fig1["marker"]["symbol"]
    assert symbols == ["square" if w else "circle" for w in ref.report.isotropy.any_misclassified]
    assert ys(figs[FIGURES[1]]["data"][0]) == pytest.approx(ref.report.symmetry.range, rel=1e-9)
    assert ys(figs[FIGURES[2]]["data"][0]) == pytest.approx([t.r for t in ref.report.topology.tests], abs=1e-12)
    lip = figs[FIGURES[3]]
    assert [t["name"] for t in lip["data"]] == ["points", "linear fit", "quadratic fit", "ratio 1"]
    assert len(ys(lip["data"][0])) == 60
    captions = "\n".join(c.value for c in at.caption)
    assert f"{ref.report.lipschitz.share_below_1:.1%} of the points lie below" in captions
    assert "Mantel r is the Pearson correlation" in captions

    # The command line shown on the page parses and asks for the same computation.
    line = next(c.value for c in at.code if "advcore geometry all" in c.value)
    words = shlex.split(line)
    assert words[:4] == ["python", "-m", "advcore", "geometry"]
    args = build_parser().parse_args(words[3:])
    assert (args.probe, args.model, args.image, args.T, args.radii, args.norm, args.layer, args.seed,
            args.permutations) == ("all", "fmnist-naive", DEFAULT_IMAGE, 20, RADII, "linf", "penultimate", 0,
                                   gv.PAGE_PERMUTATIONS)


def test_a_view_choice_does_not_recompute(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = geometry.probe_image

    def counting(*args, **kwargs):
        calls.append(kwargs.get("radii"))
        return real(*args, **kwargs)

    monkeypatch.setattr(geometry, "probe_image", counting)
    at = geometry_page(**SMALL)
    assert len(calls) == 1
    at.select_slider(key="geo_heat_radius").set_value("5.1/255").run()
    assert not at.exception
    assert "Input space, r = 5.1/255" in charts(at)
    at.session_state["geo_seed"] = 1  # a parameter: computed again
    at.run()
    assert len(calls) == 2 and not at.exception


def test_bad_radii_show_an_error_and_no_chart() -> None:
    at = geometry_page(**{**SMALL, "geo_radii_small": "0.1,-2"})
    assert at.error and "Radii" in at.error[0].value
    assert not at.get("plotly_chart")
    at = geometry_page(**{**SMALL, "geo_radii_small": "2,3"})  # L-inf beyond the pixel range
    assert at.error and "L-inf radius above 1" in at.error[0].value


def test_a_cancelled_run_waits_for_run_and_then_computes() -> None:
    req = gv.GeometryRequest(model="fmnist-naive", image_key=DEFAULT_IMAGE, T=20, radii=tuple(RADII),
                             radii_text="0.02,0.05,0.1", norm="linf", layer="penultimate", seed=0,
                             permutations=gv.PAGE_PERMUTATIONS, device="auto")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    for key, value in SMALL.items():
        at.session_state[key] = value
    # What the Cancel button's callback leaves when its click interrupted the run of this job.
    at.session_state[GEOMETRY_RUN.running_key] = {"label": "", "stage": "isotropy", "step": 4, "total": 120}
    at.session_state[GEOMETRY_RUN.cancel_key] = True
    at.session_state[GEOMETRY_RUN.cancelled_key] = (req, "fmnist-naive")
    at.switch_page("app_pages/geometry.py").run()
    assert not at.exception
    assert at.warning and "cancelled" in at.warning[0].value
    assert not at.get("plotly_chart")
    at.run()  # a rerun (a view change) does not restart it either
    assert at.warning and not at.get("plotly_chart")
    at.button(key="geo_rerun_fmnist-naive").click().run()
    assert not at.exception and FIGURES[0] in charts(at)


def test_compare_runs_a_naive_and_a_robust_model_on_the_same_points() -> None:
    at = geometry_page(**{**SMALL, "geo_robust": "fmnist-pgd", "geo_compare": True})
    figs = charts(at)
    for title in ("Isotropy range, both models", "Symmetry range, both models", "Mantel r, both models"):
        assert [t["name"] for t in figs[title]["data"][:2]] == ["fmnist-naive", "fmnist-pgd"]
    text = "\n".join(m.value for m in at.markdown)
    assert "Both models scored exactly the same 20 random points at each of the 3 radii" in text
    assert "fmnist-pgd's isotropy range" in text
    rows = at.table[0].value.to_dict("records")
    assert [r["model"] for r in rows] == ["fmnist-naive", "fmnist-pgd"]


def test_imagenet_page_runs_and_says_which_comparison_exists() -> None:
    at = geometry_page(geo_T_large=5, geo_radii_large="2/255,8/255")
    assert not at.error
    figs = charts(at)
    for title in FIGURES:
        assert title in figs
    info = "\n".join(i.value for i in at.info)
    assert "no naive-against-robust pair" in info and "EfficientNet-Lite0/1/2" in info
    assert "--model efficientnet-lite0" in at.code[0].value and "--T 5" in at.code[0].value


SURVEY = {"sidebar_model": "fmnist-naive", "geo_T_small": 5, "geo_radii_small": "3/255,9/255", "geo_score": "log-prob",
          "geo_robust": "fmnist-pgd", "geo_survey_images": 12, "geo_survey_conf": 0.99}


def test_survey_numbers_equal_the_clis_json(capsys: pytest.CaptureFixture) -> None:
    """The survey's Run button: the table and the finding come from the same numbers as ``geometry-survey --json``
    (both the filtered line and the unfiltered one the page shows)."""
    import json

    from advcore.cli.framework import main as cli

    sreq = gv.SurveyRequest(models=("fmnist-naive", "fmnist-pgd"), images=12, T=5,
                            radii=tuple(geometry.parse_radii("3/255,9/255")), radii_text="3/255,9/255", norm="linf",
                            seed=0, score="log-prob", device="auto")
    at = geometry_page(**SURVEY)
    # What the Cancel button's callback leaves when its click interrupted this survey (the probe above is cached).
    at.session_state[GEOMETRY_RUN.running_key] = {"label": "", "stage": "fmnist-naive, image 3", "step": 4,
                                                  "total": 100}
    at.session_state[GEOMETRY_RUN.cancel_key] = True
    at.session_state[GEOMETRY_RUN.cancelled_key] = (sreq, "survey")
    at.run()
    assert not at.exception
    assert any("The survey was cancelled" in w.value for w in at.warning)
    assert "Not computed yet for these settings" in "\n".join(c.value for c in at.caption)
    assert "Median isotropy range over the kept images" not in charts(at)
    at.button(key="geo_survey_run").click().run()
    assert not at.exception
    lines = next(c.value for c in at.code if "geometry-survey" in c.value).splitlines()
    assert len(lines) == 2 and "--min-confidence 0.99" in lines[0] and "--min-confidence 0 " in lines[1]
    dicts = []
    for line in lines:
        words = shlex.split(line)[3:]
        words[words.index("--json") + 1] = "-"
        assert cli([*words, "-q", "--threads", "1"]) == 0
        dicts.append(json.loads(capsys.readouterr().out))
    filt, unf = dicts
    assert filt["min_confidence"] == 0.99 and unf["min_confidence"] is None and unf["images"] == 12
    table = at.table[-1].value.to_dict("records")
    assert [r["reading"] for r in table] == ["filtered (softmax > 0.99)", "unfiltered"]
    for row, d in zip(table, dicts, strict=True):
        assert row["images kept"] == f"{len(d['kept'])} of 12"
        for m in ("fmnist-naive", "fmnist-pgd"):
            assert row[f"{m} median range (nats)"] == f"{d['per_model'][m]['median_image_range']:.3e}"
        share = d["per_model"]["fmnist-pgd"]["share_smaller_than"]["fmnist-naive"]
        assert row["images where fmnist-pgd < fmnist-naive"] == f"{share:.0%}"
    fig = charts(at)["Median isotropy range over the kept images"]
    assert ys(fig["data"][0]) == pytest.approx(filt["per_model"]["fmnist-naive"]["median_range"], rel=1e-12)
    assert ys(fig["data"][3]) == pytest.approx(unf["per_model"]["fmnist-pgd"]["median_range"], rel=1e-12)
    text = "\n".join(m.value for m in at.markdown)
    assert f"{len(filt['kept'])} of 12 test images" in text and "Without the filter (all 12 images" in text
    # A new threshold filters the same run again: no recomputation, fewer images.
    at.session_state["geo_survey_conf"] = 0.999
    at.run()
    table = at.table[-1].value.to_dict("records")
    kept = [i for i in unf["kept"] if all(unf["correct_each"][m][i] and unf["probability"][m][i] > 0.999
                                          for m in unf["models"])]
    assert table[0]["images kept"] == f"{len(kept)} of 12" and len(kept) <= len(filt["kept"])
    # Fewer images: the first 6 of the same run (each image's points depend on that image alone).
    at.session_state["geo_survey_images"] = 6
    at.run()
    table = at.table[-1].value.to_dict("records")
    assert table[1]["images kept"] == "6 of 6" and "Not computed yet" not in "\n".join(c.value for c in at.caption)
    assert table[0]["images kept"] == f"{sum(i < 6 for i in kept)} of 6"


def test_imagenet_default_is_the_shipped_result_with_a_run_button(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lite0's page default (coffee, T = 20, 5 radii) draws the shipped ``geometry all --points --json`` without
    computing; Run asks for the computation."""
    import json

    from advcore.errors import AdvlabError
    from advcore.labs.geometry import SAVED_DIR

    calls = []

    def refuse(*args, **kwargs):
        calls.append(kwargs)
        raise AdvlabError("not computed in this test")

    monkeypatch.setattr(geometry, "probe_image", refuse)
    at = geometry_page()
    assert not calls and not at.error
    assert "Shipped result (assets/geometry/probe-lite0-coffee.json" in at.info[0].value
    d = json.loads((SAVED_DIR / "probe-lite0-coffee.json").read_text(encoding="utf-8"))
    figs = charts(at)
    assert ys(figs[FIGURES[0]]["data"][0]) == pytest.approx(d["isotropy"]["range"], rel=1e-12)
    assert ys(figs[FIGURES[2]]["data"][1]) == pytest.approx(d["mantel"]["random_map"]["r"], rel=1e-12)
    line = next(c.value for c in at.code if "advcore geometry all" in c.value)
    assert "--model efficientnet-lite0 --image assets/samples/coffee.jpg --T 20" in line
    assert d["image"] == "assets/samples/coffee.jpg" and d["T"] == 20
    at.button(key="geo_rerun_efficientnet-lite0").click()
    at.run()
    assert calls and "not computed in this test" in at.error[0].value  # Run computes (here a stub that refuses)
