"""The run-ahead bound: tasks upstream of a slow actor pool start only a few tasks ahead of it (real local Ray)."""

import time

import numpy as np
import pytest
import ray

from pipeline.ray_compat import RUN_AHEAD_TASKS, bound_run_ahead

BLOCKS = 30


def _events(log_dir, kind: str) -> list[float]:
    return sorted(float(p.name.split("-")[2]) for p in log_dir.glob(f"{kind}-*"))


def _run(log_dir, bounded: bool) -> tuple[list[float], list[float]]:
    # Defined here, so that Ray pickles them by value: the workers cannot import a test module.
    def stamp(kind: str, key: int) -> None:
        (log_dir / f"{kind}-{key:03d}-{time.monotonic():.6f}").touch()

    def produce(batch: dict) -> dict:
        stamp("started", int(batch["id"][0]))
        return {"id": batch["id"], "payload": np.zeros((len(batch["id"]), 256 * 1024), np.uint8)}

    class SlowReader:
        def __call__(self, batch: dict) -> dict:
            time.sleep(0.5)   # the producer takes ~0.2 s a block
            stamp("read", int(batch["id"][0]))
            return {"id": batch["id"]}

    ds = ray.data.range(BLOCKS, override_num_blocks=BLOCKS)
    ds = ds.map_batches(produce, batch_size=1, num_cpus=1)   # unlike the actors' CPUs: not fused into them
    ds = ds.map_batches(SlowReader, batch_size=1, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5)
    if bounded:
        bound_run_ahead(ds.context)
    assert sorted(r["id"] for r in ds.take_all()) == list(range(BLOCKS))   # nothing lost, nothing twice
    return _events(log_dir, "started"), _events(log_dir, "read")


def _most_ahead(started: list[float], read: list[float]) -> int:
    """The most producer tasks started beyond the blocks the actor had read at that moment."""
    return max(k + 1 - sum(r <= t for r in read) for k, t in enumerate(started))


@pytest.mark.parametrize("bounded", [True, False])
def test_upstream_tasks_start_a_bounded_number_ahead_of_the_actors(ray_local, tmp_path, bounded):
    started, read = _run(tmp_path, bounded)
    assert len(started) == len(read) == BLOCKS
    # In flight to the actor (Ray Data sends an actor 2 tasks at once), RUN_AHEAD_TASKS waiting, the producer
    # task running (1 CPU of the 1.5 the actor leaves), and one of slack.
    limit = 2 + RUN_AHEAD_TASKS + 1 + 1
    ahead = _most_ahead(started, read)
    if bounded:
        assert ahead <= limit
    else:   # the control: unbounded, the producers run through the input while the actor reads its first blocks
        assert ahead > 2 * limit
