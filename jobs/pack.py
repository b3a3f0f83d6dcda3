"""Pack a folder/prefix of image files into Parquet shards: columns `path` (the file's URL: the id) and `image` (bytes).

    python -m jobs.pack --input s3://bucket/crops/ --output s3://bucket/crops-packed/ [--rows-per-file 50000]
    python -m jobs.ocr --input s3://bucket/crops-packed/ --id-column path --output s3://bucket/ocr/

On object stores every small file costs one request (tens of ms on S3), so OCR over a million
crop files is bound by requests, not by the model; packed shards are read in a few large requests.
Streaming (Ray Data: read_binary_files -> write_parquet): files are never all in memory. The output
is staged and committed like jobs.ocr's (`_SUCCESS` last); ids are `path`, as jobs.ocr gives image files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from pipeline.errors import UserError
from pipeline.read import find_source, read_crops
from pipeline.storage import Storage, parse_storage_options
from pipeline.write import OutputWriter


def pack(input: str, output: str, rows_per_file: int = 50_000, overwrite: bool = False,
         storage_options: dict | None = None) -> dict:
    """Pack the image files under `input` into Parquet shards under `output`; returns the summary."""
    t0 = time.time()
    if rows_per_file < 1:
        raise UserError(f"--rows-per-file must be at least 1, got {rows_per_file}")
    src = Storage(input, storage_options)
    source = find_source(src, "images")
    out = Storage(output, storage_options)

    with OutputWriter(out, overwrite=overwrite) as writer:   # (never resumed: a rerun packs anew)
        if not ray.is_initialized():
            ray.init(include_dashboard=False)  # as jobs.ocr: the dashboard slows the start
        writer.stage(read_crops(src, source, "image").select_columns(["path", "image"]),
                     rows_per_file=rows_per_file, max_rows_per_file=rows_per_file)
        parts = writer.parts()   # every file is one row, once
        paths = pq.ParquetDataset(parts, filesystem=out.arrow_fs).read(columns=["path"])["path"]
        distinct = pc.count_distinct(paths).as_py()
        if len(paths) != len(source.files) or distinct != len(source.files):
            raise RuntimeError(f"pack check failed: {len(source.files)} files, {len(paths)} rows written "
                               f"({distinct} distinct paths); staged output left in {writer.staging!r}")
        wall = time.time() - t0
        summary = {"files": len(source.files), "shards": len(parts), "wall_s": round(wall, 3),
                   "files_per_s": round(len(source.files) / wall, 1), "input": input, "output": output,
                   "rows_per_file": rows_per_file, "storage_options": sorted(storage_options or {})}
        writer.commit(summary)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="folder/prefix of image files (png, jpg, tif, ...; searched recursively)")
    p.add_argument("--output", required=True, help="output folder/prefix for the Parquet shards")
    p.add_argument("--rows-per-file", type=int, default=50_000, help="images per shard (default 50000)")
    p.add_argument("--overwrite", action="store_true", help="replace a complete output")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE", help="fsspec/s3fs option (repeatable)")
    p.add_argument("--storage-options-file", help="JSON file of fsspec/s3fs options")
    args = p.parse_args(argv)
    try:
        summary = pack(args.input, args.output, args.rows_per_file, args.overwrite,
                       parse_storage_options(args.storage_option, args.storage_options_file))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
