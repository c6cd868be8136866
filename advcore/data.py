"""Images in and out: bundled samples, uploads, validation, preprocessing.

Everything that comes from a person passes through :func:`open_image`, which
turns any accepted file into an 8-bit RGB ``PIL.Image`` or raises
:class:`~advcore.errors.AdvlabError` with a one-line reason. Tensors are
``float32`` pixels in ``[0, 1]`` shaped ``(N, C, H, W)``.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from advcore.errors import AdvlabError
from advcore.files import read_limited
from advcore.paths import ASSETS

SAMPLES_DIR = ASSETS / "samples"

ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP")  # MPO: a camera JPEG with a second frame
MAX_FILE_BYTES = 20 * 1024 * 1024  # same cap as server.maxUploadSize in .streamlit/config.toml
MAX_PIXELS = 40_000_000  # about 6300 x 6300; larger images are refused before decoding
MIN_SIDE = 16
# Larger images are reduced on decoding (JPEG: while decoding) to this short side; every model input is smaller,
# so nothing a model sees is lost, and a 6000x6000 upload holds ~3 MB instead of ~100 MB once decoded.
REDUCED_SHORT_SIDE = 1024
MAX_ASPECT = 20  # a 40000x16 strip would be upscaled to ~160 MP by the centre crop of prepare()
CROP_PAD_MIN_SIZE = 64  # prepare(): smaller model inputs are resized and cropped without padding


@dataclass(frozen=True)
class Sample:
    """A bundled photo with its provenance."""

    file: str
    title: str
    source: str
    licence: str

    @property
    def path(self) -> Path:
        return SAMPLES_DIR / self.file


def samples() -> list[Sample]:
    """The bundled sample photos (see assets/samples/samples.json for licences)."""
    with open(SAMPLES_DIR / "samples.json", encoding="utf-8") as f:
        return [Sample(**entry) for entry in json.load(f)]


def sample_path(name: str) -> Path:
    """Path of a bundled sample by file name (``"cat.jpg"``) or stem (``"cat"``)."""
    for s in samples():
        if name in (s.file, Path(s.file).stem):
            return s.path
    known = ", ".join(Path(s.file).stem for s in samples())
    raise AdvlabError(f"Unknown sample image {name!r}; bundled samples: {known}.")


def open_image(source: str | Path | bytes | BinaryIO, *, name: str | None = None) -> Image.Image:
    """Decode and validate an untrusted image; return 8-bit RGB with EXIF rotation applied.

    Accepts PNG, JPEG, WebP and BMP in any common mode (greyscale, palette, alpha,
    CMYK, 16-bit). Refuses non-images, truncated files, images over
    ``MAX_PIXELS`` (decompression bombs) or under ``MIN_SIDE`` pixels a side. An image whose
    short side exceeds :data:`REDUCED_SHORT_SIDE` is reduced by a whole factor (JPEG: by the
    decoder's draft mode, before the pixels are decoded) so that it keeps at least that short side.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "the upload")
    data = _read_bytes(source, label)
    if len(data) == 0:
        raise AdvlabError(f"{label} is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise AdvlabError(f"{label} is larger than {MAX_FILE_BYTES // 2**20} MB.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise AdvlabError(
                f"{label} is too large: over {MAX_PIXELS / 1e6:.0f} megapixels (refused before decoding)."
            ) from None
        except UnidentifiedImageError:
            raise AdvlabError(f"{label} is not an image that can be read (PNG, JPEG, WebP or BMP).") from None
        except Exception:
            raise AdvlabError(f"{label} is not an image that can be read (PNG, JPEG, WebP or BMP).") from None
    if im.format not in ACCEPTED_FORMATS:
        raise AdvlabError(f"{label} is a {im.format} file; accepted formats are PNG, JPEG, WebP and BMP.")
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise AdvlabError(f"{label} is {w}x{h} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels.")
    if min(w, h) < MIN_SIDE:
        raise AdvlabError(f"{label} is {w}x{h} pixels; it needs at least {MIN_SIDE} pixels on each side.")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise AdvlabError(f"{label} is {w}x{h} pixels; its long side may be at most {MAX_ASPECT} times its short side.")
    factor = min(w, h) // REDUCED_SHORT_SIDE
    try:
        if factor >= 2 and im.format == "JPEG":
            im.draft(im.mode, (-(-w // factor), -(-h // factor)))  # decode at 1/2, 1/4 or 1/8 scale
        im.load()
        factor = min(im.size) // REDUCED_SHORT_SIDE
        if factor >= 2:
            im = im.reduce(factor)
    except Exception:
        raise AdvlabError(f"{label} is damaged or truncated and cannot be decoded.") from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block should not cost the picture
        pass
    return to_rgb(im)


def _read_bytes(source: str | Path | bytes | BinaryIO, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        return read_limited(source, MAX_FILE_BYTES, label)
    data = source.read(MAX_FILE_BYTES + 1)
    return data if isinstance(data, bytes) else bytes(data)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def resize_center_crop(im: Image.Image, size: int, pad: int = 32) -> Image.Image:
    """Resize the shorter side to ``size + pad`` (bicubic) and take the centre ``size x size``.

    This is the evaluation preprocessing of the EfficientNet family (crop padding 32).
    """
    w, h = im.size
    short = size + pad
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def to_tensor(im: Image.Image) -> torch.Tensor:
    """8-bit RGB image -> float tensor ``(1, 3, H, W)`` in ``[0, 1]``."""
    arr = np.asarray(to_rgb(im), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def prepare(im: Image.Image, input_size: tuple[int, int, int]) -> torch.Tensor:
    """An image as a model expects it: ``(1, C, H, W)`` in ``[0, 1]``.

    An image of exactly the input size is used as it is (so an adversarial PNG downloaded from the app
    or written by the CLI keeps every pixel when it is read back). Any other image is resized and
    centre-cropped: inputs of at least :data:`CROP_PAD_MIN_SIZE` px (ImageNet) with EfficientNet's crop
    padding of 32, small ones (Fashion-MNIST 28x28) with none.
    """
    c, h, w = input_size
    if h != w:
        raise ValueError("only square model inputs are supported")
    if im.size != (w, h):
        im = resize_center_crop(im, h, pad=32 if h >= CROP_PAD_MIN_SIZE else 0)
    x = to_tensor(im)
    if c == 1:
        if torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2]):
            x = x[:, 0:1].contiguous()  # already grey: keep its exact pixel values (no weighted-sum rounding)
        else:
            x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).clamp_(0, 1)
    return x


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round pixels to the 256 levels a PNG stores: ``round(255 x) / 255``."""
    return torch.round(x.clamp(0, 1) * 255.0) / 255.0


def to_pil(x: torch.Tensor) -> Image.Image:
    """One image ``(C, H, W)`` or ``(1, C, H, W)`` in ``[0, 1]`` -> 8-bit PIL image."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError("to_pil takes one image")
        x = x[0]
    arr = torch.round(x.detach().clamp(0, 1) * 255.0).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode="L")
    return Image.fromarray(arr, mode="RGB")


def png_bytes(x: torch.Tensor) -> bytes:
    """The PNG file of one image: exactly the 8-bit pixels :func:`quantize_8bit` gives."""
    buf = io.BytesIO()
    to_pil(x).save(buf, format="PNG")
    return buf.getvalue()
