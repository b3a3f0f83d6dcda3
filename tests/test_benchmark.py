"""jobs.benchmark's helpers: sized inputs (repeated rows, fresh ids, several files), options, the GPU check."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from jobs import benchmark


def test_sized_input_repeats_rows_with_fresh_ids(tmp_path):
    table = pa.table({"id": ["a", "b", "c"], "image": [b"1", b"2", b"3"], "text": ["x", "y", "z"]})
    benchmark.write_sized_input(table, 8, tmp_path / "in", rows_per_file=5)
    files = sorted((tmp_path / "in").glob("*.parquet"))
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [5, 3]
    got = pq.read_table(files).to_pydict()
    assert got["id"] == benchmark.repeated_ids(["a", "b", "c"], 8) == ["a", "b", "c", "a~1", "b~1", "c~1", "a~2", "b~2"]
    assert len(set(got["id"])) == 8
    assert got["image"] == [b"1", b"2", b"3"] * 2 + [b"1", b"2"]
    assert got["text"] == benchmark.repeated_labels(["x", "y", "z"], 8)


def test_options():
    args = benchmark.parse_args([])
    assert args.sizes == [8650, 100_000] and args.rounds == 1 and args.skip == []
    assert benchmark.parse_args(["--num-gpus", "1"]).skip == ["tesseract"]
    assert benchmark.parse_args(["--num-gpus", "1", "--skip"]).skip == []
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--sizes", "0"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")
def test_num_gpus_without_gpu_is_a_one_line_error():
    with pytest.raises(SystemExit) as e:
        benchmark.main(["--num-gpus", "1"])
    assert "no CUDA GPU" in str(e.value) and "\n" not in str(e.value)


def test_gpu_monitor_off_reports_nothing():
    with benchmark.GpuMonitor(False) as mon:
        pass
    assert mon.summary() == {}


def test_gpu_monitor_parses_nvidia_smi(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"  # what `--format=csv,noheader,nounits -lms 200` prints, two GPUs
    fake.write_text("#!/bin/sh\nprintf '10, 500\\n30, 700\\n[N/A], [N/A]\\n50, 600\\n'\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    with benchmark.GpuMonitor(True) as mon:
        __import__("time").sleep(0.5)
    assert mon.summary() == {"gpu_util_mean": 30.0, "gpu_util_max": 50.0, "gpu_mem_peak_mib": 700.0}


def test_gpu_stages_runs_every_stage_on_cpu(tmp_path):
    import json

    from jobs import bench_gpu_stages
    from tests.conftest import crop_table

    pq.write_table(crop_table(24), tmp_path / "crops.parquet")
    out = tmp_path / "stages.json"
    bench_gpu_stages.main(["--input", str(tmp_path / "crops.parquet"), "--crops", "40", "--device", "cpu",
                           "--batch-sizes", "16", "--precisions", "fp32", "--json", str(out)])
    got = json.loads(out.read_text())
    assert got["device"] == "cpu" and got["crops"] == 40
    rates = got["results"]["fp32/batch 16"]
    assert set(rates) == {"pad", "copy", "forward", "greedy_decode", "lexicon_decode", "read_greedy"}
    assert all(v > 0 for v in rates.values())
