"""CTC decoding: per-frame class scores -> text and a confidence in [0, 1].

Confidence: the model's probability of the decoded text, summed over all its
CTC alignments (what `nn.CTCLoss` computes), from either decoder. Not the best
path alone, nor its weakest frame (docTR's definition, this project's until
2026-11-24): a frame split between a character and the blank beside it is no
doubt about the text, and counting it as one ranked right and wrong reads
about half as well (MODEL.md, "Confidence").
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from crnn.charset import BLANK, Charset


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor | None, charset: Charset) -> list[tuple[str, float]]:
    """Best path decoding of a whole batch at once.

    Args:
        logits: (T, B, C) unnormalised scores (or log-probabilities).
        lengths: (B,) valid frames per crop (frames past it are padding); None means all T.
        charset: maps class ids to symbols.
    Returns:
        One (text, confidence) per crop.
    """
    log_probs = logits.float().log_softmax(-1)
    best = log_probs.argmax(-1)                                   # (T, B)
    T, B = best.shape
    lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.long().cpu()
    valid = torch.arange(T, device=best.device)[:, None] < lengths.to(best.device)[None, :]
    prev = torch.cat([torch.full_like(best[:1], BLANK), best[:-1]])
    keep = (best != BLANK) & (best != prev) & valid              # collapse repeats, drop blanks
    targets = best.T[keep.T]                                      # the decoded texts, concatenated
    nll = F.ctc_loss(log_probs, targets, lengths, keep.sum(0).cpu(), blank=BLANK, reduction="none")
    scores = (-nll).exp().clamp(0.0, 1.0)
    best, keep, scores = best.T.cpu().numpy(), keep.T.cpu().numpy(), scores.cpu().numpy()
    symbols = np.array(list(" " + charset.symbols))               # index 0 (blank) is never kept
    return [("".join(symbols[best[b][keep[b]]]), float(scores[b])) for b in range(B)]


def beam_search_decode(logits: torch.Tensor, lengths: torch.Tensor | None, charset: Charset,
                       beam_width: int = 8) -> list[tuple[str, float]]:
    """CTC prefix beam search (sums over alignments; slower, rarely better than greedy without a language model).

    Returns one (text, probability of that text under the model) per crop.
    """
    log_probs = logits.float().log_softmax(-1).cpu().numpy()     # (T, B, C)
    T, B, _ = log_probs.shape
    out = []
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        beams = {(): (0.0, -math.inf)}                            # prefix -> (log P ending in blank, ending in symbol)
        for t in range(n):
            lp = log_probs[t, b]
            # Only classes that can matter: the top few this frame.
            cands = np.argsort(lp)[-beam_width:]
            nxt: dict[tuple, list[float]] = {}
            for prefix, (pb, pnb) in beams.items():
                total = np.logaddexp(pb, pnb)
                for c in cands:
                    p = lp[c]
                    if c == BLANK:
                        e = nxt.setdefault(prefix, [-math.inf, -math.inf])
                        e[0] = np.logaddexp(e[0], total + p)
                        continue
                    ext = prefix + (int(c),)
                    e = nxt.setdefault(ext, [-math.inf, -math.inf])
                    if prefix and prefix[-1] == c:                # a repeat needs a blank in between
                        e[1] = np.logaddexp(e[1], pb + p)
                        same = nxt.setdefault(prefix, [-math.inf, -math.inf])
                        same[1] = np.logaddexp(same[1], pnb + p)
                    else:
                        e[1] = np.logaddexp(e[1], total + p)
            beams = dict(sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam_width])
        prefix, (pb, pnb) = max(beams.items(), key=lambda kv: np.logaddexp(*kv[1]))
        out.append((charset.decode(prefix), float(math.exp(np.logaddexp(pb, pnb)))))
    return out
