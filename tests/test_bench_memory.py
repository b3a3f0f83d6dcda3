"""jobs.bench.memory's accounting: which process is which, and their memory read from /proc."""

import os

from jobs.bench.memory import _breakdown, _role


def test_roles_from_ray_process_titles():
    assert _role("python -m jobs.ocr --input in --output out") == "driver"
    assert _role("ray::MapWorker(MapBatches(CRNNPredictor))") == "model actors"
    assert _role("ray::MapBatches(preprocess_batch)->MapBatches(sort_by_width)") == "task workers"
    assert _role("ray::IDLE") == "task workers"
    assert _role("ray::_StatsActor") == "ray services"
    assert _role("/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet --raylet_socket_name=x") == \
        "ray services"


def test_breakdown_reads_this_process():
    roles = _breakdown({os.getpid(): "python -m jobs.ocr --input in"})
    assert list(roles) == ["driver"]
    driver = roles["driver"]
    assert driver["processes"] == 1
    assert driver["anon"] > 10 and driver["file"] > 1      # a Python process with numpy loaded: MBs of each
    assert driver["shmem"] >= 0
    assert _breakdown({2**22 + 7: "ray::IDLE"})["task workers"]["anon"] == 0   # gone processes count nothing
