"""Write: Parquet parts staged under `<output>/_staging/`, made visible only when the job is complete.

Layout of a finished output:
    <output>/*.parquet      the rows: input columns + text, score, error, model
    <output>/_summary.json  counts, timing, model, options
    <output>/_SUCCESS       JSON: the run id and the parts (name, rows); readers and re-runs trust only it
Names starting with '_' or '.' are ignored by pandas/pyarrow/Spark readers, so staged parts are invisible.

One run at a time: a run holds the output with a lease, `_staging/_lease.json` (run id, host, pid, start,
heartbeat), refreshed every HEARTBEAT_S by a daemon thread. Another run refuses while the holder is alive;
a holder whose process is gone (same host) or whose heartbeat is older than STALE_S is taken over.

Commit on local disk: `_summary.json` and `_SUCCESS` are written into the staging folder, which then takes
the output's place by renames (staging -> `.<name>.commit-<run>`, output -> `.<name>.old-<run>`, commit ->
output, old removed), so a reader sees the old output, none, or the whole new one. A commit interrupted
between renames is finished by the next run (`_recover`). Where renames cannot do it (object stores, an
output folder holding other files, another device), parts are moved one by one and `_SUCCESS`, written
last, lists them: readers wait for it and read the parts it lists.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data

from pipeline.errors import UserError
from pipeline.storage import Storage

STAGING, SUMMARY, SUCCESS, LEASE = "_staging", "_summary.json", "_SUCCESS", "_lease.json"
HEARTBEAT_S = 10.0   # how often a live run refreshes its lease
STALE_S = 60.0       # a lease not refreshed for this long belongs to a run that is gone


class OutputCheckFailed(UserError):
    """The staged rows do not account for the input: nothing was committed, the staged parts are kept."""


class OutputWriter:
    """Staged, all-or-nothing Parquet output at `store`, held by one run at a time (a lease). One entry point:

        with OutputWriter(store, overwrite=..., resume=...) as writer:   # takes the lease, checks the output
            ...                                                          # (the caller's own checks, ray.init)
            summary = writer.write(rows, summarize)                      # stage, check, commit

    Leaving the block any other way (an exception, Ctrl-C) lets go of the lease and keeps the staged parts.
    """

    def __init__(self, store: Storage, overwrite: bool = False, resume: bool = False):
        self.store, self.overwrite, self.resume = store, overwrite, resume
        self.staging = store.join(STAGING)
        self.run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._lease: _Lease | None = None

    def __enter__(self) -> OutputWriter:
        self._check_target(self.resume)
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    def write(self, rows: Callable[[pa.Array], ray.data.Dataset] | pa.Schema, summarize: Callable[[Staged], dict],
              id_column: str | None = None, rows_per_file: int | None = None,
              max_rows_per_file: int | None = None) -> dict:
        """Stage the rows, let `summarize` check what was staged and give the summary, commit; returns it.

        rows: a function of the ids an earlier run staged (read from `id_column` when resuming; none otherwise)
        giving the Dataset of the rows still to do, streamed into staged Parquet parts; or a schema: one part
        of no rows (an empty input's whole output, never resumed).
        summarize: raises (`Staged.incomplete`) if the staged rows do not account for the input; nothing is
        committed then and the staged parts are kept. What it returns becomes `_summary.json`.
        """
        empty = isinstance(rows, pa.Schema)
        resume = self.resume and not empty
        self._prepare(resume=resume)
        done = self._finished_ids(id_column) if resume else pa.array([], pa.string())
        dataset = None
        if empty:
            self._write_empty(rows)
        else:
            dataset = rows(done)
            self._stage(dataset, rows_per_file, max_rows_per_file)
        summary = summarize(Staged(self, dataset, len(done)))
        self._commit(summary)
        return summary

    # --- listing ------------------------------------------------------------------------------------

    def _parts(self, folder: str) -> list[str]:
        fs = self.store.fs
        fs.invalidate_cache(folder)  # Ray workers write parts from other processes: s3fs's cached listing is stale
        if not self.store.call("listing output", self.store.exists, folder):
            return []
        return sorted(f for f in self.store.call("listing output", fs.ls, folder, detail=False)
                      if f.endswith(".parquet"))

    def _sibling(self, kind: str, run_id: str) -> str:
        """`<parent>/.<name>.<kind>-<run_id>`: beside the output (local disk only), hidden from readers."""
        parent, name = posixpath.split(self.store.path)
        return posixpath.join(parent, f".{name}.{kind}-{run_id}")

    def _siblings(self, kind: str) -> list[str]:
        if not self.store.is_local:
            return []
        parent, name = posixpath.split(self.store.path)
        try:
            return sorted(posixpath.join(parent, n) for n in os.listdir(parent) if n.startswith(f".{name}.{kind}-"))
        except FileNotFoundError:
            return []

    # --- the lease ----------------------------------------------------------------------------------

    def holder(self) -> dict | None:
        """The live run (its lease record) holding this output, other than this one; None if there is none."""
        for folder in [self.staging, *self._siblings("commit")]:
            path = posixpath.join(folder, LEASE)
            record = _read_json(self.store, path)
            if record and record.get("run_id") != self.run_id and _alive(record):
                return record
        return None

    def _refuse_if_held(self) -> None:
        if holder := self.holder():
            age = time.time() - holder.get("heartbeat", 0)
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
            raise UserError(
                f"output {self.store.uri!r} is in use by run {holder.get('run_id')} (pid {holder.get('pid')} on "
                f"{holder.get('host')}, started {started}, last heartbeat {age:.0f} s ago); wait for it to end or "
                f"stop it: a run whose process is gone, or silent for {STALE_S:.0f} s, is taken over "
                f"(--resume then keeps its work)")

    def _acquire(self) -> None:
        """Take the lease (the caller checked that no live run holds it); refuse if another run got it first."""
        store, path = self.store, posixpath.join(self.staging, LEASE)
        record = {"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                  "pid_start": _process_start(os.getpid()), "started": time.time(), "heartbeat": time.time()}
        made = []
        if store.is_local:
            for d in (store.path, self.staging):
                if not os.path.isdir(d):
                    store.call("creating output", os.makedirs, d, exist_ok=True)
                    made.append(d)
            if os.path.lexists(path):  # a dead or stale run's (the caller checked): removed, then made anew
                self._refuse_if_held()
                _remove(path)
            tmp = f"{path}.{os.getpid()}.tmp"
            store.call("writing output", _put_json, store, tmp, record)
            try:
                os.link(tmp, path)  # whole and exclusive: fails if another run made its lease meanwhile
            except FileExistsError:
                self._refuse_if_held()
                raise UserError(f"output {store.uri!r}: another run is taking it over; try again") from None
            except OSError:  # a filesystem without hard links: not exclusive, still whole
                os.replace(tmp, path)
            finally:
                _remove(tmp)
        else:  # object stores: no create-if-absent; last writer wins, and reading back tells who did
            store.call("writing output", _put_json, store, path, record)
            if (_read_json(store, path) or {}).get("run_id") != self.run_id:
                self._refuse_if_held()
        self._lease = _Lease(store, path, record, made)
        # A run that ends without _commit() or _release() (an exception, the interpreter exiting) lets go too.
        weakref.finalize(self, self._lease.release)

    def _release(self) -> None:
        """Give the output up without committing (staged parts stay for --resume)."""
        if self._lease:
            self._lease.release()
            self._lease = None

    def _check_lease(self) -> None:
        """Commit only while this run still holds the lease (a run silent for STALE_S may have lost it)."""
        record = _read_json(self.store, posixpath.join(self.staging, LEASE)) if self._lease else None
        if not record or record.get("run_id") != self.run_id:
            other = (record or {}).get("run_id")
            self._release()
            raise UserError(f"output {self.store.uri!r}: this run ({self.run_id}) lost its lease"
                            f"{f' to run {other}' if other else ''}: nothing was committed")

    # --- before the run -----------------------------------------------------------------------------

    def _check_target(self, resume: bool = False) -> None:
        """Take the output's lease (refusing while another run holds it), finish a commit that was
        interrupted, then refuse a complete output (unless overwriting) or foreign Parquet files
        (unless resuming: then they are ours, from a commit that was interrupted)."""
        store, out = self.store, self.store.path
        if store.bucket and not store.call("checking output", store.exists, store.bucket):
            raise UserError(f"output {store.uri!r}: bucket {store.bucket!r} does not exist (create it first)")
        self._refuse_if_held()
        self._recover()
        self._acquire()
        try:
            if store.call("checking output", store.exists, store.join(SUCCESS)):
                if not self.overwrite:
                    raise UserError(f"output {self.store.uri!r} is already complete ({SUCCESS} exists); "
                                    f"pass --overwrite to replace it or choose another --output")
            elif (parts := self._parts(out)) and not (self.overwrite or resume):
                raise UserError(f"output {self.store.uri!r} holds {len(parts)} .parquet files but no {SUCCESS}; "
                                f"pass --overwrite to replace them or choose another --output")
        except BaseException:
            self._release()
            raise

    def _recover(self) -> None:
        """Local disk: finish what a commit killed between its renames left (no live run holds the output).
        A commit folder with a whole `_SUCCESS` takes the output's place; one without goes back to staging."""
        if not self.store.is_local:
            return
        try:
            self._recover_local()
        except OSError as e:
            raise UserError(f"output {self.store.uri!r}: finishing an interrupted commit failed: {e}") from None

    def _recover_local(self) -> None:
        out = self.store.path
        success = _read_json(self.store, posixpath.join(self.staging, SUCCESS))
        if success and success.get("run_id"):  # killed after writing _SUCCESS, before the first rename
            os.rename(self.staging, self._sibling("commit", success["run_id"]))
        for commit in self._siblings("commit"):
            success = _read_json(self.store, posixpath.join(commit, SUCCESS))
            if _lists_whole(commit, success):
                if os.path.lexists(out):
                    os.rename(out, self._sibling("old", uuid.uuid4().hex[:8]))
                os.rename(commit, out)
                _remove(posixpath.join(out, LEASE))
                print(f"note: finished the interrupted commit of run {success['run_id']} into {self.store.uri!r}")
            else:
                if not os.path.lexists(out) and (olds := self._siblings("old")):
                    os.rename(olds[-1], out)  # the output as it was before that commit began
                os.makedirs(self.staging, exist_ok=True)
                for part in self._parts(commit):
                    os.replace(part, posixpath.join(self.staging, posixpath.basename(part)))
                shutil.rmtree(commit, ignore_errors=True)
                print(f"note: an interrupted commit into {self.store.uri!r} went back to staging "
                      f"(--resume finishes it)")
        for old in self._siblings("old"):
            if os.path.lexists(out):
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(old, out)
        if os.path.exists(posixpath.join(out, SUCCESS)):
            _remove(posixpath.join(out, LEASE))  # left by a commit killed just after its last rename

    def _prepare(self, resume: bool) -> None:
        """Start a fresh staging area, or keep it to resume; fail now, not mid-run, if it is not writable."""
        if self._lease is None:
            self._check_target(resume)
        fs = self.store.fs
        if resume:
            if not self.store.exists(self.store.join(SUCCESS)):  # parts an interrupted commit moved: back they go
                for part in self._parts(self.store.path):
                    fs.mv(part, posixpath.join(self.staging, posixpath.basename(part)))
        elif stale := self._parts(self.staging):
            print(f"note: {len(stale)} parts staged by an earlier run are discarded (--resume keeps them)")
        if self.store.exists(self.staging):  # keep the lease (and, resuming, the parts); drop the rest
            fs.invalidate_cache(self.staging)
            for entry in self.store.call("listing output", fs.ls, self.staging, detail=False):
                name = posixpath.basename(entry.rstrip("/"))
                if name != LEASE and not (resume and name.endswith(".parquet")):
                    fs.rm(entry, recursive=True)
        self.store.call("creating output", fs.makedirs, self.staging, exist_ok=True)
        probe = posixpath.join(self.staging, "_write_check")
        self.store.call("writing output", fs.touch, probe)
        fs.rm(probe)

    def _finished_ids(self, id_column: str) -> pa.Array:
        """Ids already written by an earlier, interrupted run; unreadable (half-written) parts are deleted."""
        fs, done = self.store.fs, []
        for part in self._parts(self.staging):
            try:
                done.append(pq.read_table(part, columns=[id_column], filesystem=self.store.arrow_fs)[id_column])
            except Exception:  # a part the killed run did not finish: its rows will be redone
                fs.rm(part)
        return pa.chunked_array(done).combine_chunks() if done else pa.array([], pa.string())

    # --- the run ------------------------------------------------------------------------------------

    def _stage(self, ds: ray.data.Dataset, rows_per_file: int | None = None,
               max_rows_per_file: int | None = None) -> None:
        """Execute the dataset, streaming its blocks into staged Parquet parts."""
        try:
            ds.write_parquet(self.store.url(self.staging), filesystem=self.store.arrow_fs,
                             min_rows_per_file=rows_per_file, max_rows_per_file=max_rows_per_file)
        except BaseException:
            self._release()
            raise

    def _write_empty(self, schema: pa.Schema) -> None:
        """Stage one Parquet part of no rows with the output's schema (an empty input's whole output)."""
        path = posixpath.join(self.staging, f"{self.run_id}-empty.parquet")
        self.store.call("writing output", pq.write_table, schema.empty_table(), path, filesystem=self.store.arrow_fs)

    def _staged_counts(self, id_column: str | None) -> dict:
        """Rows, failed rows (and by kind: the error up to its first ':') in the staged parts, read back from
        the files: what readers will see."""
        try:
            parts = self._parts(self.staging)
            cols = ["error"] + ([id_column] if id_column else [])
            if parts:
                table = pq.ParquetDataset(parts, filesystem=self.store.arrow_fs).read(columns=cols)
            else:
                table = pa.table({c: pa.array([], pa.string()) for c in cols})
            errors = table["error"].drop_null()
            kinds = pc.utf8_trim_whitespace(pc.list_element(pc.split_pattern(errors, ":", max_splits=1), 0))
            counts = {"rows": table.num_rows, "failed": len(errors),
                      "errors": {k: n for k, n in sorted(((d["values"], d["counts"])
                                                          for d in pc.value_counts(kinds).to_pylist()),
                                                         key=lambda kn: (-kn[1], kn[0]))}}
            if id_column:
                counts["unique_ids"] = pc.count_distinct(table[id_column]).as_py()
                # count_distinct skips nulls: a null id is neither a distinct id nor a repeat of one.
                counts["null_ids"] = table[id_column].null_count
            return counts
        except BaseException:
            self._release()
            raise

    def _incomplete(self, what: str, resumable: bool) -> OutputCheckFailed:
        """The error for staged rows that do not account for the input (the lease is let go, parts kept)."""
        self._release()
        then = ("rerun with --resume (same --input and --output) to finish them" if resumable
                else "a rerun starts over (--resume needs an id column)")
        return OutputCheckFailed(f"output check failed: {what}; nothing was committed, the staged parts are left "
                                 f"in {self.store.url(self.staging)!r}: {then}")

    # --- commit -------------------------------------------------------------------------------------

    def _commit(self, summary: dict) -> None:
        """Make the staged parts the output, with `_summary.json` and `_SUCCESS` (listing the parts)."""
        self._check_lease()
        try:
            parts = self._parts(self.staging)
            success = {"run_id": self.run_id, "rows": 0, "parts": []}
            for part in parts:
                meta = self.store.call("reading output", pq.read_metadata, part, filesystem=self.store.arrow_fs)
                rows = meta.num_rows
                success["parts"].append({"name": posixpath.basename(part), "rows": rows})
                success["rows"] += rows
            if not (self._swappable() and self._commit_by_rename(summary, success)):
                self._commit_by_moves(summary, success)
        finally:
            self._release()

    def _swappable(self) -> bool:
        """Local, and the output folder holds nothing but this job's files: it can be swapped whole."""
        out = self.store.path
        if not self.store.is_local or os.path.islink(out):
            return False
        ours = {STAGING, SUMMARY, SUCCESS, LEASE}
        try:
            parent_dev = os.stat(posixpath.dirname(out)).st_dev
            return (os.stat(out).st_dev == parent_dev and os.access(posixpath.dirname(out), os.W_OK)
                    and all(n in ours or n.endswith(".parquet") for n in os.listdir(out)))
        except OSError:
            return False

    def _commit_by_rename(self, summary: dict, success: dict) -> bool:
        """Swap the complete staging folder in for the output (see the module's doc); False if the first
        rename is refused (nothing changed then: the caller moves parts instead)."""
        out, staging = self.store.path, self.staging
        _put_json(self.store, posixpath.join(staging, SUMMARY), summary, indent=2)
        _put_json(self.store, posixpath.join(staging, SUCCESS), success, indent=2)
        self._lease.stop()  # the lease's file travels with the folder, its heartbeat at most HEARTBEAT_S old
        commit, old = self._sibling("commit", self.run_id), self._sibling("old", self.run_id)
        try:
            os.rename(staging, commit)
        except OSError:
            return self._unswap()
        try:
            os.rename(out, old)               # from here a reader finds no output ...
        except OSError:
            os.rename(commit, staging)        # (if even this fails, the next run finishes the commit)
            return self._unswap()
        try:
            os.rename(commit, out)            # ... until the whole new one is in place
        except OSError:
            os.rename(old, out)
            os.rename(commit, staging)
            raise
        _remove(posixpath.join(out, LEASE))
        shutil.rmtree(old, ignore_errors=True)
        return True

    def _unswap(self) -> bool:
        """Back to before `_commit_by_rename`: staging without `_summary.json`/`_SUCCESS`, lease beating."""
        for name in (SUMMARY, SUCCESS):
            _remove(posixpath.join(self.staging, name))
        self._lease.start()
        return False

    def _commit_by_moves(self, summary: dict, success: dict) -> None:
        """Object stores (and local folders that cannot be swapped): readers wait for `_SUCCESS`."""
        fs, out = self.store.fs, self.store.path
        if self.store.exists(self.store.join(SUCCESS)):
            fs.rm(self.store.join(SUCCESS))
        for old in self._parts(out):  # only with --overwrite: _check_target refused otherwise
            fs.rm(old)
        for part in self._parts(self.staging):
            fs.mv(part, posixpath.join(out, posixpath.basename(part)))
        _put_json(self.store, self.store.join(SUMMARY), summary, indent=2)
        _put_json(self.store, self.store.join(SUCCESS), success, indent=2)
        self._lease.stop()
        try:
            fs.rm(self.staging, recursive=True)
        except FileNotFoundError:  # object stores: no objects left under the prefix, so no "folder" either
            pass


class Staged:
    """What a run staged, read back from the files (what readers will see), for `summarize`'s check and
    summary between staging and commit."""

    def __init__(self, writer: OutputWriter, dataset: ray.data.Dataset | None, resumed: int):
        self._writer = writer
        self.dataset = dataset        # the Dataset that was written (for its stats); None for an empty output
        self.resumed = resumed        # rows an earlier run staged, kept (--resume)
        self.staging = writer.staging

    def parts(self) -> list[str]:
        return self._writer._parts(self.staging)

    def counts(self, id_column: str | None) -> dict:
        return self._writer._staged_counts(id_column)

    def incomplete(self, what: str, resumable: bool) -> OutputCheckFailed:
        return self._writer._incomplete(what, resumable)


class _Lease:
    """This run's lease file and the daemon thread that refreshes its heartbeat (no reference to the writer,
    so that a writer dropped without commit or release is collected, and its finalizer lets go)."""

    def __init__(self, store: Storage, path: str, record: dict, made: list[str]):
        self.store, self.path, self.record, self.made = store, path, record, made
        self.lock = threading.Lock()
        self.released = False
        self.start()

    def start(self) -> None:
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._beat, args=(self.stopping,), daemon=True, name="ocr-output-lease")
        self.thread.start()

    def _beat(self, stopping: threading.Event) -> None:
        while not stopping.wait(HEARTBEAT_S):
            with self.lock:
                if stopping.is_set():
                    return
                try:
                    if (_read_json(self.store, self.path) or {}).get("run_id") != self.record["run_id"]:
                        return  # taken over (or removed): _commit() will refuse
                    self.record["heartbeat"] = time.time()
                    _put_json(self.store, self.path, self.record)
                except Exception:  # a storage hiccup: try again at the next beat
                    pass

    def stop(self) -> None:
        with self.lock:  # a beat in progress finishes first
            self.stopping.set()

    def release(self) -> None:
        """Stop the heartbeat, remove the lease file if it is still this run's, and the folders it created
        if they are empty."""
        self.stop()
        if self.released:
            return
        self.released = True
        try:
            if (_read_json(self.store, self.path) or {}).get("run_id") == self.record["run_id"]:
                self.store.fs.rm(self.path)
        except Exception:  # the interpreter exiting, or the store unreachable: the lease goes stale
            pass
        for d in reversed(self.made):
            try:
                os.rmdir(d)
            except OSError:
                pass


def _read_json(store: Storage, path: str) -> dict | None:
    """A small JSON file, or None if it is missing or not whole JSON."""
    data = store.call("reading output", _cat, store.fs, path)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _lists_whole(folder: str, success: dict | None) -> bool:
    """Whether `success` (a `_SUCCESS` record) is whole and every part it lists is in `folder`."""
    try:
        return bool(success["run_id"]) and all(os.path.isfile(posixpath.join(folder, p["name"]))
                                               for p in success["parts"])
    except (TypeError, KeyError):
        return False


def _cat(fs, path: str) -> bytes | None:
    try:
        return fs.cat_file(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _put_json(store: Storage, path: str, value: dict, indent: int | None = None) -> None:
    """Write a JSON file whole: local files by rename (no reader sees half of one), objects in one PUT."""
    data = json.dumps(value, indent=indent).encode()
    if store.is_local:
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        store.fs.pipe_file(path, data)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _process_start(pid: int) -> str | None:
    """The process's start time (Linux: /proc/<pid>/stat field 22), to tell a reused pid; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(record: dict) -> bool:
    """Whether the run of a lease may still be running: heartbeat fresh and, on this host, its process there."""
    if time.time() - float(record.get("heartbeat", 0)) > STALE_S:
        return False
    if record.get("host") != socket.gethostname():
        return True
    pid = int(record.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OSError, ValueError, OverflowError):
        return False
    start = _process_start(pid)
    if os.path.exists("/proc/self/stat"):
        return start is not None and (record.get("pid_start") is None or start == record.get("pid_start"))
    return True
