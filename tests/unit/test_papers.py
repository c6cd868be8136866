"""Papers: verdict rules on stubbed values, the README section against the generator, one real tiny measurement."""

from __future__ import annotations

from advcore.labs import papers
from advcore.paths import ROOT
from ui.views import papers as pv


def _claim(cid: str) -> papers.Claim:
    return next(c for c in papers.CLAIMS if c.id == cid)


def test_ordering_rule() -> None:
    c = _claim("mat-parallel-vs-original")
    assert papers.verdict(c, {"Parallel MAT": 80.0, "Original": 30.0})[0] == "reproduced in trend"
    v, why = papers.verdict(c, {"Parallel MAT": 30.0, "Original": 30.0})
    assert v == "not reproduced" and "<=" in why
    assert papers.verdict(c, None)[0] == "not measured"


def test_beats_baseline_rule() -> None:
    c = _claim("halftone-hybrid")
    good = {f"{a} {r}": (40.0 if r == "hybrid" else 20.0)
            for a in ("FGSM", "I-FGSM", "PGD") for r in ("none", "hybrid")}
    assert papers.verdict(c, good)[0] == "reproduced in trend"
    bad = dict(good, **{"PGD hybrid": 10.0})
    assert papers.verdict(c, bad)[0] == "not reproduced"


def test_paper_values_reused_from_labs() -> None:
    from advcore.labs import defense, training
    assert _claim("mat-parallel-vs-original").paper_values == {"Parallel MAT": training.PAPER_MNIST["Parallel MAT"],
                                                             "Original": training.PAPER_MNIST["Original"]}
    assert _claim("halftone-hybrid").paper_values["FGSM"] == defense.PAPER_TOP5["FGSM"] == 80.97


def test_readme_section_is_generated() -> None:
    text = (ROOT / "README.md").read_text()
    section = papers.readme_section(papers.load_saved())
    assert papers.replace_readme(text, section) == text


def test_views_from_saved() -> None:
    recs = papers.load_saved()
    rows = pv.claim_rows(recs["mat"])
    assert [r["verdict"] for r in rows] == [c["verdict"] for c in recs["mat"]["claims"]]
    assert sum(int(p.split()[0]) for p in pv.tally(recs).split(", ")) == len(papers.CLAIMS)


def test_mat_measurement_tiny(monkeypatch) -> None:
    """A real measurement on 30 images at eps 0 and 0.3: the FGSM-crafted examples at 0.3 fool the naive model."""
    monkeypatch.setattr(papers.training, "DEFAULT_EVAL_EPS", (0.0, 0.3))
    from advcore import datasets
    real = datasets.load_subset
    monkeypatch.setattr(papers.datasets, "load_subset", lambda n=None: real(30))
    m = papers.measure_mat(False)
    assert m["eps"] == [0.0, 0.3]
    assert m["curves"]["Original"][1] < m["curves"]["Original"][0]
    assert m["curves"]["Parallel MAT"][1] > m["curves"]["Original"][1]
    assert abs(m["values"]["Original"] - 100 * sum(m["curves"]["Original"]) / 2) < 0.01
