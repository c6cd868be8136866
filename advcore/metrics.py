"""Per-image measures of an adversarial example, computed on the tensor.

Every function takes batches ``(N, C, H, W)`` in ``[0, 1]`` and returns one value per
image, shaped ``(N,)``, on the input's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linf(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Largest absolute pixel change, ``||x_adv - x||_inf``."""
    return (x_adv - x).flatten(1).abs().amax(dim=1)


def l2(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Euclidean size of the perturbation, ``||x_adv - x||_2`` (pixels in [0, 1])."""
    return (x_adv - x).flatten(1).norm(p=2, dim=1)


def amp(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """AMP, the mean absolute perturbation per pixel (AGR paper, Sec. 4 and Table 3)."""
    return (x_adv - x).flatten(1).abs().mean(dim=1)


def cosine_similarity(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Cosine of the angle between the clean and adversarial images as vectors (AGR paper Figs. 4, 6)."""
    return F.cosine_similarity(x.flatten(1).double(), x_adv.flatten(1).double(), dim=1, eps=1e-12).to(x.dtype)


def psnr(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(1 / MSE)``; ``inf`` for identical images."""
    mse = (x_adv - x).double().pow(2).flatten(1).mean(dim=1)
    return (10.0 * torch.log10(1.0 / mse)).to(x.dtype)


def _gaussian_window(sigma: float, truncate: float, device, dtype) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    w = torch.exp(-(t * t) / (2 * sigma * sigma))
    return w / w.sum()


def ssim(x: torch.Tensor, x_adv: torch.Tensor, *, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with an 11x11 Gaussian window, sigma 1.5.

    Per channel, averaged over the valid region and the channels (``nan`` for images
    smaller than the 11-pixel window); matches
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``.
    """
    a, b = x.double(), x_adv.double()
    c = a.shape[1]
    g = _gaussian_window(sigma, 3.5, a.device, a.dtype)
    if min(a.shape[2], a.shape[3]) < g.numel():  # smaller than the window: undefined
        return torch.full((a.shape[0],), float("nan"), device=x.device, dtype=x.dtype)
    # One depthwise Gaussian blur of the five maps a, b, a^2, b^2, ab (stacked on the channels).
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    k = stack.shape[1]
    blurred = F.conv2d(F.conv2d(stack, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k),
                       g.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k)
    mu_a, mu_b, e_aa, e_bb, e_ab = blurred.split(c, dim=1)
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov = e_ab - mu_a * mu_b
    c1, c2 = k1 ** 2, k2 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1).to(x.dtype)


def confidence(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Softmax probability of ``label`` for each image."""
    return logits.softmax(dim=1).gather(1, label.long().view(-1, 1))[:, 0]


def image_metrics(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """All perturbation measures at once: linf, l2, amp, cosine_similarity, ssim, psnr."""
    return {
        "linf": linf(x, x_adv),
        "l2": l2(x, x_adv),
        "amp": amp(x, x_adv),
        "cosine_similarity": cosine_similarity(x, x_adv),
        "ssim": ssim(x, x_adv),
        "psnr": psnr(x, x_adv),
    }
