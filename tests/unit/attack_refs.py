"""Shared inputs for the torchattacks reference tests: fmnist-naive on a few correctly classified images."""

from __future__ import annotations

import torch

from advcore import datasets, models


def fmnist_batch(n: int = 6):
    m = models.load("fmnist-naive", "cpu")
    x, y, _ = datasets.eval_set("fashion-mnist", 16)
    x = datasets.to_float(x)
    with torch.no_grad():
        keep = m(x).argmax(1) == y
    return m, x[keep][:n], y[keep][:n]


def fooled(m, a, y) -> torch.Tensor:
    with torch.no_grad():
        return m(a).argmax(1) != y
