"""The CRNN's forward in ONNX Runtime on the CPU: fp32 (the same function as torch's), or int8.

int8: the convolutions and their ReLUs statically quantised (weights int8 per output channel, activations uint8
with ranges calibrated by MinMax on `CALIBRATION_CROPS`; each convolution and its ReLU run as one integer op),
the BiLSTM and the linear head dynamically (int8 weights, activations quantised per call), by
`onnxruntime.quantization`. Both are built from the checkpoint at load and cached in the user cache dir under a
hash of everything they depend on, so every machine with the same versions builds the same file. int8 is the
fastest way to read on a CPU, and reads as torch does within noise on the validation and test splits
(docs/decisions.md, MODEL.md "Speed").
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from crnn.backends import ONNX_MISSING
from crnn.image import pad_batch

ONNX_OPSET = 17
# 256 synthetic crops (forms words, lines and receipt lines, 16-1,000 px wide) rendered by
# `python -m crnn.training.synth --calibration 256 --out crnn/weights/calibration_crops.npz`, kept fixed so
# that the int8 model does not depend on the fonts of the machine that builds it.
CALIBRATION_CROPS = Path(__file__).parent / "weights" / "calibration_crops.npz"
# Quantised statically, QDQ: with Relu in the set the quantiser drops the QuantizeLinear/DequantizeLinear pair
# between each convolution and its ReLU, so ORT fuses them into one integer convolution whose uint8 output feeds
# the next layer directly. With Conv alone each block dequantised its whole output to float, ran ReLU and
# quantised again (docs/decisions.md).
STATIC_OPS = ("Conv", "Relu")


# uint8 pixel -> the model's input, the values `CRNN.prepare` computes (x / 127.5 - 1 in float32), as a table
INPUT_SCALE = np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def onnx_model(model, precision: str = "int8") -> bytes:
    """`model` (a `CRNN`) as an ONNX model, input "x" (B, 1, 32, W) float32 in [-1, 1], output "logits" (T, B, C),
    batch and width dynamic: exported, and for int8 quantised (`quantize_int8`).

    Cached in $XDG_CACHE_HOME or ~/.cache, under crnn-ocr/onnx/, by a hash of the weights, config, precision,
    opset, calibration crops and the torch and ONNX Runtime versions; where the cache cannot be written it is
    built anew each time.
    """
    import torch
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(ONNX_MISSING) from None
    h = hashlib.sha256(f"{ONNX_OPSET}|{torch.__version__}|{ort.__version__}|{precision}|"
                       f"{STATIC_OPS}|{getattr(model, 'config', '')}".encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    if precision == "int8":
        h.update(CALIBRATION_CROPS.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crnn-ocr" / "onnx"
    path = cache / f"{h.hexdigest()[:32]}.onnx"
    try:
        return path.read_bytes()
    except OSError:
        pass
    data = export_onnx(model)
    if precision == "int8":
        data = quantize_int8(data, calibration_crops())
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)            # atomic: a concurrent reader reads a whole file or none
    except OSError:
        pass
    return data


def session(model: bytes, threads: int):
    """An ONNX Runtime CPU session of an ONNX model's bytes (`onnx_model`), `threads` threads; no PyTorch."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(ONNX_MISSING) from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # No spin-waiting between runs: the decoder and the pipeline's preprocessing need those cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def model_input(batch: np.ndarray) -> np.ndarray:
    """A padded uint8 batch (B, 32, W) -> the session's input (B, 1, 32, W) float32, as `CRNN.prepare` makes it."""
    return np.take(INPUT_SCALE, batch)[:, None]       # (np.take: faster than indexing the table)


def export_onnx(model) -> bytes:
    """The fp32 model as ONNX bytes (TorchScript exporter), batch and width dynamic."""
    import torch
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ImportError(ONNX_MISSING) from None
    buf = io.BytesIO()
    x = torch.zeros(2, 1, 32, 64, device=next(model.parameters()).device)
    with warnings.catch_warnings():   # the TorchScript exporter's deprecation and LSTM batch-size notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, opset_version=ONNX_OPSET, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch", 3: "width"},
                                                                 "logits": {0: "frames", 1: "batch"}})
    return buf.getvalue()


def calibration_crops(path: Path = CALIBRATION_CROPS) -> list[np.ndarray]:
    """The fixed calibration crops, (32, w) uint8 each, as `crnn.image.normalize_crop` makes them."""
    with np.load(path) as f:
        pixels, widths = f["pixels"], f["widths"]
    return np.split(pixels, np.cumsum(widths)[:-1], axis=1)


def save_calibration_crops(path: str | Path, crops: list[np.ndarray]) -> None:
    """Store normalised crops as one (32, sum of widths) array and their widths (compressed npz)."""
    np.savez_compressed(path, pixels=np.concatenate(crops, axis=1),
                        widths=np.array([c.shape[1] for c in crops], np.int32))


def quantize_int8(fp32: bytes, crops: list[np.ndarray], batch_size: int = 64) -> bytes:
    """An fp32 ONNX CRNN -> int8: static QDQ convolutions and ReLUs (`STATIC_OPS`) calibrated on `crops`
    (MinMax), then dynamic LSTM, MatMul and Gemm. ORT fuses each convolution, its ReLU and the
    QuantizeLinear-DequantizeLinear pairs around them into one integer convolution at session start."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    order = np.argsort([c.shape[1] for c in crops], kind="stable")   # little padding, as at inference
    feeds = []
    for start in range(0, len(crops), batch_size):
        batch, _ = pad_batch([crops[i] for i in order[start:start + batch_size]])
        feeds.append({"x": model_input(batch)})   # the model's own input

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    logging.disable(logging.WARNING)   # the quantiser's "please run pre-processing": shape inference adds nothing
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, static, dynamic = (os.path.join(tmp, f"{n}.onnx") for n in ("fp32", "static", "int8"))
            Path(src).write_bytes(fp32)
            quantize_static(src, static, Feeds(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(STATIC_OPS), per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
            quantize_dynamic(static, dynamic, op_types_to_quantize=["LSTM", "MatMul", "Gemm"],
                             weight_type=QuantType.QInt8)
            return Path(dynamic).read_bytes()
    finally:
        logging.disable(logging.NOTSET)
