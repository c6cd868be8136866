"""The model registry: name -> loader, dataset, input size, normalisation, model card.

Every model returned by :func:`load` takes a batch ``(N, C, H, W)`` of pixels in
``[0, 1]`` and returns logits: normalisation lives inside the model, so attacks
and metrics work in pixel space. Loaded models are in eval mode, their weights do
not require gradients, and they are cached per process (one copy shared by every
Streamlit session and thread; nothing in advcore ever mutates them).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

import torch
from torch import nn

from advcore.device import pick_device
from advcore.errors import AdvlabError


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
class Role:
    """What a model is for in the labs: how it was trained, and whether it is meant to resist attacks."""

    name: str
    title: str
    robust: bool


#: The roles of the zoo, in the order the labs list them. A card's recipe and input transform give its role.
ROLES: dict[str, Role] = {r.name: r for r in (
    Role("naive", "standard training (clean images only)", robust=False),
    Role("fgsm", "adversarial training, FGSM examples", robust=True),
    Role("pgd", "adversarial training, PGD examples", robust=True),
    Role("mat-mixed", "mixed multi-strength adversarial training (MAT)", robust=True),
    Role("mat-parallel", "parallel multi-strength adversarial training (MAT)", robust=True),
    Role("halftone", "trained on halftones, halftones its input (Defense lab)", robust=False),
    Role("hybrid", "trained on intensity + halftone images, halftones its input (Defense lab)", robust=False),
)}


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
    role: str = "naive"  # a key of ROLES

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise AdvlabError(f"Unknown model role {self.role!r}; known: {', '.join(ROLES)}.")

    @property
    def num_classes(self) -> int:
        return len(self.classes())

    @property
    def small(self) -> bool:
        """Whether the input is below :data:`SMALL_INPUT` pixels a side (see :func:`is_small_input`)."""
        return is_small_input(self)


SMALL_INPUT = 64  # model inputs below this many pixels a side (Fashion-MNIST 28x28, digits 8x8) are "small"


def is_small_input(spec_or_size: ModelSpec | tuple[int, ...] | int) -> bool:
    """Whether a model's input is small (below :data:`SMALL_INPUT` pixels a side): pages show such images
    enlarged with sharp pixels. Takes a :class:`ModelSpec`, a size ``(C, H, W)``
    or ``(H, W)``, or one side."""
    if isinstance(spec_or_size, ModelSpec):
        spec_or_size = spec_or_size.input_size
    if isinstance(spec_or_size, int):
        return spec_or_size < SMALL_INPUT
    return max(spec_or_size[-2:]) < SMALL_INPUT


_REGISTRY: dict[str, ModelSpec] = {}


#: Session models' names start with this; a registered (shipped) name never contains it.
SESSION_PREFIX = "mine:"


def register(spec: ModelSpec) -> None:
    """Add a model to the registry (a later registration of a name replaces it)."""
    if SESSION_PREFIX in spec.name:
        raise AdvlabError(f"{spec.name!r}: names holding {SESSION_PREFIX!r} are kept for session models.")
    _REGISTRY[spec.name] = spec


_SESSION_MODEL_IDS = itertools.count(1)  # SessionModel.uid: next() on a count is atomic under the GIL


@dataclass
class SessionModel:
    """A model of one session only (an upload, a Training-lab run): its spec and the ``[0, 1]``-pixel model,
    frozen and in eval mode. :func:`load` hands out one copy per device (the original stays where it is)."""

    spec: ModelSpec
    model: nn.Module = field(repr=False)
    copies: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    #: unique in the process (never reused), so a shared result can name the very model it was computed with
    uid: int = field(default_factory=lambda: next(_SESSION_MODEL_IDS), compare=False)

    def on(self, device: torch.device) -> nn.Module:
        """The model on ``device`` (a deep copy made once per device, unless it is already there)."""
        key = str(device)
        if key not in self.copies:
            here = next((t.device for t in [*self.model.parameters(), *self.model.buffers()]), torch.device("cpu"))
            self.copies[key] = self.model if str(here) == key else copy.deepcopy(self.model).to(device)
        return self.copies[key]


# The models of the session this code runs for (one Streamlit script run, one command line): a context
# variable, so each thread sees its own session's and the process-wide registry is never changed.
_SESSION: ContextVar[Mapping[str, SessionModel] | None] = ContextVar("advlab_session_models", default=None)


def use_session(models: Mapping[str, SessionModel] | None) -> Token:
    """Make ``models`` the session models of the current context (thread); returns the token to undo it."""
    return _SESSION.set(models)


def end_session(token: Token) -> None:
    """Undo :func:`use_session`."""
    _SESSION.reset(token)


@contextlib.contextmanager
def session_scope(models: Mapping[str, SessionModel] | None) -> Iterator[None]:
    """``with session_scope(d):`` the names of ``d`` resolve (:func:`names`, :func:`get_spec`, :func:`load`)."""
    token = use_session(models)
    try:
        yield
    finally:
        end_session(token)


def session_models() -> Mapping[str, SessionModel]:
    """The current context's session models (empty outside a session)."""
    return _SESSION.get() or {}


def is_session_model(name: str) -> bool:
    """Whether ``name`` is one of the current session's models."""
    return name in session_models()


def names() -> list[str]:
    """Registered model names, in registration order, then the current session's models."""
    return [*_REGISTRY, *(n for n in session_models() if n not in _REGISTRY)]


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered or session model; an unknown name gets a helpful error."""
    mine = session_models().get(name)
    if mine is not None:
        return mine.spec
    if str(name).startswith(SESSION_PREFIX):
        raise AdvlabError(f"{name} is one of an app session's own models, which only that session knows; on the "
                          "command line give its file instead: --model PATH (with --model-card CARD).")
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise AdvlabError(
            f"Unknown model {name!r}.{hint} Known models: {', '.join(names())}."
        ) from None


def with_role(dataset: str, role: str) -> str | None:
    """The first registered model of ``dataset`` with ``role`` (e.g. the naive Fashion-MNIST model), or None."""
    return next((n for n, s in _REGISTRY.items() if s.dataset == dataset and s.role == role), None)


def roles(dataset: str) -> dict[str, str]:
    """Role -> model name for the registered models of ``dataset`` (the first of each role), in ROLES order."""
    found = {role: with_role(dataset, role) for role in ROLES}
    return {role: name for role, name in found.items() if name is not None}


def class_names(name: str) -> list[str]:
    """Class names of a model's dataset, index = class id."""
    return get_spec(name).classes()


_cache: dict[tuple[str, str], nn.Module] = {}
_cache_lock = threading.Lock()


def load(name: str, device: str | torch.device | None = "auto") -> nn.Module:
    """Load a registered model once per (name, device); eval mode, frozen weights.

    The returned module is shared: callers must not train it or change its
    ``requires_grad`` flags. Attacks only take gradients with respect to inputs.
    A session model (:class:`SessionModel`) comes from its session, never from the process cache.
    """
    dev = pick_device(device)
    mine = session_models().get(name)
    if mine is not None:
        return mine.on(dev)
    spec = get_spec(name)
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
