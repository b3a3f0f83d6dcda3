"""Training data: document-level split, labelled crops (vertical text turned upright), CTC batches."""

import io
import random

import numpy as np
from PIL import Image

from crnn.charset import Charset
from crnn.image import decode_image, normalize_crop, to_gray
from crnn.training.data import TRAINING_SPEC, CropStream, RealCrops, Sample, split_by_doc
from tests.helpers import crop_bytes, encode


def test_split_by_doc_keeps_documents_whole():
    docs = [f"doc{i // 5}" for i in range(500)]
    val = split_by_doc(docs, 0.2)
    assert 0 < val.sum() < len(docs)
    for d in set(docs):
        rows = val[[i for i, x in enumerate(docs) if x == d]]
        assert rows.all() or not rows.any()
    assert (split_by_doc(docs, 0.2) == val).all()                 # stable across calls


def test_training_decodes_crops_as_inference_does():
    """The same bytes give the same crop in training as in the pipeline (decode_image + to_gray): a
    transparent PNG is composited on white and a JPEG's EXIF orientation is applied, not ignored."""
    word = Image.open(io.BytesIO(crop_bytes("Total 12.50")))
    clear = Image.new("RGBA", word.size, (0, 0, 0, 0))            # ink on transparent black
    clear.putalpha(Image.eval(word, lambda v: 255 - v))
    sideways = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6                                              # orientation: rotate 90 on display
    word.transpose(Image.Transpose.ROTATE_90).convert("RGB").save(sideways, "JPEG", quality=95, exif=exif)
    data = [encode(clear), sideways.getvalue()]
    crops = RealCrops(data, ["Total 12.50"] * 2, Charset())
    for i, b in enumerate(data):
        inference = normalize_crop(to_gray(decode_image(b)), TRAINING_SPEC)
        assert np.array_equal(crops.get(i).crop, inference)
    assert crops.get(0).crop.mean() > 128                         # dark ink on white, as the pipeline sees it
    assert crops.get(1).crop.shape[1] > 3 * crops.get(1).crop.shape[0]   # upright: a wide line, not a tall strip


def test_real_crops_skip_unencodable_labels_and_turn_vertical_text_upright():
    word = Image.open(io.BytesIO(crop_bytes("00837285")))
    one_glyph = Image.new("L", (6, 20), 255)                      # a tall "1": stays as it is
    crops = RealCrops([crop_bytes("00837285", vertical=True), encode(one_glyph), encode(word), encode(word)],
                      ["00837285", "1", "", "caf\u00e9\u2610"], Charset())
    assert len(crops) == 2 and crops.skipped == 2
    assert np.array_equal(crops.get(0).crop, normalize_crop(word)) and crops.get(0).text == "00837285"
    assert np.array_equal(crops.get(1).crop, normalize_crop(one_glyph))


def test_crop_stream_batches_are_width_sorted_ctc_batches():
    images = [crop_bytes(w, size=10 + i) for i, w in enumerate(["a", "Total", "Invoice 42", "R&D"] * 8)]
    real = RealCrops(images, ["a", "Total", "Invoice 42", "R&D"] * 8, Charset())
    batch = next(iter(CropStream(Charset(), 8, seed=3, real=real, pool_batches=2)))
    n = len(batch["texts"])
    assert n == 8 and batch["images"].shape[0] == n and batch["images"].shape[1] == 32
    assert batch["target_lengths"].tolist() == [len(t) for t in batch["texts"]]
    assert int(batch["target_lengths"].sum()) == len(batch["targets"])
    assert (np.diff(batch["widths"].numpy()) >= 0).all() and batch["widths"].max() <= batch["images"].shape[2]


def test_narrowed_crops_are_squeezed_but_keep_8_px_per_character():
    real = RealCrops([crop_bytes("Invoice", size=24)], ["Invoice"], Charset())
    stream = CropStream(Charset(), 1, seed=0, real=real, narrow_prob=1.0)
    crop, rng = real.get(0).crop, random.Random(0)
    full = crop.shape[1]

    def widths(label: str) -> list[int]:
        return [stream._narrowed(Sample(crop, label), rng).crop.shape[1] for _ in range(30)]

    w = widths("Invoice")                            # 7 characters: squeezed to 70-95%
    assert all(round(0.7 * full) <= x <= round(0.95 * full) for x in w) and len(set(w)) > 5, (full, w)
    w = widths("Invoice 12345")                      # 13 characters: never under 104 px
    assert all(8 * 13 <= x < full for x in w) and min(w) == 8 * 13, (full, w)
    assert widths("Invoice 12345678") == [full] * 30  # 16 characters: already under 8 px each, left alone
