"""Speed (and accuracy) on the same crops: the model alone, the whole pipeline, and Tesseract.

    python -m jobs.benchmark --input ../shared/data/funsd_train_words.parquet --n 3000

- model alone: preprocessed crops, width-sorted batches, forward + the default decoder (`Recognizer.read`), in this process;
- pipeline: `python -m jobs.ocr` as a user runs it (Parquet in -> Parquet out, Ray start included);
- tesseract: 5.x `--psm 7`, one process per core over a list of PNG files, OMP_THREAD_LIMIT=1.
Prints a table (crops/s, exact accuracy) and writes it as JSON with --json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from crnn.charset import normalize
from crnn.image import normalize_crop
from crnn.training.metrics import text_metrics
from crnn.recognizer import Recognizer


def bench_model(images: list[bytes], model: str | None, batch_size: int, threads: int) -> tuple[float, list[str]]:
    import torch

    torch.set_num_threads(threads)
    rec = Recognizer.load(model)
    crops = [normalize_crop(Image.open(io.BytesIO(b))) for b in images]
    rec.read(crops[:batch_size], batch_size=batch_size)  # warm-up
    t = time.perf_counter()
    preds = [text for text, _ in rec.read(crops, batch_size=batch_size)]
    return len(crops) / (time.perf_counter() - t), preds


def bench_pipeline(parquet: Path, out: Path, model: str | None, extra: list[str]) -> tuple[float, list[str], dict]:
    cmd = [sys.executable, "-m", "jobs.ocr", "--input", str(parquet), "--output", str(out)] + extra
    if model:
        cmd += ["--model", model]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    df = pd.read_parquet(out).set_index("id")
    summary = json.loads((out / "_summary.json").read_text())
    return len(df) / wall, df, summary


def bench_tesseract(images: list[bytes], workdir: Path, procs: int) -> tuple[float, list[str]]:
    files = []
    for i, b in enumerate(images):
        f = workdir / f"{i:06d}.png"
        Image.open(io.BytesIO(b)).save(f)
        files.append(f)
    chunks = [files[k::procs] for k in range(procs)]
    lists = []
    for k, chunk in enumerate(chunks):
        lst = workdir / f"list{k}.txt"
        lst.write_text("\n".join(map(str, chunk)) + "\n")
        lists.append(lst)
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    t = time.perf_counter()
    runs = [subprocess.Popen(["tesseract", str(lst), "stdout", "--psm", "7"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=env) for lst in lists]
    outs = [r.communicate()[0].decode("utf-8", "replace") for r in runs]
    rate = len(images) / (time.perf_counter() - t)
    preds = [""] * len(images)
    for chunk, text in zip(chunks, outs):
        # One page per image, pages separated by form feeds.
        pages = [p.strip() for p in text.split("\f")][: len(chunk)]
        for f, p in zip(chunk, pages):
            preds[int(f.stem)] = " ".join(p.split())
    return rate, preds


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default="../shared/data/funsd_train_words.parquet")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--model")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeat", type=int, default=1, help="rounds of all systems, interleaved; medians reported")
    p.add_argument("--skip", nargs="*", default=[], choices=["model", "pipeline", "tesseract"])
    p.add_argument("--pipeline-args", default="", help="extra jobs.ocr flags, e.g. '--threads 1'")
    p.add_argument("--json")
    args = p.parse_args(argv)

    cores = os.cpu_count() or 1
    table = pq.read_table(args.input).slice(0, args.n)
    images, labels = table["image"].to_pylist(), [normalize(t) for t in table["text"].to_pylist()]
    ids = table["id"].to_pylist()
    names = {"model": f"CRNN model alone ({cores} threads, batch {args.batch_size})",
             "pipeline": "pipeline: jobs.ocr Parquet->Parquet, Ray start included",
             "summary": "pipeline: its _summary.json (Ray start in, imports/exit out)",
             "tesseract": f"tesseract --psm 7 ({cores} processes, OMP_THREAD_LIMIT=1)"}
    rates: dict[str, list[float]] = {}
    quality: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sample = tmp / "input.parquet"
        pq.write_table(table, sample)
        # Rounds interleave the systems so that a slow spell of a shared machine hits all of them alike.
        for _ in range(args.repeat):
            if "model" not in args.skip:
                rate, preds = bench_model(images, args.model, args.batch_size, cores)
                rates.setdefault("model", []).append(rate)
                quality["model"] = text_metrics(preds, labels)
            if "pipeline" not in args.skip:
                shutil.rmtree(tmp / "out", ignore_errors=True)
                rate, df, summary = bench_pipeline(sample, tmp / "out", args.model, args.pipeline_args.split())
                rates.setdefault("pipeline", []).append(rate)
                rates.setdefault("summary", []).append(summary["crops_per_s"])
                quality["pipeline"] = quality["summary"] = text_metrics(df.loc[ids, "text"].fillna("").tolist(), labels)
            if "tesseract" not in args.skip and shutil.which("tesseract"):
                rate, preds = bench_tesseract(images, tmp, cores)
                rates.setdefault("tesseract", []).append(rate)
                quality["tesseract"] = text_metrics(preds, labels)
    rows = [{"system": names[k], "crops_per_s": float(np.median(v)), "rounds": [round(r, 1) for r in v], **quality[k]}
            for k, v in rates.items()]
    print(f"\n{len(images)} crops from {args.input}, {cores} cores, {args.repeat} round(s), median crops/s")
    print(f"{'system':62s} {'crops/s':>9s} {'exact':>7s} {'CER':>7s}   rounds")
    for r in rows:
        print(f"{r['system']:62s} {r['crops_per_s']:9.1f} {r['exact']:7.3f} {r['cer']:7.3f}   {r['rounds']}")
    if "pipeline" in rates and "tesseract" in rates:
        ratios = [a / b for a, b in zip(rates["pipeline"], rates["tesseract"])]
        print(f"pipeline / tesseract, Ray start included, per round: {[round(r, 2) for r in ratios]}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
