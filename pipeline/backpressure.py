"""Backpressure: reading and preprocessing run at most a few tasks ahead of the model actors.

Reading, decoding and resizing a crop is cheaper than recognising it, so on their own the operators before the
model actors run through the whole input long before the model does, and their output waits in the object
store: at 100,000 crops on 2 cores, all of it (~0.3 GB more than at 10,000; issue 20). Ray Data's own bounds
act on every operator at once, and the model actors' outputs, waiting for write tasks, then stop the actors
too: half the speed. This policy holds back only the operators upstream of the model actors: 1.16x the peak
RSS of 10,000 crops at 100,000 (1.21x without), within noise of its speed. Its cost on 2 cores: write tasks get
the one CPU the actors leave only between preprocessing tasks, so the first part is staged later (README
"Speed").
"""

from __future__ import annotations

import ray
from ray.data import DataContext

try:   # Ray Data's internals (as of Ray 2.60): a Ray without them runs the job unbounded, as Ray Data would
    from ray.data._internal.execution.backpressure_policy import (ENABLED_BACKPRESSURE_POLICIES,
                                                                  ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY,
                                                                  BackpressurePolicy)
    from ray.data._internal.execution.operators.actor_pool_map_operator import ActorPoolMapOperator
except ImportError:
    BackpressurePolicy = object

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
