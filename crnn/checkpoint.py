"""One file per model: fp16 weights plus the metadata needed to rebuild it.

Loaded with `torch.load(weights_only=True)`: only tensors and plain Python
values are ever unpickled.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from crnn.charset import Charset
from crnn.model import CRNN, CRNNConfig

FORMAT = "crnn-ocr/1"
DEFAULT_MODEL = Path(__file__).parent / "weights" / "crnn_default.pt"


class CheckpointError(ValueError):
    """The file is not a readable CRNN checkpoint."""


def save_checkpoint(path: str | Path, model: CRNN, charset: Charset, *, name: str, version: str,
                    training: dict | None = None, half: bool = True) -> None:
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    cfg = dataclasses.asdict(model.config)
    cfg["channels"] = list(cfg["channels"])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    torch.save({"format": FORMAT, "name": name, "version": version, "config": cfg,
                "charset": charset.symbols, "height": model.config.height,
                "training": training or {}, "state_dict": state}, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind


def load_checkpoint(path: str | Path | None = None) -> tuple[CRNN, Charset, dict]:
    """Returns (model in eval mode, charset, metadata). `path=None` loads the shipped default."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        raise CheckpointError(f"model file {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"model file {str(path)!r} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"model file {str(path)!r} is not a {FORMAT} checkpoint (found {found!r})")
    try:
        cfg = dict(ckpt["config"])
        cfg["channels"] = tuple(cfg["channels"])
        model = CRNN(CRNNConfig(**cfg))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
        meta = {k: ckpt[k] for k in ("name", "version", "height", "training")}
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"model file {str(path)!r} is an incomplete checkpoint ({type(e).__name__}: {e})"[:300]) from None
    return model.eval(), Charset(ckpt["charset"]), meta
