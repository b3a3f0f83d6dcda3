"""Predict (actor pool): the CRNN loaded once per actor, run on each padded batch, decoded to text + score."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os

import numpy as np
import pyarrow as pa

from crnn.charset import Charset
from crnn.recognizer import Recognizer
from pipeline.batch import batch_crops
from pipeline.schema import ERROR, INTERNAL_COLUMNS, MODEL, OUTPUT_COLUMNS, PIXELS, SCORE, TEXT, WIDTH

CRASHED = "crashed the model process"                  # the error of a crop that kills the actor every time


class CRNNPredictor:
    """Callable class for `Dataset.map_batches(..., compute=ActorPoolStrategy(...))`.

    Arrow in -> `Recognizer.read` (tall crops also read turned, see `preprocess.py`) -> Arrow out.
    A batch that killed the actor is retried by Ray on the restarted actor; `CrashJournal` tells the retry
    which rows were being read at the death, so it reads them in eighths until the crop that still kills
    it is alone, and gives that crop an error row instead of crashing again.

    Args:
        model_path: checkpoint file, None for the shipped default.
        device: None picks CUDA when the actor was given a GPU, else CPU.
        precision, decoder, backend: see `Recognizer` ("torch" or "onnx": what computes the logits).
        threads: torch CPU threads per actor (0 leaves torch's default); with backend "onnx" ONNX Runtime's.
        journal_dir: node-local folder for the crash journal (one per run); None: no isolation.
        onnx: with backend "onnx", the model built by the driver, {"model": ONNX bytes (`onnx_backend.onnx_model`),
            "charset": the charset's symbols, "meta": the checkpoint's metadata}: the actor then reads
            without PyTorch (neither imported nor the ONNX model built again, by every actor); None: built
            here from `model_path`.
    """

    def __init__(self, model_path: str | None = None, device: str | None = None, precision: str | None = None,
                 decoder: str = "lexicon", threads: int = 0, journal_dir: str | None = None, backend: str = "torch",
                 onnx: dict | None = None):
        self.threads = threads if backend == "torch" else 0
        self.release_memory = FreedMemoryRelease()
        if onnx is not None and backend == "onnx":
            self.recognizer = Recognizer(None, Charset(onnx["charset"]), onnx["meta"], device=device,
                                         precision=precision, decoder=decoder, backend=backend,
                                         threads=threads or None, onnx_model=onnx["model"])
        else:
            self.recognizer = Recognizer.load(model_path, device=device, precision=precision, decoder=decoder,
                                              backend=backend, threads=threads or None)
        self.model_id = self.recognizer.model_id
        self.journal = CrashJournal(journal_dir) if journal_dir else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.threads:   # backend torch
            import torch
            if torch.get_num_threads() != self.threads:
                # Checked here, not set in __init__: Ray Data may call the UDF on another thread than the
                # constructor's, and OpenMP's thread count belongs to the calling thread.
                torch.set_num_threads(self.threads)
        texts = np.full(batch.num_rows, None, dtype=object)
        scores = np.zeros(batch.num_rows, np.float32)
        ok = batch.column(WIDTH).to_numpy() > 0
        errors = batch.column(ERROR).to_pylist()
        if self.journal is None:
            self._read(batch, 0, batch.num_rows, texts, scores)
        else:
            key = self.journal.key(batch)
            crashed = self.journal.open(key)
            for lo, hi in _ranges_to_read(0, batch.num_rows, crashed):
                if hi - lo == 1 and (lo, hi) in crashed:
                    errors[lo], ok[lo] = CRASHED, False
                    continue
                self.journal.reading(key, lo, hi, crashed)
                self._read(batch, lo, hi, texts, scores)
            self.journal.close(key)
        self.release_memory.tick()
        out = batch.drop_columns([*INTERNAL_COLUMNS, ERROR])
        out = out.append_column(TEXT, pa.array(np.where(ok, texts, None), pa.string()))
        out = out.append_column(SCORE, pa.array(scores, pa.float32(), mask=~ok))
        out = out.append_column(ERROR, pa.array(errors, pa.string()))
        out = out.append_column(MODEL, pa.array([self.model_id] * batch.num_rows, pa.string()))
        carried = [c for c in out.column_names if c not in OUTPUT_COLUMNS]
        return out.select(carried + list(OUTPUT_COLUMNS))

    def _read(self, batch: pa.Table, lo: int, hi: int, texts: np.ndarray, scores: np.ndarray) -> None:
        """Read rows lo:hi of the batch into texts/scores (upright, then the turned reading of tall crops)."""
        part = batch.slice(lo, hi - lo)
        crops, ok = batch_crops(part)
        if not crops:
            return
        turns, tall = batch_crops(part, turned=True)
        turned = dict(zip(np.flatnonzero(tall), turns))          # tall rows are decodable rows
        # The rows come sorted by width (`sort_by_width`): read as one model batch, as Ray Data cut it.
        results = self.recognizer.read(crops, [turned.get(i) for i in np.flatnonzero(ok)], batch_size=len(crops))
        texts[lo:hi][ok] = [t for t, _ in results]
        scores[lo:hi][ok] = [s for _, s in results]


class FreedMemoryRelease:
    """Every `every` batches, glibc's `malloc_trim(0)` gives the pages of freed memory back to the system.

    Batches of ever-changing widths allocate buffers of ever-changing sizes, and glibc keeps freed ones in
    heaps that fragment and never shrink: an actor grows several-fold over a few hundred batches of mixed widths.
    Trimming every few dozen batches bounds that at the price of one heap walk and refaulted pages per
    trim; the earlier fix, a 1 MiB mmap threshold (every large buffer fresh pages), cost far more of the
    model's speed (docs/decisions.md). A no-op where libc is not glibc.
    """

    def __init__(self, every: int = 32):
        self.every, self.calls = every, 0
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):       # not glibc (macOS, musl): their malloc, their policy
            self._trim = None

    def tick(self) -> None:
        self.calls += 1
        if self._trim is not None and self.calls % self.every == 0:
            self._trim(0)


def _ranges_to_read(lo: int, hi: int, crashed: set, parts: int = 8) -> list[tuple[int, int]]:
    """lo:hi as ranges to read one at a time: a range that was being read at a death is cut in `parts`
    (eighths: a crop that kills the actor is alone after log8(batch) + 1 deaths, 4 for 128 crops)."""
    if (lo, hi) not in crashed or hi - lo == 1:
        return [(lo, hi)]
    cuts = sorted({lo + (hi - lo) * k // parts for k in range(parts)} | {hi})
    return [r for a, b in zip(cuts, cuts[1:]) for r in _ranges_to_read(a, b, crashed, parts)]


class CrashJournal:
    """Which rows of a batch the actor was reading, on the node's disk, so that its restart knows.

    Each batch (named by a hash of its crops) has a small file while it is being read: the range being read
    now and the ranges that were being read when an earlier attempt died. Writing it costs ~0.1 ms a batch.
    """

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    @staticmethod
    def key(batch: pa.Table) -> str:
        h = hashlib.blake2b(digest_size=12)
        for chunk in batch.column(PIXELS).chunks:
            # Only the bytes of this chunk's rows: Ray Data's batches are slices of a larger block, whose
            # buffers a slice shares whole (hashing those would read the whole block for every batch)
            _, offsets, data = chunk.buffers()
            if data is not None and len(chunk):
                kind = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
                ends = np.frombuffer(offsets, kind)[chunk.offset:chunk.offset + len(chunk) + 1]
                h.update(memoryview(data)[ends[0]:ends[-1]])
        h.update(batch.column(WIDTH).to_numpy().tobytes())
        return h.hexdigest()

    def _path(self, key: str) -> str:
        return os.path.join(self.folder, f"{key}.json")

    def open(self, key: str) -> set[tuple[int, int]]:
        """Ranges that were being read when an attempt at this batch died (empty for a first attempt)."""
        try:
            with open(self._path(key)) as f:
                state = json.load(f)
        except (OSError, ValueError):
            return set()
        crashed = {tuple(r) for r in state["crashed"]}
        if state["reading"]:
            crashed.add(tuple(state["reading"]))
        return crashed

    def reading(self, key: str, lo: int, hi: int, crashed: set) -> None:
        tmp = self._path(key) + f".{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"reading": [lo, hi], "crashed": sorted(crashed)}, f)
        os.replace(tmp, self._path(key))

    def close(self, key: str) -> None:
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass
