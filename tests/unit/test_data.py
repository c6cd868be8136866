"""Untrusted images: advcore.data.open_image on damaged, hostile and unusual files (all generated here)."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, features

from advcore import data
from advcore.errors import AdvlabError


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mode="RGB")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bilevel_png(w: int, h: int) -> bytes:
    """A valid all-black 1-bit PNG of w x h, built row by row: a 30000x30000 one is ~110 KB and ~0.5 s."""
    z = zlib.compressobj(9)
    row = bytes(1 + (w + 7) // 8)  # filter byte + packed bits
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def refused(source, match: str) -> str:
    with pytest.raises(AdvlabError, match=match) as info:
        data.open_image(source)
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------- not images, damaged images


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, I am not a picture\n" * 20)
    msg = refused(path, "not an image that can be read")
    assert "notes.png" in msg


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    refused(path, "empty")


def test_missing_file_and_directory(tmp_path):
    refused(tmp_path / "missing.png", "does not exist")
    refused(tmp_path, "not a file")


def test_truncated_jpeg(tmp_path):
    full = encode(noise(320, 240), "JPEG", quality=95)
    Image.open(io.BytesIO(full)).load()  # the intact file decodes
    path = tmp_path / "cut.jpg"
    path.write_bytes(full[: len(full) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # Pillow's default: a short JPEG raises on load
    refused(path, "damaged or truncated")
    refused(full[:-50], "damaged or truncated")


def test_truncated_png():
    full = encode(noise(200, 150), "PNG")
    refused(full[: len(full) // 2], "damaged or truncated")
    # Losing only the IEND chunk loses no pixel: Pillow decodes it, and the pixels are intact.
    im = data.open_image(full[:-12])
    assert np.array_equal(np.asarray(im), np.asarray(noise(200, 150)))


def test_decompression_bomb_refused_before_decoding(monkeypatch):
    bomb = bilevel_png(30000, 30000)  # 900 megapixels, ~110 KB on disk
    assert len(bomb) < 200_000

    def no_decoding(self):
        raise AssertionError("open_image decoded the pixels of a bomb")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    t0 = time.perf_counter()
    msg = refused(bomb, "too large")
    assert "40 megapixels" in msg
    # Between advcore's 40 MP and Pillow's own bomb threshold (~89 MP) advcore's check names the size.
    refused(bilevel_png(7000, 7000), "7000x7000 pixels; the limit is 40 megapixels")
    assert time.perf_counter() - t0 < 5


def test_tiny_images_refused():
    refused(encode(Image.new("RGB", (1, 1)), "PNG"), "1x1 pixels; it needs at least 16")
    refused(encode(Image.new("RGB", (300, 15)), "PNG"), "at least 16")
    assert data.open_image(encode(Image.new("RGB", (16, 16)), "PNG")).size == (16, 16)


def test_extreme_aspect_ratio_refused():
    # A 40000x16 strip is a 1 KB PNG, but prepare() would upscale it to 640000x256 (~0.5 GB) before cropping.
    refused(encode(Image.new("L", (40000, 16)), "PNG"), "at most 20 times")
    assert data.open_image(encode(Image.new("L", (320, 16)), "PNG")).size == (320, 16)


def test_gif_refused_naming_the_accepted_formats():
    msg = refused(encode(noise(64, 48).convert("P"), "GIF"), "GIF")
    for fmt in ("PNG", "JPEG", "WebP", "BMP"):
        assert fmt in msg


def test_over_20_mb_refused_without_decoding(tmp_path):
    limit = data.MAX_FILE_BYTES
    assert limit == 20 * 2**20
    big = tmp_path / "big.png"
    with open(big, "wb") as f:  # a sparse file: 21 MB that cost nothing
        f.write(encode(noise(32, 32), "PNG"))
        f.truncate(limit + 2**20)
    refused(big, "larger than 20 MB")
    payload = encode(noise(32, 32), "PNG") + bytes(limit)
    refused(payload, "larger than 20 MB")
    refused(io.BytesIO(payload), "larger than 20 MB")


# --------------------------------------------------------------------------- accepted inputs, every mode


def test_source_kinds(tmp_path):
    payload = encode(noise(64, 48), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(payload)
    expected = np.asarray(noise(64, 48))
    for source in (payload, bytearray(payload), io.BytesIO(payload), path, str(path)):
        im = data.open_image(source)
        assert im.mode == "RGB" and im.size == (64, 48)
        assert np.array_equal(np.asarray(im), expected)
    refused(io.BytesIO(b"garbage" * 10), "the upload is not an image")
    with pytest.raises(AdvlabError, match="^photo.png is not"):
        data.open_image(b"garbage" * 10, name="photo.png")


def test_cmyk_jpeg():
    im = data.open_image(encode(Image.new("CMYK", (60, 40), (0, 255, 0, 0)), "JPEG", quality=95))  # magenta
    assert im.mode == "RGB" and im.size == (60, 40)
    r, g, b = np.asarray(im)[20, 30].astype(int)
    assert r > 230 and g < 25 and b > 230


def test_16_bit_greyscale_png_is_scaled_not_clipped():
    arr = np.zeros((20, 30), dtype=np.uint16)
    arr[:, 10:20] = 32768
    arr[:, 20:] = 65535
    payload = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(payload)).mode == "I;16"
    px = np.asarray(data.open_image(payload)).astype(int)
    assert px.shape == (20, 30, 3)
    assert (px[:, :10] == 0).all()
    assert (abs(px[:, 10:20] - 128) <= 1).all()  # clipping would give 255
    assert (px[:, 20:] == 255).all()


def test_palette_png_with_transparency_is_composited_on_white():
    im = Image.new("P", (32, 32), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    im.paste(1, (0, 0, 16, 32))
    payload = encode(im, "PNG", transparency=1)
    px = np.asarray(data.open_image(payload))
    assert px.shape == (32, 32, 3)
    assert (px[:, :16] == 255).all()  # transparent blue -> white background
    assert (px[:, 16:] == [255, 0, 0]).all()


def test_rgba_and_la_png():
    rgba = np.zeros((24, 24, 4), dtype=np.uint8)
    rgba[:, :12] = [0, 200, 0, 255]
    rgba[:, 12:] = [0, 0, 0, 0]
    px = np.asarray(data.open_image(encode(Image.fromarray(rgba, mode="RGBA"), "PNG")))
    assert (px[:, :12] == [0, 200, 0]).all() and (px[:, 12:] == 255).all()

    la = Image.new("LA", (20, 18), (50, 255))
    im = data.open_image(encode(la, "PNG"))
    assert im.mode == "RGB" and im.size == (20, 18)
    assert (np.asarray(im) == 50).all()


def test_exif_rotated_jpeg():
    im = noise(300, 200)
    exif = im.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    out = data.open_image(encode(im, "JPEG", exif=exif))
    assert out.mode == "RGB" and out.size == (200, 300)


def test_broken_exif_does_not_cost_the_picture():
    # An EXIF block that is not a TIFF structure.
    out = data.open_image(encode(noise(40, 30), "JPEG", exif=b"Exif\x00\x00garbage-not-tiff"))
    assert out.size == (40, 30)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp():
    out = data.open_image(encode(noise(70, 50), "WEBP", quality=90))
    assert out.mode == "RGB" and out.size == (70, 50)
    assert data.open_image(encode(Image.new("RGBA", (30, 20), (0, 0, 0, 0)), "WEBP", lossless=True)).mode == "RGB"


def test_bmp_and_greyscale_and_bilevel():
    src = noise(45, 35)
    out = data.open_image(encode(src, "BMP"))
    assert out.size == (45, 35) and np.array_equal(np.asarray(out), np.asarray(src))
    assert data.open_image(encode(src.convert("L"), "PNG")).mode == "RGB"
    assert data.open_image(encode(src.convert("1"), "PNG")).mode == "RGB"


def test_multi_picture_jpeg_from_a_camera_is_accepted():
    # Many phone cameras write MPO: a JPEG followed by a second JPEG. Pillow names the format MPO.
    first = noise(64, 48, seed=1)
    payload = encode(first, "MPO", save_all=True, append_images=[noise(64, 48, seed=2)])
    assert Image.open(io.BytesIO(payload)).format == "MPO"
    out = data.open_image(payload)
    assert out.size == (64, 48)
    expected = np.asarray(Image.open(io.BytesIO(encode(first, "JPEG"))), dtype=int)
    assert np.abs(np.asarray(out, dtype=int) - expected).mean() < 4  # the first frame


def test_bundled_samples_all_open():
    for s in data.samples():
        im = data.open_image(s.path)
        assert im.mode == "RGB" and min(im.size) >= data.MIN_SIDE
        assert Path(s.path).stat().st_size < data.MAX_FILE_BYTES


def _encoded(size: tuple[int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_huge_upload_is_reduced_on_decoding(fmt: str):
    """A 6000x4000 image (a few KB when flat) comes back with a short side of 1024-2047, not 24M pixels."""
    im = data.open_image(_encoded((6000, 4000), fmt), name="big")
    assert data.REDUCED_SHORT_SIDE <= min(im.size) < 2 * data.REDUCED_SHORT_SIDE
    assert abs(im.size[0] / im.size[1] - 1.5) < 0.01


def test_an_image_at_the_input_size_goes_in_unchanged():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = data.prepare(Image.fromarray(pixels), (3, 224, 224))
    assert torch.equal(x, torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255)
