"""jobs.evaluate over a real local Ray: the synthetic test set and the report it writes."""

import json

import pandas as pd
import pytest
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.evaluate import main as evaluate_main
from tests.helpers import crop_bytes


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


# --- --split: forms and receipts of the fixed splits, side by side -----------------------------------------------

def _fake_data_dir(path):
    """Both files of ../shared/data in their schemas, a few crops each: some in the validation split's
    documents, some in training or test documents, which must not be evaluated."""
    from crnn.training import splits

    path.mkdir()
    val_f, test_f = sorted(splits.docs("funsd", "validation")), sorted(splits.docs("funsd", "test"))
    forms = [("Date:", val_f[0]), ("Invoice", val_f[0]), ("Total", val_f[1]),   # validation: 3 crops, 2 forms
             ("Remarks", "not-a-split-form"), ("Signature", test_f[0])]      # training and test: left out
    rows = [{"id": f"funsd_{i}", "image": crop_bytes(t), "text": t, "doc_id": d, "entity_label": "answer",
             "x0": 0, "y0": 0, "x1": 10, "y1": 10, "width": 10, "height": 10, "is_checkbox": False,
             "has_nonascii": False} for i, (t, d) in enumerate(forms)]
    pq.write_table(pa.Table.from_pylist(rows), path / splits.data_file("funsd"))
    val_r, test_r = sorted(splits.docs("sroie", "validation")), sorted(splits.docs("sroie", "test"))
    # Printed in mixed case, labelled upper case as SROIE does.
    receipts = [("Total", val_r[0]), ("Cash", val_r[0]), ("Change", val_r[1]), ("Thank you", test_r[0])]
    rows = [{"id": f"sroie_{i}", "image": crop_bytes(t), "text": t.upper(), "doc_id": d,
             "x0": 0, "y0": 0, "x1": 10, "y1": 10, "width": 10, "height": 10} for i, (t, d) in enumerate(receipts)]
    pq.write_table(pa.Table.from_pylist(rows), path / splits.data_file("sroie"))
    return path


def test_split_scores_forms_and_receipts_with_a_paired_baseline(ray_local, small_model, tmp_path, capsys):
    from crnn.checkpoint import DEFAULT_MODEL
    from crnn.metrics import crop_scores

    data, out = _fake_data_dir(tmp_path / "data"), tmp_path / "ev"
    assert evaluate_main(["--split", "validation", "--data-dir", str(data), "--model", str(DEFAULT_MODEL),
                          "--baseline", small_model, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    forms, receipts = rep["kinds"]["forms"], rep["kinds"]["receipts"]
    assert (forms["rows"], forms["documents"], receipts["rows"], receipts["documents"]) == (3, 2, 3, 2)
    assert len(pd.read_parquet(out / "forms.parquet")) == 3 and len(pd.read_parquet(out / "receipts.parquet")) == 3
    assert set(pd.read_parquet(out / "ocr" / "forms")["id"]) == {"funsd_0", "funsd_1", "funsd_2"}
    assert forms["headline"] == {"accuracy": "exact", "error_rate": "cer"}
    assert receipts["headline"] == {"accuracy": "case_insensitive", "error_rate": "cer_case_insensitive"}
    # Receipts: the shipped model reads "Total" for the label "TOTAL": right case-insensitively, wrong exactly.
    o = receipts["overall"]
    assert o["exact"] == 0 and o["case_insensitive"] >= 2 / 3 and o["cer_case_insensitive"] < o["cer"]
    assert set(o["se"]) >= {"exact", "case_insensitive", "cer", "cer_case_insensitive"}
    assert receipts["worst"] and all("id" in w for w in receipts["worst"])
    for key in ("overall", "outside_charset", "errors", "by_label_length", "by_score", "confusions", "worst"):
        assert key in forms and key in receipts  # report()'s keys, per kind
    # Paired counts agree with the two outputs, crop by crop.
    for kind, r in rep["kinds"].items():
        model = pd.read_parquet(out / "ocr" / kind).sort_values("id")
        base = pd.read_parquet(out / "baseline" / kind).sort_values("id")
        assert model["id"].tolist() == base["id"].tolist()
        metric = r["headline"]["accuracy"]
        m = crop_scores(model["text"].fillna("").tolist(), model["text_input"].tolist())[metric]
        b = crop_scores(base["text"].fillna("").tolist(), base["text_input"].tolist())[metric]
        p = r["paired"]
        assert p["metric"] == metric and p["n"] == 3
        assert p["fixed"] == int((m & ~b).sum()) and p["broken"] == int((b & ~m).sum())
        assert p["fixed"] + p["broken"] + p["both_right"] + p["both_wrong"] == 3
        assert p["difference"] == pytest.approx(m.mean() - b.mean())
        assert r["overall"][metric] == pytest.approx(m.mean())
    assert rep["baseline"].startswith("test-small") and rep["model"] != rep["baseline"]
    assert "forms" in printed and "receipts" in printed and "fixed" in printed and "±" in printed


@pytest.mark.parametrize("what", ["dir", "file"])
def test_split_without_its_data_is_one_line(tmp_path, capsys, what):
    from crnn.training import splits

    data = tmp_path / "data"
    if what == "file":
        data.mkdir()
        (data / splits.data_file("funsd")).write_bytes(b"")  # the receipts' file is the one missing
    assert evaluate_main(["--split", "validation", "--data-dir", str(data), "--output", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and splits.data_file("sroie") in err[0]
    if what == "dir":  # names the folder and the files it was to hold
        assert f"data dir {str(data)!r} not found" in err[0] and splits.data_file("funsd") in err[0]
    else:              # names the missing file
        assert f"{str(data / splits.data_file('sroie'))!r} not found" in err[0]
