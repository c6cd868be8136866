"""APGD and Square in Compare: their stop_on_success, and Compare's numbers equal running them directly."""

from __future__ import annotations

import json

import pytest
import torch

from advcore import attacks, models
from advcore.errors import AdvlabError
from advcore.labs import compare
from tests.unit.attack_refs import fmnist_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_apgd_stop_on_success_freezes_each_image_at_its_first_adversarial_iterate():
    m, x, y = fmnist_batch(4)
    seen = []
    stop = attacks.run("apgd", m, x, y, eps=0.05, steps=8, seed=0, stop_on_success=True,
                       callback=lambda info: seen.append(info.x_adv) and False)
    full = attacks.run("apgd", m, x, y, eps=0.05, steps=8, seed=0)  # default: every step
    first = stop.steps_to_success
    assert 0 < int(stop.success.sum()) < 4 and (full.grad_evals == 9).all()  # the start and 8 steps
    with torch.no_grad():
        for i in range(len(x)):
            if not stop.success[i]:
                assert int(stop.grad_evals[i]) == 9  # never fooled: every step
                continue
            k = int(first[i])  # iterate k (0 = the start) was the first adversarial one: no gradient after it
            assert int(stop.grad_evals[i]) == k + 1
            assert int(m(stop.x_adv[i:i + 1]).argmax(1)) != int(y[i])
            for later in seen[max(k - 1, 0):]:  # the returned image from iterate k on is that iterate, unchanged
                assert torch.equal(later[i], stop.x_adv[i])
            assert torch.isnan(stop.loss_history[i, k + 1:-1]).all()  # not evaluated while frozen
    assert stop.success.tolist() == full.success.tolist()  # the same return rule: the first adversarial iterate


def test_square_without_stop_keeps_fooled_images_adversarial_with_a_lower_margin():
    m, x, y = fmnist_batch(6)
    stop = attacks.run("square", m, x, y, eps=0.1, n_queries=60, seed=0)  # default: Algorithm 1, stop
    run_all = attacks.run("square", m, x, y, eps=0.1, n_queries=60, seed=0, stop_on_success=False)
    q_stop, q_all = torch.tensor(stop.params["queries"]), torch.tensor(run_all.params["queries"])
    assert 0 < int(stop.success.sum()) < 6 and (q_all == 60).all() and (q_stop[stop.success] < 60).all()
    assert run_all.success.tolist() == stop.success.tolist()
    # Unfooled images see the same draws either way; fooled ones keep going only to a lower margin.
    assert torch.equal(run_all.x_adv[~stop.success], stop.x_adv[~stop.success])

    def margin(z):
        own = z.gather(1, y[:, None])[:, 0]
        return own - z.scatter(1, y[:, None], -torch.inf).amax(1)
    lower = margin(run_all.logits)[stop.success] - margin(stop.logits)[stop.success]
    assert (lower <= 1e-6).all() and (lower < -0.1).any()


@pytest.mark.parametrize("policy", ["all", "none"])
def test_compare_numbers_for_apgd_and_square_are_the_attacks_own(policy):
    items = compare.dataset_images("fashion-mnist", 4)
    r = compare.compare(items, ["fmnist-naive"], attack_names=["apgd", "square"], eps=0.3, steps=3, seed=2,
                        device="cpu", stop_on_success=policy, square_queries=40)
    assert r.square_queries == 40 and r.to_dict()["query_attacks"] == ["square"]
    m = models.load("fmnist-naive", "cpu")
    x = compare.image_tensor(items, (1, 28, 28))
    with torch.no_grad():
        y = m(x).argmax(1)
    st = r.runs[0].sources["fmnist-naive"]
    for a, extra in (("apgd", {"steps": 3}), ("square", {"n_queries": 40})):
        ref = attacks.run(a, m, x, y, eps=0.3, seed=2, stop_on_success=policy == "all", **extra)
        pi = st[a].per_image
        assert pi["success"] == ref.success.tolist()
        assert pi["steps_to_success"] == ref.steps_to_success.tolist()
        assert pi["grad_evals"] == ref.grad_evals.tolist()
        assert pi["linf"] == pytest.approx((ref.x_adv - x).flatten(1).abs().amax(1).tolist())
    assert st["square"].grad_evals == 0 and 0 < st["square"].successes < 4  # measured: 1 of 4 in 40 queries
    assert st["apgd"].grad_evals == (2 if policy == "all" else 4)  # each fooled at iterate 1; else all 3 steps
    with pytest.raises(AdvlabError, match="n_queries"):
        compare.compare(items, ["fmnist-naive"], attack_names=["square"], eps=0.1, device="cpu", square_queries=0)


def test_page_and_cli_say_square_counts_queries(tmp_path):
    from tests.unit.test_compare import run_cli
    from ui.views import compare as cv

    out = tmp_path / "c.json"
    code, stdout, err = run_cli(["compare", "--models", "fmnist-naive", "--images", "fashion-mnist", "--limit", "4",
                                 "--attacks", "pgd,square", "--eps", "0.3", "--steps", "3", "--square-queries", "40",
                                 "--seed", "2", "--device", "cpu", "--json", str(out)])
    assert code == 0, err
    assert "Square: 40 queries per image" in stdout and " q  " in stdout
    r = compare.from_dict(json.loads(out.read_text()))
    d = r.to_dict()
    assert d["square_queries"] == 40 and d["query_attacks"] == ["square"] and d["query_note"] == compare.QUERY_NOTE
    rows = {row["Attack"]: row for row in cv.table_rows(r)}
    sq = r.runs[0].sources["fmnist-naive"]["square"].steps_to_success
    assert rows[r.attack_titles["square"]]["Steps to success"] == f"{sq:.2f} queries"
    assert not rows["PGD"]["Steps to success"].endswith("queries")
    assert "Square: 40 queries per image" in cv.table_caption(r)
    req = cv.CompareRequest(dataset="fashion-mnist", sources=("fmnist-naive",), targets=("fmnist-naive",),
                            attacks=("pgd", "square"), norm="linf", eps=(0.3,), eps_text="0.3", steps=3, seed=2,
                            images="fashion-mnist", limit=4, square_queries=40)
    assert "--square-queries 40" in req.cli_command() and "--attacks pgd,square" in req.cli_command()
    # Every comparable attack has its own colour, dash and marker in the sweep chart.
    assert len({cv.ATTACK_COLOURS[a] for a in compare.ALL_ATTACKS}) == len(compare.ALL_ATTACKS)
    assert len(set(cv.SWEEP_MARKERS)) >= len(compare.ALL_ATTACKS) <= len(set(cv.SWEEP_DASHES))
    code, _, err = run_cli(["compare", "--models", "fmnist-naive", "--images", "fashion-mnist", "--limit", "2",
                            "--attacks", "deepfool", "--eps", "0.1"])
    assert code == 2 and "--radius" in err.strip().splitlines()[-1]
