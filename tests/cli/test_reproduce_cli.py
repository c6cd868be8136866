"""``python -m advcore reproduce``: bad input exits 2 with one line; a paper without a measurement prints JSON."""

from __future__ import annotations

import json

from advcore.cli import main


def test_bad_paper(capsys) -> None:
    assert main(["reproduce", "nope"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_no_paper(capsys) -> None:
    assert main(["reproduce"]) == 2


def test_unmeasured_json(capsys, monkeypatch) -> None:
    """A paper whose measurement is taken away prints its record with every claim 'not measured' (or its
    declared reason), and nothing is saved."""
    from dataclasses import replace

    from advcore.labs import papers

    monkeypatch.setitem(papers.PAPERS, "geometry", replace(papers.PAPERS["geometry"], measure=None))
    assert main(["reproduce", "geometry", "--quick", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["schema"] == "advlab.papers/1" and rec["claims"][0]["verdict"] == "not measured"
    assert rec["claims"][-1]["verdict"] == "not testable here"


def test_parser_does_not_import_the_labs() -> None:
    """Building the parser leaves advcore.labs.papers unimported (the reproduce command imports it lazily)."""
    import subprocess
    import sys

    code = ("import sys; from advcore.cli.framework import build_parser; build_parser(); "
            "print('advcore.labs.papers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]
