"""What a run decides from its options, its input and its cluster: which column is the row id, and the model
actors (how many, their threads, CPUs and GPUs, crops per call). Pure functions: run_ocr asks the input and
Ray, these decide."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import UserError
from pipeline.read import Source


def choose_id_column(requested: str | None, source: Source, resume: bool) -> str | None:
    """The input column that identifies a row: `requested` (--id-column) if given, else `path` for image files,
    `id` for Parquet that has one, else none. UserError if that column is not in the input, or if --resume has
    none (it finds the rows already done by their ids)."""
    column = requested or ("path" if source.format == "images" else "id" if "id" in source.columns else None)
    if column and column not in source.columns:
        raise UserError(f"id column {column!r} not in the input; columns are: {', '.join(source.columns)}")
    if resume and not column:
        raise UserError(f"--resume needs a unique id column (--id-column); columns are: {', '.join(source.columns)}")
    return column


@dataclass(frozen=True)
class ActorPlan:
    """The model actor pool, as `map_batches` takes it."""
    actors: int                  # pool size
    threads: int                 # torch threads per actor
    batch_size: int              # crops per model call
    num_cpus: float              # CPUs each actor reserves
    num_gpus: float | None       # GPUs each actor reserves; None for CPU actors
    true_multi_threading: bool   # Ray Data's enable_true_multi_threading (CPU actors only)


def largest_node_cpus(nodes: list[dict]) -> int:
    """CPUs of the largest live node of `ray.nodes()`, at least 1: threads and CPU shares are per node, since
    an actor runs on one node, whatever the cluster's total."""
    return int(max((n["Resources"].get("CPU", 0) for n in nodes if n["Alive"]), default=1)) or 1


def plan_actors(num_gpus: float, actors: int | None, threads: int | None, batch_size: int | None,
                node_cpus: int, cluster_gpus: float) -> ActorPlan:
    """The options' actors, threads and batch size where given (0 counts as not given), else the defaults:
    on GPU (num_gpus > 0) as many actors as the cluster's GPUs hold, 512 crops a call, one CPU and one torch
    thread each (their CPU work, batching and decoding, runs on one thread; on an H200 node one actor read as
    fast with 1 thread as with torch's default of one per core); on CPU one
    actor, 128 crops a call, torch threads on all of a node's CPUs, and CPU shares that leave one CPU of the
    node to the read/write tasks (or those never get scheduled: a hang, not an error)."""
    gpu = num_gpus > 0
    actors = actors or (max(1, int(cluster_gpus / num_gpus)) if gpu else 1)
    return ActorPlan(
        actors=actors,
        threads=threads or (1 if gpu else max(1, node_cpus)),
        batch_size=batch_size or (512 if gpu else 128),
        num_cpus=1 if gpu else min(1.0, max(node_cpus - 1, 0) / actors),
        num_gpus=num_gpus if gpu else None,
        # On CPU the fused preprocessing would otherwise run on a second thread beside torch's own threads, and
        # an oversubscribed OpenMP team stalls (measured: 44 s instead of 34 s per 21,888 crops).
        true_multi_threading=not gpu)
