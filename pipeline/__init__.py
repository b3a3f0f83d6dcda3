"""Ray Data OCR pipeline. The data path, one file each: read -> preprocess -> batch -> predict -> write (run.py ties them)."""

from pipeline.errors import UserError
from pipeline.run import OcrOptions, run_ocr

__all__ = ["OcrOptions", "UserError", "run_ocr"]
