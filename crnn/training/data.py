"""Training data: labelled crops from Parquet, synthetic crops, and width-bucketed CTC batches."""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from crnn.charset import Charset, normalize
from crnn.image import ImageSpec, decode_image, is_tall, normalize_crop, pad_batch, to_gray

# Training squeezes crops wider than 1,024 (after resizing to height 32), as every shipped model was
# trained, so old training commands replay exactly; inference (ImageSpec's default) squeezes beyond 4,096.
TRAINING_SPEC = ImageSpec(max_width=1024)


def split_by_doc(doc_ids, val_fraction: float = 0.1) -> np.ndarray:
    """Boolean mask of validation rows: whole documents, chosen by a stable hash of the doc id."""
    h = np.array([zlib.crc32(str(d).encode()) % 1000 for d in doc_ids])
    return h < int(val_fraction * 1000)


def read_labelled(path: str, image_column: str = "image", label_column: str = "text",
                  doc_column: str | None = "doc_id") -> dict[str, np.ndarray]:
    """Labelled crops from Parquet as columns (image bytes, label, doc id); small enough to hold for training."""
    cols = [image_column, label_column] + ([doc_column] if doc_column else [])
    t = pq.read_table(path, columns=cols)
    return {"image": np.array(t[image_column].to_pylist(), dtype=object),
            "text": np.array(t[label_column].to_pylist(), dtype=object),
            "doc": np.array(t[doc_column].to_pylist() if doc_column else [None] * len(t), dtype=object)}


def read_sources(paths: str, **kwargs) -> dict[str, np.ndarray]:
    """`read_labelled` over comma-separated files, each optionally repeated: "words.parquet,lines.parquet*4".

    Adds column "copy": 0 for a row's first copy, 1.. for its repeats (validation reads first copies only)."""
    parts = []
    for item in (p.strip() for p in paths.split(",") if p.strip()):
        path, _, times = item.rpartition("*") if re.fullmatch(r".+\*\d+", item) else (item, "", "1")
        cols = read_labelled(path, **kwargs)
        parts += [{**cols, "copy": np.full(len(cols["text"]), k)} for k in range(int(times))]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class Sample:
    crop: np.ndarray        # (32, w) uint8
    text: str
    caseless: bool = False  # the label's case is unknown (receipts' upper-case convention): train with CaseFold


class RealCrops:
    """Decoded, normalised labelled crops with light geometric/photometric jitter.

    Vertical text (a tall crop whose label has several characters) is turned upright, as the
    pipeline reads it (`crnn.image.turned_crop`): read sideways, its label would only be noise.
    `caseless`: the labels' case says nothing about the print (SROIE's are upper case by convention).
    """

    def __init__(self, images, texts, charset: Charset, spec: ImageSpec = TRAINING_SPEC, caseless: bool = False):
        self.caseless = caseless
        keep = [i for i, t in enumerate(texts) if t and charset.can_encode(t)]
        self.texts = [normalize(texts[i]) for i in keep]
        # Decoded exactly as the pipeline decodes them (EXIF orientation, transparency on white).
        self.images = [self._upright(to_gray(decode_image(images[i], spec)), text, spec)
                       for i, text in zip(keep, self.texts)]
        self.spec = spec
        self.skipped = len(texts) - len(keep)

    def __len__(self):
        return len(self.texts)

    @staticmethod
    def _upright(img: Image.Image, text: str, spec: ImageSpec) -> Image.Image:
        return img.transpose(Image.Transpose.ROTATE_90) if len(text) > 1 and is_tall(img, spec) else img

    def get(self, i: int, rng: random.Random | None = None) -> Sample:
        img = self.images[i]
        if rng is not None and rng.random() < 0.5:  # jitter the box by a pixel or two, as detectors do
            w, h = img.size
            l, t, r, b = (rng.randint(-2, 1) for _ in range(4))
            img = img.crop((l, t, w - r, h - b)) if w - r - l > 2 and h - b - t > 2 else img
        return Sample(normalize_crop(img, self.spec), self.texts[i], self.caseless)


class CropStream(torch.utils.data.IterableDataset):
    """Endless width-bucketed batches mixing real crops (probability `real_fraction`), real crops of unknown
    case (`caseless`, probability `caseless_fraction`) and synthetic ones (the rest).

    Each worker draws a pool of `batch_size * pool_batches` samples, sorts it by width and cuts it
    into batches, so padding stays small; batches leave in random order. With probability
    `narrow_prob` a crop is squeezed to 70-95% of its width (never below 8 px per character), so
    condensed and tightly set text, the model's weakest, is seen more often.
    """

    def __init__(self, charset: Charset, batch_size: int, seed: int, real: RealCrops | None = None,
                 real_fraction: float = 0.5, renderer=None, pool_batches: int = 8, spec: ImageSpec = TRAINING_SPEC,
                 narrow_prob: float = 0.0, caseless: RealCrops | None = None, caseless_fraction: float = 0.0):
        self.charset, self.batch_size, self.seed, self.narrow_prob = charset, batch_size, seed, narrow_prob
        self.real, self.caseless, self.renderer, self.spec = real, caseless, renderer, spec
        rf = real_fraction if real is not None else 0.0
        cf = caseless_fraction if caseless is not None else 0.0
        if renderer is None:  # real crops only: their shares fill the whole stream
            if not rf + cf:
                raise ValueError("need real crops, a synthetic renderer, or both")
            rf, cf = rf / (rf + cf), cf / (rf + cf)
        self.real_fraction, self.caseless_fraction = rf, cf
        self.pool = batch_size * pool_batches

    def _sample(self, rng: random.Random) -> Sample:
        r = rng.random()
        if r < self.real_fraction:
            s = self.real.get(rng.randrange(len(self.real)), rng)
        elif r < self.real_fraction + self.caseless_fraction:
            s = self.caseless.get(rng.randrange(len(self.caseless)), rng)
        else:
            img, text = self.renderer.sample(rng)
            s = Sample(normalize_crop(img, self.spec), text)
        # narrow_prob 0 draws nothing from rng, so a seed replays the same samples as before the option
        return self._narrowed(s, rng) if self.narrow_prob and rng.random() < self.narrow_prob else s

    def _narrowed(self, s: Sample, rng: random.Random) -> Sample:
        w = max(round(s.crop.shape[1] * rng.uniform(0.7, 0.95)), 8 * len(s.text), self.spec.min_width)
        if w >= s.crop.shape[1]:
            return s
        return Sample(np.asarray(Image.fromarray(s.crop).resize((w, s.crop.shape[0]), Image.BILINEAR)), s.text,
                      s.caseless)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = random.Random(self.seed * 1009 + (info.id if info else 0))
        while True:
            pool = sorted((self._sample(rng) for _ in range(self.pool)), key=lambda s: s.crop.shape[1])
            batches = [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
            rng.shuffle(batches)
            for b in batches:
                yield collate(b, self.charset)


def collate(samples: list[Sample], charset: Charset) -> dict[str, torch.Tensor]:
    """Pad crops into one uint8 batch and concatenate CTC targets."""
    images, widths = pad_batch([s.crop for s in samples])
    targets = [charset.encode(s.text) for s in samples]
    return {"images": torch.from_numpy(images), "widths": torch.from_numpy(widths),
            "targets": torch.tensor([c for t in targets for c in t], dtype=torch.long),
            "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
            "caseless": torch.tensor([s.caseless for s in samples], dtype=torch.bool),
            "texts": [s.text for s in samples]}
