"""The alphabet the model reads, and the text policy around it.

Policy for characters outside the charset: `normalize` first folds the
typographic variants that scans and annotations are full of (curly quotes,
dashes, ligatures, NBSP, full-width forms: NFKC plus a small table) into ASCII.
Whatever is still outside the charset after that cannot be predicted: `encode`
raises `ValueError` on it, and training skips such labels (see
`Charset.can_encode`).
"""

from __future__ import annotations

import string
import unicodedata

BLANK = 0  # CTC blank is class 0; symbol i of the charset is class i + 1

# 95 symbols: digits, letters, punctuation and the space.
PRINTABLE_ASCII = string.digits + string.ascii_letters + string.punctuation + " "

_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u00a0": " ", "\u2022": "*", "\u00b7": ".",
})


def normalize(text: str) -> str:
    """Fold typographic variants into their ASCII form (NFKC + quotes/dashes)."""
    # Fold before NFKC too: NFKC would otherwise decompose table entries first
    # ('\u00b4' -> ' ' + combining acute, '\u2033' -> two primes) so they never match.
    return unicodedata.normalize("NFKC", text.translate(_FOLD)).translate(_FOLD)


class Charset:
    """Maps text to class ids and back; class 0 is the CTC blank."""

    def __init__(self, symbols: str = PRINTABLE_ASCII):
        if len(set(symbols)) != len(symbols):
            raise ValueError("charset symbols must be unique")
        self.symbols = symbols
        self._index = {c: i + 1 for i, c in enumerate(symbols)}

    @property
    def num_classes(self) -> int:
        """Symbols plus the CTC blank."""
        return len(self.symbols) + 1

    def can_encode(self, text: str) -> bool:
        return all(c in self._index for c in normalize(text))

    def encode(self, text: str) -> list[int]:
        """Class ids of `normalize(text)`; raises ValueError on characters outside the charset."""
        text = normalize(text)
        try:
            return [self._index[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} in {text!r} is outside the charset") from None

    def decode(self, ids) -> str:
        """Text for a sequence of class ids (blanks are skipped, nothing is collapsed)."""
        return "".join(self.symbols[i - 1] for i in ids if i != BLANK)
