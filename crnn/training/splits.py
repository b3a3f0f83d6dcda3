"""The fixed document splits (`crnn/training/splits.json`): which forms and receipts are validation or test.

Recorded as lists of doc ids, not as a hash fraction, so a split never moves when the data changes.
Training never reads a document of either split; `validation` compares variants, `test` is looked at
only to decide whether a model ships.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

SPLITS_FILE = Path(__file__).with_name("splits.json")
# Where the team's labelled data lives (`../shared/data/README.md`), beside a checkout; CRNN_DATA_DIR moves it
DATA_DIR = os.environ.get("CRNN_DATA_DIR", "../shared/data")
DATASETS = ("funsd", "sroie")   # forms (words, case-sensitive) and receipts (lines, case unknown)
SPLITS = ("validation", "test")


@lru_cache(maxsize=None)
def _load() -> dict:
    return json.loads(SPLITS_FILE.read_text())


def docs(dataset: str, split: str) -> frozenset[str]:
    """Doc ids of one split of one dataset ("funsd"/"sroie", "validation"/"test")."""
    if dataset not in DATASETS or split not in SPLITS:
        raise ValueError(f"no split {dataset}/{split}; datasets are {DATASETS}, splits {SPLITS}")
    return frozenset(_load()[dataset][split])


def data_file(dataset: str) -> str:
    """The file name, under DATA_DIR, that the dataset's split refers to."""
    return _load()[dataset]["file"]


def held_out() -> frozenset[str]:
    """Every doc id that training must not read: validation and test of both datasets."""
    return frozenset().union(*(docs(d, s) for d in DATASETS for s in SPLITS))


def in_split(doc_ids, dataset: str, split: str) -> np.ndarray:
    """Boolean mask of the rows whose doc id is in the split."""
    keep = docs(dataset, split)
    return np.array([str(d) in keep for d in doc_ids], dtype=bool)


def trainable(doc_ids) -> np.ndarray:
    """Boolean mask of the rows training may read (doc id in no split)."""
    out = held_out()
    return np.array([str(d) not in out for d in doc_ids], dtype=bool)
