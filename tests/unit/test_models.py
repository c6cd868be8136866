"""The model registry: real weights, the right preprocessing, shared frozen models."""

from __future__ import annotations

import pytest
import torch

from advcore import data, models
from advcore.errors import AdvlabError
from advcore.models import Normalized

LITES = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
CATS = {"tabby", "tiger cat", "Egyptian cat"}


def test_registry_lists_the_three_lite_models_with_imagenet_classes():
    assert set(LITES) <= set(models.names())
    for name in LITES:
        spec = models.get_spec(name)
        assert spec.dataset == "imagenet" and spec.num_classes == 1000
    assert models.imagenet_classes()[281] == "tabby"
    assert [models.get_spec(n).input_size[1] for n in LITES] == [224, 240, 260]


def test_unknown_model_gets_a_suggestion():
    with pytest.raises(AdvlabError, match="Did you mean 'efficientnet-lite0'"):
        models.get_spec("efficientnet-lite-0")
    with pytest.raises(AdvlabError, match="Known models: efficientnet-lite0"):
        models.get_spec("resnet50")


def test_loaded_model_is_frozen_in_eval_mode_and_cached():
    m = models.load("efficientnet-lite0", "cpu")
    assert m is models.load("efficientnet-lite0", "cpu")
    assert not m.training and not any(p.requires_grad for p in m.parameters())


@pytest.mark.parametrize("name", LITES)
def test_bundled_photos_get_their_imagenet_classes(name):
    spec = models.get_spec(name)
    m = models.load(name, "cpu")
    expected = {"cat": CATS, "coffee": {"espresso", "cup"}, "cameraman": {"tripod"}}
    x = torch.cat([data.prepare(data.open_image(data.sample_path(k)), spec.input_size) for k in expected])
    with torch.no_grad():
        pred = m(x).argmax(1).tolist()
    names = [spec.classes()[i] for i in pred]
    for (photo, ok), got in zip(expected.items(), names, strict=True):
        assert got in ok, f"{name} calls the {photo} photo {got!r}"


@pytest.mark.parametrize("name", LITES)
def test_normalisation_matches_the_networks_own_batchnorm_statistics(name):
    """The stem BatchNorm's running statistics were collected under the training preprocessing.

    The registered (255x - 127)/128 scaling must fit them better than ImageNet mean/std,
    measured as the mean Gaussian KL divergence per channel over the bundled photos.
    """
    spec = models.get_spec(name)
    net = models.load(name, "cpu").net
    x = torch.cat([data.prepare(data.open_image(s.path), spec.input_size) for s in data.samples()])

    def kl(mean, std) -> float:
        xn = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            h = net._conv_stem(xn)
        mu, var = h.mean((0, 2, 3)), h.var((0, 2, 3))
        rm, rv = net._bn0.running_mean, net._bn0.running_var + net._bn0.eps
        return (0.5 * (var / rv + (mu - rm) ** 2 / rv - 1 - torch.log(var / rv))).mean().item()

    assert kl(spec.mean, spec.std) < kl((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_normalized_wrapper_takes_unit_pixels():
    net = torch.nn.Identity()
    m = Normalized(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.testing.assert_close(m(torch.ones(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 2.0))


def test_every_shipped_model_has_the_role_its_card_describes():
    """Roles come from the cards (recipe, input transform), not from model names hard-coded in the pages."""
    expected = {"fmnist-naive": "naive", "fmnist-fgsm": "fgsm", "fmnist-pgd": "pgd", "fmnist-mat-mixed": "mat-mixed",
                "fmnist-mat-parallel": "mat-parallel", "fmnist-halftone": "halftone", "fmnist-hybrid": "hybrid"}
    for name, role in expected.items():
        assert models.get_spec(name).role == role
    assert models.roles("fashion-mnist") == {role: name for name, role in expected.items()}
    assert models.with_role("imagenet", "naive") == "efficientnet-lite0"
    assert models.with_role("imagenet", "pgd") is None
    assert [r for r in models.ROLES if models.ROLES[r].robust] == ["fgsm", "pgd", "mat-mixed", "mat-parallel"]


def test_an_unknown_role_is_refused():
    spec = models.get_spec("fmnist-naive")
    with pytest.raises(AdvlabError, match="Unknown model role"):
        models.ModelSpec(spec.name, spec.title, spec.dataset, spec.input_size, spec.mean, spec.std, spec.build,
                         spec.classes, role="sturdy")


def test_zoo_table_holds_the_cards_r_fgsm_and_transfer_fgsm_averages(capsys):
    import json as _json

    from advcore.cli import framework as fw
    from advcore.cli import models as models_cli  # noqa: F401  (registers the command)
    from advcore.models import zoo as _zoo

    card = _json.loads((_zoo.MODELS_DIR / "fmnist-mat-mixed.json").read_text())
    assert fw.main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in _json.loads(capsys.readouterr().out)}
    row = rows["fmnist-mat-mixed"]
    assert row["rfgsm_average"] == card["curves"]["rfgsm"]["average_accuracy"]
    assert row["transfer_fgsm_average"] == card["curves"]["transfer_fgsm"]["average_accuracy"]
    assert card["curves"]["transfer_fgsm"]["source"] == "fmnist-naive"
    # the paper-protocol ordering of the shipped cards (Table 1): MAT above single strength above naive
    assert row["transfer_fgsm_average"] > rows["fmnist-fgsm"]["transfer_fgsm_average"] > \
        rows["fmnist-naive"]["transfer_fgsm_average"]
