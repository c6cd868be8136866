"""Results as records: JSON-safe values for files, downloads and the command line, and the fields that name the
image a record was measured on (every lab's record takes them from :func:`image_record`)."""

from __future__ import annotations

import hashlib
import math

from PIL import Image


def json_safe(obj):
    """Replace non-finite floats (PSNR of an unchanged image is inf) by ``None`` for strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def pixel_sha256(image: Image.Image) -> str:
    """SHA-256 (hex) of an image's decoded pixels: ``b"WxH\\n"`` then its 8-bit RGB bytes, row by row.

    Decoded pixels, not file bytes, so that the page (which holds a test image as greyscale, an upload as
    bytes) and the command line (a path, ``fashion-mnist:N``) name the same image by the same hash.
    """
    rgb = image.convert("RGB")
    w, h = rgb.size
    return hashlib.sha256(f"{w}x{h}\n".encode("ascii") + rgb.tobytes()).hexdigest()


def image_record(name: str | None, image: Image.Image | None) -> dict:
    """The fields that say which image a record was measured on: ``image`` (its name or ``--image``) and
    ``image_sha256`` (:func:`pixel_sha256`; None without an image)."""
    return {"image": name, "image_sha256": None if image is None else pixel_sha256(image)}
