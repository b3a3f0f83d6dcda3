"""Tests for the synthetic crop renderer (crnn/synth.py)."""

import dataclasses
import os
import random
import re

import numpy as np
import pytest

from crnn.charset import PRINTABLE_ASCII, Charset
from crnn.synth import SynthConfig, TextRenderer, find_fonts

FONTS = find_fonts()
FONT_PACKAGES = ("fonts-liberation2 fonts-freefont-ttf fonts-urw-base35 fonts-texgyre fonts-crosextra-carlito "
                 "fonts-crosextra-caladea fonts-linuxlibertine fonts-roboto fonts-open-sans fonts-inconsolata "
                 "fonts-noto-core")
needs_fonts = pytest.mark.skipif(not FONTS, reason="no TrueType fonts found: apt-get install fonts-dejavu")
# What depends on which faces are there (the families found, how a face draws '_' or ',') needs the font set
# training uses; a fresh machine has only DejaVu.
OTHER_FONTS = [f for f in FONTS if not os.path.basename(f).startswith("DejaVu")]
needs_font_packages = pytest.mark.skipif(
    len(OTHER_FONTS) < 20, reason=f"{len(OTHER_FONTS)} fonts besides DejaVu; needs training's font set: apt-get install {FONT_PACKAGES}")


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

    from crnn.synth import render_parquet

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
