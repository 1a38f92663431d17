"""Text generation: greedy decoding, sampling (temperature, top-k, top-p, repetition penalty,
n-gram blocking) and beam search, with a KV cache, following Hugging Face's ``generate``.

Two loops share one picture of the model, a *steps adapter* (``DecoderOnlySteps`` for GPT,
``EncoderDecoderSteps`` for a translation/summarisation model) that holds the sequences so far
and answers one question: "what are the next-token logits of each row?"

    greedy / sampling:  logits (N, V) -> repetition penalty -> n-gram ban -> / temperature ->
                        top-k -> top-p -> softmax -> sample (or argmax) -> append, repeat
    beam search:        log_softmax (N, V) -> repetition penalty -> n-gram ban -> add each
                        beam's score -> keep the best continuations of all beams -> those that
                        end (eos, max length) become finished hypotheses, the rest the next
                        beams -> reorder the rows (and the cache) to the survivors, repeat

With the KV cache the model sees only the new token each step and reuses the keys and values
of the earlier ones; without it the whole sequence is recomputed every step.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from . import backend
from .autograd import no_grad
from .nn.attention import KVCache
from .tensor import Tensor


# Hugging Face's defaults for what neither the call nor the model's generation_config.json
# sets (transformers' GenerationConfig._get_default_generation_params).
HF_DEFAULTS = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
               "repetition_penalty": 1.0, "num_return_sequences": 1, "num_beams": 1,
               "length_penalty": 1.0, "early_stopping": False, "no_repeat_ngram_size": 0}
DEFAULT_NEW_TOKENS = 20
# Beam search's "impossible" score, as in transformers: finite, so that adding it to a
# log-probability keeps the order among such candidates (-inf would make them all equal).
NEG = -1.0e9


def generate(model, input_ids, attention_mask=None, max_length: int | None = None,
             max_new_tokens: int | None = None, num_return_sequences: int | None = None,
             do_sample: bool | None = None, temperature: float | None = None,
             top_k: int | None = None, top_p: float | None = None,
             repetition_penalty: float | None = None, no_repeat_ngram_size: int | None = None,
             num_beams: int | None = None, length_penalty: float | None = None,
             early_stopping: bool | str | None = None, eos_token_id=None,
             pad_token_id: int | None = None, decoder_start_token_id: int | None = None,
             use_cache: bool = True) -> Tensor:
    """Continue each prompt in ``input_ids`` (B, T) (or (T,)) and return the prompts with
    their continuations, (B * num_return_sequences, T + new) int64 ids -- as transformers'
    ``model.generate`` does.  For an encoder-decoder model (``model.is_encoder_decoder``)
    ``input_ids`` are the sources and the result is the decoder's sequences, (B *
    num_return_sequences, 1 + new), each starting with ``decoder_start_token_id``.

    Every option left None takes the model's default (its ``generation_config.json`` and the
    token ids in its config), then Hugging Face's: greedy decoding (``do_sample=False``,
    ``num_beams=1``), and when sampling ``top_k=50`` (0 turns it off), ``top_p=1``,
    ``temperature=1``.  Lengths: ``max_new_tokens`` counts new tokens; ``max_length`` counts
    the prompt too (for an encoder-decoder: the decoder's start token); with neither, 20 new
    tokens, at most up to the model's context (``block_size``, ``tgt_block_size``).  A
    sequence that emits the end-of-text id (``eos_token_id``: one id or a list, default the
    model's) stops there and is padded with ``pad_token_id`` (default: the first eos id).

    ``num_beams > 1``: beam search (deterministic; ``do_sample=True`` with beams is refused).
    A finished hypothesis scores sum(log p) / (new tokens) ** ``length_penalty`` (> 0 favours
    longer ones); ``early_stopping``: True stops an input once it has ``num_beams`` finished
    hypotheses, False when a heuristic says none can be beaten, "never" when none can be
    (the canonical algorithm).  ``num_return_sequences`` (<= num_beams) best hypotheses per
    input come back, best first.  ``no_repeat_ngram_size=n`` forbids any n-gram to occur
    twice in a row's sequence (prompt included), in every mode.

    ``attention_mask`` (B, T), 1 for real tokens and 0 for padding, lets prompts of different
    lengths run in one batch: pad them on the LEFT (an encoder-decoder's sources: either
    side); each row then generates exactly what it would alone.  Left None, it is read from
    ``pad_token_id`` where that id occurs in ``input_ids`` (and is not an eos id).  Unlike
    transformers, a decoder-only sequence that outgrows ``block_size`` keeps going with its
    last ``block_size`` tokens in view (nanoGPT's crop) instead of failing; an
    encoder-decoder's may not outgrow ``tgt_block_size`` (asking for more is an error).
    """
    ids = _as_ids(input_ids)                                        # (B, T) numpy int64
    B, T = ids.shape
    if T == 0:
        raise ValueError("generate: the prompt is empty; give at least one token")
    o = _settings(model, dict(max_length=max_length, max_new_tokens=max_new_tokens,
                              num_return_sequences=num_return_sequences, do_sample=do_sample,
                              temperature=temperature, top_k=top_k, top_p=top_p,
                              repetition_penalty=repetition_penalty,
                              no_repeat_ngram_size=no_repeat_ngram_size, num_beams=num_beams,
                              length_penalty=length_penalty, early_stopping=early_stopping,
                              eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                              decoder_start_token_id=decoder_start_token_id))
    seq2seq = getattr(model, "is_encoder_decoder", False)
    config = model.config
    if seq2seq:     # the decoder's prompt is its start token, its context tgt_block_size
        new = _new_tokens(o, 1, config.tgt_block_size, hard_limit=True)
    else:
        new = _new_tokens(o, T, config.block_size)
    _check_options(new, o)
    vocab = config.tgt_vocab_size if seq2seq else config.vocab_size
    eos = _id_list("eos_token_id", o["eos_token_id"], vocab)
    pad = o["pad_token_id"] if o["pad_token_id"] is not None else (eos[0] if eos else None)
    mask = _prompt_mask(attention_mask, ids, pad, eos, left_padded=not seq2seq)  # (B, T)|None
    rows = max(o["num_beams"], o["num_return_sequences"])           # copies of each input
    was_training = model.training
    model.eval()                # no dropout while generating
    try:
        with no_grad():
            if seq2seq:
                start = _start_token(o, vocab)
                steps = EncoderDecoderSteps(model, ids, mask, rows, start, use_cache)
            else:
                steps = DecoderOnlySteps(model, ids, mask, rows, use_cache)
            if o["num_beams"] == 1:
                out = _greedy_or_sample(steps, new, o, eos, pad)
            else:
                out = _beam_search(steps, new, B, o, eos, pad)
    finally:
        model.train(was_training)
    return Tensor(out, device=_device(model))


# --- the model behind one interface -------------------------------------------------------
# A steps adapter holds N rows being generated and offers:
#   sequences           (N, L) int64 numpy: each row's tokens so far (what is returned)
#   vocab_size          the number of next-token logits
#   scores()            -> (N, V) float64 numpy: the next-token logits of every row (the model
#                       runs on the tokens its cache lacks: all of them the first time, then
#                       only the newest)
#   append(tokens)      tokens (N,): one new token per row
#   reorder(index)      index (N_new,): keep rows ``index`` in that order, cache included
#                       (beam search continues each survivor from the beam it extends)
class DecoderOnlySteps:
    """GPT-style: the prompt and its continuation are one sequence; a KV cache of the window
    in view; left padding masked out and skipped by the positions."""

    def __init__(self, model, ids, mask, rows: int, use_cache: bool):
        self.model, self.use_cache = model, use_cache
        self.block_size = model.config.block_size
        self.vocab_size = model.config.vocab_size
        self.sequences = np.repeat(ids, rows, axis=0)               # (N, T) input b -> rows
        self.mask = None if mask is None else np.repeat(mask, rows, axis=0)   # (N, T) bool
        self.cache = None
        self.start = 0          # the first position of the window the cache holds

    def scores(self) -> np.ndarray:
        L = self.sequences.shape[1]
        if self.cache is None or L - self.start > self.block_size:
            # First step, no cache, or the window is full: with absolute position embeddings
            # a sliding window changes every position, so the cache is rebuilt from the
            # cropped sequence (the same work as without a cache).
            self.start = max(0, L - self.block_size)
            self.cache = KVCache(self.model.config.n_layer) if self.use_cache else None
            fed = self.sequences[:, self.start:]                    # (N, window)
        else:
            fed = self.sequences[:, self.start + len(self.cache):]  # only what is not cached
        kwargs = {}
        if self.mask is not None:   # padding: mask its keys, count positions past it
            window = self.mask[:, self.start:]                      # (N, keys)
            positions = np.maximum(np.cumsum(window, axis=1) - 1, 0)
            positions[~window] = 1                                  # HF's filler for padding
            kwargs = dict(attention_mask=window, position_ids=positions[:, -fed.shape[1]:])
        logits, _ = self.model(fed, kv_cache=self.cache, **kwargs)  # ids checked on host
        return _last_position(logits)

    def append(self, tokens):
        self.sequences = np.concatenate([self.sequences, tokens[:, None]], axis=1)
        if self.mask is not None:
            self.mask = np.concatenate([self.mask, np.ones((len(tokens), 1), bool)], axis=1)

    def reorder(self, index):
        self.sequences = self.sequences[index]
        self.mask = None if self.mask is None else self.mask[index]
        if self.cache is not None:
            self.cache.reorder(index)


class EncoderDecoderSteps:
    """Translation / summarisation: the source is encoded ONCE into ``memory``, which every
    decoder step reads; the decoder's sequences start with ``decoder_start_token_id``.

    The model offers ``encode(ids (B, Ts), mask (B, Ts) | None) -> memory (B, Ts, C)``,
    ``new_cache()`` (``len(cache)``: positions cached; ``cache.reorder(index)``) and
    ``decode(ids (N, T_new), memory (N, Ts, C), mask, cache=cache) -> logits (N, T_new, V)``,
    and in its config ``tgt_vocab_size`` and ``tgt_block_size``."""

    def __init__(self, model, ids, mask, rows: int, start: int, use_cache: bool):
        self.model, self.use_cache = model, use_cache
        self.vocab_size = model.config.tgt_vocab_size
        memory = model.encode(ids, mask)                            # (B, Ts, C)
        copies = np.repeat(np.arange(len(ids)), rows)               # input b -> rows
        self.memory = memory[memory.xp.asarray(copies)]             # (N, Ts, C)
        self.mask = None if mask is None else mask[copies]          # (N, Ts) bool
        self.copies = copies                                        # (N,) each row's source
        self.sequences = np.full((len(copies), 1), start, dtype=np.int64)   # (N, 1)
        self.cache = model.new_cache() if use_cache else None

    def scores(self) -> np.ndarray:
        if self.cache is None:      # recompute the whole decoder sequence
            fed = self.sequences
        else:
            fed = self.sequences[:, len(self.cache):]               # (N, new) only the new
        logits = self.model.decode(fed, self.memory, self.mask, cache=self.cache)
        return _last_position(logits)

    def append(self, tokens):
        self.sequences = np.concatenate([self.sequences, tokens[:, None]], axis=1)

    def reorder(self, index):
        self.sequences = self.sequences[index]
        # Beam search moves rows only among the copies of one source, which share the same
        # memory, mask and cross-attention keys/values: copying those would change nothing.
        copies = self.copies
        same_source = len(index) == len(copies) and bool((copies[index] == copies).all())
        if not same_source:
            rows = self.memory.xp.asarray(index)
            self.memory = self.memory[rows]
            self.mask = None if self.mask is None else self.mask[index]
            self.copies = copies[index]
        if self.cache is not None:
            self.cache.reorder(index, cross=not same_source)


def _last_position(logits: Tensor) -> np.ndarray:
    """(N, T, V) logits -> the last position's, (N, V) float64 on the host."""
    return backend.to_numpy(logits.data[:, -1, :]).astype(np.float64)


# --- greedy decoding and sampling --------------------------------------------------------
def _greedy_or_sample(steps, new: int, o: dict, eos: list, pad) -> np.ndarray:
    """One token per row per step; a row that has emitted eos gets ``pad`` from then on,
    and generation stops as soon as every row has."""
    options = {k: o[k] for k in ("do_sample", "temperature", "top_k", "top_p",
                                 "repetition_penalty", "no_repeat_ngram_size")}
    finished = np.zeros(len(steps.sequences), dtype=bool)          # (N,)
    for _ in range(new):
        nxt = next_token(steps.scores(), steps.sequences, **options)   # (N,)
        if eos:
            nxt = np.where(finished, pad, nxt)
            finished |= np.isin(nxt, eos)
        steps.append(nxt)
        if eos and finished.all():
            break
    return steps.sequences


def next_token(scores, ids, do_sample=True, temperature=1.0, top_k=None, top_p=None,
               repetition_penalty=1.0, no_repeat_ngram_size=0):
    """Pick one token per row from the last position's logits ``scores`` (N, V); ``ids``
    (N, T) are the tokens so far (for the repetition penalty and the n-gram ban)."""
    scores = process_scores(scores, ids, repetition_penalty, no_repeat_ngram_size)
    if not do_sample:
        return scores.argmax(axis=-1)
    scores = scores / temperature
    if top_k and top_k < scores.shape[-1]:                          # 0 or None: no filter
        kth = np.sort(scores, axis=-1)[:, -top_k][:, None]         # the k-th largest per row
        scores = np.where(scores < kth, -np.inf, scores)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)                      # (N, V)
    if top_p is not None and top_p < 1.0:
        # Nucleus: keep the most likely tokens until their total reaches top_p (always >= 1).
        order = np.argsort(-probs, axis=-1)
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p            # mass of the better ones
        drop = np.zeros_like(probs, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p, axis=-1)
        probs = np.where(drop, 0.0, probs)
        probs /= probs.sum(axis=-1, keepdims=True)
    # Inverse-CDF sampling with the library's seeded generator (manual_seed repeats it).
    # u is scaled by the row's actual total (rounding leaves it a hair off 1) and the first
    # token whose cumulative mass exceeds it wins, so a zero-probability token (cut by top-k,
    # top-p or an underflowing temperature) can never be picked, even at u = 0 or u -> 1.
    cdf = np.cumsum(probs, axis=-1)                                 # (N, V)
    u = backend.generator("cpu").random((len(probs), 1))
    return (cdf <= u * cdf[:, -1:]).sum(axis=-1)


def process_scores(scores, ids, repetition_penalty=1.0, no_repeat_ngram_size=0):
    """Transformers' logits processors that do not depend on sampling, in its order, on a
    copy of ``scores`` (N, V): logits when decoding greedily or sampling, log-probabilities in
    beam search.  ``ids`` (N, T): each row's tokens so far, prompt (and its padding)
    included."""
    scores = np.array(scores, dtype=np.float64)
    if repetition_penalty != 1.0:
        # CTRL's penalty: make every token already present less likely (divide a positive
        # score, multiply a negative one, so both move down).
        rows = np.arange(len(ids))[:, None]
        seen = scores[rows, ids]                                    # (N, T)
        scores[rows, ids] = np.where(seen > 0, seen / repetition_penalty,
                                     seen * repetition_penalty)
    if no_repeat_ngram_size:
        scores[_repeated_ngram_ends(ids, no_repeat_ngram_size, scores.shape[-1])] = -np.inf
    return scores


def _repeated_ngram_ends(ids, n: int, vocab_size: int) -> np.ndarray:
    """(N, V) bool: the tokens that would complete an n-gram already in the row.  A next
    token completes the n-gram (last n-1 tokens, token); each earlier window of n tokens
    that starts with those n-1 tokens bans its own last token."""
    N, L = ids.shape
    banned = np.zeros((N, vocab_size), dtype=bool)
    if L < n:                   # not one complete n-gram yet
        return banned
    windows = np.lib.stride_tricks.sliding_window_view(ids, n, axis=1)  # (N, L-n+1, n)
    suffix = ids[:, L - n + 1:]                                     # (N, n-1)
    match = (windows[:, :, :-1] == suffix[:, None, :]).all(axis=-1)    # (N, L-n+1)
    row, w = np.nonzero(match)
    token = windows[row, w, -1]
    inside = token < vocab_size     # an id the head cannot produce needs no ban (as HF)
    banned[row[inside], token[inside]] = True
    return banned


# --- beam search --------------------------------------------------------------------------
def _beam_search(steps, new: int, B: int, o: dict, eos: list, pad) -> np.ndarray:
    """Transformers' beam search (``GenerationMixin._beam_search``), step for step: keep the
    ``num_beams`` best unfinished sequences per input; whatever ends (eos or max length)
    joins that input's pool of ``num_beams`` finished hypotheses if it is good enough."""
    K, nrs = o["num_beams"], o["num_return_sequences"]
    if new == 0:
        return np.repeat(steps.sequences[::K], nrs, axis=0)
    prompt_len = steps.sequences.shape[1]
    # Look at enough candidates that num_beams survive even if the best ones all end in eos.
    keep = max(2, 1 + len(eos)) * K
    # Transformers fills a finished hypothesis with `pad_token_id or eos_token_id[0]`: a pad
    # id of 0 is falsy there, so the first eos id fills instead.  Copied on purpose.
    fill = (pad or eos[0]) if eos else -1
    pool = Hypotheses(steps.sequences[::K], K, prompt_len + new, fill)
    running = np.full((B, K), NEG)                                  # (B, K) sum of log p
    running[:, 0] = 0.0         # all beams start equal: expand only the first at step one
    improvable = np.ones(B, dtype=bool)     # can a running beam still beat the pool?
    for _ in range(new):
        length = steps.sequences.shape[1] + 1 - prompt_len         # new tokens, this one too
        scores, rows, tokens = _candidates(steps, running, keep, o)    # (B, keep) each
        ends = np.isin(tokens, eos) | (length == new)              # eos, or max length
        # The next beams: the best candidates that go on (those that end cannot).
        alive = scores + NEG * ends
        survivors = _best(alive, K)                                 # (B, K)
        pool.add(steps.sequences[rows], tokens, scores, ends, length, improvable,
                 o["length_penalty"], o["early_stopping"])
        running = np.take_along_axis(alive, survivors, axis=1)
        steps.reorder(np.take_along_axis(rows, survivors, axis=1).ravel())
        steps.append(np.take_along_axis(tokens, survivors, axis=1).ravel())
        improvable = _still_improvable(improvable, running[:, 0], pool, length, new,
                                       o["early_stopping"], o["length_penalty"])
        pool_closed = pool.finished.all() and o["early_stopping"] is True
        if not improvable.any() or pool_closed or ends.all():
            break
    return pool.best(nrs, prompt_len)


def _candidates(steps, running, keep: int, o: dict):
    """Every beam's every next token, scored by the beam's sum of log p plus the token's;
    the ``keep`` best of each input, best first: scores, the rows of ``steps`` they extend,
    and their tokens, each (B, keep).  running: (B, K) the beams' scores."""
    B, K = running.shape
    V = steps.vocab_size
    logp = process_scores(_log_softmax(steps.scores()), steps.sequences,
                          o["repetition_penalty"], o["no_repeat_ngram_size"])  # (N, V)
    total = (logp.reshape(B, K, V) + running[:, :, None]).reshape(B, K * V)
    top = _best(total, keep)                                        # (B, keep)
    rows = top // V + K * np.arange(B)[:, None]                     # beam k of b: row b*K+k
    return np.take_along_axis(total, top, axis=1), rows, top % V


class Hypotheses:
    """Each input's ``num_beams`` best finished hypotheses, best first: sequences (B, K,
    max_length) padded with ``fill``, scores (B, K) (length-penalised; NEG where a slot is
    empty), new tokens (B, K) and whether the slot holds a finished one (B, K)."""

    def __init__(self, prompts, K: int, max_length: int, fill: int):
        B, T = prompts.shape
        self.seqs = np.full((B, K, max_length), fill, dtype=np.int64)
        self.seqs[:, :, :T] = prompts[:, None, :]
        self.scores = np.full((B, K), NEG)
        self.new_tokens = np.zeros((B, K), dtype=np.int64)
        self.finished = np.zeros((B, K), dtype=bool)
        self.K, self.fill = K, fill

    def add(self, prefixes, tokens, scores, ends, length, improvable, length_penalty,
            early_stopping):
        """Offer this step's candidates, prefixes (B, keep, L) + tokens (B, keep) with scores
        (B, keep) (sum of log p): those that ``ends`` and are among the first K enter with
        score sum / length ** length_penalty if they beat the pool's worst, unless the input
        is closed (no improvement possible, or early_stopping=True and the pool is full)."""
        K = self.K
        finishing = ends.copy()
        finishing[:, K:] = False                # the extra candidates are only a reserve
        penalised = scores / length ** length_penalty
        closed = ~improvable | (self.finished.all(axis=1) & (early_stopping is True))
        penalised = penalised + NEG * closed[:, None] + NEG * ~finishing
        seqs = np.full(prefixes.shape[:2] + self.seqs.shape[-1:], self.fill, dtype=np.int64)
        L = prefixes.shape[-1]
        seqs[:, :, :L], seqs[:, :, L] = prefixes, tokens            # (B, keep, max_length)
        best = _best(np.concatenate([self.scores, penalised], axis=1), K)  # old ones first
        self.seqs = _gather(self.seqs, seqs, best)
        self.scores = _gather(self.scores, penalised, best)
        self.new_tokens = _gather(self.new_tokens, np.full(ends.shape, length), best)
        self.finished = _gather(self.finished, finishing, best)

    def best(self, n: int, prompt_len: int) -> np.ndarray:
        """The n best of each input, (B * n, prompt_len + the longest of them's new tokens):
        rows b * n ... b * n + n - 1 belong to input b, best first."""
        longest = prompt_len + self.new_tokens[:, :n].max()
        return self.seqs[:, :n, :longest].reshape(-1, longest)


def _still_improvable(improvable, best_running, pool, new_tokens, max_new, early_stopping,
                      length_penalty):
    """Transformers' stopping heuristic, per input (B,): could the best running beam still
    beat the worst finished hypothesis?  Once no, the input stays closed.  The running beam's
    best possible score is taken at the current length (early_stopping False or True: a true
    bound only when length_penalty <= 0, a guess otherwise) or, with "never" and a positive
    length penalty, at the maximum length (a true bound: the sum of log p only falls, and a
    negative sum over a larger divisor only rises towards 0)."""
    grows = early_stopping == "never" and length_penalty > 0.0
    length = max_new if grows else new_tokens
    best = best_running / length ** length_penalty                 # (B,)
    worst = np.where(pool.finished, pool.scores.min(axis=1, keepdims=True), NEG)  # (B, K)
    return improvable & (best[:, None] > worst).any(axis=1)


def _gather(old, new, index):
    """Entries ``index`` (B, K) along axis 1 of old and new side by side (HF's
    _gather_beams): old (B, K, ...), new (B, keep, ...) -> (B, K, ...)."""
    both = np.concatenate([old, new], axis=1)
    index = index.reshape(index.shape + (1,) * (both.ndim - 2))
    return np.take_along_axis(both, index, axis=1)


def _best(scores, k: int) -> np.ndarray:
    """Indices of the k largest scores of each row (B, k), best first; ties: lower index.

    A row holds num_beams x vocab_size candidates and only a few are wanted, so instead of
    sorting it all: find the k-th largest value (``np.partition``, linear time), keep every
    index scoring at least that much (ties included, in index order), and sort those few."""
    B, n = scores.shape
    if k >= n:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]        # (B, 1)
    rows, cols = np.nonzero(scores >= kth)                          # by row, then index
    if len(rows) > 4 * k * B:       # a flood of ties (all -inf, say): sorting is as good
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    counts = np.bincount(rows, minlength=B)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    index = np.zeros((B, counts.max()), dtype=np.int64)             # (B, m) the kept indices
    value = np.full((B, counts.max()), -np.inf)                     # their scores
    index[rows, slot], value[rows, slot] = cols, scores[rows, cols]
    order = np.argsort(-value, axis=1, kind="stable")[:, :k]        # unused slots sort last
    return np.take_along_axis(index, order, axis=1)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# --- options -----------------------------------------------------------------------------
def _settings(model, given: dict) -> dict:
    """The options of one call: what was given, else the model's generation_config.json,
    else the ids in its config, else Hugging Face's defaults."""
    config = model.config
    settings = {"max_length": None, "max_new_tokens": None, **HF_DEFAULTS,
                **{k: getattr(config, k, None) for k in
                   ("eos_token_id", "pad_token_id", "bos_token_id", "decoder_start_token_id")}}
    for layer in (getattr(model, "generation_config", {}), given):
        settings.update({k: v for k, v in layer.items() if v is not None})
    return settings


def _new_tokens(o, T, block_size, hard_limit: bool = False) -> int:
    """How many tokens to add: max_new_tokens, else max_length minus the prompt, else 20 (as
    transformers: at most up to the context length).  ``hard_limit``: the sequence may not
    grow past block_size (an encoder-decoder's decoder), so asking for more is an error."""
    if o["max_new_tokens"] is not None:
        new = o["max_new_tokens"]
    else:
        max_length = o["max_length"]
        if max_length is None:
            max_length = min(T + DEFAULT_NEW_TOKENS, block_size)
        if T >= max_length:
            raise ValueError(f"generate: max_length={max_length} counts the prompt, which "
                             f"already has {T} tokens; use max_new_tokens to say how many "
                             f"to add")
        new = max_length - T
    if hard_limit and T + new > block_size:
        raise ValueError(f"generate: {T} + {new} new tokens is longer than the decoder's "
                         f"context tgt_block_size={block_size}; ask for at most "
                         f"max_new_tokens={block_size - T}")
    return new


def _start_token(o, vocab_size) -> int:
    """The decoder's first token: decoder_start_token_id, else bos_token_id (as HF)."""
    start = o["decoder_start_token_id"]
    if start is None:
        start = o["bos_token_id"]
    if start is None:
        raise ValueError("generate: an encoder-decoder model needs decoder_start_token_id "
                         "(or bos_token_id) in its config or in the call")
    return _id_list("decoder_start_token_id", start, vocab_size)[0]


def _id_list(name, value, vocab_size) -> list[int]:
    """One token id or a list of them, each checked against the vocabulary."""
    if value is None:
        return []
    ids = [value] if isinstance(value, (int, np.integer)) else list(value)
    for i in ids:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < vocab_size:
            raise ValueError(f"generate: {name}={value!r} is not a token id of the model's "
                             f"vocabulary of {vocab_size}")
    return [int(i) for i in ids]


def _prompt_mask(attention_mask, ids, pad, eos, left_padded: bool = True):
    """The prompt's attention mask as a bool array, or None when every token is real.
    Without one, transformers' rule: the pad id marks padding when it is in the prompt and is
    not also the eos id.  ``left_padded``: warn about right padding (a decoder-only model
    continues after the last token; an encoder's source may be padded on either side)."""
    if attention_mask is None:
        if pad is None or pad in eos or not (ids == pad).any():
            return None
        attention_mask = ids != pad
    mask = backend.to_numpy(attention_mask.data if isinstance(attention_mask, Tensor)
                            else np.asarray(attention_mask)).astype(bool)
    if mask.shape != ids.shape:
        raise ValueError(f"generate: attention_mask {mask.shape} must match input_ids "
                         f"{ids.shape}")
    if mask.all():
        return None
    if left_padded and not mask[:, -1].all():
        warnings.warn("generate: right-padding was detected (a prompt ends in padding); a "
                      "decoder-only model continues after the last token, so pad on the left",
                      stacklevel=3)
    if not mask.any(axis=1).all():
        raise ValueError("generate: a row of attention_mask is all zeros (a prompt with no "
                         "real token)")
    return mask


def _as_ids(input_ids) -> np.ndarray:
    data = input_ids.data if isinstance(input_ids, Tensor) else input_ids
    ids = backend.to_numpy(np.asarray(data) if not hasattr(data, "shape") else data)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or (ids.size and ids.dtype.kind not in "iu"):
        raise ValueError(f"generate: input_ids must be integer token ids of shape (batch, "
                         f"time) or (time,), got {ids.dtype} {ids.shape}")
    return ids.astype(np.int64)


def _device(model) -> str:
    """Where the model's weights live (the result goes there too)."""
    for p in model.parameters():
        return p.device
    return "cpu"


def _check_options(max_new_tokens, o):
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    for name, least in (("num_return_sequences", 1), ("num_beams", 1),
                        ("no_repeat_ngram_size", 0)):
        _check_int(name, o[name], least)
    beams, n = o["num_beams"], o["num_return_sequences"]
    if beams == 1 and not o["do_sample"] and n > 1:
        raise ValueError(f"generate: greedy decoding (do_sample=False) gives the same sequence "
                         f"every time, so num_return_sequences={n} makes no sense; set "
                         f"do_sample=True (or num_beams >= {n} for the {n} best)")
    if beams > 1 and n > beams:
        raise ValueError(f"generate: num_return_sequences={n} must be <= num_beams={beams} "
                         f"(beam search keeps only num_beams finished hypotheses per input)")
    if beams > 1 and o["do_sample"]:
        raise ValueError(f"generate: beam sampling (do_sample=True with num_beams={beams}) is "
                         f"not implemented; use do_sample=False for beam search or "
                         f"num_beams=1 for sampling")
    lp = o["length_penalty"]
    if isinstance(lp, bool) or not isinstance(lp, numbers.Real) or not np.isfinite(lp):
        raise ValueError(f"generate: length_penalty must be a finite number, got {lp!r}")
    es = o["early_stopping"]
    if not (isinstance(es, (bool, np.bool_)) or (isinstance(es, str) and es == "never")):
        raise ValueError(f"generate: early_stopping must be True, False or 'never', got "
                         f"{es!r}")
    o["early_stopping"] = es if isinstance(es, str) else bool(es)
    if o["do_sample"] and not o["temperature"] > 0:
        raise ValueError(f"generate: temperature must be > 0 when sampling, got "
                         f"{o['temperature']}")
    if o["top_k"] is not None and o["top_k"] < 0:
        raise ValueError(f"generate: top_k must be >= 0 (0: no top-k filter), got {o['top_k']}")
    if o["top_p"] is not None and not 0.0 < o["top_p"] <= 1.0:
        raise ValueError(f"generate: top_p must be in (0, 1], got {o['top_p']}")
    if not o["repetition_penalty"] > 0:
        raise ValueError(f"generate: repetition_penalty must be > 0, got "
                         f"{o['repetition_penalty']}")


def _check_int(name, value, least):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"generate: {name} must be an integer, got {value!r}")
    if value < least:
        raise ValueError(f"generate: {name} must be >= {least}, got {value}")
