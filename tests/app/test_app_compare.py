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
    assert not at.error
    # The heavy ImageNet default is shipped (assets/compare): shown at once, its numbers the file's.
    saved, name = compare.saved_result({"sources": ["efficientnet-lite0"], "targets": [
        "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"], "attacks": list(compare.DEFAULT_ATTACKS),
        "norm": "linf", "eps": [4 / 255], "steps": 10, "seed": 0, "stop_on_success": "all", "agr_alpha": "eps",
        "resolution": None, "images": "samples"})
    assert any(name in i.value for i in at.info)
    rows = at.table[0].value.to_dict("records")
    run = saved.runs[0].sources["efficientnet-lite0"]
    assert [r["ASR"] for r in rows] == [f"{100 * run[a].asr:.1f}%" for a in compare.DEFAULT_ATTACKS]
    words = shlex.split(at.main.code[-1].value.replace("\\\n", " "))
    args = build_parser().parse_args(words[3:])
    assert (args.models, args.images, args.attacks, args.norm, args.eps, args.steps, args.seed) == (
        ["efficientnet-lite0"], "samples", "default", "linf", "4/255", 10, 0)
    assert args.targets == ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
    assert (args.stop_on_success, args.agr_alpha, args.resolution) == ("all", "eps", None)
    at.radio(key="compare_stop").set_value("none").run()
    at.radio(key="compare_agr_alpha").set_value("eps/steps").run()
    at.selectbox(key="compare_resolution").set_value(224).run()
    assert not at.table  # other settings: nothing shipped, nothing computed
    args = build_parser().parse_args(shlex.split(at.code[0].value.replace("\\\n", " "))[3:])
    assert (args.stop_on_success, args.agr_alpha, args.resolution) == ("none", "eps/steps", 224)


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
    assert [r["Attack"] for r in rows] == [ref.attack_titles[a] for a in compare.DEFAULT_ATTACKS]
    for row, a in zip(rows, compare.DEFAULT_ATTACKS, strict=True):
        assert row["ASR"] == f"{100 * run[a].asr:.1f}%"
        # Sizes say their units; under L-inf AMP and L-inf also read in 8-bit levels.
        assert row["AMP (pixel units)"] == f"{run[a].amp:.4g} ({255 * run[a].amp:.2f}/255)"
        assert row["L-inf (pixel units)"] == f"{run[a].linf:.4g} ({255 * run[a].linf:.2f}/255)"
        assert row["L2 (pixel L2)"] == f"{run[a].l2:.4g}"
        assert row["Fooled"] == f"{run[a].successes}/10"
        assert row["p(clean label) left (0-1)"] == f"{run[a].p_clean:.3f}"

    figs = charts(at)
    heat = next(f for t, f in figs.items() if t.startswith("Transfer of AGR"))
    z = heat["data"][0]["z"]
    assert heat["data"][0]["x"] == targets and heat["data"][0]["y"] == sources
    assert z[0] == pytest.approx([100 * run["agr"].transfer[t] for t in targets])
    assert z[0][0] == pytest.approx(100 * run["agr"].asr)  # the white-box diagonal
    assert len(heat["layout"]["shapes"]) == 1  # the diagonal cell is outlined
    asr = figs["Attack success rate"]["data"][0]["y"]
    assert asr == pytest.approx([100 * run[a].asr for a in compare.DEFAULT_ATTACKS])
    amp = figs["AMP (mean absolute perturbation)"]
    assert amp["layout"]["yaxis"]["title"]["text"] == "AMP (pixel units)"
    assert amp["data"][0]["text"] == [f"{255 * run[a].amp:.2f}/255" for a in compare.DEFAULT_ATTACKS]
    assert figs["L2 size of the perturbation"]["layout"]["yaxis"]["title"]["text"] == "L2 (pixel L2)"
    p_clean = figs["Probability left on the clean label (mean)"]  # beside AMP: the margin each attack leaves
    assert p_clean["data"][0]["y"] == pytest.approx([run[a].p_clean for a in compare.DEFAULT_ATTACKS])
    assert p_clean["layout"]["yaxis"]["title"]["text"] == "p(clean label) (probability, 0-1)"
    assert p_clean["layout"]["yaxis"]["range"] == [0, 1]
    cos = figs["Cosine similarity, clean vs adversarial (± sd)"]
    axis = cos["layout"]["yaxis"]
    assert "~f" in axis["tickformat"] and int(axis["tickformat"][1:-2]) <= 9  # "0.996", not "0.9960000"
    means = [run[a].cosine_similarity for a in compare.DEFAULT_ATTACKS]
    sds = [run[a].cosine_similarity_std or 0 for a in compare.DEFAULT_ATTACKS]
    assert cos["data"][0]["y"] == pytest.approx(means)
    lo, hi = axis["range"]
    assert lo <= min(m - d for m, d in zip(means, sds, strict=True))  # no error bar is clipped
    assert hi >= max(max(m + d for m, d in zip(means, sds, strict=True)), 1.0)

    said = text(at)
    assert compare.transfer_finding(ref, "agr") in said  # the heat map's words, computed from the matrix
    assert " ".join(compare.ranking_finding(ref)) in said
    assert compare.PAPER_AMP_NOTE in said
    assert any(compare.STOP_TEXT["all"] in c.value for c in at.caption)
    agree = at.table[1].value.to_dict("records")[0]
    assert agree["fmnist-fgsm agrees"] == f"{100 * ref.agreement['fmnist-naive']['fmnist-fgsm']:.1f}%"
    assert agree["Correct for every model"] == f"{len(ref.correct['fmnist-naive'])}/10"
    at.radio(key="compare_heat_which").set_value("values_correct").run()  # a view: no new computation
    heat = next(f for t, f in charts(at).items() if t.startswith("Transfer of AGR"))
    want = [100 * v for v in ref.runs[0].transfer_matrix["agr"].values_correct[0]]
    assert heat["data"][0]["z"][0] == pytest.approx(want)
    assert len(calls) == 1
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


def test_radius_section_shows_deepfools_own_radii_sorted_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from advcore import attacks, models

    calls = []
    real = compare.compare
    monkeypatch.setattr(compare, "compare", lambda *a, **k: calls.append(k) or real(*a, **k))
    at = compare_page(compare_limit=10, compare_steps=1, compare_attacks=["fgsm"], compare_radius=["deepfool"],
                      **{"compare_targets_fashion-mnist": []})
    assert "--radius deepfool" in at.code[0].value
    at.button(key="compare_run").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert calls[0]["radius"] == ("deepfool",)

    # The reference: DeepFool L-inf run directly on the same ten images, labels = fmnist-naive's clean predictions.
    m = models.load("fmnist-naive", "cpu")
    x = compare.image_tensor(compare.dataset_images("fashion-mnist", 10), (1, 28, 28))
    with torch.no_grad():
        y = m(x).argmax(1)
    own = attacks.run("deepfool", m, x, y, eps=None, norm="linf").params["radius"]
    found = sorted((v, i) for i, v in enumerate(own) if v != float("inf"))
    missing = [i for i, v in enumerate(own) if v == float("inf")]
    column = "DeepFool L-inf radius (x/255)"
    assert any(compare.RADIUS_NOTE in c.value for c in at.caption)  # equal budget / stop rule do not apply: said
    table = next(t.value.to_dict("records") for t in at.table if column in t.value.columns)
    assert [r["Image"] for r in table] == [f"fashion-mnist:{i}" for _, i in found] + [
        f"fashion-mnist:{i}" for i in missing]
    assert [r[column] for r in table] == [f"{255 * v:.3g}/255" for v, _ in found] + [compare.NOT_FOUND] * len(missing)
    fragile = f"most fragile fashion-mnist:{found[0][1]} at {255 * found[0][0]:.3g}/255"
    assert fragile in text(at)
    medians = next(t.value.to_dict("records") for t in at.table if "Median radius" in t.value.columns)
    want = compare.median_radius([None if v == float("inf") else v for v in own])
    assert medians == [{"Source": "fmnist-naive", "Attack": "DeepFool", "Radius norm": "L-inf (x/255)",
                        "Median radius": f"{255 * want:.3g}/255" if want is not None else compare.NOT_FOUND,
                        "Found": f"{len(found)}/10", "Limit": "steps 50", "Seconds": medians[0]["Seconds"]}]

    at.radio(key="compare_radius_order").set_value("descending").run()  # a view: no recomputation
    table = next(t.value.to_dict("records") for t in at.table if column in t.value.columns)
    assert [r["Image"] for r in table] == [f"fashion-mnist:{i}" for i in missing][::-1] + [
        f"fashion-mnist:{i}" for _, i in found[::-1]]
    assert len(calls) == 1


def test_uploads_without_files_are_refused() -> None:
    at = compare_page("efficientnet-lite0", compare_images="My uploads")
    assert any("Upload at least one image" in e.value for e in at.error)
    assert at.button(key="compare_run").disabled


def test_no_source_model_is_refused() -> None:
    at = compare_page(**{"compare_sources_fashion-mnist": []})
    assert any("at least one source model" in e.value for e in at.error)
    assert at.button(key="compare_run").disabled


def test_uploads_unreadable_files_are_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    """One photo and one broken file on Lite0 alone, FGSM only: the photo is attacked, the broken one named."""
    import io

    from advcore import data
    from ui.views import compare as cv

    shown = []  # the progress bar's words
    real_text = cv.progress_text
    monkeypatch.setattr(cv, "progress_text", lambda p, label="": shown.append(real_text(p, label)) or shown[-1])

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
    assert rows[0]["L-inf (pixel units)"].endswith("/255)")
    # An ImageNet L-inf budget reads in 8-bit levels on the progress bar, not as 0.01569 alone.
    assert any("FGSM on efficientnet-lite0, eps 0.01569 (4/255):" in t for t in shown), shown
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
