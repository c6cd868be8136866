"""C&W L2: Carlini and Wagner's minimal-L2 attack (tanh box, Adam, binary search over c).

Paper: Carlini and Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
The perturbation lives in tanh space, ``x' = (tanh(w) + 1) / 2`` (Sec. V-A, "change of variables"),
so every iterate is a valid image; Adam minimises ``||x' - x||_2^2 + c * f(x')`` with the margin
objective ``f_6`` (Sec. V-A, Eq. for f_6; the paper's best), and a binary search over ``c``
(Sec. V-B) keeps, per image, the smallest adversarial perturbation found: its robustness radius.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advcore.attacks._common import Recorder, check_inputs, radius_list, sizes, within_budget
from advcore.attacks.core import prepare_labels
from advcore.attacks.params import AttackSpec, Param, check_values

C = Param(
    "c", "float", 1.0, low=0.0, high=1e6, low_open=True, label="c (initial constant)", widget_range=(1e-3, 100.0),
    widget_step=0.1, help="Weight of the misclassification term f against ||delta||_2^2 at the first binary-search "
                          "step; the search then halves or raises it per image (x10 until a first success).",
    cli_help="C&W initial trade-off constant c", reference="Carlini & Wagner 2017, Sec. V-B (binary search over c)",
)
KAPPA = Param(
    "kappa", "float", 0.0, low=0.0, high=1000.0, label="kappa (confidence)", widget_range=(0.0, 50.0),
    widget_step=0.5, help="Logit margin the objective f_6 asks for beyond the decision boundary: larger kappa, "
                          "more confident (and larger) adversarial examples.",
    cli_help="C&W confidence margin kappa of f_6, in logits", reference="Carlini & Wagner 2017, Sec. V-A (f_6)",
)
BINARY_STEPS = Param(
    "binary_steps", "int", 5, low=1, high=20, label="binary-search steps", widget_step=1,
    help="How many values of c are tried per image (each one a fresh run of `steps` Adam steps).",
    cli_help="C&W binary-search steps over c", reference="Carlini & Wagner 2017, Sec. V-B (their code: 9)",
)
LR = Param(
    "lr", "float", 0.01, low=0.0, high=10.0, low_open=True, label="lr (Adam)", widget_range=(1e-4, 1.0),
    widget_step=0.001, widget_format=".4f", help="Adam's learning rate on w, the tanh-space variable.",
    cli_help="C&W Adam learning rate", reference="Carlini & Wagner 2017, Sec. VI (lr 0.01)",
)


def margin_f6(logits: torch.Tensor, label: torch.Tensor, targeted: bool, kappa: float) -> torch.Tensor:
    """``f_6``: ``max(max_{i != t} Z_i - Z_t, -kappa)`` (targeted at t) or ``max(Z_y - max_{i != y} Z_i, -kappa)``."""
    own = logits.gather(1, label[:, None])[:, 0]
    other = logits.masked_fill(nn.functional.one_hot(label, logits.shape[1]).bool(), -math.inf).amax(1)
    return torch.clamp(other - own if targeted else own - other, min=-kappa)


def cw(model: nn.Module, x: torch.Tensor, y=None, *, eps: float | None = None, norm: str = "l2", steps: int = 100,
       c: float = C.default, kappa: float = KAPPA.default, binary_steps: int = BINARY_STEPS.default,
       lr: float = LR.default, targeted: bool = False, target=None, callback=None):
    """C&W L2 (Carlini & Wagner 2017, Sec. V): minimise ``||x' - x||_2^2 + c f_6(x')`` over ``w``,
    ``x' = (tanh w + 1) / 2``, with Adam (``lr``, ``steps`` per value of c) and ``binary_steps`` of
    binary search over c per image (bounds [0, 1e10]; x10 until the first success, as their code).

    Minimal-norm: each image keeps the smallest-L2 adversarial iterate found (``params["radius"]``,
    inf where none). ``eps`` (optional) is a budget in ``norm``: an answer larger than eps counts as
    no adversarial example within it and the clean image is returned. Pixels of exactly 0 or 1 start
    at ``atanh(+-0.999999)`` as in their code, so they can move. Arguments: eps, norm (of the budget),
    steps, c, kappa, binary_steps, lr, targeted/target, callback.
    """
    own = check_values((C, KAPPA, BINARY_STEPS, LR), {"c": c, "kappa": kappa, "binary_steps": binary_steps,
                                                      "lr": lr}, "C&W")
    check_inputs(x, eps, norm, steps)
    x = x.detach()
    label, targeted = prepare_labels(model, x, y, target, targeted)
    n, dev = x.shape[0], x.device
    view = (-1,) + (1,) * (x.dim() - 1)
    rec = Recorder(model, x, label, targeted, steps * binary_steps, callback)
    w0 = torch.atanh((x * 2 - 1) * 0.999999)
    const = torch.full((n,), float(c), device=dev, dtype=x.dtype)
    lower = torch.zeros(n, device=dev, dtype=x.dtype)
    upper = torch.full((n,), 1e10, device=dev, dtype=x.dtype)
    best_l2 = torch.full((n,), math.inf, device=dev, dtype=x.dtype)
    best = x.clone()
    all_idx = torch.arange(n, device=dev)
    b1, b2, adam_eps = 0.9, 0.999, 1e-8
    for _ in range(binary_steps):
        w = w0.clone()
        m, v = torch.zeros_like(w), torch.zeros_like(w)
        found = torch.zeros(n, dtype=torch.bool, device=dev)
        for t in range(1, steps + 1):
            w.requires_grad_(True)
            with torch.enable_grad():
                xa = (torch.tanh(w) + 1) / 2
                out = model(xa)
                l2 = (xa - x).flatten(1).pow(2).sum(1)
                cost = l2 + const * margin_f6(out, label, targeted, kappa)
                (g,) = torch.autograd.grad(cost.sum(), w)
            rec.grad_evals += 1
            w = w.detach()
            xa, l2 = xa.detach(), l2.detach()
            adv = rec.see(all_idx, out)
            better = adv & (l2 < best_l2)
            best_l2 = torch.where(better, l2, best_l2)
            best = torch.where(better.view(view), xa, best)
            found |= adv
            m = b1 * m + (1 - b1) * g  # Adam, as torch.optim.Adam (bias-corrected, eps outside the root)
            v = b2 * v + (1 - b2) * g * g
            denom = (v / (1 - b2 ** t)).sqrt() + adam_eps
            w = w - lr / (1 - b1 ** t) * m / denom
            if rec.step(torch.ones(n, dtype=torch.bool, device=dev), best):
                break
        if rec.cancelled:
            break
        # Sec. V-B: success lowers the upper bound, failure raises the lower one (x10 while unbounded).
        upper = torch.where(found, torch.minimum(upper, const), upper)
        lower = torch.where(found, lower, torch.maximum(lower, const))
        const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
    radius = best_l2.sqrt()
    res = rec.finish(within_budget(x, best, eps, norm), {})
    res.params = {"eps": eps, "norm": norm, "steps": steps, "targeted": targeted, **own,
                  "radius": radius_list(radius), "radius_norm": "l2",
                  "radius_in_budget_norm": radius_list(torch.where(torch.isfinite(radius), sizes(best - x, norm),
                                                                   radius))}
    return res


SPECS = (
    AttackSpec("cw", "C&W L2 (Carlini-Wagner, minimal L2)", cw, "Carlini & Wagner 2017, Sec. V",
               params=(C, KAPPA, BINARY_STEPS, LR), order=70, aliases=("carlini-wagner", "cw-l2")),
)
