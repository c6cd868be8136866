"""Input-preprocessing defenses: JPEG compression, bit-depth reduction, median smoothing, random resize-and-pad.

Each is one registered :class:`~advcore.defenses.base.Defense` with its parameters declared once
(``PARAMS``). Median smoothing and random resize-and-pad are ``differentiable``: their ``forward`` is torch
operations (unfold and a sort; interpolate and pad) whose autograd gradient is the exact (sub)gradient of
the transform, so the adaptive attacker differentiates them exactly, as Athalye, Carlini and Wagner 2018
(Sec. 4) prescribe for a differentiable preprocessing step. JPEG (Pillow) and bit depth (rounding, zero
derivative almost everywhere) are not: the adaptive attacker uses BPDA with the identity backward pass
(``d defense(x) / dx ~ I``, Athalye et al. Sec. 4.1; for rounding the straight-through estimator), the
default of :meth:`~advcore.defenses.base.Defense.estimate_gradient`. The Defense lab records which as the
table's ``bpda``. The randomised one (:class:`RandomResizePad`) draws from its own ``self.generator``, so the
adaptive attacker averages over draws (EOT, Athalye et al. Sec. 4.3): each draw's exact gradient.

* :class:`JPEG`: Dziugaite, Ghahramani and Roy 2016, "A study of the effect of JPG compression on
  adversarial images"; Guo, Rana, Cisse and van der Maaten 2018, "Countering adversarial images using
  input transformations" (Sec. 3, quality 75). Pillow's JPEG encoder and decoder on the 8-bit image
  (deterministic): one grey image per channel, or RGB for three channels (Pillow's default 4:2:0 chroma
  subsampling).
* :class:`BitDepth`: Xu, Evans and Qi 2018, "Feature Squeezing: Detecting Adversarial Examples in Deep
  Neural Networks" (Sec. 3.1): ``x' = round(x (2^i - 1)) / (2^i - 1)`` for ``i`` bits per channel
  (the paper: 1 bit on MNIST, 5 on CIFAR-10, 4 on ImageNet).
* :class:`MedianSmoothing`: Xu et al. 2018 (Sec. 3.2): each pixel replaced by the median of the
  ``k x k`` window around it, per channel, edges mirrored (``scipy.ndimage.median_filter``'s
  ``reflect`` mode; for an even ``k`` the window reaches ``k // 2`` pixels up and left, and the median
  is the upper of the two middle values, as scipy's). The paper: 2 x 2 on MNIST and CIFAR-10, 3 x 3 on
  ImageNet.
* :class:`RandomResizePad`: Xie, Wang, Zhang, Ren and Yuille 2018, "Mitigating adversarial effects
  through randomization" (Sec. 3): resize to a random ``s x s`` with ``s`` in ``[H, H + d]``, pad with
  zeros at a random offset to ``(H + d) x (H + d)`` (the paper: 299 -> [299, 331) -> 331, nearest
  neighbour). Departure: the paper's network takes the 331 x 331 canvas; ours take their own input
  size, so the canvas is resized back to ``H x W`` (bilinear, antialiased). ``enlarge`` is ``d / H``
  (the paper's 32/299 by default).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from advcore.defenses.base import Defense, check_images, defense_param, register


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """The 8-bit pixels of ``x`` (N, C, H, W) in [0, 1]: ``round(255 x)``, as a uint8 array on the CPU."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


# --------------------------------------------------------------------------- JPEG


def jpeg_pillow(x: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """Each image JPEG-encoded by Pillow at ``quality`` and decoded: RGB for 3 channels, else one grey image per
    channel; returns floats ``k / 255`` on ``x``'s device."""
    check_images(x, "JPEG compression")
    u8 = to_uint8(x)
    n, c, h, w = u8.shape
    out = np.empty_like(u8)

    def roundtrip(img: Image.Image) -> np.ndarray:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as dec:
            return np.asarray(dec.convert(img.mode), dtype=np.uint8)

    for i in range(n):
        if c == 3:
            rgb = Image.fromarray(np.ascontiguousarray(u8[i].transpose(1, 2, 0)), "RGB")
            out[i] = roundtrip(rgb).transpose(2, 0, 1)
        else:
            for j in range(c):
                out[i, j] = roundtrip(Image.fromarray(u8[i, j], "L"))
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype) / 255


@register
@dataclass
class JPEG(Defense):
    """JPEG compression at ``quality`` (Pillow, 8-bit; Guo et al. 2018 Sec. 3, Dziugaite et al. 2016)."""

    name = "jpeg"
    title = "JPEG compression"
    reference = ("Dziugaite, Ghahramani and Roy 2016; Guo, Rana, Cisse and van der Maaten 2018, Sec. 3 "
                 "(quality 75)")
    PARAMS = (defense_param("quality", "int", 75, "JPEG quality, 1 (smallest file, most loss) to 95.",
                            low=1, high=95, label="JPEG quality", reference="Guo et al. 2018: 75"),)

    quality: int = 75

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return jpeg_pillow(x, self.quality)


# --------------------------------------------------------------------------- bit depth


def reduce_bit_depth(x: torch.Tensor, bits: int = 4) -> torch.Tensor:
    """``round(x (2^bits - 1)) / (2^bits - 1)`` (Xu et al. 2018, Sec. 3.1), on ``x``'s device."""
    check_images(x, "Bit-depth reduction")
    levels = 2 ** int(bits) - 1
    return torch.round(x.clamp(0, 1) * levels) / levels


@register
@dataclass
class BitDepth(Defense):
    """Bit-depth reduction to ``bits`` bits per channel (feature squeezing, Xu et al. 2018 Sec. 3.1)."""

    name = "bit-depth"
    title = "bit-depth reduction"
    reference = "Xu, Evans and Qi 2018, Feature Squeezing, Sec. 3.1 (1 bit on MNIST, 4 on ImageNet)"
    PARAMS = (defense_param("bits", "int", 4, "Bits per channel kept: 2^bits grey levels (8: 8-bit pixels).",
                            low=1, high=8, label="Bits per channel", reference="Xu et al. 2018 Sec. 3.1"),)

    bits: int = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reduce_bit_depth(x, self.bits)


# --------------------------------------------------------------------------- median smoothing


def _mirror_pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Pad ``x`` along ``dim`` by mirroring with the edge repeated (numpy 'symmetric', scipy 'reflect')."""
    parts = []
    n = x.shape[dim]
    if before:
        idx = torch.arange(before - 1, -1, -1, device=x.device) % (2 * n)
        idx = torch.where(idx < n, idx, 2 * n - 1 - idx)
        parts.append(x.index_select(dim, idx))
    parts.append(x)
    if after:
        idx = (n - 1 - torch.arange(after, device=x.device)) % (2 * n)
        idx = torch.where(idx < n, idx, 2 * n - 1 - idx)
        parts.append(x.index_select(dim, idx.clamp(0, n - 1)))
    return torch.cat(parts, dim)


def median_smooth(x: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Median of each ``window x window`` neighbourhood, per channel, edges mirrored; the same numbers as
    ``scipy.ndimage.median_filter(img, size=window, mode="reflect")`` on each channel (Xu et al. 2018 Sec. 3.2).

    Differentiable: each output pixel is one input pixel (the window's median), so autograd's gradient is the
    exact subgradient, one where that pixel was picked (a tie: the one the sort picked) and zero elsewhere."""
    check_images(x, "Median smoothing")
    k = int(window)
    n, c, h, w = x.shape
    before, after = k // 2, (k - 1) // 2
    p = _mirror_pad(_mirror_pad(x, before, after, 2), before, after, 3)
    patches = p.unfold(2, k, 1).unfold(3, k, 1).reshape(n, c, h, w, k * k)
    return patches.sort(dim=-1).values[..., (k * k) // 2]


@register
@dataclass
class MedianSmoothing(Defense):
    """Median smoothing over a ``window x window`` neighbourhood (feature squeezing, Xu et al. 2018 Sec. 3.2)."""

    name = "median"
    title = "median smoothing"
    reference = "Xu, Evans and Qi 2018, Feature Squeezing, Sec. 3.2 (2 x 2 on MNIST and CIFAR-10, 3 x 3 on ImageNet)"
    PARAMS = (defense_param("window", "int", 2, "Side of the square window, in pixels.", low=2, high=11,
                            label="Median window (pixels)", unit="pixel", reference="Xu et al. 2018 Sec. 3.2"),)

    window: int = 2
    differentiable = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return median_smooth(x, self.window)


# --------------------------------------------------------------------------- random resize and pad

INTERPOLATIONS = ("nearest", "bilinear")


def resize_pad(x: torch.Tensor, sizes: torch.Tensor, offsets: torch.Tensor, canvas: int,
               interpolation: str = "nearest") -> torch.Tensor:
    """Image ``i`` resized to ``sizes[i]`` squared, pasted into a zero ``canvas x canvas`` at ``offsets[i]``
    (top, left), then the canvas resized back to ``x``'s own height and width (bilinear, antialiased).
    Differentiable: each step is linear in ``x`` for the given draws (the final clamp is inactive on [0, 1]
    input), so autograd gives the exact gradient of this draw."""
    n, c, h, w = x.shape
    out = []
    for i in range(n):
        s, top, left = int(sizes[i]), int(offsets[i, 0]), int(offsets[i, 1])
        kw = {} if interpolation == "nearest" else {"align_corners": False}
        r = F.interpolate(x[i:i + 1], size=(s, s), mode=interpolation, **kw)
        r = F.pad(r, (left, canvas - s - left, top, canvas - s - top))
        out.append(F.interpolate(r, size=(h, w), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out).clamp(0, 1)


@register
@dataclass
class RandomResizePad(Defense):
    """Random resize to ``[H, H + d]`` and random zero padding to ``H + d`` (Xie et al. 2018 Sec. 3), resized
    back to the model's input; ``d = round(enlarge * H)``. Randomised: each call draws new sizes and offsets
    from ``self.generator``."""

    name = "resize-pad"
    title = "random resize and pad"
    reference = "Xie, Wang, Zhang, Ren and Yuille 2018, Mitigating adversarial effects through randomization, Sec. 3"
    PARAMS = (
        defense_param("enlarge", "float", 32 / 299, "Largest enlargement d / H: the image is resized to a random "
                      "side in [H, H + d], then zero-padded to H + d.", low=0, high=1, low_open=True,
                      widget_range=(0.01, 1.0), widget_step=0.01, label="Largest enlargement d / H",
                      reference="Xie et al. 2018: 299 -> [299, 331), d / H = 32/299"),
        defense_param("interpolation", "choice", "nearest", "How the image is resized to its random size.",
                      choices=INTERPOLATIONS, label="Resize", reference="Xie et al.'s code: nearest neighbour"),
    )

    enlarge: float = 32 / 299
    interpolation: str = "nearest"
    differentiable = True

    @property
    def randomized(self) -> bool:
        return True

    def extra(self, h: int) -> int:
        """``d`` for an image of height ``h``: at least one pixel."""
        return max(1, round(self.enlarge * h))

    def draw(self, n: int, h: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random sides in [h, h + d] and (top, left) offsets of each in the (h + d)-pixel canvas."""
        d = self.extra(h)
        sizes = torch.randint(h, h + d + 1, (n,), generator=self.generator)
        u = torch.rand(n, 2, generator=self.generator)
        offsets = (u * (h + d - sizes + 1)[:, None]).floor().long()
        return sizes, offsets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, "Random resize and pad")
        n, _, h, _ = x.shape
        sizes, offsets = self.draw(n, h)
        return resize_pad(x, sizes, offsets, h + self.extra(h), self.interpolation)
