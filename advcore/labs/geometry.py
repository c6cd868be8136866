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

``Phi`` is the softmax probability of the clean class (the class the model predicts for ``x``, or a
given label). Distances are measured with ``norm``: ``"linf"`` (default) puts every element of ``v``
in ``[-r, r]``, the paper's ``v in [-eps, eps]^D`` with radii in pixels (``eps, 1, ..., 20``, i.e.
``k/255`` here); ``"l2"`` is the Euclidean sphere. Points are not clipped to ``[0, 1]``: the paper
probes the function, and clipping would move points off the sphere. Every draw comes from one seeded
``torch.Generator`` on the CPU, so two models with the same input size see exactly the same points.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from advcore import features
from advcore.errors import AdvlabError
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


def parse_radii(text: str) -> list[float]:
    """Radii as typed: a range ``1/255:20/255:1/255``, a list ``0.01,0.05`` or one value; every radius positive."""
    return parse_eps_list(text, name="radius", allow_zero=False, high=MAX_L2)


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


def class_scores(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``Phi``: the softmax probability of class ``k``, computed in float64 (so ranges below 1e-7 survive)."""
    return torch.log_softmax(logits.double(), dim=1)[:, k].exp()


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


@dataclass
class Normalisers:
    """``h`` (input) and ``g`` (layer ``phi``) of Eq. 9, fitted on ``samples`` images."""

    h: MinMax
    g: MinMax
    layer: str
    samples: int
    source: str = ""

    def to_dict(self) -> dict:
        return {"h": self.h.to_dict(), "g": self.g.to_dict(), "layer": self.layer, "samples": self.samples,
                "source": self.source}


def fit_normalisers(model: nn.Module, images: torch.Tensor, layer: str | None = None, *, batch_size: int = 64,
                    source: str = "") -> Normalisers:
    """Eq. 9's ``h`` and ``g``: min and max of the input values and of the layer's activations over ``images``."""
    layer = features.check_layer(model, layer)
    if images.shape[0] < 1:
        raise AdvlabError("The normalisers need at least one image.")
    device = next(model.parameters()).device
    acts = features.extract(model, images.to(device), layer, batch_size=batch_size)
    return Normalisers(h=fit_minmax(images), g=fit_minmax(acts), layer=layer, samples=int(images.shape[0]),
                       source=source)


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
        out = {"kind": self.kind, "radii": self.radii, "range": [_f(v) for v in self.range],
               "mean_score": [_f(v) for v in self.mean], "min_score": [_f(v) for v in self.scores.amin(1).tolist()],
               "max_score": [_f(v) for v in self.scores.amax(1).tolist()],
               "misclassified": self.misclassified.sum(1).tolist(), "any_misclassified": self.any_misclassified}
        if points:
            out["scores"] = [[_f(v) for v in row] for row in self.scores.tolist()]
        return out


@dataclass
class Topology:
    """Distance matrices of the Eq. 4 points in input space and at ``layer``, and their Mantel tests."""

    radii: list[float]
    layer: str
    d_input: torch.Tensor  # (R, T, T) float64
    d_layer: torch.Tensor  # (R, T, T) float64
    tests: list[MantelResult]

    def to_dict(self, matrices: bool = False) -> dict:
        out = {"radii": self.radii, "layer": self.layer, "r": [t.to_dict()["r"] for t in self.tests],
               "p_value": [t.to_dict()["p_value"] for t in self.tests],
               "permutations": self.tests[0].permutations if self.tests else 0,
               "points": int(self.d_input.shape[1])}
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
               "linear_fit": self.linear, "quadratic_fit": self.quadratic}
        if points:
            out.update(radius=self.radius.tolist(), dx=self.dx.tolist(), dy=self.dy.tolist())
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

    def to_dict(self, points: bool = False) -> dict:
        """JSON-safe dict; ``points=True`` adds every score, distance matrix and Lipschitz pair."""
        out = {"clean_class": self.clean_class, "clean_score": _f(self.clean_score), "norm": self.norm, "T": self.T,
               "seed": self.seed, "layer": self.layer, "radii": self.radii, "input_dim": self.input_dim,
               "layer_dim": self.layer_dim, "seconds": round(self.seconds, 3)}
        for name in ("isotropy", "symmetry", "lipschitz"):
            part = getattr(self, name)
            if part is not None:
                out[name] = part.to_dict(points)
        if self.topology is not None:
            out["mantel"] = self.topology.to_dict(points)
        return out


# --------------------------------------------------------------------------- the probes


def analyse(model: nn.Module, x: torch.Tensor, *, radii: Sequence[float], T: int = 100,
            probes: Sequence[str] = PROBES, layer: str | None = None, norm: str = "linf", seed: int = 0,
            label: int | None = None, permutations: int = DEFAULT_PERMUTATIONS,
            normalisers: Normalisers | None = None, batch_size: int = 128,
            progress: ProgressFn | None = None) -> GeometryReport:
    """Run the chosen ``probes`` around the image ``x`` (1, C, H, W) in ``[0, 1]``.

    ``isotropy``, ``mantel`` and ``lipschitz`` share the same Eq. 4 points (one forward pass each);
    ``symmetry`` draws its own (Eq. 6). ``lipschitz`` needs ``normalisers`` (:func:`fit_normalisers`).
    ``label``: the class whose score is probed (default: the model's prediction for ``x``).
    """
    t0 = time.perf_counter()
    probes = list(dict.fromkeys(probes))
    unknown = [p for p in probes if p not in PROBES]
    if unknown or not probes:
        raise AdvlabError(f"Unknown probe {unknown[0] if unknown else ''!r}; choose from {', '.join(PROBES)}.")
    if x.dim() != 4 or x.shape[0] != 1:
        raise AdvlabError("Give one image as a (1, C, H, W) tensor.")
    radii = check_params(radii, T, norm, permutations, dim=x[0].numel())
    need_layer = "mantel" in probes or "lipschitz" in probes
    if "mantel" in probes and T < 3:
        raise AdvlabError("The Mantel test needs T of at least 3.")
    layer_name = features.check_layer(model, layer) if need_layer else (layer or features.PENULTIMATE)
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
    g_iso = torch.Generator().manual_seed(seed)
    g_sym = torch.Generator().manual_seed(seed + 1)
    g_mantel = torch.Generator().manual_seed(seed + 2)
    R = len(radii)
    sweeps = (int(any(p in probes for p in ("isotropy", "mantel", "lipschitz"))) + int("symmetry" in probes)) * R
    done = 0
    points = max(sweeps, 1) * T  # the unit of progress: one perturbed point through the model
    report_progress(progress, "starting", 0, points, what="geometry probe")

    def run_points(v: torch.Tensor, with_layer: bool, stage: str) -> tuple[torch.Tensor, ...]:
        nonlocal done
        scores, wrong, acts = [], [], []
        for start in range(0, T, batch_size):
            pts = x + v[start:start + batch_size].to(device).view(-1, *x.shape[1:])
            out, phi = forward(model, pts, layer_name if with_layer else None)
            scores.append(class_scores(out, k).cpu())
            wrong.append((out.argmax(1) != k).cpu())
            if phi is not None:
                acts.append(phi.cpu())
            report_progress(progress, stage, done * T + min(start + batch_size, T), points, what="geometry probe")
        done += 1
        return torch.cat(scores), torch.cat(wrong), (torch.cat(acts) if acts else None)  # type: ignore[return-value]

    iso_s, iso_w, d_in, d_out, tests, lip_r, lip_dx, lip_dy = [], [], [], [], [], [], [], []
    if any(p in probes for p in ("isotropy", "mantel", "lipschitz")):
        for r in radii:
            v = isotropy_directions(dim, r, T, g_iso, norm)
            s, w, acts = run_points(v, need_layer, f"isotropy r={r:g}")
            iso_s.append(s)
            iso_w.append(w)
            if "mantel" in probes:
                d_in.append(distance_matrix(v))
                d_out.append(distance_matrix(acts))
                tests.append(mantel(d_in[-1], d_out[-1], permutations=permutations, generator=g_mantel))
            if "lipschitz" in probes:
                assert normalisers is not None and acts is not None
                xv = (x.cpu().reshape(1, -1).double() + v.double())  # the points x + v, in float64
                lip_dx.append((normalisers.h(xv) - normalisers.h(x.cpu().reshape(1, -1))).norm(dim=1))
                lip_dy.append((normalisers.g(acts) - normalisers.g(phi_clean.cpu())).norm(dim=1))
                lip_r.append(torch.full((T,), r, dtype=torch.float64))
    report = GeometryReport(clean_class=k, clean_score=clean_score, norm=norm, T=T, seed=seed, layer=layer_name,
                            radii=radii, input_dim=dim,
                            layer_dim=int(phi_clean.shape[1]) if phi_clean is not None else None)
    if "isotropy" in probes:
        report.isotropy = ScoreProbe("isotropy", radii, torch.stack(iso_s), torch.stack(iso_w))
    if "mantel" in probes:
        report.topology = Topology(radii, layer_name, torch.stack(d_in), torch.stack(d_out), tests)
    if "lipschitz" in probes:
        assert normalisers is not None
        report.lipschitz = Lipschitz(torch.cat(lip_r), torch.cat(lip_dx), torch.cat(lip_dy), normalisers)
    if "symmetry" in probes:
        sym_s, sym_w = [], []
        for r in radii:
            s, w, _ = run_points(symmetry_directions(dim, r, T, g_sym, norm), False, f"symmetry r={r:g}")
            sym_s.append(s)
            sym_w.append(w)
        report.symmetry = ScoreProbe("symmetry", radii, torch.stack(sym_s), torch.stack(sym_w))
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


def probe_image(model_name: str, image, *, probes: Sequence[str] = PROBES, radii: Sequence[float],
                T: int = 100, layer: str | None = None, norm: str = "linf", seed: int = 0,
                permutations: int = DEFAULT_PERMUTATIONS, fit_images: int = DEFAULT_FIT_IMAGES,
                device: str | torch.device = "auto", progress: ProgressFn | None = None) -> ImageGeometry:
    """Load ``model_name``, prepare the PIL ``image`` for it and run :func:`analyse` (the page and the CLI)."""
    from advcore import data, models
    from advcore.device import describe

    spec = models.get_spec(model_name)
    check_params(radii, T, norm, permutations, dim=math.prod(spec.input_size))
    model = models.load(model_name, device)
    layer = features.check_layer(model, layer)
    x = data.prepare(image, spec.input_size)
    norms = normalisers_for(model_name, layer, device, fit_images) if "lipschitz" in probes else None
    report = analyse(model, x, radii=radii, T=T, probes=probes, layer=layer, norm=norm, seed=seed,
                     permutations=permutations, normalisers=norms, progress=progress)
    return ImageGeometry(model=model_name, title=spec.title, dataset=spec.dataset,
                         device=describe(next(model.parameters()).device),
                         class_name=spec.classes()[report.clean_class], report=report)
