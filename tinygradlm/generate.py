"""Text generation: greedy decoding and sampling (temperature, top-k, top-p, repetition
penalty), with a KV cache, following Hugging Face's ``generate`` semantics.

One step of autoregressive generation:

    logits of the last position (B, V) -> repetition penalty -> / temperature -> top-k ->
    top-p -> softmax -> sample (or argmax) -> append the new token and repeat

With the KV cache the model sees only the new token each step and reuses the keys and values
of the earlier ones; without it the whole (cropped) sequence is recomputed every step.
"""
from __future__ import annotations

import warnings

import numpy as np

from . import backend
from .autograd import no_grad
from .nn.attention import KVCache
from .tensor import Tensor


# Hugging Face's defaults for what neither the call nor the model's generation_config.json
# sets (transformers' GenerationConfig._get_default_generation_params).
HF_DEFAULTS = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
               "repetition_penalty": 1.0, "num_return_sequences": 1}
DEFAULT_NEW_TOKENS = 20


def generate(model, input_ids, attention_mask=None, max_length: int | None = None,
             max_new_tokens: int | None = None, num_return_sequences: int | None = None,
             do_sample: bool | None = None, temperature: float | None = None,
             top_k: int | None = None, top_p: float | None = None,
             repetition_penalty: float | None = None, eos_token_id=None,
             pad_token_id: int | None = None, use_cache: bool = True) -> Tensor:
    """Continue each prompt in ``input_ids`` (B, T) (or (T,)) and return the prompts with
    their continuations, (B * num_return_sequences, T + new) int64 ids -- as transformers'
    ``model.generate`` does.

    Every option left None takes the model's default (its ``generation_config.json`` and the
    token ids in its config), then Hugging Face's: greedy decoding (``do_sample=False``), and
    when sampling ``top_k=50`` (0 turns it off), ``top_p=1``, ``temperature=1``.  Lengths:
    ``max_new_tokens`` counts new tokens; ``max_length`` counts the prompt too; with neither,
    20 new tokens, at most up to the model's context (``block_size``).  A sequence that emits
    the end-of-text id (``eos_token_id``: one id or a list, default the model's) stops there
    and is padded with ``pad_token_id`` (default: the first eos id) until all have stopped.

    ``attention_mask`` (B, T), 1 for real tokens and 0 for padding, lets prompts of different
    lengths run in one batch: pad them on the LEFT; each row then generates exactly what it
    would alone (its positions start at its first real token).  Unlike transformers, a
    sequence that outgrows ``block_size`` keeps going with its last ``block_size`` tokens in
    view (nanoGPT's crop) instead of failing.
    """
    ids = _as_ids(input_ids)                                        # (B, T) numpy int64
    B, T = ids.shape
    if T == 0:
        raise ValueError("generate: the prompt is empty; give at least one token")
    o = _settings(model, dict(max_length=max_length, max_new_tokens=max_new_tokens,
                              num_return_sequences=num_return_sequences, do_sample=do_sample,
                              temperature=temperature, top_k=top_k, top_p=top_p,
                              repetition_penalty=repetition_penalty,
                              eos_token_id=eos_token_id, pad_token_id=pad_token_id))
    block_size = model.config.block_size
    new = _new_tokens(o, T, block_size)
    _check_options(new, o["num_return_sequences"], o["do_sample"], o["temperature"], o["top_k"],
                   o["top_p"], o["repetition_penalty"])
    vocab = model.config.vocab_size
    eos = _id_list("eos_token_id", o["eos_token_id"], vocab)
    pad = o["pad_token_id"] if o["pad_token_id"] is not None else (eos[0] if eos else None)
    mask = _prompt_mask(attention_mask, ids, pad, eos)              # (B, T) bool or None
    n = o["num_return_sequences"]
    ids = np.repeat(ids, n, axis=0)                                 # (N, T)
    mask = None if mask is None else np.repeat(mask, n, axis=0)
    sampling = {k: o[k] for k in ("do_sample", "temperature", "top_p", "repetition_penalty")}
    sampling["top_k"] = o["top_k"]
    device = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()                # no dropout while generating
    finished = np.zeros(len(ids), dtype=bool)
    cache, start = None, 0      # start: the first position the cache (the window) holds
    try:
        with no_grad():
            for _ in range(new):
                if use_cache and cache is not None and len(cache) < block_size:
                    step_ids = ids[:, -1:]                          # only the new token
                else:
                    # First step, no cache, or the window is full: with absolute position
                    # embeddings a sliding window changes every position, so the cache is
                    # rebuilt from the cropped sequence (the same work as without a cache).
                    start = max(0, ids.shape[1] - block_size)
                    step_ids = ids[:, start:]
                    cache = KVCache(model.config.n_layer) if use_cache else None
                kwargs = {}
                if mask is not None:    # padding: mask its keys, count positions past it
                    window = mask[:, start:]                        # (N, keys)
                    positions = np.maximum(np.cumsum(window, axis=1) - 1, 0)
                    positions[~window] = 1                          # HF's filler for padding
                    kwargs = dict(attention_mask=window,
                                  position_ids=positions[:, -step_ids.shape[1]:])
                logits, _ = model(step_ids, kv_cache=cache, **kwargs)   # ids checked on host
                scores = backend.to_numpy(logits.data[:, -1, :]).astype(np.float64)  # (N, V)
                nxt = next_token(scores, ids, **sampling)           # (N,)
                if eos:
                    nxt = np.where(finished, pad, nxt)
                    finished |= np.isin(nxt, eos)
                ids = np.concatenate([ids, nxt[:, None]], axis=1)
                if mask is not None:
                    mask = np.concatenate([mask, np.ones((len(ids), 1), dtype=bool)], axis=1)
                if eos and finished.all():
                    break
    finally:
        model.train(was_training)
    return Tensor(ids, device=device)


def _settings(model, given: dict) -> dict:
    """The options of one call: what was given, else the model's generation_config.json,
    else the ids in its config, else Hugging Face's defaults."""
    config = model.config
    settings = {"max_length": None, "max_new_tokens": None, **HF_DEFAULTS,
                "eos_token_id": getattr(config, "eos_token_id", None),
                "pad_token_id": getattr(config, "pad_token_id", None)}
    for layer in (getattr(model, "generation_config", {}), given):
        settings.update({k: v for k, v in layer.items() if v is not None})
    return settings


def _new_tokens(o, T, block_size) -> int:
    """How many tokens to add: max_new_tokens, else max_length minus the prompt, else 20 (as
    transformers: at most up to the context length)."""
    if o["max_new_tokens"] is not None:
        return o["max_new_tokens"]
    max_length = o["max_length"]
    if max_length is None:
        max_length = min(T + DEFAULT_NEW_TOKENS, block_size)
    if T >= max_length:
        raise ValueError(f"generate: max_length={max_length} counts the prompt, which already "
                         f"has {T} tokens; use max_new_tokens to say how many to add")
    return max_length - T


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


def _prompt_mask(attention_mask, ids, pad, eos):
    """The prompt's attention mask as a bool array, or None when every token is real.
    Without one, transformers' rule: the pad id marks padding when it is in the prompt and is
    not also the eos id."""
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
    if not mask[:, -1].all():
        warnings.warn("generate: right-padding was detected (a prompt ends in padding); a "
                      "decoder-only model continues after the last token, so pad on the left",
                      stacklevel=3)
    if not mask.any(axis=1).all():
        raise ValueError("generate: a row of attention_mask is all zeros (a prompt with no "
                         "real token)")
    return mask


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
    if top_k is not None and top_k < 0:
        raise ValueError(f"generate: top_k must be >= 0 (0: no top-k filter), got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
    if not repetition_penalty > 0:
        raise ValueError(f"generate: repetition_penalty must be > 0, got {repetition_penalty}")
