"""`python -m jobs.ocr` as a user runs it: which Ray it runs on (--address), credentials refused on the command
line, malformed storage options, Ctrl-C, and a run whose rows all failed.

User mistakes end with one line `error: ...` and rc 2, never a traceback. The address cases run the command
in a subprocess with its own environment (no RAY_ADDRESS from the test run, Ray's temp dir where said), as a
user's shell would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.ocr import main as ocr_main
from pipeline.errors import UserError
from pipeline.storage import parse_storage_options
from tests.helpers import crop_bytes, free_port, kill_session

REPO = Path(__file__).resolve().parents[1]


def _images(folder: Path, n: int, data: bytes | None = None) -> Path:
    folder.mkdir()
    crops = [crop_bytes(w, size=10 + i) for i, w in enumerate(["Date:", "TOTAL", "R&D", "invoice", "#12-B"])]
    for i in range(n):
        (folder / f"c{i:04d}.png").write_bytes(data if data is not None else crops[i % len(crops)])
    return folder


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(extra)
    return env


def _cli(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.ocr", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _one_error_line(err: str) -> str:
    """The whole of stderr is one line `error: ...` (no traceback, no Ray start-up logs)."""
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err[-3000:]
    return err.strip()


# --- --address ------------------------------------------------------------------------------------------

def test_address_with_nothing_listening_is_one_line(small_model, tmp_path):
    """A cluster address where nothing listens: refused in seconds (ray.init would retry for ~14 minutes
    before its ConnectionError traceback), naming the address and how to choose another."""
    src = _images(tmp_path / "in", 3)
    address = f"127.0.0.1:{free_port()}"
    t = time.time()
    res = _cli(["--input", str(src), "--output", str(tmp_path / "out"), "--model", small_model,
                "--address", address], _env())
    assert time.time() - t < 180                               # not ray.init's ~14 minutes of retries
    assert res.returncode == 2, res.stderr[-3000:]
    err = _one_error_line(res.stderr)
    assert address in err and "--address local" in err and "from --address" in err
    assert not (tmp_path / "out").exists()                       # refused before any work


def test_auto_names_a_stale_registered_cluster(small_model, tmp_path):
    """`auto` with the address an earlier `ray start` registered, now dead: one line naming the address and
    the file it came from (Ray's temp dir moved into the test with RAY_TMPDIR: the machine's is not touched)."""
    src = _images(tmp_path / "in", 3)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    try:
        (ray_tmp / "ray").mkdir()
        address = f"127.0.0.1:{free_port()}"
        (ray_tmp / "ray" / "ray_current_cluster").write_text(address + "\n")
        res = _cli(["--input", str(src), "--output", str(tmp_path / "out"), "--model", small_model],
                   _env(RAY_TMPDIR=str(ray_tmp)))
        assert res.returncode == 2, res.stderr[-3000:]
        err = _one_error_line(res.stderr)
        assert address in err and str(ray_tmp / "ray" / "ray_current_cluster") in err and "--address local" in err

        res = _cli(["--input", str(src), "--output", str(tmp_path / "out"), "--model", small_model],
                   _env(RAY_TMPDIR=str(ray_tmp), RAY_ADDRESS="http://127.0.0.1:8265"))
        assert res.returncode == 2 and "is a dashboard URL" in _one_error_line(res.stderr)
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_address_local_ignores_a_dead_ray_address(small_model, tmp_path):
    """`--address local` starts a Ray of its own even with RAY_ADDRESS naming a dead cluster (which `auto`,
    the default, refuses: checked first)."""
    src = _images(tmp_path / "in", 6)
    dead = f"127.0.0.1:{free_port()}"
    args = ["--input", str(src), "--output", str(tmp_path / "out"), "--model", small_model]
    env = _env(RAY_ADDRESS=dead)
    res = _cli(args, env)
    assert res.returncode == 2 and dead in _one_error_line(res.stderr) and "from RAY_ADDRESS" in res.stderr

    res = _cli(args + ["--address", "local"], env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["rows_in"] == 6
    assert (tmp_path / "out" / "_SUCCESS").exists() and len(pd.read_parquet(tmp_path / "out")) == 6


# --- credentials on the command line ----------------------------------------------------------------------

SECRET_OPTIONS = ["secret", "key", "token", "password", "session_token", "SECRET", "Aws_Secret_Access_Key",
                  "client_kwargs.aws_secret_access_key", "client_kwargs.aws_session_token"]


@pytest.mark.parametrize("name", SECRET_OPTIONS)
def test_secret_storage_option_is_refused(name, tmp_path, capsys):
    """Refused before any work (the input does not even exist), in one line that says where credentials go
    and does not echo the value."""
    value = f"do-not-echo-{uuid.uuid4().hex}"
    rc = ocr_main(["--input", str(tmp_path / "no-such-input"), "--output", str(tmp_path / "out"),
                   "--storage-option", "endpoint_url=http://127.0.0.1:9", "--storage-option", f"{name}={value}"])
    cap = capsys.readouterr()
    assert rc == 2
    err = _one_error_line(cap.err)
    assert f"'{name}' looks like a credential" in err and "--storage-options-file" in err and "AWS_PROFILE" in err
    assert value not in cap.out + cap.err and not (tmp_path / "out").exists()


def test_secret_inside_a_json_value_is_refused_and_allowed_from_a_file(tmp_path):
    value = f"do-not-echo-{uuid.uuid4().hex}"
    with pytest.raises(UserError) as e:
        parse_storage_options([f'client_kwargs={{"region_name": "eu-west-1", "AWS_SESSION_TOKEN": "{value}"}}'])
    assert "'client_kwargs.AWS_SESSION_TOKEN' looks like a credential" in str(e.value) and value not in str(e.value)
    with pytest.raises(UserError) as e:                       # no '=': maybe a credential typed alone, not echoed
        parse_storage_options([value])
    assert value not in str(e.value)

    path = tmp_path / "s3.json"                               # a file is where credentials may go
    path.write_text(json.dumps({"key": "AKIAX", "secret": value, "client_kwargs": {"region_name": "eu-west-1"}}))
    opts = parse_storage_options(["endpoint_url=http://127.0.0.1:9", "client_kwargs.verify=false",
                                  'config_kwargs={"retries": {"max_attempts": 1}}'], str(path))
    assert opts == {"key": "AKIAX", "secret": value, "config_kwargs": {"retries": {"max_attempts": 1}},
                    "client_kwargs": {"region_name": "eu-west-1", "verify": False,
                                      "endpoint_url": "http://127.0.0.1:9"}}


# --- malformed storage options ----------------------------------------------------------------------------

BAD_OPTIONS = {  # case: (--storage-option items, options file content, expected text)
    "config_kwargs_not_an_object": (["config_kwargs=5"], None, "storage option 'config_kwargs' must be a JSON object"),
    "client_kwargs_not_an_object": (["client_kwargs=x"], None, "storage option 'client_kwargs' must be a JSON object"),
    "unknown_config_option_in_file": ([], {"config_kwargs": {"bogus": 1}},
                                      "'config_kwargs': unknown botocore Config option 'bogus'"),
    "bad_config_value": (['config_kwargs={"retries": 5}'], None, "storage option 'config_kwargs': AttributeError"),
    "file_not_an_object": ([], [1, 2], "must hold a JSON object"),
    "value_not_json": (["config_kwargs={retries"], None, "--storage-option config_kwargs: the value starts with '{'"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_storage_option_is_one_line(case, tmp_path, capsys):
    """Caught before the first request (s3fs would raise a raw AttributeError there), naming the option."""
    items, content, expect = BAD_OPTIONS[case]
    args = ["--input", "s3://ocr-test-bucket/crops", "--output", str(tmp_path / "out")]
    args += [a for item in items for a in ("--storage-option", item)]
    if content is not None:
        (tmp_path / "s3.json").write_text(json.dumps(content))
        args += ["--storage-options-file", str(tmp_path / "s3.json")]
    rc = ocr_main(args)
    cap = capsys.readouterr()
    assert rc == 2 and expect in _one_error_line(cap.err), cap.err
    assert not (tmp_path / "out").exists()


# --- Ctrl-C -----------------------------------------------------------------------------------------------

def test_ctrl_c_is_one_line_and_resume_finishes(ray_local, small_model, tmp_path):
    """SIGINT to the job's process group, as Ctrl-C in a terminal sends it, once a part is staged: exit 130 with
    one line saying how to continue, and the --resume it names finishes the output."""
    src = _images(tmp_path / "in", 1800)     # ~10 s of reading after the first part: time for the signal
    out = tmp_path / "out"
    args = ["--input", str(src), "--output", str(out), "--model", small_model, "--rows-per-file", "20",
            "--batch-size", "8", "--window", "32", "--decoder", "beam", "--backend", "torch"]   # slow per crop
    # SIGINT's disposition as a terminal gives it: an ignored SIGINT is inherited across exec, and Python then
    # installs no KeyboardInterrupt handler (in fresh-clone CI runs of the whole suite the job ran to the end)
    job = subprocess.Popen([sys.executable, "-m", "jobs.ocr", "--address", "local", *args], cwd=REPO, env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 180
        while not list((out / "_staging").glob("*.parquet")) if (out / "_staging").exists() else True:
            assert job.poll() is None and time.time() < deadline, "the job ended or stalled before staging a part"
            time.sleep(0.05)
        os.killpg(job.pid, signal.SIGINT)
        _, err = job.communicate(timeout=120)
    finally:
        kill_session(job.pid)                      # its Ray too, whatever happened
        job.wait()
    assert job.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and "--resume" in last and str(out) in last
    assert not (out / "_SUCCESS").exists()

    assert ocr_main(args + ["--resume"]) == 0
    df = pd.read_parquet(out)
    assert len(df) == 1800 and df["path"].is_unique and (out / "_SUCCESS").exists()
    assert json.loads((out / "_summary.json").read_text())["resumed_rows"] > 0


# --- every row failed -------------------------------------------------------------------------------------

def test_all_rows_failed_exits_1_with_the_output_written(ray_local, small_model, tmp_path, capsys):
    src = tmp_path / "crops.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "image": [b"", b"not an image", b"\x89PNG\r\n\x1a\n broken"]}),
                   src)
    out = tmp_path / "out"
    rc = ocr_main(["--input", str(src), "--output", str(out), "--model", small_model])
    cap = capsys.readouterr()
    assert rc == 1, cap.err[-3000:]
    summary = json.loads(cap.out[cap.out.index("{"):])            # the summary is still printed
    assert summary["rows_in"] == 3 and summary["ok"] == 0 and summary["failed"] == 3
    last = cap.err.strip().splitlines()[-1]
    assert last.startswith("error: none of the 3 rows could be read") and "complete" in last
    df = pd.read_parquet(out)                                      # written and complete all the same
    assert (out / "_SUCCESS").exists() and sorted(df["id"]) == ["a", "b", "c"] and df["error"].notna().all()

    good = tmp_path / "good.parquet"                               # one good row among bad ones: rc 0
    pq.write_table(pa.table({"id": ["a", "b"], "image": [b"", crop_bytes("TOTAL")]}), good)
    assert ocr_main(["--input", str(good), "--output", str(tmp_path / "out2"), "--model", small_model]) == 0
