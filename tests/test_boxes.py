"""Pages and boxes in (`jobs.ocr --boxes`, pipeline/read.py `read_boxes`, pipeline/preprocess.py `cut_boxes`) and
the box converters (`jobs.boxes`): each page read once, crops cut from it read as the same crops pre-cut, bad
boxes and pages as error rows, every box once."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageFont

from jobs.boxes import main as boxes_main
from jobs.ocr import main as ocr_main
from pipeline import OcrOptions, run_ocr
from tests.helpers import encode

WORDS = ["Invoice", "TOTAL", "Date:", "42.50", "R&D", "Phone"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _pages(folder: Path, n: int = 2) -> list[dict]:
    """`n` page images of drawn words under `folder`; their boxes (with an id and the word as `label`)."""
    folder.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default(size=18)
    boxes = []
    for p in range(n):
        img = Image.new("L", (640, 320), 255)
        draw = ImageDraw.Draw(img)
        for k, word in enumerate(WORDS):
            x, y = 20 + 100 * k, 40 + 70 * (k % 3)
            left, top, right, bottom = font.getbbox(word)
            draw.text((x - left, y - top), word, fill=0, font=font)
            boxes.append({"id": f"p{p}-w{k}", "page": f"p{p}.png", "x0": x - 2, "y0": y - 2,
                          "x1": x + right - left + 2, "y1": y + bottom - top + 2, "label": word})
        img.save(folder / f"p{p}.png")
    return boxes


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming `width` x `height` pixels (a decompression bomb's), no real image data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_boxes_read_as_the_same_crops_cut_beforehand(ray_local, small_model, tmp_path):
    boxes = _pages(tmp_path / "pages")
    pq.write_table(pa.Table.from_pylist(boxes), tmp_path / "boxes.parquet")
    pages = {b["page"]: Image.open(tmp_path / "pages" / b["page"]) for b in boxes}
    crops = pa.Table.from_pylist([{"id": b["id"], "image": encode(pages[b["page"]].crop(
        (b["x0"], b["y0"], b["x1"], b["y1"])))} for b in boxes])
    pq.write_table(crops, tmp_path / "crops.parquet")
    common = {"model": small_model, "decoder": "greedy"}
    run_ocr(OcrOptions(input=str(tmp_path / "pages"), boxes=str(tmp_path / "boxes.parquet"),
                       output=str(tmp_path / "from_pages"), **common))
    run_ocr(OcrOptions(input=str(tmp_path / "crops.parquet"), output=str(tmp_path / "from_crops"), **common))
    a = pd.read_parquet(tmp_path / "from_pages").sort_values("id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "from_crops").sort_values("id").reset_index(drop=True)
    assert list(a.columns) == ["id", "page", "x0", "y0", "x1", "y1", "label", "text", "score", "error", "model"]
    assert a["id"].tolist() == b["id"].tolist() == sorted(x["id"] for x in boxes)
    assert a["text"].tolist() == b["text"].tolist() and a["error"].isna().all()
    assert a["score"].to_numpy() == pytest.approx(b["score"].to_numpy(), abs=1e-5)
    assert a["label"].tolist() == [x["label"] for x in sorted(boxes, key=lambda x: x["id"])]


def test_bad_boxes_and_pages_are_error_rows_and_every_box_comes_out_once(ray_local, small_model, tmp_path):
    boxes = _pages(tmp_path / "pages", n=1)
    (tmp_path / "pages" / "notes.png").write_bytes(b"%PDF-1.4 not a page image")
    (tmp_path / "pages" / "bomb.png").write_bytes(_png_claiming(20_000, 20_000))
    _pages(tmp_path / "unused", n=1)   # (a page with no boxes is not read, and gives no rows)
    nan = float("nan")
    bad = {"outside": ("p0.png", 700, 10, 720, 30), "partly": ("p0.png", 600, 40, 700, 60),
           "empty": ("p0.png", 10, 10, 10, 30), "negative": ("p0.png", 50, 10, 40, 30),
           "nan": ("p0.png", nan, 10, 20, 30), "missing page": ("nowhere.png", 0, 0, 20, 20),
           "not an image": ("notes.png", 0, 0, 20, 20), "bomb": ("bomb.png", 0, 0, 20, 20)}
    rows = [{k: v for k, v in b.items() if k != "id"} for b in boxes]
    rows += [dict(zip(("page", "x0", "y0", "x1", "y1"), box), label=name) for name, box in bad.items()]
    pacsv.write_csv(pa.Table.from_pylist(rows), tmp_path / "boxes.csv")   # no id column: made from page and box
    summary = run_ocr(OcrOptions(input=str(tmp_path / "pages"), boxes=str(tmp_path / "boxes.csv"),
                                 output=str(tmp_path / "out"), model=small_model))
    df = pd.read_parquet(tmp_path / "out").set_index("label")
    assert summary["rows_in"] == len(df) == len(rows) and df["id"].is_unique
    assert sorted(df["id"]) == sorted([f"p0.png#{k}" for k in range(len(WORDS) + 5)]
                                      + ["nowhere.png#0", "notes.png#0", "bomb.png#0"])
    assert df.loc[WORDS, "error"].isna().all() and pd.isna(df.loc["partly", "error"])   # clipped to the page
    assert df.loc["outside", "error"] == "box outside the page (700,10)-(720,30 on 640x320)"
    assert df.loc["empty", "error"].startswith("empty box") and df.loc["negative", "error"].startswith("empty box")
    assert df.loc["nan", "error"] == "box has a missing or NaN corner"
    assert df.loc["missing page", "error"] == "page not found"
    assert df.loc["not an image", "error"].startswith("not an image")
    assert df.loc["bomb", "error"].startswith("image too large")
    assert summary["failed"] == len(bad) - 1 and df.loc[df["error"].notna(), "text"].isna().all()


@pytest.mark.parametrize("case", ["no_page_column", "text_coordinates", "no_boxes_file", "pages_missing"])
def test_boxes_file_mistakes_are_one_line_errors_before_any_work(tmp_path, small_model, capsys, case):
    _pages(tmp_path / "pages", n=1)
    boxes = tmp_path / "boxes.parquet"
    table = pa.table({"page": ["p0.png"], "x0": [1], "y0": [1], "x1": [30], "y1": [20]})
    pages = str(tmp_path / "pages")
    if case == "no_page_column":
        table, expect = table.drop_columns(["page"]), "lack column(s) page; columns are: x0, y0, x1, y1"
    elif case == "text_coordinates":
        table = table.set_column(1, "x0", pa.array(["1"]))
        expect = "column 'x0' holds string values, not numbers"
    elif case == "no_boxes_file":
        boxes, expect = tmp_path / "none.parquet", "boxes"
    else:
        pages, expect = str(tmp_path / "no_pages"), "pages"
    if case != "no_boxes_file":
        pq.write_table(table, boxes)
    assert ocr_main(["--input", pages, "--boxes", str(boxes), "--output", str(tmp_path / "out"),
                     "--model", small_model]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expect in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_coco_boxes_convert(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "scan-1.png", "width": 640, "height": 320}],
            "categories": [{"id": 1, "name": "word"}],
            "annotations": [{"id": 3, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 12], "text": "TOTAL"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    assert boxes_main(["--from", "coco", "--input", str(tmp_path / "coco.json"),
                       "--output", str(tmp_path / "boxes.csv")]) == 0
    got = pacsv.read_csv(tmp_path / "boxes.csv").to_pylist()
    assert got == [{"id": 3, "page": "scan-1.png", "x0": 10, "y0": 20, "x1": 40, "y1": 32, "category": "word",
                    "label": "TOTAL"}]


@pytest.mark.skipif(not (SHARED / "funsd_train_pages").is_dir(), reason=f"needs FUNSD's pages at {SHARED}")
def test_funsd_pages_and_boxes_cut_the_crops_of_the_crop_table(ray_local, tmp_path):
    """FUNSD's annotations through `jobs.boxes --from funsd`: for 3 forms the boxes are the crop table's rows, id
    for id, and the crops cut from the pages are its crops, pixel for pixel; read, they give its readings."""
    import shutil

    from crnn.image import decode_image
    from pipeline.preprocess import _region

    docs = ["0000971160", "0000989556", "0000990274"]
    (tmp_path / "ann").mkdir()
    for d in docs:
        shutil.copy(SHARED / "funsd_train_pages" / "annotations" / f"{d}.json", tmp_path / "ann")
    assert boxes_main(["--from", "funsd", "--input", str(tmp_path / "ann"),
                       "--output", str(tmp_path / "boxes.parquet")]) == 0
    boxes = pd.read_parquet(tmp_path / "boxes.parquet").set_index("id")
    words = pq.read_table(SHARED / "funsd_train_words.parquet", filters=[("doc_id", "in", docs)]).to_pandas()
    words = words.set_index("id")
    assert sorted(boxes.index) == sorted(words.index)
    pages = {d: Image.open(SHARED / "funsd_train_pages" / "images" / f"{d}.png") for d in docs}
    for i, w in words.iterrows():
        region = _region(boxes.loc[i].to_dict(), pages[w["doc_id"]].size)
        assert pages[w["doc_id"]].crop(region).tobytes() == decode_image(w["image"]).convert("L").tobytes(), i
    pq.write_table(pa.Table.from_pandas(words.reset_index()[["id", "image"]]), tmp_path / "crops.parquet")
    run_ocr(OcrOptions(input=str(SHARED / "funsd_train_pages" / "images"), boxes=str(tmp_path / "boxes.parquet"),
                       output=str(tmp_path / "from_pages"), decoder="greedy"))
    run_ocr(OcrOptions(input=str(tmp_path / "crops.parquet"), output=str(tmp_path / "from_crops"), decoder="greedy"))
    a = pd.read_parquet(tmp_path / "from_pages").set_index("id").loc[words.index]
    b = pd.read_parquet(tmp_path / "from_crops").set_index("id").loc[words.index]
    # The same pixels; a reading may still move with the batch it is read in (padding, int8 activations)
    assert (a["text"] == b["text"]).mean() >= 0.99 and a["error"].isna().all()
    assert a["label"].str.strip().tolist() == words["text"].tolist()


def test_hocr_export_parses_back_in_reading_order(ray_local, tmp_path):
    import xml.etree.ElementTree as ET

    from jobs.export import main as export_main

    boxes = _pages(tmp_path / "pages", n=2)
    boxes.append({"id": "p0-bad", "page": "p0.png", "x0": 900, "y0": 0, "x1": 950, "y1": 10, "label": "x"})
    pq.write_table(pa.Table.from_pylist(boxes), tmp_path / "boxes.parquet")
    run_ocr(OcrOptions(input=str(tmp_path / "pages"), boxes=str(tmp_path / "boxes.parquet"),
                       output=str(tmp_path / "ocr"), decoder="greedy"))
    assert export_main(["--ocr", str(tmp_path / "ocr"), "--format", "hocr", "--output", str(tmp_path / "hocr"),
                        "--pages", str(tmp_path / "pages")]) == 0
    df = pd.read_parquet(tmp_path / "ocr").set_index("id")
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    for p in range(2):
        root = ET.parse(tmp_path / "hocr" / f"p{p}.hocr").getroot()
        page, = root.iterfind(".//h:div[@class='ocr_page']", ns)
        assert "bbox 0 0 640 320" in page.get("title")
        words = list(page.iterfind(".//h:span[@class='ocrx_word']", ns))
        ours = [b for b in boxes if b["page"] == f"p{p}.png" and b["id"] != "p0-bad"]   # the error row left out
        # reading order: the three rows the words were drawn on (k % 3), each left to right
        expect = sorted(ours, key=lambda b: (int(b["id"].split("w")[1]) % 3, b["x0"]))
        assert [w.text for w in words] == [df.loc[b["id"], "text"] for b in expect]
        for w, b in zip(words, expect):
            bbox, conf = w.get("title").split("; ")
            assert bbox == f"bbox {b['x0']} {b['y0']} {b['x1']} {b['y1']}"
            assert conf == f"x_wconf {round(100 * df.loc[b['id'], 'score'])}"


def test_pages_and_boxes_on_s3(ray_local, small_model, moto_s3, tmp_path):
    """Pages under an s3:// prefix (moto on loopback, through s3fs), boxes and output there too."""
    import s3fs

    fs = s3fs.S3FileSystem()
    bucket = "pages-test"
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    boxes = _pages(tmp_path / "pages", n=2)
    for p in range(2):
        fs.put_file(str(tmp_path / "pages" / f"p{p}.png"), f"{bucket}/scans/p{p}.png")
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(boxes), buf)
    fs.pipe(f"{bucket}/boxes/part-0.parquet", buf.getvalue())
    summary = run_ocr(OcrOptions(input=f"s3://{bucket}/scans", boxes=f"s3://{bucket}/boxes/",
                                 output=f"s3://{bucket}/ocr", model=small_model))
    assert summary["rows_in"] == summary["ok"] == len(boxes)
    fs.invalidate_cache()
    df = pd.read_parquet(f"{bucket}/ocr", filesystem=fs)
    assert sorted(df["id"]) == sorted(b["id"] for b in boxes) and df["error"].isna().all()
