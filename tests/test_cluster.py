"""`ray job submit` to a real Ray cluster (a head started with `ray start` on this machine), S3 in and out.

The recipe the README gives, run as a user runs it: the head's dashboard on loopback, token authentication
(RAY_AUTH_MODE=token), the repo as the job's working dir, S3 settings through the job's runtime env, and the
credentials through the nodes' environment (not the runtime env, which `ray job list` and the head's logs show).

Separate from the session's `ray_local` (a Ray inside the pytest process): own ports, own temp dir, no ray.init
here; torn down by killing the head's session by process id (`ray stop` would kill every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pandas as pd
import pytest
import s3fs

from tests.conftest import FAKE_KEY_ID, FAKE_SECRET, free_port, kill_session, write_crops_parquet

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def ray_head(moto_s3):
    """`ray start --head --block` in its own session; yields (dashboard URL, env for the `ray` CLI, temp dir)."""
    ports = {flag: free_port() for flag in ("port", "dashboard-port", "ray-client-server-port", "node-manager-port",
                                            "object-manager-port", "metrics-export-port", "dashboard-agent-listen-port",
                                            "dashboard-agent-grpc-port", "runtime-env-agent-port")}
    temp_dir = tempfile.mkdtemp(prefix="rayc", dir="/tmp")   # short: Ray's socket paths live under it
    # Token auth (Ray >= 2.52): the head and every `ray` CLI call need RAY_AUTH_MODE=token and the same token.
    # Credentials for S3 are part of the nodes' environment, as a node's instance role would be; the endpoint
    # is not (the job's runtime env brings it), so the job can only reach S3 if the runtime env works.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_ENDPOINT_URL"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    cmd = [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
           "--include-dashboard", "true", "--num-cpus", "2", "--num-gpus", "0", "--object-store-memory", str(300 << 20),
           "--temp-dir", temp_dir, "--disable-usage-stats"]
    cmd += [a for flag, port in ports.items() for a in (f"--{flag}", str(port))]
    log = open(Path(temp_dir) / "head.out", "w")
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        req = urllib.request.Request(f"{url}/api/version", headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
        for _ in range(240):
            try:
                urllib.request.urlopen(req, timeout=2)
                break
            except OSError:
                assert head.poll() is None, (Path(temp_dir) / "head.out").read_text()[-3000:]
                time.sleep(0.5)
        else:
            pytest.fail("Ray head's dashboard did not answer in 120 s")
        yield url, env, temp_dir
    finally:
        kill_session(head.pid)      # SIGTERM would drain for 30 s; everything here is ours, in the head's session
        head.wait()
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _ray(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_ray_job_submit_s3_in_s3_out(ray_head, small_model, moto_s3, tmp_path):
    url, env, temp_dir = ray_head
    fs = s3fs.S3FileSystem()
    bucket = "ocr-cluster"
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    bad = {2: b"", 9: b"not an image"}
    table = write_crops_parquet(fs, f"{bucket}/crops", n=24, bad=bad, files=3)
    out = f"s3://{bucket}/out-{uuid.uuid4().hex[:8]}"
    job_id = f"ocr-test-{uuid.uuid4().hex[:8]}"
    runtime_env = {"env_vars": {"AWS_ENDPOINT_URL": moto_s3, "AWS_DEFAULT_REGION": "us-east-1"}}

    submit = _ray(["job", "submit", "--address", url, "--submission-id", job_id, "--working-dir", ".",
                   "--runtime-env-json", json.dumps(runtime_env), "--",
                   "python", "-m", "jobs.ocr", "--input", f"s3://{bucket}/crops/", "--output", out,
                   "--model", small_model, "--batch-size", "8"], env)
    req = urllib.request.Request(f"{url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
    status = json.load(urllib.request.urlopen(req, timeout=10))["status"]
    logs = _ray(["job", "logs", "--address", url, job_id], env, timeout=60)
    assert status == "SUCCEEDED", submit.stdout[-4000:] + submit.stderr[-4000:]
    assert submit.returncode == 0
    assert '"rows_in": 24' in logs.stdout                      # the job's own summary, in its logs

    df = pd.read_parquet(out, storage_options={"client_kwargs": {"endpoint_url": moto_s3}})
    assert len(df) == 24 and sorted(df["id"]) == sorted(table["id"].to_pylist())
    assert list(df.columns) == ["id", "page", "label", "text", "score", "error", "model"]
    errors = df.set_index("id")["error"]
    assert errors.loc[[f"crop-{i:04d}" for i in bad]].notna().all() and errors.notna().sum() == len(bad)
    key = out.removeprefix("s3://")
    assert fs.exists(f"{key}/_SUCCESS") and not fs.find(f"{key}/_staging")

    # The credentials are nowhere a cluster user can look: submit output, job logs, `ray job list`, the
    # head's log files; nor in the output.
    listing = _ray(["job", "list", "--address", url], env, timeout=60)
    shown = submit.stdout + submit.stderr + logs.stdout + logs.stderr + listing.stdout + listing.stderr
    assert FAKE_KEY_ID not in listing.stdout and FAKE_SECRET not in shown
    logs_on_head = [p for p in Path(temp_dir).glob("session_*/logs/**/*") if p.is_file()]
    assert logs_on_head and not [p for p in logs_on_head if FAKE_SECRET.encode() in p.read_bytes()]
    assert FAKE_SECRET.encode() not in b"".join(fs.cat_file(f) for f in fs.find(key))
