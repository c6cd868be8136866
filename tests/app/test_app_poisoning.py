"""AppTest of the Poisoning lab page, reached through app.py's navigation: the tables show advcore's numbers
next to the paper's, the poison frog trial is drawn, and the command lines give the same settings."""

from __future__ import annotations

import json
import shlex

import pytest
from app_util import open_page
from streamlit.testing.v1 import AppTest

from advcore.cli.framework import build_parser
from advcore.labs import poisoning
from ui.session import POISON_RESULTS
from ui.views import poisoning as pv

TIMEOUT = 180

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def poisoning_page(**widgets: object) -> AppTest:
    return open_page("app_pages/poisoning.py", timeout=TIMEOUT, **widgets)


def pct(v: float, signed: bool = False) -> str:
    return f"{100 * v:+.1f}%" if signed else f"{100 * v:.1f}%"


def cli(line: str):
    words = shlex.split(line)
    assert words[:4] == ["python", "-m", "advcore", "poison"], words
    return build_parser().parse_args(words[3:])


def test_label_flip_table_and_poison_frog_trial() -> None:
    at = poisoning_page(poison_trials=3, poison_kinds=["naive", "pgd"])
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Poisoning lab"
    intro = at.markdown[0].value
    assert ". " not in intro and intro.endswith("."), "the page opens with one sentence"

    lf = poisoning.run("lf", ["naive", "pgd"], share=0.02, seed=0)
    assert len(at.table) == 2  # label flip, and the shipped ImageNet poison frogs
    shipped = json.loads(pv.SHIPPED.read_text())["pf_settings"]["imagenet"]
    im = shipped["rows"][0]
    got = at.table[1].value.to_dict("records")
    assert [r["Features"] for r in got] == [poisoning.KIND_TITLES["imagenet"]]
    assert got[0]["Successful poison frogs (measured)"] == f"{im['successes']} of {im['trials']}"
    assert got[0]["Feature distance to target, before -> after (measured)"] == (
        f"{im['mean_distance_before']:.3f} -> {im['mean_distance_after']:.3f}")
    said = "\n".join(m.value for m in at.markdown)
    assert f"{im['successes']}/{im['trials']} poison frogs succeed ({100 * im['success_rate']:.0f}%)" in said
    assert any(im["task_description"] in c.value and "Precomputed" in c.value for c in at.caption)
    samples = [c for image in at.get("image") for c in image.captions if c.startswith("training '")]
    assert samples == ["training 'Sandal'"] * 3 + ["training 'Sneaker'"] * 3  # the ImageNet task's images
    args = cli(next(c.value for c in at.code if "--features imagenet " in c.value))
    assert (args.attack, args.features, args.trials, args.steps) == ("pf", ["imagenet"], im["trials"], im["steps"])
    rows = at.table[0].value.to_dict("records")
    assert [r["Features"] for r in rows] == [poisoning.KIND_TITLES[k] for k in ("naive", "pgd")]
    for row, ref in zip(rows, lf.rows, strict=True):
        assert row["Accuracy under LF (measured)"] == pct(ref.poisoned_accuracy)
        assert row["Accuracy under LF (measured)"].endswith("%")  # an accuracy: per cent
        assert row["Gap (measured)"] == f"{100 * ref.gap:+.1f} pp"  # a difference of accuracies: points
    assert rows[0]["Paper, Table 3, MNIST"] == "-2.0 pp" and rows[1]["Paper, Table 3, CIFAR"] == "-11.0 pp"
    assert not any(r[c].endswith("%") for r in rows for c in ("Gap (measured)", "Paper, Table 3, MNIST"))
    assert any("pp: percentage points" in c.value for c in at.caption)
    said = "\n".join(m.value for m in at.markdown)
    assert lf.verdict in said
    args = cli(at.code[0].value)
    assert (args.attack, args.features, args.share, args.seed) == ("lf", ["naive", "pgd"], 0.02, 0)

    run = next(b for b in at.button if b.label == "Run Table 2 (poison frogs)")
    run.click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.table) == 3
    pf = poisoning.run("pf", ["naive", "pgd"], eps=7 / 255, trials=3, seed=0)  # the page's 200 decaying steps
    rows = at.table[1].value.to_dict("records")
    for row, ref in zip(rows, pf.rows, strict=True):
        assert row["Successful poison frogs (measured)"] == f"{ref.successes} of 3"
        assert row["Feature distance to target, before -> after (measured)"] == (
            f"{ref.mean_distance_before:.3f} -> {ref.mean_distance_after:.3f}")
        assert row["Target to its nearest same-class training image (measured)"].startswith(
            f"{ref.mean_neighbour_distance:.3f} ({ref.closer_than_neighbour} of 3")
        assert row["SVM C (raw features; on features / mean norm)"] == f"1; {ref.feature_scale ** 2:.4g}"
    assert [r["Paper, Table 2, CIFAR"] for r in rows] == ["85.0%", "16.0%"]
    args = cli(at.code[1].value)
    assert (args.attack, args.trials, args.eps, args.steps, args.method, args.schedule, args.poisons) == (
        "pf", 3, pytest.approx(7 / 255), poisoning.PF_STEPS, "pgd", "decay", 1)

    at.slider(key="poison_eps").set_value(8).run()  # a changed widget keeps the finished table, labelled
    assert not at.exception
    assert any(i.value.startswith("Previous result, computed with eps 7/255 (now 8/255)") for i in at.info), \
        [i.value for i in at.info]
    at.slider(key="poison_eps").set_value(7).run()

    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 1
    names = [t.get("name") for t in charts[0]["data"]]
    assert {"SVM boundary, clean", "SVM boundary, poisoned", "base", "poison", "target"} <= set(names)
    captions = [c for image in at.get("image") for c in image.captions]
    assert [c.split(":")[0].split(" ")[0] for c in captions if not c.startswith(("cat", "training '"))][-4:] == [
        "base", "poison", "perturbation", "target"]
    assert any("the boundary" in c.value for c in at.caption)

    # changing the trial shown does not recompute the table
    before = at.table[1].value.to_dict("records")
    next(s for s in at.selectbox if s.label == "Trial").set_value(1).run()
    assert not at.exception and len(at.table) == 3 and at.table[1].value.to_dict("records") == before
    assert "poison_run_pf" not in [b.key for b in at.button]  # still cached: no Run button


def test_no_features_chosen_is_an_error() -> None:
    at = poisoning_page(poison_kinds=[])
    assert any("at least one kind of features" in e.value for e in at.error)
    assert len(at.table) == 0


def test_cancel_stops_a_run_and_keeps_nothing() -> None:
    from ui.session import POISON_RESULTS, POISON_RUN
    from ui.views import poisoning as pv

    at = poisoning_page(poison_kinds=["naive"])
    req = pv.Request("pf", ("naive",), 7, trials=4)
    at.session_state[POISON_RUN.request_key] = req
    # As the Cancel button's callback leaves it: the first progress report stops.
    at.session_state[POISON_RUN.cancel_key] = True
    at.run()
    assert not at.exception
    assert any("cancelled at" in w.value and "nothing was kept" in w.value for w in at.warning), \
        [w.value for w in at.warning]
    assert req not in at.session_state[POISON_RESULTS.key]
    assert any(b.label == "Run Table 2 (poison frogs)" for b in at.button)


def test_imagenet_features_run_from_the_page(monkeypatch) -> None:
    """The paper's check on ImageNet features (EfficientNet-Lite0) is one choice under Features: here on the first
    8 training and 4 test Sandals and Sneakers (the page's task, made small)."""
    monkeypatch.setattr(poisoning, "IMAGENET_TRAIN_PER_CLASS", 8)
    monkeypatch.setattr(poisoning, "IMAGENET_TEST_PER_CLASS", 4)
    monkeypatch.setattr(poisoning, "_FEATURE_CACHE", {})
    poisoning.load_task.cache_clear()
    try:
        at = poisoning_page(poison_trials=2, poison_kinds=["imagenet"], poison_pf_steps=10)
        assert not at.error, [e.value for e in at.error]
        next(b for b in at.button if b.label == "Run Table 2 (poison frogs)").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        pf = poisoning.run("pf", ["imagenet"], eps=7 / 255, trials=2, steps=10, seed=0)
    finally:
        poisoning.load_task.cache_clear()
    assert pf.rows[0].train_images == 16 and pf.rows[0].extractor == "efficientnet-lite0"
    rows = at.table[1].value.to_dict("records")
    assert [r["Features"] for r in rows] == [poisoning.KIND_TITLES["imagenet"]]
    assert rows[0]["Successful poison frogs (measured)"] == f"{pf.rows[0].successes} of 2"
    assert rows[0]["Feature distance to target, before -> after (measured)"] == (
        f"{pf.rows[0].mean_distance_before:.3f} -> {pf.rows[0].mean_distance_after:.3f}")
    captions = [c for image in at.get("image") for c in image.captions]
    assert any(c.startswith("target: a test 'Sandal'") or c.startswith("target: a test 'Sneaker'")
               for c in captions), captions
    assert cli(at.code[1].value).features == ["imagenet"]


def test_adversarial_poisoning_change_reads_in_percentage_points() -> None:
    """Table 1: accuracies in per cent, their change (a difference of two accuracies) in percentage points."""
    at = poisoning_page(poison_kinds=["naive"])
    at.button(key="poison_run_ap").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ap = list(at.session_state[POISON_RESULTS.key].values())[-1]  # the table the page computed (no second run)
    assert isinstance(ap, poisoning.PoisoningTable) and ap.attack == "ap"
    table = next(t for t in at.table if "Change (measured)" in t.value.columns)
    row = table.value.to_dict("records")[0]
    assert row["Accuracy under AP (measured)"] == pct(ap.rows[0].poisoned_accuracy)
    assert row["Change (measured)"] == f"{100 * ap.rows[0].gap:+.1f} pp"
    assert row["Paper, Table 1, MNIST"] == "68.0%"  # the paper's accuracy under AP: per cent
