"""The shipped default model reads: printed words rendered with an installed font, and held-out real scans."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageFont

from crnn import Recognizer
from crnn.charset import normalize
from crnn.image import ImageSpec, normalize_crop, pad_batch
from crnn.training import splits
from crnn.metrics import accuracy_by_score, text_metrics
from pipeline import OcrOptions, run_ocr
from crnn.training.lines import main as lines_main
from tests.helpers import encode

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FUNSD, SROIE = DATA / splits.data_file("funsd"), DATA / splits.data_file("sroie")
needs_funsd = pytest.mark.skipif(not FUNSD.exists(), reason=f"needs FUNSD's word crops at {FUNSD} (the team's ../shared/data)")
needs_sroie = pytest.mark.skipif(not SROIE.exists(), reason=f"needs SROIE's line crops at {SROIE} (the team's ../shared/data)")
WORDS = ["Invoice", "TOTAL", "Date:", "12/05/2024", "$1,234.56", "Phone", "(212)", "555-0199", "Amount",
         "Customer", "No.", "REPORT", "Page", "of", "Tax", "Subtotal", "ORDER", "#12-B", "Signature", "Company"]


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer.load()


def _render(text: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 6, bottom - top + 6), 255)
    ImageDraw.Draw(img).text((3 - left, 3 - top), text, fill=0, font=font)
    return img


def _png(text: str, vertical: bool = False) -> bytes:
    img = _render(text, ImageFont.truetype("DejaVuSans.ttf", 20))
    return encode(img.transpose(Image.Transpose.ROTATE_270) if vertical else img)  # vertical: top to bottom


def test_default_model_is_trained():
    meta = Recognizer.load().meta
    assert meta["training"]["steps"] > 0 and meta["training"]["validation"]["real"]["exact"] > 0.85


def test_reads_clean_printed_words(recognizer):
    font = ImageFont.truetype("DejaVuSans.ttf", 24)  # DejaVu ships with every Debian machine
    preds = [t for t, _ in recognizer.recognize([_render(w, font) for w in WORDS])]
    m = text_metrics(preds, WORDS)
    assert m["case_insensitive"] >= 0.7, list(zip(WORDS, preds))
    assert m["cer"] <= 0.1


def test_wide_batches_run_in_several_passes_that_read_alike():
    font = ImageFont.truetype("DejaVuSans.ttf", 20)
    lines = [" ".join(WORDS[i:i + 9]) for i in range(5)]
    batch, widths = pad_batch([normalize_crop(_render(t, font)) for t in lines])
    split = Recognizer.load(precision="fp32", max_columns=2 * batch.shape[2])
    whole = Recognizer.load(precision="fp32", max_columns=10**9)
    passes = []
    split.model.register_forward_hook(lambda module, args, out: passes.append(args[0].shape[0]))
    a, b = split.predict_padded(batch, widths), whole.predict_padded(batch, widths)
    assert passes == [2, 2, 1]
    assert [t for t, _ in a] == [t for t, _ in b]
    assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
    assert text_metrics([t for t, _ in a], lines)["cer"] <= 0.1


def _validation_sample(path: Path, dataset: str, n: int = 400) -> pa.Table:
    """n crops spread evenly over the validation split's documents (crnn/training/splits.json)."""
    t = pq.read_table(path, columns=["image", "text", "doc_id"])
    t = t.filter(splits.in_split(t["doc_id"].to_pylist(), dataset, "validation"))
    return t.take(np.linspace(0, len(t) - 1, n).astype(int))


def _check_reads(recognizer, sample: pa.Table, case_insensitive: bool, exact: float, cer: float, confident_kept: float):
    results = recognizer.recognize([Image.open(io.BytesIO(b)) for b in sample["image"].to_pylist()])
    preds, labels = [p for p, _ in results], [normalize(x) for x in sample["text"].to_pylist()]
    if case_insensitive:
        preds, labels = [p.lower() for p in preds], [y.lower() for y in labels]
    m = text_metrics(preds, labels)
    assert m["exact"] >= exact and m["cer"] <= cer, m
    right = [s for (_, s), p, y in zip(results, preds, labels) if p == y]
    wrong = [s for (_, s), p, y in zip(results, preds, labels) if p != y]
    assert sum(right) / len(right) > sum(wrong) / len(wrong)  # the score means something
    # ... enough to act on: most crops score >= 0.9 and nearly all of those read right.
    confident, = accuracy_by_score(preds, labels, [s for _, s in results], thresholds=(0.9,))
    assert confident["kept"] >= confident_kept and confident["exact"] >= 0.94, confident


@needs_funsd
def test_reads_held_out_scanned_forms(recognizer):
    # 2026.12.03.1 + lexicon decoder on these 400 words of 30 forms: exact 0.903, CER 0.026; score >= 0.9:
    # 0.78 of crops, 0.961 exact (all 4,829 validation words: MODEL.md).
    _check_reads(recognizer, _validation_sample(FUNSD, "funsd"), False, exact=0.86, cer=0.04, confident_kept=0.7)


@needs_sroie
def test_reads_held_out_receipts(recognizer):
    # Receipt labels are upper case by SROIE's convention: scored case-insensitively. 2026.12.03.1 + lexicon
    # on these 400 lines of 60 receipts: 0.900, CER 0.020; score >= 0.9: 0.72 of lines, 0.969 exact.
    _check_reads(recognizer, _validation_sample(SROIE, "sroie"), True, exact=0.85, cer=0.035, confident_kept=0.6)


VERTICAL = ["00837285", "621800455", "APPROVAL", "Invoice", "2074956978"]


@needs_funsd
def test_reads_lines_of_held_out_scanned_forms(recognizer, tmp_path):
    assert lines_main(["--input", str(FUNSD), "--output", str(tmp_path / "lines.parquet")]) == 0
    t = pq.read_table(tmp_path / "lines.parquet", columns=["image", "text", "doc_id"])
    held_out = t.filter(splits.in_split(t["doc_id"].to_pylist(), "funsd", "validation"))
    labels = [normalize(x) for x in held_out["text"].to_pylist()]
    preds = [p for p, _ in recognizer.recognize([Image.open(io.BytesIO(b)) for b in held_out["image"].to_pylist()])]
    m = text_metrics(preds, labels)
    assert m["n"] > 800 and m["exact"] >= 0.60 and m["cer"] <= 0.04, m  # 2026.12.03.1 + lexicon: 879 lines, 0.654, 0.030
    long = [(p, y) for p, y in zip(preds, labels) if len(y) > 40]
    assert len(long) >= 15 and text_metrics(*zip(*long))["cer"] <= 0.04


def test_reads_vertical_text_in_process():
    tall = [Image.open(io.BytesIO(_png(w, vertical=True))) for w in VERTICAL]
    turned = [t for t, _ in Recognizer.load().recognize(tall)]
    upright_only = [t for t, _ in Recognizer.load(spec=ImageSpec(vertical_ratio=0)).recognize(tall)]
    assert text_metrics(turned, VERTICAL)["exact"] >= 0.8, turned
    assert text_metrics(upright_only, VERTICAL)["exact"] == 0, upright_only


def test_reads_vertical_text_through_the_pipeline(ray_local, tmp_path):
    words = VERTICAL + WORDS[:5]
    images = [_png(w, vertical=True) for w in VERTICAL] + [_png(w) for w in WORDS[:5]]
    pq.write_table(pa.table({"id": [f"c{i}" for i in range(len(words))], "image": images}), tmp_path / "in.parquet")

    run_ocr(OcrOptions(input=str(tmp_path / "in.parquet"), output=str(tmp_path / "out")))

    df = pd.read_parquet(tmp_path / "out").set_index("id").loc[[f"c{i}" for i in range(len(words))]]
    assert df["error"].isna().all()
    assert text_metrics(df["text"].tolist()[:len(VERTICAL)], VERTICAL)["exact"] >= 0.8, df["text"].tolist()
    assert text_metrics(df["text"].tolist()[len(VERTICAL):], WORDS[:5])["case_insensitive"] >= 0.8  # upright kept
