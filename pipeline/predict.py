"""Predict (actor pool): the CRNN loaded once per actor, run on each padded batch, decoded to text + score."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from crnn.image import prefer_turned
from crnn.recognizer import Recognizer
from pipeline.batch import padded_crops
from pipeline.preprocess import PIXELS, TURNED, TURNED_WIDTH, WIDTH

OUTPUT_COLUMNS = ("text", "score", "error", "model")  # added after the input's own columns


class CRNNPredictor:
    """Callable class for `Dataset.map_batches(..., compute=ActorPoolStrategy(...))`.

    Tall crops are read a second time, turned (see `preprocess.py`); `prefer_turned` keeps one reading.

    Args:
        model_path: checkpoint file, None for the shipped default.
        device: None picks CUDA when the actor was given a GPU, else CPU.
        precision, decoder: see `Recognizer`.
        threads: torch CPU threads per actor (0 leaves torch's default).
    """

    def __init__(self, model_path: str | None = None, device: str | None = None, precision: str | None = None,
                 decoder: str = "greedy", threads: int = 0):
        self.threads = threads
        self.recognizer = Recognizer.load(model_path, device=device, precision=precision, decoder=decoder)
        self.model_id = self.recognizer.model_id

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.threads and torch.get_num_threads() != self.threads:
            # Checked here, not set in __init__: Ray Data may call the UDF on another thread than the
            # constructor's, and OpenMP's thread count belongs to the calling thread.
            torch.set_num_threads(self.threads)
        crops, widths, ok = padded_crops(batch)
        texts = np.full(len(ok), None, dtype=object)
        scores = np.zeros(len(ok), np.float32)
        if len(crops):
            results = self.recognizer.predict_padded(crops, widths)
            texts[ok] = [t for t, _ in results]
            scores[ok] = [s for _, s in results]
        crops, widths, tall = padded_crops(batch, turned=True)
        if len(crops):
            for i, reading in zip(np.flatnonzero(tall), self.recognizer.predict_padded(crops, widths)):
                if prefer_turned((texts[i], scores[i]), reading):
                    texts[i], scores[i] = reading
        out = batch.drop_columns([PIXELS, WIDTH, TURNED, TURNED_WIDTH])
        out = out.append_column("text", pa.array(texts, pa.string()))
        out = out.append_column("score", pa.array(scores, pa.float32(), mask=~ok))
        out = out.append_column("model", pa.array([self.model_id] * len(ok), pa.string()))
        carried = [c for c in out.column_names if c not in OUTPUT_COLUMNS]
        return out.select(carried + list(OUTPUT_COLUMNS))
