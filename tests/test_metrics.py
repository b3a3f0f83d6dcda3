"""crnn.metrics' statistics on numbers small enough to check by hand."""

import math

import numpy as np
import pytest

from crnn.metrics import crop_scores, metric_errors, paired_counts, sign_test, standard_error, text_metrics


def test_standard_error_with_one_crop_per_document_is_the_textbook_one():
    # mean 0.5, sample variance (4 * 0.25) / 3 = 1/3, SE = sqrt(1/3 / 4)
    assert standard_error([1, 1, 0, 0], ["a", "b", "c", "d"]) == pytest.approx(math.sqrt(1 / 12))
    values = np.array([1, 0, 1, 1, 0, 1, 1])
    assert standard_error(values, range(7)) == pytest.approx(values.std(ddof=1) / math.sqrt(7))


def test_standard_error_grows_when_documents_agree_within():
    # document sums minus mean * size: a: 2 - 1 = 1, b: 0 - 1 = -1; SE^2 = 2/1 * (1 + 1) / 4^2 = 1/4
    assert standard_error([1, 1, 0, 0], ["a", "a", "b", "b"]) == pytest.approx(0.5)
    # documents that are alike inside add nothing: each doc's share of right crops is 1/2
    assert standard_error([1, 0, 1, 0], ["a", "a", "b", "b"]) == 0.0


def test_standard_error_of_a_ratio_is_a_cer_by_document():
    # CER = 3 / 10; residuals 1 - 0.3*4, 0 - 0.3*4, 2 - 0.3*2 = -0.2, -1.2, 1.4; SE^2 = 3/2 * 3.44 / 10^2
    assert standard_error([1, 0, 2], ["a", "b", "c"], weights=[4, 4, 2]) == pytest.approx(math.sqrt(0.0516))
    # a document's crops pool: a = (1 edit, 8 chars), b = (0, 4), c = (2, 2); CER R = 3 / 14
    r = 3 / 14
    assert standard_error([1, 0, 0, 2], ["a", "a", "b", "c"], weights=[4, 4, 4, 2]) == pytest.approx(
        math.sqrt(3 / 2 * ((1 - 8 * r) ** 2 + (0 - 4 * r) ** 2 + (2 - 2 * r) ** 2) / 14 ** 2))


def test_standard_error_needs_two_documents():
    assert math.isnan(standard_error([1, 0, 1], ["a", "a", "a"]))
    assert math.isnan(standard_error([], []))


def test_sign_test_by_hand():
    assert sign_test(0, 5) == pytest.approx(2 / 32)
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert sign_test(1, 1) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(600, 400) < 1e-9  # big counts stay exact integers, no overflow


def test_paired_counts_fixed_and_broken():
    baseline = [True, True, False, False, False, True]
    model = [True, False, True, True, False, True]
    p = paired_counts(baseline, model)
    assert (p["n"], p["fixed"], p["broken"], p["both_right"], p["both_wrong"]) == (6, 2, 1, 2, 1)
    assert p["p_value"] == pytest.approx(1.0)  # 2 vs 1: 2 * (1 + 3) / 8 = 1
    assert "difference" not in p
    g = paired_counts(baseline, model, groups=["a", "a", "b", "b", "c", "c"])
    # differences (model - baseline) by crop: 0, -1, 1, 1, 0, 0 -> doc sums -1, 2, 0; mean 1/6
    assert g["difference"] == pytest.approx(1 / 6)
    assert g["difference_se"] == pytest.approx(math.sqrt(3 / 2 * ((-1 - 2 / 6) ** 2 + (2 - 2 / 6) ** 2 + (0 - 2 / 6) ** 2)
                                                          / 36))
    with pytest.raises(ValueError):
        paired_counts([True], [True, False])


def test_crop_scores_and_case_insensitive_cer():
    preds, labels = ["Total", "tota1", "NET"], ["TOTAL", "TOTAL", "Net"]
    s = crop_scores(preds, labels)
    assert s["exact"].tolist() == [False, False, False] and s["case_insensitive"].tolist() == [True, False, True]
    assert s["edits"].tolist() == [4, 5, 2] and s["edits_case_insensitive"].tolist() == [0, 1, 0]
    m = text_metrics(preds, labels)
    assert m["cer"] == pytest.approx(11 / 13) and m["cer_case_insensitive"] == pytest.approx(1 / 13)
    se = metric_errors(preds, labels, ["r1", "r1", "r2"])
    assert se["exact"] == 0.0 and set(se) == {"exact", "case_insensitive", "alnum_only", "ignore_spaces", "cer",
                                               "cer_case_insensitive"}
    # case-insensitive right per receipt: r1 1 of 2, r2 1 of 1; mean 2/3; residuals 1 - 4/3, 1 - 2/3
    assert se["case_insensitive"] == pytest.approx(math.sqrt(2 * ((1 / 3) ** 2 + (1 / 3) ** 2) / 9))
