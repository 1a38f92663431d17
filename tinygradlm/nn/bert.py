"""A BERT-style encoder for masked-language-model pretraining.

The same Transformer blocks as GPT, but bidirectional: every token sees every other real token
(padding is masked out), so the model can fill in a blank from both sides.

    input_ids (B, T) ─> wte + wpe ─> dropout ─> n_layer x TransformerBlock(causal=False)
                     ─> ln_f ─> hidden states (B, T, C)
                     ─> MLM head: dense -> GELU -> LayerNorm -> x @ wte^T + bias ─> (B, T, V)

Pretraining hides 15% of the tokens (``tinygradlm.data.mask_tokens``) and scores the model
only on those positions (labels are -100 elsewhere).  The blocks are pre-LayerNorm like GPT-2's
rather than BERT's original post-LayerNorm: it trains more stably at this size.

A pretrained Hugging Face BERT (``BERT.from_pretrained("bert-base-uncased")``) gets BERT's own
layout through the config: ``norm_first=False`` (post-LayerNorm blocks, a LayerNorm after the
embeddings), ``type_vocab_size=2`` (segment A/B embeddings, ``token_type_ids``),
``gelu_approximate="none"`` (the exact GELU), ``layer_norm_eps=1e-12`` and ``pooler=True``
(``pooled``: tanh(Linear(h[CLS])), what BERT's classifiers read).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import functional as F
from ..creation import zeros
from ..tensor import Tensor
from .gpt import Transformer, check_config, init_gpt2_weights
from .layers import GELU, LayerNorm, Linear
from .module import Module, Parameter
from .pretrained import TransformerModel


@dataclass
class BERTConfig:
    vocab_size: int = 4096
    block_size: int = 128           # the longest input (position embeddings)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1
    bias: bool = True
    pad_token_id: int = 0           # [PAD]: never attended to
    layer_norm_eps: float = 1e-5
    norm_first: bool = True         # pre-LN blocks; False: BERT's original post-LN
    type_vocab_size: int = 0        # token-type (segment) embeddings; 0: none
    gelu_approximate: str = "tanh"  # "none": the exact GELU of BERT's checkpoints
    pooler: bool = False            # BERT's pooler over [CLS] (dense + tanh)


class MLMHead(Module):
    """Predicts the hidden token at every position: a small transform, then scores against
    every token embedding (tied to ``wte``, plus a per-token bias)."""

    def __init__(self, n_embd: int, vocab_size: int, bias: bool = True,
                 approximate: str = "tanh", eps: float = 1e-5):
        super().__init__()
        self.dense = Linear(n_embd, n_embd, bias=bias)
        self.gelu = GELU(approximate)
        self.ln = LayerNorm(n_embd, eps=eps, bias=bias)
        self.weight = Parameter(zeros(vocab_size, n_embd))        # tied to wte by BERT
        self.bias = Parameter(zeros(vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        h = self.ln(self.gelu(self.dense(h)))                       # (B, T, C)
        return h @ self.weight.T + self.bias                        # (B, T, V)


class BERT(TransformerModel):
    config_class = BERTConfig

    def __init__(self, config: BERTConfig):
        super().__init__()
        check_config(config)
        if not 0 <= config.pad_token_id < config.vocab_size:
            raise ValueError(f"BERTConfig.pad_token_id={config.pad_token_id} is not a token id "
                             f"of a vocabulary of {config.vocab_size}")
        self.config = c = config
        self.transformer = Transformer(c, causal=False, norm_first=c.norm_first,
                                       type_vocab_size=c.type_vocab_size,
                                       approximate=c.gelu_approximate)
        if c.pooler:
            self.pooler = Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.mlm_head = MLMHead(c.n_embd, c.vocab_size, c.bias, c.gelu_approximate,
                                c.layer_norm_eps)
        self.mlm_head.weight = self.transformer.wte.weight          # weight tying
        init_gpt2_weights(self, c.n_layer)

    def forward(self, input_ids, attention_mask=None, labels=None, token_type_ids=None):
        """input_ids (B, T) -> (logits, loss or None).  attention_mask (B, T): 1/True for real
        tokens (default: every non-``[PAD]``); labels (B, T): original ids where masked, -100
        elsewhere.  Without labels the logits are (B, T, vocab_size); with labels only the
        labelled positions', (M, vocab_size) in row-major order (targets ``labels[labels !=
        -100]``): the head is the costliest matmul, and 85% of its output would be wasted."""
        h = self.hidden_states(input_ids, attention_mask, token_type_ids)   # (B, T, C)
        if labels is None:
            return self.mlm_head(h), None                           # (B, T, V)
        labels = labels if isinstance(labels, Tensor) else Tensor(labels, device=h.device)
        if labels.shape != h.shape[:2]:
            raise ValueError(f"BERT: labels {labels.shape} must match input_ids {h.shape[:2]}")
        picked = labels.data != -100                                # (B, T) bool
        logits = self.mlm_head(h[picked])                           # (M, V)
        targets = Tensor._from_op(labels.data[picked])              # (M,)
        if logits.shape[0] == 0:        # nothing masked in this batch: a zero loss, no NaN
            return logits, (h.sum() * 0.0)
        return logits, F.cross_entropy(logits, targets)

    def hidden_states(self, input_ids, attention_mask=None, token_type_ids=None) -> Tensor:
        """The encoder's output (B, T, C), before the MLM head: what a classifier pools."""
        # Host ids go to embed as they are: F.embedding range-checks them before the copy.
        x = self.transformer.embed(input_ids, owner="BERT", arg="input_ids",
                                   token_type_ids=token_type_ids)   # (B, T, C)
        if attention_mask is None:
            ids = input_ids if isinstance(input_ids, Tensor) else Tensor(input_ids, device="cpu")
            is_real = ids.data.reshape(x.shape[:2]) != self.config.pad_token_id  # (B, T)
            attention_mask = Tensor(is_real, device=x.device).data   # one copy, not one a layer
        for block in self.transformer.h:
            x = block(x, attention_mask)
        return self.transformer.finish(x)

    def pooled(self, h: Tensor) -> Tensor:
        """BERT's sentence vector: tanh(pooler(h[:, 0])), the [CLS] position (B, C)."""
        if not hasattr(self, "pooler"):
            raise AttributeError("BERT.pooled: this model has no pooler (BERTConfig.pooler)")
        return self.pooler(h[:, 0, :]).tanh()
