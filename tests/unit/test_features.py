"""advcore.features: named-layer activations read with forward hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advcore import features, models
from advcore.errors import AdvlabError


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))


def test_penultimate_is_the_input_of_the_last_linear_layer() -> None:
    net = _mlp()
    x = torch.rand(4, 1, 3, 4)
    expected = net[2](net[1](net[0](x)))
    assert torch.equal(features.activations(net, x), expected)
    assert torch.equal(features.activations(net, x, "1"), net[1](net[0](x)))


def test_activations_keep_the_graph_and_hooks_are_removed() -> None:
    net = _mlp()
    x = torch.rand(2, 1, 3, 4, requires_grad=True)
    features.activations(net, x, "penultimate").sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert net(x).shape == (2, 3)  # the model still runs to the end


def test_extract_batches_match_one_pass() -> None:
    net = _mlp()
    x = torch.rand(10, 1, 3, 4)
    whole = features.extract(net, x, batch_size=3)
    with torch.no_grad():
        assert torch.allclose(whole, features.activations(net, x))
    assert not whole.requires_grad


def test_unknown_layer_is_a_clear_error() -> None:
    with pytest.raises(AdvlabError, match="no layer named"):
        features.activations(_mlp(), torch.rand(1, 12), "nope")
    with pytest.raises(AdvlabError, match="no fully connected layer"):
        features.activations(nn.Sequential(nn.Conv2d(1, 1, 1)), torch.rand(1, 1, 2, 2))


def test_shipped_fashion_mnist_model_layers() -> None:
    model = models.load("fmnist-naive", device="cpu")
    names = features.layer_names(model)
    assert names[0] == features.PENULTIMATE and "net.features.3" in names
    with torch.no_grad():
        assert features.activations(model, torch.rand(3, 1, 28, 28)).shape == (3, 128)
        assert features.activations(model, torch.rand(3, 1, 28, 28), "net.features.2").shape == (3, 32 * 14 * 14)


def test_logits_and_activations_come_from_one_whole_pass() -> None:
    net = _mlp()
    x = torch.rand(4, 1, 3, 4)
    logits, act = features.logits_and_activations(net, x, "penultimate")
    assert torch.equal(logits, net(x)) and torch.equal(act, features.activations(net, x))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
