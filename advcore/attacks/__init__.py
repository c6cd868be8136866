"""FGSM, I-FGSM, PGD, MI-FGSM and AGR as small strategies on one iterative core.

All attacks take a batch ``x`` of pixels in ``[0, 1]`` shaped ``(N, C, H, W)`` and
return an :class:`AttackResult` whose ``x_adv`` is the adversarial batch.
``eps`` is in pixel units (``8/255`` for L-infinity; the L2 radius of the
perturbation for L2). ``y`` is the true label (untargeted; defaults to the model's
prediction) and ``target`` the class to reach (targeted).

Layout: :mod:`~advcore.attacks.core` is the loop (balls, the ``loss=`` hook),
:mod:`~advcore.attacks.params` the parameter declarations, and every other module of
this package one attack family whose ``SPECS`` tuple registers its attacks here, in
``ATTACKS`` (found when the package is imported, so a new attack is one new module).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import torch
from torch import nn

from advcore.attacks.agr import AdaptiveGradient, agr
from advcore.attacks.core import (
    FORMS,
    MAX_STEPS,
    NORMS,
    AttackResult,
    Loss,
    SteepestAscent,
    StepInfo,
    attack_labels,
    check_budget,
    check_steps,
    cross_entropy,
    get_ball,
    is_adversarial,
    iterative_attack,
)
from advcore.attacks.gradient_sign import Momentum, fgsm, ifgsm, mifgsm, pgd
from advcore.attacks.params import LOOP_PARAMS, STOP_ON_SUCCESS, AttackSpec, Param
from advcore.errors import AdvlabError

__all__ = [
    "ATTACKS",
    "FORMS",
    "LOOP_PARAMS",
    "STOP_ON_SUCCESS",
    "accepted_params",
    "declared_params",
    "get_attack",
    "AdaptiveGradient",
    "AttackResult",
    "AttackSpec",
    "Loss",
    "MAX_STEPS",
    "Momentum",
    "NORMS",
    "Param",
    "StepInfo",
    "SteepestAscent",
    "agr",
    "attack_labels",
    "check_budget",
    "check_steps",
    "cross_entropy",
    "fgsm",
    "get_ball",
    "ifgsm",
    "is_adversarial",
    "iterative_attack",
    "mifgsm",
    "param_default",
    "pgd",
    "run",
]

_NOT_FAMILIES = {"core", "params"}


def _registry() -> tuple[dict[str, AttackSpec], dict[str, str]]:
    """Every ``SPECS`` of this package's family modules, in ``order``; and the aliases."""
    specs: list[AttackSpec] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_FAMILIES or info.name.startswith("_"):
            continue
        specs.extend(getattr(importlib.import_module(f"{__name__}.{info.name}"), "SPECS", ()))
    specs.sort(key=lambda s: (s.order, s.name))
    attacks: dict[str, AttackSpec] = {}
    aliases: dict[str, str] = {}
    for s in specs:
        for key in (s.name, *s.aliases):
            if key in attacks or key in aliases:
                raise TypeError(f"The attack name {key!r} is registered twice.")
            aliases[key] = s.name
        attacks[s.name] = s
    return attacks, aliases


ATTACKS, _ALIASES = _registry()


def get_attack(name: str) -> AttackSpec:
    """Look up an attack by name (case-insensitive; ``bim`` is I-FGSM)."""
    key = str(name).lower()
    if key not in _ALIASES:
        raise AdvlabError(f"Unknown attack {name!r}; choose one of {', '.join(ATTACKS)}.")
    return ATTACKS[_ALIASES[key]]


def accepted_params(name: str) -> set[str]:
    """Keyword parameters the attack called ``name`` takes."""
    sig = inspect.signature(get_attack(name).fn)
    return {p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def param_default(name: str, param: str) -> object:
    """The default of keyword ``param`` of attack ``name``: its declaration's, else its signature's."""
    spec = get_attack(name)
    try:
        return spec.param(param).default
    except KeyError:
        return inspect.signature(spec.fn).parameters[param].default


def declared_params() -> dict[str, Param]:
    """One :class:`Param` per parameter name that any attack declares, plus the loop options.

    The command line has one flag per name, so declarations that share a name must agree on
    its type and range (they may differ in default and help, as AGR's stop_on_success does).
    """
    out: dict[str, Param] = {}
    for p in (*(p for s in ATTACKS.values() for p in s.params), *LOOP_PARAMS):
        seen = out.setdefault(p.name, p)
        if (seen.kind, seen.low, seen.high, seen.low_open, seen.choices) != (p.kind, p.low, p.high, p.low_open,
                                                                             p.choices):
            raise TypeError(f"Two attacks declare {p.name} with different types or ranges.")
    return out


def run(name: str, model: nn.Module, x: torch.Tensor, y=None, **params) -> AttackResult:
    """Run the attack called ``name``; parameters it does not take (FGSM's steps) are dropped."""
    spec = get_attack(name)
    accepted = accepted_params(spec.name)
    return spec.fn(model, x, y, **{k: v for k, v in params.items() if k in accepted})
