"""Fused cross-entropy from logits: log-softmax and the negative log-likelihood in one pass.

The math (the reference is ``functional.cross_entropy``)::

    loss_i = logsumexp(x_i) - x_i[t_i]            (0 where t_i == ignore_index)
    dx_i   = w_i * (softmax(x_i) - onehot(t_i))   w_i = dL/dloss_i

With label smoothing e the target is (1 - e) onehot(t_i) + e / C (every class a little)::

    loss_i = logsumexp(x_i) - (1 - e) x_i[t_i] - e mean_j x_ij
    dx_i   = w_i * (softmax(x_i) - (1 - e) onehot(t_i) - e / C)

The composite materialises the (N, C) log-probability matrix and several temporaries of the
same size; the kernel saves one number per row (the log-sum-exp) and recomputes softmax in
backward, which matters for the LM head where C is the vocabulary.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..autograd import Function
from ..backend import get_array_module
from .jit import fast_exp, parallel_kernel
from .softmax import row_max


@parallel_kernel(gpu="cross_entropy_forward_cuda")
def cross_entropy_forward(x, targets, ignore_index, smoothing, loss, lse):
    # x (N, C), targets (N,) -> loss (N,), lse (N,); ignored rows get loss 0.
    N, C = x.shape
    zero, one, e = x.dtype.type(0), x.dtype.type(1), x.dtype.type(smoothing)
    n = x.dtype.type(C)                             # in x's dtype: float32 stays float32
    for i in prange(N):
        m = row_max(x, i)
        s = zero
        total = zero                                # sum_j x_ij, for the smoothing term
        for j in range(C):
            s += fast_exp(x[i, j] - m)
            total += x[i, j]
        lse[i] = m + np.log(s)
        t = targets[i]
        if t == ignore_index:
            loss[i] = zero
        else:
            loss[i] = lse[i] - (one - e) * x[i, t] - e * total / n


@parallel_kernel(gpu="cross_entropy_backward_cuda")
def cross_entropy_backward(x, targets, ignore_index, smoothing, lse, weight, dx):
    # dx[i] = weight[i] * (exp(x[i] - lse[i]) - (1 - e) onehot(t_i) - e / C); zero rows where
    # ignored.
    N, C = x.shape
    zero, e, one = x.dtype.type(0), x.dtype.type(smoothing), x.dtype.type(1)
    spread = e / x.dtype.type(C)                    # in x's dtype: float32 stays float32
    for i in prange(N):
        t = targets[i]
        if t == ignore_index:
            for j in range(C):
                dx[i, j] = zero
            continue
        w, L = weight[i], lse[i]
        for j in range(C):
            dx[i, j] = w * (fast_exp(x[i, j] - L) - spread)
        dx[i, t] -= w * (one - e)


class CrossEntropy(Function):
    """Mean / sum / per-row cross-entropy of (N, C) logits against (N,) ids, with optional
    label smoothing, fused (CPU and GPU).  Targets are checked by ``functional.cross_entropy``
    before they reach the kernel."""

    def __init__(self, targets, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        xp = get_array_module(targets)
        self.targets = xp.ascontiguousarray(targets, dtype=xp.int64)
        self.ignore_index, self.reduction = int(ignore_index), reduction
        self.smoothing = float(label_smoothing)

    def forward(self, x):
        xp = get_array_module(x)
        x = xp.ascontiguousarray(x)
        N = x.shape[0]
        loss, lse = xp.empty(N, x.dtype), xp.empty(N, x.dtype)
        if N:
            cross_entropy_forward(x, self.targets, self.ignore_index, self.smoothing, loss, lse)
        self.count = int((self.targets != self.ignore_index).sum())
        self.save_for_backward(x, lse)
        if self.reduction == "none":
            return loss
        total = loss.sum(dtype=x.dtype)
        if self.reduction == "sum":
            return total
        with np.errstate(invalid="ignore", divide="ignore"):    # nan when all are ignored
            return xp.asarray(total / x.dtype.type(self.count), dtype=x.dtype)

    def backward(self, g):
        x, lse = self.saved
        xp = get_array_module(x)
        N = x.shape[0]
        if self.reduction == "none":
            weight = xp.ascontiguousarray(g, dtype=x.dtype)
        else:
            scale = g if self.reduction == "sum" else g / max(self.count, 1)
            weight = xp.ones(N, dtype=x.dtype) * scale          # scale: a 0-d array
        dx = xp.empty_like(x)
        if N:
            cross_entropy_backward(x, self.targets, self.ignore_index, self.smoothing, lse,
                                   weight, dx)
        return (dx,)
