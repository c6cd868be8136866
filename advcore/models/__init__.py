"""Models: the registry (:mod:`.registry`), ImageNet's EfficientNet-Lite (:mod:`.imagenet`) and the shipped
Fashion-MNIST zoo (:mod:`.zoo`). Importing this package registers both families. Your own models
(:mod:`.custom`) are session models: visible only inside :func:`session_scope`, never registered.

Every model returned by :func:`load` takes ``[0, 1]`` pixels ``(N, C, H, W)`` and returns logits; it is in
eval mode, frozen, and shared by every session of the process.
"""

from __future__ import annotations

from advcore.models import imagenet, zoo
from advcore.models.registry import (
    ROLES,
    SESSION_PREFIX,
    SMALL_INPUT,
    ModelSpec,
    Normalized,
    Role,
    SessionModel,
    class_names,
    get_spec,
    is_session_model,
    is_small_input,
    load,
    names,
    register,
    roles,
    session_models,
    session_scope,
    use_session,
    with_role,
)

__all__ = ["ROLES", "SESSION_PREFIX", "SMALL_INPUT", "ModelSpec", "Normalized", "Role", "SessionModel",
           "class_names", "get_spec", "imagenet_classes", "is_session_model", "is_small_input", "load", "names",
           "register", "roles", "session_models", "session_scope", "use_session", "with_role"]

imagenet_classes = imagenet.imagenet_classes
imagenet.register_all()
zoo.register_shipped()
