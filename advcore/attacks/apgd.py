"""APGD: auto-PGD with the step-size schedule of checkpoints and momentum (CE or DLR loss).

Paper: Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (AutoAttack). Algorithm 1: step ``eta_0 = 2 eps``; the update with
momentum ``alpha = 0.75`` (Eq. 2, the first step without); at the checkpoints
``w_j = ceil(p_j N_iter)``, ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``
(Sec. 3.2), the step halves and the iterate restarts from the best point when Condition 1 (the
loss rose in fewer than ``rho`` of the steps since the last checkpoint) or Condition 2 (the step was
not halved at the last checkpoint and the best loss did not improve) holds. Losses: cross-entropy
or the DLR loss (Sec. 4), untargeted or its targeted version (APGD-T of AutoAttack).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from advcore.attacks._common import Recorder, check_inputs, generator, true_labels
from advcore.attacks.core import get_ball, is_adversarial, prepare_labels
from advcore.attacks.gradient_sign import RANDOM_START, SEED
from advcore.attacks.params import STOP_ON_SUCCESS, AttackSpec, Param, check_values
from advcore.errors import AdvlabError

LOSS = Param(
    "loss", "choice", "ce", choices=("ce", "dlr"), label="Loss", widget_key="attack_apgd_loss",
    choice_labels=("cross-entropy (APGD-CE)", "DLR (APGD-DLR; targeted: APGD-T)"),
    help="What APGD ascends. DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3) is invariant to shifting and "
         "scaling the logits; targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).",
    cli_help="APGD loss: ce or dlr (targeted with --target: the targeted DLR)", reference="Croce & Hein 2020, Sec. 4",
)
RHO = Param(
    "rho", "float", 0.75, low=0.0, high=1.0, label="rho (checkpoint threshold)", widget_range=(0.0, 1.0),
    widget_step=0.05, help="Condition 1: the step halves at a checkpoint when the loss rose in at most rho of "
                           "the steps since the previous one.",
    cli_help="APGD threshold rho of Condition 1", reference="Croce & Hein 2020, Sec. 3.2 (rho = 0.75)",
)
RESTARTS = Param(
    "restarts", "int", 1, low=1, high=100, label="restarts", widget_step=1,
    help="Runs from fresh random starts; each restart attacks only the images not fooled yet.",
    cli_help="APGD random restarts", reference="Croce & Hein 2020, Sec. 5 (1 restart per attack in AutoAttack)",
)
MOMENTUM = 0.75  # Eq. 2's alpha, fixed in the paper


def dlr(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """DLR loss (Croce & Hein 2020, Sec. 4), per sample; with ``target``, the targeted DLR."""
    zs, ind = logits.sort(dim=1)
    zy = logits.gather(1, y[:, None])[:, 0]
    if target is None:
        top_is_y = (ind[:, -1] == y).to(logits.dtype)
        return -(zy - zs[:, -2] * top_is_y - zs[:, -1] * (1 - top_is_y)) / (zs[:, -1] - zs[:, -3] + 1e-12)
    zt = logits.gather(1, target[:, None])[:, 0]
    return -(zy - zt) / (zs[:, -1] - 0.5 * (zs[:, -3] + zs[:, -4]) + 1e-12)


def checkpoints(n_iter: int) -> list[int]:
    """The iterations ``w_j`` at which the step size is reconsidered (Sec. 3.2), as torchattacks and AutoAttack
    compute them: the first after ``0.22 N``, then ever shorter periods (down by ``0.03 N``) of at least ``0.06 N``."""
    k, decr, least = max(int(0.22 * n_iter), 1), max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)
    out, at = [], 0
    while True:
        at += k
        if at > n_iter:
            return out
        out.append(at)
        k = max(k - decr, least)


def apgd(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf", steps: int = 100,
         loss: str = LOSS.default, rho: float = RHO.default, restarts: int = RESTARTS.default,
         random_start: bool = RANDOM_START.default, seed: int | None = SEED.default, targeted: bool = False,
         target=None, stop_on_success: bool = STOP_ON_SUCCESS.default, callback=None):
    """APGD (Croce & Hein 2020, Algorithm 1) for ``steps`` iterations, ``restarts`` times.

    ``z = P(x_k + eta grad)``, ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))`` with
    ``alpha = 0.75`` (Eq. 2); ``eta_0 = 2 eps``, halved at a checkpoint under Condition 1 or 2 (rho),
    which also moves the iterate back to the best point. Returns, per image, the first adversarial
    iterate found, else the highest-loss point. The random start is a point of the sphere of radius eps
    (as AutoAttack: ``eps * t / ||t||``, t uniform in [-1, 1] for L-inf, Gaussian for L2), drawn for the
    batch from ``seed`` (restart r continues the stream). ``stop_on_success`` (the other iterative
    attacks' meaning): an image leaves the loop at its first adversarial iterate, frozen there and
    returned as that iterate, and costs no more gradients; False (default): every image runs all
    ``steps`` (Algorithm 1's full run). The point returned is the same either way (the first
    adversarial iterate, else the highest-loss one): the policies differ in gradients spent and in the
    loss history after the first success. Arguments: eps, norm, steps, loss, rho, restarts,
    random_start, seed, targeted/target, stop_on_success, callback.
    """
    own = check_values((LOSS, RHO, RESTARTS), {"loss": loss, "rho": rho, "restarts": restarts}, "APGD")
    own.update(check_values((RANDOM_START, SEED), {"random_start": random_start, "seed": seed}, "APGD"))
    check_inputs(x, eps, norm, steps)
    x = x.detach()
    y_true = true_labels(model, x, y)
    label, targeted = prepare_labels(model, x, y, target, targeted)
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1] if x.shape[0] else 10
    if loss == "dlr" and n_classes < (4 if targeted else 3):
        raise AdvlabError(f"The DLR loss needs at least {4 if targeted else 3} classes; this model has {n_classes}.")
    n, dev = x.shape[0], x.device
    view = (-1,) + (1,) * (x.dim() - 1)
    ball = get_ball(norm)
    sign = -1.0 if targeted and loss == "ce" else 1.0

    def objective(out: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        if loss == "ce":
            return sign * F.cross_entropy(out, label[i], reduction="none")
        return dlr(out, y_true[i], label[i] if targeted else None)

    def project(z: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (x0 + ball.project(z - x0, eps)).clamp(0, 1)

    def unit(g: torch.Tensor) -> torch.Tensor:
        return g.sign() if norm == "linf" else g / g.flatten(1).norm(dim=1).view(view).clamp_min(1e-12)

    gen = generator(seed, dev)
    rec = Recorder(model, x, label, targeted, (steps + 1) * restarts, callback)
    x_out = x.clone()
    fooled = torch.zeros(n, dtype=torch.bool, device=dev)
    best_loss_all = torch.full((n,), -math.inf, device=dev, dtype=x.dtype)
    marks = set(checkpoints(steps))
    for _ in range(restarts):
        idx = (~fooled).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0 = x[idx]
        m = idx.numel()
        if random_start and eps > 0:
            if norm == "linf":
                t = 2 * torch.rand(x0.shape, generator=gen, device=dev, dtype=x.dtype) - 1
                t = t / t.flatten(1).abs().amax(1).view(view).clamp_min(1e-12)
            else:
                t = torch.randn(x0.shape, generator=gen, device=dev, dtype=x.dtype)
                t = t / t.flatten(1).norm(dim=1).view(view).clamp_min(1e-12)
            xk = (x0 + eps * t).clamp(0, 1)
        else:
            xk = x0.clone()

        def grad_at(z: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                out = model(z)
                li = objective(out, i)
                (g,) = torch.autograd.grad(li.sum(), z)
            rec.grad_evals[i] += 1
            return li.detach(), g, out.detach()

        li, g, out = grad_at(xk, idx)
        adv = rec.see(idx, out)
        local_fooled = adv.clone()
        x_adv_found = torch.where(adv.view(view), xk, x0)
        x_best, g_best, l_best = xk.clone(), g.clone(), li.clone()
        step = torch.full((m,), 2.0 * eps, device=dev, dtype=x.dtype).view(view)
        x_prev = xk.clone()
        rises = torch.zeros(m, device=dev)
        l_prev = li.clone()
        l_best_at_check = l_best.clone()
        halved_at_check = torch.ones(m, dtype=torch.bool, device=dev)
        since = 0
        for k in range(steps):
            live = ~local_fooled if stop_on_success else torch.ones_like(local_fooled)
            if not bool(live.any()):
                break
            a = MOMENTUM if k > 0 else 1.0
            z = project(xk + step * unit(g), x0)
            x_new = project(xk + a * (z - xk) + (1 - a) * (xk - x_prev), x0)  # Eq. 2
            x_prev, xk = torch.where(live.view(view), xk, x_prev), torch.where(live.view(view), x_new, xk)
            if bool(live.all()):
                li, g, out = grad_at(xk, idx)
                adv = rec.see(idx, out)
            else:  # the frozen images (stop_on_success) are not evaluated again
                li_l, g_l, out_l = grad_at(xk[live], idx[live])
                li, g = li.clone(), g.clone()
                li[live], g[live] = li_l, g_l
                adv = torch.zeros_like(live)
                adv[live] = rec.see(idx[live], out_l)
            new = adv & ~local_fooled
            x_adv_found = torch.where(new.view(view), xk, x_adv_found)
            local_fooled |= adv
            rises += (li > l_prev).float()
            l_prev = li
            up = li > l_best
            x_best = torch.where(up.view(view), xk, x_best)
            g_best = torch.where(up.view(view), g, g_best)
            l_best = torch.where(up, li, l_best)
            since += 1
            if k + 1 in marks:
                cond1 = rises <= since * rho
                cond2 = ~halved_at_check & (l_best_at_check >= l_best)
                halve = cond1 | cond2
                halved_at_check, l_best_at_check = halve.clone(), l_best.clone()
                step = torch.where(halve.view(view), step / 2, step)
                xk = torch.where(halve.view(view), x_best, xk)
                g = torch.where(halve.view(view), g_best, g)
                rises.zero_()
                since = 0
            full = x_out.clone()
            full[idx] = torch.where(local_fooled.view(view), x_adv_found, x_best)
            active = torch.zeros(n, dtype=torch.bool, device=dev)
            active[idx] = ~local_fooled if stop_on_success else True
            if rec.step(active, full):
                break
        keep = local_fooled | (l_best > best_loss_all[idx])
        chosen = torch.where(local_fooled.view(view), x_adv_found, x_best)
        x_out[idx[keep]] = chosen[keep]
        best_loss_all[idx[keep]] = l_best[keep]
        fooled[idx[local_fooled]] = True
        if rec.cancelled:
            break
    res = rec.finish(x_out, {})
    res.success = is_adversarial(res.logits, label, targeted)
    res.params = {"eps": eps, "norm": norm, "steps": steps, "targeted": targeted, **own,
                  "stop_on_success": bool(stop_on_success)}
    return res


SPECS = (
    AttackSpec("apgd", "APGD (auto-PGD, CE or DLR loss)", apgd, "Croce & Hein 2020, Algorithm 1",
               params=(LOSS, RHO, RESTARTS, RANDOM_START, SEED), order=80, aliases=("auto-pgd", "apgd-ce")),
)
