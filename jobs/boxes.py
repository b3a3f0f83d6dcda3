"""Write the boxes table `jobs.ocr --boxes` reads, from a common annotation format.

    python -m jobs.boxes --from funsd --input funsd_train_pages/annotations --output boxes.parquet
    python -m jobs.boxes --from coco --input instances.json --output boxes.parquet
    python -m jobs.ocr --input funsd_train_pages/images --boxes boxes.parquet --output ocr/

One row per box: `page` (the page image's path relative to the pages' folder), `x0, y0, x1, y1` in page pixels,
`id`, and what the format says of the box:
  funsd: one row per word with text; `id` funsd_training_<form>_<entity>_<k> (the k-th such word of the form,
         as the team's FUNSD crop table names it),
         `label` (the annotated text), `entity_label`, `doc_id`; page `<form>.png`.
  coco:  one row per annotation; `id` the annotation's id, `category` (its category's name), `label` (its
         `text` or `utf8_string` field where the file has one, as COCO-Text does); page the image's file_name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = ("funsd", "coco")


def funsd_boxes(folder: Path) -> list[dict]:
    """FUNSD annotation JSON files (a folder of `<form>.json`, or one file) -> one row per word."""
    files = sorted(folder.glob("*.json")) if folder.is_dir() else [folder]
    rows = []
    for f in files:
        doc, k = f.stem, 0
        for entity in _json(f).get("form", []):
            for word in entity.get("words", []):
                if not word.get("text", "").strip():   # FUNSD's empty words mark no text: no crop, no box
                    continue
                x0, y0, x1, y1 = word["box"]
                rows.append({"id": f"funsd_training_{doc}_{entity['id']}_{k}", "page": f"{doc}.png",
                             "x0": x0, "y0": y0, "x1": x1, "y1": y1, "label": word["text"],
                             "entity_label": entity.get("label"), "doc_id": doc})
                k += 1
    return rows


def coco_boxes(path: Path) -> list[dict]:
    """A COCO-style JSON (images, annotations with bbox [x, y, w, h], categories) -> one row per annotation."""
    data = _json(path)
    images = {im["id"]: im["file_name"] for im in data.get("images", [])}
    names = {c["id"]: c.get("name") for c in data.get("categories", [])}
    rows = []
    for a in data.get("annotations", []):
        if a.get("image_id") not in images:
            raise SystemExit(f"error: annotation {a.get('id')} names image {a.get('image_id')}, not in {path}'s images")
        x, y, w, h = a["bbox"]
        rows.append({"id": str(a["id"]), "page": images[a["image_id"]], "x0": x, "y0": y, "x1": x + w, "y1": y + h,
                     "category": names.get(a.get("category_id")), "label": a.get("text", a.get("utf8_string"))})
    return rows


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot read annotation JSON {str(path)!r}: {e}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="boxes", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="fmt", required=True, choices=FORMATS, help="the annotations' format")
    p.add_argument("--input", required=True, help="annotation file (funsd: or a folder of them)")
    p.add_argument("--output", required=True, help="boxes table to write: .parquet or .csv")
    args = p.parse_args(argv)
    src = Path(args.input)
    if not src.exists():
        print(f"error: annotations {args.input!r} do not exist", file=sys.stderr)
        return 2
    rows = funsd_boxes(src) if args.fmt == "funsd" else coco_boxes(src)
    table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], t) for c, t in (
        ("id", pa.string()), ("page", pa.string()), ("x0", pa.float64()), ("y0", pa.float64()),
        ("x1", pa.float64()), ("y1", pa.float64()))})
    if args.output.lower().endswith(".csv"):
        pacsv.write_csv(table, args.output)
    else:
        pq.write_table(table, args.output)
    print(f"{args.output}: {table.num_rows} boxes on {len(set(table['page'].to_pylist()))} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
