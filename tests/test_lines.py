"""Lines rebuilt from word crops (crnn/training/lines.py, crnn.training.lines): a real page drawn with Pillow, cut into words."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from crnn.training.lines import Word, assemble_lines, group_lines
from crnn.training.lines import main as lines_main
from tests.helpers import encode

PAPER = 235


def _page(words: list[tuple[str, int, int]]) -> tuple[np.ndarray, list[Word]]:
    """A gray page with each (text, x, y) drawn, and each word cut out along its ink box, as FUNSD's are."""
    font = ImageFont.load_default(size=14)
    page = Image.new("L", (600, 200), PAPER)
    draw = ImageDraw.Draw(page)
    cut = []
    for text, x, y in words:
        draw.text((x, y), text, fill=30, font=font)
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
        cut.append((text, (x0, y0, x1, y1)))
    return np.asarray(page), [Word(encode(page.crop(box)), text, box) for text, box in cut]


def test_a_wrapped_field_becomes_lines_read_left_to_right():
    _, words = _page([("Sample", 200, 62), ("DATE:", 20, 20), ("tow", 100, 60), ("of", 70, 21),
                      ("Mixed", 20, 60), ("ISSUE", 110, 19)])
    lines = group_lines(words)
    assert [[w.text for w in line] for line in lines] == [["DATE:", "of", "ISSUE"], ["Mixed", "tow", "Sample"]]
    assert [t for _, t, _ in assemble_lines(words)] == ["DATE: of ISSUE", "Mixed tow Sample"]


def test_pasted_line_is_the_page_where_words_are_and_paper_between_them():
    page, words = _page([("Invoice", 30, 40), ("No.", 110, 41), ("4471", 150, 40)])
    (img, label, n), = assemble_lines(words)
    assert label == "Invoice No. 4471" and n == 3
    left, top = min(w.box[0] for w in words), min(w.box[1] for w in words)
    right, bottom = max(w.box[2] for w in words), max(w.box[3] for w in words)
    line = np.asarray(img)
    assert line.shape == (bottom - top, right - left)
    on_word = np.zeros(line.shape, bool)
    for w in words:
        x0, y0, x1, y1 = w.box
        on_word[y0 - top:y1 - top, x0 - left:x1 - left] = True
    region = page[top:bottom, left:right]
    assert np.array_equal(line[on_word], region[on_word])
    assert (line[~on_word] == PAPER).all() and on_word.mean() < 0.95


def test_single_words_and_overlapping_boxes_are_not_lines():
    _, words = _page([("alone", 20, 20), ("Total", 20, 100), ("Due", 60, 100)])
    assert list(assemble_lines([words[0]])) == []
    assert [t for _, t, _ in assemble_lines(words, min_words=1)] == ["alone", "Total Due"]
    overlapping = [words[1], Word(words[2].image, "Due", (40, *words[2].box[1:]))]
    assert list(assemble_lines(overlapping)) == []


def test_job_writes_labelled_lines_keeping_the_document(tmp_path, capsys):
    _, words = _page([("Total", 20, 20), ("Due:", 70, 20), ("Signed", 20, 80), ("x", 90, 80)])
    src, out = tmp_path / "words.parquet", tmp_path / "lines.parquet"
    boxes = [w.box for w in words]
    pq.write_table(pa.table({
        "id": ["f_doc1_3_0", "f_doc1_3_1", "f_doc1_4_0", "f_doc1_4_1"],
        "image": [w.image for w in words], "text": [w.text for w in words], "doc_id": ["doc1"] * 4,
        "x0": [b[0] for b in boxes], "y0": [b[1] for b in boxes], "x1": [b[2] for b in boxes], "y1": [b[3] for b in boxes],
        "is_checkbox": [False, False, False, True],   # field 4 keeps one word once the box glyph is dropped
    }), src)
    assert lines_main(["--input", str(src), "--output", str(out)]) == 0
    t = pq.read_table(out).to_pylist()
    assert [(r["id"], r["text"], r["doc_id"], r["n_words"]) for r in t] == [("f_doc1_3_line0", "Total Due:", "doc1", 2)]
    assert Image.open(io.BytesIO(t[0]["image"])).format == "PNG"

    pq.write_table(pa.table({"id": ["a"], "image": [words[0].image], "text": ["Total"]}), src)
    assert lines_main(["--input", str(src), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "doc_id" in err[0] and "columns are: id, image, text" in err[0]
    assert lines_main(["--input", str(tmp_path / "missing.parquet"), "--output", str(out)]) == 2
