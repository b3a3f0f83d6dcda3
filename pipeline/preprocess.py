"""Preprocess (CPU tasks): image bytes -> (32, w) uint8 crop, or an error message for that row.

The message is a stable reason from `crnn.image.decode_image`'s list (`truncated image`, `not an image
(unrecognised format)`, ...): the same bytes give the same `error` on every run. Nothing a crop holds
makes a batch fail: whatever goes wrong with one crop is that crop's `error`.

Crops travel as raw bytes (`_pixels`, row-major 32 x `_width`): a plain binary
column is the cheapest thing Arrow can move between workers. Tall crops also carry
their quarter-turned reading (`_turned`, 32 x `_turned_width`) for vertical text.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from crnn.image import ImageError, ImageSpec, decode_images, normalize_crop, turned_crop
from pipeline.schema import ERROR, PIXELS, TURNED, TURNED_WIDTH, WIDTH


def preprocess_batch(batch: pa.Table, image_column: str, spec: ImageSpec = ImageSpec()) -> pa.Table:
    """Decode and normalise every crop of a batch; rows that fail keep flowing with `error` set.

    Args:
        batch: rows with image bytes in `image_column` (other columns pass through).
        image_column: the bytes column; dropped from the output.
    Returns:
        The batch without `image_column`, plus `_pixels`, `_width`, `_turned`, `_turned_width`
        (null and 0 unless the crop is tall) and `error` (null when fine).
    """
    pixels, widths, turned, turned_widths, errors = [], [], [], [], []
    for img in decode_images(batch.column(image_column).to_pylist(), spec):
        crop = turn = error = None
        if isinstance(img, ImageError):
            error = str(img)
        else:
            try:
                crop, turn = normalize_crop(img, spec), turned_crop(img, spec)
            except Exception as e:  # noqa: BLE001 - one crop must not fail the batch
                error = _reason(e)
        pixels.append(None if crop is None else crop.tobytes())
        widths.append(0 if crop is None else crop.shape[1])
        turned.append(None if turn is None else turn.tobytes())
        turned_widths.append(0 if turn is None else turn.shape[1])
        errors.append(error)
    out = batch.drop_columns([image_column])
    out = out.append_column(PIXELS, pa.array(pixels, pa.binary()))
    out = out.append_column(WIDTH, pa.array(np.asarray(widths, np.int32)))
    out = out.append_column(TURNED, pa.array(turned, pa.binary()))
    out = out.append_column(TURNED_WIDTH, pa.array(np.asarray(turned_widths, np.int32)))
    return out.append_column(ERROR, pa.array(errors, pa.string()))


def _reason(e: Exception) -> str:
    """The row's `error`: decode_image's stable message, or a fixed one naming only the exception's type
    (never its text, which may hold addresses or sizes that differ between runs)."""
    if isinstance(e, ImageError):
        return str(e)
    if isinstance(e, MemoryError):
        return "image too large: out of memory"
    return f"unsupported image ({type(e).__name__} while normalising)"
