"""Attack parameters, declared once: name, type, default, range, unit, help, paper reference.

An attack's :class:`AttackSpec` lists its own parameters (beyond the common budget eps, norm,
steps, alpha and target) as :class:`Param` values. Everything else is generated from these
declarations: the command line's flags and their help (``advcore.cli.attack``), the Attack page's
widgets (``ui.widgets``), the parameters copied into the JSON record (``advcore.labs.attack``) and
the page's "same run from the command line" line (``ui.views.attack``). The attack function's
signature takes its defaults from the declaration (``mu: float = MU.default``), and the spec
refuses, at import, a declaration that disagrees with its function.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from advcore.attacks.core import AttackResult
from advcore.errors import AdvlabError

KINDS = ("float", "int", "bool", "choice")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Param:
    """One attack parameter. ``low``/``high`` bound what is valid (``low_open``: ``low`` itself is not).

    The ``widget_*`` fields are hints for the page only and never narrow what is valid:
    ``widget_range`` bounds a number input where the valid range is open or unbounded,
    ``widget_values`` offers a fixed ladder of values on a select slider (e.g. log-spaced),
    ``widget_format`` formats those values, ``widget_key`` is the Streamlit key (default
    ``attack_<name>``). ``enabled_by`` names a bool parameter of the same attack: while it is off
    this parameter is unused (None in a request, disabled on the page, absent from the command line).
    """

    name: str
    kind: str  # one of KINDS
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    choice_labels: tuple[str, ...] = ()  # how the page names each choice, in the order of ``choices``
    unit: str = ""  # "" (a pure number) or e.g. "pixel"
    reference: str = ""  # where the parameter comes from in its paper
    label: str = ""  # widget label (default: the name)
    nullable: bool = False  # None is a valid value (e.g. an unseeded random start)
    enabled_by: str | None = None
    widget_range: tuple[float, float] | None = None
    widget_step: float | None = None
    widget_values: tuple[float, ...] = ()
    widget_format: str = "g"
    widget_key: str | None = None
    cli_help: str = field(default="", compare=False)  # the flag's help when shorter than ``help``

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TypeError(f"Param {self.name}: kind must be one of {KINDS}, got {self.kind!r}.")
        if self.kind == "choice" and not self.choices:
            raise TypeError(f"Param {self.name}: a choice needs its choices.")
        if self.choice_labels and len(self.choice_labels) != len(self.choices):
            raise TypeError(f"Param {self.name}: one label per choice.")
        self.check(self.default)  # a declaration whose default is invalid is a programming error
        for v in self.widget_values:
            self.check(v)
        if self.widget_values and self.default not in self.widget_values:
            raise TypeError(f"Param {self.name}: the default must be one of the widget values.")

    # ------------------------------------------------------------------ names

    @property
    def flag(self) -> str:
        """The command-line flag: ``--stop-on-success`` (a bool also has ``--no-stop-on-success``)."""
        return "--" + self.name.replace("_", "-")

    @property
    def flag_text(self) -> str:
        """The flag as a note names it: ``--mu``, ``--[no-]random-start``."""
        return f"--[no-]{self.name.replace('_', '-')}" if self.kind == "bool" else self.flag

    @property
    def key(self) -> str:
        """The page widget's Streamlit key."""
        return self.widget_key or f"attack_{self.name}"

    @property
    def title(self) -> str:
        return self.label or self.name

    def choice_label(self, value: str) -> str:
        """How the page names a choice."""
        return self.choice_labels[self.choices.index(value)] if self.choice_labels else str(value)

    # ------------------------------------------------------------------ values

    def check(self, value: object, owner: str = "") -> object:
        """``value`` if valid (an int given for a float becomes a float); else :class:`AdvlabError`.

        ``owner`` (an attack's short title) prefixes the message: "AGR's phi must be positive, got 0."
        """
        who = f"{owner}'s {self.name}" if owner else self.name
        if value is None and self.nullable:
            return None
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise AdvlabError(f"{who} must be true or false, got {value!r}.")
            return value
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise AdvlabError(f"{who} must be one of {', '.join(self.choices)}, got {value!r}.")
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise AdvlabError(f"{who} must be a whole number, got {value!r}.")
            value = int(value)
        else:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise AdvlabError(f"{who} must be a number, got {value!r}.")
            value = float(value)
            if not math.isfinite(value):
                raise AdvlabError(f"{who} must be a finite number, got {value!r}.")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise AdvlabError(f"{who} must be {self.range_text()}, got {_num(value)}.")
        if self.high is not None and value > self.high:
            raise AdvlabError(f"{who} must be {self.range_text()}, got {_num(value)}.")
        return value

    def range_text(self) -> str:
        """The valid range in words: "positive", "at least 0", "between 0 and 2147483647"."""
        if self.low is not None and self.high is not None:
            if self.low_open:
                return ("positive" if self.low == 0 else f"above {_num(self.low)}") + f" and at most {_num(self.high)}"
            return f"between {_num(self.low)} and {_num(self.high)}"
        if self.low is not None:
            return ("positive" if self.low == 0 else f"above {_num(self.low)}") if self.low_open \
                else f"at least {_num(self.low)}"
        if self.high is not None:
            return f"at most {_num(self.high)}"
        return "finite"

    def parse(self, text: str) -> object:
        """A value from command-line text (numbers may be fractions such as ``1/2``)."""
        s = str(text).strip()
        if self.kind == "bool":
            low = s.lower()
            if low not in ("true", "false", "yes", "no", "1", "0"):
                raise AdvlabError(f"{self.name} must be yes or no, got {s!r}.")
            return self.check(low in ("true", "yes", "1"))
        if self.kind == "choice":
            return self.check(s)
        if self.kind == "int":
            if not re.fullmatch(r"[+-]?\d+", s):
                raise AdvlabError(f"{self.name} must be a whole number, got {s!r}.")
            return self.check(int(s))
        parts = [p.strip() for p in s.split("/")]
        if len(parts) > 2 or not all(_NUMBER.fullmatch(p) for p in parts):
            raise AdvlabError(f"{self.name} must be a number such as 0.5 or a fraction such as 1/2, got {s!r}.")
        value = float(parts[0])
        if len(parts) == 2:
            if float(parts[1]) == 0:
                raise AdvlabError(f"{self.name} {s!r} divides by zero.")
            value /= float(parts[1])
        return self.check(value)

    def cli_words(self, value: object) -> list[str]:
        """How the command line spells ``value``: ``["--mu", "0.5"]``, ``["--no-random-start"]``.

        A bool at its default is not spelled; every other value is, even at its default, so the
        line keeps meaning the same run if a default ever changes. None (unused) is not spelled.
        """
        if value is None:
            return []
        value = self.check(value)
        if self.kind == "bool":
            if value == self.default:
                return []
            return [self.flag] if value else ["--no-" + self.flag[2:]]
        if self.kind == "float":
            return [self.flag, repr(value)]
        return [self.flag, str(value)]

    def format(self, value: object) -> str:
        """A value for people: ``yes``/``no``, ``1e-08``, ``sign``."""
        if value is None:
            return "none"
        if self.kind == "bool":
            return "yes" if value else "no"
        return f"{value:g}" if self.kind == "float" else str(value)


def _num(v: float) -> str:
    """A bound or a value in a message: whole numbers in full (2147483647), others short (1e-08)."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e16 else f"{v:g}"


def check_values(params: tuple[Param, ...], values: Mapping[str, object], owner: str = "") -> dict[str, object]:
    """Each declared parameter present in ``values``, checked; the others are left out."""
    return {p.name: p.check(values[p.name], owner) for p in params if p.name in values}


# Loop options every iterative attack takes as a keyword, whether or not its spec declares them
# (an attack that declares one may give it its own default, as AGR does for stop_on_success).
STOP_ON_SUCCESS = Param(
    "stop_on_success", "bool", False, label="Stop on success",
    help="Stop each image at the first iterate that fools the model; it then costs no more gradients.",
    cli_help="stop each image once its label flips",
)
LOOP_PARAMS: tuple[Param, ...] = (STOP_ON_SUCCESS,)


@dataclass(frozen=True)
class AttackSpec:
    """An attack as the registry, the app and the command line list it.

    ``params`` are the attack's own parameters; each must be a keyword-only parameter of ``fn``
    with the declared default (checked when the spec is made). ``order`` places the attack in
    listings (lower first); ``aliases`` are other names :func:`advcore.attacks.get_attack` accepts;
    ``norms`` the threat models the attack implements.
    """

    name: str
    title: str
    fn: Callable[..., AttackResult]
    reference: str
    iterative: bool = True
    params: tuple[Param, ...] = ()
    order: int = 100
    aliases: tuple[str, ...] = ()
    norms: tuple[str, ...] = ("linf", "l2")  # the threat models it implements (others are refused with a message)

    def __post_init__(self) -> None:
        sig = inspect.signature(self.fn).parameters
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise TypeError(f"Attack {self.name}: a parameter is declared twice: {names}.")
        for p in self.params:
            arg = sig.get(p.name)
            if arg is None or arg.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"Attack {self.name}: {self.fn.__name__}() has no keyword parameter {p.name}.")
            if arg.default != p.default or type(arg.default) is not type(p.default):
                raise TypeError(f"Attack {self.name}: {p.name} defaults to {arg.default!r} in "
                                f"{self.fn.__name__}() but {p.default!r} in its declaration.")
            if p.enabled_by is not None and (p.enabled_by not in names[:names.index(p.name)]
                                             or self.param(p.enabled_by).kind != "bool"):
                raise TypeError(f"Attack {self.name}: {p.name} must be enabled by a bool declared before it.")

    @property
    def short_title(self) -> str:
        """The title without its gloss: ``AGR``, ``I-FGSM``."""
        return self.title.split(" (")[0]

    def param(self, name: str) -> Param:
        """The declared parameter ``name`` (KeyError if the attack does not declare it)."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} declares no parameter {name!r}")

    def defaults(self) -> dict[str, object]:
        """Every declared parameter at its default."""
        return {p.name: p.default for p in self.params}

    def check(self, values: Mapping[str, object]) -> dict[str, object]:
        """The declared parameters present in ``values``, checked (message names the attack)."""
        return check_values(self.params, values, self.short_title)

    def enabled(self, p: Param, values: Mapping[str, object]) -> bool:
        """Whether ``p`` is used, given the other values (its ``enabled_by`` switch, default if absent)."""
        if p.enabled_by is None:
            return True
        return bool(values.get(p.enabled_by, self.param(p.enabled_by).default))
