"""Square Attack against torchattacks 3.5.1's Square on the same inputs."""

from __future__ import annotations

import pytest
import torch
import torchattacks

from advcore import attacks
from advcore.attacks.square import p_schedule
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


def test_square_refuses_l2():
    m, x, y = fmnist_batch(1)
    with pytest.raises(AdvlabError, match="L-inf"):
        attacks.run("square", m, x, y, eps=0.5, norm="l2")
