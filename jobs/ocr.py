"""Recognise text in image crops: Parquet or image files in (local, s3://, any fsspec URL), Parquet out.

    python -m jobs.ocr --input s3://bucket/crops/ --output s3://bucket/ocr/

Runs on a laptop (starts a local Ray) or, unchanged, as the entrypoint of `ray job submit`.
Credentials never go on the command line: the environment (AWS_*, AWS_PROFILE) or --storage-options-file.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

import ray

from crnn.recognizer import DECODERS
from pipeline.errors import JobFailed, UserError
from pipeline.run import OcrOptions, run_ocr
from pipeline.storage import parse_storage_options


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ocr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="Parquet file/folder/prefix, or a folder/prefix of image files")
    p.add_argument("--output", required=True, help="output folder/prefix for Parquet, _summary.json and _SUCCESS")
    p.add_argument("--image-column", default="image", help="Parquet column holding image bytes (default: image)")
    p.add_argument("--input-format", choices=["auto", "parquet", "images"], default="auto")
    p.add_argument("--id-column", help="unique row id (default: 'id' if present, 'path' for image files)")
    p.add_argument("--model", help="checkpoint file (default: the shipped model)")
    p.add_argument("--batch-size", type=int, help="crops per model call (default 128 on CPU, 512 on GPU)")
    p.add_argument("--window", type=int, default=8192, help="rows sorted by width together (default 8192)")
    p.add_argument("--actors", type=int, help="model actors (default: one per GPU, or 1 on CPU)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per model actor (default 0: CPU)")
    p.add_argument("--threads", type=int, help="torch threads per CPU actor (default: all CPUs)")
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], help="autocast precision (default bf16)")
    p.add_argument("--decoder", choices=DECODERS, default=OcrOptions.decoder,
                   help="lexicon (default): greedy, and for crops it is unsure of (score < 0.9) a beam search "
                        "that favours English words, so 'thc' reads 'the' while numbers, codes and non-words are "
                        "read as the pixels say; greedy: best path only (faster); beam: CTC prefix beam search. "
                        "The score is always the model's probability of the text")
    p.add_argument("--max-width", type=int, default=OcrOptions.max_width,
                   help="widest crop after resizing to height 32; wider ones are squeezed to it")
    p.add_argument("--vertical-ratio", type=float, default=OcrOptions.vertical_ratio,
                   help="crops at least this many times taller than wide are also read turned a quarter "
                        "(vertical text, top to bottom); 0 turns none")
    p.add_argument("--rows-per-file", type=int, help="at least this many rows per output Parquet file")
    p.add_argument("--overwrite", action="store_true", help="replace a complete output")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --output")
    p.add_argument("--stats", action="store_true", help="print per-stage timing (Ray Data's ds.stats())")
    p.add_argument("--dashboard", action="store_true",
                   help="start Ray's dashboard with the local Ray this job starts (costs ~2 s; unused on a cluster)")
    p.add_argument("--address", default="auto",
                   help="Ray to run on: auto (default, as ray.init(): RAY_ADDRESS, which a `ray job` sets, else the "
                        "cluster of the latest `ray start` on this machine, else a new local Ray), local (always a "
                        "new local Ray), or HOST:PORT of a running cluster's head")
    p.add_argument("--actor-restarts", type=int, default=OcrOptions.actor_restarts,
                   help="restarts of a dead model actor before the job fails (-1: no limit)")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                   help="fsspec/s3fs option, e.g. endpoint_url=http://127.0.0.1:9000 or profile=name (repeatable; "
                        "credentials such as key/secret/token are refused here: use the environment or a file)")
    p.add_argument("--storage-options-file", metavar="PATH",
                   help="JSON file of fsspec/s3fs options, credentials included (read where the job starts)")
    return p


def check_ray_address(address: str) -> None:
    """Refuse, in a second and in one line, a Ray address with nothing listening: ray.init would retry for
    minutes, then raise a ConnectionError traceback. `auto` is resolved as ray.init() resolves it."""
    if address == "local":
        return
    where = "from --address"
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        where = "from RAY_ADDRESS"
        if address in ("", "auto"):
            try:  # the cluster the latest `ray start` on this machine registered (/tmp/ray/ray_current_cluster)
                from ray._private.utils import get_ray_address_file, read_ray_address
                address = read_ray_address()
                where = f"registered by an earlier `ray start` in {get_ray_address_file(None)}"
            except Exception:  # a private Ray API: if it moved, ray.init reports for itself
                return
            if not address:
                return          # no cluster known: ray.init() starts a local Ray
        elif address == "local":
            return
    if address.startswith(("http://", "https://")):
        raise UserError(f"Ray address {address!r} ({where}) is a dashboard URL, which the `ray job` CLI takes; "
                        f"give the cluster's own address (--address HOST:6379), or submit this command with "
                        f"`ray job submit`")
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"Ray address {address!r} ({where}) is not HOST:PORT; choose --address auto, local or "
                        f"HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"no Ray cluster answers at {address} ({where}): {e.strerror or type(e).__name__}; start "
                        f"it, give a running one with --address HOST:PORT, or --address local for a Ray of this "
                        f"job's own") from None


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        storage_options = parse_storage_options(args.storage_option, args.storage_options_file)
        if not ray.is_initialized():  # (run_ocr joins a Ray this process already runs)
            check_ray_address(args.address)
        opts = OcrOptions(
            input=args.input, output=args.output, image_column=args.image_column, input_format=args.input_format,
            id_column=args.id_column, model=args.model, batch_size=args.batch_size, window=args.window,
            actors=args.actors, num_gpus=args.num_gpus, threads=args.threads, precision=args.precision,
            decoder=args.decoder, max_width=args.max_width, vertical_ratio=args.vertical_ratio,
            rows_per_file=args.rows_per_file, overwrite=args.overwrite, resume=args.resume, stats=args.stats,
            dashboard=args.dashboard, address=args.address, actor_restarts=args.actor_restarts,
            storage_options=storage_options)
        summary = run_ocr(opts)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except JobFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: {args.output!r} is not complete (no _SUCCESS); to continue, run the same command "
              f"with --resume (same --input and --output): the rows already staged are kept", file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in summary.items() if k != "options"}, indent=2))
    if summary["rows_in"] > 0 and summary["ok"] == 0:
        print(f"error: none of the {summary['rows_in']} rows could be read (see the output's error column); "
              f"the output {args.output!r} is written and complete", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
