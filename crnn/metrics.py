"""Recognition accuracy: exact / case-insensitive / letters-and-digits / spaces-ignored match, character error rate,
and accuracy above confidence thresholds."""

from __future__ import annotations

import re
from collections import Counter

from rapidfuzz.distance import Levenshtein

_ALNUM = re.compile(r"[^0-9A-Za-z]")


def text_metrics(predictions: list[str], labels: list[str]) -> dict[str, float]:
    """Args: predictions and labels, aligned. Returns word accuracies (exact, case-insensitive, letters and
    digits only, spaces ignored) and CER (edits / label characters)."""
    n = max(len(labels), 1)
    edits = sum(Levenshtein.distance(p, t) for p, t in zip(predictions, labels))
    return {
        "n": len(labels),
        "exact": sum(p == t for p, t in zip(predictions, labels)) / n,
        "case_insensitive": sum(p.lower() == t.lower() for p, t in zip(predictions, labels)) / n,
        "alnum_only": sum(_ALNUM.sub("", p).lower() == _ALNUM.sub("", t).lower()
                          for p, t in zip(predictions, labels)) / n,
        # Lines: word-level labels (FUNSD's) put spaces inside tokens like `F.P.M.` that the page lacks.
        "ignore_spaces": sum("".join(p.split()) == "".join(t.split()) for p, t in zip(predictions, labels)) / n,
        "cer": edits / max(sum(len(t) for t in labels), 1),
    }


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
