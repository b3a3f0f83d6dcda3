"""Shared fixtures: a real local Ray, a small (untrained) model checkpoint, real PNG/JPEG bytes."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def crop_bytes(text: str = "Invoice 42", fmt: str = "PNG", size: int = 14, mode: str = "L",
               vertical: bool = False) -> bytes:
    """A real encoded image of `text`, drawn with Pillow's scalable default font (`vertical`: running
    top to bottom, like the page-margin numbers of scanned forms)."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 255)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, fill=20, font=font)
    return encode((img.transpose(Image.Transpose.ROTATE_270) if vertical else img).convert(mode), fmt)


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


# --- S3 on loopback: a moto server, reached through the standard AWS environment ------------------
# Set for the whole session, at import: Ray workers inherit the environment of the process that starts
# Ray (the session-scoped `ray_local`, maybe before any S3 test runs), and they read S3 too. The keys
# are fake and the endpoint is loopback, so no test can reach real AWS or use a developer's profile.
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE_KEY_ID, FAKE_SECRET = "AKIAFAKETESTKEY00042", "fake-secret-never-printed-7f3c9e"
# (setdefault: this module is imported twice, as `conftest` by pytest and as `tests.conftest` by test modules)
MOTO_ENDPOINT = os.environ.setdefault("OCR_TESTS_MOTO_ENDPOINT", f"http://127.0.0.1:{free_port()}")
os.environ.update(AWS_ACCESS_KEY_ID=FAKE_KEY_ID, AWS_SECRET_ACCESS_KEY=FAKE_SECRET, AWS_ENDPOINT_URL=MOTO_ENDPOINT,
                  AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def moto_s3() -> str:
    """A moto S3 server on loopback (`moto_server -H 127.0.0.1 -p <port>`); yields its endpoint URL."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    # The server of this interpreter's environment first: another moto on PATH (a pyenv shim, say) may
    # check signatures differently from the botocore installed here (seen: SignatureDoesNotMatch for s3fs).
    own = Path(sys.executable).with_name("moto_server")
    exe = str(own) if own.exists() else shutil.which("moto_server")
    port = MOTO_ENDPOINT.rsplit(":", 1)[1]
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(MOTO_ENDPOINT, timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"moto_server exited ({proc.returncode})")
                time.sleep(0.1)
        else:
            raise RuntimeError("moto_server did not answer in 20 s")
        yield MOTO_ENDPOINT
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


WORDS = ["Date:", "TOTAL", "R&D", "(212) 555-0199", "a", "#12-B", "invoice", "$1,234.56"]


def crop_table(n: int = 40, bad: dict | None = None):
    """The tests' crop table: n rows (id, image, page, label) of real PNG/JPEG crops of `WORDS` in several
    sizes; rows in `bad` get those bytes (or None) instead of their crop."""
    import pyarrow as pa

    bad = bad or {}
    rows = [{"id": f"crop-{i:04d}", "page": i // 10, "label": WORDS[i % len(WORDS)],
             "image": bad[i] if i in bad else crop_bytes(WORDS[i % len(WORDS)], "JPEG" if i % 3 == 0 else "PNG",
                                                         size=10 + i % 12)} for i in range(n)]
    return pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("image", pa.binary()),
                                                        ("page", pa.int32()), ("label", pa.string())]))


def write_crops_parquet(fs, prefix: str, n: int = 40, bad: dict | None = None, files: int = 2):
    """`crop_table(n, bad)` as `files` Parquet files under `prefix` of fsspec filesystem `fs`; returns the table."""
    import pyarrow.parquet as pq

    table = crop_table(n, bad)
    step = -(-n // files)
    for k in range(files):
        with fs.open(f"{prefix}/part-{k}.parquet", "wb") as f:
            pq.write_table(table.slice(k * step, step), f)
    return table


def kill_session(sid: int, timeout: float = 15.0) -> None:
    """SIGKILL every process of session `sid` (one this test started with start_new_session=True), by pid."""
    import signal
    import subprocess
    import time

    deadline = time.time() + timeout
    while True:
        ps = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True).stdout.split("\n")
        alive = [int(p) for p, s, st in (line.split() for line in ps if line.strip()) if int(s) == sid and "Z" not in st]
        if not alive or time.time() > deadline:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
