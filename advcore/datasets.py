"""Labelled image sets for training and evaluation: Fashion-MNIST and scikit-learn's 8x8 digits.

Images come back as ``uint8`` tensors ``(N, 1, H, W)`` (compact; :func:`to_float` turns
them into ``float32`` pixels in ``[0, 1]``) with ``int64`` labels ``(N,)``.

Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, MIT licence) is read from the IDX files
of the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``,
or the directory in ``$ADVLAB_FASHION_MNIST_DIR``). Where it is missing, torchvision's
downloader can fetch it when a network exists (``download=True``). A balanced subset of
3,000 test images ships in ``assets/fashion-mnist/`` so that the shipped models can be
evaluated with no dataset installed.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from advcore.errors import AdvlabError
from advcore.paths import ASSETS

SUBSET_PATH = ASSETS / "fashion-mnist" / "test-subset.npz"
DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DIR = "ADVLAB_FASHION_MNIST_DIR"
INSTALL_HINT = (
    "install it with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or point "
    f"${ENV_DIR} at a directory holding the four IDX .gz files"
)

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGITS_CLASSES = [str(i) for i in range(10)]
DATASETS = ("fashion-mnist", "digits")

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SIZES = {"train": 60_000, "test": 10_000}


# --------------------------------------------------------------------------- IDX files


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) of unsigned bytes into a numpy array."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise AdvlabError(f"Cannot read {path}: {exc}.") from None
    if len(raw) < 4:
        raise AdvlabError(f"{path} is not an IDX file (too short).")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise AdvlabError(f"{path} is not an IDX file of unsigned bytes.")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape))
    if len(raw) - header != count:
        raise AdvlabError(f"{path} is truncated or corrupt: expected {count} values, found {len(raw) - header}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def fashion_mnist_dir(root: str | Path | None = None) -> Path:
    """Where Fashion-MNIST is looked for: ``root``, else ``$ADVLAB_FASHION_MNIST_DIR``, else the Debian path."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else DEFAULT_FASHION_MNIST_DIR


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem, directory / "FashionMNIST" / "raw" / stem):
        if candidate.is_file():
            return candidate
    return None


def fashion_mnist_available(root: str | Path | None = None) -> bool:
    """True when both splits of Fashion-MNIST can be found (see :func:`fashion_mnist_dir`)."""
    directory = fashion_mnist_dir(root)
    return all(_find(directory, stem) is not None for pair in _FILES.values() for stem in pair)


def _download_with_torchvision(directory: Path) -> None:
    """Fetch Fashion-MNIST with torchvision's downloader (needs torchvision and a network)."""
    try:
        from torchvision.datasets import FashionMNIST
    except Exception as exc:  # ImportError, or torchvision's CUDA-only build failing to load next to CPU torch
        raise AdvlabError(
            f"Fashion-MNIST is not in {directory} and torchvision cannot be imported to download it "
            f"({type(exc).__name__}); {INSTALL_HINT}."
        ) from None
    try:
        for train in (True, False):
            FashionMNIST(str(directory), train=train, download=True)
    except Exception as exc:  # no network, disk full, ...
        raise AdvlabError(f"Downloading Fashion-MNIST into {directory} failed ({exc}); {INSTALL_HINT}.") from None


@lru_cache(maxsize=4)
def _load_split(directory: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    d = Path(directory)
    image_stem, label_stem = _FILES[split]
    image_file, label_file = _find(d, image_stem), _find(d, label_stem)
    if image_file is None or label_file is None:
        raise AdvlabError(f"Fashion-MNIST is not installed: no {image_stem}(.gz) in {d}; {INSTALL_HINT}.")
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(labels) != len(images):
        raise AdvlabError(f"The Fashion-MNIST files in {d} have unexpected shapes {images.shape} and {labels.shape}.")
    if len(images) != _SIZES[split] or labels.max() > 9:
        raise AdvlabError(f"The Fashion-MNIST {split} files in {d} are not the official ones "
                          f"({len(images)} images, expected {_SIZES[split]}).")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def load_fashion_mnist(split: str = "train", root: str | Path | None = None, *,
                       download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``split`` ("train": 60,000 images, "test": 10,000) as ``uint8 (N,1,28,28)`` and labels.

    Missing files raise :class:`AdvlabError` naming how to install them; with
    ``download=True`` torchvision's downloader is tried first (it needs a network).
    The returned tensors are cached and shared: do not modify them in place.
    """
    if split not in _FILES:
        raise AdvlabError(f"Unknown Fashion-MNIST split {split!r}; choose train or test.")
    directory = fashion_mnist_dir(root)
    if download and not fashion_mnist_available(directory):
        _download_with_torchvision(directory)
    return _load_split(str(directory), split)


# --------------------------------------------------------------------------- the shipped subset


def load_subset(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped Fashion-MNIST evaluation subset: 3,000 official test images, 300 per class.

    The images are stored class-interleaved (labels 0,1,...,9 in a shuffled order per block of
    ten), so the first ``n`` images are as balanced as ``n`` allows.
    """
    x, y = _subset()
    if n is not None:
        if not 1 <= n <= len(x):
            raise AdvlabError(f"The shipped Fashion-MNIST subset has {len(x)} images; asked for {n}.")
        x, y = x[:n], y[:n]
    return x, y


@lru_cache(maxsize=1)
def _subset() -> tuple[torch.Tensor, torch.Tensor]:
    if not SUBSET_PATH.is_file():
        raise AdvlabError(f"The shipped Fashion-MNIST subset {SUBSET_PATH} is missing; reinstall advlab.")
    with np.load(SUBSET_PATH) as z:
        images, labels = z["images"], z["labels"]
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def make_subset(path: str | Path = SUBSET_PATH, *, per_class: int = 300, seed: int = 0,
                root: str | Path | None = None) -> Path:
    """Write the evaluation subset: ``per_class`` random test images of each class, class-interleaved."""
    x, y = load_fashion_mnist("test", root)
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(10):
        idx = (y == c).nonzero().squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    order = []
    for i in range(per_class):  # block i holds the i-th pick of every class, in a shuffled class order
        for c in torch.randperm(10, generator=gen).tolist():
            order.append(int(picks[c][i]))
    index = np.array(order, dtype=np.int32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=x[index, 0].numpy(), labels=y[index].numpy().astype(np.uint8),
                        test_index=index)
    _subset.cache_clear()
    return path


# --------------------------------------------------------------------------- digits


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    # The 8x8 images hold counts 0..16; scale them to bytes 0..255 (16 -> 255), like any 8-bit image.
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(d.target.astype(np.int64))


def load_digits_split(split: str = "train", *, test_size: int = 500,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 digits as ``uint8 (N,1,8,8)``; a fixed seeded split, ``test_size`` held out."""
    if split not in ("train", "test", "all"):
        raise AdvlabError(f"Unknown digits split {split!r}; choose train, test or all.")
    x, y = _digits()
    if split == "all":
        return x, y
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    idx = perm[test_size:] if split == "train" else perm[:test_size]
    return x[idx], y[idx]


# --------------------------------------------------------------------------- tasks


def to_float(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` images -> ``float32`` pixels in ``[0, 1]`` (float input is returned as float32)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


@dataclass
class Task:
    """A classification task: training, validation and evaluation images (``uint8``) with labels."""

    name: str
    classes: list[str]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    description: dict

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def _split_validation(x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int = 0):
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val], perm[n_val:]
    return x[train], y[train], x[val], y[val]


def load_task(name: str, *, root: str | Path | None = None, limit: int | None = None) -> Task:
    """A task for training: ``"fashion-mnist"`` or ``"digits"``.

    Fashion-MNIST: 55,000 training and 5,000 validation images (a fixed seeded split of the
    official training set; validation feeds the random walk and parallel MAT's voting
    weights), evaluation on the shipped 3,000-image test subset. Digits: 1,097 training,
    200 validation, 500 evaluation images. ``limit`` keeps the first ``limit`` training images.
    """
    if name == "fashion-mnist":
        x, y = load_fashion_mnist("train", root)
        xt, yt, xv, yv = _split_validation(x, y, 5000)
        xe, ye = load_subset()
        classes = FASHION_MNIST_CLASSES
        desc = {"dataset": "fashion-mnist", "train": "official training set minus the validation split",
                "validation": "5,000 images of the official training set (seeded split, seed 0)",
                "evaluation": "shipped subset assets/fashion-mnist/test-subset.npz (3,000 official test images, "
                              "300 per class)"}
    elif name == "digits":
        x, y = load_digits_split("train")
        xt, yt, xv, yv = _split_validation(x, y, 200)
        xe, ye = load_digits_split("test")
        classes = DIGITS_CLASSES
        desc = {"dataset": "digits", "train": "scikit-learn digits minus 500 test and 200 validation images",
                "validation": "200 images (seeded split)", "evaluation": "500 held-out digits (seeded split)"}
    else:
        raise AdvlabError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    if limit is not None:
        if limit < 1:
            raise AdvlabError(f"limit must be at least 1, got {limit}.")
        xt, yt = xt[:limit], yt[:limit]
    desc = {**desc, "train_images": len(xt), "validation_images": len(xv), "evaluation_images": len(xe)}
    return Task(name, list(classes), xt, yt, xv, yv, xe, ye, desc)


def eval_set(dataset: str, n: int | None = None, *, source: str = "subset",
             root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Labelled evaluation images of a model's dataset, as ``float32`` in ``[0, 1]``, plus a description.

    Fashion-MNIST: ``source="subset"`` (the shipped 3,000 images, no install needed) or
    ``"test"`` (the installed official 10,000). Digits: the 500 held-out digits.
    """
    if dataset == "fashion-mnist":
        if source == "subset":
            x, y = load_subset()
            what = "shipped Fashion-MNIST test subset (3,000 images, 300 per class)"
        elif source == "test":
            x, y = load_fashion_mnist("test", root)
            what = "official Fashion-MNIST test set (10,000 images)"
        else:
            raise AdvlabError(f"Unknown evaluation data {source!r}; choose subset or test.")
    elif dataset == "digits":
        x, y = load_digits_split("test")
        what = "500 held-out scikit-learn digits"
    else:
        raise AdvlabError(
            f"No labelled evaluation set is available for {dataset!r} models; eval works on Fashion-MNIST and "
            "digits models (attack single images with the 'attack' command instead)."
        )
    if n is not None:
        if n < 1 or n > len(x):
            raise AdvlabError(f"The {what} has {len(x)} images; --n must be between 1 and {len(x)}, got {n}.")
        x, y = x[:n], y[:n]
    return to_float(x), y, what
