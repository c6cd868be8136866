"""Activations of a named layer: the ``phi`` of the geometry probes and the feature extractor ``f`` of the
poisoning attacks.

A layer is named by its module path in ``model.named_modules()`` (``"net.features.3"``), or by
:data:`PENULTIMATE`, the input of the model's last ``nn.Linear`` (the representation the final
classifier reads: 128 values for the Fashion-MNIST CNNs, 1280 for EfficientNet-Lite). The forward
pass stops as soon as the layer has been seen, so early layers cost only what precedes them, and
the activations keep their autograd graph, so they can be differentiated with respect to the input.

The shared, cached model is never touched: no hook is registered on it. Each read runs a private copy
of the module tree along the path to the layer (shallow copies that share the weights, a few
microseconds) in which the layer is wrapped by a tap that records its input or output. So any number
of sessions may read features, attack and evaluate the same model at once (the hooks used before
fired in every thread's forward pass and handed one session another's activations).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from advcore.errors import AdvlabError

PENULTIMATE = "penultimate"


class _Captured(Exception):
    """Raised by the tap to end the forward pass once the layer's activation is captured."""


class _Tap(nn.Module):
    """Wraps a layer: records its input (``take_input``) or output in ``sink``; ends the pass if ``stop``."""

    def __init__(self, inner: nn.Module, sink: list, *, take_input: bool, stop: bool):
        super().__init__()
        self.inner, self.sink, self.take_input, self.stop = inner, sink, take_input, stop

    def forward(self, *args, **kwargs):
        if self.take_input:
            self.sink.append(args[0])
            if self.stop:
                raise _Captured
            return self.inner(*args, **kwargs)
        out = self.inner(*args, **kwargs)
        self.sink.append(out)
        if self.stop:
            raise _Captured
        return out


def _replaced(root: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """A shallow copy of ``root`` in which the submodule at ``path`` is ``new``; ``root`` is left unchanged.

    Only the modules on the path are copied (their other children, parameters and buffers are shared).
    """
    head, _, rest = path.partition(".")
    clone = copy.copy(root)
    clone._modules = root._modules.copy()
    clone._modules[head] = new if not rest else _replaced(root._modules[head], rest, new)
    return clone


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise AdvlabError("This model has no fully connected layer, so it has no penultimate layer; name a layer.")
    return linears[-1]


def layer_names(model: nn.Module) -> list[str]:
    """The layers a person can pick: :data:`PENULTIMATE` first, then every module that is called in
    the forward pass as one step of a container (``Sequential`` items, blocks of a ``ModuleList``,
    the network's own stages), in registration order. Containers that are never called themselves
    (``ModuleList``) and padding helpers are left out."""
    names = [PENULTIMATE]
    for name, module in model.named_modules():
        if not name or isinstance(module, nn.ModuleList) or name.endswith("static_padding"):
            continue
        if name.count(".") > 2 and not isinstance(module, nn.Sequential):
            continue  # inside a block: too fine-grained to be worth a choice
        names.append(name)
    return names


def check_layer(model: nn.Module, layer: str | None) -> str:
    """``layer`` if the model has it (``None`` means :data:`PENULTIMATE`); a clear error otherwise."""
    layer = PENULTIMATE if layer in (None, "") else str(layer)
    if any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):  # your own model, as TorchScript
        raise AdvlabError("This model is a TorchScript file, whose compiled forward pass cannot be tapped at a "
                          "layer; load a state_dict of its architecture for the layer probes.")
    if layer == PENULTIMATE:
        _last_linear(model)
        return layer
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        choices = ", ".join(layer_names(model)[:12])
        raise AdvlabError(f"The model has no layer named {layer!r}; try one of: {choices}, ...")
    if isinstance(modules[layer], nn.ModuleList):
        raise AdvlabError(f"{layer!r} is a list of blocks, not a layer that is called; pick one of its blocks.")
    return layer


def _capture(model: nn.Module, x: torch.Tensor, layer: str | None, *, stop: bool) -> tuple[torch.Tensor | None,
                                                                                           torch.Tensor]:
    """Run ``model(x)`` with a tap on ``layer``: ``(logits or None when stopped early, activation (N, D))``."""
    layer = check_layer(model, layer)
    path = _last_linear(model)[0] if layer == PENULTIMATE else layer
    module = dict(model.named_modules())[path]
    captured: list[torch.Tensor] = []
    tapped = _replaced(model, path, _Tap(module, captured, take_input=layer == PENULTIMATE, stop=stop))
    logits = None
    try:
        logits = tapped(x)
    except _Captured:
        pass
    if not captured:
        raise AdvlabError(f"Layer {layer!r} was not reached by the forward pass.")
    out = captured[0]
    if not isinstance(out, torch.Tensor):
        raise AdvlabError(f"Layer {layer!r} does not output a single tensor.")
    return logits, out.reshape(out.shape[0], -1)


def activations(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """The activation of ``layer`` for the batch ``x``, flattened to ``(N, D)``; the pass stops there.

    Gradients flow through it when ``x`` requires them (as for a poison frog's feature collision);
    wrap the call in ``torch.no_grad()`` otherwise.
    """
    return _capture(model, x, layer, stop=True)[1]


def logits_and_activations(model: nn.Module, x: torch.Tensor,
                           layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of ``x`` and the ``(N, D)`` activation of ``layer``, from one whole forward pass."""
    logits, act = _capture(model, x, layer, stop=False)
    assert logits is not None
    return logits, act


def batched_activations(model: nn.Module, x: torch.Tensor, layer: str | None = None, *,
                        batch_size: int = 256) -> Iterator[torch.Tensor]:
    """:func:`activations` of ``x`` in chunks of ``batch_size`` without gradients (for large sets)."""
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            yield activations(model, x[start:start + batch_size], layer)


def extract(model: nn.Module, x: torch.Tensor, layer: str | None = None, *, batch_size: int = 256) -> torch.Tensor:
    """All of ``x``'s activations at ``layer`` as one ``(N, D)`` tensor, computed without gradients."""
    if x.shape[0] == 0:
        raise AdvlabError("No images to extract features from.")
    return torch.cat(list(batched_activations(model, x, layer, batch_size=batch_size)))
