"""GPT: a decoder-only Transformer language model (GPT-2's architecture, nanoGPT's layout).

    idx (B, T) ─> wte(idx) + wpe(0..T-1) ─> dropout ─> n_layer x TransformerBlock(causal)
               ─> ln_f ─> lm_head (tied to wte) ─> logits (B, T, vocab_size)

Parameter names follow GPT-2 exactly (``transformer.h.0.attn.c_attn.weight`` ...), and Linear
weights are stored (in, out), so GPT-2 checkpoints map onto this model name for name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..creation import arange, randn, skip_init, zeros
from ..tensor import Tensor
from .attention import KVCache, TransformerBlock
from .layers import Dropout, Embedding, LayerNorm, ModuleList, SinusoidalPositionalEmbedding
from .module import Module, Parameter
from .pretrained import TransformerModel


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64            # the longest context the model can see
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True               # biases in Linear and LayerNorm (GPT-2 has them)
    layer_norm_eps: float = 1e-5
    # Token ids generate() needs (Hugging Face keeps them in the config): it stops a sequence
    # at the end-of-text id (or any of a list of them) and pads finished ones.
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None


class LMHead(Module):
    """The output projection, tied to the token embedding: logits = x @ wte.weight^T.

    It is the one matrix stored (out, in) = (vocab_size, n_embd), because it *is* the
    embedding table; tying saves vocab_size x n_embd parameters and helps small models."""

    def __init__(self, n_embd: int, vocab_size: int):
        super().__init__()
        self.weight = Parameter(zeros(vocab_size, n_embd))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.T                                    # (B, T, vocab_size)


class GPT(TransformerModel):
    config_class = GPTConfig
    default_betas = (0.9, 0.95)     # nanoGPT's

    def __init__(self, config: GPTConfig):
        super().__init__()
        check_config(config)
        self.config = config
        c = config
        self.transformer = Transformer(c, causal=True)
        self.lm_head = LMHead(c.n_embd, c.vocab_size)
        self.lm_head.weight = self.transformer.wte.weight           # weight tying
        self._init_weights()

    def _init_weights(self):
        init_gpt2_weights(self, self.config.n_layer)

    def forward(self, idx, targets=None, attention_mask=None, kv_cache: KVCache | None = None,
                position_ids=None):
        """idx (B, T) token ids -> (logits (B, T, vocab_size), loss or None).

        targets (B, T): next-token ids; positions equal to -100 carry no loss.
        attention_mask (B, T_keys): 1 for real tokens, 0 for padding (never attended to).
        kv_cache: cached keys/values of earlier positions (generation); idx then holds only
        the new tokens, whose positions continue after the cached ones.
        position_ids (B, T): each token's position (default 0, 1, ... after the cache); a
        left-padded prompt starts its positions at its first real token, as in Hugging Face.
        """
        x = self.hidden_states(idx, attention_mask, kv_cache, position_ids)  # (B, T, C)
        logits = self.lm_head(x)                                    # (B, T, vocab_size)
        loss = None
        if targets is not None:
            targets = (targets if isinstance(targets, Tensor)
                       else Tensor(targets, device=logits.device))
            if targets.shape != logits.shape[:2]:
                raise ValueError(f"GPT: targets {targets.shape} must match idx "
                                 f"{logits.shape[:2]}")
            V = logits.shape[-1]
            loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1),
                                   ignore_index=-100)
        return logits, loss

    def hidden_states(self, idx, attention_mask=None, kv_cache: KVCache | None = None,
                      position_ids=None):
        """The final-LayerNorm output (B, T, C): what the LM head reads, and what a
        classification head pools (``SequenceClassifier`` with last-token pooling)."""
        past = len(kv_cache) if kv_cache is not None else 0
        x = self.transformer.embed(idx, past, owner="GPT", arg="idx",
                                   position_ids=position_ids)       # (B, T, C)
        for block in self.transformer.h:
            x = block(x, attention_mask, kv_cache)                  # (B, T, C)
        return self.transformer.finish(x)

    def generate(self, input_ids, **kwargs):
        """Continue ``input_ids``; see ``tinygradlm.generate.generate`` for the options."""
        from ..generate import generate
        return generate(self, input_ids, **kwargs)


def check_config(config):
    """Sizes must be positive (a clear error here beats a shape error deep in the model)."""
    for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive integer, "
                             f"got {getattr(config, name)!r}")


def init_gpt2_weights(model: Module, n_layer: int):
    """GPT-2's initialisation: N(0, 0.02) for matrices and embeddings, zero biases, and the
    projections that write into the residual stream (``c_proj``) scaled by 1/sqrt(2 n_layer),
    so the stream's variance does not grow with depth.  LayerNorms keep weight 1, bias 0."""
    if skip_init.active:                # weights about to be loaded: nothing to draw
        return
    std = 0.02
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            scale = std / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else std
            p.data[...] = randn(*p.shape, dtype=p.dtype, device=p.device).data * scale
        elif name.endswith(".bias") or name == "bias":
            p.data[...] = 0


class Transformer(Module):
    """The ``transformer.*`` namespace of GPT-2's parameter names: token and position
    embeddings, the stack of blocks and the final LayerNorm.  GPT uses it causal; the
    BERT-style encoder bidirectional.

    BERT's original layout (``norm_first=False``) differs in three places: token-type
    (segment) embeddings ``wtt`` are added too, the LayerNorm comes right after the embeddings
    (``ln_e``) instead of after the last block (each post-LN block ends normalised), and the
    GELU may be the exact one (``approximate="none"``)."""

    def __init__(self, c, causal: bool, norm_first: bool = True, type_vocab_size: int = 0,
                 approximate: str = "tanh", positions: str = "learned"):
        super().__init__()
        self.wte = Embedding(c.vocab_size, c.n_embd)
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions must be 'learned' or 'sinusoidal', not {positions!r}")
        if positions == "learned":
            self.wpe = Embedding(c.block_size, c.n_embd)
        else:       # the paper's fixed table; tokens scaled by sqrt(C) to match its size
            self.wpe = SinusoidalPositionalEmbedding(c.block_size, c.n_embd)
        self.token_scale = math.sqrt(c.n_embd) if positions == "sinusoidal" else 1.0
        if type_vocab_size:
            self.wtt = Embedding(type_vocab_size, c.n_embd)
        if not norm_first:
            self.ln_e = LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.drop = Dropout(c.dropout)
        self.h = ModuleList(self.make_block(c, i, causal, norm_first, approximate)
                            for i in range(c.n_layer))
        if norm_first:
            self.ln_f = LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.block_size = c.block_size

    def make_block(self, c, i: int, causal: bool, norm_first: bool, approximate: str) -> Module:
        """Block ``i`` of the stack (the decoder of an encoder-decoder makes its own).  A config
        without ``attention_dropout`` (GPT's, BERT's) drops attention weights at ``dropout``."""
        return TransformerBlock(c.n_embd, c.n_head, c.dropout, c.bias, causal=causal,
                                layer_idx=i, eps=c.layer_norm_eps, norm_first=norm_first,
                                approximate=approximate,
                                attn_dropout=getattr(c, "attention_dropout", None))

    def finish(self, x: Tensor) -> Tensor:
        """The last blocks' output as the heads read it: through ln_f when pre-LN."""
        return self.ln_f(x) if hasattr(self, "ln_f") else x

    def embed(self, ids, past: int = 0, owner: str = "model", arg: str = "ids",
              position_ids=None, token_type_ids=None) -> Tensor:
        """Token plus position (plus token-type) embeddings, then dropout: ids (B, T) ->
        (B, T, C), the tokens sitting at positions past .. past + T - 1 (past > 0 after a KV
        cache), or at ``position_ids`` (B, T) when given."""
        device = self.wte.weight.device
        if not isinstance(ids, Tensor):
            ids = Tensor(ids, device="cpu")     # host data stays there until wte checks it
        elif ids.device != device:
            raise RuntimeError(f"{owner}: {arg} {ids.shape} on {ids.device} but the model's "
                               f"weights on {device}; move one of them with .to({device!r})")
        if ids.ndim == 1:
            ids = ids.unsqueeze(0)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"{owner}: {arg} must be integer token ids of shape (batch, "
                             f"time), got {ids.dtype} {ids.shape}")
        T = ids.shape[1]
        if past + T > self.block_size:
            raise ValueError(f"{owner}: a sequence of {past + T} tokens is longer than "
                             f"block_size={self.block_size}; crop (or truncate) the input to "
                             f"the last {self.block_size} tokens")
        if position_ids is None:
            pos = arange(past, past + T, device=device)             # (T,)
        else:
            pos = position_ids if isinstance(position_ids, Tensor) else Tensor(position_ids)
            if pos.shape not in ((T,), (ids.shape[0], T)):
                raise ValueError(f"{owner}: position_ids {pos.shape} must be ({T},) or "
                                 f"{(ids.shape[0], T)} for {arg} {ids.shape}")
            pos = pos.data if pos.device == "cpu" else pos.to("cpu").data  # wpe checks range
        tokens = self.wte(ids if ids.device == device else ids.data)  # host ids: checked, copied
        if isinstance(self.wpe, SinusoidalPositionalEmbedding):
            x = tokens * self.token_scale + self.wpe(pos, tokens.dtype, device)   # (B, T, C)
        else:
            x = tokens + self.wpe(pos)                              # (B, T, C)
        if hasattr(self, "wtt"):        # segment A/B; all type 0 when not given (as HF)
            types = (np.zeros(ids.shape, dtype=np.int64) if token_type_ids is None else
                     token_type_ids.to("cpu").data if isinstance(token_type_ids, Tensor)
                     else np.asarray(token_type_ids))
            if types.shape != tuple(ids.shape):
                raise ValueError(f"{owner}: token_type_ids {types.shape} must match {arg} "
                                 f"{ids.shape}")
            x = x + self.wtt(types)
        elif token_type_ids is not None:
            raise ValueError(f"{owner}: token_type_ids given, but the model has no token-type "
                             f"embeddings (type_vocab_size=0)")
        if hasattr(self, "ln_e"):
            x = self.ln_e(x)
        return self.drop(x)
