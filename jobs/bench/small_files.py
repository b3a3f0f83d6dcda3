"""Small files on object storage: N image files read one request each vs the same crops packed into Parquet.

    python -m jobs.bench.small_files --n 2000              # starts a moto S3 server on loopback for the run
    python -m jobs.bench.small_files --n 2000 --endpoint http://127.0.0.1:9000 --bucket scratch

Measures reading only (the OCR after it is the same either way), with Ray started beforehand:
- list:            s3fs `find` over the prefix (1 request per 1000 keys)
- files, serial:   one GET per file, one after another (what a naive loop does)
- files, async:    s3fs `cat` of all paths (concurrent GETs from one process)
- files, Ray Data: the pipeline's image reader (read_binary_files), as `jobs.ocr --input <prefix>` reads
- pack:            `jobs.pack` (files -> Parquet shards), a one-time cost
- shards, serial:  pyarrow reading the shards one after another
- shards, Ray Data:the pipeline's Parquet reader, as `jobs.ocr --input <packed>` reads
A moto server on loopback answers in ~1-3 ms; S3 takes ~10-50 ms per request, so on S3 the file
numbers are worse and the gap wider. Prints a table and (--json) writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def _crops(n: int) -> list[bytes]:
    """n small real PNG crops (a word each, like FUNSD word crops: ~0.5-2 KB)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    words = ["Date:", "TOTAL", "invoice", "R&D", "(212) 555-0199", "#12-B", "$1,234.56", "Name", "Signature"]
    out = []
    for i in range(n):
        text = f"{words[i % len(words)]}{i}"
        font = ImageFont.load_default(size=12 + i % 8)
        left, top, right, bottom = font.getbbox(text)
        img = Image.new("L", (right - left + 4, bottom - top + 4), 255)
        ImageDraw.Draw(img).text((2 - left, 2 - top), text, fill=20, font=font)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="number of image files (default 2000)")
    p.add_argument("--endpoint", help="S3 endpoint (default: start a moto server on loopback)")
    p.add_argument("--bucket", default="bench-small-files")
    p.add_argument("--rows-per-file", type=int, default=50_000, help="crops per packed shard")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    moto = None
    if not args.endpoint:
        moto, args.endpoint = _start_moto()
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ["AWS_ENDPOINT_URL"] = args.endpoint           # before Ray starts: its workers inherit it
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        import pyarrow.parquet as pq
        import ray
        import s3fs

        from jobs.pack import pack
        from pipeline.read import find_source, read_crops
        from pipeline.storage import Storage

        fs = s3fs.S3FileSystem()
        if not fs.exists(args.bucket):
            fs.mkdir(args.bucket)
        prefix, packed = f"{args.bucket}/files", f"{args.bucket}/packed"
        for old in (prefix, packed):
            if fs.exists(old):
                fs.rm(old, recursive=True)
        crops = _crops(args.n)
        fs.pipe({f"{prefix}/{i // 1000:03d}/crop-{i:06d}.png": b for i, b in enumerate(crops)})
        size = sum(map(len, crops))
        print(f"{args.n} PNG files, {size / args.n / 1024:.2f} KiB each on average, endpoint {args.endpoint}")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        results = {}

        def timed(name, fn):
            fs.invalidate_cache()
            t = time.perf_counter()
            n = fn()
            wall = time.perf_counter() - t
            assert n == args.n, (name, n)
            results[name] = {"s": round(wall, 3), "crops_per_s": round(n / wall, 1)}
            print(f"{name:18s} {wall:8.2f} s {n / wall:10.1f} crops/s", flush=True)

        def ray_count(uri: str) -> int:
            store = Storage(uri)
            ds = read_crops(store, find_source(store), "image")
            return sum(b.num_rows for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"))

        timed("list", lambda: len(fs.find(prefix)))
        paths = sorted(fs.find(prefix))
        timed("files, serial", lambda: sum(1 for f in paths if fs.cat_file(f)))
        timed("files, async", lambda: len(fs.cat(paths)))
        ray_count(f"s3://{prefix}")  # warm up Ray's workers (not timed)
        timed("files, Ray Data", lambda: ray_count(f"s3://{prefix}"))
        timed("pack", lambda: pack(f"s3://{prefix}", f"s3://{packed}", args.rows_per_file, overwrite=True)["files"])
        shards = sorted(f for f in fs.find(packed) if f.endswith(".parquet"))
        timed("shards, serial", lambda: sum(pq.read_table(s, filesystem=fs).num_rows for s in shards))
        timed("shards, Ray Data", lambda: ray_count(f"s3://{packed}"))
        results["setup"] = {"n": args.n, "bytes": size, "shards": len(shards), "endpoint": args.endpoint,
                            "moto": moto is not None, "cpus": os.cpu_count()}
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        ray.shutdown()
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
