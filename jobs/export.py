"""Export an OCR output of pages and boxes (`jobs.ocr --boxes`) as one hOCR file per page.

    python -m jobs.export --ocr ocr/ --format hocr --output hocr/ [--pages PAGES]

Each page's file (`<page path without its extension>.hocr` under --output) is XHTML: one `ocr_page` (the page's
size from its image under --pages, else the extent of its boxes) holding one `ocrx_word` per box that was read,
with its `bbox` and `x_wconf` (the score, 0-100), in reading order: lines top to bottom (boxes overlapping
vertically by half their height are one line), each left to right. Rows with an `error` are left out.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads

NEEDED = ("page", "x0", "y0", "x1", "y1", "text", "score")
HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
 "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
<head>
<title>{title}</title>
<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
<meta name="ocr-system" content="crnn-ocr"/>
<meta name="ocr-capabilities" content="ocr_page ocr_line ocrx_word"/>
</head>
<body>
"""


def reading_order(words: list[dict]) -> list[list[dict]]:
    """Words grouped into lines, top to bottom, each left to right."""
    lines: list[list[dict]] = []
    for w in sorted(words, key=lambda w: ((w["y0"] + w["y1"]) / 2, w["x0"])):
        h = w["y1"] - w["y0"]
        for line in lines:
            top, bottom = min(v["y0"] for v in line), max(v["y1"] for v in line)
            if min(bottom, w["y1"]) - max(top, w["y0"]) >= 0.5 * min(h, bottom - top):
                line.append(w)
                break
        else:
            lines.append([w])
    lines = [sorted(line, key=lambda w: w["x0"]) for line in lines]
    return sorted(lines, key=lambda line: min(w["y0"] for w in line))


def hocr_page(page: str, size: tuple[int, int], words: list[dict], number: int) -> str:
    """One page's hOCR document."""
    out = [HEAD.format(title=html.escape(page)),
           f'<div class="ocr_page" id="page_{number}" title="image &quot;{html.escape(page)}&quot;; '
           f'bbox 0 0 {size[0]} {size[1]}; ppageno {number - 1}">\n']
    for n, line in enumerate(reading_order(words), 1):
        box = _bbox(min(w["x0"] for w in line), min(w["y0"] for w in line), max(w["x1"] for w in line),
                    max(w["y1"] for w in line))
        out.append(f'<span class="ocr_line" id="line_{number}_{n}" title="bbox {box}">')
        for k, w in enumerate(line, 1):
            conf = round(100 * float(w["score"])) if w["score"] is not None else 0
            out.append(f'<span class="ocrx_word" id="word_{number}_{n}_{k}" title="bbox '
                       f'{_bbox(w["x0"], w["y0"], w["x1"], w["y1"])}; x_wconf {conf}">{html.escape(w["text"])}</span> ')
        out.append("</span>\n")
    out.append("</div>\n</body>\n</html>\n")
    return "".join(out)


def _bbox(x0, y0, x1, y1) -> str:
    return f"{max(0, math.floor(x0))} {max(0, math.floor(y0))} {math.ceil(x1)} {math.ceil(y1)}"


def _page_size(pages: Path | None, page: str, words: list[dict]) -> tuple[int, int]:
    if pages is not None:
        from PIL import Image
        try:
            with Image.open(pages / page) as img:   # the header only
                return img.size
        except OSError:
            pass
    return (math.ceil(max((w["x1"] for w in words), default=0)), math.ceil(max((w["y1"] for w in words), default=0)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ocr", required=True, help="the output folder of `jobs.ocr --boxes`")
    p.add_argument("--format", default="hocr", choices=["hocr"], help="what to write (default: %(default)s)")
    p.add_argument("--output", required=True, help="folder for one file per page")
    p.add_argument("--pages", help="the pages' folder (jobs.ocr's --input), for each page's size")
    args = p.parse_args(argv)
    try:
        data = pads.dataset(args.ocr, format="parquet", exclude_invalid_files=True)
    except (FileNotFoundError, OSError, ValueError) as e:
        print(f"error: cannot read OCR output {args.ocr!r}: {' '.join(str(e).split())[:200]}", file=sys.stderr)
        return 2
    missing = [c for c in NEEDED if c not in data.schema.names]
    if missing:
        print(f"error: {args.ocr!r} lacks column(s) {', '.join(missing)} (an output of `jobs.ocr --boxes` has them); "
              f"columns are: {', '.join(data.schema.names)}", file=sys.stderr)
        return 2
    table = data.to_table(columns=list(NEEDED), filter=pc.field("text").is_valid())
    by_page: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        by_page.setdefault(row["page"], []).append(row)
    out, pages = Path(args.output), Path(args.pages) if args.pages else None
    for number, (page, words) in enumerate(sorted(by_page.items()), 1):
        path = out / Path(page).with_suffix(".hocr")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(hocr_page(page, _page_size(pages, page, words), words, number), encoding="utf-8")
    print(f"{out}: {len(by_page)} hOCR pages, {table.num_rows} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
