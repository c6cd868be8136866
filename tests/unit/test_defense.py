"""advcore.labs.defense: the Defense lab's table (attacker ignoring or knowing the defense), the four views of one
image, the shipped measurements, and ``python -m advcore defend``. The defenses themselves: test_defenses.py."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from json_util import same_json

from advcore import cli, datasets, defenses
from advcore.errors import AdvlabError, Cancelled
from advcore.labs import defense as lab
from advcore.labs import training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fmnist() -> torch.Tensor:
    x, _ = datasets.load_subset(20)
    return datasets.to_float(x)

# --------------------------------------------------------------------------- the evaluation


@pytest.fixture(scope="module")
def table() -> lab.DefenseTable:
    return lab.evaluate_defense("fmnist-naive", "floyd-steinberg", attack_names=["fgsm", "pgd"],
                                eps=[0, 0.1], n=100, steps=10, adaptive=True, trained={}, seed=0)


def test_adaptive_pgd_beats_the_transferred_one_on_the_halftone_defense(table):
    acc = table.accuracy["halftone-input"]["pgd"]
    assert acc["knows"]["top1"][1] < acc["ignores"]["top1"][1]
    # eps 0 is the clean accuracy in both columns
    assert acc["knows"]["top1"][0] == acc["ignores"]["top1"][0] == table.clean["halftone-input"]["top1"]
    # no defense: both columns are the same white-box attack
    none = table.accuracy["none"]["pgd"]
    assert none["knows"] == none["ignores"]
    assert none["ignores"]["top1"][1] < none["ignores"]["top1"][0]


def test_adaptive_pgd_with_eot_beats_the_transferred_one_on_the_random_halftone():
    r = lab.evaluate_defense("fmnist-naive", "bayer-random", attack_names=["pgd"], eps=[0.1], n=100, steps=10,
                             eot=4, adaptive=True, trained={}, seed=0)
    acc = r.accuracy["halftone-input"]["pgd"]
    assert acc["knows"]["top1"][0] < acc["ignores"]["top1"][0] - 0.05  # measured 0.18 against 0.34
    assert r.eot == 4 and "BPDA + EOT" in r.lesson


def test_table_shape_and_lesson(table):
    assert isinstance(table, lab.DefenseTable)
    assert [r.key for r in table.rows] == ["none", "halftone-input"]
    assert len(table.table) == 2 * 2 * 2 * 2  # rows x attacks x eps x columns
    assert table.topk == ["top1"] and table.n == 100
    json.dumps(table.to_dict(), allow_nan=False)
    assert "PGD at eps 0.1" in table.lesson and "knows the defense" in table.lesson


def test_progress_callback_cancels():
    calls = []

    def progress(p):
        calls.append((p.step, p.total))
        return True

    with pytest.raises(Cancelled):
        lab.evaluate_defense("fmnist-naive", "bayer", attack_names=["fgsm"], eps=[0.1], n=20, trained={},
                             progress=progress)
    assert calls == [(1, calls[0][1])]


def test_image_panels(fmnist):
    p = lab.image_panels("fmnist-naive", fmnist[:1], 6, method="bayer", row="halftone-input", attack="fgsm",
                         eps=0.2, trained={})
    assert set(p.images) == set(lab.Panels.PANELS)
    assert torch.equal(p.images["halftone_clean"], defenses.halftone(fmnist[:1], "bayer"))
    assert float((p.images["adversarial"] - fmnist[:1]).abs().max()) <= 0.2 + 1e-6
    assert p.label == 6


def test_hybrid_transform_doubles_the_batch(fmnist):
    cfg = training.TrainConfig(input_transform="hybrid", halftone="bayer")
    t = training._input_transform(training.check_config(cfg))
    y = torch.arange(len(fmnist))
    xs, ys = t(fmnist, y)
    assert torch.equal(xs[:20], fmnist) and torch.equal(xs[20:], defenses.halftone(fmnist, "bayer"))
    assert torch.equal(ys, torch.cat([y, y]))
    with pytest.raises(AdvlabError):
        training.check_config(training.TrainConfig(recipe="fgsm", strengths=(0.1,), input_transform="halftone"))


# --------------------------------------------------------------------------- the command line


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def test_cli_defend_json(tmp_path):
    path = tmp_path / "d.json"
    code, out, err = run_cli(["defend", "--model", "fmnist-naive", "--defense", "bayer-random", "--attacks",
                              "fgsm,ifgsm", "--eps", "0,0.1", "--n", "20", "--steps", "3", "--adaptive", "--eot", "2",
                              "--halftone-model", "none", "--hybrid-model", "none", "--json", str(path), "-q"])
    assert code == 0, err
    r = json.loads(path.read_text())
    assert r["model"] == "fmnist-naive" and r["defense"]["method"] == "bayer-random" and r["eot"] == 2
    assert r["attacks"] == ["fgsm", "ifgsm"] and r["eps"] == [0.0, 0.1] and r["n"] == 20
    assert set(r["columns"]) == {"ignores", "knows"}
    for row in r["rows"]:
        for a in r["attacks"]:
            for c in r["columns"]:
                assert len(r["accuracy"][row["key"]][a][c]["top1"]) == 2
    assert "no defense" in out and r["lesson"][:40] in out
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, fragment", [
    (["--defense", "sepia"], "Unknown halftone"),
    (["--attacks", "agr"], "Unknown attack"),
    (["--eps", "0.1,abc"], "eps"),
    (["--n", "0"], "n"),
    (["--bayer-size", "3", "--defense", "bayer"], "bayer"),
    (["--halftone-model", "nope"], "Unknown model"),
])
def test_cli_defend_bad_input_exits_2_with_one_line(argv, fragment):
    code, out, err = run_cli(["defend", "--model", "fmnist-naive", *argv])
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("advcore: error: ") and fragment in lines[0], err


def test_halftone_trained_models_halftone_their_input_when_loaded() -> None:
    """The registry gives the model as used (halftone, then network); the Defense lab takes the bare network."""
    from advcore import models

    for name in ("fmnist-halftone", "fmnist-hybrid"):
        model = models.load(name, "cpu")
        assert isinstance(model, defenses.Defended)
        assert model.defense.method == models.get_spec(name).card["input_transform"]["halftone"]
        rows = {r.key: r for r in lab.build_rows("fmnist-naive", defenses.Halftone("floyd-steinberg"))}
        key = "halftone-trained" if name == "fmnist-halftone" else "hybrid"
        assert rows[key].model is model.model


# --------------------------------------------------------------------------- the shipped measurements


def test_the_shipped_tables_load_and_match_their_file_names():
    tables = lab.saved_tables()
    assert tables, "assets/defense holds no valid table"
    for (model, method), result in tables.items():
        assert lab.saved_path(model, method).is_file()
        assert isinstance(result, lab.DefenseTable)
        assert lab.saved_table(model, method) == result
        assert lab.lesson(result)
    assert lab.saved_table("fmnist-naive", "stucki-nonexistent") is None


def test_a_damaged_table_is_refused_with_a_plain_message(tmp_path):
    src = next(iter(sorted(lab.SAVED_DIR.glob("*.json"))))
    good = json.loads(src.read_text(encoding="utf-8"))
    path = tmp_path / "t.json"
    shutil.copy(src, path)
    assert lab.load_saved(path).to_dict() == good
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(AdvlabError, match="not valid JSON"):
        lab.load_saved(path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "accuracy"}), encoding="utf-8")
    with pytest.raises(AdvlabError, match="lacks accuracy"):
        lab.load_saved(path)
    bad = json.loads(json.dumps(good))
    key, a = good["rows"][-1]["key"], good["attacks"][0]
    bad["accuracy"][key][a]["ignores"]["top1"] = bad["accuracy"][key][a]["ignores"]["top1"][:-1]
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(AdvlabError, match="no valid accuracy"):
        lab.load_saved(path)


GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("golden, kwargs", [
    ("defense_tiny.json", dict(method="bayer-random", attack_names=["fgsm", "pgd"], eot=2, adaptive=True)),
    ("defense_tiny_ignores.json", dict(method="floyd-steinberg", attack_names=["fgsm"], adaptive=False, trained={})),
])
def test_to_dict_is_the_json_of_the_nested_dict_it_replaced(golden, kwargs):
    """``DefenseTable.to_dict()`` is exactly what ``evaluate_defense`` returned as a nested dict before it returned
    a dataclass (tests/unit/golden: that code's output for these tiny runs, ``device`` and ``seconds`` left out)."""
    want = json.loads((GOLDEN / golden).read_text(encoding="utf-8"))
    method = kwargs.pop("method")
    r = lab.evaluate_defense("fmnist-naive", method, eps=[0, 0.1], n=20, steps=2, seed=0, device="cpu", **kwargs)
    assert isinstance(r, lab.DefenseTable)
    d = r.to_dict()
    assert list(d)[-3:] == ["device", "lesson", "seconds"] and "command" not in d
    assert isinstance(d.pop("device"), str) and isinstance(d.pop("seconds"), float)
    same_json(d, want)  # exact: keys in order, values and types
    assert lab.DefenseTable.from_dict(r.to_dict()) == r
    assert r.table[0].to_dict() == want["table"][0] and r.rows[0].to_dict() == want["rows"][0]
    assert r.attack_params.to_dict() == want["attack_params"]


@pytest.mark.parametrize("path", sorted(lab.SAVED_DIR.glob("*.json")), ids=lambda p: p.name)
def test_every_shipped_table_round_trips(path):
    d = json.loads(path.read_text(encoding="utf-8"))
    t = lab.DefenseTable.from_dict(d)
    same_json(t.to_dict(), d)  # exact: keys in order, values and types
    assert lab.load_saved(path) == t
    assert t.command == d.get("command")


# --------------------------------------------------------------------------- any Defense


def test_make_defense_takes_a_method_a_registered_name_or_a_defense():
    assert lab.make_defense("bayer", bayer_size=4, seed=2) == defenses.Halftone("bayer", 4, seed=2)
    assert isinstance(lab.make_defense("halftone"), defenses.Halftone)
    d = defenses.Halftone("atkinson")
    assert lab.make_defense(d) is d
    with pytest.raises(AdvlabError, match="Unknown halftone"):
        lab.make_defense("sepia")


@dataclass
class Quantise(defenses.Defense):
    """A defense that is not a halftone (and not registered): 4 grey levels, identity BPDA."""

    name = "quantise-test"
    title = "4-level quantisation"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.clamp(0, 1) * 3).round() / 3


def test_the_evaluation_takes_any_defense():
    q = Quantise()
    r = lab.evaluate_defense("fmnist-naive", q, attack_names=["fgsm"], eps=[0, 0.1], n=20, adaptive=True,
                             trained={})
    assert r.defense == {"name": "quantise-test", "title": "4-level quantisation", "random": False}
    assert r.bpda == "identity backward pass through the 4-level quantisation" and r.eot is None
    assert [row.key for row in r.rows] == ["none", "halftone-input"]
    for c in ("ignores", "knows"):
        assert len(r.values("halftone-input", "fgsm", c)) == 2
    x, y = datasets.load_subset(1)
    p = lab.image_panels("fmnist-naive", datasets.to_float(x), int(y[0]), method=q, attack="fgsm", eps=0.1,
                         trained={})
    assert torch.equal(p.images["halftone_clean"], q(datasets.to_float(x)))


def test_cli_defend_refuses_a_bayer_size_that_no_halftone_takes():
    code, out, err = run_cli(["defend", "--model", "fmnist-naive", "--defense", "atkinson", "--bayer-size", "3"])
    assert code == 2 and out == "" and "--bayer-size must be one of" in err
