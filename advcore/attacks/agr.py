"""AGR, adaptive gradient refinement: AdaGrad-scaled sign steps that stop once the label flips.

Paper: Xiao et al., "Adaptive Gradient Refinement for Adversarial Perturbation Generation"
(``shared/papers/adaptive-gradient-refinement-attack.txt``), Algorithm 1 and Eq. 8-11.
"""

from __future__ import annotations

import torch
from torch import nn

from advcore.attacks.core import AttackResult, default_alpha, run_rule
from advcore.attacks.params import STOP_ON_SUCCESS, AttackSpec, Param, check_values
from advcore.errors import AdvlabError

PHI = Param(
    "phi", "float", 1.0, low=0.0, high=1e6, low_open=True, label="phi", widget_range=(0.01, 100.0), widget_step=0.1,
    help="Divides every step: alpha * s / (phi * sqrt(G + delta)) (Eq. 11). Larger phi, smaller steps.",
    cli_help="step scale of Eq. 11", reference="AGR paper, Eq. 11 and Algorithm 1 (phi = 1)",
)
DELTA = Param(
    "delta", "float", 1e-8, low=0.0, high=1.0, low_open=True, label="delta",
    widget_values=(1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2), widget_format=".0e",
    help="Added to G under the square root so the division is safe. With sign(g) it hardly matters; with the "
         "raw gradient, pixels whose gradient is below about sqrt(delta) take much smaller steps.",
    cli_help="stabiliser under the square root of Eq. 11",
    reference="AGR paper, Eq. 11 and Algorithm 1 (which writes delta = 10e-8)",
)
ACCUMULATOR = Param(
    "accumulator", "choice", "sign", choices=("sign", "gradient"), label="Accumulator",
    choice_labels=("sign(g) — paper's Eq. 10 (default)", "raw gradient — textbook AdaGrad"),
    help="What G sums step after step (Eq. 10). sign(g): G counts the steps, so the step shrinks as 1/sqrt(t) "
         "whatever the gradient's scale, and the first step is an FGSM step of size alpha. Raw gradient: G sums "
         "g^2, so input gradients near sqrt(delta) or smaller get tiny steps and the attack is much weaker.",
    cli_help="what G sums (Eq. 10): sign(g) as the paper, or the raw gradient", reference="AGR paper, Eq. 10",
)
STOP = Param(
    "stop_on_success", "bool", True, label="Stop on success", widget_key="attack_stop",
    help="Algorithm 1: iterate until the label flips (or the steps run out).",
    cli_help=STOP_ON_SUCCESS.cli_help, reference="AGR paper, Algorithm 1 (while f(x+v) = f(x))",
)


class AdaptiveGradient:
    """AGR (Xiao et al., Algorithm 1, Eq. 8-11): AdaGrad-scaled steps.

    ``G_t = sum_i s_i * s_i`` (Eq. 8, the diagonal), ``d_t = s_t / (phi * sqrt(G_t + delta))``
    (Eq. 11), elementwise. With ``accumulator="sign"`` (default) ``s = sign(g)`` exactly as
    the paper's Eq. 10-11 write it, so ``G_t = t`` wherever the gradient is non-zero and
    the step decays as ``1 / sqrt(t)``. With ``accumulator="gradient"`` ``s`` is the raw
    gradient (textbook AdaGrad); then ``delta`` is in gradient units and input gradients
    of 1e-4 or less make the steps far smaller than a sign step (measured on the digits
    model: 65% success at eps 0.2 against 100% for the sign form).
    Each entry of ``d_t`` is at most ``1/phi`` in size; under L2 the direction is
    divided by ``sqrt(numel)`` so a step's L2 size is at most ``alpha/phi``.
    """

    def __init__(self, phi: float = PHI.default, delta: float = DELTA.default,
                 accumulator: str = ACCUMULATOR.default):
        if accumulator not in ACCUMULATOR.choices:
            raise AdvlabError("AGR accumulator must be 'gradient' or 'sign'.")
        self.phi, self.delta, self.accumulator = phi, delta, accumulator

    def init_state(self, x):
        return {"G": torch.zeros_like(x)}

    def direction(self, grad, state, idx, ball):
        s = grad if self.accumulator == "gradient" else grad.sign()
        G = state["G"][idx] + s * s
        state["G"][idx] = G
        d = s / (self.phi * torch.sqrt(G + self.delta))
        return d * ball.elementwise_scale(d[0].numel())


def agr(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf", steps: int = 10,
        alpha: float | None = None, phi: float = PHI.default, delta: float = DELTA.default,
        accumulator: str = ACCUMULATOR.default, targeted: bool = False, target=None,
        stop_on_success: bool = STOP.default, callback=None) -> AttackResult:
    """Adaptive gradient refinement (Xiao et al., Algorithm 1, Eq. 8-11).

    Step ``alpha * s_t / (phi * sqrt(G_t + delta))`` with ``G_t += s_t * s_t`` and
    ``s_t = sign(g_t)`` (Eq. 10) or the raw gradient (``accumulator="gradient"``); alpha
    defaults to eps as in Eq. 11. Iterates until the label flips (Algorithm 1's
    ``while f(x+v) = f(x)``) or the step budget ends, projected onto the eps-ball after every step.
    Distance: L-inf or L2 (the elementwise step divided by sqrt(numel)).
    Arguments: eps, norm, steps, alpha (default eps), phi, delta, accumulator, targeted/target,
    stop_on_success, callback.
    """
    own = check_values((PHI, DELTA, ACCUMULATOR), {"phi": phi, "delta": delta, "accumulator": accumulator}, "AGR")
    alpha = default_alpha(alpha, eps, steps, steps)  # Eq. 11: alpha = eps
    return run_rule(model, x, y, target, targeted, AdaptiveGradient(**own), eps=eps, alpha=alpha, steps=steps,
                    norm=norm, stop_on_success=stop_on_success, callback=callback, params=own)


SPECS = (
    AttackSpec("agr", "AGR (adaptive gradient refinement)", agr, "Xiao et al., Algorithm 1, Eq. 8-11",
               params=(PHI, DELTA, ACCUMULATOR, STOP), order=50, aliases=("adaptive",)),
)
