"""Fused scaled dot-product attention that never builds the T x T matrix.

Reference (``functional.scaled_dot_product_attention`` under ``kernels.use("reference")``)::

    S = Q K^T * scale;  S[masked] = -inf;  P = softmax(S);  O = P V

The kernel works one query row at a time (rows of all (batch, head) pairs in parallel): it
computes that row's scores into a buffer of Tk numbers, takes the softmax, and accumulates
``O_i = sum_j P_ij V_j``.  Forward saves only the row's log-sum-exp ``L_i``; backward
recomputes ``P_ij = exp(S_ij - L_i)`` from it (FlashAttention's trick), so extra memory is
O(B*H*T) instead of O(B*H*T^2).  With ``D_i = dO_i . O_i``::

    dV_j += P_ij dO_i
    dS_ij = P_ij (dO_i . V_j - D_i)
    dQ_i += scale * dS_ij K_j,   dK_j += scale * dS_ij Q_i

A query row with no allowed key returns zeros and passes zero gradients (L_i = -inf).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..function import Function


# Fast-math without "no infinities": -inf marks masked keys and empty rows below.
FASTMATH = {"reassoc", "contract", "arcp"}


@numba.njit(inline="always", fastmath=FASTMATH)
def masked_scores(q, kT, bh, i, n, scale, mask, has_mask, b, h, s):
    """s[:n] = scale * K q_i over the first n keys, -inf where the mask forbids a key.
    Forward calls it once per row; backward calls it again instead of storing S."""
    s[:n] = 0
    for d in range(q.shape[2]):
        qd = q[bh, i, d] * scale
        for j in range(n):                      # along contiguous keys: SIMD
            s[j] += qd * kT[d, j]
    if has_mask:
        for j in range(n):
            if not mask[b, h, i, j]:
                s[j] = -np.inf


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def attention_forward_cpu(q, k, v, scale, causal, mask, has_mask, H, out, lse):
    # q (BH, Tq, D), k (BH, Tk, D), v (BH, Tk, Dv) -> out (BH, Tq, Dv), lse (BH, Tq)
    # Every inner loop runs along the keys j over contiguous memory (K and V are transposed
    # once per head), so LLVM turns it into SIMD code.
    BH, Tq, D = q.shape
    Tk, Dv = k.shape[1], v.shape[2]
    for bh in prange(BH):
        b, h = bh // H, bh % H
        kT = np.ascontiguousarray(k[bh].T)          # (D, Tk)
        vT = np.ascontiguousarray(v[bh].T)          # (Dv, Tk)
        s = np.empty(Tk, q.dtype)                   # one row of scores: O(T) memory
        for i in range(Tq):
            n = min(i + 1, Tk) if causal else Tk    # causal: keys 0..i only
            masked_scores(q, kT, bh, i, n, scale, mask, has_mask, b, h, s)
            m = -np.inf
            for j in range(n):
                m = max(m, s[j])
            if m == -np.inf:                        # no key allowed: zeros
                out[bh, i, :] = 0
                lse[bh, i] = -np.inf
                continue
            total = m - m                           # a zero of the data's dtype
            for j in range(n):
                s[j] = np.exp(s[j] - m)             # masked keys: exp(-inf) = 0
                total += s[j]
            inv = 1 / total
            for d in range(Dv):                     # O_i = sum_j P_ij V_j
                acc = total - total
                for j in range(n):
                    acc += s[j] * vT[d, j]
                out[bh, i, d] = acc * inv
            lse[bh, i] = m + np.log(total)


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def attention_backward_cpu(q, k, v, out, dout, lse, scale, causal, mask, has_mask, H,
                           dq, dk, dv):
    # dq arrives zeroed; each (batch, head) pair is one thread's work, so the
    # accumulations into dK_j and dV_j never race.  dK and dV are summed in transposed
    # (D, Tk) buffers so that every inner loop runs along contiguous keys.
    BH, Tq, D = q.shape
    Tk, Dv = k.shape[1], v.shape[2]
    for bh in prange(BH):
        b, h = bh // H, bh % H
        kT = np.ascontiguousarray(k[bh].T)          # (D, Tk)
        vT = np.ascontiguousarray(v[bh].T)          # (Dv, Tk)
        dkT = np.zeros((D, Tk), q.dtype)
        dvT = np.zeros((Dv, Tk), q.dtype)
        p = np.empty(Tk, q.dtype)
        ds = np.empty(Tk, q.dtype)
        for i in range(Tq):
            L = lse[bh, i]
            if L == -np.inf:
                continue
            n = min(i + 1, Tk) if causal else Tk
            delta = out[bh, i, 0] * dout[bh, i, 0]
            for d in range(1, Dv):
                delta += out[bh, i, d] * dout[bh, i, d]
            masked_scores(q, kT, bh, i, n, scale, mask, has_mask, b, h, p)
            ds[:n] = 0
            for d in range(Dv):                     # dP_ij = dO_i . V_j
                gd = dout[bh, i, d]
                for j in range(n):
                    ds[j] += gd * vT[d, j]
            for j in range(n):
                p[j] = np.exp(p[j] - L)             # P_ij (0 for masked keys)
                ds[j] = p[j] * (ds[j] - delta) * scale
            for d in range(Dv):                     # dV_j += P_ij dO_i
                gd = dout[bh, i, d]
                for j in range(n):
                    dvT[d, j] += p[j] * gd
            for d in range(D):                      # dQ_i = sum_j dS_ij K_j;  dK_j += dS_ij Q_i
                acc = delta - delta
                qd = q[bh, i, d]
                for j in range(n):
                    acc += ds[j] * kT[d, j]
                    dkT[d, j] += ds[j] * qd
                dq[bh, i, d] = acc
        dk[bh] = dkT.T
        dv[bh] = dvT.T


def attention_reference(q, k, v, allowed=None, scale=None):
    """Plain NumPy attention (materialises the T x T matrix); rows with no key give zeros."""
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    m = s.max(-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        p = np.exp(s - np.where(np.isfinite(m), m, 0))
        p = p / p.sum(-1, keepdims=True)
    return np.nan_to_num(p) @ v


class Attention(Function):
    """softmax(Q K^T * scale) V on (B, H, T, D) inputs, causal and/or boolean-masked, fused.
    ``mask`` (True = may attend) broadcasts to (B, H, Tq, Tk); it is never copied."""

    def __init__(self, scale, causal=False, mask=None):
        self.scale, self.causal, self.mask = scale, bool(causal), mask

    def forward(self, q, k, v):
        B, H, Tq, D = q.shape
        Tk, Dv = k.shape[2], v.shape[3]
        self.shapes = (q.shape, k.shape, v.shape)
        q3, k3, v3 = (np.ascontiguousarray(a.reshape(B * H, a.shape[2], a.shape[3]))
                      for a in (q, k, v))
        has_mask = self.mask is not None
        self.mask4 = (np.broadcast_to(self.mask, (B, H, Tq, Tk)) if has_mask
                      else np.ones((1, 1, 1, 1), dtype=bool))
        self.H = H
        self.scale_ = q.dtype.type(self.scale)
        out = np.empty((B * H, Tq, Dv), q.dtype)
        lse = np.empty((B * H, Tq), q.dtype)
        attention_forward_cpu(q3, k3, v3, self.scale_, self.causal, self.mask4, has_mask, H,
                              out, lse)
        self.save_for_backward(q3, k3, v3, out, lse)
        return out.reshape(B, H, Tq, Dv)

    def backward(self, g):
        q3, k3, v3, out, lse = self.saved
        # dq stays zero on rows with no allowed key; dk and dv are written whole.
        dq, dk, dv = np.zeros_like(q3), np.empty_like(k3), np.empty_like(v3)
        g3 = np.ascontiguousarray(g.reshape(out.shape), dtype=q3.dtype)
        attention_backward_cpu(q3, k3, v3, out, g3, lse, self.scale_, self.causal, self.mask4,
                               self.mask is not None, self.H, dq, dk, dv)
        qs, ks, vs = self.shapes
        return dq.reshape(qs), dk.reshape(ks), dv.reshape(vs)
