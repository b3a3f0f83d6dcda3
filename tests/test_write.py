"""Safe output: one run at a time (the lease), a commit no reader sees half of (and that the next run finishes
if it was interrupted), `_SUCCESS` listing the parts, empty inputs, and failed rows counted by kind."""

from __future__ import annotations

import gc
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline.commit as commit
import pipeline.lease as lease_module
from jobs.ocr import main as ocr_main
from pipeline import OcrOptions, run_ocr
from pipeline.errors import UserError
from pipeline.storage import Storage
from pipeline.write import OutputCheckFailed, OutputWriter
from tests.helpers import crop_bytes, write_crops_parquet

REPO = Path(__file__).resolve().parents[1]


def _writer(out: Path, overwrite: bool = False, resume: bool = False) -> OutputWriter:
    return OutputWriter(Storage(str(out)), overwrite=overwrite, resume=resume)


def _table(tag: str, n: int) -> pa.Table:
    return pa.table({"id": [f"{tag}-{i}" for i in range(n)], "text": [tag] * n, "error": pa.nulls(n, pa.string())})


def _committed(out: Path, tag: str, parts: int = 3, rows: int = 4, overwrite: bool = False) -> OutputWriter:
    """A complete output of `parts` parts of `rows` rows, all with text `tag`, committed by a writer."""
    w = _staged(out, tag, parts, rows, overwrite)
    w.commit({"rows_in": parts * rows})
    return w


def _staged(out: Path, tag: str, parts: int = 3, rows: int = 4, overwrite: bool = True) -> OutputWriter:
    w = _writer(out, overwrite).__enter__()
    for k in range(parts):
        pq.write_table(_table(f"{tag}{k}", rows), Path(w.staging) / f"{tag}-{k}.parquet")
    return w


def _seen(out: Path) -> str:
    """What a pandas reader of the output sees: 'missing', or the set of tags of the rows it read."""
    try:
        df = pd.read_parquet(out)
    except FileNotFoundError:
        return "missing"
    return f"{len(df)} rows: " + ",".join(sorted(set(df["text"].str[:3])))


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _lease(path: Path, **fields) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"run_id": "other-run", "host": socket.gethostname(), "pid": os.getpid(), "pid_start": None,
              "started": time.time() - 5, "heartbeat": time.time()}
    path.write_text(json.dumps(record | fields))


def _kill_holders(out: Path) -> None:
    """Make every lease at or beside `out` look like its process died (as after a kill)."""
    for lease in [*out.parent.glob(f".{out.name}.*/_lease.json"), *out.glob("**/_lease.json")]:
        lease.write_text(json.dumps(json.loads(lease.read_text()) | {"pid": _dead_pid()}))


def _one_line_error(capsys) -> str:
    """The job's error line: the last line on stderr, the only `error:` one, no traceback (Python warnings,
    which pytest shows only when its warnings plugin is off, may come before it)."""
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert sum(line.startswith("error:") for line in lines) == 1, err
    return lines[-1]


# --- one run at a time ---------------------------------------------------------------------------------

def test_second_run_refuses_while_another_process_holds_the_output(tmp_path, small_model, capsys):
    """A live run in another process holds the lease: plain, --resume and --overwrite runs refuse in one line
    and leave its staged parts alone; once that process is killed, the next run takes the output over."""
    src = tmp_path / "in"
    src.mkdir()
    write_crops_parquet(fsspec.filesystem("file"), str(src), n=4)
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pipeline.storage import Storage; "
         "from pipeline.write import OutputWriter; w = OutputWriter(Storage(sys.argv[1])).__enter__(); "
         "print(w.run_id, flush=True); time.sleep(120)", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        run_id = holder.stdout.readline().strip()
        assert run_id, "the holder did not take the lease"
        staged = out / "_staging" / "theirs.parquet"
        pq.write_table(_table("the", 3), staged)
        args = ["--input", str(src), "--output", str(out), "--model", small_model]
        for extra in ([], ["--resume"], ["--overwrite"]):
            assert ocr_main(args + extra) == 2
            err = _one_line_error(capsys)
            assert f"is in use by run {run_id} (pid {holder.pid} on {socket.gethostname()}" in err, err
            assert "--resume" in err and "taken over" in err
        assert staged.exists() and json.loads((out / "_staging" / "_lease.json").read_text())["run_id"] == run_id
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with _writer(out, resume=True) as w:            # its process is gone: taken over, its parts kept
        assert json.loads((out / "_staging" / "_lease.json").read_text())["run_id"] == w.run_id
        assert staged.exists()


@pytest.mark.parametrize("case", ["dead_pid", "stale_heartbeat", "live_other_host", "reused_pid"])
def test_lease_taken_over_only_from_a_run_that_is_gone(tmp_path, case):
    if case == "reused_pid" and not os.path.exists("/proc/self/stat"):
        pytest.skip("a process's start time is read from /proc (Linux)")
    out = tmp_path / "out"
    lease = out / "_staging" / "_lease.json"
    if case == "dead_pid":
        _lease(lease, pid=_dead_pid())
    elif case == "stale_heartbeat":                 # another host: only the heartbeat can tell
        _lease(lease, host="elsewhere", heartbeat=time.time() - lease_module.STALE_S - 1)
    elif case == "live_other_host":
        _lease(lease, host="elsewhere", pid=_dead_pid())
    else:                                           # this pid, but not the process that took the lease
        _lease(lease, pid_start="1")
    w = _writer(out)
    if case == "live_other_host":
        with pytest.raises(UserError, match=r"in use by run other-run \(pid \d+ on elsewhere, .* last heartbeat 0 s"):
            w.__enter__()
        assert json.loads(lease.read_text())["run_id"] == "other-run"
    else:
        with w:
            assert json.loads(lease.read_text())["run_id"] == w.run_id
        assert not lease.exists()


def test_heartbeat_refreshes_and_a_lost_lease_is_never_committed(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_module, "HEARTBEAT_S", 0.05)
    out = tmp_path / "out"
    w = _staged(out, "new")
    lease = out / "_staging" / "_lease.json"
    first = json.loads(lease.read_text())["heartbeat"]
    time.sleep(0.5)
    assert json.loads(lease.read_text())["heartbeat"] > first
    _lease(lease, run_id="usurper")                 # taken over (this run was silent past STALE_S, say)
    with pytest.raises(UserError, match=r"lost its lease to run usurper: nothing was committed"):
        w.commit({})
    assert not (out / "_SUCCESS").exists() and not list(out.glob("*.parquet"))
    assert json.loads(lease.read_text())["run_id"] == "usurper"    # the new holder's lease left alone


def test_lease_let_go_on_failure_and_when_the_writer_is_dropped(tmp_path):
    out = tmp_path / "out"
    _committed(out, "old")
    with pytest.raises(UserError, match="already complete"):
        _writer(out).__enter__()
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "_summary.json", "old-0.parquet", "old-1.parquet",
                                                     "old-2.parquet"]
    w = _staged(tmp_path / "other", "x")
    lease = tmp_path / "other" / "_staging" / "_lease.json"
    assert lease.exists()
    del w
    gc.collect()
    assert not lease.exists() and (tmp_path / "other" / "_staging" / "x-0.parquet").exists()
    with _writer(tmp_path / "other", resume=True):                 # free again
        pass


# --- the commit ----------------------------------------------------------------------------------------

def test_commit_is_never_seen_half(tmp_path, monkeypatch):
    """A reader between any two filesystem steps of a commit over a complete output sees the old output,
    none, or the whole new one."""
    out = tmp_path / "out"
    _committed(out, "old", parts=3)
    old, new = _seen(out), "12 rows: new"
    w = _staged(out, "new", parts=3)
    seen, rename = [], os.rename

    def watched(a, b):
        seen.append(_seen(out))
        rename(a, b)
        seen.append(_seen(out))

    monkeypatch.setattr(os, "rename", watched)
    w.commit({"rows_in": 12})
    monkeypatch.undo()
    assert old == "12 rows: old" and seen[0] == old and seen[-1] == new and _seen(out) == new
    assert set(seen) <= {old, "missing", new}, seen
    success = json.loads((out / "_SUCCESS").read_text())
    assert success["run_id"] == w.run_id and success["rows"] == 12
    assert sorted((p["name"], p["rows"]) for p in success["parts"]) == [(f"new-{k}.parquet", 4) for k in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]    # no commit or old folder left beside it
    assert not (out / "_lease.json").exists() and not (out / "_staging").exists()


class _Killed(BaseException):
    """Stands for the process dying at that point (nothing after it runs)."""


@pytest.mark.parametrize("step", [1, 2, 3, 4])
def test_interrupted_commit_is_finished_by_the_next_run(tmp_path, monkeypatch, step):
    """Killed before rename `step` of a commit over a complete output (4: after the last one, before the old
    output is removed): readers see the old output, none, or the new one; the next run finishes the commit."""
    out = tmp_path / "out"
    _committed(out, "old")
    w = _staged(out, "new")
    calls, rename = [], os.rename

    def dies(a, b):
        calls.append(a)
        if len(calls) == step:
            raise _Killed
        rename(a, b)

    monkeypatch.setattr(os, "rename", dies)
    monkeypatch.setattr(commit.shutil, "rmtree", lambda *a, **k: (_ for _ in ()).throw(_Killed()))
    monkeypatch.setattr(lease_module.Lease, "release", lambda self: self.stop())   # a killed run lets go of nothing
    with pytest.raises(_Killed):
        w.commit({"rows_in": 12})
    monkeypatch.undo()
    assert _seen(out) in {"12 rows: old", "missing", "12 rows: new"}
    assert len(list(tmp_path.iterdir())) > 1 or step == 1           # left half done: a folder beside the output
    _kill_holders(out)

    nxt = _writer(out)
    with pytest.raises(UserError, match="already complete"):        # finished: complete, and it is the new one
        nxt.__enter__()
    assert _seen(out) == "12 rows: new" and json.loads((out / "_SUCCESS").read_text())["run_id"] == w.run_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "_summary.json", "new-0.parquet", "new-1.parquet",
                                                     "new-2.parquet"]


def test_interrupted_commit_without_a_whole_success_goes_back_to_staging(tmp_path, monkeypatch):
    """A commit folder whose `_SUCCESS` is not whole (defensive: the commit writes it before any rename) is
    not rolled forward: the old output comes back and the parts return to staging for --resume."""
    out = tmp_path / "out"
    _committed(out, "old")
    w = _staged(out, "new")
    calls, rename = [], os.rename

    def dies(a, b):
        calls.append(a)
        if len(calls) == 3:                          # staging -> commit and out -> old done: no output now
            raise _Killed
        rename(a, b)

    monkeypatch.setattr(os, "rename", dies)
    monkeypatch.setattr(lease_module.Lease, "release", lambda self: self.stop())
    with pytest.raises(_Killed):
        w.commit({})
    monkeypatch.undo()
    assert _seen(out) == "missing"
    commit = tmp_path / f".out.commit-{w.run_id}"
    (commit / "_SUCCESS").write_text('{"run_id": "x", "parts": [{"na')
    _kill_holders(out)

    nxt = _writer(out)
    with pytest.raises(UserError, match="already complete"):        # the old output is back
        nxt.__enter__()
    assert _seen(out) == "12 rows: old"
    assert sorted(p.name for p in (out / "_staging").glob("*.parquet")) == [f"new-{k}.parquet" for k in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_with_other_files_is_committed_in_place(tmp_path):
    """An output folder holding files not the job's own is not swapped (that would take them away): parts are
    moved in, and `_SUCCESS`, last, lists them."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".gitkeep").write_text("mine")
    w = _staged(out, "new", parts=2, overwrite=False)
    w.commit({})
    assert (out / ".gitkeep").read_text() == "mine" and _seen(out) == "8 rows: new"
    success = json.loads((out / "_SUCCESS").read_text())
    assert {p["name"] for p in success["parts"]} == {p.name for p in out.glob("*.parquet")} == {"new-0.parquet",
                                                                                                "new-1.parquet"}
    assert not (out / "_staging").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_counts_by_kind_of_error(tmp_path):
    w = _staged(tmp_path / "out", "x", parts=0)
    errors = ["image too large: 8000x8000 > limit", None, "truncated image", "image too large: 9000x20 > limit",
              "not an image (unrecognised format)", None, "truncated image"]
    pq.write_table(pa.table({"id": [str(i) for i in range(7)], "error": errors}), Path(w.staging) / "a.parquet")
    pq.write_table(pa.table({"id": ["7"], "error": ["truncated image"]}), Path(w.staging) / "b.parquet")
    counts = w.counts("id")
    assert counts == {"rows": 8, "failed": 6, "unique_ids": 8, "null_ids": 0,
                      "errors": {"truncated image": 3, "image too large": 2, "not an image (unrecognised format)": 1}}
    assert list(counts["errors"]) == ["truncated image", "image too large", "not an image (unrecognised format)"]
    w.close()


def test_the_writer_flows_one_way(tmp_path):
    """`with OutputWriter(...) as w`: the lease is held in the block; stage, count what was staged, commit. A
    block left by an error (the check failed) commits nothing, keeps the staged part and lets go of the lease."""
    out = tmp_path / "out"
    schema = pa.schema([("id", pa.string()), ("error", pa.string())])
    with _writer(out) as w:
        assert json.loads((out / "_staging" / "_lease.json").read_text())["run_id"] == w.run_id
        assert len(w.resumed_ids("id")) == 0
        w.stage_empty(schema)
        assert [Path(p).name for p in w.parts()] == [f"{w.run_id}-empty.parquet"]
        assert w.counts("id") == {"rows": 0, "failed": 0, "errors": {}, "unique_ids": 0, "null_ids": 0}
        w.commit({"rows_in": 0})
    assert json.loads((out / "_summary.json").read_text()) == {"rows_in": 0}
    assert json.loads((out / "_SUCCESS").read_text())["run_id"] == w.run_id and not (out / "_staging").exists()

    with pytest.raises(OutputCheckFailed, match=r"output check failed: 0 rows in, 1 written; nothing was committed"):
        with _writer(out, overwrite=True) as again:
            again.stage_empty(schema)
            raise again.incomplete("0 rows in, 1 written", resumable=False)
    assert json.loads((out / "_SUCCESS").read_text())["run_id"] == w.run_id          # the old output stays
    assert [p.name for p in (out / "_staging").iterdir()] == [f"{again.run_id}-empty.parquet"]


def test_resuming_keeps_the_parts_and_reads_their_ids(tmp_path):
    """An interrupted run's parts: ids of the readable ones come back; a half-written one is deleted."""
    out = tmp_path / "out"
    w = _staged(out, "old", parts=2, rows=3)
    (Path(w.staging) / "half.parquet").write_bytes(b"PAR1 cut short")
    w.close()
    with _writer(out, resume=True) as again:
        assert sorted(again.resumed_ids("id").to_pylist()) == [f"old{k}-{i}" for k in range(2) for i in range(3)]
        assert sorted(Path(p).name for p in again.parts()) == ["old-0.parquet", "old-1.parquet"]
    with _writer(out) as fresh:                       # not resuming: the parts are discarded
        assert fresh.parts() == [] and len(fresh.resumed_ids("id")) == 0


# --- through the job -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["file", "folder"])
def test_empty_parquet_input_gives_an_empty_complete_output(tmp_path, small_model, layout):
    schema = pa.schema([("id", pa.string()), ("image", pa.binary()), ("page", pa.int32()), ("text", pa.string())])
    if layout == "file":
        src = tmp_path / "empty.parquet"
        pq.write_table(schema.empty_table(), src)
    else:
        src = tmp_path / "in"
        src.mkdir()
        for k in range(2):
            pq.write_table(schema.empty_table(), src / f"part-{k}.parquet")
    out = tmp_path / "out"
    t = time.time()
    assert ocr_main(["--input", str(src), "--output", str(out), "--model", small_model]) == 0
    assert time.time() - t < 10                      # no Ray, no model actors
    table = pq.read_table(out)
    assert table.num_rows == 0
    assert table.schema.names == ["id", "page", "text_input", "text", "score", "error", "model"]
    assert [str(table.schema.field(c).type) for c in table.schema.names] == \
        ["string", "int32", "string", "string", "float", "string", "string"]
    assert len(pd.read_parquet(out)) == 0
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["rows_in"] == summary["ok"] == summary["failed"] == 0 and summary["errors"] == {}
    success = json.loads((out / "_SUCCESS").read_text())
    assert success["rows"] == 0 and [p["name"] for p in success["parts"]] == [p.name for p in out.glob("*.parquet")]
    assert not (out / "_staging").exists()


def test_success_lists_the_parts_and_summary_counts_errors(ray_local, small_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    bad = {1: b"", 4: crop_bytes("cut")[:40], 6: b"not an image at all", 9: None}
    write_crops_parquet(fsspec.filesystem("file"), str(src), n=24, bad=bad)
    out = tmp_path / "out"
    summary = run_ocr(OcrOptions(input=str(src), output=str(out), model=small_model, rows_per_file=5,
                                 batch_size=8, window=8))
    success = json.loads((out / "_SUCCESS").read_text())
    files = {p.name: pq.read_metadata(p).num_rows for p in out.glob("*.parquet")}
    assert len(files) > 1 and {p["name"]: p["rows"] for p in success["parts"]} == files
    assert success["rows"] == sum(files.values()) == summary["rows_in"] == 24
    df = pd.read_parquet(out)
    kinds = df["error"].dropna().str.split(":", n=1).str[0].str.strip().value_counts().to_dict()
    assert summary["errors"] == kinds and sum(kinds.values()) == summary["failed"] == len(bad)
    assert json.loads((out / "_summary.json").read_text())["errors"] == kinds


def test_output_check_failure_is_one_line_and_keeps_the_staged_parts(ray_local, small_model, tmp_path, capsys,
                                                                     monkeypatch):
    import pipeline.run

    src = tmp_path / "in"
    src.mkdir()
    write_crops_parquet(fsspec.filesystem("file"), str(src), n=6)
    monkeypatch.setattr(pipeline.run, "_count_rows", lambda source: 7)   # one row "lost" on the way
    out = tmp_path / "out"
    assert ocr_main(["--input", str(src), "--output", str(out), "--model", small_model]) == 2
    err = _one_line_error(capsys)
    assert "output check failed: 7 rows in, 6 written (6 distinct ids)" in err and "--resume" in err
    assert issubclass(OutputCheckFailed, UserError)
    assert not (out / "_SUCCESS").exists() and list((out / "_staging").glob("*.parquet"))
    assert not (out / "_staging" / "_lease.json").exists()          # let go: a --resume can start at once


# --- S3 ------------------------------------------------------------------------------------------------

def test_lease_and_success_on_s3(moto_s3):
    """On S3: a live lease refuses a second writer; the commit moves the parts and `_SUCCESS` lists them."""
    import s3fs

    fs = s3fs.S3FileSystem()
    bucket = "write-test"
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    uri = f"s3://{bucket}/out-{uuid.uuid4().hex[:8]}"
    w = OutputWriter(Storage(uri)).__enter__()
    with pytest.raises(UserError, match=rf"in use by run {w.run_id} \(pid {os.getpid()}"):
        other = OutputWriter(Storage(uri))
        other.run_id = "second"
        other.__enter__()
    key = uri.removeprefix("s3://")
    for k in range(2):
        buf = io.BytesIO()
        pq.write_table(_table(f"s3{k}", 3), buf)
        fs.pipe(f"{key}/_staging/p{k}.parquet", buf.getvalue())
    w.commit({"rows_in": 6})
    fs.invalidate_cache()
    success = json.loads(fs.cat_file(f"{key}/_SUCCESS"))
    assert sorted((p["name"], p["rows"]) for p in success["parts"]) == [("p0.parquet", 3), ("p1.parquet", 3)]
    assert sorted(f.rsplit("/", 1)[1] for f in fs.ls(key)) == ["_SUCCESS", "_summary.json", "p0.parquet", "p1.parquet"]
    with pytest.raises(UserError, match="already complete"):
        OutputWriter(Storage(uri)).__enter__()
