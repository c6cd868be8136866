"""DeepFool: the linearised step to the nearest decision boundary, repeated until the label flips.

Paper: Moosavi-Dezfooli, Fawzi and Frossard, "DeepFool: a simple and accurate method to fool deep
neural networks", CVPR 2016. Multi-class Algorithm 2 with the L2 step (Eq. 8-9 and Algorithm 2)
and the L-p generalisation for p = inf (Eq. 10-11, q = 1): the overshoot ``(1 + eta)`` multiplies
the total perturbation (Sec. 3.2 and their code). A minimal-norm attack: each image's final
perturbation is its estimated robustness radius.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advcore.attacks._common import Recorder, check_inputs, radius_list, sizes, within_budget
from advcore.attacks.core import is_adversarial, prepare_labels
from advcore.attacks.params import AttackSpec, Param, check_values

OVERSHOOT = Param(
    "overshoot", "float", 0.02, low=0.0, high=1.0, label="overshoot (eta)", widget_range=(0.0, 0.5), widget_step=0.01,
    help="The total perturbation is multiplied by 1 + eta so the point lands past the linearised boundary.",
    cli_help="DeepFool overshoot eta", reference="Moosavi-Dezfooli et al. 2016, Sec. 3.2 (eta = 0.02)",
)
CANDIDATES = Param(
    "candidates", "int", 10, low=2, high=1000, label="candidate classes", widget_step=1,
    help="Only the top classes at the clean image are candidate boundaries (one gradient each per iteration); "
         "the paper uses the top 10 on ImageNet.", cli_help="DeepFool: number of top classes linearised",
    reference="Moosavi-Dezfooli et al. 2016, Sec. 4 (top 10 classes)",
)


def deepfool(model: nn.Module, x: torch.Tensor, y=None, *, eps: float | None = None, norm: str = "l2",
             steps: int = 50, overshoot: float = OVERSHOOT.default, candidates: int = CANDIDATES.default,
             targeted: bool = False, target=None, callback=None):
    """DeepFool (Moosavi-Dezfooli et al. 2016, Algorithm 2): at ``x_i`` linearise ``f'_k = f_k - f_o``,
    ``w'_k = grad f_k - grad f_o`` for each candidate k, take ``l = argmin |f'_k| / ||w'_k||_q`` (Eq. 8;
    q = 2 for L2, q = 1 for L-inf, Eq. 10), step ``r_i = |f'_l| / ||w'_l||_2^2 w'_l`` (Eq. 9) or
    ``|f'_l| / ||w'_l||_1 sign(w'_l)`` (Eq. 11), and stop once ``x0 + (1 + eta) sum r_i`` (clipped to
    [0, 1]) changes the label, or after ``steps`` iterations. The paper has no box; here the sum keeps
    only what survived the clip (``x_{i+1} = clip(x_i + (1 + eta) r_i)``, as torchattacks), so steps
    pushed against 0 or 1 are not silently accumulated.

    ``norm`` picks the variant; ``eps`` (optional) is a budget in that norm (a larger answer counts as
    none and returns the clean image). Targeted (``target``): the only candidate is the target and
    ``o`` the current prediction. Costs ``candidates`` gradients per iteration (one per class).
    Arguments: eps, norm, steps (max iterations), overshoot, candidates, targeted/target, callback.
    """
    own = check_values((OVERSHOOT, CANDIDATES), {"overshoot": overshoot, "candidates": candidates}, "DeepFool")
    check_inputs(x, eps, norm, steps)
    x = x.detach()
    label, targeted = prepare_labels(model, x, y, target, targeted)
    n, dev = x.shape[0], x.device
    view = (-1,) + (1,) * (x.dim() - 1)
    with torch.no_grad():
        clean = model(x)
    k = min(candidates, clean.shape[1])
    if targeted:
        cand = label[:, None]  # (N, 1): the target
    else:
        top = clean.argsort(1, descending=True)[:, :k]
        cand = torch.stack([row[row != lab][: k - 1] for row, lab in zip(top, label, strict=True)]) if n else top
        if cand.shape[1] < k - 1:  # the label was not among the top k
            cand = top[:, : k - 1]
    r_tot = torch.zeros_like(x)
    x_i = x.clone()
    active = torch.ones(n, dtype=torch.bool, device=dev)
    rec = Recorder(model, x, label, targeted, steps, callback)
    for _ in range(steps):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xi = x_i[idx].requires_grad_(True)
        with torch.enable_grad():
            out = model(xi)
            own_cls = out.argmax(1) if targeted else label[idx]
            classes = torch.cat([own_cls[:, None], cand[idx]], 1)  # (n, 1 + K)
            picked = out.gather(1, classes)
            grads = [torch.autograd.grad(picked[:, j].sum(), xi, retain_graph=j < classes.shape[1] - 1)[0]
                     for j in range(classes.shape[1])]
        rec.grad_evals[idx] += classes.shape[1]
        adv = rec.see(idx, out)
        g = torch.stack(grads, 1).flatten(2)  # (n, 1 + K, D)
        f_p = (picked[:, 1:] - picked[:, :1]).detach()  # (n, K)
        w_p = g[:, 1:] - g[:, :1]
        q = 2.0 if norm == "l2" else 1.0
        wn = w_p.norm(p=q, dim=2).clamp_min(1e-12)
        score = f_p.abs() / wn  # Eq. 8 / Eq. 10: distance to each linearised boundary
        score = torch.where(torch.isfinite(score), score, torch.full_like(score, math.inf))
        best = score.argmin(1)
        rows = torch.arange(idx.numel(), device=dev)
        fl, wl, nl = f_p[rows, best], w_p[rows, best], wn[rows, best]
        if norm == "l2":
            r = (fl.abs() / nl.pow(2))[:, None] * wl  # Eq. 9
        else:
            r = (fl.abs() / nl)[:, None] * wl.sign()  # Eq. 11, p = inf
        r = r.view_as(xi)
        go = ~adv  # those already past the boundary keep their point
        if go.any():
            j = idx[go]
            x_i[j] = (x[j] + (1 + overshoot) * (r_tot[j] + r[go])).clamp(0, 1)
            r_tot[j] = (x_i[j] - x[j]) / (1 + overshoot)  # what the clip removed is not carried on
        active[idx[adv]] = False
        if rec.step(active, x_i):
            break
    with torch.no_grad():
        fooled = is_adversarial(model(x_i), label, targeted)
    radius = torch.where(fooled, sizes(x_i - x, norm), torch.full((n,), math.inf, device=dev, dtype=x.dtype))
    x_out = torch.where(fooled.view(view), x_i, x)
    res = rec.finish(within_budget(x, x_out, eps, norm), {})
    res.params = {"eps": eps, "norm": norm, "steps": steps, "targeted": targeted, **own,
                  "radius": radius_list(radius), "radius_norm": norm}
    return res


SPECS = (
    AttackSpec("deepfool", "DeepFool (minimal perturbation, L2 or L-inf)", deepfool,
               "Moosavi-Dezfooli et al. 2016, Algorithm 2", params=(OVERSHOOT, CANDIDATES), order=75),
)
