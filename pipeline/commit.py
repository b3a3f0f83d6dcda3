"""Commit: the staged parts become the output, with `_summary.json` and `_SUCCESS`, seen whole or not at all.

On local disk `_summary.json` and `_SUCCESS` are written into the staging folder, which then takes the output's
place by renames (staging -> `.<name>.commit-<run>`, output -> `.<name>.old-<run>`, commit -> output, old
removed), so a reader sees the old output, none, or the whole new one. A commit interrupted between renames is
finished by the next run (`recover`). Where renames cannot do it (object stores, an output folder holding other
files, another device), parts are moved one by one and `_SUCCESS`, written last, lists them: readers wait for it
and read the parts it lists.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid

import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.lease import LEASE, Lease
from pipeline.storage import Storage, remove_local

STAGING, SUMMARY, SUCCESS = "_staging", "_summary.json", "_SUCCESS"


def parts(store: Storage, folder: str) -> list[str]:
    """The Parquet parts in `folder`, sorted."""
    fs = store.fs
    fs.invalidate_cache(folder)  # Ray workers write parts from other processes: s3fs's cached listing is stale
    if not store.call("listing output", store.exists, folder):
        return []
    return sorted(f for f in store.call("listing output", fs.ls, folder, detail=False) if f.endswith(".parquet"))


def sibling(store: Storage, kind: str, run_id: str) -> str:
    """`<parent>/.<name>.<kind>-<run_id>`: beside the output (local disk only), hidden from readers."""
    parent, name = posixpath.split(store.path)
    return posixpath.join(parent, f".{name}.{kind}-{run_id}")


def siblings(store: Storage, kind: str) -> list[str]:
    if not store.is_local:
        return []
    parent, name = posixpath.split(store.path)
    try:
        return sorted(posixpath.join(parent, n) for n in os.listdir(parent) if n.startswith(f".{name}.{kind}-"))
    except FileNotFoundError:
        return []


def commit(store: Storage, run_id: str, summary: dict, lease: Lease) -> None:
    """Make the staged parts the output, with `_summary.json` and `_SUCCESS` (listing the parts)."""
    staging = store.join(STAGING)
    success = {"run_id": run_id, "rows": 0, "parts": []}
    for part in parts(store, staging):
        rows = store.call("reading output", pq.read_metadata, part, filesystem=store.arrow_fs).num_rows
        success["parts"].append({"name": posixpath.basename(part), "rows": rows})
        success["rows"] += rows
    if not (_swappable(store) and _by_rename(store, run_id, summary, success, lease)):
        _by_moves(store, summary, success, lease)


def _swappable(store: Storage) -> bool:
    """Local, and the output folder holds nothing but this job's files: it can be swapped whole."""
    out = store.path
    if not store.is_local or os.path.islink(out):
        return False
    ours = {STAGING, SUMMARY, SUCCESS, LEASE}
    try:
        parent_dev = os.stat(posixpath.dirname(out)).st_dev
        return (os.stat(out).st_dev == parent_dev and os.access(posixpath.dirname(out), os.W_OK)
                and all(n in ours or n.endswith(".parquet") for n in os.listdir(out)))
    except OSError:
        return False


def _by_rename(store: Storage, run_id: str, summary: dict, success: dict, lease: Lease) -> bool:
    """Swap the complete staging folder in for the output (see the module's doc); False if the first rename is
    refused (nothing changed then: the caller moves parts instead)."""
    out, staging = store.path, store.join(STAGING)
    store.put_json(posixpath.join(staging, SUMMARY), summary, indent=2)
    store.put_json(posixpath.join(staging, SUCCESS), success, indent=2)
    lease.stop()  # the lease's file travels with the folder, its heartbeat at most HEARTBEAT_S old
    new, old = sibling(store, "commit", run_id), sibling(store, "old", run_id)
    try:
        os.rename(staging, new)
    except OSError:
        return _unswap(staging, lease)
    try:
        os.rename(out, old)               # from here a reader finds no output ...
    except OSError:
        os.rename(new, staging)           # (if even this fails, the next run finishes the commit)
        return _unswap(staging, lease)
    try:
        os.rename(new, out)               # ... until the whole new one is in place
    except OSError:
        os.rename(old, out)
        os.rename(new, staging)
        raise
    remove_local(posixpath.join(out, LEASE))
    shutil.rmtree(old, ignore_errors=True)
    return True


def _unswap(staging: str, lease: Lease) -> bool:
    """Back to before `_by_rename`: staging without `_summary.json`/`_SUCCESS`, the lease beating."""
    for name in (SUMMARY, SUCCESS):
        remove_local(posixpath.join(staging, name))
    lease.start()
    return False


def _by_moves(store: Storage, summary: dict, success: dict, lease: Lease) -> None:
    """Object stores (and local folders that cannot be swapped): readers wait for `_SUCCESS`."""
    fs, out, staging = store.fs, store.path, store.join(STAGING)
    if store.exists(store.join(SUCCESS)):
        fs.rm(store.join(SUCCESS))
    for old in parts(store, out):  # only with --overwrite: the writer refused otherwise
        fs.rm(old)
    for part in parts(store, staging):
        fs.mv(part, posixpath.join(out, posixpath.basename(part)))
    store.put_json(store.join(SUMMARY), summary, indent=2)
    store.put_json(store.join(SUCCESS), success, indent=2)
    lease.stop()
    try:
        fs.rm(staging, recursive=True)
    except FileNotFoundError:  # object stores: no objects left under the prefix, so no "folder" either
        pass


def recover(store: Storage) -> None:
    """Local disk: finish what a commit killed between its renames left (no live run holds the output).
    A commit folder with a whole `_SUCCESS` takes the output's place; one without goes back to staging."""
    if not store.is_local:
        return
    try:
        _recover_local(store)
    except OSError as e:
        raise UserError(f"output {store.uri!r}: finishing an interrupted commit failed: {e}") from None


def _recover_local(store: Storage) -> None:
    out, staging = store.path, store.join(STAGING)
    success = store.read_json(posixpath.join(staging, SUCCESS))
    if success and success.get("run_id"):  # killed after writing _SUCCESS, before the first rename
        os.rename(staging, sibling(store, "commit", success["run_id"]))
    for folder in siblings(store, "commit"):
        success = store.read_json(posixpath.join(folder, SUCCESS))
        if _lists_whole(folder, success):
            if os.path.lexists(out):
                os.rename(out, sibling(store, "old", uuid.uuid4().hex[:8]))
            os.rename(folder, out)
            remove_local(posixpath.join(out, LEASE))
            print(f"note: finished the interrupted commit of run {success['run_id']} into {store.uri!r}")
        else:
            if not os.path.lexists(out) and (olds := siblings(store, "old")):
                os.rename(olds[-1], out)  # the output as it was before that commit began
            os.makedirs(staging, exist_ok=True)
            for part in parts(store, folder):
                os.replace(part, posixpath.join(staging, posixpath.basename(part)))
            shutil.rmtree(folder, ignore_errors=True)
            print(f"note: an interrupted commit into {store.uri!r} went back to staging (--resume finishes it)")
    for old in siblings(store, "old"):
        if os.path.lexists(out):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, out)
    if os.path.exists(posixpath.join(out, SUCCESS)):
        remove_local(posixpath.join(out, LEASE))  # left by a commit killed just after its last rename


def _lists_whole(folder: str, success: dict | None) -> bool:
    """Whether `success` (a `_SUCCESS` record) is whole and every part it lists is in `folder`."""
    try:
        return bool(success["run_id"]) and all(os.path.isfile(posixpath.join(folder, p["name"]))
                                               for p in success["parts"])
    except (TypeError, KeyError):
        return False
