import copy

import numpy as np
import pytest
import torch
from PIL import Image

from crnn.charset import Charset
from crnn.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from crnn.model import CRNN, CRNNConfig
from crnn.recognizer import Recognizer

torch.set_num_threads(1)   # tiny models; the machine is shared

# ---- model -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return CRNN(CRNNConfig.small()).eval()


@pytest.mark.parametrize("width", [16, 17, 37, 64, 101])
def test_output_shape_is_T_B_C_with_T_width_over_4(small_model, width):
    x = torch.randn(2, 1, 32, width)
    with torch.inference_mode():
        y = small_model(x)
    assert y.shape == (width // 4, 2, 96)
    assert CRNN.frames(width) == width // 4
    assert torch.isfinite(y).all()


def test_default_config_shape_and_small_has_fewer_parameters():
    full = CRNN(CRNNConfig()).eval()
    small = CRNN(CRNNConfig.small())
    n_full = sum(p.numel() for p in full.parameters())
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < n_full / 2                # half the width: roughly a quarter of the weights
    assert CRNNConfig.small().num_classes == 96
    with torch.inference_mode():
        assert full(torch.zeros(1, 1, 32, 48)).shape == (12, 1, 96)


def test_num_classes_and_bad_config():
    m = CRNN(CRNNConfig.small(num_classes=3)).eval()
    with torch.inference_mode():
        assert m(torch.zeros(1, 1, 32, 16)).shape == (4, 1, 3)
    with pytest.raises(ValueError):
        CRNN(CRNNConfig(height=48))


# ---- checkpoint ------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path, small_model):
    path = tmp_path / "sub" / "model.pt"
    cs = Charset()
    save_checkpoint(path, small_model, cs, name="test-crnn", version="1.2.3", training={"steps": 7, "lr": 1e-3})
    assert path.is_file()
    assert not (tmp_path / "sub" / "model.pt.tmp").exists()
    model, charset, meta = load_checkpoint(path)
    assert not model.training
    assert model.config == small_model.config
    assert charset.symbols == cs.symbols
    assert meta == {"name": "test-crnn", "version": "1.2.3", "height": 32, "training": {"steps": 7, "lr": 1e-3}}

    x = torch.randn(3, 1, 32, 40, generator=torch.Generator().manual_seed(1))
    rounded = copy.deepcopy(small_model)
    with torch.no_grad():
        for t in list(rounded.parameters()) + list(rounded.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    with torch.inference_mode():
        y0, y1, yr = small_model(x), model(x), rounded(x)
    assert torch.allclose(y1, yr, atol=1e-5)   # exactly the fp16-rounded weights
    assert torch.allclose(y1, y0, atol=2e-2)   # and close to the original
    assert y1.argmax(-1).eq(y0.argmax(-1)).float().mean() > 0.9


def test_checkpoint_full_precision_is_exact(tmp_path, small_model):
    path = tmp_path / "fp32.pt"
    save_checkpoint(path, small_model, Charset("abc"), name="n", version="v", half=False)
    model, charset, meta = load_checkpoint(path)
    assert charset.symbols == "abc"
    assert meta["training"] == {}
    x = torch.randn(1, 1, 32, 24)
    with torch.inference_mode():
        assert torch.equal(model(x), small_model(x))


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="does not exist") as ei:
        load_checkpoint(path)
    assert str(path) in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_load_directory_is_refused(tmp_path):
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(tmp_path)
    assert str(tmp_path) in str(ei.value)


def test_load_text_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("definitely not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as ei:
        load_checkpoint(path)
    assert str(path) in str(ei.value)


@pytest.mark.parametrize("obj, found", [({"format": "other-ocr/7", "state_dict": {}}, "other-ocr/7"),
                                        ({"state_dict": {}}, "None"),
                                        (torch.zeros(3), "Tensor"),
                                        ([1, 2, 3], "list")])
def test_load_torch_file_of_another_format(tmp_path, obj, found):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=FORMAT) as ei:
        load_checkpoint(path)
    assert str(path) in str(ei.value)
    assert found in str(ei.value)


UNPICKLED = []


def _side_effect(tag):
    UNPICKLED.append(tag)
    return tag


class Payload:
    """Unpickling this runs _side_effect: what an arbitrary-code pickle would do."""

    def __reduce__(self):
        return (_side_effect, ("pwned",))


def test_load_uses_weights_only(tmp_path, small_model):
    good = tmp_path / "good.pt"
    save_checkpoint(good, small_model, Charset(), name="n", version="v")
    ckpt = torch.load(good, weights_only=True)
    ckpt["training"] = {"note": Payload()}          # otherwise a perfectly valid checkpoint
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)

    UNPICKLED.clear()
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(bad)
    assert str(bad) in str(ei.value)
    assert UNPICKLED == []                          # the object was never rebuilt

    # Sanity: the file is loadable (and runs the payload) when weights_only is off.
    assert torch.load(bad, weights_only=False)["training"]["note"] == "pwned"
    assert UNPICKLED == ["pwned"]
    UNPICKLED.clear()


# ---- recognizer ------------------------------------------------------------------------------------


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
    assert rec.precision == "bf16"
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
