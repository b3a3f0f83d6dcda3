"""Tests for the synthetic crops: the renderer (crnn/training/synth.py) and its labels (crnn/training/text.py)."""

import dataclasses
import os
import random
import re

import numpy as np
import pytest

from crnn.charset import PRINTABLE_ASCII, Charset
from crnn.training.synth import SynthConfig, TextRenderer, find_fonts

FONTS = find_fonts()
FONT_PACKAGES = ("fonts-liberation2 fonts-freefont-ttf fonts-urw-base35 fonts-texgyre fonts-crosextra-carlito "
                 "fonts-crosextra-caladea fonts-linuxlibertine fonts-roboto fonts-open-sans fonts-inconsolata "
                 "fonts-noto-core")
needs_fonts = pytest.mark.skipif(not FONTS, reason="no TrueType fonts found: apt-get install fonts-dejavu")
# What depends on which faces are there (the families found, how a face draws '_' or ',') needs the font set
# training uses; a fresh machine has only DejaVu.
OTHER_FONTS = [f for f in FONTS if not os.path.basename(f).startswith("DejaVu")]
needs_font_packages = pytest.mark.skipif(
    len(OTHER_FONTS) < 20,
    reason=f"{len(OTHER_FONTS)} fonts besides DejaVu; needs training's font set: apt-get install {FONT_PACKAGES}")


@pytest.fixture(scope="module")
def renderer():
    return TextRenderer()


@pytest.fixture(scope="module")
def texts(renderer):
    rng = random.Random(1234)
    return [renderer.text(rng) for _ in range(3000)]


def test_find_fonts_keeps_latin_text_faces_only(tmp_path):
    names = ["DejaVuSans.ttf", "NotoSans-Regular.ttf", "NotoSansArabic-Regular.ttf", "D050000L.otf", "Z003-MediumItalic.otf",
             "StandardSymbolsPS.otf", "NotoSansSymbols-Regular.ttf", "Roboto-Thin.ttf", "readme.txt", "Courier.pfb"]
    for i, name in enumerate(names):
        (tmp_path / ("sub" if i % 2 else "") / name).parent.mkdir(exist_ok=True)
        (tmp_path / ("sub" if i % 2 else "") / name).write_bytes(b"")
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup" / "DejaVuSans.ttf").write_bytes(b"")     # one per file name
    assert [os.path.basename(p) for p in find_fonts(str(tmp_path))] == ["DejaVuSans.ttf", "NotoSans-Regular.ttf"]


@needs_font_packages
def test_find_fonts_latin_text_fonts():
    fonts = find_fonts()
    names = [os.path.basename(p) for p in fonts]
    assert len(fonts) > 20
    assert any(re.search(r"mono|cursor|courier", n, re.I) for n in names)
    assert all(p.lower().endswith((".ttf", ".otf")) for p in fonts)
    assert fonts == sorted(fonts)
    for bad in ("D050000L", "Z003", "StandardSymbols", "NotoSansArabic", "NotoSansSymbols"):
        assert not any(n.startswith(bad) for n in names), bad


@needs_fonts
def test_same_seed_same_samples(renderer):
    def run(seed):
        rng = random.Random(seed)
        return [(im.tobytes(), im.size, text) for im, text in (renderer.sample(rng) for _ in range(40))]

    assert run(7) == run(7)
    assert run(7) != run(8)
    # a fresh renderer (caches already warm or not) gives the same result
    rng = random.Random(7)
    im, text = TextRenderer().sample(rng)
    assert (im.tobytes(), im.size, text) == run(7)[0]


@needs_fonts
def test_crops_are_grayscale_scan_sized(renderer):
    rng = random.Random(3)
    heights = []
    for _ in range(200):
        im, text = renderer.sample(rng)
        assert im.mode == "L"
        assert im.width >= 2 and 4 <= im.height <= 160
        heights.append(im.height)
        a = np.asarray(im)
        assert a.max() > a.min()  # something was drawn
    assert 10 <= np.median(heights) <= 20  # like real scanned word crops, not the model's 32
    # the form crops alone, without the (taller) receipt lines
    forms, rng = TextRenderer(SynthConfig(receipt_share=0.0)), random.Random(3)
    assert 10 <= np.median([forms.sample(rng)[0].height for _ in range(200)]) <= 20


@needs_fonts
def test_every_degradation_at_once_and_odd_texts():
    probs = {f.name: 1.0 for f in dataclasses.fields(SynthConfig)
             if f.name.endswith("_prob") and f.name not in ("line_prob", "invert_prob")}
    r = TextRenderer(SynthConfig(**probs))
    rng = random.Random(5)
    for text in [".", "|", "_", "'", "-", "i", "W" * 70, "a b", " ", "TOTAL $12.40", PRINTABLE_ASCII.strip()]:
        for _ in range(5):
            im = r.render(text, rng)
            assert im.mode == "L" and im.width >= 2 and im.height >= 2
    for _ in range(100):
        im, _ = r.sample(rng)
        assert im.mode == "L"


@needs_fonts
def test_labels_clean_and_encodable(texts):
    cs = Charset()
    for t in texts:
        assert cs.can_encode(t), t
        assert t == t.strip() and "  " not in t and t, repr(t)
        assert len(t) <= 70


@needs_fonts
def test_label_distribution(texts):
    assert set("".join(texts)) == set(PRINTABLE_ASCII)  # all 95 symbols, space included
    words = [w for t in texts for w in t.split()]
    short = sum(len(w) <= 3 for w in words) / len(words)
    assert 0.2 < short < 0.45
    multi = sum(" " in t for t in texts) / len(texts)
    assert 0.1 < multi < 0.4
    assert any(re.fullmatch(r"\$[\d,]+\.\d\d", t) for t in texts)  # amounts
    assert any(re.fullmatch(r"\d{1,2}/\d{1,2}/\d{2,4}", t) for t in texts)  # dates
    assert any("@" in t and "." in t for t in texts)  # e-mail
    assert any(t.isupper() and len(t) > 3 for t in texts) and any(t.islower() and len(t) > 3 for t in texts)


@needs_font_packages
def test_underscore_is_never_clipped_or_faked_by_an_underline():
    # Every box spans cap height to baseline (which clips descenders) and every crop gets a form line.
    probs = {f.name: 0.0 for f in dataclasses.fields(SynthConfig) if f.name.endswith("_prob")}
    r = TextRenderer(SynthConfig(**{**probs, "band_prob": 1.0, "form_line_prob": 1.0, "tight_prob": 1.0}))
    rng = random.Random(11)
    for _ in range(40):
        ink = np.asarray(r.render("x_x", rng)) < 200  # thin strokes are gray at scan size
        inner = ink[:, 2:-2]  # box edges down the sides are allowed
        lowest = inner[np.flatnonzero(inner.any(axis=1))[-1]]
        w = len(lowest)
        assert lowest[w // 3: 2 * w // 3].any()  # the underscore is the lowest ink: not clipped away
        assert not lowest[-max(1, w // 5):].any()  # and nothing runs under the last 'x', as an underline would


@needs_font_packages
def test_comma_tail_is_never_clipped():
    # Cap-height-to-baseline boxes clip descenders; a comma clipped that way reads as a period.
    probs = {f.name: 0.0 for f in dataclasses.fields(SynthConfig) if f.name.endswith("_prob")}

    def tail_depths(band_prob):  # rows of comma ink below the x's baseline, large print to resolve them
        r = TextRenderer(SynthConfig(**{**probs, "band_prob": band_prob, "tight_prob": 1.0,
                                        "min_text_px": 36, "median_text_px": 36}))
        rng, depths = random.Random(12), []
        for _ in range(40):
            ink = np.asarray(r.render("x,", rng)) < 200
            half = ink.shape[1] // 2
            lowest = [np.flatnonzero(part.any(axis=1))[-1] for part in (ink[:, :half], ink[:, half:])]
            depths.append(lowest[1] - lowest[0])
        return np.array(depths)

    banded, loose = tail_depths(1.0), tail_depths(0.0)
    assert np.median(banded) >= np.median(loose) and banded.min() >= 3


def test_rendered_set_says_what_it_was_drawn_from(tmp_path):
    import pyarrow.parquet as pq

    from crnn.training.synth import render_parquet

    words = tmp_path / "words"
    words.write_text("ledger\nvoucher\nremittance\nconsignee\nwaybill\n")
    listed = SynthConfig(words_file=str(words))
    a = render_parquet(str(tmp_path / "a.parquet"), 20, seed=3, config=listed)
    again = render_parquet(str(tmp_path / "b.parquet"), 20, seed=3, config=listed)
    assert a == again and a["words"] == str(words) and a["fonts"] == len(find_fonts()) and len(a["set_id"]) == 12
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    # Another word list draws other labels: the same seed is another set, and its id says so.
    other = render_parquet(str(tmp_path / "c.parquet"), 20, seed=3, config=SynthConfig(words_file=str(tmp_path / "none")))
    assert other["words"] == "built-in list" and other["set_id"] != a["set_id"]
    assert render_parquet(str(tmp_path / "d.parquet"), 20, seed=4, config=listed)["set_id"] != a["set_id"]


# ---- receipt lines -----------------------------------------------------------------
NO_DEGRADATIONS = {f.name: 0.0 for f in dataclasses.fields(SynthConfig) if f.name.endswith("_prob")}


def _components(ink: np.ndarray) -> int:
    """Number of 4-connected components of True pixels."""
    labels, n = np.zeros(ink.shape, np.int32), 0
    for y, x in zip(*np.nonzero(ink)):
        if labels[y, x]:
            continue
        n += 1
        labels[y, x], stack = n, [(y, x)]
        while stack:
            cy, cx = stack.pop()
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < ink.shape[0] and 0 <= nx < ink.shape[1] and ink[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = n
                    stack.append((ny, nx))
    return n


@pytest.fixture(scope="module")
def receipt_texts(renderer):
    rng = random.Random(99)
    return [renderer.receipt_text(rng) for _ in range(3000)]


@needs_fonts
def test_receipt_labels_are_receipt_like(receipt_texts):
    printable = set(PRINTABLE_ASCII)
    for t in receipt_texts:
        assert set(t) <= printable, t
        assert t == t.strip() and "  " not in t and t and len(t) <= 55, repr(t)
    lengths = [len(t) for t in receipt_texts]
    assert 6 <= np.median(lengths) <= 12 and max(lengths) >= 40  # SROIE: median 8, up to 55
    upper = sum(t == t.upper() for t in receipt_texts) / len(receipt_texts)
    assert 0.65 < upper < 0.95  # mostly upper case, with true mixed case
    assert any(re.search(r"[a-z]", t) and re.search(r"[A-Z]", t) for t in receipt_texts)
    joined = "\n".join(receipt_texts)
    for pattern in (r"^-?\d+\.\d\d$", r"\bRM ?\d", r"@", r"\d (X|x) \d", r"%", r"\d\d-\d\d-\d\d",
                    r"\d\d:\d\d", r"(?i)\bTEL\b", r"(?i)\bFAX\b", r"\(\d{4,7}-[A-Z]\)", r"(?i)\bGST\b.*\d{12}",
                    r"(?i)\bTOTAL\b", r"(?i)^CASH\b", r"(?i)\bCHANGE\b", r"(?i)\bROUNDING\b", r"(?i)\bQTY\b",
                    r"(?i)\bNO\. \d+.*JALAN\b"):
        assert re.search(pattern, joined, re.M), pattern


@needs_fonts
def test_receipt_samples():
    r = TextRenderer(SynthConfig(receipt_share=1.0))
    rng, heights = random.Random(4), []
    for _ in range(150):
        applied: list[str] = []
        im, text = r.sample(rng, applied)
        assert applied[0] == "receipt"
        assert set(text) <= set(PRINTABLE_ASCII) and text == " ".join(text.split()), repr(text)
        assert im.mode == "L" and im.width >= 2 and 8 <= im.height <= 64  # SROIE crops: at most 64 px
        a = np.asarray(im)
        assert a.max() > a.min()
        heights.append(im.height)
    assert 24 <= np.median(heights) <= 40  # SROIE line crops: median 31 px


@needs_fonts
def test_receipt_share_zero_gives_no_receipt_lines_and_the_forms_stream():
    r = TextRenderer(SynthConfig(receipt_share=0.0))
    rng, again = random.Random(21), random.Random(21)
    for _ in range(60):
        applied: list[str] = []
        im, text = r.sample(rng, applied)
        assert "receipt" not in applied
        # no draw is spent on the receipt choice: the stream is `render(text(rng))`, as before receipts
        t = r.text(again)
        assert (im.tobytes(), text) == (r.render(t, again).tobytes(), t)
    share, rng, n = TextRenderer(SynthConfig(receipt_share=0.3)), random.Random(22), 0
    for _ in range(400):
        applied = []
        share.sample(rng, applied)
        n += "receipt" in applied
    assert 0.2 < n / 400 < 0.4


@needs_font_packages
def test_receipt_share_zero_keeps_the_reference_test_set(tmp_path):
    # jobs/evaluate.py's REFERENCE_SET (MODEL.md's synthetic test set) was drawn before receipt lines existed.
    import ast
    import pathlib

    from crnn.training.synth import render_parquet, WORDS_FILE

    source = (pathlib.Path(__file__).parents[1] / "jobs" / "evaluate.py").read_text()
    ref = ast.literal_eval(re.search(r"^REFERENCE_SET = (\{.*?\})", source, re.M | re.S).group(1))
    if ref["fonts"] != len(FONTS) or ref["words"] != WORDS_FILE or not os.path.exists(WORDS_FILE):
        pytest.skip("another font set or word list: another set")
    got = render_parquet(str(tmp_path / "ref.parquet"), ref["n"], ref["seed"], SynthConfig(receipt_share=0.0))
    assert got["set_id"] == ref["set_id"]


@needs_fonts
def test_receipt_seed_reproduces_a_sample():
    r = TextRenderer(SynthConfig(receipt_share=1.0))

    def run(seed):
        rng, out = random.Random(seed), []
        for _ in range(20):
            applied: list[str] = []
            im, text = r.sample(rng, applied)
            out.append((im.tobytes(), im.size, text, applied))
        return out

    assert run(5) == run(5) and run(5) != run(6)
    im, text = TextRenderer(SynthConfig(receipt_share=1.0)).sample(random.Random(5))
    assert (im.tobytes(), im.size, text) == run(5)[0][:3]


@needs_fonts
def test_dot_matrix_ink_is_separate_dots():
    def counts(dot_matrix_prob):
        r = TextRenderer(SynthConfig(**{**NO_DEGRADATIONS, "dot_matrix_prob": dot_matrix_prob, "receipt_median_px": 40.0}))
        rng, out = random.Random(1), []
        for _ in range(12):
            applied: list[str] = []
            a = np.asarray(r.render_receipt("TOTAL RM 16.50", rng, applied), dtype=np.float32)
            assert ("dot_matrix" in applied) == (dot_matrix_prob == 1.0)
            out.append(_components(a < (a.max() + a.min()) / 2))
        return np.median(out)

    solid, dots = counts(0.0), counts(1.0)
    assert solid <= 20  # about one component a character
    assert dots >= 3 * solid


@needs_fonts
def test_receipt_degradations_are_named_and_do_what_they_say():
    def crops(**probs):
        r = TextRenderer(SynthConfig(**{**NO_DEGRADATIONS, **probs}))
        rng, out = random.Random(2), []
        for _ in range(30):
            applied: list[str] = []
            out.append((r.render_receipt("CASH 50.00", rng, applied), applied))
        return out

    plain = crops()
    assert all(not applied for _, applied in plain)
    spaced = crops(letter_spacing_prob=1.0)
    assert all("letter_spacing" in applied for _, applied in spaced)
    width = lambda cs: np.median([im.width / im.height for im, _ in cs])  # noqa: E731
    assert width(spaced) > 1.1 * width(plain)

    def contrast(cs):
        return np.median([np.percentile(a, 90) - np.percentile(a, 3)
                          for a in (np.asarray(im, dtype=np.float32) for im, _ in cs)])

    faded = crops(thermal_fade_prob=1.0)
    assert all("thermal_fade" in applied for _, applied in faded)
    assert contrast(faded) < contrast(plain) - 40

    def gapped(receipt_gap_prob):  # column gaps are widened in the rendering only, named "wide_space"
        r = TextRenderer(SynthConfig(**{**NO_DEGRADATIONS, "receipt_gap_prob": receipt_gap_prob}))
        rng, out = random.Random(3), []
        for _ in range(30):
            applied: list[str] = []
            out.append((r.render_receipt("CASH 50.00", rng, applied, gaps=(4,)), applied))
            assert ("wide_space" in applied) == (receipt_gap_prob == 1.0)
        return out

    assert width(gapped(1.0)) > 1.1 * width(gapped(0.0))
