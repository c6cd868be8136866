"""AppTest of the Papers page: it shows the saved records' measured values and verdicts (bench/results/papers)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from advcore.labs import findings, papers

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def test_page_shows_saved_claims() -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/papers.py").run()
    assert not at.exception
    records = papers.load_saved()
    assert [s.value for s in at.subheader] == [p.title for p in papers.PAPERS.values()]
    frames = [df.value for df in at.dataframe]
    assert len(frames) == len(papers.PAPERS)
    for key, df in zip(papers.PAPERS, frames, strict=True):
        claims = records[key]["claims"]
        assert list(df["verdict"]) == [c["verdict"] for c in claims]
        assert list(df["why"]) == [c["why"] for c in claims]
        for row, c in zip(df["advlab"], claims, strict=True):
            for k, v in (c["measured"] or {}).items():
                assert f"{k} {v:g}" in row
    measured = [k for k in ("agr", "poisoning", "geometry") if records[k]["measurement"]]
    assert measured == ["agr", "poisoning", "geometry"]
    tally = next(c.value for c in at.caption if c.value.startswith("Verdicts: "))
    assert tally == "Verdicts: " + ", ".join(
        f"{sum(c['verdict'] == v for r in records.values() for c in r['claims'])} {v}"
        for v in dict.fromkeys(c["verdict"] for r in records.values() for c in r["claims"]))
    bullets = findings.bullets(findings.load_sources(), records)
    assert any(m.value == "\n".join(bullets) for m in at.markdown)


def test_a_quick_run_replaces_the_saved_record_and_a_failed_one_says_why(monkeypatch) -> None:
    from advcore.errors import AdvlabError

    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("app_pages/papers.py").run()
    at.button(key="papers_run_geometry").click().run()
    assert not at.exception and not at.error
    quick = at.session_state["_advlab_papers_quick"]["geometry"]
    assert quick["quick"] and quick["measurement"]
    assert any(c.value.startswith("quick run (3 images, T = 30)") for c in at.caption)

    def fails(paper: str, **kw) -> dict:
        raise AdvlabError(f"no {paper} here")

    monkeypatch.setattr(papers, "reproduce", fails)
    at.button(key="papers_run_agr").click().run()
    assert [e.value for e in at.error] == ["no agr here"]  # shown, not swallowed
    assert "agr" not in at.session_state["_advlab_papers_quick"]
