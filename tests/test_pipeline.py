"""The whole pipeline on a real local Ray: Parquet and image folders in, Parquet out."""

from __future__ import annotations

import json

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray.data

from jobs.ocr import main as ocr_main
from pipeline import OcrOptions, read, run_ocr
from pipeline.storage import Storage
from tests.helpers import WORDS, crop_bytes, write_crops_parquet

LOCAL = fsspec.filesystem("file")


def test_parquet_in_parquet_out(ray_local, small_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    truncated = crop_bytes("truncated")[:40]
    bad = {3: b"", 7: truncated, 11: b"this is not an image", 15: None}
    table = write_crops_parquet(LOCAL, str(src), n=40, bad=bad)
    out = tmp_path / "out"

    summary = run_ocr(OcrOptions(input=str(src), output=str(out), model=small_model, batch_size=8, window=16))

    df = pd.read_parquet(out)
    assert len(df) == table.num_rows == summary["rows_in"]
    assert sorted(df["id"]) == sorted(table["id"].to_pylist())           # every id exactly once
    assert summary["failed"] == len(bad) and summary["ok"] == table.num_rows - len(bad)
    expected = table.drop_columns(["image"]).to_pandas().set_index("id")
    got = df.set_index("id").loc[expected.index]
    pd.testing.assert_frame_equal(got[["page", "label"]], expected[["page", "label"]])  # carried intact
    assert "image" not in df.columns
    failed = got.loc[[f"crop-{i:04d}" for i in bad]]
    assert failed["error"].notna().all() and failed["text"].isna().all() and failed["score"].isna().all()
    assert "empty" in failed.loc["crop-0003", "error"] and "null" in failed.loc["crop-0015", "error"]
    assert failed.loc["crop-0011", "error"] == "not an image (text)"
    ok = got.drop(index=failed.index)
    assert ok["error"].isna().all() and ok["text"].map(type).eq(str).all()
    assert ok["score"].between(0, 1).all() and (ok["model"] == "test-small:0").all()
    assert df["score"].dtype == "float32"
    assert (out / "_SUCCESS").exists() and not (out / "_staging").exists()
    written = json.loads((out / "_summary.json").read_text())
    assert written["rows_in"] == 40 and written["model"] == "test-small:0" and written["crops_per_s"] > 0


def test_image_folder_in_parquet_out(ray_local, small_model, tmp_path):
    src = tmp_path / "images"
    (src / "sub").mkdir(parents=True)
    names = []
    for i, word in enumerate(WORDS):
        ext, fmt = [("png", "PNG"), ("jpg", "JPEG"), ("tif", "TIFF"), ("bmp", "BMP"), ("webp", "WEBP")][i % 5]
        name = f"{'sub/' if i % 2 else ''}w{i}.{ext}"
        (src / name).write_bytes(crop_bytes(word, fmt=fmt, mode="RGB"))
        names.append(name)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (src / "notes.txt").write_text("not a crop")                          # not an image extension: not read
    out = tmp_path / "out"

    assert ocr_main(["--input", str(src), "--output", str(out), "--model", small_model]) == 0

    df = pd.read_parquet(out)
    expected = {str(src / n) for n in names} | {str(src / "broken.png")}
    assert set(df["path"]) == expected and len(df) == len(expected)
    assert df.set_index("path").loc[str(src / "broken.png"), "error"] == "corrupt image (unreadable PNG header)"
    assert df[df["path"] != str(src / "broken.png")]["error"].isna().all()


@pytest.mark.parametrize("case", ["missing_input", "missing_column", "bad_model", "no_images", "complete_output",
                                  "onnx_on_gpu", "int8_on_gpu", "bf16_on_onnx"])
def test_user_mistakes_get_one_line(ray_local, small_model, tmp_path, capsys, case):
    src = tmp_path / "in"
    src.mkdir()
    write_crops_parquet(LOCAL, str(src), n=4)
    args = ["--input", str(src), "--output", str(tmp_path / "out"), "--model", small_model]
    if case == "missing_input":
        args[1], expect = str(tmp_path / "nope"), "does not exist"
    elif case == "missing_column":
        args += ["--image-column", "pixels"]
        expect = "columns are: id, image, page, label"
    elif case == "bad_model":
        (tmp_path / "model.pt").write_text("not a checkpoint")
        args[5], expect = str(tmp_path / "model.pt"), "not a readable checkpoint"
    elif case == "no_images":
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "a.txt").write_text("x")
        args[1], expect = str(tmp_path / "docs"), "no image files"
    elif case == "onnx_on_gpu":
        args += ["--backend", "onnx", "--num-gpus", "1"]
        expect = "--backend onnx runs on the CPU"
    elif case == "int8_on_gpu":
        args += ["--precision", "int8", "--num-gpus", "1"]
        expect = "--precision int8 runs on backend onnx (CPU), got backend torch (--num-gpus 1)"
    elif case == "bf16_on_onnx":
        args += ["--precision", "bf16"]
        expect = "--backend onnx runs in int8 or fp32, got --precision bf16"
    else:
        assert ocr_main(args) == 0
        capsys.readouterr()
        expect = "already complete"
    assert ocr_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expect in err and "\n" not in err and "Traceback" not in err


def test_backends_read_alike(ray_local, tmp_path):
    """The shipped model on rendered words: the default on CPU (backend auto) is onnx int8, recorded in the
    summary; onnx fp32 reads as torch fp32 (scores within float rounding), int8 gives the same texts but at
    most one."""
    src = tmp_path / "in"
    src.mkdir()
    write_crops_parquet(LOCAL, str(src), n=24, bad={5: b"not an image"})
    runs = {}
    for name, flags in {"default": {}, "torch": {"backend": "torch", "precision": "fp32"},
                        "onnx": {"backend": "onnx", "precision": "fp32"}}.items():
        out = tmp_path / name
        summary = run_ocr(OcrOptions(input=str(src), output=str(out), decoder="greedy", batch_size=8, **flags))
        assert summary["rows_in"] == 24 and summary["failed"] == 1
        assert summary["backend"] == flags.get("backend", "onnx")
        assert summary["options"]["backend"] == flags.get("backend", "auto")
        runs[name] = pd.read_parquet(out).set_index("id").sort_index()
    torch_df, onnx_df, int8_df = runs["torch"], runs["onnx"], runs["default"]
    ok = torch_df["error"].isna()
    assert torch_df.loc[ok, "text"].str.len().min() > 0        # a real model reading real words
    assert onnx_df.loc[ok, "text"].tolist() == torch_df.loc[ok, "text"].tolist()
    # int8 arithmetic may flip a near-tie (here int8 reads "(212) 555-0199" where fp32 drops the space)
    assert (int8_df.loc[ok, "text"] == torch_df.loc[ok, "text"]).sum() >= ok.sum() - 1
    assert all(df.loc[~ok, "text"].isna().all() and df["error"].equals(torch_df["error"]) for df in (onnx_df, int8_df))
    assert (onnx_df.loc[ok, "score"] - torch_df.loc[ok, "score"]).abs().max() < 1e-4


def test_overwrite_replaces_complete_output(ray_local, small_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_crops_parquet(LOCAL, str(src), n=6)
    out = tmp_path / "out"
    args = ["--input", str(src), "--output", str(out), "--model", small_model]
    assert ocr_main(args) == 0
    first = sorted(p.name for p in out.glob("*.parquet"))
    assert ocr_main(args + ["--overwrite"]) == 0
    second = sorted(p.name for p in out.glob("*.parquet"))
    assert set(first).isdisjoint(second)                                  # old parts removed, not mixed
    assert len(pd.read_parquet(out)) == 6


def test_repeated_ids_are_reported_not_fatal_without_resume(ray_local, small_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    table = write_crops_parquet(LOCAL, str(src), n=6)
    ids = pa.array(["a", "a", "b", "c", "c", "c"])
    pq.write_table(table.set_column(0, "id", ids), src / "part-0.parquet")
    (src / "part-1.parquet").unlink()
    summary = run_ocr(OcrOptions(input=str(src), output=str(tmp_path / "out"), model=small_model))
    assert summary["rows_in"] == 6 and summary["repeated_ids"] == 3
    assert sorted(pd.read_parquet(tmp_path / "out")["id"]) == ["a", "a", "b", "c", "c", "c"]


def test_parquet_read_tasks_take_whole_files(ray_local, tmp_path, monkeypatch):
    """Parquet is read a whole file per task, small files grouped (at least ROWS_PER_READ_TASK rows a task), by
    Ray Data's first Parquet reader; the process's own DataContext is left as it was."""
    table = write_crops_parquet(LOCAL, str(tmp_path), n=40, files=4)   # 4 files of 10 rows
    store = Storage(str(tmp_path))
    ctx = ray.data.DataContext.get_current()
    before = ctx.use_datasource_v2
    monkeypatch.setattr(read, "ROWS_PER_READ_TASK", 20)
    ds = read.read_crops(store, read.find_source(store)).materialize()
    assert ctx.use_datasource_v2 == before
    assert ds.num_blocks() == 2                                          # 40 rows / 20 a task; not 4 files
    assert sorted(ds.take_all(), key=lambda r: r["id"]) == table.sort_by("id").to_pylist()
