"""--resume: a job killed part-way (SIGKILL, as a lost node or a preempted machine) continues where it stopped.

Every input id ends up in the output exactly once; parts the killed run left half-written are deleted and
their rows redone. While the job lives, its lease refuses a second run; once it is killed, --resume takes over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.ocr import main as ocr_main
from tests.helpers import crop_bytes, kill_session

REPO = Path(__file__).resolve().parents[1]
WORDS = ["Date:", "TOTAL", "R&D", "invoice", "#12-B", "$1,234.56", "Name", "a"]


def _images(folder: Path, n: int) -> set[str]:
    folder.mkdir()
    crops = [crop_bytes(w, size=10 + i) for i, w in enumerate(WORDS)]
    for i in range(n):
        (folder / f"c{i:04d}.png").write_bytes(crops[i % len(crops)])
    return {str(folder / f"c{i:04d}.png") for i in range(n)}


def _complete_parts(staging: Path) -> dict[str, int]:
    """Rows of each staged part that is whole; a part caught mid-write by the kill is left out (resume redoes it)."""
    parts = {}
    for p in staging.glob("*.parquet"):
        try:
            parts[p.name] = pq.read_metadata(p).num_rows
        except (pa.ArrowInvalid, OSError):
            pass
    return parts


def test_resume_after_kill(ray_local, small_model, tmp_path, capsys):
    """`python -m jobs.ocr` SIGKILLed (its whole process group) once it has staged a part, then resumed."""
    ids = _images(tmp_path / "in", 600)
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "in"), "--output", str(out), "--model", small_model,
            "--rows-per-file", "20", "--batch-size", "8", "--window", "32",
            "--decoder", "beam"]                   # slower per crop: parts are written seconds apart
    job = subprocess.Popen([sys.executable, "-m", "jobs.ocr", *args], cwd=REPO, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while not _complete_parts(out / "_staging"):  # a whole part, not just a file being written
            assert job.poll() is None and time.time() < deadline, "the job ended or stalled before staging a part"
            time.sleep(0.02)
        capsys.readouterr()
        t = time.time()
        refused = ocr_main(args + ["--resume"])    # while it runs, the output is its own: another run refuses
        err = capsys.readouterr().err.strip()
        live = job.poll() is None
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        kill_session(job.pid)                      # its Ray too: workers run in their own process groups
        job.wait()
    assert live and refused == 2 and time.time() - t < 10, err
    assert err.startswith("error: ") and "\n" not in err and "is in use by run " in err and f"(pid {job.pid} " in err
    staged = _complete_parts(out / "_staging")
    assert staged and not (out / "_SUCCESS").exists()
    assert json.loads((out / "_staging" / "_lease.json").read_text())["pid"] == job.pid  # the killed run's lease ...

    assert ocr_main(args + ["--resume"]) == 0                             # ... is taken over: its process is gone
    summary = json.loads((out / "_summary.json").read_text())
    df = pd.read_parquet(out)
    assert len(df) == len(ids) and set(df["path"]) == ids                 # every id exactly once
    assert 0 < summary["resumed_rows"] == sum(staged.values()) < len(ids)  # continued, not redone
    assert (out / "_SUCCESS").exists() and not (out / "_staging").exists() and not (out / "_lease.json").exists()
    assert set(staged) <= {p.name for p in out.glob("*.parquet")}          # the killed run's parts kept
    assert {p["name"] for p in json.loads((out / "_SUCCESS").read_text())["parts"]} == \
        {p.name for p in out.glob("*.parquet")}


def test_resume_redoes_half_written_part(ray_local, small_model, tmp_path, capsys):
    """An interrupted run whose staging holds complete parts and one truncated part (the one being written)."""
    ids = _images(tmp_path / "in", 48)
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "in"), "--output", str(out), "--model", small_model]
    assert ocr_main(args) == 0
    capsys.readouterr()
    table = pq.read_table(out).sort_by("path")
    for p in out.iterdir():
        p.unlink()
    (out / "_staging").mkdir()
    pq.write_table(table.slice(0, 16), out / "_staging" / "part-a.parquet")
    pq.write_table(table.slice(16, 16), out / "_staging" / "part-b.parquet")
    half = out / "_staging" / "part-b.parquet"
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])        # killed while writing it

    assert ocr_main(args + ["--resume"]) == 0
    assert "resuming: 16 of 48 rows already done" in capsys.readouterr().out
    summary = json.loads((out / "_summary.json").read_text())
    df = pd.read_parquet(out)
    assert len(df) == 48 and set(df["path"]) == ids and df["path"].is_unique
    assert summary["resumed_rows"] == 16 and summary["rows_in"] == 48
    assert not (out / "part-b.parquet").exists() and (out / "part-a.parquet").exists()


def test_resume_needs_unique_ids(tmp_path, small_model, capsys):
    (tmp_path / "in").mkdir()
    rows = [{"id": f"crop-{i % 3}", "image": crop_bytes("x")} for i in range(6)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in" / "a.parquet")
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--model", small_model, "--resume"]
    assert ocr_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "id column 'id' is not unique (3 repeated values)" in err and "--id-column" in err
