"""``--model PATH`` (your own model, with ``--model-card`` or a card beside it) wherever ``--model NAME`` is."""

from __future__ import annotations

import json

import torch
from cli_util import run_cli

from advcore import models

CARD = {"architecture": "small-cnn", "dataset": "fashion-mnist", "input_size": [1, 28, 28]}


def assert_one_line_error(code: int, out: str, err: str, text: str) -> None:
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("advcore: error: "), err
    assert text in err, err


def _naive_files(tmp_path):
    spec = models.get_spec("fmnist-naive")
    net = models.load("fmnist-naive", "cpu").net
    torch.save(net.state_dict(), tmp_path / "naive.pt")
    card = {**CARD, "mean": list(spec.mean), "std": list(spec.std)}
    (tmp_path / "card.json").write_text(json.dumps(card))
    return tmp_path / "naive.pt", tmp_path / "card.json"


def test_attack_with_a_model_file_matches_the_registered_model(tmp_path) -> None:
    weights, card = _naive_files(tmp_path)
    common = ["attack", "--image", "fashion-mnist:3", "--attack", "fgsm", "--eps", "0.1", "--json", "-", "-q"]
    code, out, err = run_cli([*common, "--model", str(weights), "--model-card", str(card)])
    assert code == 0, err
    mine = json.loads(out)
    code, out, err = run_cli([*common, "--model", "fmnist-naive"])
    assert code == 0, err
    shipped = json.loads(out)
    assert mine["model"] == "mine:naive"
    for key in ("clean_label", "clean_confidence", "adv_label", "adv_confidence", "success", "linf", "l2"):
        assert mine[key] == shipped[key], key
    assert models.names() == [n for n in models.names() if not n.startswith("mine:")]  # nothing left behind


def test_model_file_errors_exit_2_with_one_line(tmp_path) -> None:
    weights, card = _naive_files(tmp_path)
    base = ["attack", "--image", "fashion-mnist:3", "--eps", "0.1"]
    assert_one_line_error(*run_cli([*base, "--model", str(tmp_path / "missing.pt")]), "does not exist")
    assert_one_line_error(*run_cli([*base, "--model", str(weights)]), "has no model card")
    (tmp_path / "bad.json").write_text(json.dumps({**CARD, "mean": [0.5]}))
    assert_one_line_error(*run_cli([*base, "--model", str(weights), "--model-card", str(tmp_path / "bad.json")]),
                          "missing the field 'std'")
    (tmp_path / "junk.pt").write_bytes(b"not a model at all")
    assert_one_line_error(*run_cli([*base, "--model", str(tmp_path / "junk.pt"), "--model-card", str(card)]),
                          "is not a PyTorch model file")
    assert_one_line_error(*run_cli([*base, "--model", "mine:naive"]), "give its file instead: --model PATH")
    assert_one_line_error(*run_cli(["compare", "--models", f"{weights},{tmp_path / 'junk.pt'}", "--eps", "0.1",
                                    "--model-card", str(card)]), "--model-card needs exactly one model")


def test_a_model_file_shards_locally_but_not_on_ray(tmp_path) -> None:
    """Local shards run in this process and see the file's model (the same JSON as one run); Ray workers would
    not, so --backend ray refuses it in one line before starting anything."""
    weights, card = _naive_files(tmp_path)
    base = ["eval", "--model", str(weights), "--model-card", str(card), "--n", "4", "--attack", "fgsm", "--eps",
            "0,0.1", "--batch-size", "2", "--json", "-", "-q"]
    code, out, err = run_cli(base)
    assert code == 0, err
    whole = json.loads(out)
    code, out, err = run_cli([*base, "--workers", "2"])
    assert code == 0, err
    sharded = json.loads(out)
    whole.pop("device"), sharded.pop("device")
    assert {k: v for k, v in sharded.items() if k != "seconds"} == {k: v for k, v in whole.items() if k != "seconds"}
    assert_one_line_error(*run_cli([*base, "--backend", "ray"]), "loaded in this process only")
