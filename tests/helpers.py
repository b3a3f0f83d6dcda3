"""Builders the tests share (fixtures are in conftest.py): real PNG/JPEG crops, crop tables and Parquet files of
them, a free loopback port, the fake S3 keys, a process session killed by pid."""

from __future__ import annotations

import io
import os

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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The S3 tests' keys: fake, and the endpoint loopback (conftest.py sets the environment)
FAKE_KEY_ID, FAKE_SECRET = "AKIAFAKETESTKEY00042", "fake-secret-never-printed-7f3c9e"


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
