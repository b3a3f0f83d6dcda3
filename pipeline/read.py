"""Read: crops from Parquet (an image-bytes column plus any other columns) or from image files.

Both come out as a Ray Dataset with the image bytes in `image_column` and every
other input column carried as is; for image files the file's URL is the `path` column.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import ray.data

from pipeline.errors import UserError
from pipeline.ray_compat import first_parquet_reader
from pipeline.schema import PAGE_BOXES
from pipeline.storage import Storage

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "gif", "pbm", "pgm", "ppm")


@dataclass
class Source:
    """What was found at the input URI."""
    format: str                 # "parquet" or "images"
    files: list[str]            # paths inside the filesystem
    columns: list[str]          # columns the dataset will have (image column included)
    rows: int | None = None     # rows in all Parquet files (from their footers); None for image files


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
        footers = _footers(store, parquet)
        for f, meta in zip(parquet, footers):  # schemas may differ between files: every one must hold the crops
            _check_image_column(store.url(f), meta.schema.to_arrow_schema(), image_column)
        schema = footers[0].schema.to_arrow_schema()
        return Source("parquet", parquet, list(schema.names), rows=sum(m.num_rows for m in footers))
    if not images:
        raise UserError(f"no image files ({', '.join(IMAGE_EXTENSIONS[:6])}, ...) under {store.uri!r} ({_found(files)})")
    return Source("images", images, [image_column, "path"])


def _footers(store: Storage, files: list[str]) -> list[pq.FileMetaData]:
    """Every file's footer (schema, row count): one small read each, a few at a time on object stores."""
    read = lambda f: store.call("reading Parquet footer", pq.read_metadata, f, filesystem=store.arrow_fs)
    if store.is_local or len(files) == 1:
        return [read(f) for f in files]
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(read, files))


def _is_bytes(t: pa.DataType) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or pa.types.is_binary_view(t))


def _check_image_column(url: str, schema: pa.Schema, image_column: str) -> None:
    """UserError unless `image_column` is in the file and holds bytes (one line naming the type found)."""
    if image_column not in schema.names:
        raise UserError(f"image column {image_column!r} not in {url!r}; "
                        f"columns are: {', '.join(schema.names)} (pass --image-column)")
    t = schema.field(image_column).type
    if _is_bytes(t):
        return
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        hint = ("if they are file paths, point --input at the image files (their folder) instead; "
                "if base64 text, decode it to bytes first")
    elif (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) \
            and pa.types.is_integer(t.value_type):
        hint = "store each crop encoded (PNG, JPEG, ...) as bytes, not as a list of pixel values"
    elif pa.types.is_struct(t) and any(_is_bytes(f.type) for f in t):
        inner = next(f.name for f in t if _is_bytes(f.type))
        hint = f"its field {inner!r} holds the bytes: write that field out as a column of its own"
    else:
        hint = "pass --image-column naming the column of encoded image bytes"
    others = [f.name for f in schema if _is_bytes(f.type)]
    if others:
        hint += f" (binary columns in this file: {', '.join(others)})"
    raise UserError(f"image column {image_column!r} holds {t} values, not image bytes (binary), "
                    f"in {url!r}: {hint}")


def _found(files: list[str]) -> str:
    if not files:
        return "it is empty"
    return f"found {len(files)} other files, e.g. {files[0].rsplit('/', 1)[-1]!r}"


# A Parquet read task reads whole files, grouped so that each task reads at least this many rows.
ROWS_PER_READ_TASK = 8192


def read_crops(store: Storage, source: Source, image_column: str = "image") -> ray.data.Dataset:
    """Lazily read the input as a Dataset (image bytes in `image_column`, other columns carried)."""
    if source.format == "parquet":
        return _read_parquet(store, source)
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


def _read_parquet(store: Storage, source: Source) -> ray.data.Dataset:
    """The Parquet files as a Dataset, through the reader whose tasks start at once (`ray_compat`). The files
    are already listed and their footers read (`find_source`), so one task per file (small files grouped,
    `ROWS_PER_READ_TASK`) is known here; Ray's own guess splits a few files into many small blocks."""
    tasks = max(1, min(len(source.files), source.rows // ROWS_PER_READ_TASK))
    with first_parquet_reader():
        return ray.data.read_parquet(source.files, filesystem=store.arrow_fs, override_num_blocks=tasks)


# --- pages and boxes ----------------------------------------------------------------------------------------
# Boxes come as a table, one row per box: `page` (the page image's path relative to the pages' folder or prefix),
# its corners in page pixels, and any other columns, carried to the output. They are grouped by page on the
# driver, so that each page is fetched and decoded once, by the preprocessing task that cuts its crops.

BOX_COLUMNS = ("page", "x0", "y0", "x1", "y1")
BOX_ID = "id"          # the output's id column: the boxes' own `id`, else `<page>#<k>` (k-th box of the page)


@dataclass
class Boxes:
    """The boxes table, read and checked, grouped one row per page (`page`, `PAGE_BOXES`)."""
    pages: pa.Table
    columns: list[str]     # the box table's columns (the output carries them), `id` first when generated
    rows: int              # boxes


def read_boxes(store: Storage) -> Boxes:
    """The boxes at `store` (a Parquet or CSV file, or a folder/prefix of them) grouped by page; a one-line
    UserError for a table without the box columns or with coordinates that are not numbers."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    if not store.call("reading boxes", store.exists):
        raise store.not_found("boxes")
    if store.fs.isfile(store.path):
        files = [store.path]
    else:
        files = sorted(f for f in store.call("listing boxes", store.fs.find, store.path)
                       if f.lower().endswith((".parquet", ".csv")) and not f.rsplit("/", 1)[-1].startswith(("_", ".")))
        if not files:
            raise UserError(f"no .parquet or .csv files under boxes {store.uri!r}")
    tables = []
    for f in files:
        with store.fs.open(f, "rb") as fh:
            try:
                if f.lower().endswith(".csv"):
                    t = pacsv.read_csv(fh, convert_options=pacsv.ConvertOptions(column_types={"page": pa.string()}))
                else:
                    t = pq.read_table(fh)
            except (pa.ArrowInvalid, OSError) as e:
                raise UserError(f"cannot read boxes {store.url(f)!r}: {' '.join(str(e).split())[:200]}") from None
        missing = [c for c in BOX_COLUMNS if c not in t.column_names]
        if missing:
            raise UserError(f"boxes {store.url(f)!r} lack column(s) {', '.join(missing)}; columns are: "
                            f"{', '.join(t.column_names)} (a box is page, x0, y0, x1, y1 in page pixels)")
        for c in BOX_COLUMNS[1:]:
            kind = t.schema.field(c).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
                raise UserError(f"boxes {store.url(f)!r}: column {c!r} holds {kind} values, not numbers")
            t = t.set_column(t.column_names.index(c), c, t[c].cast(pa.float64()))
        if not (pa.types.is_string(t.schema.field("page").type) or pa.types.is_integer(t.schema.field("page").type)):
            raise UserError(f"boxes {store.url(f)!r}: column 'page' holds {t.schema.field('page').type} values, "
                            f"not page paths")
        tables.append(t.set_column(t.column_names.index("page"), "page", t["page"].cast(pa.string())))
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise UserError(f"boxes files under {store.uri!r} disagree on their columns: {str(e)[:200]}") from None
    if table["page"].null_count:
        raise UserError(f"boxes {store.uri!r}: {table['page'].null_count} boxes have no page")
    # Sorted by page, in file order within a page (the row number breaks ties): each page's boxes one run
    table = table.append_column("_order", pa.array(np.arange(table.num_rows)))
    table = table.sort_by([("page", "ascending"), ("_order", "ascending")]).drop_columns(["_order"])
    pages = table["page"].combine_chunks()
    starts = np.flatnonzero(np.r_[True, pc.not_equal(pages[1:], pages[:-1]).to_numpy(zero_copy_only=False)]) \
        if len(pages) else np.zeros(0, np.int64)
    if BOX_ID not in table.column_names:   # stable across runs: the box's place among its page's boxes
        k = np.arange(len(pages)) - np.repeat(starts, np.diff(np.r_[starts, len(pages)]))
        table = table.add_column(0, BOX_ID, pc.binary_join_element_wise(pages, pa.array(k.astype(str)), "#"))
    columns = table.column_names
    rest = table.drop_columns(["page"])
    boxes = pa.StructArray.from_arrays([c.combine_chunks() for c in rest.columns], names=rest.column_names)
    per_page = pa.ListArray.from_arrays(pa.array(np.r_[starts, len(pages)], pa.int32()), boxes)
    return Boxes(pa.table({"page": pages.take(starts), PAGE_BOXES: per_page}), columns, table.num_rows)


def read_pages(boxes: Boxes, pages_per_block: int) -> ray.data.Dataset:
    """One row per page (its path relative to the pages' root and its boxes), in blocks of `pages_per_block`."""
    return ray.data.from_arrow(boxes.pages).repartition(target_num_rows_per_block=max(1, pages_per_block))
