"""Batch: keep crops of similar width together; each model batch is padded to its widest crop.

Padding is wasted compute, so rows are sorted by width within a bounded window
(each preprocessing batch, as PaddleOCR sorts by aspect ratio): consecutive rows,
and so the model's batches cut from them, then have similar widths. `batch_crops`
unpacks a batch's crops for `Recognizer.read`, which pads them (`crnn.image.pad_batch`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from crnn.image import HEIGHT
from pipeline.schema import PIXELS, TURNED, TURNED_WIDTH, WIDTH


def sort_by_width(batch: pa.Table) -> pa.Table:
    """Rows ordered by crop width (failed rows, width 0, first)."""
    return batch.take(np.argsort(batch.column(WIDTH).to_numpy(), kind="stable"))


def batch_crops(batch: pa.Table, turned: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """The batch's decodable crops (or, with `turned`, its tall crops turned upright) as (32, w) arrays.

    Returns:
        (crops, ok): ok is the (B,) bool mask of the rows they come from.
    """
    pixel_column, width_column = (TURNED, TURNED_WIDTH) if turned else (PIXELS, WIDTH)
    widths = batch.column(width_column).to_numpy()
    ok = widths > 0
    pixels = batch.column(pixel_column).to_pylist() if ok.any() else []
    return [np.frombuffer(pixels[i], np.uint8).reshape(HEIGHT, widths[i]) for i in np.flatnonzero(ok)], ok
