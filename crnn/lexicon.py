"""An English word prior for decoding: how much more a run of letters is an English word than random letters.

The prior of a word is a log-likelihood ratio in nats, floored at 0:

    score(w) = max(0, log P_english(w) - log 26 ** -len(w))

where P_english mixes the `wordfreq` unigram frequencies of the top `n_words` English words with a
character 4-gram model (trained on the same words) for the words that are not among them:

    P_english(w) = (1 - oov_mass) * f(w) / sum(f) + oov_mass * P_chars(w)

A common word scores high (`the` +6.9, `register` +15.9, `confidential` +27.4), a misspelling 0 (`thc`,
`reaister`, `confidcntial`), an unknown but English-looking name a little by its letters. The floor at 0
makes the prior one-sided: it vouches for words and never counts against codes, units, abbreviations
or names (`B`, `PC`, `LJS`), which would otherwise be pushed to digits (`8`, `L3S`) that score 0 too.

A text's prior is the sum over its runs of letters (apostrophes inside allowed); runs that a digit
touches are parts of codes (`A3-77`, `120ML`, `T0TAL`) and score 0, like numbers and amounts (`12.50`).
Spaces and punctuation only separate runs, so where they go is decided by the pixels alone
(`Facebook.com` = `Facebook. com`, `tipping-` = `tipping -`). Case is ignored (`THE`, `The`, `the`).

Built from the data inside the `wordfreq` package (no download); `load_prior` caches one per process.
"""

from __future__ import annotations

import math
import re
import string
from functools import lru_cache

import numpy as np

_ALPHABET = "abcdefghijklmnopqrstuvwxyz'"
_END = len(_ALPHABET) + 1                  # symbol ids: 0 = start pad, 1..27 = letters and ', 28 = end
_BASE = 32                                 # ids packed base 32 into one integer per context/event
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")  # a word, lower-cased
_RUN_CHARS = frozenset(string.ascii_letters + "'")   # what a run of letters (a candidate word) is made of
_RUN = re.compile(r"[A-Za-z']+")
_LOG_LETTER = math.log(26)


class CharNgram:
    """Character n-gram model of words: interpolated absolute discounting, backing off to uniform.

    Trained on word types (each word once): the words it is asked about are the ones outside the
    vocabulary, which look like rare words, not like `the`.
    """

    def __init__(self, words, order: int = 4, discount: float = 0.75):
        self.order, self.discount = order, discount
        self.symbols = {c: i + 1 for i, c in enumerate(_ALPHABET)}
        table = np.zeros(256, dtype=np.int64)                       # byte -> symbol id ('^' pads, '$' ends)
        table[np.frombuffer(_ALPHABET.encode(), dtype=np.uint8)] = np.arange(1, len(_ALPHABET) + 1)
        table[ord("$")] = _END
        pad = "^" * (order - 1)
        flat = table[np.frombuffer("".join(pad + w + "$" for w in words).encode("ascii"), dtype=np.uint8)]
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words)) + order
        pos = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # index in its word
        nxt = np.flatnonzero(pos >= order - 1)                       # every predicted symbol
        self.counts, self.totals, self.types = [], [], []
        for k in range(order):                                      # k symbols of context
            ctx = np.zeros(len(nxt), dtype=np.int64)
            for j in range(k, 0, -1):
                ctx = ctx * _BASE + flat[nxt - j]
            keys, n = np.unique(ctx * _BASE + flat[nxt], return_counts=True)
            ctx_keys, inv = np.unique(keys // _BASE, return_inverse=True)
            self.counts.append(dict(zip(keys.tolist(), n.tolist())))
            self.totals.append(dict(zip(ctx_keys.tolist(), np.bincount(inv, weights=n).tolist())))
            self.types.append(dict(zip(ctx_keys.tolist(), np.bincount(inv).tolist())))
        self.uniform = 1.0 / _END

    def prob(self, history: str, symbol: str) -> float:
        """P(symbol | the word so far is history); symbol "$" is the end of the word."""
        seq = [0] * (self.order - 1) + [self.symbols[c] for c in history]
        return self._prob(seq, _END if symbol == "$" else self.symbols[symbol])

    def _prob(self, seq: list[int], symbol: int) -> float:
        D, p, ctx, mult = self.discount, self.uniform, 0, 1
        for k in range(self.order):                                 # lowest order first
            if k:
                ctx += seq[len(seq) - k] * mult
                mult *= _BASE
            n_ctx = self.totals[k].get(ctx)
            if n_ctx:
                n = self.counts[k].get(ctx * _BASE + symbol, 0)
                p = max(n - D, 0.0) / n_ctx + D * self.types[k][ctx] / n_ctx * p
        return p

    def logprob(self, word: str) -> float:
        """log P(word), the end of the word included; word lower-case letters and apostrophes."""
        seq = [0] * (self.order - 1) + [self.symbols[c] for c in word] + [_END]
        return sum(math.log(self._prob(seq[:i], seq[i])) for i in range(self.order - 1, len(seq)))


class WordPrior:
    """English word prior; see the module docstring.

    Args:
        n_words: vocabulary, the most frequent English words of `wordfreq` (letters/apostrophes only).
        oov_mass: probability of a word outside the vocabulary. 1.5% of running English text is outside
            the top 50,000 words; forms hold more names, ids and abbreviations, hence more.
        order: of the character n-gram model for words outside the vocabulary.
    """

    def __init__(self, n_words: int = 50_000, oov_mass: float = 0.05, order: int = 4, lang: str = "en"):
        import wordfreq

        freqs: dict[str, float] = {}
        for index, bucket in enumerate(wordfreq.get_frequency_list(lang)):  # buckets of 1 centibel
            f = 10.0 ** (-index / 100)
            for w in bucket:
                if _WORD.fullmatch(w) and w not in freqs:
                    freqs[w] = f
            if len(freqs) >= n_words:
                break
        words = list(freqs)[:n_words]
        z = sum(freqs[w] for w in words)
        self.oov_mass = oov_mass
        self._in_vocab = {w: math.log(freqs[w] / z) for w in words}
        self._log_in, self._log_oov = math.log1p(-oov_mass), math.log(oov_mass)
        self.chars = CharNgram(words, order=order)
        self._cache: dict[str, float] = {}

    word_chars = _RUN_CHARS                  # what words are made of; any other symbol ends one

    def __len__(self) -> int:
        return len(self._in_vocab)

    def __contains__(self, word: str) -> bool:
        return word.lower() in self._in_vocab

    def word_logprob(self, word: str) -> float:
        """log P_english(word) for a lower-case word (letters and inner apostrophes)."""
        oov = self._log_oov + self.chars.logprob(word)
        lp = self._in_vocab.get(word)
        if lp is None:
            return oov
        a, b = self._log_in + lp, oov
        return max(a, b) + math.log1p(math.exp(-abs(a - b)))

    def llr(self, word: str) -> float:
        """log P_english(word) - log 26 ** -len(word) for a lower-case word; may be negative."""
        return self.word_logprob(word) + _LOG_LETTER * len(word)

    def score(self, word: str) -> float:
        """The prior of one run of letters (apostrophes allowed): max(0, llr), case ignored, outer
        apostrophes stripped. The prior vouches for words, never against a non-word: a code, unit,
        abbreviation or name that is no English word scores 0, like a number, and is left to the pixels.
        """
        s = self._cache.get(word)
        if s is None:
            core = word.strip("'").lower()
            s = max(0.0, self.llr(core)) if _WORD.fullmatch(core) else 0.0
            self._cache[word] = s
        return s

    def closing_score(self, prefix: str, nxt: str) -> float:
        """Score of the run of letters at the end of `prefix` that the character `nxt` closes ("" = the
        end of the text); 0 where prefix does not end in a letter, nxt continues the run, or a digit
        touches the run (`A3`, `120ML`, `T0TAL`: parts of a code). Adding it up character by character
        gives `text_score`, so a beam search can score each word as soon as it is complete.
        """
        if nxt in _RUN_CHARS:
            return 0.0
        i = len(prefix)
        while i and prefix[i - 1] in _RUN_CHARS:
            i -= 1
        if i == len(prefix) or nxt.isdigit() or (i and prefix[i - 1].isdigit()):
            return 0.0
        return self.score(prefix[i:])

    def text_score(self, text: str) -> float:
        """Prior of a text: the sum of `score` over its runs of letters that no digit touches.

        Spaces and punctuation only separate runs, so `Facebook.com` and `Facebook. com`, `tipping-` and
        `tipping -` score the same: where the spaces and symbols go is left to the pixels.
        """
        total = 0.0
        for m in _RUN.finditer(text):
            a, b = m.start(), m.end()
            if not ((a and text[a - 1].isdigit()) or (b < len(text) and text[b].isdigit())):
                total += self.score(m.group())
        return total


@lru_cache(maxsize=4)
def load_prior(n_words: int = 50_000, oov_mass: float = 0.05, order: int = 4, lang: str = "en") -> WordPrior:
    """The prior, built once per process."""
    return WordPrior(n_words=n_words, oov_mass=oov_mass, order=order, lang=lang)
