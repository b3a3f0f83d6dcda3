"""Read: crops from Parquet (an image-bytes column plus any other columns) or from image files.

Both come out as a Ray Dataset with the image bytes in `image_column` and every
other input column carried as is; for image files the file's URL is the `path` column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.parquet as pq
import ray.data

from pipeline.errors import UserError
from pipeline.storage import Storage

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "gif", "pbm", "pgm", "ppm")


@dataclass
class Source:
    """What was found at the input URI."""
    format: str                 # "parquet" or "images"
    files: list[str]            # paths inside the filesystem
    columns: list[str]          # columns the dataset will have (image column included)


def find_source(store: Storage, fmt: str = "auto", image_column: str = "image") -> Source:
    """List the input and check it holds what the job needs; UserError naming what was found otherwise."""
    if not store.call("reading input", store.exists):
        raise store.not_found("input")
    if store.fs.isfile(store.path):
        files = [store.path]
    else:
        files = sorted(store.call("listing input", store.fs.find, store.path))
        # Hidden and underscore files are bookkeeping (_SUCCESS, .crc), as Spark and pyarrow treat them.
        files = [f for f in files if not any(p.startswith(("_", ".")) for p in f[len(store.path):].split("/") if p)]
    ext = lambda f: f.rsplit(".", 1)[-1].lower() if "." in f.rsplit("/", 1)[-1] else ""
    parquet = [f for f in files if ext(f) == "parquet"]
    images = [f for f in files if ext(f) in IMAGE_EXTENSIONS]
    if fmt == "auto":
        fmt = "parquet" if parquet else "images"
    if fmt == "parquet":
        if not parquet:
            raise UserError(f"no .parquet files under {store.uri!r} ({_found(files)})")
        schema = store.call("reading Parquet schema", pq.read_schema, parquet[0], filesystem=store.arrow_fs)
        if image_column not in schema.names:
            raise UserError(f"image column {image_column!r} not in {store.url(parquet[0])!r}; "
                            f"columns are: {', '.join(schema.names)} (pass --image-column)")
        return Source("parquet", parquet, list(schema.names))
    if not images:
        raise UserError(f"no image files ({', '.join(IMAGE_EXTENSIONS[:6])}, ...) under {store.uri!r} ({_found(files)})")
    return Source("images", images, [image_column, "path"])


def _found(files: list[str]) -> str:
    if not files:
        return "it is empty"
    return f"found {len(files)} other files, e.g. {files[0].rsplit('/', 1)[-1]!r}"


def read_crops(store: Storage, source: Source, image_column: str = "image") -> ray.data.Dataset:
    """Lazily read the input as a Dataset (image bytes in `image_column`, other columns carried)."""
    if source.format == "parquet":
        return ray.data.read_parquet(source.files, filesystem=store.arrow_fs)
    ds = ray.data.read_binary_files(source.files, include_paths=True, filesystem=store.arrow_fs)
    # Ray names the columns bytes/path; the path (as a full URL) is the crop's id.
    return ds.rename_columns({"bytes": image_column}).map_batches(
        _path_to_url, fn_kwargs={"prefix": "" if store.is_local else f"{store.protocol}://"}, batch_format="pyarrow")


def _path_to_url(batch, prefix: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    if not prefix:
        return batch
    i = batch.schema.get_field_index("path")
    return batch.set_column(i, "path", pc.binary_join_element_wise(pa.scalar(prefix), batch["path"], ""))
