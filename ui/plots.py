"""Plotly figures and image views for the labs: light to build, one function per view.

Tensors come from advcore results (``(1, C, H, W)`` pixels in ``[0, 1]``); these helpers only move
them to numpy for display. Colours follow one rule: the class a person should watch is orange.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go

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


def perturbation_heatmap(delta: np.ndarray, cap: float | None = None) -> go.Figure:
    """Heat map of the per-pixel max ``|delta|`` over channels, in x/255 units.

    The colours run from 0 to :func:`heatmap_top` (``cap``: the L-inf budget in x/255; None under L2,
    which caps no single pixel).
    """
    z = np.abs(delta).max(axis=2) * 255.0
    top = heatmap_top(delta, cap)
    fig = go.Figure(go.Heatmap(z=z.astype(np.float32), colorscale=HEAT_COLOURS, zmin=0.0, zmax=top, zauto=False,
                               colorbar=dict(title="x/255", thickness=12),
                               hovertemplate="x %{x}, y %{y}: %{z:.2f}/255<extra></extra>"))
    title = "Per-pixel max |change| over R, G, B" if delta.shape[-1] == 3 else "Per-pixel |change|"
    fig.update_layout(**{**LAYOUT, "height": 360}, title=title)
    bare = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False, showline=False)
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", **bare)
    fig.update_xaxes(constrain="domain", **bare)
    return fig


def topk_bars(names: Sequence[str], probs: Sequence[float], title: str, watch: int | str | None = None) -> go.Figure:
    """Horizontal bars of the top-k probabilities (percent), the first class on top."""
    pct = [100.0 * p for p in probs]
    colours = [WATCH if n == watch else OTHER for n in names]
    fig = go.Figure(go.Bar(x=pct[::-1], y=list(names)[::-1], orientation="h", marker_color=colours[::-1],
                           text=[f"{p:.1f}%" for p in pct[::-1]], textposition="auto",
                           hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    fig.update_layout(**LAYOUT, title=title)
    fig.update_xaxes(range=[0, 100], title="probability (%)")
    return fig


def _finite(values: Sequence[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def history_figures(loss: Sequence[float], prob: Sequence[float], class_name: str,
                    targeted: bool) -> tuple[go.Figure, go.Figure]:
    """Loss and class probability per iteration (x = iteration, 0 = the starting point)."""
    steps = list(range(len(loss)))
    what = "target" if targeted else "true"
    # Whole iterations only: FGSM's two points must not get ticks at 0.2, 0.4, ...
    last = max(1, len(steps) - 1)
    dtick = next((d for d in (1, 2, 5, 10, 20, 25, 50, 100) if last / d <= 10), math.ceil(last / 10))
    xaxis = dict(title="iteration", tickmode="linear", tick0=0, dtick=dtick,
                 tickformat="d", range=[-0.3, last + 0.3])
    loss_fig = go.Figure(go.Scatter(x=steps, y=_finite(loss), mode="lines+markers", line_color=OTHER,
                                    hovertemplate="iteration %{x}: %{y:.3f}<extra></extra>"))
    loss_fig.update_layout(**LAYOUT, title=f"Cross-entropy to the {what} class")
    loss_fig.update_xaxes(**xaxis)
    loss_fig.update_yaxes(title="loss")
    prob_fig = go.Figure(go.Scatter(x=steps, y=[None if v is None else 100.0 * v for v in _finite(prob)],
                                    mode="lines+markers", line_color=WATCH,
                                    hovertemplate="iteration %{x}: %{y:.2f}%<extra></extra>"))
    prob_fig.update_layout(**LAYOUT, title=f"Probability of the {what} class ({class_name})")
    prob_fig.update_xaxes(**xaxis)
    prob_fig.update_yaxes(title="%", range=[0, 100])
    return loss_fig, prob_fig
