"""advcore.defenses.preprocess: JPEG, bit depth, median smoothing and random resize-and-pad, each against an
independent reference (Pillow, numpy, scipy), and each defense's declared parameters refused when bad."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from PIL import Image

from advcore import defenses
from advcore.errors import AdvlabError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def images(c: int = 3, n: int = 2, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_bit_depth_against_numpy():
    x = images()
    for bits in (1, 3, 4, 8):
        ref = np.round(x.numpy().astype(np.float64) * (2 ** bits - 1)) / (2 ** bits - 1)
        out = defenses.get_defense("bit-depth", bits=bits)(x)
        assert np.abs(out.double().numpy() - ref).max() < 1e-6
        assert len(np.unique(out.numpy())) <= 2 ** bits
    # 8 bits: the 8-bit rounding of the pixels
    assert torch.allclose(defenses.BitDepth(bits=8)(x), torch.round(x * 255) / 255)


@pytest.mark.parametrize("window", [2, 3, 4, 5])
def test_median_against_scipy(window):
    x = images(c=2, h=9, w=7)
    out = defenses.MedianSmoothing(window=window)(x).numpy()
    ref = np.stack([[ndi.median_filter(x[i, j].numpy(), size=window, mode="reflect") for j in range(2)]
                    for i in range(2)])
    assert np.array_equal(out, ref)


def pillow_jpeg(arr: np.ndarray, mode: str, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_against_pillow(channels):
    x = images(c=channels, h=16, w=16)
    u8 = (x * 255).round().to(torch.uint8).numpy()
    out = defenses.JPEG(quality=30)(x)
    for i in range(x.shape[0]):
        if channels == 3:
            ref = pillow_jpeg(u8[i].transpose(1, 2, 0), "RGB", 30).transpose(2, 0, 1)
        else:
            ref = pillow_jpeg(u8[i, 0], "L", 30)[None]
        assert np.array_equal((out[i] * 255).round().to(torch.uint8).numpy(), ref)
    assert torch.equal(defenses.JPEG(quality=30)(x), out)  # deterministic
    assert not torch.equal(defenses.JPEG(quality=95)(x), out)


def test_resize_pad_shape_range_seed_and_draws():
    x = images(c=3, n=4, h=28, w=28)
    d = defenses.RandomResizePad(seed=3)
    assert d.randomized and d.extra(28) == 3
    a = d(x)
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1
    assert torch.equal(defenses.RandomResizePad(seed=3)(x), a)  # same seed, same draws
    assert not torch.equal(defenses.RandomResizePad(seed=4)(x), a)  # another seed, other draws
    assert not torch.equal(d(x), a)  # the next call draws again
    sizes, offsets = defenses.RandomResizePad(seed=0, enlarge=0.5).draw(500, 20)
    assert sizes.min() == 20 and sizes.max() == 30  # every side in [H, H + d]
    assert (offsets >= 0).all() and (offsets <= (30 - sizes)[:, None]).all()
    # no enlargement drawn and no padding: the image comes back as it was (up to float rounding)
    same = defenses.resize_pad(x, torch.full((4,), 28), torch.zeros(4, 2, dtype=torch.long), 28)
    assert torch.allclose(same, x, atol=1e-6)


@pytest.mark.parametrize(("name", "params", "fragment"), [
    ("jpeg", {"quality": 0}, "quality must be between 1 and 95"),
    ("jpeg", {"quality": 7.5}, "quality must be a whole number"),
    ("bit-depth", {"bits": 9}, "bits must be between 1 and 8"),
    ("median", {"window": 1}, "window must be between 2 and 11"),
    ("resize-pad", {"enlarge": 0}, "enlarge must be positive"),
    ("resize-pad", {"interpolation": "cubic"}, "interpolation must be one of nearest, bilinear"),
    ("jpeg", {"bits": 3}, "has no parameter bits"),
])
def test_bad_parameters_are_refused_with_a_plain_message(name, params, fragment):
    with pytest.raises(AdvlabError, match=fragment):
        defenses.get_defense(name, **params)


def test_every_defense_declares_its_fields_and_describes_itself():
    for name, cls in defenses.DEFENSES.items():
        if cls.__module__ != "advcore.defenses.preprocess":
            continue
        d = cls()
        assert set(d.params()) - {"seed"} == {p.name for p in cls.PARAMS}
        assert d.describe()["name"] == name and d.reference and d.gradient_estimate == "identity"
        assert d.gradient_words() == ("exact gradient" if name in ("median", "resize-pad") else "identity (BPDA)")
        assert all(p.key == f"defense_{p.name}" for p in cls.PARAMS)


# --------------------------------------------------------------------------- the exact gradient (Athalye et al. Sec. 4)

DIFFERENTIABLE = [("median", {"window": 2}), ("median", {"window": 3}),
                  ("resize-pad", {"enlarge": 0.5, "interpolation": "nearest"}),
                  ("resize-pad", {"enlarge": 0.5, "interpolation": "bilinear"})]


def test_exactly_the_differentiable_defenses_declare_it():
    assert {n for n, c in defenses.DEFENSES.items() if c.differentiable} == {"median", "resize-pad"}


@pytest.mark.parametrize(("name", "params"), DIFFERENTIABLE)
def test_differentiate_is_forward_value_for_value_with_a_graph(name, params):
    x = images(c=3, n=3, h=9, w=9, seed=1).requires_grad_(True)
    d = defenses.get_defense(name, **params, seed=5)
    out = d.reseed(5).differentiate(x)
    assert out.requires_grad and out.grad_fn is not None
    assert torch.equal(out.detach(), d.reseed(5)(x.detach()))  # the same numbers, the same random draws


@pytest.mark.parametrize(("name", "params"), DIFFERENTIABLE)
def test_the_exact_gradient_matches_finite_differences(name, params):
    """torch.autograd.gradcheck (central differences, float64) of the transform with its draws fixed: the
    gradient the adaptive attacker follows is the transform's own (sub)gradient, not an approximation."""
    x = (0.2 + 0.6 * images(c=1, n=2, h=6, w=6, seed=2)).double().requires_grad_(True)
    d = defenses.get_defense(name, **params, seed=7)
    assert torch.autograd.gradcheck(lambda t: d.reseed(7).differentiate(t), (x,), eps=1e-6, atol=1e-5)
    # a median's subgradient: every output pixel is one input pixel, so each row of the Jacobian is one-hot
    if name == "median":
        jac = torch.autograd.functional.jacobian(lambda t: d.differentiate(t), x).reshape(x.numel(), x.numel())
        assert torch.equal(jac.sum(1), torch.ones(x.numel(), dtype=jac.dtype))
        assert set(jac.unique().tolist()) == {0.0, 1.0}
