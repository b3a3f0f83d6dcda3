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

# ---- receipt vocabulary (SROIE: Malaysian shop and restaurant receipts) ----
_R_ITEMS = """NASI LEMAK|NASI GORENG|NASI AYAM|MEE GORENG|MEE REBUS|KUEY TEOW|CHAR KUEY TEOW|BIHUN SUP|ROTI CANAI|
ROTI TELUR|TEH TARIK|TEH O|TEH O AIS|KOPI|KOPI O|KOPI (B)|MILO AIS|SIRAP LIMAU|AYAM GORENG|IKAN BAKAR|TELUR MATA|
SAYUR CAMPUR|WHITE RICE|RICE|CHAM (B)|CHICKEN CHOP|FISH BALL|SUSHI SET|GREEN TEA|MINERAL WATER|100PLUS|COCA COLA|
MAGGI KARI|NESCAFE|DUTCH LADY|GARDENIA|SUGAR|FLOUR|COOKING OIL|SOY SAUCE|DETTOL|CLOROX|COLGATE|SHIELDTOX|GLAD WRAP|
GARBAGE BAG|TISSUE ROLL|A4 PAPER|BATTERY|EXT CORD|PVC PIPE|CABLE TIE|SCREW|PAINT BRUSH|MASKING TAPE|SUPER GLUE|
PEN|NOTEBOOK|ENVELOPE|STAPLER|FILE|MARKER|CORRECTION TAPE|STICKER|THERMAL ROLL|KCL|SOH HOON|HOKKIEN MEE|WAN TAN MEE|
CHAR SIU|BAK KUT TEH|YONG TAU FOO|CHEESE|PEANUT|ICE LEMON TEA|LATTE|CAPPUCCINO|MOCHA|AMERICANO|DONUT|CURRY PUFF|
CAKE|BUN|SANDWICH|FRIES|BURGER|NUGGETS|SPRING ROLL|DIM SUM|PAU|TAUFU|UDANG|SOTONG|DAGING|KAMBING|LAKSA|CENDOL|
FLOOR MAT|HANGER|BUCKET|SPONGE|BROOM|LED BULB|SOCKET|PLUG|DRILL BIT|SANDPAPER|RUBBER BAND|SCISSORS|GIFT BOX|
MULTI PURPOSE PAPER|DECO STICKER|PHOTO FRAME|WATER BOTTLE|LUNCH BOX|TOOTHBRUSH|SHAMPOO|SOAP|DETERGENT""".split("|")
_R_MODS = """600ML 1.5L 500ML 5KG 1KG 500G 250G 12S 10S 2PC 3PCS 80GSM A4 A5 (L) (M) (S) (B) (BLUE) (RED) (BIG)
(SMALL) MP FIK TIN BTL PKT CTN SET 3IN1 XL 2X3M 6' 4.5X9.75 NO.2 HB -PTC 1'S 70G 24S 5M 10M""".split()
_R_WORDS = """TOTAL SUBTOTAL SUB-TOTAL TAX CASH CHANGE AMOUNT AMT QTY ITEM PRICE DESCRIPTION DISCOUNT ROUNDING GST
INVOICE RECEIPT CASHIER DATE TIME TABLE BILL NO. CODE U.PRICE S/PRICE UNIT NETT NET DISC SERVICE CHARGE PAYMENT
CREDIT CARD VISA MASTER DEBIT TENDER BALANCE DUE SAVINGS MEMBER POINTS REF TERMINAL POS COUNTER STAFF OPERATOR""".split()
_R_LABELS = """TOTAL|TOTAL:|TOTAL :|SUBTOTAL|SUB-TOTAL|SUB TOTAL|TAX|TAX(RM)|TAX (RM)|AMOUNT|AMOUNT(RM)|AMT(RM)|AMT|
(RM)|(MYR)|CASH|CASH :|CHANGE|CHANGE :|CHANGE DUE|QTY|QTY:|ITEM|ITEMS|DESCRIPTION|DESC|PRICE|U.PRICE|U/P|S/PRICE|
UNIT PRICE|DISCOUNT|DISCOUNT :|DISC|ROUNDING|ROUNDING :|ROUNDING ADJ|ROUNDING ADJUSTMENT|ROUNDING ADJUSTMENT :|
GST|GST:|GST SUMMARY|TAX INVOICE|SIMPLIFIED TAX INVOICE|TAX CODE|CODE|DATE|DATE:|TIME|TIME:|CASHIER|CASHIER:|
TOTAL QTY:|TOTAL ITEMS:|NET TOTAL|NETT TOTAL|GRAND TOTAL|TOTAL SALES|TOTAL AMOUNT|AMOUNT DUE|BALANCE|TENDERED|
PAYMENT|CREDIT CARD|VISA|MASTERCARD|DEBIT CARD|TOTAL SAVINGS|TOTAL 0% SUPPLIES:|TOTAL (EXCLUDING GST):|
TOTAL (INCLUSIVE OF GST):|TOTAL INCL. GST|SERVICE CHARGE|SERV. CHARGE (10%):|GST PAYABLE (6%):|CUSTOMER'S COPY|
OFFICIAL RECEIPT|CASH SALES|CASH BILL|RECEIPT|INVOICE|QTY ITEM|ITEM QTY|NO.|MEMBER|POINTS|CHANGE RM|CREDIT RM""".split("|")
_R_CODES = "SR SR SR *S S Z ZR ZRL T D E X * % : RM (RM) (MYR) SR@6% 6% 0%".split()
_R_PLACES = """KUALA LUMPUR|SELANGOR|PUCHONG|SHAH ALAM|PETALING JAYA|KLANG|CHERAS|KEPONG|SERI KEMBANGAN|JOHOR BAHRU|
SUBANG JAYA|AMPANG|KAJANG|RAWANG|SEMENYIH|BANGI|DENGKIL|BALAKONG|SETAPAK|SENTUL|BANDAR BARU BANGI|SKUDAI|
PERMAS JAYA|MELAKA|SEREMBAN|IPOH|PENANG|W.P. KUALA LUMPUR|SELANGOR DARUL EHSAN|JOHOR""".split("|")
_R_STREET = """SETIA INDAH|PERMAS|KLANG LAMA|BESAR|PELABUR|KPB|PUCHONG UTAMA|SERI KEMBANGAN|INDAH PERDANA|MERDEKA|
BUKIT BINTANG|DAMANSARA|AMPANG|TUN RAZAK|SULTAN ISMAIL|IPOH|KUCHAI LAMA|MAHKOTA|BALAKONG JAYA|USJ|SS|PJU|TASIK|
PERINDUSTRIAN|BAYAN LEPAS|MUTIARA|DESA|SRI HARTAMAS|CHERAS|SEGAMBUT|KEPONG BARU""".split("|")
_R_ROADS = "JALAN JALAN JALAN JLN LORONG PERSIARAN LEBUH TAMAN BANDAR KAWASAN PERINDUSTRIAN SEKSYEN".split()
_R_SHOP = """SDN BHD|SDN. BHD.|S/B|ENTERPRISE|TRADING|HARDWARE|MART|STATIONERY|BOOKSTORE|RESTORAN|RESTAURANT|CAFE|
BAKERY|SUPERMARKET|MINI MARKET|FOOD COURT|KEDAI MAKAN|(M) SDN BHD|GIFT SHOP|PHARMACY|ELECTRICAL|TRADING CO.""".split("|")
_R_NAMES = """SITI AMINAH|ANNIE|AHMAD|LIM|TAN|WONG|RAJ|NURUL|FARAH|MUTHU|KUMAR|LEE|CHONG|AZMAN|HAFIZ|MEI LING|
OPERATOR|TRAINEE|ADMIN|MANAGER|STAFF 01|CASHIER 2""".split("|")
_R_PHRASES = """THANK YOU|THANK YOU. PLEASE COME AGAIN|PLEASE COME AGAIN|THANK YOU FOR YOUR PATRONAGE|
GOODS SOLD ARE NOT RETURNABLE OR REFUNDABLE|GOODS SOLD ARE NOT RETURNABLE & REFUNDABLE|STRICTLY NO CASH REFUND.|
EXCHANGE ARE ALLOWED WITHIN 7 DAYS WITH RECEIPT.|PRICES ARE INCLUSIVE OF GST|PLEASE KEEP THIS RECEIPT|
THIS IS A COMPUTER GENERATED RECEIPT|NO SIGNATURE REQUIRED|WE LOVE TO HEAR YOUR FEEDBACK|
KEEP THIS RECEIPT FOR WARRANTY PURPOSE|SEE YOU AGAIN|HAVE A NICE DAY|NOT ALLOWED ONCE ISSUED.|
THE MANAGEMENT RESERVES THE RIGHT TO|TO VIEW OUR PERSONAL DATA PROTECTION POLICY|OPEN DAILY 10AM TO 10PM|
SHOPPING HOURS|BUSINESS HOURS|FOLLOW US ON FACEBOOK|ITEMS SOLD ARE NOT EXCHANGEABLE""".split("|")
# Kept upper case when the rest of the line is not: units, currency, tax and company abbreviations.
_R_KEEP_UPPER = set("RM MYR GST SST SR ZR ZRL SDN BHD S/B KL ID POS QTY NO. TEL FAX ML KG PC PCS PKT CTN "
                    "A4 A5 HB XL B M S L T D E X AM PM".split())
_R_MAX_CHARS = 55  # the longest SROIE line label
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
        upright = [p for p in fonts if not _R_SLANT.search(os.path.basename(p))] or fonts
        self._r_mono = [p for p in upright if _R_MONO.search(os.path.basename(p))]
        self._r_narrow = [p for p in upright if _R_NARROW.search(os.path.basename(p))]
        self._r_sans = [p for p in upright if _R_SANS.search(os.path.basename(p))]
        self._r_any = upright
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

    # ---- receipt text --------------------------------------------------------------
    def receipt_text(self, rng: random.Random) -> str:
        """One receipt line label (SROIE-like): single spaces, printable ASCII, at most 55 characters."""
        return self._receipt(rng)[0]

    def _receipt(self, rng: random.Random) -> tuple[str, tuple[int, ...]]:
        """(label, indices of the spaces between its columns), cased as printed (mostly upper case)."""
        cols = [" ".join(c.split()) for c in self._receipt_columns(rng)]
        cols = [c for c in cols if c] or ["TOTAL"]
        while len(cols) > 1 and len(" ".join(cols)) > _R_MAX_CHARS:
            cols.pop()
        cols = self._receipt_case(cols, rng)
        text, gaps = "", []
        for c in cols:
            if text:
                gaps.append(len(text))
                text += " "
            text += c
        if len(text) > _R_MAX_CHARS:  # one long column: cut at a word boundary where there is one
            cut = text.rfind(" ", 0, _R_MAX_CHARS + 1)
            text = text[: cut if cut > 20 else _R_MAX_CHARS].strip()
            gaps = [i for i in gaps if i < len(text)]
        return text, tuple(gaps)

    def _receipt_case(self, cols: list[str], rng: random.Random) -> list[str]:
        # Receipts print mostly upper case; the rest is title or sentence case (SROIE's labels are all
        # upper case by convention; synthetic labels keep the printed case).
        r = rng.random()
        if r < 0.68:
            return [c.upper() for c in cols]

        def keep(w: str) -> bool:  # 'RM', 'GST', 'RM12.90' stay upper case
            return w.upper() in _R_KEEP_UPPER or any(c.isdigit() for c in w)

        def title(w: str) -> str:
            return w if keep(w) or not w[:1].isalpha() else w[:1].upper() + w[1:].lower()

        if r < 0.92:
            return [" ".join(title(w) for w in c.split(" ")) for c in cols]
        def lower(w: str) -> str:
            return w if keep(w) else w.lower()

        out = [" ".join(lower(w) for w in c.split(" ")) for c in cols]
        if r < 0.98:  # sentence case
            out[0] = out[0][:1].upper() + out[0][1:]
        return out

    def _money(self, rng: random.Random, tag: bool = True) -> str:
        v = math.exp(rng.uniform(math.log(0.05), math.log(800))) if rng.random() < 0.93 else rng.uniform(800, 20000)
        s = f"{v:,.2f}" if v >= 1000 and rng.random() < 0.6 else f"{v:.2f}"
        if rng.random() < 0.03:
            s = "0.00"
        r = rng.random()
        if r < 0.06:
            s = "-" + s
        elif r < 0.09:
            s = f"({s})"
        if not tag:
            return s
        r = rng.random()
        if r < 0.1:
            s = "RM" + s
        elif r < 0.17:
            s = "RM " + s
        elif r < 0.19:
            s = "$" + s
        r = rng.random()
        if r < 0.08:
            s += " " + rng.choice(["SR", "SR", "ZR", "S", "Z", "T", "*", "E"])
        elif r < 0.12:
            s += rng.choice(["SR", "S", "*", "Z", "-"])
        return s

    def _r_word(self, rng: random.Random) -> str:
        w = rng.choice(self._words) if rng.random() < 0.35 else rng.choice(_R_WORDS + _COMMON[:60])
        return w.upper()

    def _r_item(self, rng: random.Random) -> str:
        parts = [rng.choice(_R_ITEMS) if rng.random() < 0.7 else self._r_word(rng)]
        for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
            parts.append(rng.choice(_R_MODS) if rng.random() < 0.55 else self._r_word(rng))
        if rng.random() < 0.12:
            parts.insert(0, str(rng.randint(1, 9999)))  # product number
        if rng.random() < 0.06:
            parts.insert(0, rng.choice(["*", "#", "1X", "2X"]))
        return " ".join(parts)

    def _r_qty(self, rng: random.Random) -> str:
        n = rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 5, 6, 10, 12, 20])
        return rng.choice([str(n), str(n), f"{n}.00", f"{n}.000", f"{n} X", f"{n}X", f"{n} x", f"X{n}",
                           f"{n}PC", f"{n} PCS", f"{n} @", f"{n} UNIT"])

    def _r_date(self, rng: random.Random) -> str:
        y, m, d = rng.randint(2015, 2019), rng.randint(1, 12), rng.randint(1, 28)
        h, mi, se = rng.randrange(24), rng.randrange(60), rng.randrange(60)
        mon = _MONTHS[m - 1][:3].upper()
        date = rng.choice([f"{d:02d}-{m:02d}-{y % 100:02d}", f"{d:02d}-{m:02d}-{y}", f"{d:02d}/{m:02d}/{y}",
                           f"{d:02d}/{m:02d}/{y % 100:02d}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}",
                           f"{d:02d} {mon} {y}", f"{d}-{mon}-{y % 100:02d}", f"{d:02d}{mon}{y}"])
        h12 = f"{(h % 12) or 12}:{mi:02d}:{se:02d}{rng.choice(['PM', 'AM', ' PM', ' AM'])}"
        time = rng.choice([f"{h:02d}:{mi:02d}", f"{h:02d}:{mi:02d}:{se:02d}", h12, f"{h:02d}{mi:02d}"])
        r = rng.random()
        if r < 0.35:
            return f"{date} {time}"
        if r < 0.5:
            return date
        if r < 0.6:
            return time
        if r < 0.75:
            label = rng.choice(["DATE", "DATE:", "DATE :", "Date:", ":"])
            return f"{label} {date}" + (f" {time}" if rng.random() < 0.4 else "")
        if r < 0.88:
            return f"{rng.choice(['TIME', 'TIME:', 'TIME :', 'PRINT TIME :'])} {time}"
        till = f"{rng.choice(['SH01', 'POS01', 'T1', 'C2'])} {rng.choice(string.ascii_uppercase)}{rng.randint(1, 99)}"
        return f"{date} {time} {till}"

    def _r_phone(self, rng: random.Random) -> str:
        def num():
            area = rng.choice(["03", "03", "07", "04", "06", "05", "09", "012", "016", "019", "011"])
            a, b = rng.randrange(1000, 10000), rng.randrange(1000, 10000)
            return rng.choice([f"{area}-{a} {b}", f"{area}-{a}{b}", f"{area}-{a}-{b}", f"{area}-{str(a)[:3]} {b}",
                               f"{area} {a} {b}", f"+6{area}-{a} {b}"])
        tel = f"{rng.choice(['TEL:', 'TEL :', 'TEL', 'TEL NO:', 'PHONE:', 'TEL.'])} {num()}"
        r = rng.random()
        if r < 0.35:
            return f"{tel} {rng.choice(['FAX:', 'FAX :', 'FAX'])} {num()}"
        if r < 0.8:
            return tel
        if r < 0.9:
            return num()
        return f"{rng.choice(['CUSTOMER SERVICE HOTLINE :', 'HOTLINE:', 'WHATSAPP:'])} {num()}"

    def _r_company(self, rng: random.Random) -> str:
        name = " ".join(rng.choice(_R_ITEMS[:40] + _R_STREET) if rng.random() < 0.4 else self._r_word(rng)
                        for _ in range(rng.randint(1, 3)))
        reg = f"{rng.randint(1000, 1299999)}-{rng.choice(string.ascii_uppercase)}"
        r = rng.random()
        if r < 0.35:
            return f"{name} {rng.choice(_R_SHOP)}"
        if r < 0.55:
            return f"{name} {rng.choice(_R_SHOP)} ({reg})"
        if r < 0.8:
            return rng.choice([f"CO. NO. {reg}", f"({reg})", f"CO.REG: {reg}", f"(CO.REG :{reg})",
                               f"COMPANY NO: {reg}", f"ROC NO: {reg}", f"({reg}) {rng.choice(['', 'SDN BHD'])}"])
        return f"{rng.choice(['99', 'MR.', 'AEON', 'TESCO', 'ECONSAVE', 'MYNEWS', 'GUARDIAN', 'POPULAR'])} {name}"

    def _r_gst(self, rng: random.Random) -> str:
        gid = f"{rng.randrange(10 ** 12):012d}"
        return rng.choice([f"GST ID NO: {gid}", f"GST ID: {gid}", f"GST REG NO : {gid}", f"(GST ID NO :{gid})",
                           f"GST NO: {gid}", f"GST REG: {gid}", gid,
                           f"GST @{rng.choice([6, 0])}%: RM{self._money(rng, False)}",
                           f"SR @ {rng.choice([6, 0])}%", f"GST @6% INCLUDED IN TOTAL", f"SR = 6%",
                           f"ZR = 0%", f"SST @ {rng.choice([6, 10])}%"])

    def _r_address(self, rng: random.Random) -> str:
        n = rng.randint(1, 300)
        lot = rng.choice([f"NO. {n}", f"NO.{n}", f"LOT {n}", f"NO. {n}{rng.choice('ABG')}", f"{n}",
                          f"LOT {rng.randint(1000, 9999)}-{rng.choice('AB')}", f"NO. {n}-{rng.randint(1, 3)}",
                          f"NO. {n}G&{n + 2}G"])
        road = f"{rng.choice(_R_ROADS)} {rng.choice(_R_STREET)}" + (
            f" {rng.randint(1, 30)}" if rng.random() < 0.4 else f" {rng.randint(1, 30)}/{rng.randint(1, 30)}"
            if rng.random() < 0.3 else "")
        town = f"{rng.randrange(40000, 82000):05d} {rng.choice(_R_PLACES)}"
        r = rng.random()
        if r < 0.4:
            return f"{lot}, {road}," if rng.random() < 0.5 else f"{lot}, {road}"
        if r < 0.65:
            return town + rng.choice(["", ",", f", {rng.choice(_R_PLACES)}", ", MALAYSIA."])
        if r < 0.85:
            return road + rng.choice(["", ","])
        return f"{rng.choice(_R_PLACES)}" + rng.choice(["", ",", "."])

    def _r_docno(self, rng: random.Random) -> str:
        code = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(0, 3))) + \
            f"{rng.randrange(10 ** rng.randint(4, 9)):0{rng.randint(4, 9)}d}"
        label = rng.choice(["INVOICE NO:", "INV NO.", "BILL NO:", "RECEIPT NO:", "RECEIPT #", "DOC NO:", "REF:",
                            "TRANS:", "SLIP NO.:", "ORDER NO:", "CHK", "TABLE", "TABLE NO:", "POS:", "TERMINAL:",
                            "COUNTER", "CASHIER:", "CASHIER", "OPERATOR", "STAFF:", "SALESPERSON:", "MEMBER NO:"])
        if label.startswith(("TABLE", "POS", "COUNTER", "TERMINAL")):
            return f"{label} {rng.randint(1, 60):0{rng.choice([1, 2])}d}"
        if label.startswith(("CASHIER", "OPERATOR", "STAFF", "SALES")):
            r = rng.random()
            return f"{label} {rng.choice(_R_NAMES)}" if r < 0.6 else f"{rng.randint(1, 999)} {label.rstrip(':')}" \
                if r < 0.8 else f"{label} {rng.choice(_R_NAMES)} - {rng.choice(_R_NAMES)}"
        return f"{label} {code}" if rng.random() < 0.8 else code

    def _receipt_columns(self, rng: random.Random) -> list[str]:
        """Columns of one receipt line (SROIE's mix: ~21% bare prices, ~8% integers, median 8 chars)."""
        r = rng.random()
        if r < 0.21:  # a price column
            return [self._money(rng)]
        if r < 0.28:  # a quantity or count column
            return [rng.choice([str(rng.choice([1, 1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 12, 20, 100])), self._r_qty(rng)])]
        if r < 0.33:  # tax codes, currency and single marks
            return [rng.choice(_R_CODES)]
        if r < 0.48:  # a label, sometimes with its value
            label = rng.choice(_R_LABELS)
            if rng.random() < 0.3 and not label.startswith(("(", "GST SUMMARY", "TAX INVOICE", "QTY ITEM", "ITEM QTY")):
                value = self._r_date(rng).split(" ")[-1] if "DATE" in label or "TIME" in label else \
                    self._r_qty(rng) if "QTY" in label or "ITEMS" in label or rng.random() < 0.1 else self._money(rng)
                return [label, value]
            return [label]
        if r < 0.53:  # one word: an item, a heading, a name
            return [rng.choice([self._r_word(rng), rng.choice(_R_ITEMS).split()[0], rng.choice(_R_WORDS),
                                rng.choice(_R_PLACES).split()[0], rng.choice(_R_NAMES).split()[0]])]
        if r < 0.64:  # an item, maybe with its quantity, unit price, amount and tax code
            cols = [self._r_item(rng)]
            k = rng.random()
            if k < 0.25:
                cols.append(self._money(rng))
            elif k < 0.35:
                cols = [self._r_qty(rng)] + cols
            elif k < 0.42:
                cols += [self._r_qty(rng), self._money(rng, False), self._money(rng)]
            elif k < 0.48:
                cols[0] += f" @{self._money(rng, False)}"
            return cols
        if r < 0.7:  # quantity x unit price (amount)
            q = rng.choice([1, 1, 2, 2, 3, 4, 5, 6, 10, 12])
            sep = rng.choice(["X", "X", "x", "@", "PC @", "X @"])
            cols = [f"{q} {sep} {self._money(rng, False)}"]
            k = rng.random()
            if k < 0.3:
                cols.append(self._money(rng))
            elif k < 0.45:
                cols = [f"{q}{rng.choice(['X', ' X', 'x'])}", f"{rng.randrange(10 ** 12):012d}"]  # 1X 000001048211
            return cols
        if r < 0.72:  # table header
            return rng.sample(["QTY", "ITEM", "DESCRIPTION", "PRICE", "U.PRICE", "AMOUNT", "AMT(RM)", "TAX", "DISC",
                               "TOTAL", "CODE", "RM", "U/P", "S/PRICE", "TAX CODE", "NO"], rng.randint(2, 4))
        if r < 0.77:
            return [self._r_date(rng)]
        if r < 0.8:
            return [self._r_phone(rng)]
        if r < 0.845:
            return [self._r_company(rng)]
        if r < 0.87:
            return [self._r_gst(rng)]
        if r < 0.92:
            return [self._r_address(rng)]
        if r < 0.955:
            return [self._r_docno(rng)]
        if r < 0.98:  # footer text, often broken over lines
            words = rng.choice(_R_PHRASES).split()
            i = rng.randrange(len(words)) if rng.random() < 0.3 else 0
            j = rng.randint(i + 1, len(words)) if rng.random() < 0.4 else len(words)
            return [" ".join(words[i:j])]
        if r < 0.99:
            name = self._r_word(rng).lower()
            return [rng.choice([f"www.{name}.com.my", f"WWW.{name}.COM", f"{name}@gmail.com", f"{name}.com.my",
                                f"FB: {name}"])]
        return [rng.choice([f"{rng.randrange(10 ** 13):013d}", f"{rng.randrange(10 ** 12):012d}",
                            "".join(rng.choices(string.ascii_uppercase + string.digits, k=rng.randint(6, 14)))])]

    # ---- rendering -----------------------------------------------------------
    def sample(self, rng: random.Random, applied: list[str] | None = None) -> tuple[Image.Image, str]:
        """Returns (crop, label): a receipt line (`receipt_share` of the calls; "receipt" goes to `applied`)
        rendered by `render_receipt`, else `text(rng)` rendered by `render`."""
        share = self.config.receipt_share
        if share > 0 and rng.random() < share:  # no draw at 0: the FUNSD-only stream of a seed is kept
            text, gaps = self._receipt(rng)
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
        a = self._crop(mask, band, f, rng, g, keep_bottom, applied, band_prob=0.1)  # line boxes keep descenders
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
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
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
