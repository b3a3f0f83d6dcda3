"""Build a labelled set of text lines from labelled word crops (FUNSD's), to test long-line reading on real scans.

    python -m jobs.lines --input ../shared/data/funsd_train_words.parquet --output runs/funsd_lines.parquet
    python -m jobs.evaluate --input runs/funsd_lines.parquet --holdout-docs 0.1

Words of one field (FUNSD: the id without its last `_<word>` part) that share a baseline are pasted
at their page positions (`crnn/training/lines.py`). Output columns: id, image (PNG), text, doc_id, n_words;
`doc_id` is kept, so `--holdout-docs` picks the same held-out forms as training and evaluation do.
The word table is read whole: labelled sets are small (FUNSD's 21,888 crops take 4 s).
"""

from __future__ import annotations

import argparse
import io
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from crnn.training.lines import Word, assemble_lines

NEEDED = ["id", "image", "text", "doc_id", "x0", "y0", "x1", "y1"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lines", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="word crops: Parquet with " + ", ".join(NEEDED))
    p.add_argument("--output", required=True, help="Parquet file to write")
    p.add_argument("--min-words", type=int, default=2, help="keep lines of at least this many words")
    args = p.parse_args(argv)
    try:
        schema = pq.read_schema(args.input)
    except (OSError, pa.ArrowInvalid) as e:
        print(f"error: cannot read Parquet {args.input!r}: {e}", file=sys.stderr)
        return 2
    missing = [c for c in NEEDED if c not in schema.names]
    if missing:
        print(f"error: {args.input!r} lacks column(s) {', '.join(missing)}; columns are: {', '.join(schema.names)}",
              file=sys.stderr)
        return 2
    has_checkbox = "is_checkbox" in schema.names
    table = pq.read_table(args.input, columns=NEEDED + (["is_checkbox"] if has_checkbox else []))

    fields: dict[tuple[str, str], list[Word]] = {}
    for row in table.to_pylist():
        if has_checkbox and row["is_checkbox"]:  # a box glyph, not text
            continue
        field = row["id"].rsplit("_", 1)[0]
        box = (row["x0"], row["y0"], row["x1"], row["y1"])
        fields.setdefault((row["doc_id"], field), []).append(Word(row["image"], row["text"], box))

    out = {"id": [], "image": [], "text": [], "doc_id": [], "n_words": []}
    for (doc, field), words in fields.items():
        for k, (img, text, n) in enumerate(assemble_lines(words, args.min_words)):
            buf = io.BytesIO()
            img.save(buf, "PNG")
            out["id"].append(f"{field}_line{k}")
            out["image"].append(buf.getvalue())
            out["text"].append(text)
            out["doc_id"].append(doc)
            out["n_words"].append(n)
    pq.write_table(pa.table(out), args.output)
    lengths = sorted(len(t) for t in out["text"])
    print(f"{args.output}: {len(lengths)} lines of {args.min_words}+ words from {len(fields)} fields; "
          f"label length median {lengths[len(lengths) // 2] if lengths else 0}, max {lengths[-1] if lengths else 0}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
