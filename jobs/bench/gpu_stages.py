"""Where the model's time goes, stage by stage, by batch size and precision (docs/gpu.md's table).

    python -m jobs.bench.gpu_stages --crops 50000                 # on CUDA when there is one
    python -m jobs.bench.gpu_stages --crops 2000 --device cpu --batch-sizes 128

Crops (FUNSD words, repeated to --crops) are normalised first, sorted by width and cut into batches. For
each precision and batch size every stage is timed over all batches, after one forward pass of every batch
(so each width's kernels are loaded): pad (`pad_batch`, CPU), copy (pinned host memory to the device),
forward (`CRNN` under the precision's autocast; copy includes
the scaling to [-1, 1] on the device, as `Recognizer` does it), greedy and lexicon decoding of those logits, and then
`Recognizer.read` with the greedy decoder, all stages in turn as inference runs them. Prints crops/s.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pyarrow.parquet as pq
import torch

from crnn.decoding import greedy_decode, lexicon_beam_decode
from crnn.image import pad_batch
from crnn.lexicon import load_prior
from crnn.recognizer import Recognizer
from jobs.bench.benchmark import repeated_crops
from crnn.training import splits


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stage_rates(rec: Recognizer, crops: list[np.ndarray], batch_size: int, prior) -> dict:
    """crops/s of each stage over `crops` in width-sorted batches of `batch_size`."""
    n, device = len(crops), rec.device
    order = np.argsort([c.shape[1] for c in crops], kind="stable")
    cut = [[crops[i] for i in order[s:s + batch_size]] for s in range(0, n, batch_size)]
    t = time.perf_counter()
    batches = [pad_batch(c) for c in cut]
    pad_s = time.perf_counter() - t

    with torch.inference_mode():
        for b, _ in batches:                      # every width once: its kernels loaded before timing
            rec._forward(rec._model_input(b))
        _sync(device)
        t = time.perf_counter()
        xs = [rec._model_input(b) for b, _ in batches]
        _sync(device)
        copy_s = time.perf_counter() - t
        t = time.perf_counter()
        logits = [rec._forward(x) for x in xs]
        _sync(device)
        forward_s = time.perf_counter() - t
        lengths = [rec.model.frames(torch.from_numpy(w)) for _, w in batches]
        t = time.perf_counter()
        for lg, ln in zip(logits, lengths):
            greedy_decode(lg, ln, rec.charset)
        greedy_s = time.perf_counter() - t
        t = time.perf_counter()
        for lg, ln in zip(logits, lengths):
            lexicon_beam_decode(lg, ln, rec.charset, prior)
        lexicon_s = time.perf_counter() - t
    del xs, logits
    t = time.perf_counter()
    rec.read(crops, batch_size=batch_size)
    _sync(device)
    read_s = time.perf_counter() - t
    rates = {"pad": n / pad_s, "copy": n / copy_s, "forward": n / forward_s, "greedy_decode": n / greedy_s,
             "lexicon_decode": n / lexicon_s, "read_greedy": n / read_s}
    return {k: round(v, 1) for k, v in rates.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=f"{splits.DATA_DIR}/funsd_train_words.parquet",
                   help="Parquet with an image column of encoded crops (default %(default)s)")
    p.add_argument("--crops", type=int, default=50_000, help="crops, the input repeated (default %(default)s)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    p.add_argument("--precisions", nargs="+", choices=["bf16", "fp16", "fp32"], default=["bf16", "fp32"])
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    images = pq.read_table(args.input, columns=["image"])["image"].to_pylist()
    crops = repeated_crops(images, args.crops)
    prior = load_prior()
    print(f"{args.crops} crops ({min(len(images), args.crops)} distinct), {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.startswith("cuda") else
             f", {torch.get_num_threads()} threads") + "; crops/s per stage", flush=True)
    results = {}
    for precision in args.precisions:
        rec = Recognizer.load(None, device=device, precision=precision, decoder="greedy")
        for batch_size in args.batch_sizes:
            key = f"{precision}/batch {batch_size}"
            try:
                results[key] = stage_rates(rec, crops, batch_size, prior)
            except torch.cuda.OutOfMemoryError as e:
                results[key] = {"error": " ".join(str(e).split())[:200]}
                torch.cuda.empty_cache()
            print(key, results[key], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "crops": args.crops, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
