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
from plotly.subplots import make_subplots

from advcore import datasets, defenses, models
from advcore.attacks import MAX_STEPS
from advcore.errors import AdvlabError
from advcore.labs import defense as lab
from advcore.progress import Progress, ProgressFn
from advcore.units import eps_fraction_text
from ui import plots, workers

ATTACK_TITLES = {"fgsm": "FGSM", "ifgsm": "I-FGSM", "pgd": "PGD"}
METHOD_TITLES = {
    "floyd-steinberg": "Floyd-Steinberg (error diffusion)",
    "floyd-steinberg-numpy": "Floyd-Steinberg, float (error diffusion)",
    "atkinson": "Atkinson (error diffusion)",
    "jarvis-judice-ninke": "Jarvis-Judice-Ninke (error diffusion)",
    "stucki": "Stucki (error diffusion)",
    "bayer": "Bayer (ordered dithering)",
    "bayer-random": "Bayer, random offset (randomised: EOT)",
}
#: The page's defense menu: every preset (one per halftone method) and every other registered defense.
DEFENSE_TITLES = {
    **METHOD_TITLES,
    "jpeg": "JPEG compression (Guo et al. 2018)",
    "bit-depth": "Bit-depth reduction (feature squeezing)",
    "median": "Median smoothing (feature squeezing)",
    "resize-pad": "Random resize and pad (randomised: EOT)",
}
ROW_COLOURS = {"none": "#7f7f7f", "halftone-input": "#f58518", "defense-input": "#f58518",
               "halftone-trained": "#4c78a8", "hybrid": "#54a24b"}


def defense_choices() -> list[str]:
    """The menu's keys: the presets of every registered defense (halftone methods, jpeg, bit-depth, ...)."""
    return list(defenses.presets())


def defense_class(choice: str) -> type[defenses.Defense]:
    return defenses.DEFENSES[defenses.presets()[choice][0]]


def widget_params(choice: str, params: dict | None = None) -> tuple:
    """The declared parameters the page draws for ``choice``: those its configuration uses, less those its preset
    fixes (a halftone's method)."""
    _, fixed = defenses.presets()[choice]
    return tuple(p for p in lab.make_defense(choice, params=params).used_params() if p.name not in fixed)


def is_halftone(choice: str) -> bool:
    return defenses.presets()[choice][0] == "halftone"


def is_random(choice: str, params: dict | None = None) -> bool:
    return lab.make_defense(choice, params=params).randomized


def differentiable_titles() -> str:
    """The registered defenses the adaptive attacker differentiates exactly, in words: ``median smoothing, ...``."""
    return ", ".join(cls.title for cls in defenses.DEFENSES.values() if cls.differentiable) or "none"


def adaptive_words(choice: str, params: dict | None = None) -> str:
    """How the attacker who knows the defense gets through it, for labels: ``BPDA``, ``exact gradient, EOT``."""
    d = lab.make_defense(choice, params=params)
    return ("exact gradient" if d.differentiable else "BPDA") + (", EOT" if d.randomized else "")


def view_word(choice: str) -> str:
    """What the defended views are called: ``Halftone``, ``JPEG``, ``Median``."""
    return {"halftone": "Halftone", "jpeg": "JPEG", "bit-depth": "Squeezed", "median": "Median",
            "resize-pad": "Resized"}.get(defenses.presets()[choice][0], "Defended")
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
    """The table's extra rows whose model is registered: halftone-trained / hybrid / adversarial -> model name."""
    return lab.trained_models(model)


def halftone_rows(model: str) -> dict[str, str]:
    """The rows that classify through the halftone (for one image's views): halftone-trained / hybrid -> name."""
    return {k: v for k, v in lab.trained_models(model).items() if k in lab.TRAINED_ROLES}


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
    params: tuple = ()  # the defense's declared parameters: ((name, value), ...)


def run_panels(req: PanelRequest, x, callback=None) -> lab.Panels:
    """``advcore.labs.defense.image_panels`` for the request; ``callback``: the attack's per-step callback."""
    return lab.image_panels(req.model, x, req.true_label, method=req.method, row=req.row, attack=req.attack,
                            eps=req.eps, adaptive=req.adaptive, steps=req.steps, seed=req.seed, eot=req.eot,
                            device=req.device, callback=callback, params=dict(req.params))


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


def panel_titles(choice: str) -> dict[str, str]:
    """The four views' titles with the defense's word: ``JPEG(clean)``."""
    w = view_word(choice)
    return {k: v.replace("Halftone", w) for k, v in PANEL_TITLES.items()}


def panels_sentence(panels: lab.Panels, req: PanelRequest) -> str:
    """What the four predictions say, in plain words."""
    p = panels.predictions
    right = {k: p[k].label == panels.label for k in p}
    how = adaptive_words(req.method, dict(req.params)).replace(", ", " + ")
    who = (f"an attacker who knows the defense ({how})" if req.adaptive
           else "an attacker who attacks the undefended model only (the paper's protocol)")
    if req.eps == 0:
        return "eps is 0: no attack; compare the clean and halftone predictions."
    parts = [f"The adversarial image was made by {who}."]
    if not right["adversarial"]:
        parts.append("It fools the undefended model")
    else:
        parts.append("It does not fool the undefended model")
    parts[-1] += ("; behind the defense, the defended model gets it right." if right["halftone_adversarial"]
                  else "; behind the defense, the defended model gets it wrong too.")
    if not right["halftone_clean"]:
        parts.append("The defended model already misreads the clean image behind the defense.")
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
    strong_steps: int = lab.STRONG_STEPS
    restarts: int = lab.RESTARTS
    params: tuple = ()  # the defense's declared parameters: ((name, value), ...)

    def defense(self) -> defenses.Defense:
        return lab.make_defense(self.method, seed=self.seed, params=dict(self.params))

    def check(self) -> None:
        self.defense()
        if not self.attacks:
            raise AdvlabError("Choose at least one attack for the table.")
        if not self.eps:
            raise AdvlabError("Choose at least one eps for the table.")
        if not 0 <= self.strong_steps <= MAX_STEPS:
            raise AdvlabError(f"The strong attacker's steps must be between 0 and {MAX_STEPS}.")
        if not 1 <= self.restarts <= lab.MAX_RESTARTS:
            raise AdvlabError(f"Restarts must be between 1 and {lab.MAX_RESTARTS}.")

    def cli_command(self) -> str:
        cls = defense_class(self.method)
        flags = [" ".join(cls.param(k).cli_words(v)) for k, v in self.params]
        parts = ["python -m advcore defend", f"--model {shlex.quote(self.model)}",
                 " ".join([f"--defense {self.method}", *[f for f in flags if f]]),
                 "--attacks " + ",".join(self.attacks), "--eps " + ",".join(eps_fraction_text(e) for e in self.eps),
                 f"--n {self.n}", f"--steps {self.steps}", f"--seed {self.seed}"]
        if self.adaptive:
            parts.append("--adaptive")
            parts.append(f"--strong-steps {self.strong_steps} --restarts {self.restarts}")
            if self.defense().randomized:
                parts.append(f"--eot {self.eot}")
        if self.device == "cpu":
            parts.append("--device cpu")
        parts.append("--json defense.json")
        return " \\\n    ".join(parts)


def run_table(req: TableRequest, progress: ProgressFn | None = None) -> lab.DefenseTable:
    """``advcore.labs.defense.evaluate_defense`` for the request (ImageNet: at most the bundled photos)."""
    return measure(req, trained_rows(req.model), progress)


def job(req: TableRequest) -> workers.Job:
    """:func:`run_table` as a job for a worker process (:mod:`ui.workers`): the trained rows looked up here (this
    session's models are in scope here, not in a worker), progress sent as plain data; run in-process (``local``)
    when the model or a trained row is a model of the session's own."""
    trained = trained_rows(req.model)
    return workers.progress_job(measure, (req, trained), models=(req.model, *trained.values()))


def measure(req: TableRequest, trained: dict[str, str], progress: ProgressFn | None = None) -> lab.DefenseTable:
    """:func:`run_table` with its trained rows (role -> model name) given."""
    req.check()
    n = req.n
    if not is_small(req.model):
        from advcore import data

        n = min(n, len(data.samples()))
    return lab.evaluate_defense(req.model, req.method, attack_names=req.attacks, eps=req.eps, n=n,
                                steps=req.steps, adaptive=req.adaptive, eot=req.eot, seed=req.seed,
                                strong_steps=req.strong_steps, restarts=req.restarts, params=dict(req.params),
                                trained=trained, device=req.device, progress=progress)


FLAG = "⚠"


def column_name(e: float, result: lab.DefenseTable) -> str:
    """The table's column for eps ``e``: ``clean``, ``eps 0.1: ignores / bare / knows`` (or ``eps 0.1`` alone)."""
    if e == 0:
        return "clean"
    if len(result.columns) == 1:
        return f"eps {eps_fraction_text(e)}"
    return f"eps {eps_fraction_text(e)}: " + " / ".join(lab.column_short(result, c) for c in result.columns)


def strong_title(result: lab.DefenseTable) -> str:
    p = result.attack_params
    eot = " + EOT" if result.eot else ""
    name = (f"exact-gradient PGD-{p.strong_steps}{eot}" if lab.exact_gradient(result)
            else f"BPDA{eot}-PGD-{p.strong_steps}")
    return f"{name}, {p.restarts} random start{'s' if p.restarts > 1 else ''}"


WORST_TITLE = "worst case: every attacker, per image"


def table_rows(result: lab.DefenseTable, k: str = "top1") -> list[dict[str, str]]:
    """One line per row and attack (one column per eps holding every attacker's accuracy, ``⚠`` on an adaptive
    attacker who did worse than a non-adaptive one), then per row the strong attacker and the per-example worst
    case over every attacker and attack."""
    out = []
    cols = list(result.columns)
    flagged = {(f.row, f.attack, f.eps, f.attacker) for f in result.flags} if k == "top1" else set()

    def cell(v: float, key: tuple) -> str:
        return f"{100 * v:.1f}%" + (f" {FLAG}" if key in flagged else "")

    for row in result.rows:
        for a in result.attacks:
            line = {"defense": row.title, "model": row.model, "attacker": ATTACK_TITLES.get(a, a)}
            acc = result.accuracy[row.key][a]
            for i, e in enumerate(result.eps):
                line[column_name(e, result)] = " / ".join(cell(acc[c][k][i], (row.key, a, e, c)) for c in
                                                        (cols[:1] if e == 0 else cols))
            out.append(line)
        extra = ([(strong_title(result), result.strong[row.key][k], "strong")] if result.strong else []) + \
            [(WORST_TITLE, result.robust[row.key][k], None)]
        for title, values, c in extra:
            line = {"defense": row.title, "model": row.model, "attacker": title}
            for i, e in enumerate(result.eps):
                line[column_name(e, result)] = cell(values[i], (row.key, "pgd", e, c))
            out.append(line)
    return out


def table_height(n_lines: int) -> int:
    """Pixels for a dataframe of ``n_lines`` lines without a scroll bar (Streamlit: 35 px a line + the header)."""
    return 35 * (n_lines + 1) + 3


def curves(result: lab.DefenseTable, k: str = "top1") -> go.Figure:
    """Accuracy against eps, one panel per attack plus the worst case, one colour per row and one legend for all:
    solid = attacker ignores the defense, dashed = knows it (exact gradient or BPDA, + EOT); the last panel: the
    per-example worst case over every attacker."""
    panels = [ATTACK_TITLES.get(a, a) for a in result.attacks] + (["worst case"] if result.adaptive else [])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels, shared_yaxes=True,
                        horizontal_spacing=0.04)
    eps = list(result.eps)
    for row in result.rows:
        colour = ROW_COLOURS.get(row.key, plots.OTHER)
        shown = False
        series = [(j + 1, result.values(row.key, a, c, k), c, ATTACK_TITLES.get(a, a))
                  for j, a in enumerate(result.attacks) for c in ("ignores", "knows")
                  if c in result.columns and not (c == "knows" and not row.halftone)]
        if result.adaptive:
            series.append((len(panels), result.robust[row.key][k], "worst", "worst case"))
        for col, ys, c, where in series:
            fig.add_trace(go.Scatter(
                x=eps, y=[100 * v for v in ys], name=row.title, legendgroup=row.key, showlegend=not shown,
                mode="lines+markers", line=dict(color=colour, dash="dash" if c == "knows" else "solid", width=2),
                hovertemplate=f"{where}, {COLUMN_WORDS[c]}: " + "eps %{x:.3g}: %{y:.1f}%<extra>" + row.title
                + "</extra>"), row=1, col=col)
            shown = True
    fig.update_layout(**plots.FIG4_LAYOUT)
    fig.update_layout(height=420, title=f"Accuracy ({k.replace('top', 'top-')}) against eps: solid = attacker "
                                        f"ignores the defense, dashed = knows it ({lab.gradient_name(result)})")
    fig.update_xaxes(title="eps (L-inf, pixels in [0, 1])", rangemode="tozero")
    fig.update_yaxes(range=[0, 100])
    fig.update_yaxes(title="accuracy (%)", row=1, col=1)
    return fig


COLUMN_WORDS = {"ignores": "attacker ignores the defense", "knows": "attacker knows it",
                "worst": "every attacker, per image"}


def flags_caption(result: lab.DefenseTable) -> str:
    """The computed sentence beside the ⚠ marks (empty without adaptive attackers)."""
    s = lab.flags_sentence(result)
    return s.replace("(flagged)", f"(marked {FLAG})") if s else ""


def table_caption(result: lab.DefenseTable) -> str:
    word = lab.defense_title(result.defense)
    cols = (f"Defense: {word}" + "".join(f", {k} {v}" for k, v in result.defense.items()
                                         if k not in ("name", "title", "description", "random", "method")) + ". "
            f"Attackers: ignores = the adversarial examples are made on the undefended model and then passed through "
            f"the {word}, as in the paper. ")
    if result.adaptive:
        eot = f" + EOT over {result.eot} draws" if result.eot else ""
        how = (f"the exact gradient of the {word} (autograd)" if lab.exact_gradient(result)
               else f"the {word} with BPDA (identity gradient)")
        cols += (f"bare = made white-box on the row's own network without the {word}, then passed through it. "
                 + (f"{lab.column_short(result, 'bpda')} = through {how}, one draw per step (no EOT). "
                    if "bpda" in result.columns else "")
                 + f"knows = through {how}{eot}. ")
        if result.strong:
            cols += f"{strong_title(result)}: the strong adaptive attacker. "
        cols += (f"{WORST_TITLE}: an image counts as correct only if no attacker with any attack fooled it "
                 "(the robust accuracy). ")
        ref = next((r for r in result.rows if r.key == "adversarial"), None)
        if ref is not None:
            cols += (f"The reference row is {ref.model}, trained with PGD adversarial examples, classifying without "
                     "any defense: its bare and knows columns are white-box attacks on itself. ")
    p = result.attack_params
    return (cols + f"Untargeted L-inf attacks, I-FGSM and PGD {p.steps} steps (PGD from a random start, seed "
            f"{p.seed}), on {result.n} images of the {result.data}; labels: {result.labels}. "
            f"{result.seconds:.0f} s on {result.device}." + training_note(result))


def masking_lines(result: lab.DefenseTable) -> list[str]:
    """The gradient-masking check beside the table: the verdict, then one line per sign (its status, rule and
    evidence), all computed from the table's numbers (:func:`advcore.labs.masking.check_masking`)."""
    m = result.masking
    marks = {"flag": FLAG, "pass": "✓", "not checked": "–"}
    out = [m["verdict"]]
    for c in m["checks"]:
        line = f"{marks[c['status']]} {c['title'].capitalize()}: {c['status']}"
        if c["status"] != "pass":
            line += f". {c['text']}"
        out.append(line + f" (rule: {c['rule']})")
    return out


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
    """The ImageNet section in words: what the defense at inference only costs the clean answers (top-1 and top-5);
    for a halftone, a distribution-shift measurement, not a defense."""
    n = len(rows)
    same = sum(r["same_top1"] for r in rows)
    top5 = sum(r["clean_top1_in_halftone_top5"] for r in rows)
    before = sum(r["clean_prob"] for r in rows) / max(n, 1)
    after = sum(r["halftone_prob_of_clean_top1"] for r in rows) / max(n, 1)
    head = (f"Through {DEFENSE_TITLES.get(method, method)} at inference only, the model keeps its clean "
            f"top-1 answer on {same} of {n} photos, and that answer stays in the top 5 on {top5} of {n}; its "
            f"probability {'falls' if after < before else 'goes'} from {100 * before:.1f}% to {100 * after:.1f}% on "
            "average.")
    if not is_halftone(method):
        return head + (" The defense is meant to be used at inference only, so this is its price on clean "
                       "answers; the table above measures what it buys under attack.")
    return (head + " This is a "
            "distribution-shift demo, not a defense: EfficientNet-Lite was trained on intensity images and there "
            "is no ImageNet model trained on halftones here (the paper trains one), so accuracy under attack "
            "behind the halftone would measure the shift as much as the defense.")


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
