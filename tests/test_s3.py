"""The pipeline over S3: a real S3 API (moto server on loopback), reached through the standard AWS environment.

Parquet and image prefixes in, Parquet out on S3 read back with pandas; resume on S3; jobs.pack; and the
storage mistakes users make (missing bucket/prefix, wrong credentials, no permission, bad endpoint), each
one line naming the URI. Credentials never appear in what the job prints or writes.
"""

from __future__ import annotations

import io
import json
import time
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
import s3fs

from jobs.ocr import main as ocr_main
from jobs.pack import main as pack_main
from tests.helpers import FAKE_KEY_ID, FAKE_SECRET, crop_bytes, free_port, write_crops_parquet

BUCKET = "ocr-test"
BAD = {3: b"", 7: crop_bytes("truncated")[:40], 11: b"this is not an image", 15: None}
IMAGES = {"sub/w0.png": ("Date:", "PNG"), "sub/w1.jpg": ("TOTAL", "JPEG"), "w2.png": ("invoice", "PNG"),
          "deep/er/w3.tif": ("R&D", "TIFF"), "w4.png": ("$1,234.56", "PNG")}


@pytest.fixture(scope="module")
def s3(moto_s3):
    """The bucket, seeded: crops/ (2 Parquet files, 40 rows, 4 bad) and images/ (5 crops, 1 broken, 1 text file)."""
    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    table = write_crops_parquet(fs, f"{BUCKET}/crops", n=40, bad=BAD)
    fs.pipe({f"{BUCKET}/images/{name}": crop_bytes(word, fmt, mode="RGB") for name, (word, fmt) in IMAGES.items()})
    fs.pipe({f"{BUCKET}/images/broken.png": b"\x89PNG\r\n\x1a\n broken", f"{BUCKET}/images/notes.txt": b"not a crop"})
    return {"fs": fs, "table": table, "endpoint": moto_s3}


def _out() -> str:
    return f"s3://{BUCKET}/out-{uuid.uuid4().hex[:8]}"


def _run(args, capsys) -> tuple[int, str]:
    rc = ocr_main(args)
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def _read(uri: str, endpoint: str) -> pd.DataFrame:
    """What a user does: pandas straight from S3 (storage options as a user would pass them)."""
    return pd.read_parquet(uri, storage_options={"client_kwargs": {"endpoint_url": endpoint}})


def _assert_no_secret(fs, out: str, printed: str, *secrets: str) -> None:
    """The secrets are in nothing the job printed and in no object it wrote (summary included)."""
    written = b"".join(fs.cat_file(f) for f in fs.find(out.removeprefix("s3://")))
    for secret in secrets:
        assert secret not in printed and secret.encode() not in written


def test_parquet_prefix_in_parquet_out_on_s3(ray_local, small_model, s3, capsys):
    out = _out()
    rc, printed = _run(["--input", f"s3://{BUCKET}/crops/", "--output", out, "--model", small_model,
                        "--batch-size", "8", "--window", "16"], capsys)
    assert rc == 0, printed

    df = _read(out, s3["endpoint"])
    table = s3["table"]
    assert len(df) == table.num_rows and sorted(df["id"]) == sorted(table["id"].to_pylist())  # every row once
    assert list(df.columns) == ["id", "page", "label", "text", "score", "error", "model"]       # carried + added
    expected = table.drop_columns(["image"]).to_pandas().set_index("id")
    got = df.set_index("id").loc[expected.index]
    pd.testing.assert_frame_equal(got[["page", "label"]], expected[["page", "label"]])
    failed = got.loc[[f"crop-{i:04d}" for i in BAD]]
    assert failed["error"].notna().all() and failed["text"].isna().all()
    assert got.drop(index=failed.index)["error"].isna().all()

    fs = s3["fs"]
    key = out.removeprefix("s3://")
    assert fs.exists(f"{key}/_SUCCESS") and not fs.find(f"{key}/_staging")
    summary = json.loads(fs.cat_file(f"{key}/_summary.json"))
    assert summary["rows_in"] == 40 and summary["failed"] == len(BAD) and summary["output"] == out
    _assert_no_secret(fs, out, printed, FAKE_SECRET)


def test_image_prefix_with_explicit_storage_options(ray_local, small_model, s3, capsys, tmp_path):
    """Credentials and endpoint given explicitly (--storage-options-file): they reach Ray's workers with the
    filesystem, and still appear nowhere in what the job prints or writes."""
    secret = "explicit-secret-" + uuid.uuid4().hex
    options = tmp_path / "s3.json"
    options.write_text(json.dumps({"key": FAKE_KEY_ID, "secret": secret, "endpoint_url": s3["endpoint"]}))
    out = _out()
    rc, printed = _run(["--input", f"s3://{BUCKET}/images", "--output", out, "--model", small_model,
                        "--storage-options-file", str(options)], capsys)
    assert rc == 0, printed

    df = _read(out, s3["endpoint"]).set_index("path")
    expected = {f"s3://{BUCKET}/images/{name}" for name in [*IMAGES, "broken.png"]}   # notes.txt not read
    assert set(df.index) == expected and len(df) == len(expected)
    assert df.loc[f"s3://{BUCKET}/images/broken.png", "error"] == "corrupt image (unreadable PNG header)"
    assert df.drop(index=f"s3://{BUCKET}/images/broken.png")["error"].isna().all()
    summary = json.loads(s3["fs"].cat_file(f"{out.removeprefix('s3://')}/_summary.json"))
    assert summary["options"]["storage_options"] == ["client_kwargs", "key", "secret"]          # names, no values
    _assert_no_secret(s3["fs"], out, printed, secret, FAKE_SECRET)


def test_resume_on_s3(ray_local, small_model, s3, capsys):
    """An interrupted run on S3: parts staged, one part already moved by an interrupted commit, one
    unreadable part. --resume keeps the good parts' rows, redoes the rest, and every id ends up once."""
    fs, out = s3["fs"], _out()
    args = ["--input", f"s3://{BUCKET}/crops", "--output", out, "--model", small_model, "--batch-size", "8"]
    assert _run(args, capsys)[0] == 0
    key = out.removeprefix("s3://")
    done = pq.ParquetDataset([f for f in fs.ls(key) if f.endswith(".parquet")], filesystem=fs).read()
    done = done.sort_by("id").set_column(done.schema.get_field_index("text"), "text",
                                         pa.array(["KEPT"] * done.num_rows, pa.string()))
    fs.rm(key, recursive=True)

    def put(path, table):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        fs.pipe(path, buf.getvalue())

    put(f"{key}/_staging/a.parquet", done.slice(0, 10))        # staged by the interrupted run
    put(f"{key}/b.parquet", done.slice(10, 5))                  # moved into place by an interrupted commit
    fs.pipe(f"{key}/_staging/c.parquet", b"PAR1 half a part")   # unreadable: its rows are redone

    rc, printed = _run(args + ["--resume"], capsys)
    assert rc == 0, printed
    assert "resuming: 15 of 40 rows already done" in printed
    df = _read(out, s3["endpoint"]).set_index("id")
    assert len(df) == 40 and df.index.is_unique and set(df.index) == set(s3["table"]["id"].to_pylist())
    kept = set(done["id"].to_pylist()[:15])
    assert (df.loc[sorted(kept), "text"] == "KEPT").all()                # resumed rows kept, not recomputed
    assert not (df.drop(index=sorted(kept))["text"] == "KEPT").any()     # the others computed now
    assert fs.exists(f"{key}/_SUCCESS") and not fs.find(f"{key}/_staging")
    assert json.loads(fs.cat_file(f"{key}/_summary.json"))["resumed_rows"] == 15

    rc, printed = _run(args + ["--resume"], capsys)                      # complete: nothing to resume
    assert rc == 2 and "already complete" in printed


def test_pack_then_ocr_the_shards(ray_local, small_model, s3, capsys):
    """jobs.pack turns the image prefix into Parquet shards (path, image); OCR of the shards gives the same
    ids (`--id-column path`) as OCR of the files."""
    packed = f"s3://{BUCKET}/packed-{uuid.uuid4().hex[:8]}"
    assert pack_main(["--input", f"s3://{BUCKET}/images/", "--output", packed, "--rows-per-file", "4"]) == 0
    capsys.readouterr()
    shards = _read(packed, s3["endpoint"])
    fs = s3["fs"]
    names = [*IMAGES, "broken.png"]
    assert list(shards.columns) == ["path", "image"] and len(shards) == len(names)
    originals = {f"s3://{BUCKET}/images/{n}": fs.cat_file(f"{BUCKET}/images/{n}") for n in names}
    assert dict(zip(shards["path"], shards["image"])) == originals                  # bytes intact
    assert len([f for f in fs.ls(packed.removeprefix("s3://")) if f.endswith(".parquet")]) == 2  # 4 + 2 rows
    assert fs.exists(f"{packed.removeprefix('s3://')}/_SUCCESS")

    out = _out()
    rc, printed = _run(["--input", packed, "--id-column", "path", "--output", out, "--model", small_model], capsys)
    assert rc == 0, printed
    df = _read(out, s3["endpoint"]).set_index("path")
    assert set(df.index) == set(originals) and df.index.is_unique
    assert df.loc[f"s3://{BUCKET}/images/broken.png", "error"] == "corrupt image (unreadable PNG header)"


@pytest.fixture
def iam_users(s3):
    """Two IAM users, then moto's request authentication switched on (POST /moto-api/reset-auth), off again after:
    `nobody` (no policy) and `reader` (read-only on the bucket). The session's fake keys are then unknown."""
    import boto3

    iam, tag, users = boto3.client("iam"), uuid.uuid4().hex[:6], {}
    read_only = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
        # moto checks s3:HeadBucket for HEAD on a bucket (AWS: s3:ListBucket)
        "Action": ["s3:GetObject", "s3:ListBucket", "s3:HeadBucket"]}]}
    for name, policy in [("nobody", None), ("reader", read_only)]:
        iam.create_user(UserName=f"{name}-{tag}")
        if policy:
            iam.put_user_policy(UserName=f"{name}-{tag}", PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=f"{name}-{tag}")["AccessKey"]
        users[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    requests.post(f"{s3['endpoint']}/moto-api/reset-auth", data=b"0").raise_for_status()
    try:
        yield users
    finally:
        requests.post(f"{s3['endpoint']}/moto-api/reset-auth", data=b"inf").raise_for_status()


ERRORS = {  # case: (input, output, expected text; the URI named is checked too)
    "missing_bucket": ("s3://no-such-bucket-4242/crops", None, "does not exist (no bucket 'no-such-bucket-4242')"),
    "missing_prefix": (f"s3://{BUCKET}/no/such/prefix/", None, "does not exist"),
    "missing_output_bucket": (None, "s3://no-such-bucket-4242/out", "bucket 'no-such-bucket-4242' does not exist"),
    "bad_endpoint": (None, None, "EndpointConnectionError: Could not connect to the endpoint URL"),
    "wrong_credentials": (None, None, "permission denied for"),
    "no_read_permission": (None, None, "permission denied for"),
    "no_write_permission": (None, None, "writing output: permission denied for"),
    "unknown_option": (None, None, "a storage option is not one s3 takes"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_storage_mistakes_get_one_line(ray_local, small_model, s3, request, capsys, tmp_path, case):
    src, out, expect = ERRORS[case]
    src, out = src or f"s3://{BUCKET}/crops", out or _out()
    named = out if case in ("missing_output_bucket", "no_write_permission") else src.rstrip("/")
    args = ["--input", src, "--output", out, "--model", small_model]
    secrets = [FAKE_SECRET]
    if case == "bad_endpoint":  # a closed loopback port; one attempt, short timeout: fails in about a second
        options = tmp_path / "s3.json"
        options.write_text(json.dumps({"endpoint_url": f"http://127.0.0.1:{free_port()}",
                                       "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}))
        args += ["--storage-options-file", str(options)]
    elif case in ("wrong_credentials", "no_read_permission", "no_write_permission"):
        users = request.getfixturevalue("iam_users")
        key, secret = {"wrong_credentials": (users["reader"][0], "not-the-secret-" + uuid.uuid4().hex),
                       "no_read_permission": users["nobody"], "no_write_permission": users["reader"]}[case]
        options = tmp_path / "s3.json"         # credentials in a file: refused on the command line
        options.write_text(json.dumps({"key": key, "secret": secret}))
        args += ["--storage-options-file", str(options)]
        secrets.append(secret)
    elif case == "unknown_option":
        args += ["--storage-option", "retries=1"]     # an s3fs class attribute, not an option
    t = time.time()
    rc, printed = _run(args, capsys)
    assert time.time() - t < 20
    assert rc == 2, printed
    err = printed.strip().splitlines()[-1]
    assert printed.strip() == err and err.startswith("error: ") and "Traceback" not in printed
    assert expect in err and repr(named) in err, err
    assert not any(s in printed for s in secrets)
