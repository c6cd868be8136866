"""advcore.labs.defense: the Defense lab's table (attacker ignoring or knowing the defense), the four views of one
image, the shipped measurements, and ``python -m advcore defend``. The defenses themselves: test_defenses.py."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from cli_util import run_cli
from json_util import same_json

from advcore import datasets, defenses
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
                                eps=[0, 0.1], n=100, steps=10, adaptive=True, trained={}, seed=0, strong_steps=5)


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
    r = lab.evaluate_defense("fmnist-naive", "bayer-random", attack_names=["pgd"], eps=[0.1], n=50, steps=10,
                             eot=4, adaptive=True, trained={}, seed=0, strong_steps=0)
    acc = r.accuracy["halftone-input"]["pgd"]
    assert acc["knows"]["top1"][0] < acc["ignores"]["top1"][0] - 0.05  # measured 0.18 against 0.30 (n 100: 0.34)
    assert r.eot == 4 and "EOT over 4 draws" in r.columns["knows"]
    # EOT isolated: the same BPDA attack with one draw per step is a column of its own, and the lesson compares them
    assert list(r.columns) == ["ignores", "bare", "bpda", "knows"]
    b, k = acc["bpda"]["top1"][0], acc["knows"]["top1"][0]
    assert f"{100 * b:.1f}% -> {100 * k:.1f}%" in r.lesson or "EOT lowers it in none" in r.lesson
    assert "EOT's effect alone" in r.lesson and r.strong == {} and r.attack_params.strong_steps == 0


def test_table_shape_and_lesson(table):
    assert isinstance(table, lab.DefenseTable)
    assert [r.key for r in table.rows] == ["none", "halftone-input"]
    assert list(table.columns) == ["ignores", "bare", "knows"]  # no BPDA-without-EOT for a deterministic halftone
    # rows x attacks x eps x columns, then the strong attacker's and the worst case's cells per row and eps
    assert len(table.table) == 2 * 2 * 2 * 3 + 2 * 2 + 2 * 2
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


def test_cli_defend_json(tmp_path):
    path = tmp_path / "d.json"
    code, out, err = run_cli(["defend", "--model", "fmnist-naive", "--defense", "bayer-random", "--attacks",
                              "fgsm,ifgsm", "--eps", "0,0.1", "--n", "20", "--steps", "3", "--adaptive", "--eot", "2",
                              "--strong-steps", "2", "--restarts", "2", "--reference-model", "none",
                              "--halftone-model", "none", "--hybrid-model", "none", "--json", str(path), "-q"])
    assert code == 0, err
    r = json.loads(path.read_text())
    assert r["model"] == "fmnist-naive" and r["defense"]["method"] == "bayer-random" and r["eot"] == 2
    assert r["attacks"] == ["fgsm", "ifgsm"] and r["eps"] == [0.0, 0.1] and r["n"] == 20
    assert set(r["columns"]) == {"ignores", "bare", "bpda", "knows"}
    assert r["attack_params"]["strong_steps"] == 2 and r["attack_params"]["restarts"] == 2
    assert [row["key"] for row in r["rows"]] == ["none", "halftone-input"]
    for row in r["rows"]:
        assert len(r["strong"][row["key"]]["top1"]) == len(r["robust"][row["key"]]["top1"]) == 2
    for row in r["rows"]:
        for a in r["attacks"]:
            for c in r["columns"]:
                assert len(r["accuracy"][row["key"]][a][c]["top1"]) == 2
    assert "no defense" in out and r["lesson"][:40] in out
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, fragment", [
    (["--defense", "sepia"], "Unknown defense"),
    (["--attacks", "agr"], "Unknown attack"),
    (["--eps", "0.1,abc"], "eps"),
    (["--n", "0"], "n"),
    (["--bayer-size", "3", "--defense", "bayer"], "bayer"),
    (["--halftone-model", "nope"], "Unknown model"),
    (["--strong-steps", "-1"], "strong steps"),
    (["--restarts", "0"], "restarts"),
    (["--reference-model", "nope"], "Unknown model"),
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
        assert result.masking["verdict"] and result.to_dict()["masking"] == result.masking
        cls = defenses.DEFENSES[result.defense["name"]]
        for p in cls.PARAMS:  # made with other parameters: not this table
            if p.kind == "int" and p.name != "bayer_size":
                other = p.default + 1 if p.high is None or p.default < p.high else p.default - 1
                assert lab.saved_table(model, method, {p.name: other}) is None
    assert lab.saved_table("fmnist-naive", "stucki-nonexistent") is None


def test_the_evaluation_takes_given_images_and_labels(fmnist):
    """``images=(x, y)`` (one shard of a set) gives the same numbers as the same images chosen by ``n``."""
    x, y = datasets.load_subset(6)
    kw = dict(attack_names=["fgsm"], eps=[0, 0.1], adaptive=False, trained={})
    given = lab.evaluate_defense("fmnist-naive", "median", images=(datasets.to_float(x), y), **kw)
    assert given.n == 6 and given.data == "given images"
    assert given.accuracy == lab.evaluate_defense("fmnist-naive", "median", n=6, **kw).accuracy


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
    ("defense_tiny.json", dict(method="bayer-random", attack_names=["fgsm", "pgd"], eot=2, adaptive=True,
                               strong_steps=3, restarts=2,
                               trained={"adversarial": "fmnist-pgd"})),
    ("defense_tiny_ignores.json", dict(method="floyd-steinberg", attack_names=["fgsm"], adaptive=False, trained={})),
])
def test_to_dict_is_the_recorded_json(golden, kwargs):
    """``DefenseTable.to_dict()`` of these tiny runs, exactly as recorded in tests/unit/golden (``device`` and
    ``seconds`` left out; regenerated when the protocol gained the bare, BPDA-without-EOT, strong and worst-case
    attackers, the reference row and the flags; ``bpda`` reworded to say "identity (BPDA)" beside "exact gradient")."""
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
    with pytest.raises(AdvlabError, match="Unknown defense"):
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
                             trained={}, strong_steps=3)
    assert r.defense == {"name": "quantise-test", "title": "4-level quantisation", "random": False}
    assert r.bpda == "identity (BPDA) through the 4-level quantisation" and r.eot is None
    assert [row.key for row in r.rows] == ["none", "defense-input"]  # the trained rows are the halftone's
    assert r.rows[1].title == "naive model behind 4-level quantisation"
    for c in ("ignores", "knows"):
        assert len(r.values("defense-input", "fgsm", c)) == 2
    x, y = datasets.load_subset(1)
    p = lab.image_panels("fmnist-naive", datasets.to_float(x), int(y[0]), method=q, attack="fgsm", eps=0.1,
                         trained={})
    assert torch.equal(p.images["halftone_clean"], q(datasets.to_float(x)))


class _Through(torch.nn.Module):
    """``net(f(x))`` as a module, for the attacks."""

    def __init__(self, net: torch.nn.Module, f):
        super().__init__()
        self.net, self.f = net, f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.f(x))


def test_a_differentiable_defense_is_attacked_through_its_exact_gradient():
    """Median smoothing: the ``knows`` column is PGD through ``median_smooth``'s own autograd, recomputed here;
    the identity (BPDA) attacker of the same steps leaves far more images correct."""
    from advcore import attacks, models

    x, y, _ = datasets.eval_set("fashion-mnist", 50)
    r = lab.evaluate_defense("fmnist-naive", "median", attack_names=["pgd"], eps=[0, 0.1], n=50, steps=10,
                             strong_steps=0, trained={}, seed=0)
    assert r.bpda == "exact gradient through the median smoothing" and lab.exact_gradient(r)
    assert r.columns["knows"] == lab.EXACT_COLUMN_TITLES["knows"] and "exact gradient" in r.lesson
    net = lab.bare_network(models.load("fmnist-naive"))
    med = defenses.MedianSmoothing(window=2)

    def accuracy(f) -> float:
        xa = attacks.run("pgd", _Through(net, f), x, y, eps=0.1, norm="linf", steps=10, seed=0).x_adv
        with torch.no_grad():
            return float((net(med(xa)).argmax(1) == y).float().mean())

    exact = accuracy(lambda t: defenses.median_smooth(t, 2))
    assert r.values("defense-input", "pgd", "knows")[1] == pytest.approx(exact, abs=1e-6)
    identity = accuracy(lambda t: defenses.BPDA.apply(t, med))
    assert exact < identity - 0.05, (exact, identity)  # measured 14% against 28% on these 50 images


def test_cli_defend_refuses_a_bayer_size_that_no_halftone_takes():
    code, out, err = run_cli(["defend", "--model", "fmnist-naive", "--defense", "atkinson", "--bayer-size", "3"])
    assert code == 2 and out == "" and "bayer_size must be one of 2, 4, 8, 16" in err


# --------------------------------------------------------------------------- the worst case, flags, the reference


def test_the_worst_case_is_the_per_example_minimum_of_a_plain_reimplementation(fmnist):
    """``robust`` against every attacker, recomputed here with the attacks and the defense called directly."""
    from advcore import attacks, models

    x, y, _ = datasets.eval_set("fashion-mnist", 30)
    r = lab.evaluate_defense("fmnist-naive", "bayer", attack_names=["fgsm", "ifgsm"], eps=[0, 0.15], n=30,
                             steps=3, strong_steps=4, restarts=2, trained={}, seed=5)
    net = lab.bare_network(models.load("fmnist-naive"))
    h = defenses.Halftone("bayer")
    through = defenses.Defended(net, h)
    ok = torch.ones(30, dtype=torch.bool)
    for a in ("fgsm", "ifgsm"):
        for src in (net, through):  # ignores (= bare for the naive model's own row), knows
            xa = attacks.run(a, src, x, y, eps=0.15, norm="linf", steps=3, seed=5).x_adv
            with torch.no_grad():
                ok &= net(h(xa)).argmax(1) == y
    strong = torch.ones(30, dtype=torch.bool)
    for j in range(2):
        xa = attacks.pgd(through, x, y, eps=0.15, steps=4, random_start=True, seed=5 + 104729 * (j + 1)).x_adv
        with torch.no_grad():
            strong &= net(h(xa)).argmax(1) == y
    assert r.strong["halftone-input"]["top1"][1] == pytest.approx(float(strong.float().mean()), abs=1e-6)
    assert r.robust["halftone-input"]["top1"][1] == pytest.approx(float((ok & strong).float().mean()), abs=1e-6)
    with torch.no_grad():
        clean = float((net(h(x)).argmax(1) == y).float().mean())
    assert r.robust["halftone-input"]["top1"][0] == pytest.approx(clean, abs=1e-6)
    # the worst case is at most every attacker's own accuracy
    for row in r.rows:
        for a in r.attacks:
            for c in r.columns:
                assert r.robust[row.key]["top1"][1] <= r.values(row.key, a, c)[1]


def test_an_adaptive_attacker_weaker_than_a_non_adaptive_one_is_flagged():
    acc = {"hybrid": {"ifgsm": {"ignores": {"top1": [0.9, 0.430]}, "bare": {"top1": [0.9, 0.50]},
                                "knows": {"top1": [0.9, 0.494]}}}}
    strong = {"hybrid": {"top1": [0.9, 0.44]}}
    flags = lab.adaptivity_flags(acc, strong, ["hybrid"], ["ifgsm"], [0.0, 0.1])
    assert flags == [lab.Flag("hybrid", 0.1, "ifgsm", "knows", 0.494, "ifgsm", "ignores", 0.43),
                     lab.Flag("hybrid", 0.1, "pgd", "strong", 0.44, "ifgsm", "ignores", 0.43)]
    assert lab.adaptivity_flags(acc, {}, ["hybrid"], ["ifgsm"], [0.0, 0.1])[1:] == []


def test_the_adversarially_trained_reference_row_has_no_halftone():
    from advcore import models

    r = lab.evaluate_defense("fmnist-naive", "floyd-steinberg", attack_names=["fgsm"], eps=[0, 0.1], n=40,
                             strong_steps=3, trained={"adversarial": models.with_role("fashion-mnist", "pgd")})
    assert [row.key for row in r.rows] == ["none", "halftone-input", "adversarial"]
    ref = r.rows[-1]
    assert ref.model == "fmnist-pgd" and not ref.halftone
    acc = r.accuracy["adversarial"]["fgsm"]
    assert acc["bare"] == acc["knows"]  # both are white-box FGSM on the model itself
    x, y, _ = datasets.eval_set("fashion-mnist", 40)
    with torch.no_grad():
        clean = float((models.load("fmnist-pgd")(x).argmax(1) == y).float().mean())
    assert r.clean["adversarial"]["top1"] == pytest.approx(clean, abs=1e-6)
    assert "adversarially trained fmnist-pgd" in r.lesson
    with pytest.raises(AdvlabError, match="behind the defense"):
        lab.image_panels("fmnist-naive", x[:1], row="adversarial", attack="fgsm", eps=0.1,
                         trained={"adversarial": "fmnist-pgd"})


# --------------------------------------------------------------------------- the page's views (pure)


def test_the_views_mark_flags_show_the_worst_case_and_share_one_legend(table):
    from dataclasses import replace

    from ui.views import defense as dv

    flag = lab.Flag("halftone-input", 0.1, "pgd", "knows", 0.5, "pgd", "ignores", 0.4)
    lines = dv.table_rows(replace(table, flags=[flag]))
    assert len(lines) == len(table.rows) * (len(table.attacks) + 2)
    col = "eps 0.1: ignores / bare / knows"
    marked = [ln for ln in lines if dv.FLAG in ln[col]]
    assert [(ln["defense"], ln["attacker"]) for ln in marked] == [("halftone input, naive model", "PGD")]
    assert marked[0][col].split(" / ")[2].endswith(dv.FLAG)
    worst = [ln for ln in lines if ln["attacker"] == dv.WORST_TITLE]
    assert [ln[col] for ln in worst] == [f"{100 * table.robust[r.key]['top1'][1]:.1f}%" for r in table.rows]
    assert dv.table_height(len(lines)) == 35 * (len(lines) + 1) + 3
    fig = dv.curves(table)
    legend = [t.name for t in fig.data if t.showlegend]
    assert legend == [r.title for r in table.rows]  # one legend entry per row for all the panels
    assert [a.text for a in fig.layout.annotations] == ["FGSM", "PGD", "worst case"]
    assert "⚠" in dv.flags_caption(replace(table, flags=[flag]))


def test_the_views_name_the_exact_gradient_of_a_shipped_differentiable_defense():
    from ui.views import defense as dv

    t = lab.saved_table("fmnist-naive", "resize-pad")
    assert t is not None and lab.exact_gradient(t) and lab.gradient_name(t) == "exact gradient"
    assert dv.strong_title(t) == f"exact-gradient PGD-{t.attack_params.strong_steps} + EOT, 1 random start"
    assert dv.column_name(0.1, t) == "eps 0.1: ignores / bare / 1 draw / knows"
    assert "through the exact gradient of the random resize and pad (autograd)" in dv.table_caption(t)
    halftone = lab.saved_table("fmnist-naive", "floyd-steinberg")
    assert halftone is not None and not lab.exact_gradient(halftone) and lab.gradient_name(halftone) == "BPDA"
    assert dv.column_name(0.1, halftone) == "eps 0.1: " + " / ".join(halftone.columns)
    assert dv.adaptive_words("median") == "exact gradient" and dv.adaptive_words("jpeg") == "BPDA"
    assert dv.adaptive_words("resize-pad") == "exact gradient, EOT"
