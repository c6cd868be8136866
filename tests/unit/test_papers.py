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


def test_bounds_rule() -> None:
    c = _claim("geometry-isotropy")
    ok = {"isotropy range r=1/255": 1e-4, "isotropy range r=10/255": 1e-2}
    assert papers.verdict(c, ok) == ("reproduced in trend", "isotropy range r=10/255 0.01 > isotropy range "
                                     "r=1/255 0.0001; isotropy range r=1/255 0.0001 > 0")
    assert papers.verdict(c, {**ok, "isotropy range r=10/255": 1e-5})[0] == "not reproduced"
    m = _claim("geometry-mantel")
    null = {"Mantel r random map": 0.32}
    assert papers.verdict(m, {"abs Mantel r penultimate": 0.05, **null})[0] == "reproduced in trend"
    v, why = papers.verdict(m, {"abs Mantel r penultimate": 0.3, **null})
    assert v == "not reproduced" and why == "abs Mantel r penultimate 0.3 >= 0.1; control: Mantel r random map 0.32"


def test_agr_and_poisoning_claims() -> None:
    """Paper values come from the labs' constants; the AMP claim orders AGR lowest; the record reads the keys."""
    from advcore.labs import compare, poisoning
    amp = _claim("agr-amp")
    assert amp.paper_values == {"AMP ifgsm": 0.041, "AMP mifgsm": 0.086, "AMP agr": 0.016}
    assert all(b == "AMP agr" for _, b in amp.pairs)
    assert _claim("agr-white-box").paper_values["ASR agr"] == compare.PAPER["linf"]["white_box"]["agr"]
    assert _claim("poison-table2").paper_values == {f"PF {k}": v for k, v in poisoning.PAPER_TABLE2.items()}
    values = {"ASR ifgsm": 90.0, "ASR mifgsm": 95.0, "ASR agr": 99.0,
              "AMP ifgsm": 0.02, "AMP mifgsm": 0.03, "AMP agr": 0.01}
    rec = papers.record("agr", {"values": values, "unit": "u", "setting": "s"}, quick=True)
    assert [c["verdict"] for c in rec["claims"]] == ["reproduced in trend", "reproduced in trend"]
    assert rec["claims"][1]["measured"] == {k: values[k] for k in ("AMP ifgsm", "AMP mifgsm", "AMP agr")}
    rec = papers.record("agr", {"values": {**values, "AMP agr": 0.025}, "unit": "u", "setting": "s"}, quick=True)
    assert rec["claims"][1]["verdict"] == "not reproduced"
    assert rec["claims"][1]["why"] == "AMP ifgsm 0.02 <= AMP agr 0.025; AMP mifgsm 0.03 > AMP agr 0.025"


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
