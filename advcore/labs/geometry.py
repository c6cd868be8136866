"""Local geometry of a classifier around one image (Aghdam, Heravi and Puig, VISAPP 2017).

``papers/local-properties-isotropy-mantel-lipschitz.txt``. Four probes, all on random points at a
fixed distance ``r`` from the clean image ``x``:

* **Isotropy** (Eq. 4): ``s_i^r = Phi(x + r v_i / ||v_i||)`` with ``v_i ~ U(-1, 1)``, ``i = 1..T``;
  ``range(r) = max_i s_i^r - min_i s_i^r`` is 0 for a locally isotropic ``Phi``.
* **Symmetry** (Eq. 6): the same with ``T`` random permutations of *one* vector ``r v / ||v||``.
* **Topology** (Sec. 2.3): the ``T x T`` distance matrices of the Eq. 4 points in input space and
  at a layer ``phi``; the Mantel test = Pearson r of their upper triangles, with a permutation p-value.
* **Local Lipschitz** (Eq. 9): ``||g(phi(x+v)) - g(phi(x))||`` against ``||h(x+v) - h(x)||`` with
  min-max normalisers ``g``, ``h`` fitted on many images; linear and quadratic fits; the share of
  points whose ratio is below 1 (the map pulls them towards the clean point).

``Phi`` is a score of the clean class (the class the model predicts for ``x``, or a given label), one of
:data:`SCORES`: the paper's softmax probability, or a score that does not saturate on confident images
(the log-probability, or the logit margin over the best other class). Distances are measured with
``norm``: ``"linf"`` (default) puts every element of ``v`` in ``[-r, r]``, the paper's
``v in [-eps, eps]^D`` with radii in pixels (``eps, 1, ..., 20``, i.e. ``k/255`` here); ``"l2"`` is the
Euclidean sphere. Points are not clipped to ``[0, 1]``: the paper probes the function, and clipping
would move points off the sphere. Every draw comes from a CPU ``torch.Generator`` seeded from
``(seed, probe, radius)`` (:func:`generator_for`), so two models with the same input size see exactly
the same points, and the points at one radius do not depend on the other radii asked for.

Controls beside each reading: a random linear map with the layer's output size for the Mantel r (the
r that mere near-equidistance of the points gives), Mantel r at every layer, and the global Lipschitz
baseline (the same ratio for pairs of unrelated clean images, with the same normalisers). Several images:
:func:`survey` with the paper's confidence filter (images every model gets right with > 99% confidence).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from advcore import features
from advcore.errors import AdvlabError
from advcore.paths import ASSETS
from advcore.progress import ProgressFn
from advcore.progress import report as report_progress
from advcore.units import MAX_L2, parse_eps_list

NORMS = ("linf", "l2")
PROBES = ("isotropy", "symmetry", "mantel", "lipschitz")
MAX_RADII = 50
MAX_T = 1000
MAX_PERMUTATIONS = 100_000
DEFAULT_PERMUTATIONS = 999

DEFAULT_RADII = "1/255:20/255:1/255"  # the paper's grid r = 1, ..., R = 20 pixels
PAPER_MIN_CONFIDENCE = 0.99  # Sec. 2.1: "samples that are classified correctly ... with more than 99% confidence"
MAX_BASELINE_PAIRS = 500


def _derive(seed: int, *parts: object) -> int:
    """A 62-bit seed from ``seed`` and ``parts`` (a probe name, a radius, an image index), by SHA-256: the
    same parts give the same seed on every machine, different parts unrelated ones. Floats count by their
    exact bits."""
    h = hashlib.sha256(str(int(seed)).encode())
    for part in parts:
        h.update(b"|" + (struct.pack("<d", part) if isinstance(part, float) else str(part).encode()))
    return int.from_bytes(h.digest()[:8], "little") >> 2


def generator_for(seed: int, *parts: object) -> torch.Generator:
    """A CPU generator seeded by :func:`_derive` ``(seed, *parts)``: e.g. ``(seed, "isotropy", r)`` draws the
    points at radius ``r`` whatever other radii are probed."""
    return torch.Generator().manual_seed(_derive(seed, *parts))


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` in a :func:`survey` (the paper: "each sample has a unique seed"); pass it as
    ``seed`` to :func:`analyse` to redraw that image's points."""
    return _derive(seed, "image", int(index))


# --------------------------------------------------------------------------- scores Phi


@dataclass(frozen=True)
class Score:
    """One declared class score ``Phi`` for Eq. 4 and 6: its name, title, unit and ``fn(logits, k)``."""

    name: str
    title: str
    unit: str
    help: str
    fn: Callable[[torch.Tensor, int], torch.Tensor]
    bounded: bool  # values in [0, 1]


def _softmax(logits: torch.Tensor, k: int) -> torch.Tensor:
    return torch.log_softmax(logits.double(), dim=1)[:, k].exp()


def _log_prob(logits: torch.Tensor, k: int) -> torch.Tensor:
    return torch.log_softmax(logits.double(), dim=1)[:, k]


def _margin(logits: torch.Tensor, k: int) -> torch.Tensor:
    z = logits.double()
    others = torch.cat([z[:, :k], z[:, k + 1:]], dim=1)
    return z[:, k] - others.amax(dim=1)


SCORES: dict[str, Score] = {s.name: s for s in (
    Score("softmax", "softmax probability", "probability",
          "the paper's Phi: the softmax probability of the class (saturates at 1 on confident images)", _softmax, True),
    Score("log-prob", "log-probability", "nats",
          "log of the softmax probability: does not saturate, so confident images keep their spread", _log_prob,
          False),
    Score("margin", "logit margin", "logits",
          "logit of the class minus the largest other logit (> 0 while the class wins)", _margin, False),
)}
DEFAULT_SCORE = "softmax"


def check_score(name: str) -> Score:
    """The declared score ``name``; a clear error for any other."""
    if name not in SCORES:
        raise AdvlabError(f"score must be one of {', '.join(SCORES)}, got {name!r}.")
    return SCORES[name]


def parse_radii(text: str) -> list[float]:
    """Radii as typed: a range ``1/255:20/255:1/255``, a list ``0.01,0.05`` or one value; every radius positive."""
    return parse_eps_list(text, name="radius", allow_zero=False, high=MAX_L2)


def _nan(v: list) -> list:
    """A JSON list (nested) back to floats: None (a non-finite value) becomes nan."""
    return [_nan(x) if isinstance(x, list) else (math.nan if x is None else x) for x in v]


def _f(v: float) -> float | None:
    """A float for JSON: non-finite values become None."""
    v = float(v)
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- checks


def check_params(radii: Sequence[float], T: int, norm: str = "linf", permutations: int = 0,
                 dim: int | None = None) -> list[float]:
    """The radii as floats after checking every parameter; an :class:`AdvlabError` says what is wrong.

    A radius must stay within the pixel range: at most 1 under L-inf, and under L2 at most ``sqrt(dim)``,
    the diameter of the pixel cube ``[0, 1]^dim`` (when the input size ``dim`` is known).
    """
    if norm not in NORMS:
        raise AdvlabError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}.")
    radii = [float(r) for r in radii]
    if not radii:
        raise AdvlabError("Give at least one radius.")
    if len(radii) > MAX_RADII:
        raise AdvlabError(f"At most {MAX_RADII} radii are allowed, got {len(radii)}.")
    for r in radii:
        if not math.isfinite(r) or r <= 0:
            raise AdvlabError(f"Every radius must be a positive finite number, got {r!r}.")
        if norm == "linf" and r > 1:
            raise AdvlabError(f"An L-inf radius of {r:g} exceeds the pixel range [0, 1]; use e.g. 8/255.")
        if norm == "l2" and dim is not None and r > math.sqrt(dim):
            raise AdvlabError(f"An L2 radius of {r:g} exceeds {math.sqrt(dim):.4g}, the largest distance between two "
                              f"images of {dim} pixel values in [0, 1].")
    if len(set(radii)) != len(radii):
        raise AdvlabError("A radius is listed twice.")
    if not isinstance(T, int) or not 2 <= T <= MAX_T:
        raise AdvlabError(f"T (points per radius) must be a whole number from 2 to {MAX_T}, got {T!r}.")
    if not isinstance(permutations, int) or not 0 <= permutations <= MAX_PERMUTATIONS:
        raise AdvlabError(f"permutations must be a whole number from 0 to {MAX_PERMUTATIONS}, got {permutations!r}.")
    return radii


# --------------------------------------------------------------------------- perturbations (Eq. 4 and 6)


def _rescale(v: torch.Tensor, r: float, norm: str) -> torch.Tensor:
    """Rows of ``v`` (N, D) rescaled to ``norm``-length ``r``."""
    length = v.abs().amax(dim=1, keepdim=True) if norm == "linf" else v.norm(dim=1, keepdim=True)
    return v * (r / length.clamp_min(1e-30))


def isotropy_directions(dim: int, r: float, T: int, generator: torch.Generator, norm: str = "linf") -> torch.Tensor:
    """Eq. 4: ``T`` perturbations ``r v_i / ||v_i||``, ``v_i ~ U(-1, 1)^dim``, as a (T, dim) float32 tensor."""
    v = torch.rand((T, dim), generator=generator, dtype=torch.float32) * 2 - 1
    return _rescale(v, r, norm)


def symmetry_directions(dim: int, r: float, T: int, generator: torch.Generator, norm: str = "linf") -> torch.Tensor:
    """Eq. 6: ``T`` random permutations of one perturbation ``r v / ||v||`` (every row has the same norm)."""
    v = _rescale(torch.rand((1, dim), generator=generator, dtype=torch.float32) * 2 - 1, r, norm)[0]
    perms = torch.argsort(torch.rand((T, dim), generator=generator), dim=1)
    return v[perms]


# --------------------------------------------------------------------------- forward pass with a layer


def forward(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits of ``x`` and, when ``layer`` is given, the layer's activation (N, D), in one pass without gradients
    (:func:`advcore.features.logits_and_activations`)."""
    with torch.no_grad():
        if layer is None:
            return model(x), None
        return features.logits_and_activations(model, x, layer)


def class_scores(logits: torch.Tensor, k: int, score: str = DEFAULT_SCORE) -> torch.Tensor:
    """``Phi`` of class ``k`` (a :data:`SCORES` name; default the softmax probability), in float64 (so ranges
    below 1e-7 survive)."""
    return check_score(score).fn(logits, k)


# --------------------------------------------------------------------------- Mantel test


@dataclass
class MantelResult:
    """Pearson r of two distance matrices' upper triangles and its two-sided permutation p-value."""

    r: float
    p_value: float | None  # None when no permutations were run
    permutations: int
    n: int  # number of points (matrix side)

    def to_dict(self) -> dict:
        return {"r": _f(self.r), "p_value": None if self.p_value is None else _f(self.p_value),
                "permutations": self.permutations, "n": self.n}


def upper(d: torch.Tensor) -> torch.Tensor:
    """The strict upper triangle of a square matrix, row by row, as a vector."""
    i, j = torch.triu_indices(d.shape[0], d.shape[0], offset=1, device=d.device)
    return d[i, j]


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of ``a`` (M,) with each row of ``b`` (..., M), in float64; nan where a side is constant."""
    a = a.double() - a.double().mean()
    b = b.double() - b.double().mean(dim=-1, keepdim=True)
    den = a.norm() * b.norm(dim=-1)
    num = (b * a).sum(dim=-1)
    return torch.where(den > 0, num / den.where(den > 0, torch.ones_like(den)), torch.full_like(den, math.nan))


def mantel_permutations(n: int, permutations: int, generator: torch.Generator) -> torch.Tensor:
    """``permutations`` random orderings of ``n`` objects, (P, n), drawn from ``generator``."""
    return torch.argsort(torch.rand((permutations, n), generator=generator), dim=1)


def mantel(d1: torch.Tensor, d2: torch.Tensor, *, permutations: int = DEFAULT_PERMUTATIONS,
           generator: torch.Generator | None = None, seed: int = 0, chunk: int = 256) -> MantelResult:
    """Mantel test of two symmetric (n, n) distance matrices.

    r is Pearson's correlation of the upper triangles. The p-value permutes the objects of ``d2``
    (rows and columns together), all permutations at once in chunks of ``chunk``:
    ``p = (1 + #{|r_perm| >= |r|}) / (P + 1)`` (two-sided).
    """
    if d1.dim() != 2 or d1.shape[0] != d1.shape[1] or d1.shape != d2.shape:
        raise AdvlabError("The Mantel test needs two square distance matrices of the same size.")
    n = d1.shape[0]
    if n < 3:
        raise AdvlabError("The Mantel test needs at least 3 points.")
    a = upper(d1)
    r = float(pearson(a, upper(d2)))
    if permutations == 0:
        return MantelResult(r=r, p_value=None, permutations=0, n=n)
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    perms = mantel_permutations(n, permutations, generator).to(d2.device)
    i, j = torch.triu_indices(n, n, offset=1, device=d2.device)
    hits = 0
    if math.isfinite(r):
        # Reordering the objects only rearranges the upper triangle's values, so the second vector's mean
        # and spread stay those of upper(d2): r_perm = <b_perm, a - mean(a)> / (|a - mean(a)| |b - mean(b)|).
        a_c = a.double() - a.double().mean()
        b = upper(d2).double()
        den = float(a_c.norm() * (b - b.mean()).norm())
        d2d = d2.double()
        for start in range(0, permutations, chunk):
            p = perms[start:start + chunk]
            rp = (d2d[p[:, i], p[:, j]] @ a_c) / den  # (chunk,): d2 with its objects reordered
            hits += int((rp.abs() >= abs(r) - 1e-12).sum())
        p_value = (1 + hits) / (permutations + 1)
    else:
        p_value = math.nan
    return MantelResult(r=r, p_value=p_value, permutations=permutations, n=n)


def distance_matrix(points: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``points`` (N, D), in float64, centred first for accuracy."""
    p = points.double()
    p = p - p.mean(dim=0, keepdim=True)
    return torch.cdist(p, p).fill_diagonal_(0.0)


# --------------------------------------------------------------------------- min-max normalisers (Eq. 9)


@dataclass
class MinMax:
    """``t -> (t - lo) / (hi - lo)``: one scalar minimum and maximum, collected over many values."""

    lo: float
    hi: float

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return (t.double() - self.lo) / (self.hi - self.lo)

    def to_dict(self) -> dict:
        return {"min": _f(self.lo), "max": _f(self.hi)}


def fit_minmax(values: torch.Tensor) -> MinMax:
    """The min-max normaliser of ``values``; a constant set is refused (it cannot be normalised)."""
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        raise AdvlabError("The normaliser's samples are all equal; use more varied images.")
    return MinMax(lo, hi)


def baseline_pairs(n: int, max_pairs: int = MAX_BASELINE_PAIRS) -> torch.Tensor:
    """Index pairs (P, 2) of ``n`` images for the global Lipschitz baseline: every pair when there are at most
    ``max_pairs`` of them, else the disjoint neighbours (0, 1), (2, 3), ... (each image in one pair)."""
    if n * (n - 1) // 2 <= max_pairs:
        return torch.combinations(torch.arange(n), 2)
    first = torch.arange(0, 2 * min(n // 2, max_pairs), 2)
    return torch.stack([first, first + 1], dim=1)


@dataclass
class GlobalBaseline:
    """Eq. 9's ratio ``||g(phi(a)) - g(phi(b))|| / ||h(a) - h(b)||`` for pairs of unrelated clean images
    ``a, b`` with the same normalisers: what the ratio is without any notion of "local"."""

    dx: torch.Tensor  # (P,) float64
    dy: torch.Tensor  # (P,) float64

    @property
    def ratio(self) -> torch.Tensor:
        keep = self.dx > 0
        return self.dy[keep] / self.dx[keep]

    def to_dict(self) -> dict:
        r = self.ratio
        return {"pairs": int(self.dx.numel()),
                "share_ratio_below_1": _f((r < 1).double().mean()) if r.numel() else None,
                "ratio_min": _f(r.min()) if r.numel() else None,
                "ratio_median": _f(r.median()) if r.numel() else None,
                "ratio_max": _f(r.max()) if r.numel() else None}


@dataclass
class Normalisers:
    """``h`` (input) and ``g`` (layer ``phi``) of Eq. 9, fitted on ``samples`` images, and the global baseline
    measured on pairs of those images."""

    h: MinMax
    g: MinMax
    layer: str
    samples: int
    source: str = ""
    baseline: GlobalBaseline | None = None

    def to_dict(self) -> dict:
        return {"h": self.h.to_dict(), "g": self.g.to_dict(), "layer": self.layer, "samples": self.samples,
                "source": self.source}


def fit_normalisers(model: nn.Module, images: torch.Tensor, layer: str | None = None, *, batch_size: int = 64,
                    source: str = "", max_pairs: int = MAX_BASELINE_PAIRS) -> Normalisers:
    """Eq. 9's ``h`` and ``g``: min and max of the input values and of the layer's activations over ``images``;
    with at least two images also the :class:`GlobalBaseline` on :func:`baseline_pairs` of them."""
    layer = features.check_layer(model, layer)
    if images.shape[0] < 1:
        raise AdvlabError("The normalisers need at least one image.")
    device = next(model.parameters()).device
    acts = features.extract(model, images.to(device), layer, batch_size=batch_size).cpu()
    norms = Normalisers(h=fit_minmax(images), g=fit_minmax(acts), layer=layer, samples=int(images.shape[0]),
                        source=source)
    if images.shape[0] >= 2:
        pairs = baseline_pairs(int(images.shape[0]), max_pairs)
        flat = norms.h(images.cpu().reshape(images.shape[0], -1))
        act = norms.g(acts)
        norms.baseline = GlobalBaseline(dx=(flat[pairs[:, 0]] - flat[pairs[:, 1]]).norm(dim=1),
                                        dy=(act[pairs[:, 0]] - act[pairs[:, 1]]).norm(dim=1))
    return norms


def reference_images(dataset: str, input_size: tuple[int, int, int], n: int = 1000) -> tuple[torch.Tensor, str]:
    """Images to fit the normalisers on: the first ``n`` of the shipped Fashion-MNIST test subset, or the
    bundled sample photos for ImageNet models (the paper used thousands; offline we have these)."""
    from advcore import data, datasets

    if dataset == "fashion-mnist":
        x, _ = datasets.load_subset(min(n, len(datasets.load_subset()[0])))
        x = datasets.to_float(x)
        return x, f"the first {len(x)} images of the shipped Fashion-MNIST test subset"
    xs = [data.prepare(data.open_image(s.path, name=s.file), input_size) for s in data.samples()[:n]]
    return torch.cat(xs), f"the {len(xs)} bundled sample photos"


# --------------------------------------------------------------------------- results


@dataclass
class ScoreProbe:
    """Scores of the clean class at ``T`` points per radius: Eq. 4 (isotropy) or Eq. 6 (symmetry)."""

    kind: str  # "isotropy" or "symmetry"
    radii: list[float]
    scores: torch.Tensor  # (R, T) float64, the class score s_i^r
    misclassified: torch.Tensor  # (R, T) bool: the point's top class differs from the clean class
    score: str = DEFAULT_SCORE  # the SCORES name of s_i^r

    @property
    def range(self) -> list[float]:
        """``range(r) = max_i s_i^r - min_i s_i^r`` per radius."""
        return (self.scores.amax(1) - self.scores.amin(1)).tolist()

    @property
    def mean(self) -> list[float]:
        return self.scores.mean(1).tolist()

    @property
    def any_misclassified(self) -> list[bool]:
        return self.misclassified.any(1).tolist()

    def to_dict(self, points: bool = False) -> dict:
        out = {"kind": self.kind, "score": self.score, "unit": SCORES[self.score].unit, "radii": self.radii,
               "range": [_f(v) for v in self.range],
               "mean_score": [_f(v) for v in self.mean], "min_score": [_f(v) for v in self.scores.amin(1).tolist()],
               "max_score": [_f(v) for v in self.scores.amax(1).tolist()],
               "misclassified": self.misclassified.sum(1).tolist(), "any_misclassified": self.any_misclassified}
        if points:
            out["scores"] = [[_f(v) for v in row] for row in self.scores.tolist()]
            out["misclassified_points"] = self.misclassified.int().tolist()
        return out


@dataclass
class Topology:
    """Distance matrices of the Eq. 4 points in input space and at ``layer``, their Mantel tests, and the
    controls: Mantel r of a random linear map with the layer's output size (``null_r``) and at other layers."""

    radii: list[float]
    layer: str
    d_input: torch.Tensor  # (R, T, T) float64
    d_layer: torch.Tensor  # (R, T, T) float64
    tests: list[MantelResult]
    null_r: list[float] = field(default_factory=list)  # per radius: r of x -> v W, W random (D_in, null_dim)
    null_dim: int = 0
    layer_r: dict[str, list[float]] = field(default_factory=dict)  # layer -> r per radius
    layer_dims: dict[str, int] = field(default_factory=dict)

    @property
    def r(self) -> list[float]:
        return [t.r for t in self.tests]

    def to_dict(self, matrices: bool = False) -> dict:
        out = {"radii": self.radii, "layer": self.layer, "r": [t.to_dict()["r"] for t in self.tests],
               "p_value": [t.to_dict()["p_value"] for t in self.tests],
               "permutations": self.tests[0].permutations if self.tests else 0,
               "points": int(self.d_input.shape[1]),
               "random_map": ({"output_dim": self.null_dim, "r": [_f(v) for v in self.null_r]}
                              if self.null_r else None),
               "layers": [{"layer": name, "dim": self.layer_dims[name], "r": [_f(v) for v in rs]}
                          for name, rs in self.layer_r.items()]}
        if matrices:
            out["d_input"] = self.d_input.tolist()
            out["d_layer"] = self.d_layer.tolist()
        return out


def _polyfit(x: np.ndarray, y: np.ndarray, degree: int) -> list[float] | None:
    """Least-squares polynomial coefficients, highest power first; None when there are too few distinct x."""
    if len(np.unique(x)) <= degree:
        return None
    return [float(c) for c in np.polyfit(x, y, degree)]


@dataclass
class Lipschitz:
    """Eq. 9 at the Eq. 4 points: input distance ``dx = ||h(x+v) - h(x)||`` and layer distance
    ``dy = ||g(phi(x+v)) - g(phi(x))||``, one pair per point, with fits and the share of ``dy/dx < 1``."""

    radius: torch.Tensor  # (N,) radius of each point
    dx: torch.Tensor  # (N,) float64
    dy: torch.Tensor  # (N,) float64
    normalisers: Normalisers
    linear: list[float] | None = field(default=None)  # [slope, intercept]
    quadratic: list[float] | None = field(default=None)  # [a, b, c] of a x^2 + b x + c

    def __post_init__(self) -> None:
        x, y = self.dx.numpy(), self.dy.numpy()
        self.linear = _polyfit(x, y, 1)
        self.quadratic = _polyfit(x, y, 2)

    @property
    def ratio(self) -> torch.Tensor:
        """``dy / dx`` per point: the local Lipschitz constant each point needs (nan where dx = 0)."""
        return torch.where(self.dx > 0, self.dy / self.dx.where(self.dx > 0, torch.ones_like(self.dx)),
                           torch.full_like(self.dx, math.nan))

    @property
    def share_below_1(self) -> float:
        r = self.ratio
        r = r[~torch.isnan(r)]
        return float((r < 1).double().mean()) if r.numel() else math.nan

    def to_dict(self, points: bool = False) -> dict:
        r = self.ratio
        finite = r[~torch.isnan(r)]
        out = {"normalisers": self.normalisers.to_dict(), "points": int(self.dx.numel()),
               "share_ratio_below_1": _f(self.share_below_1),
               "ratio_min": _f(finite.min()) if finite.numel() else None,
               "ratio_median": _f(finite.median()) if finite.numel() else None,
               "ratio_max": _f(finite.max()) if finite.numel() else None,
               "linear_fit": self.linear, "quadratic_fit": self.quadratic,
               "global_baseline": ({**self.normalisers.baseline.to_dict(), "images": self.normalisers.source}
                                   if self.normalisers.baseline is not None else None)}
        if points:
            out.update(radius=self.radius.tolist(), dx=self.dx.tolist(), dy=self.dy.tolist())
            if self.normalisers.baseline is not None:
                out["global_baseline"].update(dx=self.normalisers.baseline.dx.tolist(),
                                              dy=self.normalisers.baseline.dy.tolist())
        return out


@dataclass
class GeometryReport:
    """Everything measured around one image; the probes not asked for are None."""

    clean_class: int
    clean_score: float
    norm: str
    T: int
    seed: int
    layer: str
    radii: list[float]
    isotropy: ScoreProbe | None = None
    symmetry: ScoreProbe | None = None
    topology: Topology | None = None
    lipschitz: Lipschitz | None = None
    seconds: float = 0.0
    input_dim: int = 0  # values per image
    layer_dim: int | None = None  # values of phi (None when no probe needed the layer)
    score: str = DEFAULT_SCORE  # Phi of the isotropy and symmetry probes (clean_score is always the softmax)

    def to_dict(self, points: bool = False) -> dict:
        """JSON-safe dict; ``points=True`` adds every score, distance matrix and Lipschitz pair."""
        out = {"clean_class": self.clean_class, "clean_score": _f(self.clean_score), "score": self.score,
               "norm": self.norm, "T": self.T,
               "seed": self.seed, "layer": self.layer, "radii": self.radii, "input_dim": self.input_dim,
               "layer_dim": self.layer_dim, "seconds": round(self.seconds, 3)}
        for name in ("isotropy", "symmetry", "lipschitz"):
            part = getattr(self, name)
            if part is not None:
                out[name] = part.to_dict(points)
        if self.topology is not None:
            out["mantel"] = self.topology.to_dict(points)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> GeometryReport:
        """The report back from ``to_dict(points=True)`` (``geometry all --points --json``): every figure of the
        page can be drawn from it."""
        def t(v: list, dtype: torch.dtype = torch.float64) -> torch.Tensor:
            return torch.tensor(_nan(v), dtype=dtype)

        try:
            rep = cls(clean_class=int(d["clean_class"]), clean_score=float(d["clean_score"]), norm=d["norm"],
                      T=int(d["T"]), seed=int(d["seed"]), layer=d["layer"], radii=[float(r) for r in d["radii"]],
                      seconds=float(d.get("seconds", 0.0)), input_dim=int(d["input_dim"]), layer_dim=d["layer_dim"],
                      score=d["score"])
            for kind in ("isotropy", "symmetry"):
                if kind in d:
                    p = d[kind]
                    setattr(rep, kind, ScoreProbe(kind, rep.radii, t(p["scores"]),
                                                  t(p["misclassified_points"], torch.bool), p["score"]))
            if "mantel" in d:
                m = d["mantel"]
                tests = [MantelResult(r=math.nan if r is None else r, p_value=p, permutations=m["permutations"],
                                      n=m["points"]) for r, p in zip(m["r"], m["p_value"], strict=True)]
                null = m["random_map"]
                rep.topology = Topology(rep.radii, m["layer"], t(m["d_input"]), t(m["d_layer"]), tests,
                                        null_r=_nan(null["r"]) if null else [], null_dim=null["output_dim"] if null
                                        else 0, layer_r={e["layer"]: _nan(e["r"]) for e in m["layers"]},
                                        layer_dims={e["layer"]: e["dim"] for e in m["layers"]})
            if "lipschitz" in d:
                lip = d["lipschitz"]
                n, base = lip["normalisers"], lip["global_baseline"]
                norms = Normalisers(h=MinMax(n["h"]["min"], n["h"]["max"]), g=MinMax(n["g"]["min"], n["g"]["max"]),
                                    layer=n["layer"], samples=n["samples"], source=n["source"],
                                    baseline=GlobalBaseline(t(base["dx"]), t(base["dy"])) if base else None)
                rep.lipschitz = Lipschitz(t(lip["radius"]), t(lip["dx"]), t(lip["dy"]), norms)
        except (KeyError, TypeError, ValueError) as exc:
            raise AdvlabError(f"Not a geometry result with every point (geometry all --points --json): {exc!r}."
                              ) from None
        return rep


# --------------------------------------------------------------------------- the probes


def sweep_layers(model: nn.Module) -> list[str]:
    """The layers of a Mantel r sweep: :func:`advcore.features.layer_names` without the containers of other
    listed layers (whose output is one of theirs)."""
    names = features.layer_names(model)
    return [n for n in names if not any(m.startswith(n + ".") for m in names)]


DENSE_MAP_LIMIT = 1 << 22  # entries of W up to which the random map is drawn dense (Gaussian)


def random_map(points: torch.Tensor, out_dim: int, generator: torch.Generator, chunk: int = 4096,
               dense_limit: int = DENSE_MAP_LIMIT) -> torch.Tensor:
    """``points @ W`` (float64) for a random linear map ``W`` (D, out_dim) with entries of variance 1/out_dim.

    Dense N(0, 1/out_dim) entries, drawn ``chunk`` rows at a time, while ``D * out_dim <= dense_limit`` (the
    28x28 models); above it (224x224x3 to 1280 values would be 193M entries, seconds of work) a very sparse
    random projection (Li, Hastie and Church, KDD 2006): ``k = round(sqrt(D))`` random rows per column with
    random signs, scaled by ``sqrt(D / k / out_dim)``, which preserves distances in the same
    Johnson-Lindenstrauss sense."""
    n, dim = points.shape
    if dim * out_dim <= dense_limit:
        p = points.double()
        out = torch.zeros((n, out_dim), dtype=torch.float64)
        for start in range(0, dim, chunk):
            w = torch.randn((min(chunk, dim - start), out_dim), generator=generator, dtype=torch.float32)
            out += p[:, start:start + chunk] @ w.double()
        return out / math.sqrt(out_dim)
    k = max(1, round(math.sqrt(dim)))
    rows = torch.randint(dim, (out_dim * k,), generator=generator)
    cols = torch.arange(out_dim).repeat_interleave(k)
    signs = torch.randint(2, (out_dim * k,), generator=generator).double() * 2 - 1
    w = torch.sparse_coo_tensor(torch.stack([cols, rows]), signs * math.sqrt(dim / k / out_dim),
                                (out_dim, dim), check_invariants=False).coalesce()
    return torch.sparse.mm(w, points.double().T).T


def analyse(model: nn.Module, x: torch.Tensor, *, radii: Sequence[float], T: int = 100,
            probes: Sequence[str] = PROBES, layer: str | None = None, norm: str = "linf", seed: int = 0,
            label: int | None = None, permutations: int = DEFAULT_PERMUTATIONS,
            normalisers: Normalisers | None = None, score: str = DEFAULT_SCORE,
            mantel_layers: Sequence[str] = (), null: bool = True, batch_size: int = 128,
            progress: ProgressFn | None = None) -> GeometryReport:
    """Run the chosen ``probes`` around the image ``x`` (1, C, H, W) in ``[0, 1]``.

    ``isotropy``, ``mantel`` and ``lipschitz`` share the same Eq. 4 points (one forward pass each);
    ``symmetry`` draws its own (Eq. 6). The points at radius ``r`` come from ``generator_for(seed, probe, r)``.
    ``lipschitz`` needs ``normalisers`` (:func:`fit_normalisers`). ``label``: the class whose score is probed
    (default: the model's prediction for ``x``); ``score``: a :data:`SCORES` name. ``mantel`` also gives the
    Mantel r of a random linear map with the layer's output size (``null``) and at each of ``mantel_layers``.
    """
    t0 = time.perf_counter()
    probes = list(dict.fromkeys(probes))
    unknown = [p for p in probes if p not in PROBES]
    if unknown or not probes:
        raise AdvlabError(f"Unknown probe {unknown[0] if unknown else ''!r}; choose from {', '.join(PROBES)}.")
    if x.dim() != 4 or x.shape[0] != 1:
        raise AdvlabError("Give one image as a (1, C, H, W) tensor.")
    check_score(score)
    radii = check_params(radii, T, norm, permutations, dim=x[0].numel())
    need_layer = "mantel" in probes or "lipschitz" in probes
    if "mantel" in probes and T < 3:
        raise AdvlabError("The Mantel test needs T of at least 3.")
    layer_name = features.check_layer(model, layer) if need_layer else (layer or features.PENULTIMATE)
    sweep = [features.check_layer(model, n) for n in dict.fromkeys(mantel_layers)] if "mantel" in probes else []
    if "lipschitz" in probes:
        if normalisers is None:
            raise AdvlabError("The Lipschitz probe needs min-max normalisers (fit_normalisers).")
        if normalisers.layer != layer_name:
            raise AdvlabError(f"The normalisers were fitted at layer {normalisers.layer!r}, not {layer_name!r}.")
    device = next(model.parameters()).device
    x = x.to(device)
    logits, phi_clean = forward(model, x, layer_name if need_layer else None)
    k = int(logits.argmax(1)) if label is None else int(label)
    if not 0 <= k < logits.shape[1]:
        raise AdvlabError(f"Class {k} is not one of the model's {logits.shape[1]} classes.")
    clean_score = float(class_scores(logits, k))
    dim = x[0].numel()
    R = len(radii)
    sweeps = (int(any(p in probes for p in ("isotropy", "mantel", "lipschitz"))) + int("symmetry" in probes)) * R
    sweeps += R * len(sweep)
    done = 0
    points = max(sweeps, 1) * T  # the unit of progress: one perturbed point through the model
    report_progress(progress, "starting", 0, points, what="geometry probe")

    def run_points(v: torch.Tensor, with_layer: bool, stage: str) -> tuple[torch.Tensor, ...]:
        nonlocal done
        scores, wrong, acts = [], [], []
        for start in range(0, T, batch_size):
            pts = x + v[start:start + batch_size].to(device).view(-1, *x.shape[1:])
            out, phi = forward(model, pts, layer_name if with_layer else None)
            scores.append(class_scores(out, k, score).cpu())
            wrong.append((out.argmax(1) != k).cpu())
            if phi is not None:
                acts.append(phi.cpu())
            report_progress(progress, stage, done * T + min(start + batch_size, T), points, what="geometry probe")
        done += 1
        return torch.cat(scores), torch.cat(wrong), (torch.cat(acts) if acts else None)  # type: ignore[return-value]

    def layer_points(v: torch.Tensor, name: str, stage: str) -> torch.Tensor:
        nonlocal done
        acts = []
        with torch.no_grad():
            for start in range(0, T, batch_size):
                pts = x + v[start:start + batch_size].to(device).view(-1, *x.shape[1:])
                acts.append(features.activations(model, pts, name).cpu())
                report_progress(progress, stage, done * T + min(start + batch_size, T), points,
                                what="geometry probe")
        done += 1
        return torch.cat(acts)

    iso_s, iso_w, d_in, d_out, tests, lip_r, lip_dx, lip_dy, vs = [], [], [], [], [], [], [], [], []
    layer_r: dict[str, list[float]] = {n: [] for n in sweep}
    layer_dims: dict[str, int] = {}
    if any(p in probes for p in ("isotropy", "mantel", "lipschitz")):
        for r in radii:
            v = isotropy_directions(dim, r, T, generator_for(seed, "isotropy", r), norm)
            s, w, acts = run_points(v, need_layer, f"isotropy r={r:g}")
            iso_s.append(s)
            iso_w.append(w)
            if "mantel" in probes:
                d_in.append(distance_matrix(v))
                d_out.append(distance_matrix(acts))
                tests.append(mantel(d_in[-1], d_out[-1], permutations=permutations,
                                    generator=generator_for(seed, "mantel", r)))
                vs.append(v)
                for name in sweep:
                    a = acts if name == layer_name else layer_points(v, name, f"layer {name} r={r:g}")
                    layer_dims[name] = int(a.shape[1])
                    layer_r[name].append(float(pearson(upper(d_in[-1]), upper(distance_matrix(a)))))
            if "lipschitz" in probes:
                assert normalisers is not None and acts is not None
                xv = (x.cpu().reshape(1, -1).double() + v.double())  # the points x + v, in float64
                lip_dx.append((normalisers.h(xv) - normalisers.h(x.cpu().reshape(1, -1))).norm(dim=1))
                lip_dy.append((normalisers.g(acts) - normalisers.g(phi_clean.cpu())).norm(dim=1))
                lip_r.append(torch.full((T,), r, dtype=torch.float64))
    report = GeometryReport(clean_class=k, clean_score=clean_score, norm=norm, T=T, seed=seed, layer=layer_name,
                            radii=radii, input_dim=dim, score=score,
                            layer_dim=int(phi_clean.shape[1]) if phi_clean is not None else None)
    if "isotropy" in probes:
        report.isotropy = ScoreProbe("isotropy", radii, torch.stack(iso_s), torch.stack(iso_w), score)
    if "mantel" in probes:
        topo = Topology(radii, layer_name, torch.stack(d_in), torch.stack(d_out), tests, layer_r=layer_r,
                        layer_dims=layer_dims)
        if null:
            assert phi_clean is not None
            topo.null_dim = int(phi_clean.shape[1])
            mapped = random_map(torch.cat(vs), topo.null_dim, generator_for(seed, "random-map")).view(R, T, -1)
            topo.null_r = [float(pearson(upper(d_in[i]), upper(distance_matrix(mapped[i])))) for i in range(R)]
        report.topology = topo
    if "lipschitz" in probes:
        assert normalisers is not None
        report.lipschitz = Lipschitz(torch.cat(lip_r), torch.cat(lip_dx), torch.cat(lip_dy), normalisers)
    if "symmetry" in probes:
        sym_s, sym_w = [], []
        for r in radii:
            v = symmetry_directions(dim, r, T, generator_for(seed, "symmetry", r), norm)
            s, w, _ = run_points(v, False, f"symmetry r={r:g}")
            sym_s.append(s)
            sym_w.append(w)
        report.symmetry = ScoreProbe("symmetry", radii, torch.stack(sym_s), torch.stack(sym_w), score)
    report.seconds = time.perf_counter() - t0
    report_progress(progress, "done", points, points, what="geometry probe")
    return report


# --------------------------------------------------------------------------- one image, end to end (page and CLI)

DEFAULT_FIT_IMAGES = 1000
_NORMALISERS: dict[tuple[str, str, str, int], Normalisers] = {}


def normalisers_for(model_name: str, layer: str | None = None, device: str | torch.device = "auto",
                    n: int = DEFAULT_FIT_IMAGES) -> Normalisers:
    """Eq. 9's normalisers for a registered model, fitted on :func:`reference_images` (cached per process)."""
    from advcore import models

    spec = models.get_spec(model_name)
    model = models.load(model_name, device)
    layer = features.check_layer(model, layer)
    key = (model_name, str(next(model.parameters()).device), layer, n)
    if key not in _NORMALISERS:
        images, source = reference_images(spec.dataset, spec.input_size, n)
        _NORMALISERS[key] = fit_normalisers(model, images, layer, source=source)
    return _NORMALISERS[key]


@dataclass
class ImageGeometry:
    """:func:`analyse` of one image with a registered model, with what a person needs to read it."""

    model: str
    title: str
    dataset: str
    device: str
    class_name: str
    report: GeometryReport

    def to_dict(self, points: bool = False) -> dict:
        return {"model": self.model, "title": self.title, "dataset": self.dataset, "device": self.device,
                "clean_name": self.class_name, **self.report.to_dict(points)}

    @classmethod
    def from_dict(cls, d: dict) -> ImageGeometry:
        """The result back from ``to_dict(points=True)``."""
        return cls(model=d["model"], title=d["title"], dataset=d["dataset"], device=d["device"],
                   class_name=d["clean_name"], report=GeometryReport.from_dict(d))


def probe_image(model_name: str, image, *, probes: Sequence[str] = PROBES, radii: Sequence[float],
                T: int = 100, layer: str | None = None, norm: str = "linf", seed: int = 0,
                permutations: int = DEFAULT_PERMUTATIONS, fit_images: int = DEFAULT_FIT_IMAGES,
                score: str = DEFAULT_SCORE, mantel_layers: Sequence[str] | str = (), null: bool = True,
                device: str | torch.device = "auto", progress: ProgressFn | None = None) -> ImageGeometry:
    """Load ``model_name``, prepare the PIL ``image`` for it and run :func:`analyse` (the page and the CLI).
    ``mantel_layers="all"``: every layer of :func:`sweep_layers`."""
    from advcore import data, models
    from advcore.device import describe

    spec = models.get_spec(model_name)
    check_params(radii, T, norm, permutations, dim=math.prod(spec.input_size))
    check_score(score)
    model = models.load(model_name, device)
    layer = features.check_layer(model, layer)
    sweep = sweep_layers(model) if mantel_layers == "all" else list(mantel_layers)
    x = data.prepare(image, spec.input_size)
    norms = normalisers_for(model_name, layer, device, fit_images) if "lipschitz" in probes else None
    report = analyse(model, x, radii=radii, T=T, probes=probes, layer=layer, norm=norm, seed=seed,
                     permutations=permutations, normalisers=norms, score=score, mantel_layers=sweep, null=null,
                     progress=progress)
    return ImageGeometry(model=model_name, title=spec.title, dataset=spec.dataset,
                         device=describe(next(model.parameters()).device),
                         class_name=spec.classes()[report.clean_class], report=report)


# --------------------------------------------------------------------------- many images (the paper's protocol)

MAX_SURVEY_IMAGES = 3000
SURVEY_SCHEMA = "advlab.geometry-survey/1"


@dataclass
class Survey:
    """Isotropy (Eq. 4) on many test images for several models on the same points, after the paper's filter."""

    models: list[str]
    score: str
    radii: list[float]
    T: int
    norm: str
    seed: int
    min_confidence: float | None  # None: no filter
    indices: list[int]  # the test images considered
    labels: list[int]
    probability: dict[str, list[float]]  # model -> softmax probability of the true class, per considered image
    correct: dict[str, list[bool]]
    kept: list[int]  # the considered images every model got right with probability > min_confidence
    ranges: dict[str, torch.Tensor]  # model -> (len(kept), R) float64: range(r) per kept image
    misclassified: dict[str, torch.Tensor]  # model -> (len(kept), R) int: misclassified points
    seconds: float = 0.0

    def median_range(self, model: str) -> list[float]:
        """Median over the kept images of range(r), per radius."""
        return self.ranges[model].median(dim=0).values.tolist() if self.kept else [math.nan] * len(self.radii)

    def overall_median(self, model: str) -> float:
        """Median of range(r) over every kept image and radius."""
        return float(self.ranges[model].flatten().median()) if self.kept else math.nan

    def filtered(self, min_confidence: float | None) -> Survey:
        """The survey restricted to the images every model gets right with softmax probability > ``min_confidence``
        (Sec. 2.1's filter), without probing again: on those images each model's prediction is the true class, so
        a survey run without the filter (``min_confidence=None``, which probes the predicted class) already holds
        their ranges. The threshold cannot be lower than the one this survey was run with."""
        thr = check_confidence(min_confidence)
        if thr is None:
            if self.min_confidence is not None:
                raise AdvlabError("This survey was run with a confidence filter; it holds no unfiltered reading.")
            return self
        if self.min_confidence is not None and thr < self.min_confidence:
            raise AdvlabError(f"This survey kept images above {self.min_confidence:g}; a lower threshold ({thr:g}) "
                              f"needs a new run.")
        at = {i: j for j, i in enumerate(self.kept)}
        pos = {i: j for j, i in enumerate(self.indices)}
        keep = [i for i in self.kept if all(self.correct[m][pos[i]] and self.probability[m][pos[i]] > thr
                                            for m in self.models)]
        rows = torch.tensor([at[i] for i in keep], dtype=torch.long)
        return Survey(models=self.models, score=self.score, radii=self.radii, T=self.T, norm=self.norm, seed=self.seed,
                      min_confidence=thr, indices=self.indices, labels=self.labels, probability=self.probability,
                      correct=self.correct, kept=keep, ranges={m: v[rows] for m, v in self.ranges.items()},
                      misclassified={m: v[rows] for m, v in self.misclassified.items()}, seconds=self.seconds)

    def image_medians(self, model: str) -> list[float]:
        """Per kept image: the median over the radii of its range(r) (one number per image; numpy's median, the
        mean of the two middle values for an even number of radii)."""
        return np.median(self.ranges[model].numpy(), axis=1).tolist() if self.kept else []

    def median_image_range(self, model: str) -> float:
        """The median over the kept images of :meth:`image_medians` (nan with no image)."""
        return float(np.median(self.image_medians(model))) if self.kept else math.nan

    def share_below(self, model: str, other: str) -> float:
        """The share of kept images whose per-image median range (:meth:`image_medians`) is smaller for ``model``
        than for ``other`` (nan with no image)."""
        if not self.kept:
            return math.nan
        return float(np.mean(np.less(self.image_medians(model), self.image_medians(other))))

    def head(self, n: int) -> Survey:
        """The same survey on only the first ``n`` considered images: each image's points and filter depend on that
        image alone (:func:`image_seed`), so this equals a survey run on ``n`` images."""
        if not 1 <= n <= len(self.indices):
            raise AdvlabError(f"This survey considered {len(self.indices)} images; cannot take the first {n}.")
        rows = torch.tensor([j for j, i in enumerate(self.kept) if i < self.indices[n - 1] + 1], dtype=torch.long)
        return Survey(models=self.models, score=self.score, radii=self.radii, T=self.T, norm=self.norm, seed=self.seed,
                      min_confidence=self.min_confidence, indices=self.indices[:n], labels=self.labels[:n],
                      probability={m: p[:n] for m, p in self.probability.items()},
                      correct={m: c[:n] for m, c in self.correct.items()}, kept=[self.kept[j] for j in rows.tolist()],
                      ranges={m: v[rows] for m, v in self.ranges.items()},
                      misclassified={m: v[rows] for m, v in self.misclassified.items()}, seconds=self.seconds)

    def to_dict(self) -> dict:
        kept = set(self.kept)
        return {"schema": SURVEY_SCHEMA, "models": self.models, "score": self.score, "unit": SCORES[self.score].unit,
                "radii": self.radii,
                "T": self.T, "norm": self.norm, "seed": self.seed, "min_confidence": self.min_confidence,
                "images": len(self.indices), "indices": self.indices,
                "correct": {m: int(sum(c)) for m, c in self.correct.items()}, "labels": self.labels,
                "probability": {m: [_f(v) for v in p] for m, p in self.probability.items()},
                "correct_each": {m: [bool(v) for v in c] for m, c in self.correct.items()},
                "kept": self.kept, "image_seeds": [image_seed(self.seed, i) for i in self.kept],
                "per_model": {m: {"median_range": [_f(v) for v in self.median_range(m)],
                                  "overall_median_range": _f(self.overall_median(m)),
                                  "range": [[_f(v) for v in row] for row in self.ranges[m].tolist()],
                                  "misclassified": self.misclassified[m].tolist(),
                                  "image_median_range": [_f(v) for v in self.image_medians(m)],
                                  "median_image_range": _f(self.median_image_range(m)),
                                  "share_smaller_than": {o: _f(self.share_below(m, o)) for o in self.models
                                                         if o != m},
                                  "mean_probability_kept": _f(np.mean([p for i, p in zip(
                                      self.indices, self.probability[m], strict=True) if i in kept]))
                                  if kept else None}
                              for m in self.models},
                "seconds": round(self.seconds, 3)}


    @classmethod
    def from_dict(cls, d: dict) -> Survey:
        """A :class:`Survey` from :meth:`to_dict`'s JSON (``geometry-survey --json``)."""
        if d.get("schema") != SURVEY_SCHEMA:
            raise AdvlabError(f"Not a geometry survey of schema {SURVEY_SCHEMA}: {d.get('schema')!r}.")
        R = len(d["radii"])

        def rows(m: str, key: str, dtype: torch.dtype) -> torch.Tensor:
            v = d["per_model"][m][key]
            return (torch.tensor([[math.nan if x is None else x for x in row] for row in v], dtype=dtype) if v
                    else torch.zeros((0, R), dtype=dtype))

        return cls(models=list(d["models"]), score=d["score"], radii=[float(r) for r in d["radii"]], T=int(d["T"]),
                   norm=d["norm"], seed=int(d["seed"]), min_confidence=d["min_confidence"],
                   indices=[int(i) for i in d["indices"]], labels=[int(y) for y in d["labels"]],
                   probability={m: [math.nan if v is None else float(v) for v in p]
                                for m, p in d["probability"].items()},
                   correct={m: [bool(v) for v in c] for m, c in d["correct_each"].items()},
                   kept=[int(i) for i in d["kept"]], ranges={m: rows(m, "range", torch.float64) for m in d["models"]},
                   misclassified={m: rows(m, "misclassified", torch.long) for m in d["models"]},
                   seconds=float(d.get("seconds", 0.0)))


def check_confidence(value: float | None) -> float | None:
    """A confidence threshold in [0, 1); None or 0 means no filter."""
    if value is None or value == 0:
        return None
    v = float(value)
    if not (math.isfinite(v) and 0 < v < 1):
        raise AdvlabError(f"min confidence must be from 0 (no filter) up to but not including 1, got {value!r}.")
    return v


def survey(model_names: Sequence[str], n: int, *, radii: Sequence[float], T: int = 100, norm: str = "linf",
           seed: int = 0, score: str = DEFAULT_SCORE, min_confidence: float | None = PAPER_MIN_CONFIDENCE,
           device: str | torch.device = "auto", progress: ProgressFn | None = None) -> Survey:
    """Sec. 2.1's protocol on the first ``n`` shipped Fashion-MNIST test images: keep those every model classifies
    correctly with softmax probability > ``min_confidence`` (None: keep all, and probe each model's predicted
    class), then Eq. 4 on each kept image with its own seed :func:`image_seed` ``(seed, index)``, the same points
    for every model."""
    from advcore import datasets, models

    t0 = time.perf_counter()
    names = list(dict.fromkeys(model_names))
    if not names:
        raise AdvlabError("Give at least one model.")
    for name in names:
        if models.get_spec(name).dataset != "fashion-mnist":
            raise AdvlabError(f"{name} is not a Fashion-MNIST model; the survey runs on Fashion-MNIST test images.")
    if not isinstance(n, int) or not 1 <= n <= MAX_SURVEY_IMAGES:
        raise AdvlabError(f"The number of images must be a whole number from 1 to {MAX_SURVEY_IMAGES}, got {n!r}.")
    check_score(score)
    min_confidence = check_confidence(min_confidence)
    radii = check_params(radii, T, norm, 0, dim=784)
    xs, ys = datasets.load_subset(n)
    x, y = datasets.to_float(xs), torch.as_tensor(ys).long()
    loaded = {m: models.load(m, device) for m in names}
    prob, correct = {}, {}
    for m, model in loaded.items():
        dev = next(model.parameters()).device
        with torch.no_grad():
            logits = torch.cat([model(x[i:i + 256].to(dev)).cpu() for i in range(0, len(x), 256)])
        p = torch.softmax(logits.double(), dim=1)
        prob[m] = p[torch.arange(len(y)), y].tolist()
        correct[m] = (p.argmax(1) == y).tolist()
    keep = [i for i in range(len(y)) if min_confidence is None
            or all(correct[m][i] and prob[m][i] > min_confidence for m in names)]
    total = max(len(keep) * len(names) * len(radii) * T, 1)
    report_progress(progress, "starting", 0, total, what="survey")
    ranges = {m: [] for m in names}
    wrong = {m: [] for m in names}
    for j, i in enumerate(keep):
        for q, (m, model) in enumerate(loaded.items()):
            base = (j * len(names) + q) * len(radii) * T

            def step(p: object, base: int = base, m: str = m, i: int = i) -> bool | None:
                report_progress(progress, f"{m}, image {i}", base + p.step, total, what="survey")
                return None

            rep = analyse(model, x[i:i + 1], radii=radii, T=T, probes=["isotropy"], norm=norm,
                          seed=image_seed(seed, i), label=int(y[i]) if min_confidence is not None else None,
                          score=score, progress=step)
            ranges[m].append(torch.tensor(rep.isotropy.range, dtype=torch.float64))
            wrong[m].append(rep.isotropy.misclassified.sum(1))
    empty = torch.zeros((0, len(radii)), dtype=torch.float64)
    out = Survey(models=names, score=score, radii=radii, T=T, norm=norm, seed=seed, min_confidence=min_confidence,
                 indices=list(range(len(y))), labels=y.tolist(), probability=prob, correct=correct, kept=keep,
                 ranges={m: torch.stack(v) if v else empty for m, v in ranges.items()},
                 misclassified={m: torch.stack(v) if v else empty.long() for m, v in wrong.items()})
    out.seconds = time.perf_counter() - t0
    report_progress(progress, "done", total, total, what="survey")
    return out


#: The Geometry page's default surveys, shipped (``python -m advcore geometry-survey --images 300
#: --min-confidence 0 --score S --json assets/geometry/survey-S.json``): fmnist-naive and fmnist-pgd on the first
#: 300 test images without the filter (the filter is applied on the page with :meth:`Survey.filtered`), T = 100,
#: radii 1/255 to 20/255, L-inf, seed 0.
SAVED_DIR = ASSETS / "geometry"


def saved_survey(model_names: Sequence[str], n: int, *, radii: Sequence[float], T: int, norm: str, seed: int,
                 score: str) -> tuple[Survey, str] | None:
    """A shipped unfiltered survey that answers these settings (its first ``n`` images, :meth:`Survey.head`) and
    its file name, or None."""
    name = f"survey-{score}.json"
    path = SAVED_DIR / name
    if score not in SCORES or not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    same = (d.get("models") == list(model_names) and d.get("T") == T and d.get("norm") == norm
            and d.get("seed") == seed and d.get("min_confidence") is None and len(d.get("radii", [])) == len(radii)
            and all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(d["radii"], radii, strict=False))
            and len(d.get("indices", [])) >= n)
    return (Survey.from_dict(d).head(n), name) if same else None


def saved_probe(model_name: str, image: str, *, radii: Sequence[float], T: int, layer: str, norm: str, seed: int,
                permutations: int, score: str,
                mantel_layers: Sequence[str] = ()) -> tuple[ImageGeometry, str] | None:
    """A shipped ``geometry all --points --json`` result (``assets/geometry/probe-*.json``) of ``model_name`` on
    the ``--image`` argument ``image`` with exactly these settings, and its file name, or None. The Geometry page
    ships its ImageNet default this way (a Lite0 probe takes longer than a page should make a person wait)."""
    for path in sorted(SAVED_DIR.glob("probe-*.json")):
        d = json.loads(path.read_text(encoding="utf-8"))
        m = d.get("mantel") or {}
        same = (d.get("model") == model_name and d.get("image") == image and d.get("T") == T
                and d.get("layer") == layer and d.get("norm") == norm and d.get("seed") == seed
                and m.get("permutations") == permutations and d.get("score") == score
                and [e["layer"] for e in m.get("layers", [])] == list(mantel_layers)
                and m.get("random_map") is not None and all(k in d for k in ("isotropy", "symmetry", "lipschitz"))
                and len(d.get("radii", [])) == len(radii)
                and all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(d["radii"], radii, strict=False)))
        if same:
            return ImageGeometry.from_dict(d), path.name
    return None
