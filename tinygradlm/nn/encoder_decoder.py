"""An encoder-decoder Transformer (Vaswani et al., 2017) for sequence-to-sequence tasks:
summarisation, translation, any "read this, write that".

    source ids (B, Ts) ─> encoder: wte + positions ─> n_layer x TransformerBlock(bidirectional,
                          source padding masked) ─> ln_f ─> memory (B, Ts, C)
                                                                  │
    target ids (B, Tt) ─> decoder: wte + positions ─> n_decoder_layer x DecoderBlock ─> ln_f
                          (shifted right: the start     causal self-attention
                           token, then the target)      cross-attention over memory  <──┘
                                                        MLP
                      ─> lm_head (tied to the decoder's wte) ─> logits (B, Tt, tgt_vocab_size)

The encoder is the BERT-style stack (every source token sees every other real one); the
decoder is the GPT-style stack (each target token sees the ones before it) with one more
sub-layer per block, cross-attention, where each target position looks at the whole source.
Training is teacher forcing: the decoder reads the true target shifted right by one and is
scored on predicting each next token, all positions at once.  Generation (``generate.py``)
runs the encoder once and the decoder one token at a time, with a cache of the decoder's own
keys/values and of the source's keys/values (computed once).

Parameter names extend GPT-2's: ``encoder.h.0.attn.c_attn`` ..., ``decoder.h.0.attn`` (self),
``decoder.h.0.cross_attn.q_proj`` / ``kv_proj`` / ``c_proj``, ``decoder.h.0.ln_3``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .attention import MLP, CrossAttention, KVCache, MultiHeadAttention
from .gpt import LMHead, Transformer, check_config, init_gpt2_weights
from .layers import LayerNorm
from .module import Module
from .pretrained import TransformerModel


@dataclass
class EncoderDecoderConfig:
    vocab_size: int = 4096                  # the source's (and the target's when shared)
    tgt_vocab_size: int | None = None       # None: one vocabulary (and embedding) for both
    block_size: int = 256                   # the longest source
    tgt_block_size: int | None = None       # the longest decoder input (start token included)
    n_layer: int = 3                        # encoder blocks
    n_decoder_layer: int | None = None      # None: as many as the encoder
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0                    # on embeddings and sub-layer outputs
    attention_dropout: float = 0.0          # on attention weights (0 keeps the fused kernel)
    bias: bool = True
    layer_norm_eps: float = 1e-5
    positions: str = "learned"              # or "sinusoidal" (the paper's fixed table)
    tie_embeddings: bool = True             # lm_head shares the decoder's token embedding
    pad_token_id: int = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None   # None: bos_token_id, else pad_token_id

    def __post_init__(self):
        # Resolved here, so every reader (the model, generate, a saved config.json) sees ints.
        if self.tgt_vocab_size is None:
            self.tgt_vocab_size = self.vocab_size
        if self.tgt_block_size is None:
            self.tgt_block_size = self.block_size
        if self.n_decoder_layer is None:
            self.n_decoder_layer = self.n_layer
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = (self.bos_token_id if self.bos_token_id is not None
                                           else self.pad_token_id)

    @property
    def shared_vocab(self) -> bool:
        return self.tgt_vocab_size == self.vocab_size

    def decoder_view(self) -> "EncoderDecoderConfig":
        """The decoder's sizes under the names ``Transformer`` reads (vocab_size, block_size,
        n_layer)."""
        return dataclasses.replace(self, vocab_size=self.tgt_vocab_size,
                                   block_size=self.tgt_block_size, n_layer=self.n_decoder_layer,
                                   tgt_vocab_size=None, tgt_block_size=None,
                                   n_decoder_layer=None)


class EncoderDecoderCache:
    """What the decoder reuses while generating: its own keys/values of earlier target tokens
    (a ``KVCache``) and, per layer, the cross-attention keys/values of the source, which are
    computed at the first step and never change."""

    def __init__(self, n_layer: int):
        self.self_attn = KVCache(n_layer)
        self.cross: list = [None] * n_layer     # per layer: (k, v), each (N, nh, Ts, hs)

    def __len__(self) -> int:
        """How many target positions are cached."""
        return len(self.self_attn)

    def reorder(self, index, cross: bool = True) -> None:
        """Keep rows ``index`` (N_new,) in that order (beam search: each surviving beam
        continues from the cache of the beam it extends).  ``cross=False`` leaves the source
        keys/values as they are: right when rows only move among copies of one source."""
        self.self_attn.reorder(index)
        for layer, kv in enumerate(self.cross if cross else ()):
            if kv is not None:
                rows = kv[0].xp.asarray(index)
                self.cross[layer] = (kv[0][rows], kv[1][rows])


class DecoderBlock(Module):
    """Pre-LayerNorm decoder block: three residual sub-layers, each reading a normalised copy
    of the stream::

        x = x + attn(ln_1(x))                        causal self-attention: the target so far
        x = x + cross_attn(ln_2(x), memory)          cross-attention: the source
        x = x + mlp(ln_3(x))
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 layer_idx: int = 0, eps: float = 1e-5, approximate: str = "tanh",
                 attn_dropout: float | None = None):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, eps=eps, bias=bias)
        self.attn = MultiHeadAttention(n_embd, n_head, dropout, bias, causal=True,
                                       layer_idx=layer_idx, attn_dropout=attn_dropout)
        self.ln_2 = LayerNorm(n_embd, eps=eps, bias=bias)
        self.cross_attn = CrossAttention(n_embd, n_head, dropout, bias, layer_idx=layer_idx,
                                         attn_dropout=attn_dropout)
        self.ln_3 = LayerNorm(n_embd, eps=eps, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias, approximate)

    def forward(self, x: Tensor, memory: Tensor, memory_mask=None,
                cache: EncoderDecoderCache | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache=cache.self_attn if cache is not None else None)
        x = x + self.cross_attn(self.ln_2(x), memory, memory_mask, cache)
        return x + self.mlp(self.ln_3(x))                           # (B, Tt, C)


class Decoder(Transformer):
    """The target side: GPT's ``Transformer`` (embeddings, blocks, ln_f) built from
    ``DecoderBlock``\\ s."""

    def make_block(self, c, i, causal, norm_first, approximate):
        return DecoderBlock(c.n_embd, c.n_head, c.dropout, c.bias, layer_idx=i,
                            eps=c.layer_norm_eps, approximate=approximate,
                            attn_dropout=c.attention_dropout)


class EncoderDecoder(TransformerModel):
    config_class = EncoderDecoderConfig
    is_encoder_decoder = True       # how generate() tells it from a decoder-only model

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        check_config(config)
        c = self.config = config
        for name in ("tgt_vocab_size", "tgt_block_size", "n_decoder_layer"):
            if int(getattr(c, name)) < 1:
                raise ValueError(f"EncoderDecoderConfig.{name} must be a positive integer, "
                                 f"got {getattr(c, name)!r}")
        for name in ("pad_token_id", "decoder_start_token_id"):
            if not 0 <= getattr(c, name) < c.tgt_vocab_size:
                raise ValueError(f"EncoderDecoderConfig.{name}={getattr(c, name)} is not a "
                                 f"token id of the target vocabulary of {c.tgt_vocab_size}")
        self.encoder = Transformer(c, causal=False, positions=c.positions)
        self.decoder = Decoder(c.decoder_view(), causal=True, positions=c.positions)
        if c.shared_vocab:
            self.decoder.wte.weight = self.encoder.wte.weight      # one table, both sides
        self.lm_head = LMHead(c.n_embd, c.tgt_vocab_size)
        if c.tie_embeddings:
            self.lm_head.weight = self.decoder.wte.weight
        init_gpt2_weights(self, c.n_layer + c.n_decoder_layer)

    # --- the two halves --------------------------------------------------------------------
    def encode(self, input_ids, attention_mask=None) -> Tensor:
        """Source ids (B, Ts) -> memory (B, Ts, C).  attention_mask (B, Ts): 1/True for real
        tokens, 0/False for padding (default: every token is real)."""
        x = self.encoder.embed(input_ids, owner="EncoderDecoder", arg="input_ids")
        mask = self._source_mask(attention_mask, x)
        for block in self.encoder.h:
            x = block(x, mask)                                      # (B, Ts, C)
        return self.encoder.finish(x)

    def decode(self, decoder_input_ids, memory: Tensor, attention_mask=None,
               cache: EncoderDecoderCache | None = None) -> Tensor:
        """Decoder ids (N, Tt) + memory (N, Ts, C) -> logits (N, Tt, tgt_vocab_size).
        attention_mask: the source's padding mask (N, Ts).  With a ``cache`` the ids are the
        new tokens only; their positions continue after the cached ones."""
        past = len(cache) if cache is not None else 0
        x = self.decoder.embed(decoder_input_ids, past, owner="EncoderDecoder",
                               arg="decoder_input_ids")              # (N, Tt, C)
        mask = self._source_mask(attention_mask, memory)
        for block in self.decoder.h:
            x = block(x, memory, mask, cache)                       # (N, Tt, C)
        return self.lm_head(self.decoder.finish(x))                 # (N, Tt, V)

    def new_cache(self) -> EncoderDecoderCache:
        return EncoderDecoderCache(self.config.n_decoder_layer)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, labels=None,
                label_smoothing: float = 0.0):
        """Teacher forcing: (logits (B, Tt, V), loss or None).

        labels (B, Tt): the target ids, -100 where there is no loss (padding).  Without
        ``decoder_input_ids`` the decoder reads the labels shifted right (``shift_right``),
        as in Hugging Face.  label_smoothing: as ``F.cross_entropy``'s."""
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("EncoderDecoder: give decoder_input_ids, or labels to shift "
                                 "right into them")
            decoder_input_ids = self.shift_right(labels)
        memory = self.encode(input_ids, attention_mask)
        logits = self.decode(decoder_input_ids, memory, attention_mask)
        if labels is None:
            return logits, None
        labels = labels if isinstance(labels, Tensor) else Tensor(labels, device=logits.device)
        if labels.shape != logits.shape[:2]:
            raise ValueError(f"EncoderDecoder: labels {labels.shape} must match "
                             f"decoder_input_ids {logits.shape[:2]}")
        V = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100,
                               label_smoothing=label_smoothing)
        return logits, loss

    def shift_right(self, labels) -> np.ndarray:
        """The decoder's input for ``labels`` (B, Tt): the start token, then the labels
        without their last one (-100 read as padding): it predicts token t from those before."""
        lab = np.asarray(labels.to("cpu").data if isinstance(labels, Tensor) else labels)
        ids = np.empty(lab.shape, dtype=np.int64)
        ids[:, 0] = self.config.decoder_start_token_id
        ids[:, 1:] = lab[:, :-1]
        ids[ids == -100] = self.config.pad_token_id
        return ids

    def generate(self, input_ids, **kwargs):
        """Write a target for each source in ``input_ids``; see ``tinygradlm.generate``."""
        from ..generate import generate
        return generate(self, input_ids, **kwargs)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without learned position embeddings."""
        n = self.num_parameters()
        if non_embedding:
            n -= sum(p.weight.numel() for p in (self.encoder.wpe, self.decoder.wpe)
                     if hasattr(p, "weight"))
        return n

    def _source_mask(self, attention_mask, like: Tensor):
        """The source padding mask as a bool array on the model's device (B, Ts), or None."""
        if attention_mask is None:
            return None
        mask = Tensor(attention_mask, device=like.device).data.astype(bool)
        if mask.shape != tuple(like.shape[:2]):
            raise ValueError(f"EncoderDecoder: attention_mask {tuple(mask.shape)} must match "
                             f"the source (batch, length) {tuple(like.shape[:2])}")
        return mask
