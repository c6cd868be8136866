"""AppTest of the Attack lab page, run through app.py's navigation with the real EfficientNet-Lite0."""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
from pathlib import Path

import pytest
from app_util import vega_specs
from PIL import Image
from streamlit.testing.v1 import AppTest

from advcore.attacks import ATTACKS
from advcore.cli.framework import build_parser

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 180  # a PGD run on a shared 2-core CPU
CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat"}
PREDICTION = re.compile(r"^(Clean|Adversarial) prediction: (.+) \((\d+\.\d)%\)$")


def attack_page(upload: tuple[str, bytes, str] | None = None, **widgets: object) -> AppTest:
    """The Attack lab reached from the Home page; ``widgets`` preset by key, ``upload`` sent through the sidebar."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if upload is not None:
        at.radio(key="sidebar_image_source").set_value("Upload").run()
        at.file_uploader(key="sidebar_upload").set_value(upload)
    for key, value in widgets.items():
        at.session_state[key] = value
    at.switch_page("app_pages/attack.py").run()
    assert not at.exception, at.exception
    return at


def predictions(at: AppTest) -> dict[str, tuple[str, float]]:
    found = {}
    for m in at.markdown:
        match = PREDICTION.match(m.value)
        if match:
            found[match[1]] = (match[2], float(match[3]))
    return found


def metrics(at: AppTest) -> dict[str, str]:
    """The metrics table (a static st.table: every row visible) as {Metric: Value}; opens its section (closed when
    the page opens, drawn only while open) as a click on it would."""
    if not at.session_state["attack_open_numbers"]:
        at.session_state["attack_open_numbers"] = True
        at.run()
    assert len(at.table) == 1 and not at.dataframe
    df = at.table[0].value
    assert list(df.columns) == ["Metric", "Value", "Meaning"]
    return dict(zip(df["Metric"], df["Value"], strict=True))


def caption_text(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def cli_args(at: AppTest) -> argparse.Namespace:
    """The command line the page shows, parsed by advcore's own parser (as a shell would split it)."""
    line = at.code[0].value
    assert not any(row.lstrip().startswith("#") for row in line.splitlines()), line
    words = shlex.split(line.replace("\\\n", " "))
    assert words[:4] == ["python", "-m", "advcore", "attack"], words
    return build_parser().parse_args(words[3:])


def test_default_fgsm_flips_the_espresso() -> None:
    at = attack_page()
    assert at.title[0].value == "Attack lab"
    assert at.markdown[0].value.startswith("Pick a photo and an attack, then move eps")
    assert "default 4/255, then lower eps to 1/255" in at.markdown[0].value
    assert at.selectbox(key="attack_name").label == "Attack"
    assert at.selectbox(key="attack_name").value == "fgsm"
    assert at.selectbox(key="attack_name").options[:5] == ["FGSM", "I-FGSM (BIM)", "PGD", "MI-FGSM",
                                                           "AGR (adaptive gradient refinement)"]
    assert at.selectbox(key="attack_name").options == [s.title for s in ATTACKS.values()]  # the whole registry
    assert at.slider(key="attack_eps_linf").label == "eps (x/255)"
    assert at.slider(key="attack_eps_linf").value == 4
    assert at.slider(key="attack_steps").disabled  # FGSM takes one step

    preds = predictions(at)
    assert set(preds) == {"Clean", "Adversarial"}
    clean, adv = preds["Clean"][0], preds["Adversarial"][0]
    assert clean == "espresso" and preds["Clean"][1] > 90  # the default photo: right, and with confidence
    assert adv != clean
    assert 0 < preds["Clean"][1] <= 100 and 0 < preds["Adversarial"][1] <= 100

    m = metrics(at)
    assert m["Success"] == "yes"
    assert m["Success after 8-bit rounding"] == "yes"
    assert m["L-inf"] == "0.01569 (4.00/255)"
    assert m["Gradient evaluations"] == "1"
    assert 0.99 < float(m["Cosine similarity"]) < 1.0
    assert 25 < float(m["PSNR"].split()[0]) < 60
    assert any("still succeeds after the image is rounded to 8 bits" in s.value for s in at.success)

    specs = vega_specs(at)
    assert len(specs) == 5 and not at.get("plotly_chart")  # top-5 x2, loss, probability, the heat map's colour bar
    titles = [spec.get("title") for spec in specs[:4]]
    bar = specs[4]["encoding"]
    assert bar["x"]["scale"]["domain"] == [0, pytest.approx(4.0, abs=1e-4)]  # FGSM: every pixel at eps
    assert bar["x"]["title"] == "|change| (x/255)"
    # A photo has no dataset label: the watched class is the model's own clean prediction, named as such.
    assert f"Probability of the clean prediction ({clean})" in titles and "Cross-entropy to the clean prediction" \
        in titles, titles
    assert not any("true" in t.lower() for t in titles)
    assert not any(m.value.startswith(("True class:", "Dataset label:")) for m in at.markdown)
    captions = [c for image in at.get("image") for c in image.captions]
    assert captions == ["Clean: the 224x224 centre crop the model sees",  # "Where the perturbation acts" closed
                        captions[1], "Adversarial: the 8-bit PNG you download", "Per-pixel max |change| over R, G, B"]
    assert captions[1].startswith("Perturbation x") and "(grey = unchanged)" in captions[1]
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download metrics table (CSV)", "Download loss per iteration (CSV)", "Download adversarial PNG",
                      "Download metrics JSON"]
    cli = at.code[0].value
    assert cli.startswith("python -m advcore attack")
    for flag in ("--model efficientnet-lite0", "--image assets/samples/coffee.jpg", "--attack fgsm",
                 "--norm linf", "--eps 4/255", "--json metrics.json"):
        assert flag in cli
    assert "FGSM takes a single step" in caption_text(at) and "iteration 0 is the clean image" in caption_text(at)
    assert "--steps" not in cli  # FGSM takes no steps; the CLI would print a note about an ignored flag
    args = cli_args(at)
    assert (args.attack, args.norm, args.eps, args.steps, args.image) == ("fgsm", "linf", 4 / 255, None,
                                                                          "assets/samples/coffee.jpg")
    heat = [c.value for c in at.caption if c.value.startswith("Colours run from black")]
    assert len(heat) == 1 and "bright yellow, a change of 4/255: the budget eps" in heat[0], heat
    assert "every pixel changes by the full eps" in heat[0]  # FGSM: one sign step of size eps
    assert not at.error


def test_view_only_change_reuses_the_result() -> None:
    at = attack_page()
    seconds = metrics(at)["Seconds"]
    at.select_slider(key="attack_amplification").set_value(10).run()
    assert not at.exception
    assert metrics(at)["Seconds"] == seconds  # the cached result, not a new attack
    captions = [c for image in at.get("image") for c in image.captions]
    assert "Perturbation x10 around grey (grey = unchanged)" in captions


def test_eps_change_recomputes() -> None:
    at = attack_page()
    at.slider(key="attack_eps_linf").set_value(1).run()
    assert not at.exception
    m = metrics(at)
    assert m["L-inf"] == "0.00392 (1.00/255)"
    assert "--eps 1/255" in at.code[0].value
    assert set(predictions(at)) == {"Clean", "Adversarial"}


def test_switching_to_pgd_reruns_and_shows_a_prediction() -> None:
    at = attack_page()
    clean_before = predictions(at)["Clean"]
    at.selectbox(key="attack_name").set_value("pgd").run()
    assert not at.exception
    assert not at.slider(key="attack_steps").disabled
    assert at.checkbox(key="attack_random_start").value is True
    preds = predictions(at)
    assert preds["Clean"] == clean_before
    assert preds["Adversarial"][0] != preds["Clean"][0]
    m = metrics(at)
    assert m["Gradient evaluations"] == "10"
    assert m["L-inf"].endswith("(4.00/255)")  # PGD uses the whole ball
    assert "iteration 0 is PGD's random start" in caption_text(at)
    cli = at.code[0].value
    assert "--attack pgd" in cli and "--steps 10" in cli and "--seed 0" in cli
    args = cli_args(at)
    assert (args.steps, args.seed, args.random_start) == (10, 0, None)


def test_l2_norm_uses_pixel_units() -> None:
    at = attack_page()
    at.radio(key="attack_norm").set_value("l2").run()
    assert not at.exception
    eps = at.slider(key="attack_eps_l2")
    assert eps.label == "eps (pixel L2)" and eps.value == 1.0
    m = metrics(at)
    assert float(m["L2"]) <= 1.0 + 1e-4
    assert "--norm l2" in at.code[0].value and "--eps 1" in at.code[0].value
    args = cli_args(at)
    assert (args.norm, args.eps) == ("l2", 1.0)
    heat = [c.value for c in at.caption if c.value.startswith("Colours run from black")]
    assert len(heat) == 1 and "L2 caps the total length" in heat[0]


def test_large_jobs_wait_for_the_button() -> None:
    at = attack_page(attack_name="ifgsm", attack_steps=200)
    assert at.button(key="attack_run").label == "Run attack"
    assert "press Run attack" in at.info[0].value
    assert predictions(at) == {}
    assert "--steps 200" in at.code[0].value


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.open(ROOT / "assets" / "samples" / "cat.jpg").save(buf, format="PNG")
    return buf.getvalue()


def test_bad_upload_shows_an_error_not_a_traceback() -> None:
    at = attack_page(upload=("notes.png", b"this is not an image at all", "image/png"))
    assert len(at.error) == 1
    assert "notes.png is not an image that can be read" in at.error[0].value
    assert predictions(at) == {}
    assert "notes.png cannot be used (see the message on the page)." in [c.value for c in at.sidebar.caption]
    # Back to a sample: the page recovers in the same session.
    at.radio(key="sidebar_image_source").set_value("Bundled sample").run()
    assert not at.exception and not at.error
    assert predictions(at)["Clean"][0] == "espresso"  # the default sample


def test_good_upload_is_attacked() -> None:
    at = attack_page(upload=("chelsea.png", _png_bytes(), "image/png"))
    assert not at.error
    assert predictions(at)["Clean"][0] in CAT_CLASSES
    assert "--image upload.png" in at.code[0].value
    assert "Save your upload (chelsea.png) as upload.png next to the command." in caption_text(at)


def test_targeted_pgd_reaches_the_target() -> None:
    at = attack_page(attack_name="pgd", attack_targeted=True)
    target = at.selectbox(key="attack_target_imagenet")
    assert target.value == 859 and target.options[859] == "859: toaster"
    assert not at.exception
    preds = predictions(at)
    assert preds["Adversarial"][0] == "toaster"
    assert metrics(at)["Success"] == "yes"
    assert "--target 859" in at.code[0].value
    assert cli_args(at).target == "859"


def test_run_button_runs_a_large_job(monkeypatch: pytest.MonkeyPatch) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # app.py puts the repository on sys.path
    # A small automatic budget keeps this test fast: 3 steps at 224 px run by themselves, 5 wait for the button.
    monkeypatch.setattr("ui.views.attack.AUTO_RUN_BUDGET", 3 * 224 * 224)
    at.session_state["attack_name"] = "ifgsm"
    at.session_state["attack_steps"] = 5
    at.switch_page("app_pages/attack.py").run()
    assert not at.exception
    assert predictions(at) == {}
    at.button(key="attack_run").click().run()
    assert not at.exception
    assert set(predictions(at)) == {"Clean", "Adversarial"}
    assert metrics(at)["Gradient evaluations"] == "5"
    # The result is cached: a view-only rerun shows it again without the button.
    at.select_slider(key="attack_amplification").set_value(5).run()
    assert metrics(at)["Gradient evaluations"] == "5"
    assert not at.main.button  # no Run button (and the step-through is closed)
    at.session_state["attack_open_steps"] = True
    assert [b.key for b in at.run().main.button] == ["attack_play"]  # the step-through's Play


def test_a_cancelled_attack_says_where_it_stopped_and_waits_for_the_button() -> None:
    """A Cancel click reruns the page mid-attack: the next page run says where it stopped, shows no result and
    does not start the same small attack again by itself until Run attack is pressed."""
    from ui import shared
    from ui.session import ATTACK_RESULTS, ATTACK_RUN

    at = attack_page(attack_name="ifgsm", attack_steps=3)  # small: runs on load
    assert metrics(at)["Gradient evaluations"] == "3"
    req = next(iter(at.session_state[ATTACK_RESULTS.key]))
    at.session_state[ATTACK_RESULTS.key] = type(at.session_state[ATTACK_RESULTS.key])()  # as if never computed
    shared.results().clear()  # by any session of the server
    # What the Cancel button's callback leaves when its click interrupted the run at step 2.
    at.session_state[ATTACK_RUN.running_key] = {"label": "I-FGSM (BIM)", "step": 2, "steps": 3}
    at.session_state[ATTACK_RUN.cancel_key] = True
    at.session_state[ATTACK_RUN.cancelled_key] = req
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning] == [
        "Cancelled at step 2 of 3; nothing was kept (a partial attack is not a result). Press Run attack to start "
        "again."]
    assert predictions(at) == {} and not at.table
    at.run()  # a rerun does not restart it, and says it once
    assert predictions(at) == {} and not at.warning
    at.button(key="attack_run").click().run()
    assert not at.exception and not at.warning
    assert metrics(at)["Gradient evaluations"] == "3"
    assert "attack_cancel" not in [b.key for b in at.button]  # the Cancel button is gone once the run is over

def test_agr_stops_on_success_and_prints_its_flags() -> None:
    at = attack_page(attack_name="agr")
    acc = at.radio(key="attack_accumulator")
    assert acc.value == "sign"
    assert acc.options == ["sign(g) — paper's Eq. 10 (default)", "raw gradient — textbook AdaGrad"]
    assert at.number_input(key="attack_phi").value == 1.0
    assert at.select_slider(key="attack_delta").value == 1e-8
    assert at.checkbox(key="attack_stop").value is True
    m = metrics(at)
    assert m["Success"] == "yes"
    assert 1 <= int(m["Gradient evaluations"]) < 10  # Algorithm 1 stops once the label flips
    taken = int(m["Gradient evaluations"]) - 1  # the last evaluation finds the label flipped
    assert f"AGR stopped after {taken} of 10 steps, as soon as the label flipped." in caption_text(at)
    cli = at.code[0].value
    for flag in ("--attack agr", "--phi 1.0", "--delta 1e-08", "--accumulator sign"):
        assert flag in cli
    assert "--no-stop-on-success" not in cli
    args = cli_args(at)
    assert (args.phi, args.delta, args.accumulator, args.stop_on_success) == (1.0, 1e-8, "sign", None)

    # Stop on success off: every step runs, and the command line says so with a flag, not a comment.
    at.checkbox(key="attack_stop").uncheck().run()
    assert not at.exception
    assert metrics(at)["Gradient evaluations"] == "10"
    args = cli_args(at)
    assert args.stop_on_success is False and args.steps == 10


def test_settings_survive_a_visit_to_the_home_page() -> None:
    at = attack_page()
    at.slider(key="attack_eps_linf").set_value(7).run()
    at.switch_page("app_pages/home.py").run()
    assert at.title[0].value == "advlab"
    at.switch_page("app_pages/attack.py").run()
    assert not at.exception
    assert at.slider(key="attack_eps_linf").value == 7
    assert metrics(at)["L-inf"].endswith("(7.00/255)")


@pytest.mark.parametrize(
    ("attack", "norm", "eps", "eps_text", "alpha", "target", "extra", "device"),
    [
        ("fgsm", "linf", 4 / 255, "4/255", None, None, {}, "auto"),
        ("pgd", "l2", 1.5, "1.5", 0.1, 859, {"random_start": True, "seed": 7}, "cpu"),
        ("pgd", "linf", 8 / 255, "8/255", 1.3 / 255, None, {"random_start": False, "seed": None}, "auto"),
        ("ifgsm", "linf", 8 / 255, "8/255", 0.7 / 255, None, {}, "auto"),
        ("mifgsm", "linf", 2 / 255, "2/255", None, None, {"mu": 0.5}, "auto"),
        ("agr", "linf", 4 / 255, "4/255", None, 3,
         {"phi": 2.0, "delta": 1e-6, "accumulator": "gradient", "stop_on_success": False}, "auto"),
    ],
)
def test_cli_line_round_trips_through_the_cli_parser(attack, norm, eps, eps_text, alpha, target, extra,
                                                     device) -> None:
    """Every value of a request comes back unchanged from advcore.cli's parser: the same attack runs."""
    from ui.views.attack import AttackRequest, cli_command

    # The page spells a custom L-inf alpha as the fraction it divided; the CLI must compute the same float.
    alpha_text = "0.7/255" if alpha == 0.7 / 255 else None
    req = AttackRequest(model="efficientnet-lite0", device=device, image_key="sample:cat.jpg", attack=attack,
                        norm=norm, eps=eps, eps_text=eps_text, steps=12, alpha=alpha, alpha_text=alpha_text,
                        target=target, extra=tuple(sorted(extra.items())))
    line = cli_command(req, "my photos/cat 1.jpg")  # a path with a space must stay one argument
    args = build_parser().parse_args(shlex.split(line.replace("\\\n", " "))[3:])
    assert args.command == "attack" and args.model == "efficientnet-lite0" and args.image == "my photos/cat 1.jpg"
    assert (args.attack, args.norm, args.eps, args.alpha) == (attack, norm, eps, alpha)
    assert args.steps == (None if attack == "fgsm" else 12)
    assert args.target == (None if target is None else str(target))
    assert args.device == ("cpu" if device == "cpu" else "auto")
    if attack == "pgd":
        assert args.random_start == (None if extra["random_start"] else False)
        assert args.seed == extra["seed"]
    for name in ("mu", "phi", "delta", "accumulator"):
        assert getattr(args, name) == extra.get(name)
    assert args.stop_on_success == (False if extra.get("stop_on_success") is False else None)


def other_value(p):
    """A valid value of declared parameter ``p`` other than its default, read from the declaration."""
    if p.kind == "bool":
        return not p.default
    if p.kind == "choice":
        return [c for c in p.choices if c != p.default][0]
    if p.widget_values:
        return p.widget_values[-1]
    if p.high is not None:  # halfway to a bound
        end = p.high if p.default < p.high else p.low
        return p.check((p.default + end) // 2 if p.kind == "int" else (p.default + end) / 2)
    return p.check(p.default + 7 if p.kind == "int" else 2.5 * p.default + 0.125)


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("pick", ["defaults", "others"])
def test_every_attacks_cli_line_round_trips(attack, pick) -> None:
    """For every attack of the registry, every declared parameter of a request comes back from the CLI parser."""
    from advcore.cli.attack import param_values
    from ui.views.attack import AttackRequest, cli_command

    spec = ATTACKS[attack]
    values = {p.name: p.default if pick == "defaults" else other_value(p) for p in spec.params}
    extra = {k: v if spec.enabled(spec.param(k), values) else None for k, v in values.items()}  # as the page sends
    req = AttackRequest(model="fmnist-naive", device="auto", image_key="gallery:3", attack=attack, norm="linf",
                        eps=0.1, eps_text="0.1", steps=12, extra=tuple(sorted(extra.items())))
    args = build_parser().parse_args(shlex.split(cli_command(req, "fashion-mnist:3").replace("\\\n", " "))[3:])
    got, notes = param_values(args, attack)
    assert notes == [] and args.attack == attack and args.steps == (12 if spec.iterative else None)
    used = {k: v for k, v in extra.items() if v is not None}
    assert {k: got.get(k, spec.param(k).default) for k in used} == used
    assert set(got) <= set(used)


def test_the_page_draws_one_widget_per_declared_parameter() -> None:
    """Widgets come from the declarations: kind, key, label and default; seed is disabled without random start."""
    at = attack_page(sidebar_model="fmnist-naive")
    kinds = {"bool": "checkbox", "choice": "radio", "int": "number_input", "float": "number_input"}
    for name, spec in ATTACKS.items():
        at.selectbox(key="attack_name").set_value(name).run()
        assert not at.exception and not at.error
        for p in spec.params:
            kind = "select_slider" if p.widget_values else kinds[p.kind]
            w = getattr(at, kind)(key=p.key)
            assert w.label == p.title and w.value == p.default and not w.disabled, (name, p.name)
            if p.kind in ("float", "int") and not p.widget_values:
                low, high = p.widget_range or (p.low, p.high)
                assert (w.min, w.max) == (low, high)
        assert metrics(at)["Success"] in ("yes", "no")
    at.selectbox(key="attack_name").set_value("pgd").run()
    at.checkbox(key="attack_random_start").uncheck().run()
    assert at.number_input(key="attack_seed").disabled
    args = cli_args(at)
    assert args.random_start is False and args.seed is None
    assert "--seed" not in at.code[0].value


def test_heatmap_colour_range_starts_at_zero_and_covers_the_budget() -> None:
    """Float noise around eps (4 +- 1e-6) must not become the whole colour range."""
    import numpy as np

    from ui import plots

    rng = np.random.default_rng(0)
    delta = (4 / 255 + rng.normal(0, 1e-8, (8, 8, 3))) * rng.choice([-1, 1], (8, 8, 3))
    heat = plots.perturbation_heatmap(delta, cap=4.0)
    assert heat.colour_bar["encoding"]["x"]["scale"]["domain"] == [0, pytest.approx(4.0, abs=1e-5)]
    assert heat.image.shape == (8, 8, 3) and heat.image.dtype == np.uint8
    assert plots.share_at(delta, 4.0) == 1.0
    small = delta / 4  # an attack that used a quarter of the budget keeps the budget's scale
    assert plots.perturbation_heatmap(small, cap=4.0).top == 4.0
    assert plots.heatmap_top(small, None) == pytest.approx(1.0, abs=1e-5)  # L2: the largest change
    assert plots.heatmap_top(np.zeros((4, 4, 3)), 0.0) == 1.0  # unchanged: a 0-1 bar, never 0-0


def test_heat_colours_follow_the_colour_bar_scale() -> None:
    """The heat picture's colours are the colour bar's: plotly's own interpolation of the same stops is the
    reference, at 0, at the top, between stops and beyond the top (clipped)."""
    import numpy as np
    import plotly.colors

    from ui import plots

    z = np.array([[0.0, 1.0, 2.5, 3.3, 4.0, 9.0]])
    got = plots.heat_colours(z, 4.0)[0]
    scale = plotly.colors.make_colorscale(plots.HEAT_COLOURS)
    want = plotly.colors.sample_colorscale(scale, list(np.clip(z[0] / 4.0, 0, 1)), colortype="tuple")
    hexes = [plotly.colors.hex_to_rgb(c) for c in plots.HEAT_COLOURS]
    assert tuple(got[0]) == hexes[0] and tuple(got[4]) == tuple(got[5]) == hexes[-1]
    assert np.abs(got.astype(float) - 255.0 * np.array(want)).max() <= 1.0, (got, want)


def test_history_axes_show_whole_iterations() -> None:
    from ui import plots

    loss_fig, prob_fig = plots.history_figures([0.5, 3.0], [0.9, 0.1], "tabby", targeted=False)
    for fig in (loss_fig, prob_fig):
        x = fig["encoding"]["x"]
        assert x["axis"] == {"values": [0, 1], "format": "d"} and x["scale"]["domain"] == [-0.3, 1.3]
    assert [r["probability (%)"] for r in prob_fig["data"]["values"]] == [90.0, 10.0]
    loss_fig, _ = plots.history_figures([0.0] * 201, [0.5] * 201, "tabby", targeted=True)
    assert loss_fig["encoding"]["x"]["axis"]["values"] == list(range(0, 201, 20))  # 0, 20, ..., 200
    marked = plots.mark_step(loss_fig, 150)
    assert marked["layer"][:-2] == loss_fig["layer"] and marked["layer"][-2]["encoding"]["x"]["datum"] == 150
    assert marked["layer"][-1]["mark"]["align"] == "right"  # late steps: the label left of the line


def test_history_drops_the_repeated_point_of_an_attack_that_stopped() -> None:
    """AGR stopping on success: x_adv is the iterate the loop recorded last, so the charts must not repeat it."""
    from advcore import data
    from advcore.labs import attack as attack_lab
    from ui.views.attack import history

    cat = data.open_image(data.sample_path("cat.jpg"))
    res = attack_lab.attack_image("efficientnet-lite0", cat, "agr", eps=4 / 255, steps=10, device="cpu").result
    evals = int(res.grad_evals[0])
    assert res.loss_history.shape[1] == evals + 1
    loss, prob = history(res)
    assert len(loss) == len(prob) == evals  # the starting point and one point per step taken
    assert loss[-1] > loss[0] and prob[-1] < prob[0]
    full = attack_lab.attack_image("efficientnet-lite0", cat, "ifgsm", eps=1 / 255, steps=3, device="cpu").result
    assert len(history(full)[0]) == 4  # no stop on success: every point kept


# --------------------------------------------------------------------------- Fashion-MNIST models

GALLERY_KEY = "sidebar_gallery_fashion-mnist"


def test_fashion_mnist_gallery_image_is_attacked(tmp_path: Path) -> None:

    import numpy as np
    import torch

    from advcore import data, datasets, models
    from advcore.cli import framework as cli

    at = attack_page(sidebar_model="fmnist-naive", **{GALLERY_KEY: 3})
    classes = models.class_names("fmnist-naive")
    x, y = datasets.load_subset(50)
    gallery = at.selectbox(key=GALLERY_KEY)
    assert gallery.label == "Test image" and len(gallery.options) == 50
    assert gallery.options[:3] == [f"#{i}: {classes[int(y[i])]}" for i in range(3)]
    assert f"dataset label: {classes[int(y[3])]}." in " ".join(c.value for c in at.sidebar.caption)
    assert at.markdown[0].value.startswith("Pick a test image and an attack")
    eps = at.slider(key="attack_eps_linf_px")
    assert (eps.label, eps.value, eps.min, eps.max) == ("eps (pixel units)", 0.1, 0.0, 0.3)

    # The clean prediction is the model's own on the test image's exact pixels.
    model = models.load("fmnist-naive", device="cpu")
    with torch.no_grad():
        label = int(model(x[3:4].float() / 255).argmax(1))
    preds = predictions(at)
    assert set(preds) == {"Clean", "Adversarial"}
    assert preds["Clean"][0] == classes[label]
    assert f"Dataset label: {classes[int(y[3])]}" in [m.value for m in at.markdown]
    m = metrics(at)
    assert m["L-inf"] == "0.10000 (25.50/255)" and m["Gradient evaluations"] == "1"
    captions = [c for image in at.get("image") for c in image.captions]
    assert "Clean: the 28x28 image the model sees (enlarged)" in captions
    assert not at.error

    # The command line reproduces the page: --image fashion-mnist:3 reads the same test image.
    args = cli_args(at)
    assert (args.model, args.image, args.attack, args.eps) == ("fmnist-naive", "fashion-mnist:3", "fgsm", 0.1)
    assert "Download the test image" in [b.proto.label for b in at.get("download_button")]
    assert "`--image fashion-mnist:3` is the same test image" in caption_text(at)
    from ui.frame import gallery_image

    image, true_label = gallery_image("fashion-mnist", 3)  # what the download button holds, as a PNG
    assert true_label == int(y[3]) and (np.asarray(image) == x[3, 0].numpy()).all()
    out = tmp_path / "metrics.json"
    assert cli.main(["attack", "--model", "fmnist-naive", "--image", "fashion-mnist:3", "--attack", "fgsm",
                     "--eps", "0.1", "--json", str(out), "-q"]) == 0
    result = json.loads(out.read_text())
    assert result["clean_name"] == preds["Clean"][0] and result["adv_name"] == preds["Adversarial"][0]
    # Both paths see exactly the subset's pixels (grey stays grey: no RGB weighting rounding).
    assert torch.equal(data.prepare(cli.load_image("fashion-mnist:3"), (1, 28, 28)), x[3:4].float() / 255)


def test_fashion_mnist_defaults_and_uploads() -> None:
    at = attack_page(sidebar_model="fmnist-naive", attack_targeted=True)
    target = at.selectbox(key="attack_target_fashion-mnist")
    assert target.value == 1 and target.options[1] == "1: Trouser"  # a Fashion-MNIST class, not ImageNet's 859
    assert "--target 1" in at.code[0].value
    # An upload is converted to a 28x28 greyscale image and attacked like a test image.
    at.radio(key="sidebar_gallery_source").set_value("Upload").run()
    at.file_uploader(key="sidebar_upload_small").set_value(("chelsea.png", _png_bytes(), "image/png")).run()
    assert not at.exception and not at.error
    assert set(predictions(at)) == {"Clean", "Adversarial"}
    assert "--image upload.png" in at.code[0].value
    assert not any(m.value.startswith(("True class:", "Dataset label:")) for m in at.markdown)


def test_a_target_equal_to_the_clean_prediction_is_refused_on_the_page() -> None:
    """Gallery image 4 is a trouser the model calls Trouser; the default target is Trouser: never a 'success'."""
    at = attack_page(sidebar_model="fmnist-naive", **{GALLERY_KEY: 4, "attack_targeted": True,
                                                       "attack_target_fashion-mnist": 1, "attack_name": "fgsm"})
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "already the model's prediction" in errors
    assert not any("succeeds" in s.value for s in at.success)


def test_an_attack_that_turns_a_wrong_answer_into_the_dataset_label_is_not_called_a_success() -> None:
    """fmnist-pgd calls test image 0 (a Shirt) a Bag; FGSM at 0.1 turns the answer into Shirt, the correct label.
    The page once said "True class: Shirt", plotted "Probability of the true class (Bag)" and called the correct
    answer a success ("the attack still succeeds")."""
    from advcore import models
    from ui.frame import gallery_image
    from ui.views import attack as attack_view

    at = attack_page(sidebar_model="fmnist-pgd", **{GALLERY_KEY: 0})
    assert not at.exception and not at.error
    shown = [m.value for m in at.markdown]
    preds = predictions(at)
    assert preds["Clean"][0] == "Bag" and preds["Adversarial"][0] == "Shirt", preds
    assert "Dataset label: Shirt" in shown
    assert not any("True class" in v for v in shown)
    assert "it predicts Bag, the dataset label is Shirt" in caption_text(at)
    assert "away from the model's prediction (Bag), not from the label" in caption_text(at)

    assert not at.success  # a correct answer is never a success
    warnings = " ".join(w.value for w in at.warning)
    assert ("The attack changed the model's answer from Bag to Shirt, which is the correct label: this is not a "
            "successful attack on a correct answer.") in warnings, warnings
    assert not any("succeeds" in e.value or "fools" in e.value for e in [*at.warning, *at.info])

    titles = [spec["title"] for spec in vega_specs(at) if "title" in spec]
    assert "Probability of the clean prediction (Bag)" in titles, titles
    assert "Cross-entropy to the clean prediction" in titles
    assert not any("true" in t.lower() for t in titles)
    assert "the probability of the model's clean prediction collapsing" in caption_text(at)
    assert "Notice where the probability of the model's clean prediction 'Bag' (orange) goes" in caption_text(at)
    page = " ".join(c.value for c in at.main.caption)  # the sidebar says "dataset label: Shirt"
    assert "true-class" not in page and "true class" not in page
    m = metrics(at)
    assert m["Success"] == "yes"  # advcore's flag: the prediction moved off the clean one ...
    meaning = dict(zip(at.table[0].value["Metric"], at.table[0].value["Meaning"], strict=True))
    assert meaning["Success"] == "the float image changes the model's clean prediction"  # ... and says only that

    # The downloaded record keeps advcore's names and adds the dataset label next to the clean prediction.
    image, label = gallery_image("fashion-mnist", 0)
    res = attack_view.run(attack_view.AttackRequest(model="fmnist-pgd", device="cpu", image_key="fashion-mnist:0",
                                                    attack="fgsm", norm="linf", eps=0.1, eps_text="0.1", steps=10),
                          image)
    rec = attack_view.record(res.metrics, "Shirt")
    classes = models.class_names("fmnist-pgd")
    assert (rec["dataset_label"], rec["dataset_label_name"]) == (label, "Shirt") == (classes.index("Shirt"), "Shirt")
    assert (rec["clean_name"], rec["adv_name"], rec["success"]) == ("Bag", "Shirt", True)
    assert attack_view.record(res.metrics, None) == res.metrics
    assert "dataset_label" not in res.metrics


def test_the_pages_adversarial_png_uploaded_back_keeps_its_label() -> None:
    """Issue 11, item 2: page -> adversarial PNG -> upload -> the same label. The PNG is 224x224, the model's
    input size, so it goes in unchanged (a resize and crop would wipe out the perturbation)."""
    at = attack_page()
    (_, res), = list(at.session_state["_advlab_attack_results"].items())  # what the download button serves
    assert Image.open(io.BytesIO(res.png)).size == (224, 224)
    assert res.adversarial_8bit.name != res.clean.name  # the PNG itself fools the model (FGSM 4/255, espresso)
    again = attack_page(upload=("adversarial.png", res.png, "image/png"))
    assert not again.error
    assert predictions(again)["Clean"] == (res.adversarial_8bit.name, float(f"{100 * res.adversarial_8bit.prob:.1f}"))


def test_a_run_that_computes_leaves_every_element_where_a_cached_run_puts_it() -> None:
    """A run's Cancel, progress bar and place in line sit in one placeholder that every page run makes, so a page
    run that computed the attack and one that took it from the cache draw the same elements at the same places
    (the browser then updates them instead of drawing them anew)."""
    at = attack_page(attack_name="ifgsm", attack_steps=3, attack_eps_linf=7)  # small: runs on load, new eps
    computed = [(i, type(node).__name__) for i, node in at.main.children.items()]
    at.select_slider(key="attack_amplification").set_value(5).run()  # a view change: the cached result
    assert not at.exception
    cached = [(i, type(node).__name__) for i, node in at.main.children.items()]
    assert computed == cached and len(cached) > 10, (computed, cached)
