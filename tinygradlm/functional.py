"""The functional API (``tinygradlm.nn.functional``, imported as ``F``).

Each function here is a *composite*: it is written with the primitive ops of ``ops/`` and
gets its gradient for free from theirs.  These composites are the reference a student reads
first.  Softmax, cross-entropy, attention, GELU and LayerNorm also have a fused kernel
(``kernels/``: one ``Function`` with a hand-written backward, held by the tests to the
composite here); it runs by default, and ``kernels.use("reference")`` runs the composite.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend, kernels, ops
from .tensor import Tensor, where


def _check_dim_size(op, x):
    if x.ndim == 0:
        raise ValueError(f"{op}: expected at least one dimension, got a 0-d tensor")


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``.

    Subtracting the row max first keeps exp() from overflowing; softmax is unchanged by the
    shift, so the max is detached and never differentiated.  Over the last axis this runs the
    fused kernel (``kernels/softmax.py``, CPU or GPU) unless the reference is selected.
    """
    _check_dim_size("softmax", x)
    if x.numel() == 0:                  # nothing to normalise (and no max to subtract)
        return x * 0
    if dim % x.ndim == x.ndim - 1 and kernels.fused_any(x):
        return kernels.load("Softmax").apply(x)
    e = (x - x.amax(dim=dim, keepdim=True).detach()).exp()
    return e / e.sum(dim=dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """x - log(sum(exp(x))) along ``dim``, computed as (x - max) - log(sum(exp(x - max)))."""
    _check_dim_size("log_softmax", x)
    if x.numel() == 0:
        return x * 0
    shifted = x - x.amax(dim=dim, keepdim=True).detach()
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = -100,
                  reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer ``targets`` under ``softmax(logits)``.

    logits: (..., C) -- classes on the *last* axis (PyTorch puts them on axis 1 for >2-D)
    targets: (...)  -- class ids in [0, C), or ``ignore_index`` for positions without a loss
    reduction: "mean" over non-ignored targets, "sum", or "none" (shape of targets, 0 where ignored)
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', "
                         f"not {reduction!r}")
    targets = targets if isinstance(targets, Tensor) else Tensor(targets, device=logits.device)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class ids, not {targets.dtype}")
    if targets.device != logits.device:
        raise RuntimeError(f"cross_entropy: logits {logits.shape} on {logits.device} but "
                           f"targets {targets.shape} on {targets.device}; move both to one "
                           f"device with .to(...)")
    if logits.ndim == 0 or targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: logits {logits.shape} need targets of shape "
                         f"{logits.shape[:-1]} (one class id per row), got {targets.shape}")
    C = logits.shape[-1]
    t = targets.data.reshape(-1)                                    # (N,)
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= C))
    if bad.any():
        first = int(t[bad][0])
        raise IndexError(f"cross_entropy: target id {first} is out of range for {C} classes "
                         f"(valid ids are 0..{C - 1}, or ignore_index={ignore_index})")
    if kernels.fused_any(logits):
        loss = kernels.load("CrossEntropy").apply(logits.reshape(-1, C), targets=t,
                                                  ignore_index=ignore_index, reduction=reduction)
        return loss.reshape(targets.shape) if reduction == "none" else loss
    xp = logits.xp
    logp = log_softmax(logits.reshape(-1, C))                       # (N, C)
    picked = logp[xp.arange(t.shape[0]), xp.where(valid, t, 0)]    # (N,)
    nll = -where(Tensor._from_op(valid), picked, 0.0)               # (N,)
    if reduction == "none":
        return nll.reshape(targets.shape)
    if reduction == "sum":
        return nll.sum()
    count = int(valid.sum())
    if count == 0:      # every target ignored: no loss to average (PyTorch returns nan)
        return nll.sum() * float("nan")
    return nll.sum() / count


def nll_loss(log_probs: Tensor, targets: Tensor, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of ``targets`` given log-probabilities (..., C)."""
    # cross_entropy(log_softmax(z)) == cross_entropy(z) because log_softmax is idempotent,
    # so this needs no second implementation.
    return cross_entropy(log_probs, targets, ignore_index, reduction)


def gelu(x: Tensor, approximate: str = "tanh") -> Tensor:
    """Gaussian error linear unit.  ``approximate="tanh"`` (the default here, as GPT-2 uses)
    is 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); ``"none"`` is the exact
    0.5 x (1 + erf(x / sqrt(2))), PyTorch's default.  The tanh form runs the fused kernel
    (``kernels/gelu.py``) on the CPU unless the reference is selected."""
    if approximate == "tanh":
        if kernels.fused_cpu(x):
            return kernels.load("GELU").apply(x)
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1.0 + inner.tanh())
    if approximate == "none":
        return 0.5 * x * (1.0 + (x / math.sqrt(2.0)).erf())
    raise ValueError(f"gelu: approximate must be 'tanh' or 'none', not {approximate!r}")


def relu(x: Tensor) -> Tensor:
    return x.relu()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` axes to mean 0 and variance 1
    (the biased variance, as PyTorch), then scale by ``weight`` and shift by ``bias``.
    Over the last axis alone on the CPU this runs the fused kernel (``kernels/layer_norm.py``)
    unless the reference is selected."""
    normalized_shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                        else tuple(normalized_shape))
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} does not match the "
                         f"trailing dims of the input {x.shape}")
    if (len(normalized_shape) == 1 and normalized_shape[0] > 0 and kernels.fused_cpu(x)
            and all(p is None or (isinstance(p, Tensor) and p.shape == normalized_shape)
                    for p in (weight, bias))):
        params = [p for p in (weight, bias) if p is not None]
        return kernels.load("LayerNorm").apply(x, *params, eps=eps,
                                               has_weight=weight is not None,
                                               has_bias=bias is not None)
    dims = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mu = x.mean(dim=dims, keepdim=True)
    centred = x - mu
    var = (centred * centred).mean(dim=dims, keepdim=True)
    y = centred / (var + eps).sqrt()
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) ("inverted"
    dropout, so evaluation needs no rescaling).  The identity when not training or p == 0."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = backend.generator(x.device).random(x.shape) >= p
    return x * Tensor._from_op((keep / (1.0 - p)).astype(x.dtype))


def embedding(ids: Tensor, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``ids`` (...) -> (..., dim).
    The backward adds each position's gradient into its row; repeated ids accumulate.

    This is where token ids enter a model, and the one place they are range-checked: on the
    host (a list, a NumPy array, a CPU tensor), where a min and a max cost little.  Host data
    (not a tensor) is then copied to the weight's device.  Ids already on the GPU are not
    checked: reading a result back would make the host wait for the GPU at every forward."""
    host = not isinstance(ids, Tensor)
    ids = Tensor(ids, device="cpu") if host else ids
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, not {ids.dtype}")
    n = weight.shape[0]
    if ids.device == "cpu" and ids.numel():
        lo, hi = int(ids.data.min()), int(ids.data.max())
        if lo < 0 or hi >= n:
            bad = hi if hi >= n else lo
            raise IndexError(f"embedding: token id {bad} is out of range for an embedding "
                             f"with {n} rows (valid ids are 0..{n - 1}); is the vocab_size "
                             f"of the model smaller than the tokenizer's?")
    if host:
        ids = ids.to(weight.device)
    if ids.device != weight.device:
        raise RuntimeError(f"embedding: ids on {ids.device} but the weight on {weight.device}")
    return ops.GetItem.apply(weight, index=ids.data, check_bounds=False)   # checked above


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x @ W + b with W stored (in_features, out_features), so it reads as written.
    (PyTorch's ``F.linear`` takes W as (out, in) and computes x @ W.T.)"""
    if x.shape[-1:] != weight.shape[:1]:
        raise ValueError(f"linear: input {x.shape} has {x.shape[-1] if x.ndim else 0} features "
                         f"but the weight {weight.shape} expects {weight.shape[0]}")
    y = x @ weight
    return y if bias is None else y + bias


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask=None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, training: bool = True) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V on q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv).

    attn_mask: boolean, True = may attend (PyTorch's convention), or a float mask that is added
    to the scores; it broadcasts to (B, H, Tq, Tk).  ``is_causal`` lets query i see keys 0..i.
    A query whose keys are all masked gets zeros (not NaN).
    """
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(f"scaled_dot_product_attention: q, k, v must have the same number of "
                         f"dims (B, H, T, D); got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: q {q.shape} and k {k.shape} need the "
                         f"same head size, k and v {v.shape} the same number of keys")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal")
    Tq, Tk = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    mask = _attention_mask_array(attn_mask, q, k)
    if (q.ndim == 4 and (dropout_p == 0.0 or not training) and kernels.fused_any(q)
            and (mask is None or mask.dtype == np.bool_)):
        return kernels.load("Attention").apply(q, k, v, scale=scale, causal=is_causal, mask=mask)
    scores = (q @ k.transpose(-2, -1)) * scale                     # (B, H, Tq, Tk)
    xp = q.xp
    allowed = None
    if is_causal:
        allowed = xp.tril(xp.ones((Tq, Tk), dtype=bool))           # (Tq, Tk)
    elif mask is not None:
        if mask.dtype == np.bool_:
            allowed = mask
        else:
            scores = scores + Tensor._from_op(mask.astype(scores.dtype))
    if allowed is not None:
        # A finite "minus infinity" keeps fully masked rows free of NaN; they are zeroed below.
        lowest = Tensor._from_op(xp.asarray(np.finfo(scores.dtype).min, dtype=scores.dtype))
        scores = where(Tensor._from_op(allowed), scores, lowest)
    att = softmax(scores, dim=-1)
    if allowed is not None:
        has_key = xp.broadcast_to(allowed, scores.shape).any(axis=-1, keepdims=True)
        if not has_key.all():
            att = where(Tensor._from_op(has_key), att, 0.0)
    att = dropout(att, dropout_p, training)
    return att @ v                                                  # (B, H, Tq, Dv)


def _attention_mask_array(attn_mask, q, k):
    """``attn_mask`` as an array on q's device, checked to broadcast to (B, H, Tq, Tk)."""
    if attn_mask is None:
        return None
    if isinstance(attn_mask, Tensor):
        if attn_mask.device != q.device:
            raise RuntimeError(f"scaled_dot_product_attention: attn_mask {attn_mask.shape} on "
                               f"{attn_mask.device} but q {q.shape} on {q.device}")
    mask = Tensor(attn_mask, device=q.device).data     # a list or a host/device array
    scores_shape = (*q.shape[:-1], k.shape[-2])                     # (B, H, Tq, Tk)
    try:
        ok = np.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"scaled_dot_product_attention: attn_mask of shape {mask.shape} does "
                         f"not broadcast to the scores' shape {scores_shape} (B, H, Tq, Tk)")
    return mask
