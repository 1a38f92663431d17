"""The PyTorch reference for tinygradlm's Transformers: GPT (causal), BERT (bidirectional) and
the encoder-decoder (``TorchEncoderDecoder``: a bidirectional encoder, a decoder whose blocks
add cross-attention, learned or sinusoidal positions, tied or separate embeddings).

Written from the papers / nanoGPT, not from tinygradlm's code, with GPT-2's module names
(``transformer.wte``, ``transformer.h.0.attn.c_attn``, ...) so that parameter names line up
one to one with ``tinygradlm.nn.GPT`` / ``tinygradlm.nn.BERT``: pre-LN blocks, tanh GELU,
``F.scaled_dot_product_attention`` (``is_causal=True`` for GPT, a key padding mask for BERT),
a final LayerNorm, and the output projection tied to ``wte`` (GPT's LM head; BERT's MLM head
dense -> GELU -> LayerNorm -> ``x @ wte^T + bias``); cross-entropy with ``ignore_index=-100``.

Used by ``tests/nn/test_gpt.py``, ``tests/nn/test_bert.py`` and
``tests/nn/test_encoder_decoder.py`` (logits, loss and every gradient) and by
``benchmarks/bench_train.py`` and ``benchmarks/bench_seq2seq.py`` (the PyTorch peers they time).  Importing it imports torch, so
import it only after ``pytest.importorskip("torch")`` or a check that torch is there.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn as tnn


class Attention(tnn.Module):
    def __init__(self, cfg, causal):
        super().__init__()
        C = cfg.n_embd
        self.n_head, self.causal = cfg.n_head, causal
        self.c_attn = tnn.Linear(C, 3 * C, bias=cfg.bias)
        self.c_proj = tnn.Linear(C, C, bias=cfg.bias)

    def forward(self, x, keep=None):
        """``keep``: optional (B, T) bool, False at keys (padding) no query may attend to."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in (q, k, v))
        if keep is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            mask = keep[:, None, None, :]
            if self.causal:
                mask = mask & torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = tnn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = tnn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(tnn.Module):
    def __init__(self, cfg, causal):
        super().__init__()
        self.ln_1 = tnn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = Attention(cfg, causal)
        self.ln_2 = tnn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, keep=None):
        x = x + self.attn(self.ln_1(x), keep)
        return x + self.mlp(self.ln_2(x))


class TorchTransformer(tnn.Module):
    """Embeddings (token + learned position), ``n_layer`` blocks, the final LayerNorm."""

    def __init__(self, cfg, causal):
        super().__init__()
        self.config = cfg
        C = cfg.n_embd
        self.transformer = tnn.ModuleDict(dict(
            wte=tnn.Embedding(cfg.vocab_size, C), wpe=tnn.Embedding(cfg.block_size, C),
            h=tnn.ModuleList([Block(cfg, causal) for _ in range(cfg.n_layer)]),
            ln_f=tnn.LayerNorm(C, bias=cfg.bias)))

    def hidden_states(self, idx, keep=None):
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in t.h:
            x = block(x, keep)
        return t.ln_f(x)

    @staticmethod
    def loss(logits, targets):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=-100)


class TorchGPT(TorchTransformer):
    """GPT-2: causal blocks, the LM head tied to ``wte``."""

    def __init__(self, cfg):
        super().__init__(cfg, causal=True)

    def forward(self, idx, targets=None):
        logits = self.hidden_states(idx) @ self.transformer.wte.weight.T
        return logits, (None if targets is None else self.loss(logits, targets))


class MLMHead(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = tnn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.ln = tnn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.bias = tnn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h, wte):
        return self.ln(F.gelu(self.dense(h), approximate="tanh")) @ wte.T + self.bias


class TorchBERT(TorchTransformer):
    """The encoder: bidirectional blocks that ignore ``pad_token_id`` keys, the MLM head."""

    def __init__(self, cfg):
        super().__init__(cfg, causal=False)
        self.mlm_head = MLMHead(cfg)

    def forward(self, ids, labels=None):
        h = self.hidden_states(ids, keep=ids != self.config.pad_token_id)
        logits = self.mlm_head(h, self.transformer.wte.weight)
        return logits, (None if labels is None else self.loss(logits, labels))


# --- encoder-decoder ------------------------------------------------------------------------
class CrossAttention(tnn.Module):
    """Queries from the target stream, keys and values from the encoder's output."""

    def __init__(self, cfg):
        super().__init__()
        C = cfg.n_embd
        self.n_head = cfg.n_head
        self.q_proj = tnn.Linear(C, C, bias=cfg.bias)
        self.kv_proj = tnn.Linear(C, 2 * C, bias=cfg.bias)
        self.c_proj = tnn.Linear(C, C, bias=cfg.bias)

    def forward(self, x, memory, keep=None):
        B, Tq, C = x.shape
        Tk, nh = memory.shape[1], self.n_head
        q = self.q_proj(x).view(B, Tq, nh, C // nh).transpose(1, 2)
        k, v = (t.view(B, Tk, nh, C // nh).transpose(1, 2)
                for t in self.kv_proj(memory).split(C, dim=2))
        mask = None if keep is None else keep[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if keep is not None:        # torch gives NaN where no key is allowed; tinygradlm zeros
            y = torch.where(keep.any(-1)[:, None, None, None], y, 0.0)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, Tq, C))


class DecoderBlock(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg.n_embd
        self.ln_1 = tnn.LayerNorm(C, bias=cfg.bias)
        self.attn = Attention(cfg, causal=True)
        self.ln_2 = tnn.LayerNorm(C, bias=cfg.bias)
        self.cross_attn = CrossAttention(cfg)
        self.ln_3 = tnn.LayerNorm(C, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, memory, keep=None):
        x = x + self.attn(self.ln_1(x))
        x = x + self.cross_attn(self.ln_2(x), memory, keep)
        return x + self.mlp(self.ln_3(x))


def sinusoids(T, C):
    """The paper's table: PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(same)."""
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    angle = pos / 10000.0 ** (torch.arange(0, C, 2, dtype=torch.float64) / C)
    pe = torch.zeros(T, C, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)[:, :C // 2]
    return pe


class Stack(tnn.Module):
    def __init__(self, cfg, vocab, block_size, n_layer, block):
        super().__init__()
        self.sinusoidal = cfg.positions == "sinusoidal"
        self.wte = tnn.Embedding(vocab, cfg.n_embd)
        if not self.sinusoidal:
            self.wpe = tnn.Embedding(block_size, cfg.n_embd)
        self.h = tnn.ModuleList([block(cfg) for _ in range(n_layer)])
        self.ln_f = tnn.LayerNorm(cfg.n_embd, bias=cfg.bias)

    def embed(self, ids):
        T, C = ids.shape[1], self.wte.embedding_dim
        if self.sinusoidal:
            tok = self.wte(ids)
            return tok * C ** 0.5 + sinusoids(T, C).to(tok.dtype)
        return self.wte(ids) + self.wpe(torch.arange(T))


class TorchEncoderDecoder(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.encoder = Stack(cfg, cfg.vocab_size, cfg.block_size, cfg.n_layer,
                             lambda c: Block(c, causal=False))
        self.decoder = Stack(cfg, cfg.tgt_vocab_size, cfg.tgt_block_size, cfg.n_decoder_layer,
                             DecoderBlock)
        if cfg.tgt_vocab_size == cfg.vocab_size:
            self.decoder.wte.weight = self.encoder.wte.weight
        self.lm_head = tnn.Linear(cfg.n_embd, cfg.tgt_vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.decoder.wte.weight

    def forward(self, src, keep, dec_in, labels=None, label_smoothing=0.0):
        x = self.encoder.embed(src)
        for block in self.encoder.h:
            x = block(x, keep)
        memory = self.encoder.ln_f(x)
        y = self.decoder.embed(dec_in)
        for block in self.decoder.h:
            y = block(y, memory, keep)
        logits = self.lm_head(self.decoder.ln_f(y))
        if labels is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                       ignore_index=-100, label_smoothing=label_smoothing)


def build_torch_encoder_decoder(cfg, dtype=None):
    """The PyTorch encoder-decoder for an ``EncoderDecoderConfig``; see ``build_torch_gpt``."""
    return _to(TorchEncoderDecoder(cfg), dtype)


def _to(model, dtype):
    if dtype is not None:
        model = model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    return model


def build_torch_gpt(cfg, dtype=None):
    """The PyTorch GPT for a ``GPTConfig``; ``dtype`` a torch dtype or its name (default:
    torch's default, float32).  Its weights are torch's initialisation: copy tinygradlm's in
    with ``copy_weights_from``."""
    return _to(TorchGPT(cfg), dtype)


def build_torch_bert(cfg, dtype=None):
    """The PyTorch BERT encoder + MLM head for a ``BERTConfig``; see ``build_torch_gpt``."""
    return _to(TorchBERT(cfg), dtype)


def linear_weight_names(torch_model):
    """Names of the weights of ``torch.nn.Linear`` layers: the parameters stored transposed
    by tinygradlm ((in, out) there, (out, in) in torch).  Embeddings, the tied head and
    LayerNorm gains are not among them."""
    return {f"{name}.weight" for name, m in torch_model.named_modules()
            if isinstance(m, tnn.Linear) and name != "lm_head"}   # the head: (V, C) in both


def copy_weights_from(tg_model, torch_model):
    """Copy every parameter of the tinygradlm model into the torch model of the same
    architecture (the names must be the same sets, the shapes must agree once Linear weights
    are transposed); returns ``torch_model``."""
    ours, theirs = dict(tg_model.named_parameters()), dict(torch_model.named_parameters())
    if set(ours) != set(theirs):
        raise ValueError(f"parameter names differ: only in tinygradlm "
                         f"{sorted(set(ours) - set(theirs))}, only in torch "
                         f"{sorted(set(theirs) - set(ours))}")
    linear = linear_weight_names(torch_model)
    with torch.no_grad():
        for name, p in theirs.items():
            w = ours[name].numpy()
            if name in linear:
                w = w.T                                  # (in, out) -> torch's (out, in)
            if tuple(w.shape) != tuple(p.shape):
                raise ValueError(f"weight copy: {name} is {w.shape} in tinygradlm, "
                                 f"{tuple(p.shape)} in torch")
            p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
    return torch_model


def assert_grads_match(tg_model, torch_model, rtol, atol):
    """Every tinygradlm parameter's ``.grad`` against torch's (Linear weights transposed back),
    with the tests' one tolerance rule (``strategies.assert_close``)."""
    from strategies import assert_close
    theirs = dict(torch_model.named_parameters())
    linear = linear_weight_names(torch_model)
    for name, p in tg_model.named_parameters():
        g = theirs[name].grad.numpy()
        g = g.T if name in linear else g
        assert_close(p.grad.numpy(), g, rtol, atol, err_msg=name)
