"""Recognise text in image crops: Parquet or image files in (local, s3://, any fsspec URL), Parquet out.

    python -m jobs.ocr --input s3://bucket/crops/ --output s3://bucket/ocr/

Runs on a laptop (starts a local Ray) or, unchanged, as the entrypoint of `ray job submit`.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.errors import UserError
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
    p.add_argument("--decoder", choices=["greedy", "beam"], default="greedy")
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
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                   help="fsspec/s3fs option, e.g. endpoint_url=http://127.0.0.1:9000 (repeatable)")
    p.add_argument("--storage-options-file", help="JSON file of fsspec/s3fs options")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        opts = OcrOptions(
            input=args.input, output=args.output, image_column=args.image_column, input_format=args.input_format,
            id_column=args.id_column, model=args.model, batch_size=args.batch_size, window=args.window,
            actors=args.actors, num_gpus=args.num_gpus, threads=args.threads, precision=args.precision,
            decoder=args.decoder, max_width=args.max_width, vertical_ratio=args.vertical_ratio,
            rows_per_file=args.rows_per_file, overwrite=args.overwrite, resume=args.resume, stats=args.stats,
            dashboard=args.dashboard,
            storage_options=parse_storage_options(args.storage_option, args.storage_options_file))
        summary = run_ocr(opts)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "options"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
