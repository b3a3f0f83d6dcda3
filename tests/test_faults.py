"""Faults of the model actor, proven on real jobs (`python -m jobs.ocr` in its own process, its own local Ray).

A crop that always kills the process reading it (a native crash, the OOM killer) comes from
tests/faults/sitecustomize.py: on PYTHONPATH it is loaded by the job's driver and all its Ray workers,
and kills the reader of a crop whose pixels are all POISON. The actor is also SIGKILLed from outside.
Every test checks every input id exactly once in the final output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from PIL import Image

from pipeline.predict import CRASHED
from tests.helpers import crop_bytes, encode, write_crops_parquet

REPO = Path(__file__).resolve().parents[1]
POISON = 200
LOCAL = fsspec.filesystem("file")


def _input(path: Path, n: int, poison: tuple[int, ...] = ()) -> list[str]:
    path.mkdir()
    bad = encode(Image.new("L", (40, 20), POISON))
    return write_crops_parquet(LOCAL, str(path), n, bad={i: bad for i in poison})["id"].to_pylist()


def _ocr(args: list[str], poison: bool = False, timeout: float = 400) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    if poison:
        env.update(OCR_TEST_POISON_VALUE=str(POISON),
                   PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "faults"), str(REPO)]))
    return subprocess.Popen([sys.executable, "-m", "jobs.ocr", "--address", "local", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 400) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


def _actor_pids(session: int) -> list[int]:
    ps = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in ps.splitlines()
            if "CRNNPredictor" in line and int(line.split()[1]) == session]


def _kill_actor(session: int, times: int, log: list) -> None:
    """SIGKILL the job's model actor `times` times, each time once it has been restarted and is reading."""
    seen: set[int] = set()
    deadline = time.time() + 300
    while len(log) < times and time.time() < deadline:
        fresh = [p for p in _actor_pids(session) if p not in seen]
        if fresh:
            time.sleep(1.5)                       # let it load the model and take a batch
            try:
                os.kill(fresh[0], signal.SIGKILL)
                log.append(fresh[0])
            except ProcessLookupError:
                pass
            seen.add(fresh[0])
        time.sleep(0.1)


def _ids(out: Path) -> list[str]:
    return sorted(pd.read_parquet(out)["id"])


def test_poison_crop_gets_an_error_row_and_the_job_goes_on(small_model, tmp_path):
    ids = _input(tmp_path / "in", 200, poison=(7, 150))
    rc, out, err = _finish(_ocr(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                                 "--model", small_model, "--batch-size", "32"], poison=True))
    assert rc == 0, err[-3000:]
    df = pd.read_parquet(tmp_path / "out").set_index("id")
    assert sorted(df.index) == ids
    poisoned = [ids[7], ids[150]]
    assert set(df.index[df["error"].notna()]) == set(poisoned)
    assert (df.loc[poisoned, "error"] == CRASHED).all()
    assert df.loc[poisoned, "text"].isna().all() and df["text"].notna().sum() == 198


def test_actor_dying_beyond_the_budget_fails_cleanly_and_resume_finishes(small_model, tmp_path):
    ids = _input(tmp_path / "in", 120, poison=(30,))
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--model", small_model,
            "--batch-size", "32"]
    rc, out, err = _finish(_ocr(args + ["--actor-restarts", "1"], poison=True))
    assert rc == 1, err[-3000:]
    last = err.strip().splitlines()[-1]                            # (Ray's own log of the death comes first)
    assert last.startswith("error: the model actor died") and "--resume" in last
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    assert not list((tmp_path / "out").glob("*.parquet"))       # nothing a reader could take for output
    rc, out, err = _finish(_ocr(args + ["--resume"]))            # the poison is gone (a fixed library, say)
    assert rc == 0, err[-3000:]
    assert _ids(tmp_path / "out") == ids


@pytest.mark.parametrize("kills", [1, 3])
def test_actor_sigkilled_mid_run_finishes_with_every_id_once(small_model, tmp_path, kills):
    ids = _input(tmp_path / "in", 3000)
    proc = _ocr(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--model", small_model,
                 "--batch-size", "16", "--window", "512"])
    killed: list[int] = []
    killer = threading.Thread(target=_kill_actor, args=(proc.pid, kills, killed))
    killer.start()
    rc, out, err = _finish(proc)
    killer.join()
    assert len(killed) == kills, "the job ended before the actor could be killed that often"
    assert rc == 0, err[-3000:]
    assert _ids(tmp_path / "out") == ids
    assert (tmp_path / "out" / "_SUCCESS").exists()


def test_freed_memory_release_trims_every_nth_batch():
    from pipeline.predict import FreedMemoryRelease

    release = FreedMemoryRelease(every=3)
    calls = []
    real_trim, release._trim = release._trim, lambda pad: calls.append(pad)
    for _ in range(7):
        release.tick()
    assert calls == [0, 0]                                  # after the 3rd and the 6th batch
    if real_trim is not None:                               # glibc: the real call runs and says 0 or 1
        assert real_trim(0) in (0, 1)


def test_crash_journal_key_covers_only_the_rows_of_a_slice():
    """Ray Data hands the actor slices of a larger block, which share the block's buffers: a batch's key is
    that of its own rows (the same as for a copy of them), different for other rows."""
    import pyarrow as pa

    from pipeline.predict import CrashJournal
    from pipeline.preprocess import preprocess_batch

    images = [crop_bytes(f"word {i}") for i in range(12)] + [b"not an image"]
    block = preprocess_batch(pa.table({"image": images}), "image")
    slices = [block.slice(i, 4) for i in range(0, block.num_rows, 4)]
    keys = [CrashJournal.key(s) for s in slices]
    copies = [pa.Table.from_pylist(s.to_pylist(), schema=s.schema) for s in slices]
    assert keys == [CrashJournal.key(c) for c in copies]
    assert len(set(keys)) == len(keys)
    two_chunks = pa.concat_tables([slices[1].slice(0, 1), slices[1].slice(1)])
    assert CrashJournal.key(two_chunks) == keys[1]
