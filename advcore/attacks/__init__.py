"""FGSM, I-FGSM, PGD, MI-FGSM and AGR as small strategies on one iterative core.

All attacks take a batch ``x`` of pixels in ``[0, 1]`` shaped ``(N, C, H, W)`` and
return an :class:`AttackResult` whose ``x_adv`` is the adversarial batch.
``eps`` is in pixel units (``8/255`` for L-infinity; the L2 radius of the
perturbation for L2). ``y`` is the true label (untargeted; defaults to the model's
prediction) and ``target`` the class to reach (targeted).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from advcore.attacks.core import (
    MAX_STEPS,
    NORMS,
    AdaptiveGradient,
    AttackResult,
    Momentum,
    SteepestAscent,
    StepInfo,
    attack_labels,
    check_budget,
    check_steps,
    get_ball,
    is_adversarial,
    iterative_attack,
)
from advcore.errors import AdvlabError

__all__ = [
    "ATTACKS",
    "accepted_params",
    "get_attack",
    "AttackResult",
    "AttackSpec",
    "MAX_STEPS",
    "NORMS",
    "StepInfo",
    "agr",
    "check_budget",
    "check_steps",
    "fgsm",
    "get_ball",
    "ifgsm",
    "is_adversarial",
    "iterative_attack",
    "mifgsm",
    "pgd",
    "run",
]


def _prepare(model: nn.Module, x: torch.Tensor, y, target, targeted: bool) -> tuple[torch.Tensor, bool]:
    """The label the loop uses, and whether the attack is targeted."""
    if target is not None:
        targeted = True
    if targeted:
        if target is None:
            raise AdvlabError("A targeted attack needs a target class.")
        t = torch.as_tensor(target, device=x.device).long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        if t.numel() != x.shape[0]:
            raise AdvlabError("Give one target class, or one per image.")
        return t.clone(), True
    if y is not None:
        y = torch.as_tensor(y, device=x.device).long().reshape(-1)
        if y.numel() == 1:
            y = y.expand(x.shape[0]).clone()
    return attack_labels(model, x, y), False


def _default_alpha(alpha: float | None, eps: float, steps: int, factor: float) -> float:
    """``factor * eps / steps`` unless a step size is given (the loop validates the whole budget)."""
    check_steps(steps)
    return factor * eps / steps if alpha is None else alpha


def _run(model, x, y, target, targeted, rule, *, eps, alpha, steps, norm, random_start=False,
         stop_on_success=False, seed=None, callback=None, params=None) -> AttackResult:
    label, targeted = _prepare(model, x, y, target, targeted)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=x.device)
        gen.manual_seed(int(seed))
    res = iterative_attack(
        model, x, label, rule, eps=eps, alpha=alpha, steps=steps, norm=norm, targeted=targeted,
        random_start=random_start, stop_on_success=stop_on_success, generator=gen, callback=callback,
    )
    res.params = {"eps": eps, "alpha": alpha, "steps": steps, "norm": norm, "targeted": targeted,
                  "random_start": random_start, "stop_on_success": stop_on_success, "seed": seed,
                  **(params or {})}
    return res


def fgsm(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf",
         targeted: bool = False, target=None, callback=None) -> AttackResult:
    """FGSM (Goodfellow et al. 2015; Eq. 2 of the AGR paper): one step of size eps."""
    return _run(model, x, y, target, targeted, SteepestAscent(), eps=eps, alpha=eps, steps=1,
                norm=norm, callback=callback)


def ifgsm(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf",
          steps: int = 10, alpha: float | None = None, targeted: bool = False, target=None,
          stop_on_success: bool = False, callback=None) -> AttackResult:
    """I-FGSM / BIM (Kurakin et al. 2017; Eq. 3): ``steps`` steps of ``alpha`` (default eps/steps)."""
    alpha = _default_alpha(alpha, eps, steps, 1.0)
    return _run(model, x, y, target, targeted, SteepestAscent(), eps=eps, alpha=alpha, steps=steps,
                norm=norm, stop_on_success=stop_on_success, callback=callback)


def pgd(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf", steps: int = 10,
        alpha: float | None = None, random_start: bool = True, seed: int | None = None,
        targeted: bool = False, target=None, stop_on_success: bool = False,
        callback=None) -> AttackResult:
    """PGD (Madry et al. 2018): I-FGSM from a uniform random point of the ball; alpha defaults to 2.5 eps/steps."""
    alpha = _default_alpha(alpha, eps, steps, 2.5)
    return _run(model, x, y, target, targeted, SteepestAscent(), eps=eps, alpha=alpha, steps=steps,
                norm=norm, random_start=random_start, stop_on_success=stop_on_success, seed=seed,
                callback=callback)


def mifgsm(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf", steps: int = 10,
           alpha: float | None = None, mu: float = 1.0, targeted: bool = False, target=None,
           stop_on_success: bool = False, callback=None) -> AttackResult:
    """MI-FGSM (Dong et al. 2018): momentum ``mu`` over L1-normalised gradients; alpha defaults to eps/steps."""
    alpha = _default_alpha(alpha, eps, steps, 1.0)
    return _run(model, x, y, target, targeted, Momentum(mu), eps=eps, alpha=alpha, steps=steps,
                norm=norm, stop_on_success=stop_on_success, callback=callback, params={"mu": mu})


def agr(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf", steps: int = 10,
        alpha: float | None = None, phi: float = 1.0, delta: float = 1e-8, accumulator: str = "sign",
        targeted: bool = False, target=None, stop_on_success: bool = True,
        callback=None) -> AttackResult:
    """Adaptive gradient refinement (Xiao et al., Algorithm 1, Eq. 8-11).

    Step ``alpha * s_t / (phi * sqrt(G_t + delta))`` with ``G_t += s_t * s_t`` and
    ``s_t = sign(g_t)`` (Eq. 10) or the raw gradient (``accumulator="gradient"``); alpha
    defaults to eps as in Eq. 11. Iterates until the label flips (Algorithm 1 line 4)
    or the step budget ends, projected onto the eps-ball after every step.
    """
    if phi <= 0:
        raise AdvlabError(f"AGR's phi must be positive, got {phi:g}.")
    if delta <= 0:
        raise AdvlabError(f"AGR's delta must be positive, got {delta:g}.")
    alpha = _default_alpha(alpha, eps, steps, steps)  # Eq. 11: alpha = eps
    return _run(model, x, y, target, targeted, AdaptiveGradient(phi, delta, accumulator), eps=eps,
                alpha=alpha, steps=steps, norm=norm, stop_on_success=stop_on_success, callback=callback,
                params={"phi": phi, "delta": delta, "accumulator": accumulator})


@dataclass(frozen=True)
class AttackSpec:
    """An attack as the app and the command line list it."""

    name: str
    title: str
    fn: Callable[..., AttackResult]
    reference: str
    iterative: bool = True
    extra: tuple[str, ...] = ()  # attack-specific parameters beyond eps/norm/steps/alpha


ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec("fgsm", "FGSM", fgsm, "Goodfellow et al. 2015; AGR paper Eq. 2", iterative=False),
    "ifgsm": AttackSpec("ifgsm", "I-FGSM (BIM)", ifgsm, "Kurakin et al. 2017; AGR paper Eq. 3"),
    "pgd": AttackSpec("pgd", "PGD", pgd, "Madry et al. 2018", extra=("random_start", "seed")),
    "mifgsm": AttackSpec("mifgsm", "MI-FGSM", mifgsm, "Dong et al. 2018", extra=("mu",)),
    "agr": AttackSpec("agr", "AGR (adaptive gradient refinement)", agr,
                      "Xiao et al., Algorithm 1, Eq. 8-11", extra=("phi", "delta", "accumulator")),
}
_ALIASES = {"bim": "ifgsm", "i-fgsm": "ifgsm", "mi-fgsm": "mifgsm", "adaptive": "agr"}


def get_attack(name: str) -> AttackSpec:
    """Look up an attack by name (case-insensitive; ``bim`` is I-FGSM)."""
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in ATTACKS:
        raise AdvlabError(f"Unknown attack {name!r}; choose one of {', '.join(ATTACKS)}.")
    return ATTACKS[key]


def accepted_params(name: str) -> set[str]:
    """Keyword parameters the attack called ``name`` takes."""
    sig = inspect.signature(get_attack(name).fn)
    return {p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def run(name: str, model: nn.Module, x: torch.Tensor, y=None, **params) -> AttackResult:
    """Run the attack called ``name``; parameters it does not take (FGSM's steps) are dropped."""
    spec = get_attack(name)
    accepted = accepted_params(spec.name)
    return spec.fn(model, x, y, **{k: v for k, v in params.items() if k in accepted})
