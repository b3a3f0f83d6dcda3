"""In-process text recognition without Ray: preprocess -> CRNN -> CTC decode.

    from crnn import Recognizer
    rec = Recognizer.load()                       # shipped default weights
    rec.recognize([Image.open("word.png")])       # -> [("Invoice", 0.98)]
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from crnn import backends, onnx_backend
from crnn.decoding import beam_search_decode, greedy_decode, lexicon_beam_decode
from crnn.image import ImageSpec, normalize_crop, pad_batch, turned_crop
from crnn.lexicon import load_prior

# PyTorch is imported where backend "torch" needs it: a Recognizer on backend "onnx" built from an ONNX model
# (`onnx_model`) reads without it, and a model actor that imports none starts sooner and smaller.

DECODERS = ("lexicon", "greedy", "beam")


class Recognizer:
    """Pre-processor + CRNN + CTC post-processor, loaded once and reused.

    Args:
        model, charset, meta: as returned by `load_checkpoint`.
        device: "cpu", "cuda", "cuda:1"...; None picks CUDA when available.
        precision: torch: "bf16", "fp16" or "fp32", None picks `default_precision(device)`; onnx: "int8"
            (default) or "fp32".
        decoder: "lexicon" (greedy, and for the crops it is unsure of a beam search that also weighs an
            English word prior, so that `thc` reads `the` while numbers and codes are read as the pixels
            say; see `lexicon_beam_decode`), "greedy" (best path) or "beam" (CTC prefix beam search).
        decoder_options: keyword arguments for the decoder function, e.g. {"alpha": 0.3, "gate": 0.9}.
        max_columns: most padded width summed over the crops of one forward pass (the batch is split
            into several passes beyond it), so wide crops cost no more memory than a batch of words:
            128 crops of width 1,024 (~0.6 GB on CPU); None: that on CPU, 4x on CUDA.
        prepare_model: put the model in eval mode, its BatchNorms folded into the convolutions
            (`CRNN.fold_batchnorm`), on `device` in channels_last (faster convolutions), and
            feed it channels_last batches; False leaves the model as it is (`around`).
        backend: what computes the logits. "torch" (default): the PyTorch model. "onnx": ONNX Runtime on the
            CPU (`crnn.onnx_backend`), int8 (convolutions and ReLUs calibrated on fixed synthetic crops, the
            BiLSTM and head dynamically quantised: the fastest on CPU, readings within noise of torch's) or fp32
            (torch's readings). Built from the weights at load (`crnn.onnx_backend.onnx_model`) and cached in
            the user cache dir, or given built (`onnx_model`). CPU only; `device` is then the string "cpu".
        threads: with backend "onnx": ONNX Runtime's threads (None: torch's thread count at load, or the
            machine's CPUs where the model comes as `onnx_model`).
        onnx_model: with backend "onnx", the model as ONNX Runtime reads it (`onnx_backend.onnx_model`'s bytes,
            of the precision given); `model` may then be None, and PyTorch is not imported.
    """

    def __init__(self, model, charset, meta: dict, *, device: str | None = None,
                 precision: str | None = None, decoder: str = "lexicon", spec: ImageSpec = ImageSpec(),
                 max_columns: int | None = None, decoder_options: dict | None = None, prepare_model: bool = True,
                 backend: str = "torch", threads: int | None = None, onnx_model: bytes | None = None):
        if backend == "auto":
            raise ValueError("backend must be torch or onnx here (resolve 'auto' with crnn.backends.resolve)")
        backends.check(backend, precision, gpu=str(device or "cpu") != "cpu", names={"gpu": f"device {device}"})
        if backend == "onnx":
            self.device = "cpu"
        else:
            import torch
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = precision or ("int8" if backend == "onnx" else default_precision(self.device))
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.decoder, self.decoder_options = decoder, dict(decoder_options or {})
        self.prior = load_prior() if decoder == "lexicon" else None
        self.max_columns = max_columns or (4 if str(self.device).startswith("cuda") else 1) * 128 * 1024
        self.charset, self.meta, self.spec = charset, meta, spec
        self.backend = backend
        self.channels_last = prepare_model and backend == "torch"
        if backend == "onnx":
            self.model = model.eval() if prepare_model and model is not None else model
            if onnx_model is None:
                if model is None:
                    raise ValueError("backend onnx needs the model or its ONNX build (onnx_model)")
                import torch
                threads = threads or torch.get_num_threads()
                onnx_model = onnx_backend.onnx_model(self.model, self.precision)
            self._session = onnx_backend.session(onnx_model, threads or os.cpu_count() or 1)
        else:
            import torch
            self.model = (model.eval().fold_batchnorm().to(self.device, memory_format=torch.channels_last)
                          if prepare_model else model)

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs) -> "Recognizer":
        """Load a checkpoint file (None: the shipped default model)."""
        from crnn.checkpoint import load_checkpoint
        return cls(*load_checkpoint(path), **kwargs)

    @classmethod
    def around(cls, model, charset, device, **kwargs) -> "Recognizer":
        """A Recognizer reading with `model` as it is, e.g. a training run's live model: not copied, moved,
        converted to channels_last or switched to eval mode (the caller does that around reading); fp32,
        greedy, each batch in one forward pass (no `max_columns` split), unless `kwargs` say otherwise."""
        kwargs = {"precision": "fp32", "decoder": "greedy", "max_columns": sys.maxsize, **kwargs}
        return cls(model, charset, {}, device=device, prepare_model=False, **kwargs)

    @property
    def model_id(self) -> str:
        return f"{self.meta['name']}:{self.meta['version']}"

    def _autocast(self):
        import torch
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def predict_padded(self, batch: np.ndarray, widths: np.ndarray) -> list[tuple[str, float]]:
        """Recognise a padded batch.

        Args:
            batch: (B, 32, W) uint8, crops left-aligned and padded on the right.
            widths: (B,) each crop's width before padding.
        Returns:
            One (text, confidence) per crop.
        """
        rows = max(1, self.max_columns // max(batch.shape[2], 1))
        if len(batch) > rows:
            return [r for i in range(0, len(batch), rows)
                    for r in self.predict_padded(batch[i:i + rows], widths[i:i + rows])]
        if self.backend == "onnx":   # numpy from end to end
            logits = self._forward(self._model_input(batch))
            # each crop's frames (`CRNN.frames`: width // 4), from the logits' own length for the batch's width
            return self._decode(logits, np.asarray(widths) * logits.shape[0] // batch.shape[2])
        import torch
        with torch.inference_mode():
            logits = self._forward(self._model_input(batch))
            return self._decode(logits, self.model.frames(torch.from_numpy(np.asarray(widths))))

    def _decode(self, logits, lengths) -> list[tuple[str, float]]:
        if self.decoder == "lexicon":
            return lexicon_beam_decode(logits, lengths, self.charset, self.prior, **self.decoder_options)
        if self.decoder == "beam":
            return beam_search_decode(logits, lengths, self.charset, **self.decoder_options)
        return greedy_decode(logits, lengths, self.charset)

    def _model_input(self, batch: np.ndarray):
        """A padded uint8 batch (B, 32, W) -> the model's input (B, 1, 32, W) on its device, as it runs best
        (with backend onnx: a numpy array)."""
        if self.backend == "onnx":
            return onnx_backend.model_input(batch)
        import torch
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":   # page-locked, so the copy is one DMA that does not block this thread
            x = x.pin_memory()
        x = self.model.prepare(x.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _forward(self, x):
        """The model's input (B, 1, 32, W) -> logits (T, B, C), by the backend (onnx: numpy arrays)."""
        if self.backend == "onnx":
            return self._session.run(None, {"x": x})[0]
        with self._autocast():
            return self.model(x)

    def recognize(self, images, batch_size: int = 64) -> list[tuple[str, float]]:
        """PIL images or uint8 arrays (gray HxW or HxWxC) -> one (text, confidence) each, in order.

        Tall crops are also read turned a quarter (vertical text); see `prefer_turned`.
        """
        images = [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)) for im in images]
        return self.read([normalize_crop(im, self.spec) for im in images],
                         [turned_crop(im, self.spec) for im in images], batch_size)

    def read(self, crops: list[np.ndarray], turned: list[np.ndarray | None] | None = None,
             batch_size: int = 64) -> list[tuple[str, float]]:
        """Normalised crops -> one (text, confidence) each, in order: the one recognition path of
        inference, evaluation and benchmarks.

        Args:
            crops: (32, w) uint8 arrays (`crnn.image.normalize_crop`).
            turned: for each crop, its quarter-turned reading (`crnn.image.turned_crop`) or None; where
                given, the turned reading replaces the upright one if `prefer_turned` says so.
            batch_size: crops per forward pass, cut from the crops sorted by width (little padding).
        """
        results = self._read(crops, batch_size)
        tall = [i for i, c in enumerate(turned or ()) if c is not None]
        for i, reading in zip(tall, self._read([turned[i] for i in tall], batch_size)):
            if prefer_turned(results[i], reading):
                results[i] = reading
        return results

    def _read(self, crops: list[np.ndarray], batch_size: int) -> list[tuple[str, float]]:
        order = np.argsort([c.shape[1] for c in crops], kind="stable")  # similar widths share a batch
        results: list = [None] * len(crops)
        for start in range(0, len(crops), batch_size):
            idx = order[start:start + batch_size]
            for i, r in zip(idx, self.predict_padded(*pad_batch([crops[i] for i in idx]))):
                results[i] = r
        return results


def default_precision(device) -> str:
    """bf16 where the hardware computes in it: CUDA, and CPUs whose oneDNN has bf16 kernels (AVX-512 and
    newer); fp32 on other CPUs, where bf16 autocast is emulated, many times slower (docs/decisions.md)."""
    import torch
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):   # a build without oneDNN
        return "fp32"


def prefer_turned(upright: tuple[str, float], turned: tuple[str, float]) -> bool:
    """Whether a tall crop's turned reading is the text, given both (text, confidence) readings.

    A tall crop read upright holds one narrow glyph ("1", "(", ":"); vertical text read upright
    collapses to one or two symbols. The turned reading must find more characters, with a higher
    confidence: wrong turned readings ("$" turned reads "42", ":" reads "..") score below the upright one
    (FUNSD's tall crops: docs/decisions.md).
    """
    (text, score), (turned_text, turned_score) = upright, turned
    return len(turned_text) > max(len(text), 1) and turned_score > score
