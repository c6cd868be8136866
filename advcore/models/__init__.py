"""Models: the registry (:mod:`.registry`), ImageNet's EfficientNet-Lite (:mod:`.imagenet`) and the shipped
Fashion-MNIST zoo (:mod:`.zoo`). Importing this package registers both families.

Every model returned by :func:`load` takes ``[0, 1]`` pixels ``(N, C, H, W)`` and returns logits; it is in
eval mode, frozen, and shared by every session of the process.
"""

from __future__ import annotations

from advcore.models import imagenet, zoo
from advcore.models.registry import (
    ROLES,
    SMALL_INPUT,
    ModelSpec,
    Normalized,
    Role,
    class_names,
    get_spec,
    is_small_input,
    load,
    names,
    register,
    roles,
    with_role,
)

__all__ = ["ROLES", "SMALL_INPUT", "ModelSpec", "Normalized", "Role", "class_names", "get_spec", "imagenet_classes",
           "is_small_input", "load", "names", "register", "roles", "with_role"]

imagenet_classes = imagenet.imagenet_classes
imagenet.register_all()
zoo.register_shipped()
