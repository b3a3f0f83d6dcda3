"""Which backend computes the model, in which precision, on what: the rules, in one place.

`jobs.ocr` (before any work starts), `Recognizer` (when it loads) and evaluation all ask `check`; only the wording
differs (flag names on the command line, argument names in the library), so each caller passes its own names.
"""

from __future__ import annotations

import importlib.util

BACKENDS = ("torch", "onnx")
PRECISIONS = {"torch": ("bf16", "fp16", "fp32"), "onnx": ("int8", "fp32")}
ONNX_MISSING = ("backend 'onnx' needs onnxruntime and onnx (dependencies of crnn-ocr): pip install onnxruntime "
                "onnx")


def resolve(backend: str, gpu: bool = False) -> str:
    """The backend `backend` names: `auto` is onnx on the CPU and torch on a GPU."""
    return backend if backend != "auto" else ("torch" if gpu else "onnx")


def check(backend: str, precision: str | None, gpu: bool = False, names: dict | None = None) -> str:
    """The backend that computes the model (`auto` resolved), or ValueError, in one line, for a combination that
    cannot run: onnx on a GPU, a precision the backend does not compute, onnx without its packages.
    `names` words the message: {"backend": "--backend", "precision": "--precision", "gpu": "--num-gpus > 0"}."""
    n = {"backend": "backend", "precision": "precision", "gpu": "a GPU", **(names or {})}
    resolved = resolve(backend, gpu)
    if resolved not in BACKENDS:
        raise ValueError(f"{n['backend']} must be auto or one of {', '.join(BACKENDS)}, got {backend!r}")
    if resolved == "onnx":
        if gpu:
            raise ValueError(f"{n['backend']} onnx runs on the CPU; with {n['gpu']} use {n['backend']} torch")
        if precision not in (None, *PRECISIONS["onnx"]):
            raise ValueError(f"{n['backend']} onnx runs in int8 or fp32, got {n['precision']} {precision}"
                             + (f" (bf16 and fp16 run on {n['backend']} torch)" if backend == "auto" else ""))
        if not all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx")):
            raise ValueError(ONNX_MISSING)
    elif precision == "int8":
        raise ValueError(f"{n['precision']} int8 runs on backend onnx (CPU), got backend torch"
                         + (f" ({n['gpu']})" if backend == "auto" else ""))
    elif precision not in (None, *PRECISIONS["torch"]):
        raise ValueError(f"{n['precision']} must be bf16, fp16 or fp32 on backend torch, got {precision!r}")
    return resolved
