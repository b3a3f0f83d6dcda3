import io

import numpy as np
import pyarrow as pa
from PIL import Image

from crnn.image import normalize_crop
from pipeline.batch import batch_crops, sort_by_width
from pipeline.preprocess import preprocess_batch
from tests.helpers import crop_bytes


def _batch(widths):
    pixels = [None if w == 0 else np.full((32, w), i, np.uint8).tobytes() for i, w in enumerate(widths)]
    return pa.table({"id": [f"r{i}" for i in range(len(widths))], "_pixels": pa.array(pixels, pa.binary()),
                     "_width": pa.array(widths, pa.int32())})


def test_sort_by_width_groups_similar_widths():
    out = sort_by_width(_batch([90, 0, 17, 300, 17, 40]))
    assert out["_width"].to_pylist() == [0, 17, 17, 40, 90, 300]
    assert out["id"].to_pylist() == ["r1", "r2", "r4", "r5", "r0", "r3"]   # rows move whole, ties keep order


def test_batch_crops_are_each_rows_own_pixels_and_skip_failed_rows():
    crops, ok = batch_crops(_batch([20, 0, 33]))
    assert ok.tolist() == [True, False, True]
    assert [c.shape for c in crops] == [(32, 20), (32, 33)]                # padding is Recognizer.read's (pad_batch)
    assert (crops[0] == 0).all() and (crops[1] == 2).all()                 # each row's own pixels


def test_batch_crops_all_failed():
    crops, ok = batch_crops(_batch([0, 0]))
    assert crops == [] and not ok.any()


def test_preprocess_batch_decodes_and_reports_errors():
    table = pa.table({"image": pa.array([crop_bytes("Total"), b"", None, b"junk"], pa.binary()), "k": [1, 2, 3, 4]})
    out = preprocess_batch(table, "image")
    assert out.column_names == ["k", "_pixels", "_width", "_turned", "_turned_width", "error"]
    assert out["_turned"].null_count == 4 and out["_turned_width"].to_pylist() == [0, 0, 0, 0]  # none tall
    w = out["_width"].to_pylist()
    assert w[0] > 16 and w[1:] == [0, 0, 0]
    assert len(out["_pixels"][0].as_py()) == 32 * w[0]
    errors = out["error"].to_pylist()
    assert errors[0] is None and all(errors[1:])


def test_preprocess_batch_adds_the_turned_reading_of_tall_crops():
    out = preprocess_batch(pa.table({"image": [crop_bytes("Total"), crop_bytes("00837285", vertical=True)]}), "image")
    assert out["_turned"][0].as_py() is None and out["_turned_width"][0].as_py() == 0
    w, tw = out["_width"][1].as_py(), out["_turned_width"][1].as_py()  # upright: squeezed to min_width
    assert w == 16 < tw and len(out["_turned"][1].as_py()) == 32 * tw
    back = np.frombuffer(out["_turned"][1].as_py(), np.uint8).reshape(32, tw)
    assert np.array_equal(back, normalize_crop(Image.open(io.BytesIO(crop_bytes("00837285")))))  # upright again

    crops, tall_rows = batch_crops(out, turned=True)
    assert tall_rows.tolist() == [False, True] and [c.shape[1] for c in crops] == [tw]
