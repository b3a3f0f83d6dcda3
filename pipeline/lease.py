"""One run at a time per output: the lease, `<output>/_staging/_lease.json` (run id, host, pid, start, heartbeat).

A run refreshes its lease every HEARTBEAT_S from a daemon thread. Another run refuses while the holder is alive;
a holder whose process is gone (same host) or whose heartbeat is older than STALE_S is taken over.
"""

from __future__ import annotations

import os
import posixpath
import socket
import threading
import time
import weakref

from pipeline.errors import UserError
from pipeline.storage import Storage, remove_local

LEASE = "_lease.json"
HEARTBEAT_S = 10.0   # how often a live run refreshes its lease
STALE_S = 60.0       # a lease not refreshed for this long belongs to a run that is gone


def holder(store: Storage, folders: list[str], run_id: str) -> dict | None:
    """The live run (its lease record) holding a lease in one of `folders`, other than `run_id`; None if none."""
    for folder in folders:
        record = store.read_json(posixpath.join(folder, LEASE))
        if record and record.get("run_id") != run_id and _alive(record):
            return record
    return None


def refuse_if_held(store: Storage, folders: list[str], run_id: str) -> None:
    if record := holder(store, folders, run_id):
        age = time.time() - record.get("heartbeat", 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("started", 0)))
        raise UserError(
            f"output {store.uri!r} is in use by run {record.get('run_id')} (pid {record.get('pid')} on "
            f"{record.get('host')}, started {started}, last heartbeat {age:.0f} s ago); wait for it to end or "
            f"stop it: a run whose process is gone, or silent for {STALE_S:.0f} s, is taken over "
            f"(--resume then keeps its work)")


def take(store: Storage, staging: str, run_id: str, folders: list[str], owner: object) -> Lease:
    """Take the lease in `staging` (the caller checked that no live run holds one in `folders`); refuse if another
    run got it first. Let go when `owner` is collected without a release (an exception, the interpreter exiting)."""
    path = posixpath.join(staging, LEASE)
    record = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
              "pid_start": _process_start(os.getpid()), "started": time.time(), "heartbeat": time.time()}
    made = []
    if store.is_local:
        for d in (store.path, staging):
            if not os.path.isdir(d):
                store.call("creating output", os.makedirs, d, exist_ok=True)
                made.append(d)
        if os.path.lexists(path):  # a dead or stale run's (the caller checked): removed, then made anew
            refuse_if_held(store, folders, run_id)
            remove_local(path)
        tmp = f"{path}.{os.getpid()}.tmp"
        store.call("writing output", store.put_json, tmp, record)
        try:
            os.link(tmp, path)  # whole and exclusive: fails if another run made its lease meanwhile
        except FileExistsError:
            refuse_if_held(store, folders, run_id)
            raise UserError(f"output {store.uri!r}: another run is taking it over; try again") from None
        except OSError:  # a filesystem without hard links: not exclusive, still whole
            os.replace(tmp, path)
        finally:
            remove_local(tmp)
    else:  # object stores: no create-if-absent; last writer wins, and reading back tells who did
        store.call("writing output", store.put_json, path, record)
        if (store.read_json(path) or {}).get("run_id") != run_id:
            refuse_if_held(store, folders, run_id)
    lease = Lease(store, path, record, made)
    weakref.finalize(owner, lease.release)
    return lease


class Lease:
    """This run's lease file and the daemon thread that refreshes its heartbeat (no reference to its owner, so
    that an owner dropped without commit or release is collected, and its finalizer lets go)."""

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
                    if (self.store.read_json(self.path) or {}).get("run_id") != self.record["run_id"]:
                        return  # taken over (or removed): the commit will refuse
                    self.record["heartbeat"] = time.time()
                    self.store.put_json(self.path, self.record)
                except Exception:  # a storage hiccup: try again at the next beat
                    pass

    def stop(self) -> None:
        with self.lock:  # a beat in progress finishes first
            self.stopping.set()

    def held(self) -> str | None:
        """None while this run holds the lease; else the run that took it over ('' if none did)."""
        record = self.store.read_json(self.path)
        return None if record and record.get("run_id") == self.record["run_id"] else (record or {}).get("run_id", "")

    def release(self) -> None:
        """Stop the heartbeat, remove the lease file if it is still this run's, and the folders it created
        if they are empty."""
        self.stop()
        if self.released:
            return
        self.released = True
        try:
            if (self.store.read_json(self.path) or {}).get("run_id") == self.record["run_id"]:
                self.store.fs.rm(self.path)
        except Exception:  # the interpreter exiting, or the store unreachable: the lease goes stale
            pass
        for d in reversed(self.made):
            try:
                os.rmdir(d)
            except OSError:
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
