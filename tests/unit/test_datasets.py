"""Fashion-MNIST (IDX files, the shipped subset), scikit-learn's digits, and missing-data messages."""

from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest
import torch

from advcore import datasets
from advcore.errors import AdvlabError

INSTALLED = datasets.fashion_mnist_available()
needs_fashion_mnist = pytest.mark.skipif(
    not INSTALLED, reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def write_idx(path, array: np.ndarray, *, compress: bool = True, cut: int = 0) -> None:
    raw = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    raw = raw[:len(raw) - cut]
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


# --------------------------------------------------------------------------- IDX


def test_read_idx_round_trips_gzip_and_plain(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a, compress=False)
    assert np.array_equal(datasets.read_idx(tmp_path / "a.gz"), a)
    assert np.array_equal(datasets.read_idx(tmp_path / "a"), a)


def test_read_idx_refuses_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "cut.gz", np.zeros((5, 28, 28)), cut=100)
    with pytest.raises(AdvlabError, match="truncated or corrupt"):
        datasets.read_idx(tmp_path / "cut.gz")
    (tmp_path / "text").write_text("hello, this is not an IDX file")
    with pytest.raises(AdvlabError, match="not an IDX file"):
        datasets.read_idx(tmp_path / "text")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(AdvlabError, match="Cannot read"):
        datasets.read_idx(tmp_path / "bad.gz")


# --------------------------------------------------------------------------- missing data


def test_missing_fashion_mnist_names_the_debian_package(tmp_path, monkeypatch):
    with pytest.raises(AdvlabError, match="apt-get install dataset-fashion-mnist") as exc:
        datasets.load_fashion_mnist("train", root=tmp_path)
    assert str(tmp_path) in str(exc.value)
    monkeypatch.setenv(datasets.ENV_DIR, str(tmp_path))
    assert datasets.fashion_mnist_dir() == tmp_path
    assert not datasets.fashion_mnist_available()
    with pytest.raises(AdvlabError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist("test")
    with pytest.raises(AdvlabError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_task("fashion-mnist")
    # The shipped subset needs no installed dataset.
    x, y, what = datasets.eval_set("fashion-mnist", 100)
    assert x.shape == (100, 1, 28, 28) and "shipped" in what


def test_download_without_torchvision_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    with pytest.raises(AdvlabError, match="torchvision cannot be imported.*apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist("train", root=tmp_path, download=True)


def test_a_wrong_sized_dataset_is_refused(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(10))
    with pytest.raises(AdvlabError, match="not the official ones"):
        datasets.load_fashion_mnist("test", root=tmp_path)


def test_unknown_names_are_refused():
    with pytest.raises(AdvlabError, match="split"):
        datasets.load_fashion_mnist("validation")
    with pytest.raises(AdvlabError, match="Unknown dataset"):
        datasets.load_task("cifar-10")
    with pytest.raises(AdvlabError, match="No labelled evaluation set.*imagenet"):
        datasets.eval_set("imagenet")
    with pytest.raises(AdvlabError, match="between 1 and 3000"):
        datasets.eval_set("fashion-mnist", 5000)


# --------------------------------------------------------------------------- the shipped subset


def test_shipped_subset_is_balanced_and_interleaved():
    x, y = datasets.load_subset()
    assert x.shape == (3000, 1, 28, 28) and x.dtype == torch.uint8
    assert y.dtype == torch.int64
    assert y.bincount(minlength=10).tolist() == [300] * 10
    assert y[:1000].bincount(minlength=10).tolist() == [100] * 10
    for block in range(0, 3000, 10):
        assert sorted(y[block:block + 10].tolist()) == list(range(10))
    assert 0 < float(datasets.to_float(x).mean()) < 0.5  # mostly dark background, as in Fashion-MNIST
    xn, yn = datasets.load_subset(20)
    assert torch.equal(xn, x[:20]) and torch.equal(yn, y[:20])


def test_licence_note_ships_with_the_subset():
    readme = (datasets.SUBSET_PATH.parent / "README.md").read_text()
    licence = (datasets.SUBSET_PATH.parent / "LICENSE").read_text()
    assert "MIT" in licence and "Zalando" in licence
    assert "github.com/zalandoresearch/fashion-mnist" in readme


@needs_fashion_mnist
def test_installed_fashion_mnist_and_the_subset_agree():
    x, y = datasets.load_fashion_mnist("train")
    assert x.shape == (60000, 1, 28, 28) and y.bincount().tolist() == [6000] * 10
    xt, yt = datasets.load_fashion_mnist("test")
    assert xt.shape == (10000, 1, 28, 28)
    with np.load(datasets.SUBSET_PATH) as z:
        index = torch.from_numpy(z["test_index"].astype(np.int64))
    assert len(set(index.tolist())) == 3000
    xs, ys = datasets.load_subset()
    assert torch.equal(xs, xt[index]) and torch.equal(ys, yt[index])


@needs_fashion_mnist
def test_fashion_mnist_task_split_is_fixed_and_disjoint():
    t = datasets.load_task("fashion-mnist", limit=1000)
    assert len(t.x_train) == 1000 and len(t.x_val) == 5000 and len(t.x_eval) == 3000
    assert t.input_size == (1, 28, 28) and t.classes[0] == "T-shirt/top" and t.classes[9] == "Ankle boot"
    t2 = datasets.load_task("fashion-mnist", limit=1000)
    assert torch.equal(t.x_train, t2.x_train) and torch.equal(t.x_val, t2.x_val)
    full = datasets.load_task("fashion-mnist")
    assert len(full.x_train) == 55000 and torch.equal(full.x_train[:1000], t.x_train)


# --------------------------------------------------------------------------- digits


def test_digits_are_8x8_bytes_with_a_fixed_disjoint_split():
    x, y = datasets.load_digits_split("all")
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.uint8 and int(x.max()) == 255
    tr, te = datasets.load_digits_split("train"), datasets.load_digits_split("test")
    assert len(tr[0]) == 1297 and len(te[0]) == 500
    assert torch.equal(te[0], datasets.load_digits_split("test")[0])
    t = datasets.load_task("digits", limit=300)
    assert t.input_size == (1, 8, 8) and len(t.x_train) == 300 and len(t.x_val) == 200
    xf, yf, what = datasets.eval_set("digits")
    assert xf.dtype == torch.float32 and 0 <= float(xf.min()) and float(xf.max()) <= 1 and len(xf) == 500
    assert "digits" in what
