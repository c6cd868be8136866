"""Data poisoning against frozen features: label flip, poison frogs and adversarial poisoning.

Chan-Hon-Tong, *Features which are robust to adversarial attacks are also robust to several
poisoning attacks* (IPTA 2020; ``shared/papers/poisoning-robust-features.txt``). The setting of its
Figure 2: a feature extractor ``f`` trained on external data, naively or with adversarial training,
is frozen; a linear SVM (scikit-learn ``LinearSVC``) is trained on ``f``'s features of a task the
extractor never saw, once on clean and once on poisoned training data.

Here the extractors are the shipped Fashion-MNIST networks ``fmnist-naive``, ``fmnist-fgsm`` and
``fmnist-pgd`` (penultimate layer, 128 values; the paper uses SVHN networks for MNIST), and the task
is scikit-learn's 8x8 digits drawn as MNIST draws its digits: scaled to 20x20 and centred in 28x28
(the paper's MNIST). Poison frogs need two classes: digits 0 and 1, as in the paper (Sec. 3.2). The
paper checks its attacks on ImageNet features first (Sec. 4.1); ``imagenet`` does the same with
EfficientNet-Lite0's penultimate layer (1,280 values) on a real binary task of two ImageNet-1k categories,
Fashion-MNIST's Sandal against Sneaker ("sandal", "running shoe"), drawn back as the product photos they were
made from (see :func:`render_photo`). Shafahi et al. used dog against fish photos on InceptionV3; no labelled
ImageNet photos can be installed offline here, so this is the departure, stated in every row's task description.

The three attacks (Sec. 2.2), all with perturbations in the L-infinity ball, as the paper's FGSM
and PGD updates (``eps * sign(grad)``) and its budgets (``eps = 7/255`` on MNIST) imply:

* **LF** (label flip): a share of the training labels is replaced by uniformly random labels.
* **PF** (poison frog, Shafahi et al. 2018): for a target test image ``x_t`` of one class, one
  training image ``x`` of the other class becomes ``z = argmin_{||z - x||_inf <= eps}
  ||f(z) - f(x_t)||`` (FGSM-style: one signed step; PGD-style: projected signed steps); the SVM is
  retrained with ``(z, label of x)``; the attack succeeds if the target is now misclassified.
* **AP** (adversarial poisoning, Chan-Hon-Tong 2018): a clean SVM ``w_c`` and a proxy ``w_t``;
  every chosen training image moves within eps so that its feature moves along ``w_t - w_c``
  (``max_{||z - x|| <= eps} (w_t - w_c)^T f(z)``), which rotates the retrained SVM towards the proxy.

Features are divided by one constant (the mean L2 norm of the clean training features), so that the
SVM's ``C`` means the same for every extractor; the constant is part of the frozen extractor.
Everything is seeded; features of images an attack left unchanged are reused, so eps 0 (or share 0)
reproduces the clean SVM exactly.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advcore import attacks, datasets, features, models
from advcore.device import pick_device
from advcore.errors import AdvlabError
from advcore.paths import MODELS_DIR
from advcore.progress import ProgressFn, report

# --------------------------------------------------------------------------- the setting

KINDS = ("naive", "fgsm", "pgd", "imagenet", "split-naive", "split-pgd")
ROBUST_ORDER = ("naive", "fgsm", "pgd")  # the paper's three kinds of features, least to most robust
#: The split setting (issue 16): small CNNs trained on Fashion-MNIST classes 0-4 only (``bench/poisoning_split.py``),
#: read from cards outside the zoo's top folder so no other lab lists them; the task is two classes of the other half.
SPLIT_CARDS = {"split-naive": "fmnist04-naive", "split-pgd": "fmnist04-pgd"}
SPLIT_MODELS_DIR = MODELS_DIR / "poisoning"
SPLIT_TASK = "fmnist-57"  # Sandal against Sneaker, classes the split extractors never saw
SPLIT_TRAIN_PER_CLASS, SPLIT_TEST_PER_CLASS = 500, 100
#: Feature kind -> (dataset, model role) of its extractor (:func:`extractor`).
EXTRACTORS = {"naive": ("fashion-mnist", "naive"), "fgsm": ("fashion-mnist", "fgsm"), "pgd": ("fashion-mnist", "pgd"),
              "imagenet": ("imagenet", "naive")}


def extractor(kind: str) -> str:
    """The model whose features the ``kind`` rows use: found by dataset and role, or a split-setting card."""
    if kind in SPLIT_CARDS:
        return SPLIT_CARDS[kind]
    dataset, role = EXTRACTORS[kind]
    name = models.with_role(dataset, role)
    if name is None:
        raise AdvlabError(f"No {role} {dataset} model is registered for the {kind} features.")
    return name
KIND_TITLES = {
    "naive": "naive (standard training)",
    "fgsm": "FGSM-trained",
    "pgd": "PGD-trained",
    "imagenet": "ImageNet (EfficientNet-Lite0)",
    "split-naive": "naive, trained on Fashion-MNIST classes 0-4",
    "split-pgd": "PGD-trained, on Fashion-MNIST classes 0-4",
}
#: A kind's place in the paper's comparison: its training (naive, fgsm, pgd) and its group of comparable rows.
KIND_ROLE = {"naive": "naive", "fgsm": "fgsm", "pgd": "pgd", "imagenet": "naive", "split-naive": "naive",
             "split-pgd": "pgd"}
KIND_GROUP = {"naive": "digits", "fgsm": "digits", "pgd": "digits", "imagenet": "imagenet", "split-naive": "split",
              "split-pgd": "split"}
ATTACK_TITLES = {"lf": "label flip", "pf": "poison frog", "ap": "adversarial poisoning"}
METHODS = ("fgsm", "pgd")
DEFAULT_EPS = 7 / 255  # the paper's budget on MNIST (Sec. 3.2) and for PF on CIFAR (Table 2)
DEFAULT_SHARE = 0.02  # LF: the paper's 2% random labels (Table 3)
DEFAULT_STEPS = 10  # AP's PGD steps
PF_STEPS = 200  # PF: signed steps with a decaying step size converge in 100-200 steps (issue 16)
SCHEDULES = ("decay", "constant")  # step size: alpha (1 - t/T), or Madry's constant 2.5 eps / T
BASE_CHOICES = ("random", "nearest")  # PF bases: random, or the other class's images nearest the target's feature
DEFAULT_C = 1.0  # LinearSVC's default, on the raw (unscaled) features, as the paper trains it (Sec. 3.2)
MAX_TRIALS = 1000
MAX_STEPS = 500
MAX_POISONS = 64  # the author's code replaces a whole batch of 64 bases

# The paper's own numbers (VGG13 features; MNIST with SVHN-trained, CIFAR-10 with CIFAR-100-trained features).
# Quoted for comparison, never measured here.
PAPER_TABLE1 = {"naive": {"MNIST": 0.68, "CIFAR": 0.24}, "fgsm": {"MNIST": 0.93, "CIFAR": 0.30},
                "pgd": {"MNIST": 0.95, "CIFAR": 0.34}}  # accuracy under AP (Table 1)
PAPER_TABLE2 = {"naive": 0.85, "fgsm": 0.53, "pgd": 0.16}  # PF success over 100 trials, CIFAR, eps 7/255 (Table 2)
PAPER_TABLE3 = {"naive": {"MNIST": -0.02, "CIFAR": -0.07},
                "pgd": {"MNIST": -0.02, "CIFAR": -0.11}}  # accuracy gap under LF, 2% random labels (Table 3)
TIE_POINTS = 0.01  # accuracies closer than one point count as the same in the verdict
PAPER_IMAGENET_PF = 0.73  # PF success on ImageNet features, the paper's reimplementation (Sec. 4.1)

DIGIT_BOX, DIGIT_CANVAS = 20, 28  # MNIST: digits scaled into a 20x20 box, centred on a 28x28 canvas
#: The split setting (issue 16): extractors trained on Fashion-MNIST classes 0-4 only, task on two of 5-9.
SPLIT_EXTRACTOR_CLASSES = (0, 1, 2, 3, 4)
SPLIT_EXTRACTOR_CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
#: ImageNet features' task (issue 16): the split task's two classes, both ImageNet-1k categories, drawn as photos.
IMAGENET_TASK = "fmnist-57-photo"
IMAGENET_TRAIN_PER_CLASS, IMAGENET_TEST_PER_CLASS = 200, 50  # the first of the split task's images (CPU cost)
IMAGENET_CATEGORIES = ("sandal", "running shoe")  # the ImageNet-1k names of Sandal and Sneaker
IMAGENET_SIZE = 224
IMAGENET_DEPARTURE = ("departure from the paper: Shafahi et al.'s transfer setting is dog against fish ImageNet "
                      "photos on InceptionV3 (the author's code: ImageNet features); here EfficientNet-Lite0 on "
                      "Fashion-MNIST's 28x28 greyscale product photos of two ImageNet categories, upsampled, since no "
                      "labelled ImageNet photos can be installed offline")


def check_kinds(kinds: Sequence[str] | str) -> list[str]:
    """Feature kinds from a list or ``"naive,fgsm,pgd"``; unknown or repeated names are refused."""
    items = [k.strip() for k in kinds.split(",")] if isinstance(kinds, str) else [str(k).strip() for k in kinds]
    items = [k for k in items if k]
    if not items:
        raise AdvlabError(f"Choose at least one kind of features: {', '.join(KINDS)}.")
    for k in items:
        if k not in KINDS:
            raise AdvlabError(f"Unknown kind of features {k!r}; choose from {', '.join(KINDS)}.")
    if len(set(items)) != len(items):
        raise AdvlabError(f"A kind of features is listed twice: {', '.join(items)}.")
    return items


def check_eps(eps: float) -> float:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps)) or not 0 <= eps <= 1:
        raise AdvlabError(f"eps must be between 0 and 1 (pixel units, L-infinity), got {eps}.")
    return float(eps)


def check_share(share: float, name: str = "share") -> float:
    if not (isinstance(share, (int, float)) and math.isfinite(share)) or not 0 <= share <= 1:
        raise AdvlabError(f"The {name} must be between 0 and 1, got {share}.")
    return float(share)


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise AdvlabError(f"Unknown {what} {value!r}; choose {' or '.join(choices)}.")
    return value


def check_method(method: str) -> str:
    return _check_choice(method, METHODS, "crafting method")


def check_steps(steps: int) -> int:
    if not 1 <= int(steps) <= MAX_STEPS:
        raise AdvlabError(f"steps must be between 1 and {MAX_STEPS}, got {steps}.")
    return int(steps)


def check_schedule(schedule: str) -> str:
    return _check_choice(schedule, SCHEDULES, "step schedule")


def check_poisons(poisons: int) -> int:
    if not isinstance(poisons, (int, np.integer)) or not 1 <= int(poisons) <= MAX_POISONS:
        raise AdvlabError(f"poisons per target must be a whole number from 1 to {MAX_POISONS}, got {poisons}.")
    return int(poisons)


def check_base_choice(choice: str) -> str:
    return _check_choice(choice, BASE_CHOICES, "base choice")


def check_c(C: float) -> float:
    if not (isinstance(C, (int, float)) and math.isfinite(C)) or C <= 0:
        raise AdvlabError(f"The SVM's C must be a positive number, got {C}.")
    return float(C)


def _report(progress: ProgressFn | None, stage: str, step: int, total: int, **info: object) -> None:
    report(progress, stage, step, total, info, what="poisoning run")



# --------------------------------------------------------------------------- the results


def _plain(value):
    """A field's JSON value: nested results through their ``to_dict``, lists copied."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Record:
    """``to_dict``: every field, in declaration order (the JSON's key order)."""

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class PoisoningRow(_Record):
    """One kind of features' row of a table: the frozen extractor and task (:meth:`FeatureSet.describe`); the
    attack's measurements are the subclass's fields."""

    kind: str
    extractor: str
    layer: str
    task: str
    task_description: str
    feature_dim: int
    train_images: int
    test_images: int
    feature_scale: float


@dataclass(frozen=True)
class LabelFlipRun(_Record):
    """One seed of label flip: labels drawn, labels that actually changed, accuracy of the retrained SVM."""

    seed: int
    flipped: int
    changed: int
    poisoned_accuracy: float


@dataclass(frozen=True)
class LabelFlipRow(PoisoningRow):
    """:func:`label_flip` on one kind of features, averaged over ``runs``."""

    attack: str
    share: float
    flipped: int
    repeats: int
    C: float
    clean_accuracy: float
    poisoned_accuracy: float
    gap: float
    runs: list[LabelFlipRun]
    seconds: float


@dataclass(frozen=True)
class FrogTrial(_Record):
    """One poison frog trial: target and base (indices, labels), the retrained SVM's prediction, the target's
    margin and the poison's feature distance to the target before and after crafting."""

    target: int
    target_label: int
    base: int
    base_label: int
    prediction: int
    success: bool
    margin_before: float
    margin_after: float
    distance_before: float
    distance_after: float
    base_target_distance: float
    linf: float
    bases: list[int] = field(default_factory=list)  # every poison's base (``base`` is the first)
    neighbour_distance: float = 0.0  # target to its nearest training image of its own class (scaled features)


@dataclass(frozen=True)
class PoisonFrogRow(PoisoningRow):
    """:func:`poison_frog` on one kind of features: the share of ``trial_results`` that succeeded."""

    attack: str
    eps: float
    method: str
    steps: int
    alpha: float
    schedule: str
    poisons: int
    base_choice: str
    C: float
    C_scaled: float
    seed: int
    clean_accuracy: float
    trials: int
    successes: int
    success_rate: float
    mean_distance_before: float
    mean_distance_after: float
    mean_neighbour_distance: float
    closer_than_neighbour: int
    mean_margin_before: float
    mean_margin_after: float
    trial_results: list[FrogTrial]
    seconds: float


@dataclass(frozen=True)
class AdversarialPoisoningRow(PoisoningRow):
    """:func:`adversarial_poisoning` on one kind of features."""

    attack: str
    eps: float
    share: float
    moved: int
    method: str
    steps: int
    alpha: float
    C: float
    seed: int
    clean_accuracy: float
    proxy_accuracy: float
    poisoned_accuracy: float
    gap: float
    mean_feature_shift: float
    objective_before: float
    objective_after: float
    seconds: float


@dataclass(frozen=True)
class PaperNumbers:
    """The paper's own table for an attack (:func:`paper_numbers`): ``values`` by kind of features."""

    table: int
    what: str
    values: dict
    eps: dict[str, float] | None = None  # AP: the paper's budgets
    imagenet: float | None = None  # PF: the paper's success rate on ImageNet features

    def to_dict(self) -> dict:
        out: dict = {"table": self.table, "what": self.what}
        if self.eps is not None:
            out["eps"] = dict(self.eps)
        out["values"] = self.values
        if self.imagenet is not None:
            out["imagenet"] = self.imagenet
        return out


@dataclass(frozen=True)
class PoisoningTable:
    """What :func:`run` measured: the settings, one row per kind of features, the paper's numbers and the
    :func:`verdict`; :meth:`to_dict` is the JSON ``python -m advcore poison --json`` writes.

    ``share`` and ``repeats`` (LF), ``trials`` and ``pair`` (PF), ``share`` (AP) are None, and left out of the
    JSON, for the other attacks."""

    attack: str
    title: str
    kinds: list[str]
    device: str
    eps: float
    eps_255: float
    norm: str
    method: str
    steps: int
    C: float
    seed: int
    rows: list[LabelFlipRow] | list[PoisonFrogRow] | list[AdversarialPoisoningRow]
    paper: PaperNumbers
    seconds: float
    share: float | None = None
    repeats: int | None = None
    trials: int | None = None
    pair: str | None = None
    poisons: int | None = None
    base_choice: str | None = None
    schedule: str | None = None
    verdict: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> PoisoningTable:
        """A table again from its :meth:`to_dict` (a saved result; rows without their trials keep an empty list)."""
        row_cls = {"lf": LabelFlipRow, "pf": PoisonFrogRow, "ap": AdversarialPoisoningRow}[d["attack"]]
        inner = {"lf": ("runs", LabelFlipRun), "pf": ("trial_results", FrogTrial)}.get(d["attack"])
        names = {f.name for f in fields(row_cls)}
        rows = []
        for r in d["rows"]:
            kw = {k: v for k, v in r.items() if k in names}
            if inner is not None:
                kw[inner[0]] = [inner[1](**x) for x in r.get(inner[0], [])]
            rows.append(row_cls(**kw))
        p = d["paper"]
        paper = PaperNumbers(p["table"], p["what"], p["values"], p.get("eps"), p.get("imagenet"))
        top = {f.name for f in fields(cls)} - {"rows", "paper"}
        return cls(rows=rows, paper=paper, **{k: v for k, v in d.items() if k in top})

    def row(self, kind: str):
        """The row of ``kind``."""
        return next(r for r in self.rows if r.kind == kind)

    def to_dict(self) -> dict:
        out = {"attack": self.attack, "title": self.title, "kinds": list(self.kinds), "device": self.device,
               "eps": self.eps, "eps_255": self.eps_255, "norm": self.norm, "method": self.method,
               "steps": self.steps, "C": self.C, "seed": self.seed, "rows": [r.to_dict() for r in self.rows],
               "paper": self.paper.to_dict(), "seconds": self.seconds}
        out["C_units"] = "LinearSVC's C on the raw features (the paper's; C_scaled in a row: on features / scale)"
        for k in ("share", "repeats", "trials", "pair", "poisons", "base_choice", "schedule"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        out["verdict"] = self.verdict
        return out


# --------------------------------------------------------------------------- task data


@dataclass
class PoisonTask:
    """Training and test images (``float32`` pixels in [0, 1], the extractor's input size) with labels."""

    name: str
    classes: list[str]
    x_train: torch.Tensor | RenderedImages
    y_train: np.ndarray
    x_test: torch.Tensor | RenderedImages
    y_test: np.ndarray
    description: str


def digits_as_mnist(x: torch.Tensor) -> torch.Tensor:
    """scikit-learn's 8x8 digits (``uint8 (N,1,8,8)``) drawn as MNIST draws its digits: scaled
    bilinearly into a 20x20 box and centred on a black 28x28 canvas; ``float32`` in [0, 1]."""
    xf = datasets.to_float(x)
    big = F.interpolate(xf, size=(DIGIT_BOX, DIGIT_BOX), mode="bilinear", align_corners=False)
    pad = (DIGIT_CANVAS - DIGIT_BOX) // 2
    return F.pad(big, (pad, pad, pad, pad)).clamp_(0.0, 1.0).contiguous()


def render_photo(x: torch.Tensor, size: int = IMAGENET_SIZE) -> torch.Tensor:
    """Fashion-MNIST images (``float32 (N,1,28,28)`` in [0, 1]) drawn as the product photos they were made from:
    intensities negated back (Fashion-MNIST negated them: dark objects on white), grey copied to RGB, scaled
    bilinearly to ``size``; ``(N, 3, size, size)`` in [0, 1]."""
    big = F.interpolate(1.0 - x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return big.expand(-1, 3, -1, -1).contiguous()


class RenderedImages:
    """Images kept small and drawn at the extractor's input size only when indexed (1,000 images at 3x224x224
    would hold 600 MB in a process that serves many sessions): ``images[i]`` one image, ``images[idx]`` (a
    slice, list or array) a batch, as a tensor would answer."""

    def __init__(self, source: torch.Tensor, render: Callable[[torch.Tensor], torch.Tensor]):
        self.source, self.render = source, render

    def __len__(self) -> int:
        return len(self.source)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.source), *self.render(self.source[:1]).shape[1:]))

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return self.render(self.source[int(idx):int(idx) + 1])[0]
        if isinstance(idx, list):
            idx = torch.as_tensor(idx, dtype=torch.long)
        return self.render(self.source[idx])


def _fashion_pair(a: int, b: int, train_per_class: int, test_per_class: int) -> tuple:
    """The first ``train_per_class`` official training and ``test_per_class`` test images of Fashion-MNIST classes
    ``a`` and ``b`` (``float32`` in [0, 1]), labels 0 for ``a`` and 1 for ``b``."""
    out = []
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        x, y = datasets.load_fashion_mnist(split)
        idx = np.concatenate([np.flatnonzero(y.numpy() == c)[:per] for c in (a, b)])
        out += [datasets.to_float(x[torch.from_numpy(idx)]).contiguous(), (y.numpy()[idx] == b).astype(np.int64)]
    return tuple(out)


@lru_cache(maxsize=8)
def load_task(name: str, size: int = DIGIT_CANVAS) -> PoisonTask:
    """A task the extractors never saw: ``"digits"`` (10 classes, for LF and AP), ``"digits-01"``
    (0 against 1, for PF), :data:`SPLIT_TASK` (the split extractors') or :data:`IMAGENET_TASK` (ImageNet features';
    ``size``: their input side). Cached: do not modify it."""
    pair = re.fullmatch(r"digits-(\d)(\d)", name)
    if name == "digits" or (pair and pair[1] != pair[2]):
        xtr, ytr = datasets.load_digits_split("train")
        xte, yte = datasets.load_digits_split("test")
        ytr, yte = ytr.numpy(), yte.numpy()
        classes = list(datasets.DIGITS_CLASSES)
        if pair:
            a, b = int(pair[1]), int(pair[2])
            keep_tr, keep_te = np.isin(ytr, (a, b)), np.isin(yte, (a, b))
            xtr, ytr = xtr[torch.from_numpy(keep_tr)], (ytr[keep_tr] == b).astype(np.int64)
            xte, yte = xte[torch.from_numpy(keep_te)], (yte[keep_te] == b).astype(np.int64)
            classes = [classes[a], classes[b]]
        what = "scikit-learn digits" + (f" {pair[1]} and {pair[2]}" if pair else "")
        desc = (f"{what}, 8x8 scaled into 20x20 and centred in 28x28 as MNIST is drawn: {len(ytr)} training and "
                f"{len(yte)} test images (the 500 held-out digits of advcore.datasets, seed 0)")
        return PoisonTask(name, classes, digits_as_mnist(xtr), ytr.astype(np.int64), digits_as_mnist(xte),
                          yte.astype(np.int64), desc)
    if name in (SPLIT_TASK, IMAGENET_TASK):
        a, b = 5, 7
        classes = [datasets.FASHION_MNIST_CLASSES[c] for c in (a, b)]
        if name == SPLIT_TASK:
            xtr, ytr, xte, yte = _fashion_pair(a, b, SPLIT_TRAIN_PER_CLASS, SPLIT_TEST_PER_CLASS)
            desc = (f"Fashion-MNIST {classes[0]} against {classes[1]}, classes the split extractors never saw: the "
                    f"first {SPLIT_TRAIN_PER_CLASS} official training and first {SPLIT_TEST_PER_CLASS} official test "
                    "images of each")
            return PoisonTask(name, classes, xtr, ytr, xte, yte, desc)
        xtr, ytr, xte, yte = _fashion_pair(a, b, IMAGENET_TRAIN_PER_CLASS, IMAGENET_TEST_PER_CLASS)
        desc = (f"Fashion-MNIST {classes[0]} against {classes[1]}, two ImageNet-1k categories "
                f"({' and '.join(repr(c) for c in IMAGENET_CATEGORIES)}): the first {IMAGENET_TRAIN_PER_CLASS} "
                f"official training and first {IMAGENET_TEST_PER_CLASS} official test images of each, drawn as the "
                f"product photos they were made from (intensities negated back, grey to RGB, 28x28 scaled "
                f"bilinearly to {size}x{size}); {IMAGENET_DEPARTURE}")
        draw = lambda x: render_photo(x, size)  # noqa: E731
        return PoisonTask(name, classes, RenderedImages(xtr, draw), ytr, RenderedImages(xte, draw), yte, desc)
    raise AdvlabError(f"Unknown poisoning task {name!r}; choose digits, digits-AB (two different digits, "
                      f"e.g. digits-01), {SPLIT_TASK} or {IMAGENET_TASK}.")


def task_for(kind: str, attack: str, pair: str = "01") -> str:
    """The task of an attack on a kind of features: PF is binary (digits 0 and 1 as in the paper, or another
    ``pair``), LF and AP use all ten digits; ImageNet features always get :data:`IMAGENET_TASK`."""
    if kind == "imagenet":
        return IMAGENET_TASK
    if kind in SPLIT_CARDS:
        return SPLIT_TASK
    if attack == "pf":
        if not re.fullmatch(r"\d\d", pair) or pair[0] == pair[1]:
            raise AdvlabError(f"The poison frogs' pair of digits must be two different digits such as 01, got "
                              f"{pair!r}.")
        return f"digits-{pair}"
    return "digits"


# --------------------------------------------------------------------------- frozen features


@dataclass
class FeatureSet:
    """A frozen extractor and its (scaled) features of a task's clean training and test images."""

    kind: str
    model_name: str
    layer: str
    task: PoisonTask
    model: nn.Module = field(repr=False)
    device: torch.device
    scale: float  # the mean L2 norm of the clean training features (of all ten digits); every feature is divided by it
    f_train: np.ndarray = field(repr=False)  # (N, D) float64
    f_test: np.ndarray = field(repr=False)

    def svm(self, f: np.ndarray, y: np.ndarray, C: float = DEFAULT_C) -> ScaledSVM:
        """:func:`train_svm` with the paper's stiffness: ``LinearSVC(C)`` fitted on the raw features ``f * scale``
        (C on scaled features would be ``C * scale**2``), read on scaled features."""
        return ScaledSVM(train_svm(f * self.scale, y, C=C), self.scale)

    def features_of(self, x: torch.Tensor, batch_size: int = 128) -> np.ndarray:
        """Scaled features of images ``x`` (no gradients)."""
        f = features.extract(self.model, x.to(self.device), self.layer, batch_size=batch_size)
        return f.double().cpu().numpy() / self.scale

    def describe(self) -> dict:
        return {"kind": self.kind, "extractor": self.model_name, "layer": self.layer, "task": self.task.name,
                "task_description": self.task.description, "feature_dim": int(self.f_train.shape[1]),
                "train_images": int(len(self.task.y_train)), "test_images": int(len(self.task.y_test)),
                "feature_scale": float(self.scale)}


_FEATURE_CACHE: dict[tuple, FeatureSet] = {}


def feature_set(kind: str, task: str, *, device: str | torch.device = "cpu", layer: str | None = None,
                progress: ProgressFn | None = None) -> FeatureSet:
    """The frozen ``kind`` extractor with its features of ``task``; cached per (kind, task, device, layer)."""
    check_kinds([kind])
    dev = pick_device(device)
    name = extractor(kind)
    key = (kind, task, str(dev), layer)
    if key in _FEATURE_CACHE:
        return _FEATURE_CACHE[key]
    if kind in SPLIT_CARDS:
        from advcore.models import zoo

        card = SPLIT_MODELS_DIR / f"{name}.json"
        spec, model = zoo.load_from_card(card, dev)
    else:
        spec, model = models.get_spec(name), None
    t = load_task(task, spec.input_size[1])
    if t.x_train.shape[1:] != torch.Size(spec.input_size):
        raise AdvlabError(f"The {task} task's images are {tuple(t.x_train.shape[1:])}, but {name} takes "
                          f"{spec.input_size}.")
    pair = re.fullmatch(r"digits-(\d)(\d)", task)
    if pair:  # the pair's images are a subset of the ten-class task's, in the same order: reuse its features
        full = feature_set(kind, "digits", device=dev, layer=layer, progress=progress)
        a, b = int(pair[1]), int(pair[2])
        keep_tr, keep_te = np.isin(full.task.y_train, (a, b)), np.isin(full.task.y_test, (a, b))
        fs = FeatureSet(kind, name, full.layer, t, full.model, dev, full.scale, full.f_train[keep_tr],
                        full.f_test[keep_te])
        _FEATURE_CACHE[key] = fs
        return fs
    model = models.load(name, dev) if model is None else model
    layer_name = features.check_layer(model, layer)
    _report(progress, f"{kind} features", 0, 1)
    batch = 16 if spec.input_size[1] > 64 else 512
    tr, te = (_extract(model, x, layer_name, dev, batch) for x in (t.x_train, t.x_test))
    scale = float(np.linalg.norm(tr, axis=1).mean()) or 1.0
    fs = FeatureSet(kind, name, layer_name, t, model, dev, scale, tr / scale, te / scale)
    _report(progress, f"{kind} features", 1, 1)
    _FEATURE_CACHE[key] = fs
    return fs


def _extract(model: nn.Module, x: torch.Tensor | RenderedImages, layer: str, dev: torch.device,
             batch: int) -> np.ndarray:
    """Features of every image of ``x``, drawn (:class:`RenderedImages`) and moved to ``dev`` a chunk at a time."""
    chunk = 8 * batch
    parts = [features.extract(model, x[i:i + chunk].to(dev), layer, batch_size=batch).double().cpu().numpy()
             for i in range(0, len(x), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


# --------------------------------------------------------------------------- the SVM


def train_svm(f: np.ndarray, y: np.ndarray, *, C: float = DEFAULT_C, seed: int = 0):
    """A linear SVM on features (``LinearSVC``, squared hinge, one-vs-rest for several classes)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=check_c(C), max_iter=20000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(f, y)
    return svm


class ScaledSVM:
    """A LinearSVC fitted on raw features, read on features divided by ``scale``: ``coef_`` is in scaled units
    (``w_raw * scale``), so ``coef_ . f_scaled + intercept_`` is the raw decision value."""

    def __init__(self, inner, scale: float):
        self.inner, self.scale = inner, float(scale)
        self.coef_ = np.asarray(inner.coef_, dtype=np.float64) * self.scale
        self.intercept_ = np.asarray(inner.intercept_, dtype=np.float64)

    def predict(self, f: np.ndarray) -> np.ndarray:
        return self.inner.predict(np.asarray(f) * self.scale)

    def decision_function(self, f: np.ndarray) -> np.ndarray:
        return self.inner.decision_function(np.asarray(f) * self.scale)


def accuracy(svm, f: np.ndarray, y: np.ndarray) -> float:
    return float((svm.predict(f) == y).mean())


# --------------------------------------------------------------------------- crafting in input space


def default_alpha(eps: float, method: str, steps: int, schedule: str) -> float:
    """The first step size: ``eps`` for FGSM; ``2.5 eps / steps`` (Madry et al.) for the constant schedule;
    ``eps / 4`` for the decaying one (its steps sum to ``eps T / 8``, then shrink to fine-tune)."""
    if method == "fgsm":
        return eps
    return 2.5 * eps / steps if schedule == "constant" else eps / 4


def _decaying(model: nn.Module, x: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor], *, eps: float,
              steps: int, alpha: float, layer: str | None,
              callback: Callable[[int, int], None] | None) -> tuple[torch.Tensor, list[list[float]]]:
    """Signed steps ``z_{t+1} = clip(Proj(z_t - alpha_t sign(grad)))`` with ``alpha_t = alpha (1 - t / steps)``,
    keeping each sample's best iterate (the objective of iterate ``t`` is row ``t``; the last row is the best)."""
    z = x.clone()
    best = x.clone()
    best_val = None
    history: list[list[float]] = []
    for t in range(steps + 1):
        z.requires_grad_(True)
        val = objective(features.activations(model, z, layer))
        grad = torch.autograd.grad(val.sum(), z)[0] if t < steps else None
        with torch.no_grad():
            v = val.detach()
            better = torch.ones_like(v, dtype=torch.bool) if best_val is None else v < best_val
            best_val = v.clone() if best_val is None else torch.where(better, v, best_val)
            best[better] = z.detach()[better]
            history.append(best_val.cpu().double().tolist())
            if grad is None:
                break
            a_t = alpha * (1 - t / steps)
            z = (x + (z.detach() - a_t * grad.sign() - x).clamp_(-eps, eps)).clamp_(0.0, 1.0)
        if callback is not None:
            callback(t + 1, steps)
    return best, history


def craft(model: nn.Module, x: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor], *, eps: float,
          method: str = "pgd", steps: int = DEFAULT_STEPS, alpha: float | None = None, layer: str | None = None,
          callback: Callable[[int, int], None] | None = None,
          schedule: str = "constant") -> tuple[torch.Tensor, list[list[float]]]:
    """Minimise ``objective(f(z))`` (one value per sample) over ``||z - x||_inf <= eps``, ``z`` in [0, 1].

    FGSM-style: ``z = x - eps sign(grad)`` (one step). PGD-style: ``z_{t+1} = Proj(z_t - alpha sign(grad))``
    from ``z_0 = x``, ``alpha = 2.5 eps / steps`` by default (Madry et al.). Batched; returns the
    poisons and the objective of every iterate (``steps + 1`` rows of one value per sample).
    The steps are the attacks' own loop (:func:`advcore.attacks.iterative_attack`): a targeted run
    that descends ``objective`` of the layer's activations, keeping the point ``z`` between steps.
    """
    check_eps(eps)
    check_method(method)
    check_schedule(schedule)
    n_steps = 1 if method == "fgsm" else check_steps(steps)
    step = default_alpha(eps, method, n_steps, schedule) if alpha is None or method == "fgsm" else float(alpha)
    x = x.detach()
    if eps == 0:  # nothing can move: one evaluation stands for every iterate
        with torch.no_grad():
            value = objective(features.activations(model, x, layer)).cpu().double().tolist()
        return x.clone(), [value] * (n_steps + 1)
    if method == "pgd" and schedule == "decay":
        return _decaying(model, x, objective, eps=eps, steps=n_steps, alpha=step, layer=layer, callback=callback)
    res = attacks.iterative_attack(
        lambda z: features.activations(model, z, layer), x, None, attacks.SteepestAscent(), eps=eps, alpha=step,
        steps=n_steps, targeted=True, loss=lambda f, _: objective(f), form="point",
        callback=None if callback is None else lambda info: callback(info.step, info.steps),
    )
    return res.x_adv, res.loss_history.t().cpu().double().tolist()


# --------------------------------------------------------------------------- label flip


def label_flip(fs: FeatureSet, *, share: float = DEFAULT_SHARE, seed: int = 0, repeats: int = 3,
               C: float = DEFAULT_C, progress: ProgressFn | None = None) -> LabelFlipRow:
    """LF: ``round(share * N)`` training labels replaced by uniformly random labels (which may, by chance,
    equal the true ones); the SVM retrained; accuracy on the clean test set. Averaged over ``repeats``
    seeds (``seed``, ``seed + 1``, ...), as the paper averages over runs. The gap is poisoned minus clean."""
    check_share(share)
    if not 1 <= repeats <= 100:
        raise AdvlabError(f"repeats must be between 1 and 100, got {repeats}.")
    t0 = time.perf_counter()
    y = fs.task.y_train
    k = len(fs.task.classes)
    clean = fs.svm(fs.f_train, y, C)
    clean_acc = accuracy(clean, fs.f_test, fs.task.y_test)
    n_flip = int(round(share * len(y)))
    runs = []
    for r in range(repeats):
        _report(progress, f"{fs.kind}: label flip", r, repeats)
        rng = np.random.default_rng(seed + r)
        y_p = y.copy()
        idx = rng.choice(len(y), n_flip, replace=False)
        y_p[idx] = rng.integers(0, k, n_flip)
        svm = clean if n_flip == 0 else fs.svm(fs.f_train, y_p, C)
        runs.append(LabelFlipRun(seed + r, n_flip, int((y_p != y).sum()), accuracy(svm, fs.f_test, fs.task.y_test)))
    _report(progress, f"{fs.kind}: label flip", repeats, repeats)
    poisoned = float(np.mean([r.poisoned_accuracy for r in runs]))
    return LabelFlipRow(**fs.describe(), attack="lf", share=share, flipped=n_flip, repeats=repeats, C=C,
                        clean_accuracy=clean_acc, poisoned_accuracy=poisoned, gap=poisoned - clean_acc, runs=runs,
                        seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- poison frogs


def _distance_to(target_f: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def objective(f: torch.Tensor) -> torch.Tensor:
        return (f - target_f).norm(dim=1)

    return objective


def feature_collision(fs: FeatureSet, base: torch.Tensor, target: torch.Tensor, *, eps: float,
                      method: str = "pgd", steps: int = PF_STEPS, alpha: float | None = None,
                      callback: Callable[[int, int], None] | None = None,
                      schedule: str = "decay") -> tuple[torch.Tensor, np.ndarray]:
    """The poison frogs' crafting: ``z = argmin_{||z - base||_inf <= eps} ||f(z) - f(target)||_2``, batched.

    Returns the poisons and the feature distance (in scaled feature units) of every iterate, ``(steps+1, N)``.
    """
    dev = fs.device
    base, target = base.to(dev), target.to(dev)
    with torch.no_grad():
        target_f = features.activations(fs.model, target, fs.layer)
    z, history = craft(fs.model, base, _distance_to(target_f), eps=eps, method=method, steps=steps, alpha=alpha,
                       layer=fs.layer, callback=callback, schedule=schedule)
    return z, np.asarray(history, dtype=np.float64) / fs.scale


def _retrain_with(fs: FeatureSet, rows: np.ndarray, new_f: np.ndarray, C: float):
    f = fs.f_train.copy()
    f[rows] = new_f
    return fs.svm(f, fs.task.y_train, C)


def pick_trials(fs: FeatureSet, trials: int, seed: int, clean_svm, *, poisons: int = 1,
                base_choice: str = "random") -> list[tuple[int, list[int]]]:
    """``trials`` (target test index, base training indices) pairs: targets the clean SVM gets right (without
    repetition while there are enough), each with ``poisons`` training images of another class as its bases:
    random ones, or (``"nearest"``, the best-base search) those whose clean features are nearest the target's."""
    if not 1 <= trials <= MAX_TRIALS:
        raise AdvlabError(f"trials must be between 1 and {MAX_TRIALS}, got {trials}.")
    check_poisons(poisons)
    check_base_choice(base_choice)
    rng = np.random.default_rng(seed)
    correct = np.flatnonzero(clean_svm.predict(fs.f_test) == fs.task.y_test)
    if len(correct) == 0:
        raise AdvlabError("The clean SVM gets no test image right, so there is no target to poison.")
    targets = rng.choice(correct, trials, replace=trials > len(correct))
    pairs = []
    for t in targets:
        others = np.flatnonzero(fs.task.y_train != fs.task.y_test[t])
        if poisons > len(others):
            raise AdvlabError(f"{poisons} poisons per target, but the other class has {len(others)} training images.")
        if base_choice == "nearest":
            d = np.linalg.norm(fs.f_train[others] - fs.f_test[t], axis=1)
            bases = others[np.argsort(d, kind="stable")[:poisons]]
        else:
            bases = rng.choice(others, poisons, replace=False)
        pairs.append((int(t), [int(b) for b in bases]))
    return pairs


def neighbour_distance(fs: FeatureSet, target: int) -> float:
    """Feature distance from test image ``target`` to its nearest training image of its own class: how close a
    natural image of the target's class already is (a poison nearer than this collides in earnest)."""
    same = fs.f_train[fs.task.y_train == fs.task.y_test[target]]
    return float(np.linalg.norm(same - fs.f_test[target], axis=1).min()) if len(same) else float("nan")


def poison_frog(fs: FeatureSet, *, eps: float = DEFAULT_EPS, trials: int = 20, method: str = "pgd",
                steps: int = PF_STEPS, alpha: float | None = None, C: float = DEFAULT_C, seed: int = 0,
                poisons: int = 1, base_choice: str = "random", schedule: str = "decay",
                batch_size: int = 64, progress: ProgressFn | None = None) -> PoisonFrogRow:
    """PF: ``trials`` poison frog attacks, each with ``poisons`` poison images; the share that misclassify their
    target.

    Each trial crafts its poisons from their bases (:func:`feature_collision`, all aimed at the trial's target;
    crafted in batches of ``batch_size`` images), puts ``(poison, base label)`` in place of each base in the
    training set, retrains the SVM (``LinearSVC(C)`` on raw features, as the paper) and checks the target. A
    poison identical to its base (eps 0) reuses the base's feature. The target's margin is the SVM's decision
    value signed so that it is positive on the target's own side (a success makes it negative). Distances are
    those of the trial's closest poison.
    """
    check_eps(eps)
    check_method(method)
    check_c(C)
    check_schedule(schedule)
    poisons = check_poisons(poisons)
    steps = 1 if method == "fgsm" else check_steps(steps)
    t0 = time.perf_counter()
    clean = fs.svm(fs.f_train, fs.task.y_train, C)
    pairs = pick_trials(fs, trials, seed, clean, poisons=poisons, base_choice=base_choice)
    jobs = [(i, t, b) for i, (t, bases) in enumerate(pairs) for b in bases]  # one row per poison image
    stage = f"{fs.kind}: poison frogs"
    total = len(jobs) * (steps + 1)
    done = 0
    crafted: dict[int, list[tuple[int, np.ndarray | None, float, float, float]]] = {i: [] for i in range(trials)}
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        t_idx = [j[1] for j in chunk]
        b_idx = [j[2] for j in chunk]

        def tick(step: int, n: int, _done: int = done, _k: int = len(chunk)) -> None:
            _report(progress, stage, _done + _k * step, total)

        z, hist = feature_collision(fs, fs.task.x_train[b_idx], fs.task.x_test[t_idx], eps=eps, method=method,
                                    steps=steps, alpha=alpha, callback=tick, schedule=schedule)
        done += len(chunk) * (steps + 1)
        z_cpu = z.cpu()
        changed = [not torch.equal(z_cpu[i], fs.task.x_train[b]) for i, b in enumerate(b_idx)]
        zf = fs.features_of(z_cpu) if any(changed) else None
        for i, (trial, _t, b) in enumerate(chunk):
            crafted[trial].append((b, zf[i] if changed[i] else None, float(hist[0, i]), float(hist[-1, i]),
                                   float((z_cpu[i] - fs.task.x_train[b]).abs().max())))
        _report(progress, stage, done, total)
    out = []
    for i, (t, bases) in enumerate(pairs):
        made = crafted[i]
        moved = [(b, f) for b, f, *_ in made if f is not None]
        if moved:
            svm = _retrain_with(fs, np.array([b for b, _ in moved]), np.vstack([f for _, f in moved]), C)
        else:
            svm = clean
        pred = int(svm.predict(fs.f_test[t:t + 1])[0])
        y_t = int(fs.task.y_test[t])
        sign = 1.0 if y_t == 1 else -1.0  # binary: the decision value is positive for class 1
        closest = min(made, key=lambda m: m[3])
        out.append(FrogTrial(target=t, target_label=y_t, base=bases[0], base_label=int(fs.task.y_train[bases[0]]),
                             prediction=pred, success=pred != y_t,
                             margin_before=sign * float(clean.decision_function(fs.f_test[t:t + 1])[0]),
                             margin_after=sign * float(svm.decision_function(fs.f_test[t:t + 1])[0]),
                             distance_before=closest[2], distance_after=closest[3],
                             base_target_distance=float(np.linalg.norm(fs.f_train[closest[0]] - fs.f_test[t])),
                             linf=max(m[4] for m in made), bases=list(bases),
                             neighbour_distance=neighbour_distance(fs, t)))
        _report(progress, stage, total, total, trial=i + 1)
    successes = sum(r.success for r in out)
    scale2 = fs.scale ** 2
    return PoisonFrogRow(
        **fs.describe(), attack="pf", eps=eps, method=method, steps=steps,
        alpha=default_alpha(eps, method, steps, schedule) if alpha is None or method == "fgsm" else float(alpha),
        schedule=schedule, poisons=poisons, base_choice=base_choice, C=C, C_scaled=C * scale2, seed=seed,
        clean_accuracy=accuracy(clean, fs.f_test, fs.task.y_test), trials=trials, successes=successes,
        success_rate=successes / trials,
        mean_distance_before=float(np.mean([r.distance_before for r in out])),
        mean_distance_after=float(np.mean([r.distance_after for r in out])),
        mean_neighbour_distance=float(np.mean([r.neighbour_distance for r in out])),
        closer_than_neighbour=int(sum(r.distance_after < r.neighbour_distance for r in out)),
        mean_margin_before=float(np.mean([r.margin_before for r in out])),
        mean_margin_after=float(np.mean([r.margin_after for r in out])),
        trial_results=out, seconds=time.perf_counter() - t0)


@dataclass
class FrogExample:
    """One poison frog trial in full: the images, distances, and the 2-D view of the feature space."""

    base: np.ndarray  # (H, W, C) in [0, 1]
    poison: np.ndarray
    target: np.ndarray
    history: list[float]  # feature distance to the target per iterate (the best so far, with the decaying schedule)
    success: bool
    projection: dict
    neighbour_distance: float = 0.0  # target to its nearest same-class training image
    poisons: int = 1


def frog_example(fs: FeatureSet, target: int, base: int | Sequence[int], *, eps: float, method: str = "pgd",
                 steps: int = PF_STEPS, alpha: float | None = None, C: float = DEFAULT_C,
                 schedule: str = "decay") -> FrogExample:
    """One trial of :func:`poison_frog` again (crafting is deterministic), with its images and :func:`projection`;
    ``base``: the trial's bases (one or ``poisons`` of them), all crafted and put in; the closest poison is shown."""
    bases = [int(base)] if isinstance(base, (int, np.integer)) else [int(b) for b in base]
    z, hist = feature_collision(fs, fs.task.x_train[bases], fs.task.x_test[[target] * len(bases)], eps=eps,
                                method=method, steps=steps, alpha=alpha, schedule=schedule)
    z = z.cpu()
    clean = fs.svm(fs.f_train, fs.task.y_train, C)
    changed = [not torch.equal(z[i], fs.task.x_train[b]) for i, b in enumerate(bases)]
    zf = fs.features_of(z) if any(changed) else fs.f_train[bases]
    zf = np.where(np.array(changed)[:, None], zf, fs.f_train[bases])
    poisoned = clean if not any(changed) else _retrain_with(fs, np.array(bases), zf, C)
    success = int(poisoned.predict(fs.f_test[target:target + 1])[0]) != int(fs.task.y_test[target])
    k = int(np.argmin(hist[-1]))

    def img(t: torch.Tensor) -> np.ndarray:
        return t.permute(1, 2, 0).numpy().astype(np.float32)

    return FrogExample(img(fs.task.x_train[bases[k]]), img(z[k]), img(fs.task.x_test[target]), hist[:, k].tolist(),
                       bool(success), projection(fs, clean, poisoned, bases[k], zf[k], target),
                       neighbour_distance=neighbour_distance(fs, target), poisons=len(bases))


def projection(fs: FeatureSet, clean_svm, poisoned_svm, base: int, poison_f: np.ndarray, target: int) -> dict:
    """A 2-D PCA view of a binary task's features (``sklearn.decomposition.PCA`` fitted on the clean training
    features) with both SVMs' boundaries.

    The plane shown is the one through the target's feature spanned by the two principal directions, so the
    target lies on it and its side of each boundary line is exactly its side of that SVM's hyperplane
    (the other points are projected onto the plane and only approximately on their true side).
    """
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(fs.f_train)
    u = pca.components_  # (2, D)
    ft = fs.f_test[target]
    coords = lambda f: (np.atleast_2d(f) - pca.mean_) @ u.T  # noqa: E731
    t2 = coords(ft)[0]

    def line(svm) -> dict:
        w, b = svm.coef_[0], float(svm.intercept_[0])
        # decision on the plane: g(a) = w.ft + b + (a - t2) . (u w)
        g0 = float(w @ ft + b)
        gw = u @ w
        return {"value_at_target": g0, "normal": gw.tolist(), "offset": g0 - float(gw @ t2)}

    return {"train": coords(fs.f_train).tolist(), "train_labels": fs.task.y_train.tolist(),
            "base": coords(fs.f_train[base])[0].tolist(), "poison": coords(poison_f)[0].tolist(),
            "target": t2.tolist(), "target_label": int(fs.task.y_test[target]),
            "classes": list(fs.task.classes), "explained_variance": pca.explained_variance_ratio_.tolist(),
            "clean": line(clean_svm), "poisoned": line(poisoned_svm)}


# --------------------------------------------------------------------------- adversarial poisoning


def proxy_labels(y: np.ndarray, n_classes: int) -> np.ndarray:
    """The proxy model's labels: every class shifted by one (``y + 1 mod K``; two classes: swapped), so
    ``w_t`` is a model that gets every training image wrong, the one the attacker wants ``w_c`` to turn into."""
    return (y + 1) % n_classes


def _coef(svm, n_classes: int) -> np.ndarray:
    """``(K, D)`` one-vs-rest weights; binary LinearSVC's single row ``w`` becomes ``(-w, w)``."""
    w = np.asarray(svm.coef_, dtype=np.float64)
    return np.vstack([-w[0], w[0]]) if n_classes == 2 and w.shape[0] == 1 else w


def ap_directions(y: np.ndarray, w_c: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """Per training image, the feature direction ``d_i = sum_k s_ik (w_t,k - w_c,k)`` with ``s_ik = +1`` if
    ``y_i = k`` else ``-1``: moving ``f(x_i)`` along ``d_i`` moves every one-vs-rest SVM ``w_k = sum_i a_ik
    s_ik f(x_i)`` towards ``w_t`` (first order; the paper's ``max (w_t - w_c)^T f(z)``, Sec. 2.2, with the
    label's sign, which the paper's binary ``y in {-1, 1}`` leaves implicit)."""
    k = w_c.shape[0]
    s = np.where(np.arange(k)[None, :] == y[:, None], 1.0, -1.0)  # (N, K)
    dw = w_t - w_c  # (K, D)
    if k == 2:  # binary LinearSVC has one hyperplane: rows are -w and w, the sum double counts it
        return s[:, 1:2] * dw[1][None, :]
    return s @ dw


def adversarial_poisoning(fs: FeatureSet, *, eps: float = DEFAULT_EPS, share: float = 1.0, method: str = "pgd",
                          steps: int = DEFAULT_STEPS, alpha: float | None = None, C: float = DEFAULT_C,
                          seed: int = 0, batch_size: int = 256, schedule: str = "constant",
                          progress: ProgressFn | None = None) -> AdversarialPoisoningRow:
    """AP: clean SVM ``w_c``, proxy ``w_t`` (:func:`proxy_labels`); ``round(share * N)`` training images
    (random, seeded) move within eps to maximise ``d_i^T f(z)`` (:func:`ap_directions`); the SVM is
    retrained on the poisoned set with the true labels; accuracy on the clean test set."""
    check_eps(eps)
    check_share(share)
    check_method(method)
    steps = 1 if method == "fgsm" else check_steps(steps)
    t0 = time.perf_counter()
    y = fs.task.y_train
    k = len(fs.task.classes)
    clean = fs.svm(fs.f_train, y, C)
    proxy = fs.svm(fs.f_train, proxy_labels(y, k), C)
    w_c, w_t = _coef(clean, k), _coef(proxy, k)
    d = ap_directions(y, w_c, w_t) / fs.scale  # on raw features: d^T f_raw / scale = d_scaled^T f_scaled
    n_move = int(round(share * len(y)))
    rows = np.sort(np.random.default_rng(seed).choice(len(y), n_move, replace=False))
    new_f = np.empty((0, fs.f_train.shape[1]))
    gain_before = gain_after = 0.0
    stage = f"{fs.kind}: adversarial poisoning"
    total = max(n_move, 1) * steps
    moved = []
    for start in range(0, n_move, batch_size):
        idx = rows[start:start + batch_size]
        x = fs.task.x_train[idx].to(fs.device)
        dir_t = torch.as_tensor(d[idx], dtype=torch.float32, device=fs.device)

        def objective(f: torch.Tensor, _d: torch.Tensor = dir_t) -> torch.Tensor:
            return -(f * _d).sum(dim=1)  # craft minimises: maximise d^T f(z)

        def tick(step: int, n: int, _s: int = start, _k: int = len(idx)) -> None:
            _report(progress, stage, _s * steps + _k * step, total)

        z, hist = craft(fs.model, x, objective, eps=eps, method=method, steps=steps, alpha=alpha, layer=fs.layer,
                        callback=tick, schedule=schedule)
        z = z.cpu()
        changed = np.array([not torch.equal(z[i], fs.task.x_train[j]) for i, j in enumerate(idx)], dtype=bool)
        f_new = fs.f_train[idx].copy()
        if changed.any():
            f_new[changed] = fs.features_of(z[torch.from_numpy(changed)])
        new_f = np.vstack([new_f, f_new])
        moved.append(changed)
        gain_before += -float(np.sum(hist[0]))
        gain_after += -float(np.sum(hist[-1]))
    moved_mask = np.concatenate(moved) if moved else np.zeros(0, dtype=bool)
    if moved_mask.any():
        f_p = fs.f_train.copy()
        f_p[rows] = new_f
        poisoned = fs.svm(f_p, y, C)
    else:
        poisoned = clean
    _report(progress, stage, total, total)
    clean_acc = accuracy(clean, fs.f_test, fs.task.y_test)
    poisoned_acc = accuracy(poisoned, fs.f_test, fs.task.y_test)
    shift = float(np.linalg.norm(new_f - fs.f_train[rows], axis=1).mean()) if n_move else 0.0
    return AdversarialPoisoningRow(
        **fs.describe(), attack="ap", eps=eps, share=share, moved=int(moved_mask.sum()), method=method, steps=steps,
        alpha=default_alpha(eps, method, steps, schedule) if alpha is None or method == "fgsm" else float(alpha),
        C=C, seed=seed, clean_accuracy=clean_acc, proxy_accuracy=accuracy(proxy, fs.f_test, fs.task.y_test),
        poisoned_accuracy=poisoned_acc, gap=poisoned_acc - clean_acc, mean_feature_shift=shift,
        objective_before=gain_before / max(n_move, 1), objective_after=gain_after / max(n_move, 1),
        seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- the paper's tables


def run(attack: str, kinds: Sequence[str] | str, *, eps: float = DEFAULT_EPS, share: float | None = None,
        trials: int = 20, method: str = "pgd", steps: int | None = None, C: float = DEFAULT_C, seed: int = 0,
        repeats: int = 3, pair: str = "01", device: str | torch.device = "cpu", layer: str | None = None,
        poisons: int = 1, base_choice: str = "random", schedule: str | None = None,
        progress: ProgressFn | None = None) -> PoisoningTable:
    """One of the paper's tables for ``kinds``: ``lf`` (Table 3), ``pf`` (Table 2) or ``ap`` (Table 1).

    ``share``: LF, the share of random labels (default 2%); AP, the share of training images moved (default 1).
    ``steps`` and ``schedule`` default per attack: PF 200 steps with a decaying step, AP 10 at a constant one.
    ``poisons``, ``base_choice``: PF only. ``C``: LinearSVC's C on raw features (the paper's default 1).
    Returns a :class:`PoisoningTable`: the settings, one row per kind, the paper's numbers and :func:`verdict`
    (its ``to_dict()`` is the JSON).
    """
    if attack not in ATTACK_TITLES:
        raise AdvlabError(f"Unknown poisoning attack {attack!r}; choose lf, pf or ap.")
    kinds = check_kinds(kinds)
    check_eps(eps)
    check_method(method)
    check_c(C)
    check_poisons(poisons)
    check_base_choice(base_choice)
    if share is not None:
        check_share(share)
    if steps is None:
        steps = PF_STEPS if attack == "pf" else DEFAULT_STEPS
    steps = check_steps(steps)
    schedule = check_schedule(schedule or ("decay" if attack == "pf" else "constant"))
    t0 = time.perf_counter()
    rows = []
    for kind in kinds:
        fs = feature_set(kind, task_for(kind, attack, pair), device=device, layer=layer, progress=progress)
        if attack == "lf":
            rows.append(label_flip(fs, share=DEFAULT_SHARE if share is None else share, seed=seed, repeats=repeats,
                                   C=C, progress=progress))
        elif attack == "pf":
            rows.append(poison_frog(fs, eps=eps, trials=trials, method=method, steps=steps, C=C, seed=seed,
                                    poisons=poisons, base_choice=base_choice, schedule=schedule,
                                    batch_size=8 if kind == "imagenet" else 64, progress=progress))
        else:
            rows.append(adversarial_poisoning(fs, eps=eps, share=1.0 if share is None else share, method=method,
                                              steps=steps, C=C, seed=seed, schedule=schedule,
                                              batch_size=8 if kind == "imagenet" else 256, progress=progress))
    extra: dict = {}
    if attack == "lf":
        extra = {"share": DEFAULT_SHARE if share is None else share, "repeats": repeats}
    elif attack == "pf":
        extra = {"trials": trials, "pair": pair, "poisons": poisons, "base_choice": base_choice,
                 "schedule": schedule if method == "pgd" else None}
    else:
        extra = {"share": 1.0 if share is None else share}
    table = PoisoningTable(attack=attack, title=ATTACK_TITLES[attack], kinds=kinds, device=str(pick_device(device)),
                           eps=eps, eps_255=eps * 255, norm="linf", method=method,
                           steps=1 if method == "fgsm" else steps, C=C, seed=seed, rows=rows,
                           paper=paper_numbers(attack), seconds=time.perf_counter() - t0, **extra)
    return replace(table, verdict=verdict(table))


def paper_numbers(attack: str) -> PaperNumbers:
    """The paper's own table for ``attack``, with where it comes from."""
    if attack == "ap":
        return PaperNumbers(1, "accuracy under adversarial poisoning (VGG13 features)", PAPER_TABLE1,
                            eps={"MNIST": 7 / 255, "CIFAR": 3 / 255})
    if attack == "pf":
        return PaperNumbers(2, "share of successful poison frog attacks over 100 trials, CIFAR-10 airplane vs car, "
                               "eps 7/255 (on MNIST the paper found PF ineffective even at 25/255 and reports no "
                               "number)", PAPER_TABLE2, imagenet=PAPER_IMAGENET_PF)
    return PaperNumbers(3, "accuracy gap (poisoned minus clean) under label flip, 2% random labels (VGG13)",
                        PAPER_TABLE3)


def verdict(result: PoisoningTable | dict) -> str:
    """Sentences, computed from the measurements, on whether robust features helped against the attack, one per
    group of comparable rows (digits: naive, FGSM, PGD; the split setting: naive, PGD), and for PF on digits
    how the count compares with the paper's finding (``result``: a :class:`PoisoningTable` or its ``to_dict()``)."""
    if isinstance(result, PoisoningTable):
        result = result.to_dict()
    out = []
    for group in ("digits", "split"):
        rows = [r for r in result["rows"] if KIND_GROUP[r["kind"]] == group]
        naive = next((r for r in rows if KIND_ROLE[r["kind"]] == "naive"), None)
        robust = [r for r in rows if KIND_ROLE[r["kind"]] != "naive"]
        if naive is not None and robust:
            out.append(_group_verdict(result["attack"], naive, robust))
    imagenet = next((r for r in result["rows"] if r["kind"] == "imagenet"), None)
    if result["attack"] == "pf" and imagenet is not None:
        out.append(_imagenet_verdict(imagenet))
    if not out:
        present = [r["kind"] for r in result["rows"]]
        return ("Compare naive with FGSM- or PGD-trained features of the same setting to see whether robustness "
                f"helps; this run has {' and '.join(KIND_TITLES[k] for k in present)} features only.")
    if result["attack"] == "pf":
        digits = next((r for r in result["rows"] if r["kind"] == "naive"), None)
        if digits is not None:
            rate = digits["success_rate"]
            agree = ("few, as the paper found: PF ineffective on MNIST even at 25/255 (it reports no MNIST number)"
                     if rate < 0.25 else "more than the paper found on MNIST, where PF was ineffective even at 25/255")
            out.append(f"On digits {digits['successes']}/{digits['trials']} poison frogs succeed with naive "
                       f"features at {255 * result['eps']:.3g}/255: {agree}.")
    return " ".join(out)


def _imagenet_verdict(r: dict) -> str:
    """PF on ImageNet features against the paper's check on them (Sec. 4.1: 73% with the author's code)."""
    rate = r["success_rate"]
    cmp = ("about as often as" if abs(rate - PAPER_IMAGENET_PF) <= 0.1 else
           "more often than" if rate > PAPER_IMAGENET_PF else "less often than")
    task = "Sandal against Sneaker drawn as photos" if r["task"] == IMAGENET_TASK else r["task"]
    return (f"On ImageNet (EfficientNet-Lite0) features of {task}, {r['successes']}/{r['trials']} poison frogs "
            f"succeed ({100 * rate:.0f}%), {cmp} the paper's reimplementation on ImageNet features "
            f"({100 * PAPER_IMAGENET_PF:.0f}%, Sec. 4.1), with "
            + ("one poison" if r["poisons"] == 1 else f"{r['poisons']} poisons")
            + f" per target from {r['base_choice']} bases; the poisons close the feature distance from "
            f"{r['mean_distance_before']:.3f} to {r['mean_distance_after']:.3f} (nearest same-class training image "
            f"{r['mean_neighbour_distance']:.3f};"
            f" {r['closer_than_neighbour']}/{r['trials']} poisons nearer than it); clean accuracy "
            f"{100 * r['clean_accuracy']:.1f}%.")


def _group_verdict(attack: str, naive: dict, robust: list[dict]) -> str:
    if attack == "pf":
        key, fmt, sign = "success_rate", lambda r: f"{r['successes']}/{r['trials']} poison frogs succeed", -1.0
        tol = 0.5 / max(naive["trials"], 1)  # less than one trial apart: no difference
    elif attack == "ap":
        key, fmt, sign = "poisoned_accuracy", lambda r: f"accuracy under poisoning is {100 * r[key]:.1f}%", 1.0
        tol = TIE_POINTS
    else:
        key, fmt, sign = "gap", lambda r: f"label flip changes accuracy by {100 * r[key]:+.1f} pp", 1.0
        tol = TIE_POINTS
    parts = [f"with {KIND_TITLES[r['kind']]} features {fmt(r)}" for r in [naive, *robust]]
    diff = [sign * (r[key] - naive[key]) for r in robust]
    helped = [r for r, d in zip(robust, diff, strict=True) if d > tol]
    hurt = [r for r, d in zip(robust, diff, strict=True) if d < -tol]
    if len(helped) == len(robust):
        head = "Here robust features helped"
    elif not helped and not hurt:
        head = (f"Here robust features made no clear difference (all within {100 * tol:g} pp of the naive ones)"
                if attack != "pf" else "Here robust features made no difference")
    elif not helped:
        head = "Here robust features did worse"
    else:
        head = f"Here only {' and '.join(KIND_TITLES[r['kind']] for r in helped)} features helped"
    tail = ""
    if attack == "pf":
        def closer(r: dict) -> str:
            return (f"{r['mean_distance_before']:.3f} -> {r['mean_distance_after']:.3f} (nearest same-class training "
                    f"image {r['mean_neighbour_distance']:.3f}; {r['closer_than_neighbour']}/{r['trials']} poisons "
                    "nearer than it)")

        tail = (" (mean feature distance of the poison to its target, " + ", ".join(
            f"{KIND_TITLES[r['kind']]}: {closer(r)}" for r in [naive, *robust]) + ")")
    if attack == "ap" and any(r["clean_accuracy"] < naive["clean_accuracy"] for r in robust):
        tail = (f" (clean accuracy: naive {100 * naive['clean_accuracy']:.1f}%, "
                + ", ".join(f"{KIND_TITLES[r['kind']]} {100 * r['clean_accuracy']:.1f}%" for r in robust) + ")")
    return f"{head}: " + "; ".join(parts) + tail + "."
