"""What the Poisoning lab page needs besides widgets: a run request with its command line, the words of its
progress and of a stopped run, the rows of the paper's three tables next to the paper's own numbers, and the
figures of one poison frog trial (no Streamlit: the page keeps the results in ``ui.session.POISON_RESULTS``).

The numbers are :func:`advcore.labs.poisoning.run`'s, the function ``python -m advcore poison`` calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go

from advcore.labs import poisoning
from advcore.paths import ROOT
from advcore.progress import Progress, ProgressFn
from advcore.units import percent_cell as pct
from ui import plots, workers

PAGE_KINDS = ("naive", "fgsm", "pgd", "imagenet", "split-naive", "split-pgd")
#: Short names for the feature picker's chips (the long titles were clipped); tables use KIND_TITLES.
CHIP_NAMES = {"naive": "naive", "fgsm": "FGSM", "pgd": "PGD", "imagenet": "ImageNet", "split-naive": "split naive",
              "split-pgd": "split PGD"}
DEFAULT_KINDS = ("naive", "fgsm", "pgd")  # ImageNet features on request: seconds more on a CPU
TABLES = {"ap": 1, "pf": 2, "lf": 3}
MAX_PAGE_TRIALS = 200

SHIPPED = ROOT / "bench" / "results" / "poisoning.json"  # bench/poisoning.py --settings (pf_settings.imagenet)

CLASS_COLOURS = ("#4c78a8", "#54a24b")
CLEAN_LINE, POISONED_LINE = "#7f7f7f", plots.WATCH


@dataclass(frozen=True)
class Request:
    """One table's computation, as the page's widgets describe it; hashable (it is the cache key)."""

    attack: str
    kinds: tuple[str, ...]
    eps_255: int
    method: str = "pgd"
    steps: int = poisoning.DEFAULT_STEPS
    share: float | None = None
    trials: int = 20
    seed: int = 0
    device: str = "cpu"
    poisons: int = 1
    base_choice: str = "random"
    schedule: str = "constant"
    C: float = poisoning.DEFAULT_C

    @property
    def eps(self) -> float:
        return self.eps_255 / 255

    def run(self, progress: ProgressFn | None = None) -> poisoning.PoisoningTable:
        return poisoning.run(self.attack, list(self.kinds), eps=self.eps, share=self.share, trials=self.trials,
                             method=self.method, steps=self.steps, seed=self.seed, device=self.device,
                             poisons=self.poisons, base_choice=self.base_choice, schedule=self.schedule, C=self.C,
                             progress=progress)

    def cli_command(self) -> str:
        """The ``python -m advcore poison`` line that prints the same numbers."""
        parts = [f"python -m advcore poison {self.attack}", f"--features {','.join(self.kinds)}"]
        if self.attack != "lf":
            parts += [f"--eps {self.eps_255}/255", f"--method {self.method}"]
            if self.method == "pgd":
                parts += [f"--steps {self.steps}", f"--schedule {self.schedule}"]
        if self.share is not None:
            parts.append(f"--share {self.share:g}")
        if self.attack == "pf":
            parts += [f"--trials {self.trials}", f"--poisons {self.poisons}", f"--bases {self.base_choice}"]
        if self.C != poisoning.DEFAULT_C:
            parts.append(f"--C {self.C:g}")
        parts += [f"--seed {self.seed}", f"--json poison-{self.attack}.json"]
        if self.device != "cpu":
            parts.append(f"--device {self.device}")
        return " ".join(parts)


# --------------------------------------------------------------------------- progress, and what a stopped run says


def job(req: Request) -> workers.Job:
    """A table's run (:meth:`Request.run`) as a job for a worker process (:mod:`ui.workers`), its progress sent as
    plain data."""
    return workers.progress_job(req.run)


def progress_text(p: Progress) -> str:
    """The progress bar's words: ``crafting: step 3 of 20``."""
    return f"{p.stage}: step {p.step} of {p.total}"


def marker(title: str, p: Progress) -> dict:
    """Where the run of ``title`` is, for a rerun that interrupts it (see :func:`interrupted`)."""
    return {"title": title, "stage": p.stage, "step": p.step, "total": p.total}


def cancelled(title: str, left: dict | None) -> str:
    """Where the run of ``title`` stopped on the Cancel flag (``left``: its last RUNNING marker)."""
    left = left or {}
    return (f"{title} cancelled at {left.get('stage', 'the start')}, step {left.get('step', 0)} of "
            f"{left.get('total', '?')}; nothing was kept.")


def interrupted(left: dict, was_cancelled: bool) -> str:
    """Where a run that a rerun (Cancel, a changed widget) interrupted stopped."""
    why = "cancelled" if was_cancelled else "stopped because the page reran"
    return (f"The {left['title']} run was {why} at {left['stage']}, step {left['step']} of {left['total']}; "
            "nothing was kept. Press its button to start again.")


# --------------------------------------------------------------------------- the tables


def points(value: float | None) -> str:
    """A difference of two accuracies in percentage points: ``-2.0 pp`` (an accuracy itself stays ``12.5%``)."""
    text = pct(value, signed=True)
    return text[:-1] + " pp" if text.endswith("%") else text


def rows(result: poisoning.PoisoningTable) -> list[dict[str, str]]:
    """The table of a :func:`advcore.labs.poisoning.run` result, with the paper's numbers in their own columns."""
    attack = result.attack
    paper = result.paper.values
    out = []
    for r in result.rows:
        kind = r.kind
        row = {"Features": poisoning.KIND_TITLES[kind]}
        if attack == "ap":
            row.update({"Clean accuracy (measured)": pct(r.clean_accuracy),
                        "Accuracy under AP (measured)": pct(r.poisoned_accuracy),
                        "Change (measured)": points(r.gap),
                        "Paper, Table 1, MNIST": pct(paper.get(kind, {}).get("MNIST")),
                        "Paper, Table 1, CIFAR": pct(paper.get(kind, {}).get("CIFAR"))})
        elif attack == "pf":
            ref = result.paper.imagenet if kind == "imagenet" else paper.get(poisoning.KIND_ROLE[kind])
            row.update({"Successful poison frogs (measured)": f"{r.successes} of {r.trials}",
                        "Success rate (measured)": pct(r.success_rate),
                        "Feature distance to target, before -> after (measured)":
                            f"{r.mean_distance_before:.3f} -> {r.mean_distance_after:.3f}",
                        "Target to its nearest same-class training image (measured)":
                            f"{r.mean_neighbour_distance:.3f} ({r.closer_than_neighbour} of {r.trials} poisons "
                            "nearer)",
                        "Target's SVM margin, clean -> poisoned (measured)":
                            f"{r.mean_margin_before:.3f} -> {r.mean_margin_after:.3f}",
                        "SVM C (raw features; on features / mean norm)": f"{r.C:g}; {r.C_scaled:.4g}",
                        "Paper, Table 2, CIFAR" + (" (ImageNet: Sec. 4.1)" if kind == "imagenet" else ""):
                            pct(ref)})
        else:
            row.update({"Clean accuracy (measured)": pct(r.clean_accuracy),
                        "Accuracy under LF (measured)": pct(r.poisoned_accuracy),
                        "Gap (measured)": points(r.gap),
                        "Paper, Table 3, MNIST": points(paper.get(kind, {}).get("MNIST")),
                        "Paper, Table 3, CIFAR": points(paper.get(kind, {}).get("CIFAR"))})
        out.append(row)
    return out


def caption(result: poisoning.PoisoningTable) -> str:
    """What was measured, on what, and what the paper's columns are."""
    r0 = result.rows[0]
    attack = result.attack
    if attack == "lf":
        what = (f"{result.share:.0%} of the {r0.train_images:,} training labels ({r0.flipped}) replaced by "
                f"random labels, averaged over {result.repeats} seeds")
    elif attack == "pf":
        steps = (f"{result.steps} signed steps of a decaying size, eps/4 (1 - t/{result.steps}), keeping the "
                 "closest iterate" if result.schedule == "decay" else f"{result.steps} PGD steps of 2.5 eps/steps")
        what = (f"{result.trials} trials, {result.poisons} poison{'s' if result.poisons > 1 else ''} per target "
                f"from {'the nearest' if result.base_choice == 'nearest' else 'random'} bases of the other class, "
                f"eps {result.eps_255:.3g}/255 (L-inf), {'one FGSM step' if result.method == 'fgsm' else steps}; "
                "success: the retrained SVM misclassifies the target (targets are test images the clean SVM gets "
                "right); distances are between penultimate-layer features divided by their mean norm; the target's "
                "margin is the SVM's decision value on its own side (a success makes it negative), averaged over the "
                "trials")
    else:
        what = (f"{r0.train_images:,} training images moved within eps {result.eps_255:.3g}/255 (L-inf) "
                f"along w_t - w_c with "
                f"{'one FGSM step' if result.method == 'fgsm' else str(result.steps) + ' PGD steps'}; "
                "w_t is an SVM trained with every label shifted by one class")
    scaled = ", ".join(f"{r.kind} {r.C * r.feature_scale ** 2:.4g}" for r in result.rows)
    return (f"Measured: {what}; task: {r0.task_description}; linear SVM (LinearSVC, C {result.C:g} on the raw "
            f"features as the paper trains it, which is C {scaled} on features divided by their mean norm) on the "
            f"frozen extractors' penultimate layer. The paper's columns are the paper's own numbers "
            f"({result.paper.what}), on its own VGG13 features, quoted for comparison, not measured here."
            + (" pp: percentage points, a difference of two accuracies." if attack != "pf" else ""))


@lru_cache(maxsize=1)
def shipped_imagenet(path: str = str(SHIPPED)) -> poisoning.PoisoningTable | None:
    """The ImageNet poison frog table ``bench/poisoning.py --settings`` saved (minutes on a CPU, so the page shows
    it instead of running it on load), its verdict worded again from its numbers; None if the file lacks it."""
    try:
        d = json.loads(open(path, encoding="utf-8").read())["pf_settings"]["imagenet"]
    except (OSError, KeyError, ValueError):
        return None
    table = poisoning.PoisoningTable.from_dict(d)
    return replace(table, verdict=poisoning.verdict(table))


def task_samples(task: poisoning.PoisonTask, per_class: int = 3) -> list[tuple[int, int]]:
    """(label, training index) of the first ``per_class`` training images of each class, class by class."""
    return [(c, int(i)) for c in range(len(task.classes)) for i in np.flatnonzero(task.y_train == c)[:per_class]]


def shipped_command(table: poisoning.PoisoningTable) -> str:
    """The command line that computes the shipped table again."""
    return Request("pf", ("imagenet",), int(round(table.eps_255)), method=table.method, steps=table.steps,
                   trials=int(table.trials or 0), seed=table.seed, poisons=int(table.poisons or 1),
                   base_choice=table.base_choice or "random", schedule=table.schedule or "decay",
                   C=table.C).cli_command()


# --------------------------------------------------------------------------- one poison frog trial


def example_key(result: poisoning.PoisoningTable, kind: str, index: int) -> tuple:
    """Everything that determines :func:`example` (hashable: the page's cache key)."""
    row = result.row(kind)
    trial = row.trial_results[index]
    return (kind, row.task, result.device, trial.target, tuple(trial.bases or [trial.base]), result.eps,
            result.method, result.steps, result.C, result.schedule)


def example(result: poisoning.PoisoningTable, kind: str, index: int) -> poisoning.FrogExample:
    """One trial of a PF result in full (crafting is deterministic: the same trial as the table's)."""
    row = result.row(kind)
    trial = row.trial_results[index]
    fs = poisoning.feature_set(kind, row.task, device=result.device)
    return poisoning.frog_example(fs, trial.target, trial.bases or [trial.base], eps=result.eps,
                                  method=result.method, steps=result.steps, C=result.C,
                                  schedule=result.schedule or "constant")


def image(arr: np.ndarray):
    return plots.enlarge_array((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8), 224)


def perturbation(ex: poisoning.FrogExample):
    img, factor = plots.amplified_perturbation(ex.poison - ex.base, None)
    return plots.enlarge_array(img, 224), factor


def _boundary(normal: list[float], offset: float, xr: tuple[float, float], yr: tuple[float, float]):
    n0, n1 = normal
    if abs(n1) >= abs(n0) and abs(n1) > 0:
        xs = np.linspace(*xr, 2)
        return xs, -(n0 * xs + offset) / n1
    if abs(n0) > 0:
        ys = np.linspace(*yr, 2)
        return -(n1 * ys + offset) / n0, ys
    return np.array([]), np.array([])


def projection_figure(proj: dict) -> go.Figure:
    """Training features by class, base, poison and target in the PCA plane, with the SVM before and after."""
    tr = np.asarray(proj["train"])
    labels = np.asarray(proj["train_labels"])
    pts = np.vstack([tr, [proj["base"], proj["poison"], proj["target"]]])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.08 * (hi - lo + 1e-9)
    xr, yr = (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])
    fig = go.Figure()
    for c, name in enumerate(proj["classes"]):
        m = labels == c
        fig.add_trace(go.Scatter(x=tr[m, 0], y=tr[m, 1], mode="markers", name=f"training: {name}",
                                 marker=dict(size=5, color=CLASS_COLOURS[c % 2], opacity=0.45)))
    for key, colour, dash, name in (("clean", CLEAN_LINE, "dash", "SVM boundary, clean"),
                                    ("poisoned", POISONED_LINE, "solid", "SVM boundary, poisoned")):
        xs, ys = _boundary(proj[key]["normal"], proj[key]["offset"], xr, yr)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, line=dict(color=colour, dash=dash, width=2)))
    for key, symbol, colour, name in (("base", "circle-open", "#111111", "base"),
                                      ("poison", "star", POISONED_LINE, "poison"),
                                      ("target", "diamond", "#f2b701", "target")):
        fig.add_trace(go.Scatter(x=[proj[key][0]], y=[proj[key][1]], mode="markers", name=name,
                                 marker=dict(size=14, symbol=symbol, color=colour, line=dict(width=2, color="#111"))))
    ev = proj["explained_variance"]
    fig.update_layout(title=dict(text="Feature space (PCA) with the SVM before and after poisoning"), height=420,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.15),
                      xaxis=dict(title=f"PC 1 ({100 * ev[0]:.0f}% of variance)", range=list(xr)),
                      yaxis=dict(title=f"PC 2 ({100 * ev[1]:.0f}% of variance)", range=list(yr)))
    return fig


def side(value: float, classes: list[str]) -> str:
    return classes[1] if value > 0 else classes[0]


def previous_note(req: Request, prev: Request) -> str:
    """What differs between the settings of the result shown as the previous one and the current widgets."""
    diffs = []
    for name in ("kinds", "eps_255", "method", "steps", "share", "trials", "seed", "poisons", "base_choice",
                 "schedule", "C"):
        a, b = getattr(prev, name), getattr(req, name)
        if a != b:
            shown = {"eps_255": lambda v: f"{v}/255", "kinds": lambda v: ",".join(v)}.get(name, str)
            diffs.append(f"{name.replace('_255', '').replace('_', ' ')} {shown(a)} (now {shown(b)})")
    return ("Previous result, computed with " + "; ".join(diffs) + ". Press Run for the current settings."
            if diffs else "Previous result.")
