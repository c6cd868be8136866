"""advcore.labs.masking: the gradient-masking check on constructed Defense tables, one that raises no sign and one
per sign, each with its evidence numbers."""

from __future__ import annotations

import copy

import pytest

from advcore.labs import masking

EPS = [0.0, 0.1, 0.2]
COLS = ("ignores", "bare", "knows")


def table() -> dict:
    """A table that raises no sign: iterative <= single-step, the defended row falls to 0 at eps 0.2, the white-box
    attacker at or below transfer, adaptive and non-adaptive within 10 points (the reference keeps 5% at 0.2:
    rows not behind the defense are not checked)."""
    def cell(fgsm: list[float], pgd: list[float]) -> dict:
        return {"fgsm": {c: {"top1": list(fgsm)} for c in COLS}, "pgd": {c: {"top1": list(pgd)} for c in COLS}}

    acc = {"none": cell([0.9, 0.2, 0.0], [0.9, 0.05, 0.0]),
           "halftone-input": cell([0.8, 0.4, 0.05], [0.8, 0.3, 0.0]),
           "adversarial": cell([0.85, 0.6, 0.08], [0.85, 0.55, 0.05])}
    acc["halftone-input"]["pgd"]["knows"]["top1"] = [0.8, 0.25, 0.0]
    robust = {k: {"top1": [min(v[a][c]["top1"][i] for a in v for c in COLS) for i in range(3)]}
              for k, v in acc.items()}
    return {"n": 100, "eps": EPS, "attacks": ["fgsm", "pgd"], "columns": {c: c for c in COLS},
            "rows": [{"key": "none", "title": "no defense", "halftone": False},
                     {"key": "halftone-input", "title": "defended", "halftone": True},
                     {"key": "adversarial", "title": "reference", "halftone": False}],
            "accuracy": acc, "robust": robust, "strong": {}}


def statuses(t: dict) -> dict[str, str]:
    return {c["key"]: c["status"] for c in masking.check_masking(t)["checks"]}


def test_a_clean_table_raises_no_sign():
    m = masking.check_masking(table())
    assert statuses(table()) == dict.fromkeys(masking.CHECKS, "pass")
    assert m["flagged"] == [] and "none of the 4 signs checked was raised" in m["verdict"]
    assert m["rules"] == {"tolerance": 0.02, "floor": 0.1, "gap": 0.1}


def test_iterative_worse_than_single_step():
    t = table()
    t["accuracy"]["halftone-input"]["pgd"]["bare"]["top1"][1] = 0.45  # 5 points above FGSM's 40%
    m = masking.check_masking(t)
    (c,) = [c for c in m["checks"] if c["key"] == "iterative"]
    assert c["status"] == "flag" and c["evidence"] == [{"row": "halftone-input", "eps": 0.1, "attacker": "bare",
                                                        "attack": "pgd", "accuracy": 0.45, "fgsm_accuracy": 0.4}]
    assert "PGD 45.0% against FGSM 40.0%" in c["text"] and "iterative" in m["flagged"]
    t["accuracy"]["halftone-input"]["pgd"]["bare"]["top1"][1] = 0.41  # within the 2-point tolerance
    assert statuses(t)["iterative"] == "pass"
    t["accuracy"]["none"]["pgd"]["ignores"]["top1"][1] = 0.5  # rows not behind the defense are not checked
    assert statuses(t)["iterative"] == "pass"


def test_accuracy_not_falling_to_zero():
    t = table()
    t["robust"]["halftone-input"]["top1"][2] = 0.3
    c = next(c for c in masking.check_masking(t)["checks"] if c["key"] == "no-fall")
    assert c["status"] == "flag" and c["evidence"][0] == {"row": "halftone-input", "eps": 0.2, "accuracy": 0.3,
                                                           "kind": "above floor"}
    assert "defended keeps 30.0% at eps 0.2" in c["text"]
    t = table()
    t["robust"]["halftone-input"]["top1"][1:] = [0.0, 0.05]  # rises by 5 points from eps 0.1 to 0.2
    c = next(c for c in masking.check_masking(t)["checks"] if c["key"] == "no-fall")
    assert c["status"] == "flag" and c["evidence"][0]["kind"] == "rises"
    t = table()
    t["eps"], t["robust"] = [0.0, 0.1], {k: {"top1": v["top1"][:2]} for k, v in t["robust"].items()}
    assert statuses(t)["no-fall"] == "not checked"  # one positive eps cannot show a trend


def test_transfer_beating_white_box():
    t = table()
    t["accuracy"]["halftone-input"]["fgsm"]["knows"]["top1"][1] = 0.48  # white-box 48% against transfer 40%
    t["accuracy"]["halftone-input"]["fgsm"]["bare"]["top1"][1] = 0.45
    c = next(c for c in masking.check_masking(t)["checks"] if c["key"] == "transfer")
    assert c["status"] == "flag"
    assert c["evidence"] == [{"row": "halftone-input", "eps": 0.1, "attack": "fgsm", "transfer_accuracy": 0.4,
                              "white_box_accuracy": 0.48}]


@pytest.mark.parametrize(("knows", "direction"), [(0.05, "lower"), (0.5, "higher")])
def test_adaptive_and_non_adaptive_far_apart(knows, direction):
    t = table()
    t["accuracy"]["halftone-input"]["pgd"]["knows"]["top1"][1] = knows  # non-adaptive best: 30%
    c = next(c for c in masking.check_masking(t)["checks"] if c["key"] == "adaptive-gap")
    assert c["status"] == "flag" and len(c["evidence"]) == 1
    e = c["evidence"][0]
    assert (e["adaptive_accuracy"], e["non_adaptive_accuracy"], e["direction"]) == (knows, 0.3, direction)


def test_without_adaptive_attackers_the_adaptive_signs_are_not_checked():
    t = copy.deepcopy(table())
    t["columns"] = {"ignores": "ignores"}
    s = statuses(t)
    assert s["transfer"] == s["adaptive-gap"] == "not checked" and s["iterative"] == "pass"
    assert "Not checked:" in masking.check_masking(t)["verdict"]


def test_the_tolerance_is_at_least_one_image():
    t = table()
    t["n"] = 10
    t["accuracy"]["halftone-input"]["pgd"]["ignores"]["top1"][1] = 0.45  # half an image above FGSM at n = 10
    assert statuses(t)["iterative"] == "pass"
