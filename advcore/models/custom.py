"""Your own model: a TorchScript file, or a ``state_dict`` of an architecture advlab knows, plus a model card.

The card (JSON; YAML when PyYAML is installed) says what the network expects and what it answers::

    {"architecture": "small-cnn",          # for a state_dict: one of ARCHITECTURES (or a zoo entry, see below)
     "dataset": "fashion-mnist",           # optional: fashion-mnist, digits, imagenet (gives the class names)
     "input_size": [1, 28, 28],            # channels (1 or 3), height, width
     "mean": [0.2860], "std": [0.3530],    # the normalisation the network was trained with, one per channel
     "classes": ["T-shirt/top", ...],      # needed unless the dataset is known
     "name": "my-cnn", "title": "..."}     # optional (default: the file's stem)

``architecture`` may also be a zoo card's entry (``{"kind": "small-cnn", "width": [32, 64], "hidden": 128}``,
``{"kind": "parallel-mat", ...}``), so a checkpoint written by ``python -m advcore train`` loads with its own
card. A TorchScript file needs no architecture.

Weights are read with ``torch.load(..., weights_only=True)``: a pickle holding anything but tensors and plain
containers (a class instance, a ``__reduce__`` calling ``os.system``) is refused and nothing of it runs. A
TorchScript archive is read with ``torch.jit.load`` (TorchScript code, not Python pickles), on the CPU.
The model is checked on a dummy batch: its output must be ``(N, number of classes)`` and finite.

:func:`load_custom` returns a :class:`~advcore.models.registry.SessionModel` named ``mine:NAME``, which a
Streamlit session or a command line makes visible with :func:`advcore.models.registry.session_scope`; the
process-wide registry is never touched.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from advcore import datasets
from advcore.errors import AdvlabError
from advcore.files import read_limited, size_text
from advcore.models import zoo
from advcore.models.registry import SESSION_PREFIX, ModelSpec, Normalized, SessionModel

#: Architectures a state_dict can be loaded into (built offline, without weights).
ARCHITECTURES = ("small-cnn", "parallel-mat", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
#: Datasets a card may name instead of listing classes: (channels, height, width) or None (any size), classes.
KNOWN_DATASETS = ("fashion-mnist", "digits", "imagenet")
WEIGHT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".zip", ".bin")
CARD_SUFFIXES = (".json", ".yaml", ".yml")
MAX_CARD_BYTES = zoo.MAX_CARD_BYTES
MAX_WEIGHTS_BYTES = zoo.MAX_WEIGHTS_BYTES
MIN_SIDE, MAX_SIDE = 4, 512
MAX_CLASSES = zoo.MAX_CLASSES
TRAINED_FORMAT = "trained in this session"  # the card's "format" of a Training-lab run
CHECK_BATCH = 2  # images in the dummy batch the output shape is checked on
CARD_FIELDS = {"architecture": "str or object", "dataset": "str", "input_size": "[C, H, W]", "mean": "list",
               "std": "list", "classes": "list of str", "name": "str", "title": "str"}
_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Card:
    """A checked model card."""

    name: str
    title: str
    dataset: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    architecture: str | dict | None
    extra: dict  # every other field of the file, kept in the spec's card

    def as_dict(self) -> dict:
        arch = self.architecture
        return {**self.extra, "name": self.name, "title": self.title, "dataset": self.dataset,
                "input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std),
                "classes": list(self.classes), **({} if arch is None else {"architecture": arch})}


def dataset_classes(dataset: str) -> list[str] | None:
    """The class names of a known dataset, or None."""
    if dataset == "fashion-mnist":
        return list(datasets.FASHION_MNIST_CLASSES)
    if dataset == "digits":
        return list(datasets.DIGITS_CLASSES)
    if dataset == "imagenet":
        from advcore.models.imagenet import imagenet_classes

        return list(imagenet_classes())
    return None


def _dataset_size(dataset: str) -> tuple[int, int, int] | None:
    return {"fashion-mnist": (1, 28, 28), "digits": (1, 8, 8)}.get(dataset)


def _whole(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise AdvlabError(f"The card's {what} must be a whole number, got {value!r}.")
    if not low <= value <= high:
        raise AdvlabError(f"The card's {what} must be from {low} to {high}, got {int(value)}.")
    return int(value)


def check_card(obj: object, *, default_name: str = "model", where: str = "the model card") -> Card:
    """A :class:`Card` from a card's parsed content; a one-sentence AdvlabError naming the bad field otherwise."""
    if not isinstance(obj, Mapping):
        raise AdvlabError(f"{where} must be a JSON object with the fields "
                          f"{', '.join(CARD_FIELDS)}, not a {type(obj).__name__}.")
    card = dict(obj)
    for key in ("input_size", "mean", "std"):
        if key not in card:
            raise AdvlabError(f"{where} is missing the field {key!r} ({CARD_FIELDS[key]}).")
    for key in ("dataset", "name", "title"):
        if key in card and (not isinstance(card[key], str) or not card[key].strip()):
            raise AdvlabError(f"{where}: the field {key!r} must be a non-empty text, got {card[key]!r}.")
    size = card["input_size"]
    if not isinstance(size, (list, tuple)) or len(size) != 3:
        raise AdvlabError(f"{where}: 'input_size' must be [channels, height, width], got {size!r}.")
    c = _whole(size[0], "number of channels (input_size[0])", 1, 3)
    if c == 2:
        raise AdvlabError(f"{where}: the input must have 1 (greyscale) or 3 (RGB) channels, not 2.")
    h = _whole(size[1], "input height", MIN_SIDE, MAX_SIDE)
    w = _whole(size[2], "input width", MIN_SIDE, MAX_SIDE)
    for key in ("mean", "std"):
        v = card[key]
        if not isinstance(v, (list, tuple)) or not all(
                isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) for e in v):
            raise AdvlabError(f"{where}: '{key}' must be a list of numbers, one per channel, got {v!r}.")
        if len(v) != c:
            raise AdvlabError(f"{where}: '{key}' has {len(v)} values but the input has {c} channel(s).")
    if any(e <= 0 for e in card["std"]):
        raise AdvlabError(f"{where}: every 'std' must be positive.")
    dataset = str(card.get("dataset", "custom")).strip()
    known = dataset_classes(dataset)
    need = _dataset_size(dataset)
    if need is not None and (c, h, w) != need:
        raise AdvlabError(f"{where}: {dataset} images are {need[0]}x{need[1]}x{need[2]} (C x H x W), but "
                          f"'input_size' is {c}x{h}x{w}.")
    if dataset == "imagenet" and c != 3:
        raise AdvlabError(f"{where}: imagenet models take RGB (3-channel) input, not {c} channel(s).")
    classes = card.get("classes")
    if classes is None:
        if known is None:
            raise AdvlabError(f"{where} is missing the field 'classes' (needed unless 'dataset' is one of "
                              f"{', '.join(KNOWN_DATASETS)}).")
        classes = known
    if not isinstance(classes, (list, tuple)) or not all(isinstance(n, str) and n.strip() for n in classes):
        raise AdvlabError(f"{where}: 'classes' must be a list of class names (texts).")
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise AdvlabError(f"{where}: 'classes' must name 2 to {MAX_CLASSES} classes, got {len(classes)}.")
    if len(set(classes)) != len(classes):
        raise AdvlabError(f"{where}: 'classes' names a class twice.")
    if known is not None and len(classes) != len(known):
        raise AdvlabError(f"{where}: {dataset} has {len(known)} classes but 'classes' names {len(classes)}.")
    arch = card.get("architecture")
    if arch is not None:
        if isinstance(arch, Mapping):
            zoo.check_architecture(dict(arch), (c, h, w), len(classes), where)
            arch = dict(arch)
        elif not isinstance(arch, str) or arch not in ARCHITECTURES:
            raise AdvlabError(f"{where}: unknown 'architecture' {arch!r}; known: {', '.join(ARCHITECTURES)}.")
        elif arch == "parallel-mat":
            raise AdvlabError(f"{where}: 'parallel-mat' needs the zoo entry {{'kind': 'parallel-mat', 'members': "
                              "S, 'member': {...}}} (as 'python -m advcore train' writes it).")
        elif arch == "small-cnn" and (h != w or h % 4):
            raise AdvlabError(f"{where}: small-cnn takes square images with a side divisible by 4, not {h}x{w}.")
        elif arch.startswith("efficientnet") and c != 3:
            raise AdvlabError(f"{where}: {arch} takes RGB (3-channel) input, not {c} channel(s).")
    name = _label(str(card.get("name") or default_name))
    extra = {k: v for k, v in card.items() if k not in CARD_FIELDS}
    return Card(name=name, title=str(card.get("title") or name).strip(), dataset=dataset, input_size=(c, h, w),
                mean=tuple(float(v) for v in card["mean"]), std=tuple(float(v) for v in card["std"]),
                classes=tuple(str(n) for n in classes), architecture=arch, extra=extra)


def _label(text: str) -> str:
    label = _LABEL.sub("-", text).strip("-.")[:48]
    return label or "model"


def parse_card(raw: bytes | str, *, kind: str = "json", default_name: str = "model",
               where: str = "the model card") -> Card:
    """Parse a card's text (``kind`` ``json`` or ``yaml``) and check it (:func:`check_card`)."""
    start, mid = where[:1].upper() + where[1:], where[:1].lower() + where[1:]
    if len(raw) > MAX_CARD_BYTES:
        raise AdvlabError(f"{start} is larger than {size_text(MAX_CARD_BYTES)}.")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if kind == "yaml":
            try:
                import yaml
            except ImportError:
                raise AdvlabError(f"{start} is YAML, which needs PyYAML (pip install pyyaml); give a JSON card "
                                  "instead.") from None
            obj = yaml.safe_load(text)
        else:
            obj = json.loads(text)
    except AdvlabError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, yaml.YAMLError-likes
        raise AdvlabError(f"Cannot read {mid}: {' '.join(str(exc).split())[:200]}.") from None
    except Exception as exc:  # noqa: BLE001 - yaml's own errors (YAMLError is not a ValueError)
        raise AdvlabError(f"Cannot read {mid}: {' '.join(str(exc).split())[:200]}.") from None
    return check_card(obj, default_name=default_name, where=where)


def _card_kind(name: str) -> str:
    return "yaml" if Path(name).suffix.lower() in (".yaml", ".yml") else "json"


def read_card(path: str | Path, *, default_name: str = "model") -> Card:
    """Read and check a card file (JSON, or YAML by its suffix)."""
    path = Path(path)
    raw = read_limited(path, MAX_CARD_BYTES, f"The model card {path}")
    return parse_card(raw, kind=_card_kind(path.name), default_name=default_name, where=f"The model card {path}")


def card_beside(path: str | Path) -> Path | None:
    """The card that goes with a weights file: ``NAME.json`` (or .yaml/.yml) beside it, else ``model.json``."""
    path = Path(path)
    for candidate in [path.with_suffix(s) for s in CARD_SUFFIXES] + [path.parent / f"model{s}" for s in
                                                                      CARD_SUFFIXES]:
        if candidate != path and candidate.is_file():
            return candidate
    return None


def weights_beside(card_path: str | Path) -> Path:
    """The checkpoint a zoo card (as ``python -m advcore train`` writes it) names in its ``weights`` field, beside
    it; the card is checked by :func:`advcore.models.zoo.read_card` first (its fields, the weights' file name)."""
    card_path = Path(card_path)
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raw = None
    if isinstance(raw, dict) and "weights" not in raw:
        raise AdvlabError(f"The model card {card_path} names no weights file ('weights': a file name beside it); "
                          "give the model file to --model and the card to --model-card.")
    card = zoo.read_card(card_path)
    return card_path.parent / card["weights"]


# --------------------------------------------------------------------------- weights


def _build(arch: str | dict, card: Card) -> nn.Module:
    """An untrained network of a known architecture for the card's input and classes (no weights downloaded)."""
    if isinstance(arch, dict):
        return zoo.build_network(arch)
    c, h, _ = card.input_size
    if arch == "small-cnn":
        return zoo.SmallCNN(in_channels=c, num_classes=len(card.classes), image_size=h)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:  # pragma: no cover - depends on the install
        raise AdvlabError(f"{arch} needs the package efficientnet-lite-pytorch (pip install -r "
                          "requirements.txt).") from None
    return EfficientNet.from_name(arch, num_classes=len(card.classes))


def is_torchscript(raw: bytes) -> bool:
    """Whether ``raw`` is a TorchScript archive (a zip holding ``code/`` and ``constants.pkl``), not a
    ``torch.save`` file."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            entries = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any("/code/" in n for n in entries) and any(n.endswith("constants.pkl") for n in entries)


def _state_dict(obj: object, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: a state_dict, or one under 'state_dict' / 'model_state_dict' /
    'model'; a ``module.`` prefix (DataParallel) is dropped."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise AdvlabError(f"{where} is not a state_dict (a mapping of parameter names to tensors); save one with "
                          "torch.save(model.state_dict(), PATH), or a TorchScript file with "
                          "torch.jit.save(torch.jit.script(model), PATH).")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def load_network(raw: bytes, card: Card, *, where: str = "the model file") -> tuple[nn.Module, str]:
    """The bare network of ``raw`` (TorchScript or a state_dict for ``card.architecture``) in eval mode, and its
    format (``"torchscript"`` or ``"state_dict"``)."""
    if len(raw) > MAX_WEIGHTS_BYTES:
        raise AdvlabError(f"{where} is larger than {size_text(MAX_WEIGHTS_BYTES)}.")
    if is_torchscript(raw):
        try:
            net = torch.jit.load(io.BytesIO(raw), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError and others for a bad archive
            raise AdvlabError(f"{where} looks like TorchScript but cannot be loaded: {_first_line(exc)}") from None
        return net.eval(), "torchscript"
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ... for a bad file
        text = str(exc)
        if re.search(r"\bGLOBAL\b|Unsupported global", text):  # a class or function: code would run
            raise AdvlabError(f"{where} was refused: it holds Python objects other than tensors (code would "
                              "run to unpickle them; advlab loads weights with weights_only=True). Save the "
                              "state_dict, or a TorchScript file.") from None
        raise AdvlabError(f"{where} is not a PyTorch model file (neither TorchScript nor a torch.save "
                          f"state_dict): {_first_line(exc)}") from None
    state = _state_dict(obj, where)
    if card.architecture is None:
        raise AdvlabError(f"{where} is a state_dict, so the card must name its 'architecture' (one of "
                          f"{', '.join(ARCHITECTURES)}).")
    net = _build(card.architecture, card)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        arch = card.architecture if isinstance(card.architecture, str) else card.architecture.get("kind")
        detail = " ".join(str(exc).split())
        detail = detail.split(":", 1)[-1].strip() if "Error(s) in loading" in detail else detail
        raise AdvlabError(f"{where} does not fit the architecture {arch} for {len(card.classes)} classes and "
                          f"{'x'.join(map(str, card.input_size))} input: {detail[:300]}") from None
    return net.eval(), "state_dict"


def check_output(model: nn.Module, card: Card, *, where: str = "the model") -> None:
    """Run a dummy batch of mid-grey images: the output must be ``(CHECK_BATCH, classes)`` logits, finite."""
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
    x = torch.full((CHECK_BATCH, *card.input_size), 0.5, device=device)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign model on the card's input size
        raise AdvlabError(f"{where} fails on a batch of {CHECK_BATCH} images of the card's input size "
                          f"{'x'.join(map(str, card.input_size))}: {_first_line(exc)}") from None
    if not isinstance(out, torch.Tensor):
        raise AdvlabError(f"{where} returns a {type(out).__name__}, not a tensor of logits.")
    want = (CHECK_BATCH, len(card.classes))
    if tuple(out.shape) != want:
        raise AdvlabError(f"{where} outputs shape {tuple(out.shape)} for {CHECK_BATCH} images, but the card names "
                          f"{len(card.classes)} classes (expected {want}).")
    if not torch.isfinite(out).all():
        raise AdvlabError(f"{where} outputs non-finite values (NaN or infinity) on a mid-grey image.")


def session_name(label: str, taken: object = ()) -> str:
    """``mine:LABEL``, with ``-2``, ``-3`` ... appended when the name is in ``taken``."""
    base = f"{SESSION_PREFIX}{_label(label)}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def from_network(net: nn.Module, card: Card, *, fmt: str, taken: object = (), wrap=None,
                 role: str = "naive", where: str = "the model") -> SessionModel:
    """A checked :class:`SessionModel` around a bare network that takes the card's normalised input."""
    model = Normalized(net, card.mean, card.std)
    model = (wrap(model) if wrap is not None else model).eval()
    model.requires_grad_(False)
    check_output(model, card, where=where)
    name = session_name(card.name, taken)
    classes = list(card.classes)
    spec = ModelSpec(name=name, title=f"{card.title} (yours)", dataset=card.dataset, input_size=card.input_size,
                     mean=card.mean, std=card.std, build=lambda: net, classes=lambda: list(classes),
                     card={**card.as_dict(), "format": fmt}, wrap=wrap, role=role)
    return SessionModel(spec, model)


def load_custom(weights: bytes | str | Path, card: Card | Mapping | str | Path | None = None, *,
                weights_name: str | None = None, taken: object = ()) -> SessionModel:
    """Load your own model: ``weights`` (bytes, or a file path) with ``card`` (a :class:`Card`, its parsed
    content, or a card file path; None: the card beside the weights file, :func:`card_beside`).

    Returns a checked :class:`SessionModel` named ``mine:NAME`` (not in ``taken``); raises AdvlabError with one
    sentence for every problem (missing card field, wrong type, size out of range, class count mismatch, a file
    that is not a model, a pickle with code).
    """
    if isinstance(weights, (str, Path)):
        path = Path(weights)
        where = f"The model file {path}"
        raw = read_limited(path, MAX_WEIGHTS_BYTES, where)
        stem = path.stem
        if card is None:
            found = card_beside(path)
            if found is None:
                raise AdvlabError(f"{where} has no model card: give one (--model-card) or put {path.stem}.json "
                                  "or model.json beside it.")
            card = found
    else:
        raw = bytes(weights)
        stem = Path(weights_name).stem if weights_name else "model"
        where = f"The model file {weights_name}" if weights_name else "The model file"
        if card is None:
            raise AdvlabError("A model file needs its model card (input size, normalisation, classes).")
    if isinstance(card, (str, Path)):
        card = read_card(card, default_name=stem)
    elif not isinstance(card, Card):
        card = check_card(card, default_name=stem)
    net, fmt = load_network(raw, card, where=where)
    wrap = zoo.input_transform(card.extra) if card.extra.get("input_transform") else None
    role = zoo.role_of(card.extra) if card.extra.get("recipe") or card.extra.get("input_transform") else "naive"
    return from_network(net, card, fmt=fmt, taken=taken, wrap=wrap, role=role, where=where)


def from_trained(name: str, model: nn.Module, card: Mapping, *, taken: object = ()) -> SessionModel:
    """A :class:`SessionModel` for a model trained in this session (``advcore.labs.training.train``'s ``model``,
    which takes [0, 1] pixels, with its card): checked on a dummy batch like an upload."""
    c = check_card({k: v for k, v in card.items() if k != "architecture"}, default_name=name,
                   where=f"The card of {name}")
    c = Card(**{**c.__dict__, "name": _label(name), "architecture": card.get("architecture")})
    model = model.eval()
    model.requires_grad_(False)
    check_output(model, c, where=name)
    full = dict(card)
    classes = list(c.classes)
    title = f"{name}: {card['title']} (this session)" if card.get("title") else f"{name} (this session)"
    spec = ModelSpec(name=session_name(name, taken), title=title,
                     dataset=c.dataset, input_size=c.input_size, mean=c.mean, std=c.std,
                     build=lambda: getattr(model, "net", model), classes=lambda: list(classes),
                     card={**full, "format": TRAINED_FORMAT}, role=zoo.role_of(full))
    return SessionModel(spec, model)
