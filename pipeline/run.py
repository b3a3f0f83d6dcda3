"""The whole job: read -> preprocess -> batch -> predict -> write, as one streaming Ray Dataset."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from crnn.checkpoint import CheckpointError, load_checkpoint
from crnn.config import option
from crnn.decoding import GATE
from crnn.image import ImageSpec
from crnn import backends
from crnn.onnx_backend import onnx_model
from crnn.recognizer import DECODERS
from pipeline.batch import sort_by_width
from pipeline.errors import JobFailed, UserError
from pipeline.logs import without_false_alarms
from pipeline.plan import (ACTOR_BLOCK, BATCH, WINDOW, choose_id_column, largest_node_cpus, plan_actor_block,
                           plan_actors, plan_window)
from pipeline.predict import CRNNPredictor
from pipeline.preprocess import cut_boxes, preprocess_batch
from pipeline.ray_compat import bound_run_ahead, restarts_through_remote_args
from pipeline.read import BOX_ID, Boxes, Source, find_source, read_boxes, read_crops, read_pages
from pipeline.schema import OUTPUT_COLUMNS, OUTPUT_FIELDS, PAGE_BOXES, output_name
from pipeline.storage import Storage
from pipeline.write import OutputWriter


@dataclass
class OcrOptions:
    """Everything a run needs. `jobs.ocr` makes a flag of every field made with `option` (crnn/config.py);
    the others are set from code."""
    input: str = option(help="Parquet file/folder/prefix, or a folder/prefix of image files (with --boxes: of page "
                             "images)")
    output: str = option(help="output folder/prefix for Parquet, _summary.json and _SUCCESS")
    boxes: str | None = option(None, help="Parquet or CSV file/folder/prefix of boxes on the --input pages, one "
                                          "row per box: page (its path under --input), x0, y0, x1, y1 in page "
                                          "pixels, any other columns (carried); crops are cut from each page, read "
                                          "once")
    image_column: str = option("image", help="Parquet column holding image bytes (default: %(default)s)")
    input_format: str = option("auto", choices=["auto", "parquet", "images"])
    id_column: str | None = option(None, help="unique row id (default: 'id' if present, 'path' for image files)")
    model: str | None = option(None, help="checkpoint file (default: the shipped model)")
    batch_size: int | None = option(None, help=f"crops per model call (default {BATCH['cpu']} on CPU, "
                                               f"{BATCH['gpu']} on GPU)")
    window: int | None = option(None, help=f"rows sorted by width together (default: {WINDOW}, fewer for a small "
                                           f"input so that each actor gets two); the actors take them in equal "
                                           f"pieces of at most {ACTOR_BLOCK} rows")
    actors: int | None = option(None, help="model actors (default: one per GPU; on CPU 7/8 of a node's CPUs, fewer "
                                           "for a small input)")
    num_gpus: float = option(0.0, help="GPUs per model actor (default %(default)g: CPU)")
    threads: int | None = option(None, help="model threads per actor, torch's or ONNX Runtime's (default 1; a "
                                            "node's CPUs for a lone CPU actor)")
    precision: str | None = option(None, choices=sorted({p for ps in backends.PRECISIONS.values() for p in ps}),
                                   help="the model's arithmetic (default: int8 with backend onnx; with backend "
                                        "torch bf16 on CUDA and on CPUs with bf16 kernels, AVX-512 and newer, "
                                        "else fp32)")
    decoder: str = option(
        "lexicon", choices=DECODERS,
        help=f"lexicon (default): greedy, and for crops it is unsure of (score < {GATE}) a beam search that "
             f"favours English words, so 'thc' reads 'the' while numbers, codes and non-words are read as the "
             f"pixels say; greedy: best path only (faster); beam: CTC prefix beam search. The score is always the "
             f"model's probability of the text")
    backend: str = option(
        "auto", choices=("auto",) + backends.BACKENDS,
        help="what computes the model: auto (default): onnx on CPU, torch on GPU; onnx: ONNX Runtime, CPU only, "
             "int8 (the fastest on CPU; readings within noise of torch's: MODEL.md) or --precision fp32 (torch's "
             "readings); torch: PyTorch. The ONNX model is built at the first run and cached per model")
    min_width: int = ImageSpec.min_width
    max_width: int = option(ImageSpec.max_width,
                            help="widest crop after resizing to height 32; wider ones are squeezed to it")
    vertical_ratio: float = option(ImageSpec.vertical_ratio,
                                   help="crops at least this many times taller than wide are also read turned a "
                                        "quarter (vertical text, top to bottom); 0 turns none")
    rows_per_file: int | None = option(None, help="at least this many rows per output Parquet file")
    overwrite: bool = option(False, help="replace a complete output")
    resume: bool = option(False, help="continue an interrupted run into the same --output")
    stats: bool = option(False, help="print per-stage timing (Ray Data's ds.stats())")
    dashboard: bool = option(False, help="start Ray's dashboard with the local Ray this job starts (it slows the "
                                         "start; unused on a cluster)")
    address: str = option("auto", help="Ray to run on: auto (default, as ray.init(): RAY_ADDRESS, which a `ray "
                                       "job` sets, else the cluster of the latest `ray start` on this machine, else "
                                       "a new local Ray), local (always a new local Ray), or HOST:PORT of a "
                                       "running cluster's head")
    actor_restarts: int = option(20, help="restarts of a dead model actor before the job fails (-1: no limit)")
    storage_options: dict = field(default_factory=dict)   # fsspec/s3fs options (jobs.ocr: --storage-option(s-file))

    def public(self) -> dict:
        """Options as recorded in _summary.json: storage options (credentials) left out."""
        d = dataclasses.asdict(self)
        d["storage_options"] = sorted(self.storage_options)  # which keys were set, never their values
        return d


def run_ocr(opts: OcrOptions) -> dict:
    """Run the job to completion and return its summary; raises UserError for user mistakes."""
    t0 = time.time()
    try:
        model, charset, meta = load_checkpoint(opts.model)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    model_id = f"{meta['name']}:{meta['version']}"
    backend = check_backend(opts)
    src_store = Storage(opts.input, opts.storage_options)
    if opts.boxes:
        if not src_store.call("reading input", src_store.exists):
            raise src_store.not_found("pages")
        source = read_boxes(Storage(opts.boxes, opts.storage_options))
        id_column = _box_id_column(opts, source)
    else:
        source = find_source(src_store, opts.input_format, opts.image_column)
        id_column = choose_id_column(opts.id_column, source, opts.resume)
    out_id = output_name(id_column) if id_column else None   # its name in the output
    # The output's lease, taken before any long work: a second run refuses at once
    with OutputWriter(Storage(opts.output, opts.storage_options), overwrite=opts.overwrite,
                      resume=opts.resume) as writer:
        rows_in = _count_rows(source)
        if opts.resume and isinstance(source, Source) and source.format == "parquet":
            _check_unique_ids(src_store, source, id_column)
        if rows_in == 0:  # nothing to read: an empty, complete output, without starting Ray or the model
            writer.stage_empty(_empty_schema(src_store, source, opts.image_column))
            done = []
        else:
            done = writer.resumed_ids(out_id)
            onnx = None
            if backend == "onnx":
                # Built here, once (cached per model), not by every actor, which then reads without PyTorch
                onnx = {"model": onnx_model(model, opts.precision or "int8"), "charset": charset.symbols,
                        "meta": meta}
            del model
            _init_ray(opts)
            journal_dir = os.path.join(tempfile.gettempdir(), f"crnn-ocr-journal-{uuid.uuid4().hex[:12]}")
            ds = _dataset(opts, backend, src_store, source, out_id, rows_in, done, journal_dir, onnx)
            try:
                with without_false_alarms():  # entered after ray.init: Ray's processes must not inherit the filter
                    writer.stage(ds, rows_per_file=opts.rows_per_file)
            except ray.exceptions.ActorDiedError as e:
                raise JobFailed(f"the model actor died more than --actor-restarts={opts.actor_restarts} times "
                                f"({_death_cause(e)}); rows read so far are staged in {writer.staging!r}: "
                                f"rerun with --resume to finish") from None
            finally:
                shutil.rmtree(journal_dir, ignore_errors=True)
            if opts.stats:
                print(ds.stats())
        counts = writer.counts(out_id)
        # Ids are checked unique up front only for --resume; otherwise a repeated input id is reported, not fatal.
        if counts["rows"] != rows_in or (opts.resume and counts["unique_ids"] != rows_in):
            raise writer.incomplete(f"{rows_in} rows in, {counts['rows']} written ({counts.get('unique_ids')} "
                                    f"distinct ids)", resumable=bool(out_id))
        summary = _summary(opts, backend, counts, rows_in, len(done), out_id, model_id, t0)
        writer.commit(summary)
    return summary


def check_backend(opts: OcrOptions) -> str:
    """The model actors' backend; refused here, in one line, if they could not start it (they would fail, and be
    restarted, only once the job runs)."""
    try:
        return backends.check(opts.backend, opts.precision, gpu=opts.num_gpus > 0,
                              names={"backend": "--backend", "precision": "--precision",
                                     "gpu": f"--num-gpus {opts.num_gpus:g}"})
    except ValueError as e:
        raise UserError(str(e)) from None


def _init_ray(opts: OcrOptions) -> None:
    if not ray.is_initialized():
        try:  # "auto" is ray.init()'s own default; inside `ray job submit` RAY_ADDRESS names the job's cluster
            ray.init(address=None if opts.address == "auto" else opts.address, log_to_driver=True,
                     include_dashboard=opts.dashboard)
        except ConnectionError as e:
            raise UserError(f"cannot connect to Ray (--address {opts.address}): {' '.join(str(e).split())[:300]} "
                            f"(choose a running cluster with --address HOST:PORT, or --address local)") from None


def _dataset(opts: OcrOptions, backend: str, store: Storage, source: Source | Boxes, out_id: str | None, rows_in: int,
             done: pa.Array, journal_dir: str, onnx: dict | None = None) -> ray.data.Dataset:
    """The streaming Dataset of the output rows still to do (`done`: the ids of `out_id` an earlier run staged):
    read -> preprocess -> batch -> predict (`onnx`: the model built for the ONNX backend, see CRNNPredictor).
    With boxes, `source` is the boxes by page and `store` the pages' root."""
    pool = plan_actors(opts.num_gpus, opts.actors, opts.threads, opts.batch_size,
                       node_cpus=largest_node_cpus(ray.nodes()), cluster_gpus=ray.cluster_resources().get("GPU", 0),
                       rows=rows_in - len(done))
    window = plan_window(opts.window, rows_in - len(done), pool.actors)
    spec = ImageSpec(min_width=opts.min_width, max_width=opts.max_width, vertical_ratio=opts.vertical_ratio)
    if isinstance(source, Boxes):   # pages and boxes: each page read and cut in the preprocessing task
        boxes_per_page = max(1, rows_in // max(1, source.pages.num_rows))
        ds = read_pages(source, pages_per_block=max(1, window // boxes_per_page))
        ds = ds.map_batches(cut_boxes, fn_kwargs={"pages": store, "columns": source.columns, "spec": spec},
                            batch_format="pyarrow")
        ds = _rename_clashes(ds, source.columns)
        ds = _without_done(ds, done, out_id, rows_in)
        ds = ds.repartition(target_num_rows_per_block=window)
    else:
        ds = _rename_clashes(read_crops(store, source, opts.image_column), source.columns)
        ds = _without_done(ds, done, out_id, rows_in)
        # A Parquet row group is one block: bound blocks so that every actor gets work and output streams out.
        ds = ds.repartition(target_num_rows_per_block=window)
        ds = ds.map_batches(preprocess_batch, fn_kwargs={"image_column": opts.image_column, "spec": spec},
                            batch_size=window, batch_format="pyarrow")
    ds = ds.map_batches(sort_by_width, batch_size=window, batch_format="pyarrow")
    piece = plan_actor_block(window)
    if piece < window:   # (fused into the preprocessing task by Ray Data)
        ds = ds.repartition(target_num_rows_per_block=piece)

    with restarts_through_remote_args():
        ds = ds.map_batches(
            CRNNPredictor,
            fn_constructor_kwargs={"model_path": opts.model, "precision": opts.precision, "decoder": opts.decoder,
                                   "backend": backend, "threads": pool.threads,
                                   "journal_dir": journal_dir, "onnx": onnx},
            batch_size=pool.batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=pool.actors, enable_true_multi_threading=pool.true_multi_threading),
            num_gpus=pool.num_gpus, num_cpus=pool.num_cpus,
            # Ray Data restarts a dead actor forever by default: a crop that always kills it would hang the job.
            # The journal isolates such a crop in log8(batch) + 1 deaths; beyond the budget the job fails.
            max_restarts=opts.actor_restarts, max_task_retries=opts.actor_restarts)
    bound_run_ahead(ds.context)   # the Dataset's own context: nothing else in the process is affected
    return ds


def _rename_clashes(ds: ray.data.Dataset, columns: list[str]) -> ray.data.Dataset:
    """The input's own `text` (a label, say) must survive next to the prediction: written as `text_input`."""
    clashes = [c for c in columns if c in OUTPUT_COLUMNS]
    if clashes:
        print(f"note: input columns {clashes} are written as {[output_name(c) for c in clashes]}")
        ds = ds.rename_columns({c: output_name(c) for c in clashes})
    return ds


def _without_done(ds: ray.data.Dataset, done: pa.Array, out_id: str | None, rows_in: int) -> ray.data.Dataset:
    if len(done):
        print(f"resuming: {len(done)} of {rows_in} rows already done")
        ds = ds.map_batches(_drop_done, fn_kwargs={"id_column": out_id, "done": done}, batch_format="pyarrow")
    return ds


def _summary(opts: OcrOptions, backend: str, counts: dict, rows_in: int, resumed: int, out_id: str | None,
             model_id: str, t0: float) -> dict:
    """What `_summary.json` says of the run: the staged rows' counts, timing, model, options."""
    null_ids = counts.get("null_ids")
    wall = time.time() - t0
    return {"rows_in": rows_in, "ok": counts["rows"] - counts["failed"], "failed": counts["failed"],
            "errors": counts["errors"], "resumed_rows": resumed,
            "repeated_ids": rows_in - counts["unique_ids"] - null_ids if out_id else None,
            "null_ids": null_ids,
            "wall_s": round(wall, 3),
            "crops_per_s": round((rows_in - resumed) / wall, 1) if rows_in else 0.0, "model": model_id,
            "backend": backend,
            "input": opts.input, "output": opts.output, "options": opts.public()}


def _count_rows(source: Source | Boxes) -> int:
    """Input rows: one per box, one per image file, or the Parquet footers' counts (read once, by find_source)."""
    if isinstance(source, Boxes):
        return source.rows
    return len(source.files) if source.format == "images" else source.rows


def _box_id_column(opts: OcrOptions, boxes: Boxes) -> str:
    """The boxes' id column: --id-column, else `id` (the boxes' own, or made from page and box)."""
    column = opts.id_column or BOX_ID
    if column not in boxes.columns:
        raise UserError(f"id column {column!r} not in the boxes; columns are: {', '.join(boxes.columns)}")
    if opts.resume:
        ids = pa.chunked_array([boxes.pages[PAGE_BOXES].combine_chunks().flatten().field(column)])
        if (dupes := len(ids) - pc.count_distinct(ids).as_py()):
            raise UserError(f"id column {column!r} of the boxes is not unique ({dupes} repeated values): "
                            f"--resume needs one id per box (choose --id-column)")
    return column


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


def _empty_schema(store: Storage, source: Source | Boxes, image_column: str) -> pa.Schema:
    """The output's schema for an input of no rows: the input's columns but the image, then the output's."""
    if isinstance(source, Boxes):
        kinds = {f.name: f.type for f in source.pages.schema.field(PAGE_BOXES).type.value_type} | {"page": pa.string()}
        return pa.schema([pa.field(output_name(c), kinds[c]) for c in source.columns] + list(OUTPUT_FIELDS))
    schema = store.call("reading Parquet schema", pq.read_schema, source.files[0], filesystem=store.arrow_fs)
    fields = [f.with_name(output_name(f.name)) for f in schema if f.name != image_column]
    return pa.schema(fields + list(OUTPUT_FIELDS))
