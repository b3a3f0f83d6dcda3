"""jobs.bench.cost: each stage's cost in-process, Ray Data's stats parsed, a whole (small) job's CPU by role."""

import json

import pyarrow.parquet as pq

from jobs.bench import cost as bench_cost
from tests.helpers import crop_table

STATS = """Operator 1 ReadParquet->Project: 2 tasks executed, 2 blocks produced in 3.59s
* Remote wall time: 262.29ms min, 1.32s max, 789.1ms mean, 1.58s total
* Remote cpu time: 185.59ms min, 201.56ms max, 193.57ms mean, 387.14ms total
Operator 4 MapBatches(CRNNPredictor): 50 tasks executed, 50 blocks produced in 22.91s
* Remote wall time: 207.41ms min, 1.63s max, 747.14ms mean, 37.36s total
* Remote cpu time: 189.5ms min, 931.28ms max, 506.15ms mean, 25.31s total
Operator 5 Write: 50 tasks executed, 50 blocks produced in 3.73s
* Remote wall time: 9.89ms min, 274.78ms max, 24.59ms mean, 1.23s total
* Remote cpu time: 9.93ms min, 24.1ms max, 13.8ms mean, 689.84us total
Dataset throughput:
"""


def test_parse_stats_reads_each_operators_tasks_and_cpu():
    ops = bench_cost.parse_stats(STATS)
    assert [(o["operator"], o["tasks"]) for o in ops] == [("ReadParquet->Project", 2), ("MapBatches(CRNNPredictor)", 50),
                                                         ("Write", 50)]
    assert [o["remote_cpu_s"] for o in ops] == [0.387, 25.31, 0.001]
    assert [o["remote_wall_s"] for o in ops] == [1.58, 37.36, 1.23]


def test_stage_costs_and_a_small_job(tmp_path):
    path = tmp_path / "crops.parquet"
    pq.write_table(crop_table(48), path)
    out = tmp_path / "cost.json"
    assert bench_cost.main(["--input", str(path), "--stage-crops", "48", "--size", "60", "--tiny",
                            "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    stages = got["stages_us_per_crop"]
    for stage in ("decode (PNG/JPEG)", "grayscale, contrast, resize", "forward, shipped model (onnx int8)",
                  "forward, tiny model (onnx int8)", "decode: greedy", "decode: lexicon (greedy, then beam search "
                  "below 0.9)", "parquet write"):
        assert stages[stage] > 0, stage
    job = got["job"]
    assert job["wall_s"] > 0
    assert job["cpu_s_by_role"]["model actors"] > 0 and job["cpu_s_by_role"]["driver"] > 0
    assert [o["operator"] for o in job["operators"]][-2:] == ["MapBatches(CRNNPredictor)", "Write"]
