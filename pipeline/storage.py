"""Local paths, s3:// and any other fsspec URL, resolved the same way for every stage.

Credentials come from the standard AWS environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL,
AWS_PROFILE, ...) or explicit `storage_options` (from a JSON file, never from the command line: a command
line is recorded by the shell, `ps` and Ray's job list); they are passed to fsspec only, never printed.
"""

from __future__ import annotations

import json
import os
import threading

import fsspec
import pyarrow.fs as pafs
from fsspec.core import url_to_fs

from pipeline.errors import UserError


class Storage:
    """An fsspec filesystem plus the path inside it, and the pyarrow view Ray Data's readers/writers take."""

    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = uri.rstrip("/") if "://" in uri else uri
        check_storage_options(storage_options or {})
        try:
            self.fs, self.path = url_to_fs(self.uri, **(storage_options or {}))
        except (ValueError, ImportError) as e:
            raise UserError(f"cannot open {uri!r}: {e}") from None
        if self.protocol in ("s3", "s3a"):
            _check_botocore_config((storage_options or {}).get("config_kwargs"))
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

    def read_json(self, path: str) -> dict | None:
        """A small JSON object file (a lease, `_SUCCESS`), or None if it is missing or not whole JSON."""
        data = self.call("reading output", _cat, self.fs, path)
        try:
            value = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def put_json(self, path: str, value: dict, indent: int | None = None) -> None:
        """Write a JSON file whole: local files by rename (no reader sees half of one), objects in one PUT."""
        data = json.dumps(value, indent=indent).encode()
        if self.is_local:
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)

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


def _cat(fs, path: str) -> bytes | None:
    try:
        return fs.cat_file(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def remove_local(path: str) -> None:
    """os.remove, a file already gone being no error."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300]


# Option names that hold (or look like they hold) a credential: s3fs's key/secret/token, botocore's
# aws_access_key_id/aws_secret_access_key/aws_session_token (in client_kwargs), passwords, SAS/account keys.
_SECRET_WORDS = ("secret", "key", "token", "password", "passwd", "credential")
_NOT_ON_COMMAND_LINE = ("a command line is recorded (shell history, `ps`, and for a Ray job its entrypoint in "
                        "`ray job list`, the dashboard and the driver's log): put credentials in the environment "
                        "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE=name with ~/.aws/credentials, on "
                        "every node for a cluster) or in a JSON file given as --storage-options-file PATH")


def _secret_looking(name: str) -> bool:
    return any(w in name.lower() for w in _SECRET_WORDS)


def _secret_names(value, prefix: str = "") -> list[str]:
    """Dotted names of the secret-looking keys in a (nested) option value."""
    if not isinstance(value, dict):
        return []
    found = []
    for k, v in value.items():
        name = f"{prefix}{k}"
        found += [name] if _secret_looking(str(k)) else _secret_names(v, f"{name}.")
    return found


def check_storage_options(opts: dict) -> None:
    """Options fsspec/s3fs take as dicts (`client_kwargs`, `config_kwargs`, `s3_additional_kwargs`, any
    `*_kwargs`) must be dicts: s3fs would otherwise fail at the first request with an AttributeError."""
    if not isinstance(opts, dict):
        raise UserError(f"storage options must be a JSON object of option names to values, got {type(opts).__name__}")
    for name, value in opts.items():
        if str(name).endswith("_kwargs") and not isinstance(value, dict):
            raise UserError(f"storage option {name!r} must be a JSON object ({{...}}), not {type(value).__name__!r}")


def _check_botocore_config(config_kwargs) -> None:
    """`config_kwargs` become a botocore Config: check them now, naming the option, rather than at the first request."""
    if not config_kwargs:
        return
    try:
        from botocore.config import Config
    except ImportError:
        return
    unknown = sorted(set(config_kwargs) - set(Config.OPTION_DEFAULTS))
    if unknown:
        raise UserError(f"storage option 'config_kwargs': unknown botocore Config option "
                        f"{', '.join(map(repr, unknown))} (known ones include retries, connect_timeout, read_timeout)")
    try:
        Config(**config_kwargs)
    except Exception as e:  # botocore checks types and values as it builds the Config
        raise UserError(f"storage option 'config_kwargs': {type(e).__name__}: {_one_line(e)}") from None


def parse_storage_options(items: list[str] | None, json_file: str | None = None) -> dict:
    """`key=value` pairs (and/or a JSON file) -> fsspec storage options.

    Values 'true'/'false'/integers are typed, a value starting with `{` is read as JSON, and a dotted key sets
    a nested option (`client_kwargs.region_name=eu-west-1`). A secret-looking key (`key`, `secret`, `token`,
    `password`, ...; nested ones too) is refused on the command line: it belongs in the environment or in the
    JSON file, whose values reach Ray's workers inside the pickled filesystem, never on a command line.
    """
    import json

    opts: dict = {}
    cli: dict = {}
    for item in items or []:
        if "=" not in item:  # not echoed: it may be a credential typed without its key
            raise UserError("--storage-option expects key=value (an item without '=' was given)")
        key, value = item.split("=", 1)
        low = value.lower()
        if value.startswith("{"):
            try:
                typed = json.loads(value)
            except ValueError:
                raise UserError(f"--storage-option {key}: the value starts with '{{' but is not valid JSON") from None
        else:
            number = value.isascii() and value.isdigit()
            typed = {"true": True, "false": False}.get(low, int(value) if number else value)
        secrets = [key] if _secret_looking(key) else [f"{key}.{n}" for n in _secret_names(typed)]
        if secrets:
            raise UserError(f"--storage-option {secrets[0]!r} looks like a credential, refused on the command "
                            f"line: {_NOT_ON_COMMAND_LINE}")
        *parents, leaf = key.split(".")
        node = cli
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise UserError(f"--storage-option {key}: {parent!r} is set both as a value and as an object")
        node[leaf] = typed
    if json_file:
        try:
            with fsspec.open(json_file, "r") as f:
                opts = json.load(f)
        except FileNotFoundError:
            raise UserError(f"--storage-options-file {json_file!r} does not exist") from None
        except ValueError as e:
            raise UserError(f"--storage-options-file {json_file!r} is not valid JSON: {_one_line(e)}") from None
        except OSError as e:
            raise UserError(f"--storage-options-file {json_file!r}: {_one_line(e)}") from None
        if not isinstance(opts, dict):
            raise UserError(f"--storage-options-file {json_file!r} must hold a JSON object of option names to "
                            f"values, not a {type(opts).__name__}")
    _merge(opts, cli)  # the command line's options over the file's
    check_storage_options(opts)
    if "endpoint_url" in opts:  # s3fs takes the endpoint under client_kwargs
        opts.setdefault("client_kwargs", {})["endpoint_url"] = opts.pop("endpoint_url")
    return opts


def _merge(into: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
