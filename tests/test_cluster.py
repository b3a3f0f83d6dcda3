"""`ray job submit` to a real Ray cluster (a head started with `ray start` on this machine), S3 in and out.

The recipe docs/cluster.md gives, run as a user runs it: the head's dashboard on loopback, token authentication
(RAY_AUTH_MODE=token), the repo as the job's working dir, S3 settings through the job's runtime env, and the
credentials through the nodes' environment or a storage-options file read by the driver (not the runtime env,
which `ray job list` and the head's logs show, nor the command line, which Ray records too).

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

from tests.helpers import FAKE_KEY_ID, FAKE_SECRET, free_port, kill_session, write_crops_parquet

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


def test_credentials_from_a_file_are_nowhere_a_cluster_user_looks(ray_head, small_model, moto_s3, tmp_path):
    """The README's recipe for explicit credentials: a storage-options file on the head node, read by the job's
    driver; its values reach the workers inside the pickled filesystem. The file also carries the endpoint (the
    runtime env does not, and the nodes' environment has none), so the job reaches S3 only through it.

    The secret is then in none of what Ray records of the job (`ray job list`, `ray job logs`, the dashboard's
    `/api/jobs/`, the head's files) nor in the output or `_summary.json`; the file's path, on the entrypoint,
    is in all three of Ray's listings, as a secret on the command line would be. A `--storage-option secret=`
    job is refused with one line that does not echo the value."""
    url, env, temp_dir = ray_head
    fs = s3fs.S3FileSystem()
    bucket = "ocr-cluster-file"
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    write_crops_parquet(fs, f"{bucket}/crops", n=12, files=2)
    secret = f"file-secret-{uuid.uuid4().hex}"
    options = tmp_path / "s3.json"
    options.write_text(json.dumps({"key": FAKE_KEY_ID, "secret": secret, "endpoint_url": moto_s3}))
    options.chmod(0o600)
    out = f"s3://{bucket}/out-{uuid.uuid4().hex[:8]}"
    job_id = f"ocr-file-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"}

    # Refused first: the value is on the command line the user typed, so Ray has it (`ray job list`, and the
    # driver's log, which starts by echoing the entrypoint: the hazard the refusal is about), but the job's
    # own output, one line, does not repeat it.
    refused_id, refused = f"ocr-refused-{uuid.uuid4().hex[:8]}", f"typed-secret-{uuid.uuid4().hex}"
    submit = _ray(["job", "submit", "--address", url, "--submission-id", refused_id, "--working-dir", ".", "--",
                   "python", "-m", "jobs.ocr", "--input", f"s3://{bucket}/crops/", "--output", out,
                   "--storage-option", f"secret={refused}"], env)
    logs = _ray(["job", "logs", "--address", url, refused_id], env, timeout=60).stdout
    status = json.load(urllib.request.urlopen(urllib.request.Request(f"{url}/api/jobs/{refused_id}", headers=auth),
                                              timeout=10))
    assert submit.returncode != 0 and status["status"] == "FAILED", submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "exit code 2" in status["message"] and "Traceback" not in logs
    _, _, own = logs.partition(f"Running entrypoint for job {refused_id}: ")
    assert own and refused in own.splitlines()[0], logs
    error = [line for line in own.splitlines()[1:] if line.strip()]
    assert len(error) == 1 and error[0].startswith("error: --storage-option 'secret' looks like a credential"), logs
    assert refused not in error[0] and "--storage-options-file" in error[0]
    assert refused in _ray(["job", "list", "--address", url], env, timeout=60).stdout
    assert not fs.exists(out.removeprefix("s3://"))

    runtime_env = {"env_vars": {"AWS_DEFAULT_REGION": "us-east-1"}}
    submit = _ray(["job", "submit", "--address", url, "--submission-id", job_id, "--working-dir", ".",
                   "--runtime-env-json", json.dumps(runtime_env), "--",
                   "python", "-m", "jobs.ocr", "--input", f"s3://{bucket}/crops/", "--output", out,
                   "--model", small_model, "--batch-size", "8", "--storage-options-file", str(options)], env)
    logs = _ray(["job", "logs", "--address", url, job_id], env, timeout=60)
    api = urllib.request.urlopen(urllib.request.Request(f"{url}/api/jobs/", headers=auth), timeout=10).read().decode()
    listing = _ray(["job", "list", "--address", url], env, timeout=60)
    status = next(j for j in json.loads(api) if j["submission_id"] == job_id)["status"]
    assert status == "SUCCEEDED", submit.stdout[-4000:] + submit.stderr[-4000:] + logs.stdout[-4000:]
    assert '"rows_in": 12' in logs.stdout and '"ok": 12' in logs.stdout

    key = out.removeprefix("s3://")
    summary = json.loads(fs.cat_file(f"{key}/_summary.json"))
    assert summary["options"]["storage_options"] == ["client_kwargs", "key", "secret"]   # the file's, by name
    assert len(pd.read_parquet(out, storage_options={"client_kwargs": {"endpoint_url": moto_s3}})) == 12

    # Where it is looked for. The entrypoint (with the file's path) is in each of Ray's records of the job.
    for shown in (listing.stdout, api, submit.stdout + submit.stderr, logs.stdout):
        assert str(options) in shown and secret not in shown
    assert secret not in logs.stderr
    written = {f: fs.cat_file(f) for f in fs.find(key)}
    assert {f"{key}/_summary.json", f"{key}/_SUCCESS"} < set(written)    # and the Parquet part(s)
    assert not [f for f, data in written.items() if secret.encode() in data]
    head_files = [p for p in Path(temp_dir).rglob("*") if p.is_file() and not p.is_symlink()]
    assert [p for p in head_files if "/logs/" in str(p)]
    assert not [p for p in head_files if secret.encode() in p.read_bytes()]
