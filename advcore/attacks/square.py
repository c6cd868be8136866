"""Square Attack (L-inf): a score-based black-box attack by random square updates.

Paper: Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020. Algorithm 1 (random search) with the L-inf
sampling distribution of Algorithm 2: start from vertical stripes of +-eps, then each iteration
sets one random square of side ``s = round(sqrt(p * h * w))`` to ``x +- eps`` (one sign per
channel) and keeps it if the loss falls. ``p`` follows the piecewise-constant schedule of Sec. 4
from ``p_init`` (halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10000,
rescaled to ``n_queries``). Only the model's output scores are used: no gradient is ever taken.
"""

from __future__ import annotations

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
    reference="Andriushchenko et al. 2020, Sec. 4 (p_init = 0.05 for L-inf)",
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
           targeted: bool = False, target=None, callback=None):
    """Square Attack, L-inf (Andriushchenko et al. 2020, Algorithm 1 and 2), ``n_queries`` per image.

    Each iteration draws one square position and one random order of the 2^C channel signs, shared
    by the batch; each image takes the first sign pattern that changes its square (the paper's code
    redraws until it does), so an image's result does not depend on the other images of its batch.
    Records queries used per image in ``params["queries"]``; ``grad_evals`` stays 0.
    Arguments: eps, norm (L-inf only), n_queries, p_init, seed, targeted/target, callback.
    """
    own = check_values((N_QUERIES, P_INIT, SEED_SQ), {"n_queries": n_queries, "p_init": p_init, "seed": seed}, "Square")
    if norm != "linf":
        raise AdvlabError("This Square Attack is the L-inf version (the paper's Algorithm 2); choose norm linf.")
    check_inputs(x, eps, norm, 1)
    x = x.detach()
    label, targeted = prepare_labels(model, x, y, target, targeted)
    n, dev = x.shape[0], x.device
    c, h, w = x.shape[1:]
    gen = generator(seed, dev)
    rec = Recorder(model, x, label, targeted, n_queries, callback)
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=c)), device=dev, dtype=x.dtype)  # (2^C, C)
    stripes = torch.randint(0, 2, (1, c, 1, w), generator=gen, device=dev).to(x.dtype) * 2 - 1
    x_best = (x + eps * stripes).clamp(0, 1)
    with torch.no_grad():
        out = model(x_best)
    rec.see(torch.arange(n, device=dev), out)
    margin, loss = margin_and_loss(out, label, targeted)
    queries = torch.ones(n, dtype=torch.long, device=dev)
    for it in range(n_queries - 1):
        idx = (margin > 0).nonzero().squeeze(1)
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
        with torch.no_grad():
            out = model(x_new)
        rec.see(idx, out)
        m_new, l_new = margin_and_loss(out, label[idx], targeted)
        better = (l_new < loss[idx]) | (m_new <= 0)
        loss[idx] = torch.where(l_new < loss[idx], l_new, loss[idx])
        margin[idx] = torch.where(better, m_new, margin[idx])
        x_best[idx[better]] = x_new[better]
        queries[idx] += 1
        if rec.step(margin > 0, x_best):
            break
    res = rec.finish(x_best, {})
    res.params = {"eps": eps, "norm": norm, "targeted": targeted, **own, "queries": queries.tolist()}
    return res


SPECS = (
    AttackSpec("square", "Square Attack (black-box, score-based, L-inf)", square, "Andriushchenko et al. 2020, "
               "Algorithm 1-2", params=(N_QUERIES, P_INIT, SEED_SQ), order=85, norms=("linf",)),
)
