"""README findings: every bullet is read from the saved result files, and a changed result changes its wording."""

from __future__ import annotations

import copy

import pytest

from advcore.labs import findings, papers


@pytest.fixture(scope="module")
def saved() -> tuple[dict, dict]:
    return findings.load_sources(), papers.load_saved()


def _bullet(key: str, sources: dict, records: dict) -> str:
    f = next(f for f in findings.FINDINGS if f.key == key)
    return f.render(sources, records)


def test_bullets_read_the_files(saved) -> None:
    """Numbers in the bullets are the files' numbers (checked against the raw JSON, not the generator)."""
    src, rec = saved
    text = "\n".join(findings.bullets(src, rec))
    geo = src["geometry"]["results"]["readings"]
    assert f"{geo['scores']['softmax']['images_0_9_no_filter']['fmnist-naive']:.4f}" in text
    fs = src["floyd-steinberg"]
    assert f"{100 * fs['robust']['adversarial']['top1'][fs['eps'].index(0.1)]:.1f}%" in text
    lf = [100 * r["gap"] for r in src["poisoning-lf"]["rows"]]
    assert f"{min(lf):+.1f} to {max(lf):+.1f} pp" in text
    assert "not measured" not in text


def test_geometry_word_follows_numbers(saved) -> None:
    src, rec = saved
    s = copy.deepcopy(src)
    unf = s["geometry"]["results"]["readings"]["scores"]["softmax"]["images_0_9_no_filter"]
    before = _bullet("geometry", s, rec)
    unf["fmnist-naive"], unf["fmnist-pgd"] = unf["fmnist-pgd"], unf["fmnist-naive"]
    after = _bullet("geometry", s, rec)
    assert ("(naive the larger)" in before) != ("(naive the larger)" in after)
    assert ("the opposite of the unfiltered" in before) != ("the opposite of the unfiltered" in after)


def test_agr_word_follows_numbers(saved) -> None:
    """AGR's AMP made the smallest turns 'the opposite of' the paper's Table 3 into 'the same ordering as'."""
    src, rec = saved
    s = copy.deepcopy(src)
    block = next(b for b in s["compare"]["policies"]["imagenet"]
                 if (b["stop_on_success"], b["agr_alpha"]) == ("all", "eps"))
    eps = max(r["eps"] for r in block["table"])
    row = next(r for r in block["table"] if r["eps"] == eps and r["attack"] == "agr")
    row["amp"] = 1e-5
    assert "the opposite of the paper's Table 3" in _bullet("agr", src, rec)
    assert "the same ordering as the paper's Table 3" in _bullet("agr", s, rec)


def test_poisoning_word_follows_numbers(saved) -> None:
    src, rec = saved
    s = copy.deepcopy(src)
    for setting in ("split", "split-nearest-8"):
        naive = next(r for r in s["poisoning"]["pf_settings"][setting]["rows"] if r["kind"] == "split-naive")
        naive["success_rate"], naive["successes"] = 0.5, naive["trials"] // 2
    assert "does not show Table 2's effect" in _bullet("poisoning", src, rec)
    assert "shows Table 2's effect" in _bullet("poisoning", s, rec)


def test_missing_file_is_not_measured(saved) -> None:
    src, rec = saved
    out = findings.bullets({**src, "geometry": None}, rec)
    assert out[1] == ("- **Geometry**: not measured (bench/results/geometry.json missing; run "
                      "`python bench/geometry.py`).")


def test_training_word_follows_numbers(saved) -> None:
    """A rising FGSM curve in the small retraining turns 'no rise to remove' into 'a rise'; parallel MAT made the
    best under the paper's protocol turns 'did not beat' into 'beat'."""
    src, rec = saved
    s = copy.deepcopy(src)
    s["retrain-small"]["curves"]["fgsm"]["accuracy"][-1] = 0.99
    s["table1-paper"]["models"]["fmnist-mat-parallel"]["average_accuracy"] = 0.9
    before, after = _bullet("training", src, rec), _bullet("training", s, rec)
    assert "shows no rise to remove" in before and "shows a rise" in after
    assert "parallel MAT did not beat mixed" in before and "parallel MAT beat mixed" in after
