"""jobs.evaluate over a real local Ray: the synthetic test set and the report it writes."""

import json

import pandas as pd
import pytest
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.evaluate import main as evaluate_main
from tests.conftest import crop_bytes


def test_synthetic_set_is_scored_by_degradation(ray_local, tmp_path):
    out = tmp_path / "eval"
    assert evaluate_main(["--synthetic", "60", "--seed", "5", "--output", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["rows"] == 60 and rep["errors"] == 0
    assert rep["synthetic_set"]["seed"] == 5 and rep["synthetic_set"]["n"] == 60 and rep["synthetic_set"]["fonts"] > 0
    assert rep["overall"]["exact"] >= 0.6  # the shipped model reads rendered text
    rendered = pd.read_parquet(out / "synthetic-5.parquet")
    drawn = [set(d) for d in rendered["degradations"]]
    by = rep["by_degradation"]
    assert {name for d in drawn for name in d} == set(by) - {"none"}
    for name, metrics in by.items():
        expected = sum(not d for d in drawn) if name == "none" else sum(name in d for d in drawn)
        assert metrics["n"] == expected
    kept = [r["kept"] for r in rep["by_score"]]
    assert kept == sorted(kept, reverse=True) and 0 < kept[0] <= 1  # higher cuts keep fewer crops
    scored = pd.read_parquet(out / "ocr")  # the list column travels through the pipeline untouched
    assert sorted(map(list, scored.sort_values("id")["degradations"])) == sorted(map(list, rendered["degradations"]))


def test_missing_label_column_is_one_line(ray_local, tmp_path, capsys):
    src = tmp_path / "crops.parquet"
    pq.write_table(pa.table({"id": ["a"], "image": [crop_bytes("Total")], "label": ["Total"]}), src)
    assert evaluate_main(["--input", str(src), "--label-column", "truth", "--output", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'truth'" in err[0] and "label" in err[0]


def test_metrics_can_ignore_spaces_that_word_labels_insert():
    from crnn.metrics import text_metrics

    m = text_metrics(["F.P.M. Roller", "Tota1 Due", "Net 30"], ["F. P. M. Roller", "Total Due", "Net 30"])
    assert m["exact"] == pytest.approx(1 / 3) and m["ignore_spaces"] == pytest.approx(2 / 3)


def test_accuracy_by_score_counts_kept_crops_and_their_accuracy():
    from crnn.metrics import accuracy_by_score

    preds, labels = ["Total", "Tota1", "Due", "Net", ""], ["Total", "Total", "Due", "Net 30", "Fax"]
    rows = accuracy_by_score(preds, labels, [0.99, 0.6, 0.92, 0.95, float("nan")], thresholds=(0.5, 0.9, 0.97))
    assert [r["kept"] for r in rows] == [0.8, 0.6, 0.2]            # the failed crop (no score) is never kept
    assert rows[0]["exact"] == pytest.approx(2 / 4) and rows[0]["exact_below"] == 0.0
    assert rows[1]["exact"] == pytest.approx(2 / 3) and rows[1]["exact_below"] == 0.0
    assert rows[2]["exact"] == 1.0 and rows[2]["exact_below"] == pytest.approx(1 / 4)
