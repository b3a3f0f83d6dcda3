"""Write: Parquet parts staged under `<output>/_staging/`, made visible only when the job is complete.

Layout of a finished output:
    <output>/*.parquet      the rows: input columns + text, score, error, model
    <output>/_summary.json  counts, timing, model, options
    <output>/_SUCCESS       written last; readers and re-runs trust only outputs that have it
Names starting with '_' are ignored by pandas/pyarrow/Spark readers, so staged parts are invisible.
"""

from __future__ import annotations

import json
import posixpath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data

from pipeline.errors import UserError
from pipeline.storage import Storage

STAGING, SUMMARY, SUCCESS = "_staging", "_summary.json", "_SUCCESS"


class OutputWriter:
    """Staged, all-or-nothing Parquet output at `store`."""

    def __init__(self, store: Storage, overwrite: bool = False):
        self.store, self.overwrite = store, overwrite
        self.staging = store.join(STAGING)

    def _parts(self, folder: str) -> list[str]:
        fs = self.store.fs
        fs.invalidate_cache(folder)  # Ray workers write parts from other processes: s3fs's cached listing is stale
        if not self.store.call("listing output", self.store.exists, folder):
            return []
        return sorted(f for f in self.store.call("listing output", fs.ls, folder, detail=False)
                      if f.endswith(".parquet"))

    def check_target(self, resume: bool = False) -> None:
        """Refuse to run over a complete output (unless overwriting) or over foreign Parquet files
        (unless resuming: then they are ours, from a commit that was interrupted)."""
        store, out = self.store, self.store.path
        if store.bucket and not store.call("checking output", store.exists, store.bucket):
            raise UserError(f"output {store.uri!r}: bucket {store.bucket!r} does not exist (create it first)")
        if store.call("checking output", store.exists, store.join(SUCCESS)):
            if not self.overwrite:
                raise UserError(f"output {self.store.uri!r} is already complete ({SUCCESS} exists); "
                                f"pass --overwrite to replace it or choose another --output")
        elif (parts := self._parts(out)) and not (self.overwrite or resume):
            raise UserError(f"output {self.store.uri!r} holds {len(parts)} .parquet files but no {SUCCESS}; "
                            f"pass --overwrite to replace them or choose another --output")

    def prepare(self, resume: bool) -> None:
        """Start a fresh staging area, or keep it to resume; fail now, not mid-run, if it is not writable."""
        fs = self.store.fs
        if resume:
            if not self.store.exists(self.store.join(SUCCESS)):  # parts an interrupted commit moved: back they go
                for part in self._parts(self.store.path):
                    fs.mv(part, posixpath.join(self.staging, posixpath.basename(part)))
        elif self.store.exists(self.staging):
            fs.rm(self.staging, recursive=True)
        self.store.call("creating output", fs.makedirs, self.staging, exist_ok=True)
        probe = posixpath.join(self.staging, "_write_check")
        self.store.call("writing output", fs.touch, probe)
        fs.rm(probe)

    def finished_ids(self, id_column: str) -> pa.Array:
        """Ids already written by an earlier, interrupted run; unreadable (half-written) parts are deleted."""
        fs, done = self.store.fs, []
        for part in self._parts(self.staging):
            try:
                done.append(pq.read_table(part, columns=[id_column], filesystem=self.store.arrow_fs)[id_column])
            except Exception:  # a part the killed run did not finish: its rows will be redone
                fs.rm(part)
        return pa.chunked_array(done).combine_chunks() if done else pa.array([], pa.string())

    def write(self, ds: ray.data.Dataset, rows_per_file: int | None = None, max_rows_per_file: int | None = None) -> None:
        """Execute the dataset, streaming its blocks into staged Parquet parts."""
        ds.write_parquet(self.store.url(self.staging), filesystem=self.store.arrow_fs,
                         min_rows_per_file=rows_per_file, max_rows_per_file=max_rows_per_file)

    def staged_parts(self) -> list[str]:
        return self._parts(self.staging)

    def staged_counts(self, id_column: str | None) -> dict:
        """Rows and failed rows in the staged parts (read back from the files: what readers will see)."""
        cols = ["error"] + ([id_column] if id_column else [])
        table = pq.ParquetDataset(self._parts(self.staging), filesystem=self.store.arrow_fs).read(columns=cols)
        counts = {"rows": table.num_rows, "failed": table.num_rows - pc.sum(pc.is_null(table["error"])).as_py()}
        if id_column:
            counts["unique_ids"] = pc.count_distinct(table[id_column]).as_py()
        return counts

    def commit(self, summary: dict) -> None:
        """Move staged parts into place, then write the summary, then _SUCCESS."""
        fs, out = self.store.fs, self.store.path
        if fs.exists(self.store.join(SUCCESS)):
            fs.rm(self.store.join(SUCCESS))
        for old in self._parts(out):  # only with --overwrite: check_target refused otherwise
            fs.rm(old)
        for part in self._parts(self.staging):
            fs.mv(part, posixpath.join(out, posixpath.basename(part)))
        try:
            fs.rm(self.staging, recursive=True)
        except FileNotFoundError:  # object stores: no objects left under the prefix, so no "folder" either
            pass
        with fs.open(self.store.join(SUMMARY), "w") as f:
            json.dump(summary, f, indent=2)
        fs.touch(self.store.join(SUCCESS))
