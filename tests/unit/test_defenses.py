"""advcore.defenses: the Defense contract over every registered defense, halftones (error diffusion, ordered
dithering), BPDA, EOT. The Defense lab (evaluation, panels, ``defend``) is tested in test_defense.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from advcore import datasets, defenses, models
from advcore.errors import AdvlabError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIFFUSION = ("floyd-steinberg", "floyd-steinberg-numpy", "jarvis-judice-ninke", "stucki")


@pytest.fixture(scope="module")
def fmnist() -> torch.Tensor:
    x, _ = datasets.load_subset(20)
    return datasets.to_float(x)


def colour_image(seed: int = 0, size: int = 40) -> torch.Tensor:
    """A smooth colour image: a gradient per channel plus low-amplitude noise."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    x = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                     0.5 + 0.3 * torch.sin(6 * ramp)[None, :] * ramp[:, None]])
    return (x + 0.05 * torch.rand(3, size, size, generator=g)).clamp(0, 1)[None]


def scalar_error_diffusion(img: np.ndarray, method: str) -> np.ndarray:
    """Textbook raster-order error diffusion, one pixel at a time (the reference)."""
    h, w = img.shape
    buf = img.astype(np.float64).copy()
    out = np.zeros_like(buf)
    for i in range(h):
        for j in range(w):
            v = buf[i, j]
            q = 1.0 if v >= 0.5 else 0.0
            out[i, j] = q
            for di, dj, wt in defenses.KERNELS[method]:
                if 0 <= i + di < h and 0 <= j + dj < w:
                    buf[i + di, j + dj] += wt * (v - q)
    return out


# --------------------------------------------------------------------------- halftones


@pytest.mark.parametrize("method", list(defenses.METHODS))
def test_halftone_is_binary_per_channel(method, fmnist):
    for x in (fmnist, colour_image()):
        h = defenses.halftone(x, method)
        assert h.shape == x.shape and h.dtype == x.dtype
        assert set(torch.unique(h).tolist()) <= {0.0, 1.0}
        # a halftone of a halftone is itself (the defense is idempotent)
        assert torch.equal(defenses.halftone(h, method), h)


@pytest.mark.parametrize("method", DIFFUSION)
def test_error_diffusion_keeps_the_mean_intensity(method, fmnist):
    """Weights summing to 1: each image's (and each colour channel's) mean is kept up to the border."""
    h = defenses.halftone(fmnist, method)
    diff = (h.mean(dim=(1, 2, 3)) - fmnist.mean(dim=(1, 2, 3))).abs()
    assert float(diff.max()) < 0.02, diff
    c = colour_image()
    diff_c = (defenses.halftone(c, method).mean(dim=(2, 3)) - c.mean(dim=(2, 3))).abs()
    assert float(diff_c.max()) < 0.02, diff_c
    # ... while simple thresholding does not
    assert float(((fmnist >= 0.5).float().mean(dim=(1, 2, 3)) - fmnist.mean(dim=(1, 2, 3))).abs().max()) > 0.05


def test_kernel_weights():
    sums = {m: sum(w for _, _, w in k) for m, k in defenses.KERNELS.items()}
    assert sums["floyd-steinberg"] == pytest.approx(1.0)
    assert sums["jarvis-judice-ninke"] == pytest.approx(1.0)
    assert sums["stucki"] == pytest.approx(1.0)
    assert sums["atkinson"] == pytest.approx(0.75)  # Atkinson diffuses 3/4 of the error by design


@pytest.mark.parametrize("method", list(defenses.KERNELS))
def test_wavefront_error_diffusion_equals_the_scalar_reference(method):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 2, 13, 17, generator=g)
    got = defenses.error_diffusion(x, method).numpy()
    for n in range(2):
        for c in range(2):
            ref = scalar_error_diffusion(x[n, c].numpy(), method)
            np.testing.assert_array_equal(got[n, c], ref)


def test_pillow_floyd_steinberg_mostly_agrees_with_ours(fmnist):
    a = defenses.halftone(fmnist, "floyd-steinberg")
    b = defenses.halftone(fmnist, "floyd-steinberg-numpy")
    assert float((a == b).float().mean()) > 0.85  # Pillow works on 8-bit integers


def test_bayer_matrix():
    assert defenses.bayer_matrix(2).tolist() == [[0, 2], [3, 1]]
    for n in (4, 8, 16):
        m = defenses.bayer_matrix(n)
        assert sorted(m.flatten().tolist()) == list(range(n * n))
    with pytest.raises(AdvlabError):
        defenses.bayer_matrix(3)


@pytest.mark.parametrize("level", [0.0, 0.1, 0.25, 0.3, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("n", [4, 8])
def test_ordered_dithering_of_a_constant_image_gives_the_expected_density(level, n):
    x = torch.full((2, 3, 32, 32), level)
    expected = sum(1 for k in range(n * n) if (k + 0.5) / (n * n) < level) / (n * n)
    for method in ("bayer", "bayer-random"):
        h = defenses.Halftone(method, bayer_size=n)(x)
        assert h.mean(dim=(2, 3)).tolist() == [[expected] * 3] * 2


def test_random_bayer_draws_differ_and_reseed_repeats(fmnist):
    ht = defenses.Halftone("bayer-random", seed=5)
    a, b = ht(fmnist), ht(fmnist)
    assert not torch.equal(a, b)
    assert torch.equal(ht.reseed()(fmnist), a)
    assert torch.equal(defenses.Halftone("bayer")(fmnist), defenses.ordered_dither(fmnist, 8))


def test_bad_input_is_refused():
    with pytest.raises(AdvlabError, match="Unknown halftone"):
        defenses.Halftone("sepia")
    with pytest.raises(AdvlabError, match="batch"):
        defenses.halftone(torch.rand(28, 28))


# --------------------------------------------------------------------------- BPDA and EOT


def test_bpda_gradient_equals_the_identity_surrogates(fmnist):
    """d loss / d x through BPDA = the gradient of the straight-through surrogate h(x) + (x - stop_grad(x))."""
    model = models.load("fmnist-naive", "cpu")
    y = torch.arange(len(fmnist)) % 10
    ht = defenses.Halftone("floyd-steinberg")
    x1 = fmnist.clone().requires_grad_(True)
    loss1 = torch.nn.functional.cross_entropy(defenses.Defended(model, ht)(x1), y)
    (g1,) = torch.autograd.grad(loss1, x1)
    x2 = fmnist.clone().requires_grad_(True)
    surrogate = ht(x2) + (x2 - x2.detach())
    loss2 = torch.nn.functional.cross_entropy(model(surrogate), y)
    (g2,) = torch.autograd.grad(loss2, x2)
    assert torch.equal(g1, g2) and float(g1.abs().sum()) > 0
    # which is the model's own gradient evaluated at the halftone
    h = ht(fmnist).requires_grad_(True)
    (g3,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(h), y), h)
    assert torch.equal(g1, g3)
    # the true derivative of the halftone is zero: plain backpropagation sees no gradient at all
    x4 = fmnist.clone().requires_grad_(True)
    (g4,) = torch.autograd.grad(torch.nn.functional.cross_entropy(
        defenses.Defended(model, ht, bpda=False)(x4), y), x4)
    assert float(g4.abs().sum()) == 0.0


def test_eot_through_a_differentiable_defense_averages_each_draws_exact_gradient():
    """EOT over a randomised differentiable defense: the gradient of the mean logits is the mean over the same
    draws (the defense's own generator, in order) of each draw's exact gradient."""
    x = colour_image(size=12)[:, :1].repeat(2, 1, 1, 1)
    model = tiny_model(1, 12)
    w = torch.randn(2, 5, generator=torch.Generator().manual_seed(1))
    d = defenses.RandomResizePad(enlarge=0.5, seed=4)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((defenses.EOT(defenses.Defended(model, d), samples=3)(xg) * w).sum(), xg)
    d.reseed(4)
    per_draw = []
    for _ in range(3):
        xi = x.clone().requires_grad_(True)
        per_draw.append(torch.autograd.grad((model(d.forward(xi)) * w).sum(), xi)[0])
    torch.testing.assert_close(g, torch.stack(per_draw).mean(0))
    assert not torch.allclose(per_draw[0], per_draw[1])  # the draws differ, and so do their gradients


def test_eot_averages_the_logits_of_k_draws(fmnist):
    model = models.load("fmnist-naive", "cpu")
    eot = defenses.EOT(defenses.Defended(model, defenses.Halftone("bayer-random", seed=1)), samples=4)
    got = eot(fmnist)
    ht = defenses.Halftone("bayer-random", seed=1)
    with torch.no_grad():
        ref = torch.stack([model(ht(fmnist)) for _ in range(4)]).mean(0)
    torch.testing.assert_close(got, ref)
    with pytest.raises(AdvlabError):
        defenses.EOT(model, samples=0)


# --------------------------------------------------------------------------- the contract, for every registered defense

PRESETS = defenses.presets()  # key -> (defense name, parameters)
BAD = object()  # a value of no parameter's type


def test_the_package_registers_its_defenses():
    assert "halftone" in defenses.DEFENSES
    assert set(defenses.METHODS) <= set(PRESETS)
    for name, cls in defenses.DEFENSES.items():
        assert cls.name == name and cls.title and issubclass(cls, defenses.Defense)
    with pytest.raises(AdvlabError, match="Unknown defense"):
        defenses.get_defense("sepia")
    with pytest.raises(AdvlabError, match="no parameter"):
        defenses.get_defense("halftone", strength=3)


@pytest.mark.parametrize("name", list(defenses.DEFENSES))
def test_check_params_refuses_a_bad_value_of_every_declared_parameter(name):
    cls = defenses.DEFENSES[name]
    for f in dataclasses.fields(cls):
        for bad in (BAD, -1, "not a value"):
            with pytest.raises(AdvlabError):
                defenses.get_defense(name, **{f.name: bad})
    # a defense's own record builds it again
    d = defenses.get_defense(name)
    assert defenses.get_defense(name, **d.params()) == d


def tiny_model(channels: int, size: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channels * size * size, 5))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net.eval().requires_grad_(False)


@pytest.mark.parametrize("key", list(PRESETS))
def test_forward_keeps_shape_dtype_and_range(key, fmnist):
    name, params = PRESETS[key]
    d = defenses.get_defense(name, **params)
    for x in (fmnist[:4], colour_image(size=24)):
        out = d(x)
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert not out.requires_grad
    with pytest.raises(AdvlabError, match="batch"):
        d(torch.rand(8, 8))


@pytest.mark.parametrize("key", list(PRESETS))
def test_the_attackers_gradient_is_exact_where_declared_else_bpda(key):
    """A differentiable defense: d loss(model(D(x))) / dx is autograd's through D (Athalye et al. 2018 Sec. 4),
    not the identity's; otherwise (BPDA, identity estimate) it is d loss(model(z)) / dz at z = D(x)."""
    name, params = PRESETS[key]
    d = defenses.get_defense(name, **params)
    x = colour_image(size=12)[:, :2].repeat(3, 1, 1, 1)
    model = tiny_model(2, 12)
    y = torch.tensor([0, 1, 2])
    xg = x.clone().requires_grad_(True)
    d.reseed(3)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(defenses.Defended(model, d)(xg), y), xg)
    z = d.reseed(3)(x).requires_grad_(True)
    (ref,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(z), y), z)
    if d.differentiable:
        xe = x.clone().requires_grad_(True)
        (exact,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(d.reseed(3).forward(xe)), y), xe)
        assert torch.allclose(g, exact, atol=1e-7) and not torch.allclose(g, ref, atol=1e-3)
        # bpda=False (plain backpropagation through forward) is the same exact gradient
        xp = x.clone().requires_grad_(True)
        d.reseed(3)
        (plain,) = torch.autograd.grad(torch.nn.functional.cross_entropy(
            defenses.Defended(model, d, bpda=False)(xp), y), xp)
        assert torch.equal(plain, g)
    elif type(d).estimate_gradient is defenses.Defense.estimate_gradient:
        assert torch.equal(g, ref) and float(g.abs().sum()) > 0
    else:
        assert g.shape == x.shape and torch.isfinite(g).all()


@pytest.mark.parametrize("key", [k for k, (n, p) in PRESETS.items() if defenses.get_defense(n, **p).randomized])
def test_a_randomised_defense_is_reproducible_from_its_seed_and_leaves_the_global_rng_alone(key, fmnist):
    name, params = PRESETS[key]
    state = torch.random.get_rng_state()
    a = defenses.get_defense(name, **params, seed=11)
    first = a(fmnist)
    assert torch.equal(defenses.get_defense(name, **params, seed=11)(fmnist), first)
    assert torch.equal(a.reseed(11)(fmnist), first)
    assert not torch.equal(defenses.get_defense(name, **params, seed=12)(fmnist), first)
    assert not torch.equal(a(fmnist), first)  # the next call draws again
    assert torch.equal(torch.random.get_rng_state(), state)
    # the attacker's copy draws on its own
    b = a.reseed(11).spawn(12)
    assert b.seed == 12 and torch.equal(b(fmnist), defenses.get_defense(name, **params, seed=12)(fmnist))


def test_there_is_a_randomised_preset():
    assert any(defenses.get_defense(n, **p).randomized for n, p in PRESETS.values())


def test_defended_refuses_a_plain_function():
    with pytest.raises(AdvlabError, match="Defense"):
        defenses.Defended(tiny_model(1, 4), lambda x: x)  # type: ignore[arg-type]
