"""Halftoning as an input-recharacterisation defense (one :class:`~advcore.defenses.base.Defense`).

Huang, Liao and Huang, "Defense Mechanism against Adversarial Attacks Using
Density-Based Representation of Images" (``shared/papers/halftoning-defense-abstract.txt``,
abstract only): convert an image from intensities to a binary, density-based
representation (halftoning) before classifying it, with a model trained on halftone
images or a hybrid model trained on both. The paper attacks the undefended model and
halftones its adversarial examples. An attacker who knows the defense differentiates
through it instead (Athalye et al. 2018): BPDA with the identity backward pass
(``d halftone(x) / dx ~ I``, :class:`~advcore.defenses.base.BPDA`) and, for the randomised
halftone (``bayer-random``: a random offset of the threshold tiling per image and call),
EOT over several draws (:class:`~advcore.defenses.base.EOT`). The Defense lab that measures
both attackers is :mod:`advcore.labs.defense`.

Halftones (all per channel, on pixels in [0, 1], output exactly 0 or 1):

* Error diffusion: scan in raster order; quantise ``q = [v >= 1/2]`` where ``v`` is the pixel
  plus the error pushed to it; push the error ``v - q`` to not-yet-visited neighbours with the
  kernel's weights (which sum to 1, so the mean intensity is preserved up to the border).
  Kernels (:data:`KERNELS`): Floyd and Steinberg, "An adaptive algorithm for spatial greyscale",
  Proc. SID 17(2), 1976 (4 taps /16); Jarvis, Judice and Ninke, "A survey of techniques for the
  display of continuous tone pictures on bilevel displays", Computer Graphics and Image
  Processing 5, 1976 (12 taps /48); Stucki, "MECCA - a multiple-error correction computation
  algorithm for bi-level image hardcopy reproduction", IBM Research report RZ1060, 1981
  (12 taps /42); Atkinson (Bill Atkinson's MacPaint dither, Apple, 1984; no paper: 6 x 1/8, so
  3/4 of the error is diffused). ``floyd-steinberg`` uses Pillow's C implementation on the
  8-bit image; ``floyd-steinberg-numpy`` (the same kernel), ``atkinson``, ``jarvis-judice-ninke``
  and ``stucki`` use :func:`error_diffusion`, vectorised over the batch and along a skewed wavefront.
* Ordered dithering: Bayer, "An optimum method for two-level rendition of continuous-tone
  pictures", IEEE International Conference on Communications, 1973:
  ``q = [x > (M_n + 1/2) / n^2]`` with the recursive Bayer index matrix ``M_n`` tiled over the
  image (:func:`bayer_matrix`). A constant image of intensity ``c`` gets a share
  ``#{k : (k + 1/2)/n^2 < c} / n^2`` of ones. Pure tensor code: it runs on the GPU as well.

A halftone is idempotent: a binary image halftones to itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image

from advcore.defenses.base import Defense, check_images, defense_param, register
from advcore.errors import AdvlabError

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
    if not isinstance(method, str) or method not in METHODS:
        raise AdvlabError(f"Unknown halftone {method!r}; choose one of {', '.join(METHODS)}.")
    return method


def _check_images(x: torch.Tensor) -> None:
    check_images(x, "Halftoning")


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
    if isinstance(n, bool) or not isinstance(n, int) or n not in BAYER_SIZES:
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


# --------------------------------------------------------------------------- the halftone defense


@register
@dataclass
class Halftone(Defense):
    """A halftone: ``Halftone("floyd-steinberg")(x)`` maps (N, C, H, W) in [0, 1] to 0/1 per channel.

    ``method``: one of :data:`METHODS`. ``bayer_size``: n of the Bayer matrix (2, 4, 8 or 16).
    ``seed``: the randomised variant's generator (each call draws new offsets;
    :meth:`reseed` restarts the sequence). BPDA: the identity backward pass.
    """

    name = "halftone"
    title = "halftone"
    reference = ("Huang, Liao and Huang, density-based representation of images (halftoning); Floyd and Steinberg "
                 "1976; Bayer 1973")
    PARAMS = (
        defense_param("method", "choice", "floyd-steinberg", "Which halftone: error diffusion or ordered dithering.",
                      choices=tuple(METHODS), label="Halftone", widget_key="defense_halftone_method"),
        defense_param("bayer_size", "int", 8, "n of the n x n Bayer threshold matrix (ordered dithering only).",
                      low=2, high=16, widget_values=BAYER_SIZES, label="Bayer matrix size",
                      cli_help="n of the n x n Bayer matrix of ordered dithering: 2, 4, 8 or 16"),
    )

    method: str = "floyd-steinberg"
    bayer_size: int = 8

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        """One configuration per method, keyed by the method's name."""
        return {m: {"method": m} for m in METHODS}

    def check_params(self) -> None:
        check_method(self.method)
        super().check_params()
        if self.bayer_size not in BAYER_SIZES:
            raise AdvlabError(f"The halftone's bayer_size must be one of {', '.join(map(str, BAYER_SIZES))}, "
                              f"got {self.bayer_size!r}.")

    def used_params(self):
        """``method``, and ``bayer_size`` for ordered dithering only."""
        return self.PARAMS if self.method.startswith("bayer") else self.PARAMS[:1]

    @property
    def randomized(self) -> bool:
        """Only ``bayer-random`` (a random tiling offset per image and call) is randomised."""
        return self.method == "bayer-random"

    def params(self) -> dict[str, Any]:
        """``method``, plus ``bayer_size`` for ordered dithering and ``seed`` for the random one."""
        out: dict[str, Any] = {"method": self.method}
        if self.method.startswith("bayer"):
            out["bayer_size"] = self.bayer_size
        if self.randomized:
            out["seed"] = self.seed
        return out

    def describe(self) -> dict[str, Any]:
        """The record kept with a measurement (the shipped tables in assets/defense hold this shape)."""
        d: dict[str, Any] = {"name": self.name, "method": self.method, "description": METHODS[self.method],
                             "random": self.randomized}
        return {**d, **self.params()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x)
        if self.method == "floyd-steinberg":
            return floyd_steinberg_pillow(x)
        if self.method == "bayer":
            return ordered_dither(x, self.bayer_size)
        if self.method == "bayer-random":
            off = torch.randint(0, self.bayer_size, (x.shape[0], 2), generator=self.generator)
            return ordered_dither(x, self.bayer_size, offset=off)
        return error_diffusion(x, self.method)


def halftone(x: torch.Tensor, method: str = "floyd-steinberg", **kwargs: Any) -> torch.Tensor:
    """``Halftone(method, **kwargs)(x)``."""
    return Halftone(method, **kwargs)(x)
