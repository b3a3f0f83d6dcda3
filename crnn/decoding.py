"""CTC decoding: per-frame class scores -> text and a confidence in [0, 1].

Confidence: the model's probability of the decoded text, summed over all its
CTC alignments (what `nn.CTCLoss` computes), from either decoder. Not the best
path alone, nor its weakest frame (docTR's definition, and this project's
earlier one): a frame split between a character and the blank beside it is no
doubt about the text, and counting it as one ranked right and wrong reads
about half as well (MODEL_HISTORY.md, "Confidence").

`lexicon_beam_decode` also weighs an English word prior (`crnn.lexicon`) into the choice of the text,
but not into its confidence: that stays P(text | crop).

`greedy_decode` and `lexicon_beam_decode` take torch tensors (on any device: on a GPU the argmax, the
collapse and the CTC scoring run there, and only the texts' indices and scores come back) or numpy arrays
(what ONNX Runtime returns), decoded without PyTorch: a model actor on the ONNX backend never imports it.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from crnn.charset import BLANK, Charset


def greedy_decode(logits, lengths, charset: Charset) -> list[tuple[str, float]]:
    """Best path decoding of a whole batch at once.

    Args:
        logits: (T, B, C) unnormalised scores (or log-probabilities), a torch tensor or a numpy array.
        lengths: (B,) valid frames per crop (frames past it are padding), tensor or array; None means all T.
        charset: maps class ids to symbols.
    Returns:
        One (text, confidence) per crop.
    """
    if isinstance(logits, np.ndarray):
        return _greedy_np(log_softmax(logits), _lengths(lengths, logits), charset)
    return _greedy(logits.float().log_softmax(-1), lengths, charset)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis, float32."""
    x = logits.astype(np.float32, copy=False)
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _lengths(lengths, log_probs: np.ndarray) -> np.ndarray:
    T, B = log_probs.shape[:2]
    return np.full(B, T, np.int64) if lengths is None else np.asarray(lengths, np.int64).reshape(B)


def ctc_log_likelihood(log_probs: np.ndarray, targets: list, lengths: np.ndarray) -> np.ndarray:
    """log P(target | frames) of each column, summed over all its CTC alignments (what `torch.nn.CTCLoss`
    computes, negated), by the forward algorithm in float64, all columns at once.

    Args:
        log_probs: (T, B, C) log-probabilities.
        targets: B sequences of class ids (no blanks).
        lengths: (B,) valid frames of each column.
    Returns:
        (B,) float64; -inf where the target cannot be read in its frames.
    """
    T, B, _ = log_probs.shape
    n = np.array([len(t) for t in targets], np.int64)
    S = 2 * int(n.max(initial=0)) + 1                             # states: blank, symbol, blank, ...
    ext = np.full((B, S), BLANK, np.int64)
    for b, t in enumerate(targets):
        ext[b, 1:2 * len(t):2] = t
    steps = min(T, int(lengths.max(initial=0)))
    # Probabilities, not logs, rescaled to sum to 1 at every frame (Graves et al. 2006): the scales' logs add up
    # to the likelihood, and the recursion needs only sums and products. Each state's probability at every
    # frame, 0 past a column's own states, so that nothing reaches them:
    emit = np.exp(log_probs[:steps, np.arange(B)[:, None], ext].astype(np.float64))   # (steps, B, S)
    emit[:, np.arange(S)[None, :] >= (2 * n + 1)[:, None]] = 0.0
    skip = np.zeros((B, S))                                       # s-2 -> s only between two different symbols
    skip[:, 2:][(ext[:, 2:] != BLANK) & (ext[:, 2:] != ext[:, :-2])] = 1.0
    alpha = np.zeros((B, S))
    one, two = alpha.copy(), alpha.copy()
    log_scale = np.zeros(B)
    with np.errstate(divide="ignore", invalid="ignore"):         # a column no path reaches: scale 0, log -inf
        for t in range(steps):
            if t:
                one[:, 1:] = alpha[:, :-1]
                two[:, 2:] = alpha[:, :-2]
                step = (alpha + one + two * skip) * emit[t]
            else:
                step = np.zeros((B, S))
                step[:, :2] = emit[0, :, :2]
            active = t < lengths
            scale = step.sum(1)
            alpha = np.where(active[:, None], step / scale[:, None], alpha)
            log_scale += np.where(active, np.log(scale), 0.0)
        cols = np.arange(B)
        end = alpha[cols, 2 * n] + np.where(n > 0, alpha[cols, np.maximum(2 * n - 1, 0)], 0.0)
        ll = log_scale + np.log(end)
    ll = np.where(np.isnan(ll), -np.inf, ll)
    return np.where(lengths > 0, ll, np.where(n == 0, 0.0, -np.inf))


def _greedy_np(log_probs: np.ndarray, lengths: np.ndarray, charset: Charset) -> list[tuple[str, float]]:
    """`greedy_decode` of (T, B, C) numpy log-probabilities."""
    best = log_probs.argmax(-1)                                   # (T, B)
    T, B = best.shape
    valid = np.arange(T)[:, None] < lengths[None, :]
    prev = np.concatenate([np.full((1, B), BLANK), best[:-1]])
    keep = ((best != BLANK) & (best != prev) & valid).T           # (B, T)
    targets = [row[k] for row, k in zip(best.T, keep)]
    scores = np.clip(np.exp(ctc_log_likelihood(log_probs, targets, lengths)), 0.0, 1.0)
    symbols = np.array(list(" " + charset.symbols))               # index 0 (blank) is never kept
    return [("".join(symbols[t]), float(p)) for t, p in zip(targets, scores)]


def _greedy(log_probs, lengths, charset: Charset) -> list[tuple[str, float]]:
    """`greedy_decode` of (T, B, C) torch log-probabilities."""
    import torch
    from torch.nn import functional as F

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


def beam_search_decode(logits, lengths, charset: Charset, beam_width: int = 8) -> list[tuple[str, float]]:
    """CTC prefix beam search (sums over alignments; slower, rarely better than greedy without a language model).

    Returns one (text, probability of that text under the model) per crop.
    """
    log_probs = (log_softmax(logits) if isinstance(logits, np.ndarray)
                 else logits.float().log_softmax(-1).cpu().numpy())     # (T, B, C)
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


_NEG = -math.inf


def _lse(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) on Python floats."""
    if a < b:
        a, b = b, a
    return a if b == _NEG else a + math.log1p(math.exp(b - a))


def _fused_beam(lp: np.ndarray, symbols: str, prior, beam_width: int, alpha: float, min_logp: float,
                blank_logp: float, n_best: int) -> list[str]:
    """CTC prefix beam search over one crop's (n, C) log-probabilities, fused with a word prior.

    A beam's rank is log P(prefix) + alpha * (prior scores of the words it has completed: a word is
    scored when the character after it arrives, the last one at the end; `WordPrior.closing_score`).
    Frames where the blank holds at least exp(blank_logp) only extend each prefix by a blank; elsewhere
    only the classes of log-probability >= min_logp (at most beam_width of them) are tried.
    Returns the n_best texts by fused score.
    """
    # prefix -> [log P(prefix, ending in a blank), log P(prefix, ending in its last symbol), alpha * prior]
    beams: dict[str, list[float]] = {"": [0.0, _NEG, 0.0]}
    top = np.argsort(-lp, axis=1)[:, :beam_width]
    letters = prior.word_chars                                # a word goes on: nothing to score yet
    skip = 0.0                                                 # blank log-prob of skipped frames, pending
    for t in range(lp.shape[0]):
        row = lp[t]
        if row[0] >= blank_logp:
            skip += float(row[0])
            continue
        if skip:
            for e in beams.values():
                e[0], e[1] = _lse(e[0], e[1]) + skip, _NEG
            skip = 0.0
        cands = [(int(c), float(row[c]), symbols[c]) for c in top[t] if row[c] >= min_logp]
        nxt: dict[str, list[float]] = {}
        for prefix, (pb, pnb, lm) in beams.items():
            total = _lse(pb, pnb)
            last = prefix[-1:]
            closes = last in letters                           # a symbol other than a letter ends a word
            for c, p, ch in cands:
                if c == BLANK:
                    e = nxt.get(prefix)
                    if e is None:
                        nxt[prefix] = [total + p, _NEG, lm]
                    else:
                        e[0] = _lse(e[0], total + p)
                    continue
                ext = prefix + ch
                e = nxt.get(ext)
                if e is None:
                    bonus = alpha * prior.closing_score(prefix, ch) if closes and ch not in letters else 0.0
                    e = nxt[ext] = [_NEG, _NEG, lm + bonus]
                if ch == last:                                 # a repeat needs a blank in between
                    e[1] = _lse(e[1], pb + p)
                    same = nxt.get(prefix)
                    if same is None:
                        nxt[prefix] = [_NEG, pnb + p, lm]
                    else:
                        same[1] = _lse(same[1], pnb + p)
                else:
                    e[1] = _lse(e[1], total + p)
        if len(nxt) > beam_width:
            ranked = sorted(((_lse(e[0], e[1]) + e[2], k) for k, e in nxt.items()), reverse=True)
            nxt = {k: nxt[k] for _, k in ranked[:beam_width]}
        beams = nxt
    final = {prefix: _lse(pb, pnb) + skip + lm + alpha * prior.closing_score(prefix, "")
             for prefix, (pb, pnb, lm) in beams.items()}
    return heapq.nlargest(n_best, final, key=final.get)


GATE = 0.9   # greedy score below which the lexicon decoder searches a crop


def lexicon_beam_decode(logits, lengths, charset: Charset, prior, *,
                        alpha: float = 0.3, gate: float = GATE, beam_width: int = 12, n_best: int = 4,
                        min_prob: float = 1e-3, blank_skip: float = 0.999) -> list[tuple[str, float]]:
    """Greedy decoding, and for the unsure crops a CTC prefix beam search fused with a word prior.

    Crops whose greedy reading scores >= gate keep it, exactly. The others are searched for the text that
    maximises log P(text | crop) + alpha * prior.text_score(text) (`crnn.lexicon.WordPrior`: how much more
    its words are English words than random letters; 0 for numbers, codes, amounts and non-words, so
    those are read by the pixels alone). The beam's n_best texts and the greedy one are then rescored
    with their exact CTC probabilities (batched `F.ctc_loss`) and the best fused one is returned.

    Args:
        logits, lengths, charset: as for `greedy_decode`.
        prior: has `word_chars`, `closing_score(prefix, next_char)` and `text_score(text)` (in nats),
            e.g. `crnn.lexicon.load_prior()`.
        alpha: weight of the prior against the model's log-probability (0: CTC beam search alone).
        gate: greedy score below which a crop is searched.
        beam_width, min_prob, blank_skip: search breadth; classes under min_prob in a frame are not
            tried, frames where the blank holds >= blank_skip only extend by a blank.
    Returns:
        One (text, confidence) per crop; confidence is P(text | crop) summed over alignments, the prior
        left out, as from `greedy_decode`.
    """
    T, B = logits.shape[:2]
    if isinstance(logits, np.ndarray):
        lengths = _lengths(lengths, logits)
        all_log_probs = log_softmax(logits)
        out = _greedy_np(all_log_probs, lengths, charset)
    else:
        import torch
        lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.long().cpu()
        all_log_probs = logits.float().log_softmax(-1)
        out = _greedy(all_log_probs, lengths, charset)
    unsure = [b for b, (_, score) in enumerate(out) if score < gate]
    if not unsure:
        return out
    log_probs = all_log_probs[:, unsure]                      # (T, U, C)
    lp = log_probs if isinstance(log_probs, np.ndarray) else log_probs.cpu().numpy()
    symbols = " " + charset.symbols                           # index 0 (blank) is never emitted
    cands: list[list[str]] = []
    for u, b in enumerate(unsure):
        texts = _fused_beam(lp[: int(lengths[b]), u], symbols, prior, beam_width, alpha,
                            math.log(min_prob), math.log(blank_skip), n_best)
        cands.append(list(dict.fromkeys([out[b][0], *texts])))  # the greedy text first, no duplicates
    # Exact log P(text | crop) of every candidate, all crops at once (256 texts a call bound the memory).
    index = {c: i + 1 for i, c in enumerate(charset.symbols)}
    cols = [u for u, texts in enumerate(cands) for _ in texts]
    flat = [t for texts in cands for t in texts]
    frames = lengths[unsure]
    ctc: list[float] = []
    for s in range(0, len(flat), 256):
        part, at = flat[s:s + 256], cols[s:s + 256]
        if isinstance(log_probs, np.ndarray):
            ctc += ctc_log_likelihood(log_probs[:, at], [[index[c] for c in t] for t in part], frames[at]).tolist()
            continue
        import torch
        from torch.nn import functional as F
        targets = torch.tensor([index[c] for t in part for c in t], dtype=torch.long, device=log_probs.device)
        nll = F.ctc_loss(log_probs[:, at], targets, frames[at], torch.tensor([len(t) for t in part]),
                         blank=BLANK, reduction="none")
        ctc += (-nll).cpu().tolist()
    k = 0
    for u, b in enumerate(unsure):
        n = len(cands[u])
        fused = [ctc[k + i] + alpha * prior.text_score(t) for i, t in enumerate(cands[u])]
        i = max(range(n), key=fused.__getitem__)
        if i:                                                  # i == 0: the greedy text, as greedy scored it
            out[b] = (cands[u][i], float(min(1.0, math.exp(ctc[k + i]))))
        k += n
    return out
