import math

import pytest
import torch

from crnn.charset import Charset
from crnn.decoding import beam_search_decode, greedy_decode

CS = Charset()
# Class ids in the default charset (symbol i is class i + 1), written out by hand.
ID = {"h": 18, "e": 15, "l": 22, "o": 25, "a": 11, "b": 12, "-": 0}


def frames(labels, p=0.9, C=96):
    """(T, C) log-probabilities: class labels[t] gets probability p[t], the rest share 1 - p[t] equally."""
    ps = [p] * len(labels) if isinstance(p, float) else p
    rows = []
    for lab, pt in zip(labels, ps):
        row = torch.full((C,), (1.0 - pt) / (C - 1), dtype=torch.float64)
        row[lab] = pt
        rows.append(row.log())
    return torch.stack(rows)


def ids(s):
    return [ID[c] for c in s]


def test_repeats_separated_by_blank_are_kept():
    logits = frames(ids("he-l-lo"))[:, None, :]          # (T, 1, C)
    assert greedy_decode(logits, None, CS)[0][0] == "hello"


def test_repeats_without_blank_collapse():
    logits = frames(ids("hhelllo"))[:, None, :]
    assert greedy_decode(logits, None, CS)[0][0] == "helo"
    logits = frames(ids("hheellll-lloo"))[:, None, :]
    assert greedy_decode(logits, None, CS)[0][0] == "hello"


def test_all_blank_is_empty_with_min_blank_probability():
    logits = frames([0, 0, 0], p=[0.9, 0.7, 0.8])[:, None, :]
    text, score = greedy_decode(logits, None, CS)[0]
    assert text == ""
    assert score == pytest.approx(0.7, abs=1e-6)


def test_confidence_is_min_over_frames_of_max_probability():
    # h:0.95, blank:0.6, e:0.85, l:0.99 -> the doubtful blank frame decides.
    logits = frames(ids("h-el"), p=[0.95, 0.6, 0.85, 0.99])[:, None, :]
    text, score = greedy_decode(logits, None, CS)[0]
    assert text == "hel"
    assert score == pytest.approx(0.6, abs=1e-6)


def test_confidence_from_unnormalised_logits():
    # Raw scores (not log-probs) over the 3 classes of Charset("ab"); softmax worked out by hand.
    cs = Charset("ab")
    logits = torch.tensor([[[0.0, 2.0, 0.0]],                                    # 'a': e^2/(e^2+2) = 0.787
                           [[7.0 + math.log(3), 7.0 + math.log(2), 7.0]],        # blank: 3/(3+2+1) = 0.5
                           [[0.0, 0.0, 3.0]]])                                   # 'b': e^3/(e^3+2) = 0.909
    text, score = greedy_decode(logits, None, cs)[0]
    assert text == "ab"
    assert score == pytest.approx(0.5, abs=1e-6)
    logits[1, 0] = torch.tensor([5.0, 0.0, 0.0])   # now a confident blank (0.987): frame 0 decides
    text, score = greedy_decode(logits, None, cs)[0]
    assert text == "ab"
    assert score == pytest.approx(math.e ** 2 / (math.e ** 2 + 2), abs=1e-6)


def test_batch_with_lengths_ignores_padding_frames_for_text_and_score():
    T = 6
    c0 = frames(ids("he-llo"), p=[0.9, 0.8, 0.9, 0.9, 0.9, 0.7])           # all 6 valid
    c1 = frames(ids("ab") + ids("hhhh"), p=[0.9, 0.95, 0.3, 0.3, 0.3, 0.3])  # only 2 valid
    c2 = frames(ids("-a-b") + ids("oo"), p=[0.99, 0.75, 0.99, 0.99, 0.2, 0.2])     # 4 valid
    c3 = frames(ids("------"), p=0.5)                                          # 0 valid
    logits = torch.stack([c0, c1, c2, c3], dim=1).float()                      # (T, B, C)
    assert logits.shape == (T, 4, 96)
    lengths = torch.tensor([6, 2, 4, 0])
    out = greedy_decode(logits, lengths, CS)
    assert [t for t, _ in out] == ["helo", "ab", "ab", ""]
    assert out[0][1] == pytest.approx(0.7, abs=1e-5)
    assert out[1][1] == pytest.approx(0.9, abs=1e-5)   # the 0.3 padding frames do not count
    assert out[2][1] == pytest.approx(0.75, abs=1e-5)  # nor do the 0.2 ones
    assert 0.0 <= out[3][1] <= 1.0
    # Without lengths the padding frames are decoded and scored.
    full = greedy_decode(logits, None, CS)
    assert full[1][0] == "abh"
    assert full[1][1] == pytest.approx(0.3, abs=1e-5)
    assert full[2] == ("abo", pytest.approx(0.2, abs=1e-5))


def test_padding_after_a_repeat_does_not_change_collapse():
    # Crop 'a' of length 1 followed by padding frames that also read 'a', then 'b'.
    cs = Charset("ab")
    logits = frames([1, 1, 2], C=3)[:, None, :]
    assert greedy_decode(logits, torch.tensor([1]), cs)[0][0] == "a"
    assert greedy_decode(logits, torch.tensor([3]), cs)[0][0] == "ab"


def test_scores_in_unit_interval_and_one_result_per_crop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 7, 96, generator=g) * 5
    lengths = torch.tensor([20, 1, 5, 9, 13, 17, 20])
    out = greedy_decode(logits, lengths, CS)
    assert len(out) == 7
    for (text, score), n in zip(out, lengths.tolist()):
        assert isinstance(text, str) and isinstance(score, float)
        assert 0.0 <= score <= 1.0
        assert len(text) <= n


def test_score_can_only_drop_as_more_frames_become_valid():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(12, 1, 96, generator=g) * 3).expand(12, 6, 96)   # the same crop six times
    lengths = torch.tensor([1, 3, 5, 7, 9, 12])
    out = greedy_decode(logits, lengths, CS)
    scores = [s for _, s in out]
    assert scores == sorted(scores, reverse=True)
    texts = [t for t, _ in out]
    for shorter, longer in zip(texts, texts[1:]):
        assert longer.startswith(shorter)
    probs = logits[:, 0].softmax(-1).max(-1).values
    assert scores[-1] == pytest.approx(float(probs.min()), abs=1e-6)
    assert scores[0] == pytest.approx(float(probs[0]), abs=1e-6)


def test_greedy_accepts_half_precision_logits():
    logits = frames(ids("he-l-lo"), p=0.99)[:, None, :].half()
    text, score = greedy_decode(logits, None, CS)[0]
    assert text == "hello"
    assert score == pytest.approx(0.99, abs=2e-3)


# ---- beam search ----------------------------------------------------------------------------------

def test_beam_agrees_with_greedy_on_peaked_distributions():
    logits = torch.stack([frames(ids("he-l-lo"), p=0.99), frames(ids("-ab--a-"), p=0.98)], dim=1)
    lengths = torch.tensor([7, 7])
    g = greedy_decode(logits, lengths, CS)
    b = beam_search_decode(logits, lengths, CS)
    assert [t for t, _ in g] == [t for t, _ in b] == ["hello", "aba"]
    # P("hello"): the only alignment with non-negligible mass is the best path, 0.99^7.
    assert b[0][1] == pytest.approx(0.99 ** 7, rel=1e-2)
    assert 0.0 <= b[1][1] <= 1.0


def test_beam_finds_most_probable_labelling_where_best_path_differs():
    # Charset "a": classes (blank, a). Two frames, blank 0.6 and 'a' 0.4 each.
    # Best path: blank, blank -> "" with P = 0.36.
    # P("a") = P(a-) + P(-a) + P(aa) = 0.24 + 0.24 + 0.16 = 0.64 > 0.36.
    cs = Charset("a")
    logits = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()[:, None, :]
    assert greedy_decode(logits, None, cs)[0] == ("", pytest.approx(0.6, abs=1e-6))
    text, p = beam_search_decode(logits, None, cs)[0]
    assert text == "a"
    assert p == pytest.approx(0.64, abs=1e-5)


def test_beam_three_classes_hand_computed():
    # Charset "ab": blank .5, a .4, b .1 in both frames.
    # P("")  = .25; P("a") = .2 + .2 + .16 = .56; P("b") = .05 + .05 + .01 = .11;
    # P("ab") = .04, P("ba") = .04. Greedy says "" (0.5 per frame).
    cs = Charset("ab")
    logits = torch.tensor([[0.5, 0.4, 0.1], [0.5, 0.4, 0.1]]).log()[:, None, :]
    assert greedy_decode(logits, None, cs)[0][0] == ""
    text, p = beam_search_decode(logits, None, cs)[0]
    assert text == "a"
    assert p == pytest.approx(0.56, abs=1e-5)


def test_beam_repeat_needs_blank_and_respects_lengths():
    cs = Charset("ab")
    aa = frames([1, 0, 1, 2, 2], p=0.999, C=3)          # a - a | b b (padding)
    a = frames([1, 1, 1, 2, 2], p=0.999, C=3)           # a a a | b b (padding)
    logits = torch.stack([aa, a], dim=1)
    out = beam_search_decode(logits, torch.tensor([3, 3]), cs)
    assert [t for t, _ in out] == ["aa", "a"]
    full = beam_search_decode(logits, None, cs)
    assert [t for t, _ in full] == ["aab", "ab"]
    for _, p in out + full:
        assert 0.0 <= p <= 1.0 + 1e-9
