"""CRNN text recognition as inference loads it: model, charset, CTC decoding, lexicon, image, checkpoints,
recognizer. No Ray here; model development (synthetic data, training, metrics, splits) is `crnn.training`."""

from crnn.charset import Charset, normalize
from crnn.checkpoint import DEFAULT_MODEL, CheckpointError, load_checkpoint, save_checkpoint
from crnn.decoding import beam_search_decode, greedy_decode
from crnn.image import ImageSpec, decode_image, normalize_crop, pad_batch
from crnn.model import CRNN, CRNNConfig
from crnn.recognizer import Recognizer

__all__ = ["CRNN", "CRNNConfig", "Charset", "CheckpointError", "DEFAULT_MODEL", "ImageSpec", "Recognizer",
           "beam_search_decode", "decode_image", "greedy_decode", "load_checkpoint", "normalize",
           "normalize_crop", "pad_batch", "save_checkpoint"]
