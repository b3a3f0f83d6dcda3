"""Recognition accuracy: exact / case-insensitive / letters-and-digits / spaces-ignored match, character error rate,
accuracy above confidence thresholds, and the statistics of comparing them: standard errors that respect
documents (crops of one page share its scan, font and ink, so they are not independent) and paired counts
of two models on the same crops."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
from rapidfuzz.distance import Levenshtein

_ALNUM = re.compile(r"[^0-9A-Za-z]")

# Per-crop scores behind text_metrics: accuracies are means of the boolean ones, CERs are ratios of edits to chars.
ACCURACIES = ("exact", "case_insensitive", "alnum_only", "ignore_spaces")
ERROR_RATES = {"cer": "edits", "cer_case_insensitive": "edits_case_insensitive"}


def crop_scores(predictions: list[str], labels: list[str]) -> dict[str, np.ndarray]:
    """Per crop, aligned with the inputs: right or not under each of ACCURACIES (bool), `edits` and
    `edits_case_insensitive` (Levenshtein distance to the label, as is and lower-cased) and `chars` (label length)."""
    pairs = list(zip(predictions, labels))
    return {
        "exact": np.array([p == t for p, t in pairs], dtype=bool),
        "case_insensitive": np.array([p.lower() == t.lower() for p, t in pairs], dtype=bool),
        "alnum_only": np.array([_ALNUM.sub("", p).lower() == _ALNUM.sub("", t).lower() for p, t in pairs], dtype=bool),
        # Lines: word-level labels (FUNSD's) put spaces inside tokens like `F.P.M.` that the page lacks.
        "ignore_spaces": np.array(["".join(p.split()) == "".join(t.split()) for p, t in pairs], dtype=bool),
        "edits": np.array([Levenshtein.distance(p, t) for p, t in pairs], dtype=np.int64),
        "edits_case_insensitive": np.array([Levenshtein.distance(p.lower(), t.lower()) for p, t in pairs],
                                           dtype=np.int64),
        "chars": np.array([len(t) for _, t in pairs], dtype=np.int64),
    }


def text_metrics(predictions: list[str], labels: list[str]) -> dict[str, float]:
    """Args: predictions and labels, aligned. Returns word accuracies (exact, case-insensitive, letters and
    digits only, spaces ignored) and CER (edits / label characters), as is and case-insensitive."""
    s = crop_scores(predictions, labels)
    n, chars = max(len(labels), 1), max(int(s["chars"].sum()), 1)
    return {"n": len(labels), **{k: int(s[k].sum()) / n for k in ACCURACIES},
            **{k: int(s[e].sum()) / chars for k, e in ERROR_RATES.items()}}


def standard_error(values, groups, weights=None) -> float:
    """Cluster-robust standard error of the mean of `values` (weights None), or of the ratio
    sum(values) / sum(weights) (a CER: values = edits, weights = label characters), with the crops of one
    group (document) allowed to be correlated.

    The sandwich estimate with the usual small-sample factor G / (G - 1) over G groups:
        SE^2 = G / (G - 1) * sum_g (sum_{i in g} (values_i - R * weights_i))^2 / (sum_i weights_i)^2
    where R is the mean (ratio). With one crop per group it is the textbook s / sqrt(n) (s with n - 1);
    crops that agree within a document make it larger. NaN with fewer than two groups (or no weight)."""
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    _, g = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    total, n_groups = w.sum(), int(g.max()) + 1 if len(g) else 0
    if n_groups < 2 or total <= 0:
        return float("nan")
    residual_sums = np.bincount(g, weights=v - v.sum() / total * w, minlength=n_groups)
    return float(math.sqrt(n_groups / (n_groups - 1) * (residual_sums ** 2).sum()) / total)


def metric_errors(predictions: list[str], labels: list[str], groups) -> dict[str, float]:
    """Cluster-robust (by `groups`) standard error of each of text_metrics' figures, as `standard_error`."""
    s = crop_scores(predictions, labels)
    return {**{k: standard_error(s[k], groups) for k in ACCURACIES},
            **{k: standard_error(s[e], groups, s["chars"]) for k, e in ERROR_RATES.items()}}


def sign_test(fixed: int, broken: int) -> float:
    """Exact two-sided sign test (McNemar's exact test) of `fixed` against `broken` discordant pairs: the
    chance, if neither model were better, of a split at least this uneven. 1.0 with no discordant pair."""
    n, k = fixed + broken, min(fixed, broken)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def paired_counts(baseline_correct, model_correct, groups=None) -> dict:
    """Two models on the same crops (aligned booleans): `fixed` (baseline wrong, model right), `broken`
    (baseline right, model wrong), `both_right`, `both_wrong`, and `p_value`, the exact sign test of fixed
    against broken. That test takes crops as independent, which crops of one document are not: it is
    optimistic. With `groups` (doc ids) also `difference` (model minus baseline accuracy) and its
    cluster-robust `difference_se`, the figure that respects documents."""
    a, b = np.asarray(baseline_correct, dtype=bool), np.asarray(model_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"baseline and model scores differ in length: {a.shape} vs {b.shape}")
    fixed, broken = int((~a & b).sum()), int((a & ~b).sum())
    out = {"n": int(a.size), "fixed": fixed, "broken": broken, "both_right": int((a & b).sum()),
           "both_wrong": int((~a & ~b).sum()), "p_value": sign_test(fixed, broken)}
    if groups is not None:
        out["difference"] = float(b.mean() - a.mean()) if a.size else float("nan")
        out["difference_se"] = standard_error(b.astype(float) - a.astype(float), groups)
    return out


def accuracy_by_score(predictions: list[str], labels: list[str], scores: list[float],
                      thresholds=(0.5, 0.8, 0.9, 0.95, 0.99)) -> list[dict[str, float]]:
    """For each threshold: the share of crops scoring at least it (`kept`), their exact accuracy, and the
    exact accuracy of the rest; how a user picks a `score` cut for review. Missing scores count as 0."""
    rows = []
    right = [p == t for p, t in zip(predictions, labels)]
    scores = [0.0 if s is None or s != s else s for s in scores]  # None/NaN: failed crops
    for th in thresholds:
        kept = [r for r, s in zip(right, scores) if s >= th]
        rest = [r for r, s in zip(right, scores) if s < th]
        rows.append({"min_score": th, "kept": len(kept) / max(len(right), 1),
                     "exact": sum(kept) / len(kept) if kept else float("nan"),
                     "exact_below": sum(rest) / len(rest) if rest else float("nan")})
    return rows


def confusions(predictions: list[str], labels: list[str], top: int = 20) -> list[tuple[str, str, int]]:
    """Commonest character substitutions/insertions/deletions as (label char, predicted char, count); '' = none."""
    counts: Counter = Counter()
    for p, t in zip(predictions, labels):
        for op, i, j in Levenshtein.editops(t, p):
            counts[(t[i] if op != "insert" else "", p[j] if op != "delete" else "")] += 1
    return [(a, b, c) for (a, b), c in counts.most_common(top)]
