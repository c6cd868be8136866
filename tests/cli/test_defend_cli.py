"""``python -m advcore defend`` with the preprocessing defenses: flags generated from each defense's declared
parameters, exit 2 with one line on a bad one, and the JSON's numbers and gradient-masking check."""

from __future__ import annotations

import json

import pytest
import torch
from cli_util import run_cli

from advcore import datasets, defenses, models
from advcore.labs import masking

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--defense", "jpeg", "--quality", "0"], "quality must be between 1 and 95"),
    (["--defense", "bit-depth", "--bits", "four"], "bits must be a whole number"),
    (["--defense", "median", "--window", "12"], "window must be between 2 and 11"),
    (["--defense", "resize-pad", "--enlarge", "0"], "enlarge must be positive"),
    (["--defense", "resize-pad", "--interpolation", "cubic"], "interpolation must be one of nearest, bilinear"),
    (["--defense", "jpeg", "--bits", "3"], "--bits is a parameter of bit-depth, not of jpeg"),
    (["--defense", "median", "--halftone-model", "fmnist-halftone"], "applies to a halftone defense only"),
    (["--defense", "bayer", "--method", "stucki"], "contradicts --defense bayer"),
    (["--defense", "gaussian"], "Unknown defense 'gaussian'"),
])
def test_bad_defense_parameters_exit_2_with_one_line(argv, fragment):
    code, out, err = run_cli(["defend", "--model", "fmnist-naive", *argv])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advcore: error: ") and fragment in lines[0], err


def test_bit_depth_table_json_numbers_and_masking_check():
    code, out, err = run_cli(["defend", "--model", "fmnist-naive", "--defense", "bit-depth", "--bits", "2",
                              "--attacks", "fgsm", "--eps", "0,0.1,0.2", "--n", "16", "--adaptive",
                              "--strong-steps", "0", "--reference-model", "none", "--json", "-", "-q"])
    assert code == 0, err
    r = json.loads(out)
    assert r["defense"] == {"name": "bit-depth", "title": "bit-depth reduction", "random": False, "bits": 2}
    assert r["bpda"] == "identity (BPDA) through the bit-depth reduction" and r["eot"] is None
    assert [row["key"] for row in r["rows"]] == ["none", "defense-input"]
    # the clean accuracy behind the defense, recomputed with the model and the transform called directly
    x, y = datasets.load_subset(16)
    model = models.load("fmnist-naive", "cpu")
    with torch.no_grad():
        pred = model(defenses.reduce_bit_depth(datasets.to_float(x), 2)).argmax(1)
    assert r["clean"]["defense-input"]["top1"] == pytest.approx(float((pred == y).float().mean()), abs=1e-6)
    assert r["accuracy"]["defense-input"]["fgsm"]["knows"]["top1"][0] == r["clean"]["defense-input"]["top1"]
    assert r["masking"] == masking.check_masking(r)  # the JSON's check is computed from its own numbers
    assert [c["key"] for c in r["masking"]["checks"]] == list(masking.CHECKS)


def test_the_randomised_defense_is_attacked_with_and_without_eot():
    code, out, err = run_cli(["defend", "--model", "fmnist-naive", "--defense", "resize-pad", "--enlarge", "0.2",
                              "--attacks", "fgsm", "--eps", "0,0.1", "--n", "8", "--adaptive", "--eot", "2",
                              "--strong-steps", "0", "--reference-model", "none", "--json", "-", "-q"])
    assert code == 0, err
    r = json.loads(out)
    assert r["defense"]["random"] and r["defense"]["enlarge"] == 0.2 and r["defense"]["interpolation"] == "nearest"
    assert r["eot"] == 2 and list(r["columns"]) == ["ignores", "bare", "bpda", "knows"]
    # differentiable: the attacker who knows it has its exact gradient, averaged over EOT's draws
    assert r["bpda"] == "exact gradient through the random resize and pad"
    assert r["columns"]["knows"] == ("attacker knows the defense: exact gradient + EOT over 2 draws of the random "
                                     "defense")
