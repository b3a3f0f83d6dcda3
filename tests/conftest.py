"""Shared fixtures: a real local Ray, a small (untrained) model checkpoint, a moto S3 server on loopback (the
builders the tests share are in helpers.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.helpers import FAKE_KEY_ID, FAKE_SECRET, free_port


@pytest.fixture(scope="session")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> str:
    """An untrained small CRNN checkpoint: enough to exercise the pipeline's plumbing."""
    import torch

    from crnn import CRNN, Charset, CRNNConfig, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "small.pt"
    save_checkpoint(path, CRNN(CRNNConfig.small()), Charset(), name="test-small", version="0")
    return str(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- S3 on loopback: a moto server, reached through the standard AWS environment ------------------
# Set for the whole session, at import: Ray workers inherit the environment of the process that starts
# Ray (the session-scoped `ray_local`, maybe before any S3 test runs), and they read S3 too. The keys
# are fake and the endpoint is loopback, so no test can reach real AWS or use a developer's profile.
MOTO_ENDPOINT = os.environ.setdefault("OCR_TESTS_MOTO_ENDPOINT", f"http://127.0.0.1:{free_port()}")
os.environ.update(AWS_ACCESS_KEY_ID=FAKE_KEY_ID, AWS_SECRET_ACCESS_KEY=FAKE_SECRET, AWS_ENDPOINT_URL=MOTO_ENDPOINT,
                  AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def moto_s3() -> str:
    """A moto S3 server on loopback (`moto_server -H 127.0.0.1 -p <port>`); yields its endpoint URL."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    # The server of this interpreter's environment first: another moto on PATH (a pyenv shim, say) may
    # check signatures differently from the botocore installed here (seen: SignatureDoesNotMatch for s3fs).
    own = Path(sys.executable).with_name("moto_server")
    exe = str(own) if own.exists() else shutil.which("moto_server")
    port = MOTO_ENDPOINT.rsplit(":", 1)[1]
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(MOTO_ENDPOINT, timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"moto_server exited ({proc.returncode})")
                time.sleep(0.1)
        else:
            raise RuntimeError("moto_server did not answer in 20 s")
        yield MOTO_ENDPOINT
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


