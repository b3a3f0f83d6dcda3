"""Checkpoints: round trip, exactness, and a one-line CheckpointError for every file that is not one
(missing, a folder, text, another torch format, a pickle that would run code)."""

import copy

import pytest
import torch

from crnn.charset import Charset
from crnn.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from crnn.model import CRNN, CRNNConfig

torch.set_num_threads(1)   # tiny models; the machine is shared


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return CRNN(CRNNConfig.small()).eval()


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
