"""What the Attack lab page needs besides widgets: the request key, the run and what a cancelled run says,
the equivalent command line, the metrics table and the plain-language verdicts (no Streamlit: the page keeps
the results in ``ui.session.ATTACK_RESULTS``).

The attack itself is ``advcore.labs.attack.attack_image``, the same function the command line calls.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from advcore import attacks, models
from advcore.attacks import StepInfo
from advcore.errors import Cancelled
from advcore.labs import attack as attack_lab
from advcore.labs.attack import ImageAttack
from advcore.units import number
from ui import plots, workers
from ui.shared import SharedResults

# Attacks that run on every rerun: at most this many gradient steps x pixels (50 steps at 224x224).
AUTO_RUN_BUDGET = 50 * 224 * 224
CUDA_BUDGET_FACTOR = 20  # a GPU answers about this much faster
# The result's detail sections, below the images, charts and verdict: each is a lazy expander whose content runs
# and is drawn only while it is open, so that a move of eps with a cached result redraws less (half the browser's
# work per move when all three are closed, README "Classroom server"). Closed when the page opens; the sections a
# person opens stay open across reruns and visits to other pages, and travel in the link (open=steps,numbers).
SECTIONS = {"steps": "Step through the attack", "where": "Where the perturbation acts",
            "numbers": "Heat map, metrics table and downloads"}
OPENED_BY = {"step": "steps", "overlay": "where", "opacity": "where"}  # a link's view setting opens its section


def in_section_order(names: Iterable[str]) -> tuple[str, ...] | None:
    """Section names as the page keeps the open ones: in SECTIONS order, None when there are none."""
    chosen = set(names)
    return tuple(n for n in SECTIONS if n in chosen) or None


@dataclass(frozen=True)
class AttackRequest:
    """Everything that determines an attack result; hashable, so it is its own cache key."""

    model: str
    device: str
    image_key: str
    attack: str
    norm: str
    eps: float
    eps_text: str  # how the command line spells eps: "4/255" or "1.5"
    steps: int
    alpha: float | None = None  # None: the attack's default
    alpha_text: str | None = None  # how the command line spells alpha ("0.5/255"); None: repr(alpha)
    target: int | None = None
    extra: tuple[tuple[str, object], ...] = ()  # attack-specific parameters, sorted by name

    @property
    def spec(self) -> attacks.AttackSpec:
        return attacks.get_attack(self.attack)

    @property
    def gradient_steps(self) -> int:
        return self.steps if self.spec.iterative else 1

    def kwargs(self) -> dict:
        """Keyword arguments of ``attack_lab.attack_image`` after the image."""
        return dict(eps=self.eps, norm=self.norm, steps=self.gradient_steps, alpha=self.alpha,
                    target=self.target, device=self.device, **dict(self.extra))


def job_size(req: AttackRequest) -> int:
    """Gradient steps times pixels: what a rerun of this request costs."""
    _, h, w = models.get_spec(req.model).input_size
    return req.gradient_steps * h * w


def runs_automatically(req: AttackRequest, on_cuda: bool) -> bool:
    """Small jobs run on every rerun; larger ones wait for the Run attack button."""
    budget = AUTO_RUN_BUDGET * (CUDA_BUDGET_FACTOR if on_cuda else 1)
    return job_size(req) <= budget


def run(req: AttackRequest, image, callback: Callable[[StepInfo], bool | None] | None = None, *,
        image_name: str | None = None) -> ImageAttack:
    """Run the attack (advcore); ``callback`` sees every step and returns True to cancel (the result then says
    ``result.cancelled``: a partial attack, never to be shown as a result). ``image_name`` goes into the record;
    an iterative attack keeps its iterates (at most ``MAX_FRAMES``, 8-bit) for the step-through view."""
    return attack_lab.attack_image(req.model, image, req.attack, callback=callback, image_name=image_name,
                                   frames=attack_lab.MAX_FRAMES if req.spec.iterative else 0, **req.kwargs())


@dataclass(frozen=True)
class StepCount:
    """What of an attack step the page draws (``.step`` of ``.steps``): all a worker sends back per step."""

    step: int
    steps: int


def step_count(info: StepInfo) -> StepCount:
    return StepCount(int(info.step), int(info.steps))


def run_to_end(req: AttackRequest, image, callback: Callable[[StepInfo], bool | None] | None = None, *,
               image_name: str | None = None) -> ImageAttack:
    """:func:`run`, raising Cancelled when ``callback`` stopped it (a partial attack is not a result)."""
    res = run(req, image, callback, image_name=image_name)
    if res.result.cancelled:
        raise Cancelled("attack cancelled")
    return res


def job(req: AttackRequest, image, image_name: str | None = None) -> workers.Job:
    """The attack as a job for a worker process (:mod:`ui.workers`): :func:`run_to_end`, its steps reported as
    :class:`StepCount`; run in-process (``local``) on a model of the session's own."""
    return workers.Job(run_to_end, (req, image), {"image_name": image_name}, progress="callback",
                       report=step_count, local=models.is_session_model(req.model))


def cancelled(left: dict | None) -> str:
    """Where an attack stopped on the Cancel flag (``left``: its last step marker)."""
    where = f"at step {left['step']} of {left['steps']}" if left else "before its first step"
    return f"Cancelled {where}; nothing was kept (a partial attack is not a result). Press Run attack to start again."


def interrupted(left: dict, was_cancelled: bool) -> str | None:
    """A run that a rerun interrupted: a Cancel click is reported; a changed widget needs no words (the new
    settings run, or wait for their button)."""
    return cancelled(left) if was_cancelled else None


def cli_command(req: AttackRequest, cli_image: str) -> str:
    """The ``python -m advcore attack`` line that reproduces ``req``'s numbers (flags as advcore.cli parses them)."""
    parts = ["python -m advcore attack", f"--model {req.model}", f"--image {shlex.quote(cli_image)}",
             f"--attack {req.attack}", f"--norm {req.norm}", f"--eps {req.eps_text}"]
    if req.spec.iterative:
        parts.append(f"--steps {req.steps}")
        if req.alpha is not None:
            parts.append(f"--alpha {req.alpha_text or repr(req.alpha)}")
    if req.target is not None:
        parts.append(f"--target {req.target}")
    parts += param_flags(req.spec, dict(req.extra))
    if req.device == "cpu":
        parts.append("--device cpu")
    parts.append("--json metrics.json")
    return " \\\n    ".join(parts)


def param_flags(spec: attacks.AttackSpec, values: dict) -> list[str]:
    """The attack's own parameters as command-line flags, from their declarations (``--mu 0.5``,
    ``--no-random-start``); a parameter whose switch is off (PGD's seed without random start) is left out."""
    out = []
    for p in spec.params:
        if p.name in values and spec.enabled(p, values):
            words = p.cli_words(values[p.name])
            if words:
                out.append(" ".join(shlex.quote(w) for w in words))
    return out


def history(result: attacks.AttackResult) -> tuple[list[float], list[float]]:
    """Loss and watched-class probability of the first image per iterate (0 = the starting point).

    advcore's history ends with a final evaluation of ``x_adv``. When the attack stopped on success,
    ``x_adv`` is the iterate already recorded last in the loop, so that point is dropped here rather
    than drawn twice (a flat last segment that looks like a step which changed nothing).
    """
    loss = result.loss_history[0].tolist()
    prob = result.prob_history[0].tolist()
    params = result.params or {}
    if params.get("stop_on_success") and not result.cancelled and len(loss) >= 2:
        evals, steps = int(result.grad_evals[0]), int(params.get("steps", 0))
        # Stopped on the very last step: the same iterate evaluated twice (equal up to float noise).
        repeated = bool(result.success[0]) and math.isclose(loss[-1], loss[-2], rel_tol=1e-6, abs_tol=1e-7) \
            and math.isclose(prob[-1], prob[-2], rel_tol=1e-6, abs_tol=1e-7)
        if evals < steps or repeated:
            loss, prob = loss[:-1], prob[:-1]
    return loss, prob


def _num(v: float | None, fmt: str) -> str:
    return number(v, fmt, "n/a", finite=True)


def metric_rows(m: dict) -> list[dict[str, str]]:
    """The metrics table as rows of {Metric, Value, Meaning}; values formatted for people."""
    yes = {True: "yes", False: "no"}
    psnr = m.get("psnr")
    if m.get("targeted"):
        did, too = "the float image is classified as the target", "the downloaded PNG is too"
    else:
        did = "the float image changes the model's clean prediction"
        too = "the downloaded PNG changes it too"
    rows = [
        ("Success", yes[bool(m["success"])], did),
        ("Success after 8-bit rounding", yes[bool(m["success_8bit"])], too),
        ("L2", _num(m["l2"], ".4f"), "Euclidean size of the change"),
        ("L-inf", f"{_num(m['linf'], '.5f')} ({_num(m['linf'] * 255, '.2f')}/255)", "largest change of any pixel"),
        ("Cosine similarity", _num(m["cosine_similarity"], ".6f"), "clean vs adversarial, as vectors"),
        ("AMP", f"{_num(m['amp'], '.6f')} ({_num(m['amp'] * 255, '.3f')}/255)", "mean absolute change per pixel"),
        ("SSIM", _num(m["ssim"], ".4f"), "structural similarity, 1 = identical"),
        ("PSNR", "inf (unchanged)" if psnr is None or not math.isfinite(psnr) else f"{psnr:.2f} dB",
         "peak signal-to-noise ratio"),
        ("Confidence drop", f"{_num(100 * m['confidence_drop'], '.1f')} points",
         f"P({m['clean_name']}) before minus after"),
        ("Gradient evaluations", str(int(m["grad_evals"])), "forward+backward passes"),
        ("Seconds", _num(m["seconds"], ".3f"), f"attack time on {m.get('device', '?')}"),
    ]
    return [{"Metric": a, "Value": b, "Meaning": c} for a, b, c in rows]


def rounding_sentence(res: ImageAttack) -> str:
    """Whether the attack survives rounding to the 8 bits a PNG stores, in one sentence."""
    m = res.metrics
    png = res.adversarial_8bit
    if m["success"] and m["success_8bit"]:
        return ("The attack still succeeds after the image is rounded to 8 bits: "
                "the PNG you download fools the model too.")
    if m["success"]:
        return (f"The attack does not survive rounding to 8 bits: the PNG you download is classified as "
                f"{png.name} ({100 * png.prob:.1f}%). Try a slightly larger eps.")
    if m["success_8bit"]:
        return ("The float image does not fool the model, but its 8-bit rounding does "
                f"({png.name}, {100 * png.prob:.1f}%): the attack sits right at the decision boundary.")
    return ("The attack did not succeed at this budget, before or after rounding to 8 bits: "
            "try a larger eps or more steps.")


def record(m: dict, dataset_label_name: str | None) -> dict:
    """The metrics as downloaded: advcore's record, plus the dataset label of a test image when there is one
    (``clean_label``/``clean_name`` are the model's clean prediction, which the attack moves away from)."""
    if dataset_label_name is None:
        return m
    classes = models.class_names(m["model"])
    label = classes.index(dataset_label_name) if dataset_label_name in classes else None
    return {**m, "dataset_label": label, "dataset_label_name": dataset_label_name}


def verdict(res: ImageAttack, dataset_label: str | None = None) -> tuple[str, str]:
    """(kind, sentence): what the attack did, with ``kind`` "success", "warning" or "info" for the element.

    Untargeted attacks move the image away from the model's clean prediction, not from the dataset label.
    When the dataset label is known and the model was wrong before the attack, changing the prediction is no
    success: the attack may even turn the wrong answer into the correct label, and the page says so.
    """
    m = res.metrics
    if dataset_label is None or m["targeted"] or res.clean.name == dataset_label \
            or not (m["success"] or m["success_8bit"]):
        return ("success" if m["success_8bit"] else "warning"), rounding_sentence(res)
    clean, adv, png = res.clean.name, res.adversarial.name, res.adversarial_8bit.name
    wrong = f"The model was wrong before the attack (it said {clean}; the dataset label is {dataset_label})."
    if adv == dataset_label:
        text = (f"The attack changed the model's answer from {clean} to {adv}, which is the correct label: "
                "this is not a successful attack on a correct answer. " + wrong)
        if png != adv:
            text += f" The 8-bit PNG you download is classified as {png} ({100 * res.adversarial_8bit.prob:.1f}%)."
        return "warning", text
    if png == dataset_label:
        return "warning", (f"The attack changed the model's answer from {clean} to {adv}, and the 8-bit PNG you "
                           f"download is classified as {png}, which is the correct label: this is not a successful "
                           "attack on a correct answer. " + wrong)
    return "info", (f"{wrong} The attack changed its answer to {adv}, another wrong answer: it moved the "
                    "prediction, but there was no correct answer to attack. The 8-bit PNG you download is "
                    f"classified as {png} ({100 * res.adversarial_8bit.prob:.1f}%).")


def alpha_text(alpha: float | None, norm: str) -> str:
    """A step size for people: ``0.40/255`` for L-infinity, plain for L2."""
    if alpha is None:
        return "n/a"
    return f"{alpha * 255:.3g}/255" if norm == "linf" else f"{alpha:.4g}"


# --------------------------------------------------------------------------- teaching views


def partner_models(model: str) -> list[str]:
    """The models a result can be shown beside: the other models of the same dataset, the robust (PGD-trained)
    one first for a naive model and the naive one first otherwise (``advcore.models.with_role``)."""
    spec = models.get_spec(model)
    others = [n for n in models.names() if n != model and models.get_spec(n).dataset == spec.dataset]
    first = models.with_role(spec.dataset, "pgd" if spec.role == "naive" else "naive")
    return sorted(others, key=lambda n: n != first)


def _outcome(res: ImageAttack) -> str:
    m = res.metrics
    if m["targeted"]:
        return "reaches the target" if m["success"] else "does not reach the target"
    return "is fooled" if m["success"] else "holds"


def side_by_side_sentence(a: ImageAttack, b: ImageAttack, eps_text: str, dataset_label: str | None = None) -> str:
    """One sentence: the same image and attack on two models, and the difference."""
    def part(r: ImageAttack) -> str:
        m = r.metrics
        wrong = (f", already wrong before the attack (dataset label {dataset_label})"
                 if dataset_label is not None and r.clean.name != dataset_label else "")
        return (f"{r.model} {_outcome(r)} ({r.clean.name} {100 * r.clean.prob:.1f}% -> {r.adversarial.name} "
                f"{100 * r.adversarial.prob:.1f}%{wrong}, P({m['clean_name']}) drops by "
                f"{100 * m['confidence_drop']:.1f} points)")
    sa, sb = bool(a.metrics["success"]), bool(b.metrics["success"])
    title = attacks.get_attack(a.attack).title
    targeted = bool(a.metrics["targeted"])
    if sa != sb:
        fooled, held = (a, b) if sa else (b, a)
        diff = (f"it reaches the target on {fooled.model} but not on {held.model}" if targeted
                else f"the same budget fools {fooled.model} but not {held.model}")
    elif sa:
        diff = "it reaches the target on both models" if targeted else "it fools both models"
    else:
        diff = "it reaches the target on neither model" if targeted else "it fools neither model"
    return f"{title} at eps {eps_text} on the same image: {diff}. {part(a)}; {part(b)}."


GUESSES = ("The prediction flips", "The prediction holds")


def guess_feedback(guess: str, res: ImageAttack) -> tuple[bool, str]:
    """(was the guess right, the sentence that says so) for a "predict, then reveal" guess."""
    if guess not in GUESSES:
        raise ValueError(f"unknown guess {guess!r}")
    flipped = bool(res.metrics["success"])
    right = (guess == GUESSES[0]) == flipped
    what = (f"flips: {res.clean.name} -> {res.adversarial.name}" if flipped
            else f"holds: still {res.adversarial.name}")
    return right, f"Your guess: {guess.lower()}. The model's answer {what} ({100 * res.adversarial.prob:.1f}%). " \
                  + ("You were right." if right else "You were wrong.")


def overlay_caption(delta, share10: float) -> str:
    """What the |delta| overlay shows, with the measured concentration of the perturbation."""
    if not float(abs(delta).max()) > 0:
        return "Nothing changed (eps 0 or no step): there is no perturbation to lay over the photo."
    return (f"Red to white where the perturbation is largest (|delta| scaled to its maximum). The 10% of pixels "
            f"that change most hold {100 * share10:.0f}% of its total size (L1): "
            + ("it is spread almost evenly, as sign steps spend the budget everywhere." if share10 < 0.2 else
               "it concentrates where the model's gradient is large."))


def gradient_caption(grad, share10: float, class_name: str, targeted: bool) -> str:
    """What the input-gradient overlay shows (``grad``: the (H, W) map), with its measured concentration."""
    if not float(abs(grad).max()) > 0:
        return (f"The loss gradient is zero everywhere at this image: the model's output for {class_name} is flat "
                "here, so a gradient attack has no direction to follow.")
    toward = "towards the target" if targeted else "away from"
    return (f"Red to white where the cross-entropy to {class_name} is most sensitive to a pixel (|gradient| summed "
            f"over colour channels, scaled to its maximum), at the clean image: the direction a gradient attack "
            f"takes to move {toward} {class_name}. The 10% of pixels with the largest gradient hold "
            f"{100 * share10:.0f}% of its total size (L1).")


def step_caption(step: int, last: int, pred_name: str, pred_prob: float, clean_name: str, loss: float | None) -> str:
    """What the scrubber shows at iterate ``step``."""
    where = "the starting point" if step == 0 else f"after step {step} of {last}"
    lo = "" if loss is None or not math.isfinite(loss) else f", loss {loss:.3f}"
    verdict = "still the clean answer" if pred_name == clean_name else "no longer the clean answer"
    return (f"Iterate {step} ({where}){lo}: the model says {pred_name} ({100 * pred_prob:.1f}%), {verdict} "
            f"({clean_name}). Images and top-5 are of the iterate rounded to 8 bits.")


# --------------------------------------------------------------------------- a result's charts, built once

FIGURES_KEPT = 32  # results whose charts are kept (each ~0.2 MB at 224x224: the heat map's pixels)
_FIGURES = SharedResults(FIGURES_KEPT)  # thread-safe; the figures are read-only (see ui.shared)


@dataclass(frozen=True)
class ResultFigures:
    """The charts of one result: top-5 before and after, loss and probability per iteration, the heatmap."""

    top5_clean: dict  # Vega-Lite specs (ui.plots)
    top5_adv: dict
    loss: dict
    prob: dict
    heatmap: plots.HeatMap


def figures(req: AttackRequest, res: ImageAttack) -> ResultFigures:
    """``res``'s charts (``res`` is ``req``'s result), built once for every session and then reused: a rerun
    that changes only a view (amplification, a step, a guess) or comes back to a result redraws them without
    building them again. **Read-only**: copy a chart before changing it (:func:`ui.plots.mark_step` does)."""

    def make() -> ResultFigures:
        m = res.metrics
        watch = m["target_name"] if m["targeted"] else m["clean_name"]
        loss, prob = history(res.result)
        delta = plots.to_numpy_image(res.x_adv) - plots.to_numpy_image(res.x)
        loss_fig, prob_fig = plots.history_figures(loss, prob, watch, bool(m["targeted"]))
        return ResultFigures(
            top5_clean=plots.topk_bars(res.clean.names, res.clean.probs, "Top-5 before (clean)", watch),
            top5_adv=plots.topk_bars(res.adversarial.names, res.adversarial.probs, "Top-5 after (adversarial)",
                                     watch),
            loss=loss_fig, prob=prob_fig,
            heatmap=plots.perturbation_heatmap(delta, 255.0 * req.eps if req.norm == "linf" else None))

    return _FIGURES.compute(req, make)


_STEP_FIGURES = SharedResults(4 * FIGURES_KEPT)  # the step-through's two charts per iterate (read-only)


def step_figures(frame_key: tuple, step: int, pred, watch: str, loss: list[float], targeted: bool,
                 loss_fig: dict) -> tuple[dict, dict]:
    """The step-through's charts at iterate ``step``: the iterate's top-5 (``pred``, its prediction; the iterate
    named by ``frame_key``: model, device, pixel digest) and ``loss_fig`` (the history ``loss``, ``targeted``)
    with the step marked; built once per content for every session. **Read-only**, like :func:`figures`."""
    key = (frame_key, step, watch, targeted, tuple(loss))
    return _STEP_FIGURES.compute(key, lambda: (plots.topk_bars(pred.names, pred.probs, f"Top-5 at step {step}", watch),
                                               plots.mark_step(loss_fig, step)))
