"""What the Compare attacks page needs besides widgets: the request (its own cache key), the run and the words
of its progress and of a stopped run, the tables, figures, CSV/JSON downloads, the paper's figures quoted as
the paper's, and the equivalent command line (no Streamlit: the page keeps the results in
``ui.session.COMPARE_RESULTS`` and runs them with ``ui.session.COMPARE_RUN``).

The computation is ``advcore.labs.compare.compare``, the function ``python -m advcore compare`` calls.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from advcore import data
from advcore.errors import AdvlabError
from advcore.labs import compare
from advcore.progress import Progress, ProgressFn
from advcore.records import json_safe
from advcore.units import number as _f
from advcore.units import percent_cell as _pct
from ui import plots, workers

FAMILIES = {"imagenet": "ImageNet: EfficientNet-Lite0/1/2", "fashion-mnist": "Fashion-MNIST: the model zoo"}
SOURCE_SAMPLES = "All bundled photos"
SOURCE_UPLOADS = "My uploads"
MAX_UPLOADS = 32
ATTACK_COLOURS = {"fgsm": "#9d755d", "ifgsm": "#4c78a8", "pgd": "#b279a2", "mifgsm": "#54a24b", "agr": "#e4572e",
                  "apgd": "#72b7b2", "square": "#eeca3b"}
# Sweep grids (the page's choices; the command line takes any list or range).
# EfficientNet-Lite0 is fooled on all 9 bundled photos by every iterative attack already at 0.25/255 (measured:
# FGSM 88.9%, the others 100%; stop policy all, 10 steps), 7 of them at 0.05/255 (77.8%) and 4 at 0.02/255
# (44.4%): the photos are near-tied guesses. So the L-inf grid starts far below one 8-bit level, where ASR is
# not 100% (such a perturbation does not survive rounding to 8 bits: the 8-bit ASR there is 0%).
LINF_SWEEP_IMAGENET = (0.02 / 255, 0.05 / 255, 0.25 / 255, 1 / 255)
# L2 on the same photos (bench/results/compare.json "l2_grid": Lite0, 10 steps, stop policy all, AGR alpha = eps):
# at 0.01 FGSM and I-FGSM fool 22.2%; at 0.03 FGSM 66.7%, I-FGSM 77.8%, AGR 44.4%; at 0.1 all three 77.8%; at 0.3
# FGSM 88.9%, I-FGSM and AGR 100%. The old grid (0.1-1.0) started where ASR had stopped moving, so the L2 grid
# spans 0.01-0.3 (pixel L2), where it varies.
L2_SWEEP_IMAGENET = (0.01, 0.03, 0.1, 0.3)
LINF_SWEEP_SMALL = (0.05, 0.1, 0.15, 0.2, 0.3)
L2_SWEEP_SMALL = (0.5, 1.0, 2.0, 3.0)

# The paper's own figures (Xiao et al.; Inception-v3 and others on ImageNet val, "10 times iterations"):
# quoted, never measured here. Table 1 (L-inf) and Table 2 (L2): Inc-v3 as the source.
@dataclass(frozen=True)
class CompareRequest:
    """Everything that determines a comparison; hashable, so it is its own cache key."""

    dataset: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    attacks: tuple[str, ...]
    norm: str
    eps: tuple[float, ...]
    eps_text: str  # how the command line spells eps: "4/255", "0.1" or "1/255,2/255"
    steps: int
    seed: int
    images: str  # "samples", "fashion-mnist" or "uploads"
    limit: int | None  # fashion-mnist: the first N test images
    upload_key: tuple[str, ...] = ()  # identifies the uploaded files' contents
    device: str = "auto"
    kind: str = "table"  # "table" (one budget, transfer matrix) or "sweep-linf" / "sweep-l2"
    stop_on_success: str = "all"  # the one stop policy of every iterative attack (compare.STOP_POLICIES)
    agr_alpha: str = "eps"  # AGR's base step (compare.AGR_ALPHAS)
    resolution: int | None = None  # ImageNet: one input size for every model (None: each its own)
    radius: tuple[str, ...] = ()  # minimal-norm attacks whose per-image robustness radius is measured
    square_queries: int = compare.DEFAULT_SQUARE_QUERIES  # Square's own budget (queries per image), not steps

    def check(self) -> None:
        """Refuse what cannot run, with a sentence for a person (advcore checks the rest)."""
        if not self.sources:
            raise AdvlabError("Choose at least one source model.")
        if not self.attacks:
            raise AdvlabError("Choose at least one attack.")
        if self.images == "uploads" and not self.upload_key:
            raise AdvlabError("Upload at least one image, or choose the bundled photos.")
        compare.check_models(self.sources, self.targets)
        compare.check_options(self.stop_on_success, self.agr_alpha, self.resolution, self.dataset)
        compare.check_attacks(self.attacks)
        compare.check_radius(self.radius)
        compare.check_square_queries(self.square_queries)
        compare.check_eps(self.eps, self.norm, self.steps)

    def settings(self) -> dict:
        """The settings a shipped run is matched on (``advcore.labs.compare.saved_result``)."""
        return {"sources": list(self.sources), "targets": list(self.targets), "attacks": list(self.attacks),
                "norm": self.norm, "eps": list(self.eps), "steps": self.steps, "seed": self.seed,
                "stop_on_success": self.stop_on_success, "agr_alpha": self.agr_alpha,
                "resolution": self.resolution, "images": self.images, "kind": self.kind,
                "radius": list(self.radius), "square_queries": self.square_queries}

    def cli_command(self) -> str:
        """The ``python -m advcore compare`` line that computes the same numbers."""
        images = {"samples": "samples", "fashion-mnist": "fashion-mnist", "uploads": "uploads/"}[self.images]
        parts = ["python -m advcore compare", f"--models {','.join(self.sources)}"]
        if self.targets != self.sources:
            parts.append(f"--targets {','.join(self.targets)}")
        parts.append(f"--images {images}")
        if self.limit is not None:
            parts.append(f"--limit {self.limit}")
        named = {compare.DEFAULT_ATTACKS: "default", compare.ALL_ATTACKS: "all"}
        attacks_ = named.get(tuple(self.attacks), ",".join(self.attacks))
        parts += [f"--attacks {attacks_}", f"--norm {self.norm}", f"--eps {shlex.quote(self.eps_text)}",
                  f"--steps {self.steps}", f"--seed {self.seed}", f"--stop-on-success {self.stop_on_success}"]
        if "agr" in self.attacks:
            parts.append(f"--agr-alpha {self.agr_alpha}")
        if any(a in compare.QUERY_ATTACKS for a in self.attacks):
            parts.append(f"--square-queries {self.square_queries}")
        if self.resolution is not None:
            parts.append(f"--resolution {self.resolution}")
        if self.radius:
            parts.append(f"--radius {','.join(self.radius)}")
        if self.device == "cpu":
            parts.append("--device cpu")
        parts.append(f"--json {'compare' if self.kind == 'table' else self.kind}.json")
        return " \\\n    ".join(parts)


def eps_text(eps: float, norm: str, dataset: str) -> str:
    """``4/255`` for ImageNet L-inf budgets (whole 8-bit levels), else the number."""
    if norm == "linf" and dataset == "imagenet":
        k = eps * 255
        return f"{round(k)}/255" if abs(k - round(k)) < 1e-9 else f"{k:g}/255"
    return f"{eps:g}"


# --------------------------------------------------------------------------- images


def upload_items(files: Sequence) -> tuple[list[compare.ImageItem], list[str]]:
    """Decoded uploads; unreadable ones are skipped with a note (at most :data:`MAX_UPLOADS`)."""
    items, notes = [], []
    for f in list(files)[:MAX_UPLOADS]:
        try:
            items.append(compare.ImageItem(f.name, data.open_image(f.getvalue(), name=f.name)))
        except AdvlabError as exc:
            notes.append(str(exc))
    if len(files) > MAX_UPLOADS:
        notes.append(f"only the first {MAX_UPLOADS} uploads are used")
    return items, notes


def request_images(req: CompareRequest, uploads: Sequence | None = None) -> tuple[list[compare.ImageItem], list[str]]:
    """The images a request names."""
    if req.images == "uploads":
        items, notes = upload_items(uploads or [])
        if not items:
            raise AdvlabError("None of the uploaded files is an image that can be read: " + "; ".join(notes))
        return items, notes
    items, notes, _ = compare.resolve_images(req.images, req.dataset, req.limit)
    return items, notes


# --------------------------------------------------------------------------- running, and what a stopped run says


def compute(req: CompareRequest, uploads: Sequence | None = None,
            progress: ProgressFn | None = None) -> compare.CompareResult:
    """``advcore.labs.compare.compare`` for one request, with the skipped uploads' notes and the image names.

    It runs on the server's torch threads as they are: a thread count is the process's, shared by every
    session, so a page never changes it (``python -m advcore compare --threads 1`` is the command line's)."""
    req.check()
    items, notes = request_images(req, uploads)
    return compute_items(req, items, notes, progress)


def job(req: CompareRequest, uploads: Sequence | None = None) -> workers.Job:
    """The comparison as a job for a worker process (:mod:`ui.workers`): its images decoded here (an upload is a
    session's object, the decoded image plain data), its progress sent as plain :class:`Progress`; run
    in-process (``local``) when it names a model of the session's own."""
    req.check()
    items, notes = request_images(req, uploads)
    return workers.progress_job(compute_items, (req, items, notes), models=(*req.sources, *req.targets))


def compute_items(req: CompareRequest, items: list[compare.ImageItem], notes: list[str],
                  progress: ProgressFn | None = None) -> compare.CompareResult:
    """:func:`compute` on images already decoded (``notes``: what was skipped)."""
    result = compare.compare(items, req.sources, targets=req.targets, attack_names=req.attacks, norm=req.norm,
                             eps=req.eps, steps=req.steps, seed=req.seed, device=req.device, progress=progress,
                             stop_on_success=req.stop_on_success, agr_alpha=req.agr_alpha, resolution=req.resolution,
                             radius=req.radius, square_queries=req.square_queries)
    return dataclasses.replace(result, notes=list(notes), image_names=[it.name for it in items])


def progress_text(p: Progress, label: str = "") -> str:
    """The progress bar's words: ``run 1 of 2: PGD on fmnist-naive: 40 of 200 image-steps``."""
    return f"{label}{p.stage}: {p.step:,} of {p.total:,} image-steps"


def cancelled(left: str | None) -> str:
    """A run stopped on the Cancel flag."""
    return "Cancelled; nothing was kept. Press Run to start again."


def interrupted(left: str, was_cancelled: bool) -> str:
    """Where a run that a rerun (Cancel, a changed widget) interrupted stopped (``left``: its stage)."""
    if was_cancelled:
        return f"Cancelled during {left}; nothing was kept. Press Run to start again."
    return (f"The run stopped during {left} because the page reran (a setting changed); nothing was kept. "
            "Press Run to start again.")


# --------------------------------------------------------------------------- tables


AMP_COLUMN, L2_COLUMN, LINF_COLUMN = "AMP (pixel units)", "L2 (pixel L2)", "L-inf (pixel units)"
P_CLEAN_COLUMN = "p(clean label) left (0-1)"
P_CLEAN_TITLE = "Probability left on the clean label (mean)"
P_CLEAN_AXIS = "p(clean label) (probability, 0-1)"
TRANSFER_VIEWS = {"values": "float images", "values_8bit": "after rounding to 8 bits",
                  "values_correct": "images every model classifies correctly"}


def in_levels(result: compare.CompareResult) -> bool:
    """Whether sizes also read in 8-bit levels (x/255): under L-inf, as on the Attack lab."""
    return result.norm == "linf"


def _size(value: float | None, levels: bool) -> str:
    """A perturbation size in pixel units, with its 8-bit levels where they apply: ``0.0047 (1.20/255)``."""
    if value is None or not levels:
        return _f(value, ".4g")
    return f"{value:.4g} ({value * 255:.2f}/255)"


def steps_cell(attack: str, steps: float | None) -> str:
    """Mean steps to success; Square's are model queries (``2.25 queries``), every other attack's gradient steps."""
    return _f(steps, ".2f") + (" queries" if attack in compare.QUERY_ATTACKS and steps is not None else "")


def table_rows(result: compare.CompareResult) -> list[dict[str, str]]:
    """The per-attack table as a person reads it (one row per source and attack)."""
    rows = []
    levels = in_levels(result)
    for r in compare.table_rows(result):
        rows.append({
            "Source": r["source"], "Attack": r["title"], "ASR": _pct(r["asr"]), "ASR as 8-bit PNG": _pct(r["asr_8bit"]),
            "Fooled": f"{r['successes']}/{r['n']}",
            "Cosine (mean ± sd)": f"{_f(r['cosine_similarity'], '.7f')} ± {_f(r['cosine_similarity_std'], '.1e')}",
            AMP_COLUMN: _size(r["amp"], levels), P_CLEAN_COLUMN: _f(r["p_clean"], ".3f"),
            L2_COLUMN: _f(r["l2"], ".4g"), LINF_COLUMN: _size(r["linf"], levels),
            "Steps to success": steps_cell(r["attack"], r["steps_to_success"]),
            "Gradient evaluations": _f(r["grad_evals"], ".2f"),
            "Seconds": f"{r['seconds']:.2f}",
        })
    return rows


RADIUS_ORDERS = {"ascending": "smallest radius first (most fragile)", "descending": "largest radius first"}


def radius_column(result: compare.CompareResult, source: str, attack: str) -> str:
    """The radius column's header, with its norm and unit: ``DeepFool L-inf radius (x/255)``."""
    norm = result.radius[source][attack].norm  # type: ignore[index]
    unit = "x/255" if norm == "linf" else "pixel L2"
    return f"{result.attack_titles.get(attack, compare.result_title(attack)).split(' (')[0]} " \
           f"{'L-inf' if norm == 'linf' else 'L2'} radius ({unit})"


def _radius_cell(value: float | None, norm: str) -> str:
    if value is None:
        return compare.NOT_FOUND
    return f"{value * 255:.3g}/255" if norm == "linf" else f"{value:.4g}"


def radius_table(result: compare.CompareResult, source: str, sort_by: str, descending: bool = False
                 ) -> list[dict[str, str]]:
    """The per-image radius table as a person reads it, sorted by ``sort_by``'s radius (not found beyond every
    found radius); each attack's radius in its own norm, and the other norm's size of the same perturbation."""
    by = result.radius[source]  # type: ignore[index]
    out = []
    for r in compare.radius_rows(result, source, sort_by, descending):
        row = {"Image": r["image"]}
        for a, st in by.items():
            row[radius_column(result, source, a)] = _radius_cell(r[f"{a}_radius"], st.norm)
            other = "l2" if st.norm == "linf" else "linf"
            head = (f"{compare.result_title(a)}: its {'L2 (pixel L2)' if other == 'l2' else 'L-inf (x/255)'} "
                    "of that perturbation")
            row[head] = _radius_cell(r[f"{a}_{other}"], other)
        out.append(row)
    return out


def radius_medians(result: compare.CompareResult) -> list[dict[str, str]]:
    """The median radius per source model and attack (a not-found image counts as larger than every found one)."""
    rows = []
    for s, by in (result.radius or {}).items():
        for a, st in by.items():
            n_found = sum(st.found)
            rows.append({"Source": s, "Attack": compare.result_title(a),
                         "Radius norm": "L-inf (x/255)" if st.norm == "linf" else "L2 (pixel L2)",
                         "Median radius": _radius_cell(st.median, st.norm),
                         "Found": f"{n_found}/{len(st.found)}",
                         "Limit": ", ".join(f"{k} {v}" for k, v in st.params.items() if k in ("steps", "binary_steps")),
                         "Seconds": f"{st.seconds:.2f}"})
    return rows


def agreement_rows(result: compare.CompareResult) -> list[dict[str, str]]:
    """Per source: each target's clean agreement (its clean prediction equals the source's) and, where the
    images have true classes, how many images every model classifies correctly."""
    rows = []
    for s in result.sources:
        row = {"Source": s}
        for t in result.targets:
            row[f"{t} agrees"] = _pct(result.agreement[s][t])
        if result.correct is not None:
            row["Correct for every model"] = f"{len(result.correct[s])}/{len(result.images)}"
        rows.append(row)
    return rows


def accuracy_caption(result: compare.CompareResult) -> str:
    """The clean accuracies and agreement in words, computed from the result."""
    low = min(((result.agreement[s][t], s, t) for s in result.sources for t in result.targets if t != s),
              default=None)
    text = ("Clean agreement: the share of images on which a target's clean prediction (as it sees them) equals "
            "the source's; a transfer 'success' on an image they already disagree on is a flip between two "
            "guesses.")
    if low is not None:
        text += f" Lowest here: {low[2]} agrees with {low[1]} on {_pct(low[0])}."
    acc = {m: c.accuracy for m, c in result.clean.items() if c.accuracy is not None}
    if acc:
        text += " Clean accuracy: " + ", ".join(f"{m} {_pct(v)}" for m, v in acc.items()) + "."
    else:
        text += " These images have no true class, so no accuracy (and no correctly classified subset) is measured."
    return text


def table_caption(result: compare.CompareResult) -> str:
    """What the per-attack table's columns mean for this run, including its stop policy."""
    e = result.eps[-1]
    norm = "L-infinity" if result.norm == "linf" else "L2"
    res = f" at {result.resolution}x{result.resolution} for every model" if result.resolution else ""
    return (f"{len(result.images)} image(s), {norm} eps {eps_text(e, result.norm, result.dataset)}, "
            f"{result.steps} steps, seed {result.seed}, on {result.device}{res}. Stop policy: "
            f"{compare.policy_words(result)}. Untargeted: each source model's own clean prediction is the label "
            "the attack moves away from. Cosine, AMP, L2 and L-inf are over every image, fooled or not, in pixel "
            "units (pixels in [0, 1])" + ("; /255: the same size in 8-bit levels" if in_levels(result) else "")
            + ". p(clean label) left: the source's probability of its clean prediction at the adversarial image "
            "(mean; how much margin the attack leaves). Steps to success: gradient steps before the first "
            "adversarial iterate, over the fooled images. ASR as 8-bit PNG: the same images rounded to the 256 "
            "levels a file stores." + query_words(result))


def query_words(result: compare.CompareResult) -> str:
    """Square's own budget in words, where the run has it (else empty)."""
    if not any(a in compare.QUERY_ATTACKS for a in result.attacks):
        return ""
    return f" Square: {result.square_queries} queries per image. {compare.QUERY_NOTE}"


def csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


def json_bytes(result: compare.CompareResult) -> bytes:
    return json.dumps(json_safe(result.to_dict()), indent=2).encode("utf-8")


# --------------------------------------------------------------------------- figures

BAR_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=300, barmode="group",
                  legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0))


def metric_bars(result: compare.CompareResult, key: str, title: str, axis: str, percent: bool = False,
                spread: str | None = None) -> go.Figure:
    """One bar per attack and source model for the statistic ``key`` of the table (error bars: ``spread``)."""
    run = compare.run_at(result, result.eps[-1])
    fig = go.Figure()
    palette = [plots.OTHER, plots.WATCH, "#54a24b", "#b279a2", "#9d755d", "#72b7b2", "#f58518", "#7f7f7f"]
    x = [result.attack_titles[a].split(" (")[0] for a in result.attacks]
    for i, s in enumerate(result.sources):
        vals = [getattr(run.sources[s][a], key) for a in result.attacks]
        y = [None if v is None else (100 * v if percent else v) for v in vals]
        err = None
        if spread:
            err = dict(type="data", array=[getattr(run.sources[s][a], spread) or 0 for a in result.attacks],
                       visible=True)
        colour = ([ATTACK_COLOURS.get(a, plots.OTHER) for a in result.attacks] if len(result.sources) == 1
                  else palette[i % len(palette)])  # one source: colour by attack, as in the sweep
        levels = key in ("amp", "linf") and in_levels(result)  # also in 8-bit levels, on the bars
        text = [None if v is None else f"{255 * v:.2f}/255" for v in y] if levels else None
        fig.add_trace(go.Bar(x=x, y=y, name=s, marker_color=colour, error_y=err, text=text,
                             textposition="outside" if levels else None,
                             hovertemplate="%{x}: %{y:.4g}" + (" (%{text})" if levels else "") + "<extra>" + s
                             + "</extra>"))
    fig.update_layout(**BAR_LAYOUT, title=title, showlegend=len(result.sources) > 1)
    fig.update_yaxes(title=axis, **({"range": [0, 100]} if percent else {"range": [0, 1]} if key == "p_clean"
                                    else {}))
    if key == "cosine_similarity":  # all near 1: zoom in on 1 and on every mean ± sd
        bars = [(v, e or 0) for t in fig.data for v, e in zip(t.y, (t.error_y.array or [0] * len(t.y)), strict=True)
                if v is not None]
        if bars:
            fig.update_yaxes(**cosine_axis([v - e for v, e in bars], [v + e for v, e in bars]))
    return fig


def cosine_axis(lows: Sequence[float], highs: Sequence[float]) -> dict:
    """The cosine axis: a range holding 1 and every error bar (mean ± sd), ticks with as many decimals as the
    range needs (``0.996``, not ``0.9960000``)."""
    lo, hi = min(lows), max(max(highs), 1.0)
    pad = max(0.05 * (hi - lo), 1e-9)
    lo, hi = lo - pad, hi + pad
    decimals = min(9, max(1, math.ceil(-math.log10((hi - lo) / 10))))
    return {"range": [lo, hi], "tickformat": f".{decimals}~f"}


def transfer_views(result: compare.CompareResult) -> list[str]:
    """The transfer matrices a run has: float and 8-bit always, correctly classified where labels exist."""
    return [k for k in TRANSFER_VIEWS if k != "values_correct" or result.correct is not None]


def transfer_heatmap(result: compare.CompareResult, attack: str, which: str = "values") -> go.Figure:
    """Success rate (%) of ``attack``'s adversarial images on each target (columns) per source (rows), on the
    float images, after 8-bit rounding or on the correctly classified images (``which``, a
    :data:`TRANSFER_VIEWS` key); the white-box diagonal is outlined and starred."""
    run = compare.run_at(result, result.eps[-1])
    m = run.transfer_matrix[attack]
    values = getattr(m, which)
    z = np.asarray([[np.nan if v is None else v for v in row] for row in values], dtype=float) * 100.0
    text = [[("–" if np.isnan(v) else f"{v:.0f}%") + ("*" if s == t else "") for v, t in zip(row, m.columns,
                                                                                          strict=True)]
            for row, s in zip(z.tolist(), m.rows, strict=True)]
    fig = go.Figure(go.Heatmap(z=z.tolist(), x=m.columns, y=m.rows, zmin=0, zmax=100, text=text,
                               texttemplate="%{text}", colorscale="Viridis", colorbar=dict(title="%", thickness=12),
                               hovertemplate="made on %{y}, shown to %{x}: %{z:.1f}%<extra></extra>"))
    for i, s in enumerate(m.rows):
        if s in m.columns:
            j = m.columns.index(s)
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                          line=dict(color=plots.WATCH, width=3))
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), height=120 + 60 * len(m.rows),
                      title=f"Transfer of {result.attack_titles[attack]}, {TRANSFER_VIEWS[which]} "
                            "(success rate, * white box)")
    fig.update_xaxes(title="shown to (target)", type="category")
    fig.update_yaxes(title="made on (source)", type="category", autorange="reversed")
    return fig


SWEEP_DASHES = ("solid", "dot", "dash", "longdash", "dashdot", "longdashdot", "5px,2px")
SWEEP_MARKERS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross")


def sweep_figure(result: compare.CompareResult, source: str) -> go.Figure:
    """ASR against eps, one line per attack (the paper's Figures 3 and 5)."""
    norm = "L-inf" if result.norm == "linf" else "L2"
    imagenet_linf = result.norm == "linf" and result.dataset == "imagenet"
    fig = go.Figure()
    curves = list(result.sweep[source].items())
    # Curves that coincide hide each other: each attack gets its own dash and marker, and the thinner,
    # dashed ones are drawn last (on top) while the legend keeps the table's order (legendrank).
    for rank, (a, cur) in sorted(enumerate(curves), key=lambda rc: (rc[1][0] == "ifgsm", rc[0])):
        xs = [e * 255 for e in cur.eps] if imagenet_linf else cur.eps
        fig.add_trace(go.Scatter(x=xs, y=[100 * v for v in cur.asr], name=result.attack_titles[a].split(" (")[0],
                                 mode="lines+markers", legendrank=rank,
                                 line=dict(color=ATTACK_COLOURS.get(a, plots.OTHER), width=2 + (rank == 0),
                                           dash=SWEEP_DASHES[rank % len(SWEEP_DASHES)]),
                                 marker=dict(symbol=SWEEP_MARKERS[rank % len(SWEEP_MARKERS)], size=7),
                                 hovertemplate="eps %{x:.3g}: %{y:.1f}%<extra>" + a + "</extra>"))
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), height=340, showlegend=True,
                      legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
                      title=f"ASR against eps, {norm}, on {source}")
    fig.update_xaxes(title=f"eps ({'x/255' if imagenet_linf else 'pixel units, ' + norm})", rangemode="tozero")
    fig.update_yaxes(title="attack success rate (%)", range=[0, 100])
    return fig


# --------------------------------------------------------------------------- words


def paper_quote(norm: str) -> str:
    """The paper's own numbers for AGR against I-FGSM and MI-FGSM, quoted with their table numbers."""
    p = compare.PAPER[norm]
    wb = ", ".join(f"{n} {p['white_box'][k]:.2f}%" for k, n in (("ifgsm", "I-FGSM"), ("mifgsm", "MI-FGSM"),
                                                                ("agr", "AGR")))
    tr = ", ".join(f"{n} {p['transfer'][k]:.2f}%" for k, n in (("ifgsm", "I-FGSM"), ("mifgsm", "MI-FGSM"),
                                                               ("agr", "AGR")))
    amp = ", ".join(f"{n} {p['amp'][k]:.3f}" for k, n in (("ifgsm", "I-FGSM"), ("mifgsm", "MI-FGSM"),
                                                          ("agr", "AGR")))
    return (f"**The paper's own figures (quoted, not measured here).** Xiao et al., {p['table']}, Inception-v3 as "
            f"the source on ImageNet: white-box ASR {wb}; on {p['target']} (black box) {tr}. Table 3, AMP on "
            f"Inception-v3 at {p['amp_budget']}: {amp}. The paper's models, images and budget units differ from "
            "this page's, so compare the ordering of the attacks, not the values."
            + (" " + compare.PAPER_AMP_NOTE if norm == "linf" else ""))


def measured_sentences(result: compare.CompareResult) -> list[str]:
    """What this run measured (every number from ``result``; see advcore.labs.compare.summary)."""
    out = compare.summary(result)
    if not out:
        return ["This run did not include AGR together with I-FGSM or MI-FGSM, so it says nothing about the "
                "paper's claim; choose those attacks to compare them."]
    return out


STOP_LABELS = {"all": "every attack stops", "none": "no attack stops"}
AGR_ALPHA_LABELS = {"eps": "eps (Eq. 11)", "eps/steps": "eps/steps"}


def resolution_label(size: int | None) -> str:
    """The input-size choice: each model's own, or one common square size."""
    return "each model's own" if size is None else f"{size}x{size} for every model"
