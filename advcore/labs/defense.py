"""The Defense lab: accuracy under attack of a model behind an input-transform defense, against an attacker
who ignores the defense (the paper's protocol), one who attacks the bare network, one who knows it (with and
without EOT for a randomised defense) and a strong PGD with restarts through the defense; robust accuracy is the
per-example worst case over all of them (Athalye, Carlini and Wagner 2018, Sec. 4), beside an adversarially trained
reference. The attacker who knows the defense differentiates it exactly where the defense declares itself
differentiable (:attr:`~advcore.defenses.Defense.differentiable`: median smoothing, random resize-and-pad) and
through BPDA's identity elsewhere (halftones, JPEG, bit depth): :meth:`~advcore.defenses.Defense.differentiate`,
recorded as the table's ``bpda``.

The computation behind the Defense page (``app_pages/defense.py``) and ``python -m advcore defend``:
:func:`evaluate_defense` (the table, a :class:`DefenseTable`), :func:`image_panels` (one image, four views),
:func:`clean_effect` (the defense at inference only on the bundled photos), :func:`lesson` (the
table in plain words) and the measurements shipped in ``assets/defense`` (:func:`saved_table`).

The rows are the halftoning paper's (``shared/papers/halftoning-defense-abstract.txt``): no
defense, the halftone in front of the naive model, and the models trained on halftones or on
both (by role: :data:`TRAINED_ROLES`). The defense itself is any :class:`~advcore.defenses.Defense`: a
halftone method's name builds a :class:`~advcore.defenses.Halftone`, a registered defense's name
(JPEG, bit depth, median smoothing, random resize-and-pad, ...) builds that defense with its declared
parameters, a Defense instance is used as it is. The trained rows exist for halftones only; any
other defense's table has the undefended model, the naive model behind the defense
(``defense-input``) and the adversarially trained reference. Every table carries the
gradient-masking check of :mod:`advcore.labs.masking` (:attr:`DefenseTable.masking`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advcore import attacks, data, datasets, models
from advcore.attacks import MAX_STEPS
from advcore.defenses import (
    DEFENSES,
    EOT,
    METHODS,
    Defended,
    Defense,
    Halftone,
    check_images,
    check_method,
    get_defense,
)
from advcore.device import pick_device
from advcore.errors import AdvlabError, Cancelled
from advcore.labs.masking import check_masking
from advcore.paths import ASSETS
from advcore.predictions import Prediction, top_k
from advcore.progress import ProgressFn, report
from advcore.records import json_safe
from advcore.units import eps_fraction_text, percent

# --------------------------------------------------------------------------- the evaluation (the lab's table)

ROWS = ("none", "halftone-input", "defense-input", "halftone-trained", "hybrid", "adversarial")
ROW_TITLES = {
    "none": "no defense",
    "halftone-input": "halftone input, naive model",
    "defense-input": "defended input, naive model",
    "halftone-trained": "halftone-trained model",
    "hybrid": "hybrid model",
    "adversarial": "adversarially trained (PGD), no defense: reference",
}
#: The attackers, in the table's order: two that do not differentiate through the defense, two that do (the
#: exact gradient of a differentiable defense, else BPDA). ``bpda`` (one draw of the defense per step) is measured
#: only for a randomised defense, where ``knows`` adds EOT: the pair isolates EOT's effect.
COLUMNS = ("ignores", "bare", "bpda", "knows")
NON_ADAPTIVE = ("ignores", "bare")
ADAPTIVE = ("bpda", "knows")
COLUMN_TITLES = {
    "ignores": "attacker ignores the defense (examples made on the undefended model)",
    "bare": "white-box on the bare network (the row's own network attacked without its defense)",
    "bpda": "attacker knows the defense: BPDA without EOT (one draw of the defense per step)",
    "knows": "attacker knows the defense: BPDA (identity gradient through the defense)",
}
COLUMN_SHORT = {"ignores": "ignores", "bare": "bare", "bpda": "BPDA", "knows": "knows"}
#: The titles that change when the adaptive attacker has the defense's exact gradient instead of BPDA's.
EXACT_COLUMN_TITLES = {
    "bpda": "attacker knows the defense: its exact gradient without EOT (one draw of the defense per step)",
    "knows": "attacker knows the defense: its exact gradient (autograd through the defense)",
}
EXACT_COLUMN_SHORT = {"bpda": "1 draw"}
#: How a table's ``bpda`` record begins when the adaptive attacker used the exact gradient.
EXACT = "exact gradient"
#: The models trained for the defense, per dataset (shipped in assets/models).
#: The table's trained rows and the model role (:data:`advcore.models.ROLES`) each row takes.
TRAINED_ROLES = {"halftone-trained": "halftone", "hybrid": "hybrid"}
#: The reference row: the adversarially trained model, by role, with no input transform (Madry et al. 2018).
REFERENCE_ROLES = {"adversarial": "pgd"}
#: The paper's top-5 accuracy of its hybrid model under attack (abstract; examples made on the undefended model).
PAPER_TOP5 = {"FGSM": 80.97, "I-FGSM": 78.77, "PGD": 81.56}
EVAL_ATTACKS = ("fgsm", "ifgsm", "pgd")
DEFAULT_EPS = (0.0, 0.05, 0.1, 0.2)
#: The strong adaptive attacker: PGD through the defense (exact gradient or BPDA) with this many steps and random
#: restarts (0 steps: not run).
STRONG_STEPS = 50
RESTARTS = 1
MAX_RESTARTS = 20
#: The measurements shipped with the app (``python -m advcore defend --json``), one per model and halftone.
SAVED_DIR = ASSETS / "defense"


def make_defense(method: str | Defense = "floyd-steinberg", *, bayer_size: int = 8, seed: int = 0,
                 params: dict[str, Any] | None = None) -> Defense:
    """The defense to evaluate: a Defense as it is; a halftone method (:data:`~advcore.defenses.METHODS`) as a
    :class:`~advcore.defenses.Halftone` with ``bayer_size`` and ``seed``; another registered defense's name
    with ``params`` (its declared parameters; the defaults where absent) and ``seed``. Bad names and
    parameters raise :class:`AdvlabError` with a plain message."""
    if isinstance(method, Defense):
        return method
    params = dict(params or {})
    key = str(method).strip().lower() if isinstance(method, str) else method
    if isinstance(key, str) and key not in METHODS and key in DEFENSES:
        return get_defense(key, seed=seed, **params)
    if not isinstance(key, str) or key not in METHODS:
        raise AdvlabError(f"Unknown defense {method!r}; choose a halftone ({', '.join(METHODS)}) or one of "
                          f"{', '.join(k for k in DEFENSES if k != 'halftone')}.")
    params.setdefault("bayer_size", bayer_size)
    return get_defense("halftone", method=check_method(key), seed=seed, **params)


def defense_key(defense: Defense | dict[str, Any]) -> str:
    """The short name of a defense (or of its record): the halftone's method, else the registered name."""
    d = defense.describe() if isinstance(defense, Defense) else defense
    return str(d.get("method") or d["name"])


def defense_title(defense: Defense | dict[str, Any]) -> str:
    """A defense in a few words: ``halftone``, ``JPEG compression``."""
    d = defense.describe() if isinstance(defense, Defense) else defense
    return str(d.get("title") or d["name"])


def input_row(defense: Defense) -> str:
    """The key of the row with the naive model behind ``defense``: ``halftone-input`` for a halftone, else
    ``defense-input``."""
    return "halftone-input" if isinstance(defense, Halftone) else "defense-input"


def trained_models_for(dataset: str) -> dict[str, str]:
    """The registered models of the table's extra rows on ``dataset``, by role: row key -> model name (the
    halftone-trained and hybrid models, and the adversarially trained reference)."""
    found = {row: models.with_role(dataset, role) for row, role in {**TRAINED_ROLES, **REFERENCE_ROLES}.items()}
    return {row: name for row, name in found.items() if name is not None}


def trained_models(model_name: str) -> dict[str, str]:
    """The registered models of the extra rows on ``model_name``'s dataset: row key -> model name."""
    return trained_models_for(models.get_spec(model_name).dataset)


@dataclass
class Row:
    """One line of the table: the model used, whether the input is halftoned, and what each attacker hits."""

    key: str
    model_name: str
    model: nn.Module  # the network on [0, 1] pixels, without the defense
    defended: nn.Module  # what classifies: ``model`` or ``Defended(model, defense)``
    attacked: nn.Module  # what the adaptive attacker differentiates (Defense.differentiate), + EOT if random
    plain: nn.Module  # the same without EOT (the same as ``attacked`` for a deterministic defense)
    halftone: bool = True  # whether ``defended`` puts the defense in front of ``model``
    label: str | None = None  # the title when it is not ROW_TITLES[key] (e.g. the defense named)

    @property
    def title(self) -> str:
        return self.label or ROW_TITLES[self.key]


def bare_network(model: nn.Module) -> nn.Module:
    """The network behind a registry model: halftone-trained models load as ``Defended(net, halftone)``
    (:func:`advcore.models.zoo.input_transform`); the table puts its own halftone (or none) in front."""
    return model.model if isinstance(model, Defended) else model


def build_rows(model_name: str, defense: Defense, *, device: str | torch.device = "cpu", eot: int = 8,
               trained: dict[str, str] | None = None) -> list[Row]:
    """The rows of the table for base model ``model_name`` (the undefended, naively trained model).

    ``trained`` maps ``halftone-trained`` / ``hybrid`` / ``adversarial`` to registered model names (default:
    :func:`trained_models`, found by role); the ``adversarial`` row classifies without the defense. The trained
    rows are the halftone's: any other defense leaves them out.
    """
    spec = models.get_spec(model_name)
    base = bare_network(models.load(model_name, device))
    if trained is None:
        trained = trained_models(model_name)
    attacker_copy = defense.spawn(defense.seed + 1)  # the attacker's own draws

    def wrap(key: str, name: str, net: nn.Module, label: str | None = None) -> Row:
        plain: nn.Module = Defended(net, attacker_copy)
        attacked = EOT(plain, eot) if defense.randomized else plain
        return Row(key, name, net, Defended(net, defense), attacked, plain, label=label)

    first = input_row(defense)
    label = None if first == "halftone-input" else f"naive model behind {defense.title or defense.name}"
    rows = [Row("none", model_name, base, base, base, base, halftone=False), wrap(first, model_name, base, label)]
    extra = (*TRAINED_ROLES, *REFERENCE_ROLES) if isinstance(defense, Halftone) else tuple(REFERENCE_ROLES)
    for key in extra:
        name = trained.get(key)
        if name:
            other = models.get_spec(name)
            if other.input_size != spec.input_size or other.classes() != spec.classes():
                raise AdvlabError(f"{name} does not classify the same images as {model_name}.")
            net = bare_network(models.load(name, device))
            rows.append(wrap(key, name, net) if key in TRAINED_ROLES else
                        Row(key, name, net, net, net, net, halftone=False))
    return rows


def evaluation_images(model_name: str, n: int | None = None, *,
                      device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, str, str]:
    """Labelled images for the table: ``(x, y, what, labels)``.

    Fashion-MNIST / digits models: the first ``n`` images of the shipped test subset with
    their true labels. ImageNet models: the bundled photos, labelled by the undefended
    model's own clean prediction (they carry no ImageNet label).
    """
    spec = models.get_spec(model_name)
    if spec.dataset in ("fashion-mnist", "digits"):
        x, y, what = datasets.eval_set(spec.dataset, n)
        return x.to(device), y.to(device), what, "true labels"
    photos = data.samples()
    if n is not None:
        if not 1 <= n <= len(photos):
            raise AdvlabError(f"There are {len(photos)} bundled photos; n must be between 1 and {len(photos)}.")
        photos = photos[:n]
    x = torch.cat([data.prepare(data.open_image(p.path), spec.input_size) for p in photos]).to(device)
    with torch.no_grad():
        y = models.load(model_name, device)(x).argmax(1)
    return x, y, "bundled photos (assets/samples)", "the undefended model's clean top-1 prediction"


# --------------------------------------------------------------------------- the table's record

#: The keys of :meth:`DefenseTable.to_dict`, in order (``command`` only when set); ``masking``
#: (:attr:`DefenseTable.masking`, after ``flags``) is derived from the numbers, so a file may lack it.
TABLE_KEYS = ("model", "defense", "data", "labels", "n", "eps", "attacks", "attack_params", "adaptive", "bpda",
              "eot", "topk", "rows", "columns", "clean", "accuracy", "strong", "robust", "flags", "table", "device",
              "lesson", "seconds")


@dataclass(frozen=True)
class AttackParams:
    """How every attack of the table was run (L-inf, untargeted; the step sizes in words); ``strong_steps`` and
    ``restarts``: the strong BPDA-PGD attacker (0 steps: not run)."""

    norm: str
    targeted: bool
    steps: int
    ifgsm_alpha: str
    pgd_alpha: str
    seed: int
    strong_steps: int = 0
    restarts: int = 1

    def to_dict(self) -> dict:
        return {"norm": self.norm, "targeted": self.targeted, "steps": self.steps, "ifgsm_alpha": self.ifgsm_alpha,
                "pgd_alpha": self.pgd_alpha, "seed": self.seed, "strong_steps": self.strong_steps,
                "restarts": self.restarts}

    @classmethod
    def from_dict(cls, d: dict) -> AttackParams:
        return cls(norm=d["norm"], targeted=d["targeted"], steps=d["steps"], ifgsm_alpha=d["ifgsm_alpha"],
                   pgd_alpha=d["pgd_alpha"], seed=d["seed"], strong_steps=d["strong_steps"], restarts=d["restarts"])


@dataclass(frozen=True)
class TableRow:
    """One line of the table as recorded: its key (:data:`ROWS`), title, model and whether its input is halftoned."""

    key: str
    title: str
    model: str
    halftone: bool

    def to_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "model": self.model, "halftone": self.halftone}

    @classmethod
    def from_dict(cls, d: dict) -> TableRow:
        return cls(key=d["key"], title=d["title"], model=d["model"], halftone=d["halftone"])


@dataclass(frozen=True)
class Cell:
    """One measurement: a row's accuracy under one attack at one eps with one attacker (``column``); ``values``:
    top-k -> accuracy (``top1``, and ``top5`` for a model of more than 10 classes). The strong attacker's cells
    have attack ``pgd`` and column ``strong``; the worst case's attack ``all`` and column ``worst-case``."""

    row: str
    model: str
    attack: str
    eps: float
    column: str
    values: dict[str, float]

    def to_dict(self) -> dict:
        return {"row": self.row, "model": self.model, "attack": self.attack, "eps": self.eps, "column": self.column,
                **self.values}

    @classmethod
    def from_dict(cls, d: dict) -> Cell:
        fixed = ("row", "model", "attack", "eps", "column")
        return cls(*(d[k] for k in fixed), values={k: v for k, v in d.items() if k not in fixed})


@dataclass(frozen=True)
class Flag:
    """A cell where an attacker who knows the defense (``attacker``: ``bpda``, ``knows`` or ``strong``) left a
    higher top-1 accuracy than one who does not (``baseline``: ``ignores`` or ``bare``) on the same row and eps:
    the adaptive attack under-performed, so that column overstates robustness (the worst case does not)."""

    row: str
    eps: float
    attack: str  # the adaptive attacker's attack ("pgd" for the strong one)
    attacker: str
    accuracy: float
    baseline_attack: str
    baseline: str
    baseline_accuracy: float

    def to_dict(self) -> dict:
        return {"row": self.row, "eps": self.eps, "attack": self.attack, "attacker": self.attacker,
                "accuracy": self.accuracy, "baseline_attack": self.baseline_attack, "baseline": self.baseline,
                "baseline_accuracy": self.baseline_accuracy}

    @classmethod
    def from_dict(cls, d: dict) -> Flag:
        return cls(**{k: d[k] for k in ("row", "eps", "attack", "attacker", "accuracy", "baseline_attack",
                                        "baseline", "baseline_accuracy")})


@dataclass(frozen=True)
class DefenseMasks:
    """Per-image correctness behind a :class:`DefenseTable` (image axis last), what a sharded run merges:
    ``clean[row][k]`` (n,), ``ok[row][attack][column][k]`` and ``strong[row][k]`` (eps, n); top-``k``."""

    clean: dict[str, dict[int, torch.Tensor]]
    ok: dict[str, dict[str, dict[str, dict[int, torch.Tensor]]]]
    strong: dict[str, dict[int, torch.Tensor]]

    @staticmethod
    def cat(parts: Sequence[DefenseMasks]) -> DefenseMasks:
        """The masks of consecutive image ranges joined in order."""
        def join(ts: Sequence[torch.Tensor]) -> torch.Tensor:
            return torch.cat(list(ts), dim=-1)

        first = parts[0]
        return DefenseMasks(
            clean={r: {k: join([p.clean[r][k] for p in parts]) for k in by} for r, by in first.clean.items()},
            ok={r: {a: {c: {k: join([p.ok[r][a][c][k] for p in parts]) for k in by_k} for c, by_k in by_c.items()}
                    for a, by_c in by_a.items()} for r, by_a in first.ok.items()},
            strong={r: {k: join([p.strong[r][k] for p in parts]) for k in by} for r, by in first.strong.items()})


@dataclass(frozen=True)
class DefenseTable:
    """What :func:`evaluate_defense` measured (the Defense lab's table); :meth:`to_dict` is its JSON
    (``python -m advcore defend --json``, the files of ``assets/defense``), :meth:`from_dict` reads it back.

    ``clean[row][k]``: the clean accuracy; ``accuracy[row][attack][column][k]``: one accuracy per eps;
    ``strong[row][k]``: the strong BPDA-PGD attacker's (empty when not run); ``robust[row][k]``: the per-example
    worst case over every attacker and attack at each eps; ``flags``: the cells where an adaptive attacker did
    worse than a non-adaptive one; ``table``: the same numbers as one :class:`Cell` per row, attack, eps and
    column. ``command`` is set by the command line (:func:`dataclasses.replace`) and left out of the JSON while
    None."""

    model: str
    defense: dict[str, Any]  # Defense.describe()
    data: str
    labels: str
    n: int
    eps: list[float]
    attacks: list[str]
    attack_params: AttackParams
    adaptive: bool
    bpda: str | None
    eot: int | None
    topk: list[str]
    rows: list[TableRow]
    columns: dict[str, str]  # column key -> title
    clean: dict[str, dict[str, float]]
    accuracy: dict[str, dict[str, dict[str, dict[str, list[float]]]]]
    strong: dict[str, dict[str, list[float]]]
    robust: dict[str, dict[str, list[float]]]
    flags: list[Flag]
    table: list[Cell]
    device: str
    lesson: str
    seconds: float
    command: str | None = None
    masks: DefenseMasks | None = field(default=None, compare=False, repr=False)  # not in the JSON

    @property
    def masking(self) -> dict:
        """The gradient-masking check of these numbers (:func:`advcore.labs.masking.check_masking`)."""
        return check_masking(self)

    @property
    def input_row(self) -> str:
        """The key of the naive model behind the defense (``halftone-input`` or ``defense-input``)."""
        return next((r.key for r in self.rows if r.key in ("halftone-input", "defense-input")), "halftone-input")

    def values(self, row: str, attack: str, column: str, k: str = "top1") -> list[float]:
        """The accuracies of ``row`` under ``attack`` against attacker ``column``, one per eps."""
        return self.accuracy[row][attack][column][k]

    def to_dict(self) -> dict:
        out = {
            "model": self.model, "defense": copy.deepcopy(self.defense), "data": self.data, "labels": self.labels,
            "n": self.n, "eps": list(self.eps), "attacks": list(self.attacks),
            "attack_params": self.attack_params.to_dict(), "adaptive": self.adaptive, "bpda": self.bpda,
            "eot": self.eot, "topk": list(self.topk), "rows": [r.to_dict() for r in self.rows],
            "columns": dict(self.columns), "clean": {r: dict(by) for r, by in self.clean.items()},
            "accuracy": {r: {a: {c: {k: list(v) for k, v in by_k.items()} for c, by_k in by_c.items()}
                             for a, by_c in by_a.items()} for r, by_a in self.accuracy.items()},
            "strong": {r: {k: list(v) for k, v in by.items()} for r, by in self.strong.items()},
            "robust": {r: {k: list(v) for k, v in by.items()} for r, by in self.robust.items()},
            "flags": [f.to_dict() for f in self.flags],
            "table": [c.to_dict() for c in self.table], "device": self.device, "lesson": self.lesson,
            "seconds": self.seconds,
        }
        masking = check_masking(out)  # derived from the numbers: written after the flags, recomputed when read
        out = {k: v for k, v in out.items() if k not in ("table", "device", "lesson", "seconds")} | {
            "masking": masking, **{k: out[k] for k in ("table", "device", "lesson", "seconds")}}
        if self.command is not None:
            out["command"] = self.command
        return out

    @classmethod
    def from_dict(cls, d: dict) -> DefenseTable:
        """The table a :meth:`to_dict` gave; a missing key raises KeyError, a malformed part TypeError or
        ValueError (:func:`load_saved` turns them into a plain message)."""
        return cls(
            model=d["model"], defense=copy.deepcopy(d["defense"]), data=d["data"], labels=d["labels"], n=d["n"],
            eps=list(d["eps"]), attacks=list(d["attacks"]), attack_params=AttackParams.from_dict(d["attack_params"]),
            adaptive=d["adaptive"], bpda=d["bpda"], eot=d["eot"], topk=list(d["topk"]),
            rows=[TableRow.from_dict(r) for r in d["rows"]], columns=dict(d["columns"]),
            clean={r: dict(by) for r, by in d["clean"].items()},
            accuracy={r: {a: {c: {k: list(v) for k, v in by_k.items()} for c, by_k in by_c.items()}
                          for a, by_c in by_a.items()} for r, by_a in d["accuracy"].items()},
            strong={r: {k: list(v) for k, v in by.items()} for r, by in d["strong"].items()},
            robust={r: {k: list(v) for k, v in by.items()} for r, by in d["robust"].items()},
            flags=[Flag.from_dict(f) for f in d["flags"]],
            table=[Cell.from_dict(c) for c in d["table"]], device=d["device"], lesson=d["lesson"],
            seconds=d["seconds"], command=d.get("command"))


def column_keys(adaptive: bool, randomized: bool) -> tuple[str, ...]:
    """The attackers measured: the two non-adaptive ones, and the adaptive one (+ without EOT for a random defense)."""
    if not adaptive:
        return ("ignores",)
    return ("ignores", "bare", "bpda", "knows") if randomized else ("ignores", "bare", "knows")


def column_titles(columns: Sequence[str], eot: int | None, exact: bool = False) -> dict[str, str]:
    """Each attacker's title; ``knows`` says EOT's draws when there are some; ``exact``: the adaptive attacker has
    the defense's exact gradient (else BPDA)."""
    out = {c: (EXACT_COLUMN_TITLES if exact else COLUMN_TITLES).get(c, COLUMN_TITLES[c]) for c in columns}
    if "knows" in out and eot:
        out["knows"] = (f"attacker knows the defense: {'exact gradient' if exact else 'BPDA'} + EOT over {eot} "
                        "draws of the random defense")
    return out


def exact_gradient(result: DefenseTable) -> bool:
    """Whether the table's adaptive attacker differentiated the defense exactly (its ``bpda`` record says so)."""
    return bool(result.bpda) and str(result.bpda).startswith(EXACT)


def gradient_name(result: DefenseTable) -> str:
    """The adaptive attacker's gradient through the defense in a word or two: ``exact gradient`` or ``BPDA``."""
    return EXACT if exact_gradient(result) else "BPDA"


def column_short(result: DefenseTable, column: str) -> str:
    """A column's short name in the table's headers: ``ignores``, ``bare``, ``BPDA`` (``1 draw`` when the
    adaptive attacker had the exact gradient), ``knows``."""
    return (EXACT_COLUMN_SHORT if exact_gradient(result) else {}).get(column, COLUMN_SHORT[column])


def strong_name(result: DefenseTable) -> str:
    """The strong attacker in a few words: ``BPDA-PGD-50`` or ``exact-gradient PGD-50``."""
    steps = result.attack_params.strong_steps
    return f"exact-gradient PGD-{steps}" if exact_gradient(result) else f"BPDA-PGD-{steps}"


def adaptivity_flags(accuracy: dict, strong: dict, rows: Sequence[str], attack_names: Sequence[str],
                     eps: Sequence[float]) -> list[Flag]:
    """Every (row, eps) where an adaptive attacker left a higher top-1 accuracy than a non-adaptive one: per
    attack for ``bpda`` / ``knows`` against ``ignores`` / ``bare``, and the strong attacker against every attack's
    non-adaptive cells."""
    flags = []
    for r in rows:
        for i, e in enumerate(eps):
            if e == 0:
                continue
            for a in attack_names:
                cols = accuracy[r][a]
                for ca in (c for c in ADAPTIVE if c in cols):
                    for cn in (c for c in NON_ADAPTIVE if c in cols):
                        if cols[ca]["top1"][i] > cols[cn]["top1"][i]:
                            flags.append(Flag(r, e, a, ca, cols[ca]["top1"][i], a, cn, cols[cn]["top1"][i]))
            if strong.get(r):
                s = strong[r]["top1"][i]
                for a in attack_names:
                    for cn in (c for c in NON_ADAPTIVE if c in accuracy[r][a]):
                        if s > accuracy[r][a][cn]["top1"][i]:
                            flags.append(Flag(r, e, "pgd", "strong", s, a, cn, accuracy[r][a][cn]["top1"][i]))
    return flags


def _topk_mask(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == y[:, None]).any(1).cpu()


def evaluate_defense(model_name: str, method: str | Defense = "floyd-steinberg", *,
                     attack_names: Sequence[str] = EVAL_ATTACKS, eps: Sequence[float] = DEFAULT_EPS,
                     n: int | None = 500, steps: int = 10, adaptive: bool = True, eot: int = 8,
                     strong_steps: int = STRONG_STEPS, restarts: int = RESTARTS,
                     bayer_size: int = 8, seed: int = 0, batch_size: int = 250,
                     trained: dict[str, str] | None = None, device: str | torch.device = "cpu",
                     progress: ProgressFn | None = None, params: dict[str, Any] | None = None,
                     images: tuple[torch.Tensor, torch.Tensor] | None = None,
                     image_range: tuple[int, int] | None = None) -> DefenseTable:
    """Accuracy of every row under every attack and eps against every attacker, and the per-example worst case.

    Attackers (columns, :data:`COLUMN_TITLES`):

    * ``ignores`` (the paper's protocol): the adversarial examples are crafted on the undefended base model,
      then each row classifies them (halftoning them first).
    * ``bare`` (``adaptive``): crafted white-box on the row's own network without its defense, then halftoned.
    * ``knows`` (``adaptive``): each row attacked through its own pipeline, the defense differentiated by
      :meth:`~advcore.defenses.Defense.differentiate` (its exact gradient where it is differentiable, else BPDA;
      Athalye et al. 2018 Sec. 4), with EOT over ``eot`` draws for a randomised defense (each draw's exact
      gradient, averaged); ``bpda``: the same without EOT (randomised defenses only), so EOT's effect is one
      column apart.
    * strong (``adaptive`` and ``strong_steps`` > 0): PGD through the defense (as ``knows``, + EOT) with
      ``strong_steps`` steps from ``restarts`` random starts; an example counts as correct only if it survives
      every restart.

    ``robust``: an example counts as correct at an eps only if every attacker with every attack left it
    correct (the per-example minimum). ``flags``: :func:`adaptivity_flags`.

    ``method``: a halftone method, a registered defense (with ``params``) or a Defense (:func:`make_defense`). The
    ``adversarial`` row (``trained``; by default the model of role ``pgd``) classifies without the defense:
    its attackers are the transfer from the base model and white-box attacks on itself.

    L-inf, untargeted; I-FGSM and PGD take ``steps`` steps (step eps/steps and 2.5 eps/steps, PGD from a
    random start seeded by ``seed``). At eps 0 every entry is the clean accuracy. Top-5 is reported when the
    model has more than 10 classes. ``progress`` (:mod:`advcore.progress`) counts attack runs; returning True
    cancels (:class:`Cancelled`). ``images``: ``(x, y)`` to evaluate instead of :func:`evaluation_images` (``n``
    ignored), e.g. one shard of a larger set: every number is a per-image mean, so shards' tables combine by
    weighting with their ``n``.

    ``image_range`` ``(lo, hi)``: only images ``lo`` to ``hi - 1`` of the ``n`` (a shard, :mod:`advcore.shards`;
    ``lo`` a multiple of ``batch_size``), every seed the whole run's (batch ``b`` seeds with ``b`` counted from
    image 0); :func:`tabulate` of the joined :attr:`DefenseTable.masks` gives the whole run's table.
    """
    t0 = time.perf_counter()
    dev = pick_device(device)
    defense = make_defense(method, bayer_size=bayer_size, seed=seed, params=params)
    attack_names = [attacks.get_attack(a).name for a in attack_names]
    if not attack_names:
        raise AdvlabError("Choose at least one attack.")
    eps = [float(e) for e in eps]
    if not eps:
        raise AdvlabError("Give at least one eps.")
    for e in eps:
        attacks.check_budget(eps=e, alpha=max(e, 1e-12), steps=steps, norm="linf")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise AdvlabError("batch size must be a positive whole number.")
    if isinstance(strong_steps, bool) or not isinstance(strong_steps, int) or not 0 <= strong_steps <= MAX_STEPS:
        raise AdvlabError(f"The strong attacker's steps must be a whole number from 0 to {MAX_STEPS}.")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or not 1 <= restarts <= MAX_RESTARTS:
        raise AdvlabError(f"Restarts must be a whole number from 1 to {MAX_RESTARTS}.")
    rows = build_rows(model_name, defense, device=dev, eot=eot, trained=trained)
    if images is None:
        x, y, what, labels = evaluation_images(model_name, n, device=dev)
    else:
        x, y = images
        check_images(x, "evaluate_defense")
        if not isinstance(y, torch.Tensor) or y.shape != (len(x),):
            raise AdvlabError("evaluate_defense: images takes (x, y) with one label per image.")
        x, y, what, labels = x.to(dev), y.to(dev), "given images", "given labels"
    b0 = 0  # the index of the first batch in the whole set
    if image_range is not None:
        lo, hi = image_range
        if not 0 <= lo < hi <= len(x) or lo % batch_size:
            raise AdvlabError(f"Image range {lo}:{hi} is not a whole number of batches of {batch_size} within "
                              f"the {len(x)} images.")
        x, y, b0 = x[lo:hi], y[lo:hi], lo // batch_size
    num_classes = models.get_spec(model_name).num_classes
    ks = (1, 5) if num_classes > 10 else (1,)
    columns = column_keys(adaptive, defense.randomized)
    strong_on = adaptive and strong_steps > 0
    base = rows[0].model
    how = "exact gradient" if defense.differentiable else "BPDA"

    def sources(r: Row) -> dict[str, nn.Module]:
        return {"ignores": base, "bare": r.model, "bpda": r.plain, "knows": r.attacked}

    distinct = len({id(sources(r)[c]) for r in rows for c in columns})
    distinct_strong = len({id(r.attacked) for r in rows}) if strong_on else 0
    batches = [slice(i, i + batch_size) for i in range(0, len(x), batch_size)]
    positive = sum(e > 0 for e in eps)
    total = (positive * (len(attack_names) * distinct + distinct_strong * restarts) + 1) * len(batches)
    done = 0

    def tick(text: str) -> None:
        nonlocal done
        done += 1
        report(progress, text, done, total, what="defense evaluation")

    # The attacker's own draws of a randomised defense restart at every attack run from the batch's index
    # (and the restart's), so an image's draws never depend on the batches before it (a shard's equal the run's).
    attacker_draws = list({id(r.plain.defense): r.plain.defense for r in rows if isinstance(r.plain, Defended)}
                          .values())

    def attacker_reseed(b: int, restart: int = 0) -> None:
        for d in attacker_draws:
            d.reseed(d.seed + 7919 * (b0 + b) + 104729 * restart)

    def classify(row: Row, xb: torch.Tensor, b: int) -> torch.Tensor:
        defense.reseed(seed + 7919 * (b0 + b))  # the same draws of the defense for every row and attack
        with torch.no_grad():
            return row.defended(xb)

    def masks(row: Row, xb: torch.Tensor, yb: torch.Tensor, b: int) -> dict[int, torch.Tensor]:
        logits = classify(row, xb, b)
        return {k: _topk_mask(logits, yb, k) for k in ks}

    m = len(eps)
    shape = (m, len(x))
    ok = {r.key: {a: {c: {k: torch.zeros(shape, dtype=torch.bool) for k in ks} for c in columns}
                  for a in attack_names} for r in rows}
    ok_strong = {r.key: {k: torch.zeros(shape, dtype=torch.bool) for k in ks} for r in rows} if strong_on else {}
    clean: dict[str, dict[int, torch.Tensor]] = {r.key: {} for r in rows}
    for b, sl in enumerate(batches):
        for r in rows:
            for k, mk in masks(r, x[sl], y[sl], b).items():
                clean[r.key].setdefault(k, torch.zeros(len(x), dtype=torch.bool))[sl] = mk
        tick("clean images")
    for i, e in enumerate(eps):
        if e == 0:
            for r in rows:
                for k in ks:
                    for a in attack_names:
                        for c in columns:
                            ok[r.key][a][c][k][i] = clean[r.key][k]
                    if strong_on:
                        ok_strong[r.key][k][i] = clean[r.key][k]
            continue
        for b, sl in enumerate(batches):
            xb, yb = x[sl], y[sl]
            for a in attack_names:
                made: dict[int, torch.Tensor] = {}  # id(attacked network) -> its adversarial examples
                for r in rows:
                    for c in columns:
                        src = sources(r)[c]
                        if id(src) not in made:
                            attacker_reseed(b)
                            made[id(src)] = attacks.run(a, src, xb, yb, eps=e, norm="linf", steps=steps,
                                                        seed=seed + b0 + b).x_adv.detach()
                            tick(f"{name_of(a)} eps {e:g}: {COLUMN_SHORT[c]} on {r.title}")
                        for k, mk in masks(r, made[id(src)], yb, b).items():
                            ok[r.key][a][c][k][i, sl] = mk
            if strong_on:
                made = {}
                for r in rows:
                    alive = {k: torch.ones(len(yb), dtype=torch.bool) for k in ks}
                    for j in range(restarts):
                        key = (id(r.attacked), j)
                        if key not in made:
                            attacker_reseed(b, j + 1)
                            made[key] = attacks.run("pgd", r.attacked, xb, yb, eps=e, norm="linf", steps=strong_steps,
                                                    random_start=True,
                                                    seed=seed + 104729 * (j + 1) + b0 + b).x_adv.detach()
                            tick(f"PGD-{strong_steps} eps {e:g}, start {j + 1} of {restarts}: {how} on {r.title}")
                        for k, mk in masks(r, made[key], yb, b).items():
                            alive[k] &= mk
                    for k in ks:
                        ok_strong[r.key][k][i, sl] = alive[k]

    eot_used = eot if adaptive and defense.randomized else None
    result = DefenseTable(
        model=model_name,
        defense=json_safe(defense.describe()),
        data=what,
        labels=labels,
        n=len(x),
        eps=eps,
        attacks=attack_names,
        attack_params=AttackParams(norm="linf", targeted=False, steps=steps, ifgsm_alpha="eps / steps",
                                   pgd_alpha="2.5 eps / steps, random start", seed=seed,
                                   strong_steps=strong_steps if strong_on else 0, restarts=restarts),
        adaptive=adaptive,
        bpda=f"{defense.gradient_words()} through the {defense.title}" if adaptive else None,
        eot=eot_used,
        topk=[f"top{k}" for k in ks],
        rows=[TableRow(r.key, r.title, r.model_name, r.halftone) for r in rows],
        columns=column_titles(columns, eot_used, exact=defense.differentiable),
        clean={}, accuracy={}, strong={}, robust={}, flags=[], table=[],  # filled by tabulate
        device=str(dev),
        lesson="",
        seconds=0.0,
    )
    result = tabulate(result, DefenseMasks(clean=clean, ok=ok, strong=ok_strong))
    return replace(result, seconds=round(time.perf_counter() - t0, 2))


def tabulate(result: DefenseTable, masks: DefenseMasks) -> DefenseTable:
    """``result`` with its numbers (``n``, clean, accuracy, strong, robust, flags, table, lesson) computed from
    the per-image ``masks``: the one aggregation of a whole run and of a sharded run's joined masks."""
    keys = [r.key for r in result.rows]
    attack_names, columns, eps = list(result.attacks), list(result.columns), list(result.eps)
    ks = [int(k[3:]) for k in result.topk]
    ok, ok_strong, clean = masks.ok, masks.strong, masks.clean
    strong_on = bool(ok_strong)
    n = int(clean[keys[0]][ks[0]].numel())
    shape = (len(eps), n)

    def frac(t: torch.Tensor) -> list[float]:
        return [round(float(v), 6) for v in t.float().mean(-1).reshape(-1)]

    acc = {r: {a: {c: {f"top{k}": frac(ok[r][a][c][k]) for k in ks} for c in columns}
               for a in attack_names} for r in keys}
    strong = {r: {f"top{k}": frac(ok_strong[r][k]) for k in ks} for r in keys} if strong_on else {}
    robust = {}
    for r in keys:
        robust[r] = {}
        for k in ks:
            worst = torch.ones(shape, dtype=torch.bool)
            for a in attack_names:
                for c in columns:
                    worst &= ok[r][a][c][k]
            if strong_on:
                worst &= ok_strong[r][k]
            robust[r][f"top{k}"] = frac(worst)
    flags = adaptivity_flags(acc, strong, keys, attack_names, eps) if result.adaptive else []
    rows = result.rows
    table = [Cell(r.key, r.model, a, e, c, {f"top{k}": acc[r.key][a][c][f"top{k}"][i] for k in ks})
             for r in rows for a in attack_names for i, e in enumerate(eps) for c in columns]
    if strong_on:
        table += [Cell(r.key, r.model, "pgd", e, "strong", {f"top{k}": strong[r.key][f"top{k}"][i] for k in ks})
                  for r in rows for i, e in enumerate(eps)]
    table += [Cell(r.key, r.model, "all", e, "worst-case", {f"top{k}": robust[r.key][f"top{k}"][i] for k in ks})
              for r in rows for i, e in enumerate(eps)]
    out = replace(result, n=n, accuracy=acc, strong=strong, robust=robust, flags=flags, table=table, masks=masks,
                  clean={r: {f"top{k}": round(float(clean[r][k].float().mean()), 6) for k in ks} for r in keys})
    return replace(out, lesson=lesson(out))


def lesson(result: DefenseTable) -> str:
    """The table in plain words, every number read from it.

    Headline: the strongest attack measured (PGD, else I-FGSM, else FGSM) at the eps where the best defended
    row gains most over no defense against the attacker who ignores the defense (the paper's view). Then what
    the per-example worst case over every attacker leaves of that gain, the adversarially trained reference,
    the cells where an adaptive attacker did worse than a non-adaptive one, and EOT's effect alone.
    """
    eps = result.eps
    positive = [i for i, e in enumerate(eps) if e > 0]
    if not positive:
        return "Only clean images were measured (eps 0): choose a positive eps to see what the defense does."
    a = next(x for x in ("pgd", "ifgsm", "fgsm") if x in result.attacks)
    acc = result.accuracy
    halftoned = [r.key for r in result.rows if r.halftone]
    titles = {r.key: r.title for r in result.rows}

    def gain(i: int) -> float:
        return max(acc[k][a]["ignores"]["top1"][i] for k in halftoned) - acc["none"][a]["ignores"]["top1"][i]

    i = max(positive, key=lambda j: (round(gain(j), 9), -eps[j]))
    at = f"eps {eps_fraction_text(eps[i])}"
    none = acc["none"][a]["ignores"]["top1"][i]
    best = max(halftoned, key=lambda k: acc[k][a]["ignores"]["top1"][i])
    ign = acc[best][a]["ignores"]["top1"][i]
    word = defense_title(result.defense)
    title = {"halftone-input": "naive model on halftone input",
             "defense-input": f"naive model behind {word}"}.get(best, titles[best])
    clean_best, clean_none = result.clean[best]["top1"], result.clean["none"]["top1"]
    name = name_of(a)
    if clean_best < 0.5 * clean_none:
        text = (f"The {word} alone already breaks the model: on clean images the {title} gets {percent(clean_best)} "
                f"top-1 against {percent(clean_none)} without it, so its accuracy under attack means little.")
        if word == "halftone":
            text += (" A model has to be trained on halftones for this defense (the paper's halftone and hybrid "
                     "models).")
        return text
    text = (f"Under {name} at {at}, the undefended model keeps {percent(none)} top-1 accuracy. When the attacker "
            "ignores the defense (examples made on the undefended model" + (", as in the paper" if word == "halftone"
                                                                     else "") + "), the "
            f"{title} keeps {percent(ign)} ({100 * (ign - none):+.1f} points).")
    if not result.adaptive:
        text += " Turn on the adaptive attackers (BPDA) to see whether this holds when the attacker knows the defense."
    else:
        p = result.attack_params
        who = ["ignoring the defense", "white-box on the bare network",
               ("the defense's exact gradient" if exact_gradient(result) else "BPDA")
               + (" with and without EOT" if result.eot else "") + f" ({p.steps} steps)"]
        if p.strong_steps:
            who.append(f"{strong_name(result)} from {p.restarts} random start{'s' if p.restarts > 1 else ''}")
        rob, rob_none = result.robust[best]["top1"][i], result.robust["none"]["top1"][i]
        text += (f" Counting an image as correct only if it survives every attacker ({', '.join(who)}; all "
                 f"{len(result.attacks)} attack{'s' if len(result.attacks) > 1 else ''}), the same model keeps "
                 f"{percent(rob)} at {at}, {100 * (rob - rob_none):+.1f} points over the undefended model's worst "
                 f"case ({percent(rob_none)}).")
        over = [(acc[k][a]["ignores"]["top1"][j] - result.robust[k]["top1"][j], k, j) for k in halftoned
                for j in positive]
        top = max(over)
        who_ignores = "The paper's protocol" if word == "halftone" else "Ignoring the defense"
        text += (f" {who_ignores} overstates robust accuracy by up to {100 * top[0]:.1f} points "
                 f"({titles[top[1]]}, {name} at eps {eps_fraction_text(eps[top[2]])}).")
        if "adversarial" in result.robust:
            ref = next(r for r in result.rows if r.key == "adversarial")
            text += (f" For reference, the adversarially trained {ref.model} with no defense keeps "
                     f"{percent(result.robust['adversarial']['top1'][i])} in the same worst case.")
        text += " " + flags_sentence(result)
        eot = eot_sentence(result)
        if eot:
            text += " " + eot
    if clean_best < clean_none - 0.005:
        text += f" The price on clean images: {percent(clean_best)} instead of {percent(clean_none)}."
    return text


def attacker_name(result: DefenseTable, column: str, attack: str) -> str:
    """An attacker in a few words: ``PGD knowing the defense``, ``BPDA-PGD-50``."""
    if column == "strong":
        return strong_name(result)
    g = gradient_name(result)
    how = {"ignores": "ignoring the defense", "bare": "white-box on the bare network", "bpda": f"with {g}, no EOT",
           "knows": "knowing the defense" + (f" ({g} + EOT)" if result.eot else f" ({g})")}[column]
    return f"{name_of(attack)} {how}"


def flags_sentence(result: DefenseTable) -> str:
    """How many cells an adaptive attacker did worse than a non-adaptive one, and the largest such gap."""
    if not result.adaptive:
        return ""
    if not result.flags:
        return "No attacker who knows the defense did worse than one who ignores it, in any cell."
    worst = max(result.flags, key=lambda f: f.accuracy - f.baseline_accuracy)
    cells = {(f.row, f.attack, f.eps, f.attacker) for f in result.flags}
    return (f"In {len(cells)} cell{'s' if len(cells) > 1 else ''} (flagged) an attacker who knows the defense "
            f"did worse than one who does not; the largest gap: "
            f"{next((r.title for r in result.rows if r.key == worst.row), worst.row)} at eps "
            f"{eps_fraction_text(worst.eps)}, {attacker_name(result, worst.attacker, worst.attack)} "
            f"{percent(worst.accuracy)} against {attacker_name(result, worst.baseline, worst.baseline_attack)} "
            f"{percent(worst.baseline_accuracy)}. Such a column overstates robustness (the attack, not the "
            "defense, fell short); the worst case counts every attacker per image.")


def eot_sentence(result: DefenseTable) -> str:
    """EOT's effect alone: the same attack and steps through the defense, one draw per step against the mean of
    ``eot``."""
    if not result.eot or not result.attacks:
        return ""
    positive = [i for i, e in enumerate(result.eps) if e > 0]
    a = next(x for x in ("pgd", "ifgsm", "fgsm") if x in result.attacks)
    pairs = [(result.accuracy[r.key][a]["bpda"]["top1"][i], result.accuracy[r.key][a]["knows"]["top1"][i], r, i)
             for r in result.rows if r.halftone for i in positive]
    if not pairs:
        return ""
    mean = sum(p[0] - p[1] for p in pairs) / len(pairs)
    b, k, r, i = max(pairs, key=lambda p: p[0] - p[1])
    text = (f"EOT's effect alone ({name_of(a)}, {result.attack_params.steps} steps, {gradient_name(result)} with one "
            f"draw of the "
            f"{random_word(defense_title(result.defense))} per step against the mean over {result.eot}): accuracy "
            f"changes by {-100 * mean:+.1f} points on average over {len(pairs)} defended cells")
    if b - k <= 0:
        return text + "; EOT lowers it in none of them."
    return text + (f"; the largest drop: the {r.title} at eps {eps_fraction_text(result.eps[i])}, "
                   f"{percent(b)} -> {percent(k)}.")


def random_word(title: str) -> str:
    """``random halftone``; a title that already says random as it is."""
    return title if title.startswith("random") else f"random {title}"


def name_of(attack: str) -> str:
    """FGSM, I-FGSM, PGD."""
    return {"pgd": "PGD", "ifgsm": "I-FGSM", "fgsm": "FGSM"}.get(attack, attack)


# --------------------------------------------------------------------------- one image, four views


@dataclass
class Panels:
    """Clean, halftone(clean), adversarial and halftone(adversarial) of one image, each with its top-k.

    ``clean`` and ``adversarial`` are classified by the undefended model; the halftones by
    the chosen row's model. ``adversarial`` was crafted on the undefended model (attacker
    ignores the defense) or through the row's pipeline (the defense's exact gradient or BPDA, + EOT) (attacker
    knows it).
    """

    images: dict[str, torch.Tensor]  # name -> (1, C, H, W) in [0, 1]
    predictions: dict[str, Prediction]  # name -> top-k of the view
    row: str
    row_model: str
    adaptive: bool
    label: int  # the label the attack moves away from
    seconds: float

    PANELS = ("clean", "halftone_clean", "adversarial", "halftone_adversarial")


def image_panels(model_name: str, x: torch.Tensor, y: int | None = None, *,
                 method: str | Defense = "floyd-steinberg",
                 row: str = "halftone-input", attack: str = "pgd", eps: float = 0.1, adaptive: bool = False,
                 steps: int = 10, seed: int = 0, eot: int = 8, bayer_size: int = 8,
                 trained: dict[str, str] | None = None, device: str | torch.device = "cpu",
                 callback: Callable | None = None, params: dict[str, Any] | None = None) -> Panels:
    """The four views of one image ``x`` (1, C, H, W) for the Defense lab; ``y``: its true class (None: the
    undefended model's clean prediction). ``callback`` is the attack's per-step callback (True cancels).
    ``row`` ``halftone-input`` and ``defense-input`` both name the naive model behind the defense."""
    t0 = time.perf_counter()
    dev = pick_device(device)
    check_images(x, "image_panels")
    if x.shape[0] != 1:
        raise AdvlabError("image_panels takes one image.")
    if row == "none":
        raise AdvlabError("Choose a defended row: halftone-input, halftone-trained or hybrid.")
    defense = make_defense(method, bayer_size=bayer_size, seed=seed, params=params)
    if row in ("halftone-input", "defense-input"):
        row = input_row(defense)
    rows = {r.key: r for r in build_rows(model_name, defense, device=dev, eot=eot, trained=trained)}
    if row not in rows or not rows[row].halftone:
        raise AdvlabError(f"No {ROW_TITLES.get(row, row)} behind the defense is available for {model_name}; "
                          f"choose one of {', '.join(k for k in rows if rows[k].halftone)}.")
    attack = attacks.get_attack(attack).name
    base, r = rows["none"], rows[row]
    classes = models.get_spec(model_name).classes()
    x = x.to(dev)
    with torch.no_grad():
        label = int(base.model(x).argmax(1)) if y is None else int(y)
    yt = torch.tensor([label], device=dev)
    target = r.attacked if adaptive else base.model
    if eps > 0:
        res = attacks.run(attack, target, x, yt, eps=eps, norm="linf", steps=steps, seed=seed, callback=callback)
        if res.cancelled:
            raise Cancelled("attack cancelled")
        x_adv = res.x_adv.detach()
    else:
        x_adv = x.clone()
    h_clean = defense.reseed(seed)(x)
    h_adv = defense.reseed(seed)(x_adv)
    images = {"clean": x, "halftone_clean": h_clean, "adversarial": x_adv, "halftone_adversarial": h_adv}
    with torch.no_grad():
        logits = {"clean": base.model(x), "halftone_clean": r.model(h_clean), "adversarial": base.model(x_adv),
                  "halftone_adversarial": r.model(h_adv)}
    preds = {k: top_k(v, classes)[0] for k, v in logits.items()}
    return Panels(images=images, predictions=preds, row=row, row_model=r.model_name, adaptive=adaptive,
                  label=label, seconds=time.perf_counter() - t0)


def clean_effect(model_name: str, method: str | Defense = "floyd-steinberg", *, bayer_size: int = 8,
                 seed: int = 0, device: str | torch.device = "cpu", k: int = 5,
                 params: dict[str, Any] | None = None) -> list[dict]:
    """The defense at inference only on the bundled photos: top-k before and after, one dict per photo
    (the keys say ``halftone`` for the defended view)."""
    dev = pick_device(device)
    spec = models.get_spec(model_name)
    model = models.load(model_name, dev)
    defense = make_defense(method, bayer_size=bayer_size, seed=seed, params=params)
    photos = data.samples()
    x = torch.cat([data.prepare(data.open_image(p.path), spec.input_size) for p in photos]).to(dev)
    h = defense(x)
    with torch.no_grad():
        logits_x, logits_h = model(x), model(h)
    before, after = top_k(logits_x, spec.classes(), k), top_k(logits_h, spec.classes(), k)
    probs = logits_h.softmax(1)
    out = []
    for i, (p, b, a) in enumerate(zip(photos, before, after, strict=True)):
        out.append({"file": p.file, "title": p.title, "clean": b.names[0], "clean_prob": b.probs[0],
                    "halftone": a.names[0], "halftone_prob": a.probs[0], "same_top1": a.labels[0] == b.labels[0],
                    "clean_top1_in_halftone_top5": b.labels[0] in a.labels,
                    "halftone_prob_of_clean_top1": float(probs[i, b.labels[0]])})
    return out


# --------------------------------------------------------------------------- the shipped measurements

_SAVED_KEYS = ("model", "defense", "eps", "attacks", "topk", "rows", "columns", "clean", "accuracy")


def saved_path(model_name: str, method: str | Defense) -> Path:
    """Where the shipped measurement of ``model_name`` behind ``method`` (a halftone method, a registered defense's
    name or a Defense: :func:`defense_key`) lives (it may not exist)."""
    key = defense_key(method) if isinstance(method, Defense) else method
    return SAVED_DIR / f"{model_name}-{key}.json"


def same_defense(record: dict[str, Any], defense: Defense) -> bool:
    """Whether a table's defense record is ``defense``: the same name (or method) and declared parameters."""
    if defense_key(record) != defense_key(defense):
        return False
    return all(record.get(k) == v for k, v in json_safe(defense.params()).items())


def load_saved(path: str | Path) -> DefenseTable:
    """A table written by ``python -m advcore defend --json``, checked: every row, attack, column and top-k has
    one accuracy in [0, 1] per eps. Raises :class:`AdvlabError` saying what is wrong."""
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AdvlabError(f"Cannot read the defense table {path.name}: {exc}.") from exc
    except ValueError as exc:
        raise AdvlabError(f"The defense table {path.name} is not valid JSON ({exc}).") from exc
    if not isinstance(result, dict):
        raise AdvlabError(f"The defense table {path.name} is not a JSON object.")
    missing = [k for k in _SAVED_KEYS if k not in result]
    if missing:
        raise AdvlabError(f"The defense table {path.name} lacks {', '.join(missing)}.")
    if not isinstance(result["defense"], dict) or not ({"method", "name"} & set(result["defense"])):
        raise AdvlabError(f"The defense table {path.name} does not say which defense it measured.")
    n_eps = len(result["eps"])
    try:
        for row in result["rows"]:
            key = row["key"]
            for k in result["topk"]:
                if not 0 <= result["clean"][key][k] <= 1:
                    raise ValueError(f"clean {k} of {key}")
                for a in result["attacks"]:
                    for c in result["columns"]:
                        values = result["accuracy"][key][a][c][k]
                        if len(values) != n_eps or not all(0 <= v <= 1 for v in values):
                            raise ValueError(f"{key} / {a} / {c} / {k}")
    except (KeyError, TypeError, ValueError) as exc:
        raise AdvlabError(f"The defense table {path.name} has no valid accuracy for {exc}.") from exc
    missing = [k for k in TABLE_KEYS if k not in result]
    if missing:
        raise AdvlabError(f"The defense table {path.name} lacks {', '.join(missing)}.")
    try:
        return DefenseTable.from_dict(result)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AdvlabError(f"The defense table {path.name} is malformed ({type(exc).__name__}: {exc}).") from exc


def saved_table(model_name: str, method: str | Defense, params: dict[str, Any] | None = None) -> DefenseTable | None:
    """The shipped measurement of ``model_name`` behind ``method`` (with ``params``: :func:`make_defense`), or
    None (none, not valid, or made with other parameters)."""
    try:
        defense = make_defense(method, params=params)
    except AdvlabError:
        return None
    path = saved_path(model_name, defense)
    if not path.is_file():
        return None
    try:
        result = load_saved(path)
    except AdvlabError:
        return None
    return result if result.model == model_name and same_defense(result.defense, defense) else None


def saved_tables() -> dict[tuple[str, str], DefenseTable]:
    """Every valid shipped measurement: (model, :func:`defense_key`) -> table."""
    out = {}
    for path in sorted(SAVED_DIR.glob("*.json")):
        try:
            result = load_saved(path)
        except AdvlabError:
            continue
        out[(result.model, defense_key(result.defense))] = result
    return out
