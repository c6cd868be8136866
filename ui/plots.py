"""Plotly figures and image views for the labs: light to build, one function per view.

Tensors come from advcore results (``(1, C, H, W)`` pixels in ``[0, 1]``); these helpers only move
them to numpy for display. Colours follow one rule: the class a person should watch is orange.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

WATCH = "#e4572e"  # the clean class (untargeted) or the target class
OTHER = "#4c78a8"
LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=280, showlegend=False)


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


def perturbation_heatmap(delta: np.ndarray) -> go.Figure:
    """Heat map of the per-pixel max ``|delta|`` over channels, in 1/255 units."""
    z = np.abs(delta).max(axis=2) * 255.0
    top = max(float(z.max()) if z.size else 0.0, 1e-6)
    fig = go.Figure(go.Heatmap(z=z.astype(np.float32), colorscale="Inferno", zmin=0.0, zmax=top,
                               colorbar=dict(title="x/255", thickness=12),
                               hovertemplate="x %{x}, y %{y}: %{z:.2f}/255<extra></extra>"))
    fig.update_layout(**{**LAYOUT, "height": 360}, title="Per-pixel max |change| over R, G, B")
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    fig.update_xaxes(showticklabels=False, constrain="domain")
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
    loss_fig = go.Figure(go.Scatter(x=steps, y=_finite(loss), mode="lines+markers", line_color=OTHER,
                                    hovertemplate="iteration %{x}: %{y:.3f}<extra></extra>"))
    loss_fig.update_layout(**LAYOUT, title=f"Cross-entropy to the {what} class")
    dtick = max(1, math.ceil(len(steps) / 10))
    loss_fig.update_xaxes(title="iteration", rangemode="tozero", dtick=dtick)
    prob_fig = go.Figure(go.Scatter(x=steps, y=[None if v is None else 100.0 * v for v in _finite(prob)],
                                    mode="lines+markers", line_color=WATCH,
                                    hovertemplate="iteration %{x}: %{y:.2f}%<extra></extra>"))
    prob_fig.update_layout(**LAYOUT, title=f"Probability of the {what} class ({class_name})")
    prob_fig.update_xaxes(title="iteration", rangemode="tozero", dtick=dtick)
    prob_fig.update_yaxes(title="%", range=[0, 100])
    return loss_fig, prob_fig
