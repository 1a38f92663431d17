"""Fused GELU, tanh approximation: one pass forward, one pass backward.

Reference (what ``kernels.use("reference")`` runs, see ``functional.gelu``)::

    u  = sqrt(2/pi) (x + 0.044715 x^3)
    y  = 0.5 x (1 + tanh(u))
    dx = dy (0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))

The composite is ~10 elementwise ops, each a pass over memory with its own temporary, and
keeps several of those temporaries alive for backward.  The kernel saves only x.

It uses 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)).  With e = exp(-2|u|) in (0, 1]
(never overflows), p = 1 / (1 + e) and q = e p:

    sigmoid(2u) = p if u >= 0 else q,     sigmoid(2u) (1 - sigmoid(2u)) = p q

so y = x s and dy/dx = s + 2 x p q sqrt(2/pi) (1 + 3 * 0.044715 x^2), without the
cancellation of 1 + tanh(u) for very negative u.  ``fast_exp`` (see ``attention.py``) is plain
arithmetic, so LLVM vectorises the loops; ``np.tanh``/``np.exp`` would be one C-library call
per element.  Constants are passed in typed like the data, so float32 stays float32.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from ..function import Function
from . import by_size, serial_twin
from .attention import fast_exp

FASTMATH = {"reassoc", "contract", "arcp"}
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
COEF = 0.044715


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def gelu_forward_cpu(x, y, k, c, one):
    # x, y: (n,) contiguous.  k = sqrt(2/pi), c = 0.044715, one = 1, all in x's dtype.
    for i in prange(x.shape[0]):
        v = x[i]
        u = k * (v + c * v * v * v)
        e = fast_exp(-(u + u) if u >= 0 else u + u)
        p = one / (one + e)
        y[i] = v * (p if u >= 0 else e * p)


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def gelu_backward_cpu(x, dy, dx, k, c, one):
    # dx = dy * (s + 2 x s (1 - s) k (1 + 3 c x^2)),  s = sigmoid(2u)
    three = one + one + one
    for i in prange(x.shape[0]):
        v = x[i]
        u = k * (v + c * v * v * v)
        e = fast_exp(-(u + u) if u >= 0 else u + u)
        p = one / (one + e)
        q = e * p
        s = p if u >= 0 else q
        dx[i] = dy[i] * (s + (v + v) * (p * q) * k * (one + three * c * v * v))


gelu_forward_serial = serial_twin(gelu_forward_cpu)
gelu_backward_serial = serial_twin(gelu_backward_cpu)


def gelu_reference(x):
    """Plain NumPy tanh-GELU (the kernels are tested against this)."""
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + COEF * x ** 3)))


def _consts(dtype):
    f = dtype.type
    return f(SQRT_2_OVER_PI), f(COEF), f(1.0)


class GELU(Function):
    """y = gelu(x) with the tanh approximation, elementwise, fused forward and backward."""

    def forward(self, x):
        flat = np.ascontiguousarray(x).reshape(-1)
        y = np.empty_like(flat)
        if flat.size:
            kernel = by_size(gelu_forward_cpu, gelu_forward_serial, flat.size)
            kernel(flat, y, *_consts(flat.dtype))
        self.shape = x.shape
        self.save_for_backward(flat)
        return y.reshape(x.shape)

    def backward(self, g):
        (flat,) = self.saved
        shape = self.shape
        dx = np.empty_like(flat)
        if flat.size:
            dy = np.ascontiguousarray(g, dtype=flat.dtype).reshape(-1)
            kernel = by_size(gelu_backward_cpu, gelu_backward_serial, flat.size)
            kernel(flat, dy, dx, *_consts(flat.dtype))
        return (dx.reshape(shape),)
