"""The gradient-sign family: FGSM, I-FGSM (BIM), PGD and MI-FGSM, each a small rule on the one loop.

Each attack takes a batch ``x`` in ``[0, 1]`` shaped ``(N, C, H, W)``, the true label ``y``
(untargeted; default: the model's own prediction) or a ``target`` (targeted: descend the
cross-entropy to it), and ``eps`` in pixel units (``8/255`` for L-inf; the perturbation's
length for L2). Under L-inf a step is ``alpha * sign(g)``, under L2 ``alpha * g / ||g||_2``.
The attack's own parameters are declared below (:class:`~advcore.attacks.params.Param`)
and its signature takes its defaults from them.
"""

from __future__ import annotations

import torch
from torch import nn

from advcore.attacks.core import AttackResult, SteepestAscent, default_alpha, per_sample_norm, run_rule
from advcore.attacks.params import STOP_ON_SUCCESS, AttackSpec, Param

RANDOM_START = Param(
    "random_start", "bool", True, label="Random start",
    help="Start from a uniform random point of the ball (Madry et al.).",
    cli_help="start from a uniform random point of the ball", reference="Madry et al. 2018, Sec. 2.1",
)
SEED = Param(
    "seed", "int", 0, low=0, high=2**31 - 1, nullable=True, enabled_by="random_start", label="Seed",
    widget_step=1, help="Fixes the random start, so the numbers are reproducible.",
    cli_help="seed of the random start (only used with it)",
)
MU = Param(
    "mu", "float", 1.0, low=0.0, high=1.0, label="mu (momentum decay)", widget_range=(0.0, 1.0), widget_step=0.05,
    help="Decay of the momentum m = mu m + g / ||g||_1 (Eq. 6): 0 is I-FGSM; 1 (the paper's) weighs every past "
         "gradient alike. A decay factor, so at most 1: above it the momentum grows as mu^t and overflows.",
    cli_help="momentum decay of Eq. 6", reference="Dong et al. 2018, Eq. 6",
)


def fgsm(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf",
         targeted: bool = False, target=None, callback=None) -> AttackResult:
    """FGSM: one step of size eps along the sign of the loss gradient.

    Paper: Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples",
    ICLR 2015 (the AGR paper's Eq. 2). Distance: L-inf (sign step) or L2 (normalised step).
    Arguments: eps (the step and the ball), norm, targeted/target, callback.
    """
    return run_rule(model, x, y, target, targeted, SteepestAscent(), eps=eps, alpha=eps, steps=1,
                    norm=norm, callback=callback)


def ifgsm(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf",
          steps: int = 10, alpha: float | None = None, targeted: bool = False, target=None,
          stop_on_success: bool = STOP_ON_SUCCESS.default, callback=None) -> AttackResult:
    """I-FGSM / BIM: ``steps`` FGSM steps of ``alpha``, projected onto the eps-ball after each.

    Paper: Kurakin, Goodfellow and Bengio, "Adversarial Examples in the Physical World",
    ICLR workshop 2017 (the AGR paper's Eq. 3). Distance: L-inf or L2.
    Arguments: eps, norm, steps, alpha (default eps/steps), targeted/target, stop_on_success, callback.
    """
    alpha = default_alpha(alpha, eps, steps, 1.0)
    return run_rule(model, x, y, target, targeted, SteepestAscent(), eps=eps, alpha=alpha, steps=steps,
                    norm=norm, stop_on_success=stop_on_success, callback=callback)


def pgd(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf", steps: int = 10,
        alpha: float | None = None, random_start: bool = RANDOM_START.default, seed: int | None = SEED.default,
        targeted: bool = False, target=None, stop_on_success: bool = STOP_ON_SUCCESS.default,
        callback=None) -> AttackResult:
    """PGD: I-FGSM from a uniform random point of the ball.

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
    ICLR 2018, Sec. 2.1. Distance: L-inf or L2 (uniform start in the L2 ball, not on its sphere).
    Arguments: eps, norm, steps, alpha (default 2.5 eps/steps), random_start, seed (of the
    random start; None: unseeded), targeted/target, stop_on_success, callback.
    """
    alpha = default_alpha(alpha, eps, steps, 2.5)
    return run_rule(model, x, y, target, targeted, SteepestAscent(), eps=eps, alpha=alpha, steps=steps,
                    norm=norm, random_start=random_start, stop_on_success=stop_on_success, seed=seed,
                    callback=callback)


class Momentum:
    """MI-FGSM (Dong et al. 2018, Eq. 6): ``m_t+1 = mu m_t + g_t / ||g_t||_1``; ``d_t = normalise(m_t+1)``."""

    def __init__(self, mu: float):
        self.mu = mu

    def init_state(self, x):
        return {"m": torch.zeros_like(x)}

    def direction(self, grad, state, idx, ball):
        g = grad / per_sample_norm(grad, 1).clamp_min(1e-12)
        m = self.mu * state["m"][idx] + g
        state["m"][idx] = m
        return ball.normalize(m)


def mifgsm(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf", steps: int = 10,
           alpha: float | None = None, mu: float = MU.default, targeted: bool = False, target=None,
           stop_on_success: bool = STOP_ON_SUCCESS.default, callback=None) -> AttackResult:
    """MI-FGSM: I-FGSM on a momentum of L1-normalised gradients (each sample by its own norm).

    Paper: Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018, Eq. 6 (the
    momentum) and Eq. 7 (the sign step). Distance: L-inf or L2 (the momentum's L2 direction).
    Arguments: eps, norm, steps, alpha (default eps/steps), mu, targeted/target, stop_on_success, callback.
    """
    mu = MU.check(mu, "MI-FGSM")
    alpha = default_alpha(alpha, eps, steps, 1.0)
    return run_rule(model, x, y, target, targeted, Momentum(mu), eps=eps, alpha=alpha, steps=steps,
                    norm=norm, stop_on_success=stop_on_success, callback=callback, params={"mu": mu})


SPECS = (
    AttackSpec("fgsm", "FGSM", fgsm, "Goodfellow et al. 2015; AGR paper Eq. 2", iterative=False, order=10),
    AttackSpec("ifgsm", "I-FGSM (BIM)", ifgsm, "Kurakin et al. 2017; AGR paper Eq. 3", order=20,
               aliases=("bim", "i-fgsm")),
    AttackSpec("pgd", "PGD", pgd, "Madry et al. 2018", params=(RANDOM_START, SEED), order=30),
    AttackSpec("mifgsm", "MI-FGSM", mifgsm, "Dong et al. 2018, Eq. 6", params=(MU,), order=40,
               aliases=("mi-fgsm",)),
)
