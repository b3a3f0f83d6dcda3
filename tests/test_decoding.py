import itertools
import math

import pytest
import torch
from torch.nn import functional as F

from crnn.charset import Charset
from crnn.decoding import beam_search_decode, greedy_decode, lexicon_beam_decode
from crnn.lexicon import load_prior

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


def test_all_blank_is_empty_scored_by_the_blank_path():
    logits = frames([0, 0, 0], p=[0.9, 0.7, 0.8])[:, None, :]
    text, score = greedy_decode(logits, None, CS)[0]
    assert text == ""
    assert score == pytest.approx(0.9 * 0.7 * 0.8, abs=1e-6)   # "" has a single alignment


def test_confidence_sums_every_alignment_of_the_text():
    # Charset "a": classes (blank, a). Frames: a .9 | a .55, blank .45 | blank .8, a .2 -> best path "aa-" = "a".
    # The second frame is split between 'a' and the blank beside it, which is no doubt about the text:
    # P("a") = a-- .324 + -a- .044 + --a .009 + aa- .396 + -aa .011 + aaa .099 = .883 (the weakest frame: .55).
    cs = Charset("a")
    logits = torch.tensor([[0.1, 0.9], [0.45, 0.55], [0.8, 0.2]]).log()[:, None, :]
    assert greedy_decode(logits, None, cs)[0] == ("a", pytest.approx(0.883, abs=1e-5))
    # A doubtful character is doubt about the text: a second 'a' as likely as the blank between them.
    logits = torch.tensor([[0.1, 0.9], [0.55, 0.45], [0.1, 0.9]]).log()[:, None, :]
    text, score = greedy_decode(logits, None, cs)[0]
    # Best path a-a = "aa", its only alignment in 3 frames: .9 * .55 * .9 = .4455.
    assert text == "aa" and score == pytest.approx(0.4455, abs=1e-5)


def test_confidence_from_unnormalised_logits():
    # Raw scores (not log-probs) over Charset("a"): softmax worked out by hand.
    cs = Charset("a")
    logits = torch.tensor([[[0.0, 2.0]], [[1.0, 0.0]]])
    a1, b1 = math.e ** 2 / (1 + math.e ** 2), 1 / (1 + math.e ** 2)     # frame 1: 'a', blank
    b2, a2 = math.e / (1 + math.e), 1 / (1 + math.e)                    # frame 2: blank, 'a'
    text, score = greedy_decode(logits, None, cs)[0]
    assert text == "a"
    assert score == pytest.approx(a1 * b2 + b1 * a2 + a1 * a2, abs=1e-6)  # a-, -a, aa


def _brute_force(probs: torch.Tensor, charset: Charset) -> dict[str, float]:
    """P(text) for every text, by enumerating every path of a (T, C) probability table and collapsing it."""
    totals: dict[str, float] = {}
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        text = charset.decode([c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c)])
        totals[text] = totals.get(text, 0.0) + math.prod(float(probs[t, c]) for t, c in enumerate(path))
    return totals


def test_confidence_is_the_probability_of_the_text_by_enumeration():
    cs = Charset("ab")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 3, generator=g, dtype=torch.float64) * 2    # 5 crops of up to 6 frames
    lengths = torch.tensor([6, 1, 3, 4, 5])
    out = greedy_decode(logits, lengths, cs)
    for b, (text, score) in enumerate(out):
        totals = _brute_force(logits[: lengths[b], b].softmax(-1), cs)     # padding frames do not count
        assert score == pytest.approx(totals[text], abs=1e-6)
        assert sum(totals.values()) == pytest.approx(1.0)


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
    assert out[1][1] == pytest.approx(0.9 * 0.95, abs=1e-5)   # "ab" in 2 frames: one alignment
    for b in range(3):                                          # each crop scores as if decoded alone
        alone = greedy_decode(logits[: lengths[b], b:b + 1], None, CS)[0]
        assert out[b] == (alone[0], pytest.approx(alone[1], abs=1e-6))
    assert 0.0 <= out[3][1] <= 1.0
    # Without lengths the padding frames are decoded and scored.
    full = greedy_decode(logits, None, CS)
    assert full[1][0] == "abh" and full[2][0] == "abo"
    assert full[1][1] < 0.3 ** 3 and full[2][1] < 0.2                        # the doubtful frames now count


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


def test_greedy_accepts_half_precision_logits():
    logits = frames(ids("he-l-lo"), p=0.99)[:, None, :].half()
    text, score = greedy_decode(logits, None, CS)[0]
    assert text == "hello"
    assert score == pytest.approx(0.99 ** 7, rel=1e-2)   # the best path holds nearly all of P("hello")


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
    # Both decoders score P(text); the beam's sum skips the classes it prunes in each frame, so it is a
    # slightly lower bound.
    for (_, pg), (_, pb) in zip(g, b):
        assert pb <= pg and pb == pytest.approx(pg, rel=2e-3)


def test_beam_finds_most_probable_labelling_where_best_path_differs():
    # Charset "a": classes (blank, a). Two frames, blank 0.6 and 'a' 0.4 each.
    # Best path: blank, blank -> "" with P = 0.36.
    # P("a") = P(a-) + P(-a) + P(aa) = 0.24 + 0.24 + 0.16 = 0.64 > 0.36.
    cs = Charset("a")
    logits = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()[:, None, :]
    assert greedy_decode(logits, None, cs)[0] == ("", pytest.approx(0.36, abs=1e-6))
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


# ---- beam search fused with the English word prior ------------------------------------------------

def spread(spec, C=96):
    """(T, C) log-probabilities from one {symbol: probability} per frame ("" is the blank); the rest of
    each frame's mass is shared by the other classes."""
    rows = []
    for probs in spec:
        rest = (1.0 - sum(probs.values())) / (C - len(probs))
        row = torch.full((C,), rest, dtype=torch.float64)
        for sym, p in probs.items():
            row[0 if sym == "" else CS.symbols.index(sym) + 1] = p
        rows.append(row.log())
    return torch.stack(rows)


def word(text, doubt=None, p=0.99):
    """Frames spelling text, a blank after each symbol; doubt = {position: {symbol: p, ...}}."""
    spec = []
    for i, ch in enumerate(text):
        spec += [(doubt or {}).get(i, {ch: p}), {"": p}]
    return spread(spec)


def ctc_probability(log_probs, text):
    """P(text | frames) by F.ctc_loss, for one (T, C) crop."""
    target = torch.tensor([CS.symbols.index(c) + 1 for c in text], dtype=torch.long)
    nll = F.ctc_loss(log_probs[:, None].float(), target[None], torch.tensor([log_probs.shape[0]]),
                     torch.tensor([len(text)]), blank=0, reduction="sum")
    return math.exp(-float(nll))


@pytest.fixture(scope="module")
def prior():
    return load_prior()


def test_lexicon_fixes_a_near_tie_in_a_word(prior):
    logits = word("thc", doubt={2: {"c": 0.5, "e": 0.45}})[:, None]
    assert greedy_decode(logits, None, CS)[0][0] == "thc"
    text, score = lexicon_beam_decode(logits, None, CS, prior)[0]
    assert text == "the"
    assert score == pytest.approx(ctc_probability(logits[:, 0], "the"), rel=1e-4)
    assert score < greedy_decode(logits, None, CS)[0][1]       # the prior chose it, not the pixels


def test_lexicon_fixes_a_letter_inside_a_long_word_and_in_a_line(prior):
    logits = word("confidcntial", doubt={6: {"c": 0.7, "e": 0.28}})[:, None]
    assert lexicon_beam_decode(logits, None, CS, prior)[0][0] == "confidential"
    line = word("reaister thc form", doubt={2: {"a": 0.6, "g": 0.38}, 11: {"c": 0.55, "e": 0.43}})[:, None]
    assert greedy_decode(line, None, CS)[0][0] == "reaister thc form"
    assert lexicon_beam_decode(line, None, CS, prior)[0][0] == "register the form"


def test_lexicon_keeps_what_the_model_is_sure_of(prior):
    logits = word("thc", doubt={2: {"c": 0.985, "e": 0.01}})[:, None]
    assert greedy_decode(logits, None, CS)[0][1] >= 0.9
    assert lexicon_beam_decode(logits, None, CS, prior)[0][0] == "thc"               # gated out
    # Searched too (no gate): 0.985 against 0.01 outweighs the prior at the default alpha.
    assert lexicon_beam_decode(logits, None, CS, prior, gate=1.01)[0][0] == "thc"
    # With no weight on the prior it is CTC prefix beam search alone.
    near = word("thc", doubt={2: {"c": 0.5, "e": 0.45}})[:, None]
    assert lexicon_beam_decode(near, None, CS, prior, alpha=0.0, gate=1.01)[0][0] == "thc"


def test_lexicon_never_changes_digits_codes_and_amounts(prior):
    # Each confusable symbol nearly tied with a letter or digit: the pixels' reading stays, either way.
    cases = [("12.50", {3: {"5": 0.55, "S": 0.44}}), ("12.S0", {3: {"S": 0.55, "5": 0.44}}),
             ("A3-77", {1: {"3": 0.55, "B": 0.44}}), ("10", {0: {"1": 0.5, "l": 0.49}, 1: {"0": 0.5, "o": 0.49}}),
             ("L3S", {1: {"3": 0.6, "J": 0.39}}), ("BRC", {2: {"C": 0.6, "O": 0.39}}),
             ("2019", {i: {d: 0.8, a: 0.19} for i, (d, a) in enumerate(zip("2019", "ZOlg"))})]
    for text, doubt in cases:
        logits = word(text, doubt=doubt)[:, None]
        assert greedy_decode(logits, None, CS)[0][0] == text
        for gate in (0.9, 1.01):
            assert lexicon_beam_decode(logits, None, CS, prior, alpha=1.0, gate=gate)[0][0] == text, text


def test_lexicon_score_is_the_ctc_probability_of_the_returned_text(prior):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(24, 6, 96, generator=g) * 3
    for b, t in enumerate(["the ", "thc", "and", "12.5", "of", "tobaccc"]):   # some mass on real words
        logits[: 2 * len(t), b] += 4 * word(t, p=0.6).float()
    lengths = torch.tensor([24, 9, 17, 5, 24, 20])
    out = lexicon_beam_decode(logits, lengths, CS, prior, gate=1.01)
    assert len(out) == 6
    assert sum(o[0] != g[0] for o, g in zip(out, greedy_decode(logits, lengths, CS))) >= 2   # the beam's own texts
    for b, (text, score) in enumerate(out):
        lp = logits[: lengths[b], b].double().log_softmax(-1)
        assert score == pytest.approx(ctc_probability(lp, text), rel=1e-4, abs=1e-12)
        assert 0.0 <= score <= 1.0


def test_lexicon_gate_leaves_sure_crops_exactly_as_greedy(prior):
    crops = [word("thc", doubt={2: {"c": 0.5, "e": 0.45}}), word("thc"), word("A3-77"),
             word("hello", doubt={1: {"e": 0.7, "a": 0.29}}), word("the form")]
    T = max(c.shape[0] for c in crops)
    logits = torch.stack([torch.cat([c, word("x" * T)[: T - c.shape[0]]]) for c in crops], dim=1).float()
    lengths = torch.tensor([c.shape[0] for c in crops])
    greedy = greedy_decode(logits, lengths, CS)
    out = lexicon_beam_decode(logits, lengths, CS, prior)
    for g, o in zip(greedy, out):
        if g[1] >= 0.9:
            assert o == g                                            # the same text and the same float
    assert out[0][0] == "the" and greedy[0][0] == "thc"
    assert [t for t, _ in out[1:]] == ["thc", "A3-77", "hello", "the form"]


def test_lexicon_alpha_zero_finds_the_most_probable_labelling(prior):
    # As test_beam_three_classes_hand_computed: P("a") = .56 beats greedy's "" (.25).
    cs = Charset("ab")
    logits = torch.tensor([[0.5, 0.4, 0.1], [0.5, 0.4, 0.1]]).log()[:, None, :]
    text, p = lexicon_beam_decode(logits, None, cs, prior, alpha=0.0, gate=1.01)[0]
    assert text == "a" and p == pytest.approx(0.56, abs=1e-5)
    assert lexicon_beam_decode(logits, torch.tensor([0]), cs, prior, gate=1.01)[0][0] == ""


def test_lexicon_many_unsure_crops_in_one_batch(prior):
    # More candidate texts than one rescoring call takes: every crop still decoded and scored alone.
    near = word("thc", doubt={2: {"c": 0.5, "e": 0.45}})
    code = word("A3-77", doubt={1: {"3": 0.55, "B": 0.44}})
    logits = torch.stack([near, code[: near.shape[0]]] * 60, dim=1)
    out = lexicon_beam_decode(logits, None, CS, prior)
    alone = [lexicon_beam_decode(logits[:, b:b + 1], None, CS, prior)[0] for b in range(2)]
    assert [t for t, _ in out] == [t for t, _ in alone] * 60
    assert [s for _, s in out] == pytest.approx([s for _, s in alone] * 60, rel=1e-5)
    assert alone[0][0] == "the"


# --- the numpy path (ONNX Runtime's logits, no PyTorch) ---------------------------------------------------

def test_ctc_log_likelihood_is_torch_ctc_loss():
    """Random frames and targets: repeats, targets too long for their frames (-inf), no frames, no target."""
    import numpy as np

    from crnn.decoding import ctc_log_likelihood

    rng = np.random.default_rng(0)
    for trial in range(150):
        T, B, C = int(rng.integers(1, 30)), int(rng.integers(1, 5)), 6
        lp = (torch.randn(T, B, C, dtype=torch.float64) * 3).log_softmax(-1)
        lengths = rng.integers(0, T + 1, B)
        targets = [rng.integers(1, C, int(rng.integers(0, min(8, T) + 1))).tolist() for _ in range(B)]
        if trial % 3 == 0:
            targets = [t[:1] * 2 + t[2:] if len(t) > 1 else t for t in targets]
        got = ctc_log_likelihood(lp.numpy(), targets, lengths)
        want = -F.ctc_loss(lp, torch.tensor([c for t in targets for c in t], dtype=torch.long), torch.tensor(lengths),
                           torch.tensor([len(t) for t in targets]), blank=0, reduction="none").numpy()
        assert np.array_equal(np.isinf(got), np.isinf(want)), (trial, got, want)
        assert np.allclose(got[~np.isinf(got)], want[~np.isinf(want)], rtol=1e-9, atol=1e-9), (trial, got, want)


@pytest.mark.parametrize("decoder", ["greedy", "lexicon", "beam"])
def test_numpy_logits_decode_as_torch_logits(decoder):
    """The same logits as a numpy array (ONNX Runtime's) or a tensor: the same texts, scores within float
    rounding; peaked frames so that the texts are words and some are unsure (the lexicon's beam search runs)."""
    import numpy as np

    g = torch.Generator().manual_seed(0)
    T, B = 24, 16
    best = torch.randint(0, 30, (T, B), generator=g) * (torch.rand(T, B, generator=g) < 0.6)
    logits = torch.randn(T, B, 96, generator=g) + 6.0 * F.one_hot(best, 96) * torch.rand(T, B, 1, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    prior = load_prior()
    run = {"greedy": lambda x, n: greedy_decode(x, n, CS),
           "lexicon": lambda x, n: lexicon_beam_decode(x, n, CS, prior),
           "beam": lambda x, n: beam_search_decode(x, n, CS)}[decoder]
    a, b = run(logits, lengths), run(logits.numpy(), lengths.numpy())
    assert [t for t, _ in a] == [t for t, _ in b]
    assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-5)
    assert any(s < 0.9 for _, s in a) and any(t for t, _ in a)       # unsure crops, and texts, among them
