"""AppTest of the Compare attacks page, run through app.py's navigation, with Fashion-MNIST models (fast)."""

from __future__ import annotations

import shlex

import pytest
from app_util import charts, open_page
from streamlit.testing.v1 import AppTest

from advcore.cli.framework import build_parser
from advcore.labs import compare

TIMEOUT = 120

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def compare_page(model: str = "fmnist-naive", **widgets: object) -> AppTest:
    return open_page("app_pages/compare.py", timeout=TIMEOUT, sidebar_model=model, **widgets)


def text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_page_opens_without_computing_and_shows_the_command() -> None:
    at = compare_page("efficientnet-lite0")
    assert at.title[0].value == "Compare attacks"
    intro = at.markdown[0].value
    assert intro.endswith(".") and intro.count(". ") == 0, "the page opens with one sentence"
    assert not at.error and not at.table
    words = shlex.split(at.code[0].value.replace("\\\n", " "))
    args = build_parser().parse_args(words[3:])
    assert (args.models, args.images, args.attacks, args.norm, args.eps, args.steps, args.seed) == (
        ["efficientnet-lite0"], "samples", "all", "linf", "4/255", 10, 0)
    assert args.targets == ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]


def test_run_shows_advcores_numbers_and_views_do_not_recompute(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = compare.compare

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(compare, "compare", counting)
    at = compare_page(compare_limit=10, compare_steps=5)
    assert not calls
    at.button(key="compare_run").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert len(calls) == 1

    sources, targets = ["fmnist-naive"], ["fmnist-naive", "fmnist-fgsm", "fmnist-pgd"]
    ref = real(compare.dataset_images("fashion-mnist", 10), sources, targets=targets, eps=0.1, steps=5, seed=0,
               device="cpu")
    rows = at.table[0].value.to_dict("records")
    run = ref.runs[0].sources["fmnist-naive"]
    assert [r["Attack"] for r in rows] == [ref.attack_titles[a] for a in compare.ALL_ATTACKS]
    for row, a in zip(rows, compare.ALL_ATTACKS, strict=True):
        assert row["ASR"] == f"{100 * run[a].asr:.1f}%"
        assert row["AMP"] == f"{run[a].amp:.4g}"
        assert row["Fooled"] == f"{run[a].successes}/10"

    figs = charts(at)
    heat = next(f for t, f in figs.items() if t.startswith("Transfer of AGR"))
    z = heat["data"][0]["z"]
    assert heat["data"][0]["x"] == targets and heat["data"][0]["y"] == sources
    assert z[0] == pytest.approx([100 * run["agr"].transfer[t] for t in targets])
    assert z[0][0] == pytest.approx(100 * run["agr"].asr)  # the white-box diagonal
    assert len(heat["layout"]["shapes"]) == 1  # the diagonal cell is outlined
    asr = figs["Attack success rate"]["data"][0]["y"]
    assert asr == pytest.approx([100 * run[a].asr for a in compare.ALL_ATTACKS])

    said = text(at)
    assert "What this run measured." in said
    assert f"AGR fooled {100 * run['agr'].asr:.1f}%" in said
    assert "Table 1 (L-inf)" in said and "99.65%" in said and "Table 3" in said
    assert len(at.get("download_button")) >= 3

    at.selectbox(key="compare_heat_attack").set_value("pgd").run()  # a view change: no new computation
    assert len(calls) == 1
    assert any(t.startswith("Transfer of PGD") for t in charts(at))
    at.button(key="compare_run").click().run()  # the same settings again: served from the cache
    assert len(calls) == 1
    from ui.session import COMPARE_RESULTS

    kept = list(at.session_state[COMPARE_RESULTS.key].values())
    assert kept and all(isinstance(v, compare.CompareResult) for v in kept)  # the cache keeps the dataclass


def test_uploads_without_files_are_refused() -> None:
    at = compare_page("efficientnet-lite0", compare_images="My uploads")
    assert any("Upload at least one image" in e.value for e in at.error)
    assert at.button(key="compare_run").disabled


def test_no_source_model_is_refused() -> None:
    at = compare_page(**{"compare_sources_fashion-mnist": []})
    assert any("at least one source model" in e.value for e in at.error)
    assert at.button(key="compare_run").disabled


def test_uploads_unreadable_files_are_skipped_with_a_note() -> None:
    """One photo and one broken file on Lite0 alone, FGSM only: the photo is attacked, the broken one named."""
    import io

    from advcore import data

    buf = io.BytesIO()
    data.open_image(data.sample_path("cat")).resize((64, 48)).save(buf, format="PNG")
    at = compare_page("efficientnet-lite0", compare_images="My uploads", compare_attacks=["fgsm"],
                      **{"compare_targets_imagenet": ["efficientnet-lite0"]})
    at.file_uploader(key="compare_uploads").set_value(
        [("cat.png", buf.getvalue(), "image/png"), ("broken.jpg", b"\xff\xd8 not a jpeg", "image/jpeg")]).run()
    assert not at.error, [e.value for e in at.error]
    assert "--images uploads/" in at.code[0].value
    at.button(key="compare_run").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    rows = at.table[0].value.to_dict("records")
    assert [(r["Source"], r["Attack"], r["Fooled"][-2:]) for r in rows] == [("efficientnet-lite0", "FGSM", "/1")]
    notes = " ".join(c.value for c in at.caption)
    assert "Skipped" in notes and "broken.jpg" in notes


def test_a_run_stopped_by_cancel_is_reported_once() -> None:
    """A Cancel click reruns the page mid-run: the next run says where it stopped, once, and keeps nothing."""
    from ui.session import COMPARE_RUN

    at = compare_page()
    at.session_state[COMPARE_RUN.running_key] = "PGD on fmnist-naive, eps 0.1"
    at.session_state[COMPARE_RUN.cancel_key] = True
    at.run()
    assert [w.value for w in at.warning] == [
        "Cancelled during PGD on fmnist-naive, eps 0.1; nothing was kept. Press Run to start again."]
    assert not at.table
    at.run()
    assert not at.warning
