"""The command line (python -m advcore): listings, the attack command end to end, and its error paths."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_util import run_cli
from PIL import Image

from advcore import attacks, data, models
from advcore.cli import framework as cli
from advcore.errors import AdvlabError
from advcore.labs import attack as attack_lab
from advcore.predictions import predict

ROOT = Path(__file__).resolve().parents[2]
MODEL = "efficientnet-lite0"
EPS = 4 / 255
REQUIRED_KEYS = {
    "model", "attack", "norm", "eps", "steps", "clean_label", "clean_confidence", "adv_label", "adv_confidence",
    "success", "success_8bit", "linf", "l2", "cosine_similarity", "amp", "ssim", "psnr", "seconds",
}


def assert_one_line_error(code: int, out: str, err: str) -> None:
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("advcore: error: ")


def clean_input() -> torch.Tensor:
    """The bundled cat as Lite0 sees it."""
    return data.prepare(data.open_image(data.sample_path("cat")), models.get_spec(MODEL).input_size)


def predict_png(path: Path) -> int:
    """The label Lite0 gives to a written PNG, read back from disk."""
    with Image.open(path) as im:
        x = data.to_tensor(im)
    with torch.no_grad():
        return int(models.load(MODEL, "cpu")(x).argmax(1))


# --------------------------------------------------------------------------- listings


def test_models_lists_the_registry():
    code, out, err = run_cli(["models"])
    assert code == 0, err
    for name, size in (("efficientnet-lite0", 224), ("efficientnet-lite1", 240), ("efficientnet-lite2", 260)):
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert f"{size}x{size}" in line and "imagenet" in line.lower()

    code, out, err = run_cli(["models", "--json"])
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"} <= set(rows)
    assert rows[MODEL]["input_size"] == [3, 224, 224]
    assert rows[MODEL]["num_classes"] == 1000
    assert rows[MODEL]["title"] and rows[MODEL]["dataset"]


def test_samples_lists_the_bundled_images():
    code, out, err = run_cli(["samples", "--json"])
    assert code == 0, err
    names = {r["name"] for r in json.loads(out)}
    assert "cat" in names
    assert all(r["licence"] for r in json.loads(out))


def test_help_exits_zero():
    code, out, _ = run_cli(["attack", "--help"])
    assert code == 0
    assert "--eps" in out and "--no-random-start" in out


# --------------------------------------------------------------------------- attack


@pytest.fixture(scope="module")
def fgsm_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("fgsm")
    png, js = d / "adv.png", d / "metrics.json"
    code, out, err = run_cli(["attack", "--model", MODEL, "--image", "cat", "--attack", "fgsm", "--eps", "4/255",
                              "--device", "cpu", "--out", str(png), "--json", str(js)])
    return code, out, err, png, js


def test_attack_fgsm_writes_png_and_json(fgsm_run):
    code, out, err, png, js = fgsm_run
    assert code == 0, err
    assert "Traceback" not in err
    with Image.open(png) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (224, 224)
    m = json.loads(js.read_text())
    assert REQUIRED_KEYS <= set(m)
    assert m["model"] == MODEL and m["attack"] == "fgsm" and m["norm"] == "linf" and m["steps"] == 1
    assert m["eps"] == pytest.approx(EPS, abs=1e-12)
    assert isinstance(m["success"], bool) and isinstance(m["success_8bit"], bool)
    assert 0 < m["linf"] <= EPS + 1e-6
    assert 0 <= m["clean_confidence"] <= 1 and 0 <= m["adv_confidence"] <= 1
    assert m["clean_label"] == predict(models.load(MODEL, "cpu"), clean_input(),
                                                  models.class_names(MODEL))[0].label
    assert m["success"] == (m["adv_label"] != m["clean_label"])
    # Human summary on stdout, one final line on stderr (no progress bar: stderr is not a TTY).
    assert "wrote" in out and str(png) in out
    assert err.splitlines()[-1].startswith("advcore: fgsm on efficientnet-lite0: ")


def test_attack_png_is_exactly_what_was_measured(fgsm_run):
    code, _, err, png, js = fgsm_run
    assert code == 0, err
    m = json.loads(js.read_text())
    label = predict_png(png)
    assert label == m["adv_8bit_label"]
    if m["success_8bit"]:
        assert label != m["clean_label"]
        if m["adv_label"] == m["adv_8bit_label"]:
            assert label == m["adv_label"]
    # The PNG is the attacked image in the model's geometry: within eps of the clean input, in whole 8-bit levels.
    with Image.open(png) as im:
        x8 = data.to_tensor(im)
    diff_levels = (x8 - clean_input()).abs().max().item() * 255
    assert 0 < diff_levels <= 4 + 1e-3


def test_attack_pgd_seed_is_reproducible(tmp_path):
    outs = []
    for i in range(2):
        png = tmp_path / f"adv{i}.png"
        code, out, err = run_cli(["attack", "--model", MODEL, "--image", "cat", "--attack", "pgd", "--eps", "0.0157",
                                  "--steps", "2", "--seed", "7", "--device", "cpu", "--out", str(png), "--json", "-"])
        assert code == 0, err
        outs.append((png.read_bytes(), json.loads(out)))
    (png0, m0), (png1, m1) = outs
    assert png0 == png1
    assert m0["steps"] == 2 and m0["seed"] == 7 and m0["random_start"] is True
    assert m0["adv_label"] == m1["adv_label"] and m0["linf"] == m1["linf"]
    assert m0["linf"] <= 0.0157 + 1e-6


def test_attack_agr_flags_and_target_reach_advcore(tmp_path):
    code, out, err = run_cli(["attack", "--model", MODEL, "--image", "cat", "--attack", "AGR", "--eps", "8/255",
                              "--steps", "3", "--no-stop-on-success", "--accumulator", "sign", "--phi", "2",
                              "--target", "tabby", "--mu", "0.5", "--device", "cpu", "--json", "-"])
    assert code == 0, err
    m = json.loads(out)
    assert m["attack"] == "agr" and m["accumulator"] == "sign" and m["phi"] == 2.0
    assert m["targeted"] is True and m["target"] == 281 and m["target_name"] == "tabby"
    assert m["grad_evals"] == 3  # --no-stop-on-success: all three steps ran
    assert m["success"] == (m["adv_label"] == 281)
    assert "advcore: note: --mu does not apply to agr; ignored." in err.splitlines()


def test_attack_and_eval_flags_come_from_the_declarations():
    """One flag per declared attack parameter, its help and defaults from the declaration, in both commands."""
    for command, skip in (("attack", ()), ("eval", ("seed",))):
        code, out, err = run_cli([command, "--help"])
        assert code == 0, err
        for p in attacks.declared_params().values():
            if p.name not in skip:
                assert p.flag in out and (p.kind != "bool" or "--no-" + p.flag[2:] in out), (command, p.flag)
    code, out, _ = run_cli(["attack", "--help"])
    text = " ".join(out.split())
    assert "MI-FGSM: momentum decay of Eq. 6 (default: 1)" in text
    assert "(default: no for I-FGSM, PGD, MI-FGSM, APGD; yes for AGR, Square Attack)" in text


def test_eval_takes_the_attack_parameters():
    code, out, err = run_cli(["eval", "--model", "fmnist-naive", "--n", "10", "--eps", "0.1", "--attack", "mifgsm",
                              "--steps", "2", "--mu", "0.5", "--phi", "2", "--device", "cpu", "--json", "-"])
    assert code == 0, err
    result = json.loads(out)
    assert result["attack"] == "mifgsm" and result["params"] == {"mu": 0.5}
    assert "advcore: note: --phi does not apply to mifgsm; ignored." in err.splitlines()
    code, out, err = run_cli(["eval", "--model", "fmnist-naive", "--attack", "mifgsm", "--mu", "-1"])
    assert_one_line_error(code, out, err)
    assert "mu must be between 0 and 1" in err


def test_image_from_stdin(monkeypatch):
    payload = data.sample_path("cat").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
    im = cli.load_image("-")
    assert im.mode == "RGB" and im.size == data.open_image(payload).size


# --------------------------------------------------------------------------- value parsing


@pytest.mark.parametrize(("text", "value"), [
    ("4/255", 4 / 255), ("8/255", 8 / 255), ("0.5", 0.5), ("1e-2", 0.01), ("0.0157", 0.0157), (" 4 / 255 ", 4 / 255),
    ("0", 0.0), (".5", 0.5), ("+2/4", 0.5), ("1.5e-1/3", 0.05),
])
def test_parse_eps_accepts(text, value):
    assert cli.parse_eps(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text", [
    "", "abc", "4/0", "-1", "-4/255", "4/-255", "nan", "inf", "-inf", "NaN/255", "1e999", "4/255/2", "4//255",
    "0x10", "1,5", "4/", "/255", "1e", "four",
])
def test_parse_eps_refuses(text):
    with pytest.raises(AdvlabError, match="eps"):
        cli.parse_eps(text)


def test_parse_eps_messages_and_zero():
    with pytest.raises(AdvlabError, match="finite"):
        cli.parse_eps("nan")
    with pytest.raises(AdvlabError, match="at least 0"):
        cli.parse_eps("-1")
    with pytest.raises(AdvlabError, match="alpha must be positive"):
        cli.parse_eps("0", name="alpha", allow_zero=False)


def test_parse_steps_bounds():
    assert cli.parse_steps("1") == 1 and cli.parse_steps(str(cli.MAX_STEPS)) == cli.MAX_STEPS
    for bad in ("0", "-3", "1001", "100000", "2.5", "ten", ""):
        with pytest.raises(AdvlabError, match="steps"):
            cli.parse_steps(bad)
    assert cli.MAX_STEPS == attacks.MAX_STEPS


# --------------------------------------------------------------------------- error paths


def _base(*extra: str) -> list[str]:
    return ["attack", "--model", MODEL, "--image", "cat", "--attack", "fgsm", "--device", "cpu", *extra]


def _error_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    text, a_file = tmp_path / "notes.png", tmp_path / "a_file"
    return {
        "unknown model": (["attack", "--model", "efficientnet-lite9", "--image", "cat", "--eps", "4/255"],
                          "Did you mean"),
        "unknown class": (_base("--eps", "4/255", "--target", "no such animal"), "Unknown class"),
        "class index out of range": (_base("--eps", "4/255", "--target", "1000"), "out of range"),
        "negative eps": (_base("--eps", "-1"), "eps must be at least 0"),
        "garbage eps": (_base("--eps", "four"), "eps must be a number"),
        "nan eps": (_base("--eps", "nan"), "finite"),
        "linf eps over 1": (_base("--eps", "2"), "exceeds the pixel range"),
        "steps 0": (_base("--eps", "4/255", "--steps", "0"), "steps must be between 1 and 1000"),
        "steps 100000": (_base("--eps", "4/255", "--steps", "100000"), "steps must be between 1 and 1000"),
        "not an image": (["attack", "--model", MODEL, "--image", str(text), "--eps", "4/255"],
                         "not an image that can be read"),
        "missing file": (["attack", "--model", MODEL, "--image", str(tmp_path / "missing.png"), "--eps", "4/255"],
                         "does not exist"),
        "unknown attack": (_base("--eps", "4/255", "--attack", "no-such-attack"), "Unknown attack"),
        "out not png": (_base("--eps", "4/255", "--out", str(tmp_path / "adv.jpg")), ".png"),
        "out under a file": (_base("--eps", "4/255", "--out", str(a_file / "adv.png")), "is not a directory"),
        "out is a directory": (_base("--eps", "4/255", "--out", str(tmp_path)), "is a directory"),
        "same out and json": (_base("--eps", "4/255", "--out", str(tmp_path / "x.png"),
                                    "--json", str(tmp_path / "x.png")), "same file"),
        "unknown flag": (_base("--eps", "4/255", "--bogus"), "unrecognized arguments"),
        "missing eps": (_base(), "--eps"),
        "no command": ([], "COMMAND"),
        "bad accumulator": (_base("--eps", "4/255", "--accumulator", "both"), "invalid choice"),
        "negative mu": (_base("--eps", "4/255", "--mu", "-1"), "mu must be between 0 and 1"),
        "zero phi": (_base("--eps", "4/255", "--phi", "0"), "phi must be positive"),
        "nan delta": (_base("--eps", "4/255", "--delta", "nan"), "delta must be a number"),
        "seed too large": (_base("--eps", "4/255", "--seed", str(2**31)), "seed must be between 0 and 2147483647"),
    }


@pytest.mark.parametrize("case", list(_error_cases(Path("/nonexistent"))))
def test_errors_are_one_line_exit_2(case, tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n" * 10)  # a text file named .png
    (tmp_path / "a_file").write_text("x")
    argv, expected = _error_cases(tmp_path)[case]
    before = set(tmp_path.rglob("*"))
    code, out, err = run_cli(argv)
    assert_one_line_error(code, out, err)
    assert expected in err
    assert set(tmp_path.rglob("*")) == before  # nothing written


def test_keyboard_interrupt_exits_130_and_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(attack_lab, "attack_image", interrupted)
    code, out, err = run_cli(_base("--eps", "4/255", "--out", str(tmp_path / "new" / "adv.png")))
    assert code == 130
    assert err.splitlines() == ["advcore: interrupted"]
    assert list(tmp_path.iterdir()) == []


def test_unexpected_error_is_one_line_exit_1(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(attack_lab, "attack_image", broken)
    code, out, err = run_cli(_base("--eps", "4/255"))
    assert code == 1
    assert err.splitlines() == [
        "advcore: internal error: RuntimeError: boom second line (rerun with --debug for details)"
    ]
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["--debug", *_base("--eps", "4/255")])


def test_write_file_creates_parents_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "b" / "out.png"
    cli.write_file(cli.output_path(str(target), flag="--out", suffix=".png"), b"payload")
    assert target.read_bytes() == b"payload"
    assert [p.name for p in target.parent.iterdir()] == ["out.png"]


# --------------------------------------------------------------------------- a real process


def test_python_m_advcore_end_to_end(tmp_path):
    png, js = tmp_path / "new" / "dir" / "adv.png", tmp_path / "metrics.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "advcore", "attack", "--model", MODEL, "--image", str(data.sample_path("cat")),
         "--attack", "fgsm", "--eps", "8/255", "--device", "cpu", "--out", str(png), "--json", str(js)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("advcore: fgsm on efficientnet-lite0: ")
    m = json.loads(js.read_text())
    assert REQUIRED_KEYS <= set(m)
    assert m["linf"] <= 8 / 255 + 1e-6
    assert predict_png(png) == m["adv_8bit_label"]
    assert f"{m['clean_label']} {m['clean_name']}" in proc.stdout


def test_models_json_gives_each_models_role():
    code, out, err = run_cli(["models", "--json"])
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["fmnist-pgd"]["role"] == "pgd" and rows[MODEL]["role"] == "naive"


def test_the_adversarial_png_read_back_is_the_adversarial_image(fgsm_run, tmp_path):
    """attack --out adv.png, then attack --image adv.png --eps 0: the clean label is the PNG's adversarial label
    (a 224x224 image goes in unchanged, so the resize and crop no longer wipe out the perturbation)."""
    code, _, err, png, js = fgsm_run
    assert code == 0, err
    m = json.loads(js.read_text())
    again = tmp_path / "again.json"
    code, _, err = run_cli(["attack", "--model", MODEL, "--image", str(png), "--attack", "fgsm", "--eps", "0",
                            "--device", "cpu", "--json", str(again)])
    assert code == 0, err
    m2 = json.loads(again.read_text())
    assert m2["clean_label"] == m["adv_8bit_label"]
    assert m2["clean_confidence"] == pytest.approx(
        float(models.load(MODEL, "cpu")(data.to_tensor(Image.open(png))).softmax(1).max()), abs=1e-5)


def test_each_lab_command_is_also_reachable_by_the_labs_name():
    """One name per lab: `defense`, `poisoning` and `training` are the same commands as defend, poison and train."""
    from advcore.cli.framework import COMMANDS, build_parser

    build_parser()
    assert COMMANDS["defend"].aliases == ("defense",) and COMMANDS["poison"].aliases == ("poisoning",)
    assert COMMANDS["train"].aliases == ("training",)
    code, out, err = run_cli(["poisoning", "lf", "--C", "0"])
    assert code == 2 and "argument --C" in err
