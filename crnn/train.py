"""Train a CRNN with CTC on synthetic and/or real labelled crops (CPU or GPU).

Used by `python -m jobs.train`; everything here is plain PyTorch.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from crnn.charset import Charset
from crnn.checkpoint import load_checkpoint, save_checkpoint
from crnn.data import TRAINING_SPEC, CropStream, RealCrops, Sample, read_labelled, split_by_doc
from crnn.decoding import greedy_decode
from crnn.image import normalize_crop, pad_batch
from crnn.metrics import text_metrics
from crnn.model import CRNN, CRNNConfig


@dataclass
class TrainConfig:
    out_dir: str = "runs/crnn"
    arch: str = "small"                  # "small" or "base" (CRNNConfig)
    steps: int = 20_000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup: int = 500
    real_parquet: str | None = None      # labelled crops (image, text, doc_id)
    real_fraction: float = 0.5           # share of real crops in each batch when synthetic data is on
    narrow_prob: float = 0.0             # share of crops squeezed narrower (CropStream)
    synthetic: bool = True
    font_dir: str | None = None
    val_fraction: float = 0.1            # of real documents, held out whole
    synth_val: int = 1000                # fixed-seed synthetic validation crops
    eval_every: int = 1000
    workers: int = 1
    threads: int = 0                     # torch intra-op threads (0: torch's default)
    precision: str = "bf16"              # autocast dtype for forward/backward ("fp32" to disable)
    seed: int = 0
    resume: str | None = None            # a checkpoint written by this trainer
    init: str | None = None              # start from these weights (fine-tuning), fresh optimiser
    name: str = "crnn-printed-en"
    version: str = "dev"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def evaluate(model: CRNN, samples: list[Sample], charset: Charset, device, batch_size: int = 128) -> dict:
    """Greedy-decode `samples` (sorted by width for tight batches) and score them."""
    model.eval()
    order = sorted(range(len(samples)), key=lambda i: samples[i].crop.shape[1])
    preds = [""] * len(samples)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        images, widths = pad_batch([samples[i].crop for i in idx])
        x = CRNN.prepare(torch.from_numpy(images).to(device))
        for i, (text, _) in zip(idx, greedy_decode(model(x), torch.from_numpy(widths // 4), charset)):
            preds[i] = text
    model.train()
    return text_metrics(preds, [s.text for s in samples])


def train(cfg: TrainConfig) -> Path:
    """Runs training; returns the path of the best checkpoint."""
    random.seed(cfg.seed), np.random.seed(cfg.seed), torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charset = Charset()

    real = val_real = None
    if cfg.real_parquet:
        cols = read_labelled(cfg.real_parquet)
        is_val = split_by_doc(cols["doc"], cfg.val_fraction)
        real = RealCrops(cols["image"][~is_val], cols["text"][~is_val], charset)
        val_set = RealCrops(cols["image"][is_val], cols["text"][is_val], charset)
        val_real = [val_set.get(i) for i in range(len(val_set))]
        print(f"real crops: {len(real)} train, {len(val_real)} validation "
              f"({int(is_val.sum())} rows from {len(set(cols['doc'][is_val]))} held-out documents; "
              f"{real.skipped + val_set.skipped} labels outside the charset skipped)")
    renderer = val_synth = None
    if cfg.synthetic:
        from crnn.synth import SynthConfig, TextRenderer
        renderer = TextRenderer(SynthConfig(font_dir=cfg.font_dir) if cfg.font_dir else SynthConfig())
        rng = random.Random(10_000_019)  # fixed: the same synthetic test set for every run
        val_synth = []
        for _ in range(cfg.synth_val):
            img, text = renderer.sample(rng)
            val_synth.append(Sample(normalize_crop(img, TRAINING_SPEC), text))

    arch = CRNNConfig.small(num_classes=charset.num_classes) if cfg.arch == "small" else CRNNConfig(num_classes=charset.num_classes)
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
                        narrow_prob=cfg.narrow_prob)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=cfg.workers,
                                         persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers else None)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
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
        loss = ctc(log_probs, batch["targets"].to(device), (batch["widths"] // 4).to(device),
                   batch["target_lengths"].to(device))
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
            if val_synth:
                metrics["synthetic"] = evaluate(model, val_synth, charset, device)
            metrics["samples_per_s"] = seen / (time.time() - t0)
            history.append({"step": step, **metrics})
            score = metrics.get("real", metrics.get("synthetic"))["exact"]
            bar.write(f"step {step}: " + "  ".join(
                f"{k}: exact {v['exact']:.4f} cer {v['cer']:.4f}" for k, v in metrics.items() if isinstance(v, dict))
                + f"  ({metrics['samples_per_s']:.0f} samples/s)")
            if score > best:
                best = score
                save(out / "best.pt", metrics)
            save(out / "last.pt", metrics)
    bar.close()
    return out / "best.pt"
