"""Shared fixtures: a real local Ray, a small (untrained) model checkpoint, real PNG/JPEG bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont


def crop_bytes(text: str = "Invoice 42", fmt: str = "PNG", size: int = 14, mode: str = "L") -> bytes:
    """A real encoded image of `text`, drawn with Pillow's scalable default font."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 255)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, fill=20, font=font)
    buf = io.BytesIO()
    img.convert(mode).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="session")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> str:
    """An untrained small CRNN checkpoint: enough to exercise the pipeline's plumbing."""
    import torch

    from crnn import CRNN, Charset, CRNNConfig, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "small.pt"
    save_checkpoint(path, CRNN(CRNNConfig.small()), Charset(), name="test-small", version="0")
    return str(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
