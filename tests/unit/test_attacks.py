"""Correctness of the attack core: closed forms, constraints, batching, targets, safety."""

from __future__ import annotations

import contextlib
import io
import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

from advcore import attacks, data, models
from advcore.errors import AdvlabError

PAPER = ["fgsm", "ifgsm", "pgd", "mifgsm", "agr"]  # the AGR paper's comparison, in its order
ALL = list(attacks.ATTACKS)  # every registered attack gets the invariance tests below


def small_cnn(seed: int = 0, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
    )
    return net.to(dtype).eval().requires_grad_(False)


def rand_images(n: int, seed: int = 1, dtype=torch.float64, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g, dtype=dtype)


class Linear(nn.Module):
    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.w, self.b = nn.Parameter(w, requires_grad=False), nn.Parameter(b, requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.b


def linear_model(k: int = 3, d: int = 3 * 4 * 4, seed: int = 0) -> Linear:
    g = torch.Generator().manual_seed(seed)
    return Linear(torch.randn(k, d, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64))


def closed_form_grad(m: Linear, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """d CE / dx for a linear softmax model: W^T (softmax(Wx + b) - onehot(y)), in NumPy."""
    w, b = m.w.numpy(), m.b.numpy()
    xf = x.flatten(1).numpy()
    z = xf @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y.numpy()] -= 1.0
    return p @ w


def test_fgsm_linf_on_linear_model_equals_closed_form():
    m = linear_model()
    x = torch.full((4, 3, 4, 4), 0.5, dtype=torch.float64) + 0.1 * rand_images(4, size=4) - 0.05
    y = torch.tensor([0, 1, 2, 0])
    eps = 0.03
    res = attacks.fgsm(m, x, y, eps=eps)
    expected = np.clip(x.flatten(1).numpy() + eps * np.sign(closed_form_grad(m, x, y)), 0, 1)
    np.testing.assert_allclose(res.x_adv.flatten(1).numpy(), expected, atol=1e-12)
    assert res.grad_evals.tolist() == [1, 1, 1, 1]


def test_fgsm_l2_on_linear_model_equals_closed_form():
    m = linear_model(seed=3)
    x = torch.full((3, 3, 4, 4), 0.5, dtype=torch.float64)
    y = torch.tensor([2, 0, 1])
    eps = 0.2
    res = attacks.fgsm(m, x, y, eps=eps, norm="l2")
    g = closed_form_grad(m, x, y)
    expected = x.flatten(1).numpy() + eps * g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(res.x_adv.flatten(1).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(res.x_adv.sub(x).flatten(1).norm(dim=1).numpy(), eps, rtol=1e-9)


def test_targeted_fgsm_descends_to_target_on_linear_model():
    m = linear_model(seed=5)
    x = torch.full((2, 3, 4, 4), 0.5, dtype=torch.float64)
    t = torch.tensor([1, 2])
    res = attacks.fgsm(m, x, eps=0.01, target=t)
    expected = np.clip(x.flatten(1).numpy() - 0.01 * np.sign(closed_form_grad(m, x, t)), 0, 1)
    np.testing.assert_allclose(res.x_adv.flatten(1).numpy(), expected, atol=1e-12)


def test_agr_follows_adagrad_closed_form_on_linear_model():
    """Constant gradient g: G_t = t g^2, so step t is alpha * sign(g) / sqrt(t) (Eq. 8-11)."""
    m = linear_model(k=2, seed=7)
    x = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64)
    y = torch.tensor([0])
    # Binary linear softmax: the gradient direction is fixed (w_1 - w_0); its size changes with p,
    # so compare signs and the 1/sqrt(t) schedule of the "sign" accumulator exactly.
    alpha, steps = 1e-3, 5
    res = attacks.agr(m, x, y, eps=1.0, alpha=alpha, steps=steps, accumulator="sign", stop_on_success=False)
    direction = np.sign(m.w[1].numpy() - m.w[0].numpy())
    expected = x.flatten(1).numpy()[0] + alpha * direction * sum(1 / math.sqrt(t) for t in range(1, steps + 1))
    np.testing.assert_allclose(res.x_adv.flatten(1).numpy()[0], expected, atol=1e-12)
    # With the raw-gradient accumulator the first step is sign-like and later steps shrink.
    res1 = attacks.agr(m, x, y, eps=1.0, alpha=alpha, steps=1, accumulator="gradient", stop_on_success=False)
    np.testing.assert_allclose((res1.x_adv - x).abs().max().item(), alpha, rtol=1e-3)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
@pytest.mark.parametrize("targeted", [False, True])
def test_every_attack_stays_in_its_ball_and_in_pixel_range(name, norm, eps, targeted):
    model = small_cnn()
    x = rand_images(5)
    x[0] = 0.0  # corners of the pixel box are where clipping matters
    x[1] = 1.0
    kw = {"target": torch.tensor([3, 1, 4, 1, 5])} if targeted else {}
    if norm not in attacks.get_attack(name).norms:  # an attack without this threat model: refused with a message
        with pytest.raises(AdvlabError, match="norm"):
            attacks.run(name, model, x, None, eps=eps, norm=norm, steps=7, **kw)
        return
    res = attacks.run(name, model, x, None, eps=eps, norm=norm, steps=7, alpha=eps / 2, seed=0, **kw)
    delta = (res.x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-9).all(), size
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.x_adv.shape == x.shape


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("norm,eps", [("linf", 4 / 255), ("l2", 0.3)])
def test_attack_on_a_batch_equals_attack_on_each_sample(name, norm, eps):
    """Catches normalisation, momentum or projection done over the whole batch instead of per sample."""
    model = small_cnn(seed=2)
    x = rand_images(4, seed=3)
    x[2] *= 0.05  # very different gradient scales within one batch
    params = dict(eps=eps, norm=norm, steps=6, random_start=False)
    if norm not in attacks.get_attack(name).norms:
        return  # refused (see the test above)
    batch = attacks.run(name, model, x, None, **params)
    for i in range(x.shape[0]):
        one = attacks.run(name, model, x[i : i + 1], None, **params)
        torch.testing.assert_close(batch.x_adv[i : i + 1], one.x_adv, atol=1e-10, rtol=0)
        assert batch.grad_evals[i] == one.grad_evals[0]


def test_pgd_random_start_is_seeded_and_inside_the_ball():
    model = small_cnn()
    x = rand_images(3)
    a = attacks.pgd(model, x, eps=8 / 255, steps=2, seed=11)
    b = attacks.pgd(model, x, eps=8 / 255, steps=2, seed=11)
    c = attacks.pgd(model, x, eps=8 / 255, steps=2, seed=12)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)


def test_l2_random_start_is_uniform_in_the_ball():
    ball = attacks.get_ball("l2")
    g = torch.Generator().manual_seed(0)
    d = ball.random(torch.Size((4000, 2, 1, 1)), 1.0, g, torch.device("cpu"))
    r = d.flatten(1).norm(dim=1)
    assert r.max() <= 1.0 + 1e-6
    # In 2-D, uniform in the disc means P(r < 1/2) = 1/4.
    assert abs((r < 0.5).double().mean().item() - 0.25) < 0.03


@pytest.fixture(scope="module")
def digits_model():
    """A softmax classifier trained on scikit-learn's 8x8 digits (real data, trained in ~1 s)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1).repeat(1, 3, 1, 1)
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    net.eval().requires_grad_(False)
    acc = (net(x).argmax(1) == y).float().mean().item()
    assert acc > 0.97
    return net, x[:40], y[:40]


@pytest.mark.parametrize("name", ["ifgsm", "pgd", "mifgsm", "agr"])
def test_targeted_attack_reaches_its_target(digits_model, name):
    net, x, y = digits_model
    target = (y + 3) % 10
    res = attacks.run(name, net, x, y, eps=0.3, steps=40, target=target, seed=0)
    reached = (res.logits.argmax(1) == target).float().mean().item()
    assert res.success.float().mean().item() == reached
    assert reached >= 0.9, f"{name} reached the target on only {reached:.0%} of the digits"


def test_untargeted_attacks_succeed_and_fgsm_is_weaker(digits_model):
    net, x, y = digits_model
    asr = {n: attacks.run(n, net, x, y, eps=0.2, steps=10, seed=0).success.float().mean().item() for n in ALL}
    # Measured: fgsm 0.825, ifgsm 0.95, pgd 1.0, mifgsm 0.925, agr 1.0 on these 40 digits.
    assert asr["pgd"] >= 0.95 and asr["ifgsm"] >= 0.9 and asr["agr"] >= 0.9
    assert asr["fgsm"] < asr["pgd"]


def test_agr_stops_on_success_and_spends_fewer_gradients(digits_model):
    net, x, y = digits_model
    res = attacks.agr(net, x, y, eps=0.2, steps=20)
    assert res.success.all()
    # A sample stops at the first adversarial iterate: it is charged the step that found it.
    assert (res.grad_evals < 20).all()
    for i, k in enumerate(res.grad_evals.tolist()):  # recorded while iterating, nan once stopped
        assert torch.isfinite(res.loss_history[i, :k]).all()
        assert torch.isnan(res.loss_history[i, k:-1]).all()
        assert torch.isfinite(res.loss_history[i, -1])  # the final iterate is always evaluated
    full = attacks.agr(net, x, y, eps=0.2, steps=20, stop_on_success=False)
    assert (full.grad_evals == 20).all()


def test_the_model_is_never_changed(digits_model):
    net, x, y = digits_model
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.requires_grad_(True)  # a caller's model whose weights require grad
    try:
        for n in ALL:
            attacks.run(n, net, x, y, eps=0.1, steps=3, seed=0)
        assert not net.training
        assert all(p.grad is None for p in net.parameters())
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    finally:
        net.requires_grad_(False)


def test_callback_sees_each_step_and_can_cancel(digits_model):
    net, x, y = digits_model
    seen = []
    res = attacks.pgd(net, x, y, eps=0.1, steps=10, seed=0, callback=lambda s: seen.append(s.step) or s.step == 3)
    assert seen == [1, 2, 3]
    assert res.cancelled
    assert (res.grad_evals == 3).all()
    assert res.loss_history.shape == (x.shape[0], 4)


def test_zero_eps_changes_nothing(digits_model):
    net, x, y = digits_model
    for n in ALL:
        assert torch.equal(attacks.run(n, net, x, y, eps=0.0, steps=3, seed=0).x_adv, x)


@pytest.mark.parametrize(
    "params,fragment",
    [
        ({"eps": -0.1}, "at least 0"),
        ({"eps": 2.0}, "pixel range"),
        ({"eps": float("nan")}, "finite"),
        ({"eps": 0.1, "steps": 0}, "between 1 and"),
        ({"eps": 0.1, "steps": 10**6}, "between 1 and"),
        ({"eps": 0.1, "norm": "l3"}, "Unknown norm"),
        ({"eps": 0.1, "alpha": -1.0}, "positive"),
    ],
)
def test_bad_budgets_are_refused_with_a_message(digits_model, params, fragment):
    net, x, y = digits_model
    with pytest.raises(AdvlabError, match=fragment):
        attacks.run("pgd", net, x, y, **params)


def test_the_registry_lists_the_papers_attacks_first():
    assert ALL[:5] == PAPER
    assert [attacks.get_attack(a).name for a in ("BIM", "i-fgsm", "MI-FGSM", "adaptive")] == ["ifgsm", "ifgsm",
                                                                                             "mifgsm", "agr"]


def test_unknown_attack_and_missing_target():
    with pytest.raises(AdvlabError, match="Unknown attack"):
        attacks.get_attack("no-such-attack")
    assert attacks.get_attack("BIM").name == "ifgsm"
    with pytest.raises(AdvlabError, match="target"):
        attacks.pgd(small_cnn(), rand_images(1), eps=0.1, targeted=True)


def test_two_threads_on_the_cached_model_match_sequential_runs():
    """Streamlit serves every session from one process and one cached model."""
    model = models.load("efficientnet-lite0", "cpu")
    spec = models.get_spec("efficientnet-lite0")
    xs = [data.prepare(data.open_image(data.sample_path(n)), spec.input_size) for n in ("cat", "coffee")]
    params = dict(eps=2 / 255, steps=3, seed=0)
    sequential = [attacks.pgd(model, x, **params).x_adv for x in xs]
    out: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        out[i] = attacks.pgd(model, xs[i], **params).x_adv

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        torch.testing.assert_close(out[i], sequential[i], atol=1e-6, rtol=0)
    assert not model.training
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- the loop's loss= hook


def test_a_custom_loss_equal_to_cross_entropy_gives_the_same_bits(digits_model):
    net, x, y = digits_model
    rule = attacks.SteepestAscent()
    for targeted, label in ((False, y), (True, (y + 1) % 10)):
        kw = dict(eps=0.1, alpha=0.02, steps=5, targeted=targeted, stop_on_success=True)
        base = attacks.iterative_attack(net, x, label, rule, **kw)
        hooked = attacks.iterative_attack(net, x, label, rule, loss=attacks.cross_entropy, **kw)
        for field in ("x_adv", "logits", "success", "grad_evals", "loss_history", "prob_history", "steps_to_success"):
            a, b = getattr(base, field), getattr(hooked, field)
            if a.is_floating_point():
                a, b = a.nan_to_num(-1.0), b.nan_to_num(-1.0)
            assert torch.equal(a, b), field


def test_the_loop_descends_a_loss_on_a_layer_without_class_labels(digits_model):
    """Feature collision: move x so that the hidden layer's output approaches a target's (no classes)."""
    net, x, _ = digits_model
    hidden = net[:3]  # Flatten, Linear, ReLU: a feature extractor
    with torch.no_grad():
        target_f = hidden(x.flip(0))
    res = attacks.iterative_attack(hidden, x, target_f, attacks.SteepestAscent(), eps=0.1, alpha=0.02, steps=8,
                                   targeted=True, loss=lambda f, t: (f - t).norm(dim=1), form="point")
    hist = res.loss_history
    assert hist.shape == (len(x), 9) and (hist[:, -1] < hist[:, 0]).all()
    torch.testing.assert_close(hist[:, 0], (hidden(x) - target_f).norm(dim=1))
    assert (res.x_adv - x).abs().max() <= 0.1 + 1e-6
    assert not res.success.any() and (res.steps_to_success == -1).all() and res.prob_history.isnan().all()
    with pytest.raises(AdvlabError, match="class labels"):
        attacks.iterative_attack(hidden, x, target_f, attacks.SteepestAscent(), eps=0.1, alpha=0.02, steps=2,
                                 loss=lambda f, t: (f - t).norm(dim=1), stop_on_success=True)
    with pytest.raises(AdvlabError, match="class labels"):
        attacks.iterative_attack(hidden, x, None, attacks.SteepestAscent(), eps=0.1, alpha=0.02, steps=2)


def test_point_form_is_the_same_steps_up_to_rounding(digits_model):
    net, x, y = digits_model
    kw = dict(eps=0.1, alpha=0.03, steps=6, random_start=True)
    a = attacks.iterative_attack(net, x, y, attacks.SteepestAscent(), generator=torch.Generator().manual_seed(0), **kw)
    b = attacks.iterative_attack(net, x, y, attacks.SteepestAscent(), generator=torch.Generator().manual_seed(0),
                                 form="point", **kw)
    torch.testing.assert_close(a.x_adv, b.x_adv, atol=1e-6, rtol=0)
    assert (b.x_adv - x).abs().max() <= 0.1 + 1e-6 and b.x_adv.min() >= 0 and b.x_adv.max() <= 1
    with pytest.raises(AdvlabError, match="form"):
        attacks.iterative_attack(net, x, y, attacks.SteepestAscent(), form="delta", **kw)


def test_steps_to_success_is_the_first_adversarial_iterate(digits_model):
    net, x, y = digits_model
    iterates = [x]
    res = attacks.ifgsm(net, x, y, eps=0.1, steps=6, callback=lambda s: iterates.append(s.x_adv.clone()) and None)
    with torch.no_grad():
        fooled = torch.stack([net(z).argmax(1) != y for z in iterates])  # (steps+1, N)
    expected = torch.where(fooled.any(0), fooled.long().argmax(0), torch.full_like(y, -1))
    assert torch.equal(res.steps_to_success, expected)
    assert (res.steps_to_success[res.success] >= 0).all()
    stopped = attacks.agr(net, x, y, eps=0.2, steps=20)  # stops on success: charged the evaluation that found it
    ok = stopped.success
    assert torch.equal(stopped.grad_evals[ok], stopped.steps_to_success[ok] + 1)


# --------------------------------------------------------------------------- the registry: declared once

SPECS = list(attacks.ATTACKS.values())
PARAMS = [(s, p) for s in SPECS for p in s.params]


def _ids(case) -> str:
    return f"{case[0].name}-{case[1].name}"


def good_values(p: attacks.Param) -> list:
    """Valid values of ``p`` read from its declaration: default, range ends, a value inside, every choice."""
    if p.kind == "bool":
        return [True, False]
    if p.kind == "choice":
        return list(p.choices)
    values = [p.default, *p.widget_values]
    if p.low is not None and not p.low_open:
        values.append(p.low)
    if p.high is not None:
        values.append(p.high)
    values.append(inside(p))
    return [v if p.kind == "int" else float(v) for v in values if v is not None]


def inside(p: attacks.Param) -> float | int:
    """A valid value of a number ``p`` other than its default: halfway to a bound, or beyond an unbounded default."""
    d = p.default
    if p.high is not None:
        end = p.high if d < p.high else (p.low if p.low is not None else d - 1)
        return (d + end) // 2 if p.kind == "int" else (d + end) / 2
    return 3 * d + 7 if p.kind == "int" else 2.5 * d + 0.125


def bad_values(p: attacks.Param) -> list:
    """Values ``p`` must refuse: the wrong type, nan and inf, just outside its range, an unknown choice."""
    if p.kind == "bool":
        return [1, "yes"] + ([] if p.nullable else [None])
    if p.kind == "choice":
        return ["no such choice", 1, None]
    bad: list = ["3", True] + ([] if p.nullable else [None])
    bad += [1.5] if p.kind == "int" else [float("nan"), float("inf"), -float("inf")]
    if p.low is not None:
        bad.append(p.low if p.low_open else p.low - 1)
    if p.high is not None:
        bad.append(p.high + 1)
    return bad


@pytest.mark.parametrize("case", PARAMS, ids=_ids)
def test_declared_params_validate(case):
    spec, p = case
    for v in good_values(p):
        assert p.check(v) == v and type(p.check(v)) is type(v)
    for v in bad_values(p):
        with pytest.raises(AdvlabError, match=f"{spec.short_title}'s {p.name} must be"):
            p.check(v, spec.short_title)
    assert p.help and p.title and p.key.startswith("attack_")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_declared_defaults_are_the_functions_defaults(spec):
    import inspect
    from dataclasses import replace

    sig = inspect.signature(spec.fn).parameters
    for p in spec.params:
        assert sig[p.name].default == p.default and type(sig[p.name].default) is type(p.default)
        assert attacks.param_default(spec.name, p.name) == p.default
        wrong = replace(p, widget_values=(), default=not p.default if p.kind == "bool" else (
            [c for c in p.choices if c != p.default][0] if p.kind == "choice" else inside(p)))
        with pytest.raises(TypeError, match="defaults to"):  # a spec that disagrees with its function is refused
            attacks.AttackSpec(spec.name, spec.title, spec.fn, spec.reference,
                               params=tuple(wrong if q is p else q for q in spec.params))
    assert spec.defaults() == {p.name: p.default for p in spec.params}
    assert {p.name for p in spec.params} <= attacks.accepted_params(spec.name)


def _parse_attack(spec: attacks.AttackSpec, words: list[str]):
    from advcore.cli.framework import build_parser

    return build_parser().parse_args(["attack", "--model", "fmnist-naive", "--image", "x.png", "--eps", "0.1",
                                      "--attack", spec.name, *words])


@pytest.mark.parametrize("case", PARAMS, ids=_ids)
def test_every_declared_param_has_a_flag_that_parses_back(case):
    from advcore.cli.attack import param_values

    spec, p = case
    flags = attacks.declared_params()
    assert flags[p.name].kind == p.kind
    for v in good_values(p):
        words = p.cli_words(v)
        assert (words == []) == (p.kind == "bool" and v == p.default)  # only a bool at its default is implied
        got, notes = param_values(_parse_attack(spec, words), spec.name)
        assert notes == [] and got.get(p.name, p.default) == v and type(got.get(p.name, p.default)) is type(v)
    for v in bad_values(p):  # what the command line cannot even spell, or refuses with one line
        if isinstance(v, str) or v is None or isinstance(v, bool) != (p.kind == "bool"):
            continue
        with pytest.raises(AdvlabError):
            p.cli_words(v)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_the_generated_flags_round_trip_and_other_attacks_flags_are_noted(spec):
    from advcore.cli.attack import param_values

    for pick in (0, -1):  # every parameter at its first and at its last good value
        values = {p.name: good_values(p)[pick] for p in spec.params}
        used = {k: v for k, v in values.items() if spec.enabled(spec.param(k), values)}
        words = [w for p in spec.params if p.name in used for w in p.cli_words(values[p.name])]
        got, notes = param_values(_parse_attack(spec, words), spec.name)
        assert notes == []
        assert {k: got.get(k, spec.param(k).default) for k in used} == used
    accepted = attacks.accepted_params(spec.name)
    others = [p for p in attacks.declared_params().values() if p.name not in accepted]
    words = [w for p in others for w in p.cli_words(good_values(p)[-1] if p.kind != "bool" else not p.default)]
    got, notes = param_values(_parse_attack(spec, words), spec.name)
    assert got == {}
    assert notes == [f"{p.flag_text} does not apply to {spec.name}; ignored." for p in others]


def test_bad_flag_values_are_refused_by_the_parser_in_one_line():
    from advcore.cli.framework import main

    for spec, p in PARAMS:
        if p.kind in ("float", "int"):
            bad = "nan" if p.kind == "float" else "1.5"
            words = [p.flag, bad]
        elif p.kind == "choice":
            words = [p.flag, "no-such-choice"]
        else:
            continue
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["attack", "--model", "fmnist-naive", "--image", "x.png", "--eps", "0.1",
                         "--attack", spec.name, *words])
        assert code == 2 and len(err.getvalue().splitlines()) == 1, err.getvalue()
        assert err.getvalue().startswith("advcore: error: ") and p.flag in err.getvalue()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_each_declared_param_shows_up_in_the_json_record(spec):
    import json

    from PIL import Image

    from advcore.labs import attack as attack_lab
    from advcore.records import json_safe

    image = Image.new("RGB", (28, 28), (120, 120, 120))
    chosen = {p.name: good_values(p)[-1] for p in spec.params}
    for given in ({}, chosen):  # defaults, then a value of every parameter
        res = attack_lab.attack_image("fmnist-naive", image, spec.name, eps=0.1, steps=2, device="cpu", **given)
        record = json.loads(json.dumps(json_safe(res.metrics)))
        for p in spec.params:
            assert record[p.name] == given.get(p.name, p.default), p.name
    if spec.params:
        p = spec.params[0]
        with pytest.raises(AdvlabError, match=p.name):  # checked before any work
            attack_lab.attack_image("fmnist-naive", image, spec.name, eps=0.1, steps=2, device="cpu",
                                    **{p.name: bad_values(p)[0]})
