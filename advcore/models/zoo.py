"""Small trained models: the architectures, parallel MAT's voting module, and the shipped checkpoints.

Every shipped model is a pair of files in ``assets/models/``: ``NAME.pt``, a plain
``state_dict`` (loaded with ``weights_only=True``), and ``NAME.json``, its model card
(data, recipe, strengths, epochs, seed, accuracies, training time, and what is needed to
rebuild the network). :func:`register_shipped` adds each pair to :mod:`advcore.models`'
registry; ``advcore.models`` calls it when it is imported. The networks take pixels
normalised by the card's mean/std; :func:`advcore.models.load` wraps them so that they
take ``[0, 1]`` pixels.

This module imports :mod:`advcore.models` only inside functions: ``advcore.models``
imports this module at its end.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from advcore.errors import AdvlabError
from advcore.files import read_limited, size_text
from advcore.paths import MODELS_DIR

ARCHITECTURES = ("small-cnn", "parallel-mat")


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (32, 64 channels, ReLU, 2x2 max-pool) and two fully connected layers.

    About 422k parameters for 28x28 inputs (the fully connected layer holds most of them).
    No BatchNorm or Dropout: train and eval mode compute the same function.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 width: tuple[int, int] = (32, 64), hidden: int = 128):
        super().__init__()
        if image_size % 4:
            raise ValueError("SmallCNN needs an image size divisible by 4")
        c1, c2 = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ParallelMAT(nn.Module):
    """Parallel MAT (Song et al., Eq. 3-4): S sub-networks combined by learned voting weights.

    ``forward`` returns ``log(sum_k a_k softmax(net_k(x)))``, the log of the weighted vote,
    so ``argmax``, cross-entropy (``log_softmax`` of a log-probability vector is itself)
    and gradient attacks all work on the combined model. ``a = softmax(vote_logits)``:
    the weights are non-negative and sum to 1 by construction.
    """

    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        if not nets:
            raise ValueError("ParallelMAT needs at least one sub-network")
        self.nets = nn.ModuleList(nets)
        self.vote_logits = nn.Parameter(torch.zeros(len(nets)))

    @property
    def weights(self) -> torch.Tensor:
        """The voting weights ``a_k`` (non-negative, summing to 1)."""
        return self.vote_logits.softmax(0)

    def member_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log-softmax outputs of every sub-network, shaped ``(S, N, classes)``."""
        return torch.stack([F.log_softmax(net(x), dim=1) for net in self.nets])

    @staticmethod
    def combine(log_probs: torch.Tensor, vote_logits: torch.Tensor) -> torch.Tensor:
        """``log(sum_k a_k p_k)`` from member log-probabilities ``(S, N, C)`` and vote logits ``(S,)``."""
        log_a = vote_logits.log_softmax(0).view(-1, 1, 1)
        return torch.logsumexp(log_a + log_probs, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.member_log_probs(x), self.vote_logits)


def build_network(arch: dict) -> nn.Module:
    """An untrained network from a card's ``architecture`` entry."""
    kind = arch.get("kind")
    if kind == "small-cnn":
        return SmallCNN(in_channels=int(arch.get("in_channels", 1)), num_classes=int(arch.get("num_classes", 10)),
                        image_size=int(arch.get("image_size", 28)), width=tuple(arch.get("width", (32, 64))),
                        hidden=int(arch.get("hidden", 128)))
    if kind == "parallel-mat":
        member = dict(arch["member"])
        return ParallelMAT([build_network(member) for _ in range(int(arch["members"]))])
    raise AdvlabError(f"Unknown architecture {kind!r}; known: {', '.join(ARCHITECTURES)}.")


def cnn_architecture(input_size: tuple[int, int, int], num_classes: int) -> dict:
    """The card entry describing a :class:`SmallCNN` for ``input_size`` (C, H, W)."""
    c, h, w = input_size
    if h != w:
        raise AdvlabError("SmallCNN needs square images.")
    return {"kind": "small-cnn", "in_channels": c, "num_classes": num_classes, "image_size": h,
            "width": [32, 64], "hidden": 128}


def parallel_architecture(member: dict, members: int) -> dict:
    """The card entry describing a :class:`ParallelMAT` of ``members`` copies of ``member``."""
    return {"kind": "parallel-mat", "members": members, "member": member}


def count_parameters(net: nn.Module) -> int:
    """Number of parameters of ``net``."""
    return sum(p.numel() for p in net.parameters())


# --------------------------------------------------------------------------- cards and checkpoints


MAX_CARD_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 512 << 20
MAX_CLASSES = 10_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _whole(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not low <= value <= high:
        raise AdvlabError(f"{what} must be a whole number from {low} to {high}, got {value!r}.")
    return int(value)


def check_architecture(arch: object, input_size: tuple[int, int, int], num_classes: int, where: str) -> None:
    """Refuse an architecture entry that is not one of :data:`ARCHITECTURES` with sane sizes matching the card."""
    if not isinstance(arch, dict):
        raise AdvlabError(f"{where}: 'architecture' must be an object.")
    kind = arch.get("kind")
    if kind == "parallel-mat":
        _whole(arch.get("members"), f"{where}: architecture 'members'", 1, 16)
        check_architecture(arch.get("member"), input_size, num_classes, where)
        return
    if kind != "small-cnn":
        raise AdvlabError(f"{where}: unknown architecture {kind!r}; known: {', '.join(ARCHITECTURES)}.")
    c, h, _ = input_size
    if _whole(arch.get("in_channels", 1), f"{where}: 'in_channels'", 1, 3) != c:
        raise AdvlabError(f"{where}: the architecture takes {arch.get('in_channels', 1)} channels, the input {c}.")
    if _whole(arch.get("num_classes", 10), f"{where}: 'num_classes'", 2, MAX_CLASSES) != num_classes:
        raise AdvlabError(f"{where}: the network outputs {arch.get('num_classes', 10)} classes but the card names "
                          f"{num_classes} class names.")
    if _whole(arch.get("image_size", 28), f"{where}: 'image_size'", 4, 512) != h:
        raise AdvlabError(f"{where}: the architecture's image size {arch.get('image_size', 28)} is not the "
                          f"input's {h}.")
    width = arch.get("width", [32, 64])
    if not isinstance(width, (list, tuple)) or len(width) != 2:
        raise AdvlabError(f"{where}: 'width' must be two channel counts.")
    for w in width:
        _whole(w, f"{where}: a 'width' entry", 1, 1024)
    _whole(arch.get("hidden", 128), f"{where}: 'hidden'", 1, 8192)


def check_card(card: object, path: Path) -> dict:
    """The card if it is an advlab model card a network can be built from; a one-line AdvlabError otherwise."""
    if not isinstance(card, dict):
        raise AdvlabError(f"{path} is not an advlab model card (it holds a JSON {type(card).__name__}, not an object).")
    missing = [k for k in ("name", "dataset", "input_size", "mean", "std", "classes", "architecture", "weights")
               if k not in card]
    if missing:
        raise AdvlabError(f"{path} is not an advlab model card (missing {', '.join(missing)}).")
    if not isinstance(card["name"], str) or not _NAME.fullmatch(card["name"]):
        raise AdvlabError(f"{path}: 'name' must be letters, digits, '.', '_' or '-' (at most 64).")
    if not isinstance(card["dataset"], str) or not card["dataset"].strip():
        raise AdvlabError(f"{path}: 'dataset' must be a name.")
    size = card["input_size"]
    if not isinstance(size, list) or len(size) != 3:
        raise AdvlabError(f"{path}: 'input_size' must be [channels, height, width].")
    c = _whole(size[0], f"{path}: the input's channels", 1, 3)
    h, w = (_whole(v, f"{path}: the input's height and width", 4, 512) for v in size[1:])
    for key in ("mean", "std"):
        values = card[key]
        if not isinstance(values, list) or len(values) != c or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise AdvlabError(f"{path}: '{key}' must list {c} finite numbers, one per channel.")
    if any(v <= 0 for v in card["std"]):
        raise AdvlabError(f"{path}: every 'std' must be positive.")
    classes = card["classes"]
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES or not all(
            isinstance(n, str) and n.strip() for n in classes) or len(set(classes)) != len(classes):
        raise AdvlabError(f"{path}: 'classes' must list 2 to {MAX_CLASSES} distinct class names.")
    check_architecture(card["architecture"], (c, h, w), len(classes), str(path))
    weights = card["weights"]
    if not isinstance(weights, str) or Path(weights).name != weights or weights in ("", ".", ".."):
        raise AdvlabError(f"{path}: 'weights' must be a file name in the card's own folder, got {weights!r}.")
    file = path.parent / weights
    if file.is_symlink() or not file.is_file():
        raise AdvlabError(f"The checkpoint {weights} named by {path} is missing (it must be a file beside the card).")
    if file.stat().st_size > MAX_WEIGHTS_BYTES:
        raise AdvlabError(f"The checkpoint {file} is larger than {size_text(MAX_WEIGHTS_BYTES)}.")
    return card


def read_card(path: str | Path) -> dict:
    """Read and check a model card JSON (:func:`check_card`); the checkpoint it names must sit beside it."""
    path = Path(path)
    raw = read_limited(path, MAX_CARD_BYTES, f"The model card {path}")
    try:
        card = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise AdvlabError(f"Cannot read the model card {path}: {exc}.") from None
    return check_card(card, path)


def load_network(card: dict, directory: str | Path) -> nn.Module:
    """Build the card's network and load its state dict (``weights_only=True``), in eval mode."""
    net = build_network(card["architecture"])
    weights = Path(directory) / card["weights"]
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, EOFError, ValueError) as exc:
        raise AdvlabError(f"Cannot load the checkpoint {weights}: {str(exc).splitlines()[0]}") from None
    return net.eval()


def spec_from_card(card: dict, directory: str | Path):
    """A :class:`advcore.models.ModelSpec` for a card and the directory holding its checkpoint."""
    from advcore.models.registry import ModelSpec

    classes = list(card["classes"])
    directory = Path(directory)
    return ModelSpec(
        name=card["name"],
        title=card.get("title", card["name"]),
        dataset=card["dataset"],
        input_size=tuple(int(v) for v in card["input_size"]),
        mean=tuple(float(v) for v in card["mean"]),
        std=tuple(float(v) for v in card["std"]),
        build=lambda: load_network(card, directory),
        classes=lambda: list(classes),
        card=card,
        wrap=input_transform(card),
        role=role_of(card),
    )


def role_of(card: dict) -> str:
    """A card's role (:data:`advcore.models.registry.ROLES`): its input transform, else its recipe."""
    transform = (card.get("input_transform") or {}).get("kind")
    if transform in ("halftone", "hybrid"):
        return transform
    recipe = (card.get("recipe") or {}).get("name", "standard")
    return "naive" if recipe == "standard" else str(recipe)


def input_transform(card: dict):
    """What a card's model does to its input before the network, as a wrapper (``None``: nothing).

    Models trained on halftones (``input_transform`` in the card, the Defense lab's halftone and
    hybrid models) halftone every input at inference, with BPDA gradients for attacks, exactly as
    their card's curves were measured.
    """
    transform = card.get("input_transform")
    if not transform:
        return None
    from advcore import defenses

    method = str(transform.get("halftone", "floyd-steinberg"))
    defenses.check_method(method)
    return lambda net: defenses.Defended(net, defenses.Halftone(method))


def register_card(path: str | Path) -> str:
    """Register the model described by a card JSON (e.g. one written by ``train``); returns its name."""
    from advcore.models.registry import register

    path = Path(path)
    card = read_card(path)
    register(spec_from_card(card, path.parent))
    return card["name"]


def load_from_card(path: str | Path, device: str | torch.device = "cpu"):
    """``(spec, model)`` for a card JSON outside the registry: the model as :func:`advcore.models.load` gives
    it (taking [0,1] pixels, eval mode, frozen), but not cached and without touching the registry."""
    from advcore.device import pick_device
    from advcore.models.registry import Normalized

    path = Path(path)
    spec = spec_from_card(read_card(path), path.parent)
    model = Normalized(spec.build(), spec.mean, spec.std)
    model = (spec.wrap(model) if spec.wrap is not None else model).eval()
    model.requires_grad_(False)
    return spec, model.to(pick_device(device))


def shipped_cards(directory: str | Path = MODELS_DIR) -> list[Path]:
    """Card files of the shipped models, in the order of their roles."""
    from advcore.models.registry import ROLES

    order = list(ROLES)

    def key(p: Path) -> tuple[int, str]:
        try:
            role = role_of(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError):
            role = ""
        return (order.index(role) if role in order else len(order), p.stem)

    return sorted(Path(directory).glob("*.json"), key=key)


def register_shipped(directory: str | Path = MODELS_DIR) -> list[str]:
    """Register every checkpoint + card pair in ``directory``; a broken pair is skipped with a warning."""
    names = []
    for path in shipped_cards(directory):
        try:
            names.append(register_card(path))
        except (AdvlabError, KeyError, TypeError, ValueError) as exc:
            warnings.warn(f"advlab: skipped the model card {path.name}: {exc}", stacklevel=2)
    return names
