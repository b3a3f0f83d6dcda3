"""The trainer end to end, small: real crops from Parquet plus synthetic text, checkpoints, resume, seed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from crnn import Recognizer
from crnn.checkpoint import load_checkpoint
from crnn.training.data import split_by_doc
from jobs.train import main as train_main
from tests.helpers import crop_bytes

WORDS = ["Invoice", "TOTAL", "42.50", "Date:", "to", "Smith", "No.", "(212)"]
FORMS = [f"form{d}" for d in range(10)]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> str:
    """Labelled crops from 10 'forms', in the layout of ../shared/data/funsd_train_words.parquet."""
    rows = [{"id": f"{form}-{i}", "image": crop_bytes(w), "text": w, "doc_id": form}
            for form in FORMS for i, w in enumerate(WORDS)]
    path = tmp_path_factory.mktemp("real") / "words.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def _train(out, labelled, *extra: str) -> None:
    train_main(["--out-dir", str(out), "--real-parquet", labelled, "--real-fraction", "0.5",
                "--batch-size", "8", "--synth-val", "16", "--val-fraction", "0.2", "--workers", "0",
                "--threads", "1", "--warmup", "2", "--version", "test.1", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, labelled) -> Path:
    """A 4-step run evaluated at steps 2 and 4 (shared: a test that trains on copies it first)."""
    out = tmp_path_factory.mktemp("run")
    _train(out, labelled, "--steps", "4", "--eval-every", "2")
    return out


def test_training_writes_checkpoints_the_recognizer_loads(trained):
    for name in ("best.pt", "last.pt", "best.state.pt", "last.state.pt"):
        assert (trained / name).is_file(), name
    _, _, meta = load_checkpoint(trained / "last.pt")
    assert meta["version"] == "test.1" and meta["training"]["steps"] == 4
    assert meta["training"]["samples"] == 4 * 8
    val = meta["training"]["validation"]
    # whole forms are held out (0.2 of them, by a stable hash), never a share of one form's crops
    held_out_forms = int(split_by_doc(FORMS, 0.2).sum())
    assert 0 < held_out_forms < len(FORMS) and val["real"]["n"] == held_out_forms * len(WORDS)
    assert val["synthetic"]["n"] == 16 and val["samples_per_s"] > 0

    rec = Recognizer.load(trained / "last.pt", precision="fp32")
    (text, score), = rec.recognize([Image.new("L", (60, 20), 255)])
    assert isinstance(text, str) and 0.0 <= score <= 1.0


def test_resume_continues_from_the_last_evaluation(tmp_path, trained, labelled):
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    _train(tmp_path, labelled, "--steps", "6", "--eval-every", "2", "--resume", str(tmp_path / "last.pt"))

    _, _, meta = load_checkpoint(tmp_path / "last.pt")
    assert meta["training"]["steps"] == 6
    state = torch.load(tmp_path / "last.state.pt", weights_only=True)
    assert [h["step"] for h in state["history"]] == [2, 4, 6]
    assert state["sched"]["last_epoch"] == 6
    assert all(int(s["step"]) == 6 for s in state["opt"]["state"].values())  # optimiser moments carried over


def test_the_seed_fixes_the_run(tmp_path, labelled):
    def weights(out, seed):
        _train(out, labelled, "--steps", "3", "--eval-every", "3", "--seed", str(seed))
        return load_checkpoint(out / "last.pt")[0].state_dict()

    a, b, c = weights(tmp_path / "a", 1), weights(tmp_path / "b", 1), weights(tmp_path / "c", 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_case_fold_scores_a_label_in_either_case():
    """Receipts' labels are upper case by convention: with CaseFold, `TOTAL` is matched by `Total` printed."""
    from crnn.charset import Charset
    from crnn.training.train import CaseFold, ctc_loss

    cs = Charset()
    fold = CaseFold(cs)
    printed = cs.encode("Total")
    # 10 frames: each printed character then a blank, each at probability 0.97
    lp = torch.full((10, 1, cs.num_classes), 0.03 / (cs.num_classes - 1)).log()
    for t, c in enumerate(printed):
        lp[2 * t, 0, c], lp[2 * t + 1, 0, 0] = 0.97, 0.97
    lp = lp.exp().div(lp.exp().sum(-1, keepdim=True)).log()
    assert torch.allclose(fold.log_probs(lp).exp().sum(-1), torch.ones(10, 1))  # still a distribution
    label = torch.tensor(cs.encode("TOTAL"))
    frames, lengths = torch.tensor([10]), torch.tensor([5])
    cased = ctc_loss(lp, label, frames, lengths, torch.tensor([False]), fold)
    caseless = ctc_loss(lp, label, frames, lengths, torch.tensor([True]), fold)
    as_printed = ctc_loss(lp, torch.tensor(printed), frames, lengths, torch.tensor([False]), fold)
    assert caseless < 0.1 < 1.0 < cased                       # the print matches TOTAL only without case
    assert torch.isclose(caseless, as_printed, rtol=0.05)      # ~ the loss of the label in the print's own case
