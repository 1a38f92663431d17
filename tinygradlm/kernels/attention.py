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


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def attention_forward_cpu(q, k, v, scale, causal, mask, has_mask, H, out, lse):
    # q (BH, Tq, D), k (BH, Tk, D), v (BH, Tk, Dv) -> out (BH, Tq, Dv), lse (BH, Tq)
    BH, Tq, D = q.shape
    Tk, Dv = k.shape[1], v.shape[2]
    for bh in prange(BH):
        b, h = bh // H, bh % H
        kT = np.ascontiguousarray(k[bh].T)          # (D, Tk): score loops run along keys
        s = np.empty(Tk, q.dtype)                   # one row of scores: O(T) memory
        for i in range(Tq):
            n = min(i + 1, Tk) if causal else Tk    # causal: keys 0..i only
            s[:n] = 0
            for d in range(D):                      # s = scale * K q_i, vectorised over keys
                qd = q[bh, i, d] * scale
                for j in range(n):
                    s[j] += qd * kT[d, j]
            m = -np.inf
            for j in range(n):
                if has_mask and not mask[b, h, i, j]:
                    s[j] = -np.inf
                elif s[j] > m:
                    m = s[j]
            o = out[bh, i]
            o[:] = 0
            if m == -np.inf:                        # no key allowed: zeros
                lse[bh, i] = -np.inf
                continue
            total = m - m                           # a zero of the data's dtype
            for j in range(n):
                if s[j] != -np.inf:
                    p = np.exp(s[j] - m)
                    total += p
                    vj = v[bh, j]
                    for d in range(Dv):
                        o[d] += p * vj[d]
            inv = 1 / total
            for d in range(Dv):
                o[d] *= inv
            lse[bh, i] = m + np.log(total)


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def attention_backward_cpu(q, k, v, out, dout, lse, scale, causal, mask, has_mask, H,
                           dq, dk, dv):
    # dq, dk, dv arrive zeroed; each (batch, head) pair is one thread's work, so the
    # accumulations into dK_j and dV_j never race.
    BH, Tq, D = q.shape
    Tk, Dv = k.shape[1], v.shape[2]
    for bh in prange(BH):
        b, h = bh // H, bh % H
        kT = np.ascontiguousarray(k[bh].T)          # (D, Tk)
        vT = np.ascontiguousarray(v[bh].T)          # (Dv, Tk)
        p = np.empty(Tk, q.dtype)
        dp = np.empty(Tk, q.dtype)
        for i in range(Tq):
            L = lse[bh, i]
            if L == -np.inf:
                continue
            n = min(i + 1, Tk) if causal else Tk
            go, qi, dqi = dout[bh, i], q[bh, i], dq[bh, i]
            delta = go[0] * out[bh, i, 0]
            for d in range(1, Dv):
                delta += go[d] * out[bh, i, d]
            p[:n] = 0
            dp[:n] = 0
            for d in range(D):                      # recompute the scores
                qd = qi[d] * scale
                for j in range(n):
                    p[j] += qd * kT[d, j]
            for d in range(Dv):                     # dP_ij = dO_i . V_j
                gd = go[d]
                for j in range(n):
                    dp[j] += gd * vT[d, j]
            for j in range(n):
                if has_mask and not mask[b, h, i, j]:
                    continue
                pj = np.exp(p[j] - L)
                ds = pj * (dp[j] - delta) * scale
                dvj, dkj, kj = dv[bh, j], dk[bh, j], k[bh, j]
                for d in range(Dv):
                    dvj[d] += pj * go[d]
                for d in range(D):
                    dqi[d] += ds * kj[d]
                    dkj[d] += ds * qi[d]


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
        dq, dk, dv = np.zeros_like(q3), np.zeros_like(k3), np.zeros_like(v3)
        g3 = np.ascontiguousarray(g.reshape(out.shape), dtype=q3.dtype)
        attention_backward_cpu(q3, k3, v3, out, g3, lse, self.scale_, self.causal, self.mask4,
                               self.mask is not None, self.H, dq, dk, dv)
        qs, ks, vs = self.shapes
        return dq.reshape(qs), dk.reshape(ks), dv.reshape(vs)
