"""Write: the output rows streamed into Parquet parts staged under `<output>/_staging/`, visible only once complete.

Layout of a finished output:
    <output>/*.parquet      the rows: input columns + text, score, error, model
    <output>/_summary.json  counts, timing, model, options
    <output>/_SUCCESS       JSON: the run id and the parts (name, rows); readers and re-runs trust only it
Names starting with '_' or '.' are ignored by pandas/pyarrow/Spark readers, so staged parts are invisible.
One run at a time holds the output (`pipeline/lease.py`); the commit is seen whole or not at all
(`pipeline/commit.py`).
"""

from __future__ import annotations

import posixpath
import time
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data

from pipeline import commit as _commit, lease as _lease
from pipeline.commit import STAGING, SUCCESS
from pipeline.errors import UserError
from pipeline.lease import LEASE
from pipeline.storage import Storage


class OutputCheckFailed(UserError):
    """The staged rows do not account for the input: nothing was committed, the staged parts are kept."""


class OutputWriter:
    """Staged, all-or-nothing Parquet output at `store`, held by one run at a time. In this order:

        with OutputWriter(store, overwrite=..., resume=...) as w:   # the lease; a complete output refused
            done = w.resumed_ids(id_column)                         # (resuming) ids an earlier run staged
            w.stage(dataset)                                        # or w.stage_empty(schema)
            counts = w.counts(id_column)                            # what readers will see
            w.commit(summary)                                       # or raise w.incomplete(...)

    Leaving the block any other way (an exception, Ctrl-C) lets go of the lease and keeps the staged parts.
    """

    def __init__(self, store: Storage, overwrite: bool = False, resume: bool = False):
        self.store, self.overwrite, self.resume = store, overwrite, resume
        self.staging = store.join(STAGING)
        self.run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._lease: _lease.Lease | None = None

    def __enter__(self) -> OutputWriter:
        """Take the output's lease (refusing while another run holds it), finish a commit that was interrupted,
        refuse a complete output (unless overwriting) or foreign Parquet files (unless resuming: then they are
        ours, from a commit that was interrupted), and make the staging area ready: fresh, or kept to resume."""
        store = self.store
        if store.bucket and not store.call("checking output", store.exists, store.bucket):
            raise UserError(f"output {store.uri!r}: bucket {store.bucket!r} does not exist (create it first)")
        _lease.refuse_if_held(store, self._lease_folders(), self.run_id)
        _commit.recover(store)
        self._lease = _lease.take(store, self.staging, self.run_id, self._lease_folders(), owner=self)
        try:
            self._check_target()
            self._prepare()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Give the output up without committing (staged parts stay for --resume)."""
        if self._lease:
            self._lease.release()
            self._lease = None

    def _lease_folders(self) -> list[str]:
        return [self.staging, *_commit.siblings(self.store, "commit")]

    def _check_target(self) -> None:
        store = self.store
        if store.call("checking output", store.exists, store.join(SUCCESS)):
            if not self.overwrite:
                raise UserError(f"output {store.uri!r} is already complete ({SUCCESS} exists); "
                                f"pass --overwrite to replace it or choose another --output")
        elif (found := self.parts(store.path)) and not (self.overwrite or self.resume):
            raise UserError(f"output {store.uri!r} holds {len(found)} .parquet files but no {SUCCESS}; "
                            f"pass --overwrite to replace them or choose another --output")

    def _prepare(self) -> None:
        """A fresh staging area, or the earlier run's parts kept to resume; fail now, not mid-run, if it is not
        writable."""
        store, fs = self.store, self.store.fs
        if self.resume:
            if not store.exists(store.join(SUCCESS)):  # parts an interrupted commit moved: back they go
                for part in self.parts(store.path):
                    fs.mv(part, posixpath.join(self.staging, posixpath.basename(part)))
        elif stale := self.parts():
            print(f"note: {len(stale)} parts staged by an earlier run are discarded (--resume keeps them)")
        self._clear(keep_parts=self.resume)
        store.call("creating output", fs.makedirs, self.staging, exist_ok=True)
        probe = posixpath.join(self.staging, "_write_check")
        store.call("writing output", fs.touch, probe)
        fs.rm(probe)

    def _clear(self, keep_parts: bool) -> None:
        """Empty the staging area but for the lease (and the parts, if `keep_parts`)."""
        fs = self.store.fs
        if self.store.exists(self.staging):
            fs.invalidate_cache(self.staging)
            for entry in self.store.call("listing output", fs.ls, self.staging, detail=False):
                name = posixpath.basename(entry.rstrip("/"))
                if name != LEASE and not (keep_parts and name.endswith(".parquet")):
                    fs.rm(entry, recursive=True)

    def parts(self, folder: str | None = None) -> list[str]:
        """The staged Parquet parts (or those in `folder`)."""
        return _commit.parts(self.store, folder or self.staging)

    def resumed_ids(self, id_column: str | None) -> pa.Array:
        """Ids an earlier, interrupted run staged (none unless resuming); unreadable (half-written) parts are
        deleted, their rows to be redone."""
        done = []
        if self.resume and id_column:
            for part in self.parts():
                try:
                    done.append(pq.read_table(part, columns=[id_column], filesystem=self.store.arrow_fs)[id_column])
                except Exception:  # a part the killed run did not finish
                    self.store.fs.rm(part)
        return pa.chunked_array(done).combine_chunks() if done else pa.array([], pa.string())

    def stage(self, ds: ray.data.Dataset, rows_per_file: int | None = None,
              max_rows_per_file: int | None = None) -> None:
        """Execute the dataset, streaming its blocks into staged Parquet parts."""
        ds.write_parquet(self.store.url(self.staging), filesystem=self.store.arrow_fs,
                         min_rows_per_file=rows_per_file, max_rows_per_file=max_rows_per_file)

    def stage_empty(self, schema: pa.Schema) -> None:
        """Stage one Parquet part of no rows with the output's schema: an empty input's whole output (parts an
        earlier run staged cannot belong to it, and go)."""
        self._clear(keep_parts=False)
        path = posixpath.join(self.staging, f"{self.run_id}-empty.parquet")
        self.store.call("writing output", pq.write_table, schema.empty_table(), path, filesystem=self.store.arrow_fs)

    def counts(self, id_column: str | None) -> dict:
        """Rows, failed rows (and by kind: the error up to its first ':') in the staged parts, read back from the
        files: what readers will see. With `id_column`: distinct and null ids too."""
        parts = self.parts()
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

    def incomplete(self, what: str, resumable: bool) -> OutputCheckFailed:
        """The error for staged rows that do not account for the input (raise it: the lease is let go as the
        block is left, the parts kept)."""
        then = ("rerun with --resume (same --input and --output) to finish them" if resumable
                else "a rerun starts over (--resume needs an id column)")
        return OutputCheckFailed(f"output check failed: {what}; nothing was committed, the staged parts are left "
                                 f"in {self.store.url(self.staging)!r}: {then}")

    def commit(self, summary: dict) -> None:
        """Make the staged parts the output, `summary` its `_summary.json`, while this run still holds the lease
        (a run silent for STALE_S may have lost it)."""
        if self._lease is None:
            raise RuntimeError("OutputWriter.commit outside its `with` block")
        try:
            if (other := self._lease.held()) is not None:
                raise UserError(f"output {self.store.uri!r}: this run ({self.run_id}) lost its lease"
                                f"{f' to run {other}' if other else ''}: nothing was committed")
            _commit.commit(self.store, self.run_id, summary, self._lease)
        finally:
            self.close()
