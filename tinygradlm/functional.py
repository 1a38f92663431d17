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


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``.

    Subtracting the row max first keeps exp() from overflowing; softmax is unchanged by the
    shift, so the max is detached and never differentiated.  Over the last axis this runs the
    fused kernel (``kernels/softmax.py``, CPU or GPU) unless the reference is selected.
    """
    if x.ndim == 0:                     # as PyTorch: a 0-d tensor is one row of one element
        return softmax(x.reshape(1), 0).reshape(())
    dim = ops.normalize_dims("softmax", dim, x.ndim)[0]
    if x.numel() == 0:                  # nothing to normalise (and no max to subtract)
        return x * 0
    if dim == x.ndim - 1 and kernels.fused_any(x):
        return kernels.load("Softmax").apply(x)
    e = (x - x.amax(dim=dim, keepdim=True).detach()).exp()
    return e / e.sum(dim=dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """x - log(sum(exp(x))) along ``dim``, computed as (x - max) - log(sum(exp(x - max)))."""
    if x.ndim == 0:
        return log_softmax(x.reshape(1), 0).reshape(())
    dim = ops.normalize_dims("log_softmax", dim, x.ndim)[0]
    if x.numel() == 0:
        return x * 0
    shifted = x - x.amax(dim=dim, keepdim=True).detach()
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def _classes_last(op, x: Tensor, targets: Tensor, per_class: bool):
    """PyTorch's layout -- x (N, C) or (N, C, d1, ...), classes on dim 1, or (C,) for one
    sample -- as rows (M, C) with the targets (M,) (or (M, C) class probabilities when
    ``per_class``), plus the shape a reduction="none" result takes."""
    if x.ndim == 0:
        raise ValueError(f"{op}: the input must have a class dimension, got a 0-d tensor")
    if targets.device != x.device:
        raise RuntimeError(f"{op}: input {x.shape} on {x.device} but targets {targets.shape} on "
                           f"{targets.device}; move both to one device with .to(...)")
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    out_shape = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    want = x.shape if per_class else out_shape
    if targets.shape != want:
        raise ValueError(f"{op}: input {x.shape} (classes on dim {0 if x.ndim == 1 else 1}) needs "
                         f"{'class probabilities' if per_class else 'targets'} of shape {want}, "
                         f"got {targets.shape}")
    if x.ndim == 1:
        rows, targets = x.unsqueeze(0), targets.unsqueeze(0)
    else:
        rows = x if x.ndim == 2 else x.movedim(1, -1).reshape(-1, C)      # (M, C)
        targets = targets.movedim(1, -1).reshape(-1, C) if per_class and x.ndim > 2 else (
            targets if per_class else targets.reshape(-1))
    return rows, targets, out_shape, C


def _reduce(loss: Tensor, reduction: str, out_shape, denominator):
    if reduction == "none":
        return loss.reshape(out_shape)
    if reduction == "sum":
        return loss.sum()
    with np.errstate(invalid="ignore", divide="ignore"):   # nothing counted: nan, as PyTorch
        return loss.sum() / denominator


def _check_reduction(op, reduction):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def nll_loss(log_probs: Tensor, targets, weight: Tensor | None = None,
             ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer ``targets`` given log-probabilities, as PyTorch:
    log_probs (N, C) or (N, C, d1, ...) -- classes on dim 1 -- with targets (N,) or
    (N, d1, ...), or (C,) with a 0-d target.  loss_i = -weight[t_i] * log_probs[i, t_i];
    ``ignore_index`` targets count nothing; "mean" divides by the summed weights of the
    targets that count (their number without ``weight``; nan when none does, as PyTorch)."""
    _check_reduction("nll_loss", reduction)
    targets = targets if isinstance(targets, Tensor) else Tensor(targets, device=log_probs.device)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: targets must be integer class ids, not {targets.dtype}")
    rows, t_, out_shape, C = _classes_last("nll_loss", log_probs, targets, per_class=False)
    t = t_.data                                                     # (M,)
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= C))
    if bad.any():
        raise IndexError(f"nll_loss: target id {int(t[bad][0])} is out of range for {C} "
                         f"classes (valid ids are 0..{C - 1}, or ignore_index={ignore_index})")
    xp = rows.xp
    safe = xp.where(valid, t, 0)
    picked = rows[xp.arange(t.shape[0]), safe]                      # (M,)
    w = xp.where(valid, 1.0, 0.0).astype(rows.dtype)                # (M,) 0 where ignored
    if weight is not None:
        if weight.shape != (C,):
            raise ValueError(f"nll_loss: weight must have shape ({C},), got {weight.shape}")
        w = weight.to(rows.dtype)[Tensor._from_op(safe)] * Tensor._from_op(w)
    else:
        w = Tensor._from_op(w)
    loss = -(picked * w)                                            # (M,)
    return _reduce(loss, reduction, out_shape, w.sum())


def cross_entropy(logits: Tensor, targets, weight: Tensor | None = None,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy between ``softmax(logits)`` and the targets, as PyTorch: logits (N, C) or
    (N, C, d1, ...) -- classes on dim 1 -- and either integer class ids (N, d1, ...) (with
    ``ignore_index``, ``weight`` per class) or class probabilities of the logits' shape.

    ``label_smoothing`` = e mixes the targets with the uniform distribution: (1 - e) of the
    loss is the target's, e of it the mean over all classes.  Integer targets on 2-D logits
    without class weights run the fused kernel (``kernels/cross_entropy.py``) unless the
    reference is selected.  A language model passes its (B, T, V) logits as (B*T, V).
    """
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    targets = targets if isinstance(targets, Tensor) else Tensor(targets, device=logits.device)
    if targets.dtype.kind == "f":                       # class probabilities
        rows, probs, out_shape, C = _classes_last("cross_entropy", logits, targets, True)
        if label_smoothing:
            probs = probs * (1.0 - label_smoothing) + label_smoothing / C
        per_class = -(log_softmax(rows) * probs.to(rows.dtype))     # (M, C)
        if weight is not None:
            per_class = per_class * weight.to(rows.dtype)
        return _reduce(per_class.sum(dim=-1), reduction, out_shape, rows.shape[0])
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class ids or float class "
                        f"probabilities, not {targets.dtype}")
    if weight is None and logits.ndim == 2 and kernels.fused_any(logits):
        rows, t, out_shape, C = _classes_last("cross_entropy", logits, targets, False)
        bad = (t.data != ignore_index) & ((t.data < 0) | (t.data >= C))
        if bad.any():
            raise IndexError(f"cross_entropy: target id {int(t.data[bad][0])} is out of range "
                             f"for {C} classes (valid ids are 0..{C - 1}, or "
                             f"ignore_index={ignore_index})")
        return kernels.load("CrossEntropy").apply(rows, targets=t.data,
                                                  ignore_index=ignore_index, reduction=reduction,
                                                  label_smoothing=label_smoothing)
    logp = log_softmax(logits, dim=0 if logits.ndim == 1 else 1)
    nll = nll_loss(logp, targets, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    # The uniform part: -sum_c w_c log p_c / C per counted target, averaged like the nll.
    rows, t, out_shape, C = _classes_last("cross_entropy", logp, targets, False)
    valid = Tensor._from_op((t.data != ignore_index).astype(rows.dtype))            # (M,)
    w = weight.to(rows.dtype) if weight is not None else None
    smooth = -((rows * w) if w is not None else rows).sum(dim=-1) * valid          # (M,)
    if w is None:
        count = valid.sum()
    else:
        count = (w[Tensor._from_op(rows.xp.where(t.data != ignore_index, t.data, 0))]
                 * valid).sum()
    smooth = _reduce(smooth, reduction, out_shape, count)
    return nll * (1.0 - label_smoothing) + smooth * (label_smoothing / C)


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


# --- more activations: each a composite of the primitives, as PyTorch defines it -------------
def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, negative_slope * x elsewhere."""
    return where(x > 0, x, x * negative_slope)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x where x > 0, alpha (e^x - 1) elsewhere (exp of the clipped input, so no overflow)."""
    return where(x > 0, x, ((x.clip(max=0.0)).exp() - 1) * alpha)


def celu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """max(0, x) + min(0, alpha (e^(x / alpha) - 1))."""
    return where(x > 0, x, ((x.clip(max=0.0) / alpha).exp() - 1) * alpha)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def selu(x: Tensor) -> Tensor:
    """scale * elu(x, alpha) with the constants that keep activations at mean 0, variance 1."""
    return elu(x, SELU_ALPHA) * SELU_SCALE


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (also called swish)."""
    return x * x.sigmoid()


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (as PyTorch)."""
    bx = x * beta
    smooth = (bx.clip(max=threshold).exp() + 1).log() / beta
    return where(bx > threshold, x, smooth)


def mish(x: Tensor) -> Tensor:
    """x * tanh(softplus(x))."""
    return x * softplus(x).tanh()


def softsign(x: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return x / (x.abs() + 1)


def hardtanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return x.clip(min_val, max_val)


def relu6(x: Tensor) -> Tensor:
    return x.clip(0.0, 6.0)


def hardsigmoid(x: Tensor) -> Tensor:
    """relu6(x + 3) / 6: a piecewise-linear sigmoid."""
    return relu6(x + 3.0) / 6.0


def hardswish(x: Tensor) -> Tensor:
    """x * relu6(x + 3) / 6."""
    return x * hardsigmoid(x)


def logsigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), computed without overflow."""
    return -softplus(-x)


def softmin(x: Tensor, dim: int = -1) -> Tensor:
    return softmax(-x, dim)


def normalize(x: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(||x||_p, eps) along ``dim``."""
    norm = (x.abs() ** p).sum(dim=dim, keepdim=True) ** (1.0 / p)
    return x / norm.clip(min=eps)


def one_hot(ids: Tensor, num_classes: int = -1) -> Tensor:
    """(..., ) integer ids -> (..., num_classes) int64 with a 1 at each id."""
    if ids.dtype.kind not in "iu":
        raise TypeError(f"one_hot: ids must be integers, not {ids.dtype}")
    n = int(ids.numpy().max()) + 1 if num_classes < 0 else num_classes
    if ids.numel() and (int(ids.numpy().min()) < 0 or int(ids.numpy().max()) >= n):
        raise ValueError(f"one_hot: ids must be in [0, {n}), got values from "
                         f"{int(ids.numpy().min())} to {int(ids.numpy().max())}")
    xp = ids.xp
    return Tensor._from_op((ids.data[..., None] == xp.arange(n)).astype(xp.int64))


# --- regression and binary losses ----------------------------------------------------------------
def _pointwise_loss(op, loss: Tensor, reduction: str) -> Tensor:
    _check_reduction(op, reduction)
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _same_shape(op, x: Tensor, target: Tensor):
    target = target if isinstance(target, Tensor) else Tensor(target, device=x.device)
    if target.shape != x.shape:
        raise ValueError(f"{op}: input {x.shape} and target {target.shape} must have the same "
                         f"shape")
    return target


def mse_loss(x: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    d = x - _same_shape("mse_loss", x, target)
    return _pointwise_loss("mse_loss", d * d, reduction)


def l1_loss(x: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    return _pointwise_loss("l1_loss", (x - _same_shape("l1_loss", x, target)).abs(), reduction)


def smooth_l1_loss(x: Tensor, target: Tensor, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (d = x - target)."""
    d = (x - _same_shape("smooth_l1_loss", x, target)).abs()
    if beta == 0:
        return _pointwise_loss("smooth_l1_loss", d, reduction)
    return _pointwise_loss("smooth_l1_loss",
                           where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta), reduction)


def binary_cross_entropy(p: Tensor, target: Tensor, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)) for probabilities p; the logs are clamped at -100, as
    PyTorch, so p = 0 or 1 gives a large finite loss, not inf."""
    t = _same_shape("binary_cross_entropy", p, target).to(p.dtype)
    with np.errstate(divide="ignore"):                  # log(0) = -inf, clamped just below
        loss = -(t * p.log().clip(min=-100.0) + (1 - t) * (1 - p).log().clip(min=-100.0))
    if weight is not None:
        loss = loss * weight
    return _pointwise_loss("binary_cross_entropy", loss, reduction)


def binary_cross_entropy_with_logits(x: Tensor, target: Tensor, weight: Tensor | None = None,
                                     reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """binary_cross_entropy(sigmoid(x), t) computed from the logits without overflow:
    -(pos_weight t log sigmoid(x) + (1 - t) log sigmoid(-x))."""
    t = _same_shape("binary_cross_entropy_with_logits", x, target).to(x.dtype)
    positive = -logsigmoid(x) * t
    if pos_weight is not None:
        positive = positive * pos_weight
    loss = positive - logsigmoid(-x) * (1 - t)
    if weight is not None:
        loss = loss * weight
    return _pointwise_loss("binary_cross_entropy_with_logits", loss, reduction)


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


def pad(x: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last dims: ``pad = (left, right)`` pads the last dim, ``(left, right, top,
    bottom)`` the last two, and so on (PyTorch's order: the last dim first).  Modes:
    "constant" (``value``, default 0; a negative width crops), and "reflect" (mirror without
    the edge: [a b c] -> b [a b c] b), "replicate" (repeat the edge) and "circular" (wrap
    around), which are all indexing with a computed index per dim."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) > 2 * x.ndim:
        raise ValueError(f"pad: expects (left, right) pairs for at most {x.ndim} dims, got "
                         f"{pad} for a tensor of shape {x.shape}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):                      # pairs from the last dim backwards
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if mode == "constant":
        sizes = [n + lo + hi for n, (lo, hi) in zip(x.shape, widths)]
        if min(sizes, default=0) < 0:
            raise ValueError(f"pad: widths {pad} leave a negative size {sizes} for a tensor "
                             f"of shape {x.shape}")
        return ops.Pad.apply(x, widths=widths, value=0.0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or "
                         f"'circular', not {mode!r}")
    if value not in (None, 0, 0.0):
        raise ValueError(f"pad: value is only for mode 'constant', not {mode!r}")
    xp = x.xp
    for dim, (lo, hi) in enumerate(widths):
        n = x.shape[dim]
        if lo == hi == 0:
            continue
        limit = n - 1 if mode == "reflect" else n
        if min(lo, hi) < 0 or max(lo, hi) > limit and mode != "replicate":
            raise ValueError(f"pad: {mode} padding of ({lo}, {hi}) must be non-negative and "
                             f"at most {limit} for dim {dim} of size {n}")
        at = xp.arange(-lo, n + hi)                          # positions in the padded dim
        if mode == "reflect":
            at = xp.abs(at)
            at = xp.where(at > n - 1, 2 * (n - 1) - at, at)
        elif mode == "replicate":
            at = xp.clip(at, 0, n - 1)
        else:
            at = at % n
        x = x.index_select(dim, at)
    return x


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x @ W + b with W stored (in_features, out_features), so it reads as written.
    (PyTorch's ``F.linear`` takes W as (out, in) and computes x @ W.T.)"""
    if x.shape[-1:] != weight.shape[:1]:
        raise ValueError(f"linear: input {x.shape} has {x.shape[-1] if x.ndim else 0} features "
                         f"but the weight {weight.shape} expects {weight.shape[0]}")
    if (weight.ndim == 2 and kernels.fused_arrays(x)
            and (bias is None or bias.shape == weight.shape[1:])):
        return kernels.load("Linear").apply(x, weight, *(() if bias is None else (bias,)))
    y = x @ weight
    return y if bias is None else y + bias


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask=None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, training: bool = True,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V on q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv).

    attn_mask: boolean, True = may attend (PyTorch's convention), or a float mask that is added
    to the scores (a tensor that requires grad, such as a learned position bias, gets its
    gradient); it broadcasts to (B, H, Tq, Tk).  ``is_causal`` lets query i see keys 0..i.
    ``enable_gqa``: k and v may have fewer heads than q (grouped-query attention); each of
    their heads serves H / H_kv consecutive query heads.
    A query whose keys are all masked gets zeros (not NaN).
    """
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(f"scaled_dot_product_attention: q, k, v must have the same number of "
                         f"dims (B, H, T, D); got {q.shape}, {k.shape}, {v.shape}")
    if enable_gqa and q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        if q.shape[-3] % k.shape[-3] or k.shape[-3] != v.shape[-3]:
            raise ValueError(f"scaled_dot_product_attention: with enable_gqa, q's {q.shape[-3]} "
                             f"heads must be a multiple of k's and v's ({k.shape[-3]}, "
                             f"{v.shape[-3]})")
        k, v = (t.repeat_interleave(q.shape[-3] // t.shape[-3], dim=-3) for t in (k, v))
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: q {q.shape} and k {k.shape} need the "
                         f"same head size, k and v {v.shape} the same number of keys")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal")
    Tq, Tk = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    mask = _attention_mask_array(attn_mask, q, k)
    if (q.ndim == 4 and (dropout_p == 0.0 or not training) and kernels.fused_any(q)
            and (mask is None or mask.dtype == np.bool_)):       # a float mask: the composite
        return kernels.load("Attention").apply(q, k, v, scale=scale, causal=is_causal, mask=mask)
    scores = (q @ k.transpose(-2, -1)) * scale                     # (B, H, Tq, Tk)
    xp = q.xp
    allowed = None
    if is_causal:
        allowed = xp.tril(xp.ones((Tq, Tk), dtype=bool))           # (Tq, Tk)
    elif mask is not None:
        if mask.dtype == np.bool_:
            allowed = mask
        elif isinstance(attn_mask, Tensor):     # differentiable: a learned bias trains
            scores = scores + attn_mask.to(scores.dtype)
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
