import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from crnn.data import TRAINING_SPEC
from crnn.image import ImageSpec, decode_image, normalize_crop, pad_batch, prefer_turned, to_gray, turned_crop


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width, height, idat=b"not really deflate data"):
    """A PNG whose IHDR claims width x height (8-bit gray) followed by garbage pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ---- decode_image -----------------------------------------------------------------------------------

def test_decode_png_round_trip_is_lossless():
    arr = noise(10, 20)
    img = decode_image(encode(Image.fromarray(arr), "PNG"))
    assert img.size == (20, 10)
    assert img.mode == "RGB"
    assert np.array_equal(np.asarray(img), arr)


def test_decode_jpeg():
    arr = np.zeros((16, 40, 3), np.uint8)
    arr[:, 20:] = 255
    img = decode_image(encode(Image.fromarray(arr), "JPEG", quality=95))
    assert img.size == (40, 16)
    a = np.asarray(img.convert("L")).astype(int)
    assert a[:, :16].max() < 40 and a[:, 24:].min() > 215


def test_decode_applies_exif_orientation():
    img = Image.fromarray(noise(10, 30))
    exif = img.getexif()
    exif[0x0112] = 6                        # "rotate 90 CW to display"
    out = decode_image(encode(img, "JPEG", exif=exif))
    assert out.size == (10, 30)             # width and height swapped


@pytest.mark.parametrize("data", [b"", None])
def test_empty_bytes_refused(data):
    with pytest.raises(ValueError, match="empty"):
        decode_image(data)


def test_truncated_png_refused():
    data = encode(Image.fromarray(noise(64, 64)), "PNG")
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"hello, this is not an image", b"\x00" * 100, b"%PDF-1.4\n"])
def test_non_image_bytes_refused(data):
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(data)


def test_header_claiming_too_many_pixels_is_refused_before_decoding():
    # 7000 x 7000 = 49M > the default 40M limit; the pixel data is garbage, so a decode attempt
    # would fail with "cannot decode" instead of the size message.
    data = png_header_only(7000, 7000)
    with pytest.raises(ValueError, match=r"7000x7000.*exceeds the limit of 40000000"):
        decode_image(data)
    # The same garbage under the limit is a decode error: the check above really came first.
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(png_header_only(100, 100))


def test_small_max_pixels_spec():
    data = encode(Image.fromarray(noise(10, 20)), "PNG")     # 200 pixels
    with pytest.raises(ValueError, match="exceeds"):
        decode_image(data, ImageSpec(max_pixels=199))
    assert decode_image(data, ImageSpec(max_pixels=200)).size == (20, 10)


# ---- to_gray ----------------------------------------------------------------------------------------

def gray(img):
    out = to_gray(img)
    assert out.mode == "L"
    assert out.size == img.size
    return np.asarray(out).astype(int)


def test_gray_L_unchanged():
    arr = np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5)
    assert np.array_equal(gray(Image.fromarray(arr, "L")), arr)


def test_gray_rgb_uses_luma_weights():
    # ITU-R 601-2 luma: L = .299 R + .587 G + .114 B -> red 76, green 150, blue 29.
    arr = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]], np.uint8)
    assert np.allclose(gray(Image.fromarray(arr, "RGB")), [[76, 150, 29, 255, 0]], atol=1)


def test_gray_rgba_transparent_becomes_white():
    arr = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 128], [255, 0, 0, 255], [255, 0, 0, 0]]], np.uint8)
    # black over white at alpha 128/255 -> 255 * (1 - 128/255) = 127
    assert np.allclose(gray(Image.fromarray(arr, "RGBA")), [[255, 0, 127, 76, 255]], atol=1)


def test_gray_palette_without_and_with_transparency():
    idx = np.array([[0, 1, 2, 1]], np.uint8)
    img = Image.fromarray(idx, "P")
    img.putpalette([255, 0, 0, 0, 0, 255, 0, 0, 0] + [0] * (256 * 3 - 9))   # red, blue, black
    assert np.allclose(gray(img), [[76, 29, 0, 29]], atol=1)
    # Index 2 (black) transparent, saved and re-read as a real PNG would be.
    reread = Image.open(io.BytesIO(encode(img, "PNG", transparency=2)))
    assert reread.mode == "P" and "transparency" in reread.info
    assert np.allclose(gray(reread), [[76, 29, 255, 29]], atol=1)


def test_gray_la():
    arr = np.array([[[0, 0], [0, 255], [100, 255], [200, 0]]], np.uint8)
    assert np.allclose(gray(Image.fromarray(arr, "LA")), [[255, 0, 100, 255]], atol=1)


def test_gray_16_bit_is_rescaled_not_clipped():
    arr = np.array([[1000, 2000, 3000, 3000]], np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    # min-max to 0..255: 1000 -> 0, 2000 -> 127.5, 3000 -> 255 (clipping would give all 255)
    assert np.allclose(gray(img), [[0, 127.5, 255, 255]], atol=1)


def test_gray_16_bit_png_through_decode():
    arr = np.array([[0, 16384, 32768, 65535]], np.uint16)
    img = decode_image(encode(Image.fromarray(arr), "PNG"))
    assert img.mode in ("I;16", "I")
    assert np.allclose(gray(img), [[0, 63.75, 127.5, 255]], atol=1)


def test_gray_int32_and_float():
    i = Image.fromarray(np.array([[-50000, 0, 50000]], np.int32))
    assert i.mode == "I"
    assert np.allclose(gray(i), [[0, 127.5, 255]], atol=1)
    f = Image.fromarray(np.array([[0.0, 0.25, 1.0]], np.float32))
    assert f.mode == "F"
    assert np.allclose(gray(f), [[0, 63.75, 255]], atol=1)


def test_gray_cmyk():
    arr = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [255, 0, 0, 0]]], np.uint8)
    # white, black, cyan (RGB 0,255,255 -> .587*255 + .114*255 = 179)
    assert np.allclose(gray(Image.fromarray(arr, "CMYK")), [[255, 0, 179]], atol=1)


def test_gray_bilevel():
    img = Image.fromarray(np.array([[0, 255, 0, 255]], np.uint8), "L").convert("1")
    assert img.mode == "1"
    assert np.array_equal(gray(img), [[0, 255, 0, 255]])


# ---- normalize_crop ---------------------------------------------------------------------------------

def test_normalize_keeps_aspect_ratio():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (14, 70), dtype=np.uint8))
    out = normalize_crop(img)
    assert out.shape == (32, 160)             # 70 * 32 / 14 = 160
    assert out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]
    assert normalize_crop(Image.new("RGB", (100, 64), "white")).shape == (32, 50)


def test_long_lines_keep_their_proportions_and_only_very_wide_crops_are_squeezed():
    line = Image.new("L", (1000, 10), 255)    # 3200 wide at height 32: a line of ~200 characters
    assert normalize_crop(line).shape == (32, 3200)
    assert normalize_crop(Image.new("L", (2000, 10), 255)).shape == (32, 4096)
    assert normalize_crop(line, ImageSpec(max_width=64)).shape == (32, 64)
    assert normalize_crop(line, TRAINING_SPEC).shape == (32, 1024)  # as the shipped models were trained


def _text_crop(ink: int, paper: int) -> Image.Image:
    img = Image.new("L", (120, 20), paper)
    ImageDraw.Draw(img).text((4, 2), "Budget 42", fill=ink, font=ImageFont.load_default(size=14))
    return img


def test_normalize_turns_light_text_on_dark_into_dark_on_light():
    normal, reversed_out = normalize_crop(_text_crop(0, 255)), normalize_crop(_text_crop(255, 0))
    assert np.median(normal) == 255 and np.median(reversed_out) == 255
    assert np.abs(normal.astype(int) - reversed_out.astype(int)).mean() < 4


def test_normalize_keeps_tight_bold_crops_as_they_are():
    arr = np.zeros((20, 60), np.uint8)         # more ink than paper, but paper at both ends
    arr[:, :3] = arr[:, -3:] = 255
    assert normalize_crop(Image.fromarray(arr))[:, 10:-10].max() == 0


def test_normalize_pads_very_narrow_crops_with_edge():
    arr = np.full((32, 4), 255, np.uint8)
    arr[:, 0] = 0                              # a stroke, then white
    out = normalize_crop(Image.fromarray(arr))
    assert out.shape == (32, 16)
    assert (out[:, 4:] == out[:, 3:4]).all()
    assert (out[:, 4:] == 255).all()
    assert normalize_crop(Image.fromarray(arr), ImageSpec(min_width=24)).shape == (32, 24)


def test_normalize_stretches_contrast():
    arr = np.tile(np.linspace(100, 150, 64).astype(np.uint8), (32, 1))   # low-contrast ramp
    out = normalize_crop(Image.fromarray(arr))
    assert out.shape == (32, 64)
    assert out.min() == 0 and out.max() == 255
    assert (np.diff(out[0].astype(int)) >= 0).all()      # still monotone


def test_normalize_leaves_blank_crops_alone():
    out = normalize_crop(Image.new("L", (64, 32), 200))
    assert (out == 200).all()


# ---- vertical text: turned_crop, prefer_turned ------------------------------------------------------

def test_turned_crop_only_for_tall_crops():
    assert turned_crop(Image.new("L", (60, 20), 255)) is None
    assert turned_crop(Image.new("L", (20, 39), 255)) is None             # under twice as tall as wide
    assert turned_crop(Image.new("L", (20, 40), 255)).shape == (32, 64)
    assert turned_crop(Image.new("L", (20, 40), 255), ImageSpec(vertical_ratio=3)) is None
    assert turned_crop(Image.new("L", (10, 400), 255), ImageSpec(vertical_ratio=0)) is None


def test_turned_crop_reads_top_to_bottom_as_left_to_right():
    arr = np.full((90, 20), 255, np.uint8)
    arr[:30, 5:15] = 0                                                    # ink at the top only
    out = turned_crop(Image.fromarray(arr))
    assert out.shape == (32, 144)
    assert out[:, :40].mean() < 160 and out[:, 60:].min() == 255          # ...lands on the left


# Readings and scores of the shipped model on FUNSD's tall crops (2026.11.25.5), and two made up.
@pytest.mark.parametrize("upright, turned, expected", [
    (("|", 0.67), ("621800455", 0.89), True),     # margin number: upright it collapses to one glyph
    (("F", 0.80), ("52251", 0.998), True),
    (("", 0.10), ("ab", 0.60), True),
    (("$", 0.99), ("42", 0.43), False),           # a narrow glyph turned reads as two marks...
    ((":", 0.99), ("..", 0.80), False),           # ...even fairly confidently
    (("+", 0.98), ("+I|", 0.19), False),
    (("P", 0.90), ("O.", 0.75), False),
    (("", 0.0), ("a", 0.99), False),              # one character is never vertical text
    (("APPROVAL", 0.2), ("AP", 0.9), False),      # never fewer characters than upright
])
def test_prefer_turned(upright, turned, expected):
    assert prefer_turned(upright, turned) is expected


# ---- pad_batch --------------------------------------------------------------------------------------

def test_pad_batch_width_widths_contents_and_edge_padding():
    rng = np.random.default_rng(2)
    crops = [rng.integers(0, 256, (32, w), dtype=np.uint8) for w in (5, 17, 10)]
    batch, widths = pad_batch(crops, multiple=8)
    assert batch.shape == (3, 32, 24)         # max 17 rounded up to 24
    assert batch.dtype == np.uint8
    assert widths.tolist() == [5, 17, 10]
    for i, c in enumerate(crops):
        w = c.shape[1]
        assert np.array_equal(batch[i, :, :w], c)
        assert np.array_equal(batch[i, :, w:], np.repeat(c[:, -1:], 24 - w, axis=1))


def test_pad_batch_exact_multiple_and_multiple_one():
    crops = [np.full((32, 16), 7, np.uint8), np.full((32, 8), 9, np.uint8)]
    batch, widths = pad_batch(crops, multiple=8)
    assert batch.shape == (2, 32, 16)
    assert (batch[1] == 9).all()
    batch, _ = pad_batch([np.zeros((32, 13), np.uint8)], multiple=1)
    assert batch.shape == (1, 32, 13)
