"""Memory of a whole job, all its processes: peak resident memory at several input sizes.

    python -m jobs.bench.memory --sizes 10000 200000 [--input ../shared/data/funsd_train_words.parquet]

Each size is one `python -m jobs.ocr` run (its own local Ray, in its own session) over that many crops,
cycled from --input (or rendered word crops when none is given), written as Parquet shards of 50k rows.
Every 0.5 s it reads /proc for every process of the run's session: RSS (what `ps` shows; pages shared
between processes, such as Ray's object store, count once per process that maps them) and PSS (shared
pages split between the processes that map them: the sum is the job's real footprint). It prints, per
size, the peaks of both sums, the process count, and the model actor's RSS early and late in the run
(growth of its private part, RssAnon, at a steady input, would be a leak), and, at the peak RSS, each kind of
process's private memory, mapped files and object-store pages (RssAnon, RssFile, RssShmem). --json writes it
all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _sample_crops(path: str | None, n: int = 2000) -> pa.Table:
    if path:
        return pq.read_table(path, columns=["image"]).slice(0, n)
    words = ["Invoice", "TOTAL", "Date:", "12/05/2024", "$1,234.56", "Phone", "(212)", "555-0199", "Customer"]
    return pa.table({"image": [_drawn(" ".join(words[i % 9: i % 9 + 1 + i % 3]), size=10 + i % 10)
                               for i in range(n)]})


def _drawn(text: str, size: int) -> bytes:
    """A PNG crop of `text` in Pillow's scalable default font (there on a fresh machine, unlike training's)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 255)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, fill=20, font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def write_input(folder: Path, sample: pa.Table, n: int, shard: int = 50_000) -> None:
    folder.mkdir(parents=True)
    for k, start in enumerate(range(0, n, shard)):
        rows = min(shard, n - start)
        images = pa.concat_tables([sample] * (rows // len(sample) + 1)).slice(0, rows)["image"]
        ids = pa.array([f"crop-{i:08d}" for i in range(start, start + rows)])
        pq.write_table(pa.table({"id": ids, "image": images}), folder / f"part-{k:04d}.parquet")


def _kib(pid: int, path: str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _session(sid: int) -> dict[int, str]:
    """pid -> command of every live process in session `sid`."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True).stdout
    procs = {}
    for line in out.splitlines():
        pid, s, *cmd = line.split(None, 2)
        if int(s) == sid:
            procs[int(pid)] = cmd[0] if cmd else ""
    return procs


def _role(cmd: str) -> str:
    """What a process of the job is, from its command (Ray names its workers by what they run)."""
    if "jobs.ocr" in cmd:
        return "driver"
    if "CRNNPredictor" in cmd:
        return "model actors"
    if cmd.startswith("ray::") and ("IDLE" in cmd or "MapBatches" in cmd or "Read" in cmd or "Write" in cmd
                                    or "ListFiles" in cmd):
        return "task workers"
    return "ray services"


def _breakdown(procs: dict[int, str]) -> dict[str, dict[str, int]]:
    """role -> MB of RssAnon (private heap), RssFile (libraries, mapped files) and RssShmem (the object store's
    shared pages each process has touched), summed over the role's processes."""
    roles: dict[str, dict[str, int]] = {}
    for pid, cmd in procs.items():
        r = roles.setdefault(_role(cmd), {"processes": 0, "anon": 0, "file": 0, "shmem": 0})
        r["processes"] += 1
        for key, field in (("anon", "RssAnon:"), ("file", "RssFile:"), ("shmem", "RssShmem:")):
            r[key] += _kib(pid, "status", field) // 1024
    return roles


def measure(input_dir: Path, output_dir: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "jobs.ocr", "--address", "local", "--input", str(input_dir),
           "--output", str(output_dir), *extra]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    peak_rss = peak_pss = peak_procs = 0
    at_peak: dict = {}
    actor: list[tuple[float, int]] = []
    while proc.poll() is None:
        procs = _session(proc.pid)
        rss = {p: _kib(p, "status", "VmRSS:") for p in procs}
        pss = sum(_kib(p, "smaps_rollup", "Pss:") for p in procs)
        total = sum(rss.values())
        if total > peak_rss:
            peak_rss, at_peak = total, _breakdown(procs)
        peak_pss = max(peak_pss, pss)
        peak_procs = max(peak_procs, len(procs))
        actor += [(time.time() - t0, rss[p], _kib(p, "status", "RssAnon:")) for p, c in procs.items()
                  if "CRNNPredictor" in c]
        time.sleep(0.5)
    summary = _summary(output_dir)
    wall = time.time() - t0
    steady, anon = [r for _, r, _ in actor], [a for _, _, a in actor]
    q = max(1, len(steady) // 10)
    return {"rc": proc.returncode, "wall_s": round(wall, 1), "crops_per_s": summary.get("crops_per_s"),
            "peak_rss_mb": peak_rss // 1024, "peak_pss_mb": peak_pss // 1024, "processes": peak_procs,
            "actor_rss_mb_first_10pct": max(steady[:q], default=0) // 1024,
            "actor_rss_mb_last_10pct": max(steady[-q:], default=0) // 1024,
            "actor_rss_mb_peak": max(steady, default=0) // 1024,
            # RssAnon: the actor's private memory (heap); the rest of its RSS is shared (the object store's pages)
            "actor_anon_mb_first_10pct": max(anon[:q], default=0) // 1024,
            "actor_anon_mb_last_10pct": max(anon[-q:], default=0) // 1024,
            "at_peak_rss": at_peak}


def _summary(output_dir: Path) -> dict:
    try:
        return json.loads((output_dir / "_summary.json").read_text())
    except OSError:
        return {}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    p.add_argument("--input", help="Parquet with an image column to cycle (default: rendered word crops)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("extra", nargs="*", help="more jobs.ocr options, after --")
    args = p.parse_args(argv)
    sample = _sample_crops(args.input)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for n in args.sizes:
            write_input(Path(tmp) / f"in-{n}", sample, n)
            results[n] = r = measure(Path(tmp) / f"in-{n}", Path(tmp) / f"out-{n}", args.extra)
            print(f"{n:>8} crops: rc {r['rc']}, {r['wall_s']} s, {r['crops_per_s']} crops/s, peak RSS "
                  f"{r['peak_rss_mb']} MB, peak PSS {r['peak_pss_mb']} MB, {r['processes']} processes; actor RSS "
                  f"{r['actor_rss_mb_first_10pct']} -> {r['actor_rss_mb_last_10pct']} MB (peak {r['actor_rss_mb_peak']}), of it "
                  f"private {r['actor_anon_mb_first_10pct']} -> {r['actor_anon_mb_last_10pct']} MB",
                  flush=True)
            for role, b in sorted(r["at_peak_rss"].items()):
                print(f"{'':>8}   at peak RSS, {role} ({b['processes']}): {b['anon']} MB private, {b['file']} MB "
                      f"files, {b['shmem']} MB object store", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
