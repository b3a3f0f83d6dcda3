"""Ray Data OCR pipeline. The data path, one file each: read -> preprocess -> batch -> predict -> write (run.py ties them)."""

from pipeline.errors import UserError

__all__ = ["OcrOptions", "UserError", "run_ocr"]


def __getattr__(name: str):
    # Lazy, so that a Ray worker running one stage (preprocess, say) imports that stage, not run.py's
    # Ray Data, PyTorch and model: seconds of CPU per worker process at every job's start.
    if name in ("OcrOptions", "run_ocr"):
        from pipeline import run
        return getattr(run, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
