"""What the Training lab page needs besides widgets: the shipped model cards, the rows of Table 1, the
findings paragraph (every number computed from the cards), a person's own short training run (request, its
log and the words of its progress, what a stopped run says, its card) and the equivalent command line (no
Streamlit: the page runs it with ``ui.session.TRAIN_RUN`` and keeps the cards in ``ui.session.TRAIN_RUNS``), and
Table 1 recomputed on a few images (``advcore.labs.training.table1``, the function ``python -m advcore table1``
calls) beside the cards' numbers.

Training and evaluation are ``advcore.labs.training.train`` and ``advcore.labs.training.evaluate``, the functions
``python -m advcore train`` calls.
"""

from __future__ import annotations

import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advcore import datasets
from advcore.defenses import METHODS
from advcore.errors import AdvlabError
from advcore.labs import training
from advcore.models import zoo
from advcore.progress import Progress, ProgressFn
from advcore.units import parse_eps_list, percent_cell
from ui import workers

MODELS_DIR: Path = zoo.MODELS_DIR
EXPECTED_ROLES = ("naive", "fgsm", "pgd", "mat-mixed", "mat-parallel")  # the models the Training lab compares
DATASET_TITLES = {"fashion-mnist": "Fashion-MNIST", "digits": "scikit-learn digits"}
RECIPE_TITLES = {
    "standard": "Standard (clean images only)",
    "fgsm": "Single strength, FGSM examples",
    "pgd": "Single strength, PGD-7 examples",
    "mat-mixed": "Mixed MAT (one network)",
    "mat-parallel": "Parallel MAT (one network per strength)",
}
# The paper's Table 1, MNIST row (its own models, FGSM, eps 0 to 0.3): quoted, never measured here.

GRID = tuple(training.DEFAULT_GRID)  # strengths a person may train with: 0.05 ... 0.3
EVAL_EPS = tuple(training.DEFAULT_EVAL_EPS)  # the cards' strengths: 0, 0.03, ..., 0.3
IMAGE_CHOICES = (500, 1000, 2000, 5000, 10000, 20000)
EVAL_CHOICES = (200, 500, 1000, 3000)
MAX_EPOCHS = 3
VOTE_IMAGES = 500  # parallel MAT's voting weights on the page (the command line defaults to 2,000)
OUT_DIR = "runs"


# --------------------------------------------------------------------------- the shipped cards


def load_cards(directory: Path | None = None) -> tuple[list[dict], list[str]]:
    """The shipped model cards that hold accuracy curves, in the zoo's order, and why others were skipped."""
    cards, skipped = [], []
    for path in zoo.shipped_cards(directory or MODELS_DIR):
        try:
            card = zoo.read_card(path)
        except AdvlabError as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        if not card.get("curves"):
            skipped.append(f"{path.name}: no accuracy curves (not evaluated yet)")
            continue
        cards.append(card)
    return cards, skipped


def missing(cards: list[dict]) -> list[str]:
    """The roles the Training lab compares that no card with curves fills (yet)."""
    have = {zoo.role_of(c) for c in cards if c.get("dataset") == "fashion-mnist"}
    return [f"a Fashion-MNIST {r} model" for r in EXPECTED_ROLES if r not in have]


def recipe(card: dict) -> str:
    return str(card.get("recipe", {}).get("name", ""))


def strengths_text(card: dict) -> str:
    return ", ".join(f"{s:g}" for s in card.get("strengths", [])) or "–"


def halftone_title(card: dict) -> str:
    """The halftone a card's model was trained on and halftones its input with: ``Floyd-Steinberg``."""
    method = str((card.get("input_transform") or {}).get("halftone", "floyd-steinberg"))
    return METHODS.get(method, method).split(" (")[0].removesuffix(" error diffusion")


def training_title(card: dict) -> str:
    """What a model was trained on, for Table 1: halftone and hybrid models are named as what they are, not as
    standard training on clean images (their recipe is "standard", their input transform is not)."""
    role = zoo.role_of(card)
    if role == "halftone":
        return f"Standard on halftones ({halftone_title(card)})"
    if role == "hybrid":
        return f"Hybrid: images + halftones ({halftone_title(card)})"
    return RECIPE_TITLES.get(recipe(card), recipe(card))


def _standard_label(card: dict) -> str:
    role = zoo.role_of(card)
    if role in ("halftone", "hybrid"):
        return training_title(card)
    return "Standard training"


def short_label(card: dict) -> str:
    """``FGSM training (0.1)``: recipe and strengths, short enough for a legend."""
    eps = strengths_text(card)
    label = {
        "standard": _standard_label(card),
        "fgsm": f"FGSM training ({eps})",
        "pgd": f"PGD training ({eps})",
        "mat-mixed": f"Mixed MAT ({eps})",
        "mat-parallel": f"Parallel MAT ({eps})",
    }.get(recipe(card), card.get("title", card.get("name", "?")))
    return f"{card['name']}: {label}" if card.get("run") is not None else label


def series(cards: list[dict], attack: str) -> list[dict]:
    """Figure 4's lines under ``attack`` for the cards that hold that curve."""
    out = []
    for c in cards:
        curve = c.get("curves", {}).get(attack)
        if curve:
            out.append({"name": short_label(c), "eps": curve["eps"], "accuracy": curve["accuracy"],
                        "recipe": recipe(c), "role": zoo.role_of(c), "run": c.get("run")})
    return out


def epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def pct(value: float | None) -> str:
    return percent_cell(value, 2)


def average(card: dict, attack: str) -> float | None:
    curve = card.get("curves", {}).get(attack)
    return None if not curve else curve.get("average_accuracy")


def table_rows(cards: list[dict]) -> list[dict[str, str]]:
    """The paper's Table 1 for our models: average accuracy over the strengths, clean accuracy, cost."""
    rows = []
    for c in cards:
        curves = c.get("curves", {})
        n = " / ".join(f"{curves[a]['n']:,}" if a in curves else "–" for a in ("fgsm", "pgd"))
        images = c.get("data", {}).get("train_images")
        rows.append({
            "Model": c["name"],
            "Training": training_title(c),
            "Strengths": strengths_text(c),
            "Epochs": str(c.get("epochs", "–")),
            "Training images": f"{images:,}" if isinstance(images, int) else "–",
            "Training time": f"{c['training_seconds']:,.0f} s" if c.get("training_seconds") is not None else "–",
            "Clean": pct(c.get("clean_accuracy")),
            "FGSM average": pct(average(c, "fgsm")),
            "PGD-10 average": pct(average(c, "pgd")),
            "R+FGSM average": pct(average(c, "rfgsm")),
            "Paper protocol (FGSM from fmnist-naive)": pct(average(c, "transfer_fgsm")),
            "Images (FGSM / PGD)": n,
        })
    return rows


def _neighbours(curve: dict, eps: float) -> str:
    xs = sorted(curve["eps"])
    lo = max((x for x in xs if x <= eps), default=xs[0])
    hi = min((x for x in xs if x >= eps), default=xs[-1])
    return f"{lo:g} and {hi:g}"


def _first(cards: list[dict], role: str) -> dict | None:
    """The first card of a role (``naive``: standard training on clean images, not the halftone models)."""
    return next((c for c in cards if zoo.role_of(c) == role), None)


def findings(cards: list[dict]) -> list[str]:
    """"What our measurements say": sentences built from the cards' numbers, and the paper's for comparison."""
    out = []
    with_fgsm = [c for c in cards if average(c, "fgsm") is not None]
    with_pgd = [c for c in cards if average(c, "pgd") is not None]
    naive, single, mixed, parallel = (_first(cards, r) for r in ("naive", "fgsm", "mat-mixed", "mat-parallel"))
    if with_fgsm:
        best = max(with_fgsm, key=lambda c: average(c, "fgsm"))
        text = (f"Averaged over the attack strengths 0 to {max(best['curves']['fgsm']['eps']):g}, "
                f"{short_label(best)} holds up best against FGSM ({pct(average(best, 'fgsm'))})")
        if with_pgd:
            best_pgd = max(with_pgd, key=lambda c: average(c, "pgd"))
            same = " too" if best_pgd is best else f" it is {short_label(best_pgd)}"
            text += f"; against PGD-10{same} ({pct(average(best_pgd, 'pgd'))})"
        if naive is not None and naive is not best:
            text += (f", while standard training keeps {pct(average(naive, 'fgsm'))} under FGSM"
                     + (f" and {pct(average(naive, 'pgd'))} under PGD-10" if average(naive, "pgd") is not None
                        else ""))
        out.append(text + ".")
    if naive is not None and single is not None and "fgsm" in naive.get("curves", {}) \
            and "fgsm" in single.get("curves", {}) and single.get("strengths"):
        eps = float(single["strengths"][0])
        a_naive, exact = training.accuracy_at(naive["curves"]["fgsm"], eps)
        a_single, _ = training.accuracy_at(single["curves"]["fgsm"], eps)
        between = _neighbours(single["curves"]["fgsm"], eps)
        where = "" if exact else f" (interpolated between the measured strengths {between})"
        text = (f"At eps {eps:g}, the strength the FGSM model was trained at{where}, FGSM leaves the standard model "
                f"{pct(a_naive)} accuracy and the FGSM-trained model {pct(a_single)}")
        cn, cs = naive.get("clean_accuracy"), single.get("clean_accuracy")
        if cn is not None and cs is not None:
            if cs < cn:
                text += (f"; the price is clean accuracy, {pct(cs)} against {pct(cn)}, as the paper observes "
                         "for single-strength training")
            else:
                text += f"; its clean accuracy is {pct(cs)} against the standard model's {pct(cn)}"
        out.append(text + ".")
    if mixed is not None and single is not None and average(mixed, "fgsm") is not None \
            and average(single, "fgsm") is not None:
        m, s = average(mixed, "fgsm"), average(single, "fgsm")
        verdict = "beats" if m > s else "does not beat"
        paper = ("the paper found the opposite on MNIST, where mixed MAT (95.76%) fell short of single-strength "
                 "training (96.50%)" if m > s else
                 "so does the paper's on MNIST (mixed MAT 95.76% against single strength 96.50%)")
        text = (f"Mixed MAT ({strengths_text(mixed)}) {verdict} single-strength FGSM training here on average "
                f"under FGSM ({pct(m)} against {pct(s)}); {paper}")
        mp, sp = average(mixed, "pgd"), average(single, "pgd")
        if m > s and mp is not None and sp is not None and mp <= sp:
            text += (f". Under PGD-10, however, mixed MAT averages {pct(mp)} against {pct(sp)}: part of its FGSM "
                     "robustness does not hold against an iterative attack")
        out.append(text + ".")
    masked = []  # curves that climb again at large eps: FGSM examples the model learned to recognise
    for c in with_fgsm:
        fgsm = c["curves"]["fgsm"]
        low = int(np.argmin(fgsm["accuracy"]))
        if low < len(fgsm["accuracy"]) - 1 and fgsm["accuracy"][-1] - fgsm["accuracy"][low] >= 0.05:
            masked.append((c, fgsm, low))
    if masked:
        def both(parts: list[str]) -> str:
            return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

        one = len(masked) == 1
        last = masked[0][1]["eps"][-1]
        text = (f"The FGSM {'curve' if one else 'curves'} of {both([short_label(c) for c, _, _ in masked])} "
                f"{'falls' if one else 'fall'} to "
                + both([f"{pct(f['accuracy'][i])} (eps {f['eps'][i]:g})" for _, f, i in masked])
                + f", then {'climbs' if one else 'climb'} back to "
                + both([pct(f["accuracy"][-1]) for _, f, _ in masked]) + f" at eps {last:g}")
        pgd = [c["curves"]["pgd"]["accuracy"][-1] for c, _, _ in masked if "pgd" in c.get("curves", {})]
        if len(pgd) == len(masked):
            text += f", while PGD-10 leaves {'it' if one else 'them'} {both([pct(a) for a in pgd])} there"
        fgsm_trained = all(c.get("recipe", {}).get("example_attack") == "fgsm" for c, _, _ in masked)
        they, were = ("the model has", "it was") if one else ("the models have", "they were")
        why = (f"{they} learned to recognise the single large FGSM step {were} trained on rather than to resist "
               "every attack of that size, a known sign of gradient masking (label leaking)" if fgsm_trained
               else "one FGSM step no longer finds the weak directions, a known sign of gradient masking")
        out.append(f"{text}: {why}, which is why the PGD-10 curves matter.")
    if parallel is not None and average(parallel, "fgsm") is not None:
        p = average(parallel, "fgsm")
        others = [c for c in with_fgsm if c is not parallel]
        ahead = [c for c in others if average(c, "fgsm") > p]
        rank = ("the best of our models" if not ahead else
                f"behind {', '.join(short_label(c) for c in ahead)}")
        out.append(f"Parallel MAT ({strengths_text(parallel)}) averages {pct(p)} under FGSM, {rank}; "
                   "in the paper it is the best scheme on every dataset (97.36% on MNIST).")
    absent = missing(cards)
    if absent:
        out.append(f"Not measured yet: {', '.join(absent)} (no model card in assets/models; "
                   f"scripts/train_zoo.sh trains {'it' if len(absent) == 1 else 'them'}).")
    return out


def protocol_findings(cards: list[dict]) -> list[str]:
    """The paper's protocol (static FGSM sets crafted on the naive model, Sec. 5.1) and the label-leaking
    evidence, in sentences computed from the cards' transfer_fgsm, fgsm and rfgsm curves."""
    rows = [(c, average(c, "transfer_fgsm")) for c in cards if average(c, "transfer_fgsm") is not None]
    if not rows:
        return []
    rows.sort(key=lambda r: -r[1])
    source = rows[0][0]["curves"]["transfer_fgsm"].get("source", "the naive model")
    out = [f"Under the paper's protocol (FGSM sets crafted once on {source} and shown to every model, averaged "
           "over eps 0 to 0.3) the ordering is " + ", ".join(f"{c['name']} {pct(a)}" for c, a in rows) + "."]
    leaks = []
    for c in cards:
        leak = training.label_leaking(c.get("curves", {}), c.get("clean_accuracy") or 0.0)
        if leak and leak["rfgsm"] is not None and leak["fgsm"] >= (c.get("clean_accuracy") or 0.0) - 0.01:
            leaks.append(f"{c['name']}: white-box FGSM {pct(leak['fgsm'])} at eps {leak['eps']:g} against clean "
                         f"{pct(leak['clean'])}, R+FGSM (random step eps/2) {pct(leak['rfgsm'])} there")
    if leaks:
        out.append("Label leaking, not robustness, lifts these numbers: white-box FGSM accuracy above, or within one "
                   "point of, clean accuracy at a large eps, which a random start breaks (" + "; ".join(leaks) + ").")
    return out


def reconstructions() -> str:
    """What the paper leaves open and advlab reconstructed (H(S), the transition matrix, the votes)."""
    return "Reconstructions (the paper gives no formula): " + "; ".join(
        f"{k}: {v}" for k, v in training.RECONSTRUCTED.items()) + "."


def paper_comparison() -> str:
    """The paper's own Table 1 numbers for MNIST, quoted as the paper's."""
    paper = ", ".join(f"{k} {v:.2f}%" for k, v in training.PAPER_MNIST.items())
    return (f"For comparison, the paper's own Table 1 for MNIST (its models, FGSM, eps 0 to 0.3): {paper}. "
            "Those are the paper's numbers on handwritten digits, not ours; Fashion-MNIST's clothes are harder "
            "to classify, so compare the ordering of the schemes rather than the values.")


def selections(cards: list[dict]) -> list[dict]:
    """Cards whose strengths were chosen by the random walk (they hold the walk and its accuracy matrix)."""
    return [c for c in cards if isinstance(c.get("strength_selection"), dict)
            and isinstance(c["strength_selection"].get("walk"), dict)]


def voting(cards: list[dict]) -> list[dict]:
    """Parallel MAT cards with their learned voting weights."""
    return [c for c in cards if isinstance(c.get("voting"), dict) and c["voting"].get("weights")]


def walk_caption(card: dict) -> str:
    """What the walk did, in numbers from the card."""
    sel = card["strength_selection"]
    walk = sel["walk"]
    matrix = sel.get("matrix") or {}
    chosen = ", ".join(f"{s:g}" for s in walk["strengths"])
    train = matrix.get("training") or {}
    made = ""
    if isinstance(train.get("images"), int):
        made = (f"Each row of A is a quick single-strength model ({train['images']:,} training images, "
                f"{epochs(train.get('epochs', 1))}) evaluated with {matrix.get('evaluation', 'validation images')}. ")
    return (f"{made}The walk ({walk['walks']} walks of {walk['walk_length']} steps, seed {walk['seed']}) keeps the "
            f"set of strengths with the best G = H - {walk['penalty']:g} x S: it chose {chosen} "
            f"(H = {pct(walk['H'])}, the estimated average accuracy when the best member answers at every attack "
            f"strength; G = {walk['G']:.4f}). The path shown is the walk that first reached that set.")


# --------------------------------------------------------------------------- a run started on the page


@dataclass(frozen=True)
class RunRequest:
    """What a person asked to train on the page; hashable, so it can wait in session state."""

    dataset: str
    recipe: str
    strengths: tuple[float, ...]
    epochs: int
    limit: int
    seed: int
    eval_n: int
    device: str = "auto"

    def config(self) -> training.TrainConfig:
        return training.TrainConfig(recipe=self.recipe, strengths=self.strengths, epochs=self.epochs, seed=self.seed,
                                    dataset=self.dataset, limit=self.limit, vote_images=VOTE_IMAGES)

    def check(self) -> None:
        """Refuse what cannot be trained, with a sentence for a person (advcore checks the rest)."""
        if self.recipe.startswith("mat-") and not self.strengths:
            raise AdvlabError(f"{RECIPE_TITLES[self.recipe]} trains with several strengths: pick at least one "
                              "(the random walk chose the shipped models' sets, see above).")
        if self.recipe in ("fgsm", "pgd") and len(self.strengths) != 1:
            raise AdvlabError(f"Single-strength training uses exactly one strength; you picked {len(self.strengths)}.")
        if self.dataset == "fashion-mnist" and not datasets.fashion_mnist_available():
            raise AdvlabError(f"Fashion-MNIST is not installed here; {datasets.INSTALL_HINT}.")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise AdvlabError(f"The page trains for 1 to {MAX_EPOCHS} epochs; use the command line for more.")
        training.check_config(self.config())

    def cli_command(self) -> str:
        """The ``python -m advcore train`` line that trains and evaluates the same model."""
        prefix = {"fashion-mnist": "fmnist", "digits": "digits"}.get(self.dataset, self.dataset)
        parts = ["python -m advcore train", f"--recipe {self.recipe}"]
        if self.strengths:
            parts.append("--strengths " + ",".join(f"{s:g}" for s in self.strengths))
        parts += [f"--dataset {self.dataset}", f"--epochs {self.epochs}", f"--limit {self.limit}",
                  f"--seed {self.seed}", f"--eval-n {self.eval_n}", "--pgd-n 0"]
        if self.recipe == "mat-parallel":
            parts.append(f"--vote-images {VOTE_IMAGES}")
        if self.device == "cpu":
            parts.append("--device cpu")
        parts += [f"--out-dir {OUT_DIR}", f"--name {shlex.quote(f'{prefix}-my-{self.recipe}')}"]
        return " \\\n    ".join(parts)


def stage_title(stage: str) -> str:
    """advcore's stage names for people: ``train`` -> ``training``, ``fgsm eval`` -> ``FGSM evaluation``."""
    return {"train": "training", "fgsm eval": "FGSM evaluation", "pgd eval": "PGD evaluation",
            "vote": "fitting the voting weights"}.get(stage, stage)


class TrainingLog:
    """What a run reports as it goes: the words of its progress bar, its losses per stage, its messages, and when
    the loss chart is due for a redraw (at most every ``every`` seconds, and at the end of each epoch)."""

    def __init__(self, every: float = 0.75):
        self.every = every
        self.losses: dict[str, list[float]] = {}
        self.messages: list[str] = []
        self._drawn_at = -math.inf
        self._drawn_points = 0

    @staticmethod
    def marker(p: Progress) -> dict:
        """Where the run is, for a rerun that interrupts it (see :func:`interrupted`)."""
        return {"stage": stage_title(p.stage), "step": p.step, "total": p.total}

    def record(self, p: Progress) -> str:
        """Keep ``p``'s loss and message; returns the progress bar's words."""
        stage = stage_title(p.stage)
        text = f"{stage}: step {p.step} of {p.total}"
        if "loss" in p.info:
            text += f", loss {p.info['loss']:.3f}"
            if p.message is None:
                self.losses.setdefault(stage, []).append(float(p.info["loss"]))
        if "eps" in p.info:
            text += f" (eps {p.info['eps']:g})"
        if p.message:
            self.messages.append(p.message)
        return text

    def recent_messages(self) -> str:
        return "\n\n".join(self.messages[-4:])

    def points(self) -> int:
        return sum(len(v) for v in self.losses.values())

    def chart_due(self, p: Progress | None = None) -> bool:
        """Whether to redraw the loss chart now (``p`` None: the run is over); True marks it drawn. A chart is
        only drawn with new points, so Streamlit never sees the same chart twice."""
        points = self.points()
        if not points or points == self._drawn_points:
            return False
        if p is not None and not p.message and time.monotonic() - self._drawn_at < self.every:
            return False
        self._drawn_points, self._drawn_at = points, time.monotonic()
        return True

    def chart_title(self) -> str:
        return f"Training loss ({self.points()} steps so far)"


def _where(left: dict) -> str:
    return f"{left.get('stage', 'the start')}, step {left.get('step', 0)} of {left.get('total', '?')}"


def cancelled(left: dict | None) -> str:
    """Where a run stopped on the Cancel flag (``left``: its last RUNNING marker)."""
    return f"Training cancelled at {_where(left or {})}; nothing was kept. Press Train to start again."


def interrupted(left: dict, was_cancelled: bool) -> str:
    """Where a run that a rerun interrupted (a Cancel click, or a setting changed while it ran) stopped."""
    if was_cancelled:
        return cancelled(left)
    return (f"The training run stopped at {_where(left)} because the page reran (a setting changed while it ran); "
            "nothing was kept. Press Train to start again.")


def train_and_evaluate(req: RunRequest, progress: ProgressFn | None = None) -> tuple[tuple[dict, dict, str], Any]:
    """Train ``req`` with advcore and evaluate it with FGSM on the evaluation images: (the training card, the
    evaluation report, what the evaluation images are), see :func:`run_card`, and the trained model (taking [0, 1]
    pixels), which the page adds to the session's models. A worker job (:func:`job`): plain data and a picklable
    module back."""
    req.check()
    task = datasets.load_task(req.dataset, limit=req.limit)
    result = training.train(req.config(), task, device=req.device, progress=progress)
    n = min(req.eval_n, len(task.x_eval))
    report = training.evaluate(result.model, datasets.to_float(task.x_eval), task.y_eval, eps=EVAL_EPS,
                               fgsm_images=n, pgd_images=0, seed=req.seed, progress=progress)
    return (result.card, report, task.description["evaluation"]), result.model


def progress_report(p: Progress) -> Progress:
    """What of a training step travels from a worker: stage, step, total, message and the two numbers
    :meth:`TrainingLog.record` reads (``loss``, ``eps``), as floats."""
    info = {k: float(p.info[k]) for k in ("loss", "eps") if k in p.info}
    return Progress(p.stage, p.step, p.total, info, p.message)


def job(req: RunRequest) -> workers.Job:
    """:func:`train_and_evaluate` as a worker job (``ui.workers``): nothing of a session's own is needed."""
    return workers.Job(train_and_evaluate, (req,), progress="progress", report=progress_report)


def run_card(req: RunRequest, trained: tuple[dict, dict, str], number: int, log: TrainingLog) -> dict:
    """The card of this session's run ``number`` (as ``python -m advcore train`` would write it, without a
    checkpoint), from :func:`train_and_evaluate`'s answer and the run's log."""
    card, report, evaluation = trained
    return {**card, **report, "evaluation": evaluation, "name": f"your run {number}",
            "title": training.default_title(card), "run": number - 1, "command": req.cli_command(),
            "losses": log.losses, "messages": log.messages, "device": str(req.device)}


def run_summary(card: dict) -> str:
    """One sentence on a finished run, from its card."""
    fgsm = card["curves"]["fgsm"]
    where = "the shipped test subset" if card.get("dataset") == "fashion-mnist" else "held-out digits"
    return (f"**{card['name']}**: {training_title(card)}"
            f"{' at ' + strengths_text(card) if card.get('strengths') else ''}, {epochs(card['epochs'])} on "
            f"{card['data']['train_images']:,} {DATASET_TITLES.get(card['dataset'], card['dataset'])} images in "
            f"{card['training_seconds']:.1f} s. Clean accuracy {pct(card['clean_accuracy'])} on "
            f"{card['evaluation_images']:,} images of {where}; average FGSM accuracy {pct(fgsm['average_accuracy'])} "
            f"over eps 0 to {max(fgsm['eps']):g} on {fgsm['n']:,} images.")


# --------------------------------------------------------------------------- Table 1 recomputed

TABLE1_IMAGES = (10, 50, 100, 300, 1000)
TABLE1_EPS = {"0:0.3:0.03": "the paper's 11 (0, 0.03, ..., 0.3)", "0:0.3:0.1": "4 (0, 0.1, 0.2, 0.3)"}


@dataclass(frozen=True)
class Table1Request:
    """Table 1 recomputed on the first ``n`` evaluation images of ``dataset`` at the strengths ``eps`` (CLI text)."""

    dataset: str
    n: int
    eps: str
    device: str

    def commands(self) -> list[str]:
        """The CLI lines that print the same numbers: the paper protocol's (its JSON holds every column), then the
        white-box protocol's, whose averages are the paper run's white-box FGSM averages."""
        return [f"python -m advcore table1 --protocol {p} --dataset {self.dataset} --n {self.n} --eps {self.eps} "
                f"--json -" for p in ("paper", "white-box")]

    def run(self, progress: ProgressFn | None = None) -> dict:
        """Table 1 under the paper's protocol (``advcore.labs.training.table1``), which also measures every model's
        white-box FGSM and R+FGSM curves on the same images: both protocols' averages in one run."""
        return training.table1(self.dataset, protocol="paper", eps=parse_eps_list(self.eps), n=self.n,
                               device=self.device, progress=progress)[0]

    def job(self) -> workers.Job:
        """:meth:`run` as a worker job (``ui.workers``), its progress sent as plain reports."""
        return workers.progress_job(self.run)


def table1_rows(cards: list[dict], table: dict) -> list[dict]:
    """One row per model, best paper-protocol average first: the cards' precomputed averages beside the
    recomputed ones (fractions)."""
    by_name = {c["name"]: c for c in cards}
    models = table["models"]
    rows = []
    for name in sorted(models, key=lambda k: -models[k]["average_accuracy"]):
        card, m = by_name.get(name, {}), models[name]
        rows.append({"model": name,
                     "paper protocol, precomputed": average(card, "transfer_fgsm"),
                     "paper protocol, recomputed": m["average_accuracy"],
                     "white-box FGSM, precomputed": average(card, "fgsm"),
                     "white-box FGSM, recomputed": m["white_box_fgsm_average"],
                     "white-box R+FGSM, recomputed": m["rfgsm_average"],
                     "clean, recomputed": m["clean_accuracy"]})
    return rows


def table1_caption(rows: list[dict], t: dict, cards: list[dict]) -> str:
    """What the recomputed table ``t`` says against the precomputed one, computed from both."""
    n_pre = sorted({c["curves"]["transfer_fgsm"]["n"] for c in cards if "transfer_fgsm" in c.get("curves", {})})
    pre = [r for r in rows if r["paper protocol, precomputed"] is not None]
    top_now = rows[0]["model"]
    out = (f"Recomputed on the first {t['n']:,} images of the {t['data']} at {len(t['eps'])} strengths "
           f"({t['eps'][0]:g} to {t['eps'][-1]:g}); precomputed: the cards' curves on "
           f"{' or '.join(f'{v:,}' for v in n_pre) or 'no'} images at their own strengths. ")
    if pre:
        top_pre = max(pre, key=lambda r: r["paper protocol, precomputed"])["model"]
        gap = max(abs(r["paper protocol, recomputed"] - r["paper protocol, precomputed"]) for r in pre)
        same = ("as in the precomputed table" if top_now == top_pre else
                f"while the precomputed one ranks {top_pre} first")
        out += (f"Under the paper's protocol {top_now} ranks first here, {same}; the largest difference between a "
                f"recomputed and a precomputed average is {gap:.3f} (few images and other strengths move the "
                "averages). The white-box columns come from the same run (FGSM and R+FGSM crafted on each model "
                "itself): the averages `--protocol white-box` prints.")
    return out
