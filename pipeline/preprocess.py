"""Preprocess (CPU tasks): image bytes -> (32, w) uint8 crop, or an error message for that row.

The message is a stable reason from `crnn.image.decode_image`'s list (`truncated image`, `not an image
(unrecognised format)`, ...): the same bytes give the same `error` on every run. Nothing a crop holds
makes a batch fail: whatever goes wrong with one crop is that crop's `error`.

Crops travel as raw bytes (`_pixels`, row-major 32 x `_width`): a plain binary
column is the cheapest thing Arrow can move between workers. Tall crops also carry
their quarter-turned reading (`_turned`, 32 x `_turned_width`) for vertical text.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crnn.image import ImageError, ImageSpec, decode_images, normalize_crop, turned_crop
from pipeline.schema import ERROR, PAGE_BOXES, PIXELS, TURNED, TURNED_WIDTH, WIDTH
from pipeline.storage import Storage


def preprocess_batch(batch: pa.Table, image_column: str, spec: ImageSpec = ImageSpec()) -> pa.Table:
    """Decode and normalise every crop of a batch; rows that fail keep flowing with `error` set.

    Args:
        batch: rows with image bytes in `image_column` (other columns pass through).
        image_column: the bytes column; dropped from the output.
    Returns:
        The batch without `image_column`, plus `_pixels`, `_width`, `_turned`, `_turned_width`
        (null and 0 unless the crop is tall) and `error` (null when fine).
    """
    crops = [img if isinstance(img, ImageError) else _normalised(img, spec)
             for img in decode_images(batch.column(image_column).to_pylist(), spec)]
    return _with_crops(batch.drop_columns([image_column]), crops)


def cut_boxes(batch: pa.Table, pages: Storage, columns: list[str], spec: ImageSpec = ImageSpec()) -> pa.Table:
    """Pages -> their boxes' crops: each page of the batch (rows of `page`, its boxes in `PAGE_BOXES`) is fetched
    and decoded once, and every box becomes a row of the box's columns plus the crop's, as `preprocess_batch`
    gives them (the box columns in the order of `columns`). A box's `error`: the page's (not found, not an
    image, too large), or its own (NaN corner, empty, wholly outside the page; a box partly outside is clipped
    to the page)."""
    paths = batch.column("page").to_pylist()
    with ThreadPoolExecutor(min(8, max(1, len(paths)))) as pool:   # object stores: pages fetched side by side
        data = list(pool.map(lambda p: _fetch(pages, p), paths))
    boxes = batch.column(PAGE_BOXES).combine_chunks()
    crops = []
    for page_boxes, got in zip(boxes.to_pylist(), data):
        page = ImageError(got) if isinstance(got, str) else decode_images([got], spec)[0]
        for box in page_boxes:
            if isinstance(page, ImageError):
                crops.append(page)
            else:
                region = _region(box, page.size)
                crops.append(ImageError(region) if isinstance(region, str) else _normalised(page.crop(region), spec))
    out = pa.Table.from_struct_array(boxes.flatten())
    out = out.append_column("page", batch.column("page").take(pc.list_parent_indices(boxes))).select(columns)
    return _with_crops(out, crops)


def _normalised(img, spec: ImageSpec) -> tuple[np.ndarray, np.ndarray | None] | ImageError:
    """(crop, its quarter-turned reading or None), or the ImageError that is the row's `error`."""
    try:
        return normalize_crop(img, spec), turned_crop(img, spec)
    except Exception as e:  # noqa: BLE001 - one crop must not fail the batch
        return ImageError(_reason(e))


def _with_crops(out: pa.Table, crops: list) -> pa.Table:
    """`out` plus the crops' columns (`_pixels`, `_width`, `_turned`, `_turned_width`) and `error`, a row each."""
    ok = [c if not isinstance(c, ImageError) else (None, None) for c in crops]
    out = out.append_column(PIXELS, pa.array([None if c is None else c.tobytes() for c, _ in ok], pa.binary()))
    out = out.append_column(WIDTH, pa.array(np.asarray([0 if c is None else c.shape[1] for c, _ in ok], np.int32)))
    out = out.append_column(TURNED, pa.array([None if t is None else t.tobytes() for _, t in ok], pa.binary()))
    out = out.append_column(TURNED_WIDTH, pa.array(np.asarray([0 if t is None else t.shape[1] for _, t in ok],
                                                              np.int32)))
    return out.append_column(ERROR, pa.array([str(c) if isinstance(c, ImageError) else None for c in crops],
                                             pa.string()))


def _reason(e: Exception) -> str:
    """The row's `error`: decode_image's stable message, or a fixed one naming only the exception's type
    (never its text, which may hold addresses or sizes that differ between runs)."""
    if isinstance(e, ImageError):
        return str(e)
    if isinstance(e, MemoryError):
        return "image too large: out of memory"
    return f"unsupported image ({type(e).__name__} while normalising)"


def _fetch(pages: Storage, page: str) -> bytes | str:
    """A page's bytes, or the box error for a page that cannot be fetched."""
    try:
        return pages.fs.cat_file(pages.join(page))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return "page not found"
    except Exception as e:  # noqa: BLE001 - one page must not fail the batch
        return f"page unreadable ({type(e).__name__})"


def _region(box: dict, size: tuple[int, int]) -> tuple[int, int, int, int] | str:
    """The box's pixels on a page of `size`, clipped to it; or the box's error."""
    corners = [box["x0"], box["y0"], box["x1"], box["y1"]]
    if any(c is None or math.isnan(c) for c in corners):
        return "box has a missing or NaN corner"
    x0, y0, x1, y1 = corners
    if x1 <= x0 or y1 <= y0:
        return f"empty box ({x0:g},{y0:g})-({x1:g},{y1:g})"
    w, h = size
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        return f"box outside the page ({x0:g},{y0:g})-({x1:g},{y1:g} on {w}x{h})"
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    right, bottom = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    return left, top, right, bottom
