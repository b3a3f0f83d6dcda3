"""Synthetic document-text crops for training the CRNN, made on the fly.

`TextRenderer.sample(rng)` returns a grayscale word or line crop and its label,
imitating crops cut from scanned business forms (FUNSD): small text at scan
resolution (height mostly 10-24 px; `crnn.image.normalize_crop` resizes to 32
later), tight boxes, typewriter and print fonts, blur, noise, speckle,
thresholding, JPEG, ink bleed, gray paper, slight rotation and shear, form lines.
Everything is drawn from the caller's `random.Random`, so a seed reproduces a sample.
Labels keep single spaces; a wide receipt-style gap is a rendering choice only.

Speed (~1 ms a sample once warm): glyph bitmaps are cached per (font, size) and
placed with numpy, since Pillow re-rasterises every glyph on every call; the
first few thousand samples of a process are slower while the caches fill.

Expected Debian packages. Fonts (`find_fonts` searches /usr/share/fonts and
/usr/share/texmf/fonts/opentype, where fonts-texgyre lives): fonts-liberation2
fonts-freefont-ttf fonts-urw-base35 fonts-texgyre fonts-crosextra-carlito
fonts-crosextra-caladea fonts-linuxlibertine fonts-roboto fonts-open-sans
fonts-inconsolata fonts-noto-core fonts-dejavu. Words: wamerican
(/usr/share/dict/american-english); without it a built-in list is used.

CLI: python -m crnn.synth --out sheet.png --n 48 --seed 0 [--real words.parquet]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import random
import re
import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from crnn.charset import PRINTABLE_ASCII

FONT_DIRS = ("/usr/share/fonts", "/usr/share/texmf/fonts/opentype")
WORDS_FILE = "/usr/share/dict/american-english"

_NOTO_LATIN = re.compile(r"^Noto(Sans|Serif)(Mono|Display)?-")
# Symbols, dingbats, maths, calligraphic scripts, keycaps, drop-cap initials, hairlines: not document text.
_NOT_TEXT = re.compile(r"symbol|dingbat|emoji|math|music|D050000L|Z003|chorus|Biolinum_K|LinLibertine_I\."
                       r"|thin|extralight", re.I)
_MONO = re.compile(r"mono|cursor|courier|inconsolata|LinLibertine_M\.", re.I)
_TYPEWRITER = re.compile(r"NimbusMono|FreeMono|LiberationMono|cursor|courier", re.I)

_COMMON = """the of and to in for is on that by this with from at as be are or it an was not will your
date name yes no total page form report please new per our all any may must company account amount
number address phone fax signature approved subject program product brand sales market research
division department office project budget cost invoice order quantity price description item unit
tax subtotal balance due paid cash change receipt customer store street suite city state zip code
telephone manager director president review results test data sample study analysis request
approval received sent copy file attached meeting agenda minutes notes contract agreement period
year month week day time hours rate fee charge credit check payment services shipping delivery
purchase vendor supplier client employee insurance policy claim medical plan cigarettes tobacco
smoking filter menthol lights carton pack premium coffee latte tea water bread lunch special pending
completed revised final draft confidential original first last initial country national
international attention reference information memo fiscal quarter annual estimate actual""".split()
_SHORT = """a a A I of of to to in in on at by or is it be as an no No we us Mr. Dr. Ms. Co. Inc St.
Ave PO P.O. Jr. ft lb. lbs oz. ea. pp. Vol. No. Ext. Tel Fax cc: Re: RE: To: TO: Yes YES NO OK AM PM
am pm vs. etc & / - : # $ % ( ) * , . x @ 1/2 #1 the The THE and AND for For FOR are was you""".split()
_MONTHS = "January February March April May June July August September October November December".split()
_FIELDS = """Date: DATE: Name: NAME: To: From: FROM: Re: Subject: SUBJECT: Phone: Tel. Fax: Account_No.
Invoice_# P.O._No. Total: Amount: Signature: Title: Address: E-mail: Ref. TIME: Brand: Dept.""".split()
_RECEIPT = "TOTAL SUBTOTAL TAX CASH CHANGE BALANCE_DUE AMOUNT_DUE VISA TIP DISCOUNT".split()
_RARE = "!\"'*+;<=>?@[\\]^_`{|}~%&"
_PAIRS = {"<": ">", "[": "]", "{": "}", "(": ")"}
_HI_SIZES = (20, 24, 28, 32, 40, 48, 64, 80, 96)
_TLDS = ".com .com .org .net .edu .gov .co.uk .io .us .biz".split()


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


@lru_cache(maxsize=4)
def _load_words(path: str) -> tuple[str, ...]:
    """Words of the list at `path`; empty if it is missing."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return tuple(w for w in fh.read().split() if w.isascii() and w.isalpha() and len(w) < 16)
    except OSError:
        return ()


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


class TextRenderer:
    """Makes labels (`text`), renders them as scan-like crops (`render`), or both (`sample`).

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
        listed = _load_words(config.words_file)
        self._words = listed or tuple(_COMMON)
        self.words_source = config.words_file if listed else "built-in list"

    # ---- text ------------------------------------------------------------------
    def text(self, rng: random.Random) -> str:
        """One label: a document token (word, number, date, code...) or a multi-word line."""
        s = self._line(rng) if rng.random() < self.config.line_prob else self._token(rng)
        return " ".join(s.split()) or "a"

    def _token(self, rng: random.Random) -> str:
        # words 40%, short tokens 24% (with short words, ~1/3 of tokens have <= 3 chars as in FUNSD),
        # numbers 10%, dates/times 6%, phones 3%, codes 4.5%, e-mail/web 2.5%, labels 2.5%, rare symbols 7.5%
        r = rng.random()
        for p, fn in ((0.40, self._word), (0.64, self._short), (0.74, self._number),
                      (0.80, self._date), (0.83, self._phone), (0.875, self._code),
                      (0.9, self._web), (0.925, self._label)):
            if r < p:
                return fn(rng)
        return self._symbol(rng)

    def _plain(self, rng: random.Random) -> str:
        # half from the form vocabulary: uniform draws from 75k dictionary words are mostly rare words
        return rng.choice(_COMMON) if rng.random() < 0.5 else rng.choice(self._words)

    def _cased(self, w: str, rng: random.Random) -> str:
        r = rng.random()
        return w.lower() if r < 0.5 else w[:1].upper() + w[1:] if r < 0.72 else w.upper()

    def _word(self, rng: random.Random) -> str:
        w = self._cased(self._plain(rng), rng)
        if rng.random() < 0.15:
            w += rng.choice(",,..::;)-")
        if rng.random() < 0.04:
            w = rng.choice("(\"'") + w
        return w

    def _short(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.4:
            return rng.choice(_SHORT)
        if r < 0.52:
            return rng.choice(string.ascii_uppercase) + "."  # initials: 'M.'
        if r < 0.72:
            return str(rng.randrange(10 ** rng.randint(1, 3))) + rng.choice(["", "", "", "/", ".", ","])
        if r < 0.92:
            return self._cased("".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 3))), rng)
        return rng.choice(":/-&#$()*,.")

    def _number(self, rng: random.Random) -> str:
        n, r = int(10 ** rng.uniform(0, 7)), rng.random()
        money = f"{n:,}.{rng.randrange(100):02d}" if rng.random() < 0.7 else f"{n % 1000}.{rng.randrange(100):02d}"
        if r < 0.25:
            return str(n)
        if r < 0.45:
            return f"{n:,}"
        if r < 0.68:
            return "$" + money
        if r < 0.8:
            return money
        if r < 0.87:
            return f"{rng.uniform(0, 100):.{rng.randint(0, 2)}f}%"
        if r < 0.94:
            return f"({n:,})" if rng.random() < 0.5 else f"-{n}"
        return f"{rng.randint(1, 15)}/{rng.choice([2, 3, 4, 8, 16])}"

    def _date(self, rng: random.Random) -> str:
        y, m, d = rng.randint(1950, 2030), rng.randint(1, 12), rng.randint(1, 28)
        yy, mon = f"{y % 100:02d}", _MONTHS[m - 1]
        h, mi = rng.randint(1, 12), rng.randrange(60)
        return rng.choice([
            f"{m}/{d}/{yy}", f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d}-{mon[:3]}-{yy}",
            f"{d:02d}.{m:02d}.{y}", f"{mon[:3].upper()}-{d:02d}-{y}", f"{m}/{d}", str(y), f"{mon[:3]}.",
            mon, mon.upper(), f"{d},", f"{m}/{yy}", f"{h}:{mi:02d}", f"{h + 11}:{mi:02d}:{rng.randrange(60):02d}",
            f"{h}:{mi:02d}{rng.choice(['AM', 'PM', 'am', 'pm', 'a.m.', 'p.m.'])}"])

    def _phone(self, rng: random.Random) -> str:
        a, b, c = rng.randint(200, 999), rng.randint(200, 999), rng.randrange(10000)
        return rng.choice([f"({a})", f"({a}){b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}",
                           f"{b}-{c:04d}", f"1-800-{b}-{c:04d}", f"+1-{a}-{b}-{c:04d}", f"x{c}"])

    def _code(self, rng: random.Random) -> str:
        parts = []
        for _ in range(rng.randint(1, 3)):
            r, k = rng.random(), rng.randint(1, 6)
            pool = string.digits if r < 0.5 else string.ascii_uppercase if r < 0.88 else string.ascii_lowercase
            parts.append("".join(rng.choices(pool, k=k if r < 0.5 else min(k, 4))))
        code = rng.choice("--//.#_:").join(parts)
        if rng.random() < 0.3:
            code = rng.choice(["#", "No.", "PO-", "ID#", "SKU:", "INV-", "Ref:", "Lot "]) + code
        return code

    def _web(self, rng: random.Random) -> str:
        short = [w for w in (self._plain(rng).lower() for _ in range(3)) if len(w) < 10] or ["info"]
        domain = short[0] + rng.choice(_TLDS)
        if rng.random() < 0.5:
            user = rng.choice([short[-1], rng.choice(string.ascii_lowercase) + rng.choice("._-") + short[-1],
                               short[-1] + str(rng.randrange(100))])
            s = f"{user}@{domain}"
        else:
            s = rng.choice(["www.", "http://", "https://www.", "http://www.", ""]) + domain
            if rng.random() < 0.4:
                query = rng.choice(["", "/", f"?id={rng.randrange(999)}&p=1", "#top"])
                s += "/" + rng.choice(["~", ""]) + short[-1] + query
        return s.upper() if rng.random() < 0.1 else s

    def _label(self, rng: random.Random) -> str:
        w = self._cased(self._plain(rng), rng)
        a, b = rng.choices(string.ascii_uppercase, k=2)
        return rng.choice([w + ":", w.upper() + ":", "(" + w, w + ")", f'"{w}"', f"'{w}'", w + "-",
                           f"{a}&{b}", w + "(s)", w + "/", w + ".", f"[{w}]", "*" + w, w + "?", w + "!",
                           "...", "--", f"({rng.randint(100, 999)})"])

    def _symbol(self, rng: random.Random) -> str:
        # uniform over the punctuation that other tokens rarely produce, so ` ~ ^ | \ { } < > are learnt too
        c, r = rng.choice(_RARE), rng.random()
        w = self._short(rng).strip(string.punctuation) or "x"
        if c in _PAIRS and r < 0.5:
            return c + w + _PAIRS[c]
        if r < 0.3:
            return c * rng.randint(1, 3)
        if r < 0.55:
            return w + c
        if r < 0.8:
            return c + w
        return w + c + self._cased(rng.choice(_COMMON), rng)

    def _line(self, rng: random.Random) -> str:
        r, amount = rng.random(), f"{rng.choice(['', '', '$'])}{rng.uniform(0.2, 250):.2f}"
        if r < 0.25:  # receipt
            item = " ".join(self._plain(rng).upper() for _ in range(rng.randint(1, 3)))
            toks = rng.choice([f"{rng.randint(1, 12)} x {item} {amount}", f"{item} {amount}",
                               f"{rng.choice(_RECEIPT).replace('_', ' ')} {amount}",
                               f"{rng.randint(2, 9)} @ {amount}"]).split()
        elif r < 0.5:  # form field
            value = rng.choice([self._date, self._phone, self._code, self._number, self._web, self._word])(rng)
            if rng.random() < 0.3:
                value = f"{rng.choice(_MONTHS)} {rng.randint(1, 31)}, {rng.randint(1950, 2030)}"
            elif rng.random() < 0.3:
                value = f"{rng.choice(string.ascii_uppercase)}. {self._cased(rng.choice(self._words), rng)}"
            toks = [rng.choice(_FIELDS).replace("_", " "), value]
        elif r < 0.6:  # address
            place = rng.choice(self._words).title()
            toks = rng.choice([
                f"{rng.randint(1, 9999)} {place} {rng.choice(['St.', 'Ave.', 'Road', 'Blvd.'])}",
                f"{place}, {''.join(rng.choices(string.ascii_uppercase, k=2))} {rng.randrange(100000):05d}",
                f"P.O. Box {rng.randint(1, 9999)}", f"Suite {rng.randint(100, 2000)}"]).split()
        else:  # prose mixed with the other token kinds
            target, toks = rng.randint(8, self.config.max_line_chars), []
            while sum(len(t) + 1 for t in toks) < target:
                toks.append(self._word(rng) if rng.random() < 0.6 else self._token(rng))
            s = rng.random()
            if s < 0.5:
                toks[0] = toks[0][:1].upper() + toks[0][1:]
            elif s < 0.7:
                toks = [t.upper() for t in toks]
        while len(toks) > 1 and len(" ".join(toks)) > self.config.max_line_chars:
            toks.pop()
        return " ".join(toks)[: self.config.max_line_chars]

    # ---- rendering -----------------------------------------------------------
    def sample(self, rng: random.Random, applied: list[str] | None = None) -> tuple[Image.Image, str]:
        """Returns (crop, label): `text(rng)` rendered by `render`."""
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
        cover = self._ink(self._crop(mask, band, f, rng, g, keep_bottom, applied), f, rng, "_" in text, applied)
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
              keep_bottom: bool, applied: list[str] | None, band_prob: float | None = None) -> np.ndarray:
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
        if _chance(rng, cfg.form_line_prob if form_line_prob is None else form_line_prob, "form_line", applied):  # underline, box edge or table rule in the crop
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a contact sheet of synthetic (and real) crops.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", help="parquet of real crops (columns image, text) to show for comparison")
    args = ap.parse_args(argv)
    rng, renderer = random.Random(args.seed), TextRenderer()
    synth = [renderer.sample(rng) for _ in range(args.n)]
    blocks = [("synthetic", synth)]
    heights = {"synthetic": [im.height for im, _ in synth]}
    if args.real:
        import pyarrow.parquet as pq
        table = pq.read_table(args.real, columns=["image", "text"])
        idx = sorted(rng.sample(range(table.num_rows), min(args.n, table.num_rows)))
        sub = table.take(idx).to_pydict()
        real = [(Image.open(io.BytesIO(b)).convert("L"), t) for b, t in zip(sub["image"], sub["text"])]
        blocks.append(("real", real))
        heights["real"] = [im.height for im, _ in real]
    _sheet(blocks).save(args.out)
    for name, hs in heights.items():
        print(f"{name}: crop height p10/p50/p90 = {np.percentile(hs, [10, 50, 90]).round(1).tolist()}")


if __name__ == "__main__":
    main()
