"""One process serves many sessions: concurrent work on one shared, cached model equals a sequential run.

Streamlit runs each session's script in its own thread, all on the same cached model objects. Here
several threads at once run attacks, read a layer's activations (the Geometry and Poisoning labs) and
probe the local geometry, and every result must equal the same work done alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch

from advcore import attacks, datasets, features, models
from advcore.labs import geometry

MODEL = "fmnist-naive"
ROUNDS = 6


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    x, _ = datasets.load_subset()
    return datasets.to_float(x[:16])


def jobs(x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """Named pieces of work, each returning one tensor that must not depend on what else runs."""
    model = models.load(MODEL, "cpu")

    def attack() -> torch.Tensor:
        return attacks.pgd(model, x, eps=0.1, steps=5, seed=3).x_adv

    def penultimate() -> torch.Tensor:
        with torch.no_grad():
            return features.activations(model, x)

    def conv_layer() -> torch.Tensor:
        with torch.no_grad():
            return features.logits_and_activations(model, x[:4], "net.features.3")[1]

    def feature_gradient() -> torch.Tensor:  # what a poison frog's feature collision differentiates
        xi = x[:4].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(features.activations(model, xi).square().sum(), xi)
        return g

    def geometry_probe() -> torch.Tensor:
        rep = geometry.analyse(model, x[:1], radii=[0.02, 0.05], T=12, probes=("isotropy", "mantel"),
                               layer="penultimate", seed=5, permutations=49)
        r = torch.tensor([t.r for t in rep.topology.tests], dtype=torch.float64)
        return torch.cat([rep.isotropy.scores.flatten(), rep.topology.d_layer.flatten(), r])

    def clean_logits() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return {"attack": attack, "penultimate": penultimate, "conv_layer": conv_layer,
            "feature_gradient": feature_gradient, "geometry": geometry_probe, "logits": clean_logits}


def test_concurrent_sessions_equal_a_sequential_run(batch):
    work = jobs(batch)
    expected = {name: fn() for name, fn in work.items()}
    failures: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def session(name: str) -> None:
        try:
            start.wait()
            for i in range(ROUNDS):
                got = work[name]()
                if not torch.allclose(got, expected[name], rtol=0, atol=1e-6):
                    failures.append(f"{name} round {i}")
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(name,)) for name in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert not failures, failures
    # The shared model carries no hooks and is still frozen and in eval mode.
    model = models.load(MODEL, "cpu")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_a_feature_read_does_not_change_the_shared_model(batch):
    model = models.load(MODEL, "cpu")
    before = [(name, type(m)) for name, m in model.named_modules()]
    with torch.no_grad():
        features.activations(model, batch, "net.features.0")
    assert [(name, type(m)) for name, m in model.named_modules()] == before
