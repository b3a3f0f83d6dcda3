import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from crnn.image import ImageError, ImageSpec, decode_image, decode_images, normalize_crop, pad_batch, to_gray, turned_crop
from crnn.training.data import TRAINING_SPEC


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


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_decode_applies_orientation_in_every_place_pillow_keeps_it(fmt):
    """Orientation is looked for only where Pillow keeps it (EXIF in the file's info, a TIFF's tags, XMP):
    whichever a format uses, the crop comes out turned."""
    img = Image.fromarray(noise(10, 30))
    exif = img.getexif()
    exif[0x0112] = 6
    assert decode_image(encode(img, fmt, exif=exif)).size == (10, 30)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    if fmt == "PNG":
        png = encode(img, "PNG", pnginfo=_png_text("XML:com.adobe.xmp", xmp.decode()))
        assert decode_image(png).size == (10, 30)


def _png_text(key: str, value: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt(key, value)
    return info


def test_decode_images_gives_each_item_what_decode_image_gives():
    items = [encode(Image.fromarray(noise(8, 20, seed)), fmt) for seed, fmt in enumerate(["PNG", "JPEG", "BMP"])]
    items += [b"", None, "a/path.png", b"%PDF-1.4 not an image", items[0][:40]]
    out = decode_images(items)
    assert len(out) == len(items)
    for data, got in zip(items, out):
        try:
            want = decode_image(data)
        except ImageError as e:
            assert isinstance(got, ImageError) and str(got) == str(e)
        else:
            assert np.array_equal(np.asarray(got), np.asarray(want))


def refusal(data, spec=ImageSpec()) -> str:
    """decode_image's message for bytes it refuses (an ImageError, which is a ValueError)."""
    with pytest.raises(ImageError) as e:
        decode_image(data, spec)
    assert isinstance(e.value, ValueError)
    return str(e.value)


@pytest.mark.parametrize("data, reason", [(b"", "empty image bytes"), (None, "image is null"),
                                          ("crops/0001.png", "not image bytes (str)")])
def test_no_bytes_refused(data, reason):
    assert refusal(data) == reason


def test_truncated_png_and_jpeg_refused():
    png = encode(Image.fromarray(noise(64, 64)), "PNG")
    assert refusal(png[: len(png) // 2]) == "truncated image"
    jpeg = encode(Image.fromarray(noise(64, 64)), "JPEG")
    assert refusal(jpeg[: len(jpeg) // 2]) == "truncated image"
    # Cut inside the header: Pillow cannot even open it; the signature still says what it was meant to be.
    assert refusal(png[:40]) == "corrupt image (unreadable PNG header)"


def test_truncated_images_stay_refused_with_pillows_default():
    from PIL import ImageFile
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False     # truncated is an error, not grey padding


def test_corrupt_png_data_refused():
    png = encode(Image.fromarray(noise(64, 64)), "PNG")
    i = png.find(b"IDAT") + 40
    assert refusal(png[:i] + b"\x13" * 64 + png[i + 64:]) == "corrupt image"   # broken deflate stream


@pytest.mark.parametrize("data, reason", [
    (b"hello, this is not an image", "not an image (text)"),
    (b"/data/crops/0001.png", "not an image (text)"),
    (b"\x00" * 100, "not an image (unrecognised format)"),
    (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image (unrecognised format)"),
    (b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n", "not an image (PDF document)"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image (PostScript)"),   # never Ghostscript
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "not an image (SVG vector image)"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "not an image (SVG vector image)"),
    (b"\n<!DOCTYPE html><html><body>404</body></html>", "not an image (HTML page)"),
    (b"data:image/png;base64,iVBORw0KGgo=", "not an image (data URI, decode the base64 after the comma)"),
    (b"iVBORw0KGgoAAAANSUhEUgAA", "not an image (base64 text, decode it first)"),
])
def test_non_image_bytes_refused_with_a_stable_reason(data, reason):
    assert refusal(data) == reason
    assert refusal(data) == reason                          # the same bytes, the same message
    assert "0x" not in reason and "object at" not in reason


def test_messages_hold_no_memory_address():
    # Pillow's own message is "cannot identify image file <_io.BytesIO object at 0x7f...>", new each call.
    msgs = {refusal(b"garbage bytes \x01\x02") for _ in range(3)}
    assert msgs == {"not an image (unrecognised format)"}


def test_header_claiming_too_many_pixels_is_refused_before_decoding():
    # 7000 x 7000 = 49M > the default 40M limit; the pixel data is garbage, so a decode attempt
    # would fail with "truncated image" instead of the size message.
    assert refusal(png_header_only(7000, 7000)) == "image too large: 7000x7000 > limit of 40000000 pixels"
    # The same garbage under the limit is a decode error: the check above really came first.
    assert refusal(png_header_only(100, 100)) in ("truncated image", "corrupt image")


def test_decompression_bombs_refused_by_pillow_or_by_the_limit():
    # Over twice Pillow's MAX_IMAGE_PIXELS Image.open itself raises DecompressionBombError (only the pixel
    # count is known); between once and twice it warns, and the spec's own limit refuses it.
    assert refusal(png_header_only(100_000, 100_000)) == \
        "image too large: 10000000000 pixels > limit of 40000000 pixels"
    assert refusal(png_header_only(10_000, 10_000)) == "image too large: 10000x10000 > limit of 40000000 pixels"
    big = ImageSpec(max_pixels=10**12)                      # a raised limit: Pillow's check still stands
    assert refusal(png_header_only(100_000, 100_000), big) == \
        f"image too large: 10000000000 pixels > limit of {2 * Image.MAX_IMAGE_PIXELS} pixels"


def test_8000x8000_jpeg_refused_by_its_header():
    data = encode(Image.new("L", (8000, 8000), 255), "JPEG")   # 64 MP, 0.1 s to encode, ~0.7 MB
    assert refusal(data) == "image too large: 8000x8000 > limit of 40000000 pixels"


def test_small_max_pixels_spec():
    data = encode(Image.fromarray(noise(10, 20)), "PNG")     # 200 pixels
    assert refusal(data, ImageSpec(max_pixels=199)) == "image too large: 20x10 > limit of 199 pixels"
    assert decode_image(data, ImageSpec(max_pixels=200)).size == (20, 10)


@pytest.mark.parametrize("make, size, mode", [
    (lambda: encode(Image.new("L", (1, 1), 0), "PNG"), (1, 1), "L"),
    (lambda: encode(Image.new("L", (20000, 20), 255), "PNG"), (20000, 20), "L"),
    (lambda: encode(Image.new("L", (20, 20000), 255), "PNG"), (20, 20000), "L"),
    (lambda: encode(Image.fromarray(np.full((5, 7), 40000, np.uint16)), "PNG"), (7, 5), "I;16"),
    (lambda: encode(Image.new("CMYK", (9, 4), (0, 0, 0, 255)), "JPEG"), (9, 4), "CMYK"),
])
def test_odd_but_real_images_decode(make, size, mode):
    img = decode_image(make())
    assert img.size == size and img.mode == mode
    assert normalize_crop(img).shape[0] == 32


def _frames(fmt: str, **kw) -> bytes:
    frames = [Image.new("L", (12, 8), v) for v in (10, 128, 250)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, kw", [("GIF", {"duration": 100, "loop": 0}), ("TIFF", {})])
def test_animated_gif_and_multipage_tiff_give_their_first_frame(fmt, kw):
    img = decode_image(_frames(fmt, **kw))
    assert img.size == (12, 8)
    assert np.asarray(to_gray(img)).max() <= 12            # frame 0 (value 10), not a later one


def test_palette_png_with_transparency_decodes():
    img = Image.new("P", (6, 3), 0)
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 1)
    out = decode_image(encode(img, "PNG", transparency=0))
    assert out.mode == "P" and "transparency" in out.info
    assert (np.asarray(to_gray(out)) == 255).all()          # transparent black on white, and one white pixel


def test_zero_pixel_header_refused():
    # PNG refuses a zero width already in Image.open; formats that do not are caught by the size check.
    assert refusal(png_header_only(0, 10)) == "corrupt image (unreadable PNG header)"


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


def test_gray_premultiplied_la_from_tiff():
    img = Image.new("La", (2, 1), (100, 255))
    assert np.allclose(gray(img), [[100, 100]], atol=1)


def test_gray_unconvertible_mode_is_an_image_error(monkeypatch):
    img = Image.new("RGB", (2, 2))
    monkeypatch.setattr(Image.Image, "convert", lambda self, mode=None, *a, **k: (_ for _ in ()).throw(
        ValueError("conversion from RGB to L not supported")))
    with pytest.raises(ImageError, match=r"^unsupported image \(mode RGB\)$"):
        to_gray(img)


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


# ---- vertical text: turned_crop (prefer_turned: test_recognizer.py) ------------------------------------------------------

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
