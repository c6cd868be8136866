"""C&W L2 against torchattacks 3.5.1's CW on the same inputs."""

from __future__ import annotations

import math

import torch
import torchattacks

from advcore import attacks
from tests.unit.attack_refs import fmnist_batch, fooled


def test_cw_matches_torchattacks_with_one_constant():
    # With one binary-search step and the same c, steps and lr, both run the same Adam on the same
    # objective. They differ in (a) torchattacks' "other" logit max((1 - onehot) * Z), which reads 0 when
    # every other logit is negative, (b) its batch-wide early stop and (c) atanh of 0/1 pixels (inf there,
    # atanh(+-0.999999) here): tolerance 2% on the L2 norm.
    m, x, y = fmnist_batch(6)
    ours = attacks.run("cw", m, x, y, steps=30, binary_steps=1, c=1.0, eps=None)
    ref = torchattacks.CW(m, c=1, kappa=0, steps=30, lr=0.01)(x, y)
    ok = fooled(m, ref, y)
    assert torch.equal(ours.success, ok)
    l2 = (ours.x_adv - x).flatten(1).norm(dim=1)
    torch.testing.assert_close(l2[ok], (ref - x).flatten(1).norm(dim=1)[ok], rtol=0.02, atol=1e-3)
    radius = torch.tensor(ours.params["radius"])
    torch.testing.assert_close(radius[ok].float(), l2[ok].float(), rtol=1e-4, atol=1e-5)
    assert all(math.isinf(r) for r, s in zip(ours.params["radius"], ours.success.tolist(), strict=True) if not s)


def test_binary_search_finds_smaller_or_more_and_budget_is_enforced():
    m, x, y = fmnist_batch(4)
    one = attacks.run("cw", m, x, y, steps=20, binary_steps=1, c=1.0, eps=None)
    more = attacks.run("cw", m, x, y, steps=20, binary_steps=4, c=1.0, eps=None)
    assert more.success.sum() >= one.success.sum()
    r1, r4 = torch.tensor(one.params["radius"]), torch.tensor(more.params["radius"])
    assert (r4 <= r1 + 1e-6).all()  # the search keeps the best over every c it tried
    tight = attacks.run("cw", m, x, y, steps=20, binary_steps=4, eps=float(r4[torch.isfinite(r4)].min()) / 2,
                        norm="l2")
    assert (tight.x_adv - x).flatten(1).norm(dim=1).max() <= float(r4[torch.isfinite(r4)].min()) / 2 + 1e-6
