"""Your own model (advcore.models.custom): TorchScript and state_dict files with a card, the weights_only refusal
of pickled code, the card's checks, and session models that never enter the process registry."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import threading

import pytest
import torch
from torch import nn

from advcore import datasets, models
from advcore.errors import AdvlabError
from advcore.models import custom, zoo

TINY = {"kind": "small-cnn", "in_channels": 1, "num_classes": 10, "image_size": 8, "width": [4, 8], "hidden": 16}
CARD = {"architecture": TINY, "dataset": "digits", "input_size": [1, 8, 8], "mean": [0.3], "std": [0.4],
        "name": "tiny"}


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # a test's own net; the library never seeds globally
    return zoo.build_network(TINY).eval()


def reference(net: nn.Module) -> nn.Module:
    return models.Normalized(net, (0.3,), (0.4,)).eval()


def saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@functools.lru_cache(maxsize=2)
def scripted_tiny(seed: int = 0) -> bytes:
    """``tiny_net(seed)`` as a TorchScript file (made once per test run: scripting costs about half a second)."""
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(tiny_net(seed)), buf)
    return buf.getvalue()


X = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_torchscript_file_predicts_like_the_original() -> None:
    net = tiny_net()
    raw = scripted_tiny(0)
    assert custom.is_torchscript(raw) and not custom.is_torchscript(saved(net.state_dict()))
    card = {k: v for k, v in CARD.items() if k != "architecture"}  # TorchScript needs no architecture
    sm = custom.load_custom(raw, card, weights_name="tiny.ts")
    assert sm.spec.name == "mine:tiny" and sm.spec.card["format"] == "torchscript"
    assert sm.spec.classes() == datasets.DIGITS_CLASSES and sm.spec.input_size == (1, 8, 8)
    torch.testing.assert_close(sm.model(X), reference(net)(X), rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in sm.model.parameters())


def test_state_dict_of_a_zoo_architecture_predicts_like_the_original(tmp_path) -> None:
    net = tiny_net(3)
    (tmp_path / "w.pt").write_bytes(saved({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}))
    (tmp_path / "w.json").write_text(json.dumps(CARD))  # found beside the weights
    sm = custom.load_custom(tmp_path / "w.pt")
    assert sm.spec.card["format"] == "state_dict" and sm.spec.role == "naive"
    torch.testing.assert_close(sm.model(X), reference(net)(X), rtol=0, atol=0)
    # the architecture by its name: the default SmallCNN for the card's input size and classes
    big = zoo.SmallCNN(in_channels=1, num_classes=3, image_size=8).eval()
    card = {"architecture": "small-cnn", "input_size": [1, 8, 8], "mean": [0.3], "std": [0.4],
            "classes": ["a", "b", "c"]}
    sm = custom.load_custom(saved(big.state_dict()), card, weights_name="big.pth")
    torch.testing.assert_close(sm.model(X), reference(big)(X), rtol=0, atol=0)
    assert sm.spec.dataset == "custom" and sm.spec.classes() == ["a", "b", "c"]


def test_efficientnet_state_dict_builds_offline() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=4).eval()
    card = {"architecture": "efficientnet-lite0", "input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3,
            "classes": list("abcd")}
    sm = custom.load_custom(saved(net.state_dict()), card)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(sm.model(x), net((x - 0.5) / 0.5), rtol=0, atol=0)


class _Shell:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickled_code_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "ran"
    raw = saved({"weight": _Shell(str(marker))})
    with pytest.raises(AdvlabError, match="refused.*weights_only=True"):
        custom.load_custom(raw, CARD, weights_name="evil.pt")
    assert not marker.exists()  # nothing of the pickle ran
    with pytest.raises(AdvlabError, match="refused"):  # a whole pickled module (class instances): refused too
        custom.load_custom(saved(tiny_net()), CARD, weights_name="module.pt")


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.pop("input_size"), "missing the field 'input_size'"),
    (lambda c: c.pop("mean"), "missing the field 'mean'"),
    (lambda c: c.update(mean="0.3"), "'mean' must be a list of numbers"),
    (lambda c: c.update(std=[0.0]), "every 'std' must be positive"),
    (lambda c: c.update(mean=[0.3, 0.3]), "'mean' has 2 values but the input has 1"),
    (lambda c: c.update(input_size=[1, 8]), r"'input_size' must be \[channels, height, width\]"),
    (lambda c: c.update(input_size=[1, 8, 2000], dataset="custom", classes=["a", "b"]),
     "input width must be from 4 to 512, got 2000"),
    (lambda c: c.update(input_size=[1, 8.5, 8]), "input height must be a whole number"),
    (lambda c: c.update(input_size=[1, 28, 28]), "digits images are 1x8x8"),
    (lambda c: c.update(classes=["a", "b"]), "digits has 10 classes but 'classes' names 2"),
    (lambda c: (c.pop("dataset")), "missing the field 'classes'"),
    (lambda c: c.update(dataset=""), "'dataset' must be a non-empty text"),
    (lambda c: c.update(architecture="resnet50"), "unknown 'architecture' 'resnet50'"),
    (lambda c: c.update(classes=["a", "a"] + [str(i) for i in range(8)]), "names a class twice"),
])
def test_card_errors_name_the_field(change, message) -> None:
    card = json.loads(json.dumps(CARD))
    change(card)
    with pytest.raises(AdvlabError, match=message):
        custom.load_custom(saved(tiny_net().state_dict()), card)


def test_model_file_errors() -> None:
    net = tiny_net()
    with pytest.raises(AdvlabError, match="not a PyTorch model file"):
        custom.load_custom(b"\x89PNG\r\n\x1a\n not a model", CARD, weights_name="cat.png")
    with pytest.raises(AdvlabError, match="not a state_dict"):
        custom.load_custom(saved([1, 2, 3]), CARD)
    with pytest.raises(AdvlabError, match="must name its 'architecture'"):
        custom.load_custom(saved(net.state_dict()), {k: v for k, v in CARD.items() if k != "architecture"})
    with pytest.raises(AdvlabError, match="does not fit the architecture small-cnn"):
        custom.load_custom(saved(zoo.SmallCNN(1, 10, 8, width=(4, 4), hidden=16).state_dict()), CARD)
    # the output against the card's classes: a 10-class TorchScript net with a 3-class card
    card = {"input_size": [1, 8, 8], "mean": [0.3], "std": [0.4], "classes": ["a", "b", "c"]}
    with pytest.raises(AdvlabError, match=r"outputs shape \(2, 10\) for 2 images, but the card names 3 classes"):
        custom.load_custom(scripted_tiny(0), card)
    with pytest.raises(AdvlabError, match="fails on a batch of 2 images of the card's input size 1x12x12"):
        custom.load_custom(scripted_tiny(0), {**card, "input_size": [1, 12, 12], "classes": list("abcdefghij")})
    with pytest.raises(AdvlabError, match="does not exist"):
        custom.load_custom("/nonexistent/model.pt", CARD)


def test_card_files(tmp_path) -> None:
    (tmp_path / "m.pt").write_bytes(saved(tiny_net().state_dict()))
    with pytest.raises(AdvlabError, match="has no model card"):
        custom.load_custom(tmp_path / "m.pt")
    (tmp_path / "model.json").write_text(json.dumps({**CARD, "name": "from model.json"}))
    assert custom.card_beside(tmp_path / "m.pt") == tmp_path / "model.json"
    assert custom.load_custom(tmp_path / "m.pt").spec.name == "mine:from-model.json"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AdvlabError, match="Cannot read the model card"):
        custom.read_card(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(AdvlabError, match="must be a JSON object"):
        custom.read_card(tmp_path / "list.json")
    # a card written by 'python -m advcore train' names its checkpoint
    assert custom.weights_beside(zoo.shipped_cards()[0]).is_file()



def test_one_bounded_read_for_cards_and_weights(tmp_path, monkeypatch) -> None:
    """custom's card and weights and zoo's card go through files.read_limited: the bytes back, or one sentence."""
    from advcore import files

    f = tmp_path / "x.bin"
    f.write_bytes(b"a" * 1024)
    assert files.read_limited(f, 1024, "The file x") == b"a" * 1024
    with pytest.raises(AdvlabError, match=r"^The file x is larger than 1,023 bytes\.$"):
        files.read_limited(f, 1023, "The file x")
    (tmp_path / "y.bin").write_bytes(b"b" * 1025)
    with pytest.raises(AdvlabError, match=r"^The file x is larger than 1 KB\.$"):
        files.read_limited(tmp_path / "y.bin", 1024, "The file x")
    with pytest.raises(AdvlabError, match=r"^The file x does not exist or is not a file\.$"):
        files.read_limited(tmp_path, 10, "The file x")
    assert (files.size_text(zoo.MAX_CARD_BYTES), files.size_text(zoo.MAX_WEIGHTS_BYTES)) == ("1 MB", "512 MB")
    monkeypatch.setattr(custom, "MAX_WEIGHTS_BYTES", 1000)
    with pytest.raises(AdvlabError, match=rf"^The model file {re.escape(str(f))} is larger than 1,000 bytes\.$"):
        custom.load_custom(f, CARD)
    card = tmp_path / "card.json"
    card.write_bytes(json.dumps(CARD).encode() + b" " * 100)
    monkeypatch.setattr(custom, "MAX_CARD_BYTES", len(json.dumps(CARD)) + 99)
    with pytest.raises(AdvlabError, match=rf"^The model card {re.escape(str(card))} is larger than"):
        custom.read_card(card)
    monkeypatch.setattr(zoo, "MAX_CARD_BYTES", 50)
    with pytest.raises(AdvlabError, match=rf"^The model card {re.escape(str(card))} is larger than 50 bytes\.$"):
        zoo.read_card(card)
    none = tmp_path / "none.json"
    with pytest.raises(AdvlabError, match=rf"^The model card {re.escape(str(none))} does not exist or is not a file"):
        zoo.read_card(none)
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"title": "caf\xe9"}')  # not UTF-8: one sentence, not a UnicodeDecodeError
    with pytest.raises(AdvlabError, match=rf"^Cannot read the model card {re.escape(str(bad))}: 'utf-8' codec"):
        custom.read_card(bad)
    with pytest.raises(AdvlabError, match=rf"^Cannot read the model card {re.escape(str(bad))}: 'utf-8' codec"):
        zoo.read_card(bad)


def test_yaml_cards() -> None:
    text = "input_size: [1, 8, 8]\nmean: [0.3]\nstd: [0.4]\ndataset: digits\n"
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(AdvlabError, match="needs PyYAML"):
            custom.parse_card(text, kind="yaml")
    else:
        assert custom.parse_card(text, kind="yaml").input_size == (1, 8, 8)


def test_shipped_checkpoint_with_its_own_card_matches_the_registry() -> None:
    card = next(p for p in zoo.shipped_cards() if p.stem == "fmnist-pgd")
    sm = custom.load_custom(custom.weights_beside(card), card)
    assert sm.spec.role == "pgd" and sm.spec.name == "mine:fmnist-pgd"
    x = datasets.to_float(datasets.load_subset(4)[0])
    torch.testing.assert_close(sm.model(x), models.load("fmnist-pgd", "cpu")(x), rtol=0, atol=0)


def test_session_models_stay_out_of_the_registry() -> None:
    a = custom.load_custom(scripted_tiny(0), CARD)
    b = custom.load_custom(scripted_tiny(0), CARD, taken={a.spec.name})
    assert b.spec.name == "mine:tiny-2"
    shipped = models.names()
    assert a.spec.name not in shipped
    with pytest.raises(AdvlabError, match="one of an app session's own models"):
        models.get_spec(a.spec.name)
    with pytest.raises(AdvlabError, match="kept for session models"):
        models.register(a.spec)
    seen = {}

    def other_thread() -> None:  # another session (thread) sees only its own models
        with models.session_scope({b.spec.name: b}):
            seen["names"] = models.names()

    with models.session_scope({a.spec.name: a}):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert models.names() == [*shipped, a.spec.name]
        assert models.get_spec(a.spec.name) is a.spec and models.class_names(a.spec.name) == a.spec.classes()
        assert models.load(a.spec.name, "cpu") is a.model
        assert models.with_role("digits", "naive") is None  # roles stay the shipped models'
    assert seen["names"] == [*shipped, b.spec.name]
    assert models.names() == shipped


def test_a_session_model_is_copied_once_per_device() -> None:
    sm = custom.load_custom(saved(tiny_net().state_dict()), CARD)
    cpu = torch.device("cpu")
    assert sm.on(cpu) is sm.model
    other = sm.on(torch.device("meta"))  # stands in for CUDA: a copy there, the original stays on the CPU
    assert other is not sm.model and next(other.parameters()).device.type == "meta"
    assert next(sm.model.parameters()).device == cpu and sm.on(torch.device("meta")) is other


def test_trained_model_becomes_a_session_model() -> None:
    net = tiny_net()
    model = reference(net)
    card = {**CARD, "architecture": TINY, "recipe": {"name": "pgd"}, "title": "PGD run"}
    sm = custom.from_trained("your run 1", model, card, taken={"mine:your-run-1"})
    assert sm.spec.name == "mine:your-run-1-2" and sm.spec.role == "pgd"
    assert sm.model is model and sm.spec.title == "your run 1: PGD run (this session)"
    with pytest.raises(AdvlabError, match="outputs shape"):
        custom.from_trained("bad", model, {**card, "dataset": "custom", "classes": ["a", "b"]})
