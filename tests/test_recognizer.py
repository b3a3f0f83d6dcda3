"""The recognition core: `Recognizer.read` (normalised crops, optional turned readings -> readings)."""

import io

import pytest
from PIL import Image

from crnn.image import normalize_crop, turned_crop
from crnn.recognizer import Recognizer, prefer_turned
from tests.conftest import crop_bytes


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
    import torch

    from crnn.checkpoint import load_checkpoint

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
