"""Local paths, s3:// and any other fsspec URL, resolved the same way for every stage.

Credentials come from the standard AWS environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL,
AWS_PROFILE, ...) or explicit `storage_options`; they are passed to fsspec only, never printed.
"""

from __future__ import annotations

import fsspec
import pyarrow.fs as pafs
from fsspec.core import url_to_fs

from pipeline.errors import UserError


class Storage:
    """An fsspec filesystem plus the path inside it, and the pyarrow view Ray Data's readers/writers take."""

    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = uri.rstrip("/") if "://" in uri else uri
        try:
            self.fs, self.path = url_to_fs(self.uri, **(storage_options or {}))
        except (ValueError, ImportError) as e:
            raise UserError(f"cannot open {uri!r}: {e}") from None
        self.path = self.path.rstrip("/") or self.path
        # fsspec shares one filesystem instance per set of options, listings cached: start from fresh ones
        # (another process, or Ray workers, may have changed the store since).
        self.fs.invalidate_cache()

    @property
    def protocol(self) -> str:
        p = self.fs.protocol
        return p[0] if isinstance(p, (tuple, list)) else p

    @property
    def is_local(self) -> bool:
        return self.protocol in ("file", "local")

    @property
    def arrow_fs(self) -> pafs.FileSystem:
        """Ray Data takes pyarrow filesystems; fsspec ones are wrapped (local stays native)."""
        if self.is_local:
            return pafs.LocalFileSystem()
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    @property
    def bucket(self) -> str | None:
        """The bucket (first path component) on object stores; None for local paths."""
        return None if self.is_local else self.path.split("/", 1)[0]

    def exists(self, path: str | None = None) -> bool:
        """Like `fs.exists`, but only "not found" answers False: s3fs's `exists` on a bucket root answers
        False for any failure (bad endpoint, bad credentials), which would read as "does not exist"."""
        try:
            self.fs.info(self.path if path is None else path)
            return True
        except FileNotFoundError:
            return False

    def not_found(self, what: str) -> UserError:
        """The error for a missing URI, naming the bucket when it is the bucket that is missing."""
        if self.bucket and self.path != self.bucket and not self.call(what, self.exists, self.bucket):
            return UserError(f"{what} {self.uri!r} does not exist (no bucket {self.bucket!r})")
        return UserError(f"{what} {self.uri!r} does not exist")

    def join(self, *parts: str) -> str:
        return "/".join([self.path, *parts])

    def url(self, path: str) -> str:
        """Full URL for a path on this filesystem (how users see it)."""
        return path if self.is_local else f"{self.protocol}://{path}"

    def call(self, what: str, fn, *args, **kwargs):
        """Run a filesystem call, turning storage failures into one-line UserErrors naming the URI."""
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise UserError(f"{what}: {self.uri!r} does not exist") from None
        except PermissionError as e:  # S3 answers 403 both for a wrong key/secret and for a policy that denies
            hint = "" if self.is_local else " (check the credentials and the bucket's policy)"
            raise UserError(f"{what}: permission denied for {self.uri!r}: {_one_line(e)}{hint}") from None
        except OSError as e:
            raise UserError(f"{what}: {self.uri!r}: {_one_line(e)}") from None
        except TypeError as e:  # s3fs hands options it does not know to botocore at the first call
            if "unexpected keyword argument" not in str(e):
                raise
            raise UserError(f"{what}: {self.uri!r}: a storage option is not one {self.protocol} takes: "
                            f"{_one_line(e)}") from None
        except Exception as e:  # botocore/aiohttp raise their own types for bad endpoints and credentials
            name = type(e).__name__
            if name in ("NoCredentialsError", "ClientError", "EndpointConnectionError", "ClientConnectorError",
                        "InvalidEndpointURL", "ValueError", "ServerTimeoutError", "ArrowInvalid",
                        "ConnectTimeoutError", "ReadTimeoutError"):
                raise UserError(f"{what}: {self.uri!r}: {name}: {_one_line(e)}") from None
            raise


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300]


def parse_storage_options(items: list[str] | None, json_file: str | None = None) -> dict:
    """`key=value` pairs (and/or a JSON file) -> fsspec storage options; values 'true'/'false'/numbers are typed."""
    import json

    opts: dict = {}
    if json_file:
        with fsspec.open(json_file, "r") as f:
            opts.update(json.load(f))
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--storage-option expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        low = value.lower()
        opts[key] = True if low == "true" else False if low == "false" else int(value) if value.isdigit() else value
    if "endpoint_url" in opts:  # s3fs takes the endpoint under client_kwargs
        opts.setdefault("client_kwargs", {})["endpoint_url"] = opts.pop("endpoint_url")
    return opts
