"""What every input-transform defense is, and the two ways an attacker who knows it gets a gradient through it.

A :class:`Defense` maps a batch of pixels ``x`` (N, C, H, W) in [0, 1] to ``x'`` of the same
shape in [0, 1] before the classifier sees it (in the style of ART's ``Preprocessor``):

* :meth:`Defense.forward` is the transform itself; it needs no gradient (it may be
  non-differentiable, as a halftone is).
* ``differentiable``: whether :meth:`Defense.forward` is built from torch operations whose autograd
  gradient is the transform's exact (sub)gradient (median smoothing, random resize-and-pad). The
  adaptive attacker then attacks through that exact gradient, as Athalye, Carlini and Wagner 2018
  ("Obfuscated Gradients Give a False Sense of Security", Sec. 4) prescribe wherever a preprocessing
  step is differentiable; :meth:`Defense.differentiate` is that one choice.
* :meth:`Defense.estimate_gradient` is the backward pass for BPDA (Athalye et al. Sec. 4.1), used
  where the defense is not differentiable (a halftone, JPEG, rounding): the identity by default,
  i.e. the gradient of the surrogate ``g(x) = x``, as AdverTorch's ``BPDAWrapper``.
* ``randomized``: two calls on the same image may differ; an attacker then uses EOT
  (expectation over transformation, :class:`EOT`). The randomness comes from the defense's own
  ``torch.Generator`` seeded by ``seed`` (:meth:`Defense.reseed`), never from torch's global RNG.
* ``PARAMS`` declares its parameters once, as :class:`~advcore.attacks.params.Param` values (type,
  default, range, help, paper reference), one per dataclass field; the command line's flags
  (``advcore.cli.defense``) and the Defense page's widgets (``ui.widgets.param_widgets``) are
  generated from them. :meth:`Defense.params` lists the values (for records and command lines)
  and :meth:`Defense.check_params` refuses a bad one with an :class:`~advcore.errors.AdvlabError`.

:class:`Defended` puts a defense in front of any model, so attacks, training code and metrics
treat ``model(defense(x))`` like any model on [0, 1] pixels.

A new defense is one module in this package that subclasses :class:`Defense` as a dataclass
and registers itself with :func:`register`; ``advcore/defenses/__init__.py`` imports it.
Nothing here imports the model registry or the labs (they import this).
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

import torch
from torch import nn

from advcore.attacks.params import Param
from advcore.errors import AdvlabError

D = TypeVar("D", bound="Defense")


def defense_param(name: str, kind: str, default: object, help: str, **kw: Any) -> Param:
    """A defense's :class:`Param`: its widget key is ``defense_<name>`` (the page's), its URL parameter ``name``."""
    return Param(name, kind, default, help, **{"widget_key": f"defense_{name}", **kw})


def check_images(x: object, what: str = "A defense") -> None:
    """Refuse anything but a float batch (N, C, H, W)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise AdvlabError(f"{what} takes a batch of images shaped (N, C, H, W).")
    if not torch.is_floating_point(x):
        raise AdvlabError(f"{what} takes float pixels in [0, 1].")


@dataclass
class Defense(ABC):
    """An input-transform defense on [0, 1] pixel batches (N, C, H, W); subclasses are dataclasses.

    Subclasses set ``name`` (the registry key) and ``title`` (a few words for people), declare
    their parameters as dataclass fields, implement :meth:`forward`, and extend
    :meth:`check_params`; randomised ones override ``randomized`` and draw from ``self.generator``.
    ``seed`` (keyword only) seeds that generator.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: The declared parameters, one per dataclass field (``seed`` aside), in the order of the widgets.
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    #: Where the defense comes from (paper, section), for records and the page.
    reference: ClassVar[str] = ""
    #: What :meth:`estimate_gradient` computes, in words (for records).
    gradient_estimate: ClassVar[str] = "identity"
    #: Whether :meth:`forward` is differentiable by autograd with the transform's exact (sub)gradient, random
    #: draws included (from ``self.generator``, as any call); the adaptive attacker then uses it instead of BPDA.
    differentiable: ClassVar[bool] = False

    seed: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        self.check_params()
        self.reseed()

    # ------------------------------------------------------------------ the contract

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed batch: same shape, dtype and device as ``x``, values in [0, 1]."""

    def estimate_gradient(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """BPDA: the gradient with respect to ``x`` given the gradient ``grad`` at ``forward(x)``.

        The identity by default (the defense's derivative approximated by ``I``).
        """
        return grad

    @property
    def randomized(self) -> bool:
        """Whether two calls on the same image may differ (an attacker needs EOT)."""
        return False

    def differentiate(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)`` with the gradient an adaptive attacker uses (Athalye et al. 2018 Sec. 4): autograd's
        exact gradient through :meth:`forward` when ``differentiable``, else BPDA (:meth:`estimate_gradient`)."""
        check_images(x, self.title.capitalize() or "A defense")
        return self.forward(x) if self.differentiable else BPDA.apply(x, self)

    def gradient_words(self) -> str:
        """How :meth:`differentiate` gets its gradient, in words for records: ``exact gradient`` or
        ``identity (BPDA)``."""
        return "exact gradient" if self.differentiable else f"{self.gradient_estimate} (BPDA)"

    def params(self) -> dict[str, Any]:
        """The declared parameters and their values (``seed`` only for a randomised defense)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "seed"}
        if self.randomized:
            out["seed"] = self.seed
        return out

    def check_params(self) -> None:
        """Raise :class:`AdvlabError` with a plain message when a parameter is out of its range (each declared
        :class:`Param` checks its own value; an int given for a float becomes a float)."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise AdvlabError(f"The seed of {self.title or self.name} must be a whole number >= 0, "
                              f"got {self.seed!r}.")
        for p in self.PARAMS:
            setattr(self, p.name, p.check(getattr(self, p.name), f"The {self.title or self.name}"))

    def used_params(self) -> tuple[Param, ...]:
        """The declared parameters this configuration uses (the page draws their widgets); by default all."""
        return self.PARAMS

    @classmethod
    def param(cls, name: str) -> Param:
        """The declared parameter ``name`` (KeyError if the defense does not declare it)."""
        for p in cls.PARAMS:
            if p.name == name:
                return p
        raise KeyError(f"{cls.name} declares no parameter {name!r}")

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        """Named configurations (key -> parameters) for menus and tests; by default the defaults alone."""
        return {cls.name: {}}

    def describe(self) -> dict[str, Any]:
        """A JSON-safe record of the defense: its name, title, whether it is random, its parameters."""
        return {"name": self.name, "title": self.title, "random": self.randomized, **self.params()}

    # ------------------------------------------------------------------ use

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)`` on a checked batch, without building a graph."""
        check_images(x, self.title.capitalize() or "A defense")
        with torch.no_grad():
            return self.forward(x)

    def reseed(self, seed: int | None = None) -> Self:
        """Restart the defense's random sequence (from ``seed``, default its own); returns the defense."""
        self.generator = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return self

    def spawn(self, seed: int) -> Self:
        """The same defense with its own random draws from ``seed`` (e.g. the attacker's copy)."""
        if not self.randomized:
            return copy.copy(self)
        return dataclasses.replace(self, seed=seed)


# --------------------------------------------------------------------------- the registry

DEFENSES: dict[str, type[Defense]] = {}


def register(cls: type[D]) -> type[D]:
    """Class decorator: make a defense available to :func:`get_defense` under ``cls.name``."""
    if not cls.name or cls.name in DEFENSES and DEFENSES[cls.name] is not cls:
        raise ValueError(f"defense {cls.__name__} needs a name of its own, got {cls.name!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "seed"}
    declared = [p.name for p in cls.PARAMS]
    if sorted(declared) != sorted(fields):
        raise TypeError(f"defense {cls.name}: PARAMS {declared} must declare every field {sorted(fields)} once")
    for p in cls.PARAMS:
        if fields[p.name].default != p.default:
            raise TypeError(f"defense {cls.name}: {p.name} defaults to {fields[p.name].default!r} but "
                            f"{p.default!r} in its declaration")
    DEFENSES[cls.name] = cls
    return cls


def get_defense(name: str, **params: Any) -> Defense:
    """The registered defense ``name`` built with ``params``; bad names and parameters raise AdvlabError."""
    cls = DEFENSES.get(str(name).strip().lower())
    if cls is None:
        raise AdvlabError(f"Unknown defense {name!r}; choose one of {', '.join(DEFENSES)}.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise AdvlabError(f"The {cls.title or cls.name} defense has no parameter {', '.join(unknown)}; "
                          f"it takes {', '.join(sorted(known))}.")
    return cls(**params)


def presets() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every registered defense's named configurations: key -> (defense name, parameters).

    (:meth:`Defense.presets`: e.g. one per halftone method.)
    """
    return {key: (name, dict(params)) for name, cls in DEFENSES.items() for key, params in cls.presets().items()}


# --------------------------------------------------------------------------- BPDA, the defended model, EOT


class BPDA(torch.autograd.Function):
    """Backward pass differentiable approximation (Athalye et al. 2018), as AdverTorch's ``BPDAWrapper``:
    forward ``defense(x)``, backward ``defense.estimate_gradient(x, grad)`` (the identity by default)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, defense: Defense) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.defense = defense
        return defense(x.detach())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return ctx.defense.estimate_gradient(x, grad), None


class Defended(nn.Module):
    """``model(defense(x))``: attacks, training code and metrics treat it like any model taking [0, 1] pixels.

    ``bpda=True`` (default): the gradient the adaptive attacker uses (:meth:`Defense.differentiate`: the
    exact one through a ``differentiable`` defense, else the BPDA estimate :meth:`Defense.estimate_gradient`).
    ``bpda=False``: the defense's true derivative, as autograd sees :meth:`Defense.forward`; zero where the
    transform builds no graph (a halftone: zero almost everywhere, what plain backpropagation would see,
    i.e. gradient masking). The two agree for a differentiable defense.
    """

    def __init__(self, model: nn.Module, defense: Defense, *, bpda: bool = True):
        super().__init__()
        if not isinstance(defense, Defense):
            raise AdvlabError(f"Defended takes a Defense, got {type(defense).__name__}.")
        self.model = model
        self.defense = defense
        self.bpda = bool(bpda)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.requires_grad:
            return self.model(self.defense(x))
        if self.bpda:
            return self.model(self.defense.differentiate(x))
        check_images(x, self.defense.title.capitalize() or "A defense")
        out = self.defense.forward(x)
        if not out.requires_grad:  # no graph: the transform's derivative is zero
            out = out + 0 * x
        return self.model(out)


class EOT(nn.Module):
    """Expectation over transformation: the mean of the logits of ``samples`` calls of a randomised ``model``.

    With a randomised defense every call draws new randomness, so a gradient step on the
    averaged logits follows the gradient averaged over the draws (of the loss of the mean
    logits, a smooth stand-in for the mean loss that keeps the attack loop unchanged).
    """

    def __init__(self, model: nn.Module, samples: int = 8):
        super().__init__()
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 1000:
            raise AdvlabError(f"EOT needs between 1 and 1000 samples, got {samples!r}.")
        self.model = model
        self.samples = samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(0)
