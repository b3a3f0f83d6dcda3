"""Where a crop's time goes: each stage's CPU cost, in-process, then a whole job's CPU by process and by Ray Data
operator, optionally with a sampling profile of the model actors (docs/pipeline-cost.md's table).

    python -m jobs.bench.cost --size 100000                        # stages, then the whole job at 100,000 crops
    python -m jobs.bench.cost --size 100000 --tiny                 # the job with the plumbing-ceiling model
    python -m jobs.bench.cost --size 100000 --profile 20           # + py-spy samples of a model actor (--profile: how long)
    python -m jobs.bench.cost --stage-crops 2000 --size 0          # stages only (a quick look)

Stages: the first --stage-crops FUNSD crops (default 8,192), one thread, each stage timed over all of them in
turn, as a job runs them: the Parquet read, PNG/JPEG decode (`decode_images`), grayscale/contrast/resize
(`normalize_crop`, `turned_crop`), the rest of `preprocess_batch` (Arrow in and out), the width sort, the
model actor's batch assembly (Arrow -> crops, `pad_batch`, the model's input), the forward pass (the default
CPU backend, onnx int8, and the tiny model), greedy and lexicon decoding of those logits, the model actor's
whole call (`CRNNPredictor`, greedy: its stages, tall crops read turned, output columns, crash journal), and
the Parquet write. In microseconds a
crop: CPU time of one core.

Whole job: `python -m jobs.ocr --stats` (its own local Ray, its own session) over --size crops repeated from
--input with fresh ids; every process of the session has its CPU time (utime + stime, from /proc) read every
0.5 s, summed by role at the end (driver, model actors, task workers, Ray's services); Ray Data's own
per-operator remote CPU time comes from `--stats`. What the operators' tasks do not account for, in the model
actors and the task workers, is Ray's per-task and per-block cost (scheduling, object store puts and gets,
serialisation) and idle polling.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.bench.memory import _role, _session
from jobs.bench.benchmark import tiny_model, write_sized_input
from crnn.training import splits

CLOCK = os.sysconf("SC_CLK_TCK")
# `jobs.bench.memory._role`'s roles, the most specific first: a worker process is titled `default_worker.py ...`
# at its start, `ray::IDLE` between tasks, then what it runs (a task, a model actor, one of Ray Data's helper
# actors); it keeps the most specific role it was seen in (titles change again at exit). The driver is known by
# its pid: a process that has exited but is not yet reaped is listed as `[python] <defunct>`
ROLES = ("model actors", "ray services", "task workers", "driver")


def _timed(fn, n: int, repeat: int = 2) -> tuple[float, object]:
    """(microseconds of this process's CPU per item over n items, the result) of fn(): the least of `repeat`
    runs, so that first-call costs (a plugin's import, a session's first allocations) are left out."""
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best / n * 1e6, out


def stage_costs(table: pa.Table, batch_size: int = 128, block: int = 2048) -> dict[str, float]:
    """Microseconds of one core per crop, per stage, over `table`'s crops (id, image, ...), as a job runs them."""
    from crnn.decoding import greedy_decode, lexicon_beam_decode
    from crnn.image import decode_images, normalize_crop, pad_batch, turned_crop
    from crnn.lexicon import load_prior
    from pipeline.batch import batch_crops, sort_by_width
    from pipeline.predict import CRNNPredictor
    from pipeline.preprocess import preprocess_batch

    n = table.num_rows
    cost: dict[str, float] = {}
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    cost["parquet read"], _ = _timed(lambda: pq.read_table(pa.BufferReader(data)), n, repeat=3)
    images = table["image"].to_pylist()
    cost["decode (PNG/JPEG)"], decoded = _timed(lambda: decode_images(images), n)
    decoded = [d for d in decoded if not isinstance(d, Exception)]
    cost["grayscale, contrast, resize"], _ = _timed(
        lambda: [(normalize_crop(d), turned_crop(d)) for d in decoded], len(decoded))
    total, pre = _timed(lambda: preprocess_batch(table, "image"), n)
    cost["preprocess: the rest (Arrow in and out, errors)"] = max(0.0, total - cost["decode (PNG/JPEG)"]
                                                                  - cost["grayscale, contrast, resize"])
    cost["width sort"], pre = _timed(lambda: sort_by_width(pre), n)
    # what the model actor gets: blocks of `block` rows, called in batches of `batch_size`
    batches = [pre.slice(i, batch_size) for i in range(0, n, batch_size)]
    cost["batch assembly: Arrow -> crops"], unpacked = _timed(lambda: [batch_crops(b)[0] for b in batches], n)
    cost["batch assembly: pad"], padded = _timed(lambda: [pad_batch(c) for c in unpacked if c], n)
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        actor = CRNNPredictor(decoder="greedy", backend="onnx", threads=1, journal_dir=tmp)
        rec = actor.recognizer
        # each input dropped at once, as the actor does: holding them all would time fresh pages, not the scaling
        cost["batch assembly: model input"], _ = _timed(lambda: [rec._model_input(b).shape for b, _ in padded], n)
        inputs = [rec._model_input(b) for b, _ in padded]
        forward = f"forward, shipped model (onnx {rec.precision})"
        rec._forward(inputs[0])   # the session's first run allocates
        cost[forward], logits = _timed(lambda: [rec._forward(x) for x in inputs], n)
        lengths = [rec.model.frames(w) for _, w in padded]
        cost["decode: greedy"], _ = _timed(
            lambda: [greedy_decode(lg, ln, rec.charset) for lg, ln in zip(logits, lengths)], n)
        prior = load_prior()
        cost["decode: lexicon (greedy, then beam search below 0.9)"], _ = _timed(
            lambda: [lexicon_beam_decode(lg, ln, rec.charset, prior) for lg, ln in zip(logits, lengths)], n)
        blocks = [pre.slice(i, block) for i in range(0, n, block)]
        whole, outs = _timed(lambda: [actor(b.slice(j, batch_size)) for b in blocks
                                      for j in range(0, b.num_rows, batch_size)], n)
        # the whole call, not a difference: the parts above, timed apart, hold every batch's arrays at once
        cost["model actor's call, greedy (batch assembly to output columns, crash journal)"] = whole
        tiny = CRNNPredictor(model_path=_tiny(), decoder="greedy", backend="onnx", threads=1).recognizer
        tiny._forward(inputs[0])
        cost[f"forward, tiny model (onnx {tiny.precision})"], _ = _timed(lambda: [tiny._forward(x) for x in inputs], n)
    out = pa.concat_tables(outs)
    sink = io.BytesIO()
    cost["parquet write"], _ = _timed(lambda: pq.write_table(out, sink), n)
    return {k: round(v, 1) for k, v in cost.items()}


@functools.lru_cache(maxsize=1)
def _tiny() -> str:
    """The plumbing-ceiling model (`jobs.bench.benchmark.tiny_model`), written once per process."""
    return str(tiny_model(Path(tempfile.mkdtemp(prefix="bench-cost-")) / "tiny.pt"))


def _cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK     # utime, stime


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_stats(text: str) -> list[dict]:
    """Ray Data's `ds.stats()` text -> [{operator, tasks, remote_wall_s, remote_cpu_s}], in plan order."""
    ops = []
    for m in re.finditer(r"^Operator \d+ (.+?): (\d+) tasks executed.*?$(.*?)(?=^Operator |^Dataset |\Z)", text,
                         re.M | re.S):
        row = {"operator": m[1], "tasks": int(m[2])}
        for key, label in (("remote_wall_s", "Remote wall time"), ("remote_cpu_s", "Remote cpu time")):
            t = re.search(label + r":.*?([\d.]+)(us|ms|s) total", m[3])
            row[key] = round(float(t[1]) * _UNITS[t[2]], 3) if t else None
        ops.append(row)
    return ops


def job_costs(input_dir: Path, out_dir: Path, extra: list[str], profile_s: float = 0) -> dict:
    """Run jobs.ocr --stats over input_dir; CPU seconds by role and by operator, wall time, the actor profile."""
    cmd = [sys.executable, "-m", "jobs.ocr", "--address", "local", "--input", str(input_dir), "--output",
           str(out_dir), "--stats", *extra]
    t0 = time.perf_counter()
    log = out_dir.with_suffix(".log")
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    cpu: dict[int, tuple[str, float]] = {}   # pid -> (role, CPU seconds so far)
    profiled: dict = {}
    while proc.poll() is None:
        for pid, command in _session(proc.pid).items():
            s = _cpu_s(pid)
            if s is not None and "<defunct>" not in command:
                role = ("driver" if pid == proc.pid else
                        "task workers" if "default_worker.py" in command else _role(command))
                cpu[pid] = (min(role, cpu.get(pid, (role,))[0], key=ROLES.index), s)
        if profile_s and not profiled:
            actors = [p for p, (r, _) in cpu.items() if r == "model actors"]
            if actors and time.perf_counter() - t0 > 20:   # past the start-up: the actors read
                profiled = profile(actors[0], profile_s)
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if proc.returncode:
        sys.exit(f"error: jobs.ocr failed (exit {proc.returncode}):\n" + "\n".join(text.splitlines()[-20:]))
    by_role: dict[str, float] = {}
    processes: dict[str, int] = {}
    for role, s in cpu.values():
        by_role[role] = by_role.get(role, 0.0) + s
        processes[role] = processes.get(role, 0) + 1
    return {"wall_s": round(wall, 2), "cpu_s_by_role": {k: round(v, 2) for k, v in sorted(by_role.items())},
            "processes_by_role": dict(sorted(processes.items())),
            "operators": parse_stats(text), "actor_profile": profiled}


def profile(pid: int, seconds: float) -> dict:
    """py-spy's samples of `pid` over `seconds`, as {function: share of the samples} (inclusive), top 25."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {"error": "py-spy not found"}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.txt"
        subprocess.run([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50", "-f", "raw", "-o",
                        str(raw), "--nonblocking"], capture_output=True)
        if not raw.exists():
            return {"error": "py-spy recorded nothing (ptrace not permitted?)"}
        total, inclusive = 0, {}
        for line in raw.read_text().splitlines():
            stack, n = line.rsplit(" ", 1)
            total += int(n)
            for name in {re.sub(r" \(.*", "", f) for f in stack.split(";")}:
                inclusive[name] = inclusive.get(name, 0) + int(n)
    top = sorted(inclusive.items(), key=lambda kv: -kv[1])[:25]
    return {"samples": total, "inclusive": {k: round(v / total, 3) for k, v in top}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=f"{splits.DATA_DIR}/funsd_train_words.parquet",
                   help="Parquet with id and image columns (default %(default)s)")
    p.add_argument("--stage-crops", type=int, default=8192, help="crops for the in-process stages (0: none)")
    p.add_argument("--size", type=int, default=100_000, help="crops for the whole job (0: no job)")
    p.add_argument("--tiny", action="store_true", help="the job reads with the plumbing-ceiling model, greedy")
    p.add_argument("--profile", type=float, default=0, help="seconds of py-spy on a model actor (default: none)")
    p.add_argument("--pipeline-args", default="", help="more jobs.ocr flags")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if not Path(args.input).exists():
        sys.exit(f"error: --input {args.input!r} does not exist (a Parquet of id and image columns)")
    table = pq.read_table(args.input)
    table = table.drop_columns([c for c in ("text",) if c in table.column_names])
    result: dict = {"input": args.input, "cores": os.cpu_count()}
    if args.stage_crops:
        stages = stage_costs(table.slice(0, args.stage_crops))
        result["stages_us_per_crop"] = stages
        print(f"in-process, one core, {min(args.stage_crops, table.num_rows)} crops: microseconds a crop")
        for k, v in stages.items():
            print(f"  {k:55s} {v:9.1f}")
    if args.size:
        with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
            tmp = Path(tmp)
            write_sized_input(pq.read_table(args.input), args.size, tmp / "in", 50_000)
            extra = args.pipeline_args.split() + (["--model", _tiny(), "--decoder", "greedy"] if args.tiny else [])
            job = job_costs(tmp / "in", tmp / "out", extra, args.profile)
        result["job"] = job
        total = sum(job["cpu_s_by_role"].values())
        print(f"\nwhole job, {args.size} crops{' (tiny model, greedy)' if args.tiny else ''}: {job['wall_s']} s, "
              f"{args.size / job['wall_s']:.0f} crops/s; CPU {total:.1f} s of {job['wall_s'] * (os.cpu_count() or 1):.0f}"
              f" available ({total / args.size * 1e6:.0f} us a crop)")
        for role, s in job["cpu_s_by_role"].items():
            print(f"  {role + ' (' + str(job['processes_by_role'][role]) + ' processes)':55s} {s:8.1f} s  "
                  f"{s / args.size * 1e6:7.0f} us a crop")
        print("Ray Data operators (remote CPU, their tasks' own work):")
        for op in job["operators"]:
            cpu_s = op["remote_cpu_s"] or 0.0
            print(f"  {op['operator'][:55]:55s} {cpu_s:8.1f} s  {cpu_s / args.size * 1e6:7.0f} us a crop"
                  f"  ({op['tasks']} tasks)")
        for name, share in job["actor_profile"].get("inclusive", {}).items():
            print(f"  actor profile: {share:6.1%} {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
