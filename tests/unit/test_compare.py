"""advcore.labs.compare and ``python -m advcore compare``: the table's invariants, transfer, seeds, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from cli_util import run_cli
from json_util import same_json, untimed

from advcore import attacks, models
from advcore.errors import AdvlabError, Cancelled
from advcore.labs import compare
from advcore.progress import Progress

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOURCES = ["fmnist-naive", "fmnist-pgd"]
TARGETS = ["fmnist-naive", "fmnist-pgd", "fmnist-fgsm"]
N = 24


@pytest.fixture(scope="module")
def items() -> list[compare.ImageItem]:
    return compare.dataset_images("fashion-mnist", N)


@pytest.fixture(scope="module")
def result(items) -> compare.CompareResult:
    return compare.compare(items, SOURCES, targets=TARGETS, eps=[0.05, 0.1], steps=5, seed=3, device="cpu",
                           batch_size=N)


def test_table_invariants(result) -> None:
    assert result.attacks == list(compare.DEFAULT_ATTACKS)
    assert [r.eps for r in result.runs] == [0.05, 0.1]
    for run in result.runs:
        for s in SOURCES:
            for a in compare.DEFAULT_ATTACKS:
                st = run.sources[s][a]
                assert 0.0 <= st.asr <= 1.0 and 0.0 <= st.asr_8bit <= 1.0
                assert st.asr == pytest.approx(st.successes / N)
                assert st.n == N and len(st.per_image["success"]) == N
                assert 0.0 < st.cosine_similarity <= 1.0 and st.cosine_similarity_std >= 0
                assert st.linf <= run.eps + 1e-6  # inside the ball
                assert st.linf_max <= run.eps + 1e-6
                assert 0 < st.amp <= st.linf
                for t in TARGETS:
                    assert 0.0 <= st.transfer[t] <= 1.0
                # the diagonal is the white-box ASR, exactly
                assert st.transfer[s] == st.asr
                assert st.per_image["transfer_success"][s] == st.per_image["success"]
            m = run.transfer_matrix
            for a in compare.DEFAULT_ATTACKS:
                assert m[a].rows == SOURCES and m[a].columns == TARGETS
                for i, s in enumerate(SOURCES):
                    assert m[a].values[i][TARGETS.index(s)] == run.sources[s][a].asr
    json.dumps(result.to_dict(), allow_nan=False)  # JSON-safe as it is


def test_steps_to_success_agree_with_the_attack_loop(result) -> None:
    """The default policy stops every iterative attack at its first adversarial iterate, AGR and the rest alike."""
    steps = result.steps
    assert result.stop_on_success == "all" and result.to_dict()["stop_on_success"] == "all"
    for run in result.runs:
        for s in SOURCES:
            per = run.sources[s]
            fgsm = per["fgsm"].per_image
            assert all(f == 1 for f, ok in zip(fgsm["steps_to_success"], fgsm["success"], strict=True) if ok)
            for a in ("ifgsm", "pgd", "mifgsm", "agr"):  # the evaluation that finds success costs one more
                p = per[a].per_image
                for ok, first, evals in zip(p["success"], p["steps_to_success"], p["grad_evals"], strict=True):
                    if ok:
                        assert evals == first + 1 or (first == steps and evals == steps), (a, first, evals)
                    else:
                        assert evals == steps


def test_stop_policy_none_runs_every_step_and_agr_alpha_is_the_attacks_own(items) -> None:
    """``none``: every iterative attack spends every step; ``agr_alpha='eps/steps'`` is AGR called with
    alpha = eps/steps; ``p_clean`` is the softmax of the clean label at the attack's own output, by hand."""
    x = compare.image_tensor(items[:8], (1, 28, 28))
    r = compare.compare(items[:8], ["fmnist-naive"], attack_names=["ifgsm", "agr"], eps=0.1, steps=4,
                        device="cpu", stop_on_success="none", agr_alpha="eps/steps")
    st = r.runs[0].sources["fmnist-naive"]
    assert all(g == 4 for a in ("ifgsm", "agr") for g in st[a].per_image["grad_evals"])
    assert r.to_dict()["agr_alpha"] == "eps/steps" and "runs all its steps" in r.to_dict()["stop_policy"]
    model = models.load("fmnist-naive", "cpu")
    with torch.no_grad():
        y = model(x).argmax(1)
    for a, kw in (("ifgsm", {}), ("agr", {"alpha": 0.1 / 4})):
        res = attacks.run(a, model, x, y, eps=0.1, steps=4, stop_on_success=False, **kw)
        with torch.no_grad():
            p = torch.softmax(model(res.x_adv).double(), 1)[torch.arange(8), y]
        assert st[a].per_image["p_clean"] == pytest.approx(p.tolist(), abs=1e-6)
        assert st[a].p_clean == pytest.approx(float(p.mean()), abs=1e-6)
        assert st[a].per_image["success"] == res.success.tolist()
    # Under "all" with AGR at eps/steps, an image fooled by the first step is I-FGSM's image (the issue's
    # measurement): the same first step, and both stop there.
    r2 = compare.compare(items[:8], ["fmnist-naive"], attack_names=["ifgsm", "agr"], eps=0.1, steps=4,
                         device="cpu", agr_alpha="eps/steps")
    s2 = r2.runs[0].sources["fmnist-naive"]
    for i, first in enumerate(s2["agr"].per_image["steps_to_success"]):
        if first == 1:
            assert s2["ifgsm"].per_image["steps_to_success"][i] == 1
            assert s2["agr"].per_image["amp"][i] == pytest.approx(s2["ifgsm"].per_image["amp"][i], abs=1e-9)


def test_correct_subset_agreement_and_8bit_transfer_by_hand(result) -> None:
    """``correct``, ``agreement``, ``transfer_correct`` and the 8-bit matrix recomputed from the per-image record."""
    true = [im.true_label for im in result.images]
    for s in SOURCES:
        ok = [all(result.clean[m].labels[i] == true[i] for m in [s, *TARGETS]) for i in range(N)]
        assert result.correct[s] == [i for i in range(N) if ok[i]]
        for t in TARGETS:
            want = sum(a == b for a, b in zip(result.clean[t].labels, result.clean[s].labels, strict=True)) / N
            assert result.agreement[s][t] == pytest.approx(want)
        for run in result.runs:
            for a in compare.DEFAULT_ATTACKS:
                st = run.sources[s][a]
                assert st.transfer_8bit[s] == st.asr_8bit  # the diagonal: white-box ASR of the rounded images
                for t in TARGETS:
                    hits = [f for f, k in zip(st.per_image["transfer_success"][t], ok, strict=True) if k]
                    assert st.transfer_correct[t] == pytest.approx(sum(hits) / len(hits))
                    assert st.transfer_8bit[t] == pytest.approx(sum(st.per_image["transfer_success_8bit"][t]) / N)
                i = SOURCES.index(s)
                assert run.transfer_matrix[a].values_correct[i] == [st.transfer_correct[t] for t in TARGETS]


def test_transfer_matches_an_independent_evaluation(items, result) -> None:
    """Re-run PGD with advcore.attacks directly and evaluate each target by hand: the same rates."""
    run = result.runs[1]
    x = compare.image_tensor(items, (1, 28, 28))
    src = models.load("fmnist-naive", "cpu")
    with torch.no_grad():
        y = src(x).argmax(1)
    res = attacks.run("pgd", src, x, y, eps=0.1, norm="linf", steps=5, seed=3, stop_on_success=True)
    per = run.sources["fmnist-naive"]["pgd"].per_image
    assert res.success.tolist() == per["success"]
    x_q = torch.round(res.x_adv * 255) / 255  # 8-bit rounding, written out
    for t in TARGETS:
        tm = models.load(t, "cpu")
        with torch.no_grad():
            fooled = tm(res.x_adv).argmax(1) != tm(x).argmax(1)
            fooled_q = tm(x_q).argmax(1) != tm(x).argmax(1)
        assert fooled.tolist() == per["transfer_success"][t]
        assert fooled_q.tolist() == per["transfer_success_8bit"][t]


def test_same_seed_same_numbers_and_the_seed_matters(items, result) -> None:
    again = compare.compare(items, SOURCES, targets=TARGETS, eps=[0.05, 0.1], steps=5, seed=3, device="cpu",
                            batch_size=N)
    assert untimed(again.to_dict()) == untimed(result.to_dict())
    other = compare.compare(items, ["fmnist-naive"], attack_names=["pgd"], eps=0.1, steps=5, seed=4, device="cpu",
                            batch_size=N)
    same = result.runs[1].sources["fmnist-naive"]["pgd"].per_image["cosine_similarity"]
    assert other.runs[0].sources["fmnist-naive"]["pgd"].per_image["cosine_similarity"] != same


def test_a_stronger_budget_never_lowers_pgd_asr(items) -> None:
    eps = [0.02, 0.05, 0.1, 0.2]
    r = compare.compare(items, ["fmnist-naive", "fmnist-pgd"], attack_names=["pgd"], eps=eps, steps=10, seed=0,
                        device="cpu")
    for s in ("fmnist-naive", "fmnist-pgd"):
        asr = r.sweep[s]["pgd"].asr
        assert r.sweep[s]["pgd"].eps == eps
        for lo, hi in zip(asr, asr[1:], strict=False):
            assert hi >= lo - 1.5 / N, asr  # at most one image of noise
        assert asr[-1] > asr[0], asr
    assert r.sweep["fmnist-naive"]["pgd"].asr[-1] == 1.0  # eps 0.2 breaks the standard model


def test_progress_reaches_the_total_and_cancel_stops(items) -> None:
    seen = []
    compare.compare(items[:6], ["fmnist-naive"], attack_names=["fgsm", "ifgsm"], eps=0.1, steps=3, device="cpu",
                    progress=lambda p: seen.append((p.step, p.total)))
    assert seen[-1] == (6 * (1 + 3), 6 * (1 + 3))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    calls = []

    def cancel(p: Progress) -> bool:
        calls.append(p)
        return len(calls) >= 3

    with pytest.raises(Cancelled):
        compare.compare(items[:6], ["fmnist-naive"], eps=0.1, steps=10, device="cpu", progress=cancel)
    assert len(calls) == 3


def test_show_to_resizes_only_when_the_size_differs() -> None:
    x = torch.rand(2, 3, 28, 28)
    assert compare.show_to(x, (28, 28)) is x
    y = compare.show_to(x, (40, 40))
    assert y.shape == (2, 3, 40, 40) and 0 <= float(y.min()) and float(y.max()) <= 1
    flat = torch.full((1, 3, 30, 30), 0.25)
    assert torch.allclose(compare.show_to(flat, (45, 45)), torch.full((1, 3, 45, 45), 0.25))


def test_refusals(items, tmp_path: Path) -> None:
    with pytest.raises(AdvlabError, match="one dataset"):
        compare.compare(items, ["fmnist-naive"], targets=["efficientnet-lite0"], eps=0.1, device="cpu")
    with pytest.raises(AdvlabError, match="Unknown model"):
        compare.check_models(["nope"])
    with pytest.raises(AdvlabError, match="No images"):
        compare.compare([], ["fmnist-naive"], eps=0.1, device="cpu")
    with pytest.raises(AdvlabError, match="twice"):
        compare.check_attacks(["pgd", "PGD"])
    with pytest.raises(AdvlabError, match="exceeds"):
        compare.check_eps([2.0], "linf", 10)
    with pytest.raises(AdvlabError, match="no image files"):
        compare.folder_images(tmp_path)
    with pytest.raises(AdvlabError, match="not a folder"):
        compare.folder_images(tmp_path / "missing")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(AdvlabError, match="no readable image"):
        compare.folder_images(tmp_path)
    items[0].image.save(tmp_path / "good.png")
    (tmp_path / "notes.txt").write_text("hello")
    got, notes = compare.folder_images(tmp_path)
    assert [g.name for g in got] == ["good.png"]
    assert any("broken.png" in n for n in notes) and any("ignored" in n for n in notes)


def test_summary_is_computed_from_the_result(result) -> None:
    text = " ".join(compare.summary(result))
    st = result.runs[-1].sources["fmnist-naive"]
    assert f"AGR fooled {100 * st['agr'].asr:.1f}%" in text
    assert f"I-FGSM (BIM) {100 * st['ifgsm'].asr:.1f}%" in text
    assert f"AMP {st['agr'].amp:.4g}" in text
    assert f"probability left on the clean label {st['agr'].p_clean:.3f}" in text
    assert compare.STOP_TEXT["all"] in text


def fake(values: list[list[float]], rows: list[str], columns: list[str]):
    """Just what transfer_finding reads: one run at one eps with one attack's matrix."""
    from types import SimpleNamespace

    m = compare.TransferMatrix(rows=rows, columns=columns, values=values)
    return SimpleNamespace(eps=[0.1], runs=[SimpleNamespace(eps=0.1, transfer_matrix={"x": m})])


def test_transfer_finding_is_computed_not_fixed_text() -> None:
    # fmnist-fgsm -> fmnist-naive above its own white-box rate (the 35% against 25%)
    cols = ["fmnist-naive", "fmnist-fgsm"]
    text = compare.transfer_finding(fake([[0.95, 0.15], [0.35, 0.25]], cols, cols), "x")
    assert text.startswith("Mean black-box success 25.0%, lower than the mean white-box 60.0%")
    assert "fmnist-fgsm -> fmnist-naive 35.0% against 25.0%" in text
    text = compare.transfer_finding(fake([[0.2, 0.6], [0.7, 0.3]], cols, cols), "x")
    assert "higher than the mean white-box 25.0%" in text
    assert "Only white-box" in compare.transfer_finding(fake([[0.5]], cols[:1], cols[:1]), "x")


def test_ranking_and_sweep_findings(result) -> None:
    run = result.runs[-1].sources["fmnist-naive"]
    best = max(run[a].asr for a in compare.DEFAULT_ATTACKS)
    text = compare.ranking_finding(result)[0]
    assert text.startswith(f"On fmnist-naive: highest ASR {100 * best:.1f}%")
    low = min(compare.DEFAULT_ATTACKS, key=lambda a: run[a].amp)
    assert f"smallest AMP {run[low].amp:.4g} (pixel units) by {result.attack_titles[low]}" in text
    sweep = compare.sweep_finding(result, "fmnist-naive")
    agr, ifgsm = result.sweep["fmnist-naive"]["agr"].asr, result.sweep["fmnist-naive"]["ifgsm"].asr
    hi = sum(a > b for a, b in zip(agr, ifgsm, strict=True))
    assert f"AGR above I-FGSM (BIM) at {hi}," in sweep
    assert "0.0392" in compare.PAPER_AMP_NOTE and 10 / 255 < min(compare.PAPER["linf"]["amp"]["ifgsm"], 0.086)


def test_sweep_chart_draws_i_fgsm_on_top_and_tells_the_curves_apart(result) -> None:
    from ui.views import compare as cv

    fig = cv.sweep_figure(result, "fmnist-naive")
    names = [t.name for t in fig.data]
    assert names[-1] == "I-FGSM" and len(names) == len(compare.DEFAULT_ATTACKS)  # drawn last, so never hidden
    legend = [t.name for t in sorted(fig.data, key=lambda t: t.legendrank)]
    assert legend == [result.attack_titles[a].split(" (")[0] for a in compare.DEFAULT_ATTACKS]  # the table's order
    assert len({(t.line.dash, t.marker.symbol) for t in fig.data}) == len(names)
    ifgsm = next(t for t in fig.data if t.name == "I-FGSM")
    assert list(ifgsm.y) == [100 * v for v in result.sweep["fmnist-naive"]["ifgsm"].asr]


def test_tiny_lite_case_resizes_for_the_other_input_size() -> None:
    """2 photos, 2 steps on EfficientNet-Lite0 (224) shown to Lite1 (240): the diagonal is white-box ASR."""
    photos = compare.bundled_images()[:2]
    r = compare.compare(photos, ["efficientnet-lite0"], targets=["efficientnet-lite0", "efficientnet-lite1"],
                        attack_names=["fgsm", "agr"], eps=4 / 255, steps=2, device="cpu")
    for a in ("fgsm", "agr"):
        st = r.runs[0].sources["efficientnet-lite0"][a]
        assert st.transfer["efficientnet-lite0"] == st.asr
        assert 0 <= st.transfer["efficientnet-lite1"] <= 1
        assert st.linf <= 4 / 255 + 1e-6
    assert r.clean["efficientnet-lite1"].input_size == [3, 240, 240]
    assert r.clean["efficientnet-lite0"].accuracy is None  # photos have no true label
    assert "accuracy" not in r.to_dict()["clean"]["efficientnet-lite0"]
    assert r.correct is None and r.runs[0].sources["efficientnet-lite0"]["agr"].transfer_correct == {
        "efficientnet-lite0": None, "efficientnet-lite1": None}
    # One common resolution: Lite1 sees Lite0's 224x224 pixels, no resize, so its diagonal-free cell is exact
    c = compare.compare(photos[:1], ["efficientnet-lite0"], targets=["efficientnet-lite0", "efficientnet-lite1"],
                        attack_names=["fgsm"], eps=4 / 255, device="cpu", resolution=224)
    assert c.clean["efficientnet-lite1"].input_size == [3, 224, 224] and c.resolution == 224
    with torch.no_grad():
        x = compare.image_tensor(photos[:1], (3, 224, 224))
        lite1 = models.load("efficientnet-lite1", "cpu")
        assert c.clean["efficientnet-lite1"].labels == lite1(x).argmax(1).tolist()


# --------------------------------------------------------------------------- command line


def test_cli_json_shape(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.json"
    code, stdout, err = run_cli(["compare", "--models", "fmnist-naive,fmnist-pgd", "--targets",
                                 "fmnist-naive,fmnist-pgd,fmnist-fgsm", "--images", "fashion-mnist", "--limit", "8",
                                 "--attacks", "default", "--norm", "linf", "--eps", "0.05:0.1:0.05", "--steps", "3",
                                 "--seed", "1", "--json", str(out)])
    assert code == 0, err
    assert "ASR against eps" in stdout and "transfer" in stdout
    assert err.strip().splitlines()[-1].startswith("advcore: compare: 5 attack(s) x 2 source(s) x 2 eps")
    r = json.loads(out.read_text())
    assert r["schema"] == compare.SCHEMA and r["eps"] == [0.05, 0.1] and len(r["images"]) == 8
    assert r["sources"] == ["fmnist-naive", "fmnist-pgd"] and r["targets"] == TARGETS
    for run in r["runs"]:
        for s in r["sources"]:
            for a in compare.DEFAULT_ATTACKS:
                st = run["sources"][s][a]
                for key in ("asr", "cosine_similarity", "amp", "l2", "linf"):
                    assert isinstance(st[key], float) and math.isfinite(st[key]), key
                assert set(st["transfer"]) == set(TARGETS)
                assert st["transfer"][s] == st["asr"]
    assert set(r["sweep"]["fmnist-pgd"]) == set(compare.DEFAULT_ATTACKS)


GOLDEN = Path(__file__).parent / "golden" / "compare_tiny.json"
TINY = ["compare", "--models", "fmnist-naive,fmnist-fgsm", "--images", "fashion-mnist", "--limit", "3",
        "--attacks", "fgsm,pgd", "--eps", "0.05,0.1", "--steps", "2", "--device", "cpu"]


def test_to_dict_is_the_schema_json(tmp_path: Path) -> None:
    """``CompareResult.to_dict()`` is the JSON of schema advlab.compare/2 (tests/unit/golden/compare_tiny.json:
    this tiny run's output, timings and device left out, regenerated when schema 2 added the stop policy,
    p_clean, the 8-bit and correctly-classified transfer and the clean agreement; its schema-1 numbers for the
    attacks that do not stop, FGSM, were unchanged), through the command line and called directly."""
    want = json.loads(GOLDEN.read_text())
    out = tmp_path / "tiny.json"
    code, _, err = run_cli([*TINY, "--json", str(out)])
    assert code == 0, err
    got = untimed(json.loads(out.read_text()))
    assert isinstance(got.pop("device"), str)
    same_json(got, want, rel=1e-6, abs=1e-7)  # floats to 1e-6 (probabilities to 1e-7): timings aside, deterministic

    items = compare.dataset_images("fashion-mnist", 3)
    r = compare.compare(items, ["fmnist-naive", "fmnist-fgsm"], attack_names=["fgsm", "pgd"], eps=[0.05, 0.1],
                        steps=2, device="cpu")
    assert isinstance(r, compare.CompareResult)
    d = untimed(r.to_dict())
    del d["device"]
    assert "images_source" not in d and "notes" not in d and "image_names" not in d  # None: left out
    same_json(d, {k: v for k, v in want.items() if k not in ("images_source", "notes")}, rel=1e-6, abs=1e-7)
    st = r.runs[1].sources["fmnist-fgsm"]["pgd"]
    assert st.asr == d["runs"][1]["sources"]["fmnist-fgsm"]["pgd"]["asr"]
    assert r.runs[0].transfer_matrix["fgsm"].values == d["runs"][0]["transfer_matrix"]["fgsm"]["values"]
    assert r.clean["fmnist-naive"].accuracy == d["clean"]["fmnist-naive"]["accuracy"]
    page = dataclasses.replace(r, notes=["n"], image_names=["a", "b", "c"]).to_dict()
    assert list(page)[-2:] == ["notes", "image_names"]


def test_cli_folder_skips_unreadable_images_with_a_note(tmp_path: Path, items) -> None:
    items[0].image.save(tmp_path / "a.png")
    items[1].image.save(tmp_path / "b.png")
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8 truncated")
    code, stdout, err = run_cli(["compare", "--models", "fmnist-naive", "--images", str(tmp_path), "--attacks",
                                 "fgsm,agr", "--eps", "0.1", "--json", "-"])
    assert code == 0, err
    assert "advcore: note: skipped c.jpg" in err
    r = json.loads(stdout)
    assert [i["name"] for i in r["images"]] == ["a.png", "b.png"] and r["attacks"] == ["fgsm", "agr"]


@pytest.mark.parametrize("argv, fragment", [
    (["--models", "nope", "--eps", "0.1"], "Unknown model 'nope'"),
    (["--models", "fmnist-naive", "--targets", "efficientnet-lite0", "--eps", "0.1"], "one dataset"),
    (["--models", "fmnist-naive", "--eps", "2"], "exceeds 1"),
    (["--models", "fmnist-naive", "--eps", "x/255"], "must be a number"),
    (["--models", "fmnist-naive", "--eps", "0.1", "--attacks", "pgd,cw"], "cw stop by their own rule"),
    (["--models", "fmnist-naive", "--eps", "0.1", "--attacks", "pgd,nope"], "Unknown attack 'nope'"),
    (["--models", "fmnist-naive", "--eps", "0.1", "--steps", "0"], "steps must be between"),
    (["--models", "fmnist-naive", "--eps", "0.1", "--images", "/nonexistent/dir"], "is not a folder"),
    (["--models", "fmnist-naive", "--eps", "0.1", "--limit", "0"], "limit must be between"),
    (["--models", "fmnist-naive,fmnist-naive", "--eps", "0.1"], "listed twice"),
    (["--eps", "0.1"], "--models"),
    (["--models", "fmnist-naive", "--eps", "0.1", "--stop-on-success", "some"], "invalid choice: 'some'"),
    (["--models", "fmnist-naive", "--eps", "0.1", "--agr-alpha", "2eps"], "invalid choice: '2eps'"),
    (["--models", "fmnist-naive", "--eps", "0.1", "--resolution", "224"], "ImageNet models only"),
    (["--models", "efficientnet-lite0", "--eps", "0.1", "--resolution", "9"], "resolution"),
])
def test_cli_bad_input_exits_2_with_one_line(argv: list[str], fragment: str) -> None:
    code, out, err = run_cli(["compare", *argv])
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("advcore: error: "), err
    assert fragment in lines[0], lines[0]


def test_cli_empty_folder(tmp_path: Path) -> None:
    code, out, err = run_cli(["compare", "--models", "fmnist-naive", "--eps", "0.1", "--images", str(tmp_path)])
    assert code == 2 and out == ""
    assert err.splitlines() == [f"advcore: error: The folder {tmp_path} has no image files (PNG, JPEG, WebP or BMP)."]


def test_from_dict_reads_a_run_back_and_the_shipped_default_is_what_it_says(result) -> None:
    d = result.to_dict()
    assert compare.from_dict(json.loads(json.dumps(d))).to_dict() == d
    for name, want in compare.SAVED.items():
        saved = json.loads((compare.SAVED_DIR / name).read_text())
        got = {k: saved[k] for k in want if k != "images"}
        assert got == {k: v for k, v in want.items() if k != "images"}
        assert saved["images_source"] == f"{len(compare.bundled_images())} bundled sample photo(s)"
        assert [i["name"] for i in saved["images"]] == [it.name for it in compare.bundled_images()]
    with pytest.raises(AdvlabError, match="schema"):
        compare.from_dict({**d, "schema": "advlab.compare/1"})
