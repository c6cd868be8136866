"""Square Attack against torchattacks 3.5.1's Square on the same inputs."""

from __future__ import annotations

import pytest
import torch
import torchattacks

from advcore import attacks
from advcore.attacks.square import _eta_rectangle, eta, p_schedule
from advcore.errors import AdvlabError
from tests.unit.attack_refs import fmnist_batch, fooled


def test_p_schedule_halves_at_the_milestones():
    assert [p_schedule(0.8, it, 10000) for it in (0, 10, 11, 51, 201, 8001)] == [0.8, 0.8, 0.4, 0.2, 0.1, 0.8 / 512]
    assert p_schedule(0.8, 11, 1000) == 0.8 / 4  # rescaled: iteration 11 of 1000 is 110 of 10000


def test_square_is_comparable_to_torchattacks_and_counts_queries():
    # Random search: the draws differ (ours shares one square and one order of channel signs per batch
    # iteration, torchattacks one square and one sign), so success may differ by an image or two.
    m, x, y = fmnist_batch(6)
    ours = attacks.run("square", m, x, y, eps=0.1, n_queries=200, seed=0)
    ref = torchattacks.Square(m, eps=0.1, n_queries=200, p_init=0.05, seed=0)(x, y)
    assert abs(int(ours.success.sum()) - int(fooled(m, ref, y).sum())) <= 2
    assert (ours.x_adv - x).abs().max() <= 0.1 + 1e-6
    q = torch.tensor(ours.params["queries"])
    assert (q >= 1).all() and (q <= 200).all() and (q[~ours.success] == 200).all()
    assert int(ours.grad_evals.sum()) == 0  # black-box: no gradient


def test_square_l2_fools_the_images_torchattacks_fools_within_the_l2_budget():
    # Algorithm 3 (window pairs, eta updates, p schedule) as torchattacks' Square(norm='L2'): the same random
    # search with other draws, yet on this batch the same images are fooled (measured: 4 of 6 each).
    m, x, y = fmnist_batch(6)
    ours = attacks.run("square", m, x, y, eps=3.0, norm="l2", n_queries=200, p_init=0.1, seed=0)
    ref = torchattacks.Square(m, norm="L2", eps=3.0, n_queries=200, p_init=0.1, seed=0)(x, y)
    assert ours.success.tolist() == fooled(m, ref, y).tolist()
    assert 0 < int(ours.success.sum()) < 6  # neither trivial nor hopeless at this budget
    l2 = (ours.x_adv - x).flatten(1).norm(dim=1)
    assert (l2 <= 3.0 + 1e-5).all() and (l2 > 2.0).all()  # rescaled to eps, less what the [0, 1] clip removed
    q = torch.tensor(ours.params["queries"])
    assert (q[~ours.success] == 200).all() and (q[ours.success] < 200).all() and (q >= 1).all()
    assert ours.params["norm"] == "l2" and int(ours.grad_evals.sum()) == 0
    again = attacks.run("square", m, x, y, eps=3.0, norm="l2", n_queries=200, p_init=0.1, seed=0)
    assert torch.equal(again.x_adv, ours.x_adv)  # an explicit generator: the same seed, the same images


def test_eta_is_a_unit_pair_of_opposite_centred_rectangles():
    e = eta(5)
    assert float(e.pow(2).sum()) == pytest.approx(1.0)
    assert (e[:2] > 0).all() and (e[2:] < 0).all()  # + on the top half, - on the bottom half
    assert torch.equal(eta(5, transpose=True), e.T)
    # eta^(3,3) by its definition: the centre lies in the 1x1 and the 3x3 rectangle (1 + 1/2^2), the rest only
    # in the 3x3 one (1/2^2), so the ratio is 0.2.
    r = _eta_rectangle(3, 3)
    assert (r / r.max()).flatten().tolist() == pytest.approx([0.2, 0.2, 0.2, 0.2, 1.0, 0.2, 0.2, 0.2, 0.2])


def test_square_refuses_other_norms():
    m, x, y = fmnist_batch(1)
    with pytest.raises(AdvlabError, match="L-inf and an L2"):
        attacks.run("square", m, x, y, eps=0.5, norm="l1")
