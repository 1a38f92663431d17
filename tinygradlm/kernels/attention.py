"""Fused scaled dot-product attention: BLAS for the products, one Numba pass for the softmax.

The math (the reference is ``functional.scaled_dot_product_attention``)::

    S = Q K^T * scale;  S[masked] = -inf;  P = softmax(S);  O = P V

Forward saves only each query row's log-sum-exp ``L_i``; backward recomputes
``P_ij = exp(S_ij - L_i)`` from it (FlashAttention's trick), so the (Tq, Tk) weights are never
kept between forward and backward.  With ``D_i = dO_i . O_i``::

    dV = P^T dO,   dS_ij = P_ij (dO_i . V_j - D_i),   dQ = scale * dS K,   dK = scale * dS^T Q

A query row with no allowed key returns zeros and passes zero gradients (L_i = -inf).

How it runs on the CPU (each choice measured on a 2-core machine against the row-at-a-time
Numba kernel this replaced, which was 2-4x slower than PyTorch's attention):

* The four products are NumPy matmuls over the (B, H) batch: BLAS runs them at close to the
  machine's peak, which hand-written loops over one query row at a time never reached.  The
  operands are used as the strided views the heads are (Q, K, V sliced out of one (B, T, 3C)
  projection), and O is written straight into a (B, T, H, D) buffer, so the heads need no
  copies going in or coming out.
* Everything between the products -- scale, mask, max, exp, sum, normalise; in backward the
  whole dS -- is one Numba pass per score row (``softmax_scores``, ``softmax_scores_backward``)
  while the row is still in cache.
* The queries are taken in chunks whose score block stays small (``SCORES_BUDGET``), so extra
  memory is bounded whatever T is; a causal chunk multiplies only the keys its last row may
  see, and a padded batch only the keys up to its longest row (``last_allowed_key``).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .. import threads
from ..autograd import Function
from ..backend import get_array_module
from . import gpu_kernels
from .jit import fast_exp, parallel_kernel

SCORES_BUDGET = 1 << 23     # elements of a chunk's (B, H, rows, keys) score block (32 MiB f32)
CAUSAL_ROWS = 64            # causal: query rows per chunk, so later chunks skip fewer keys


@numba.njit(inline="always")
def allowed_keys(i, K, causal, key_end):
    """How many leading keys (of the K in this block) query row i may see."""
    n = min(i + 1, K) if causal else K
    return min(n, key_end)


@parallel_kernel()
def softmax_scores(s, scale, causal, row0, mask, has_mask, key_end, lse):
    # s (B, H, R, K): raw scores q_i . k_j of query rows row0 .. row0 + R - 1, overwritten
    # with P; lse (B, H, Tq): each row's log-sum-exp of its scaled scores (-inf: no key).
    B, H, R, K = s.shape
    neg_inf, zero, one, sc = (s.dtype.type(-np.inf), s.dtype.type(0), s.dtype.type(1),
                              s.dtype.type(scale))
    for t in prange(B * H * R):
        b, h, r = t // (H * R), (t // R) % H, t % R
        i = row0 + r
        row = s[b, h, r]
        n = allowed_keys(i, K, causal, key_end[b, h, i])
        m = neg_inf
        for j in range(n):
            row[j] *= sc
        if has_mask:
            for j in range(n):
                if not mask[b, h, i, j]:
                    row[j] = neg_inf
        for j in range(n):
            m = max(m, row[j])
        row[n:] = zero
        if m == neg_inf:                    # no key allowed: P = 0, so O_i = 0
            row[:n] = zero
            lse[b, h, i] = neg_inf
            continue
        total = zero
        for j in range(n):
            e = fast_exp(row[j] - m)        # masked keys: exp(-inf) = 0
            row[j] = e
            total += e
        inv = one / total
        for j in range(n):
            row[j] *= inv
        lse[b, h, i] = m + np.log(total)


@parallel_kernel()
def softmax_scores_backward(s, dp, delta, scale, causal, row0, mask, has_mask, key_end, lse):
    # s: raw scores, overwritten with P; dp: dO_i . v_j, overwritten with scale * dS_ij.
    B, H, R, K = s.shape
    neg_inf, zero, sc = s.dtype.type(-np.inf), s.dtype.type(0), s.dtype.type(scale)
    for t in prange(B * H * R):
        b, h, r = t // (H * R), (t // R) % H, t % R
        i = row0 + r
        row, drow = s[b, h, r], dp[b, h, r]
        L = lse[b, h, i]
        n = allowed_keys(i, K, causal, key_end[b, h, i]) if L != neg_inf else 0
        d = delta[b, h, i]
        for j in range(n):
            p = fast_exp(row[j] * sc - L)
            row[j] = p
            drow[j] = p * (drow[j] - d) * sc
        if has_mask:
            for j in range(n):
                if not mask[b, h, i, j]:
                    row[j] = zero
                    drow[j] = zero
        row[n:] = zero
        drow[n:] = zero


def query_chunks(BH, Tq, Tk, causal, key_end):
    """(first row, end row, keys) for each chunk of query rows: chunks small enough that their
    scores fit ``SCORES_BUDGET``, each multiplying only the keys some row of it may see."""
    rows = max(1, min(Tq, SCORES_BUDGET // max(1, BH * Tk)))
    if causal:
        rows = min(rows, CAUSAL_ROWS)
    chunks = []
    for i0 in range(0, Tq, rows):
        i1 = min(i0 + rows, Tq)
        keys = min(i1, Tk) if causal else Tk
        keys = min(keys, int(key_end[..., i0:i1].max()))
        chunks.append((i0, i1, keys))
    return chunks


def heads_buffer(B, H, T, D, dtype):
    """An empty (B, H, T, D) array laid out as (B, T, H, D): the heads of one token side by
    side, so that merging them back into (B, T, H * D) is a view, not a copy."""
    return np.empty((B, T, H, D), dtype).transpose(0, 2, 1, 3)


def attention_forward_cpu(q, k, v, scale, causal, mask, has_mask, key_end):
    """q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv) -> out (B, H, Tq, Dv), lse (B, H, Tq).
    The batch is shared among the threads (``threads.in_parts``)."""
    B, H, Tq, _ = q.shape
    Tk, Dv = k.shape[2], v.shape[3]
    out = heads_buffer(B, H, Tq, Dv, q.dtype)
    lse = np.empty((B, H, Tq), q.dtype)
    chunks = query_chunks(B * H, Tq, Tk, causal, key_end)

    def part(b):                    # the sequences b of the batch, on one thread
        qb, kb, vb, ends = q[b], k[b], v[b], key_end[b]
        mb = mask[b] if has_mask else mask
        for i0, i1, keys in chunks:
            s = np.matmul(qb[:, :, i0:i1], kb[:, :, :keys].swapaxes(-1, -2))   # (b, H, R, keys)
            softmax_scores.serial(s, scale, causal, i0, mb, has_mask, ends, lse[b])
            np.matmul(s, vb[:, :, :keys], out=out[b, :, i0:i1])
    threads.in_parts(part, B)
    return out, lse


def attention_backward_cpu(q, k, v, out, g, lse, scale, causal, mask, has_mask, key_end):
    """The gradients (dq, dk, dv) for the output gradient g (B, H, Tq, Dv), the batch shared
    among the threads as in forward."""
    B, H, Tq, D = q.shape
    Tk, Dv = k.shape[2], v.shape[3]
    dq = heads_buffer(B, H, Tq, D, q.dtype)
    chunks = query_chunks(B * H, Tq, Tk, causal, key_end)
    whole = len(chunks) == 1 and chunks[0][2] == Tk     # one block: products write the result
    if whole:
        dk, dv = heads_buffer(B, H, Tk, D, q.dtype), heads_buffer(B, H, Tk, Dv, q.dtype)
    else:                                               # several: each adds its keys' share
        dk, dv = (np.zeros((B, Tk, H, n), q.dtype).transpose(0, 2, 1, 3) for n in (D, Dv))

    def part(b):
        qb, kb, vb, gb, ends = q[b], k[b], v[b], g[b], key_end[b]
        mb = mask[b] if has_mask else mask
        delta = (gb * out[b]).sum(-1)                                   # D_i = dO_i . O_i
        for i0, i1, keys in chunks:
            qc, gc, kc, vc = qb[:, :, i0:i1], gb[:, :, i0:i1], kb[:, :, :keys], vb[:, :, :keys]
            s = np.matmul(qc, kc.swapaxes(-1, -2))                          # (b, H, R, keys)
            dp = np.matmul(gc, vc.swapaxes(-1, -2))                         # dO_i . v_j
            softmax_scores_backward.serial(s, dp, delta, scale, causal, i0, mb, has_mask, ends,
                                           lse[b])
            np.matmul(dp, kc, out=dq[b, :, i0:i1])
            if whole:
                np.matmul(s.swapaxes(-1, -2), gc, out=dv[b])
                np.matmul(dp.swapaxes(-1, -2), qc, out=dk[b])
            else:
                dv[b, :, :keys] += np.matmul(s.swapaxes(-1, -2), gc)
                dk[b, :, :keys] += np.matmul(dp.swapaxes(-1, -2), qc)
    threads.in_parts(part, B)
    return dq, dk, dv


def last_allowed_key(mask, shape) -> np.ndarray:
    """(B, H, Tq) int64: one past the last key each query row may see (0: none).  In a padded
    batch the softmax passes stop each row at its sequence's real length (the padding keys'
    scores are never exponentiated or summed), and a chunk of query rows multiplies only the
    keys up to the longest such row in the batch.  Computed on the unexpanded mask, then
    broadcast (no copy)."""
    B, H, Tq, Tk = shape
    if mask is None:
        return np.broadcast_to(np.int64(Tk), (B, H, Tq))
    m = np.asarray(mask, dtype=bool)
    m = m.reshape((1,) * (4 - m.ndim) + m.shape)
    if m.shape[-1] == 1:                            # one column broadcast over every key
        end = np.where(m[..., 0], Tk, 0)
    else:
        end = np.where(m.any(-1), Tk - np.argmax(m[..., ::-1], axis=-1), 0)
    return np.broadcast_to(end.astype(np.int64), (B, H, Tq))


class Attention(Function):
    """softmax(Q K^T * scale) V on (B, H, T, D) inputs, causal and/or boolean-masked, fused
    (CPU and GPU).  ``mask`` (True = may attend) broadcasts to (B, H, Tq, Tk), unexpanded."""

    def __init__(self, scale, causal=False, mask=None):
        self.scale, self.causal, self.mask = float(scale), bool(causal), mask

    def forward(self, q, k, v):
        xp = get_array_module(q)
        B, H, Tq, D = q.shape
        Tk, Dv = k.shape[2], v.shape[3]
        if xp is np:
            self.has_mask = self.mask is not None
            self.mask4 = (np.broadcast_to(self.mask, (B, H, Tq, Tk)) if self.has_mask
                          else np.ones((1, 1, 1, 1), dtype=bool))
            self.key_end = last_allowed_key(self.mask, (B, H, Tq, Tk))
            out, lse = attention_forward_cpu(q, k, v, self.scale, self.causal, self.mask4,
                                             self.has_mask, self.key_end)
            self.save_for_backward(q, k, v, out, lse)
            return out
        self.H, self.shapes = H, (q.shape, k.shape, v.shape)
        q3, k3, v3 = (xp.ascontiguousarray(a.reshape(B * H, a.shape[2], a.shape[3]))
                      for a in (q, k, v))
        out, lse = xp.empty((B * H, Tq, Dv), q.dtype), xp.empty((B * H, Tq), q.dtype)
        # the GPU kernels read a (B, 1, 1, Tk) padding mask as it is, never expanded
        self.mask4 = (None if self.mask is None else xp.ascontiguousarray(
            self.mask.reshape((1,) * (4 - self.mask.ndim) + self.mask.shape)))
        gpu_kernels().attention_forward_cuda(q3, k3, v3, self.scale, self.causal, out, lse,
                                             mask=self.mask4, H=H)
        self.save_for_backward(q3, k3, v3, out, lse)
        return out.reshape(B, H, Tq, Dv)

    def backward(self, g):
        xp = get_array_module(g)
        if xp is np:
            q, k, v, out, lse = self.saved
            return attention_backward_cpu(q, k, v, out, g.astype(q.dtype, copy=False), lse,
                                          self.scale, self.causal, self.mask4, self.has_mask,
                                          self.key_end)
        q3, k3, v3, out, lse = self.saved
        # dq stays zero on rows with no allowed key; dk and dv are written whole.
        dq, dk, dv = xp.zeros_like(q3), xp.empty_like(k3), xp.empty_like(v3)
        g3 = xp.ascontiguousarray(g.reshape(out.shape), dtype=q3.dtype)
        gpu_kernels().attention_backward_cuda(q3, k3, v3, out, g3, lse, self.scale, self.causal,
                                              dq, dk, dv, mask=self.mask4, H=self.H)
        qs, ks, vs = self.shapes
        return dq.reshape(qs), dk.reshape(ks), dv.reshape(vs)
