"""Crop image handling shared by training and inference: decode, normalise geometry, pad.

A crop becomes a (32, w) uint8 grayscale array: height 32, aspect ratio kept,
w clamped to [min_width, max_width] (narrow crops are padded, wide ones squeezed),
contrast stretched to the full 0..255 range, dark text on a light background
(white-on-black headers and table heads are inverted).

Crops at least `vertical_ratio` times taller than wide may hold vertical text
(margin numbers, turned table heads): `turned_crop` gives their reading
turned upright, and `prefer_turned` picks between the two readings.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

HEIGHT = 32


@dataclass(frozen=True)
class ImageSpec:
    height: int = HEIGHT
    min_width: int = 16
    max_width: int = 4096         # wider crops are squeezed; lines of ~250 characters at 16 px each fit
    max_pixels: int = 40_000_000  # larger "crops" are refused before decoding: decompression bombs
    vertical_ratio: float = 2.0   # height / width from which a crop is also read turned; 0 turns none


def decode_image(data: bytes, spec: ImageSpec = ImageSpec()) -> Image.Image:
    """Bytes -> PIL image, refusing empty data and images over `spec.max_pixels`. Raises ValueError."""
    if data is None or len(data) == 0:
        raise ValueError("empty image bytes")
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > spec.max_pixels:
            raise ValueError(f"image of {w}x{h} pixels exceeds the limit of {spec.max_pixels}")
        img.load()
    except ValueError:
        raise
    except Exception as e:  # Pillow raises many types for bad data: report them all the same way
        raise ValueError(f"cannot decode image: {type(e).__name__}: {e}") from None
    return ImageOps.exif_transpose(img)


def to_gray(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L'. Transparency is composited on white; 16/32-bit and float are rescaled."""
    if img.mode == "L" and "transparency" not in img.info:
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8), "L")
    if img.mode == "P" or img.mode in ("LA", "PA", "RGBA", "La") or "transparency" in img.info:
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("L")
    if img.mode not in ("RGB", "1"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return img.convert("L")


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


def prefer_turned(upright: tuple[str, float], turned: tuple[str, float]) -> bool:
    """Whether a tall crop's turned reading is the text, given both (text, confidence) readings.

    A tall crop read upright holds one narrow glyph ("1", "(", ":"); vertical text read upright
    collapses to one or two symbols. The turned reading must find more characters, with a higher
    confidence: on FUNSD's 172 tall crops, right turned readings scored 1.2x to 7x their upright
    reading, wrong ones ("$" turned reads "42", ":" reads "..") at most 0.83x.
    """
    (text, score), (turned_text, turned_score) = upright, turned
    return len(turned_text) > max(len(text), 1) and turned_score > score


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
