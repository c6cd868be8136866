"""Geometry lab: the request, the probe, the figures and the sentences of the page (no Streamlit).

The maths is :func:`advcore.labs.geometry.probe_image`; here it is only called and drawn with plotly. The page
keeps its results in ``ui.session.GEOMETRY_RESULTS``, keyed by every parameter and the model (so a view choice,
such as the radius of the heat maps, never recomputes).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from advcore import models
from advcore.errors import AdvlabError
from advcore.labs import geometry
from advcore.progress import Progress, ProgressFn
from ui import plots, workers

PAGE_PERMUTATIONS = 199

# Page defaults per input size: a 28x28 model takes the paper's T = 100 and radii 1..20 pixels; an
# ImageNet model (224 px and up: 0.04 s a forward pass on the 2-core CPU) fewer points and radii.
SMALL_DEFAULTS = {"T": 100, "radii": "1/255:20/255:1/255"}
LARGE_DEFAULTS = {"T": 20, "radii": "1/255,2/255,5/255,10/255,20/255"}
T_CHOICES = [5, 10, 20, 30, 50, 100, 200]
ROBUST_ROLES = ("pgd", "fgsm", "mat-mixed", "mat-parallel")  # the robust partners, PGD-trained first

LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=360)
SCORE_COLOURS = plots.streamlit_safe(plotly.colors.sequential.Viridis)
RADIUS_COLOURS = plots.streamlit_safe(plotly.colors.sequential.Turbo)  # cold = small radius, as in the paper
PAIR_COLOURS = ("#7f7f7f", "#b279a2")


def defaults(model: str) -> dict:
    """T and the radii the page starts with for ``model`` (by input size)."""
    return dict(SMALL_DEFAULTS if models.get_spec(model).small else LARGE_DEFAULTS)


@dataclass(frozen=True)
class GeometryRequest:
    """Everything that determines a result: the cache key and the command line."""

    model: str
    image_key: str
    T: int
    radii: tuple[float, ...]
    radii_text: str
    norm: str
    layer: str
    seed: int
    permutations: int
    device: str
    score: str = geometry.DEFAULT_SCORE

    def cli_command(self, cli_image: str, model: str | None = None) -> str:
        """The ``python -m advcore geometry all`` line that gives the same numbers."""
        parts = ["python -m advcore geometry all", f"--model {model or self.model}",
                 f"--image {shlex.quote(cli_image)}", f"--T {self.T}", f"--radii {shlex.quote(self.radii_text)}",
                 f"--norm {self.norm}", f"--layer {shlex.quote(self.layer)}", f"--seed {self.seed}",
                 f"--permutations {self.permutations}", f"--score {self.score}"]
        if self.device == "cpu":
            parts.append("--device cpu")
        parts.append("--json geometry.json")
        return " ".join(parts)


def probe(req: GeometryRequest, image, progress: ProgressFn | None = None,
          model: str | None = None) -> geometry.ImageGeometry:
    """Every probe of ``req`` (on ``model`` instead of ``req.model`` when given): advcore's ``probe_image``."""
    name = model or req.model
    sweep = "all" if models.get_spec(name).small else ()  # a pass per layer: only on 28x28 models (CLI's auto)
    return geometry.probe_image(name, image, radii=req.radii, T=req.T, layer=req.layer, norm=req.norm,
                                seed=req.seed, permutations=req.permutations, score=req.score, mantel_layers=sweep,
                                device=req.device, progress=progress)


def probe_job(req: GeometryRequest, image, model: str | None = None) -> workers.Job:
    """:func:`probe` as a job for a worker process (:mod:`ui.workers`), its progress sent as plain data; run
    in-process (``local``) on a model of the session's own."""
    return workers.progress_job(probe, (req, image), {"model": model}, models=(model or req.model,))


def saved_probe(req: GeometryRequest, cli_image: str) -> tuple[geometry.ImageGeometry, str] | None:
    """The shipped result of ``req`` on the image the command line names ``cli_image`` (an ImageNet model's page
    default, :func:`geometry.saved_probe`), or None. 28x28 models answer in about a second and ship none."""
    if models.get_spec(req.model).small:
        return None
    return geometry.saved_probe(req.model, cli_image, radii=req.radii, T=req.T, layer=req.layer, norm=req.norm,
                                seed=req.seed, permutations=req.permutations, score=req.score)


def progress_text(label: str, p: Progress) -> str:
    """The progress bar's words: ``Probing fmnist-naive: isotropy (40%)``."""
    return f"{label}: {p.stage} ({p.fraction:.0%})"


def cancelled_sentence(model: str) -> str:
    """What the page says in place of a cancelled computation, above its Run button."""
    return f"The computation for {model} was cancelled. Change a setting, or press Run to start it again."


def interrupted(left: dict, was_cancelled: bool) -> None:
    """A probe that a rerun interrupted needs no words: the page starts the new settings at once, or names the
    cancelled computation above its Run button."""
    return None


# --------------------------------------------------------------------------- figures


def _x(radii: Sequence[float]) -> list[float]:
    return [r * 255.0 for r in radii]


RADIUS_AXIS = "radius r (in pixel levels, x/255)"


def _positive(values: Sequence[float | None]) -> list[float | None]:
    """Values for a log axis: zeros and missing values become gaps."""
    return [v if v is not None and v > 0 else None for v in values]


def range_figure(probe: geometry.ScoreProbe, title: str) -> go.Figure:
    """The paper's Figures 1 and 3: range of the class score against the radius (log scale); colour = mean
    score; squares where at least one point was misclassified."""
    symbols = ["square" if w else "circle" for w in probe.any_misclassified]
    wrong = probe.misclassified.sum(1).tolist()
    score = geometry.SCORES[probe.score]
    bounds = dict(cmin=0.0, cmax=1.0) if score.bounded else {}
    fig = go.Figure(go.Scatter(
        x=_x(probe.radii), y=_positive(probe.range), mode="lines+markers", line=dict(color="#bbbbbb", width=1),
        marker=dict(size=11, symbol=symbols, color=probe.mean, colorscale=SCORE_COLOURS, **bounds,
                    line=dict(color="#333333", width=0.5), colorbar=dict(title="mean score", thickness=12)),
        customdata=np.column_stack([probe.mean, wrong]),
        hovertemplate="r = %{x:.3g}/255<br>range %{y:.3e}<br>mean score %{customdata[0]:.4f}"
                      "<br>misclassified %{customdata[1]:.0f}<extra></extra>"))
    fig.update_layout(**LAYOUT, title=title, showlegend=False)
    fig.update_xaxes(title=RADIUS_AXIS)
    fig.update_yaxes(title=f"range(r) of the {score.title} ({score.unit})", type="log", exponentformat="power")
    return fig


def mantel_figure(topo: geometry.Topology, title: str = "Mantel r against the radius (Figure 4)") -> go.Figure:
    """Pearson r of the input-space and layer distance matrices per radius, with its p-value on hover."""
    r = [t.r if math.isfinite(t.r) else None for t in topo.tests]
    p = [t.p_value if t.p_value is not None else math.nan for t in topo.tests]
    fig = go.Figure(go.Scatter(x=_x(topo.radii), y=r, mode="lines+markers", marker=dict(size=9, color=plots.OTHER),
                               name=f"layer {topo.layer}", customdata=p,
                               hovertemplate="r = %{x:.3g}/255<br>Mantel r %{y:.4f}<br>p %{customdata:.4f}"
                                             "<extra></extra>"))
    if topo.null_r:
        fig.add_trace(go.Scatter(x=_x(topo.radii), y=[v if math.isfinite(v) else None for v in topo.null_r],
                                 mode="lines+markers", name=f"random linear map to {topo.null_dim} values (null)",
                                 line=dict(color="#7f7f7f", dash="dash"), marker=dict(size=6, color="#7f7f7f")))
    fig.add_hline(y=0.0, line=dict(color="#999999", width=1, dash="dot"))
    fig.update_layout(**LAYOUT, title=title, showlegend=bool(topo.null_r),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_xaxes(title=RADIUS_AXIS)
    fig.update_yaxes(title="Mantel r", range=[-1.05, 1.05])
    return fig


def layer_means(topo: geometry.Topology) -> list[tuple[str, int, float]]:
    """(layer, output size, Mantel r averaged over the radii) for every swept layer, in forward order."""
    return [(name, topo.layer_dims[name], float(np.nanmean(rs))) for name, rs in topo.layer_r.items()]


def layers_figure(topo: geometry.Topology, title: str = "Mantel r at every layer (mean over the radii)") -> go.Figure:
    """Bars of the mean Mantel r per layer, with the random-map null as a dashed line."""
    rows = layer_means(topo)
    fig = go.Figure(go.Bar(x=[n for n, _, _ in rows], y=[v for _, _, v in rows], marker_color=plots.OTHER,
                           customdata=[d for _, d, _ in rows], name="layers",
                           hovertemplate="%{x} (%{customdata} values)<br>mean Mantel r %{y:.4f}<extra></extra>"))
    if topo.null_r:
        fig.add_hline(y=float(np.nanmean(topo.null_r)), line=dict(color="#7f7f7f", dash="dash"),
                      annotation_text=f"random linear map to {topo.null_dim} values")
    fig.update_layout(**LAYOUT, title=title, showlegend=False)
    fig.update_xaxes(title="layer")
    fig.update_yaxes(title="Mantel r", range=[-1.05, 1.05])
    return fig


def mantel_sentence(topo: geometry.Topology) -> str:
    """The Mantel reading beside its controls, from the numbers drawn."""
    rs = [t.r for t in topo.tests]
    out = f"At layer {topo.layer} r lies between {np.nanmin(rs):.3f} and {np.nanmax(rs):.3f}"
    if topo.null_r:
        out += (f"; a random linear map to the same {topo.null_dim} values, which only mixes the pixels, gives "
                f"{np.nanmin(topo.null_r):.3f} to {np.nanmax(topo.null_r):.3f}, because random points at one "
                f"radius are almost equidistant and small differences between distances carry the correlation")
        below = float(np.nanmean(rs)) < float(np.nanmean(topo.null_r))
        out += (": on average the layer keeps less of the arrangement than that random map" if below else
                ": on average the layer keeps at least as much of the arrangement as that random map")
    rows = layer_means(topo)
    if rows:
        top = max(rows, key=lambda t: t[2])
        low = min(rows, key=lambda t: t[2])
        out += (f". Across the layers the mean r goes from {top[2]:.3f} ({top[0]}) to {low[2]:.3f} ({low[0]})")
    return out + "."


def baseline_sentence(lip: geometry.Lipschitz) -> str:
    """The local ratio beside the global baseline (pairs of unrelated clean images), from the numbers."""
    base = lip.normalisers.baseline
    local = float(np.nanmedian(lip.ratio.numpy()))
    if base is None or base.ratio.numel() == 0:
        return f"The median local ratio is {local:.3g}; there were too few images for a global baseline."
    g = base.ratio
    return (f"The median local ratio is {local:.3g}. The global baseline, the same ratio for "
            f"{base.dx.numel()} pairs of unrelated clean images with the same normalisers, has median "
            f"{float(g.median()):.3g} and {float((g < 1).double().mean()):.1%} of its pairs below 1, so a ratio "
            f"below 1 is not by itself a local property: with scalar min-max normalisers it also holds between "
            f"images that have nothing to do with each other.")


def distance_heatmap(d: np.ndarray, title: str) -> go.Figure:
    """One T x T distance matrix as a heat map."""
    fig = go.Figure(go.Heatmap(z=d.astype(np.float32), colorscale=plots.HEAT_COLOURS,
                               colorbar=dict(title="distance", thickness=12),
                               hovertemplate="points %{y} and %{x}: %{z:.4g}<extra></extra>"))
    fig.update_layout(**{**LAYOUT, "height": 340}, title=title)
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", title="point")
    fig.update_xaxes(constrain="domain", title="point")
    return fig


def lipschitz_figure(lip: geometry.Lipschitz, title: str = "Local Lipschitz (Figure 6)") -> go.Figure:
    """||g(phi(x+v)) - g(phi(x))|| against ||h(x+v) - h(x)||, coloured by radius, with the linear (black) and
    quadratic (blue) fits of the paper and the ratio-1 line."""
    dx, dy, radius = lip.dx.numpy(), lip.dy.numpy(), lip.radius.numpy() * 255.0
    fig = go.Figure(go.Scattergl(
        x=dx, y=dy, mode="markers", name="points",
        marker=dict(size=5, color=radius, colorscale=RADIUS_COLOURS, colorbar=dict(title="r x255", thickness=12),
                    opacity=0.8),
        customdata=radius, hovertemplate="input %{x:.4g}<br>layer %{y:.4g}<br>r = %{customdata:.3g}/255"
                                         "<extra></extra>"))
    xs = np.linspace(0.0, float(dx.max()) if dx.size else 1.0, 50)
    if lip.linear is not None:
        fig.add_trace(go.Scatter(x=xs, y=np.polyval(lip.linear, xs), mode="lines", name="linear fit",
                                 line=dict(color="#000000", width=2)))
    if lip.quadratic is not None:
        fig.add_trace(go.Scatter(x=xs, y=np.polyval(lip.quadratic, xs), mode="lines", name="quadratic fit",
                                 line=dict(color="#1f4fd1", width=2, dash="dash")))
    top = float(max(dy.max(), 0.0)) if dy.size else 1.0
    fig.add_trace(go.Scatter(x=[0.0, min(float(xs[-1]), top) if top > 0 else float(xs[-1])],
                             y=[0.0, min(float(xs[-1]), top) if top > 0 else float(xs[-1])], mode="lines",
                             name="ratio 1", line=dict(color="#e4572e", width=1, dash="dot")))
    fig.update_layout(**LAYOUT, title=title, showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_xaxes(title="||h(x+v) - h(x)||  (input)")
    fig.update_yaxes(title="||g(phi(x+v)) - g(phi(x))||  (layer)")
    return fig


def compare_range_figure(results: Sequence[geometry.ImageGeometry], kind: str, title: str) -> go.Figure:
    """Range against radius for several models on the same points, one line each (squares: misclassified)."""
    fig = go.Figure()
    for res, colour in zip(results, PAIR_COLOURS, strict=False):
        probe = getattr(res.report, kind)
        fig.add_trace(go.Scatter(
            x=_x(probe.radii), y=_positive(probe.range), mode="lines+markers", name=res.model,
            line=dict(color=colour), marker=dict(size=9, symbol=["square" if w else "circle"
                                                                  for w in probe.any_misclassified]),
            hovertemplate=f"{res.model}<br>r = %{{x:.3g}}/255<br>range %{{y:.3e}}<extra></extra>"))
    fig.update_layout(**LAYOUT, title=title, showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_xaxes(title=RADIUS_AXIS)
    fig.update_yaxes(title="range(r)", type="log", exponentformat="power")
    return fig


def compare_mantel_figure(results: Sequence[geometry.ImageGeometry]) -> go.Figure:
    fig = go.Figure()
    for res, colour in zip(results, PAIR_COLOURS, strict=False):
        topo = res.report.topology
        fig.add_trace(go.Scatter(x=_x(topo.radii), y=[t.r if math.isfinite(t.r) else None for t in topo.tests],
                                 mode="lines+markers", name=res.model, line=dict(color=colour)))
    fig.add_hline(y=0.0, line=dict(color="#999999", width=1, dash="dot"))
    fig.update_layout(**LAYOUT, title="Mantel r, both models", showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_xaxes(title=RADIUS_AXIS)
    fig.update_yaxes(title="Mantel r", range=[-1.05, 1.05])
    return fig


# --------------------------------------------------------------------------- sentences


def geo_mean(values: Sequence[float]) -> float:
    """Geometric mean of the positive values (nan when there are none)."""
    v = [x for x in values if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else math.nan


def isotropy_sentence(res: geometry.ImageGeometry) -> str:
    """What Figure 1 measured, in numbers."""
    probe = res.report.isotropy
    rng = probe.range
    wrong = [r for r, w in zip(probe.radii, probe.any_misclassified, strict=True) if w]
    first = (f"at least one point was misclassified from r = {wrong[0] * 255:.3g}/255 on (square markers)"
             if wrong else "no point was misclassified at any radius")
    zeros = sum(1 for v in rng if v <= 0)
    zero_note = f" {zeros} radius(es) had a range of exactly 0 and are left off the log axis." if zeros else ""
    return (f"The score of {res.class_name} varies by {rng[0]:.2e} among {res.report.T} points at "
            f"r = {probe.radii[0] * 255:.3g}/255 and by {rng[-1]:.2e} at r = {probe.radii[-1] * 255:.3g}/255; {first}. "
            f"A locally isotropic model would give a range of 0 at every radius.{zero_note}")


def compare_sentence(a: geometry.ImageGeometry, b: geometry.ImageGeometry) -> str:
    """One plain paragraph: what the comparison measured and what changed from model ``a`` to model ``b``."""
    ra, rb = geo_mean(a.report.isotropy.range), geo_mean(b.report.isotropy.range)
    sa, sb = geo_mean(a.report.symmetry.range), geo_mean(b.report.symmetry.range)
    ma = float(np.nanmean([t.r for t in a.report.topology.tests]))
    mb = float(np.nanmean([t.r for t in b.report.topology.tests]))
    la, lb = a.report.lipschitz.share_below_1, b.report.lipschitz.share_below_1
    qa = float(np.nanmedian(a.report.lipschitz.ratio.numpy()))
    qb = float(np.nanmedian(b.report.lipschitz.ratio.numpy()))

    def factor(x: float, y: float) -> str:
        if not (math.isfinite(x) and math.isfinite(y)) or x <= 0 or y <= 0:
            return "cannot be compared"
        return f"is {x / y:.2g} times smaller" if y < x else f"is {y / x:.2g} times larger"

    classes = (f"both read the clean image as {a.class_name}" if a.class_name == b.class_name else
               f"{a.model} reads the clean image as {a.class_name} and {b.model} as {b.class_name}, so each score is "
               f"that of its own class")
    return (f"Both models scored exactly the same {a.report.T} random points at each of the "
            f"{len(a.report.radii)} radii around this image (seed {a.report.seed}; {classes}). Averaged over the radii "
            f"(geometric mean), {b.model}'s isotropy range {factor(ra, rb)} than {a.model}'s "
            f"({rb:.2e} against {ra:.2e}) and its symmetry range {factor(sa, sb)} ({sb:.2e} against {sa:.2e}): "
            f"a smaller range means a score that depends less on the direction of the noise. The mean Mantel r "
            f"is {mb:.3f} against {ma:.3f} (1 would mean the layer keeps the points' arrangement), and "
            f"{lb:.0%} against {la:.0%} of the points move closer to the clean image at the layer than in the "
            f"input (median ratio {qb:.3g} against {qa:.3g}).")


def robust_partners(model: str) -> tuple[str, list[str]] | None:
    """The naive model and the robust ones (by role) that can be compared for ``model``'s dataset, or None."""
    dataset = models.get_spec(model).dataset
    naive = models.with_role(dataset, "naive")
    robust = [n for n in (models.with_role(dataset, r) for r in ROBUST_ROLES) if n is not None]
    if naive is None or not robust:
        return None
    return naive, robust


def check_radii_for(norm: str, radii: Sequence[float]) -> None:
    """An L-inf radius above 1 moves every pixel by more than the whole pixel range: refused."""
    if norm == "linf" and max(radii) > 1.0:
        raise AdvlabError(f"An L-inf radius above 1 moves every pixel by more than the pixel range; got "
                          f"{max(radii):g}.")


# --------------------------------------------------------------------------- many images (the paper's protocol)

SURVEY_IMAGES = 300  # the paper's 300 images per network
SURVEY_MAX_IMAGES = geometry.MAX_SURVEY_IMAGES


@dataclass(frozen=True)
class SurveyRequest:
    """The unfiltered survey the page computes (the filter is applied to it, :meth:`geometry.Survey.filtered`)."""

    models: tuple[str, ...]
    images: int
    T: int
    radii: tuple[float, ...]
    radii_text: str
    norm: str
    seed: int
    score: str
    device: str

    def cli_command(self, min_confidence: float | None) -> str:
        """The ``geometry-survey`` line that gives the same numbers (``min_confidence`` None: no filter)."""
        conf = "0" if min_confidence is None else f"{min_confidence:g}"
        parts = ["python -m advcore geometry-survey", f"--models {','.join(self.models)}", f"--images {self.images}",
                 f"--min-confidence {conf}", f"--T {self.T}", f"--radii {shlex.quote(self.radii_text)}",
                 f"--norm {self.norm}", f"--score {self.score}", f"--seed {self.seed}"]
        if self.device == "cpu":
            parts.append("--device cpu")
        parts.append(f"--json geometry-survey{'' if min_confidence is None else '-filtered'}.json")
        return " ".join(parts)


def run_survey(req: SurveyRequest, progress: ProgressFn | None = None) -> geometry.Survey:
    """advcore's :func:`geometry.survey` without the filter (every image, each model's predicted class)."""
    return geometry.survey(list(req.models), req.images, radii=req.radii, T=req.T, norm=req.norm, seed=req.seed,
                           score=req.score, min_confidence=None, device=req.device, progress=progress)


def survey_job(req: SurveyRequest) -> workers.Job:
    """:func:`run_survey` as a job for a worker process, its progress sent as plain data; run in-process
    (``local``) when a model is the session's own."""
    return workers.progress_job(run_survey, (req,), models=req.models)


def saved_survey(req: SurveyRequest) -> tuple[geometry.Survey, str] | None:
    """The shipped survey that answers ``req`` (:func:`geometry.saved_survey`), or None."""
    return geometry.saved_survey(req.models, req.images, radii=req.radii, T=req.T, norm=req.norm, seed=req.seed,
                                 score=req.score)


@dataclass(frozen=True)
class SurveyReading:
    """One reading of a survey for a (naive, robust) pair: per-image median ranges summarised."""

    label: str  # "filtered" or "unfiltered"
    kept: int
    images: int
    naive: float  # median over the kept images of each image's median range over the radii
    robust: float
    share_robust_smaller: float  # share of kept images where the robust model's range is the smaller

    @property
    def ratio(self) -> float:
        """robust / naive (nan when it cannot be formed)."""
        if not (math.isfinite(self.naive) and math.isfinite(self.robust)) or self.naive <= 0:
            return math.nan
        return self.robust / self.naive


def survey_reading(s: geometry.Survey, naive: str, robust: str, label: str) -> SurveyReading:
    """:class:`SurveyReading` of ``s`` (the numbers the CLI's JSON holds as ``median_image_range`` and
    ``share_smaller_than``)."""
    return SurveyReading(label=label, kept=len(s.kept), images=len(s.indices), naive=s.median_image_range(naive),
                         robust=s.median_image_range(robust),
                         share_robust_smaller=s.share_below(robust, naive))


def survey_rows(readings: Sequence[SurveyReading], naive: str, robust: str, unit: str) -> list[dict]:
    """The table of the readings."""
    return [{"reading": r.label, "images kept": f"{r.kept} of {r.images}",
             f"{naive} median range ({unit})": f"{r.naive:.3e}" if math.isfinite(r.naive) else "-",
             f"{robust} median range ({unit})": f"{r.robust:.3e}" if math.isfinite(r.robust) else "-",
             f"{robust} / {naive}": f"{r.ratio:.3g}" if math.isfinite(r.ratio) else "-",
             f"images where {robust} < {naive}": (f"{r.share_robust_smaller:.0%}"
                                                  if math.isfinite(r.share_robust_smaller) else "-")}
            for r in readings]


def _times(r: SurveyReading) -> str:
    q = r.ratio
    if not math.isfinite(q):
        return "cannot be compared"
    return f"{q:.3g} times" if q >= 1 else f"{1 / q:.3g} times smaller than"


def survey_sentence(filt: SurveyReading | None, unf: SurveyReading, naive: str, robust: str,
                    threshold: float | None, score_title: str) -> str:
    """The survey's finding, from the two readings: which model has the smaller isotropy range with the paper's
    filter and without it, and whether the filter reverses that (``filt`` None: no filter asked for)."""
    if filt is None:
        return (f"Without a filter (all {unf.images} images, each model's own predicted class), {robust}'s median "
                f"isotropy range of the {score_title} is {_times(unf)} {naive}'s ({unf.robust:.2e} against "
                f"{unf.naive:.2e}), smaller on {unf.share_robust_smaller:.0%} of the images. Set a confidence "
                f"filter (the paper: 0.99) to compare with the paper's protocol.")
    head = (f"With the paper's filter ({naive} and {robust} both right with softmax probability above "
            f"{threshold:g}: {filt.kept} of {filt.images} test images), ")
    if filt.kept == 0:
        body = "no image passes, so the filtered reading is empty. "
    else:
        body = (f"{robust}'s median isotropy range of the {score_title} is {_times(filt)} {naive}'s "
                f"({filt.robust:.2e} against {filt.naive:.2e}), and smaller on {filt.share_robust_smaller:.0%} of "
                f"those images. ")
    tail = (f"Without the filter (all {unf.images} images, each model's own predicted class) it is "
            f"{_times(unf)} {naive}'s ({unf.robust:.2e} against {unf.naive:.2e}), smaller on "
            f"{unf.share_robust_smaller:.0%} of the images.")
    if filt.kept and math.isfinite(filt.ratio) and math.isfinite(unf.ratio) and filt.ratio != 1 and unf.ratio != 1:
        if (filt.ratio < 1) != (unf.ratio < 1):
            tail += (f" The filter reverses the reading: on the confidently classified images the "
                     f"{'robust' if filt.ratio < 1 else 'naive'} model is the more isotropic one, on all images the "
                     f"{'robust' if unf.ratio < 1 else 'naive'} model.")
        else:
            tail += (f" Both readings agree: the {'robust' if filt.ratio < 1 else 'naive'} model has the smaller "
                     f"median range.")
    split = [r.label.split(" (")[0] for r in (filt, unf) if r.kept and math.isfinite(r.ratio) and r.ratio != 1
             and r.share_robust_smaller != 0.5 and (r.ratio < 1) != (r.share_robust_smaller > 0.5)]
    if split:
        tail += (f" In the {' and the '.join(split)} reading the median and the share of images point opposite "
                 f"ways.")
    return head + body + tail


def survey_figure(filt: geometry.Survey, unf: geometry.Survey, title: str) -> go.Figure:
    """Median range(r) over the kept images per radius, each model, with the filter (solid; left out when ``filt``
    is ``unf``) and without (dashed)."""
    fig = go.Figure()
    score = geometry.SCORES[filt.score]
    for m, colour in zip(filt.models, PAIR_COLOURS, strict=False):
        lines = ([(filt, "solid", f"filtered ({len(filt.kept)} images)")] if filt is not unf else []) + [
            (unf, "dash", f"unfiltered ({len(unf.kept)} images)")]
        for s, dash, what in lines:
            fig.add_trace(go.Scatter(x=_x(s.radii), y=_positive(s.median_range(m)), mode="lines+markers",
                                     name=f"{m}, {what}", line=dict(color=colour, dash=dash),
                                     hovertemplate=f"{m}, {what}<br>r = %{{x:.3g}}/255<br>median range %{{y:.3e}}"
                                                   "<extra></extra>"))
    fig.update_layout(**LAYOUT, title=title, showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_xaxes(title=RADIUS_AXIS)
    fig.update_yaxes(title=f"median range(r) of the {score.title} ({score.unit})", type="log",
                     exponentformat="power")
    return fig
