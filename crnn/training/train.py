"""Train a CRNN with CTC on synthetic and/or real labelled crops (CPU or GPU).

Used by `python -m jobs.train`; everything here is plain PyTorch.
"""

from __future__ import annotations

import dataclasses
import math
import random
import string
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from crnn.charset import Charset
from crnn.checkpoint import load_checkpoint, save_checkpoint
from crnn.config import option
from crnn.image import normalize_crop
from crnn.model import CRNN, CRNNConfig
from crnn.recognizer import Recognizer
from crnn.training import splits
from crnn.training.data import TRAINING_SPEC, CropStream, RealCrops, Sample, read_sources, split_by_doc
from crnn.metrics import text_metrics


@dataclass
class TrainConfig:
    """One training run; `jobs.train` makes a flag of every field (crnn/config.py)."""
    out_dir: str = option("runs/crnn", "where checkpoints and the log go (default: %(default)s)")
    arch: str = option("small", "model size (CRNNConfig)", choices=["small", "base"])
    steps: int = option(20_000, "optimiser steps (default: %(default)s)")
    batch_size: int = option(64, "crops per step (default: %(default)s)")
    lr: float = option(2e-3, "peak learning rate, AdamW, cosine after the warm-up (default: %(default)s)")
    weight_decay: float = option(1e-2, "AdamW weight decay (default: %(default)s)")
    warmup: int = option(500, "steps of linear learning-rate warm-up (default: %(default)s)")
    real_parquet: str | None = option(None, "labelled crops (image, text, doc_id); 'a.parquet,b.parquet*4' repeats b")
    real_fraction: float = option(0.5, "share of real crops in each batch when synthetic data is on "
                                       "(default: %(default)s)")
    caseless_parquet: str | None = option(None, "labelled crops whose labels' case is unknown (receipts), same "
                                                "syntax; trained with case-merged CTC")
    caseless_fraction: float = option(0.0, "their share of each batch (default: %(default)s)")
    narrow_prob: float = option(0.0, "share of crops squeezed narrower (CropStream; default: %(default)s)")
    synthetic: bool = option(True, "mix in rendered crops (crnn/training/synth.py)")
    font_dir: str | None = option(None, "fonts for the rendered crops (default: the system's)")
    val_fraction: float = option(0.0, "more documents held out by a hash of doc_id (outside "
                                      "crnn/training/splits.json; default: %(default)s)")
    synth_val: int = option(1000, "fixed-seed synthetic validation crops (default: %(default)s)")
    eval_every: int = option(1000, "steps between validations and checkpoints (default: %(default)s)")
    workers: int = option(1, "data-loading worker processes (default: %(default)s)")
    threads: int = option(0, "torch intra-op threads (0: torch's default)")
    precision: str = option("bf16", "autocast dtype for forward/backward (fp32: none)", choices=["bf16", "fp32"])
    seed: int = option(0, "random seed (default: %(default)s)")
    resume: str | None = option(None, "continue from a checkpoint this trainer wrote (its optimiser too)")
    init: str | None = option(None, "start from these weights (fine-tuning), with a fresh optimiser")
    name: str = option("crnn-printed-en", "the model's name in its checkpoint (default: %(default)s)")
    version: str = option("dev", "the model's version in its checkpoint (default: %(default)s)")


class CaseFold:
    """CTC over case-merged classes, for labels whose case says nothing about the print.

    A letter's merged class has the log-sum of its upper- and lower-case probabilities, so a receipt's
    upper-case label `TOTAL` is matched by `Total` or `total` on the page alike, and the model keeps
    learning case from the data that has it (forms, synthetic text).
    """

    def __init__(self, charset: Charset):
        lower = torch.tensor(charset.encode(string.ascii_lowercase))
        upper = torch.tensor(charset.encode(string.ascii_uppercase))
        keep = torch.tensor([c for c in range(charset.num_classes) if c not in set(upper.tolist())])
        self.keep, self.lower, self.upper = keep, lower, upper
        self.merged = torch.searchsorted(keep, lower)        # where each lower-case class sits in `keep`
        self.remap = torch.full((charset.num_classes,), -1, dtype=torch.long)
        self.remap[keep] = torch.arange(len(keep))
        self.remap[upper] = self.remap[lower]

    def log_probs(self, log_probs: torch.Tensor) -> torch.Tensor:
        """(T, B, C) log-probabilities -> (T, B, C - 26) over case-merged classes."""
        out = log_probs[..., self.keep].clone()
        out[..., self.merged] = torch.logaddexp(log_probs[..., self.lower], log_probs[..., self.upper])
        return out

    def targets(self, targets: torch.Tensor) -> torch.Tensor:
        return self.remap.to(targets.device)[targets]


def ctc_loss(log_probs, targets, frames, target_lengths, caseless, fold: CaseFold) -> torch.Tensor:
    """nn.CTCLoss's mean (each crop's loss over its label length), case-merged for the `caseless` crops."""
    kw = dict(blank=0, reduction="none", zero_infinity=True)
    loss = F.ctc_loss(log_probs, targets, frames, target_lengths, **kw) if not caseless.all() else 0.0
    if caseless.any():
        merged = F.ctc_loss(fold.log_probs(log_probs), fold.targets(targets), frames, target_lengths, **kw)
        loss = torch.where(caseless, merged, loss)
    return (loss / target_lengths.clamp(min=1)).mean()


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate(model: CRNN, samples: list[Sample], charset: Charset, device, batch_size: int = 128,
             caseless: bool = False) -> dict:
    """Greedy-decode `samples` through `Recognizer.read` (the recognition path of inference, around the live
    model: fp32, its memory format kept) and score them (ignoring case if `caseless`); leaves `model` training."""
    model.eval()
    try:
        readings = Recognizer.around(model, charset, device).read([s.crop for s in samples], batch_size=batch_size)
    finally:
        model.train()
    preds = [text for text, _ in readings]
    labels = [s.text for s in samples]
    if caseless:
        preds, labels = [p.lower() for p in preds], [t.lower() for t in labels]
    return text_metrics(preds, labels)


def _real_crops(paths: str, charset: Charset, val_fraction: float, dataset: str, caseless: bool = False):
    """(training crops, validation samples): documents of crnn/training/splits.json's validation split (and a
    `val_fraction` hash share of documents outside it) validate; no split's document is ever trained on."""
    cols = read_sources(paths)
    trainable = splits.trainable(cols["doc"])
    is_val = splits.in_split(cols["doc"], dataset, "validation")
    if val_fraction:
        extra = split_by_doc(cols["doc"], val_fraction) & trainable
        is_val, trainable = is_val | extra, trainable & ~extra
    is_val &= cols["copy"] == 0
    train_set = RealCrops(cols["image"][trainable], cols["text"][trainable], charset, caseless=caseless)
    val_set = RealCrops(cols["image"][is_val], cols["text"][is_val], charset, caseless=caseless)
    print(f"{paths}: {len(train_set)} crops of {len(set(cols['doc'][trainable]))} documents train, "
          f"{len(val_set)} of {len(set(cols['doc'][is_val]))} validate, "
          f"{int((~trainable & ~is_val).sum())} rows of test/other held-out documents unread; "
          f"{train_set.skipped + val_set.skipped} labels outside the charset skipped")
    return train_set, [val_set.get(i) for i in range(len(val_set))]


def train(cfg: TrainConfig) -> Path:
    """Runs training; returns the path of the best checkpoint."""
    random.seed(cfg.seed), np.random.seed(cfg.seed), torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charset = Charset()

    real = val_real = caseless = val_caseless = None
    if cfg.real_parquet:
        real, val_real = _real_crops(cfg.real_parquet, charset, cfg.val_fraction, "funsd")
    if cfg.caseless_parquet:
        caseless, val_caseless = _real_crops(cfg.caseless_parquet, charset, cfg.val_fraction, "sroie", caseless=True)
    renderer = val_synth = None
    if cfg.synthetic:
        from crnn.training.synth import SynthConfig, TextRenderer
        renderer = TextRenderer(SynthConfig(font_dir=cfg.font_dir) if cfg.font_dir else SynthConfig())
        rng = random.Random(10_000_019)  # fixed: the same synthetic test set for every run
        val_synth = []
        for _ in range(cfg.synth_val):
            img, text = renderer.sample(rng)
            val_synth.append(Sample(normalize_crop(img, TRAINING_SPEC), text))

    arch = (CRNNConfig.small(num_classes=charset.num_classes) if cfg.arch == "small"
            else CRNNConfig(num_classes=charset.num_classes))
    model = CRNN(arch)
    if cfg.init:
        model, _, _ = load_checkpoint(cfg.init)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    step, best, history = 0, -1.0, []
    if cfg.resume:
        state = torch.load(Path(cfg.resume).with_suffix(".state.pt"), weights_only=True)
        model.load_state_dict(state["model"]), opt.load_state_dict(state["opt"]), sched.load_state_dict(state["sched"])
        step, best, history = state["step"], state["best"], state["history"]

    stream = CropStream(charset, cfg.batch_size, cfg.seed + step, real, cfg.real_fraction, renderer,
                        narrow_prob=cfg.narrow_prob, caseless=caseless, caseless_fraction=cfg.caseless_fraction)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=cfg.workers,
                                         persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers else None)
    fold = CaseFold(charset)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    bar = tqdm(total=cfg.steps, initial=step, dynamic_ncols=True, mininterval=5)
    t0, seen, loss_avg = time.time(), 0, None

    def save(path: Path, metrics: dict) -> None:
        summary = {"steps": step, "samples": step * cfg.batch_size, "config": dataclasses.asdict(cfg),
                   "device": str(device), "validation": metrics}
        save_checkpoint(path, model, charset, name=cfg.name, version=cfg.version, training=summary)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "step": step, "best": best, "history": history}, path.with_suffix(".state.pt"))

    for batch in loader:
        if step >= cfg.steps:
            break
        x = CRNN.prepare(batch["images"].to(device))
        with autocast:
            logits = model(x)
        log_probs = logits.float().log_softmax(-1)
        loss = ctc_loss(log_probs, batch["targets"].to(device), CRNN.frames(batch["widths"]).to(device),
                        batch["target_lengths"].to(device), batch["caseless"].to(device), fold)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step(), sched.step()
        step += 1
        seen += len(batch["texts"])
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss_avg:.3f}", sps=f"{seen / (time.time() - t0):.0f}", lr=f"{sched.get_last_lr()[0]:.1e}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = {}
            if val_real:
                metrics["real"] = evaluate(model, val_real, charset, device)
            if val_caseless:
                metrics["caseless"] = evaluate(model, val_caseless, charset, device, caseless=True)
            if val_synth:
                metrics["synthetic"] = evaluate(model, val_synth, charset, device)
            metrics["samples_per_s"] = seen / (time.time() - t0)
            history.append({"step": step, **metrics})
            # best: the mean exact over the real kinds (forms, receipts), else synthetic
            real_kinds = [metrics[k]["exact"] for k in ("real", "caseless") if k in metrics]
            score = float(np.mean(real_kinds)) if real_kinds else metrics["synthetic"]["exact"]
            bar.write(f"step {step}: " + "  ".join(
                f"{k}: exact {v['exact']:.4f} cer {v['cer']:.4f}" for k, v in metrics.items() if isinstance(v, dict))
                + f"  ({metrics['samples_per_s']:.0f} samples/s)")
            if score > best:
                best = score
                save(out / "best.pt", metrics)
            save(out / "last.pt", metrics)
    bar.close()
    return out / "best.pt"
