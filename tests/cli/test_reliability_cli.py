"""Output files a person names on the command line: special files are written into, never replaced, and a
directory that takes no files is refused before any work starts (for root too)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from cli_util import run_cli

from advcore.cli import framework as cli
from advcore.errors import AdvlabError
from advcore.files import check_output, write_bytes
from advcore.labs import attack as attack_lab
from advcore.labs import training

QUICK_ATTACK = ["attack", "--model", "fmnist-naive", "--image", "fashion-mnist:0", "--attack", "fgsm", "--eps", "0.1",
                "-q"]


def test_json_to_dev_null_leaves_dev_null_a_device():
    before = os.stat("/dev/null")
    code, _, err = run_cli([*QUICK_ATTACK, "--json", "/dev/null"])
    assert code == 0, err
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_json_into_a_fifo_is_written_through_the_fifo(tmp_path: Path):
    fifo = tmp_path / "metrics.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code, _, err = run_cli([*QUICK_ATTACK, "--json", str(fifo)])
    reader.join(timeout=60)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert json.loads(received[0])["model"] == "fmnist-naive"


def test_a_symlink_keeps_pointing_at_its_replaced_target(tmp_path: Path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    code, _, err = run_cli([*QUICK_ATTACK, "--json", str(link)])
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert json.loads(target.read_text())["attack"] == "fgsm"


def test_a_symlink_to_a_device_is_written_into(tmp_path: Path):
    link = tmp_path / "out.json"
    link.symlink_to("/dev/null")
    write_bytes(link, b"{}")
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_a_directory_that_takes_no_files_is_refused_before_any_work(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the attack ran although its output could not be written")

    monkeypatch.setattr(attack_lab, "attack_image", never)
    code, out, err = run_cli([*QUICK_ATTACK, "--json", "/proc/advlab-x.json"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "does not take new files" in err


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_train_into_proc_is_refused_before_training(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("training started although its files could not be written")

    monkeypatch.setattr(training, "train", never)
    code, out, err = run_cli(["train", "--recipe", "standard", "--dataset", "digits", "--out-dir", "/proc/advlab-x",
                              "-q"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("advcore: error: --out-dir")


def test_check_output_refuses_a_directory_and_a_wrong_suffix(tmp_path: Path):
    with pytest.raises(AdvlabError, match="is a directory"):
        check_output(tmp_path, what="--json")
    with pytest.raises(AdvlabError, match="must name a .png file"):
        check_output(tmp_path / "x.jpg", what="--out", suffix=".png")
    assert check_output(tmp_path / "new" / "deeper" / "x.json", what="--json") == tmp_path / "new" / "deeper" / "x.json"


# --------------------------------------------------------------------------- model cards a person hands in


def _card_dir(tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the shipped fmnist-naive card and checkpoint in ``tmp_path``."""
    from advcore.paths import MODELS_DIR

    tmp_path.mkdir(parents=True, exist_ok=True)
    card = json.loads((MODELS_DIR / "fmnist-naive.json").read_text())
    (tmp_path / card["weights"]).write_bytes((MODELS_DIR / card["weights"]).read_bytes())
    return tmp_path, card


BAD_CARDS = {
    "weights outside the folder": (lambda c: {**c, "weights": "../fmnist-naive.pt"}, "file name in the card's own"),
    "absolute weights path": (lambda c: {**c, "weights": "/etc/passwd"}, "file name in the card's own"),
    "a list, not an object": (lambda c: [c], "not an object"),
    "a number": (lambda c: 7, "not an object"),
    "absurd hidden size": (lambda c: {**c, "architecture": {**c["architecture"], "hidden": 1e9}}, "'hidden'"),
    "classes not matching the output": (lambda c: {**c, "classes": c["classes"][:5]}, "outputs 10 classes"),
    "duplicate class names": (lambda c: {**c, "classes": ["a"] * 10}, "distinct class names"),
    "huge input": (lambda c: {**c, "input_size": [1, 100000, 100000]}, "height and width"),
    "nan mean": (lambda c: {**c, "mean": [float("nan")]}, "finite numbers"),
    "zero std": (lambda c: {**c, "std": [0]}, "positive"),
    "unknown architecture": (lambda c: {**c, "architecture": {"kind": "resnet"}}, "unknown architecture"),
    "missing key": (lambda c: {k: v for k, v in c.items() if k != "classes"}, "missing classes"),
}


@pytest.mark.parametrize("case", list(BAD_CARDS))
def test_a_bad_model_card_exits_2_with_one_line(tmp_path: Path, case: str):
    folder, card = _card_dir(tmp_path / "cards")
    edit, message = BAD_CARDS[case]
    path = folder / "mine.json"
    path.write_text(json.dumps(edit(card)))
    code, out, err = run_cli(["eval", "--model", str(path), "--n", "10", "--eps", "0", "-q"])
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and message in err, err


def test_a_good_copied_card_still_evaluates(tmp_path: Path):
    folder, card = _card_dir(tmp_path)
    path = folder / "mine.json"
    path.write_text(json.dumps(card))
    code, out, err = run_cli(["eval", "--model", str(path), "--n", "20", "--eps", "0", "--json", "-", "-q"])
    assert code == 0, err
    assert json.loads(out)["accuracy"][0] > 0.5


@pytest.mark.parametrize("norm, radii, message", [("linf", "2", "exceeds the pixel range"),
                                                  ("l2", "30", "largest distance between two images")])
def test_geometry_radii_beyond_the_pixel_range_exit_2(norm: str, radii: str, message: str):
    code, out, err = run_cli(["geometry", "isotropy", "--model", "fmnist-naive", "--image", "fashion-mnist:0",
                              "--norm", norm, "--radii", radii, "--T", "5", "-q"])
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


# --------------------------------------------------------------------------- budgets that would overflow


@pytest.mark.parametrize("extra, message", [
    (["--norm", "l2", "--eps", "1e20"], "eps must be at most 1000"),
    (["--norm", "l2", "--eps", "100"], "largest distance between two images"),  # a 28x28 image: at most 28
    (["--norm", "linf", "--eps", "1e39"], "eps must be at most 1000"),
    (["--norm", "linf", "--eps", "2"], "exceeds the pixel range"),
    (["--norm", "l2", "--eps", "1", "--alpha", "1e39"], "alpha must be at most"),
    (["--eps", "0.1", "--attack", "mifgsm", "--mu", "1e308"], "mu"),
])
def test_budgets_that_would_overflow_exit_2(extra: list[str], message: str):
    argv = ["attack", "--model", "fmnist-naive", "--image", "fashion-mnist:0", "--attack", "pgd", "-q", *extra]
    code, out, err = run_cli(argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_a_target_equal_to_the_clean_class_is_refused_not_called_a_success():
    from advcore import datasets, models

    clean = int(models.load("fmnist-naive", "cpu")(datasets.to_float(datasets.load_subset()[0][:1])).argmax(1))
    code, out, err = run_cli(["attack", "--model", "fmnist-naive", "--image", "fashion-mnist:0", "--attack", "fgsm",
                              "--eps", "0.1", "--target", str(clean), "-q"])
    assert code == 2 and out == "" and "already the model's prediction" in err, err


# --------------------------------------------------------------------------- every typed flag of every command

BAD_VALUES = ("nan", "inf", "-inf", "1e400", "abc", "", "0x10", "1e308")
NAME_LISTS = {"--models", "--targets"}  # names, checked against the registry once the command runs


def typed_flags() -> list[tuple[str, str]]:
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, a.option_strings[-1]) for name, sp in sub.choices.items() for a in sp._actions
            if a.type is not None and a.option_strings and a.option_strings[-1] not in NAME_LISTS]


def test_every_typed_flag_refuses_every_bad_value_with_one_line(monkeypatch):
    """Each typed flag of each command, given nan, inf, 1e400, text, an empty string, hex or 1e308: refused by
    argparse with one line naming the flag (1e308 is refused as out of range, never used). ``main`` parses with
    one parser built once here (building it 1,200 times took most of this test's 14 s)."""
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    flags = typed_flags()
    assert len(flags) >= 60
    mishandled = []
    for command, flag in flags:
        for value in BAD_VALUES:
            code, out, err = run_cli([command, f"{flag}={value}"])
            if code != 2 or out or err.count("\n") != 1 or f"argument {flag}" not in err or "Traceback" in err:
                mishandled.append((command, flag, value, err.strip()[:80]))
    assert not mishandled, mishandled
