"""Square Attack (L-inf and L2): a score-based black-box attack by random square updates.

Paper: Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020. Algorithm 1 (random search) with

* the L-inf sampling distribution of Algorithm 2: start from vertical stripes of +-eps, then each
  iteration sets one random square of side ``s = round(sqrt(p * h * w))`` to ``x +- eps`` (one sign
  per channel) and keeps it if the loss falls;
* the L2 sampling distribution of Algorithm 3: start from a 5x5 grid of squares each carrying the
  centred "eta" pattern (Sec. 3.2: ``eta^(h1, h2)`` rectangles, +-, normalised) with a random sign per
  channel, scaled to ``||delta||_2 = eps``; each iteration picks two windows of side ``s`` (odd, at
  least 3): the first gets ``eta`` (random sign per channel, random orientation) plus its old content
  normalised, rescaled so it holds the mass of both windows and the budget left; the second is
  zeroed (the mass moves from it to the first), and the whole perturbation is rescaled to eps.

``p`` follows the piecewise-constant schedule of Sec. 4 from ``p_init`` (halved at iterations 10,
50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10000, rescaled to ``n_queries``). Only the model's
output scores are used: no gradient is ever taken.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from advcore.attacks._common import Recorder, check_inputs, generator
from advcore.attacks.core import prepare_labels
from advcore.attacks.gradient_sign import SEED
from advcore.attacks.params import AttackSpec, Param, check_values
from advcore.errors import AdvlabError

N_QUERIES = Param(
    "n_queries", "int", 1000, low=1, high=10000, label="queries per image", widget_step=100,
    help="Most model evaluations per image (the first is the striped start); an image stops at its first success.",
    cli_help="Square: query budget per image", reference="Andriushchenko et al. 2020, Sec. 4 (10,000 queries)",
)
P_INIT = Param(
    "p_init", "float", 0.05, low=0.0, high=1.0, low_open=True, label="p_init (square size)",
    widget_range=(0.01, 1.0), widget_step=0.01,
    help="Initial fraction of the image a square covers (s^2 = p h w); the schedule halves it as queries pass.",
    cli_help="Square: initial fraction p of pixels per square",
    reference="Andriushchenko et al. 2020, Sec. 4 (p_init = 0.05 for L-inf, 0.1 for L2)",
)
SEED_SQ = replace(SEED, enabled_by=None, help="Fixes the random stripes and squares, so the numbers are reproducible.",
                  cli_help="seed of the random search")
MILESTONES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10000 iterations (Sec. 4)


def p_schedule(p_init: float, it: int, n_queries: int) -> float:
    """``p`` at iteration ``it``: ``p_init / 2^j`` after the j-th milestone of the 10000-iteration schedule."""
    it = int(it / n_queries * 10000)
    return p_init / 2 ** sum(it > m for m in MILESTONES)


def margin_and_loss(logits: torch.Tensor, label: torch.Tensor, targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Margin (negative once adversarial) and the loss random search lowers: the margin
    ``z_y - max_{k != y} z_k`` untargeted, the cross-entropy to the target when targeted (Sec. 4)."""
    own = logits.gather(1, label[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(label, logits.shape[1]).bool(), -math.inf).amax(1)
    if targeted:
        return other - own, F.cross_entropy(logits, label, reduction="none")
    return own - other, own - other


def square(model: nn.Module, x: torch.Tensor, y=None, *, eps: float, norm: str = "linf",
           n_queries: int = N_QUERIES.default, p_init: float = P_INIT.default, seed: int | None = SEED_SQ.default,
           targeted: bool = False, target=None, stop_on_success: bool = True, callback=None):
    """Square Attack (Andriushchenko et al. 2020, Algorithm 1), L-inf (Algorithm 2) or L2 (Algorithm 3),
    ``n_queries`` model evaluations per image at most (the start is the first).

    L-inf: each iteration draws one square position and one random order of the 2^C channel signs,
    shared by the batch; each image takes the first sign pattern that changes its square (the paper's
    code redraws until it does). L2: each iteration draws the two window positions, the orientation of
    ``eta`` and its sign per channel for the batch (their code draws the signs per image). Each image's
    draws are thus the paper's distribution and its result does not depend on the other images of its batch.
    Records queries used per image in ``params["queries"]``; ``grad_evals`` stays 0. Its "steps" are
    queries: ``steps_to_success`` counts them (0 = the striped start, the first query).
    ``stop_on_success`` (default True, Algorithm 1 as the paper: only unfooled images are queried): an
    image stops at its first adversarial query, frozen there. False: every image uses all ``n_queries``;
    a fooled image keeps a new draw only where it stays adversarial and lowers the loss (the margin, or
    the targeted cross-entropy), so it ends more confidently misclassified at the same eps.
    Arguments: eps (L-inf: per pixel; L2: of the whole perturbation), norm, n_queries, p_init (the paper
    uses 0.05 for L-inf and 0.1 for L2), seed, targeted/target, stop_on_success, callback.
    """
    own = check_values((N_QUERIES, P_INIT, SEED_SQ), {"n_queries": n_queries, "p_init": p_init, "seed": seed}, "Square")
    if norm not in ("linf", "l2"):
        raise AdvlabError(f"The Square Attack has an L-inf and an L2 version (Algorithms 2 and 3); got norm {norm!r}.")
    check_inputs(x, eps, norm, 1)
    x = x.detach()
    label, targeted = prepare_labels(model, x, y, target, targeted)
    gen = generator(seed, x.device)
    rec = Recorder(model, x, label, targeted, n_queries, callback)
    search = _search_linf if norm == "linf" else _search_l2
    x_best, queries = search(model, x, label, targeted, eps, n_queries, p_init, gen, rec, bool(stop_on_success))
    res = rec.finish(x_best, {})
    res.params = {"eps": eps, "norm": norm, "targeted": targeted, **own, "stop_on_success": bool(stop_on_success),
                  "queries": queries.tolist()}
    return res


def _search_linf(model, x, label, targeted, eps, n_queries, p_init, gen, rec, stop):
    """Algorithm 1 with Algorithm 2's squares of +-eps; returns the best images and queries per image."""
    n, dev = x.shape[0], x.device
    c, h, w = x.shape[1:]
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=c)), device=dev, dtype=x.dtype)  # (2^C, C)
    stripes = torch.randint(0, 2, (1, c, 1, w), generator=gen, device=dev).to(x.dtype) * 2 - 1
    x_best = (x + eps * stripes).clamp(0, 1)
    margin, loss, queries = _first_query(model, x_best, label, targeted, rec)
    for it in range(n_queries - 1):
        idx = (margin > 0).nonzero().squeeze(1) if stop else torch.arange(n, device=dev)
        if idx.numel() == 0:
            break
        s = min(max(int(round(math.sqrt(p_schedule(p_init, it, n_queries) * h * w))), 1), h - 1, w - 1) or 1
        vh = int(torch.randint(0, h - s + 1, (1,), generator=gen, device=dev))
        vw = int(torch.randint(0, w - s + 1, (1,), generator=gen, device=dev))
        order = signs[torch.randperm(len(signs), generator=gen, device=dev)]  # (2^C, C)
        xc, xb = x[idx, :, vh:vh + s, vw:vw + s], x_best[idx, :, vh:vh + s, vw:vw + s]
        tries = (xc[:, None] + eps * order[None, :, :, None, None]).clamp(0, 1)  # (m, 2^C, C, s, s)
        changes = (tries - xb[:, None]).abs().flatten(2).amax(2) > 1e-7  # (m, 2^C)
        pick = torch.where(changes.any(1), changes.float().argmax(1), torch.zeros_like(changes[:, 0], dtype=torch.long))
        x_new = x_best[idx].clone()
        x_new[:, :, vh:vh + s, vw:vw + s] = tries[torch.arange(idx.numel(), device=dev), pick]
        if _accept(model, x_new, idx, label, targeted, margin, loss, x_best, queries, rec, stop):
            break
    return x_best, queries


def _first_query(model, x_start, label, targeted, rec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query 1 of both searches: the start's margin and loss, recorded, and one query counted per image."""
    n, dev = x_start.shape[0], x_start.device
    with torch.no_grad():
        out = model(x_start)
    rec.see(torch.arange(n, device=dev), out)
    margin, loss = margin_and_loss(out, label, targeted)
    return margin, loss, torch.ones(n, dtype=torch.long, device=dev)


def _accept(model, x_new, idx, label, targeted, margin, loss, x_best, queries, rec, stop: bool = True) -> bool:
    """Algorithm 1's step for the images ``idx``: query ``x_new``, keep it where the loss fell or it fools
    the model (in place); an image already fooled (``stop`` False) keeps it only where it stays adversarial
    and the loss fell. True when the person cancelled."""
    with torch.no_grad():
        out = model(x_new)
    rec.see(idx, out)
    m_new, l_new = margin_and_loss(out, label[idx], targeted)
    better = (l_new < loss[idx]) | (m_new <= 0)
    if not stop:
        better &= (margin[idx] > 0) | ((m_new <= 0) & (l_new < loss[idx]))
    loss[idx] = torch.where(better & (l_new < loss[idx]), l_new, loss[idx])
    margin[idx] = torch.where(better, m_new, margin[idx])
    x_best[idx[better]] = x_new[better]
    queries[idx] += 1
    return rec.step(margin > 0 if stop else torch.ones_like(margin, dtype=torch.bool), x_best)


@functools.lru_cache(maxsize=256)
def _eta_rectangle(a: int, b: int) -> torch.Tensor:
    """``eta^(a, b)`` of Sec. 3.2 (their code's ``meta_pseudo_gaussian_pert``): nested centred rectangles,
    the k-th weighted ``1 / (k + 1)^2``, unit L2 norm (float64, CPU; cached)."""
    d = torch.zeros(a, b, dtype=torch.float64)
    xc, yc = a // 2 + 1, b // 2 + 1
    r0, c0 = xc - 1, yc - 1
    for k in range(max(xc, yc)):
        d[max(r0, 0):min(r0 + 2 * k + 1, a), max(c0, 0):min(c0 + 2 * k + 1, b)] += 1.0 / (k + 1) ** 2
        r0, c0 = r0 - 1, c0 - 1
    return d / d.pow(2).sum().sqrt()


def eta(s: int, transpose: bool = False) -> torch.Tensor:
    """The L2 square update of Algorithm 3 (Sec. 3.2): ``+eta`` on the top half of an ``s x s`` window,
    ``-eta`` on the bottom half, unit L2 norm; ``transpose`` turns it a quarter (left/right halves)."""
    d = torch.cat([_eta_rectangle(s // 2, s), -_eta_rectangle(s - s // 2, s)])
    d = d / d.pow(2).sum().sqrt()
    return d.T if transpose else d


def _l2_scale(delta: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norm shaped to broadcast over ``(N, C, H, W)``."""
    return delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _search_l2(model, x, label, targeted, eps, n_queries, p_init, gen, rec, stop):
    """Algorithm 1 with Algorithm 3's window pairs; returns the best images and queries per image."""
    n, dev, dt = x.shape[0], x.device, x.dtype
    c, h, w = x.shape[1:]

    def signs() -> torch.Tensor:  # one random +-1 per channel, shared by the batch
        return torch.randint(0, 2, (1, c, 1, 1), generator=gen, device=dev).to(dt) * 2 - 1

    # The start (their code): a grid of squares of side h // 5 from an offset centring it, each eta(s) with a
    # random sign per channel, rescaled to ||delta||_2 = eps.
    s0 = max(h // 5, 1)
    delta = torch.zeros_like(x)
    off_h, off_w = (h - s0 * 5) // 2, (w - s0 * 5) // 2
    e0 = eta(s0).to(dev, dt)
    for i in range(h // s0):
        for j in range(w // s0):
            vh, vw = off_h + i * s0, off_w + j * s0
            if vh + s0 <= h and vw + s0 <= w:
                delta[:, :, vh:vh + s0, vw:vw + s0] += e0 * signs()
    x_best = (x + delta / (_l2_scale(delta) + 1e-12) * eps).clamp(0, 1)
    margin, loss, queries = _first_query(model, x_best, label, targeted, rec)
    for it in range(n_queries - 1):
        idx = (margin > 0).nonzero().squeeze(1) if stop else torch.arange(n, device=dev)
        if idx.numel() == 0:
            break
        s = max(int(round(math.sqrt(p_schedule(p_init, it, n_queries) * h * w))), 3)
        s = min(s + (s % 2 == 0), h, w)  # odd, as their code, and inside the image
        vh, vw, vh2, vw2 = (int(torch.randint(0, lim - s + 1, (1,), generator=gen, device=dev))
                            for lim in (h, w, h, w))
        flip = bool(torch.randint(0, 2, (1,), generator=gen, device=dev))
        sign = signs()
        xc = x[idx]
        d = x_best[idx] - xc
        win1 = d[:, :, vh:vh + s, vw:vw + s]
        norm_win1 = win1.pow(2).sum((-2, -1), keepdim=True).sqrt()  # (m, C, 1, 1)
        both = torch.zeros(1, 1, h, w, dtype=torch.bool, device=dev)
        both[..., vh:vh + s, vw:vw + s] = True
        both[..., vh2:vh2 + s, vw2:vw2 + s] = True
        norm_img = _l2_scale(d)
        norm_both = _l2_scale(d * both)
        new = eta(s, flip).to(dev, dt) * sign + win1 / (norm_win1 + 1e-12)
        # The first window keeps the mass of both windows plus what the budget has left (per channel).
        room = ((eps ** 2 - norm_img ** 2).clamp_min(0) / c + norm_both ** 2).sqrt()
        new = new / (new.pow(2).sum((-2, -1), keepdim=True).sqrt() + 1e-12) * room
        d[:, :, vh2:vh2 + s, vw2:vw2 + s] = 0.0
        d[:, :, vh:vh + s, vw:vw + s] = new
        x_new = (xc + d / (_l2_scale(d) + 1e-12) * eps).clamp(0, 1)
        if _accept(model, x_new, idx, label, targeted, margin, loss, x_best, queries, rec, stop):
            break
    return x_best, queries


SPECS = (
    AttackSpec("square", "Square Attack (black-box, score-based)", square, "Andriushchenko et al. 2020, "
               "Algorithm 1-3", params=(N_QUERIES, P_INIT, SEED_SQ), order=85, norms=("linf", "l2")),
)
