"""One norm-generic iterative attack loop; the attacks are small update rules on it.

The loop (projected gradient ascent on the loss, Madry et al. 2018)::

    delta_0 = 0, or a random point of the ball (PGD's random start)
    for t in 0 .. steps-1:
        g_t       = grad_x J(x + delta_t, label)          # one forward + backward
        d_t       = rule(g_t, state)                      # sign, momentum, AdaGrad, ...
        delta_t+1 = Proj_ball(delta_t + alpha * d_t)      # stay in the eps-ball
        delta_t+1 = clip(x + delta_t+1, 0, 1) - x         # stay a valid image

``J`` is the cross-entropy to the true label (ascended) or, for a targeted attack,
minus the cross-entropy to the target (so the loop always ascends). ``loss=`` swaps
in any per-sample loss of the model's output (a margin loss, or the distance of a
layer's activations to a target's for feature-collision poisoning). Balls are per
sample: L2 norms, normalisations and projections never mix samples of a batch.
With ``stop_on_success`` a sample leaves the loop at the first iterate that is
already adversarial (the AGR paper's ``while f(x+v) = f(x)``, Algorithm 1) and
costs no more gradient evaluations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from advcore.errors import AdvlabError

NORMS = ("linf", "l2")
MAX_STEPS = 1000
FORMS = ("perturbation", "point")  # what the loop keeps between steps (see iterative_attack)

Loss = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``loss(output, label) -> (N,)``: the per-sample loss the loop ascends (descends when targeted)."""


# --------------------------------------------------------------------------- balls


def per_sample_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    """Norm of each sample, shaped ``(N, 1, 1, 1)`` for broadcasting."""
    n = t.flatten(1).norm(p=p, dim=1)
    return n.view(-1, *([1] * (t.dim() - 1)))


class Ball:
    """The geometry of one threat model: how to normalise a step, project, sample."""

    name: str = ""

    def normalize(self, g: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction of unit size for gradient ``g``."""
        raise NotImplementedError

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        """Closest point of the eps-ball to ``delta`` (per sample)."""
        raise NotImplementedError

    def random(self, shape: torch.Size, eps: float, generator: torch.Generator | None,
               device: torch.device) -> torch.Tensor:
        """A point drawn uniformly from the eps-ball (per sample)."""
        raise NotImplementedError

    def elementwise_scale(self, numel: int) -> float:
        """Factor that turns an elementwise update bounded by 1 into a unit-size step."""
        raise NotImplementedError

    def size(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of ``delta``, shaped ``(N,)``."""
        raise NotImplementedError


class LinfBall(Ball):
    name = "linf"

    def normalize(self, g: torch.Tensor) -> torch.Tensor:
        return g.sign()

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        return delta.clamp(-eps, eps)

    def random(self, shape, eps, generator, device):
        return (torch.rand(shape, generator=generator, device=device) * 2 - 1) * eps

    def elementwise_scale(self, numel: int) -> float:
        return 1.0

    def size(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.flatten(1).abs().amax(dim=1)


class L2Ball(Ball):
    name = "l2"

    def normalize(self, g: torch.Tensor) -> torch.Tensor:
        return g / per_sample_norm(g, 2).clamp_min(1e-12)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        n = per_sample_norm(delta, 2)
        return delta * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)

    def random(self, shape, eps, generator, device):
        d = torch.randn(shape, generator=generator, device=device)
        d = d / per_sample_norm(d, 2).clamp_min(1e-12)
        numel = math.prod(shape[1:])
        r = torch.rand((shape[0],) + (1,) * (len(shape) - 1), generator=generator, device=device)
        return d * r.pow(1.0 / numel) * eps  # uniform in the ball, not on the sphere

    def elementwise_scale(self, numel: int) -> float:
        return 1.0 / math.sqrt(numel)

    def size(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.flatten(1).norm(p=2, dim=1)


BALLS: dict[str, Ball] = {"linf": LinfBall(), "l2": L2Ball()}


def get_ball(norm: str) -> Ball:
    """The :class:`Ball` for ``"linf"`` or ``"l2"``."""
    try:
        return BALLS[norm]
    except KeyError:
        raise AdvlabError(f"Unknown norm {norm!r}; choose linf or l2.") from None


# ---------------------------------------------------------------- update rules


class UpdateRule(Protocol):
    """Turns the loss gradient into a step direction; may keep per-sample state."""

    def init_state(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def direction(self, grad: torch.Tensor, state: dict[str, torch.Tensor],
                  idx: torch.Tensor, ball: Ball) -> torch.Tensor: ...


class SteepestAscent:
    """FGSM / I-FGSM / PGD: ``d_t = sign(g_t)`` (L-inf) or ``g_t / ||g_t||_2`` (L2)."""

    def init_state(self, x):
        return {}

    def direction(self, grad, state, idx, ball):
        return ball.normalize(grad)


# ------------------------------------------------------------------ the loop


@dataclass
class StepInfo:
    """What the per-step callback sees (tensors are on the attack's device)."""

    step: int  # 1-based index of the gradient step just taken
    steps: int
    loss: torch.Tensor  # (N,) the loss (cross-entropy to the label) at the iterate differentiated; nan if inactive
    active: torch.Tensor  # (N,) bool, samples still iterating after this step
    x_adv: torch.Tensor  # (N, C, H, W) current iterate (do not modify)


@dataclass
class AttackResult:
    """The output of an attack on a batch, plus what it cost."""

    x_adv: torch.Tensor
    logits: torch.Tensor  # model output at x_adv
    success: torch.Tensor  # (N,) bool
    grad_evals: torch.Tensor  # (N,) gradient evaluations (forward+backward) spent on each sample
    loss_history: torch.Tensor  # (N, steps+1): the loss (CE to the label) at each iterate; nan after a sample stopped
    prob_history: torch.Tensor  # (N, steps+1): probability of the attack label at each iterate (nan: no classes)
    seconds: float
    cancelled: bool = False
    params: dict = field(default_factory=dict)
    # (N,) index of the first iterate found adversarial (0: the starting point; the last: x_adv), -1 if none
    steps_to_success: torch.Tensor | None = None


def attack_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The labels an untargeted attack moves away from: ``y``, else the model's own prediction."""
    if y is not None:
        return y.to(x.device).long()
    with torch.no_grad():
        return model(x).argmax(dim=1)


def is_adversarial(logits: torch.Tensor, label: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Untargeted: prediction differs from ``label``; targeted: prediction equals it."""
    pred = logits.argmax(dim=1)
    return pred == label if targeted else pred != label


def cross_entropy(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The loop's default loss: per-sample cross-entropy of ``logits`` to class ``label``."""
    return F.cross_entropy(logits, label, reduction="none")


def iterative_attack(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    label: torch.Tensor | None,
    rule: UpdateRule,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "linf",
    targeted: bool = False,
    random_start: bool = False,
    stop_on_success: bool = False,
    generator: torch.Generator | None = None,
    callback: Callable[[StepInfo], bool | None] | None = None,
    loss: Loss | None = None,
    form: str = "perturbation",
) -> AttackResult:
    """Run ``steps`` projected ascent steps of ``rule`` on a batch ``x`` in ``[0, 1]``.

    ``label`` is the true class (untargeted) or the target class (targeted).
    ``callback(info)`` runs after every step; returning ``True`` cancels the attack,
    which then returns the current iterate with ``cancelled=True``.
    The model is used as it is (its mode and weights are never changed); gradients
    are taken with respect to the input only.

    ``loss(output, label[active])`` replaces the cross-entropy: a ``(N,)`` loss of the
    model's output that the loop ascends (targeted: descends); ``model`` may then be any
    function of the batch, such as a layer's activations, and ``label`` any per-sample
    tensor the loss reads (target features), or None. Success, probabilities, first
    successes and ``stop_on_success`` need class labels (an integer ``label``); without
    them success is all False, probabilities nan and first successes -1.

    ``form`` is what the loop keeps between steps: ``"perturbation"`` (``delta``; the
    iterate is ``x + delta``) or ``"point"`` (the iterate ``z`` itself, updated as
    ``clip(x + Proj(z + alpha d - x))`` like Foolbox and torchattacks). The two are the
    same steps and differ only in float rounding (a last bit here and there).
    """
    ball = get_ball(norm)
    check_budget(eps=eps, alpha=alpha, steps=steps, norm=norm)
    if x.dim() != 4:
        raise AdvlabError("Images must be a batch shaped (N, C, H, W).")
    check_size(eps=eps, alpha=alpha, norm=norm, numel=x[0].numel())
    if form not in FORMS:
        raise AdvlabError(f"Unknown form {form!r}; choose {' or '.join(FORMS)}.")
    classes = label is not None and not torch.is_floating_point(label) and not torch.is_complex(label)
    if loss is None and not classes:
        raise AdvlabError("The cross-entropy loss needs class labels.")
    if stop_on_success and not classes:
        raise AdvlabError("Stopping on success needs class labels.")
    loss_fn = cross_entropy if loss is None else loss
    t0 = time.perf_counter()
    x = x.detach()
    if label is not None:
        label = label.to(x.device)
        if classes:
            label = label.long()
    n = x.shape[0]
    sign = -1.0 if targeted else 1.0
    point = form == "point"

    # ``state``: the perturbation delta (iterate x + delta) or the point z itself (iterate z).
    state = x.clone() if point else torch.zeros_like(x)
    if random_start and eps > 0:
        start = (x + ball.random(x.shape, eps, generator, x.device)).clamp(0, 1)
        state = start if point else start - x
    rule_state = rule.init_state(x)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    grad_evals = torch.zeros(n, dtype=torch.long, device=x.device)
    first = torch.full((n,), -1, dtype=torch.long, device=x.device)
    nan = torch.full((n,), float("nan"), device=x.device, dtype=x.dtype)
    loss_hist: list[torch.Tensor] = []
    prob_hist: list[torch.Tensor] = []
    cancelled = False

    for step in range(steps):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xi = (state[idx] if point else x[idx] + state[idx]).requires_grad_(True)
        with torch.enable_grad():
            out = model(xi)
            li = loss_fn(out, None if label is None else label[idx])
            if li.shape != (idx.numel(),):
                raise ValueError(f"The loss must give one value per sample ({idx.numel()}), got {tuple(li.shape)}.")
            (grad,) = torch.autograd.grad(sign * li.sum(), xi)
        loss_hist.append(nan.index_put((idx,), li.detach().to(nan.dtype)))
        if classes:
            logits = out.detach()
            prob_hist.append(nan.index_put((idx,), logits.softmax(1).gather(1, label[idx, None])[:, 0]))
            adversarial = is_adversarial(logits, label[idx], targeted)
            first[idx[adversarial & (first[idx] < 0)]] = step
        else:
            prob_hist.append(nan)
        grad_evals[idx] += 1  # computed for every active sample, even one found adversarial now
        if stop_on_success and adversarial.any():
            active[idx[adversarial]] = False
            keep = ~adversarial
            idx, grad = idx[keep], grad[keep]
        if idx.numel() > 0:
            d = rule.direction(grad, rule_state, idx, ball)
            if point:
                state[idx] = (x[idx] + ball.project(state[idx] + alpha * d - x[idx], eps)).clamp(0, 1)
            else:
                new = ball.project(state[idx] + alpha * d, eps)
                state[idx] = (x[idx] + new).clamp(0, 1) - x[idx]
        if callback is not None and callback(
            StepInfo(step=step + 1, steps=steps, loss=loss_hist[-1], active=active.clone(),
                     x_adv=state.clone() if point else x + state)
        ):
            cancelled = True
            break

    taken = len(loss_hist)
    x_adv = (state if point else x + state).detach()
    with torch.no_grad():
        out = model(x_adv)
        loss_hist.append(loss_fn(out, label).to(nan.dtype))
    if classes:
        prob_hist.append(out.softmax(1).gather(1, label[:, None])[:, 0])
        success = is_adversarial(out, label, targeted)
        first[success & (first < 0)] = taken
    else:
        prob_hist.append(nan)
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return AttackResult(
        x_adv=x_adv,
        logits=out,
        success=success,
        grad_evals=grad_evals,
        loss_history=torch.stack(loss_hist, dim=1),
        prob_history=torch.stack(prob_hist, dim=1),
        seconds=time.perf_counter() - t0,
        cancelled=cancelled,
        steps_to_success=first,
    )


def check_budget(*, eps: float, alpha: float, steps: int, norm: str) -> None:
    """Refuse budgets a person could type by mistake, with a plain message."""
    get_ball(norm)
    for name, value in (("eps", eps), ("alpha", alpha)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AdvlabError(f"{name} must be a finite number, got {value!r}.")
    if eps < 0:
        raise AdvlabError(f"eps must be at least 0, got {eps:g}.")
    if norm == "linf" and eps > 1:
        raise AdvlabError(f"An L-infinity eps of {eps:g} exceeds the pixel range [0, 1]; use e.g. 8/255.")
    if alpha <= 0 and eps > 0:
        raise AdvlabError(f"The step size alpha must be positive, got {alpha:g}.")
    check_steps(steps)


MAX_ALPHA = 1000.0  # larger steps overflow float32 on the way to the projection (and leave the pixel range anyway)


def check_size(*, eps: float, alpha: float, norm: str, numel: int) -> None:
    """Refuse a budget beyond the pixel range of images with ``numel`` values: an L2 eps above ``sqrt(numel)``
    (the diameter of the pixel cube) or a step above :data:`MAX_ALPHA` would only overflow to NaN."""
    if norm == "l2" and eps > math.sqrt(numel):
        raise AdvlabError(f"An L2 eps of {eps:g} exceeds {math.sqrt(numel):.4g}, the largest distance between two "
                          f"images of {numel} pixel values in [0, 1].")
    if alpha > MAX_ALPHA:
        raise AdvlabError(f"The step size alpha must be at most {MAX_ALPHA:g}, got {alpha:g}.")


def check_steps(steps: int) -> None:
    """A step count must be a whole number in ``1..MAX_STEPS``."""
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise AdvlabError(f"steps must be a whole number, got {steps!r}.")
    if steps < 1 or steps > MAX_STEPS:
        raise AdvlabError(f"steps must be between 1 and {MAX_STEPS}, got {steps}.")


# ------------------------------------------------------- from an attack's arguments to the loop


def prepare_labels(model: nn.Module, x: torch.Tensor, y, target, targeted: bool) -> tuple[torch.Tensor, bool]:
    """The label the loop uses, and whether the attack is targeted (a ``target`` makes it so)."""
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


def default_alpha(alpha: float | None, eps: float, steps: int, factor: float) -> float:
    """``factor * eps / steps`` unless a step size is given (the loop validates the whole budget)."""
    check_steps(steps)
    return factor * eps / steps if alpha is None else alpha


def run_rule(model: nn.Module, x: torch.Tensor, y, target, targeted: bool, rule: UpdateRule, *, eps: float,
             alpha: float, steps: int, norm: str, random_start: bool = False, stop_on_success: bool = False,
             seed: int | None = None, callback: Callable[[StepInfo], bool | None] | None = None,
             params: dict | None = None) -> AttackResult:
    """An attack's body: resolve the labels, seed the random start, run the loop, record the parameters.

    ``res.params`` holds the budget, the loop options and ``params`` (the attack's own, as declared).
    """
    label, targeted = prepare_labels(model, x, y, target, targeted)
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
