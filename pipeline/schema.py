"""The job's columns: what the output adds to the input's own, and what travels between stages.

Output: the input's columns (all but the image bytes), then `text`, `score`, `error`, `model`. An input
column with one of those names (a label called `text`, say) is kept, written as `<name>_input`.
Between stages a crop travels as raw bytes (`_pixels`, row-major 32 x `_width`) and, for tall crops,
its quarter-turned reading (`_turned`, 32 x `_turned_width`); none of these reach the output.
"""

from __future__ import annotations

import pyarrow as pa

TEXT, SCORE, ERROR, MODEL = "text", "score", "error", "model"
OUTPUT_COLUMNS = (TEXT, SCORE, ERROR, MODEL)       # added after the input's own columns, in this order
OUTPUT_FIELDS = (pa.field(TEXT, pa.string()), pa.field(SCORE, pa.float32()), pa.field(ERROR, pa.string()),
                 pa.field(MODEL, pa.string()))

PIXELS, WIDTH = "_pixels", "_width"
TURNED, TURNED_WIDTH = "_turned", "_turned_width"
INTERNAL_COLUMNS = (PIXELS, WIDTH, TURNED, TURNED_WIDTH)
PAGE_BOXES = "_boxes"   # pages and boxes in: a page's boxes (a list of structs of the box columns), read to crops


def output_name(column: str) -> str:
    """The name an input column has in the output: `<name>_input` where it clashes with an output column."""
    return f"{column}_input" if column in OUTPUT_COLUMNS else column
