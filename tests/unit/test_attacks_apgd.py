"""APGD (CE, DLR, targeted DLR) against torchattacks 3.5.1's APGD and APGDT."""

from __future__ import annotations

import pytest
import torch
import torchattacks

from advcore import attacks
from advcore.attacks.apgd import checkpoints, dlr
from tests.unit.attack_refs import fmnist_batch, fooled


def test_checkpoints_follow_the_paper_schedule():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (Sec. 3.2), for N = 100
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_matches_torchattacks(loss):
    # Same random start stream (a Generator seeded like torch.manual_seed), same schedule: same successes.
    m, x, y = fmnist_batch(6)
    ours = attacks.run("apgd", m, x, y, eps=0.05, steps=20, loss=loss, seed=0)
    ref = torchattacks.APGD(m, eps=0.05, steps=20, loss=loss, seed=0)(x, y)
    assert int(ours.success.sum()) == int(fooled(m, ref, y).sum())
    assert (ours.x_adv - x).abs().max() <= 0.05 + 1e-6


def test_targeted_dlr_reaches_the_second_class_like_apgdt():
    m, x, y = fmnist_batch(6)
    with torch.no_grad():
        second = m(x).sort(1)[1][:, -2]
    ours = attacks.run("apgd", m, x, y, eps=0.1, steps=20, loss="dlr", target=second, seed=0)
    ref = torchattacks.APGDT(m, eps=0.1, steps=20, n_classes=10, seed=0)
    ref.n_target_classes = 1
    adv = ref(x, y)
    with torch.no_grad():
        ref_hit = m(adv).argmax(1) == second
    assert abs(int(ours.success.sum()) - int(ref_hit.sum())) <= 1
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    # DLR by hand: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), targeted -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2)
    assert float(dlr(z, torch.tensor([0]))) == pytest.approx(-(3 - 2) / (3 - 1))
    assert float(dlr(z, torch.tensor([0]), torch.tensor([1]))) == pytest.approx(-(3 - 1) / (3 - 0.5))
