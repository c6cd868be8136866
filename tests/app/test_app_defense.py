"""AppTest of the Defense lab page, run through app.py's navigation."""

from __future__ import annotations

import shlex

import pytest
from app_util import APP, open_page
from streamlit.testing.v1 import AppTest

from advcore.cli.framework import build_parser
from advcore.labs import defense as lab
from ui.session import DEFENSE_RUN, DEFENSE_TABLES
from ui.views import defense as dv

TIMEOUT = 120

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def defense_page(model: str = "fmnist-naive", **widgets: object) -> AppTest:
    at = open_page("app_pages/defense.py", timeout=TIMEOUT, sidebar_model=model, **widgets)
    assert not at.error, [e.value for e in at.error]
    return at


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_four_views_with_predictions_and_the_adaptive_switch():
    at = defense_page(defense_method="bayer", defense_attack="fgsm", defense_eps_px=0.2)
    assert [t.value for t in at.title] == ["Defense lab"]
    captions = [c for image in at.get("image") for c in image.captions]
    assert [c for c in captions if c in dv.PANEL_TITLES.values()] == list(dv.PANEL_TITLES.values())
    body = texts(at)
    assert "the paper's protocol" in body
    # the predictions on the page are the ones advcore computes for the same request
    from advcore import data, datasets
    from ui.frame import DEFAULT_GALLERY  # the sidebar's default test image

    x, y = datasets.load_subset(DEFAULT_GALLERY + 1)
    x, y = x[DEFAULT_GALLERY:DEFAULT_GALLERY + 1], y[DEFAULT_GALLERY:DEFAULT_GALLERY + 1]
    p = lab.image_panels("fmnist-naive", datasets.to_float(x), int(y[0]), method="bayer", row="halftone-input",
                         attack="fgsm", eps=0.2, trained={})
    for name in lab.Panels.PANELS:
        pred = p.predictions[name]
        assert f"{pred.name} ({100 * pred.prob:.1f}%)" in body, (name, body)
    assert data is not None
    at.toggle(key="defense_adaptive").set_value(True).run()
    assert not at.exception
    assert "knows the defense (BPDA)" in texts(at)


def test_measure_table_matches_advcore_and_shows_the_lesson():
    at = defense_page(defense_method="bayer", defense_table_attacks=["fgsm"], defense_table_eps=[0.0, 0.1],
                      defense_table_n=50, defense_table_strong=0, defense_table_restarts=2)
    at.button(key="defense_measure").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    ref = lab.evaluate_defense("fmnist-naive", "bayer", attack_names=["fgsm"], eps=[0.0, 0.1], n=50,
                               strong_steps=0, restarts=2, trained=dv.trained_rows("fmnist-naive"))
    assert [r.key for r in ref.rows][-1] == "adversarial"  # the reference row, found by role
    frame = at.dataframe[0]
    rows = frame.value.to_dict("records")
    assert len(rows) == 2 * len(ref.rows)  # FGSM and the worst case (no strong attacker at 0 steps)
    flagged = {(f.row, f.attack, f.attacker) for f in ref.flags}
    for i, row in enumerate(ref.rows):
        fgsm, worst = rows[2 * i:2 * i + 2]
        acc = ref.accuracy[row.key]["fgsm"]
        assert fgsm["defense"] == row.title and fgsm["attacker"] == "FGSM"
        assert fgsm["eps 0.1: ignores / bare / knows"] == " / ".join(
            f"{100 * acc[c]['top1'][1]:.1f}%" + (" ⚠" if (row.key, "fgsm", c) in flagged else "")
            for c in ("ignores", "bare", "knows"))
        assert worst["attacker"] == dv.WORST_TITLE
        assert worst["eps 0.1: ignores / bare / knows"].split()[0] == f"{100 * ref.robust[row.key]['top1'][1]:.1f}%"
    assert ref.lesson[:60] in texts(at).replace("\\", "")
    assert len(at.get("plotly_chart")) == 1
    line = at.main.code[-1].value.replace("\\\n", " ")
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "advcore"]
    args = build_parser().parse_args(argv[3:])
    assert (args.command, args.model, args.defense, args.attacks, args.eps, args.n, args.adaptive, args.strong_steps,
            args.restarts) == ("defend", "fmnist-naive", "bayer", ["fgsm"], [0.0, 0.1], 50, True, 0, 2)


def test_a_preprocessing_defense_with_its_declared_parameter_and_the_masking_verdict():
    at = defense_page(defense_method="median", defense_window=3, defense_attack="fgsm",
                      defense_table_attacks=["fgsm"], defense_table_eps=[0.0, 0.1], defense_table_n=50,
                      defense_table_strong=0)
    captions = [c for image in at.get("image") for c in image.captions]
    assert [c for c in captions if c.startswith("Median(")] == ["Median(clean)", "Median(adversarial)"]
    at.button(key="defense_measure").click().run()
    assert not at.exception, at.exception
    ref = lab.evaluate_defense("fmnist-naive", "median", attack_names=["fgsm"], eps=[0.0, 0.1], n=50,
                               strong_steps=0, params={"window": 3}, trained=dv.trained_rows("fmnist-naive"))
    assert [r.key for r in ref.rows] == ["none", "defense-input", "adversarial"]  # no halftone-trained rows
    assert at.dataframe[0].value.to_dict("records") == dv.table_rows(ref)
    verdict = ref.masking["verdict"]
    boxes = [b.value.replace("\\", "") for b in [*at.warning, *at.success]]
    assert any(verdict[:80] in b for b in boxes), boxes
    assert all(line[:60] in texts(at).replace("\\", "") for line in dv.masking_lines(ref)[1:])
    argv = shlex.split(at.main.code[-1].value.replace("\\\n", " "))
    args = build_parser().parse_args(argv[3:])
    assert (args.defense, args.window, args.attacks) == ("median", 3, ["fgsm"])


def test_empty_attack_list_is_refused():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.session_state["sidebar_model"] = "fmnist-naive"
    at.session_state["defense_table_attacks"] = []
    at.switch_page("app_pages/defense.py").run()
    assert not at.exception
    assert any("at least one attack" in e.value for e in at.error)
    assert at.button(key="defense_measure").disabled


def test_cancel_flag_stops_a_measurement():
    at = defense_page()
    req = dv.TableRequest(model="fmnist-naive", device="auto", method="bayer", attacks=("fgsm",), eps=(0.1,), n=50)
    at.session_state[DEFENSE_RUN.request_key] = req
    at.session_state[DEFENSE_RUN.cancel_key] = True
    at.run()
    assert not at.exception
    assert any("cancelled" in w.value for w in at.warning)
    assert DEFENSE_TABLES.key not in at.session_state or req not in at.session_state[DEFENSE_TABLES.key]


def test_imagenet_clean_effect_of_halftoning():
    at = defense_page("efficientnet-lite0", defense_attack_imagenet="fgsm", defense_method="floyd-steinberg")
    rows = lab.clean_effect("efficientnet-lite0", "floyd-steinberg")
    frames = [d.value for d in at.dataframe if "photo" in d.value.columns]
    assert len(frames) == 1 and len(frames[0]) == len(rows) == 9
    assert frames[0]["same top-1"].tolist() == ["yes" if r["same_top1"] else "no" for r in rows]
    assert dv.clean_effect_sentence(rows, "floyd-steinberg") in texts(at)


def test_shipped_measurement_is_shown_with_its_numbers():
    result = lab.saved_table("fmnist-naive", "floyd-steinberg")
    if result is None:
        pytest.skip("no shipped measurement in assets/defense")
    at = defense_page(defense_method="floyd-steinberg", defense_attack="fgsm")
    rows = at.dataframe[0].value.to_dict("records")
    assert rows == dv.table_rows(result)
    assert [r["defense"] for r in rows] == [r.title for r in result.rows for _ in range(len(result.attacks) + 2)]
    i = result.eps.index(0.1)
    col = dv.column_name(0.1, result)
    for line in rows:
        row = next(r for r in result.rows if r.title == line["defense"])
        a = next((x for x in result.attacks if dv.ATTACK_TITLES[x] == line["attacker"]), None)
        if a is not None:
            acc = result.accuracy[row.key][a]
            assert [v.split()[0] for v in line[col].split(" / ")] == [
                f"{100 * acc[c]['top1'][i]:.1f}%" for c in result.columns]
        assert line["clean"] == f"{100 * result.clean[row.key]['top1']:.1f}%"
    assert lab.lesson(result)[:80] in texts(at).replace("\\", "")
    assert len(at.get("plotly_chart")) == 1
    if result.flags:
        assert any(dv.flags_caption(result)[:60] in w.value.replace("\\", "") for w in at.warning)
    assert "shipped measurement" in texts(at)
