"""The whole job: read -> preprocess -> batch -> predict -> write, as one streaming Ray Dataset."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from crnn.checkpoint import CheckpointError, load_checkpoint
from crnn.image import ImageSpec
from pipeline.batch import sort_by_width
from pipeline.errors import JobFailed, UserError
from pipeline.logs import without_false_alarms
from pipeline.predict import CRNNPredictor
from pipeline.preprocess import preprocess_batch
from pipeline.read import Source, find_source, read_crops
from pipeline.schema import OUTPUT_COLUMNS, OUTPUT_FIELDS, output_name
from pipeline.storage import Storage
from pipeline.write import OutputWriter


@dataclass
class OcrOptions:
    """Everything a run needs; `jobs.ocr` maps its flags onto these fields."""
    input: str
    output: str
    image_column: str = "image"
    input_format: str = "auto"           # auto | parquet | images
    id_column: str | None = None         # unique row id: default "id" (Parquet, if present) or "path" (images)
    model: str | None = None             # checkpoint path; None = shipped default
    batch_size: int | None = None        # crops per model call; default 128 on CPU, 512 on GPU
    window: int = 8192                   # rows sorted by width together before batching (2,048: 21% padding, 8,192: 9%)
    actors: int | None = None            # model actors; default one per GPU, or 1 on CPU
    num_gpus: float = 0.0                # GPUs per actor (0: CPU actors)
    threads: int | None = None           # torch threads per CPU actor; default: all CPUs of this node
    precision: str | None = None         # bf16 | fp16 | fp32 (default bf16)
    decoder: str = "lexicon"             # lexicon (English word prior on unsure crops) | greedy | beam
    min_width: int = ImageSpec.min_width
    max_width: int = ImageSpec.max_width
    vertical_ratio: float = ImageSpec.vertical_ratio  # crops this much taller than wide are also read turned; 0: never
    rows_per_file: int | None = None     # at least this many rows per output file
    overwrite: bool = False
    resume: bool = False
    actor_restarts: int = 20             # restarts of a dead model actor before the job fails (-1: no limit)
    stats: bool = False                  # print Ray Data's per-stage timing (ds.stats()) at the end
    dashboard: bool = False              # start the dashboard with a local Ray (when not joining a cluster)
    address: str = "auto"                # Ray to run on: auto (as ray.init()) | local | HOST:PORT of a cluster
    storage_options: dict = field(default_factory=dict)

    def public(self) -> dict:
        """Options as recorded in _summary.json: storage options (credentials) left out."""
        d = dataclasses.asdict(self)
        d["storage_options"] = sorted(self.storage_options)  # which keys were set, never their values
        return d


def run_ocr(opts: OcrOptions) -> dict:
    """Run the job to completion and return its summary; raises UserError for user mistakes."""
    t0 = time.time()
    try:
        _, _, meta = load_checkpoint(opts.model)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    model_id = f"{meta['name']}:{meta['version']}"
    src_store = Storage(opts.input, opts.storage_options)
    source = find_source(src_store, opts.input_format, opts.image_column)
    id_column = opts.id_column or ("path" if source.format == "images" else "id" if "id" in source.columns else None)
    if id_column and id_column not in source.columns:
        raise UserError(f"id column {id_column!r} not in the input; columns are: {', '.join(source.columns)}")
    if opts.resume and not id_column:
        raise UserError(f"--resume needs a unique id column (--id-column); columns are: {', '.join(source.columns)}")
    writer = OutputWriter(Storage(opts.output, opts.storage_options), overwrite=opts.overwrite)
    writer.check_target(resume=opts.resume)
    rows_in = _count_rows(src_store, source)
    if opts.resume and source.format == "parquet":
        _check_unique_ids(src_store, source, id_column)
    if rows_in == 0:  # nothing to read: an empty, complete output, without starting Ray or the model
        return _empty_output(opts, writer, src_store, source, id_column, model_id, t0)

    if not ray.is_initialized():
        try:  # "auto" is ray.init()'s own default; inside `ray job submit` RAY_ADDRESS names the job's cluster
            ray.init(address=None if opts.address == "auto" else opts.address, log_to_driver=True,
                     include_dashboard=opts.dashboard)
        except ConnectionError as e:
            raise UserError(f"cannot connect to Ray (--address {opts.address}): {' '.join(str(e).split())[:300]} "
                            f"(choose a running cluster with --address HOST:PORT, or --address local)") from None
    writer.prepare(resume=opts.resume)
    done = writer.finished_ids(id_column) if opts.resume else pa.array([], pa.string())

    ds = read_crops(src_store, source, opts.image_column)
    clashes = [c for c in source.columns if c in OUTPUT_COLUMNS]
    if clashes:  # the input's own `text` (a label, say) must survive next to the prediction
        ds = ds.rename_columns({c: output_name(c) for c in clashes})
        print(f"note: input columns {clashes} are written as {[output_name(c) for c in clashes]}")
        id_column = output_name(id_column) if id_column in clashes else id_column
    if len(done):
        print(f"resuming: {len(done)} of {rows_in} rows already done")
        ds = ds.map_batches(_drop_done, fn_kwargs={"id_column": id_column, "done": done}, batch_format="pyarrow")

    # A Parquet row group is one block: bound blocks so that every actor gets work and output streams out.
    ds = ds.repartition(target_num_rows_per_block=opts.window)
    spec = ImageSpec(min_width=opts.min_width, max_width=opts.max_width, vertical_ratio=opts.vertical_ratio)
    ds = ds.map_batches(preprocess_batch, fn_kwargs={"image_column": opts.image_column, "spec": spec},
                        batch_size=opts.window, batch_format="pyarrow")
    ds = ds.map_batches(sort_by_width, batch_size=opts.window, batch_format="pyarrow")

    gpu = opts.num_gpus > 0
    # Threads and CPU shares are per node: an actor runs on one node, whatever the cluster's total.
    cpus = int(max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=1)) or 1
    actors = opts.actors or (max(1, int(ray.cluster_resources().get("GPU", 0) / opts.num_gpus)) if gpu else 1)
    threads = opts.threads or (0 if gpu else max(1, cpus))
    journal_dir = os.path.join(tempfile.gettempdir(), f"crnn-ocr-journal-{uuid.uuid4().hex[:12]}")
    with warnings.catch_warnings():
        # Restarts can only be bounded through ray_remote_args, which Ray 2.60 calls deprecated
        # without offering a named parameter for them yet.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = ds.map_batches(
            CRNNPredictor,
            fn_constructor_kwargs={"model_path": opts.model, "precision": opts.precision, "decoder": opts.decoder,
                                   "threads": threads, "journal_dir": journal_dir},
            batch_size=opts.batch_size or (512 if gpu else 128), batch_format="pyarrow",
            # On CPU the fused preprocessing would otherwise run on a second thread beside torch's own
            # threads, and an oversubscribed OpenMP team stalls (measured: 44 s instead of 34 s per 21,888 crops).
            compute=ray.data.ActorPoolStrategy(size=actors, enable_true_multi_threading=not gpu),
            # CPU actors leave one CPU to the read/write tasks, or those never get scheduled (a hang, not an error).
            num_gpus=opts.num_gpus if gpu else None, num_cpus=1 if gpu else min(1.0, max(cpus - 1, 0) / actors),
            # Ray Data restarts a dead actor forever by default: a crop that always kills it would hang the job.
            # The journal isolates such a crop in log8(batch) + 1 deaths; beyond the budget the job fails.
            max_restarts=opts.actor_restarts, max_task_retries=opts.actor_restarts)
    try:
        with without_false_alarms():  # entered after ray.init: Ray's processes must not inherit the filter
            writer.write(ds, opts.rows_per_file)
    except ray.exceptions.ActorDiedError as e:
        raise JobFailed(f"the model actor died more than --actor-restarts={opts.actor_restarts} times "
                        f"({_death_cause(e)}); rows read so far are staged in {writer.staging!r}: "
                        f"rerun with --resume to finish") from None
    finally:
        shutil.rmtree(journal_dir, ignore_errors=True)
    if opts.stats:
        print(ds.stats())

    counts = writer.staged_counts(id_column)
    # Ids are checked unique up front only for --resume; otherwise a repeated input id is reported, not fatal.
    if counts["rows"] != rows_in or (opts.resume and counts["unique_ids"] != rows_in):
        raise writer.incomplete(f"{rows_in} rows in, {counts['rows']} written ({counts.get('unique_ids')} distinct "
                                f"ids)", resumable=bool(id_column))
    null_ids = counts.get("null_ids")
    wall = time.time() - t0
    summary = {"rows_in": rows_in, "ok": counts["rows"] - counts["failed"], "failed": counts["failed"],
               "errors": counts["errors"], "resumed_rows": len(done),
               "repeated_ids": rows_in - counts["unique_ids"] - null_ids if id_column else None,
               "null_ids": null_ids,
               "wall_s": round(wall, 3),
               "crops_per_s": round((rows_in - len(done)) / wall, 1), "model": model_id,
               "input": opts.input, "output": opts.output, "options": opts.public()}
    writer.commit(summary)
    return summary


def _count_rows(store: Storage, source: Source) -> int:
    """Input rows: one per image file, or the Parquet footers' counts (read once, by find_source)."""
    return len(source.files) if source.format == "images" else source.rows


def _check_unique_ids(store: Storage, source: Source, id_column: str) -> None:
    ids = pq.ParquetDataset(source.files, filesystem=store.arrow_fs).read(columns=[id_column])[id_column]
    dupes = len(ids) - pc.count_distinct(ids).as_py()
    if dupes:
        raise UserError(f"id column {id_column!r} is not unique ({dupes} repeated values): "
                        f"--resume needs one id per row (choose --id-column)")


def _drop_done(batch: pa.Table, id_column: str, done: pa.Array) -> pa.Table:
    return batch.filter(pc.invert(pc.is_in(batch[id_column], value_set=done.cast(batch.schema.field(id_column).type))))


def _death_cause(e: Exception) -> str:
    """Ray's actor-death text, cut to what says why (OOM kill, signal, exit code)."""
    detail = str(e).split("Worker exit detail:", 1)[-1].split(". Some common causes", 1)[0]
    return " ".join(detail.split())[:200] or type(e).__name__


def _empty_output(opts: OcrOptions, writer: OutputWriter, store: Storage, source: Source, id_column: str | None,
                  model_id: str, t0: float) -> dict:
    """The output of an input of no rows: one empty part with the output's schema, a summary, `_SUCCESS`."""
    schema = store.call("reading Parquet schema", pq.read_schema, source.files[0], filesystem=store.arrow_fs)
    fields = [f.with_name(output_name(f.name)) for f in schema if f.name != opts.image_column]
    fields += list(OUTPUT_FIELDS)
    writer.prepare(resume=False)
    writer.write_empty(pa.schema(fields))
    counts = writer.staged_counts(None)
    summary = {"rows_in": 0, "ok": 0, "failed": 0, "errors": counts["errors"], "resumed_rows": 0,
               "repeated_ids": 0 if id_column else None, "null_ids": 0 if id_column else None,
               "wall_s": round(time.time() - t0, 3), "crops_per_s": 0.0,
               "model": model_id, "input": opts.input, "output": opts.output, "options": opts.public()}
    writer.commit(summary)
    return summary
