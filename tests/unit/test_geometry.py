"""advcore.labs.geometry against references: isotropic and scaling maps, a slow Mantel test, the identity's Lipschitz
ratio; and the ``geometry`` command line (JSON shape, same numbers as the library, bad input)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from advcore.cli.framework import load_image, main
from advcore.errors import AdvlabError, Cancelled
from advcore.labs import geometry

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (1, 6, 6)
DIM = 36


class NormScore(nn.Module):
    """Two logits ``[||y - c||_p, 0]``: the class-0 score depends on the distance from ``c`` only (isotropic at c)."""

    def __init__(self, centre: torch.Tensor, norm: str):
        super().__init__()
        self.register_buffer("centre", centre.reshape(1, -1))
        self.norm = norm
        self.head = nn.Linear(1, 1)  # gives the model a penultimate layer; unused for the scores

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        d = y.reshape(y.shape[0], -1) - self.centre
        dist = d.abs().amax(1) if self.norm == "linf" else d.norm(dim=1)
        return torch.stack([dist, torch.zeros_like(dist)], dim=1)


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.factor * y


def linear_model(seed: int = 0, scale: float = 1.0) -> nn.Module:
    """Flatten -> Scale -> Linear: the penultimate activation is ``scale`` times the input itself."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), Scale(scale), nn.Linear(DIM, 3))
    return m.eval().requires_grad_(False)


def image(seed: int = 0) -> torch.Tensor:
    return torch.rand((1, *SHAPE), generator=torch.Generator().manual_seed(seed))


RADII = [0.01, 0.05, 0.2, 0.5]


@pytest.mark.parametrize("norm", geometry.NORMS)
def test_an_isotropic_function_has_range_zero_at_every_radius(norm: str) -> None:
    x = image()
    rep = geometry.analyse(NormScore(x, norm), x, radii=RADII, T=50, probes=["isotropy", "symmetry"], norm=norm,
                           label=0)
    for probe in (rep.isotropy, rep.symmetry):
        assert probe.radii == RADII
        assert max(probe.range) < 1e-6, probe.range
        # ... while the score itself does move with the radius: sigmoid(r) is the class-0 probability
        expected = [1 / (1 + math.exp(-r)) for r in RADII]
        assert np.allclose(probe.mean, expected, atol=1e-6)
    # A linear model is not isotropic: its score varies along the sphere.
    lin = geometry.analyse(linear_model(), x, radii=RADII, T=50, probes=["isotropy"], norm=norm)
    assert min(lin.isotropy.range[1:]) > 1e-4


@pytest.mark.parametrize("norm", geometry.NORMS)
def test_directions_lie_on_the_sphere_and_symmetry_permutes_one_vector(norm: str) -> None:
    g = torch.Generator().manual_seed(3)
    v = geometry.isotropy_directions(DIM, 0.3, 20, g, norm)
    length = v.abs().amax(1) if norm == "linf" else v.norm(dim=1)
    assert torch.allclose(length, torch.full((20,), 0.3), atol=1e-6)
    assert v.abs().max() <= 0.3 + 1e-6
    assert torch.unique(v, dim=0).shape[0] == 20  # T different directions
    s = geometry.symmetry_directions(DIM, 0.3, 20, g, norm)
    sorted_rows = s.sort(dim=1).values
    assert torch.equal(sorted_rows, sorted_rows[:1].expand_as(sorted_rows))  # the same values in every row
    assert torch.unique(s, dim=0).shape[0] == 20  # in different places


def test_same_seed_same_points_for_every_model() -> None:
    x = image()
    a = geometry.analyse(linear_model(0), x, radii=RADII, T=10, probes=["mantel"], seed=5, permutations=0)
    b = geometry.analyse(linear_model(1), x, radii=RADII, T=10, probes=["mantel"], seed=5, permutations=0)
    c = geometry.analyse(linear_model(0), x, radii=RADII, T=10, probes=["mantel"], seed=6, permutations=0)
    assert torch.equal(a.topology.d_input, b.topology.d_input)
    assert not torch.equal(a.topology.d_input, c.topology.d_input)


@pytest.mark.parametrize("layer", ["penultimate", "1"])
def test_a_scaling_map_keeps_the_topology_mantel_r_is_one(layer: str) -> None:
    x = image()
    rep = geometry.analyse(linear_model(scale=2.5), x, radii=RADII, T=12, probes=["mantel"], layer=layer,
                           permutations=199)
    topo = rep.topology
    assert topo.layer == layer
    assert torch.allclose(topo.d_layer, 2.5 * topo.d_input, rtol=1e-5, atol=1e-9)
    for t in topo.tests:
        assert t.r == pytest.approx(1.0, abs=1e-9)
        assert t.p_value == pytest.approx(1 / 200)  # no reordering of 12 points reaches r = 1 again
    # An elementwise non-linear layer (ReLU of a random affine map) does not keep it.
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 3)).eval().requires_grad_(False)
    rep = geometry.analyse(m, x, radii=[0.5], T=30, probes=["mantel"], layer="1", permutations=0)
    assert rep.topology.tests[0].r < 0.99


def slow_mantel(d1: np.ndarray, d2: np.ndarray, perms: np.ndarray) -> tuple[float, float]:
    """The textbook Mantel test, one permutation at a time, with numpy."""
    iu = np.triu_indices(d1.shape[0], k=1)
    r = float(np.corrcoef(d1[iu], d2[iu])[0, 1])
    hits = 0
    for p in perms:
        rp = np.corrcoef(d1[iu], d2[np.ix_(p, p)][iu])[0, 1]
        hits += abs(rp) >= abs(r) - 1e-12
    return r, (1 + hits) / (len(perms) + 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mantel_agrees_with_a_reference_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 14
    pts = rng.normal(size=(n, 5))
    pts2 = pts + rng.normal(scale=[0.3, 1.0, 3.0][seed], size=(n, 5))  # from strongly to barely related
    d1 = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    d2 = np.linalg.norm(pts2[:, None] - pts2[None], axis=2)
    res = geometry.mantel(torch.from_numpy(d1), torch.from_numpy(d2), permutations=499,
                          generator=torch.Generator().manual_seed(seed), chunk=64)
    iu = np.triu_indices(n, k=1)
    assert res.r == pytest.approx(stats.pearsonr(d1[iu], d2[iu]).statistic, abs=1e-12)
    perms = geometry.mantel_permutations(n, 499, torch.Generator().manual_seed(seed)).numpy()
    r_ref, p_ref = slow_mantel(d1, d2, perms)
    assert res.r == pytest.approx(r_ref, abs=1e-12)
    assert res.p_value == pytest.approx(p_ref, abs=1e-15)
    assert res.n == n and res.permutations == 499
    assert res.to_dict()["p_value"] == res.p_value
    if seed == 0:
        assert res.p_value < 0.01
    assert geometry.mantel(torch.from_numpy(d1), torch.from_numpy(d2), permutations=0).p_value is None


def test_mantel_rejects_bad_matrices() -> None:
    with pytest.raises(AdvlabError):
        geometry.mantel(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(AdvlabError):
        geometry.mantel(torch.zeros(2, 2), torch.zeros(2, 2))
    res = geometry.mantel(torch.zeros(4, 4), torch.rand(4, 4), permutations=9)  # constant: r undefined
    assert math.isnan(res.r) and res.to_dict()["r"] is None


def test_the_identity_map_has_lipschitz_ratio_one() -> None:
    model = linear_model()  # penultimate = the flattened input
    fit = torch.rand((50, *SHAPE), generator=torch.Generator().manual_seed(9))
    norms = geometry.fit_normalisers(model, fit)
    assert (norms.h.lo, norms.h.hi) == (norms.g.lo, norms.g.hi) == (float(fit.min()), float(fit.max()))
    rep = geometry.analyse(model, image(), radii=RADII, T=20, probes=["lipschitz"], normalisers=norms)
    lip = rep.lipschitz
    assert lip.dx.shape == (len(RADII) * 20,)
    assert torch.allclose(lip.ratio, torch.ones_like(lip.ratio), atol=1e-6)
    assert lip.linear[0] == pytest.approx(1.0, abs=1e-5) and lip.linear[1] == pytest.approx(0.0, abs=1e-6)
    # dx is the normalised input distance: ||v||_2 / (max - min)
    assert torch.allclose(lip.radius.unique(), torch.tensor(RADII, dtype=torch.float64))


def test_lipschitz_of_a_contraction_and_its_fits() -> None:
    model = linear_model(scale=0.5)  # halves every distance at the penultimate layer
    fit = torch.rand((50, *SHAPE), generator=torch.Generator().manual_seed(9))
    norms = geometry.fit_normalisers(model, fit)
    assert norms.g.hi == pytest.approx(0.5 * norms.h.hi)
    rep = geometry.analyse(model, image(), radii=RADII, T=10, probes=["lipschitz"], normalisers=norms)
    # Normalised by their own ranges, a pure scaling cancels out: the ratio is still 1.
    assert torch.allclose(rep.lipschitz.ratio, torch.ones(40, dtype=torch.float64), atol=1e-6)
    # Fits recover a known quadratic exactly.
    dx = torch.linspace(0.1, 2.0, 30, dtype=torch.float64)
    lip = geometry.Lipschitz(dx.clone(), dx, 0.5 * dx ** 2 - dx + 2, norms)
    assert np.allclose(lip.quadratic, [0.5, -1.0, 2.0])
    assert lip.share_below_1 == pytest.approx(float(((0.5 * dx ** 2 - dx + 2) / dx < 1).double().mean()))
    d = lip.to_dict(points=True)
    json.dumps(d, allow_nan=False)
    assert len(d["dx"]) == 30


def test_report_to_dict_is_json_and_counts_misclassified_points() -> None:
    x = image()
    model = linear_model()
    norms = geometry.fit_normalisers(model, torch.rand((20, *SHAPE)))
    rep = geometry.analyse(model, x, radii=[0.01, 1.0], T=40, normalisers=norms, permutations=19)
    d = rep.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d) >= {"isotropy", "symmetry", "mantel", "lipschitz", "clean_class", "radii"}
    with torch.no_grad():
        k = int(model(x).argmax(1))
    assert d["clean_class"] == k
    # At radius 1 (the whole pixel range) a random linear model changes its mind somewhere.
    assert d["isotropy"]["any_misclassified"] == [False, True]
    assert 0 < d["isotropy"]["misclassified"][1] < 40
    assert len(d["mantel"]["r"]) == 2 and len(d["isotropy"]["range"]) == 2
    full = rep.to_dict(points=True)
    assert np.array(full["mantel"]["d_input"]).shape == (2, 40, 40)
    assert np.array(full["isotropy"]["scores"]).shape == (2, 40)


def test_progress_reports_and_cancels() -> None:
    seen: list[float] = []
    geometry.analyse(linear_model(), image(), radii=RADII, T=10, probes=["isotropy", "symmetry"],
                     progress=lambda p: seen.append(p.fraction))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        geometry.analyse(linear_model(), image(), radii=RADII, T=10, probes=["isotropy"],
                         progress=lambda p: p.fraction > 0.3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(radii=[]), "at least one radius"),
    (dict(radii=[0.1, -0.1]), "positive"),
    (dict(radii=[0.1, 0.1]), "twice"),
    (dict(radii=[float("nan")]), "positive finite"),
    (dict(T=1), "T"),
    (dict(norm="l1"), "norm"),
    (dict(probes=["nope"]), "Unknown probe"),
    (dict(probes=["lipschitz"]), "normalisers"),
    (dict(layer="bogus", probes=["mantel"]), "no layer named"),
])
def test_bad_parameters_get_clear_errors(kwargs: dict, message: str) -> None:
    args = dict(radii=RADII, T=5)
    args.update(kwargs)
    with pytest.raises(AdvlabError, match=message):
        geometry.analyse(linear_model(), image(), **args)


def test_points_at_a_radius_do_not_depend_on_the_other_radii() -> None:
    x = image()
    a = geometry.analyse(linear_model(), x, radii=[0.05, 0.2], T=10, probes=["isotropy", "symmetry", "mantel"],
                         seed=3, permutations=19)
    b = geometry.analyse(linear_model(), x, radii=[0.2, 0.01, 0.3], T=10, probes=["isotropy", "symmetry", "mantel"],
                         seed=3, permutations=19)
    assert torch.equal(a.isotropy.scores[1], b.isotropy.scores[0])
    assert torch.equal(a.symmetry.scores[1], b.symmetry.scores[0])
    assert torch.equal(a.topology.d_input[1], b.topology.d_input[0])
    assert a.topology.tests[1].p_value == b.topology.tests[0].p_value
    # ... and the generator is the one named by (seed, probe, radius)
    v = geometry.isotropy_directions(DIM, 0.2, 10, geometry.generator_for(3, "isotropy", 0.2))
    assert torch.allclose(geometry.distance_matrix(v), a.topology.d_input[1])
    assert geometry.generator_for(3, "isotropy", 0.2).initial_seed() != geometry.generator_for(
        3, "isotropy", 0.2 + 1e-12).initial_seed()


def test_scores_are_the_softmax_its_log_and_the_logit_margin() -> None:
    z = torch.tensor([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    p = np.exp(z.numpy()) / np.exp(z.numpy()).sum(1, keepdims=True)
    assert np.allclose(geometry.class_scores(z, 0, "softmax").numpy(), p[:, 0])
    assert np.allclose(geometry.class_scores(z, 0, "log-prob").numpy(), np.log(p[:, 0]))
    assert np.allclose(geometry.class_scores(z, 0, "margin").numpy(), [1.5, -3.0])
    with pytest.raises(AdvlabError, match="score must be one of"):
        geometry.class_scores(z, 0, "logit")
    # A saturated softmax hides a spread the margin shows: logits (30 + t, 0) for t in [0, 1].
    sat = torch.stack([30 + torch.linspace(0, 1, 5), torch.zeros(5)], dim=1)
    soft = geometry.class_scores(sat, 0, "softmax")
    assert float(soft.max() - soft.min()) < 1e-12
    marg = geometry.class_scores(sat, 0, "margin")
    assert float(marg.max() - marg.min()) == pytest.approx(1.0)
    rep = geometry.analyse(linear_model(), image(), radii=RADII, T=10, probes=["isotropy"], score="margin")
    assert rep.isotropy.score == "margin" and rep.to_dict()["isotropy"]["unit"] == "logits"


def test_the_random_map_null_and_the_layer_sweep() -> None:
    x = image()
    # Penultimate = 2.5 x the input: r = 1 there and at the Scale layer, and the random linear map is an
    # independent reference computed here with the same generator.
    rep = geometry.analyse(linear_model(scale=2.5), x, radii=[0.1, 0.4], T=15, probes=["mantel"], permutations=0,
                           mantel_layers=["penultimate", "1", "2"], seed=2)
    topo = rep.topology
    assert topo.layer_r["penultimate"] == pytest.approx([1.0, 1.0]) and topo.layer_r["1"] == pytest.approx([1, 1])
    assert topo.layer_dims == {"penultimate": DIM, "1": DIM, "2": 3}
    assert topo.null_dim == DIM
    g = geometry.generator_for(2, "random-map")
    w = torch.randn((DIM, DIM), generator=g, dtype=torch.float32).double().numpy()
    for i, r in enumerate([0.1, 0.4]):
        v = geometry.isotropy_directions(DIM, r, 15, geometry.generator_for(2, "isotropy", r)).double().numpy()
        d_in = np.linalg.norm(v[:, None] - v[None], axis=2)
        y = v @ w
        d_out = np.linalg.norm(y[:, None] - y[None], axis=2)
        iu = np.triu_indices(15, k=1)
        assert topo.null_r[i] == pytest.approx(stats.pearsonr(d_in[iu], d_out[iu]).statistic, abs=1e-9)
        assert topo.null_r[i] < 0.95  # a random linear map does not keep the topology of these points
    d = topo.to_dict()
    assert d["random_map"]["output_dim"] == DIM and [e["layer"] for e in d["layers"]] == ["penultimate", "1", "2"]
    # Chunked generation is the same map: a chunk of 7 rows gives the same product as one of 4096.
    pts = torch.rand((4, DIM), generator=torch.Generator().manual_seed(0))
    a = geometry.random_map(pts, 5, torch.Generator().manual_seed(1), chunk=DIM)
    b = geometry.random_map(pts, 5, torch.Generator().manual_seed(1), chunk=36)
    assert torch.allclose(a, b)
    # Above the dense limit: a very sparse projection with k = round(sqrt(D)) = 6 signed entries per column.
    eye = geometry.random_map(torch.eye(DIM), 5, torch.Generator().manual_seed(1), dense_limit=0)  # = W itself
    assert ((eye != 0).sum(0) <= 6).all() and (eye != 0).sum() >= 5
    units = eye[eye != 0].abs() / math.sqrt(DIM / 6 / 5)  # a row drawn twice for a column adds up
    assert torch.allclose(units, units.round()) and (units.round() == 1).float().mean() > 0.5
    sparse = geometry.random_map(pts, 5, torch.Generator().manual_seed(1), dense_limit=0)
    assert torch.allclose(sparse, pts.double() @ eye)
    assert geometry.sweep_layers(linear_model()) == ["penultimate", "0", "1", "2"]


def test_global_baseline_pairs_and_ratios() -> None:
    assert geometry.baseline_pairs(4).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert geometry.baseline_pairs(10, max_pairs=3).tolist() == [[0, 1], [2, 3], [4, 5]]
    model = linear_model(scale=0.5)
    fit = torch.rand((6, *SHAPE), generator=torch.Generator().manual_seed(9))
    norms = geometry.fit_normalisers(model, fit)
    h = (fit.reshape(6, -1).double() - fit.min()) / (fit.max() - fit.min())
    i, j = 1, 4  # any pair: dx is the distance of the min-max normalised images
    k = geometry.baseline_pairs(6).tolist().index([i, j])
    assert float(norms.baseline.dx[k]) == pytest.approx(float((h[i] - h[j]).norm()))
    assert torch.allclose(norms.baseline.ratio, torch.ones(15, dtype=torch.float64))  # a scaling: ratio 1
    d = geometry.Lipschitz(torch.ones(3), torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                           norms).to_dict()
    assert d["global_baseline"]["pairs"] == 15 and d["global_baseline"]["share_ratio_below_1"] == 0.0


def test_survey_keeps_confident_images_and_reuses_each_images_points() -> None:
    s = geometry.survey(["fmnist-naive", "fmnist-pgd"], 12, radii=[2 / 255, 10 / 255], T=6, seed=1, device="cpu")
    assert s.indices == list(range(12)) and s.kept
    for i in s.kept:
        assert all(s.correct[m][i] and s.probability[m][i] > 0.99 for m in s.models)
    for i in set(s.indices) - set(s.kept):
        assert not all(s.correct[m][i] and s.probability[m][i] > 0.99 for m in s.models)
    # Row j is analyse() on image kept[j] with image_seed(seed, kept[j]), the true class and the same score.
    from advcore import datasets, models
    x, y = datasets.load_subset(12)
    j = len(s.kept) - 1
    i = s.kept[j]
    ref = geometry.analyse(models.load("fmnist-pgd", "cpu"), datasets.to_float(x)[i:i + 1], radii=[2 / 255, 10 / 255],
                           T=6, probes=["isotropy"], seed=geometry.image_seed(1, i), label=int(y[i]))
    assert s.ranges["fmnist-pgd"][j].tolist() == pytest.approx(ref.isotropy.range, rel=1e-12)
    med = s.median_range("fmnist-naive")
    assert med == pytest.approx(np.median(s.ranges["fmnist-naive"].numpy(), axis=0).tolist() if len(s.kept) % 2
                                else med)  # torch's median is the lower middle value for an even count
    d = s.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["image_seeds"][j] == geometry.image_seed(1, i) and d["min_confidence"] == 0.99
    everything = geometry.survey(["fmnist-naive"], 5, radii=[2 / 255], T=4, min_confidence=0, device="cpu")
    assert everything.kept == [0, 1, 2, 3, 4] and everything.min_confidence is None
    with pytest.raises(AdvlabError, match="not a Fashion-MNIST model"):
        geometry.survey(["efficientnet-lite0"], 5, radii=[0.1], T=4)
    with pytest.raises(AdvlabError, match="min confidence"):
        geometry.survey(["fmnist-naive"], 5, radii=[0.1], T=4, min_confidence=1.0)


def test_an_unfiltered_survey_filtered_and_cut_equals_a_new_run() -> None:
    """Survey.filtered and Survey.head (the page's threshold and N) give exactly the numbers of a survey run with
    that filter on that many images, and the JSON round trip keeps every number."""
    kw = dict(radii=[2 / 255, 10 / 255], T=5, seed=3, score="margin", device="cpu")
    names = ["fmnist-naive", "fmnist-pgd"]
    everything = geometry.Survey.from_dict(json.loads(json.dumps(
        geometry.survey(names, 14, min_confidence=0, **kw).to_dict())))
    direct = geometry.survey(names, 10, min_confidence=0.999, **kw)
    derived = everything.head(10).filtered(0.999)
    assert derived.kept == direct.kept and derived.kept and len(derived.kept) < 10
    a, b = derived.to_dict(), direct.to_dict()
    for key in ("kept", "correct", "min_confidence", "image_seeds", "indices"):
        assert a[key] == b[key], key
    for m in names:
        assert torch.equal(derived.ranges[m], direct.ranges[m])
        assert a["per_model"][m]["median_image_range"] == b["per_model"][m]["median_image_range"]
    med = [float(np.median(direct.ranges[m].numpy(), axis=1).tolist()[0]) for m in names]  # numpy's median, 2 radii
    assert direct.image_medians("fmnist-naive")[0] == pytest.approx(med[0], rel=1e-12)
    smaller = np.mean(np.median(direct.ranges["fmnist-pgd"].numpy(), 1) < np.median(direct.ranges["fmnist-naive"]
                                                                                    .numpy(), 1))
    assert b["per_model"]["fmnist-pgd"]["share_smaller_than"]["fmnist-naive"] == pytest.approx(smaller)
    with pytest.raises(AdvlabError, match="lower threshold"):
        direct.filtered(0.9)
    with pytest.raises(AdvlabError, match="first 20"):
        everything.head(20)


SHIPPED_SURVEY_SCORES = tuple(geometry.SCORES)  # softmax, log-prob, margin


def test_the_shipped_surveys_answer_the_page_default() -> None:
    """The page's default survey (fmnist-naive and fmnist-pgd, 300 images, T = 100, 1/255 to 20/255) is shipped
    unfiltered for these scores, and its first images agree with a fresh run on them."""
    radii = geometry.parse_radii(geometry.DEFAULT_RADII)
    for score in SHIPPED_SURVEY_SCORES:
        hit = geometry.saved_survey(["fmnist-naive", "fmnist-pgd"], 300, radii=radii, T=100, norm="linf", seed=0,
                                    score=score)
        assert hit is not None, score
        assert hit[0].min_confidence is None and len(hit[0].indices) == 300 and hit[0].score == score
    assert geometry.saved_survey(["fmnist-naive", "fmnist-pgd"], 300, radii=radii, T=50, norm="linf", seed=0,
                                 score="softmax") is None
    first = geometry.saved_survey(["fmnist-naive", "fmnist-pgd"], 2, radii=radii, T=100, norm="linf", seed=0,
                                  score="softmax")[0]
    fresh = geometry.survey(["fmnist-naive", "fmnist-pgd"], 2, radii=radii[:3], T=100, seed=0, score="softmax",
                            min_confidence=0, device="cpu")
    for m in fresh.models:  # the radii are seeded one by one, so the first three radii agree alone
        # rel 1e-4: the shipped file was computed on another CPU, whose float32 sums differ in the 5th digit (3.6e-5)
        assert fresh.ranges[m].numpy() == pytest.approx(first.ranges[m][:, :3].numpy(), rel=1e-4)


def test_the_survey_sentence_says_when_the_filter_reverses_the_reading() -> None:
    from ui.views import geometry as gv

    filt = gv.SurveyReading("filtered (softmax > 0.99)", 65, 300, 3.37e-5, 6.23e-4, 0.17)
    same = gv.SurveyReading("unfiltered", 300, 300, 9.94e-3, 1.13e-2, 0.53)
    text = gv.survey_sentence(filt, same, "naive", "pgd", 0.99, "softmax probability")
    assert "65 of 300 test images" in text and "is 18.5 times naive's (6.23e-04 against 3.37e-05)" in text
    assert "Both readings agree: the naive model" in text and "In the unfiltered reading the median" in text
    other = gv.SurveyReading("unfiltered", 300, 300, 1e-2, 5e-3, 0.7)
    text = gv.survey_sentence(filt, other, "naive", "pgd", 0.99, "softmax probability")
    assert "2 times smaller than naive's" in text and "The filter reverses the reading" in text
    assert "point opposite" not in text
    empty = gv.SurveyReading("filtered", 0, 300, math.nan, math.nan, math.nan)
    assert "no image passes" in gv.survey_sentence(empty, other, "naive", "pgd", 0.99, "x")


# --------------------------------------------------------------------------- the command line


def test_cli_json_has_every_probe_and_matches_the_library(tmp_path, capsys) -> None:
    out = tmp_path / "sub" / "geo.json"
    rc = main(["geometry", "all", "--model", "fmnist-naive", "--image", "fashion-mnist:3", "--T", "8",
               "--radii", "2/255,0.05", "--permutations", "49", "--seed", "4", "--fit-images", "200",
               "--json", str(out), "-q"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "mantel r" in captured.out and "lipschitz" in captured.out
    d = json.loads(out.read_text())
    assert d["model"] == "fmnist-naive" and d["T"] == 8 and d["radii"] == [2 / 255, 0.05]
    assert d["layer"] == "penultimate" and d["norm"] == "linf" and d["image"] == "fashion-mnist:3"
    for key in ("range", "mean_score", "misclassified", "any_misclassified"):
        assert len(d["isotropy"][key]) == 2 and len(d["symmetry"][key]) == 2
    assert len(d["mantel"]["r"]) == 2 and len(d["mantel"]["p_value"]) == 2
    assert d["lipschitz"]["points"] == 16 and 0 <= d["lipschitz"]["share_ratio_below_1"] <= 1
    assert d["lipschitz"]["normalisers"]["samples"] == 200
    lib = geometry.probe_image("fmnist-naive", load_image("fashion-mnist:3"), radii=[2 / 255, 0.05], T=8,
                               permutations=49, seed=4, fit_images=200, device="cpu", mantel_layers="all").to_dict()
    for part in ("isotropy", "symmetry", "mantel"):
        for key, value in lib[part].items():
            if key not in ("layers", "random_map", "score", "unit"):
                assert d[part][key] == pytest.approx(value), (part, key)
    assert d["mantel"]["random_map"]["r"] == pytest.approx(lib["mantel"]["random_map"]["r"])
    assert d["score"] == "softmax" and d["isotropy"]["unit"] == "probability"
    # 28x28 models sweep every layer by default (--mantel-layers auto): the first conv layer keeps the arrangement
    # of the points far better than the penultimate layer.
    layers = {e["layer"]: e["r"] for e in d["mantel"]["layers"]}
    assert layers["penultimate"] == pytest.approx(d["mantel"]["r"])
    assert np.allclose([e["r"] for e in d["mantel"]["layers"]], [e["r"] for e in lib["mantel"]["layers"]])
    assert min(layers["net.features.0"]) > 0.8
    assert d["lipschitz"]["ratio_median"] == pytest.approx(lib["lipschitz"]["ratio_median"])


def test_cli_single_probe_to_stdout_with_points(capsys) -> None:
    rc = main(["geometry", "isotropy", "--model", "fmnist-pgd", "--image", "fashion-mnist:0", "--T", "5",
               "--radii", "0.01:0.03:0.01", "--norm", "l2", "--points", "--json", "-", "-q"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) >= {"isotropy"} and "mantel" not in d and "symmetry" not in d
    assert np.array(d["isotropy"]["scores"]).shape == (3, 5)
    assert d["clean_name"] and d["norm"] == "l2"


def test_cli_survey_json_matches_the_library(capsys) -> None:
    rc = main(["geometry-survey", "--images", "8", "--T", "5", "--radii", "3/255", "--score", "log-prob",
               "--seed", "2", "--json", "-", "-q"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    lib = geometry.survey(["fmnist-naive", "fmnist-pgd"], 8, radii=[3 / 255], T=5, seed=2, score="log-prob",
                          device="cpu").to_dict()
    assert d["kept"] == lib["kept"] and d["score"] == "log-prob" and d["unit"] == "nats"
    for m in ("fmnist-naive", "fmnist-pgd"):
        assert d["per_model"][m]["median_range"] == pytest.approx(lib["per_model"][m]["median_range"])
    assert main(["geometry-survey", "--models", "fmnist-naive,nope", "--images", "2", "-q"]) == 2
    assert main(["geometry-survey", "--min-confidence", "1.5", "-q"]) == 2


@pytest.mark.parametrize("argv", [
    ["--radii", "0,0.1"],
    ["--radii", "0.1:0.05:0.01"],
    ["--radii", "abc"],
    ["--T", "1"],
    ["--T", "5000"],
    ["--layer", "bogus"],
    ["--norm", "l1"],
    ["--permutations", "-1"],
    ["--image", "no-such-image"],
    ["--model", "no-such-model"],
    ["--score", "logit"],
    ["--mantel-layers", "bogus"],
])
def test_cli_bad_input_exits_2_with_one_line(argv: list[str], capsys) -> None:
    base = {"--model": "fmnist-naive", "--image": "fashion-mnist:0", "--T": "5", "--radii": "0.01"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = value
    args = ["geometry", "mantel"] + [w for kv in base.items() for w in kv] + ["-q"]
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("advcore: error:"), err
