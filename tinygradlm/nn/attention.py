"""Multi-head self-attention, cross-attention and the pre-LayerNorm Transformer block.

Both GPT (causal) and the BERT-style encoder (bidirectional, with padding) are stacks of the
same ``TransformerBlock``; only the ``causal`` flag and the padding mask differ.  The decoder
of an encoder-decoder (``encoder_decoder.py``) adds ``CrossAttention``: its queries come from
the target being written, its keys and values from the encoded source.

    x ─┬─ ln_1 ─ attn ─(+)─┬─ ln_2 ─ mlp ─(+)─> out        (pre-LN, as GPT-2)
       └──────────────────┘  └────────────────┘
"""
from __future__ import annotations

from .. import functional as F
from ..creation import cat
from ..tensor import Tensor
from .layers import GELU, Dropout, LayerNorm, Linear
from .module import Module


class KVCache:
    """The keys and values of every token seen so far, one (k, v) pair per layer, each
    (B, nh, T_past, hs).  During generation a new token only needs its own query: its keys
    and values are appended here and the old ones are reused instead of recomputed."""

    def __init__(self, n_layer: int):
        self.keys: list = [None] * n_layer
        self.values: list = [None] * n_layer

    def __len__(self) -> int:
        """How many positions are cached (0 before the first forward)."""
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def update(self, layer: int, k: Tensor, v: Tensor):
        """Append this step's k, v (B, nh, T_new, hs) and return all of them so far."""
        if self.keys[layer] is not None:
            k = cat([self.keys[layer], k], dim=2)
            v = cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k.detach(), v.detach()
        return k, v

    def reorder(self, index) -> None:
        """Keep the rows ``index`` (N_new,) of the batch, in that order (a row may repeat):
        beam search continues each surviving beam from the cache of the beam it extends."""
        for layer, (k, v) in enumerate(zip(self.keys, self.values)):
            if k is not None:
                rows = k.xp.asarray(index)
                self.keys[layer] = k[rows]
                self.values[layer] = v[rows]


class MultiHeadAttention(Module):
    """Self-attention with ``n_head`` heads of size ``n_embd // n_head``.

    One matmul ``c_attn`` makes Q, K and V together (3 * n_embd outputs, GPT-2's layout), the
    heads attend independently through ``F.scaled_dot_product_attention`` (the fused kernel
    when enabled), and ``c_proj`` mixes the heads back together.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 causal: bool = True, layer_idx: int = 0, attn_dropout: float | None = None):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"MultiHeadAttention: n_embd={n_embd} is not divisible by "
                             f"n_head={n_head}")
        self.n_embd, self.n_head, self.causal, self.layer_idx = n_embd, n_head, causal, layer_idx
        # Dropout on the attention weights (None: ``dropout``, nanoGPT's choice).  It needs the
        # T x T weights themselves, so while training it runs the composite, not the fused
        # kernel; 0 keeps the kernel (Hugging Face's BART: attention_dropout=0, dropout=0.1).
        self.dropout = dropout if attn_dropout is None else attn_dropout
        self.c_attn = Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = Dropout(dropout)

    def forward(self, x: Tensor, attention_mask=None, kv_cache: KVCache | None = None) -> Tensor:
        """x (B, T, C) -> (B, T, C).

        attention_mask: optional (B, T_keys), True/1 for a real token and False/0 for padding
        (Hugging Face's convention); padded keys are never attended to.
        kv_cache: a ``KVCache`` whose keys/values are prepended to this call's (generation).
        """
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        # (B, T, 3C) -> 3 x (B, T, C) -> 3 x (B, nh, T, hs)
        q, k, v = (t.reshape(B, T, nh, hs).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)            # (B, nh, T_past + T, hs)
        mask, is_causal = self._mask(B, T, k.shape[2], attention_mask, x)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout, training=self.training)
        y = y.transpose(1, 2).reshape(B, T, C)                      # heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def _mask(self, B, Tq, Tk, attention_mask, x):
        """The boolean (True = may attend) mask for the SDPA call, or is_causal when the plain
        lower triangle is exactly right (Tq == Tk and no padding)."""
        xp = x.xp
        allowed = None
        if self.causal and Tq == 1 and attention_mask is None:
            return None, False          # one new query, at the end: it may see every key
        if self.causal and Tq != Tk:
            # New queries sit at the *end* of the sequence: query i is position Tk - Tq + i.
            allowed = xp.tril(xp.ones((Tq, Tk), dtype=bool), k=Tk - Tq)  # (Tq, Tk)
        if attention_mask is not None:
            pad = Tensor(attention_mask, device=x.device).data.astype(bool)   # (B, Tk)
            if pad.shape != (B, Tk):
                raise ValueError(f"MultiHeadAttention: attention_mask must be (batch, keys) = "
                                 f"{(B, Tk)}, got {tuple(pad.shape)}")
            pad = pad[:, None, None, :]                             # (B, 1, 1, Tk)
            if self.causal and allowed is None:
                allowed = xp.tril(xp.ones((Tq, Tk), dtype=bool))
            allowed = pad if allowed is None else (pad & allowed)   # (B, 1, Tq, Tk)
        if allowed is not None:
            return allowed, False
        return None, self.causal


class CrossAttention(Module):
    """Attention from one sequence to another: queries from ``x`` (B, Tq, C), keys and values
    from ``memory`` (B, Tk, C), the encoder's output.  Each target position asks "which source
    tokens matter for me now?"; ``Tq`` and ``Tk`` are independent, and no causal mask applies
    (the whole source is known before the first target token is written).

    ``q_proj`` makes the queries, ``kv_proj`` the keys and values together (2 * n_embd
    outputs), ``c_proj`` mixes the heads back, as in ``MultiHeadAttention``.  During
    generation the source never changes, so its keys and values are computed once and kept
    in the ``EncoderDecoderCache``."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 layer_idx: int = 0, attn_dropout: float | None = None):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"CrossAttention: n_embd={n_embd} is not divisible by "
                             f"n_head={n_head}")
        self.n_embd, self.n_head, self.layer_idx = n_embd, n_head, layer_idx
        self.dropout = dropout if attn_dropout is None else attn_dropout   # as self-attention
        self.q_proj = Linear(n_embd, n_embd, bias=bias)
        self.kv_proj = Linear(n_embd, 2 * n_embd, bias=bias)
        self.c_proj = Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, memory_mask=None, cache=None) -> Tensor:
        """x (B, Tq, C), memory (B, Tk, C) -> (B, Tq, C).

        memory_mask: optional (B, Tk), True/1 for a real source token, False/0 for padding
        (never attended to; a source that is all padding gives zeros).
        cache: an ``EncoderDecoderCache`` holding (or about to hold) this layer's source keys
        and values, so that they are computed once per source, not once per generated token.
        """
        B, Tq, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q = self.q_proj(x).reshape(B, Tq, nh, hs).transpose(1, 2)  # (B, nh, Tq, hs)
        kv = cache.cross[self.layer_idx] if cache is not None else None
        if kv is None:
            Tk = memory.shape[1]
            if memory.shape[0] != B or memory.shape[2] != C:
                raise ValueError(f"CrossAttention: memory {memory.shape} must be (batch, "
                                 f"source length, n_embd) with batch {B} and n_embd {C} as "
                                 f"x {x.shape}")
            kv = tuple(t.reshape(B, Tk, nh, hs).transpose(1, 2)     # 2 x (B, nh, Tk, hs)
                       for t in self.kv_proj(memory).split(C, dim=2))
            if cache is not None:
                cache.cross[self.layer_idx] = tuple(t.detach() for t in kv)
        k, v = kv
        mask = None
        if memory_mask is not None:
            mask = Tensor(memory_mask, device=x.device).data.astype(bool)   # (B, Tk)
            if mask.shape != (B, k.shape[2]):
                raise ValueError(f"CrossAttention: memory_mask must be (batch, source length) "
                                 f"= {(B, k.shape[2])}, got {tuple(mask.shape)}")
            mask = mask[:, None, None, :]                           # (B, 1, 1, Tk)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout,
                                           training=self.training)  # (B, nh, Tq, hs)
        y = y.transpose(1, 2).reshape(B, Tq, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(Module):
    """Position-wise feed-forward network: Linear(C, 4C) -> GELU -> Linear(4C, C)."""

    def __init__(self, n_embd: int, dropout: float = 0.0, bias: bool = True,
                 approximate: str = "tanh"):
        super().__init__()
        self.c_fc = Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = GELU(approximate)
        self.c_proj = Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))   # (B, T, C)


class TransformerBlock(Module):
    """Pre-LayerNorm block (``norm_first=True``, GPT-2's): x + attn(ln_1(x)), then
    + mlp(ln_2(x)).  Normalising *before* each sub-layer keeps the residual stream an
    untouched sum, which trains stably without learning-rate tricks.

    Post-LayerNorm (``norm_first=False``, the original Transformer's and BERT's):
    ln_1(x + attn(x)), then ln_2(x + mlp(x)) -- what pretrained BERT checkpoints expect."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 causal: bool = True, layer_idx: int = 0, eps: float = 1e-5,
                 norm_first: bool = True, approximate: str = "tanh",
                 attn_dropout: float | None = None):
        super().__init__()
        self.norm_first = norm_first
        self.ln_1 = LayerNorm(n_embd, eps=eps, bias=bias)
        self.attn = MultiHeadAttention(n_embd, n_head, dropout, bias, causal, layer_idx,
                                       attn_dropout)
        self.ln_2 = LayerNorm(n_embd, eps=eps, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias, approximate)

    def forward(self, x: Tensor, attention_mask=None, kv_cache: KVCache | None = None) -> Tensor:
        if self.norm_first:
            x = x + self.attn(self.ln_1(x), attention_mask, kv_cache)   # (B, T, C)
            return x + self.mlp(self.ln_2(x))                           # (B, T, C)
        x = self.ln_1(x + self.attn(x, attention_mask, kv_cache))
        return self.ln_2(x + self.mlp(x))
