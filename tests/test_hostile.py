"""Hostile crops through the real pipeline: each gets its row, with a stable `error` or a reading, and the
job goes on. Also the input checks that refuse a job before any work (wrong image column type, no images)
and the summary's id counts (repeated and null ids, in the same run)."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from crnn.image import ImageSpec
from pipeline import OcrOptions, run_ocr
from pipeline.errors import UserError
from pipeline.preprocess import preprocess_batch
from pipeline.read import find_source
from pipeline.storage import Storage
from tests.helpers import crop_bytes, encode

GOOD_WORDS = ["Date:", "TOTAL", "R&D", "(212) 555-0199", "invoice", "$1,234.56"]


def _png_header(width: int, height: int, idat: bytes) -> bytes:
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _frames(fmt: str, **kw) -> bytes:
    frames = [Image.open(io.BytesIO(crop_bytes(w))).convert("L") for w in ("first", "second", "third")]
    size = frames[0].size
    frames = [f.resize(size) for f in frames]
    if fmt == "GIF":
        frames = [f.convert("P") for f in frames]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **kw)
    return buf.getvalue()


def _corrupt_png() -> bytes:
    png = crop_bytes("corrupt", size=24)
    i = png.find(b"IDAT")
    n = struct.unpack(">I", png[i - 4:i])[0]
    data = bytearray(png[i + 4:i + 4 + n])
    data[8:40] = b"\x13" * 32                      # a broken deflate stream under a correct CRC
    chunk = struct.pack(">I", n) + b"IDAT" + bytes(data) + struct.pack(">I", zlib.crc32(b"IDAT" + data) & 0xFFFFFFFF)
    return png[:i - 4] + chunk + png[i + 8 + n:]


def _hostile() -> dict[str, tuple[bytes | None, str | None]]:
    """name -> (bytes, expected error; None where it is a real image that must be read)."""
    gray = np.asarray(Image.open(io.BytesIO(crop_bytes("Sixteen bit"))))
    palette = Image.open(io.BytesIO(crop_bytes("Palette"))).convert("P")
    png, jpeg = crop_bytes("Truncated 42"), crop_bytes("Truncated 42", fmt="JPEG")
    return {
        "bomb_100000x100000": (_png_header(100_000, 100_000, zlib.compress(b"\0" * 1000)),
                               "image too large: 10000000000 pixels > limit of 40000000 pixels"),
        "jpeg_8000x8000": (encode(Image.new("L", (8000, 8000), 255), "JPEG"),
                           "image too large: 8000x8000 > limit of 40000000 pixels"),
        "one_pixel": (encode(Image.new("L", (1, 1), 0)), None),
        "wide_20000x20": (encode(Image.new("L", (20000, 20), 255)), None),      # squeezed to max_width
        "tall_20x20000": (encode(Image.new("L", (20, 20000), 255)), None),      # also read turned
        "png_16_bit": (encode(Image.fromarray(gray.astype(np.uint16) * 257)), None),
        "cmyk_jpeg": (crop_bytes("Cyan 7", fmt="JPEG", mode="CMYK"), None),
        "palette_png_transparency": (_encode_kw(palette, "PNG", transparency=0), None),
        "animated_gif": (_frames("GIF", duration=100, loop=0), None),
        "multipage_tiff": (_frames("TIFF"), None),
        "svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="60" height="20">'
                b'<text x="2" y="15">Invoice</text></svg>', "not an image (SVG vector image)"),
        "pdf": (b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
                "not an image (PDF document)"),
        "html": (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body></body></html>",
                 "not an image (HTML page)"),
        "postscript": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image (PostScript)"),
        "random_bytes": (np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
                         "not an image (unrecognised format)"),
        "truncated_png": (png[: len(png) // 2], "truncated image"),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], "truncated image"),
        "corrupt_png": (_corrupt_png(), "corrupt image"),
        "empty_bytes": (b"", "empty image bytes"),
        "null": (None, "image is null"),
    }


def _encode_kw(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


HOSTILE = _hostile()


@pytest.fixture(scope="module")
def hostile_run(ray_local, small_model, tmp_path_factory):
    """ONE Parquet file of good crops and every hostile one, interleaved, through run_ocr."""
    rows = []
    for i, (name, (data, _)) in enumerate(HOSTILE.items()):
        word = GOOD_WORDS[i % len(GOOD_WORDS)]
        rows.append({"id": f"good-{i}", "image": crop_bytes(word, fmt="JPEG" if i % 2 else "PNG"), "label": word})
        rows.append({"id": name, "image": data, "label": None})
    # Repeated and null ids are reported in the summary, not fatal (no --resume): counted apart.
    rows += [{"id": i, "image": crop_bytes("again"), "label": "again"} for i in ("dup", "dup", "dup", None, None)]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("image", pa.binary()),
                                                         ("label", pa.string())]))
    src, out = tmp_path_factory.mktemp("hostile_in"), tmp_path_factory.mktemp("hostile") / "out"
    pq.write_table(table, src / "crops.parquet")
    # max_width 512: the 20000 px crops are squeezed all the same, and a CPU batch of them stays cheap.
    summary = run_ocr(OcrOptions(input=str(src), output=str(out), model=small_model, batch_size=4, max_width=512))
    return table, pd.read_parquet(out).set_index("id"), summary


def test_every_row_comes_out_exactly_once(hostile_run):
    table, df, summary = hostile_run
    ids = lambda values: sorted("<null>" if pd.isna(v) else v for v in values)
    assert ids(df.index) == ids(table["id"].to_pylist())
    failing = sum(err is not None for _, err in HOSTILE.values())
    assert summary["rows_in"] == table.num_rows and summary["failed"] == failing
    assert summary["ok"] == table.num_rows - failing


def test_null_ids_are_counted_apart_from_repeated_ones(hostile_run):
    _, df, summary = hostile_run
    assert summary["repeated_ids"] == 2                      # "dup" three times: two repeats
    assert summary["null_ids"] == 2                          # (count_distinct skips nulls: not repeats)
    assert df.index.isna().sum() == 2 and (df.index == "dup").sum() == 3


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_crop_gets_its_stable_error_or_a_reading(hostile_run, name):
    _, df, _ = hostile_run
    row, expected = df.loc[name], HOSTILE[name][1]
    if expected is None:
        assert pd.isna(row["error"]), row["error"]
        assert isinstance(row["text"], str) and 0 <= row["score"] <= 1
    else:
        assert row["error"] == expected
        assert pd.isna(row["text"]) and pd.isna(row["score"])


def test_good_crops_have_no_error(hostile_run):
    _, df, _ = hostile_run
    good = df[df.index.notna() & df.index.str.startswith("good-", na=False)]
    assert len(good) == len(HOSTILE)
    assert good["error"].isna().all() and good["text"].map(type).eq(str).all()


def test_errors_are_the_same_on_every_run(hostile_run):
    # The pipeline's workers are other processes than this one: a memory address in a message would differ.
    table, df, _ = hostile_run
    again = [preprocess_batch(table, "image", ImageSpec(max_width=512))["error"].to_pylist() for _ in range(2)]
    hostile = [i in HOSTILE for i in table["id"].to_pylist()]
    expected = [df.loc[i, "error"] if pd.notna(df.loc[i, "error"]) else None for i in HOSTILE]
    assert [e for e, h in zip(again[0], hostile) if h] == [e for e, h in zip(again[1], hostile) if h] == expected
    assert not any(re.search(r"0x[0-9a-f]{6,}|object at|Error:", e) for e in again[0] if e)


# ---- refused before any work ------------------------------------------------------------------------

def _parquet(path, image: pa.Array, name: str = "part-0.parquet"):
    path.mkdir(exist_ok=True)
    pq.write_table(pa.table({"id": [f"{name}-{i}" for i in range(len(image))], "image": image}), path / name)


@pytest.mark.parametrize("values, found", [
    (pa.array(["crops/0001.png", "crops/0002.png"]), "holds string values"),
    (pa.array(["iVBORw0KGgo=", "iVBORw0KGgo="], pa.large_string()), "holds large_string values"),
    (pa.array([[1, 2], [3]], pa.list_(pa.uint8())), "holds list<element: uint8> values"),
    (pa.array([{"bytes": b"x", "path": "a.png"}] * 2, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
     "its field 'bytes' holds the bytes"),
    (pa.array([1, 2]), "holds int64 values"),
])
def test_image_column_of_the_wrong_type_is_refused_before_any_work(small_model, tmp_path, values, found):
    _parquet(tmp_path / "in", values)
    with pytest.raises(UserError) as e:
        run_ocr(OcrOptions(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model=small_model))
    msg = str(e.value)
    assert msg.startswith("image column 'image' holds ") and found in msg and "not image bytes (binary)" in msg
    assert "part-0.parquet" in msg and "\n" not in msg
    if "string" in found:
        assert "point --input at the image files" in msg
    assert not (tmp_path / "out").exists()                  # nothing was started


def test_every_parquet_file_is_checked_not_only_the_first(tmp_path):
    _parquet(tmp_path / "in", pa.array([crop_bytes("ok")], pa.binary()), "part-0.parquet")
    _parquet(tmp_path / "in", pa.array([crop_bytes("ok")], pa.large_binary()), "part-1.parquet")  # also bytes
    _parquet(tmp_path / "in", pa.array([crop_bytes("ok")], pa.binary_view()), "part-2.parquet")
    assert find_source(Storage(str(tmp_path / "in"))).rows == 3
    _parquet(tmp_path / "in", pa.array(["b.png"]), "part-3.parquet")
    with pytest.raises(UserError, match=r"holds string values, not image bytes \(binary\), in '.*part-3\.parquet'"):
        find_source(Storage(str(tmp_path / "in")))
    pq.write_table(pa.table({"id": ["x"], "pixels": [b"x"]}), tmp_path / "in" / "part-3.parquet")
    with pytest.raises(UserError, match=r"image column 'image' not in '.*part-3\.parquet'; columns are: id, pixels"):
        find_source(Storage(str(tmp_path / "in")))


def test_folder_without_images_is_refused(small_model, tmp_path):
    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.svg").write_bytes(HOSTILE["svg"][0])
    (src / "b.pdf").write_bytes(HOSTILE["pdf"][0])
    (src / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"no image files \(png, jpg, .*found 3 other files"):
        run_ocr(OcrOptions(input=str(src), output=str(tmp_path / "out"), model=small_model))
    assert not (tmp_path / "out").exists()
