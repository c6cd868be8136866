"""``python -m advcore eval`` and ``train``: eps ranges, JSON output, error exits."""

from __future__ import annotations

import json

import pytest
import torch
from cli_util import run_cli

from advcore import datasets, models
from advcore.cli import framework as cli
from advcore.errors import AdvlabError
from advcore.labs import training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_one_line_error(code: int, out: str, err: str, fragment: str) -> None:
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("advcore: error: "), err
    assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------- eps lists


def test_eps_range_includes_its_end_exactly():
    values = cli.parse_eps_list("0:0.3:0.03")
    assert len(values) == 11 and values[0] == 0 and values[-1] == 0.3
    assert values[1] == 0.03 and values[7] == 0.21  # no 0.21000000000000002
    assert cli.parse_eps_list("0:0.1:0.03") == [0, 0.03, 0.06, 0.09]
    assert cli.parse_eps_list("0.1:0.1:0.05") == [0.1]
    assert cli.parse_eps_list("0:8/255:2/255") == pytest.approx([0, 2 / 255, 4 / 255, 6 / 255, 8 / 255])
    assert cli.parse_eps_list("0,0.05,0.1") == [0, 0.05, 0.1]
    assert cli.parse_eps_list(" 4/255 ") == [4 / 255]


@pytest.mark.parametrize("text, fragment", [
    ("0:0.3", "start:stop:step"),
    ("0.3:0:0.1", "ends before it starts"),
    ("0:0.3:0", "positive"),
    ("0:2:0.5", "exceeds 1"),
    ("a,b", "must be a number"),
    ("-0.1", "at least 0"),
    ("0.1,0.1", "twice"),
    ("0:1:0.0001", "at most"),
    ("", "at least one value"),
])
def test_bad_eps_lists_are_refused(text, fragment):
    with pytest.raises(AdvlabError, match=fragment):
        cli.parse_eps_list(text)


def test_strengths_parser():
    assert cli.parse_strengths("auto") == "auto"
    assert cli.parse_strengths("0.05,0.1,0.15") == [0.05, 0.1, 0.15]
    with pytest.raises(AdvlabError, match="positive"):
        cli.parse_strengths("0,0.1")
    with pytest.raises(AdvlabError, match="exceeds 1"):
        cli.parse_strengths("1.5")


# --------------------------------------------------------------------------- eval


@pytest.fixture(scope="module")
def naive_fgsm(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "sub" / "naive.json"
    code, out, err = run_cli(["eval", "--model", "fmnist-naive", "--attack", "fgsm", "--eps", "0:0.3:0.03",
                              "--n", "200", "--device", "cpu", "--json", str(path)])
    return code, out, err, path


def test_eval_writes_accuracy_per_eps(naive_fgsm):
    code, out, err, path = naive_fgsm
    assert code == 0, err
    r = json.loads(path.read_text())
    for key in ("model", "dataset", "data", "attack", "n", "eps", "accuracy", "clean_accuracy", "average_accuracy",
                "seconds", "steps"):
        assert key in r
    assert r["model"] == "fmnist-naive" and r["attack"] == "fgsm" and r["n"] == 200 and r["steps"] == 1
    assert r["eps"] == cli.parse_eps_list("0:0.3:0.03")
    assert len(r["accuracy"]) == 11 and all(0 <= a <= 1 for a in r["accuracy"])
    x, y = datasets.load_subset(200)
    assert r["clean_accuracy"] == r["accuracy"][0]
    assert r["accuracy"][0] == pytest.approx(training.accuracy(models.load("fmnist-naive", "cpu"), x, y), abs=1e-9)
    acc = r["accuracy"]
    assert all(b <= a + 0.01 for a, b in zip(acc, acc[1:], strict=False)), acc  # FGSM: non-increasing, up to noise
    assert acc[0] > 0.8 and acc[-1] < 0.2
    # Table on stdout, one summary line on stderr.
    assert "0.03" in out and "average" in out and str(path) in out
    assert err.splitlines()[-1].startswith("advcore: eval fgsm on fmnist-naive: 11 strength(s), 200 images")


def test_eval_json_to_stdout_and_pgd_is_stronger_than_fgsm():
    code, out, err = run_cli(["eval", "--model", "fmnist-fgsm", "--attack", "pgd", "--eps", "0.1", "--steps", "5",
                              "--n", "100", "--json", "-", "--device", "cpu"])
    assert code == 0, err
    pgd = json.loads(out)
    assert pgd["steps"] == 5 and pgd["eps"] == [0.1] and pgd["clean_accuracy"] is None
    code, out, err = run_cli(["eval", "--model", "fmnist-fgsm", "--eps", "0.1", "--n", "100", "--json", "-"])
    assert code == 0, err
    assert pgd["accuracy"][0] <= json.loads(out)["accuracy"][0]


@pytest.mark.parametrize("argv, fragment", [
    (["--model", "efficientnet-lite0"], "No labelled evaluation set"),
    (["--model", "fmnist-naive", "--eps", "0:0.3"], "start:stop:step"),
    (["--model", "fmnist-naive", "--eps", "0.5:0.1:0.1"], "ends before it starts"),
    (["--model", "fmnist-naive", "--attack", "nope"], "Unknown attack"),
    (["--model", "no-such-model"], "Unknown model"),
    (["--model", "fmnist-naive", "--n", "5000"], "between 1 and 3000"),
    (["--model", "fmnist-naive", "--n", "0"], "n must be between 1"),
])
def test_eval_refuses_with_one_line(argv, fragment):
    assert_one_line_error(*run_cli(["eval", *argv]), fragment)


# --------------------------------------------------------------------------- train


@pytest.mark.parametrize("argv, fragment", [
    (["--recipe", "standard", "--epochs", "0"], "epochs must be between 1"),
    (["--recipe", "fgsm", "--strengths", "1.5"], "exceeds 1"),
    (["--recipe", "fgsm", "--strengths", "0"], "positive"),
    (["--recipe", "magic"], "Unknown recipe"),
    (["--recipe", "fgsm", "--strengths", "auto"], "applies to the mat-mixed and mat-parallel"),
    (["--recipe", "fgsm", "--strengths", "0.1,0.2"], "exactly one strength"),
    (["--recipe", "standard", "--strengths", "0.1"], "no adversarial strengths"),
    (["--recipe", "standard", "--reduced"], "--reduced"),
    (["--recipe", "standard", "--name", "../evil"], "--name"),
    (["--recipe", "mat-mixed", "--strengths", "0.1", "--matrix-from", "x.json"], "--matrix-from"),
])
def test_train_refuses_bad_arguments_with_one_line(argv, fragment, tmp_path):
    assert_one_line_error(*run_cli(["train", *argv, "--dataset", "digits", "--out-dir", str(tmp_path)]), fragment)
    assert list(tmp_path.iterdir()) == []


def test_train_on_digits_writes_a_checkpoint_that_eval_loads(tmp_path):
    code, out, err = run_cli(["train", "--recipe", "fgsm", "--strengths", "0.1", "--dataset", "digits", "--epochs",
                              "6", "--out-dir", str(tmp_path), "--name", "digits-fgsm-test", "--eval-eps", "0,0.1",
                              "--pgd-n", "100", "--device", "cpu"])
    assert code == 0, err
    card_path = tmp_path / "digits-fgsm-test.json"
    assert (tmp_path / "digits-fgsm-test.pt").is_file() and str(card_path) in out
    card = json.loads(card_path.read_text())
    assert card["recipe"]["name"] == "fgsm" and card["strengths"] == [0.1] and card["epochs"] == 6
    assert card["clean_accuracy"] > 0.5  # chance 0.1
    assert card["curves"]["fgsm"]["n"] == 500 and card["curves"]["pgd"]["n"] == 100
    assert len(card["history"]) == 6 and card["history"][-1]["images_per_epoch"] == 2 * 1097
    assert "epoch 6/6" in err
    code, out, err = run_cli(["eval", "--model", str(card_path), "--eps", "0,0.1", "--n", "500", "--json", "-"])
    assert code == 0, err
    r = json.loads(out)
    assert r["model"] == "mine:digits-fgsm-test" and r["dataset"] == "digits"  # a session model's name
    assert r["accuracy"] == pytest.approx(card["curves"]["fgsm"]["accuracy"], abs=1e-9)


@pytest.mark.skipif(not datasets.fashion_mnist_available(),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_train_standard_on_2000_fashion_mnist_images(tmp_path):
    code, out, err = run_cli(["train", "--recipe", "standard", "--limit", "2000", "--epochs", "1", "--out-dir",
                              str(tmp_path), "--eval-n", "200", "--pgd-n", "0", "--rfgsm-n", "0", "--eval-eps", "0,0.1",
                              "--device", "cpu"])
    assert code == 0, err
    card = json.loads((tmp_path / "fmnist-naive.json").read_text())
    assert card["data"]["train_images"] == 2000 and card["input_size"] == [1, 28, 28]
    assert card["clean_accuracy"] > 0.5 and card["evaluation_images"] == 3000
    assert set(card["curves"]) == {"fgsm"}


def test_attack_takes_a_shipped_fashion_mnist_image(tmp_path, capsys):
    """--image fashion-mnist:N is subset image N, exactly as the model sees it in the Attack lab."""
    import json

    from advcore import cli, datasets, models

    out = tmp_path / "m.json"
    assert cli.main(["attack", "--model", "fmnist-naive", "--image", "fashion-mnist:3", "--attack", "fgsm",
                     "--eps", "0.1", "--json", str(out), "-q"]) == 0
    metrics = json.loads(out.read_text())
    x, _ = datasets.load_subset()
    with torch.no_grad():
        expected = models.load("fmnist-naive", "cpu")(datasets.to_float(x[3:4])).argmax(1).item()
    assert metrics["clean_label"] == expected
    assert cli.main(["attack", "--model", "fmnist-naive", "--image", "fashion-mnist:99999", "--eps", "0.1"]) == 2
    assert "subset has images 0 to" in capsys.readouterr().err
