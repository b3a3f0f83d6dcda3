"""Speed and accuracy on the same crops: the model alone, the whole job as a user runs it, and Tesseract.

    python -m jobs.bench.benchmark                              # sizes 8650 and 100000, 1 round, CPU
    python -m jobs.bench.benchmark --sizes 200 400 --rounds 3   # a quick check
    python -m jobs.bench.benchmark --num-gpus 1                 # model on CUDA, jobs.ocr --num-gpus 1, GPU use
    python -m jobs.bench.benchmark --sizes 8650 100000 1000000 --rounds 2   # up to a million crops

- model: normalised crops, width-sorted batches, forward + the default decoder (`Recognizer.read`, with the backend
  jobs.ocr's actors use by default: onnx int8 on CPU, torch on GPU), in this process, on the first
  --model-size crops (default: the smallest size); decoding and normalising the crops are not timed;
- pipeline: `python -m jobs.ocr --input DIR --output DIR` as a subprocess, timed from the command's start
  to its exit (interpreter start, imports, Ray start, reading, writing and commit included), at each size;
  "first out" is the time from the command's start until the first Parquet part appears in the output's
  `_staging/` folder (polled every 20 ms); "peak RSS" and "peak PSS" the largest sums over the job's processes
  (its session: driver, Ray's services, workers, actors), sampled every second from /proc;
- ceiling: the same command with a model that costs next to nothing, a 2,092-parameter CRNN of random weights
  that the benchmark builds (`tiny_model`; never shipped), `--decoder greedy`: what the pipeline's own
  plumbing allows, the ceiling any model's speed meets;
- tesseract: 5.x `--psm 7`, one process per core, each over a list of PNG files, OMP_THREAD_LIMIT=1,
  timed from the processes' start to their exit, at each size up to --tesseract-max crops (its rate does not
  depend on the job's size: above that size it reads the first --tesseract-max crops, and the row says so).
  A round whose Tesseract rate moves more than 15% between sizes was disturbed: it is flagged, rerun it.

Crops come from --input (default: the 21,888 FUNSD word crops). A size larger than the file repeats its rows
in order, with fresh ids (`<id>~<k>` for the k-th repeat) and the same labels. Each size's input is written
once per run as Parquet (--rows-per-file rows per file, row groups of 10,000) in a temporary folder, a row
group at a time from the encoded source rows (a million crops are never in memory at once); the PNG files for
Tesseract are written once (one per source row; a size's lists name them, repeats included) and reused by
every size and round. Rounds are interleaved (each round runs every system at every size in turn, so a slow
spell of a shared machine hits all alike); crops/s are medians over rounds, and pipeline/tesseract ratios are
taken within each round. Accuracy is `crnn.metrics.text_metrics` against the normalised labels (from the last
round).

With --num-gpus N the model-alone part runs on CUDA (batch 1024 unless --batch-size, the Recognizer's
default precision there: bf16, or fp16 without bf16) and jobs.ocr gets `--num-gpus N`; GPU utilisation
and memory are sampled with `nvidia-smi -lms 200` while each runs (mean and max utilisation over the
samples of all GPUs, peak memory.used of any GPU, other processes' memory included). Tesseract is skipped
then unless `--skip` is given explicitly (e.g. `--skip` with no names). Figures from one H200: docs/gpu.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from crnn.training import splits

SYSTEMS = ("model", "pipeline", "ceiling", "tesseract")
ROW_GROUP = 10_000
DISTURBED = 0.15   # Tesseract's rate moving more than this between the sizes of one round


def repeated_ids(ids: list[str], size: int) -> list[str]:
    """The ids of a `size`-row input cut from rows `ids`, repeated in order: repeats get `<id>~<k>`."""
    n = len(ids)
    return [ids[k % n] if k < n else f"{ids[k % n]}~{k // n}" for k in range(size)]


def repeated_labels(labels: list[str], size: int) -> list[str]:
    return [labels[k % len(labels)] for k in range(size)]


def repeated_crops(images: list[bytes], size: int) -> list[np.ndarray]:
    """`size` normalised crops of the encoded `images`, repeated in order (repeats share the arrays)."""
    from PIL import Image

    from crnn.image import normalize_crop

    unique = [normalize_crop(Image.open(io.BytesIO(b))) for b in images[:size]]
    return [unique[k % len(unique)] for k in range(size)]


def write_sized_input(table: pa.Table, size: int, folder: Path, rows_per_file: int) -> None:
    """`size` rows of `table`, repeated in order with fresh ids, as Parquet files of `rows_per_file` rows
    (row groups of ROW_GROUP), written a row group at a time (the table holds encoded images only)."""
    folder.mkdir(parents=True)
    ids = repeated_ids(table["id"].to_pylist(), size)
    id_index = table.schema.get_field_index("id")
    n, writer, in_file, part, start = table.num_rows, None, 0, 0, 0
    try:
        while start < size:
            if writer is None or in_file >= rows_per_file:
                if writer is not None:
                    writer.close()
                writer = pq.ParquetWriter(folder / f"part-{part:05d}.parquet", table.schema)
                part, in_file = part + 1, 0
            end = min(start + ROW_GROUP, size, start + rows_per_file - in_file)
            rows = np.arange(start, end)
            chunk = table.take(pa.array(rows % n))
            field = table.schema.field(id_index)
            chunk = chunk.set_column(id_index, field, pa.array(ids[start:end], field.type))
            writer.write_table(chunk)
            in_file, start = in_file + end - start, end
    finally:
        if writer is not None:
            writer.close()


def tiny_model(path: Path) -> Path:
    """A CRNN checkpoint of 2,092 random parameters (4 channels a convolution, one BiLSTM layer of 4) over the
    shipped model's charset: a model that costs next to nothing, for the plumbing ceiling."""
    import torch

    from crnn.checkpoint import load_checkpoint, save_checkpoint
    from crnn.model import CRNN, CRNNConfig

    _, charset, _ = load_checkpoint()
    torch.manual_seed(0)
    model = CRNN(CRNNConfig(num_classes=len(charset.symbols) + 1, channels=(4,) * 7, lstm_hidden=4, lstm_layers=1))
    save_checkpoint(path, model, charset, name="benchmark-tiny", version="0")
    return path


class SessionMemory:
    """Peak RSS and PSS summed over the processes of a session (a job started with start_new_session), sampled
    at most once a `period` by `sample()`."""

    def __init__(self, sid: int, period: float = 1.0):
        self.sid, self.period, self.next = sid, period, 0.0
        self.peak_rss_kib = self.peak_pss_kib = 0

    def sample(self) -> None:
        from jobs.bench.memory import _kib, _session

        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + self.period
        procs = _session(self.sid)
        self.peak_rss_kib = max(self.peak_rss_kib, sum(_kib(p, "status", "VmRSS:") for p in procs))
        self.peak_pss_kib = max(self.peak_pss_kib, sum(_kib(p, "smaps_rollup", "Pss:") for p in procs))


class GpuMonitor:
    """Samples `nvidia-smi` every 200 ms in a background process while the block runs."""

    def __init__(self, enabled: bool):
        self.enabled, self.samples, self.proc, self.thread = enabled, [], None, None

    def __enter__(self):
        if self.enabled and shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.thread = threading.Thread(target=self._collect, daemon=True)
            self.thread.start()
        return self

    def _collect(self):
        for line in self.proc.stdout:
            try:
                util, mem = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.samples.append((util, mem))

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.thread.join(timeout=5)

    def summary(self) -> dict:
        if not self.enabled:
            return {}
        if not self.samples:
            return {"gpu_util_mean": None, "gpu_util_max": None, "gpu_mem_peak_mib": None}
        util = [u for u, _ in self.samples]
        return {"gpu_util_mean": round(statistics.fmean(util), 1), "gpu_util_max": max(util),
                "gpu_mem_peak_mib": max(m for _, m in self.samples)}


def bench_model(rec, crops: list, batch_size: int, gpu: bool) -> tuple[float, list[str], dict]:
    with GpuMonitor(gpu) as mon:
        t = time.perf_counter()
        preds = [text for text, _ in rec.read(crops, batch_size=batch_size)]
        rate = len(crops) / (time.perf_counter() - t)
    return rate, preds, mon.summary()


def first_part(staging: Path) -> bool:
    try:
        return any(e.name.endswith(".parquet") for e in os.scandir(staging))
    except OSError:
        return False


def bench_pipeline(inp: Path, out: Path, ids: list[str], cmd_extra: list[str], log: Path,
                   gpu: bool) -> tuple[float, list[str], dict]:
    """Runs jobs.ocr over `inp`; returns crops/s over the whole command, the texts in `ids` order and
    extras (first-output latency, the job's own _summary.json rate, GPU use)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "jobs.ocr", "--input", str(inp), "--output", str(out), *cmd_extra]
    first = None
    with GpuMonitor(gpu) as mon, open(log, "w") as logf:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        memory = SessionMemory(proc.pid)
        while proc.poll() is None:
            if first is None and first_part(out / "_staging"):
                first = time.perf_counter() - t
            memory.sample()
            time.sleep(0.02)
        wall = time.perf_counter() - t
    if proc.returncode:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        sys.exit("error: jobs.ocr failed (exit %d): %s\n%s" % (proc.returncode, shlex.join(cmd), "\n".join(tail)))
    got = pq.read_table(out, columns=["id", "text"])
    texts = dict(zip(got["id"].to_pylist(), got["text"].to_pylist()))
    summary = json.loads((out / "_summary.json").read_text())
    extra = {"first_output_s": None if first is None else round(first, 2),
             "job_crops_per_s": summary.get("crops_per_s"), "peak_rss_mb": memory.peak_rss_kib // 1024,
             "peak_pss_mb": memory.peak_pss_kib // 1024, **mon.summary()}
    return len(ids) / wall, [texts.get(i) or "" for i in ids], extra


def bench_tesseract(files: list[Path], size: int, workdir: Path, procs: int) -> tuple[float, list[str]]:
    """Tesseract over the first `size` crops (`files` repeated in order), `procs` processes."""
    order = [k % len(files) for k in range(size)]
    chunks = [list(range(k, size, procs)) for k in range(procs)]
    lists = []
    for k, chunk in enumerate(chunks):
        lst = workdir / f"tesseract-{size}-{k}.txt"
        lst.write_text("".join(f"{files[order[i]]}\n" for i in chunk))
        lists.append(lst)
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    # Each process writes to a file of its own: read from pipes one after the other, a process whose output
    # outgrows its pipe's buffer would wait for the ones before it to end, and they would run one at a time.
    outputs = [workdir / f"tesseract-{size}-{k}.out" for k in range(len(chunks))]
    t = time.perf_counter()
    runs = []
    for lst, chunk, out in zip(lists, chunks, outputs):
        if chunk:
            with open(out, "wb") as f:
                runs.append(subprocess.Popen(["tesseract", str(lst), "stdout", "--psm", "7"], stdout=f,
                                             stderr=subprocess.DEVNULL, env=env))
    for r in runs:
        r.wait()
    rate = size / (time.perf_counter() - t)
    outs = [out.read_text("utf-8", "replace") for out, chunk in zip(outputs, chunks) if chunk]
    preds = [""] * size
    for chunk, text in zip(chunks, outs):
        pages = [p.strip() for p in text.split("\f")][: len(chunk)]  # one page per image, form feeds between
        for i, p in zip(chunk, pages):
            preds[i] = " ".join(p.split())
    return rate, preds


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=f"{splits.DATA_DIR}/funsd_train_words.parquet",
                   help="Parquet with id, image (encoded bytes) and text columns (default %(default)s)")
    p.add_argument("--sizes", type=int, nargs="+", default=[8650, 100_000],
                   help="input sizes in crops for the pipeline and Tesseract (default %(default)s)")
    p.add_argument("--rounds", type=int, default=1, help="rounds, interleaved; medians reported (default 1)")
    p.add_argument("--model-size", type=int, help="crops for the model alone (default: the smallest size)")
    p.add_argument("--model", help="checkpoint (default: the shipped model), for the model and jobs.ocr")
    p.add_argument("--batch-size", type=int,
                   help="model alone: crops per forward pass (default 128 on CPU, 1024 on GPU); "
                        "jobs.ocr keeps its own default unless given in --pipeline-args")
    p.add_argument("--num-gpus", type=float, default=0,
                   help="GPU mode: model alone on CUDA, jobs.ocr --num-gpus N, GPU use sampled (default 0)")
    p.add_argument("--skip", nargs="*", choices=SYSTEMS,
                   help="systems not to run (default: none on CPU, tesseract with --num-gpus)")
    p.add_argument("--pipeline-args", default="", help="extra jobs.ocr flags, e.g. '--threads 1'")
    p.add_argument("--rows-per-file", type=int, default=50_000, help="rows per input Parquet file (default %(default)s)")
    p.add_argument("--tesseract-max", type=int, default=100_000,
                   help="most crops Tesseract reads at one size; larger sizes reuse its rate over the first "
                        "this many (default %(default)s)")
    p.add_argument("--json", help="write all numbers here")
    args = p.parse_args(argv)
    if min(args.sizes) < 1 or args.rounds < 1 or args.rows_per_file < 1 or args.tesseract_max < 1:
        p.error("--sizes, --rounds, --rows-per-file and --tesseract-max must be positive")
    if args.skip is None:
        args.skip = ["tesseract"] if args.num_gpus else []
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    gpu = args.num_gpus > 0
    if gpu:
        import torch
        if not torch.cuda.is_available():
            sys.exit("error: --num-gpus given but torch sees no CUDA GPU (torch.cuda.is_available() is False)")
    run = [s for s in SYSTEMS if s not in args.skip]
    if "tesseract" in run and not shutil.which("tesseract"):
        print("note: no tesseract on PATH: skipped")
        run.remove("tesseract")
    cores = os.cpu_count() or 1
    batch_size = args.batch_size or (1024 if gpu else 128)
    sizes = list(dict.fromkeys(args.sizes))
    model_size = args.model_size or min(sizes)

    from crnn.charset import normalize
    from crnn.metrics import text_metrics

    table = pq.read_table(args.input)
    n = table.num_rows
    ids, labels = table["id"].to_pylist(), [normalize(t) for t in table["text"].to_pylist()]

    rec = crops = None
    device = "cuda" if gpu else "cpu"
    if "model" in run:
        import torch

        from crnn.recognizer import Recognizer
        from crnn.backends import resolve as resolve_backend

        if not gpu:
            torch.set_num_threads(cores)
        # what jobs.ocr's model actors run by default: onnx int8 on CPU, torch on GPU
        rec = Recognizer.load(args.model, device=device, backend=resolve_backend("auto", args.num_gpus > 0),
                              threads=cores if not gpu else None)
        crops = repeated_crops(table["image"].to_pylist(), model_size)
        rec.read(crops[:batch_size], batch_size=batch_size)  # warm-up

    extra = shlex.split(args.pipeline_args) + (["--model", args.model] if args.model else []) \
        + (["--num-gpus", f"{args.num_gpus:g}"] if gpu else [])
    rates: dict[tuple[str, int], list[float]] = {}
    info: dict[tuple[str, int], list[dict]] = {}
    quality: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="crnn-bench-") as tmp:
        tmp = Path(tmp)
        if "pipeline" in run or "ceiling" in run:
            for size in sizes:
                write_sized_input(table, size, tmp / f"in-{size}", args.rows_per_file)
        ceiling = [a for a in extra if a not in ("--model", args.model)] + [
            "--model", str(tiny_model(tmp / "tiny.pt")), "--decoder", "greedy"] if "ceiling" in run else []
        files = []
        if "tesseract" in run:
            (tmp / "png").mkdir()
            for i, b in enumerate(table["image"].to_pylist()[:min(max(sizes), args.tesseract_max)]):
                f = tmp / "png" / f"{i:06d}.png"
                f.write_bytes(b if b[:8] == b"\x89PNG\r\n\x1a\n" else _to_png(b))
                files.append(f)
        for r in range(args.rounds):
            if "model" in run:
                rate, preds, mon = bench_model(rec, crops, batch_size, gpu)
                rates.setdefault(("model", model_size), []).append(rate)
                info.setdefault(("model", model_size), []).append(mon)
                quality[("model", model_size)] = text_metrics(preds, repeated_labels(labels, model_size))
                print(f"round {r + 1}: model alone, {model_size} crops: {rate:.1f} crops/s", flush=True)
            for size in sizes:
                for system, flags in (("pipeline", extra), ("ceiling", ceiling)):
                    if system not in run:
                        continue
                    rate, preds, ext = bench_pipeline(tmp / f"in-{size}", tmp / f"out-{size}",
                                                      repeated_ids(ids, size), flags, tmp / f"ocr-{size}.log", gpu)
                    rates.setdefault((system, size), []).append(rate)
                    info.setdefault((system, size), []).append(ext)
                    quality[(system, size)] = text_metrics(preds, repeated_labels(labels, size))
                    print(f"round {r + 1}: {system}, {size} crops: {rate:.1f} crops/s, first output "
                          f"{ext['first_output_s']} s, peak RSS {ext['peak_rss_mb']} MB", flush=True)
                if "tesseract" in run:
                    read = min(size, args.tesseract_max)
                    rate, preds = bench_tesseract(files, read, tmp, cores)
                    rates.setdefault(("tesseract", size), []).append(rate)
                    info.setdefault(("tesseract", size), []).append({"crops_read": read})
                    quality[("tesseract", size)] = text_metrics(preds, repeated_labels(labels, read))
                    print(f"round {r + 1}: tesseract, {size} crops" + (f" (the first {read})" if read < size else "")
                          + f": {rate:.1f} crops/s", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)  # before the context's own cleanup: outputs can be large

    names = {"model": f"model alone ({device}, {rec.backend if rec else '?'} {rec.precision if rec else '?'}, batch {batch_size}"
                      + (")" if gpu else f", {cores} threads)"),
             "pipeline": "jobs.ocr, whole command" + (f" (--num-gpus {args.num_gpus:g})" if gpu else ""),
             "ceiling": "jobs.ocr, tiny model, greedy (plumbing ceiling)",
             "tesseract": f"tesseract --psm 7 ({cores} procs)"}
    rows = []
    for (system, size), v in rates.items():
        ext = info[(system, size)]
        first = [e["first_output_s"] for e in ext if e.get("first_output_s") is not None]
        row = {"system": system, "name": names[system], "size": size, "crops_per_s": round(statistics.median(v), 1),
               "rounds": [round(x, 1) for x in v], "exact": quality[(system, size)]["exact"],
               "metrics": quality[(system, size)], "per_round": ext}
        if system in ("pipeline", "ceiling"):
            row["first_output_s"] = statistics.median(first) if first else None
            row["job_crops_per_s"] = statistics.median(e["job_crops_per_s"] for e in ext)
            row["peak_rss_mb"] = max(e["peak_rss_mb"] for e in ext)
            row["peak_pss_mb"] = max(e["peak_pss_mb"] for e in ext)
        if gpu and system != "tesseract":
            for k in ("gpu_util_mean", "gpu_util_max", "gpu_mem_peak_mib"):
                vals = [e[k] for e in ext if e.get(k) is not None]
                row[k] = (max if k != "gpu_util_mean" else statistics.median)(vals) if vals else None
        rows.append(row)
    ratios = {}
    for size in sizes:
        if ("pipeline", size) in rates and ("tesseract", size) in rates:
            per = [a / b for a, b in zip(rates[("pipeline", size)], rates[("tesseract", size)])]
            ratios[size] = {"per_round": [round(x, 3) for x in per], "median": round(statistics.median(per), 3)}
    disturbed = disturbed_rounds({size: rates[("tesseract", size)] for size in sizes if ("tesseract", size) in rates})

    print(f"\n{args.input}: {n} crops; sizes {sizes}" + (f" (above {n}: rows repeated with fresh ids, same labels)"
                                                    if max(sizes) > n else "")
          + f"; {cores} cores; {args.rounds} round(s); median crops/s; exact from the last round")
    head = (f"{'system':48s} {'size':>7s} {'crops/s':>9s} {'exact':>6s} {'first out':>9s} {'job c/s':>8s} "
            f"{'peak RSS':>9s} {'peak PSS':>9s}")
    print(head + (f" {'GPU% mean/max':>13s} {'peak MiB':>8s}" if gpu else "") + "   rounds")
    for row in rows:
        first, job = row.get("first_output_s"), row.get("job_crops_per_s")
        first = "-" if first is None else f"{first:.2f} s"
        job = "-" if job is None else f"{job:.1f}"
        rss = f"{row['peak_rss_mb']} MB" if "peak_rss_mb" in row else "-"
        pss = f"{row['peak_pss_mb']} MB" if "peak_pss_mb" in row else "-"
        line = (f"{row['name']:48s} {row['size']:7d} {row['crops_per_s']:9.1f} {row['exact']:6.3f} "
                f"{first:>9s} {job:>8s} {rss:>9s} {pss:>9s}")
        if gpu:
            util = f"{row.get('gpu_util_mean')}/{row.get('gpu_util_max')}" if row.get("gpu_util_max") is not None else "-"
            line += f" {util:>13s} {str(row.get('gpu_mem_peak_mib') or '-'):>8s}"
        read = row["per_round"][0].get("crops_read") if row["system"] == "tesseract" else None
        print(line + f"   {row['rounds']}" + (f" (the first {read} crops)" if read and read < row["size"] else ""))
    if "pipeline" in run or "ceiling" in run:
        print("first out: command start to the first part staged; job c/s: jobs.ocr's own _summary.json rate (Ray "
              "start in, interpreter start, imports and exit out); peak RSS/PSS: summed over the job's processes")
    for size, r in ratios.items():
        print(f"pipeline/tesseract at {size}: per round {r['per_round']}, median {r['median']}")
    for r, spread in disturbed.items():
        print(f"WARNING: round {r + 1}: Tesseract's rate moved {spread:.0%} between sizes (more than "
              f"{DISTURBED:.0%}): the machine was disturbed in that round; rerun it")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"input": args.input, "input_rows": n, "sizes": sizes, "rounds": args.rounds, "cores": cores,
             "num_gpus": args.num_gpus, "batch_size": batch_size, "pipeline_args": extra, "rows": rows,
             "ratios": {str(k): v for k, v in ratios.items()},
             "disturbed_rounds": [r + 1 for r in disturbed]}, indent=2))


def disturbed_rounds(tesseract: dict[int, list[float]]) -> dict[int, float]:
    """Rounds (0-based) whose Tesseract rate, size -> [crops/s per round], moves more than DISTURBED between sizes:
    max / min - 1 of that round's rates."""
    rounds = min((len(v) for v in tesseract.values()), default=0)
    spread = {r: max(v[r] for v in tesseract.values()) / min(v[r] for v in tesseract.values()) - 1
              for r in range(rounds)}
    return {r: s for r, s in spread.items() if s > DISTURBED}


def _to_png(b: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(b)).save(buf, format="PNG")
    return buf.getvalue()


if __name__ == "__main__":
    main()
