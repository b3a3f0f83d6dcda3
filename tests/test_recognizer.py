"""The recognition core: `Recognizer.read` (normalised crops, optional turned readings -> readings),
`recognize` on images of any kind, its options and decoders, and `around` for training's evaluation."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crnn.charset import Charset
from crnn.checkpoint import load_checkpoint, save_checkpoint
from crnn.image import normalize_crop, turned_crop
from crnn.model import CRNN, CRNNConfig
from crnn.recognizer import Recognizer, default_precision, prefer_turned
from tests.helpers import crop_bytes


def _image(text, vertical=False):
    return Image.open(io.BytesIO(crop_bytes(text, size=20, vertical=vertical)))


def test_read_is_recognize_on_normalised_crops_in_any_order_and_batching():
    rec = Recognizer.load(device="cpu", precision="fp32", decoder="greedy")
    images = [_image(t) for t in ["Invoice", "TOTAL 12.50", "No.", "Signature of the customer"]]
    images.append(_image("00837285", vertical=True))
    crops = [normalize_crop(im) for im in images]
    turned = [turned_crop(im) for im in images]
    assert [t is not None for t in turned] == [False] * 4 + [True]
    whole = rec.read(crops, turned)
    assert whole == rec.recognize(images)
    in_twos = rec.read(crops, turned, batch_size=2)                       # other padding, same readings
    assert [t for t, _ in in_twos] == [t for t, _ in whole]
    assert [s for _, s in in_twos] == pytest.approx([s for _, s in whole], abs=1e-3)
    upright_only = rec.read(crops)
    assert upright_only[:4] == whole[:4] and len(upright_only[4][0]) <= 2  # the tall one read sideways
    assert len(whole[4][0]) >= 6                                          # ...and turned, as a number
    assert rec.read([]) == []


# Readings and scores of the shipped model on FUNSD's tall crops (2026.11.25.5), and two made up.
@pytest.mark.parametrize("upright, turned, expected", [
    (("|", 0.67), ("621800455", 0.89), True),     # margin number: upright it collapses to one glyph
    (("F", 0.80), ("52251", 0.998), True),
    (("", 0.10), ("ab", 0.60), True),
    (("$", 0.99), ("42", 0.43), False),           # a narrow glyph turned reads as two marks...
    ((":", 0.99), ("..", 0.80), False),           # ...even fairly confidently
    (("+", 0.98), ("+I|", 0.19), False),
    (("P", 0.90), ("O.", 0.75), False),
    (("", 0.0), ("a", 0.99), False),              # one character is never vertical text
    (("APPROVAL", 0.2), ("AP", 0.9), False),      # never fewer characters than upright
])
def test_prefer_turned(upright, turned, expected):
    assert prefer_turned(upright, turned) is expected


def test_around_reads_with_the_model_as_it_is():
    """Training's evaluation: a Recognizer around the live model leaves it uncopied, unmoved and not
    channels_last (the caller switches eval/train), and reads as a loaded fp32 greedy Recognizer does."""
    model, charset, _ = load_checkpoint(None)
    weight = model.cnn[0].weight
    rec = Recognizer.around(model, charset, torch.device("cpu"))
    assert rec.model is model and model.cnn[0].weight is weight and weight.is_contiguous()
    assert not model.training                                  # load_checkpoint's eval mode, untouched
    crops = [normalize_crop(_image(t)) for t in ["Invoice", "TOTAL 12.50", "No."]]
    loaded = Recognizer.load(device="cpu", precision="fp32", decoder="greedy")
    assert [t for t, _ in rec.read(crops)] == [t for t, _ in loaded.read(crops)]
    model.train()
    Recognizer.around(model, charset, "cpu")
    assert model.training and model.cnn[0].weight.is_contiguous()



@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(1234)
    model = CRNN(CRNNConfig.small()).eval()
    path = tmp_path_factory.mktemp("models") / "untrained.pt"
    save_checkpoint(path, model, Charset(), name="untrained", version="0")
    return path


def inputs():
    rng = np.random.default_rng(5)
    return [
        Image.fromarray(rng.integers(0, 256, (20, 60), dtype=np.uint8), "L"),      # PIL gray   -> w 96
        rng.integers(0, 256, (32, 40), dtype=np.uint8),                            # numpy gray -> w 40
        Image.fromarray(rng.integers(0, 256, (16, 50, 3), dtype=np.uint8), "RGB"), # PIL RGB    -> w 100
        rng.integers(0, 256, (64, 40, 3), dtype=np.uint8),                         # numpy RGB  -> w 20
        Image.fromarray(rng.integers(0, 256, (10, 30, 4), dtype=np.uint8), "RGBA"),# PIL RGBA   -> w 96
    ]


def check_results(results, n, charset):
    assert isinstance(results, list) and len(results) == n
    for r in results:
        assert isinstance(r, tuple) and len(r) == 2
        text, conf = r
        assert isinstance(text, str) and isinstance(conf, float)
        assert 0.0 <= conf <= 1.0
        assert charset.can_encode(text)


def test_recognize_mixed_inputs_in_order(model_path):
    rec = Recognizer.load(model_path, device="cpu", precision="fp32")
    assert rec.model_id == "untrained:0"
    xs = inputs()
    res = rec.recognize(xs)
    check_results(res, len(xs), rec.charset)
    assert len(set(res)) > 1                        # distinguishable, so the order checks below mean something

    # Batches are formed by width, not input position: any permutation of the inputs must give
    # the same per-input results, permuted the same way.
    perm = [3, 0, 4, 2, 1]
    res_perm = rec.recognize([xs[i] for i in perm])
    assert res_perm == [res[i] for i in perm]

    # batch_size=1 makes every crop its own batch: the same as recognising it on its own.
    alone = rec.recognize(xs, batch_size=1)
    check_results(alone, len(xs), rec.charset)
    for i in range(len(xs)):
        assert alone[i] == rec.recognize([xs[i]])[0]


def test_recognize_empty_and_default_precision(model_path):
    rec = Recognizer.load(model_path, device="cpu")
    native_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()       # AVX-512 and newer
    assert rec.precision == default_precision(torch.device("cpu")) == ("bf16" if native_bf16 else "fp32")
    assert rec.recognize([]) == []
    check_results(rec.recognize(inputs()[:2]), 2, rec.charset)


def test_recognizer_rejects_bad_options(model_path):
    with pytest.raises(ValueError, match="precision"):
        Recognizer.load(model_path, device="cpu", precision="int4")
    with pytest.raises(ValueError, match="decoder"):
        Recognizer.load(model_path, device="cpu", decoder="viterbi")


def test_recognize_beam_decoder(model_path):
    rec = Recognizer.load(model_path, device="cpu", precision="fp32", decoder="beam")
    check_results(rec.recognize(inputs()[:3]), 3, rec.charset)


FUNSD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "funsd_train_words.parquet"


@pytest.mark.skipif(not FUNSD.exists(), reason=f"needs FUNSD's word crops at {FUNSD} (the team's ../shared/data)")
def test_onnx_backend_reads_as_torch_on_real_crops(tmp_path, monkeypatch):
    """The shipped model on 160 real FUNSD word crops: ONNX Runtime's fp32 logits decode to torch fp32's
    readings, its int8 model's to nearly all of them; each model is cached in the user cache dir and the cached
    file is what a second load uses."""
    import pyarrow.parquet as pq
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images = pq.read_table(FUNSD, columns=["image"]).slice(0, 160).column("image").to_pylist()
    crops = [normalize_crop(Image.open(io.BytesIO(b))) for b in images]
    torch_reads = Recognizer.load(device="cpu", precision="fp32").read(crops, batch_size=64)
    onnx = Recognizer.load(backend="onnx", precision="fp32")
    assert (onnx.backend, str(onnx.device), onnx.precision) == ("onnx", "cpu", "fp32")
    onnx_reads = onnx.read(crops, batch_size=64)
    same = [a[0] == b[0] for a, b in zip(torch_reads, onnx_reads)]
    assert sum(same) >= 158                       # fp32 either way: the texts agree (all 160 here)
    assert np.median([abs(a[1] - b[1]) for a, b in zip(torch_reads, onnx_reads)]) < 1e-4
    cached = list((tmp_path / "crnn-ocr" / "onnx").glob("*.onnx"))
    assert len(cached) == 1
    again = Recognizer.load(backend="onnx", precision="fp32")       # from the cached file
    assert again.read(crops[:32]) == onnx.read(crops[:32])
    assert list((tmp_path / "crnn-ocr" / "onnx").glob("*.onnx")) == cached

    int8 = Recognizer.load(backend="onnx")        # the backend's default precision
    assert int8.precision == "int8"
    int8_reads = int8.read(crops, batch_size=64)
    # 0.997 of 3,000 FUNSD crops read as fp32 does (greedy); scores move more than fp32's float rounding
    assert sum(a[0] == b[0] for a, b in zip(torch_reads, int8_reads)) >= 150
    assert 0 < np.median([abs(a[1] - b[1]) for a, b in zip(torch_reads, int8_reads)]) < 0.02
    assert len(list((tmp_path / "crnn-ocr" / "onnx").glob("*.onnx"))) == 2     # its own cached file
    # (the same batches: the LSTM's activations are quantised per call, so a crop's score depends a little on
    # its batch, as padding makes it in every precision)
    assert Recognizer.load(backend="onnx").read(crops, batch_size=64) == int8_reads


def test_recognizer_rejects_bad_backends(model_path):
    with pytest.raises(ValueError, match="backend must be auto or one of torch, onnx, got 'tensorrt'"):
        Recognizer.load(model_path, backend="tensorrt")
    with pytest.raises(ValueError, match="backend onnx runs on the CPU; with device cuda use backend torch"):
        Recognizer.load(model_path, device="cuda", backend="onnx")
    with pytest.raises(ValueError, match="backend onnx runs in int8 or fp32, got precision bf16"):
        Recognizer.load(model_path, device="cpu", precision="bf16", backend="onnx")
    with pytest.raises(ValueError, match="precision int8 runs on backend onnx"):
        Recognizer.load(model_path, device="cpu", precision="int8")
    with pytest.raises(ValueError, match="precision must be bf16, fp16 or fp32 on backend torch, got 'fp8'"):
        Recognizer.load(model_path, device="cpu", precision="fp8")


def test_int8_backend_reads_rendered_words_as_fp32(tmp_path, monkeypatch):
    """Without ../shared: the int8 model of the shipped weights reads clean rendered words as torch fp32 does,
    from the fixed calibration crops in the package (256 of them, 32 px high)."""
    from crnn.onnx_backend import calibration_crops
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    crops = calibration_crops()
    assert len(crops) == 256 and all(c.dtype == np.uint8 and c.shape[0] == 32 and c.shape[1] >= 16 for c in crops)
    images = [_image(t) for t in ["Invoice", "TOTAL 12.50", "Date:", "Signature", "No. 00837285", "Amount Due"]]
    fp32 = Recognizer.load(device="cpu", precision="fp32").recognize(images)
    int8 = Recognizer.load(backend="onnx", precision="int8").recognize(images)
    assert [t for t, _ in int8] == [t for t, _ in fp32]


def test_onnx_recognizer_from_a_built_model_reads_as_one_loaded_from_the_checkpoint(model_path, tmp_path,
                                                                                  monkeypatch):
    """What a model actor on the ONNX backend is given (the ONNX bytes, the charset, the metadata) reads as a
    Recognizer that builds the ONNX model from the checkpoint itself, lexicon decoder included."""
    from crnn.onnx_backend import onnx_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model, charset, meta = load_checkpoint(model_path)
    built = Recognizer(None, Charset(charset.symbols), meta, backend="onnx", precision="fp32", threads=1,
                       onnx_model=onnx_model(model, "fp32"))
    loaded = Recognizer.load(model_path, backend="onnx", precision="fp32", threads=1)
    crops = [normalize_crop(Image.open(io.BytesIO(crop_bytes(w, size=s))))
             for w, s in [("Invoice", 12), ("TOTAL 42.00", 16), ("Date:", 10), ("x", 14)]]
    a, b = built.read(crops), loaded.read(crops)
    assert [t for t, _ in a] == [t for t, _ in b]
    assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-6)
    with pytest.raises(ValueError, match="needs the model or its ONNX build"):
        Recognizer(None, charset, meta, backend="onnx")


def test_an_onnx_model_actor_reads_without_importing_torch(model_path, tmp_path, monkeypatch):
    """A model actor given the driver's ONNX build never imports PyTorch, and reads a real batch."""
    import pickle
    import subprocess
    import sys

    import pyarrow as pa

    from crnn.onnx_backend import onnx_model
    from pipeline.preprocess import preprocess_batch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model, charset, meta = load_checkpoint(model_path)
    args = tmp_path / "args.pkl"
    batch = preprocess_batch(pa.table({"id": ["a", "b"], "image": [crop_bytes("Invoice"), b"junk"]}), "image")
    args.write_bytes(pickle.dumps(({"model": onnx_model(model, "int8"), "charset": charset.symbols, "meta": meta},
                                   batch)))
    code = ("import pickle, sys\n"
            "from pipeline.predict import CRNNPredictor\n"
            f"onnx, batch = pickle.load(open({str(args)!r}, 'rb'))\n"
            "out = CRNNPredictor(backend='onnx', threads=1, onnx=onnx)(batch)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(out.column('score').to_pylist()[0] > 0, out.column('error').to_pylist())\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("True [None, 'not an image")


def test_onnx_model_input_is_the_models_own_input_scaling():
    """The ONNX path scales pixels by a table, without PyTorch: the values `CRNN.prepare` computes, exactly."""
    from crnn.onnx_backend import model_input

    batch = np.random.default_rng(0).integers(0, 256, (3, 32, 40), dtype=np.uint8)
    batch[0, 0, :256 // 40] = 0
    assert np.array_equal(model_input(batch), CRNN.prepare(torch.from_numpy(batch)).numpy())
    everything = np.arange(256, dtype=np.uint8).reshape(1, 1, 256).repeat(32, axis=1)
    assert np.array_equal(model_input(everything), CRNN.prepare(torch.from_numpy(everything)).numpy())
