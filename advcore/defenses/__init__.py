"""Halftoning as an input-recharacterisation defense, and the adaptive attacks that test it.

Huang, Liao and Huang, "Defense Mechanism against Adversarial Attacks Using
Density-Based Representation of Images" (``shared/papers/halftoning-defense-abstract.txt``,
abstract only): convert an image from intensities to a binary, density-based
representation (halftoning) before classifying it, with a model trained on halftone
images or a hybrid model trained on both. The paper attacks the undefended model and
halftones its adversarial examples. An attacker who knows the defense differentiates
through it instead (Athalye et al. 2018):

* BPDA: the halftone's forward pass is the real, non-differentiable halftone; its
  backward pass is the identity (``d halftone(x) / dx ~ I``), :class:`BPDA`.
* EOT: for a randomised halftone (``bayer-random``: a random offset of the threshold
  tiling per image and call) the attacked model averages the logits of ``k`` draws,
  :class:`EOT`, so each gradient step sees the expectation over the randomness.

Halftones (all per channel, on pixels in [0, 1], output exactly 0 or 1):

* Error diffusion (Floyd and Steinberg 1976): scan in raster order; quantise
  ``q = [v >= 1/2]`` where ``v`` is the pixel plus the error pushed to it; push the error
  ``v - q`` to not-yet-visited neighbours with the kernel's weights (which sum to 1, so
  the mean intensity is preserved up to the border). ``floyd-steinberg`` uses Pillow's C
  implementation on the 8-bit image; ``floyd-steinberg-numpy`` (the same kernel), ``atkinson``
  (6 x 1/8: 3/4 of the error diffused), ``jarvis-judice-ninke`` (12 taps /48) and ``stucki``
  (12 taps /42) use :func:`error_diffusion`, vectorised over the batch and along a skewed
  wavefront.
* Ordered dithering (Bayer 1973): ``q = [x > (M_n + 1/2) / n^2]`` with the recursive
  Bayer index matrix ``M_n`` tiled over the image (:func:`bayer_matrix`). A constant image
  of intensity ``c`` gets a share ``#{k : (k + 1/2)/n^2 < c} / n^2`` of ones. Pure tensor
  code: it runs on the GPU as well.

A halftone is idempotent: a binary image halftones to itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch import nn

from advcore.errors import AdvlabError, Cancelled

# --------------------------------------------------------------------------- kernels

#: Error-diffusion kernels: (row offset, column offset, weight) of the pixels that receive
#: the quantisation error of the current one (rows below, or columns to the right).
KERNELS: dict[str, tuple[tuple[int, int, float], ...]] = {
    "floyd-steinberg": ((0, 1, 7 / 16), (1, -1, 3 / 16), (1, 0, 5 / 16), (1, 1, 1 / 16)),
    "atkinson": ((0, 1, 1 / 8), (0, 2, 1 / 8), (1, -1, 1 / 8), (1, 0, 1 / 8), (1, 1, 1 / 8), (2, 0, 1 / 8)),
    "jarvis-judice-ninke": tuple(
        (di, dj, w / 48) for di, row in enumerate(((0, 0, 0, 7, 5), (3, 5, 7, 5, 3), (1, 3, 5, 3, 1)))
        for dj, w in zip(range(-2, 3), row, strict=True) if w),
    "stucki": tuple(
        (di, dj, w / 42) for di, row in enumerate(((0, 0, 0, 8, 4), (2, 4, 8, 4, 2), (1, 2, 4, 2, 1)))
        for dj, w in zip(range(-2, 3), row, strict=True) if w),
}

METHODS: dict[str, str] = {
    "floyd-steinberg": "Floyd-Steinberg error diffusion (Pillow's C implementation, 8-bit input)",
    "floyd-steinberg-numpy": "Floyd-Steinberg error diffusion (numpy wavefront, float input)",
    "atkinson": "Atkinson error diffusion (3/4 of the error diffused)",
    "jarvis-judice-ninke": "Jarvis-Judice-Ninke error diffusion (12 taps)",
    "stucki": "Stucki error diffusion (12 taps)",
    "bayer": "ordered dithering with a Bayer threshold matrix",
    "bayer-random": "ordered dithering with a Bayer matrix at a random offset per image and call (randomised)",
}
BAYER_SIZES = (2, 4, 8, 16)


def check_method(method: str) -> str:
    """The method name, or an :class:`AdvlabError` listing the choices."""
    if method not in METHODS:
        raise AdvlabError(f"Unknown halftone {method!r}; choose one of {', '.join(METHODS)}.")
    return method


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise AdvlabError("Halftoning takes a batch of images shaped (N, C, H, W).")
    if not torch.is_floating_point(x):
        raise AdvlabError("Halftoning takes float pixels in [0, 1].")


# --------------------------------------------------------------------------- error diffusion


def _skew(taps: Sequence[tuple[int, int, float]]) -> int:
    """Smallest wavefront skew ``s`` such that pixel (i, j) at time ``j + s*i`` comes after every pixel
    that pushes error to it: for a tap (di, dj) with di > 0, ``s*di + dj > 0``."""
    return max([1] + [math.floor(-dj / di) + 1 for di, dj, _ in taps if di > 0])


@lru_cache(maxsize=32)
def _wavefront(h: int, w: int, method: str) -> tuple[list[np.ndarray], list[tuple[int, float]], int, int, int]:
    """Flat indices (in the padded image) of each wavefront, the taps as flat offsets, the padding."""
    taps = KERNELS[method]
    pad_r = max(di for di, _, _ in taps)
    pad_c = max(abs(dj) for _, dj, _ in taps)
    wp = w + 2 * pad_c
    s = _skew(taps)
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    t = (jj + s * ii).ravel()
    flat = (ii * wp + jj + pad_c).ravel()
    order = np.argsort(t, kind="stable")
    bounds = np.searchsorted(t[order], np.arange(t.max() + 2))
    fronts = [flat[order[bounds[k]:bounds[k + 1]]] for k in range(t.max() + 1)]
    offsets = [(di * wp + dj, float(wt)) for di, dj, wt in taps]
    return fronts, offsets, pad_r, pad_c, wp


def error_diffusion(x: torch.Tensor, method: str = "floyd-steinberg", *, threshold: float = 0.5) -> torch.Tensor:
    """Error-diffusion halftone of ``x`` (N, C, H, W) in [0, 1], each channel on its own; returns 0/1 floats.

    Raster order, no serpentine. Pixels on one wavefront ``j + s*i = t`` depend only on
    earlier wavefronts, so they are quantised together, for every image of the batch at once.
    """
    _check_images(x)
    if method.endswith("-numpy"):
        method = method[: -len("-numpy")]
    if method not in KERNELS:
        raise AdvlabError(f"Unknown error-diffusion kernel {method!r}; choose one of {', '.join(KERNELS)}.")
    n, c, h, w = x.shape
    fronts, offsets, pad_r, pad_c, wp = _wavefront(h, w, method)
    buf = np.zeros((n * c, (h + pad_r) * wp), dtype=np.float64)
    view = buf.reshape(n * c, h + pad_r, wp)
    view[:, :h, pad_c:pad_c + w] = x.detach().reshape(n * c, h, w).cpu().double().clamp(0, 1).numpy()
    out = np.zeros_like(buf)
    for p in fronts:
        v = buf[:, p]
        q = (v >= threshold).astype(np.float64)
        out[:, p] = q
        e = v - q
        for off, wt in offsets:
            buf[:, p + off] += wt * e
    res = out.reshape(n * c, h + pad_r, wp)[:, :h, pad_c:pad_c + w].reshape(n, c, h, w)
    return torch.from_numpy(np.ascontiguousarray(res)).to(device=x.device, dtype=x.dtype)


def floyd_steinberg_pillow(x: torch.Tensor) -> torch.Tensor:
    """Floyd-Steinberg by Pillow (``Image.convert("1")``, C code) on the 8-bit rounding of each channel."""
    _check_images(x)
    n, c, h, w = x.shape
    u8 = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).reshape(n * c, h, w).cpu().numpy()
    out = np.empty((n * c, h, w), dtype=np.uint8)
    for k in range(n * c):
        out[k] = np.asarray(Image.fromarray(u8[k], "L").convert("1", dither=Image.Dither.FLOYDSTEINBERG),
                            dtype=np.uint8)
    return torch.from_numpy(out).reshape(n, c, h, w).to(device=x.device, dtype=x.dtype)


# --------------------------------------------------------------------------- ordered dithering


@lru_cache(maxsize=8)
def _bayer_np(n: int) -> np.ndarray:
    if n == 1:
        return np.zeros((1, 1), dtype=np.int64)
    m = _bayer_np(n // 2)
    return np.block([[4 * m, 4 * m + 2], [4 * m + 3, 4 * m + 1]])


def bayer_matrix(n: int = 8) -> torch.Tensor:
    """Bayer index matrix ``M_n`` (n a power of two): ``M_2n = [[4M, 4M+2], [4M+3, 4M+1]]``, values 0..n^2-1."""
    if n not in BAYER_SIZES:
        raise AdvlabError(f"The Bayer matrix size must be one of {', '.join(map(str, BAYER_SIZES))}, got {n!r}.")
    return torch.from_numpy(_bayer_np(n).copy())


def bayer_thresholds(n: int = 8) -> torch.Tensor:
    """Thresholds ``(M_n + 1/2) / n^2`` in (0, 1)."""
    return (bayer_matrix(n).double() + 0.5) / (n * n)


def ordered_dither(x: torch.Tensor, n: int = 8, *, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Ordered dithering ``x > T`` with the Bayer thresholds tiled over the image (on ``x``'s device).

    ``offset``: (N, 2) integer shifts (rows, columns) of the tiling, one per image (the
    randomised variant); None: the tiling starts at the top-left corner.
    """
    _check_images(x)
    b, c, h, w = x.shape
    t = bayer_thresholds(n).to(device=x.device, dtype=x.dtype)
    if offset is None:
        rows = torch.arange(h, device=x.device) % n
        cols = torch.arange(w, device=x.device) % n
        tile = t[rows[:, None], cols[None, :]]  # (H, W)
        return (x > tile).to(x.dtype)
    offset = offset.to(x.device).long()
    rows = (torch.arange(h, device=x.device)[None, :] + offset[:, :1]) % n  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] + offset[:, 1:]) % n  # (N, W)
    tile = t[rows[:, :, None], cols[:, None, :]]  # (N, H, W)
    return (x > tile[:, None]).to(x.dtype)


# --------------------------------------------------------------------------- the halftone operator


@dataclass
class Halftone:
    """A halftone operator: ``Halftone("floyd-steinberg")(x)`` maps (N, C, H, W) in [0, 1] to 0/1 per channel.

    ``bayer_size``: n of the Bayer matrix. ``seed``: the randomised variant's generator
    (each call draws new offsets; :meth:`reseed` restarts the sequence).
    """

    method: str = "floyd-steinberg"
    bayer_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        check_method(self.method)
        if self.method.startswith("bayer"):
            bayer_matrix(self.bayer_size)
        self._gen = torch.Generator().manual_seed(self.seed)

    @property
    def random(self) -> bool:
        """Whether two calls on the same image may differ (EOT applies)."""
        return self.method == "bayer-random"

    def reseed(self, seed: int | None = None) -> Halftone:
        self._gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return self

    def describe(self) -> dict:
        d = {"method": self.method, "description": METHODS[self.method], "random": self.random}
        if self.method.startswith("bayer"):
            d["bayer_size"] = self.bayer_size
        if self.random:
            d["seed"] = self.seed
        return d

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x)
        if self.method == "floyd-steinberg":
            return floyd_steinberg_pillow(x)
        if self.method == "bayer":
            return ordered_dither(x, self.bayer_size)
        if self.method == "bayer-random":
            off = torch.randint(0, self.bayer_size, (x.shape[0], 2), generator=self._gen)
            return ordered_dither(x, self.bayer_size, offset=off)
        return error_diffusion(x, self.method)


def halftone(x: torch.Tensor, method: str = "floyd-steinberg", **kwargs) -> torch.Tensor:
    """``Halftone(method, **kwargs)(x)``."""
    return Halftone(method, **kwargs)(x)


# --------------------------------------------------------------------------- BPDA, the defended model, EOT


class BPDA(torch.autograd.Function):
    """Backward pass differentiable approximation (Athalye et al. 2018): forward ``halftone(x)``,
    backward the identity, i.e. the gradient of the surrogate ``g(x) = x``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return fn(x.detach())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


class Defended(nn.Module):
    """``model(halftone(x))``: attacks, training code and metrics treat it like any model taking [0, 1] pixels.

    ``gradient="bpda"`` (default): the halftone's backward pass is the identity (the
    attacker knows the defense). ``gradient="true"``: the halftone's true derivative, zero
    almost everywhere (what plain backpropagation would see: gradient masking).
    """

    def __init__(self, model: nn.Module, halftone: Halftone | str, *, gradient: str = "bpda"):
        super().__init__()
        if gradient not in ("bpda", "true"):
            raise AdvlabError(f"Gradient through the halftone must be 'bpda' or 'true', got {gradient!r}.")
        self.model = model
        self.halftone = Halftone(halftone) if isinstance(halftone, str) else halftone
        self.gradient = gradient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.requires_grad:
            return self.model(self.halftone(x))
        if self.gradient == "bpda":
            return self.model(BPDA.apply(x, self.halftone))
        return self.model(self.halftone(x) + 0 * x)


class EOT(nn.Module):
    """Expectation over transformation: the mean of the logits of ``k`` calls of a randomised ``model``.

    With a randomised halftone every call draws new randomness, so a gradient step on the
    averaged logits follows the gradient averaged over ``k`` draws (of the loss of the mean
    logits, a smooth stand-in for the mean loss that keeps the attack loop unchanged).
    """

    def __init__(self, model: nn.Module, k: int = 8):
        super().__init__()
        if not isinstance(k, int) or not 1 <= k <= 1000:
            raise AdvlabError(f"EOT needs between 1 and 1000 samples, got {k!r}.")
        self.model = model
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.model(x) for _ in range(self.k)]).mean(0)


# --------------------------------------------------------------------------- the evaluation (the lab's table)

ROWS = ("none", "halftone-input", "halftone-trained", "hybrid")
ROW_TITLES = {
    "none": "no defense",
    "halftone-input": "halftone input, naive model",
    "halftone-trained": "halftone-trained model",
    "hybrid": "hybrid model",
}
COLUMNS = ("ignores", "knows")
COLUMN_TITLES = {
    "ignores": "attacker ignores the defense",
    "knows": "attacker knows the defense",
}
#: The models trained for the defense, per dataset (shipped in assets/models).
TRAINED_MODELS = {"fashion-mnist": {"halftone-trained": "fmnist-halftone", "hybrid": "fmnist-hybrid"}}
EVAL_ATTACKS = ("fgsm", "ifgsm", "pgd")
DEFAULT_EPS = (0.0, 0.05, 0.1, 0.2)
ProgressCallback = Callable[[int, int, str], bool | None]


@dataclass
class Row:
    """One line of the table: the model used, whether the input is halftoned, and what an adaptive attacker hits."""

    key: str
    model_name: str
    model: nn.Module  # the network on [0, 1] pixels, without the halftone
    defended: nn.Module  # what classifies: ``model`` or ``Defended(model, halftone)``
    attacked: nn.Module  # what the adaptive attacker differentiates: BPDA, + EOT for a random halftone

    @property
    def title(self) -> str:
        return ROW_TITLES[self.key]


def bare_network(model: nn.Module) -> nn.Module:
    """The network behind a registry model: halftone-trained models load as ``Defended(net, halftone)``
    (:func:`advcore.models.zoo.input_transform`); the table puts its own halftone (or none) in front."""
    return model.model if isinstance(model, Defended) else model


def build_rows(model_name: str, ht: Halftone, *, device: str | torch.device = "cpu", eot: int = 8,
               trained: dict[str, str] | None = None) -> list[Row]:
    """The rows of the table for base model ``model_name`` (the undefended, naively trained model).

    ``trained`` maps ``halftone-trained`` / ``hybrid`` to registered model names (default:
    :data:`TRAINED_MODELS` of the model's dataset, where they are registered).
    """
    from advcore import models

    spec = models.get_spec(model_name)
    base = bare_network(models.load(model_name, device))
    if trained is None:
        trained = {k: v for k, v in TRAINED_MODELS.get(spec.dataset, {}).items() if v in models.names()}
    attack_ht = Halftone(ht.method, ht.bayer_size, seed=ht.seed + 1)  # the attacker's own draws

    def wrap(net: nn.Module) -> tuple[nn.Module, nn.Module]:
        attacked: nn.Module = Defended(net, attack_ht)
        if ht.random:
            attacked = EOT(attacked, eot)
        return Defended(net, ht), attacked

    rows = [Row("none", model_name, base, base, base)]
    rows.append(Row("halftone-input", model_name, base, *wrap(base)))
    for key in ("halftone-trained", "hybrid"):
        name = trained.get(key)
        if name:
            other = models.get_spec(name)
            if other.input_size != spec.input_size or other.classes() != spec.classes():
                raise AdvlabError(f"{name} does not classify the same images as {model_name}.")
            net = bare_network(models.load(name, device))
            rows.append(Row(key, name, net, *wrap(net)))
    return rows


def evaluation_images(model_name: str, n: int | None = None, *,
                      device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, str, str]:
    """Labelled images for the table: ``(x, y, what, labels)``.

    Fashion-MNIST / digits models: the first ``n`` images of the shipped test subset with
    their true labels. ImageNet models: the bundled photos, labelled by the undefended
    model's own clean prediction (they carry no ImageNet label).
    """
    from advcore import data, datasets, models

    spec = models.get_spec(model_name)
    if spec.dataset in ("fashion-mnist", "digits"):
        x, y, what = datasets.eval_set(spec.dataset, n)
        return x.to(device), y.to(device), what, "true labels"
    photos = data.samples()
    if n is not None:
        if not 1 <= n <= len(photos):
            raise AdvlabError(f"There are {len(photos)} bundled photos; n must be between 1 and {len(photos)}.")
        photos = photos[:n]
    x = torch.cat([data.prepare(data.open_image(p.path), spec.input_size) for p in photos]).to(device)
    with torch.no_grad():
        y = models.load(model_name, device)(x).argmax(1)
    return x, y, "bundled photos (assets/samples)", "the undefended model's clean top-1 prediction"


def _topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == y[:, None]).any(1).sum())


def evaluate_defense(model_name: str, method: str = "floyd-steinberg", *,
                     attack_names: Sequence[str] = EVAL_ATTACKS, eps: Sequence[float] = DEFAULT_EPS,
                     n: int | None = 500, steps: int = 10, adaptive: bool = True, eot: int = 8,
                     bayer_size: int = 8, seed: int = 0, batch_size: int = 250,
                     trained: dict[str, str] | None = None, device: str | torch.device = "cpu",
                     progress: ProgressCallback | None = None) -> dict:
    """Accuracy of every row under every attack and eps, with the attacker ignoring or knowing the defense.

    * ``ignores`` (the paper's protocol): the adversarial examples are crafted on the
      undefended base model, then each row classifies them (halftoning them first).
    * ``knows`` (``adaptive``): each row is attacked through its own pipeline, the halftone
      differentiated by BPDA, and for a randomised halftone with EOT over ``eot`` draws.

    L-inf, untargeted; I-FGSM and PGD take ``steps`` steps (step eps/steps and
    2.5 eps/steps, PGD from a random start seeded by ``seed``). At eps 0 every entry is
    the clean accuracy. Top-5 is reported when the model has more than 10 classes.
    ``progress(done, total, text)`` returning True cancels (:class:`Cancelled`).
    Returns a JSON-safe dict (see ``table``: one record per row, attack, eps and column).
    """
    from advcore import attacks, models
    from advcore.device import pick_device

    t0 = time.perf_counter()
    dev = pick_device(device)
    check_method(method)
    attack_names = [attacks.get_attack(a).name for a in attack_names]
    if not attack_names:
        raise AdvlabError("Choose at least one attack.")
    eps = [float(e) for e in eps]
    if not eps:
        raise AdvlabError("Give at least one eps.")
    for e in eps:
        attacks.check_budget(eps=e, alpha=max(e, 1e-12), steps=steps, norm="linf")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise AdvlabError("batch size must be a positive whole number.")
    ht = Halftone(method, bayer_size, seed=seed)
    rows = build_rows(model_name, ht, device=dev, eot=eot, trained=trained)
    x, y, what, labels = evaluation_images(model_name, n, device=dev)
    num_classes = models.get_spec(model_name).num_classes
    ks = (1, 5) if num_classes > 10 else (1,)
    columns = COLUMNS if adaptive else COLUMNS[:1]
    batches = [slice(i, i + batch_size) for i in range(0, len(x), batch_size)]
    attacked_rows = [r for r in rows if r.key != "none"]
    per_eps = 1 + (len(attacked_rows) if adaptive else 0)
    total = len(attack_names) * sum(0 if e == 0 else per_eps for e in eps) * len(batches) + len(batches)
    done = 0

    def tick(text: str) -> None:
        nonlocal done
        done += 1
        if progress is not None and progress(done, total, text):
            raise Cancelled("defense evaluation cancelled")

    def classify(row: Row, xb: torch.Tensor, b: int) -> torch.Tensor:
        ht.reseed(seed + 7919 * b)  # the same halftone draws for every row and attack
        with torch.no_grad():
            return row.defended(xb)

    # correct[row][k] for clean images
    clean = {r.key: {k: 0 for k in ks} for r in rows}
    for b, sl in enumerate(batches):
        for r in rows:
            logits = classify(r, x[sl], b)
            for k in ks:
                clean[r.key][k] += _topk_correct(logits, y[sl], k)
        tick("clean images")
    acc: dict = {r.key: {a: {c: {f"top{k}": [] for k in ks} for c in columns} for a in attack_names} for r in rows}
    for a in attack_names:
        for e in eps:
            counts = {r.key: {c: {k: 0 for k in ks} for c in columns} for r in rows}
            if e == 0:
                for r in rows:
                    for c in columns:
                        counts[r.key][c] = dict(clean[r.key])
            else:
                for b, sl in enumerate(batches):
                    xb, yb = x[sl], y[sl]
                    params = dict(eps=e, norm="linf", steps=steps, seed=seed + b)
                    x_adv = attacks.run(a, rows[0].model, xb, yb, **params).x_adv.detach()
                    tick(f"{a.upper()} eps {e:g}: examples on the undefended model")
                    for r in rows:
                        logits = classify(r, x_adv, b)
                        for k in ks:
                            counts[r.key]["ignores"][k] += _topk_correct(logits, yb, k)
                            if adaptive and r.key == "none":
                                counts[r.key]["knows"][k] += _topk_correct(logits, yb, k)
                    if adaptive:
                        for r in attacked_rows:
                            xa = attacks.run(a, r.attacked, xb, yb, **params).x_adv.detach()
                            logits = classify(r, xa, b)
                            for k in ks:
                                counts[r.key]["knows"][k] += _topk_correct(logits, yb, k)
                            tick(f"{a.upper()} eps {e:g}: BPDA{' + EOT' if ht.random else ''} on {r.title}")
            for r in rows:
                for c in columns:
                    for k in ks:
                        acc[r.key][a][c][f"top{k}"].append(round(counts[r.key][c][k] / len(x), 6))
    table = [
        {"row": r.key, "model": r.model_name, "attack": a, "eps": e, "column": c,
         **{f"top{k}": acc[r.key][a][c][f"top{k}"][i] for k in ks}}
        for r in rows for a in attack_names for i, e in enumerate(eps) for c in columns
    ]
    result = {
        "model": model_name,
        "defense": ht.describe(),
        "data": what,
        "labels": labels,
        "n": len(x),
        "eps": eps,
        "attacks": attack_names,
        "attack_params": {"norm": "linf", "targeted": False, "steps": steps,
                          "ifgsm_alpha": "eps / steps", "pgd_alpha": "2.5 eps / steps, random start", "seed": seed},
        "adaptive": adaptive,
        "bpda": "identity backward pass through the halftone" if adaptive else None,
        "eot": eot if adaptive and ht.random else None,
        "topk": [f"top{k}" for k in ks],
        "rows": [{"key": r.key, "title": r.title, "model": r.model_name, "halftone": r.key != "none"} for r in rows],
        "columns": {c: COLUMN_TITLES[c] for c in columns},
        "clean": {r.key: {f"top{k}": round(clean[r.key][k] / len(x), 6) for k in ks} for r in rows},
        "accuracy": acc,
        "table": table,
        "device": str(dev),
    }
    result["lesson"] = lesson(result)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    from advcore.records import json_safe

    return json_safe(result)


def eps_text(e: float) -> str:
    """``4/255`` for a whole number of 8-bit levels that is not a short decimal, else ``0.1``."""
    k = round(e * 255)
    if e and abs(e * 255 - k) < 1e-6 and len(f"{e:g}") > 6:
        return f"{k}/255"
    return f"{e:g}"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def lesson(result: dict) -> str:
    """The table in plain words: what the halftone buys against each attacker, and the gap between them.

    Headline: the strongest attack measured (PGD, else I-FGSM, else FGSM) at the eps where
    the best defended row gains most over no defense against the attacker who ignores the
    defense. Then the gap between the two columns over every defended row, attack and eps.
    """
    eps = result["eps"]
    positive = [i for i, e in enumerate(eps) if e > 0]
    if not positive:
        return "Only clean images were measured (eps 0): choose a positive eps to see what the defense does."
    a = next(x for x in ("pgd", "ifgsm", "fgsm") if x in result["attacks"])
    acc = result["accuracy"]
    defended = [r["key"] for r in result["rows"] if r["key"] != "none"]

    def gain(i: int) -> float:
        return max(acc[k][a]["ignores"]["top1"][i] for k in defended) - acc["none"][a]["ignores"]["top1"][i]

    i = max(positive, key=lambda j: (round(gain(j), 9), -eps[j]))
    none = acc["none"][a]["ignores"]["top1"][i]
    best = max(defended, key=lambda k: acc[k][a]["ignores"]["top1"][i])
    ign = acc[best][a]["ignores"]["top1"][i]
    title = {"halftone-input": "naive model on halftone input"}.get(best, ROW_TITLES[best])
    clean_best, clean_none = result["clean"][best]["top1"], result["clean"]["none"]["top1"]
    name = {"pgd": "PGD", "ifgsm": "I-FGSM", "fgsm": "FGSM"}[a]
    if clean_best < 0.5 * clean_none:
        return (f"The halftone alone already breaks the model: on clean images the {title} gets {_pct(clean_best)} "
                f"top-1 against {_pct(clean_none)} without it, so its accuracy under attack means little. A model "
                "has to be trained on halftones for this defense (the paper's halftone and hybrid models).")
    text = (f"Under {name} at eps {eps_text(eps[i])}, the undefended model keeps {_pct(none)} top-1 accuracy. "
            f"When the attacker ignores the defense (examples made on the undefended model, as in the paper), "
            f"the {title} keeps {_pct(ign)} ({100 * (ign - none):+.1f} points).")
    if "knows" in acc[best][a]:
        kn = acc[best][a]["knows"]["top1"][i]
        how = "BPDA" + (" + EOT" if result.get("eot") else "")
        text += (f" When the attacker knows the defense ({how}: the halftone differentiated as the identity), "
                 f"the same model keeps {_pct(kn)}, {100 * (kn - none):+.1f} points over no defense.")
        gaps = [(acc[k][x]["ignores"]["top1"][j] - acc[k][x]["knows"]["top1"][j], k, x, eps[j])
                for k in defended for x in result["attacks"] for j in positive]
        top = max(gaps)
        mean = sum(g[0] for g in gaps) / len(gaps)
        where = (f"{ROW_TITLES[top[1]]}, {name_of(top[2])} at eps {eps_text(top[3])}")
        text += (f" Over all {len(gaps)} defended measurements, knowing the defense lowers accuracy by "
                 f"{100 * mean:.1f} points on average and by at most {100 * top[0]:.1f} points ({where}).")
        if mean >= 0.03:
            text += (" Much of the robustness the paper's attacker sees comes from hiding the gradient, not from "
                     "removing the adversarial direction.")
        elif top[0] > 0.05:
            text += (" The gap is small on average; where it is largest, part of the robustness the paper's "
                     "attacker sees comes from hiding the gradient.")
        else:
            text += (" The gap is small everywhere: the halftone's benefit here does not come from hiding the "
                     "gradient from this attacker.")
        text += (" BPDA with the identity is the simplest attacker who knows the defense, so an accuracy measured "
                 "against it is an upper bound, not a guarantee.")
    else:
        text += " Turn on the adaptive attacker (BPDA) to see whether this holds when the attacker knows the defense."
    if clean_best < clean_none - 0.005:
        text += f" The price on clean images: {_pct(clean_best)} instead of {_pct(clean_none)}."
    return text


def name_of(attack: str) -> str:
    """FGSM, I-FGSM, PGD."""
    return {"pgd": "PGD", "ifgsm": "I-FGSM", "fgsm": "FGSM"}.get(attack, attack)


# --------------------------------------------------------------------------- one image, four views


@dataclass
class Panels:
    """Clean, halftone(clean), adversarial and halftone(adversarial) of one image, each with its top-k.

    ``clean`` and ``adversarial`` are classified by the undefended model; the halftones by
    the chosen row's model. ``adversarial`` was crafted on the undefended model (attacker
    ignores the defense) or through the row's pipeline with BPDA (+ EOT) (attacker knows it).
    """

    images: dict[str, torch.Tensor]  # name -> (1, C, H, W) in [0, 1]
    predictions: dict[str, object]  # name -> advcore.predictions.Prediction
    row: str
    row_model: str
    adaptive: bool
    label: int  # the label the attack moves away from
    seconds: float

    PANELS = ("clean", "halftone_clean", "adversarial", "halftone_adversarial")


def image_panels(model_name: str, x: torch.Tensor, y: int | None = None, *, method: str = "floyd-steinberg",
                 row: str = "halftone-input", attack: str = "pgd", eps: float = 0.1, adaptive: bool = False,
                 steps: int = 10, seed: int = 0, eot: int = 8, bayer_size: int = 8,
                 trained: dict[str, str] | None = None, device: str | torch.device = "cpu",
                 callback: Callable | None = None) -> Panels:
    """The four views of one image ``x`` (1, C, H, W) for the Defense lab; ``y``: its true class (None: the
    undefended model's clean prediction). ``callback`` is the attack's per-step callback (True cancels)."""
    from advcore import attacks, models
    from advcore.device import pick_device
    from advcore.predictions import top_k

    t0 = time.perf_counter()
    dev = pick_device(device)
    _check_images(x)
    if x.shape[0] != 1:
        raise AdvlabError("image_panels takes one image.")
    if row == "none":
        raise AdvlabError("Choose a defended row: halftone-input, halftone-trained or hybrid.")
    ht = Halftone(method, bayer_size, seed=seed)
    rows = {r.key: r for r in build_rows(model_name, ht, device=dev, eot=eot, trained=trained)}
    if row not in rows:
        raise AdvlabError(f"No {ROW_TITLES.get(row, row)} is available for {model_name}; choose one of "
                          f"{', '.join(k for k in rows if k != 'none')}.")
    attack = attacks.get_attack(attack).name
    base, r = rows["none"], rows[row]
    classes = models.get_spec(model_name).classes()
    x = x.to(dev)
    with torch.no_grad():
        label = int(base.model(x).argmax(1)) if y is None else int(y)
    yt = torch.tensor([label], device=dev)
    target = r.attacked if adaptive else base.model
    if eps > 0:
        res = attacks.run(attack, target, x, yt, eps=eps, norm="linf", steps=steps, seed=seed, callback=callback)
        if res.cancelled:
            raise Cancelled("attack cancelled")
        x_adv = res.x_adv.detach()
    else:
        x_adv = x.clone()
    ht.reseed(seed)
    h_clean = ht(x)
    ht.reseed(seed)
    h_adv = ht(x_adv)
    images = {"clean": x, "halftone_clean": h_clean, "adversarial": x_adv, "halftone_adversarial": h_adv}
    with torch.no_grad():
        logits = {"clean": base.model(x), "halftone_clean": r.model(h_clean), "adversarial": base.model(x_adv),
                  "halftone_adversarial": r.model(h_adv)}
    preds = {k: top_k(v, classes)[0] for k, v in logits.items()}
    return Panels(images=images, predictions=preds, row=row, row_model=r.model_name, adaptive=adaptive,
                  label=label, seconds=time.perf_counter() - t0)


def clean_effect(model_name: str, method: str = "floyd-steinberg", *, bayer_size: int = 8, seed: int = 0,
                 device: str | torch.device = "cpu", k: int = 5) -> list[dict]:
    """Halftoning at inference only on the bundled photos: top-k before and after, one dict per photo."""
    from advcore import data, models
    from advcore.device import pick_device
    from advcore.predictions import top_k

    dev = pick_device(device)
    spec = models.get_spec(model_name)
    model = models.load(model_name, dev)
    ht = Halftone(method, bayer_size, seed=seed)
    photos = data.samples()
    x = torch.cat([data.prepare(data.open_image(p.path), spec.input_size) for p in photos]).to(dev)
    h = ht(x)
    with torch.no_grad():
        logits_x, logits_h = model(x), model(h)
    before, after = top_k(logits_x, spec.classes(), k), top_k(logits_h, spec.classes(), k)
    probs = logits_h.softmax(1)
    out = []
    for i, (p, b, a) in enumerate(zip(photos, before, after, strict=True)):
        out.append({"file": p.file, "title": p.title, "clean": b.names[0], "clean_prob": b.probs[0],
                    "halftone": a.names[0], "halftone_prob": a.probs[0], "same_top1": a.labels[0] == b.labels[0],
                    "clean_top1_in_halftone_top5": b.labels[0] in a.labels,
                    "halftone_prob_of_clean_top1": float(probs[i, b.labels[0]])})
    return out
