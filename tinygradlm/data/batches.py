"""Batches of token ids for the two pretraining objectives, and the checks they share.

GPT: ``train_val_split`` then ``get_batch`` (see ``data/__init__.py``).  Masked-LM (BERT),
with a tokenizer that has BERT's special tokens::

    x, labels, attn = get_mlm_batch(ids, 32, 128, tok)   # [CLS] window [SEP], 15% masked
    baseline = unigram_baseline_loss(ids, labels, tok.vocab_size)   # nats per token

Randomness comes from a NumPy ``Generator``, by default the library's CPU generator (seeded
by ``manual_seed``, saved in checkpoints, so a resumed run sees the same batches).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor

# The label of a position with no loss: cross_entropy's ignore_index (PyTorch's convention).
IGNORE_INDEX = -100

# BERT's split of the chosen positions: 80% become [MASK], 10% a random token, 10% stay, as
# [MASK] never occurs at fine-tuning time: the model needs a good vector for every token.
MASK_FRACTION, RANDOM_FRACTION = 0.8, 0.1


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def rng_or_default(generator):
    """``generator``, else the CPU generator (looked up each call: manual_seed replaces it)."""
    return generator if generator is not None else backend.generator("cpu")


def _id_stream(ids, what: str) -> np.ndarray:
    data = np.asarray(ids)
    if data.ndim != 1:
        raise ValueError(f"{what} expects a 1-D array of ids, got shape {data.shape}")
    return data


def train_val_split(ids, train_fraction: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """First ``train_fraction`` of the ids for training, the rest for validation (contiguous,
    as nanoGPT: the validation text is text the model has never seen, not shuffled lines)."""
    ids = _id_stream(ids, "train_val_split")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be between 0 and 1, got {train_fraction}")
    n = int(train_fraction * len(ids))
    if n == 0 or n == len(ids):
        raise ValueError(f"{len(ids)} tokens are too few to split with train_fraction="
                         f"{train_fraction}: one of the splits would be empty")
    return ids[:n], ids[n:]


def _random_windows(data: np.ndarray, batch_size: int, length: int, what: str, need: str,
                    rng) -> np.ndarray:
    """``batch_size`` windows of ``length`` consecutive ids from random offsets: (B, length)
    int64.  ``what`` and ``need`` name the window for the error when the data is too short."""
    if len(data) < length:
        raise ValueError(f"the corpus/split has {len(data)} tokens but one {what} needs "
                         f"{need} = {length}; use a smaller --block_size or more text")
    offsets = rng.integers(0, len(data) - length + 1, size=batch_size)  # (B,)
    return data[offsets[:, None] + np.arange(length)].astype(np.int64, copy=False)


def get_batch(data: np.ndarray, batch_size: int, block_size: int, device=None,
              generator=None) -> tuple[Tensor, Tensor]:
    """A random batch of next-token examples from a 1-D array of ids: ``x, y``, int64
    Tensors of shape (batch_size, block_size) on ``device``.

    Each row is a window of ``block_size + 1`` tokens from a random offset; ``x`` is its first
    ``block_size`` tokens and ``y`` the last, so ``y[b, t]`` is the token after ``x[b, :t+1]``.
    """
    batch_size = positive_int("batch_size", batch_size)
    block_size = positive_int("block_size", block_size)
    data = _id_stream(data, "get_batch")
    tokens = _random_windows(data, batch_size, block_size + 1, "training window",
                             "block_size + 1", rng_or_default(generator))     # (B, T+1)
    x, y = np.ascontiguousarray(tokens[:, :-1]), np.ascontiguousarray(tokens[:, 1:])  # (B, T)
    return Tensor(x, device=device), Tensor(y, device=device)


# --- [CLS] text [SEP] rows --------------------------------------------------------------

def check_max_length(max_length, name: str = "max_length") -> int:
    max_length = positive_int(name, max_length)
    if max_length < 3:
        raise ValueError(f"{name} must be at least 3 ([CLS], one token, [SEP]), got {max_length}")
    return max_length


def wrap_texts(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """``[CLS] tokens [SEP]`` for each text, the tokens cut to fit in ``max_length``.  The
    head is kept: for a function that is its signature and docstring.  A tokenizer without
    [CLS]/[SEP] (GPT-2's) gives the tokens alone."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    head, tail = [cls_id] if cls_id is not None else [], [sep_id] if sep_id is not None else []
    room = max_length - len(head) - len(tail)
    token_lists = (tokenizer.encode_many(texts) if hasattr(tokenizer, "encode_many")
                   else [tokenizer.encode(t) for t in texts])
    return [[*head, *ids[:room], *tail] for ids in token_lists]


def padding_id(tokenizer) -> int:
    """The id that fills a row after its text: [PAD], or for a tokenizer without one (GPT-2's)
    its end-of-text id, as Hugging Face does (the attention mask hides it either way)."""
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    if pad is None:
        raise ValueError(f"{type(tokenizer).__name__} has neither a padding nor an end-of-text "
                         f"token to pad batches with")
    return pad


def pad_rows(rows: list[list[int]], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of different lengths -> (ids, attention_mask), both (len(rows), width): [PAD]
    after each row, the mask True on the real tokens."""
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)          # (N, width)
    mask = np.zeros((len(rows), width), dtype=bool)                    # (N, width)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = True
    return ids, mask


def encode_batch(tokenizer, texts, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> ``[CLS] tokens [SEP] [PAD]...`` rows: ``input_ids`` (N, max_length) int64 and
    ``attention_mask`` (N, max_length) bool, True on real tokens ([CLS] and [SEP] included).
    A text longer than ``max_length - 2`` tokens is cut; its [SEP] still ends the row."""
    max_length = check_max_length(max_length)
    if isinstance(texts, str):
        raise TypeError("encode_batch expects a list of texts, got a single str; "
                        "wrap it: encode_batch(tokenizer, [text], max_length)")
    texts = list(texts)
    if not texts:
        raise ValueError("encode_batch: the list of texts is empty")
    return pad_rows(wrap_texts(tokenizer, texts, max_length), max_length, padding_id(tokenizer))


# --- masked-LM --------------------------------------------------------------------------

def mask_tokens(ids, mask_token_id, vocab_size=None, special_ids=None,
                mlm_probability: float = 0.15, generator=None) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking: which tokens the model must guess, and what it sees in their place.

    Each non-special token is chosen with probability ``mlm_probability``; of the chosen, 80%
    become [MASK], 10% a uniformly drawn non-special id (maybe itself, as in BERT), 10% stay.
    ``ids``: an integer array of any shape, not modified.  A tokenizer can stand in for
    ``mask_token_id, vocab_size, special_ids`` (``mask_tokens(ids, tokenizer)``).

    Returns ``(masked_ids, labels)``, int64 with the shape of ``ids``: ``labels`` holds the
    original id where a token was chosen and ``IGNORE_INDEX`` (-100) elsewhere, so the loss
    is taken on the chosen positions only.  A 10-token row has none with probability ~0.2.
    """
    if not isinstance(mask_token_id, (int, np.integer)):       # a tokenizer was passed
        tokenizer = mask_token_id
        mask_token_id, vocab_size = tokenizer.mask_token_id, tokenizer.vocab_size
        special_ids = tokenizer.special_token_ids
    if vocab_size is None or special_ids is None:
        raise TypeError("mask_tokens needs vocab_size and special_ids (or a tokenizer in "
                        "place of mask_token_id)")
    if not 0.0 < mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must be in (0, 1], got {mlm_probability}")
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"mask_tokens expects integer token ids, got dtype {ids.dtype}")
    special = np.asarray(sorted(special_ids), dtype=np.int64)
    ordinary = np.setdiff1d(np.arange(vocab_size), special)    # what a random token can be
    if ordinary.size == 0:
        raise ValueError(f"mask_tokens: every id of the {vocab_size}-token vocabulary is "
                         "special; there are no tokens to mask")
    rng = rng_or_default(generator)
    chosen = ~np.isin(ids, special) & (rng.random(ids.shape) < mlm_probability)
    labels = np.where(chosen, ids, IGNORE_INDEX).astype(np.int64)
    action = rng.random(ids.shape)            # one draw per position picks mask/random/keep
    to_mask = chosen & (action < MASK_FRACTION)
    to_random = chosen & (action >= MASK_FRACTION) & (action < MASK_FRACTION + RANDOM_FRACTION)
    masked = ids.astype(np.int64)             # a copy: the caller's array is left alone
    masked[to_mask] = mask_token_id
    masked[to_random] = ordinary[rng.integers(0, ordinary.size, size=int(to_random.sum()))]
    return masked, labels


def get_mlm_batch(ids: np.ndarray, batch_size: int, block_size: int, tokenizer,
                  mlm_probability: float = 0.15, device=None,
                  generator=None) -> tuple[Tensor, Tensor, Tensor]:
    """A random batch of masked-LM examples from the corpus as one stream of ids.

    Each row is ``[CLS]`` + ``block_size - 2`` tokens from a random offset + ``[SEP]`` (full,
    so nothing is padded), then masked by ``mask_tokens`` with the same ``generator``.
    Returns ``input_ids`` and ``labels`` (-100: no loss), (B, block_size) int64, and
    ``attention_mask`` (B, block_size) bool, all True, as Tensors on ``device``.
    """
    batch_size = positive_int("batch_size", batch_size)
    block_size = check_max_length(block_size, "block_size")
    data = _id_stream(ids, "get_mlm_batch")
    rng = rng_or_default(generator)
    ends = (tokenizer.cls_token_id, tokenizer.sep_token_id)
    windows = _random_windows(data, batch_size, block_size - 2, "masked-LM window",
                              "block_size - 2", rng)                    # (B, T-2)
    rows = np.pad(windows, ((0, 0), (1, 1)), constant_values=ends)      # (B, T)
    masked, labels = mask_tokens(rows, tokenizer, mlm_probability=mlm_probability, generator=rng)
    attention = np.ones((batch_size, block_size), dtype=bool)            # no padding
    return tuple(Tensor(a, device=device) for a in (masked, labels, attention))


def unigram_baseline_loss(train_ids, targets, vocab_size: int) -> float:
    """Cross-entropy (nats per token) of guessing every target from token frequencies alone:
    the bar a masked LM must clear to have learned anything from the context.

    p(token) = (count in ``train_ids`` + 1) / (N + V): add-one (Laplace) smoothing, so an
    unseen token costs a finite loss.  ``targets``: array or Tensor; -100s are skipped.
    """
    vocab_size = positive_int("vocab_size", vocab_size)
    train = np.asarray(train_ids).reshape(-1)
    targets = np.asarray(targets.numpy() if hasattr(targets, "numpy") else targets)
    counts = np.bincount(train, minlength=vocab_size)                  # (V,)
    if len(counts) > vocab_size:
        raise ValueError(f"train_ids holds id {len(counts) - 1}, out of range for a "
                         f"vocabulary of {vocab_size}")
    log_p = np.log(counts + 1.0) - np.log(counts.sum() + vocab_size)    # (V,)
    picked = targets[targets != IGNORE_INDEX]
    if picked.size == 0:
        raise ValueError("unigram_baseline_loss: every target is -100; there is nothing to score")
    return float(-log_p[picked].mean())
