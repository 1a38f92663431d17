"""Fused GELU, tanh approximation: one pass forward, one pass backward.

The math (the reference is ``functional.gelu``)::

    u  = sqrt(2/pi) (x + 0.044715 x^3)
    y  = 0.5 x (1 + tanh(u))
    dx = dy (0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))

The composite is ~10 elementwise ops, each a pass over memory with its own temporary, and
keeps several of those temporaries alive for backward.  The kernel saves only x.

It uses 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)).  With e = exp(-2|u|) in (0, 1]
(never overflows), p = 1 / (1 + e) and q = e p:

    sigmoid(2u) = p if u >= 0 else q,     sigmoid(2u) (1 - sigmoid(2u)) = p q

so y = x s and dy/dx = s + 2 x p q sqrt(2/pi) (1 + 3 * 0.044715 x^2), without the
cancellation of 1 + tanh(u) for very negative u, and with ``fast_exp`` (``jit.py``), not
``np.tanh``/``np.exp``, so that the loops vectorise.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..autograd import Function
from .jit import fast_exp, parallel_kernel

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
COEF = 0.044715


@parallel_kernel()
def gelu_forward(x, y):
    # x, y: (n,) contiguous.
    k, c, one = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(COEF), x.dtype.type(1)
    for i in prange(x.shape[0]):
        v = x[i]
        u = k * (v + c * v * v * v)
        e = fast_exp(-(u + u) if u >= 0 else u + u)
        p = one / (one + e)
        y[i] = v * (p if u >= 0 else e * p)


@parallel_kernel()
def gelu_backward(x, dy, dx):
    # dx = dy * (s + 2 x s (1 - s) k (1 + 3 c x^2)),  s = sigmoid(2u)
    k, c, one = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(COEF), x.dtype.type(1)
    three = x.dtype.type(3)
    for i in prange(x.shape[0]):
        v = x[i]
        u = k * (v + c * v * v * v)
        e = fast_exp(-(u + u) if u >= 0 else u + u)
        p = one / (one + e)
        q = e * p
        s = p if u >= 0 else q
        dx[i] = dy[i] * (s + (v + v) * (p * q) * k * (one + three * c * v * v))


class GELU(Function):
    """y = gelu(x) with the tanh approximation, elementwise, fused forward and backward."""

    def forward(self, x):
        flat = np.ascontiguousarray(x).reshape(-1)
        y = np.empty_like(flat)
        if flat.size:
            gelu_forward(flat, y)
        self.shape = x.shape
        self.save_for_backward(flat)
        return y.reshape(x.shape)

    def backward(self, g):
        (flat,) = self.saved
        dx = np.empty_like(flat)
        if flat.size:
            dy = np.ascontiguousarray(g, dtype=flat.dtype).reshape(-1)
            gelu_backward(flat, dy, dx)
        return (dx.reshape(self.shape),)
