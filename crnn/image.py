"""Crop image handling shared by training and inference: decode, normalise geometry, pad.

A crop becomes a (32, w) uint8 grayscale array: height 32, aspect ratio kept,
w clamped to [min_width, max_width] (narrow crops are padded, wide ones squeezed),
contrast stretched to the full 0..255 range, dark text on a light background
(white-on-black headers and table heads are inverted).

Crops at least `vertical_ratio` times taller than wide may hold vertical text
(margin numbers, turned table heads): `turned_crop` gives their reading
turned upright (`crnn.recognizer.prefer_turned` picks between the two readings).
"""

from __future__ import annotations

import codecs
import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

HEIGHT = 32


@dataclass(frozen=True)
class ImageSpec:
    height: int = HEIGHT
    min_width: int = 16
    max_width: int = 4096         # wider crops are squeezed; lines of ~250 characters at 16 px each fit
    max_pixels: int = 40_000_000  # larger "crops" are refused before decoding: decompression bombs
    vertical_ratio: float = 2.0   # height / width from which a crop is also read turned; 0 turns none


class ImageError(ValueError):
    """A crop that cannot be read. Its message is one of the fixed reasons listed in `decode_image`:
    the same bytes always give the same message (no memory addresses, no exception text)."""


# Magic numbers of the raster formats Pillow reads, to name the format of a crop Pillow could not open.
_SIGNATURES = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"), (b"BM", "BMP"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"))
# Things that are often mistaken for images, by how they start (after whitespace, case-insensitive).
_NOT_IMAGES = ((b"%pdf", "PDF document"), (b"%!ps", "PostScript"), (b"<svg", "SVG vector image"),
               (b"<!doctype html", "HTML page"), (b"<html", "HTML page"), (b"<?xml", "XML document"),
               (b"data:image/", "data URI, decode the base64 after the comma"),
               (b"ivborw0kggo", "base64 text, decode it first"), (b"/9j/", "base64 text, decode it first"))
_TRUNCATED = ("truncated", "not enough image data", "not enough data", "premature end", "unexpected end",
              "unexpected eof", "reached eof")  # (Pillow's messages, lower-cased)
_FORMATS: tuple[str, ...] = ()


# Where Pillow finds an orientation (`Image.getexif`): these info keys, or a TIFF's tags (`tag_v2`).
_ORIENTATION_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def _formats() -> tuple[str, ...]:
    # Every format Pillow reads but EPS, whose load runs Ghostscript on the data: no time bound, no crop.
    # PNG and JPEG first: Pillow tries the formats in this order, and nearly every crop is one of them.
    global _FORMATS
    if not _FORMATS:
        Image.init()
        _FORMATS = tuple(dict.fromkeys(f for f in ("PNG", "JPEG", *Image.ID) if f in Image.ID and f != "EPS"))
    return _FORMATS


def decode_image(data: bytes, spec: ImageSpec = ImageSpec()) -> Image.Image:
    """Bytes -> PIL image (first frame or page, EXIF orientation applied). Raises ImageError (a
    ValueError) with one of these messages, the same for the same bytes:

    - ``image is null`` / ``empty image bytes`` / ``not image bytes (<type>)``: no bytes to decode
    - ``not an image (unrecognised format)``: Pillow reads no format from the bytes; where they are a
      known non-image the reason names it instead: ``not an image (PDF document)``, ``(SVG vector
      image)``, ``(HTML page)``, ``(XML document)``, ``(PostScript)``, ``(text)``, ``(base64 text, decode
      it first)``, ``(data URI, decode the base64 after the comma)``
    - ``image too large: <W>x<H> > limit of <N> pixels`` (or ``<P> pixels > ...`` where Pillow's own
      decompression-bomb check refused it first): refused from the header, before decoding
    - ``image too small: <W>x<H>``: a header claiming no pixels
    - ``truncated image``: the data ends before the image does
    - ``corrupt image``: the pixel data cannot be decoded; ``corrupt image (unreadable <FORMAT>
      header)`` where the bytes start like a PNG, JPEG, ... that Pillow cannot open
    - ``unsupported image (<reason>)``: a valid file Pillow cannot decode here (a missing codec)
    - ``image too large: out of memory``

    The part before a ':' (``image too large``) is the kind, to group by; none has a ':' elsewhere.
    """
    image = decode_images([data], spec)[0]
    if isinstance(image, ImageError):
        raise image
    return image


def decode_images(items, spec: ImageSpec = ImageSpec()) -> list[Image.Image | ImageError]:
    """`decode_image` of each item: the image, or the ImageError it raised. One warnings filter for them all:
    entering one is a noticeable part of a small crop's decode."""
    out: list[Image.Image | ImageError] = []
    with warnings.catch_warnings():
        # DecompressionBombWarning (spec.max_pixels decides), "Corrupt EXIF data", ...: worker log noise.
        warnings.simplefilter("ignore")
        for data in items:
            try:
                out.append(_decode(data, spec))
            except ImageError as e:
                out.append(e)
    return out


def _decode(data, spec: ImageSpec) -> Image.Image:
    """`decode_image` of one item, warnings left to the caller."""
    if data is None:
        raise ImageError("image is null")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"not image bytes ({type(data).__name__})")
    if len(data) == 0:
        raise ImageError("empty image bytes")
    data = bytes(data)
    fmt = None
    try:
        img = Image.open(io.BytesIO(data), formats=_formats())
        fmt = img.format
        w, h = img.size
        if w * h > spec.max_pixels:
            raise ImageError(f"image too large: {w}x{h} > limit of {spec.max_pixels} pixels")
        if w < 1 or h < 1:
            raise ImageError(f"image too small: {w}x{h}")
        img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # over twice Pillow's MAX_IMAGE_PIXELS: refused by Image.open
        raise ImageError(_bomb_reason(str(e), spec)) from None
    except UnidentifiedImageError:
        raise ImageError(_unidentified_reason(data)) from None
    except MemoryError:
        raise ImageError("image too large: out of memory") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error... for bad data
        raise ImageError(_decode_reason(e, fmt)) from None
    if not any(k in img.info for k in _ORIENTATION_KEYS) and not hasattr(img, "tag_v2"):
        return img   # no orientation anywhere: exif_transpose would only copy the image
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # an orientation tag Pillow cannot apply: the pixels are still good
        return img


def _bomb_reason(message: str, spec: ImageSpec) -> str:
    m = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", message)
    if not m:
        return f"image too large: over {spec.max_pixels} pixels"
    pixels, pillow_limit = int(m[1]), int(m[2])
    return f"image too large: {pixels} pixels > limit of {min(spec.max_pixels, pillow_limit)} pixels"


def _unidentified_reason(data: bytes) -> str:
    for magic, name in _SIGNATURES + (((data[:4], "WEBP"),) if data[8:12] == b"WEBP" else ()):
        if data.startswith(magic):
            return f"corrupt image (unreadable {name} header)"
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for start, what in _NOT_IMAGES:
        if head.startswith(start):
            if start == b"<?xml" and b"<svg" in data[:4096].lower():
                what = "SVG vector image"
            return f"not an image ({what})"
    try:  # (incremental: a character cut at 4096 bytes is held back, not an error)
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:4096], final=len(data) <= 4096)
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "not an image (text)"
    return "not an image (unrecognised format)"


def _decode_reason(e: Exception, fmt: str | None) -> str:
    message = str(e).lower()
    if any(t in message for t in _TRUNCATED):
        return "truncated image"
    if fmt and ("not available" in message or "cannot find loader" in message):
        return f"unsupported image (no {fmt} decoder)"  # a codec Pillow was built without, an identify-only format
    return "corrupt image"


def to_gray(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L'. Transparency is composited on white; 16/32-bit and float are rescaled.
    Raises ImageError ``unsupported image (mode <mode>)`` for a mode Pillow cannot convert."""
    if img.mode == "L" and "transparency" not in img.info:
        return img
    try:
        if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            a = np.asarray(img, dtype=np.float32)
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
            return Image.fromarray(a.astype(np.uint8), "L")
        if img.mode == "La":  # premultiplied (TIFF): Pillow converts it only to LA
            img = img.convert("LA")
        if img.mode == "P" or img.mode in ("LA", "PA", "RGBA", "RGBa") or "transparency" in img.info:
            img = img.convert("RGBA")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, img).convert("L")
        if img.mode not in ("RGB", "1"):
            img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
        return img.convert("L")
    except ValueError as e:  # "conversion from X to Y not supported"
        raise ImageError(f"unsupported image (mode {img.mode})") from e


def normalize_crop(img: Image.Image, spec: ImageSpec = ImageSpec()) -> np.ndarray:
    """PIL crop (any mode) -> (spec.height, w) uint8 array, spec.min_width <= w <= spec.max_width."""
    img = to_gray(img)
    w, h = img.size
    new_w = max(1, round(w * spec.height / max(h, 1)))
    fit_w = min(new_w, spec.max_width)
    a = np.asarray(img.resize((fit_w, spec.height), Image.BILINEAR, reducing_gap=3.0))
    lo, hi = int(a.min()), int(a.max())
    if hi - lo >= 8:  # stretch contrast; leave (near-)blank crops alone rather than amplify noise
        a = ((a.astype(np.int32) - lo) * 255 // (hi - lo)).astype(np.uint8)
    if _is_light_on_dark(a):
        a = 255 - a
    if fit_w < spec.min_width:
        a = np.pad(a, ((0, 0), (0, spec.min_width - fit_w)), mode="edge")
    return np.ascontiguousarray(a)


def is_tall(img: Image.Image, spec: ImageSpec = ImageSpec()) -> bool:
    """Whether the crop may hold vertical text: at least `spec.vertical_ratio` times taller than wide."""
    w, h = img.size
    return bool(spec.vertical_ratio) and h >= spec.vertical_ratio * w


def turned_crop(img: Image.Image, spec: ImageSpec = ImageSpec()) -> np.ndarray | None:
    """A tall crop turned a quarter counter-clockwise and normalised (vertical text runs top to bottom,
    as margin and spine text does in English documents); None for other crops."""
    return normalize_crop(img.transpose(Image.Transpose.ROTATE_90), spec) if is_tall(img, spec) else None


def _is_light_on_dark(a: np.ndarray) -> bool:
    # Mostly-dark pixels alone would also flag tight crops of bold text; their left
    # and right edges are usually paper, while a reversed-out field is dark there too.
    if a.mean() >= 176:  # cheap exit: a median under 96 caps the mean at (96 + 255) / 2
        return False
    edges = np.concatenate([a[:, :2].ravel(), a[:, -2:].ravel()])
    return bool(np.median(a) < 96 and np.median(edges) < 96)


def pad_batch(crops: list[np.ndarray], multiple: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Stack (H, w_i) crops into (B, H, W) with W = max w_i rounded up to `multiple`.

    Padding repeats each crop's last column (its own background), so padding
    looks like more of the same page rather than a foreign border.
    Returns (batch, widths).
    """
    widths = np.array([c.shape[1] for c in crops], dtype=np.int64)
    width = int(-(-widths.max() // multiple) * multiple)
    batch = np.empty((len(crops), crops[0].shape[0], width), dtype=np.uint8)
    for i, c in enumerate(crops):
        batch[i, :, : c.shape[1]] = c
        batch[i, :, c.shape[1]:] = c[:, -1:]
    return batch, widths
