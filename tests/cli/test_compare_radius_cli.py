"""``python -m advcore compare --radius``: the minimal-norm attacks' per-image robustness radius, sorted, with its
median, equal to the attacks' own records; bad names exit 2 with one line."""

from __future__ import annotations

import json

import pytest
import torch
from cli_util import run_cli

from advcore import attacks, models
from advcore.labs import compare

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARGS = ["compare", "--models", "fmnist-naive", "--images", "fashion-mnist", "--limit", "3", "--attacks", "fgsm",
        "--eps", "0.1", "--steps", "1", "--device", "cpu", "--quiet"]


DEEPFOOL_STEPS = 10  # measured: image 1 needs 11-15 DeepFool iterations, image 0 at most 8; image 2 at most 8 on
# an Intel CPU, not found in 50 on an AMD EPYC (float32 rounding near its boundary), so nothing below assumes it


def test_radius_json_and_table_equal_the_attacks_records(tmp_path, monkeypatch) -> None:
    # DeepFool capped at 10 iterations (its default is 50) so that one image is not found within the cap: whether
    # an image needs 50+ iterations depends on float32 rounding across CPUs, a cap this far from it does not.
    own_params = compare.radius_params
    monkeypatch.setattr(compare, "radius_params", lambda a, norm: {
        **own_params(a, norm), **({"steps": DEEPFOOL_STEPS} if a == "deepfool" else {})})
    path = tmp_path / "run.json"
    code, text, err = run_cli([*ARGS, "--radius", "deepfool,cw", "--radius-sort", "descending", "--json", str(path)])
    assert code == 0, err
    doc = json.loads(path.read_text())
    got = doc["radius"]["fmnist-naive"]
    assert list(got) == ["deepfool", "cw"] and doc["radius_note"] == compare.RADIUS_NOTE

    # The reference: each attack run directly on the same three images and labels (the source's clean predictions).
    m = models.load("fmnist-naive", "cpu")
    x = compare.image_tensor(compare.dataset_images("fashion-mnist", 3), tuple(models.get_spec("fmnist-naive")
                                                                             .input_size))
    with torch.no_grad():
        y = m(x).argmax(1)
    for a, norm in (("deepfool", "linf"), ("cw", "l2")):
        own = attacks.run(a, m, x, y, eps=None, norm="linf", **({"steps": DEEPFOOL_STEPS} if a == "deepfool" else {})
                          ).params
        want = [v if v != float("inf") else None for v in own["radius"]]
        assert got[a]["norm"] == norm == own["radius_norm"]
        assert got[a]["radius"] == pytest.approx(want)
        assert got[a]["found"] == [v is not None for v in want]
        assert got[a]["median"] == compare.median_radius(want)
    # DeepFool L-inf does not crack the second image within 10 iterations: not found, never 0.
    assert got["deepfool"]["found"][:2] == [True, False] and got["deepfool"]["radius"][1] is None

    block = text[text.index("(sorted by DeepFool, L-inf radius, descending)"):].splitlines()
    order = [line.split()[0] for line in block[2:5]]
    r = got["deepfool"]["radius"]
    beyond = [i for i in (2, 1, 0) if r[i] is None]  # not found: larger than any radius (ties: the later image first)
    found = sorted((i for i in range(3) if r[i] is not None), key=lambda i: -r[i])
    assert order == [f"fashion-mnist:{i}" for i in [*beyond, *found]], block[:6]
    assert compare.NOT_FOUND in block[2]
    assert f"{255 * r[0]:.3g}/255" in text  # L-inf radii in 8-bit levels
    assert compare.radius_finding(compare.from_dict(doc), "fmnist-naive") in text


@pytest.mark.parametrize("names,fragment", [("pgd", "has a fixed budget"), ("deepfool,deepfool", "listed twice"),
                                            ("nope", "Unknown attack")])
def test_radius_refuses_non_minimal_norm_attacks_with_one_line(names: str, fragment: str) -> None:
    code, out, err = run_cli([*ARGS, "--radius", names])
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.splitlines()) == 1 and fragment in err


def test_median_radius_counts_not_found_as_larger_than_every_radius() -> None:
    assert compare.median_radius([0.3, None, 0.1]) == 0.3
    assert compare.median_radius([0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.25)
    assert compare.median_radius([0.1, None, 0.2, None]) is None  # the upper middle value is beyond the search
    assert compare.median_radius([None, None, 0.1]) is None
    assert compare.median_radius([]) is None
