"""Attack comparison and transferability: the evaluation of the AGR paper (Xiao et al.), on our models.

:func:`compare` runs every attack (FGSM, I-FGSM, PGD, MI-FGSM, AGR; APGD and Square when asked; through
:func:`advcore.attacks.run`)
batched on a set of images at the same budget, on each source model, and measures per attack

* ASR, the share of images whose prediction the attack changed (the paper's Figures 3 and 5, Tables 1-2);
* cosine similarity between clean and adversarial images, mean and spread (Figures 4 and 6);
* AMP, mean absolute perturbation per pixel (Sec. 4, Table 3), mean L2 and L-inf;
* gradient steps to success (the first adversarial iterate) and gradient evaluations spent;
* the transfer matrix (Tables 1-2): adversarial images made on each source evaluated on each target.

Definitions, stated once:

* **Labels.** Untargeted, away from each *source* model's own clean prediction (photos have no true label;
  where a dataset gives one it is recorded, with the clean accuracy, but not used).
* **Success on a target** = the target's prediction of the adversarial image differs from its prediction of
  the clean image, both shown to it the same way. A target whose input size differs from the source's
  sees the source-resolution clean and adversarial images resized by the same bilinear (antialiased)
  interpolation; one of the same size sees the very pixels the attack produced. So the diagonal (target =
  source) is exactly the white-box ASR.
* Perturbation measures are over every image (fooled or not), in the source's [0, 1] pixel space; ASR is
  measured on the float adversarial images, ``asr_8bit`` after rounding them to the 256 levels a PNG stores
  (a budget below 1/255 may not survive that rounding).
* Each eps of a sweep is a separate run of every attack (same seed).
* **One stop policy** (``stop_on_success``): ``"all"`` (default) stops every iterative attack (I-FGSM, PGD,
  MI-FGSM, AGR, APGD, Square) on each image at its first adversarial iterate, as AGR's Algorithm 1 does;
  ``"none"`` runs every step for all of them (APGD still returns its first adversarial iterate, so it differs
  only in gradients spent; Square keeps querying a fooled image for a lower loss). Mixing the two (AGR
  stopping, the others not) would credit AGR's smaller perturbation to its stopping rule, not to its AdaGrad step.
* **Square's budget is queries** (``square_queries``, its ``n_queries``), not ``steps``; its steps to success
  count queries and its gradient evaluations are 0 (a black-box attack).
* **AGR's base step** (``agr_alpha``): ``"eps"`` as Eq. 11 writes it (the first step is then an FGSM step of
  size eps), or ``"eps/steps"``, the step I-FGSM and MI-FGSM take.
* **Probability left on the clean label** (``p_clean``): the source's softmax probability of its clean
  prediction at the adversarial image, the margin an attack leaves (0-1, mean over every image).
* **Transfer on correctly classified images**: where every image has a true class, ``transfer_correct`` is the
  success rate on the images that the source and every target classify correctly (clean), so a flip is a flip
  away from the right class; ``agreement`` is the share of images on which each target's clean prediction
  equals the source's; ``transfer_8bit`` is the transfer of the adversarial images rounded to 8 bits.
* **Robustness radius** (``radius``): the minimal-norm attacks (C&W, DeepFool: those whose budget is optional)
  search per image for the smallest perturbation that changes the source's clean prediction, with their own
  iteration limits; an image on which the search found none within them has radius "not found" (larger than
  anything the search reached), never 0. Equal budget and one stop rule do not apply to them: they are not
  ranked with the attacks above, and the median radius per source and attack counts a not-found image as
  larger than every found one.
* **Common resolution** (``resolution``, ImageNet models only): every model is attacked and evaluated at one
  square input size (the EfficientNet-Lite networks pool globally, so any size runs), so no target needs a
  resize.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from advcore import attacks, data, datasets, metrics, models
from advcore.device import describe, pick_device
from advcore.errors import AdvlabError, Cancelled
from advcore.progress import ProgressFn
from advcore.progress import report as report_progress
from advcore.units import format_eps, percent_cell


def _shares_the_stop_policy(spec: attacks.AttackSpec) -> bool:
    """FGSM (one step) and every iterative attack taking ``stop_on_success``: those one stop rule applies to."""
    return not spec.iterative or "stop_on_success" in inspect.signature(spec.fn).parameters


# The attacks Compare ranks: every fixed-budget attack that takes the one stop rule (FGSM, I-FGSM, PGD, MI-FGSM,
# AGR, APGD, Square). Minimal-norm ones (C&W, DeepFool) have no budget and their own stopping rules, so ranking them
# beside these would not be the fair comparison this lab promises; they report their per-image robustness radius in
# a section of their own (``radius``, :data:`RADIUS_ATTACKS`).
ALL_ATTACKS: tuple[str, ...] = tuple(n for n, s in attacks.ATTACKS.items() if _shares_the_stop_policy(s))
#: What a comparison runs unless told: the AGR paper's Table 3 set (its shipped runs are of these).
DEFAULT_ATTACKS: tuple[str, ...] = tuple(a for a in ("fgsm", "ifgsm", "pgd", "mifgsm", "agr") if a in ALL_ATTACKS)
#: The attacks whose iterations are model queries with a budget of their own (Square: ``n_queries``), not
#: gradient steps: Compare's ``steps`` does not apply to them; ``square_queries`` is Square's budget.
QUERY_ATTACKS: tuple[str, ...] = tuple(a for a in ALL_ATTACKS if "n_queries" in attacks.accepted_params(a))
SQUARE_QUERIES = attacks.get_attack("square").param("n_queries")  # Square's declaration: range, default, help
DEFAULT_SQUARE_QUERIES = int(SQUARE_QUERIES.default)
QUERY_NOTE = ("Square's steps are model queries (its first is the striped start), not gradient steps: its budget is "
              "its own n_queries (square_queries), not the comparison's steps, and it takes no gradient.")
def _minimal_norm(spec: attacks.AttackSpec) -> bool:
    """A minimal-norm attack: its budget ``eps`` is optional (None: no bound), it reports a radius per image."""
    eps = inspect.signature(spec.fn).parameters.get("eps")
    return eps is not None and eps.default is None


#: The attacks whose per-image smallest perturbation Compare reports (C&W, DeepFool).
RADIUS_ATTACKS: tuple[str, ...] = tuple(n for n, s in attacks.ATTACKS.items() if _minimal_norm(s))
RADIUS_NOTE = ("Equal budget and one stop rule do not apply here: a minimal-norm attack has no budget; it searches "
               "each image for the smallest perturbation that changes the source's clean prediction and stops by "
               "its own rule (DeepFool at the first flip, C&W after its binary search over c), so its radii are "
               "not ranked with the attacks above. 'not found (> max)': the search found no adversarial example "
               "within its iteration limit, so the radius is larger than any it reached, not 0.")
NOT_FOUND = "not found (> max)"
MAX_IMAGES = 500  # 500 Lite2 inputs (3x260x260 floats) hold 400 MB
MAX_MODELS = 8
DEFAULT_BATCH = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_DATASET_IMAGES = 100
LABELS = "untargeted; each source model's own clean prediction is the label the attack moves away from"
SUCCESS = ("a target is fooled when its prediction of the adversarial image differs from its prediction of the "
           "clean image shown the same way (diagonal = white-box ASR)")
RESIZE = ("bilinear interpolation with antialiasing of both the clean and the adversarial source-resolution "
          "image when a target's input size differs; none otherwise")
SCHEMA = "advlab.compare/2"
STOP_POLICIES = ("all", "none")
STOP_TEXT = {"all": "every iterative attack stops on each image at its first adversarial iterate",
             "none": "every iterative attack runs all its steps on every image"}
AGR_ALPHAS = ("eps", "eps/steps")
AGR_ALPHA_TEXT = {"eps": "AGR's base step alpha = eps (Eq. 11)",
                  "eps/steps": "AGR's base step alpha = eps/steps (I-FGSM's step)"}
RESOLUTIONS = (224, 240, 260)  # the EfficientNet-Lite0/1/2 input sizes
MIN_RESOLUTION, MAX_RESOLUTION = 32, 600


#: The AGR paper's Tables 1-3 (Xiao et al.; ImageNet, Inc-v3 source): ASR in % and AMP, quoted as the paper's.
PAPER = {
    "linf": {"table": "Table 1 (L-inf)", "white_box": {"ifgsm": 96.41, "mifgsm": 95.62, "agr": 99.65},
             "transfer": {"ifgsm": 28.86, "mifgsm": 25.22, "agr": 28.99}, "target": "Inc-v4",
             "amp": {"ifgsm": 0.041, "mifgsm": 0.086, "agr": 0.016}, "amp_budget": "L-inf = 10"},
    "l2": {"table": "Table 2 (L2)", "white_box": {"ifgsm": 98.72, "mifgsm": 94.94, "agr": 99.86},
           "transfer": {"ifgsm": 55.17, "mifgsm": 56.55, "agr": 59.23}, "target": "Inc-v4",
           "amp": {"ifgsm": 0.015, "mifgsm": 0.019, "agr": 0.008}, "amp_budget": "L2 = 1500"},
}
#: Beside Table 3: a mean |v| per pixel can never exceed the L-inf budget, and 10/255 = 0.0392 in [0, 1]
#: pixel units, yet I-FGSM's 0.041 and MI-FGSM's 0.086 exceed it (the paper does not say its units or
#: scaling), so only the ordering of its AMP values can be compared with ours.
PAPER_AMP_NOTE = ("Table 3's AMP values for I-FGSM (0.041) and MI-FGSM (0.086) exceed its own L-inf budget of "
                  "10/255 = 0.0392 as a mean |v| per pixel in [0, 1] units, which is impossible for a mean of "
                  "values each at most 10/255; the paper does not state its units or scaling, so only the "
                  "ordering of its AMP values (AGR smallest) can be compared with the AMP measured here.")


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageItem:
    """One image of the set: a display name, the decoded 8-bit image, and its true class where known."""

    name: str
    image: Image.Image
    label: int | None = None


def bundled_images() -> list[ImageItem]:
    """The bundled sample photos (assets/samples), in their listed order."""
    return [ImageItem(Path(s.file).stem, data.open_image(s.path, name=s.file)) for s in data.samples()]


def dataset_images(dataset: str, n: int = DEFAULT_DATASET_IMAGES) -> list[ImageItem]:
    """The first ``n`` images of a dataset's shipped test subset (Fashion-MNIST), with their true classes."""
    if dataset != "fashion-mnist":
        raise AdvlabError(f"No shipped test images for {dataset!r}; use the bundled photos or a folder.")
    x, y = datasets.load_subset(n)
    return [ImageItem(f"fashion-mnist:{i}", Image.fromarray(x[i, 0].numpy(), mode="L").convert("RGB"), int(y[i]))
            for i in range(len(x))]


def folder_images(folder: str | Path, limit: int | None = None) -> tuple[list[ImageItem], list[str]]:
    """The images of a folder (not its subfolders), by file name; unreadable ones are skipped with a note.

    Returns the images and one note per skipped file. An empty folder, or one with no readable image,
    is an error.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise AdvlabError(f"{folder} is not a folder (give a folder of images, 'samples' or 'fashion-mnist').")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    candidates = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    notes = []
    other = len(files) - len(candidates)
    if other:
        notes.append(f"{other} file(s) in {folder} without an image suffix ({', '.join(IMAGE_SUFFIXES)}) ignored")
    items: list[ImageItem] = []
    for p in candidates:
        if limit is not None and len(items) >= limit:
            break
        try:
            items.append(ImageItem(p.name, data.open_image(p, name=p.name)))
        except AdvlabError as exc:
            notes.append(f"skipped {exc}")
    if not items:
        why = "has no image files" if not candidates else "has no readable image"
        raise AdvlabError(f"The folder {folder} {why} (PNG, JPEG, WebP or BMP).")
    return items, notes


def resolve_images(spec: str | None, dataset: str, limit: int | None = None) -> tuple[list[ImageItem], list[str], str]:
    """``samples`` (bundled photos), ``fashion-mnist`` (shipped test subset) or a folder; ``None``: the
    dataset's natural choice. Returns the images, notes on skipped files, and a description."""
    if spec is None:
        spec = "fashion-mnist" if dataset == "fashion-mnist" else "samples"
    if spec == "samples":
        items = bundled_images()[:limit]
        return items, [], f"{len(items)} bundled sample photo(s)"
    if spec == "fashion-mnist":
        n = DEFAULT_DATASET_IMAGES if limit is None else limit
        items = dataset_images("fashion-mnist", n)
        return items, [], f"the first {len(items)} images of the shipped Fashion-MNIST test subset"
    items, notes = folder_images(spec, limit)
    return items, notes, f"{len(items)} image(s) from {spec}"


def image_tensor(items: Sequence[ImageItem], input_size: tuple[int, int, int]) -> torch.Tensor:
    """The images as one model sees them: ``(N, C, H, W)`` in [0, 1] (``data.prepare`` on each)."""
    return torch.cat([data.prepare(it.image, input_size) for it in items])


def show_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An image batch at a target's input size: unchanged when the size matches, else resized (see RESIZE)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


# --------------------------------------------------------------------------- validation


def check_models(sources: Sequence[str], targets: Sequence[str] | None = None) -> tuple[list[str], list[str], str]:
    """Known, distinct, at most :data:`MAX_MODELS`, all of one dataset; returns sources, targets, dataset."""
    sources = [str(s).strip() for s in sources]
    targets = list(sources) if not targets else [str(t).strip() for t in targets]
    for what, names in (("source", sources), ("target", targets)):
        if not names or any(not n for n in names):
            raise AdvlabError(f"Give at least one {what} model (see 'python -m advcore models').")
        if len(set(names)) != len(names):
            raise AdvlabError(f"A {what} model is listed twice: {', '.join(names)}.")
        if len(names) > MAX_MODELS:
            raise AdvlabError(f"At most {MAX_MODELS} {what} models, got {len(names)}.")
    specs = {n: models.get_spec(n) for n in [*sources, *targets]}
    kinds = sorted({s.dataset for s in specs.values()})
    if len(kinds) > 1:
        by = ", ".join(f"{n} ({s.dataset})" for n, s in specs.items())
        raise AdvlabError(f"All models must share one dataset (the same classes): {by}.")
    return sources, targets, kinds[0]


def check_attacks(names: Sequence[str]) -> list[str]:
    """Canonical attack names (aliases such as ``bim`` allowed), each once."""
    out = [attacks.get_attack(n).name for n in names]
    other = [n for n in out if n not in ALL_ATTACKS]
    if other:
        raise AdvlabError(f"Compare ranks the attacks that share one stop rule ({', '.join(ALL_ATTACKS)}); "
                          f"{', '.join(other)} stop by their own rule with no budget (minimal-norm): ask for "
                          f"the robustness radius (--radius) or run them with `attack` or `eval`.")
    if not out:
        raise AdvlabError(f"Choose at least one attack: {', '.join(ALL_ATTACKS)}.")
    if len(set(out)) != len(out):
        raise AdvlabError(f"An attack is listed twice: {', '.join(names)}.")
    return out


def check_radius(names: Sequence[str]) -> list[str]:
    """Canonical names of minimal-norm attacks (see :data:`RADIUS_ATTACKS`), each once; may be empty."""
    out = [attacks.get_attack(n).name for n in names]
    other = [n for n in out if n not in RADIUS_ATTACKS]
    if other:
        raise AdvlabError(f"The robustness radius comes from the minimal-norm attacks ({', '.join(RADIUS_ATTACKS)}); "
                          f"{', '.join(other)} has a fixed budget.")
    if len(set(out)) != len(out):
        raise AdvlabError(f"A radius attack is listed twice: {', '.join(names)}.")
    return out


def check_options(stop_on_success: str, agr_alpha: str, resolution: int | None, dataset: str) -> None:
    """The stop policy, AGR's base step and the common resolution (ImageNet models only) are ones we know."""
    if stop_on_success not in STOP_POLICIES:
        raise AdvlabError(f"Unknown stop policy {stop_on_success!r}; choose {' or '.join(STOP_POLICIES)}.")
    if agr_alpha not in AGR_ALPHAS:
        raise AdvlabError(f"Unknown AGR base step {agr_alpha!r}; choose {' or '.join(AGR_ALPHAS)}.")
    if resolution is None:
        return
    if dataset != "imagenet":
        raise AdvlabError("A common resolution is for the ImageNet models only (the Fashion-MNIST models all take "
                          "28x28).")
    if not isinstance(resolution, int) or isinstance(resolution, bool) or not (
            MIN_RESOLUTION <= resolution <= MAX_RESOLUTION):
        raise AdvlabError(f"The common resolution must be a whole number of pixels from {MIN_RESOLUTION} to "
                          f"{MAX_RESOLUTION}, got {resolution!r}.")


def check_eps(eps: Sequence[float], norm: str, steps: int) -> list[float]:
    """Budgets in ascending order, each valid for ``norm`` (L-inf at most 1), none twice."""
    values = sorted(float(e) for e in eps)
    if not values:
        raise AdvlabError("Give at least one eps.")
    if len(set(values)) != len(values):
        raise AdvlabError("An eps is listed twice.")
    for e in values:
        attacks.check_budget(eps=e, alpha=max(e, 1e-12), steps=steps, norm=norm)
    return values


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class AttackStats:
    """One attack on one source model at one eps: the summary statistics (see :func:`attack_stats`), the
    seconds spent, the success rate on every target and the per-image arrays (lists, ``per_image`` also
    holds ``transfer_success``: per target, per image)."""

    n: int
    successes: int
    asr: float
    asr_8bit: float
    cosine_similarity: float | None
    cosine_similarity_std: float | None
    amp: float | None
    amp_std: float | None
    l2: float | None
    linf: float | None
    linf_max: float | None
    steps_to_success: float | None
    grad_evals: float | None
    p_clean: float | None = None
    seconds: float = 0.0
    transfer: dict[str, float] = field(default_factory=dict)
    per_image: dict[str, Any] = field(default_factory=dict)
    transfer_8bit: dict[str, float] = field(default_factory=dict)
    transfer_correct: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in _STAT_KEYS}
        out["seconds"] = self.seconds
        out["transfer"] = dict(self.transfer)
        out["transfer_8bit"] = dict(self.transfer_8bit)
        out["transfer_correct"] = dict(self.transfer_correct)
        out["per_image"] = {k: dict(v) if isinstance(v, dict) else list(v) for k, v in self.per_image.items()}
        return out


_STAT_KEYS = ("n", "successes", "asr", "asr_8bit", "cosine_similarity", "cosine_similarity_std", "amp", "amp_std",
              "l2", "linf", "linf_max", "steps_to_success", "grad_evals", "p_clean")


@dataclass(frozen=True)
class TransferMatrix:
    """One attack's success rate of the images made on each source (``rows``) on each target (``columns``):
    on the float images (``values``), after 8-bit rounding (``values_8bit``) and on the images every model
    classifies correctly (``values_correct``; None without true classes or with no such image)."""

    rows: list[str]
    columns: list[str]
    values: list[list[float]]
    values_8bit: list[list[float]] = field(default_factory=list)
    values_correct: list[list[float | None]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"rows": list(self.rows), "columns": list(self.columns), "values": [list(v) for v in self.values],
                "values_8bit": [list(v) for v in self.values_8bit],
                "values_correct": [list(v) for v in self.values_correct]}


@dataclass(frozen=True)
class CompareRun:
    """Every attack on every source at one eps: ``sources[source][attack]`` and ``transfer_matrix[attack]``."""

    eps: float
    sources: dict[str, dict[str, AttackStats]]
    transfer_matrix: dict[str, TransferMatrix]

    def to_dict(self) -> dict:
        return {"eps": self.eps,
                "sources": {s: {a: st.to_dict() for a, st in by.items()} for s, by in self.sources.items()},
                "transfer_matrix": {a: m.to_dict() for a, m in self.transfer_matrix.items()}}


@dataclass(frozen=True)
class SweepCurve:
    """ASR against eps of one attack on one source."""

    eps: list[float]
    asr: list[float]

    def to_dict(self) -> dict:
        return {"eps": list(self.eps), "asr": list(self.asr)}


@dataclass(frozen=True)
class CleanPredictions:
    """One model's clean predictions of the images (as it sees them from ``seen_from``); ``accuracy`` only
    where every image has a true class."""

    labels: list[int]
    names: list[str]
    input_size: list[int]
    seen_from: str
    accuracy: float | None = None

    def to_dict(self) -> dict:
        out = {"labels": list(self.labels), "names": list(self.names), "input_size": list(self.input_size),
               "seen_from": self.seen_from}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
        return out


@dataclass(frozen=True)
class ImageRecord:
    """One image of a comparison: its name and its true class where known."""

    name: str
    true_label: int | None

    def to_dict(self) -> dict:
        return {"name": self.name, "true_label": self.true_label}


@dataclass(frozen=True)
class RadiusStats:
    """One minimal-norm attack on one source: per image (in the order of the images) whether it found an
    adversarial example, its radius in ``norm`` (the attack's record, ``params["radius"]``; None: not found),
    and the L2 and L-inf sizes of that smallest perturbation (pixel units); the median over every image
    (None when not found on at least half of them: the median is then beyond the search) and the parameters."""

    norm: str
    found: list[bool]
    radius: list[float | None]
    l2: list[float | None]
    linf: list[float | None]
    median: float | None
    params: dict[str, Any]
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"norm": self.norm, "found": list(self.found), "radius": list(self.radius), "l2": list(self.l2),
                "linf": list(self.linf), "median": self.median, "params": dict(self.params),
                "seconds": self.seconds}


def median_radius(radius: Sequence[float | None]) -> float | None:
    """The median of per-image radii where a not-found image (None) is larger than every found one; None when
    the median itself is not found. Of an even count, the mean of the two middle values (numpy's median)."""
    n = len(radius)
    if not n:
        return None
    order = sorted(radius, key=lambda v: (v is None, v or 0.0))
    mid = order[(n - 1) // 2: n // 2 + 1]
    return None if any(v is None for v in mid) else float(np.mean(mid))


@dataclass(frozen=True)
class CompareResult:
    """What :func:`compare` measured; :meth:`to_dict` is the JSON (schema :data:`SCHEMA`).

    ``images_source``, ``notes`` and ``image_names`` are set by the caller that knows them (the command line:
    the description of the image set and the skipped files; the page: the skipped uploads and the image names,
    with :func:`dataclasses.replace`) and are left out of the JSON while None."""

    schema: str
    dataset: str
    sources: list[str]
    targets: list[str]
    attacks: list[str]
    attack_titles: dict[str, str]
    norm: str
    eps: list[float]
    steps: int
    seed: int
    batch_size: int
    images: list[ImageRecord]
    labels: str
    success: str
    transfer_resize: str
    clean: dict[str, CleanPredictions]
    runs: list[CompareRun]
    sweep: dict[str, dict[str, SweepCurve]]
    device: str
    seconds: float
    stop_on_success: str = "all"
    agr_alpha: str = "eps"
    resolution: int | None = None
    agreement: dict[str, dict[str, float]] = field(default_factory=dict)
    correct: dict[str, list[int]] | None = None
    images_source: str | None = None
    notes: list[str] | None = None
    image_names: list[str] | None = None
    radius: dict[str, dict[str, RadiusStats]] | None = None  # [source][attack]; None: not asked for
    square_queries: int = DEFAULT_SQUARE_QUERIES  # Square's query budget per image (its n_queries)

    def to_dict(self) -> dict:
        out = {
            "schema": self.schema, "dataset": self.dataset, "sources": list(self.sources),
            "targets": list(self.targets), "attacks": list(self.attacks), "attack_titles": dict(self.attack_titles),
            "norm": self.norm, "eps": list(self.eps), "steps": self.steps, "seed": self.seed,
            "batch_size": self.batch_size, "images": [i.to_dict() for i in self.images], "labels": self.labels,
            "success": self.success, "transfer_resize": self.transfer_resize,
            "clean": {m: c.to_dict() for m, c in self.clean.items()}, "runs": [r.to_dict() for r in self.runs],
            "sweep": {s: {a: c.to_dict() for a, c in by.items()} for s, by in self.sweep.items()},
            "device": self.device, "seconds": self.seconds,
            "stop_on_success": self.stop_on_success, "stop_policy": STOP_TEXT[self.stop_on_success],
            "agr_alpha": self.agr_alpha, "resolution": self.resolution,
            "agreement": {s: dict(v) for s, v in self.agreement.items()},
            "correct": None if self.correct is None else {s: list(v) for s, v in self.correct.items()},
        }
        if any(a in QUERY_ATTACKS for a in self.attacks):  # Square's budget is its own (see QUERY_NOTE)
            out.update(square_queries=self.square_queries, query_attacks=[a for a in self.attacks
                                                                          if a in QUERY_ATTACKS],
                       query_note=QUERY_NOTE)
        if self.radius is not None:
            out["radius"] = {s: {a: r.to_dict() for a, r in by.items()} for s, by in self.radius.items()}
            out["radius_note"] = RADIUS_NOTE
        for k in ("images_source", "notes", "image_names"):
            v = getattr(self, k)
            if v is not None:
                out[k] = list(v) if isinstance(v, (list, tuple)) else v
        return out


# --------------------------------------------------------------------------- the comparison


def _steps_of(attack: str, steps: int, square_queries: int = DEFAULT_SQUARE_QUERIES) -> int:
    """Most iterations per image: ``steps``, Square's query budget, or FGSM's one step."""
    if attack in QUERY_ATTACKS:
        return square_queries
    return steps if "steps" in attacks.accepted_params(attack) else 1


def check_square_queries(n: int) -> int:
    """Square's query budget per image: a whole number within its declaration's range."""
    return int(SQUARE_QUERIES.check(n, "Square"))


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _std(values: np.ndarray) -> float | None:
    return float(values.std()) if values.size else None  # population spread (ddof 0) of the images measured


def attack_stats(per_image: dict[str, np.ndarray]) -> dict:
    """Summary of one attack on one source from its per-image arrays (see :func:`compare`)."""
    success = per_image["success"].astype(bool)
    first = per_image["steps_to_success"]
    return {
        "n": int(success.size),
        "successes": int(success.sum()),
        "asr": float(success.mean()) if success.size else 0.0,
        "asr_8bit": float(per_image["success_8bit"].mean()) if success.size else 0.0,
        "cosine_similarity": _mean(per_image["cosine_similarity"]),
        "cosine_similarity_std": _std(per_image["cosine_similarity"]),
        "amp": _mean(per_image["amp"]),
        "amp_std": _std(per_image["amp"]),
        "l2": _mean(per_image["l2"]),
        "linf": _mean(per_image["linf"]),
        "linf_max": float(per_image["linf"].max()) if per_image["linf"].size else None,
        "steps_to_success": _mean(first[success & (first >= 0)].astype(float)),
        "grad_evals": _mean(per_image["grad_evals"].astype(float)),
        "p_clean": _mean(per_image["p_clean"]),
    }


def compare(
    images: Sequence[ImageItem],
    sources: Sequence[str],
    *,
    targets: Sequence[str] | None = None,
    attack_names: Sequence[str] = DEFAULT_ATTACKS,
    norm: str = "linf",
    eps: float | Sequence[float] = 4 / 255,
    steps: int = 10,
    seed: int = 0,
    device: str | torch.device = "auto",
    batch_size: int = DEFAULT_BATCH,
    progress: ProgressFn | None = None,
    stop_on_success: str = "all",
    agr_alpha: str = "eps",
    resolution: int | None = None,
    radius: Sequence[str] = (),
    batch_offset: int = 0,
    square_queries: int = DEFAULT_SQUARE_QUERIES,
) -> CompareResult:
    """Run every attack on ``images`` for each source model and eps; return a :class:`CompareResult`
    (``to_dict()``: its JSON).

    ``progress(Progress)`` is called after every gradient step; returning True raises
    :class:`~advcore.errors.Cancelled`. ``stop_on_success`` (``"all"``/``"none"``) is the one stop policy of
    every iterative attack, ``agr_alpha`` (``"eps"``/``"eps/steps"``) AGR's base step and ``resolution`` one
    input size for every ImageNet model (None: each model's own); ``radius`` names minimal-norm attacks
    (:data:`RADIUS_ATTACKS`) whose per-image robustness radius is measured on each source (``result.radius``,
    see :func:`radius_stats`); ``square_queries`` is Square's query budget per image (its ``n_queries``; the
    comparison's ``steps`` are gradient steps and do not apply to it); see the module's definitions.
    The same arguments give the same numbers (PGD's random start is
    seeded with ``seed`` plus the batch index); only the ``seconds`` fields vary. ``batch_offset``: the index of
    the first batch of ``images`` in a larger set (a shard, :mod:`advcore.shards`), so its seeds are the set's.

    Result: ``runs`` (one :class:`CompareRun` per eps, ascending) with, per source and attack, an
    :class:`AttackStats` (the statistics of :func:`attack_stats`, the ``transfer`` rates on every target and
    per-image arrays); per eps a :class:`TransferMatrix` per attack (rows sources, columns targets); ``sweep``
    (ASR against eps per source and attack); ``clean`` (clean predictions per model); the definitions used.
    """
    t_start = time.perf_counter()
    sources, targets, dataset = check_models(sources, targets)
    check_options(stop_on_success, agr_alpha, resolution, dataset)
    attack_names = check_attacks(attack_names)
    radius_names = check_radius(radius)
    square_queries = check_square_queries(square_queries)
    attacks.get_ball(norm)
    attacks.check_steps(steps)
    eps_list = check_eps([eps] if isinstance(eps, (int, float)) else eps, norm, steps)
    if not images:
        raise AdvlabError("No images to attack.")
    if len(images) > MAX_IMAGES:
        raise AdvlabError(f"At most {MAX_IMAGES} images per comparison, got {len(images)}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise AdvlabError(f"The batch size must be a positive whole number, got {batch_size!r}.")
    seed = int(seed)
    dev = pick_device(device)
    specs = {n: models.get_spec(n) for n in dict.fromkeys([*sources, *targets])}
    loaded = {n: models.load(n, dev) for n in specs}
    size_of = {n: (sp.input_size[0], resolution, resolution) if resolution else tuple(sp.input_size)
               for n, sp in specs.items()}
    n_img = len(images)
    chunks = [(i, min(i + batch_size, n_img)) for i in range(0, n_img, batch_size)]
    per_attack_steps = {a: _steps_of(a, steps, square_queries) for a in attack_names}
    radius_steps = {a: radius_budget(a) for a in radius_names}
    total = (len(eps_list) * sum(per_attack_steps.values()) + sum(radius_steps.values())) * len(sources) * n_img
    done = 0

    def report(stage: str) -> None:  # the unit of work: one gradient step on one image
        report_progress(progress, stage, min(done, total), total, what="comparison")

    # Clean inputs at each source's resolution, its clean predictions, and each target's clean view of them.
    x_src = {s: image_tensor(images, size_of[s]) for s in sources}
    clean: dict[str, CleanPredictions] = {}
    true = [it.label for it in images]
    known = all(t is not None for t in true)
    y_src: dict[str, torch.Tensor] = {}
    tgt_clean: dict[tuple[str, str], torch.Tensor] = {}
    with torch.no_grad():
        for s in sources:
            y_src[s] = torch.cat([loaded[s](x_src[s][a:b].to(dev)).argmax(1) for a, b in chunks])
            for t in targets:
                size = size_of[t][1:]
                tgt_clean[(s, t)] = y_src[s] if t == s else torch.cat(
                    [loaded[t](show_to(x_src[s][a:b].to(dev), size)).argmax(1) for a, b in chunks])
    for m in dict.fromkeys([*sources, *targets]):
        s0 = m if m in sources else sources[0]
        pred = tgt_clean[(s0, m)] if m in targets else y_src[m]
        names_ = specs[m].classes()
        accuracy = (float(np.mean([int(p) == int(t) for p, t in zip(pred.tolist(), true, strict=True)]))
                    if known else None)
        clean[m] = CleanPredictions(labels=pred.tolist(), names=[names_[i] for i in pred.tolist()],
                                    input_size=list(size_of[m]), seen_from=s0, accuracy=accuracy)
    agreement = {s: {t: float((tgt_clean[(s, t)] == y_src[s]).double().mean()) for t in targets} for s in sources}
    correct_mask: dict[str, torch.Tensor] = {}
    if known:  # the images the source and every target classify correctly, as each sees them
        y_true = torch.tensor(true, dtype=torch.long, device=y_src[sources[0]].device)
        for s in sources:
            ok = y_src[s] == y_true
            for t in targets:
                ok = ok & (tgt_clean[(s, t)] == y_true)
            correct_mask[s] = ok.cpu()
    report("clean predictions")

    runs = []
    for e in eps_list:
        by_source: dict[str, dict[str, AttackStats]] = {}
        # ImageNet L-inf budgets are whole 8-bit levels: "0.01569 (4/255)"; Fashion-MNIST's are pixel units.
        e_text = format_eps(e, "linf") if norm == "linf" and dataset == "imagenet" else f"{e:.4g}"
        for s in sources:
            model = loaded[s]
            x_all, y_all = x_src[s], y_src[s]
            by_attack: dict[str, AttackStats] = {}
            for a in attack_names:
                cols: dict[str, list] = {k: [] for k in ("success", "success_8bit", "cosine_similarity", "amp", "l2",
                                                         "linf", "steps_to_success", "grad_evals", "adv_label",
                                                         "p_clean")}
                fooled: dict[str, list] = {t: [] for t in targets}
                fooled_q: dict[str, list] = {t: [] for t in targets}
                own = {"stop_on_success": stop_on_success == "all"}
                if a == "agr" and agr_alpha == "eps/steps":
                    own["alpha"] = e / steps
                if a in QUERY_ATTACKS:
                    own["n_queries"] = square_queries
                seconds = 0.0
                for ci, (lo, hi) in enumerate(chunks):
                    x = x_all[lo:hi].to(dev)
                    y = y_all[lo:hi]
                    start = done

                    def on_step(info: attacks.StepInfo, start=start, a=a, s=s, e_text=e_text, k=hi - lo) -> bool:
                        nonlocal done
                        done = start + info.step * k
                        try:
                            report(f"{attacks.get_attack(a).title} on {s}, eps {e_text}")
                        except Cancelled:
                            return True
                        return False

                    res = attacks.run(a, model, x, y, eps=e, norm=norm, steps=steps, seed=seed + batch_offset + ci,
                                      callback=on_step,
                                      **own)
                    if res.cancelled:
                        raise Cancelled(f"cancelled during {a} on {s}")
                    seconds += res.seconds
                    done = start + per_attack_steps[a] * (hi - lo)
                    cols["success"].append(res.success.cpu())
                    for k, fn in (("cosine_similarity", metrics.cosine_similarity), ("amp", metrics.amp),
                                  ("l2", metrics.l2), ("linf", metrics.linf)):
                        cols[k].append(fn(x, res.x_adv).double().cpu())
                    cols["steps_to_success"].append(res.steps_to_success.cpu())  # the loop's first success
                    cols["grad_evals"].append(res.grad_evals.cpu())
                    cols["adv_label"].append(res.logits.argmax(1).cpu())
                    cols["p_clean"].append(res.logits.double().softmax(1).gather(1, y.to(dev)[:, None])[:, 0].cpu())
                    with torch.no_grad():
                        x_q = data.quantize_8bit(res.x_adv)
                        fooled_8bit = model(x_q).argmax(1) != y
                        cols["success_8bit"].append(fooled_8bit.cpu())
                        for t in targets:
                            if t == s:  # the same model sees the same pixels: the white-box result itself
                                fooled[t].append(res.success.cpu())
                                fooled_q[t].append(fooled_8bit.cpu())
                            else:
                                size = size_of[t][1:]
                                pred = loaded[t](show_to(res.x_adv, size)).argmax(1)
                                fooled[t].append((pred != tgt_clean[(s, t)][lo:hi]).cpu())
                                pred_q = loaded[t](show_to(x_q, size)).argmax(1)
                                fooled_q[t].append((pred_q != tgt_clean[(s, t)][lo:hi]).cpu())
                    report(f"{attacks.get_attack(a).title} on {s}, eps {e_text}")
                per_image = {k: torch.cat(v).numpy() for k, v in cols.items()}
                lists: dict[str, Any] = {k: v.tolist() for k, v in per_image.items()}
                lists["transfer_success"] = {t: torch.cat(fooled[t]).tolist() for t in targets}
                lists["transfer_success_8bit"] = {t: torch.cat(fooled_q[t]).tolist() for t in targets}
                ok = correct_mask.get(s)
                by_attack[a] = AttackStats(
                    **attack_stats(per_image), seconds=seconds,
                    transfer={t: float(torch.cat(fooled[t]).double().mean()) for t in targets}, per_image=lists,
                    transfer_8bit={t: float(torch.cat(fooled_q[t]).double().mean()) for t in targets},
                    transfer_correct={t: (float(torch.cat(fooled[t])[ok].double().mean())
                                          if ok is not None and bool(ok.any()) else None) for t in targets})
            by_source[s] = by_attack
        matrix = {a: TransferMatrix(
            rows=list(sources), columns=list(targets),
            values=[[by_source[s][a].transfer[t] for t in targets] for s in sources],
            values_8bit=[[by_source[s][a].transfer_8bit[t] for t in targets] for s in sources],
            values_correct=[[by_source[s][a].transfer_correct[t] for t in targets] for s in sources])
            for a in attack_names}
        runs.append(CompareRun(eps=e, sources=by_source, transfer_matrix=matrix))

    radii: dict[str, dict[str, RadiusStats]] | None = {s: {} for s in sources} if radius_names else None
    for s in sources:
        for a in radius_names:
            start = done

            def on_radius(p_done: int, a=a, s=s, start=start) -> bool:
                nonlocal done
                done = start + p_done
                try:
                    report(f"{attacks.get_attack(a).title} radius on {s}")
                except Cancelled:
                    return True
                return False

            radii[s][a] = radius_stats(loaded[s], x_src[s], y_src[s], a, norm, chunks, dev,  # type: ignore[index]
                                       on_radius)
            done = start + radius_steps[a] * n_img
            report(f"{attacks.get_attack(a).title} radius on {s}")
    sweep = {s: {a: SweepCurve(eps=list(eps_list), asr=[r.sources[s][a].asr for r in runs])
                 for a in attack_names} for s in sources}
    return CompareResult(
        schema=SCHEMA,
        dataset=dataset,
        sources=list(sources),
        targets=list(targets),
        attacks=list(attack_names),
        attack_titles={a: attacks.get_attack(a).title for a in attack_names},
        norm=norm,
        eps=list(eps_list),
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        images=[ImageRecord(it.name, it.label) for it in images],
        labels=LABELS,
        success=SUCCESS,
        transfer_resize=RESIZE,
        clean=clean,
        runs=runs,
        sweep=sweep,
        device=describe(dev),
        seconds=time.perf_counter() - t_start,
        stop_on_success=stop_on_success,
        agr_alpha=agr_alpha,
        resolution=resolution,
        agreement=agreement,
        correct={s: m.nonzero().squeeze(1).tolist() for s, m in correct_mask.items()} if known else None,
        radius=radii,
        square_queries=square_queries,
    )


def radius_budget(attack: str) -> int:
    """Most gradient iterations per image of a minimal-norm attack at its defaults (C&W: steps x binary steps)."""
    steps = int(attacks.param_default(attack, "steps"))
    if "binary_steps" in attacks.accepted_params(attack):
        steps *= int(attacks.param_default(attack, "binary_steps"))
    return steps


def radius_params(attack: str, norm: str) -> dict[str, Any]:
    """The parameters a radius run uses: the attack's own defaults, no budget, the comparison's norm (C&W's
    radius is L2 whatever the norm; DeepFool takes the norm as its variant)."""
    spec = attacks.get_attack(attack)
    out: dict[str, Any] = {"eps": None, "norm": norm, "steps": attacks.param_default(attack, "steps")}
    out.update(spec.defaults())
    return out


def radius_stats(model: torch.nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, attack: str, norm: str,
                 chunks: Sequence[tuple[int, int]], dev: torch.device, on_step=None) -> RadiusStats:
    """One minimal-norm attack's robustness radius on every image: a function of the images and their labels
    (``y_all``: the source's clean predictions), batch by batch. ``on_step(image_steps_done)`` may return True
    to cancel (raises :class:`Cancelled`)."""
    params = radius_params(attack, norm)
    found: list[bool] = []
    rad: list[float | None] = []
    l2: list[float | None] = []
    linf: list[float | None] = []
    rnorm = norm
    seconds = 0.0
    per_image = radius_budget(attack)
    for lo, hi in chunks:
        x = x_all[lo:hi].to(dev)
        y = y_all[lo:hi].to(dev)

        def cb(info: attacks.StepInfo, lo=lo, k=hi - lo) -> bool:
            return bool(on_step(lo * per_image + info.step * k)) if on_step is not None else False

        res = attacks.run(attack, model, x, y, callback=cb, **params)
        if res.cancelled:
            raise Cancelled(f"cancelled during the {attack} radius")
        if "radius" not in res.params:
            raise AdvlabError(f"{attack} does not record a robustness radius.")
        seconds += res.seconds
        rnorm = res.params["radius_norm"]
        r = res.params["radius"]
        ok = [bool(np.isfinite(v)) for v in r]
        d = (res.x_adv - x).detach().double().flatten(1).cpu()
        found += ok
        rad += [float(v) if k else None for v, k in zip(r, ok, strict=True)]
        l2 += [float(v) if k else None for v, k in zip(d.norm(dim=1).tolist(), ok, strict=True)]
        linf += [float(v) if k else None for v, k in zip(d.abs().amax(1).tolist(), ok, strict=True)]
    return RadiusStats(norm=rnorm, found=found, radius=rad, l2=l2, linf=linf, median=median_radius(rad),
                       params={k: v for k, v in params.items() if v is not None}, seconds=seconds)


def radius_rows(result: CompareResult, source: str, sort_by: str | None = None, descending: bool = False
                ) -> list[dict]:
    """The per-image radius table of one source: one row per image with each attack's radius (its norm) and the
    L2 / L-inf sizes; sorted by ``sort_by``'s radius (not found last ascending, first descending), else in
    image order."""
    if not result.radius or source not in result.radius:
        return []
    by = result.radius[source]
    names = result.image_names or [i.name for i in result.images]
    rows = []
    for i, name in enumerate(names):
        row: dict[str, Any] = {"index": i, "image": name}
        for a, st in by.items():
            row[f"{a}_radius"] = st.radius[i]
            row[f"{a}_radius_norm"] = st.norm
            row[f"{a}_l2"] = st.l2[i]
            row[f"{a}_linf"] = st.linf[i]
        rows.append(row)
    if sort_by is not None:
        key = f"{sort_by}_radius"
        inf = float("inf")
        rows.sort(key=lambda r: (r[key] if r[key] is not None else inf, r["index"]), reverse=descending)
    return rows


def radius_finding(result: CompareResult, source: str) -> str:
    """Which image is most fragile and which most robust for each radius attack on ``source``, the median and
    how many images the search did not crack, in words computed from ``result.radius``."""
    if not result.radius or source not in result.radius:
        return ""
    names = result.image_names or [i.name for i in result.images]
    parts = []
    for a, st in result.radius[source].items():
        title = result_title(a)
        ok = [(v, i) for i, v in enumerate(st.radius) if v is not None]
        miss = len(st.radius) - len(ok)
        if not ok:
            parts.append(f"{title} found no adversarial example on any of the {len(st.radius)} image(s) within its "
                         "iteration limit")
            continue
        lo, hi = min(ok), max(ok)
        text = (f"{title} ({radius_norm_words(st.norm)}): most fragile {names[lo[1]]} at "
                f"{radius_text(lo[0], st.norm, result.dataset)}, most robust found {names[hi[1]]} at "
                f"{radius_text(hi[0], st.norm, result.dataset)}, median "
                + (radius_text(st.median, st.norm, result.dataset) if st.median is not None else NOT_FOUND))
        if miss:
            text += f"; {miss} of {len(st.radius)} image(s) {NOT_FOUND}"
        parts.append(text)
    return f"On {source}: " + "; ".join(parts) + "."


def result_title(attack: str) -> str:
    return attacks.get_attack(attack).short_title


def radius_norm_words(norm: str) -> str:
    return "L-inf radius" if norm == "linf" else "L2 radius"


def radius_text(value: float | None, norm: str, dataset: str = "imagenet") -> str:
    """A radius for people: L-inf in x/255 (8-bit levels) with pixel units, L2 in pixel L2; None: not found."""
    if value is None:
        return NOT_FOUND
    if norm == "linf":
        return f"{value * 255:.3g}/255 ({value:.4g} pixel units)"
    return f"{value:.4g} (pixel L2)"


# --------------------------------------------------------------------------- reading a result


def run_at(result: CompareResult, eps: float) -> CompareRun:
    """The run of ``result`` at ``eps`` (the closest measured eps)."""
    return min(result.runs, key=lambda r: abs(r.eps - eps))


def table_rows(result: CompareResult, eps: float | None = None) -> list[dict]:
    """One row per source and attack at ``eps`` (default: the largest): the per-attack table (a CSV's rows)."""
    run = run_at(result, result.eps[-1] if eps is None else eps)
    rows = []
    for s in result.sources:
        for a in result.attacks:
            st = run.sources[s][a]
            rows.append({"source": s, "attack": a, "title": result.attack_titles[a], "eps": run.eps,
                         **{k: getattr(st, k) for k in ("n", "successes", "asr", "asr_8bit", "cosine_similarity",
                                                "cosine_similarity_std",
                                                "amp", "p_clean", "l2", "linf", "steps_to_success", "grad_evals",
                                                "seconds")}})
    return rows


def transfer_rows(result: CompareResult) -> list[dict]:
    """The transfer matrices in long form: one row per eps, attack, source and target."""
    rows = []
    for run in result.runs:
        for a in result.attacks:
            for s in result.sources:
                for t in result.targets:
                    st = run.sources[s][a]
                    rows.append({"eps": run.eps, "attack": a, "source": s, "target": t,
                                 "white_box": s == t, "success_rate": st.transfer[t],
                                 "success_rate_8bit": st.transfer_8bit[t],
                                 "success_rate_correct": st.transfer_correct[t],
                                 "clean_agreement": result.agreement[s][t]})
    return rows


def sweep_rows(result: CompareResult) -> list[dict]:
    """ASR against eps in long form: one row per source, attack and eps."""
    return [{"norm": result.norm, "source": s, "attack": a, "eps": e, "asr": v}
            for s, by in result.sweep.items() for a, cur in by.items()
            for e, v in zip(cur.eps, cur.asr, strict=True)]


def _eps_words(result: CompareResult, e: float) -> str:
    norm = "L-inf" if result.norm == "linf" else "L2"
    return f"{norm} eps " + (f"{e * 255:.3g}/255" if result.norm == "linf" and result.dataset == "imagenet"
                             else f"{e:g}")


def policy_words(result: CompareResult) -> str:
    """The stop policy and AGR's base step of a run, in words."""
    return f"{STOP_TEXT[result.stop_on_success]}; {AGR_ALPHA_TEXT[result.agr_alpha]}"


def summary(result: CompareResult, eps: float | None = None) -> list[str]:
    """Sentences on what a run measured for AGR against I-FGSM and MI-FGSM (all numbers from ``result``)."""
    run = run_at(result, result.eps[-1] if eps is None else eps)
    out = []
    have = [a for a in ("agr", "ifgsm", "mifgsm") if a in result.attacks]
    if "agr" not in have or len(have) < 2:
        return out
    n = len(result.images)
    for s in result.sources:
        st = run.sources[s]
        others = [a for a in have if a != "agr"]

        asr = ", ".join(f"{result.attack_titles[a]} {percent_cell(st[a].asr)}" for a in others)
        amp = ", ".join(f"{st[a].amp:.4g}" for a in others)
        p_left = ", ".join(f"{st[a].p_clean:.3f}" for a in others)
        cos = ", ".join(f"{st[a].cosine_similarity:.7f}" for a in others)
        better = [a for a in others if st['agr'].asr > st[a].asr]
        worse = [a for a in others if st['agr'].asr < st[a].asr]
        verdict = ("higher than" if len(better) == len(others) else "lower than" if len(worse) == len(others)
                   else "between or equal to")
        text = (f"On {s}, {n} image(s), {_eps_words(result, run.eps)}, {result.steps} steps ({policy_words(result)}): "
                f"AGR fooled {percent_cell(st['agr'].asr)} ({verdict} {asr}); AMP {st['agr'].amp:.4g} against {amp} "
                f"(pixel units); probability left on the clean label {st['agr'].p_clean:.3f} against {p_left}; "
                f"mean cosine similarity {st['agr'].cosine_similarity:.7f} against {cos}")
        off = [t for t in result.targets if t != s]
        if off:
            mean_off = {a: float(np.mean([st[a].transfer[t] for t in off])) for a in have}
            text += ("; transfer to the other model(s), mean success: AGR " + percent_cell(mean_off["agr"]) + ", "
                     + ", ".join(f"{result.attack_titles[a]} {percent_cell(mean_off[a])}" for a in others))
        out.append(text + ".")
    return out


def _tied(values: dict[str, float], best: float, tol: float = 1e-12) -> list[str]:
    return [a for a, v in values.items() if abs(v - best) <= tol]


def ranking_finding(result: CompareResult, eps: float | None = None) -> list[str]:
    """Per source: which attack fooled most, which changed the image least (AMP), which left the least
    probability on the clean label, and whether that matches the paper's claim that AGR does both."""
    run = run_at(result, result.eps[-1] if eps is None else eps)
    out = []
    t = result.attack_titles
    for s in result.sources:
        st = run.sources[s]
        asr = {a: st[a].asr for a in result.attacks}
        amp = {a: st[a].amp for a in result.attacks if st[a].amp is not None}
        top = _tied(asr, max(asr.values()))
        low = _tied(amp, min(amp.values()), tol=1e-9) if amp else []
        text = (f"On {s}: highest ASR {percent_cell(max(asr.values()))} by {', '.join(t[a] for a in top)}"
                + (f"; smallest AMP {min(amp.values()):.4g} (pixel units) by {', '.join(t[a] for a in low)}"
                   if amp else ""))
        if all(v == 1.0 for v in asr.values()):
            text += "; every attack fooled every image, so ASR does not separate them at this budget"
        if "agr" in result.attacks:
            both = "agr" in top and "agr" in low
            text += (" — AGR is both, as the paper claims" if both else
                     " — AGR is not both, against the paper's claim that it fools most with the smallest change")
        out.append(text + ".")
    return out


def transfer_finding(result: CompareResult, attack: str, eps: float | None = None) -> str:
    """White-box against black-box cells of one attack's transfer matrix, in words computed from it."""
    run = run_at(result, result.eps[-1] if eps is None else eps)
    m = run.transfer_matrix[attack]
    wb = {s: row[m.columns.index(s)] for s, row in zip(m.rows, m.values, strict=True) if s in m.columns}
    cells = [(s, t, v) for s, row in zip(m.rows, m.values, strict=True)
             for t, v in zip(m.columns, row, strict=True) if s != t]
    if not cells:
        return "Only white-box cells: add a target model other than the sources to measure transfer."
    black = float(np.mean([v for _, _, v in cells]))
    if not wb:
        return f"Mean black-box success {percent_cell(black)} (no source is among the targets)."
    white = float(np.mean(list(wb.values())))
    rel = "lower than" if black < white else "higher than" if black > white else "equal to"
    text = (f"Mean black-box success {percent_cell(black)}, {rel} the mean white-box {percent_cell(white)} "
            f"({len(cells)} black-box cell(s))")
    above = [(s, tt, v) for s, tt, v in cells if s in wb and v > wb[s]]
    if above:
        text += ("; above its own row's white-box rate: " + ", ".join(
            f"{s} -> {tt} {percent_cell(v)} against {percent_cell(wb[s])}" for s, tt, v in above))
    return text + "."


def sweep_finding(result: CompareResult, source: str) -> str:
    """Where each ASR-against-eps curve first reaches 100%, and how AGR's curve lies against I-FGSM's and
    MI-FGSM's, computed from the sweep."""
    curves = result.sweep[source]
    parts = []
    for a, cur in curves.items():
        full = [e for e, v in zip(cur.eps, cur.asr, strict=True) if v >= 1.0]
        where = f"100% from {_eps_words(result, full[0])}" if full else f"at most {percent_cell(max(cur.asr))}"
        parts.append(f"{result.attack_titles[a]} {where}")
    text = f"On {source}: " + "; ".join(parts)
    if "agr" in curves:
        for o in ("ifgsm", "mifgsm"):
            if o in curves:
                pairs = list(zip(curves["agr"].asr, curves[o].asr, strict=True))
                hi = sum(x > y for x, y in pairs)
                lo = sum(x < y for x, y in pairs)
                text += (f". AGR above {result.attack_titles[o]} at {hi}, below at {lo}, equal at "
                         f"{len(pairs) - hi - lo} of {len(pairs)} budget(s)")
    return text + "."


# --------------------------------------------------------------------------- reading a saved run back


def _stats_from(d: dict) -> AttackStats:
    own = {k: d.get(k) for k in _STAT_KEYS}
    return AttackStats(**own, seconds=float(d.get("seconds", 0.0)), transfer=dict(d["transfer"]),
                       per_image=dict(d.get("per_image", {})), transfer_8bit=dict(d.get("transfer_8bit", {})),
                       transfer_correct=dict(d.get("transfer_correct", {})))


def from_dict(d: dict) -> CompareResult:
    """A :class:`CompareResult` from its JSON (:meth:`CompareResult.to_dict`, schema :data:`SCHEMA`)."""
    if d.get("schema") != SCHEMA:
        raise AdvlabError(f"Not a comparison of schema {SCHEMA}: {d.get('schema')!r}.")
    runs = [CompareRun(eps=r["eps"], sources={s: {a: _stats_from(st) for a, st in by.items()}
                                              for s, by in r["sources"].items()},
                       transfer_matrix={a: TransferMatrix(**m) for a, m in r["transfer_matrix"].items()})
            for r in d["runs"]]
    clean = {m: CleanPredictions(**c) for m, c in d["clean"].items()}
    return CompareResult(
        schema=d["schema"], dataset=d["dataset"], sources=list(d["sources"]), targets=list(d["targets"]),
        attacks=list(d["attacks"]), attack_titles=dict(d["attack_titles"]), norm=d["norm"], eps=list(d["eps"]),
        steps=d["steps"], seed=d["seed"], batch_size=d["batch_size"],
        images=[ImageRecord(i["name"], i["true_label"]) for i in d["images"]], labels=d["labels"],
        success=d["success"], transfer_resize=d["transfer_resize"], clean=clean, runs=runs,
        sweep={s: {a: SweepCurve(**c) for a, c in by.items()} for s, by in d["sweep"].items()},
        device=d["device"], seconds=d["seconds"], stop_on_success=d["stop_on_success"], agr_alpha=d["agr_alpha"],
        resolution=d["resolution"], square_queries=int(d.get("square_queries", DEFAULT_SQUARE_QUERIES)),
        agreement={s: dict(v) for s, v in d["agreement"].items()},
        correct=None if d["correct"] is None else {s: list(v) for s, v in d["correct"].items()},
        images_source=d.get("images_source"), notes=d.get("notes"), image_names=d.get("image_names"),
        radius=None if d.get("radius") is None else {s: {a: RadiusStats(**r) for a, r in by.items()}
                                                     for s, by in d["radius"].items()})


#: The page's heavy default, shipped (``python -m advcore compare`` with these settings ``--json``): EfficientNet-
#: Lite0 on the 9 bundled photos shown to Lite0/1/2, L-inf 4/255, 10 steps, seed 0, stop policy all, alpha = eps.
SAVED_DIR = Path(__file__).resolve().parents[2] / "assets" / "compare"
SAVED = {"default-imagenet.json": {"sources": ["efficientnet-lite0"],
                                   "targets": ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"],
                                   "attacks": list(DEFAULT_ATTACKS), "norm": "linf", "eps": [4 / 255], "steps": 10,
                                   "seed": 0, "stop_on_success": "all", "agr_alpha": "eps", "resolution": None,
                                   "images": "samples"}}


def saved_result(settings: dict) -> tuple[CompareResult, str] | None:
    """The shipped run with exactly these ``settings`` (the keys of :data:`SAVED`'s entries) and its file name,
    or None. The shipped runs measure no robustness radius, so settings asking for one match none."""
    if settings.get("radius"):
        return None
    for name, want in SAVED.items():
        if all(settings.get(k) == v for k, v in want.items()) and (SAVED_DIR / name).is_file():
            return from_dict(json.loads((SAVED_DIR / name).read_text(encoding="utf-8"))), name
    return None
