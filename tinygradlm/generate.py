"""Text generation: greedy decoding and sampling (temperature, top-k, top-p, repetition
penalty), with a KV cache, following Hugging Face's ``generate`` semantics.

One step of autoregressive generation:

    logits of the last position (B, V) -> repetition penalty -> / temperature -> top-k ->
    top-p -> softmax -> sample (or argmax) -> append the new token and repeat

With the KV cache the model sees only the new token each step and reuses the keys and values
of the earlier ones; without it the whole (cropped) sequence is recomputed every step.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .autograd import no_grad
from .nn.attention import KVCache
from .tensor import Tensor


def generate(model, input_ids, max_length: int | None = None, max_new_tokens: int | None = None,
             num_return_sequences: int = 1, do_sample: bool = True, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             repetition_penalty: float = 1.0, eos_token_id: int | None = None,
             pad_token_id: int | None = None, use_cache: bool = True) -> Tensor:
    """Continue each prompt in ``input_ids`` (B, T) (or (T,)) and return the prompts with
    their continuations, (B * num_return_sequences, T + new) int64 ids.

    max_length counts the prompt (Hugging Face's meaning); max_new_tokens does not, and wins
    when both are given; with neither, max_length=20.  Greedy decoding (do_sample=False)
    always picks the most likely token, so asking it for several sequences is an error.
    A sequence that emits ``eos_token_id`` stops; it is padded with ``pad_token_id`` (default:
    the eos id) until every sequence has stopped or the length is reached.
    """
    ids = _as_ids(input_ids)                                        # (B, T) numpy int64
    B, T = ids.shape
    if max_new_tokens is None:
        max_length = 20 if max_length is None else max_length
        max_new_tokens = max_length - T
        if max_new_tokens <= 0:
            raise ValueError(f"generate: max_length={max_length} counts the prompt, which "
                             f"already has {T} tokens; use max_new_tokens to say how many to add")
    _check_options(max_new_tokens, num_return_sequences, do_sample, temperature, top_k, top_p,
                   repetition_penalty)
    if T == 0:
        raise ValueError("generate: the prompt is empty; give at least one token")
    ids = np.repeat(ids, num_return_sequences, axis=0)              # (N, T)
    pad = eos_token_id if pad_token_id is None else pad_token_id
    device = next(iter(model.parameters())).device
    block_size = model.config.block_size
    was_training = model.training
    model.eval()                # no dropout while generating
    finished = np.zeros(len(ids), dtype=bool)
    cache = None
    try:
        with no_grad():
            for _ in range(max_new_tokens):
                if use_cache and cache is not None and len(cache) < block_size:
                    step_ids = ids[:, -1:]                          # only the new token
                else:
                    # First step, no cache, or the window is full: with absolute position
                    # embeddings a sliding window changes every position, so the cache is
                    # rebuilt from the cropped sequence (the same work as without a cache).
                    step_ids = ids[:, -block_size:]
                    cache = KVCache(model.config.n_layer) if use_cache else None
                logits, _ = model(step_ids, kv_cache=cache)     # ids checked on the host
                scores = backend.to_numpy(logits.data[:, -1, :]).astype(np.float64)  # (N, V)
                nxt = next_token(scores, ids, do_sample, temperature, top_k, top_p,
                                 repetition_penalty)                # (N,)
                if eos_token_id is not None:
                    nxt = np.where(finished, pad, nxt)
                    finished |= nxt == eos_token_id
                ids = np.concatenate([ids, nxt[:, None]], axis=1)
                if eos_token_id is not None and finished.all():
                    break
    finally:
        model.train(was_training)
    return Tensor(ids, device=device)


def next_token(scores, ids, do_sample=True, temperature=1.0, top_k=None, top_p=None,
               repetition_penalty=1.0):
    """Pick one token per row from the last position's logits ``scores`` (N, V); ``ids``
    (N, T) are the tokens so far (for the repetition penalty)."""
    scores = scores.copy()
    if repetition_penalty != 1.0:
        # CTRL's penalty: make every token already present less likely (divide a positive
        # logit, multiply a negative one, so both move down).
        rows = np.arange(len(ids))[:, None]
        seen = scores[rows, ids]                                    # (N, T)
        scores[rows, ids] = np.where(seen > 0, seen / repetition_penalty,
                                     seen * repetition_penalty)
    if not do_sample:
        return scores.argmax(axis=-1)
    scores = scores / temperature
    if top_k is not None and top_k < scores.shape[-1]:
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


def _as_ids(input_ids) -> np.ndarray:
    data = input_ids.data if isinstance(input_ids, Tensor) else input_ids
    ids = backend.to_numpy(np.asarray(data) if not hasattr(data, "shape") else data)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or (ids.size and ids.dtype.kind not in "iu"):
        raise ValueError(f"generate: input_ids must be integer token ids of shape (batch, "
                         f"time) or (time,), got {ids.dtype} {ids.shape}")
    return ids.astype(np.int64)


def _check_options(max_new_tokens, num_return_sequences, do_sample, temperature, top_k, top_p,
                   repetition_penalty):
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    if num_return_sequences < 1:
        raise ValueError(f"generate: num_return_sequences must be >= 1, got "
                         f"{num_return_sequences}")
    if not do_sample and num_return_sequences > 1:
        raise ValueError(f"generate: greedy decoding (do_sample=False) gives the same sequence "
                         f"every time, so num_return_sequences={num_return_sequences} makes no "
                         f"sense; set do_sample=True")
    if do_sample and not temperature > 0:
        raise ValueError(f"generate: temperature must be > 0 when sampling, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"generate: top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
    if not repetition_penalty > 0:
        raise ValueError(f"generate: repetition_penalty must be > 0, got {repetition_penalty}")
