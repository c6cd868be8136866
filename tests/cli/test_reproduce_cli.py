"""``python -m advcore reproduce``: bad input exits 2 with one line; a paper without a measurement prints JSON."""

from __future__ import annotations

import json

from advcore.cli import main


def test_bad_paper(capsys) -> None:
    assert main(["reproduce", "nope"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_no_paper(capsys) -> None:
    assert main(["reproduce"]) == 2


def test_unmeasured_json(capsys) -> None:
    assert main(["reproduce", "geometry", "--quick", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["schema"] == "advlab.papers/1" and rec["claims"][0]["verdict"] == "not measured"
