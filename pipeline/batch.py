"""Batch: keep crops of similar width together, then pad each model batch to its widest crop.

Padding is wasted compute, so rows are sorted by width within a bounded window
(each preprocessing batch, as PaddleOCR sorts by aspect ratio): consecutive rows,
and so the model's batches cut from them, then have similar widths.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from crnn.image import HEIGHT, pad_batch
from pipeline.preprocess import PIXELS, TURNED, TURNED_WIDTH, WIDTH

PAD_MULTIPLE = 8  # padded width is a multiple of this: fewer distinct shapes for the kernels


def sort_by_width(batch: pa.Table) -> pa.Table:
    """Rows ordered by crop width (failed rows, width 0, first)."""
    return batch.take(np.argsort(batch.column(WIDTH).to_numpy(), kind="stable"))


def padded_crops(batch: pa.Table, turned: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batch's decodable crops (or, with `turned`, its tall crops turned upright) as one padded array.

    Returns:
        (crops (n, 32, W) uint8, widths (n,), ok (B,) bool mask of the rows they come from).
    """
    pixel_column, width_column = (TURNED, TURNED_WIDTH) if turned else (PIXELS, WIDTH)
    widths = batch.column(width_column).to_numpy()
    ok = widths > 0
    if not ok.any():
        return np.zeros((0, HEIGHT, PAD_MULTIPLE), np.uint8), widths[:0], ok
    pixels = batch.column(pixel_column).to_pylist()
    crops = [np.frombuffer(pixels[i], np.uint8).reshape(HEIGHT, widths[i]) for i in np.flatnonzero(ok)]
    crops, w = pad_batch(crops, PAD_MULTIPLE)
    return crops, w, ok
