"""Charts (plotly; Vega-Lite for the Attack lab) and image views for the labs: light to build, one function
per view.

Tensors come from advcore results (``(1, C, H, W)`` pixels in ``[0, 1]``); these helpers only move
them to numpy for display. Colours follow one rule: the class a person should watch is orange.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas  # noqa: F401 - plotly imports it lazily at a figure's first to_dict: 4 sessions' first charts at once
import plotly.colors  # raced on that import ("partially initialized module 'pandas'", classroom bench, 4 sessions)
import plotly.graph_objects as go
from PIL import Image

from ui.shared import SharedResults

WATCH = "#e4572e"  # the clean class (untargeted) or the target class
OTHER = "#4c78a8"
LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=280, showlegend=False)
_PLACEHOLDER = re.compile(r"^#0000([0-3]\d|40)$", re.IGNORECASE)


def streamlit_safe(colours: Sequence[str]) -> list[str]:
    """``colours`` with Streamlit's theme placeholders (#000001 to #000040) replaced by black.

    Streamlit's browser side swaps those colours for theme colours in every plotly figure, even with
    ``theme=None``: Inferno starts at #000004, which came out violet.
    """
    return ["#000000" if _PLACEHOLDER.match(c) else c for c in colours]


HEAT_COLOURS = streamlit_safe(plotly.colors.sequential.Inferno)

ENCODED_KEPT = 256  # encoded images kept for every session (a 224x224 PNG or JPEG: 20-150 kB)
_ENCODED = SharedResults(ENCODED_KEPT)  # thread-safe; bytes are immutable


def encoded(image: np.ndarray | Image.Image | bytes, output_format: str = "auto") -> tuple[bytes, str]:
    """``image`` (a uint8 array, a PIL image, or PNG/JPEG bytes) encoded as ``st.image`` would encode it, and
    the format to pass it on with (``st.image(data, output_format=fmt)``): the very bytes, computed once per
    content and format for every session, so a rerun that redraws the same image (a cached result) encodes
    nothing. "auto" is Streamlit's rule: PNG for an image that may have alpha, else JPEG (bytes in another
    format are re-encoded at quality 90, as Streamlit does; arrays and PIL images at quality 100)."""
    if isinstance(image, bytes):
        key: tuple = ("bytes", hashlib.blake2b(image, digest_size=16).hexdigest(), output_format)
    else:
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray) else image
        key = (image.mode, image.size, hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest(), output_format)

    def make() -> tuple[bytes, str]:
        im = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
        fmt = output_format.upper().replace("JPG", "JPEG")
        if fmt not in ("JPEG", "PNG"):
            alpha = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info)
            fmt = "PNG" if alpha else "JPEG"
        if isinstance(image, bytes) and im.format == fmt:
            return image, fmt
        if fmt == "JPEG" and im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, format=fmt, quality=90 if isinstance(image, bytes) else 100)
        return buf.getvalue(), fmt

    return _ENCODED.compute(key, make)


def to_numpy_image(x) -> np.ndarray:
    """A ``(1, C, H, W)`` or ``(C, H, W)`` tensor in ``[0, 1]`` -> ``(H, W, C)`` float array."""
    if x.dim() == 4:
        x = x[0]
    return x.detach().float().cpu().permute(1, 2, 0).numpy()


def amplified_perturbation(delta: np.ndarray, factor: float | None) -> tuple[np.ndarray, float]:
    """``delta * factor + 0.5`` clipped to ``[0, 1]`` as 8-bit RGB; ``factor=None`` fills the range.

    Returns the image and the factor used (auto: the largest change maps to black or white).
    """
    if factor is None:
        peak = float(np.abs(delta).max()) if delta.size else 0.0
        factor = 0.5 / peak if peak > 0 else 1.0
    img = np.clip(delta * factor + 0.5, 0.0, 1.0)
    return (img * 255.0 + 0.5).astype(np.uint8), factor


def heatmap_top(delta: np.ndarray, cap: float | None = None) -> float:
    """Top of the heat map's colour range in x/255: ``max(cap, largest change)``; ``cap=None``: the largest change.

    An explicit top keeps float noise (4 +- 1e-6 under an L-inf budget of 4/255) from showing as structure.
    """
    peak = float(np.abs(delta).max()) * 255.0 if delta.size else 0.0
    top = peak if cap is None else max(float(cap), peak)
    return top if top > 0 else 1.0  # an unchanged image: a 0-1 bar, all black


def share_at(delta: np.ndarray, level: float) -> float:
    """Fraction of pixels whose largest change over the channels is at least ``level`` x/255 (less 0.01)."""
    if not delta.size:
        return 0.0
    return float((np.abs(delta).max(axis=2) * 255.0 >= level - 0.01).mean())


# Vega-Lite for the Attack lab's charts, redrawn on every slider move: a browser draws one for about a third of what
# the same chart costs in plotly.js (measured: 4 charts 0.06 s of main-thread work against 0.20 s).
_VL = {"config": {"view": {"stroke": None}}}
_VL_HEIGHT = 240
COLOUR_BAR_PX = 70  # the colour bar's element height: its 16 px strip and the axis below it


@dataclass(frozen=True)
class HeatMap:
    """The perturbation heat map as a picture (drawing 50,176 cells as chart marks costs a browser far more than an
    image) and its colour bar as a Vega-Lite spec with the scale in x/255."""

    image: np.ndarray  # (H, W, 3) uint8: per-pixel max |change| over channels, coloured 0 (black) to ``top``
    colour_bar: dict
    top: float  # x/255 at the bright end of the scale
    title: str


def heat_colours(z: np.ndarray, top: float) -> np.ndarray:
    """``z`` (x/255) coloured with :data:`HEAT_COLOURS` from 0 to ``top`` (values above ``top`` get its colour), as
    uint8 RGB: the colour bar's scale, interpolated linearly between its stops as Vega-Lite does."""
    stops = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in HEAT_COLOURS], dtype=np.float64)
    t = np.clip(z / top, 0.0, 1.0) * (len(stops) - 1)
    pos = np.arange(len(stops))
    rgb = np.stack([np.interp(t, pos, stops[:, k]) for k in range(3)], axis=-1)
    return (rgb + 0.5).astype(np.uint8)


def perturbation_heatmap(delta: np.ndarray, cap: float | None = None) -> HeatMap:
    """Heat map of the per-pixel max ``|delta|`` over channels, in x/255 units.

    The colours run from 0 to :func:`heatmap_top` (``cap``: the L-inf budget in x/255; None under L2,
    which caps no single pixel).
    """
    z = np.abs(delta).max(axis=2) * 255.0
    top = heatmap_top(delta, cap)
    bins = 64
    edges = [top * i / bins for i in range(bins + 1)]
    # each cell reaches a little into the next: no anti-aliased seams between them
    cells = [{"lo": a, "hi": min(top, b + top / 400), "mid": (a + b) / 2}
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    bar = {**_VL, "height": 16, "data": {"values": cells}, "mark": {"type": "rect"},
           "encoding": {"x": {"field": "lo", "type": "quantitative", "scale": {"domain": [0, top], "nice": False},
                              "title": "|change| (x/255)"},
                        "x2": {"field": "hi"}, "y": {"value": 0}, "y2": {"value": 16},
                        "color": {"field": "mid", "type": "quantitative", "legend": None,
                                  "scale": {"domain": [0, top], "range": HEAT_COLOURS}}}}
    title = "Per-pixel max |change| over R, G, B" if delta.shape[-1] == 3 else "Per-pixel |change|"
    return HeatMap(image=heat_colours(z, top), colour_bar=bar, top=top, title=title)


def topk_bars(names: Sequence[str], probs: Sequence[float], title: str, watch: int | str | None = None) -> dict:
    """Horizontal bars of the top-k probabilities (percent), the first class on top (a Vega-Lite spec)."""
    rows = [{"class": str(n), "p": 100.0 * float(p), "label": f"{100.0 * float(p):.1f}%",
             "colour": WATCH if n == watch else OTHER, "inside": 100.0 * float(p) >= 80.0}
            for n, p in zip(names, probs, strict=True)]
    y = {"field": "class", "type": "nominal", "sort": None, "title": None}
    x = {"field": "p", "type": "quantitative", "scale": {"domain": [0, 100]}, "title": "probability (%)"}
    text = {"type": "text", "baseline": "middle"}
    return {**_VL, "title": title, "height": _VL_HEIGHT, "data": {"values": rows},
            "encoding": {"y": y, "x": x},
            "layer": [
                {"mark": {"type": "bar"}, "encoding": {
                    "color": {"field": "colour", "type": "nominal", "scale": None},
                    "tooltip": [{"field": "class", "title": "class"},
                                {"field": "p", "title": "probability (%)", "format": ".2f"}]}},
                {"transform": [{"filter": "!datum.inside"}], "mark": {**text, "align": "left", "dx": 3},
                 "encoding": {"text": {"field": "label"}}},
                {"transform": [{"filter": "datum.inside"}], "mark": {**text, "align": "right", "dx": -3,
                                                                     "color": "white"},
                 "encoding": {"text": {"field": "label"}}}]}


def _finite(values: Sequence[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def _per_iteration(values: Sequence[float | None], field: str, colour: str, title: str, y: dict) -> dict:
    """A line with a point per iteration (x = iteration, whole numbers only: FGSM's two points must not get ticks at
    0.2, 0.4, ...)."""
    last = max(1, len(values) - 1)
    dtick = next((d for d in (1, 2, 5, 10, 20, 25, 50, 100) if last / d <= 10), math.ceil(last / 10))
    x = {"field": "iteration", "type": "quantitative", "title": "iteration",
         "scale": {"domain": [-0.3, last + 0.3], "nice": False},
         "axis": {"values": list(range(0, last + 1, dtick)), "format": "d"}}
    return {**_VL, "title": title, "height": _VL_HEIGHT,
            "data": {"values": [{"iteration": i, field: v} for i, v in enumerate(values)]},
            "encoding": {"x": x},
            "layer": [{"mark": {"type": "line", "point": True, "color": colour},
                       "encoding": {"y": {"field": field, "type": "quantitative", **y},
                                    "tooltip": [{"field": "iteration"},
                                                {"field": field, "format": ".3f" if field == "loss" else ".2f"}]}}]}


def history_figures(loss: Sequence[float], prob: Sequence[float], class_name: str,
                    targeted: bool) -> tuple[dict, dict]:
    """Loss and class probability per iteration (x = iteration, 0 = the starting point), as Vega-Lite specs.

    ``class_name``: the target class, or (untargeted) the model's clean prediction, which the attack moves away
    from; it is not the dataset label, which the model may already get wrong.
    """
    what = "target class" if targeted else "clean prediction"
    loss_fig = _per_iteration(_finite(loss), "loss", OTHER, f"Cross-entropy to the {what}", {"title": "loss"})
    prob_fig = _per_iteration([None if v is None else 100.0 * v for v in _finite(prob)], "probability (%)", WATCH,
                              f"Probability of the {what} ({class_name})",
                              {"title": "%", "scale": {"domain": [0, 100]}})
    return loss_fig, prob_fig


def history_rows(loss: Sequence[float], prob: Sequence[float], class_name: str) -> list[dict]:
    """The two per-iteration charts' numbers as table rows (what the CSV download holds): the loss and the
    probability (0-1) of the watched class ``class_name``."""
    return [{"iteration": i, "loss": l_, f"probability of {class_name}": p}
            for i, (l_, p) in enumerate(zip(loss, prob, strict=True))]


# --------------------------------------------------------------------------- small images

# Small model inputs (advcore.models.is_small_input: Fashion-MNIST 28x28) are shown enlarged to at least this many
# pixels, so that a browser scaling them to a column stays sharp.
DISPLAY_SIZE = 448


def enlarge(im, size: int = DISPLAY_SIZE):
    """A PIL image scaled up by a whole factor with nearest-neighbour (sharp pixels) to at least ``size``
    px; images already that large come back unchanged."""
    from PIL import Image

    w, h = im.size
    factor = math.ceil(size / max(w, h))
    if factor <= 1:
        return im
    return im.resize((w * factor, h * factor), Image.Resampling.NEAREST)


def enlarge_array(img: np.ndarray, size: int = DISPLAY_SIZE):
    """An ``(H, W, C)`` uint8 array (C = 1 or 3) as an enlarged PIL image (see :func:`enlarge`)."""
    from PIL import Image

    arr = img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img
    return enlarge(Image.fromarray(arr), size)


# --------------------------------------------------------------------------- training lab

# One colour per recipe, the same in every chart; your own runs are black, dashed.
RECIPE_COLOURS = {
    "standard": "#7f7f7f",
    "fgsm": "#f58518",
    "pgd": "#b279a2",
    "mat-mixed": "#54a24b",
    "mat-parallel": "#4c78a8",
}
# One colour per model role (advcore.models.zoo.role_of): the halftone and hybrid models share the standard recipe
# but are different models, so they get colours of their own.
ROLE_COLOURS = {
    "naive": RECIPE_COLOURS["standard"],
    "fgsm": RECIPE_COLOURS["fgsm"],
    "pgd": RECIPE_COLOURS["pgd"],
    "mat-mixed": RECIPE_COLOURS["mat-mixed"],
    "mat-parallel": RECIPE_COLOURS["mat-parallel"],
    "halftone": "#e45756",
    "hybrid": "#72b7b2",
}
RUN_COLOURS = ["#111111", "#8c564b", "#17becf"]
FIG4_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=420, showlegend=True,
                   legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0))


def accuracy_vs_strength(series: Sequence[dict], title: str) -> go.Figure:
    """The paper's Figure 4: accuracy (%) against the attack strength, one line per model.

    ``series``: dicts with ``name``, ``eps``, ``accuracy`` (fractions), ``recipe``, optionally ``role`` (its
    colour, else the recipe's) and ``run`` (an index: a run started on the page, drawn dashed).
    """
    fig = go.Figure()
    for s in series:
        run = s.get("run")
        if run is not None:
            colour = RUN_COLOURS[run % len(RUN_COLOURS)]
        else:
            colour = ROLE_COLOURS.get(s.get("role"), RECIPE_COLOURS.get(s.get("recipe"), OTHER))
        fig.add_trace(go.Scatter(
            x=list(s["eps"]), y=[100.0 * a for a in s["accuracy"]], name=s["name"], mode="lines+markers",
            line=dict(color=colour, dash="dash" if run is not None else "solid", width=2),
            marker=dict(size=6), hovertemplate="eps %{x:.3g}: %{y:.1f}%<extra>" + s["name"] + "</extra>"))
    fig.update_layout(**FIG4_LAYOUT, title=title)
    fig.update_xaxes(title="attack strength eps (L-inf, pixel units)", rangemode="tozero")
    fig.update_yaxes(title="test accuracy (%)", range=[0, 100])
    return fig


def walk_path(path: Sequence[float], grid: Sequence[float], chosen: Sequence[float]) -> go.Figure:
    """The random walk that reached the chosen strengths: strength visited at each step, chosen ones marked."""
    steps = list(range(len(path)))
    fig = go.Figure()
    for g in grid:
        if any(abs(g - c) < 1e-9 for c in chosen):
            fig.add_hrect(y0=g - 0.01, y1=g + 0.01, fillcolor=WATCH, opacity=0.18, line_width=0)
    colours = [WATCH if any(abs(p - c) < 1e-9 for c in chosen) else OTHER for p in path]
    fig.add_trace(go.Scatter(x=steps, y=list(path), mode="lines+markers+text", line=dict(color=OTHER),
                             marker=dict(size=11, color=colours), text=[f"{p:g}" for p in path],
                             textposition="top center", hovertemplate="step %{x}: eps %{y:g}<extra></extra>"))
    fig.update_layout(**{**LAYOUT, "height": 320}, title="The random walk's path over the strength grid")
    last = max(1, len(steps) - 1)
    fig.update_xaxes(title="step of the walk", tickmode="linear", tick0=0, dtick=1, range=[-0.4, last + 0.4])
    span = (max(grid) - min(grid)) or 0.1
    fig.update_yaxes(title="training strength eps", tickmode="array", tickvals=list(grid),
                     ticktext=[f"{g:g}" for g in grid], range=[min(grid) - 0.15 * span, max(grid) + 0.15 * span])
    return fig


def accuracy_matrix_heatmap(A: Sequence[Sequence[float]], grid: Sequence[float], attack_eps: Sequence[float],
                            chosen: Sequence[float]) -> go.Figure:
    """The random walk's accuracy matrix A: rows = training strength, columns = attack strength, in %."""
    z = np.asarray(A, dtype=float) * 100.0
    rows = [f"{g:g} (chosen)" if any(abs(g - c) < 1e-9 for c in chosen) else f"{g:g}" for g in grid]
    cols = [f"{e:g}" for e in attack_eps]
    fig = go.Figure(go.Heatmap(z=z.tolist(), x=cols, y=rows, colorscale="Viridis", zmin=0, zmax=100,
                               texttemplate="%{z:.0f}", textfont=dict(size=10),
                               colorbar=dict(title="%", thickness=12),
                               hovertemplate="trained at %{y}, attacked at %{x}: %{z:.1f}%<extra></extra>"))
    fig.update_layout(**{**LAYOUT, "height": 320}, title="Accuracy matrix A (validation accuracy, %)")
    fig.update_xaxes(title="attack strength (FGSM)", type="category")
    fig.update_yaxes(title="trained at", type="category")
    return fig


def voting_weights(strengths: Sequence[float], weights: Sequence[float]) -> go.Figure:
    """Parallel MAT's voting weights a_k, one bar per sub-network (labelled by its strength)."""
    labels = [f"eps {s:g}" for s in strengths]
    fig = go.Figure(go.Bar(x=labels, y=list(weights), marker_color=RECIPE_COLOURS["mat-parallel"],
                           text=[f"{w:.3f}" for w in weights], textposition="auto",
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    fig.update_layout(**{**LAYOUT, "height": 320}, title="Parallel MAT's voting weights (sum 1)")
    fig.update_xaxes(title="sub-network trained at", type="category")
    fig.update_yaxes(title="weight a_k", range=[0, max(1.0, max(weights, default=0.0))])
    return fig


def loss_curves(curves: dict[str, Sequence[float]], title: str) -> go.Figure:
    """Training loss per step, one line per training stage (a sub-network of parallel MAT has its own)."""
    fig = go.Figure()
    palette = [OTHER, WATCH, "#54a24b", "#b279a2", "#9d755d", "#72b7b2"]
    for i, (stage, values) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=_finite(list(values)), name=stage,
                                 mode="lines", line=dict(color=palette[i % len(palette)]),
                                 hovertemplate="step %{x}: %{y:.3f}<extra>" + stage + "</extra>"))
    fig.update_layout(**{**LAYOUT, "height": 300, "showlegend": len(curves) > 1}, title=title)
    fig.update_xaxes(title="training step (batch)")
    fig.update_yaxes(title="mean loss so far this epoch", rangemode="tozero")
    return fig


# --------------------------------------------------------------------------- the Attack lab's teaching views


def mark_step(spec: dict, step: int, label: str | None = None) -> dict:
    """A copy of a per-iteration chart (:func:`history_figures`) with iteration ``step`` marked by a vertical line."""
    mark = {"datum": step, "type": "quantitative"}
    left = step > spec["encoding"]["x"]["scale"]["domain"][1] / 2  # the label on the side with room for it
    text = {"type": "text", "color": WATCH, "align": "right" if left else "left", "dx": -4 if left else 4,
            "baseline": "top", "y": 0}
    one = [{"filter": "datum.iteration === 0"}]  # one row: on all of the chart's rows they would be drawn per row
    return {**spec, "layer": [*spec["layer"],
                              {"transform": one, "mark": {"type": "rule", "color": WATCH, "strokeDash": [4, 3],
                                                          "size": 2},
                               "encoding": {"x": mark}},
                              {"transform": one, "mark": text,
                               "encoding": {"x": mark, "text": {"value": label or f"step {step}"}}}]}


def delta_overlay(x: np.ndarray, delta: np.ndarray, opacity: float) -> tuple[np.ndarray, np.ndarray]:
    """|delta| (largest over channels) as a heat colour laid over the photo in grey, each pixel's colour weighted
    by ``opacity`` x |delta| / max |delta|; returns (RGB uint8 image, that map in [0, 1]). ``opacity`` 0 shows the
    photo alone; at 1 the pixels that change most are pure heat colour."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    grey = x.mean(axis=2, keepdims=True) if x.ndim == 3 else x[..., None]
    mag = np.abs(delta).max(axis=2) if delta.ndim == 3 else np.abs(delta)
    top = float(mag.max())
    m = mag / top if top > 0 else np.zeros_like(mag)
    # red -> yellow -> white as |delta| grows, laid over the grey photo in proportion to |delta| and the opacity
    heat = np.stack([np.ones_like(m), np.clip(2 * m - 0.5, 0, 1), np.clip(2 * m - 1, 0, 1)], axis=2)
    a = (opacity * m)[..., None]
    out = (1 - a) * np.repeat(grey, 3, axis=2) + a * heat
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8), m


def mass_share(delta: np.ndarray, fraction: float) -> float:
    """Share of the perturbation's L1 mass held by the ``fraction`` of pixels that change most (pixel = largest
    |delta| over channels)."""
    mag = (np.abs(delta).max(axis=2) if delta.ndim == 3 else np.abs(delta)).ravel()
    total = float(mag.sum())
    if total == 0:
        return 0.0
    k = max(1, int(round(fraction * mag.size)))
    return float(np.sort(mag)[::-1][:k].sum() / total)
