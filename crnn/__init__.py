"""CRNN text recognition as inference loads it: model, charset, CTC decoding, lexicon, image, checkpoints,
recognizer, backends (which backend and precision run where), and the accuracy metrics that evaluation and
training share. No Ray here; model development (synthetic data, training, splits) is `crnn.training`."""

import importlib

# name -> the module defining it. Imported on first use, so that `crnn.image` (preprocessing) does not
# import PyTorch: a Ray worker that only decodes crops starts seconds sooner and smaller.
_EXPORTS = {
    "Charset": "charset", "normalize": "charset",
    "DEFAULT_MODEL": "checkpoint", "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "beam_search_decode": "decoding", "greedy_decode": "decoding",
    "ImageSpec": "image", "decode_image": "image", "normalize_crop": "image", "pad_batch": "image",
    "CRNN": "model", "CRNNConfig": "model",
    "Recognizer": "recognizer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"crnn.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'crnn' has no attribute {name!r}")
