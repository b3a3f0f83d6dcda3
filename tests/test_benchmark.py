"""jobs.bench.benchmark's helpers: sized inputs (repeated rows, fresh ids, several files), options, the GPU check."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from jobs.bench import benchmark


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

    from jobs.bench import gpu_stages as bench_gpu_stages
    from tests.helpers import crop_table

    pq.write_table(crop_table(24), tmp_path / "crops.parquet")
    out = tmp_path / "stages.json"
    bench_gpu_stages.main(["--input", str(tmp_path / "crops.parquet"), "--crops", "40", "--device", "cpu",
                           "--batch-sizes", "16", "--precisions", "fp32", "--json", str(out)])
    got = json.loads(out.read_text())
    assert got["device"] == "cpu" and got["crops"] == 40
    rates = got["results"]["fp32/batch 16"]
    assert set(rates) == {"pad", "copy", "forward", "greedy_decode", "lexicon_decode", "read_greedy"}
    assert all(v > 0 for v in rates.values())


def test_disturbed_rounds_flags_a_tesseract_rate_that_moves_with_size():
    # round 1 steady (454 vs 470: 3.5%), round 2 disturbed (512 vs 272: 88%)
    got = benchmark.disturbed_rounds({8650: [454.0, 512.0], 100_000: [470.0, 272.0]})
    assert list(got) == [1] and abs(got[1] - (512 / 272 - 1)) < 1e-9
    assert benchmark.disturbed_rounds({8650: [500.0]}) == {}          # one size: nothing to compare
    assert benchmark.disturbed_rounds({}) == {}


def test_tiny_model_is_a_real_checkpoint_of_the_shipped_charset(tmp_path):
    from crnn.checkpoint import load_checkpoint

    model, charset, meta = load_checkpoint(benchmark.tiny_model(tmp_path / "tiny.pt"))
    assert sum(p.numel() for p in model.parameters()) == 2092
    assert charset.symbols == load_checkpoint()[1].symbols
    assert meta["name"] == "benchmark-tiny"


def test_session_memory_sums_the_processes_of_a_session():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(64 << 20); time.sleep(30)"],
                            start_new_session=True)
    try:
        mem = benchmark.SessionMemory(proc.pid, period=0.0)
        deadline = __import__("time").time() + 20
        while mem.peak_rss_kib < 64 << 10 and __import__("time").time() < deadline:
            mem.sample()
        assert mem.peak_rss_kib >= 64 << 10                     # the child's 64 MiB, at least
        assert 0 < mem.peak_pss_kib <= mem.peak_rss_kib + 1024
    finally:
        proc.kill()
        proc.wait()


def test_tesseract_max_must_be_positive():
    assert benchmark.parse_args(["--tesseract-max", "500"]).tesseract_max == 500
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--tesseract-max", "0"])


def test_tesseract_processes_run_together_whatever_their_output(tmp_path, monkeypatch):
    """A fake `tesseract` writes ~200 KB (more than a pipe holds), then waits until every process has written
    its output: processes run one after the other (a pipe read only once the one before it ends) never get
    there."""
    fake = tmp_path / "bin" / "tesseract"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n"
                    "while read f; do printf '%s\\f' \"$(basename \"$f\" .png)$(printf '%0190d' 0)\"; done < \"$1\"\n"
                    "touch \"$1.written\"; i=0\n"
                    f"while [ $(ls {tmp_path}/*.written 2>/dev/null | wc -l) -lt 2 ]; do i=$((i+1)); "
                    f"if [ $i -gt 100 ]; then touch {tmp_path}/timed-out; exit 0; fi; sleep 0.1; done\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{__import__('os').environ['PATH']}")
    files = [tmp_path / f"{i:04d}.png" for i in range(1000)]
    rate, preds = benchmark.bench_tesseract(files, 2000, tmp_path, procs=2)
    assert not (tmp_path / "timed-out").exists()
    assert len(preds) == 2000 and [p[:4] for p in preds[:3]] == ["0000", "0001", "0002"]
    assert preds[1000][:4] == "0000" and rate > 0
