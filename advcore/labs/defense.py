"""The Defense lab: accuracy under attack of a model behind an input-transform defense, with the attacker
ignoring the defense (the paper's protocol) or knowing it (BPDA, + EOT for a randomised defense).

The computation behind the Defense page (``app_pages/defense.py``) and ``python -m advcore defend``:
:func:`evaluate_defense` (the table, a :class:`DefenseTable`), :func:`image_panels` (one image, four views),
:func:`clean_effect` (the defense at inference only on the bundled photos), :func:`lesson` (the
table in plain words) and the measurements shipped in ``assets/defense`` (:func:`saved_table`).

The rows are the halftoning paper's (``shared/papers/halftoning-defense-abstract.txt``): no
defense, the halftone in front of the naive model, and the models trained on halftones or on
both (by role: :data:`TRAINED_ROLES`). The defense itself is any :class:`~advcore.defenses.Defense`: a
halftone method's name builds a :class:`~advcore.defenses.Halftone`, a registered defense's name
or a Defense instance is used as it is (the trained rows and the lesson's wording stay the
halftone's).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advcore import attacks, data, datasets, models
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
from advcore.paths import ASSETS
from advcore.predictions import Prediction, top_k
from advcore.progress import ProgressFn, report
from advcore.records import json_safe
from advcore.units import eps_fraction_text, percent

# --------------------------------------------------------------------------- the evaluation (the lab's table)

ROWS = ("none", "halftone-input", "halftone-trained", "hybrid")
ROW_TITLES = {
    "none": "no defense",
    "halftone-input": "halftone input, naive model",
    "halftone-trained": "halftone-trained model",
    "hybrid": "hybrid model",
}
COLUMNS = ("ignores", "knows")
COLUMN_TITLES = {
    "ignores": "attacker ignores the defense",
    "knows": "attacker knows the defense",
}
#: The models trained for the defense, per dataset (shipped in assets/models).
#: The table's trained rows and the model role (:data:`advcore.models.ROLES`) each row takes.
TRAINED_ROLES = {"halftone-trained": "halftone", "hybrid": "hybrid"}
#: The paper's top-5 accuracy of its hybrid model under attack (abstract; examples made on the undefended model).
PAPER_TOP5 = {"FGSM": 80.97, "I-FGSM": 78.77, "PGD": 81.56}
EVAL_ATTACKS = ("fgsm", "ifgsm", "pgd")
DEFAULT_EPS = (0.0, 0.05, 0.1, 0.2)
#: The measurements shipped with the app (``python -m advcore defend --json``), one per model and halftone.
SAVED_DIR = ASSETS / "defense"


def make_defense(method: str | Defense = "floyd-steinberg", *, bayer_size: int = 8, seed: int = 0) -> Defense:
    """The defense to evaluate: a Defense as it is; a halftone method (:data:`~advcore.defenses.METHODS`) as a
    :class:`~advcore.defenses.Halftone` with ``bayer_size`` and ``seed``; another registered defense's name
    with its default parameters and ``seed``."""
    if isinstance(method, Defense):
        return method
    if isinstance(method, str) and method not in METHODS and method in DEFENSES:
        return get_defense(method, seed=seed)
    return Halftone(check_method(method), bayer_size, seed=seed)


def trained_models_for(dataset: str) -> dict[str, str]:
    """The registered models trained for the defense on ``dataset``, by role: row key -> model name."""
    found = {row: models.with_role(dataset, role) for row, role in TRAINED_ROLES.items()}
    return {row: name for row, name in found.items() if name is not None}


def trained_models(model_name: str) -> dict[str, str]:
    """The registered models trained for the defense on ``model_name``'s dataset: row key -> model name."""
    return trained_models_for(models.get_spec(model_name).dataset)


@dataclass
class Row:
    """One line of the table: the model used, whether the input is halftoned, and what an adaptive attacker hits."""

    key: str
    model_name: str
    model: nn.Module  # the network on [0, 1] pixels, without the defense
    defended: nn.Module  # what classifies: ``model`` or ``Defended(model, defense)``
    attacked: nn.Module  # what the adaptive attacker differentiates: BPDA, + EOT for a random defense

    @property
    def title(self) -> str:
        return ROW_TITLES[self.key]


def bare_network(model: nn.Module) -> nn.Module:
    """The network behind a registry model: halftone-trained models load as ``Defended(net, halftone)``
    (:func:`advcore.models.zoo.input_transform`); the table puts its own halftone (or none) in front."""
    return model.model if isinstance(model, Defended) else model


def build_rows(model_name: str, defense: Defense, *, device: str | torch.device = "cpu", eot: int = 8,
               trained: dict[str, str] | None = None) -> list[Row]:
    """The rows of the table for base model ``model_name`` (the undefended, naively trained model).

    ``trained`` maps ``halftone-trained`` / ``hybrid`` to registered model names (default:
    :func:`trained_models`, found by role).
    """
    spec = models.get_spec(model_name)
    base = bare_network(models.load(model_name, device))
    if trained is None:
        trained = trained_models(model_name)
    attacker_copy = defense.spawn(defense.seed + 1)  # the attacker's own draws

    def wrap(net: nn.Module) -> tuple[nn.Module, nn.Module]:
        attacked: nn.Module = Defended(net, attacker_copy)
        if defense.randomized:
            attacked = EOT(attacked, eot)
        return Defended(net, defense), attacked

    rows = [Row("none", model_name, base, base, base)]
    rows.append(Row("halftone-input", model_name, base, *wrap(base)))
    for key in ("halftone-trained", "hybrid"):
        name = trained.get(key)
        if name:
            other = models.get_spec(name)
            if other.input_size != spec.input_size or other.classes() != spec.classes():
                raise AdvlabError(f"{name} does not classify the same images as {model_name}.")
            net = bare_network(models.load(name, device))
            rows.append(Row(key, name, net, *wrap(net)))
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


def _topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == y[:, None]).any(1).sum())


# --------------------------------------------------------------------------- the table's record

#: The keys of :meth:`DefenseTable.to_dict`, in order (``command`` only when set).
TABLE_KEYS = ("model", "defense", "data", "labels", "n", "eps", "attacks", "attack_params", "adaptive", "bpda",
              "eot", "topk", "rows", "columns", "clean", "accuracy", "table", "device", "lesson", "seconds")


@dataclass(frozen=True)
class AttackParams:
    """How every attack of the table was run (L-inf, untargeted; the step sizes in words)."""

    norm: str
    targeted: bool
    steps: int
    ifgsm_alpha: str
    pgd_alpha: str
    seed: int

    def to_dict(self) -> dict:
        return {"norm": self.norm, "targeted": self.targeted, "steps": self.steps, "ifgsm_alpha": self.ifgsm_alpha,
                "pgd_alpha": self.pgd_alpha, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> AttackParams:
        return cls(norm=d["norm"], targeted=d["targeted"], steps=d["steps"], ifgsm_alpha=d["ifgsm_alpha"],
                   pgd_alpha=d["pgd_alpha"], seed=d["seed"])


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
    top-k -> accuracy (``top1``, and ``top5`` for a model of more than 10 classes)."""

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
class DefenseTable:
    """What :func:`evaluate_defense` measured (the Defense lab's table); :meth:`to_dict` is its JSON
    (``python -m advcore defend --json``, the files of ``assets/defense``), :meth:`from_dict` reads it back.

    ``clean[row][k]``: the clean accuracy; ``accuracy[row][attack][column][k]``: one accuracy per eps;
    ``table``: the same numbers as one :class:`Cell` per row, attack, eps and column. ``command`` is set by
    the command line (:func:`dataclasses.replace`) and left out of the JSON while None."""

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
    table: list[Cell]
    device: str
    lesson: str
    seconds: float
    command: str | None = None

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
            "table": [c.to_dict() for c in self.table], "device": self.device, "lesson": self.lesson,
            "seconds": self.seconds,
        }
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
            table=[Cell.from_dict(c) for c in d["table"]], device=d["device"], lesson=d["lesson"],
            seconds=d["seconds"], command=d.get("command"))


def evaluate_defense(model_name: str, method: str | Defense = "floyd-steinberg", *,
                     attack_names: Sequence[str] = EVAL_ATTACKS, eps: Sequence[float] = DEFAULT_EPS,
                     n: int | None = 500, steps: int = 10, adaptive: bool = True, eot: int = 8,
                     bayer_size: int = 8, seed: int = 0, batch_size: int = 250,
                     trained: dict[str, str] | None = None, device: str | torch.device = "cpu",
                     progress: ProgressFn | None = None) -> DefenseTable:
    """Accuracy of every row under every attack and eps, with the attacker ignoring or knowing the defense.

    * ``ignores`` (the paper's protocol): the adversarial examples are crafted on the
      undefended base model, then each row classifies them (halftoning them first).
    * ``knows`` (``adaptive``): each row is attacked through its own pipeline, the defense
      differentiated by BPDA, and for a randomised defense with EOT over ``eot`` draws.

    ``method``: a halftone method, a registered defense or a Defense (:func:`make_defense`).

    L-inf, untargeted; I-FGSM and PGD take ``steps`` steps (step eps/steps and
    2.5 eps/steps, PGD from a random start seeded by ``seed``). At eps 0 every entry is
    the clean accuracy. Top-5 is reported when the model has more than 10 classes.
    ``progress`` (:mod:`advcore.progress`) counts batches; returning True cancels (:class:`Cancelled`).
    Returns a :class:`DefenseTable` (``to_dict()``: its JSON; ``table``: one :class:`Cell` per row, attack, eps
    and column).
    """
    t0 = time.perf_counter()
    dev = pick_device(device)
    defense = make_defense(method, bayer_size=bayer_size, seed=seed)
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
    rows = build_rows(model_name, defense, device=dev, eot=eot, trained=trained)
    x, y, what, labels = evaluation_images(model_name, n, device=dev)
    num_classes = models.get_spec(model_name).num_classes
    ks = (1, 5) if num_classes > 10 else (1,)
    columns = COLUMNS if adaptive else COLUMNS[:1]
    batches = [slice(i, i + batch_size) for i in range(0, len(x), batch_size)]
    attacked_rows = [r for r in rows if r.key != "none"]
    per_eps = 1 + (len(attacked_rows) if adaptive else 0)
    total = len(attack_names) * sum(0 if e == 0 else per_eps for e in eps) * len(batches) + len(batches)
    done = 0

    def tick(text: str) -> None:
        nonlocal done
        done += 1
        report(progress, text, done, total, what="defense evaluation")

    def classify(row: Row, xb: torch.Tensor, b: int) -> torch.Tensor:
        defense.reseed(seed + 7919 * b)  # the same draws of the defense for every row and attack
        with torch.no_grad():
            return row.defended(xb)

    # correct[row][k] for clean images
    clean = {r.key: {k: 0 for k in ks} for r in rows}
    for b, sl in enumerate(batches):
        for r in rows:
            logits = classify(r, x[sl], b)
            for k in ks:
                clean[r.key][k] += _topk_correct(logits, y[sl], k)
        tick("clean images")
    acc: dict = {r.key: {a: {c: {f"top{k}": [] for k in ks} for c in columns} for a in attack_names} for r in rows}
    for a in attack_names:
        for e in eps:
            counts = {r.key: {c: {k: 0 for k in ks} for c in columns} for r in rows}
            if e == 0:
                for r in rows:
                    for c in columns:
                        counts[r.key][c] = dict(clean[r.key])
            else:
                for b, sl in enumerate(batches):
                    xb, yb = x[sl], y[sl]
                    params = dict(eps=e, norm="linf", steps=steps, seed=seed + b)
                    x_adv = attacks.run(a, rows[0].model, xb, yb, **params).x_adv.detach()
                    tick(f"{a.upper()} eps {e:g}: examples on the undefended model")
                    for r in rows:
                        logits = classify(r, x_adv, b)
                        for k in ks:
                            counts[r.key]["ignores"][k] += _topk_correct(logits, yb, k)
                            if adaptive and r.key == "none":
                                counts[r.key]["knows"][k] += _topk_correct(logits, yb, k)
                    if adaptive:
                        for r in attacked_rows:
                            xa = attacks.run(a, r.attacked, xb, yb, **params).x_adv.detach()
                            logits = classify(r, xa, b)
                            for k in ks:
                                counts[r.key]["knows"][k] += _topk_correct(logits, yb, k)
                            tick(f"{a.upper()} eps {e:g}: BPDA{' + EOT' if defense.randomized else ''} on {r.title}")
            for r in rows:
                for c in columns:
                    for k in ks:
                        acc[r.key][a][c][f"top{k}"].append(round(counts[r.key][c][k] / len(x), 6))
    table = [Cell(r.key, r.model_name, a, e, c, {f"top{k}": acc[r.key][a][c][f"top{k}"][i] for k in ks})
             for r in rows for a in attack_names for i, e in enumerate(eps) for c in columns]
    result = DefenseTable(
        model=model_name,
        defense=json_safe(defense.describe()),
        data=what,
        labels=labels,
        n=len(x),
        eps=eps,
        attacks=attack_names,
        attack_params=AttackParams(norm="linf", targeted=False, steps=steps, ifgsm_alpha="eps / steps",
                                   pgd_alpha="2.5 eps / steps, random start", seed=seed),
        adaptive=adaptive,
        bpda=f"{defense.gradient_estimate} backward pass through the {defense.title}" if adaptive else None,
        eot=eot if adaptive and defense.randomized else None,
        topk=[f"top{k}" for k in ks],
        rows=[TableRow(r.key, r.title, r.model_name, r.key != "none") for r in rows],
        columns={c: COLUMN_TITLES[c] for c in columns},
        clean={r.key: {f"top{k}": round(clean[r.key][k] / len(x), 6) for k in ks} for r in rows},
        accuracy=acc,
        table=table,
        device=str(dev),
        lesson="",
        seconds=0.0,
    )
    return replace(result, lesson=lesson(result), seconds=round(time.perf_counter() - t0, 2))


def lesson(result: DefenseTable) -> str:
    """The table in plain words: what the halftone buys against each attacker, and the gap between them.

    Headline: the strongest attack measured (PGD, else I-FGSM, else FGSM) at the eps where
    the best defended row gains most over no defense against the attacker who ignores the
    defense. Then the gap between the two columns over every defended row, attack and eps.
    """
    eps = result.eps
    positive = [i for i, e in enumerate(eps) if e > 0]
    if not positive:
        return "Only clean images were measured (eps 0): choose a positive eps to see what the defense does."
    a = next(x for x in ("pgd", "ifgsm", "fgsm") if x in result.attacks)
    acc = result.accuracy
    defended = [r.key for r in result.rows if r.key != "none"]

    def gain(i: int) -> float:
        return max(acc[k][a]["ignores"]["top1"][i] for k in defended) - acc["none"][a]["ignores"]["top1"][i]

    i = max(positive, key=lambda j: (round(gain(j), 9), -eps[j]))
    none = acc["none"][a]["ignores"]["top1"][i]
    best = max(defended, key=lambda k: acc[k][a]["ignores"]["top1"][i])
    ign = acc[best][a]["ignores"]["top1"][i]
    title = {"halftone-input": "naive model on halftone input"}.get(best, ROW_TITLES[best])
    clean_best, clean_none = result.clean[best]["top1"], result.clean["none"]["top1"]
    name = name_of(a)
    if clean_best < 0.5 * clean_none:
        return (f"The halftone alone already breaks the model: on clean images the {title} gets {percent(clean_best)} "
                f"top-1 against {percent(clean_none)} without it, so its accuracy under attack means little. A model "
                "has to be trained on halftones for this defense (the paper's halftone and hybrid models).")
    text = (f"Under {name} at eps {eps_fraction_text(eps[i])}, the undefended model keeps {percent(none)} top-1 "
            "accuracy. When the attacker ignores the defense (examples made on the undefended model, as in the "
            f"paper), the {title} keeps {percent(ign)} ({100 * (ign - none):+.1f} points).")
    if "knows" in acc[best][a]:
        kn = acc[best][a]["knows"]["top1"][i]
        how = "BPDA" + (" + EOT" if result.eot else "")
        text += (f" When the attacker knows the defense ({how}: the halftone differentiated as the identity), "
                 f"the same model keeps {percent(kn)}, {100 * (kn - none):+.1f} points over no defense.")
        gaps = [(acc[k][x]["ignores"]["top1"][j] - acc[k][x]["knows"]["top1"][j], k, x, eps[j])
                for k in defended for x in result.attacks for j in positive]
        top = max(gaps)
        mean = sum(g[0] for g in gaps) / len(gaps)
        where = (f"{ROW_TITLES[top[1]]}, {name_of(top[2])} at eps {eps_fraction_text(top[3])}")
        text += (f" Over all {len(gaps)} defended measurements, knowing the defense lowers accuracy by "
                 f"{100 * mean:.1f} points on average and by at most {100 * top[0]:.1f} points ({where}).")
        if mean >= 0.03:
            text += (" Much of the robustness the paper's attacker sees comes from hiding the gradient, not from "
                     "removing the adversarial direction.")
        elif top[0] > 0.05:
            text += (" The gap is small on average; where it is largest, part of the robustness the paper's "
                     "attacker sees comes from hiding the gradient.")
        else:
            text += (" The gap is small everywhere: the halftone's benefit here does not come from hiding the "
                     "gradient from this attacker.")
        text += (" BPDA with the identity is the simplest attacker who knows the defense, so an accuracy measured "
                 "against it is an upper bound, not a guarantee.")
    else:
        text += " Turn on the adaptive attacker (BPDA) to see whether this holds when the attacker knows the defense."
    if clean_best < clean_none - 0.005:
        text += f" The price on clean images: {percent(clean_best)} instead of {percent(clean_none)}."
    return text


def name_of(attack: str) -> str:
    """FGSM, I-FGSM, PGD."""
    return {"pgd": "PGD", "ifgsm": "I-FGSM", "fgsm": "FGSM"}.get(attack, attack)


# --------------------------------------------------------------------------- one image, four views


@dataclass
class Panels:
    """Clean, halftone(clean), adversarial and halftone(adversarial) of one image, each with its top-k.

    ``clean`` and ``adversarial`` are classified by the undefended model; the halftones by
    the chosen row's model. ``adversarial`` was crafted on the undefended model (attacker
    ignores the defense) or through the row's pipeline with BPDA (+ EOT) (attacker knows it).
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
                 callback: Callable | None = None) -> Panels:
    """The four views of one image ``x`` (1, C, H, W) for the Defense lab; ``y``: its true class (None: the
    undefended model's clean prediction). ``callback`` is the attack's per-step callback (True cancels)."""
    t0 = time.perf_counter()
    dev = pick_device(device)
    check_images(x, "image_panels")
    if x.shape[0] != 1:
        raise AdvlabError("image_panels takes one image.")
    if row == "none":
        raise AdvlabError("Choose a defended row: halftone-input, halftone-trained or hybrid.")
    defense = make_defense(method, bayer_size=bayer_size, seed=seed)
    rows = {r.key: r for r in build_rows(model_name, defense, device=dev, eot=eot, trained=trained)}
    if row not in rows:
        raise AdvlabError(f"No {ROW_TITLES.get(row, row)} is available for {model_name}; choose one of "
                          f"{', '.join(k for k in rows if k != 'none')}.")
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
                 seed: int = 0, device: str | torch.device = "cpu", k: int = 5) -> list[dict]:
    """The defense at inference only on the bundled photos: top-k before and after, one dict per photo
    (the keys say ``halftone`` for the defended view)."""
    dev = pick_device(device)
    spec = models.get_spec(model_name)
    model = models.load(model_name, dev)
    defense = make_defense(method, bayer_size=bayer_size, seed=seed)
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


def saved_path(model_name: str, method: str) -> Path:
    """Where the shipped measurement of ``model_name`` behind halftone ``method`` lives (it may not exist)."""
    return SAVED_DIR / f"{model_name}-{method}.json"


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
    if not isinstance(result["defense"], dict) or "method" not in result["defense"]:
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


def saved_table(model_name: str, method: str) -> DefenseTable | None:
    """The shipped measurement of ``model_name`` behind halftone ``method``, or None (none, or not valid)."""
    path = saved_path(model_name, method)
    if not path.is_file():
        return None
    try:
        result = load_saved(path)
    except AdvlabError:
        return None
    return result if result.model == model_name and result.defense["method"] == method else None


def saved_tables() -> dict[tuple[str, str], DefenseTable]:
    """Every valid shipped measurement: (model, method) -> table."""
    out = {}
    for path in sorted(SAVED_DIR.glob("*.json")):
        try:
            result = load_saved(path)
        except AdvlabError:
            continue
        out[(result.model, result.defense["method"])] = result
    return out
