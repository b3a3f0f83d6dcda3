"""The whole job: read -> preprocess -> batch -> predict -> write, as one streaming Ray Dataset."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import tempfile
import time
import uuid
import warnings
from dataclasses import MISSING, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from crnn.checkpoint import CheckpointError, load_checkpoint
from crnn.image import ImageSpec
from crnn.onnx_backend import ONNX_MISSING, onnx_model
from crnn.recognizer import BACKENDS, DECODERS
from pipeline.backpressure import bound_run_ahead
from pipeline.batch import sort_by_width
from pipeline.errors import JobFailed, UserError
from pipeline.logs import without_false_alarms
from pipeline.plan import (choose_id_column, largest_node_cpus, plan_actor_block, plan_actors, plan_window,
                           resolve_backend)
from pipeline.predict import CRNNPredictor
from pipeline.preprocess import preprocess_batch
from pipeline.read import Source, find_source, read_crops
from pipeline.schema import OUTPUT_COLUMNS, OUTPUT_FIELDS, output_name
from pipeline.storage import Storage
from pipeline.write import OutputWriter, Staged


def _flag(default=MISSING, help: str | None = None, choices=None):
    """An OcrOptions field that `jobs.ocr` offers as the flag --<name-with-dashes>, with its help and choices
    (argparse expands %(default)s in the help to the field's default). No default: a required flag."""
    return field(default=default, metadata={"flag": {"help": help, "choices": choices}})


@dataclass
class OcrOptions:
    """Everything a run needs. `jobs.ocr` makes a flag of every field made with `_flag` (type, default, choices
    and help from here); the others are set from code."""
    input: str = _flag(help="Parquet file/folder/prefix, or a folder/prefix of image files")
    output: str = _flag(help="output folder/prefix for Parquet, _summary.json and _SUCCESS")
    image_column: str = _flag("image", help="Parquet column holding image bytes (default: %(default)s)")
    input_format: str = _flag("auto", choices=["auto", "parquet", "images"])
    id_column: str | None = _flag(None, help="unique row id (default: 'id' if present, 'path' for image files)")
    model: str | None = _flag(None, help="checkpoint file (default: the shipped model)")
    batch_size: int | None = _flag(None, help="crops per model call (default 128 on CPU, 512 on GPU)")
    window: int | None = _flag(None, help="rows sorted by width together (default: 8192, fewer for a small input "
                                          "so that each actor gets two); the actors take them in equal pieces of "
                                          "at most 2048 rows")
    actors: int | None = _flag(None, help="model actors (default: one per GPU; on CPU 7/8 of a node's CPUs, fewer "
                                          "for a small input)")
    num_gpus: float = _flag(0.0, help="GPUs per model actor (default %(default)g: CPU)")
    threads: int | None = _flag(None, help="model threads per actor, torch's or ONNX Runtime's (default 1; a node's "
                                           "CPUs for a lone CPU actor)")
    precision: str | None = _flag(None, choices=["bf16", "fp16", "fp32", "int8"],
                                  help="the model's arithmetic (default: int8 with backend onnx; with backend torch "
                                       "bf16 on CUDA and on CPUs with bf16 kernels, AVX-512 and newer, else fp32)")
    decoder: str = _flag(
        "lexicon", choices=DECODERS,
        help="lexicon (default): greedy, and for crops it is unsure of (score < 0.9) a beam search that favours "
             "English words, so 'thc' reads 'the' while numbers, codes and non-words are read as the pixels say; "
             "greedy: best path only (faster); beam: CTC prefix beam search. The score is always the model's "
             "probability of the text")
    backend: str = _flag(
        "auto", choices=("auto",) + BACKENDS,
        help="what computes the model: auto (default): onnx on CPU, torch on GPU; onnx: ONNX Runtime, CPU only, "
             "int8 (1.5x torch bf16, 2.6x fp32 on an AVX-512 VNNI CPU, readings within noise of torch's) or "
             "--precision fp32 (torch's readings); torch: PyTorch. The ONNX model is built at the first run and "
             "cached per model")
    min_width: int = ImageSpec.min_width
    max_width: int = _flag(ImageSpec.max_width,
                           help="widest crop after resizing to height 32; wider ones are squeezed to it")
    vertical_ratio: float = _flag(ImageSpec.vertical_ratio,
                                  help="crops at least this many times taller than wide are also read turned a "
                                       "quarter (vertical text, top to bottom); 0 turns none")
    rows_per_file: int | None = _flag(None, help="at least this many rows per output Parquet file")
    overwrite: bool = _flag(False, help="replace a complete output")
    resume: bool = _flag(False, help="continue an interrupted run into the same --output")
    stats: bool = _flag(False, help="print per-stage timing (Ray Data's ds.stats())")
    dashboard: bool = _flag(False, help="start Ray's dashboard with the local Ray this job starts (costs ~2 s; "
                                        "unused on a cluster)")
    address: str = _flag("auto", help="Ray to run on: auto (default, as ray.init(): RAY_ADDRESS, which a `ray job` "
                                      "sets, else the cluster of the latest `ray start` on this machine, else a new "
                                      "local Ray), local (always a new local Ray), or HOST:PORT of a running "
                                      "cluster's head")
    actor_restarts: int = _flag(20, help="restarts of a dead model actor before the job fails (-1: no limit)")
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
    _check_backend(opts)
    src_store = Storage(opts.input, opts.storage_options)
    source = find_source(src_store, opts.input_format, opts.image_column)
    id_column = choose_id_column(opts.id_column, source, opts.resume)
    out_id = output_name(id_column) if id_column else None   # its name in the output
    writer = OutputWriter(Storage(opts.output, opts.storage_options), overwrite=opts.overwrite, resume=opts.resume)
    with writer:  # the output's lease, taken before any long work: a second run refuses at once
        rows_in = _count_rows(src_store, source)
        if opts.resume and source.format == "parquet":
            _check_unique_ids(src_store, source, id_column)
        if rows_in == 0:  # nothing to read: an empty, complete output, without starting Ray or the model
            schema = _empty_schema(src_store, source, opts.image_column)
            return writer.write(schema, lambda staged: _summary(opts, staged, 0, out_id, model_id, t0))
        onnx = None
        if resolve_backend(opts.backend, opts.num_gpus) == "onnx":
            # Built here, once (cached per model), not by every actor, which then reads without PyTorch
            onnx = {"model": onnx_model(model, opts.precision or "int8"), "charset": charset.symbols, "meta": meta}
        del model
        _init_ray(opts)
        journal_dir = os.path.join(tempfile.gettempdir(), f"crnn-ocr-journal-{uuid.uuid4().hex[:12]}")
        rows = lambda done: _dataset(opts, src_store, source, out_id, rows_in, done, journal_dir, onnx)
        try:
            with without_false_alarms():  # entered after ray.init: Ray's processes must not inherit the filter
                return writer.write(rows, lambda staged: _summary(opts, staged, rows_in, out_id, model_id, t0),
                                    id_column=id_column, rows_per_file=opts.rows_per_file)
        except ray.exceptions.ActorDiedError as e:
            raise JobFailed(f"the model actor died more than --actor-restarts={opts.actor_restarts} times "
                            f"({_death_cause(e)}); rows read so far are staged in {writer.staging!r}: "
                            f"rerun with --resume to finish") from None
        finally:
            shutil.rmtree(journal_dir, ignore_errors=True)


def _check_backend(opts: OcrOptions) -> None:
    """Refuse here, in one line, a backend the model actors could not start (they would fail, and be
    restarted, only once the job runs)."""
    backend = resolve_backend(opts.backend, opts.num_gpus)
    if backend == "onnx":
        if opts.num_gpus > 0:
            raise UserError(f"--backend onnx runs on the CPU; with --num-gpus {opts.num_gpus:g} use --backend torch")
        if opts.precision not in (None, "int8", "fp32"):
            raise UserError(f"--backend onnx runs in int8 or fp32, got --precision {opts.precision}"
                            + (" (bf16 and fp16 run on --backend torch)" if opts.backend == "auto" else ""))
        if not all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx")):
            raise UserError(ONNX_MISSING)
    elif opts.precision == "int8":
        raise UserError(f"--precision int8 runs on backend onnx (CPU), got backend {backend}"
                        + (" (--num-gpus > 0)" if opts.backend == "auto" else ""))


def _init_ray(opts: OcrOptions) -> None:
    if not ray.is_initialized():
        try:  # "auto" is ray.init()'s own default; inside `ray job submit` RAY_ADDRESS names the job's cluster
            ray.init(address=None if opts.address == "auto" else opts.address, log_to_driver=True,
                     include_dashboard=opts.dashboard)
        except ConnectionError as e:
            raise UserError(f"cannot connect to Ray (--address {opts.address}): {' '.join(str(e).split())[:300]} "
                            f"(choose a running cluster with --address HOST:PORT, or --address local)") from None


def _dataset(opts: OcrOptions, store: Storage, source: Source, out_id: str | None, rows_in: int,
             done: pa.Array, journal_dir: str, onnx: dict | None = None) -> ray.data.Dataset:
    """The streaming Dataset of the output rows still to do (`done`: the ids of `out_id` an earlier run staged):
    read -> preprocess -> batch -> predict (`onnx`: the model built for the ONNX backend, see CRNNPredictor)."""
    ds = read_crops(store, source, opts.image_column)
    clashes = [c for c in source.columns if c in OUTPUT_COLUMNS]
    if clashes:  # the input's own `text` (a label, say) must survive next to the prediction
        ds = ds.rename_columns({c: output_name(c) for c in clashes})
        print(f"note: input columns {clashes} are written as {[output_name(c) for c in clashes]}")
    if len(done):
        print(f"resuming: {len(done)} of {rows_in} rows already done")
        ds = ds.map_batches(_drop_done, fn_kwargs={"id_column": out_id, "done": done}, batch_format="pyarrow")

    pool = plan_actors(opts.num_gpus, opts.actors, opts.threads, opts.batch_size,
                       node_cpus=largest_node_cpus(ray.nodes()), cluster_gpus=ray.cluster_resources().get("GPU", 0),
                       rows=rows_in - len(done))
    window = plan_window(opts.window, rows_in - len(done), pool.actors)
    # A Parquet row group is one block: bound blocks so that every actor gets work and output streams out.
    ds = ds.repartition(target_num_rows_per_block=window)
    spec = ImageSpec(min_width=opts.min_width, max_width=opts.max_width, vertical_ratio=opts.vertical_ratio)
    ds = ds.map_batches(preprocess_batch, fn_kwargs={"image_column": opts.image_column, "spec": spec},
                        batch_size=window, batch_format="pyarrow")
    ds = ds.map_batches(sort_by_width, batch_size=window, batch_format="pyarrow")
    piece = plan_actor_block(window)
    if piece < window:   # (fused into the preprocessing task by Ray Data)
        ds = ds.repartition(target_num_rows_per_block=piece)

    with warnings.catch_warnings():
        # Restarts can only be bounded through ray_remote_args, which Ray 2.60 calls deprecated
        # without offering a named parameter for them yet.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = ds.map_batches(
            CRNNPredictor,
            fn_constructor_kwargs={"model_path": opts.model, "precision": opts.precision, "decoder": opts.decoder,
                                   "backend": resolve_backend(opts.backend, opts.num_gpus), "threads": pool.threads,
                                   "journal_dir": journal_dir, "onnx": onnx},
            batch_size=pool.batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=pool.actors, enable_true_multi_threading=pool.true_multi_threading),
            num_gpus=pool.num_gpus, num_cpus=pool.num_cpus,
            # Ray Data restarts a dead actor forever by default: a crop that always kills it would hang the job.
            # The journal isolates such a crop in log8(batch) + 1 deaths; beyond the budget the job fails.
            max_restarts=opts.actor_restarts, max_task_retries=opts.actor_restarts)
    bound_run_ahead(ds.context)   # the Dataset's own context: nothing else in the process is affected
    return ds


def _summary(opts: OcrOptions, staged: Staged, rows_in: int, out_id: str | None, model_id: str,
             t0: float) -> dict:
    """Check that the staged rows account for the input (OutputCheckFailed if not) and describe the run. An
    empty input (rows_in 0) has no ids to count."""
    if opts.stats and staged.dataset is not None:
        print(staged.dataset.stats())
    if rows_in:
        counts = staged.counts(out_id)
    else:
        counts = staged.counts(None) | ({"unique_ids": 0, "null_ids": 0} if out_id else {})
    # Ids are checked unique up front only for --resume; otherwise a repeated input id is reported, not fatal.
    if counts["rows"] != rows_in or (opts.resume and counts["unique_ids"] != rows_in):
        raise staged.incomplete(f"{rows_in} rows in, {counts['rows']} written ({counts.get('unique_ids')} distinct "
                                f"ids)", resumable=bool(out_id))
    null_ids = counts.get("null_ids")
    wall = time.time() - t0
    return {"rows_in": rows_in, "ok": counts["rows"] - counts["failed"], "failed": counts["failed"],
            "errors": counts["errors"], "resumed_rows": staged.resumed,
            "repeated_ids": rows_in - counts["unique_ids"] - null_ids if out_id else None,
            "null_ids": null_ids,
            "wall_s": round(wall, 3),
            "crops_per_s": round((rows_in - staged.resumed) / wall, 1) if rows_in else 0.0, "model": model_id,
            "backend": resolve_backend(opts.backend, opts.num_gpus),
            "input": opts.input, "output": opts.output, "options": opts.public()}


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


def _empty_schema(store: Storage, source: Source, image_column: str) -> pa.Schema:
    """The output's schema for an input of no rows: the input's columns but the image, then the output's."""
    schema = store.call("reading Parquet schema", pq.read_schema, source.files[0], filesystem=store.arrow_fs)
    fields = [f.with_name(output_name(f.name)) for f in schema if f.name != image_column]
    return pa.schema(fields + list(OUTPUT_FIELDS))
