"""Perturbation measures against references and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from advcore import metrics


def pair(seed: int = 0, n: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g, dtype=torch.float64)
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, x_adv


def test_ssim_matches_scikit_image():
    x, x_adv = pair()
    ours = metrics.ssim(x, x_adv)
    for i in range(x.shape[0]):
        ref = structural_similarity(
            x[i].numpy(), x_adv[i].numpy(), channel_axis=0, data_range=1.0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-9)


def test_ssim_of_identical_images_is_one_and_tiny_images_are_nan():
    x, _ = pair()
    torch.testing.assert_close(metrics.ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert torch.isnan(metrics.ssim(torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8))).all()


def test_psnr_matches_scikit_image_and_is_infinite_for_no_change():
    x, x_adv = pair(1)
    for i in range(x.shape[0]):
        ref = peak_signal_noise_ratio(x[i].numpy(), x_adv[i].numpy(), data_range=1.0)
        assert metrics.psnr(x, x_adv)[i].item() == pytest.approx(ref, rel=1e-12)
    assert math.isinf(metrics.psnr(x, x)[0].item())


def test_norms_amp_and_cosine_on_a_known_perturbation():
    x = torch.full((2, 3, 4, 4), 0.5, dtype=torch.float64)
    delta = torch.zeros_like(x)
    delta[0, 0, 0, 0] = 0.3  # one pixel
    delta[1] = -0.1  # every pixel
    x_adv = x + delta
    torch.testing.assert_close(metrics.linf(x, x_adv), torch.tensor([0.3, 0.1], dtype=torch.float64))
    torch.testing.assert_close(metrics.l2(x, x_adv), torch.tensor([0.3, 0.1 * math.sqrt(48)], dtype=torch.float64))
    torch.testing.assert_close(metrics.amp(x, x_adv), torch.tensor([0.3 / 48, 0.1], dtype=torch.float64))
    # cos(x, x + d) for a uniform image and uniform d is exactly 1 (same direction).
    assert metrics.cosine_similarity(x, x_adv)[1].item() == pytest.approx(1.0, abs=1e-12)
    a, b = x[0].flatten().numpy(), x_adv[0].flatten().numpy()
    expected = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert metrics.cosine_similarity(x, x_adv)[0].item() == pytest.approx(expected, abs=1e-12)


def test_image_metrics_has_every_measure_per_image():
    x, x_adv = pair(2, n=4)
    m = metrics.image_metrics(x, x_adv)
    assert set(m) == {"linf", "l2", "amp", "cosine_similarity", "ssim", "psnr"}
    assert all(v.shape == (4,) for v in m.values())
