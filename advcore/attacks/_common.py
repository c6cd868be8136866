"""Shared pieces of the attacks that do not run on the one loop (C&W, DeepFool, APGD, Square).

Each of these has its own iteration, but they report through the same :class:`AttackResult`:
the per-iterate loss (cross-entropy to the attack label) and probability histories, the first
adversarial iterate, the gradient evaluations, and the per-step callback with Cancel.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from advcore.attacks.core import AttackResult, StepInfo, check_budget, check_size, get_ball, is_adversarial
from advcore.errors import AdvlabError


def check_inputs(x: torch.Tensor, eps: float | None, norm: str, steps: int) -> None:
    """The budget checks every attack shares (eps may be None: no bound, for minimal-norm attacks)."""
    if x.dim() != 4:
        raise AdvlabError("Images must be a batch shaped (N, C, H, W).")
    e = 0.0 if eps is None else eps
    check_budget(eps=e, alpha=max(e, 1.0) if isinstance(e, (int, float)) else e, steps=steps, norm=norm)
    check_size(eps=e, alpha=1.0, norm=norm, numel=x[0].numel())


def generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """An explicit generator seeded with ``seed`` (None: unseeded, drawn from the default)."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def sizes(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample size of ``delta`` in ``norm`` (``(N,)``)."""
    return get_ball(norm).size(delta)


def within_budget(x: torch.Tensor, x_adv: torch.Tensor, eps: float | None, norm: str) -> torch.Tensor:
    """``x_adv`` where its perturbation is at most ``eps`` in ``norm``, else the clean image.

    A minimal-norm attack's answer is only an adversarial example *within a budget* if it is that
    small: robust accuracy at eps from a minimal-norm attack counts exactly those (Carlini & Wagner
    2017, Sec. VI; Moosavi-Dezfooli et al. 2016, Sec. 4 rho_adv).
    """
    if eps is None:
        return x_adv
    ok = sizes(x_adv - x, norm) <= eps * (1 + 1e-6)
    return torch.where(ok.view(-1, *([1] * (x.dim() - 1))), x_adv, x)


class Recorder:
    """Per-iterate histories, first successes, gradient counts and the callback, per sample."""

    def __init__(self, model: nn.Module, x: torch.Tensor, label: torch.Tensor, targeted: bool, steps: int,
                 callback: Callable[[StepInfo], bool | None] | None):
        self.model, self.x, self.label, self.targeted = model, x, label, targeted
        self.steps, self.callback = steps, callback
        n = x.shape[0]
        self.nan = torch.full((n,), float("nan"), device=x.device, dtype=x.dtype)
        self.loss: list[torch.Tensor] = []
        self.prob: list[torch.Tensor] = []
        self.first = torch.full((n,), -1, dtype=torch.long, device=x.device)
        self.grad_evals = torch.zeros(n, dtype=torch.long, device=x.device)
        self.t0 = time.perf_counter()
        self.cancelled = False

    def see(self, idx: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Record the iterate of samples ``idx`` whose model output is ``logits``; its adversarial mask."""
        logits = logits.detach()
        lab = self.label[idx]
        self.loss.append(self.nan.index_put((idx,), F.cross_entropy(logits, lab, reduction="none").to(self.nan.dtype)))
        self.prob.append(self.nan.index_put((idx,), logits.softmax(1).gather(1, lab[:, None])[:, 0].to(self.nan.dtype)))
        adv = is_adversarial(logits, lab, self.targeted)
        self.first[idx[adv & (self.first[idx] < 0)]] = len(self.loss) - 1
        return adv

    def step(self, active: torch.Tensor, x_now: torch.Tensor) -> bool:
        """Run the callback after an iteration; True when the person cancelled."""
        if self.callback is not None and self.callback(
            StepInfo(step=len(self.loss), steps=self.steps, loss=self.loss[-1] if self.loss else self.nan,
                     active=active.clone(), x_adv=x_now.clone())
        ):
            self.cancelled = True
        return self.cancelled

    def finish(self, x_adv: torch.Tensor, params: dict) -> AttackResult:
        """The result at ``x_adv`` (one more forward pass for its logits)."""
        x_adv = x_adv.detach()
        with torch.no_grad():
            out = self.model(x_adv)
        all_idx = torch.arange(x_adv.shape[0], device=x_adv.device)
        taken = len(self.loss)
        self.see(all_idx, out)
        success = is_adversarial(out, self.label, self.targeted)
        self.first[success & (self.first < 0)] = taken
        self.first[~success] = -1  # the answer kept is not adversarial (e.g. outside the budget)
        if x_adv.device.type == "cuda":
            torch.cuda.synchronize(x_adv.device)
        return AttackResult(
            x_adv=x_adv, logits=out, success=success, grad_evals=self.grad_evals,
            loss_history=torch.stack(self.loss, dim=1), prob_history=torch.stack(self.prob, dim=1),
            seconds=time.perf_counter() - self.t0, cancelled=self.cancelled, params=params,
            steps_to_success=self.first,
        )


def radius_list(r: torch.Tensor) -> list[float]:
    """Per-image radii as plain floats for the record (inf: no adversarial example found)."""
    return [float(v) if math.isfinite(float(v)) else math.inf for v in r.detach().cpu()]


def true_labels(model: nn.Module, x: torch.Tensor, y) -> torch.Tensor:
    """The true class of each image: ``y`` (one or one per image), else the model's prediction."""
    if y is None:
        with torch.no_grad():
            return model(x).argmax(1)
    y = torch.as_tensor(y, device=x.device).long().reshape(-1)
    return y.expand(x.shape[0]).clone() if y.numel() == 1 else y
