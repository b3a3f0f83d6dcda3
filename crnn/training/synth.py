"""Synthetic document-text crops for training the CRNN, made on the fly.

`TextRenderer.sample(rng)` returns a grayscale word or line crop and its label.
Most imitate crops cut from scanned business forms (FUNSD): small text at scan
resolution (height mostly 10-24 px; `crnn.image.normalize_crop` resizes to 32
later), tight boxes, typewriter and print fonts, blur, noise, speckle,
thresholding, JPEG, ink bleed, gray paper, slight rotation and shear, form lines.
A share (`SynthConfig.receipt_share`, 0.3) are receipt lines like SROIE's
(`receipt_text`, `render_receipt`): item / quantity / price columns, totals, dates,
tel/fax, company and GST numbers, addresses, mostly upper case; monospace and
narrow faces, condensed or spaced out, dot-matrix print, faded thermal print,
gray paper; crops ~31 px high (median), at most 64, as SROIE's are stored.
Everything is drawn from the caller's `random.Random`, so a seed reproduces a
sample; `receipt_share=0` gives the stream of the forms-only renderer.
Labels keep single spaces; a wide column gap is a rendering choice only.
What the labels say is `crnn.training.text.LabelGrammar`'s (the label grammar); this module draws
them: fonts, typesetting, box, ink, paper and scan degradations.

Speed (~1 ms a sample once warm, ~1.5 ms a receipt line): glyph bitmaps are
cached per (font, size) and placed with numpy, since Pillow re-rasterises every
glyph on every call; the first ~20,000 samples of a process are slower while
the caches fill.

Expected Debian packages. Fonts (`find_fonts` searches /usr/share/fonts and
/usr/share/texmf/fonts/opentype, where fonts-texgyre lives): fonts-liberation2
fonts-freefont-ttf fonts-urw-base35 fonts-texgyre fonts-crosextra-carlito
fonts-crosextra-caladea fonts-linuxlibertine fonts-roboto fonts-open-sans
fonts-inconsolata fonts-noto-core fonts-dejavu. Words: wamerican
(/usr/share/dict/american-english); without it a built-in list is used.

CLI: python -m crnn.training.synth --out sheet.png --n 48 --seed 0 [--receipts] [--real crops.parquet]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import random
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from crnn.charset import PRINTABLE_ASCII
from crnn.training.text import WORDS_FILE, LabelGrammar

FONT_DIRS = ("/usr/share/fonts", "/usr/share/texmf/fonts/opentype")

_NOTO_LATIN = re.compile(r"^Noto(Sans|Serif)(Mono|Display)?-")
# Symbols, dingbats, maths, calligraphic scripts, keycaps, drop-cap initials, hairlines: not document text.
_NOT_TEXT = re.compile(r"symbol|dingbat|emoji|math|music|D050000L|Z003|chorus|Biolinum_K|LinLibertine_I\."
                       r"|thin|extralight", re.I)
_MONO = re.compile(r"mono|cursor|courier|inconsolata|LinLibertine_M\.", re.I)
_TYPEWRITER = re.compile(r"NimbusMono|FreeMono|LiberationMono|cursor|courier", re.I)

_HI_SIZES = (20, 24, 28, 32, 40, 48, 64, 80, 96)
_R_SIZES = (20, 24, 28, 32, 40, 48, 56, 64, 80, 96)  # receipt glyph sizes: few, for small caches
_R_MONO = re.compile(r"DejaVuSansMono|LiberationMono|NimbusMono|FreeMono|Inconsolata|cursor", re.I)
_R_NARROW = re.compile(r"Narrow|Condensed|OpenSans-Cond|heroscn", re.I)
_R_SANS = re.compile(r"^(DejaVuSans|LiberationSans|NimbusSans|FreeSans|Roboto|NotoSans|OpenSans|Carlito|"
                     r"texgyreheros|URWGothic)[-.]", re.I)
_R_SLANT = re.compile(r"italic|oblique|light", re.I)
_R_HEAVY = re.compile(r"bold|black|demi|semibold|medium|heavy", re.I)


@dataclass(frozen=True)
class SynthConfig:
    """Fonts, sizes, label mix and the probability of each degradation (per sample)."""

    font_dir: str | None = None      # None: FONT_DIRS
    words_file: str = WORDS_FILE
    min_text_px: int = 9             # font size range at "scan" resolution
    max_text_px: int = 40
    median_text_px: float = 14.0
    mono_prob: float = 0.35          # typewriter/monospace share; typed forms dominate FUNSD
    line_prob: float = 0.2           # multi-word lines rather than single tokens
    max_line_chars: int = 70
    wide_space_prob: float = 0.3     # receipt-style column gap (rendered only; the label keeps one space)
    supersample_prob: float = 0.5    # render at 1.5-3x and downscale: softer, scan-like edges
    band_prob: float = 0.6           # box spans cap height to baseline, not just the ink
    tight_prob: float = 0.8          # tight box (may cut the ink) rather than loose margins
    bleed_prob: float = 0.35
    rotate_prob: float = 0.35
    max_angle: float = 3.0           # degrees, rotation and shear
    blur_prob: float = 0.25
    binarize_prob: float = 0.5
    noise_prob: float = 0.35
    speckle_prob: float = 0.12
    jpeg_prob: float = 0.25
    gray_paper_prob: float = 0.04
    uneven_prob: float = 0.1
    low_contrast_prob: float = 0.03
    form_line_prob: float = 0.12
    dither_prob: float = 0.02        # halftone-looking print
    invert_prob: float = 0.005       # white on black headers are rare
    # Receipt lines (SROIE-like, `render_receipt`): share of `sample` calls; 0 gives the stream of the
    # FUNSD-only renderer, sample for sample, for a seed (the rest of the config being equal).
    receipt_share: float = 0.3
    receipt_median_px: float = 35.0  # font size at the crop's scale: crops ~31 px high (median) as in SROIE
    dot_matrix_prob: float = 0.15    # glyphs printed as a grid of round dots (impact printers)
    thermal_fade_prob: float = 0.3   # faded thermal print: low contrast, streaks, dropouts, fade along the line
    letter_spacing_prob: float = 0.15  # wide tracking, as spaced-out receipt headers and totals
    receipt_gap_prob: float = 0.6    # a receipt line's column gaps are widened (rendered only)
    receipt_gray_paper_prob: float = 0.3  # receipt paper is often gray or yellowed in the scans
    neighbor_line_prob: float = 0.06  # a receipt crop cuts into the line above or below


def _chance(rng: random.Random, p: float, name: str, applied: list[str] | None) -> bool:
    """`rng.random() < p`, noting `name` in `applied` (when given) if it comes true."""
    hit = rng.random() < p
    if hit and applied is not None:
        applied.append(name)
    return hit


def find_fonts(font_dir: str | None = None) -> list[str]:
    """Latin text fonts (.ttf/.otf) under `font_dir` (default FONT_DIRS), sorted, one per file name."""
    found = {}
    for root in [font_dir] if font_dir else FONT_DIRS:
        for d, _, files in os.walk(root):
            for f in files:
                if not f.lower().endswith((".ttf", ".otf")) or _NOT_TEXT.search(f):
                    continue
                if f.startswith("Noto") and not _NOTO_LATIN.match(f):
                    continue  # Noto's other scripts lack Latin glyphs
                found.setdefault(f, os.path.join(d, f))
    return sorted(found.values())


@lru_cache(maxsize=128)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: no shaping needed for ASCII, and it is much faster than raqm
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def _morph3(a: np.ndarray, op) -> np.ndarray:
    """3x3 erosion (op=np.minimum) or dilation (np.maximum), separable; PIL's rank filter is ~20x slower."""
    p = np.pad(a, 1, mode="edge")
    rows = op(op(p[:, :-2], p[:, 1:-1]), p[:, 2:])
    return op(op(rows[:-2], rows[1:-1]), rows[2:])


class _Glyphs(dict):
    """char -> (bitmap or None, left, top, advance) for one font file at one size.

    Pillow loads, hints and rasterises every glyph on every call (100-900 us a
    word, Noto worst); caching bitmaps and placing them ourselves is ~10x faster.
    A FreeTypeFont also holds ~200 KB, so only glyphs are kept for long.
    """

    def __init__(self, path: str, size: int):
        super().__init__()
        self.path, self.size = path, size

    def __missing__(self, c: str):
        font = _font(self.path, self.size)
        l, t, r, b = font.getbbox(c)
        bitmap = None
        if r > l and b > t:
            img = Image.new("L", (r - l, b - t), 0)
            ImageDraw.Draw(img).text((-l, -t), c, font=font, fill=255)
            bitmap = np.asarray(img)
        self[c] = glyph = (bitmap, l, t, font.getlength(c))
        return glyph


@lru_cache(maxsize=8192)  # ~10 KB each
def _glyphs(path: str, size: int) -> _Glyphs:
    return _Glyphs(path, size)


@lru_cache(maxsize=None)
def _missing_glyphs(path: str) -> frozenset[str]:
    """Charset symbols the font draws as .notdef (tofu) or not at all."""
    font = _font(path, 24)
    tofu = font.getmask("\uffff")
    sig = (tofu.size, bytes(tofu))
    miss = set()
    for c in PRINTABLE_ASCII.replace(" ", ""):
        m = font.getmask(c)
        if (m.size, bytes(m)) == sig or m.size[0] * m.size[1] == 0:
            miss.add(c)
    return frozenset(miss)


def _dot_matrix(a: np.ndarray, cap: int, rng: random.Random, g) -> np.ndarray:
    """Ink coverage `a` re-printed as round dots on a grid over the cap height `cap`: ~7 rows (9-pin
    draft, 5x7-like) or 9-14 (24-pin print, denser dots that overlap more).

    Each grid cell whose area is mostly inked gets a dot; dot radius jitters from dot to dot.
    """
    H, W = a.shape
    py = max(2, round(cap / (rng.uniform(6.0, 7.0) if rng.random() < 0.6 else rng.uniform(9, 14))))
    px = max(2, round(py * rng.uniform(0.75, 1.05)))
    oy, ox = rng.randrange(py), rng.randrange(px)
    hh, ww = -(-(H + oy) // py), -(-(W + ox) // px)
    grid = np.zeros((hh * py, ww * px), np.float32)
    grid[oy: oy + H, ox: ox + W] = a
    on = grid.reshape(hh, py, ww, px).mean(axis=(1, 3)) > rng.uniform(0.2, 0.32)  # a stroke between two cells: both
    # soft discs centred in a cell, three sizes; a disc wider than the cell touches its neighbours
    yy, xx = np.mgrid[:py, :px]
    d = np.hypot(yy - (py - 1) / 2, xx - (px - 1) / 2).astype(np.float32)
    r0 = min(py, px) * rng.uniform(0.34, 0.56)
    size = g.integers(0, 3, on.shape)
    out = np.zeros((hh, py, ww, px), np.float32)
    for k, scale in enumerate((0.75, 1.0, 1.2)):
        tile = np.clip(r0 * scale - d + 0.5, 0, 1)
        out += (on & (size == k))[:, None, :, None] * tile[None, :, None, :]
    return out.reshape(hh * py, ww * px)[oy: oy + H, ox: ox + W]


def _smooth(g, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth random field in 0..1 of `shape` (H, W), from `cells` (rows, cols) of uniform noise."""
    src = Image.fromarray(g.random(cells).astype(np.float32))
    return np.asarray(src.resize((shape[1], shape[0]), Image.BILINEAR))


def _thermal_fade(a: np.ndarray, f: float, rng: random.Random, g, dropouts: bool = True) -> np.ndarray:
    """Faded thermal (or worn ribbon) print on ink coverage `a`: weaker ink along the line, lighter
    horizontal streaks, a dead heater dot's light column, and small ink dropouts."""
    H, W = a.shape
    lo = rng.uniform(0.5, 0.95)
    field = lo + (1 - lo) * _smooth(g, (H, W), (2, rng.randint(2, 8)))  # uneven along the line
    if rng.random() < 0.5:  # streaks across the line
        rows = _smooth(g, (H, 1), (rng.randint(3, 8), 1))
        field = field * (1 - rng.uniform(0.2, 0.7) * rows)
    if rng.random() < 0.25:  # dead heater elements: thin light columns
        for _ in range(rng.randint(1, 3)):
            x, w = rng.randrange(W), max(1, round(f * rng.uniform(0.5, 1.5)))
            field[:, x: x + w] *= rng.uniform(0.0, 0.4)
    if rng.random() < (0.6 if dropouts else 0.0):  # dropouts: small blobs without ink
        s = max(1.0, f * rng.uniform(0.7, 2.5))
        noise = _smooth(g, (H, W), (max(2, round(H / s)), max(2, round(W / s))))
        p = rng.uniform(0.1, 0.4)
        field = field * np.clip((noise - p) * 8, 0, 1)
    return a * field


class TextRenderer:
    """Makes labels (`text`, `receipt_text`: its `LabelGrammar`, `labels`), renders them as scan-like crops
    (`render`, `render_receipt`), or both (`sample`).

    Holds no random state: every call draws from the `rng` it is given.
    """

    def __init__(self, config: SynthConfig = SynthConfig()):
        self.config = config
        fonts = find_fonts(config.font_dir)
        if not fonts:
            raise FileNotFoundError(f"no fonts found under {config.font_dir or FONT_DIRS}")
        self.fonts = fonts
        self._typewriter = [p for p in fonts if _TYPEWRITER.search(os.path.basename(p))]
        self._mono = [p for p in fonts if _MONO.search(os.path.basename(p))]
        upright = [p for p in fonts if not _R_SLANT.search(os.path.basename(p))] or fonts
        self._r_mono = [p for p in upright if _R_MONO.search(os.path.basename(p))]
        self._r_narrow = [p for p in upright if _R_NARROW.search(os.path.basename(p))]
        self._r_sans = [p for p in upright if _R_SANS.search(os.path.basename(p))]
        self._r_any = upright
        self.labels = LabelGrammar(config.words_file, config.line_prob, config.max_line_chars)
        self.words_source = self.labels.words_source

    def text(self, rng: random.Random) -> str:
        """One label: a document token (word, number, date, code...) or a multi-word line (`LabelGrammar.text`)."""
        return self.labels.text(rng)

    def receipt_text(self, rng: random.Random) -> str:
        """One receipt line label (SROIE-like): single spaces, printable ASCII, at most 55 characters."""
        return self.labels.receipt_text(rng)

    # ---- rendering -----------------------------------------------------------
    def sample(self, rng: random.Random, applied: list[str] | None = None) -> tuple[Image.Image, str]:
        """Returns (crop, label): a receipt line (`receipt_share` of the calls; "receipt" goes to `applied`)
        rendered by `render_receipt`, else `text(rng)` rendered by `render`."""
        share = self.config.receipt_share
        if share > 0 and rng.random() < share:  # no draw at 0: the FUNSD-only stream of a seed is kept
            text, gaps = self.labels.receipt(rng)
            if applied is not None:
                applied.append("receipt")
            return self.render_receipt(text, rng, applied, gaps), text
        text = self.text(rng)
        return self.render(text, rng, applied), text

    def _pick_font(self, text: str, rng: random.Random) -> str:
        need = set(text)
        for _ in range(8):
            if rng.random() < self.config.mono_prob and self._mono:
                pool = self._typewriter if self._typewriter and rng.random() < 0.75 else self._mono
            else:
                pool = self.fonts
            path = rng.choice(pool)
            if not need & _missing_glyphs(path):
                return path
        return next((p for p in self.fonts if not need & _missing_glyphs(p)), self.fonts[0])

    def render(self, text: str, rng: random.Random, applied: list[str] | None = None) -> Image.Image:
        """Grayscale crop of `text` at scan resolution (not resized to the model height).

        Args: text, the label; rng, the only source of randomness (a numpy Generator is seeded from it);
            applied, a list to which the names of the degradations drawn are appended (for evaluation).
        Returns: a PIL 'L' image, dark ink on light paper, height mostly 10-24 px.
        """
        cfg, g = self.config, np.random.default_rng(rng.getrandbits(64))
        px = min(cfg.max_text_px, max(cfg.min_text_px, round(cfg.median_text_px * math.exp(rng.gauss(0, 0.14)))))
        if rng.random() < 0.03:
            px = rng.randint(min(20, cfg.max_text_px), cfg.max_text_px)  # headings, large print
        # Thresholding happens at a higher resolution so the downscale leaves gray edges, as in real crops.
        binarize = _chance(rng, cfg.binarize_prob, "binarize", applied)
        size, f = px, 1.0
        if binarize or rng.random() < cfg.supersample_prob:
            sizes = [s for s in _HI_SIZES if 1.4 <= s / px <= 3.2]  # few sizes: small glyph caches
            if sizes:
                size = rng.choice(sizes)
                f = size / px
        glyphs = _glyphs(self._pick_font(text, rng), size)
        mask, band = self._typeset(text, glyphs, rng, applied)
        # Marks below the baseline that a clipped bottom turns into others ('_' into nothing, ',' into '.');
        # an underline would hide or fake an underscore.
        keep_bottom = any(c in text for c in "_,;")
        cover = self._ink(self._crop(mask, band, f, rng, g, keep_bottom), f, rng, "_" in text, applied)
        return self._scan(cover, f, binarize, rng, g, applied)

    def _typeset(self, text: str, glyphs: _Glyphs, rng: random.Random, applied: list[str] | None,
                 gaps: dict[int, float] | None = None, tracking: float = 0.0,
                 stretch: float = 1.0) -> tuple[Image.Image, tuple[int, int]]:
        """Ink mask of `text`, maybe rotated and sheared, and the rows of its cap height and baseline.

        gaps: extra advance (px) after the characters at these indices; None draws one wide gap at
        `wide_space_prob`. tracking: extra advance after every character. stretch: horizontal scale.
        """
        cfg = self.config
        if gaps is None:
            gaps = {}
            if " " in text and _chance(rng, cfg.wide_space_prob, "wide_space", applied):  # receipt-style column gap
                cut = text.rindex(" ") if rng.random() < 0.6 else rng.choice([i for i, c in enumerate(text) if c == " "])
                gaps[cut] = glyphs[" "][3] * rng.uniform(1, 8)
        placed, x = [], 0.0
        for i, c in enumerate(text):
            bitmap, left, top, advance = glyphs[c]
            if bitmap is not None:
                placed.append((bitmap, round(x) + left, top))
            x += advance + tracking + gaps.get(i, 0.0)
        cap = glyphs["H"]
        if not placed:  # blank text still gets a box of the right height
            placed = [(np.zeros((1, 1), np.uint8), 0, cap[2])]
        l, t = min(p[1] for p in placed), min(p[2] for p in placed)
        w = max(p[1] + p[0].shape[1] for p in placed) - l
        h = max(p[2] + p[0].shape[0] for p in placed) - t
        angle = shear = 0.0
        if _chance(rng, cfg.rotate_prob, "rotate", applied):  # long lines turn less, else the box would be mostly paper
            angle = math.radians(rng.uniform(-1, 1) * min(cfg.max_angle, math.degrees(math.atan(0.3 * h / max(w, 1)))))
            shear = math.tan(math.radians(rng.uniform(-cfg.max_angle, cfg.max_angle)))
        pad = int(abs(math.sin(angle)) * w / 2 + abs(shear) * h) + 2  # room to turn; margins come from crop()
        canvas = np.zeros((h + 2 * pad, w + 2 * pad), np.uint8)
        for bitmap, gx, gy in placed:
            view = canvas[gy - t + pad: gy - t + pad + bitmap.shape[0], gx - l + pad: gx - l + pad + bitmap.shape[1]]
            np.maximum(view, bitmap, out=view)
        mask = Image.fromarray(canvas)
        if stretch != 1.0:  # condensed or expanded print; pad and band rows are unchanged
            mask = mask.resize((max(1, round(mask.width * stretch)), mask.height), Image.BILINEAR)
        if angle or shear:
            cx, cy, ca, sa = mask.width / 2, mask.height / 2, math.cos(angle), math.sin(angle)
            m00, m01, m10, m11 = ca, sa - ca * shear, -sa, ca + sa * shear  # output -> input, about the centre
            mask = mask.transform(mask.size, Image.AFFINE, (m00, m01, cx - m00 * cx - m01 * cy,
                                                            m10, m11, cy - m10 * cx - m11 * cy), Image.BILINEAR)
        return mask, (pad - t + cap[2], pad - t + cap[2] + cap[0].shape[0])

    def _crop(self, mask: Image.Image, band: tuple[int, int], f: float, rng: random.Random, g,
              keep_bottom: bool, band_prob: float | None = None) -> np.ndarray:
        """Cut the word box out of `mask`: ink coverage in 0..1 as float32.

        Like hand-drawn FUNSD boxes: mostly tight, often touching or slightly
        cutting the ink, sometimes spanning cap height to baseline.
        """
        arr = np.asarray(mask)
        # A thin underscore may be faint at this size: any ink counts when the bottom must stay.
        cols, rows = np.flatnonzero(arr.max(0) > 96), np.flatnonzero(arr.max(1) > (8 if keep_bottom else 96))
        if len(cols) == 0:
            cols, rows = np.array([0, mask.width - 1]), np.array(band)
        x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
        if rng.random() < (self.config.band_prob if band_prob is None else band_prob):  # descenders clipped then
            clip = rng.uniform(0.3, 1.0)  # drawn even when unused, so a seed gives the same stream as before
            y0, y1 = min(y0, band[0]), y1 if keep_bottom else max(band[1], band[1] + round((y1 - band[1]) * clip))
        tight = rng.random() < self.config.tight_prob
        margins, small = [], (x1 - x0 < 6 * f, y1 - y0 < 6 * f)  # never cut into '.', ':', '-'
        for side, touch in enumerate((0.3, 0.08, 0.4, 0.35)):  # left, top, right, bottom: FUNSD ink touch rates
            if tight:
                cut = rng.random() < 0.2 and not small[side % 2] and not (keep_bottom and side == 3)
                m = -float(cut) if rng.random() < touch else 1 + min(g.exponential(0.7), 4)
            else:
                m = rng.uniform(1, 0.5 * (y1 - y0) / f + 1)
            margins.append(round(m * f))
        box = [x0 - margins[0], y0 - margins[1], x1 + margins[2], y1 + margins[3]]
        box[2], box[3] = max(box[2], box[0] + math.ceil(2 * f)), max(box[3], box[1] + math.ceil(4 * f))  # '.', '|'
        return np.asarray(mask.crop(box), dtype=np.float32) * (1 / 255)  # crop() pads with 0 outside

    def _ink(self, a: np.ndarray, f: float, rng: random.Random, no_underline: bool,
             applied: list[str] | None, form_line_prob: float | None = None) -> np.ndarray:
        """Stroke weight (bleed, starved ink) and form lines, on the coverage array."""
        cfg = self.config
        if _chance(rng, cfg.bleed_prob, "bleed", applied):
            thin = rng.random() < 0.3 and f >= 2  # eroding 1-px strokes at scan size would erase them
            # partial blend: a full 3x3 dilation at scan resolution fills the counters
            k = rng.uniform(0.2, 0.5) if thin else rng.uniform(0.3, 0.8) if f >= 2 else rng.uniform(0.2, 0.5)
            a += (_morph3(a, np.minimum if thin else np.maximum) - a) * k
        a **= math.exp(rng.uniform(-0.45, 0.3))  # scans mostly thicken strokes
        if form_line_prob is None:
            form_line_prob = cfg.form_line_prob
        if _chance(rng, form_line_prob, "form_line", applied):  # underline, box edge or table rule in the crop
            H, W = a.shape
            k, th = rng.random(), max(1, round(rng.uniform(0.8, 2.2) * f))
            if k < 0.5:
                y = H - th - rng.randint(0, round(f))
                x0 = rng.randint(0, W // 3) if rng.random() < 0.3 else 0
                if no_underline:
                    a[:, :th] = 1.0  # a box edge instead
                else:
                    a[max(0, y): y + th, x0:] = 1.0
            elif k < 0.65:
                a[:th] = 1.0
            elif k < 0.85:
                a[:, W - th:] = 1.0
            else:
                a[:, :th] = 1.0
        return a

    def _scan(self, a: np.ndarray, f: float, binarize: bool, rng: random.Random, g,
              applied: list[str] | None, tone: tuple[float, float] | None = None) -> Image.Image:
        """Ink on paper, then scanner and compression artefacts; downscales by `f` to scan size.

        tone: (paper, ink) gray levels chosen by the caller; None draws them (gray paper, low contrast).
        """
        cfg, (H, W) = self.config, a.shape
        if tone is None:
            paper = rng.uniform(190, 245) if _chance(rng, cfg.gray_paper_prob, "gray_paper", applied) else 255.0
            ink = paper - rng.uniform(80, 150) if _chance(rng, cfg.low_contrast_prob, "low_contrast", applied) \
                else rng.uniform(0, 30)
        else:
            paper, ink = tone
        bg = np.float32(paper)
        if _chance(rng, cfg.uneven_prob, "uneven", applied):  # stains and shading: a smooth low-resolution field
            blot = Image.fromarray(g.uniform(0, 1, (2, 3)).astype(np.float32)).resize((W, H), Image.BILINEAR)
            bg = paper - rng.uniform(10, 35) * np.asarray(blot)
        out = Image.fromarray(np.clip(bg - (bg - ink) * a, 0, 255).astype(np.uint8))
        if _chance(rng, cfg.blur_prob, "blur", applied):
            out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8) * f))
        if binarize:  # thresholded scan: ragged, broken or filled strokes
            v = np.asarray(out, dtype=np.float32)
            lo = float(v.min())  # after blur the darkest stroke may be far above `ink`
            v = v + g.normal(0, rng.uniform(0, 25), (H, W))
            out = Image.fromarray(np.clip(np.where(v < lo + (paper - lo) * rng.uniform(0.35, 0.75), ink, bg), 0, 255)
                                  .astype(np.uint8))
        if f > 1:
            out = out.resize((max(2, round(W / f)), max(2, round(H / f))), rng.choice([Image.BOX, Image.BILINEAR]))
        if _chance(rng, cfg.dither_prob, "dither", applied):  # halftone look
            out = out.convert("1").convert("L")
        v = None
        if _chance(rng, cfg.noise_prob, "noise", applied):
            v = np.asarray(out, dtype=np.float32) + g.normal(0, rng.uniform(2, 12), (out.height, out.width))
        if _chance(rng, cfg.speckle_prob, "speckle", applied):  # salt and pepper
            v = np.asarray(out, dtype=np.float32) if v is None else v
            u, d = g.random(v.shape), rng.uniform(0.002, 0.02)
            v[u < d / 2] = ink
            v[u > 1 - d / 2] = paper
        if v is not None:
            out = Image.fromarray(np.clip(v, 0, 255).astype(np.uint8))
        if _chance(rng, cfg.jpeg_prob, "jpeg", applied):
            buf = io.BytesIO()
            out.save(buf, "JPEG", quality=rng.randint(15, 70))
            out = Image.open(io.BytesIO(buf.getvalue())).convert("L")
        if _chance(rng, cfg.invert_prob, "invert", applied):
            out = Image.eval(out, lambda p: 255 - p)
        return out


    # ---- receipt rendering -----------------------------------------------------------
    def _pick_receipt_font(self, text: str, rng: random.Random, dots: bool) -> str:
        """Mostly fixed-pitch (thermal and impact printers) or narrow sans; upright; no bold for dots."""
        need = set(text)
        for _ in range(8):
            r = rng.random() * (0.6 if dots else 1.0)
            pool = (self._r_mono if r < 0.5 else self._r_narrow if r < 0.75 else
                    self._r_sans if r < 0.95 else self._r_any)
            path = rng.choice(pool or self._r_any)
            if dots and _R_HEAVY.search(os.path.basename(path)):  # heavy strokes fill two dot columns
                continue
            if not need & _missing_glyphs(path):
                return path
        return next((p for p in self.fonts if not need & _missing_glyphs(p)), self.fonts[0])

    def render_receipt(self, text: str, rng: random.Random, applied: list[str] | None = None,
                       gaps: tuple[int, ...] = ()) -> Image.Image:
        """Grayscale crop of a receipt line at SROIE scale (height mostly 18-64 px, median ~31).

        Monospace and narrow faces, condensed or spaced out, columns at `gaps` (indices of spaces in
        `text`) maybe widened; dot-matrix print, thermal fading; then the scan artefacts of `render`.
        Names drawn go to `applied` ("dot_matrix", "thermal_fade", "letter_spacing", "wide_space", ...).
        """
        cfg, g = self.config, np.random.default_rng(rng.getrandbits(64))
        px = min(96.0, max(16.0, cfg.receipt_median_px * math.exp(rng.gauss(0, 0.35))))
        if rng.random() < 0.07:  # headings and high-resolution scans: SROIE scaled 10% of its crops down to 64 px
            px = rng.uniform(72, 96)
        dots = _chance(rng, cfg.dot_matrix_prob, "dot_matrix", applied)
        binarize = _chance(rng, cfg.binarize_prob, "binarize", applied)
        # Dots need room at the rendering size, thresholding a little (gray edges after the downscale);
        # else the smallest size above px: these crops are large, and pixels are time.
        lo, hi = (1.5, 2.3) if dots else (1.25, 1.9) if binarize else (1.0, 1.3)
        sizes = [s for s in _R_SIZES if lo <= s / px <= hi]
        size = rng.choice(sizes) if sizes else min(_R_SIZES, key=lambda s: abs(s - lo * px))
        f = size / px
        path = self._pick_receipt_font(text, rng, dots)
        glyphs = _glyphs(path, size)
        tracking = size * rng.uniform(0.03, 0.25) if _chance(rng, cfg.letter_spacing_prob, "letter_spacing", applied) \
            else 0.0
        widen = {}
        # column gaps: in the rendering only, the label keeps one space
        if gaps and _chance(rng, cfg.receipt_gap_prob, "wide_space", applied):
            widen = {i: glyphs[" "][3] * rng.uniform(0.5, 4) for i in gaps}
        name = os.path.basename(path)
        stretch = rng.uniform(0.55, 0.88) if _R_MONO.search(name) else rng.uniform(0.85, 1.05) \
            if _R_NARROW.search(name) else rng.uniform(0.7, 0.95)
        mask, band = self._typeset(text, glyphs, rng, applied, gaps=widen, tracking=tracking, stretch=stretch)
        keep_bottom = any(c in text for c in "_,;")
        a = self._crop(mask, band, f, rng, g, keep_bottom, band_prob=0.1)  # line boxes keep descenders
        if _chance(rng, cfg.neighbor_line_prob, "neighbor_line", applied):  # cut-off edge of the next line up or down
            H = a.shape[0]
            k, other = max(1, round(H * rng.uniform(0.08, 0.25))), np.roll(a, rng.randrange(a.shape[1]), axis=1)
            if rng.random() < 0.5:
                a[:k] = np.maximum(a[:k], other[H - k:])
            else:
                a[H - k:] = np.maximum(a[H - k:], other[:k])
        if dots:
            a = _dot_matrix(a, glyphs["H"][0].shape[0], rng, g)
        a = self._ink(a, f, rng, "_" in text, applied, form_line_prob=cfg.form_line_prob / 4)
        faded = _chance(rng, cfg.thermal_fade_prob, "thermal_fade", applied)
        if faded:
            a = _thermal_fade(a, f, rng, g, dropouts=not dots)  # dots already break the strokes up
        paper = rng.uniform(200, 250) if _chance(rng, cfg.receipt_gray_paper_prob, "gray_paper", applied) \
            else rng.uniform(250, 255)
        ink = paper - rng.uniform(100, 200) if faded else rng.uniform(0, 60)
        out = self._scan(a, f, binarize, rng, g, applied, tone=(paper, ink))
        if out.height > 64:  # SROIE's crops taller than 64 px were scaled down to 64
            out = out.resize((max(2, round(out.width * 64 / out.height)), 64), Image.BILINEAR)
        return out

# ---- contact sheet ---------------------------------------------------------------
def render_parquet(path: str, n: int, seed: int, config: SynthConfig = SynthConfig()) -> dict:
    """Write n rendered crops as Parquet: id, image (PNG bytes), truth, degradations (the names drawn).

    A fixed seed gives a fixed test set on machines with the same fonts and word list, and only there.
    Returns what it was drawn from: the number of font files, the word list, and `set_id`, a hash of the
    font file names and the labels, which tells two machines' sets apart.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    renderer, rng, rows = TextRenderer(config), random.Random(seed), []
    for i in range(n):
        applied: list[str] = []
        img, text = renderer.sample(rng, applied)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        rows.append({"id": f"synth-{seed}-{i:06d}", "image": buf.getvalue(), "truth": text, "degradations": applied})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    digest = hashlib.sha256("\n".join([os.path.basename(f) for f in renderer.fonts] + [""]
                                      + [r["truth"] for r in rows]).encode())
    return {"n": n, "seed": seed, "fonts": len(renderer.fonts), "words": renderer.words_source,
            "set_id": digest.hexdigest()[:12]}


def _sheet(blocks: list[tuple[str, list[tuple[Image.Image, str]]]], width: int = 1400, scale: int = 2) -> Image.Image:
    """Titled blocks of crops, each enlarged `scale` times (nearest, to show the pixels) over its label."""
    small, big = ImageFont.load_default(11), ImageFont.load_default(14)
    placed, x, y, row_h = [], 0, 0, 0  # (image or None for a title, text, x, y)
    for title, items in blocks:
        if x:
            x, y, row_h = 0, y + row_h + 8, 0
        placed.append((None, title, 0, y))
        y += 18
        for img, label in items:
            im = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
            text = repr(label)[:60]
            cw = min(max(im.width, int(small.getlength(text))), width)
            if x + cw > width:
                x, y, row_h = 0, y + row_h + 6, 0
            placed.append((im, text, x, y))
            x, row_h = x + cw + 10, max(row_h, im.height + 14)
    sheet = Image.new("L", (width, y + row_h + 8), 150)
    draw = ImageDraw.Draw(sheet)
    for im, text, px, py in placed:
        if im is None:
            draw.text((px, py), text, fill=0, font=big)
        else:
            sheet.paste(im.crop((0, 0, min(im.width, width), im.height)), (px, py))
            draw.text((px, py + im.height), text, fill=0, font=small)
    return sheet


def _crop_stats(items: list[tuple[Image.Image, str]]) -> str:
    """Height, width per character (relative to height) and ink contrast percentiles (p10/p50/p90)."""
    h = [im.height for im, _ in items]
    wc = [im.width / im.height / max(1, len(t)) for im, t in items]
    contrast = []
    for im, _ in items:
        a = np.asarray(im, dtype=np.float32)
        contrast.append(float(np.percentile(a, 80) - np.percentile(a, 3)))
    p = lambda v: np.percentile(v, [10, 50, 90]).round(2).tolist()  # noqa: E731
    return f"height {p(h)}, width/height/char {p(wc)}, contrast p80-p3 {p(contrast)}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a contact sheet of synthetic (and real) crops.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", help="parquet of real crops (columns image, text) to show for comparison")
    ap.add_argument("--receipts", action="store_true",
                    help="synthetic receipt lines only (to compare with SROIE lines), shown at their own size")
    ap.add_argument("--scale", type=int, help="enlargement of every crop (default 1 with --receipts, else 2)")
    ap.add_argument("--calibration", type=int, metavar="N",
                    help="instead of a sheet, write N normalised crops to --out (.npz) for the int8 backend's "
                         "calibration (crnn/onnx_backend.py)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    if args.calibration:
        from crnn.image import normalize_crop
        from crnn.onnx_backend import save_calibration_crops

        renderer = TextRenderer()
        save_calibration_crops(args.out, [normalize_crop(renderer.sample(rng)[0]) for _ in range(args.calibration)])
        print(f"{args.calibration} crops from {len(renderer.fonts)} font files, seed {args.seed}: {args.out}")
        return
    renderer = TextRenderer(SynthConfig(receipt_share=1.0) if args.receipts else SynthConfig())
    synth = [renderer.sample(rng) for _ in range(args.n)]
    blocks = [("synthetic receipt lines" if args.receipts else "synthetic", synth)]
    if args.real:
        import pyarrow.parquet as pq
        table = pq.read_table(args.real, columns=["image", "text"])
        idx = sorted(rng.sample(range(table.num_rows), min(args.n, table.num_rows)))
        sub = table.take(idx).to_pydict()
        real = [(Image.open(io.BytesIO(b)).convert("L"), t) for b, t in zip(sub["image"], sub["text"])]
        blocks.append((f"real ({os.path.basename(args.real)})", real))
    _sheet(blocks, scale=args.scale or (1 if args.receipts else 2)).save(args.out)
    for name, items in blocks:
        print(f"{name}: {_crop_stats(items)}")


if __name__ == "__main__":
    main()
