import pytest

from crnn.charset import BLANK, PRINTABLE_ASCII, Charset, normalize

# Every printable ASCII character, 0x20 (space) .. 0x7E (~), written out by code point.
ALL_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))


def test_default_charset_has_95_symbols_plus_blank():
    cs = Charset()
    assert len(cs.symbols) == 95
    assert cs.num_classes == 96
    assert BLANK == 0
    assert sorted(PRINTABLE_ASCII) == sorted(ALL_PRINTABLE)


def test_class_ids_start_after_blank():
    cs = Charset()
    # Layout: digits, lower case, upper case, punctuation, space; symbol i is class i + 1.
    assert cs.encode("0") == [1]
    assert cs.encode("9") == [10]
    assert cs.encode("a") == [11]
    assert cs.encode("z") == [36]
    assert cs.encode("A") == [37]
    assert cs.encode(" ") == [95]
    assert cs.encode("hello") == [18, 15, 22, 22, 25]


@pytest.mark.parametrize("ch", list(ALL_PRINTABLE))
def test_round_trip_every_printable_symbol(ch):
    cs = Charset()
    ids = cs.encode(ch)
    assert len(ids) == 1
    assert 1 <= ids[0] <= 95
    assert cs.decode(ids) == ch


def test_round_trip_whole_alphabet_and_distinct_ids():
    cs = Charset()
    ids = cs.encode(ALL_PRINTABLE)
    assert len(set(ids)) == 95
    assert BLANK not in ids
    assert cs.decode(ids) == ALL_PRINTABLE


def test_decode_skips_blanks_and_does_not_collapse():
    cs = Charset()
    assert cs.decode([0, 18, 0, 15, 22, 22, 0, 25, 0]) == "hello"
    assert cs.decode([0, 0]) == ""


@pytest.mark.parametrize("raw, folded", [
    ("\u2018quoted\u2019", "'quoted'"),           # curly single quotes
    ("\u201cquoted\u201d", '"quoted"'),           # curly double quotes
    ("\u201elow\u201c", '"low"'),                 # German low-high quotes
    ("1990\u20132000", "1990-2000"),              # en dash
    ("a\u2014b", "a-b"),                          # em dash
    ("\u22125", "-5"),                            # minus sign
    ("no\u00a0break", "no break"),                # NBSP
    ("don\u00b4t", "don't"),                      # acute accent used as an apostrophe
    ("5\u2032 3\u2033", "5' 3\""),                # prime / double prime
    ("\uff21\uff42\uff43\uff11\uff12\uff01", "Abc12!"),  # full-width forms (NFKC)
    ("\u3000", " "),                              # ideographic space (NFKC)
    ("\ufb01le", "file"),                         # fi ligature (NFKC)
    ("wait\u2026", "wait..."),                    # ellipsis (NFKC)
    ("plain ASCII stays", "plain ASCII stays"),
])
def test_normalize_folds_typographic_variants(raw, folded):
    assert normalize(raw) == folded
    cs = Charset()
    assert cs.can_encode(raw)
    assert cs.decode(cs.encode(raw)) == folded


@pytest.mark.parametrize("text, bad", [("f\u00fcr", "\u00fc"), ("\u2610", "\u2610"), ("caf\u00e9", "\u00e9"),
                                       ("\u65e5\u672c", "\u65e5"), ("tab\there", "\t")])
def test_encode_rejects_out_of_charset_and_names_the_character(text, bad):
    cs = Charset()
    with pytest.raises(ValueError) as ei:
        cs.encode(text)
    assert repr(bad) in str(ei.value)
    assert cs.can_encode(text) is False


def test_can_encode_agrees_with_encode():
    cs = Charset()
    for text in ["Invoice #42", "", "\u201chi\u201d", "f\u00fcr", "\u2610", "x\ny"]:
        try:
            cs.encode(text)
            ok = True
        except ValueError:
            ok = False
        assert cs.can_encode(text) is ok, text


def test_custom_charset_and_duplicates_rejected():
    cs = Charset("ab")
    assert cs.num_classes == 3
    assert cs.encode("ba") == [2, 1]
    assert cs.decode([1, 0, 2]) == "ab"
    with pytest.raises(ValueError):
        cs.encode("c")
    with pytest.raises(ValueError, match="unique"):
        Charset("abca")
    with pytest.raises(ValueError):
        Charset(PRINTABLE_ASCII + "a")
