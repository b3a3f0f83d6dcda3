"""Every use of Ray's private or deprecated interfaces, in one place, each behind one guard.

They are what Ray 2.60 offers for: holding back the operators upstream of the model actors (Ray Data's
backpressure policies), reading Parquet with the reader whose tasks start at once (`use_datasource_v2` off), the
cluster a `ray start` registered on this machine, and bounding actor restarts (`ray_remote_args`). A Ray without
one of them runs the job as plain Ray Data would, and says so where it matters; docs/decisions.md has the
measurements behind each.
"""

from __future__ import annotations

import contextlib
import warnings

import ray
from ray.data import DataContext

try:   # Ray Data's internals (as of Ray 2.60): a Ray without them runs the job unbounded, as Ray Data would
    from ray.data._internal.execution.backpressure_policy import (ENABLED_BACKPRESSURE_POLICIES,
                                                                  ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY,
                                                                  BackpressurePolicy)
    from ray.data._internal.execution.operators.actor_pool_map_operator import ActorPoolMapOperator
except ImportError:
    BackpressurePolicy = object


# --- backpressure: reading and preprocessing at most a few tasks ahead of the model actors ----------------
# Reading, decoding and resizing a crop is cheaper than recognising it, so on their own the operators before the
# model actors run through the whole input long before the model does, and their output waits in the object
# store. Ray Data's own bounds act on every operator at once, and the model actors' outputs, waiting for write
# tasks, then stop the actors too. This policy holds back only the operators upstream of the model actors. Its
# cost on 2 cores: write tasks get the one CPU the actors leave only between preprocessing tasks, so the first
# part is staged later.

RUN_AHEAD_TASKS = 2   # tasks' worth of an operator's output that may wait for the next operator's tasks


class UpstreamOfActorsRunAhead(BackpressurePolicy):
    """An operator upstream of the model actors starts a task only while its output that waits for the next
    operator (alive, and not yet the input of one of that operator's tasks) is under RUN_AHEAD_TASKS tasks'
    worth (its average so far): memory flat in the input's size, whatever the crops' widths and however
    many actors read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held = set()
        todo = [op for op in self._topology if isinstance(op, ActorPoolMapOperator)]
        while todo:
            for up in todo.pop().input_dependencies:
                if up not in self._held:
                    self._held.add(up)
                    todo.append(up)

    @property
    def name(self) -> str:
        return "UpstreamOfActorsRunAhead"

    def can_add_input(self, op) -> bool:
        per_task = op.metrics.average_bytes_outputs_per_task
        if op not in self._held or not per_task:   # not upstream of the actors, or no task's output to bound by
            return True
        taken = sum(d.metrics.obj_store_mem_pending_task_inputs or 0 for d in op.output_dependencies)
        return self._resource_manager.get_mem_op_outputs(op) - taken < RUN_AHEAD_TASKS * per_task


def bound_run_ahead(context: DataContext) -> None:
    """Add `UpstreamOfActorsRunAhead` to a Dataset's own context (`ds.context`), beside Ray Data's policies."""
    if BackpressurePolicy is object:
        print(f"note: Ray {ray.__version__} lacks the backpressure interface of Ray 2.60: the preprocessing is "
              f"not held back, and the job's memory grows with its input")
        return
    policies = context.get_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, ENABLED_BACKPRESSURE_POLICIES)
    context.set_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, [*policies, UpstreamOfActorsRunAhead])


# --- reading Parquet ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def first_parquet_reader():
    """Within the block, `ray.data.read_parquet` builds Ray Data's first Parquet reader (`use_datasource_v2`
    off), whose read tasks start at once; the second, Ray 2.60's default, first lists the files in a task of its
    own, which on a small job waits for a worker process while the model actors start. The Dataset keeps a copy
    of the context as it was in the block; the process's own is restored after it."""
    ctx = DataContext.get_current()
    if not hasattr(ctx, "use_datasource_v2"):   # a Ray with one reader
        yield
        return
    v2, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = v2


# --- the cluster of the latest `ray start` --------------------------------------------------------------------

def registered_address() -> tuple[str, str] | None:
    """(address, the file it was read from) of the cluster the latest `ray start` on this machine registered
    (/tmp/ray/ray_current_cluster), as ray.init() finds it; None if none is, or if Ray moved that interface."""
    try:
        from ray._private.utils import get_ray_address_file, read_ray_address
        address = read_ray_address()
        return (address, get_ray_address_file(None)) if address else None
    except Exception:
        return None


# --- actor restarts -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def restarts_through_remote_args():
    """Restarts of an actor pool can only be bounded through `ray_remote_args` (max_restarts,
    max_task_retries), which Ray 2.60 calls deprecated without offering named parameters for them yet."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        yield
