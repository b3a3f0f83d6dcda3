import random
import time

import pytest
from PIL import Image

from crnn.lexicon import CharNgram, WordPrior, load_prior
from tests.helpers import crop_bytes


@pytest.fixture(scope="module")
def prior():
    return load_prior()


def test_builds_fast_from_the_installed_package_and_is_cached():
    t = time.perf_counter()
    p = WordPrior()
    took = time.perf_counter() - t
    assert len(p) == 50_000 and "the" in p and "THE" in p
    assert took < 3.0                        # ~0.2 s on an idle core; generous for a loaded test machine
    assert load_prior() is load_prior()


def test_ranks_words_above_their_misspellings(prior):
    for word, typo in [("the", "thc"), ("confidential", "confidcntial"), ("register", "reaister"),
                       ("tobacco", "tobaccc"), ("total", "totai")]:
        assert prior.text_score(word) > prior.text_score(typo) + 3, (word, typo)
    assert prior.text_score("the") > 5
    # The ratio underneath: frequent words far above rare ones, words above letter salad.
    assert prior.llr("the") > prior.llr("thc") > prior.llr("xqzvt")


def test_never_below_zero_so_codes_and_names_are_left_to_the_pixels(prior):
    for text in ["thc", "xqzvt", "B", "PC", "LJS", "SQC", "ZZZ", "Qty", ""]:
        assert prior.text_score(text) >= 0.0
    assert prior.text_score("B") == prior.text_score("8") == 0.0
    assert prior.text_score("LJS") == prior.text_score("L3S") == 0.0


def test_numbers_amounts_and_codes_are_neutral(prior):
    for text in ["12.50", "A3-77", "$1,234.56", "120ML", "T0TAL", "5ALE", "#12-B", "2019", "07:10:51", "-", "(*)"]:
        assert prior.text_score(text) == 0.0, text
    # A word a digit touches is part of a code; the same letters alone are a word.
    assert prior.text_score("TOTAL") > 5 and prior.text_score("T0TAL") == 0.0


def test_case_and_surrounding_punctuation_are_ignored(prior):
    the = prior.text_score("the")
    for text in ["The", "THE", "(the),", '"the"', "the:", "-the-"]:
        assert prior.text_score(text) == pytest.approx(the), text
    assert prior.text_score("don't") > 5
    assert prior.text_score("students'") == pytest.approx(prior.text_score("students"))


def test_spaces_and_punctuation_between_words_do_not_change_the_prior(prior):
    assert prior.text_score("Facebook.com") == pytest.approx(prior.text_score("Facebook. com"))
    assert prior.text_score("tipping-") == pytest.approx(prior.text_score("tipping -"))
    assert prior.text_score("Program#:") == pytest.approx(prior.text_score("Program #:"))
    assert prior.text_score("the form") == pytest.approx(prior.text_score("the") + prior.text_score("form"))


def test_closing_scores_add_up_to_the_text_score(prior):
    rng = random.Random(0)
    alphabet = "theRM0l1 .-'(5x"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        acc = sum(prior.closing_score(text[:i], text[i]) for i in range(len(text))) + prior.closing_score(text, "")
        assert acc == pytest.approx(prior.text_score(text), abs=1e-9), text


def test_char_ngram_is_a_distribution_and_prefers_english_spelling():
    model = CharNgram(["the", "then", "there", "that", "this", "cat", "can't"], order=3)
    for history in ["", "t", "th", "the", "zz", "can'"]:
        total = sum(model.prob(history, c) for c in "abcdefghijklmnopqrstuvwxyz'$")
        assert total == pytest.approx(1.0), history
    assert model.logprob("than") > model.logprob("tqhn")
    prior = load_prior()
    assert prior.chars.logprob("lorillard") > prior.chars.logprob("lqrxllzrd") + 10


def test_recognizer_lexicon_decoder_reads_and_scores_like_greedy_on_clean_crops():
    import io

    from crnn.recognizer import Recognizer

    texts = ["Invoice", "TOTAL", "12/05/2024", "the form"]
    images = [Image.open(io.BytesIO(crop_bytes(t, size=28))) for t in texts]
    greedy = Recognizer.load(device="cpu", precision="fp32").recognize(images)
    lexicon = Recognizer.load(device="cpu", precision="fp32", decoder="lexicon").recognize(images)
    gated = Recognizer.load(device="cpu", precision="fp32", decoder="lexicon",
                            decoder_options={"gate": 1.01}).recognize(images)   # every crop searched
    for (gt, gs), (lt, ls), (at, as_) in zip(greedy, lexicon, gated):
        if gs >= 0.9:
            assert (lt, ls) == (gt, gs)
        assert 0.0 <= ls <= 1.0 and 0.0 <= as_ <= 1.0
    with pytest.raises(ValueError, match="decoder"):
        Recognizer.load(device="cpu", decoder="lexical")
