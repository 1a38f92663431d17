"""Evaluation numbers for language models.

A language model's loss is the mean negative log-likelihood per token, in nats.  Two
friendlier views of the same number:

* perplexity = exp(loss): the model is as unsure as a uniform choice among that many tokens;
* bits per character = loss / ln 2 * tokens / characters: comparable across tokenizers,
  because it is measured per character of text rather than per token.
"""
from __future__ import annotations

import math


def perplexity(loss: float) -> float:
    """exp(mean NLL per token); ``inf`` rather than an OverflowError for huge losses."""
    return math.exp(loss) if loss < 700 else math.inf


def bits_per_char(loss: float, n_tokens: int = 1, n_chars: int = 1) -> float:
    """Mean NLL per token (nats) -> bits per character of the text those tokens encode.
    For a character tokenizer n_tokens == n_chars and this is just loss / ln 2."""
    if n_tokens <= 0 or n_chars <= 0:
        raise ValueError(f"bits_per_char: need positive token and character counts, got "
                         f"{n_tokens} tokens and {n_chars} characters")
    return loss / math.log(2) * n_tokens / n_chars
