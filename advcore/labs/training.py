"""Standard, adversarial and multi-strength adversarial training (MAT), and accuracy-vs-strength curves.

Recipes (Song et al., "A Multi-strength Adversarial Training Method to Mitigate
Adversarial Attacks", ``shared/papers/multi-strength-adversarial-training.txt``):

* ``standard``: cross-entropy on clean images.
* ``fgsm`` / ``pgd``: single-strength adversarial training, half clean and half
  adversarial (the paper's Figure 1 models, Eq. 3): every batch of B clean images is
  trained together with its B adversarial copies (``reduced``: half of the batch is
  replaced by adversarial images instead, Kurakin et al.).
* ``mat-mixed``: mixed MAT (Eq. 2), one network, clean + S strengths. Full size: each
  strength adds an adversarial copy of the whole batch ((S+1)B images per step).
  Reduced size: the batch is split into S+1 parts, clean and one per strength.
* ``mat-parallel``: parallel MAT (Eq. 3-4), S networks each trained on clean + one
  strength, combined by voting weights ``a = softmax(learned logits)`` (non-negative,
  summing to 1) that are fitted afterwards on held-out validation images, clean and
  adversarial at every strength, crafted against the combined model.

The strengths can be chosen by the paper's random walk (Sec. 4.3, :func:`random_walk`)
over the validation accuracy matrix of quick single-strength models
(:func:`accuracy_matrix`).

Adversarial examples come from :mod:`advcore.attacks` with the network in eval mode
(the small CNN has no BatchNorm or Dropout, so eval and train mode compute the same
function), away from the true labels (or, with ``example_labels="predicted"``, from the
model's own predictions: Kurakin et al.'s cure for label leaking, which FGSM training at
large strengths shows as FGSM accuracy rising with eps); only input gradients are taken,
and the parameters are updated on the clean and adversarial images together (mean
cross-entropy).
"""

from __future__ import annotations

import datetime
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advcore import attacks, datasets
from advcore.device import pick_device
from advcore.errors import AdvlabError
from advcore.models import Normalized, zoo
from advcore.progress import ProgressFn, report

RECIPES = ("standard", "fgsm", "pgd", "mat-mixed", "mat-parallel")
EXAMPLE_ATTACKS = ("fgsm", "pgd")
# attacks that may fill the random walk's accuracy matrix and craft parallel MAT's vote-fitting images
# (the paper uses FGSM for both; PGD and R+FGSM are advlab's options against label leaking)
SELECTION_ATTACKS = ("fgsm", "pgd", "rfgsm")
PROTOCOLS = ("white-box", "paper")
RFGSM_ALPHA_FACTOR = 0.5  # Tramer et al. 2018: random step alpha = eps / 2, then FGSM of eps - alpha
EXAMPLE_LABELS = ("true", "predicted")
# train on halftones only, or on intensity + halftone images (advcore.defenses)
INPUT_TRANSFORMS = ("halftone", "hybrid")
DEFAULT_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
DEFAULT_EVAL_EPS = tuple(round(0.03 * i, 10) for i in range(11))  # 0, 0.03, ..., 0.3
MAX_EPOCHS = 1000
EXAMPLES_MODE = "eval (the CNN has no BatchNorm/Dropout, so eval and train mode compute the same function)"

_ATTACK_TITLES = {"fgsm": "FGSM", "pgd": "PGD-10", "rfgsm": "R+FGSM (random step eps/2)"}
_RECIPE_TEXT = {
    "standard": "standard training on clean images",
    "fgsm": "single-strength adversarial training with FGSM examples, half clean and half adversarial",
    "pgd": "single-strength adversarial training with PGD examples, half clean and half adversarial",
    "mat-mixed": "mixed multi-strength adversarial training (MAT, Eq. 2): one network, clean + S strengths",
    "mat-parallel": "parallel multi-strength adversarial training (MAT, Eq. 3-4): S networks, one strength each, "
                    "combined by learned voting weights",
}


#: What the paper leaves open and advlab had to reconstruct (Sec. 4.2-4.3 give no formula for these).
RECONSTRUCTED = {
    "H(S)": "the paper names H(A_M, l, t) without defining it; advlab takes the mean over attack strengths of "
            "the best member's accuracy (estimate_accuracy)",
    "transition matrix": "the paper says P is computed from A_M without a formula; advlab moves from strength i "
                         "to k in proportion to sum_j max(A_M(k,j) - A_M(i,j), 0) (transition_matrix)",
    "votes": "Eq. 4's voting weights a_k are input-independent constants; the paper does not say how they are "
             "set, advlab fits softmax(logits) on held-out clean + adversarial images (fit_vote_weights)",
}

#: The MAT paper's Table 1 for MNIST (its models, FGSM, average accuracy in % over eps 0 to 0.3), quoted as the paper's.
PAPER_MNIST = {"Original": 82.13, "Single-strength": 96.50, "Mixed MAT": 95.76, "Parallel MAT": 97.36}


# --------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """What to train. ``strengths`` are L-inf eps in pixel units; ``limit`` keeps the first N training images."""

    recipe: str = "standard"
    strengths: tuple[float, ...] = ()
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    reduced: bool = False
    example_attack: str | None = None  # fgsm (default) or pgd; the pgd recipe always uses pgd
    example_labels: str = "true"  # craft away from the true labels, or "predicted" (against label leaking)
    pgd_steps: int = 7
    pgd_alpha_factor: float = 2.5  # PGD step = factor * eps / steps
    dataset: str = "fashion-mnist"
    limit: int | None = None
    vote_images: int = 2000  # validation images that fit parallel MAT's voting weights
    vote_rounds: int = 2
    vote_attack: str | None = None  # attack of the vote-fitting images: fgsm, pgd or rfgsm (default: the examples')
    input_transform: str | None = None  # None, "halftone" or "hybrid" (standard recipe only)
    halftone: str = "floyd-steinberg"  # the advcore.defenses method used by input_transform

    @property
    def attack(self) -> str:
        """The attack that crafts the training examples."""
        if self.recipe == "pgd":
            return "pgd"
        return self.example_attack or "fgsm"


def check_strengths(strengths: Sequence[float]) -> tuple[float, ...]:
    """Strengths must be finite numbers in (0, 1], without repeats."""
    out = []
    for s in strengths:
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s) or not 0 < s <= 1:
            raise AdvlabError(f"Adversarial strengths must lie in (0, 1] (pixel units), got {s!r}.")
        out.append(float(s))
    if len(set(out)) != len(out):
        raise AdvlabError(f"Adversarial strengths must differ from each other, got {', '.join(map(str, out))}.")
    return tuple(out)


def check_config(cfg: TrainConfig) -> TrainConfig:
    """Refuse a configuration a person could type by mistake, with a plain message."""
    if cfg.recipe not in RECIPES:
        raise AdvlabError(f"Unknown training recipe {cfg.recipe!r}; choose one of {', '.join(RECIPES)}.")
    if cfg.dataset not in datasets.DATASETS:
        raise AdvlabError(f"Unknown dataset {cfg.dataset!r}; choose one of {', '.join(datasets.DATASETS)}.")
    if not isinstance(cfg.epochs, int) or not 1 <= cfg.epochs <= MAX_EPOCHS:
        raise AdvlabError(f"epochs must be a whole number between 1 and {MAX_EPOCHS}, got {cfg.epochs!r}.")
    if not isinstance(cfg.batch_size, int) or not 2 <= cfg.batch_size <= 65536:
        raise AdvlabError(f"batch size must be between 2 and 65536, got {cfg.batch_size!r}.")
    if not (isinstance(cfg.lr, (int, float)) and math.isfinite(cfg.lr) and 0 < cfg.lr <= 1):
        raise AdvlabError(f"learning rate must be in (0, 1], got {cfg.lr!r}.")
    if cfg.limit is not None and (not isinstance(cfg.limit, int) or cfg.limit < 1):
        raise AdvlabError(f"limit must be a positive whole number, got {cfg.limit!r}.")
    if cfg.example_attack is not None and cfg.example_attack not in EXAMPLE_ATTACKS:
        raise AdvlabError(f"Training examples are crafted with fgsm or pgd, got {cfg.example_attack!r}.")
    if cfg.example_labels not in EXAMPLE_LABELS:
        raise AdvlabError(f"Training examples are crafted from the true or the predicted labels, got "
                          f"{cfg.example_labels!r}.")
    if cfg.vote_attack is not None and cfg.vote_attack not in SELECTION_ATTACKS:
        raise AdvlabError(f"Parallel MAT's votes are fitted on fgsm, pgd or rfgsm images, got {cfg.vote_attack!r}.")
    if not isinstance(cfg.pgd_steps, int) or not 1 <= cfg.pgd_steps <= 100:
        raise AdvlabError(f"PGD training steps must be between 1 and 100, got {cfg.pgd_steps!r}.")
    if not cfg.vote_images >= 10 or cfg.vote_rounds < 1:
        raise AdvlabError("Parallel MAT needs at least 10 validation images and one fitting round for its votes.")
    if cfg.input_transform is not None:
        from advcore import defenses

        if cfg.input_transform not in INPUT_TRANSFORMS:
            raise AdvlabError(f"Unknown input transform {cfg.input_transform!r}; choose one of "
                              f"{', '.join(INPUT_TRANSFORMS)}.")
        if cfg.recipe != "standard":
            raise AdvlabError("Training on halftone images (--input halftone/hybrid) uses the standard recipe.")
        defenses.check_method(cfg.halftone)
    cfg.strengths = check_strengths(cfg.strengths)
    n = len(cfg.strengths)
    if cfg.recipe == "standard" and n:
        raise AdvlabError("Standard training uses no adversarial strengths; leave --strengths out.")
    if cfg.recipe in ("fgsm", "pgd") and n != 1:
        raise AdvlabError(f"The {cfg.recipe} recipe trains with exactly one strength, got {n}.")
    if cfg.recipe.startswith("mat-") and n < 1:
        raise AdvlabError(f"{cfg.recipe} needs at least one strength (e.g. 0.05,0.1,0.15 or auto).")
    if cfg.recipe == "mat-parallel" and n > 10:
        raise AdvlabError(f"Parallel MAT with {n} sub-networks is too large; use at most 10 strengths.")
    if cfg.reduced and cfg.recipe in ("standard", "mat-parallel"):
        raise AdvlabError(f"--reduced applies to the fgsm, pgd and mat-mixed recipes, not {cfg.recipe}.")
    if cfg.reduced and cfg.batch_size < n + 1:
        raise AdvlabError(f"A reduced-size batch of {cfg.batch_size} cannot be split into {n + 1} parts.")
    return cfg


# --------------------------------------------------------------------------- models and examples


def data_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``uint8`` (or [0,1] float) training images, rounded to 4 digits."""
    xf = datasets.to_float(x[:20000])
    mean = xf.mean(dim=(0, 2, 3)).tolist()
    std = xf.std(dim=(0, 2, 3)).tolist()
    return tuple(round(v, 4) for v in mean), tuple(round(max(v, 1e-3), 4) for v in std)


# Layers whose weights start at fixed values (ones, zeros), so no random draw is needed.
_DETERMINISTIC_INIT = (zoo.ParallelMAT, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def initialise(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every weight of ``module`` from ``generator`` with PyTorch's default initialisation.

    Linear and convolution layers get ``kaiming_uniform_(a=sqrt(5))`` weights and ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` biases, in ``modules()`` order: the same draws PyTorch makes in ``__init__`` from a
    global RNG seeded the same way, so a seed gives the same network as before, but without touching
    the process-wide RNG that other sessions' threads share. Norm layers start at fixed values; any other
    layer holding weights is refused.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif any(True for _ in m.parameters(recurse=False)) and not isinstance(m, _DETERMINISTIC_INIT):
                raise AdvlabError(f"Cannot initialise a {type(m).__name__} layer from a seed.")
    return module


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with its weights drawn from a generator seeded with ``seed`` (thread-safe: no global seed)."""
    return initialise(build(), torch.Generator().manual_seed(int(seed)))


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, *,
                         attack: str = "fgsm",
                         pgd_steps: int = 7, pgd_alpha_factor: float = 2.5, seed: int | None = None) -> torch.Tensor:
    """Adversarial copies of ``x`` (L-inf, away from labels ``y``; ``None``: the model's predictions) made by
    :mod:`advcore.attacks`, detached.

    The model is put in eval mode while the examples are crafted and its mode is restored
    afterwards; only input gradients are taken.
    """
    was_training = model.training
    model.eval()
    try:
        if attack == "fgsm":
            res = attacks.fgsm(model, x, y, eps=eps)
        elif attack == "pgd":
            res = attacks.pgd(model, x, y, eps=eps, steps=pgd_steps, alpha=pgd_alpha_factor * eps / pgd_steps,
                              random_start=True, seed=seed)
        elif attack == "rfgsm":
            gen = torch.Generator(device=x.device).manual_seed(int(seed or 0))
            return rfgsm(model, x, y, eps, generator=gen)
        else:
            raise AdvlabError(f"Adversarial examples are crafted with fgsm or pgd (or rfgsm), got {attack!r}.")
    finally:
        model.train(was_training)
    return res.x_adv.detach()


def rfgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, *, alpha: float | None = None,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """R+FGSM (Tramer et al., "Ensemble Adversarial Training", ICLR 2018, Sec. 4.1): a random sign step of
    ``alpha`` (default eps/2), then an FGSM step of ``eps - alpha`` from there; [0,1] pixels, L-inf, detached.

    The random first step leaves the data point's neighbourhood where a label-leaking model's loss is
    flat or misleading, so a model that only learned to recognise FGSM's one step is exposed.
    ``y`` None: away from the model's predictions. Randomness comes from ``generator`` only.
    """
    if not (math.isfinite(eps) and 0 <= eps <= 1):
        raise AdvlabError(f"R+FGSM's eps must lie in [0, 1], got {eps!r}.")
    alpha = RFGSM_ALPHA_FACTOR * eps if alpha is None else float(alpha)
    if not 0 <= alpha <= eps:
        raise AdvlabError(f"R+FGSM's random step must lie in [0, eps], got {alpha!r}.")
    with torch.no_grad():
        if y is None:
            y = model(x).argmax(1)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x1 = (x + alpha * noise.sign()).clamp(0, 1)
    x1 = x1.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x1), y)
    (grad,) = torch.autograd.grad(loss, x1)
    return (x1 + (eps - alpha) * grad.sign()).clamp(0, 1).detach()


def train_network(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, strengths: Sequence[float] = (),
                  attack: str = "fgsm", reduced: bool = False, epochs: int = 1, batch_size: int = 128,
                  lr: float = 1e-3, seed: int = 0, pgd_steps: int = 7, pgd_alpha_factor: float = 2.5,
                  example_labels: str = "true", stage: str = "train",
                  transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                  progress: ProgressFn | None = None) -> list[dict]:
    """Train ``model`` (taking [0,1] pixels) in place on ``uint8`` images; returns one dict per epoch.

    ``strengths`` empty: standard training. Otherwise each step takes a batch of B clean
    images and adds, per strength, its B adversarial copies (full size, Eq. 2/3), or, with
    ``reduced``, splits the batch into ``S+1`` parts: clean, then one part per strength.
    The loss is the mean cross-entropy over all images of the step. Adam, shuffled with ``seed``.
    ``example_labels``: craft the examples away from the true labels (``"true"``) or from the
    model's own predictions (``"predicted"``, Kurakin et al.'s cure for label leaking).
    ``transform(x, y) -> (x, y)`` replaces each clean batch first (halftone / hybrid training).
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x)
    batches = math.ceil(n / batch_size)
    history = []
    step = 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum = correct_clean = seen_clean = seen = 0.0
        for b in range(batches):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            xb = datasets.to_float(x[idx]).to(device)
            yb = y[idx].to(device)
            if transform is not None:
                xb, yb = transform(xb, yb)
            if not strengths:
                xs, ys = [xb], [yb]
            else:
                parts = (torch.tensor_split(torch.arange(len(xb)), len(strengths) + 1) if reduced
                         else [slice(None)] * (len(strengths) + 1))
                xs, ys = [xb[parts[0]]], [yb[parts[0]]]
                for k, eps in enumerate(strengths, start=1):
                    xk, yk = xb[parts[k]], yb[parts[k]]
                    xs.append(adversarial_examples(model, xk, yk if example_labels == "true" else None, eps,
                                                   attack=attack, pgd_steps=pgd_steps,
                                                   pgd_alpha_factor=pgd_alpha_factor,
                                                   seed=seed * 1_000_003 + step * 31 + k))
                    ys.append(yk)
            model.train()
            logits = model(torch.cat(xs))
            target = torch.cat(ys)
            loss = F.cross_entropy(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            m = len(target)
            loss_sum += loss.item() * m
            seen += m
            n_clean = len(ys[0])
            correct_clean += float((logits[:n_clean].argmax(1) == ys[0]).sum())
            seen_clean += n_clean
            report(progress, stage, step, epochs * batches,
                    {"epoch": epoch, "loss": loss_sum / seen, "train_acc": correct_clean / seen_clean})
        model.eval()
        record = {"epoch": epoch, "loss": round(loss_sum / seen, 5),
                  "train_clean_accuracy": round(correct_clean / seen_clean, 5),
                  "images_per_epoch": int(seen), "seconds": round(time.perf_counter() - t0, 2)}
        history.append(record)
        report(progress, stage, step, epochs * batches, dict(record),
                message=f"{stage}: epoch {epoch}/{epochs} loss {record['loss']:.4f}, "
                        f"clean training accuracy {record['train_clean_accuracy']:.2%}, {record['seconds']:.0f} s")
    model.eval()
    return history


# --------------------------------------------------------------------------- accuracy


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels of ``x`` (``uint8`` or [0,1] float), batched."""
    device = next(model.parameters()).device
    out = [model(datasets.to_float(x[i:i + batch_size]).to(device)).argmax(1).cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> float:
    """Clean top-1 accuracy."""
    return int((predict(model, x, batch_size=batch_size) == y.cpu()).sum()) / max(len(y), 1)


def accuracy_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: str = "fgsm",
                   eps: Sequence[float] = DEFAULT_EVAL_EPS, steps: int | None = None, seed: int = 0,
                   batch_size: int = 500, stage: str | None = None, progress: ProgressFn | None = None,
                   **params) -> dict:
    """Accuracy under ``attack`` (L-inf, untargeted, true labels) at every strength in ``eps``.

    Uses :func:`advcore.attacks.run` batch by batch (parameters an attack does not take,
    such as FGSM's ``steps``, are dropped). At eps 0 no attack can move a pixel, so the
    clean accuracy is measured with a forward pass instead of an attack.
    """
    if attack == "rfgsm":
        return _rfgsm_curve(model, x, y, eps=eps, seed=seed, batch_size=batch_size, stage=stage, progress=progress)
    spec = attacks.get_attack(attack)
    if steps is None:
        steps = 10
    device = next(model.parameters()).device
    eps = [float(e) for e in eps]
    for e in eps:
        attacks.check_budget(eps=e, alpha=max(e, 1e-12), steps=steps, norm="linf")
    xf = datasets.to_float(x)
    n = len(xf)
    batches = math.ceil(n / batch_size)
    stage = stage or f"{spec.name} eval"
    t0 = time.perf_counter()
    acc = []
    for i, e in enumerate(eps):
        correct = 0
        for b in range(batches):
            xb = xf[b * batch_size:(b + 1) * batch_size].to(device)
            yb = y[b * batch_size:(b + 1) * batch_size].to(device)
            if e == 0:
                with torch.no_grad():
                    logits = model(xb)
            else:
                res = attacks.run(spec.name, model, xb, yb, eps=e, norm="linf", steps=steps, seed=seed + b, **params)
                logits = res.logits
            correct += int((logits.argmax(1) == yb).sum())
            report(progress, stage, i * batches + b + 1, len(eps) * batches, {"eps": e})
        acc.append(correct / n)
    accepted = attacks.accepted_params(spec.name)
    return {
        "attack": spec.name, "norm": "linf", "n": n, "eps": eps, "accuracy": [round(a, 6) for a in acc],
        "average_accuracy": round(float(np.mean(acc)), 6) if acc else None,
        "steps": steps if "steps" in accepted else 1,
        "params": {k: v for k, v in params.items() if k in accepted},
        "seed": seed if "seed" in accepted else None,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _batched_accuracy(model: nn.Module, xs: torch.Tensor, y: torch.Tensor, batch_size: int) -> int:
    device = next(model.parameters()).device
    correct = 0
    with torch.no_grad():
        for b in range(0, len(xs), batch_size):
            correct += int((model(xs[b:b + batch_size].to(device)).argmax(1).cpu() == y[b:b + batch_size].cpu()).sum())
    return correct


def _rfgsm_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: Sequence[float], seed: int,
                 batch_size: int, stage: str | None, progress: ProgressFn | None) -> dict:
    """Accuracy under white-box R+FGSM (:func:`rfgsm`, alpha eps/2) at every strength, one generator per batch."""
    device = next(model.parameters()).device
    xf, eps = datasets.to_float(x), [float(e) for e in eps]
    n, t0, acc = len(xf), time.perf_counter(), []
    batches = math.ceil(n / batch_size)
    for i, e in enumerate(eps):
        correct = 0
        for b in range(batches):
            xb = xf[b * batch_size:(b + 1) * batch_size].to(device)
            yb = y[b * batch_size:(b + 1) * batch_size].to(device)
            xa = xb if e == 0 else rfgsm(model, xb, yb, e, generator=torch.Generator(device=device).manual_seed(
                seed + b))
            correct += _batched_accuracy(model, xa, yb, batch_size)
            report(progress, stage or "rfgsm eval", i * batches + b + 1, len(eps) * batches, {"eps": e})
        acc.append(correct / n)
    return {"attack": "rfgsm", "norm": "linf", "n": n, "eps": eps, "accuracy": [round(a, 6) for a in acc],
            "average_accuracy": round(float(np.mean(acc)), 6) if acc else None, "steps": 1,
            "params": {"alpha": f"{RFGSM_ALPHA_FACTOR:g} * eps"}, "seed": seed,
            "seconds": round(time.perf_counter() - t0, 2)}


def static_fgsm_sets(source: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], *,
                     batch_size: int = 500, progress: ProgressFn | None = None) -> list[torch.Tensor]:
    """The paper's static test sets (Sec. 5.1): FGSM images crafted once on a fixed ``source`` model at every
    strength of ``eps`` (eps 0: the clean images), away from the true labels, as [0,1] float tensors."""
    xf = datasets.to_float(x)
    device = next(source.parameters()).device
    sets = []
    for i, e in enumerate(eps):
        if e == 0:
            sets.append(xf.clone())
        else:
            parts = [adversarial_examples(source, xf[b:b + batch_size].to(device), y[b:b + batch_size].to(device),
                                          float(e)).cpu() for b in range(0, len(xf), batch_size)]
            sets.append(torch.cat(parts))
        report(progress, "crafting the static FGSM sets", i + 1, len(eps), {"eps": float(e)})
    return sets


def transfer_curve(model: nn.Module, sets: Sequence[torch.Tensor], y: torch.Tensor, eps: Sequence[float], *,
                   source: str, batch_size: int = 500) -> dict:
    """Accuracy of ``model`` on the static sets of :func:`static_fgsm_sets` (the paper's evaluation, Table 1)."""
    t0 = time.perf_counter()
    acc = [_batched_accuracy(model, s, y, batch_size) / len(y) for s in sets]
    return {"attack": "transfer-fgsm", "source": source, "norm": "linf", "n": len(y), "eps": [float(e) for e in eps],
            "accuracy": [round(a, 6) for a in acc], "average_accuracy": round(float(np.mean(acc)), 6),
            "steps": 1, "params": {}, "seed": None, "seconds": round(time.perf_counter() - t0, 2)}


def protocol_table(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, *, protocol: str = "paper",
                   source: tuple[str, nn.Module] | None = None, eps: Sequence[float] = DEFAULT_EVAL_EPS,
                   batch_size: int = 500, progress: ProgressFn | None = None) -> dict:
    """Table 1 under one evaluation protocol: accuracy at every strength and its average per model.

    ``paper`` (Sec. 5.1): FGSM sets crafted once on the fixed ``source`` model (name, model) and shown to every
    model, so each model is attacked by transfer (the source itself white-box). ``white-box``: FGSM crafted on
    each model itself, as the cards' curves are.
    """
    if protocol not in PROTOCOLS:
        raise AdvlabError(f"Unknown evaluation protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}.")
    eps = [float(e) for e in eps]
    out: dict = {"protocol": protocol, "eps": eps, "n": len(y), "models": {}}
    if protocol == "paper":
        if source is None:
            raise AdvlabError("The paper's protocol needs a fixed source model to craft its FGSM sets on.")
        sets = static_fgsm_sets(source[1], x, y, eps, batch_size=batch_size, progress=progress)
        out["source"] = source[0]
        for k, (name, m) in enumerate(models.items(), start=1):
            out["models"][name] = transfer_curve(m, sets, y, eps, source=source[0], batch_size=batch_size)
            report(progress, "paper protocol", k, len(models), {})
    else:
        for k, (name, m) in enumerate(models.items(), start=1):
            out["models"][name] = accuracy_curve(m, x, y, attack="fgsm", eps=eps, batch_size=batch_size,
                                                 progress=progress)
            report(progress, "white-box protocol", k, len(models), {})
    return out


def table1(dataset: str = "fashion-mnist", *, protocol: str = "paper", eps: Sequence[float] = DEFAULT_EVAL_EPS,
           n: int | None = None, device: str | torch.device = "cpu",
           progress: ProgressFn | None = None) -> tuple[dict, dict[str, dict]]:
    """The MAT paper's Table 1 (average accuracy over ``eps``) for every shipped model of ``dataset`` under
    ``protocol`` (:func:`protocol_table`) on the first ``n`` images of its evaluation set (None: all), with each
    model's clean accuracy, white-box R+FGSM and FGSM averages and label-leaking evidence (:func:`label_leaking`).

    Returns the record ``python -m advcore table1 --json`` prints, and every model's white-box R+FGSM curve."""
    from advcore import models as registry

    found = registry.roles(dataset)
    if not found:
        raise AdvlabError(f"No shipped {dataset} model is registered.")
    source = None
    if protocol == "paper":
        name = registry.with_role(dataset, "naive")
        if name is None:
            raise AdvlabError(f"The paper's protocol crafts its FGSM sets on a naive {dataset} model; none is "
                              "registered (assets/models).")
        source = (name, registry.load(name, device))
    x, y, what = datasets.eval_set(dataset, n)
    loaded = {name: registry.load(name, device) for name in found.values()}
    table = protocol_table(loaded, x, y, protocol=protocol, source=source, eps=eps, progress=progress)
    rfgsm_curves = {name: accuracy_curve(m, x, y, attack="rfgsm", eps=eps, progress=progress)
                    for name, m in loaded.items()}
    white = ({name: accuracy_curve(m, x, y, attack="fgsm", eps=eps, progress=progress)
              for name, m in loaded.items()} if protocol == "paper" else
             {name: dict(c) for name, c in table["models"].items()})
    table["data"] = what
    for name, m in loaded.items():
        clean = accuracy(m, x, y)
        row = table["models"][name]
        row["clean_accuracy"] = round(clean, 6)
        row["rfgsm_average"] = rfgsm_curves[name]["average_accuracy"]
        row["white_box_fgsm_average"] = white[name]["average_accuracy"]
        row["label_leaking"] = label_leaking({"fgsm": white[name], "rfgsm": rfgsm_curves[name]}, clean)
    return table, rfgsm_curves


def label_leaking(curves: dict, clean: float) -> dict | None:
    """Label-leaking evidence in a card's curves (Kurakin et al. 2017, Sec. 6): the strength where white-box
    FGSM accuracy is highest above eps 0, whether it exceeds ``clean`` accuracy (a real defense cannot do
    that), and R+FGSM's accuracy there (a random first step breaks the leak). None without an FGSM curve."""
    fgsm = curves.get("fgsm")
    if not fgsm:
        return None
    pairs = [(e, a) for e, a in zip(fgsm["eps"], fgsm["accuracy"], strict=True) if e > 0]
    if not pairs:
        return None
    e, a = max(pairs, key=lambda p: (p[1], p[0]))
    out = {"eps": e, "fgsm": a, "clean": clean, "above_clean": a > clean, "rfgsm": None, "broken": None}
    r = curves.get("rfgsm")
    if r:
        ra, measured = accuracy_at(r, e)
        if measured:
            out["rfgsm"] = ra
            out["broken"] = ra < a
    return out


# --------------------------------------------------------------------------- random walk (Sec. 4.3)


@dataclass
class WalkResult:
    """The strengths the random walk chose, the walk that reached them, and the estimates behind them."""

    strengths: list[float]  # the chosen set, ascending
    path: list[float]  # the walk (strengths in visiting order) up to the step that reached the chosen set
    H: float  # estimated multi-strength accuracy of the chosen set
    G: float  # H - penalty * S
    penalty: float
    grid: list[float]
    accuracy: list[list[float]]  # A
    accuracy_m: list[list[float]]  # A_M, rows summing to 1
    transition: list[list[float]]  # P
    visits: dict[str, int]  # how often each grid strength was visited over all walks
    walk_length: int
    walks: int
    seed: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def estimate_accuracy(A: np.ndarray, members: Sequence[int]) -> float:
    """H of a set of strengths: mean over attack strengths of the best member's accuracy.

    Reconstruction: the paper (Sec. 4.3) names H(A_M, l, t) but gives no formula; this is advlab's.

    This is the accuracy a decision unit that always trusts the member working best at the
    attack's strength would reach (Sec. 4.2); it never decreases when a member is added,
    which is why the walk's objective subtracts a penalty per strength.
    """
    return float(A[list(members)].max(axis=0).mean())


def transition_matrix(A_M: np.ndarray) -> np.ndarray:
    """P(i, k): move from strength i to k with probability proportional to the share of k's
    normalised accuracy profile that lies where i's is lower, ``sum_j max(A_M(k,j) - A_M(i,j), 0)``.

    The walk thus heads for strengths whose working zone complements the current one
    (uniform over the other strengths when all profiles are equal; never stays put).
    Reconstruction: the paper (Sec. 4.3) computes "the state transition matrix P(A)" from A_M
    without a formula; this one is advlab's.
    """
    n = len(A_M)
    if n == 1:
        return np.ones((1, 1))
    gain = np.clip(A_M[None, :, :] - A_M[:, None, :], 0, None).sum(axis=2)  # gain[i, k]
    np.fill_diagonal(gain, 0.0)
    P = np.zeros((n, n))
    for i in range(n):
        total = gain[i].sum()
        if total > 1e-12:
            P[i] = gain[i] / total
        else:
            P[i] = 1.0 / (n - 1)
            P[i, i] = 0.0
    return P


def random_walk(A: Sequence[Sequence[float]], grid: Sequence[float], *, walk_length: int | None = None,
                walks: int = 200, penalty: float = 0.005, seed: int = 0) -> WalkResult:
    """Choose adversarial strengths by the paper's random walk (Sec. 4.3).

    ``A[i][j]`` is the validation accuracy of the single-strength model trained at
    ``grid[i]`` under attack strength j. Pre-computation: ``A``. Initialisation:
    ``A_M(i,j) = A(i,j) / sum_j A(i,j)``, the transition matrix ``P`` from ``A_M``
    (:func:`transition_matrix`), start state drawn in proportion to each row's mean
    accuracy. Simulation: ``walks`` walks of ``walk_length`` steps (default: the grid
    size); after every step the set S of strengths visited so far is scored by
    ``G = H(S) - penalty * |S|`` (:func:`estimate_accuracy`; the paper writes ``+ a S``
    with a negative coefficient). The best G over all walks wins (ties: fewer strengths).
    Only grid strengths are ever visited; a larger penalty never selects more strengths.
    """
    A = np.asarray(A, dtype=float)
    grid = [float(g) for g in grid]
    if A.ndim != 2 or A.shape[0] != len(grid) or A.shape[0] == 0 or A.shape[1] == 0:
        raise AdvlabError("The accuracy matrix needs one row per grid strength and at least one column.")
    if not np.isfinite(A).all() or (A < 0).any() or (A > 1).any():
        raise AdvlabError("Accuracies in the random walk's matrix must lie in [0, 1].")
    check_strengths(grid)
    if not (math.isfinite(penalty) and penalty >= 0):
        raise AdvlabError(f"The random walk's penalty must be at least 0, got {penalty!r}.")
    walk_length = len(grid) if walk_length is None else walk_length
    if walk_length < 0 or walks < 1:
        raise AdvlabError("The random walk needs at least one walk of at least zero steps.")
    row_sum = A.sum(axis=1, keepdims=True)
    A_M = np.divide(A, row_sum, out=np.full_like(A, 1.0 / A.shape[1]), where=row_sum > 0)
    P = transition_matrix(A_M)
    start = A.mean(axis=1)
    start = start / start.sum() if start.sum() > 0 else np.full(len(grid), 1.0 / len(grid))
    rng = np.random.default_rng(seed)
    visits = np.zeros(len(grid), dtype=int)
    best: tuple[float, int, list[int]] | None = None  # (G, S, path)
    for _ in range(walks):
        state = int(rng.choice(len(grid), p=start))
        path = [state]
        visits[state] += 1
        for step in range(walk_length + 1):
            if step:
                state = int(rng.choice(len(grid), p=P[state]))
                path.append(state)
                visits[state] += 1
            members = sorted(set(path))
            g = estimate_accuracy(A, members) - penalty * len(members)
            if best is None or g > best[0] + 1e-12 or (abs(g - best[0]) <= 1e-12 and len(members) < best[1]):
                best = (g, len(members), list(path))
    assert best is not None
    members = sorted(set(best[2]))
    return WalkResult(
        strengths=[grid[i] for i in members], path=[grid[i] for i in best[2]],
        H=round(estimate_accuracy(A, members), 6), G=round(best[0], 6), penalty=penalty, grid=grid,
        accuracy=np.round(A, 6).tolist(), accuracy_m=np.round(A_M, 6).tolist(), transition=np.round(P, 6).tolist(),
        visits={str(g): int(v) for g, v in zip(grid, visits, strict=True)}, walk_length=walk_length, walks=walks,
        seed=seed,
    )


def accuracy_matrix(task: datasets.Task, grid: Sequence[float] = DEFAULT_GRID, *,
                    attack_eps: Sequence[float] = DEFAULT_EVAL_EPS, images: int = 10000, epochs: int = 1,
                    val_images: int = 1000, attack: str = "fgsm", eval_attack: str = "fgsm", seed: int = 0,
                    batch_size: int = 128, lr: float = 1e-3, pgd_steps: int = 10, device: str | torch.device = "cpu",
                    progress: ProgressFn | None = None) -> dict:
    """The random walk's pre-computation: validation accuracy of quick single-strength models.

    For every strength of ``grid`` a fresh CNN is trained (half clean, half adversarial,
    first ``images`` training images, ``epochs`` epochs) and evaluated with ``eval_attack``
    (FGSM as in the paper; PGD-``pgd_steps`` or R+FGSM, advlab's options, so that a
    label-leaking FGSM row cannot look robust) at every strength of ``attack_eps`` on
    ``val_images`` validation images. Row i of the result's ``accuracy`` belongs to ``grid[i]``.
    """
    if eval_attack not in SELECTION_ATTACKS:
        raise AdvlabError(f"The accuracy matrix is measured with fgsm, pgd or rfgsm, got {eval_attack!r}.")
    grid = check_strengths(grid)
    dev = pick_device(device)
    mean, std = data_stats(task.x_train)
    x, y = task.x_train[:images], task.y_train[:images]
    xv, yv = task.x_val[:val_images], task.y_val[:val_images]
    arch = zoo.cnn_architecture(task.input_size, len(task.classes))
    rows, seconds = [], []
    t0 = time.perf_counter()
    for i, eps in enumerate(grid):
        t1 = time.perf_counter()
        model = seeded(seed + i, lambda: Normalized(zoo.build_network(arch), mean, std)).to(dev)
        train_network(model, x, y, strengths=[eps], attack=attack, epochs=epochs, batch_size=batch_size, lr=lr,
                      seed=seed + i, stage=f"matrix {i + 1}/{len(grid)} train eps {eps:g}", progress=progress)
        curve = accuracy_curve(model, xv, yv, attack=eval_attack, eps=attack_eps, seed=seed,
                               steps=pgd_steps if eval_attack == "pgd" else None,
                               stage=f"matrix {i + 1}/{len(grid)} eval", progress=progress)
        rows.append(curve["accuracy"])
        seconds.append(round(time.perf_counter() - t1, 2))
        report(progress, "matrix", i + 1, len(grid), message=f"accuracy matrix: row eps {eps:g}: "
                + " ".join(f"{a:.3f}" for a in curve["accuracy"]) + f" ({seconds[-1]:.0f} s)")
    return {"grid": list(grid), "attack_eps": [float(e) for e in attack_eps], "accuracy": rows,
            "evaluation": f"{_ATTACK_TITLES[eval_attack]} on {len(xv)} validation images",
            "eval_attack": eval_attack, "training": {
                "images": len(x), "epochs": epochs, "attack": attack, "recipe": "half clean, half adversarial",
                "batch_size": batch_size, "lr": lr, "seed": seed},
            "seconds": round(time.perf_counter() - t0, 2), "row_seconds": seconds}


# --------------------------------------------------------------------------- parallel MAT's voting weights


def fit_vote_weights(model: nn.Module, x: torch.Tensor, y: torch.Tensor, strengths: Sequence[float], *,
                     attack: str = "fgsm", rounds: int = 2, steps: int = 300, lr: float = 0.05,
                     pgd_steps: int = 7, seed: int = 0, progress: ProgressFn | None = None) -> list[dict]:
    """Learn parallel MAT's voting weights (Eq. 4) on held-out images; ``model`` is ``Normalized(ParallelMAT)``.

    Each round crafts adversarial copies of ``x`` at every strength against the combined
    model with its current weights, then fits the vote logits (softmax -> weights that are
    non-negative and sum to 1) by Adam on the negative log-likelihood of the weighted vote
    over the clean and adversarial images together. The sub-networks stay fixed.
    ``attack``: fgsm (the paper's examples), pgd or rfgsm. Reconstruction: Eq. 4's weights are
    input-independent constants and the paper does not say how they are obtained; this fit is advlab's.
    """
    pm = model.net if isinstance(model, Normalized) else model
    if not isinstance(pm, zoo.ParallelMAT):
        raise AdvlabError("Voting weights belong to a parallel MAT model.")
    device = next(model.parameters()).device
    x = datasets.to_float(x).to(device)
    y = y.to(device)
    history = []
    model.eval()
    for r in range(1, rounds + 1):
        sets = [x] + [adversarial_examples(model, x, y, eps, attack=attack, pgd_steps=pgd_steps, seed=seed + k)
                      for k, eps in enumerate(strengths)]
        with torch.no_grad():
            normalize = (lambda t: (t - model.mean) / model.std) if isinstance(model, Normalized) else (lambda t: t)
            log_probs = torch.cat([pm.member_log_probs(normalize(s)) for s in sets], dim=1)  # (S, M, C)
        labels = y.repeat(len(sets))
        logits = pm.vote_logits.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=lr)
        start = F.nll_loss(zoo.ParallelMAT.combine(log_probs, logits), labels).item()
        for _ in range(steps):
            loss = F.nll_loss(zoo.ParallelMAT.combine(log_probs, logits), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pm.vote_logits.copy_(logits.detach())
            combined = zoo.ParallelMAT.combine(log_probs, pm.vote_logits)
            after = F.nll_loss(combined, labels).item()
            acc = float((combined.argmax(1) == labels).float().mean())
        weights = [round(float(w), 6) for w in pm.weights.detach()]
        history.append({"round": r, "nll_before": round(start, 5), "nll_after": round(after, 5),
                        "vote_accuracy": round(acc, 5), "weights": weights})
        report(progress, "vote", r, rounds, dict(history[-1]),
                message=f"voting weights, round {r}/{rounds}: " + ", ".join(f"{w:.3f}" for w in weights)
                + f" (accuracy on clean + adversarial validation images {acc:.2%})")
    return history


# --------------------------------------------------------------------------- the whole run


@dataclass
class TrainResult:
    """A trained model (taking [0,1] pixels), the bare network whose state dict is saved, and its card."""

    model: nn.Module
    net: nn.Module
    card: dict
    seconds: float


def train(cfg: TrainConfig, task: datasets.Task | None = None, *, device: str | torch.device = "cpu",
          progress: ProgressFn | None = None, selection: dict | None = None) -> TrainResult:
    """Train one model by ``cfg``; returns it with a card holding the data, recipe and training history.

    ``selection`` (from :func:`select_strengths`) is recorded in the card when the strengths
    came from the random walk. Evaluation curves are added by :func:`evaluate`.
    """
    check_config(cfg)
    dev = pick_device(device)
    if task is None:
        task = datasets.load_task(cfg.dataset, limit=cfg.limit)
    mean, std = data_stats(task.x_train)
    member = zoo.cnn_architecture(task.input_size, len(task.classes))
    common = dict(attack=cfg.attack, example_labels=cfg.example_labels, reduced=cfg.reduced, epochs=cfg.epochs,
                  batch_size=cfg.batch_size, lr=cfg.lr, pgd_steps=cfg.pgd_steps,
                  pgd_alpha_factor=cfg.pgd_alpha_factor, progress=progress)
    t0 = time.perf_counter()
    extra: dict = {}
    if cfg.recipe == "mat-parallel":
        nets, histories = [], []
        for k, eps in enumerate(cfg.strengths):
            sub = seeded(cfg.seed + k, lambda: Normalized(zoo.build_network(member), mean, std)).to(dev)
            histories.append(train_network(sub, task.x_train, task.y_train, strengths=[eps], seed=cfg.seed + k,
                                           stage=f"sub-network {k + 1}/{len(cfg.strengths)} (eps {eps:g})",
                                           **common))
            nets.append(sub.net)
        net = zoo.ParallelMAT(nets)
        model = Normalized(net, mean, std).to(dev).eval()
        vote_attack = cfg.vote_attack or cfg.attack
        votes = fit_vote_weights(model, task.x_val[:cfg.vote_images], task.y_val[:cfg.vote_images], cfg.strengths,
                                 attack=vote_attack, rounds=cfg.vote_rounds, pgd_steps=cfg.pgd_steps, seed=cfg.seed,
                                 progress=progress)
        arch = zoo.parallel_architecture(member, len(nets))
        history = [{"sub_network": k + 1, "strength": eps, "epochs": h}
                   for k, (eps, h) in enumerate(zip(cfg.strengths, histories, strict=True))]
        extra["voting"] = {
            "weights": [round(float(w), 6) for w in net.weights.detach()],
            "method": "a = softmax(learned logits), fitted by Adam on the NLL of the weighted vote over "
                      f"{min(cfg.vote_images, len(task.x_val))} held-out validation images, clean plus "
                      f"{_ATTACK_TITLES[vote_attack]} copies at every strength crafted against the combined model",
            "attack": vote_attack, "reconstructed": RECONSTRUCTED["votes"],
            "rounds": votes,
        }
    else:
        model = seeded(cfg.seed, lambda: Normalized(zoo.build_network(member), mean, std)).to(dev)
        history = train_network(model, task.x_train, task.y_train, strengths=cfg.strengths, seed=cfg.seed,
                                transform=_input_transform(cfg), **common)
        net, arch = model.net, member
        if cfg.input_transform is not None:  # the model as used: halftone at inference, BPDA for attacks
            from advcore import defenses

            model = defenses.Defended(model, defenses.Halftone(cfg.halftone))
            extra["input_transform"] = {
                "kind": cfg.input_transform, "halftone": cfg.halftone,
                "training": ("every batch replaced by its halftone" if cfg.input_transform == "halftone" else
                             "every batch of B intensity images plus its B halftones (2B images per step)"),
                "inference": "halftone the input first (advcore.defenses.Defended); the card's curves attack the "
                             "halftone + network pipeline with BPDA (identity gradient through the halftone)",
            }
    seconds = time.perf_counter() - t0
    model.eval()
    model.requires_grad_(False)
    card = {
        "dataset": task.name,
        "input_size": list(task.input_size),
        "mean": list(mean),
        "std": list(std),
        "classes": task.classes,
        "architecture": arch,
        "parameters": zoo.count_parameters(net),
        "data": task.description,
        "recipe": _recipe_card(cfg),
        "strengths": list(cfg.strengths),
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "training_seconds": round(seconds, 1),
        "history": history,
        **extra,
    }
    if selection is not None:
        card["strength_selection"] = selection
    return TrainResult(model, net, card, seconds)


def _input_transform(cfg: TrainConfig):
    """The batch transform of halftone (x -> H(x)) or hybrid (x -> [x, H(x)]) training, or None."""
    if cfg.input_transform is None:
        return None
    from advcore import defenses

    ht = defenses.Halftone(cfg.halftone, seed=cfg.seed)
    if cfg.input_transform == "halftone":
        return lambda x, y: (ht(x), y)
    return lambda x, y: (torch.cat([x, ht(x)]), torch.cat([y, y]))


def _recipe_card(cfg: TrainConfig) -> dict:
    recipe = {"name": cfg.recipe, "description": _RECIPE_TEXT[cfg.recipe], "optimizer": f"Adam, lr {cfg.lr:g}",
              "batch_size": cfg.batch_size, "loss": "mean cross-entropy over every image of a step"}
    if cfg.recipe != "standard":
        recipe["example_attack"] = cfg.attack
        labels = "true labels" if cfg.example_labels == "true" else "the model's predicted labels"
        recipe["examples"] = (f"L-inf, untargeted, away from {labels}, crafted by advcore.attacks on the model "
                              f"being trained, in {EXAMPLES_MODE}")
        recipe["size"] = "reduced" if cfg.reduced else "full"
        recipe["batch"] = (
            f"each batch of {cfg.batch_size} is split into {len(cfg.strengths) + 1} parts: clean, then one per strength"
            if cfg.reduced else
            f"each batch of {cfg.batch_size} clean images plus its adversarial copy at every strength "
            f"({(len(cfg.strengths) + 1) * cfg.batch_size} images per step)"
            if cfg.recipe != "mat-parallel" else
            f"each sub-network: a batch of {cfg.batch_size} clean images plus its adversarial copy at its strength"
        )
        if cfg.attack == "pgd":
            recipe["pgd"] = {"steps": cfg.pgd_steps, "alpha": f"{cfg.pgd_alpha_factor:g} * eps / steps",
                             "random_start": True}
    return recipe


def select_strengths(task: datasets.Task, *, grid: Sequence[float] = DEFAULT_GRID,
                     attack_eps: Sequence[float] = DEFAULT_EVAL_EPS, images: int = 10000, epochs: int = 1,
                     val_images: int = 1000, penalty: float = 0.005, walks: int = 200,
                     walk_length: int | None = None, seed: int = 0, attack: str = "fgsm",
                     matrix_attack: str = "fgsm", matrix: dict | None = None, device: str | torch.device = "cpu",
                     progress: ProgressFn | None = None) -> dict:
    """Accuracy matrix (or a given ``matrix``) + random walk: the card entry of an ``auto`` strength choice.

    ``attack`` crafts the matrix models' training examples, ``matrix_attack`` measures their accuracy.
    """
    if matrix is None:
        matrix = accuracy_matrix(task, grid, attack_eps=attack_eps, images=images, epochs=epochs,
                                 val_images=val_images, attack=attack, eval_attack=matrix_attack, seed=seed,
                                 device=device, progress=progress)
    walk = random_walk(matrix["accuracy"], matrix["grid"], walk_length=walk_length, walks=walks, penalty=penalty,
                       seed=seed)
    return {"method": "random walk (Sec. 4.3)", "reconstructed": RECONSTRUCTED, "matrix": matrix,
            "walk": walk.to_dict(), "chosen": walk.strengths}


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: Sequence[float] = DEFAULT_EVAL_EPS,
             fgsm_images: int | None = None, pgd_images: int | None = 1000, pgd_steps: int = 10, seed: int = 0,
             rfgsm_images: int | None = 0, source: tuple[str, nn.Module] | None = None,
             progress: ProgressFn | None = None) -> dict:
    """The card's evaluation: clean accuracy on all of ``x``, FGSM, PGD and R+FGSM accuracy-vs-strength curves
    (white-box), and with ``source`` (name, model) the paper's transfer-FGSM curve (static FGSM sets crafted on
    that fixed model, Sec. 5.1) on the FGSM curve's images.

    ``fgsm_images`` / ``pgd_images`` / ``rfgsm_images``: how many of the (class-interleaved) images each curve
    uses (None: all; 0: no curve).
    """
    out: dict = {"clean_accuracy": round(accuracy(model, x, y), 6), "evaluation_images": len(x), "curves": {}}
    for name, n, steps in (("fgsm", fgsm_images, 1), ("pgd", pgd_images, pgd_steps), ("rfgsm", rfgsm_images, 1)):
        n = len(x) if n is None else min(n, len(x))
        if n <= 0:
            continue
        curve = accuracy_curve(model, x[:n], y[:n], attack=name, eps=eps, steps=steps, seed=seed, progress=progress)
        out["curves"][name] = curve
        msg = ", ".join(f"{e:g}: {a:.3f}" for e, a in zip(curve["eps"], curve["accuracy"], strict=True))
        report(progress, f"{name} eval", 1, 1, message=f"{name.upper()} accuracy on {n} images: {msg} "
                f"(average {curve['average_accuracy']:.3f}, {curve['seconds']:.0f} s)")
    if source is not None:
        n = len(x) if fgsm_images is None else min(fgsm_images, len(x))
        if n > 0:
            sets = static_fgsm_sets(source[1], x[:n], y[:n], eps, progress=progress)
            out["curves"]["transfer_fgsm"] = transfer_curve(model, sets, y[:n], eps, source=source[0])
    return out


def accuracy_at(curve: dict, eps: float) -> tuple[float, bool]:
    """Accuracy of an accuracy-vs-strength curve at ``eps`` and whether it was measured there.

    A measured strength gives its stored value; between strengths the curve is interpolated linearly.
    """
    xs, ys = np.asarray(curve["eps"], dtype=float), np.asarray(curve["accuracy"], dtype=float)
    hit = np.flatnonzero(np.abs(xs - eps) < 1e-9)
    if hit.size:
        return float(ys[hit[0]]), True
    return float(np.interp(eps, xs, ys)), False


def summary(card: dict) -> dict:
    """Headline numbers of a card: clean accuracy, FGSM/PGD accuracy at 0.1 and averaged over the range."""
    out = {"clean_accuracy": card.get("clean_accuracy"), "training_seconds": card.get("training_seconds")}
    for name, curve in card.get("curves", {}).items():
        value, measured = accuracy_at(curve, 0.1)
        out[f"{name}_at_0.1"] = value if measured else None
        out[f"{name}_average"] = curve.get("average_accuracy")
    return out


def save(result: TrainResult, out_dir: str | Path, name: str, *, title: str | None = None,
         extra: dict | None = None) -> tuple[Path, Path]:
    """Write ``NAME.pt`` (``torch.save(net.state_dict())``, float32) and ``NAME.json`` (the card) to ``out_dir``."""
    import io
    import json

    from advcore.files import check_output, write_bytes

    out_dir = Path(out_dir)
    weights = check_output(out_dir / f"{name}.pt", what="weights")
    card_path = check_output(out_dir / f"{name}.json", what="model card")
    state = {k: v.detach().float().cpu().contiguous() for k, v in result.net.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(weights, buffer.getvalue())
    card = {"name": name, "title": title or default_title(result.card), **result.card, "weights": weights.name,
            "weights_bytes": weights.stat().st_size,
            "environment": {"torch": torch.__version__, "python": platform.python_version(),
                            "threads": torch.get_num_threads()},
            "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **(extra or {})}
    from advcore.records import json_safe

    write_bytes(card_path, (json.dumps(json_safe(card), indent=1) + "\n").encode("utf-8"))
    return weights, card_path


def default_title(card: dict) -> str:
    """A readable title such as ``Fashion-MNIST CNN, FGSM adversarial training (eps 0.1)``."""
    data = {"fashion-mnist": "Fashion-MNIST", "digits": "Digits"}.get(card.get("dataset", ""), card.get("dataset"))
    recipe = card.get("recipe", {}).get("name", "")
    eps = ", ".join(f"{s:g}" for s in card.get("strengths", []))
    text = {
        "standard": "standard training",
        "fgsm": f"FGSM adversarial training (eps {eps})",
        "pgd": f"PGD adversarial training (eps {eps})",
        "mat-mixed": f"mixed MAT (eps {eps})",
        "mat-parallel": f"parallel MAT (eps {eps})",
    }.get(recipe, recipe)
    transform = card.get("input_transform")
    if transform:
        method = transform.get("halftone", "").replace("-", " ").title().replace(" ", "-")
        text += (f" on {method} halftones" if transform.get("kind") == "halftone"
                 else f" on intensity + {method} halftone images (hybrid)")
    return f"{data} CNN, {text}"
