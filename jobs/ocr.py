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

from crnn.config import add_flags, from_flags
from pipeline.errors import JobFailed, UserError
from pipeline.ray_compat import registered_address
from pipeline.run import OcrOptions, run_ocr
from pipeline.storage import parse_storage_options


def parser() -> argparse.ArgumentParser:
    """A flag for every option of OcrOptions (pipeline/run.py), then the storage options, which reach OcrOptions
    parsed (parse_storage_options)."""
    p = argparse.ArgumentParser(prog="ocr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, OcrOptions)
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                   help="fsspec/s3fs option, e.g. endpoint_url=http://127.0.0.1:9000 or profile=name (repeatable; "
                        "credentials such as key/secret/token are refused here: use the environment or a file)")
    p.add_argument("--storage-options-file", metavar="PATH",
                   help="JSON file of fsspec/s3fs options, credentials included (read where the job starts)")
    return p


def options(args: argparse.Namespace) -> OcrOptions:
    """The run's options from the parsed flags (UserError for malformed storage options)."""
    return from_flags(OcrOptions, args,
                      storage_options=parse_storage_options(args.storage_option, args.storage_options_file))


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
            registered = registered_address()
            if not registered:
                return          # no cluster known (or Ray moved that interface): ray.init() decides
            address, path = registered
            where = f"registered by an earlier `ray start` in {path}"
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
        opts = options(args)
        if not ray.is_initialized():  # (run_ocr joins a Ray this process already runs)
            check_ray_address(opts.address)
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
