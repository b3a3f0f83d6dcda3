"""What a run decides from its options, its input and its cluster: which column is the row id, the model's
backend, the model actors (how many, their threads, CPUs and GPUs, crops per call), the width window and the
pieces of it an actor takes. Pure functions: run_ocr asks the input and Ray, these decide."""

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


MIN_WINDOW = 512     # rows; smaller windows sort too few crops together (more padding)
WINDOW = 8192        # rows sorted by width together, for an input large enough
ACTOR_BLOCK = 2048   # rows; the most a model actor takes at once
BATCH = {"cpu": 128, "gpu": 512}   # crops per model call


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
                node_cpus: int, cluster_gpus: float, rows: int | None = None) -> ActorPlan:
    """The options' actors, threads and batch size where given (0 counts as not given), else the defaults.

    GPU (num_gpus > 0): as many actors as the cluster's GPUs hold, BATCH["gpu"] crops a call, one CPU and one torch
    thread each (their CPU work, batching and decoding, runs on one thread; more threads did not help).
    CPU: single-threaded actors on 7/8 of the largest node's CPUs (at least one, and no more than can each get
    two MIN_WINDOW-row windows of the `rows` to read: a small job starts fewer processes), BATCH["cpu"] crops a call, and CPU
    shares that leave one CPU of the node to the read/write tasks (or those never get scheduled: a hang, not an
    error). One thread each, because a multi-threaded model waits at every layer for its slowest thread, and
    on a busy node the preprocessing takes cores from under it (docs/decisions.md; measured on 2 cores only).
    """
    gpu = num_gpus > 0
    if not actors and not gpu:
        actors = max(1, min(node_cpus - node_cpus // 8, -(-rows // (2 * MIN_WINDOW)) if rows else node_cpus))
    actors = actors or max(1, int(cluster_gpus / num_gpus))
    return ActorPlan(
        actors=actors,
        threads=threads or (1 if gpu else max(1, node_cpus // actors)),
        batch_size=batch_size or BATCH["gpu" if gpu else "cpu"],
        num_cpus=1 if gpu else min(1.0, max(node_cpus - 1, 0) / actors),
        num_gpus=num_gpus if gpu else None,
        # On CPU the fused preprocessing would otherwise run on a second thread beside torch's own threads, and
        # an oversubscribed OpenMP team stalls.
        true_multi_threading=not gpu)


def plan_window(window: int | None, rows: int, actors: int) -> int:
    """Rows sorted by width together (the actors take them in pieces, `plan_actor_block`): --window if given,
    else WINDOW (a wide window sorts more crops together: less padding), cut for a small input to at least two
    windows per actor (but not under MIN_WINDOW), so that every actor has work early (docs/decisions.md)."""
    return window or min(WINDOW, max(MIN_WINDOW, -(-rows // (2 * actors))))


def plan_actor_block(window: int) -> int:
    """Rows of a sorted window that a model actor takes at once: the window cut into equal parts of at most
    ACTOR_BLOCK rows. Sorting stays over the whole window (padding as low), while the actors share smaller
    pieces, so that the end of the job waits on one piece, not one window (docs/decisions.md)."""
    parts = -(-window // ACTOR_BLOCK)
    return -(-window // parts)
