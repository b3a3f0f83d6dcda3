"""Text lines assembled from labelled word crops of the same page, to test long-line reading on real scans.

Word-level datasets (FUNSD) label words, not lines. A line is rebuilt by pasting the words of one
field that share a baseline onto a canvas at their page positions: the glyphs are the real scan's,
only the gaps between words are filled with the words' own background (the page pixels there were
not kept). The label is the words' labels joined by single spaces, as the model reads any gap.

Run as a job, it builds that labelled line set from FUNSD's word crops (one field's words that share a baseline):

    python -m crnn.training.lines --input ../shared/data/funsd_train_words.parquet --output runs/funsd_lines.parquet
    python -m jobs.evaluate --input runs/funsd_lines.parquet --holdout-docs 0.1

Output columns: id, image (PNG), text, doc_id, n_words; `doc_id` is kept, so `--holdout-docs` picks the same
held-out forms as training and evaluation do. The word table is read whole: labelled sets are small.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from crnn.image import decode_image, to_gray


@dataclass
class Word:
    image: bytes
    text: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in page pixels


def group_lines(words: list[Word], min_overlap: float = 0.5) -> list[list[Word]]:
    """Words of one field split into lines, top to bottom, each left to right.

    A word joins a line when it overlaps the line's vertical span by at least `min_overlap` of the
    smaller of the two heights (wrapped fields give several lines; words on one line vary a little).
    """
    lines: list[tuple[list[Word], list[int]]] = []
    for w in sorted(words, key=lambda w: (w.box[1] + w.box[3]) / 2):
        x0, y0, x1, y1 = w.box
        for members, span in lines:
            overlap = min(y1, span[1]) - max(y0, span[0])
            if overlap >= min_overlap * min(y1 - y0, span[1] - span[0]):
                members.append(w)
                span[0], span[1] = min(span[0], y0), max(span[1], y1)
                break
        else:
            lines.append(([w], [y0, y1]))
    return [sorted(members, key=lambda w: w.box[0]) for members, _ in lines]


def _background(crops: list[np.ndarray]) -> int:
    """The paper's gray: the median of the crops' border pixels (crops are cut without padding, so
    their borders are mostly paper)."""
    border = np.concatenate([np.concatenate([c[0], c[-1], c[:, 0], c[:, -1]]) for c in crops])
    return int(np.median(border))


def paste_line(line: list[Word]) -> Image.Image:
    """The line's words pasted at their page positions on a canvas of the paper's gray."""
    crops = [np.asarray(to_gray(decode_image(w.image))) for w in line]
    left, top = min(w.box[0] for w in line), min(w.box[1] for w in line)
    right = max(w.box[0] + c.shape[1] for w, c in zip(line, crops))
    bottom = max(w.box[1] + c.shape[0] for w, c in zip(line, crops))
    canvas = np.full((bottom - top, right - left), _background(crops), dtype=np.uint8)
    for w, c in zip(line, crops):
        y, x = w.box[1] - top, w.box[0] - left
        canvas[y:y + c.shape[0], x:x + c.shape[1]] = c
    return Image.fromarray(canvas)


def assemble_lines(words: list[Word], min_words: int = 2) -> Iterator[tuple[Image.Image, str, int]]:
    """(line image, label, word count) for each line of one field with at least `min_words` words.

    Lines whose words overlap side by side are skipped: their boxes do not describe one line of text.
    """
    for line in group_lines(words):
        if len(line) < min_words:
            continue
        if any(a.box[2] > b.box[0] for a, b in zip(line, line[1:])):
            continue
        yield paste_line(line), " ".join(w.text for w in line), len(line)


NEEDED = ["id", "image", "text", "doc_id", "x0", "y0", "x1", "y1"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="crnn.training.lines", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
