"""What the Defense lab page needs besides widgets: requests (hashable cache keys), the runs and the words of
their progress and of a stopped measurement, the table rows, the curves, the sentences and the equivalent command
lines (no Streamlit: the page keeps the results in ``ui.session.DEFENSE_PANELS`` and ``ui.session.DEFENSE_TABLES``
and runs the table with ``ui.session.DEFENSE_RUN``).

The maths is ``advcore.defenses`` (halftones, BPDA, EOT) and the lab ``advcore.labs.defense``
(``evaluate_defense``, ``image_panels``, ``clean_effect``, the shipped tables), the functions
``python -m advcore defend`` calls.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import plotly.graph_objects as go

from advcore import datasets, models
from advcore.errors import AdvlabError
from advcore.labs import defense as lab
from advcore.progress import Progress, ProgressFn
from advcore.units import eps_fraction_text
from ui import plots

ATTACK_TITLES = {"fgsm": "FGSM", "ifgsm": "I-FGSM", "pgd": "PGD"}
METHOD_TITLES = {
    "floyd-steinberg": "Floyd-Steinberg (error diffusion)",
    "floyd-steinberg-numpy": "Floyd-Steinberg, float (error diffusion)",
    "atkinson": "Atkinson (error diffusion)",
    "jarvis-judice-ninke": "Jarvis-Judice-Ninke (error diffusion)",
    "stucki": "Stucki (error diffusion)",
    "bayer": "Bayer 8x8 (ordered dithering)",
    "bayer-random": "Bayer 8x8, random offset (randomised: EOT)",
}
ROW_COLOURS = {"none": "#7f7f7f", "halftone-input": "#f58518", "halftone-trained": "#4c78a8", "hybrid": "#54a24b"}
# The paper's abstract (its own models and data, top-5): quoted, never measured here.
TABLE_EPS = (0.0, 0.05, 0.1, 0.2)
N_CHOICES = (50, 100, 200, 500)


def is_small(model: str) -> bool:
    return models.get_spec(model).small


def base_model(model: str) -> tuple[str, str | None]:
    """The undefended model of the table, and a note when the sidebar's model is one of the defense's own."""
    spec = models.get_spec(model)
    naive = models.with_role(spec.dataset, "naive")
    if spec.role in lab.TRAINED_ROLES.values() and naive is not None:
        return naive, (f"{model} is one of the defense's own models, so the standard model {naive} "
                       "is the undefended model here; the defended rows include yours.")
    return model, None


def trained_rows(model: str) -> dict[str, str]:
    """Rows whose model is registered: halftone-trained / hybrid -> model name."""
    return lab.trained_models(model)


# --------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class PanelRequest:
    model: str
    device: str
    image_key: str
    true_label: int | None
    method: str
    row: str
    attack: str
    eps: float
    eps_text: str
    adaptive: bool
    steps: int = 10
    seed: int = 0
    eot: int = 8


def run_panels(req: PanelRequest, x, callback=None) -> lab.Panels:
    """``advcore.labs.defense.image_panels`` for the request; ``callback``: the attack's per-step callback."""
    return lab.image_panels(req.model, x, req.true_label, method=req.method, row=req.row, attack=req.attack,
                            eps=req.eps, adaptive=req.adaptive, steps=req.steps, seed=req.seed, eot=req.eot,
                            device=req.device, callback=callback)


def panel_caption(name: str, panels: lab.Panels, model: str, escape=str) -> str:
    """A view's prediction, its model and whether it is right; ``escape`` quotes the class name (the page passes
    its Markdown escape)."""
    p = panels.predictions[name]
    who = model if name in ("clean", "adversarial") else panels.row_model
    ok = "right" if p.label == panels.label else "wrong"
    return f"{escape(p.name)} ({100 * p.prob:.1f}%), {who}: {ok}"


PANEL_TITLES = {
    "clean": "Clean",
    "halftone_clean": "Halftone(clean)",
    "adversarial": "Adversarial",
    "halftone_adversarial": "Halftone(adversarial)",
}


def panels_sentence(panels: lab.Panels, req: PanelRequest) -> str:
    """What the four predictions say, in plain words."""
    p = panels.predictions
    right = {k: p[k].label == panels.label for k in p}
    who = "an attacker who knows the halftone (BPDA" + (" + EOT" if req.method == "bayer-random" else "") + ")" \
        if req.adaptive else "an attacker who attacks the undefended model only (the paper's protocol)"
    if req.eps == 0:
        return "eps is 0: no attack; compare the clean and halftone predictions."
    parts = [f"The adversarial image was made by {who}."]
    if not right["adversarial"]:
        parts.append("It fools the undefended model")
    else:
        parts.append("It does not fool the undefended model")
    parts[-1] += ("; after halftoning, the defended model gets it right." if right["halftone_adversarial"]
                  else "; after halftoning, the defended model gets it wrong too.")
    if not right["halftone_clean"]:
        parts.append("The defended model already misreads the clean halftone.")
    return " ".join(parts)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class TableRequest:
    model: str
    device: str
    method: str
    attacks: tuple[str, ...]
    eps: tuple[float, ...]
    n: int
    adaptive: bool = True
    steps: int = 10
    seed: int = 0
    eot: int = 8

    def check(self) -> None:
        if not self.attacks:
            raise AdvlabError("Choose at least one attack for the table.")
        if not self.eps:
            raise AdvlabError("Choose at least one eps for the table.")

    def cli_command(self) -> str:
        parts = ["python -m advcore defend", f"--model {shlex.quote(self.model)}", f"--defense {self.method}",
                 "--attacks " + ",".join(self.attacks), "--eps " + ",".join(eps_fraction_text(e) for e in self.eps),
                 f"--n {self.n}", f"--steps {self.steps}", f"--seed {self.seed}"]
        if self.adaptive:
            parts.append("--adaptive")
            if self.method == "bayer-random":
                parts.append(f"--eot {self.eot}")
        if self.device == "cpu":
            parts.append("--device cpu")
        parts.append("--json defense.json")
        return " \\\n    ".join(parts)


def run_table(req: TableRequest, progress: ProgressFn | None = None) -> lab.DefenseTable:
    """``advcore.labs.defense.evaluate_defense`` for the request (ImageNet: at most the bundled photos)."""
    req.check()
    n = req.n
    if not is_small(req.model):
        from advcore import data

        n = min(n, len(data.samples()))
    return lab.evaluate_defense(req.model, req.method, attack_names=req.attacks, eps=req.eps, n=n,
                                steps=req.steps, adaptive=req.adaptive, eot=req.eot, seed=req.seed,
                                trained=trained_rows(req.model), device=req.device, progress=progress)


def column_name(e: float, columns) -> str:
    """The table's column for eps ``e``: ``clean``, ``eps 0.1: ignores / knows`` (or ``eps 0.1`` alone)."""
    if e == 0:
        return "clean"
    return f"eps {eps_fraction_text(e)}: ignores / knows" if "knows" in columns else f"eps {eps_fraction_text(e)}"


def table_rows(result: lab.DefenseTable, k: str = "top1") -> list[dict[str, str]]:
    """One line per row and attack; one column per eps holding both attackers' accuracies."""
    out = []
    cols = list(result.columns)
    for row in result.rows:
        for a in result.attacks:
            line = {"defense": row.title, "model": row.model, "attack": ATTACK_TITLES.get(a, a)}
            acc = result.accuracy[row.key][a]
            for i, e in enumerate(result.eps):
                line[column_name(e, cols)] = " / ".join(f"{100 * acc[c][k][i]:.1f}%" for c in
                                                        (cols[:1] if e == 0 else cols))
            out.append(line)
    return out


def curves(result: lab.DefenseTable, attack: str, k: str = "top1") -> go.Figure:
    """Accuracy against eps: one colour per row, solid = attacker ignores the defense, dashed = knows it."""
    fig = go.Figure()
    for row in result.rows:
        for c in result.columns:
            if row.key == "none" and c == "knows":
                continue
            ys = result.values(row.key, attack, c, k)
            name = row.title + ("" if row.key == "none" else
                                   (", attacker ignores it" if c == "ignores" else ", attacker knows it"))
            fig.add_trace(go.Scatter(
                x=list(result.eps), y=[100 * v for v in ys], name=name, mode="lines+markers",
                line=dict(color=ROW_COLOURS.get(row.key, plots.OTHER), dash="solid" if c == "ignores" else "dash",
                          width=2),
                hovertemplate="eps %{x:.3g}: %{y:.1f}%<extra>" + name + "</extra>"))
    fig.update_layout(**plots.FIG4_LAYOUT, title=f"{ATTACK_TITLES.get(attack, attack)} ({k.replace('top', 'top-')})")
    fig.update_layout(height=460)
    fig.update_xaxes(title="attack strength eps (L-inf, pixel units)", rangemode="tozero")
    fig.update_yaxes(title="accuracy (%)", range=[0, 100])
    return fig


def table_caption(result: lab.DefenseTable) -> str:
    eot = f", EOT over {result.eot} draws" if result.eot else ""
    cols = ("Attacker ignores the defense: the adversarial examples are made on the undefended model and then "
            "halftoned, as in the paper. ")
    if "knows" in result.columns:
        cols += (f"Attacker knows the defense: each defended model is attacked through its halftone with BPDA "
                 f"(identity gradient){eot}. ")
    p = result.attack_params
    return (cols + f"Untargeted L-inf attacks, I-FGSM and PGD {p.steps} steps (PGD from a random start, seed "
            f"{p.seed}), on {result.n} images of the {result.data}; labels: {result.labels}. "
            f"{result.seconds:.0f} s on {result.device}." + training_note(result))


def training_note(result: lab.DefenseTable) -> str:
    """Which halftone the trained rows were trained on, when it is not the one measured."""
    notes = []
    method = result.defense.get("method")
    for row in result.rows:
        if row.key not in ("halftone-trained", "hybrid") or row.model not in models.names():
            continue
        trained_on = (models.get_spec(row.model).card.get("input_transform") or {}).get("halftone")
        if trained_on and trained_on != method:
            notes.append(f"{row.model} was trained on {METHOD_TITLES.get(trained_on, trained_on)} halftones")
    if not notes:
        return ""
    return (" " + "; ".join(notes) + f", so with {METHOD_TITLES.get(method)} it sees images "
            "unlike its training images.")


def paper_sentence() -> str:
    nums = ", ".join(f"{k} {v:.2f}%" for k, v in lab.PAPER_TOP5.items())
    return (f"The paper (abstract only; its own models and data) reports top-5 accuracy of its hybrid model under "
            f"attack of {nums}, with the adversarial examples made on the undefended model; it does not report an "
            "attacker who knows the halftone. Our numbers above are measured here, on Fashion-MNIST (top-1).")


def clean_effect_sentence(rows: list[dict], method: str) -> str:
    n = len(rows)
    same = sum(r["same_top1"] for r in rows)
    top5 = sum(r["clean_top1_in_halftone_top5"] for r in rows)
    return (f"Halftoned with {METHOD_TITLES.get(method, method)} at inference only, the model keeps its clean "
            f"top-1 answer on {same} of {n} photos, and that answer stays in the top 5 on {top5} of {n}. "
            "EfficientNet-Lite was trained on intensity images; a halftone is out of its distribution, which is why "
            "the paper trains on halftones (there is no ImageNet halftone-trained model here).")


# --------------------------------------------------------------------------- running the table with cancel


def cancelled(left: dict | None) -> str:
    """A measurement stopped on the Cancel flag."""
    return "The measurement was cancelled; nothing was kept. Press Measure to start again."


def interrupted(left: dict, was_cancelled: bool) -> str | None:
    """Where a measurement that a rerun interrupted (a Cancel click, a changed widget) stopped; nothing for the
    image's attack (its marker has ``steps``: the page attacks the image again by itself)."""
    if "done" not in left:
        return None
    return (f"The measurement {'was cancelled' if was_cancelled else 'stopped because the page reran'} at step "
            f"{left['done']} of {left['total']}; nothing was kept. Press Measure to start again.")


def progress_text(p: Progress) -> str:
    """A measurement's progress bar: ``stage (step of total)``."""
    return f"{p.stage} ({p.step} of {p.total})"


def progress_marker(p: Progress) -> dict:
    """Where a measurement is, for :func:`interrupted`."""
    return {"done": p.step, "total": p.total}


def eval_images_available(model: str) -> str | None:
    """Why the table cannot be measured for this model, or None."""
    if is_small(model):
        try:
            datasets.load_subset(1)
        except AdvlabError as exc:
            return str(exc)
    return None
