"""AppTest of the Training lab page, run through app.py's navigation with the shipped model cards."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from app_util import APP, charts, open_page
from streamlit.testing.v1 import AppTest

from advcore import datasets
from advcore.cli.framework import build_parser
from advcore.labs import training
from advcore.models import zoo

TIMEOUT = 180  # a training run on a shared 2-core CPU
RUN_DATASET = "fashion-mnist" if datasets.fashion_mnist_available() else "digits"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def training_page(**widgets: object) -> AppTest:
    """The Training lab reached from the Home page; ``widgets`` preset by key."""
    return open_page("app_pages/training.py", timeout=TIMEOUT, **widgets)


def shipped_cards(directory: Path = zoo.MODELS_DIR) -> list[dict]:
    """The cards the page must show, read here independently of the page's code."""
    cards = [json.loads(p.read_text(encoding="utf-8")) for p in zoo.shipped_cards(directory)]
    return [c for c in cards if c.get("curves") and (directory / c["weights"]).is_file()]


def table(at: AppTest) -> list[dict[str, str]]:
    assert len(at.table) == 1
    return at.table[0].value.to_dict("records")


def pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def train_code(at: AppTest) -> str:
    """The train section's command line (the Table 1 section shows its own)."""
    lines = [c.value for c in at.code if c.value.startswith("python -m advcore train")]
    assert len(lines) == 1, [c.value for c in at.code]
    return lines[0]


def cli_args(line: str):
    words = shlex.split(line.replace("\\\n", " "))
    assert words[:4] == ["python", "-m", "advcore", "train"], words
    return build_parser().parse_args(words[3:])


@pytest.fixture(scope="module")
def default_page() -> tuple[AppTest, list[str], list[str]]:
    """The Training lab with its default widgets, reached from the Home page, and the Home page's markdown and
    captions on the way. Only the random walk's card radio is changed on it (each test that reads the walk sets it
    first); tests that change another widget open a page of their own."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    home = ([m.value for m in at.markdown], [c.value for c in at.caption])
    at.switch_page("app_pages/training.py").run()
    assert not at.exception, at.exception
    return at, *home


def test_figure4_and_table1_show_the_cards_numbers(default_page) -> None:
    cards = shipped_cards()
    assert cards, "no shipped model card with curves in assets/models"
    at = default_page[0]
    assert not at.error
    assert at.title[0].value == "Training lab"
    intro = at.markdown[0].value
    assert intro.count(". ") == 0 and intro.endswith("."), "the page opens with one sentence"

    figs = charts(at)
    for attack, title in (("fgsm", "FGSM"), ("pgd", "PGD-10")):
        with_curve = [c for c in cards if attack in c["curves"]]
        if not with_curve:
            continue
        traces = figs[title]["data"]
        assert len(traces) == len(with_curve)
        for card, trace in zip(with_curve, traces, strict=True):
            curve = card["curves"][attack]
            assert trace["x"] == curve["eps"]
            assert trace["y"] == pytest.approx([100 * a for a in curve["accuracy"]])

    rows = table(at)
    assert [r["Model"] for r in rows] == [c["name"] for c in cards]
    for card, row in zip(cards, rows, strict=True):
        assert row["Clean"] == pct(card["clean_accuracy"])
        assert row["FGSM average"] == pct(card["curves"]["fgsm"]["average_accuracy"])
        pgd = card["curves"].get("pgd")
        assert row["PGD-10 average"] == (pct(pgd["average_accuracy"]) if pgd else "–")
        assert row["Training time"] == f"{card['training_seconds']:,.0f} s"
        assert row["Epochs"] == str(card["epochs"])
        assert row["Strengths"] == (", ".join(f"{s:g}" for s in card["strengths"]) or "–")
        assert row["Training images"] == f"{card['data']['train_images']:,}"

    said = text(at)
    best = max(cards, key=lambda c: c["curves"]["fgsm"]["average_accuracy"])
    assert f"holds up best against FGSM ({pct(best['curves']['fgsm']['average_accuracy'])})" in said
    for paper in ("Original 82.13%", "Single-strength 96.50%", "Mixed MAT 95.76%", "Parallel MAT 97.36%"):
        assert paper in said
    naive = next((c for c in cards if c["recipe"]["name"] == "standard"), None)
    single = next((c for c in cards if c["recipe"]["name"] == "fgsm"), None)
    if naive and single:
        eps = single["strengths"][0]
        a = np.interp(eps, naive["curves"]["fgsm"]["eps"], naive["curves"]["fgsm"]["accuracy"])
        b = np.interp(eps, single["curves"]["fgsm"]["eps"], single["curves"]["fgsm"]["accuracy"])
        assert f"leaves the standard model {pct(a)} accuracy and the FGSM-trained model {pct(b)}" in said

    for card in cards:  # parallel MAT's voting weights, where a card holds them
        if "voting" in card:
            bars = figs["Parallel MAT's voting weights (sum 1)"]["data"][0]["y"]
            assert bars == pytest.approx(card["voting"]["weights"]) and sum(bars) == pytest.approx(1, abs=1e-4)
    args = cli_args(train_code(at))
    assert (args.recipe, args.epochs, args.limit, args.eval_n, args.pgd_n, args.seed) == ("standard", 1, 2000, 500,
                                                                                          0, 0)

    # The random walk of each card that records one (a radio picks the card when there are several).
    walked = [c for c in cards if "strength_selection" in c]
    for card in walked:
        if len(walked) > 1:
            at.radio(key="train_walk_card").set_value(card["name"]).run()
            assert not at.exception
        walk = card["strength_selection"]["walk"]
        assert charts(at)["The random walk's path over the strength grid"]["data"][0]["y"] == walk["path"]


def test_halftone_and_hybrid_models_are_named_and_coloured_as_what_they_are(default_page) -> None:
    """Table 1 once called the halftone and hybrid models "Standard (clean images only)" and Figure 4 drew them in
    the standard model's grey: a student could not tell the three models apart or see what they were trained on."""
    cards = shipped_cards()
    at = default_page[0]
    assert not at.exception
    training_of = {r["Model"]: r["Training"] for r in table(at)}
    kinds = {}
    for card in cards:
        kind = (card.get("input_transform") or {}).get("kind")
        kinds[card["name"]] = kind or ("naive" if card["recipe"]["name"] == "standard" else card["recipe"]["name"])
        if kind == "halftone":
            assert training_of[card["name"]] == "Standard on halftones (Floyd-Steinberg)"
        elif kind == "hybrid":
            assert training_of[card["name"]] == "Hybrid: images + halftones (Floyd-Steinberg)"
        elif card["recipe"]["name"] == "standard":
            assert training_of[card["name"]] == "Standard (clean images only)"
        if kind:
            assert card["input_transform"]["halftone"] == "floyd-steinberg"
            assert "clean images only" not in training_of[card["name"]]
    for title in ("FGSM", "PGD-10"):
        traces = charts(at).get(title, {}).get("data", [])
        colour_of = {t["name"]: t["line"]["color"] for t in traces}
        assert len(set(colour_of.values())) == len(colour_of), colour_of  # one colour per model
        names = {t["name"] for t in traces}
        if any(kinds[c["name"]] == "halftone" for c in cards):
            assert "Standard on halftones (Floyd-Steinberg)" in names, names
        if any(kinds[c["name"]] == "hybrid" for c in cards):
            assert "Hybrid: images + halftones (Floyd-Steinberg)" in names, names
    assert {"halftone", "hybrid", "naive"} <= set(kinds.values()), "the shipped cards hold all three models"


@pytest.fixture(scope="module")
def mat_cards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real cards written by advcore on the tiny digits task: standard, mixed MAT with its random walk, parallel
    MAT with its voting weights (so the page's walk and vote views are tested whatever assets/models holds)."""
    out = tmp_path_factory.mktemp("cards")
    task = datasets.load_task("digits", limit=300)
    x_eval = datasets.to_float(task.x_eval)
    selection = training.select_strengths(task, grid=(0.1, 0.2, 0.3), images=300, val_images=100, penalty=0.0)
    for name, cfg, sel in (
        ("digits-naive", training.TrainConfig(recipe="standard", dataset="digits"), None),
        ("digits-mat-mixed", training.TrainConfig(recipe="mat-mixed", dataset="digits",
                                                  strengths=tuple(selection["chosen"])), selection),
        ("digits-mat-parallel", training.TrainConfig(recipe="mat-parallel", dataset="digits", strengths=(0.1, 0.3),
                                                     vote_images=100), None),
    ):
        result = training.train(cfg, task, selection=sel)
        result.card.update(training.evaluate(result.model, x_eval, task.y_eval, fgsm_images=100, pgd_images=50))
        training.save(result, out, name)
    return out


def test_random_walk_and_voting_weights_from_real_cards(mat_cards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ui.views.training.MODELS_DIR", mat_cards)
    cards = shipped_cards(mat_cards)
    at = training_page()
    assert not at.error
    assert [r["Model"] for r in table(at)] == ["digits-naive", "digits-mat-mixed", "digits-mat-parallel"]
    figs = charts(at)

    mixed = cards[1]
    walk, matrix = mixed["strength_selection"]["walk"], mixed["strength_selection"]["matrix"]
    path = figs["The random walk's path over the strength grid"]["data"][0]
    assert path["y"] == walk["path"] and path["x"] == list(range(len(walk["path"])))
    heat = figs["Accuracy matrix A (validation accuracy, %)"]["data"][0]
    assert np.allclose(np.array(heat["z"]), np.array(matrix["accuracy"]) * 100)
    chosen = [f"{g:g} (chosen)" for g in walk["strengths"]]
    assert [y for y in heat["y"] if y.endswith("(chosen)")] == chosen
    captions = "\n".join(c.value for c in at.caption)
    assert f"it chose {', '.join(f'{s:g}' for s in walk['strengths'])}" in captions

    parallel = cards[2]
    bars = figs["Parallel MAT's voting weights (sum 1)"]["data"][0]
    assert bars["x"] == ["eps 0.1", "eps 0.3"]
    assert bars["y"] == pytest.approx(parallel["voting"]["weights"])
    assert f"The weights sum to {sum(parallel['voting']['weights']):.3f}" in captions
    avg = parallel["curves"]["fgsm"]["average_accuracy"]
    assert f"Parallel MAT (0.1, 0.3) averages {pct(avg)} under FGSM" in text(at)
    assert "Not measured yet: a Fashion-MNIST naive model" in text(at)  # only digits cards here


def test_a_short_training_run_joins_figure4_and_table1(tmp_path: Path) -> None:
    cards = shipped_cards()
    at = training_page(train_dataset=RUN_DATASET, train_recipe="standard", train_epochs=1, train_limit=500,
                       train_eval_n=200)
    args = cli_args(train_code(at))
    assert (args.recipe, args.dataset, args.limit, args.eval_n, args.pgd_n) == ("standard", RUN_DATASET, 500, 200, 0)
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert not at.error and not at.warning
    assert at.success[0].value.startswith("your run 1 is trained and evaluated")
    assert "your run 1: " in " ".join(at.selectbox(key="sidebar_model").options)  # offered in the sidebar
    run = list(at.session_state["_advlab_train_runs"].values())[-1]
    assert run["name"] == "your run 1" and run["data"]["train_images"] == 500 and run["epochs"] == 1
    curve = run["curves"]["fgsm"]
    assert curve["n"] == 200 and curve["eps"] == list(training.DEFAULT_EVAL_EPS)
    assert run["clean_accuracy"] > 0.3  # ten classes: chance is 0.1
    assert curve["accuracy"][0] > curve["accuracy"][-1]  # FGSM at 0.3 hurts a standard model

    # The command line the page shows trains and measures the same model: the same numbers.
    from advcore import cli

    words = shlex.split(run["command"].replace("\\\n", " "))[3:]
    words[words.index("--out-dir") + 1] = str(tmp_path)
    assert cli.main([*words, "-q"]) == 0
    card = json.loads((tmp_path / f"{cli_args(run['command']).name}.json").read_text())
    assert card["clean_accuracy"] == run["clean_accuracy"]
    assert card["curves"]["fgsm"]["accuracy"] == curve["accuracy"]

    if RUN_DATASET == (cards[0]["dataset"] if cards else None):
        rows = table(at)
        assert len(rows) == len(cards) + 1
        assert rows[-1]["Model"] == "your run 1"
        assert rows[-1]["Clean"] == pct(run["clean_accuracy"])
        assert rows[-1]["FGSM average"] == pct(curve["average_accuracy"])
        assert rows[-1]["PGD-10 average"] == "–" and rows[-1]["Training images"] == "500"
        trace = next(t for t in charts(at)["FGSM"]["data"] if t["name"].startswith("your run 1"))
        assert trace["y"] == pytest.approx([100 * a for a in curve["accuracy"]])
        assert trace["line"]["dash"] == "dash"
    assert "Training loss of your run 1" in charts(at)
    assert any(m.value.startswith("**your run 1**: Standard") for m in at.markdown)
    assert at.button(key="train_start").label == "Train"  # the Cancel button is gone once the run is over

    at.button(key="train_forget").click().run()
    assert not at.exception
    assert "_advlab_train_runs" not in at.session_state
    if cards:
        assert len(table(at)) == len(cards)


def test_cancel_stops_a_run_and_keeps_nothing() -> None:
    from ui.session import TRAIN_RUN, TRAIN_RUNS
    from ui.views import training as training_view

    at = training_page(train_limit=500)
    req = training_view.RunRequest(dataset=RUN_DATASET, recipe="standard", strengths=(), epochs=1, limit=500, seed=0,
                                   eval_n=200)
    # The progress callback sees the flag the Cancel button sets, and advcore stops at once.
    at.session_state[TRAIN_RUN.request_key] = req
    at.session_state[TRAIN_RUN.cancel_key] = True
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["Training cancelled at training, step 1 of 4; nothing was kept. "
                                             "Press Train to start again."]
    assert TRAIN_RUNS.key not in at.session_state

    # A click on Cancel reruns the page, which interrupts the run: the next run says where it stopped.
    at.session_state[TRAIN_RUN.running_key] = {"stage": "training", "step": 7, "total": 16}
    at.session_state[TRAIN_RUN.cancel_key] = True
    at.run()
    assert [w.value for w in at.warning] == ["Training cancelled at training, step 7 of 16; nothing was kept. "
                                             "Press Train to start again."]
    at.run()
    assert not at.warning  # said once


@pytest.mark.parametrize(("recipe", "strengths", "message"), [
    ("mat-mixed", [], "Mixed MAT (one network) trains with several strengths: pick at least one"),
    ("fgsm", [0.1, 0.2], "Single-strength training uses exactly one strength; you picked 2."),
])
def test_bad_input_shows_an_error_and_disables_train(recipe: str, strengths: list[float], message: str) -> None:
    at = training_page(train_recipe=recipe, train_strengths=strengths)
    assert len(at.error) == 1 and at.error[0].value.startswith(message), [e.value for e in at.error]
    assert at.button(key="train_start").disabled


def test_without_fashion_mnist_runs_use_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("advcore.datasets.fashion_mnist_available", lambda root=None: False)
    at = training_page()
    assert at.radio(key="train_dataset").options == ["scikit-learn digits"]
    assert any("apt-get install dataset-fashion-mnist" in i.value for i in at.info)
    assert "--dataset digits" in train_code(at)
    assert not at.error


def test_home_page_describes_the_training_lab(default_page) -> None:
    at, markdown, captions = default_page
    assert any(m.startswith("**Training lab**") and "Figure 4" in m and "Table 1" in m for m in markdown)
    assert "Training lab" not in " ".join(c for c in captions if c.startswith("Coming:"))
    assert not at.exception and at.title[0].value == "Training lab"  # its link leads to the lab


def test_table1_recomputed_equals_the_cli(capsys) -> None:
    """Run recomputes Table 1 on 10 images at 4 strengths; every number on the page equals the one the page's
    ``python -m advcore table1 --protocol paper ... --json -`` line prints for the same images."""
    from advcore.cli import main

    at = training_page(train_t1_n=10, train_t1_eps="0:0.3:0.1")
    code = [c.value for c in at.code if "advcore table1" in c.value]
    assert len(code) == 1 and not at.dataframe
    at.button(key="train_t1_run").click().run()
    assert not at.exception and not at.error, at.error
    rows = {r["model"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert at.button(key="train_t1_run").label == "Recompute"
    paper_line, white_line = code[0].splitlines()
    assert white_line == paper_line.replace("--protocol paper", "--protocol white-box")
    words = shlex.split(paper_line)
    assert words[:4] == ["python", "-m", "advcore", "table1"] and words[-2:] == ["--json", "-"]
    assert main([*words[3:], "-q"]) == 0
    t = json.loads(capsys.readouterr().out)
    assert t["n"] == 10 and t["eps"] == [0.0, 0.1, 0.2, 0.3] and t["protocol"] == "paper"
    cli = t["models"]
    assert set(rows) == set(cli)
    cards = {c["name"]: c for c in shipped_cards()}
    for name, r in rows.items():
        assert r["paper protocol, recomputed"] == cli[name]["average_accuracy"]
        assert r["white-box FGSM, recomputed"] == cli[name]["white_box_fgsm_average"]
        assert r["white-box R+FGSM, recomputed"] == cli[name]["rfgsm_average"]
        assert r["clean, recomputed"] == cli[name]["clean_accuracy"]
        assert r["paper protocol, precomputed"] == cards[name]["curves"]["transfer_fgsm"]["average_accuracy"]
        assert r["white-box FGSM, precomputed"] == cards[name]["curves"]["fgsm"]["average_accuracy"]
    assert list(rows) == sorted(rows, key=lambda k: -cli[k]["average_accuracy"])
    caption = next(c.value for c in at.caption if c.value.startswith("Recomputed on the first 10 images"))
    assert f"{max(cli, key=lambda k: cli[k]['average_accuracy'])} ranks first here" in caption


def test_table1_cancel_keeps_nothing() -> None:
    """Cancel stops the Table 1 run at its first progress report: a warning says where, nothing is cached, and the
    button still says Run."""
    from ui.views import training as training_view

    at = training_page(train_t1_n=10, train_t1_eps="0:0.3:0.1")
    run_key = "_advlab_train_table1"
    req = training_view.Table1Request("fashion-mnist" if datasets.fashion_mnist_available() else "digits", 10,
                                      "0:0.3:0.1", at.session_state["sidebar_device"]
                                      if "sidebar_device" in at.session_state else "auto")
    from ui.session import PageRun
    run = PageRun(run_key)
    at.session_state[run.request_key] = req
    at.session_state[run.cancel_key] = True
    at.run()
    assert not at.exception
    assert len(at.warning) == 1 and at.warning[0].value.startswith("Table 1 cancelled at Table 1: crafting the static")
    assert at.warning[0].value.endswith(", step 1 of 4; nothing was kept.")  # 4 strengths, 10 images: 1 batch
    assert "_advlab_train_table1_results" not in at.session_state or not at.session_state[
        "_advlab_train_table1_results"]
    assert at.button(key="train_t1_run").label == "Run" and not at.dataframe
