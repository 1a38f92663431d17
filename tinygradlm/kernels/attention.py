"""Fused scaled dot-product attention that never builds the T x T matrix.

The math (the reference is ``functional.scaled_dot_product_attention``)::

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

Why it is shaped the way it is (each step measured on a 2-core machine, float32, B=12 H=4
T=256 D=32 causal, forward + backward):

* K and V are transposed once per head into (D, Tk) buffers, so that every inner loop runs
  along contiguous keys j and LLVM turns it into SIMD code.  The buffers are zero-padded to a
  multiple of 16 keys and 4 features: loops then never need scalar remainder code (a causal
  row's key count is rounded up to whole vectors and the extra keys are masked to -inf).
* ``fast_exp`` (``jit.py``) instead of ``np.exp``, so that the loops vectorise.
* Loops over the features d are unrolled by 4 (``vec_mat``, ``mat_vec``), so each load and
  store of a score carries four multiply-adds instead of one.
* Backward takes query rows ``ROWS`` at a time, so each element of the dK and dV sums is
  loaded and stored once per ``ROWS`` rows (``add_outer``), not once per row.
* Each query row stops at its last allowed key (``last_allowed_key``): in a batch padded to
  its longest sequence the padding keys are never scored, which halves the work of a typical
  batch of sources; a mask with holes is still applied key by key below that bound.
* Work is split over (batch, head) pairs: B*H of them, equal in size even with a causal mask,
  so that each thread owns its own dK and dV rows and nothing races.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..autograd import Function
from ..backend import get_array_module
from . import gpu_kernels
from .jit import FASTMATH, fast_exp, parallel_kernel

KEY_PAD = 16        # keys are padded to whole 512-bit vectors of float32
ROWS = 4            # query rows per block in backward


@numba.njit(inline="always", fastmath=FASTMATH)
def vec_mat(x, M, n, out):
    """out[:n] = x @ M[:, :n]   (x: (Dp,), M: (Dp, >= n), Dp a multiple of 4)."""
    out[:n] = 0
    for d in range(0, M.shape[0], 4):
        x0, x1, x2, x3 = x[d], x[d + 1], x[d + 2], x[d + 3]
        for j in range(n):
            out[j] += x0 * M[d, j] + x1 * M[d + 1, j] + x2 * M[d + 2, j] + x3 * M[d + 3, j]


@numba.njit(inline="always", fastmath=FASTMATH)
def mat_vec(M, p, n, out):
    """out[d] = M[d, :n] . p[:n] for every d   (M: (Dp, >= n), Dp a multiple of 4).
    Four dot products at a time, so that each load of p[j] serves four of them."""
    zero = out.dtype.type(0)
    for d in range(0, M.shape[0], 4):
        a0 = a1 = a2 = a3 = zero
        for j in range(n):
            pj = p[j]
            a0 += M[d, j] * pj
            a1 += M[d + 1, j] * pj
            a2 += M[d + 2, j] * pj
            a3 += M[d + 3, j] * pj
        out[d], out[d + 1], out[d + 2], out[d + 3] = a0, a1, a2, a3


@numba.njit(inline="always", fastmath=FASTMATH)
def add_outer(M, W, X, n):
    """M[:, :n] += W.T @ X[:, :n]   (M: (Dp, >= n), W: (ROWS, Dp), X: (ROWS, >= n)).
    The loop over r has a fixed length, so LLVM unrolls it and vectorises the loop over j."""
    for d in range(M.shape[0]):
        for j in range(n):
            acc = M[d, j]
            for r in range(ROWS):
                acc += W[r, d] * X[r, j]
            M[d, j] = acc


@numba.njit(inline="always")
def padded_transpose(a, rows, cols):
    """a (T, D) -> a zero-padded copy of a.T with shape (rows, cols), contiguous."""
    t = np.zeros((rows, cols), a.dtype)
    t[:a.shape[1], :a.shape[0]] = a.T
    return t


@numba.njit(inline="always", fastmath=FASTMATH)
def mask_scores(s, n, n_pad, mask, has_mask, b, h, i):
    """s[j] = -inf for the keys row i may not see: j >= n (causal limit or padding), and
    where the boolean mask is False."""
    neg_inf = s.dtype.type(-np.inf)
    for j in range(n, n_pad):
        s[j] = neg_inf
    if has_mask:
        for j in range(n):
            if not mask[b, h, i, j]:
                s[j] = neg_inf


@numba.njit(inline="always")
def round_up(n, m):
    return (n + m - 1) // m * m


# Serial twin: for a generation step (one query against a few dozen keys) the thread start-up
# of the parallel kernel costs more than the attention itself.
@parallel_kernel()
def attention_forward_cpu(q, k, v, scale, causal, mask, has_mask, key_end, H, out, lse):
    # q (BH, Tq, D), k (BH, Tk, D), v (BH, Tk, Dv) -> out (BH, Tq, Dv), lse (BH, Tq)
    # key_end (B, H, Tq): one past row i's last allowed key; the keys after it are skipped.
    BH, Tq, D = q.shape
    Tk, Dv = k.shape[1], v.shape[2]
    Dp, Dvp, Tkp = round_up(D, 4), round_up(Dv, 4), round_up(Tk, KEY_PAD)
    neg_inf, zero, one, sc = (q.dtype.type(-np.inf), q.dtype.type(0), q.dtype.type(1),
                              q.dtype.type(scale))
    for bh in prange(BH):
        b, h = bh // H, bh % H
        kT = padded_transpose(k[bh], Dp, Tkp)       # (Dp, Tkp): keys along rows
        vT = padded_transpose(v[bh], Dvp, Tkp)      # (Dvp, Tkp)
        qi = np.zeros(Dp, q.dtype)                  # scale * q_i, zero-padded
        s = np.empty(Tkp, q.dtype)                  # one row of scores, then of P
        o = np.empty(Dvp, q.dtype)
        for i in range(Tq):
            n = min(i + 1, Tk) if causal else Tk    # causal: keys 0..i only
            n = min(n, key_end[b, h, i])            # padding: none after the last real key
            n_pad = min(round_up(n, KEY_PAD), Tkp)  # whole vectors; extra keys masked
            for d in range(D):
                qi[d] = q[bh, i, d] * sc
            vec_mat(qi, kT, n_pad, s)               # S_ij = scale * q_i . k_j
            mask_scores(s, n, n_pad, mask, has_mask, b, h, i)
            m = neg_inf
            for j in range(n_pad):
                m = max(m, s[j])
            if m == neg_inf:                        # no key allowed: zeros
                out[bh, i, :] = 0
                lse[bh, i] = neg_inf
                continue
            total = zero
            for j in range(n_pad):
                s[j] = fast_exp(s[j] - m)           # masked keys: exp(-inf) = 0
                total += s[j]
            mat_vec(vT, s, n_pad, o)                # O_i = sum_j P_ij v_j (unnormalised)
            inv = one / total
            for d in range(Dv):
                out[bh, i, d] = o[d] * inv
            lse[bh, i] = m + np.log(total)


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def attention_backward_cpu(q, k, v, out, dout, lse, scale, causal, mask, has_mask, key_end, H,
                           dq, dk, dv):
    # dq arrives zeroed.  Query rows are taken ROWS at a time: their P and dS rows are
    # computed first, then added into dK^T and dV^T in one pass (a rank-ROWS update).
    BH, Tq, D = q.shape
    Tk, Dv = k.shape[1], v.shape[2]
    Dp, Dvp, Tkp = round_up(D, 4), round_up(Dv, 4), round_up(Tk, KEY_PAD)
    neg_inf, sc = q.dtype.type(-np.inf), q.dtype.type(scale)
    for bh in prange(BH):
        b, h = bh // H, bh % H
        kT = padded_transpose(k[bh], Dp, Tkp)       # (Dp, Tkp)
        vT = padded_transpose(v[bh], Dvp, Tkp)      # (Dvp, Tkp)
        dkT = np.zeros((Dp, Tkp), q.dtype)          # dK^T and dV^T, summed over all rows
        dvT = np.zeros((Dvp, Tkp), q.dtype)
        Qb = np.zeros((ROWS, Dp), q.dtype)          # the block's q_i rows, zero-padded
        Gb = np.zeros((ROWS, Dvp), q.dtype)         # the block's dO_i rows
        P = np.empty((ROWS, Tkp), q.dtype)          # P_ij, then the block's rows
        dS = np.empty((ROWS, Tkp), q.dtype)         # dS_ij * scale
        qs = np.zeros(Dp, q.dtype)
        g = np.empty(Dp, q.dtype)
        for i0 in range(0, Tq, ROWS):
            # the block's widest row decides how many keys the updates below cover
            n_blk = 0
            for i in range(i0, min(i0 + ROWS, Tq)):
                n_blk = max(n_blk, min(min(i + 1, Tk) if causal else Tk, key_end[b, h, i]))
            n_pad = min(round_up(n_blk, KEY_PAD), Tkp)
            for r in range(ROWS):
                i = i0 + r
                if i >= Tq or lse[bh, i] == neg_inf:    # no row, or no key: adds nothing
                    Qb[r, :] = 0
                    Gb[r, :] = 0
                    P[r, :n_pad] = 0
                    dS[r, :n_pad] = 0
                    continue
                L = lse[bh, i]
                n = min(min(i + 1, Tk) if causal else Tk, key_end[b, h, i])
                for d in range(D):
                    Qb[r, d] = q[bh, i, d]
                    qs[d] = q[bh, i, d] * sc
                for d in range(Dv):
                    Gb[r, d] = dout[bh, i, d]
                delta = out[bh, i, 0] * dout[bh, i, 0]  # D_i = dO_i . O_i
                for d in range(1, Dv):
                    delta += out[bh, i, d] * dout[bh, i, d]
                p, ds = P[r], dS[r]
                vec_mat(qs, kT, n_pad, p)           # S_ij, recomputed
                mask_scores(p, n, n_pad, mask, has_mask, b, h, i)
                vec_mat(Gb[r], vT, n_pad, ds)       # dP_ij = dO_i . v_j
                for j in range(n_pad):
                    p[j] = fast_exp(p[j] - L)       # P_ij (0 for masked keys)
                    ds[j] = p[j] * (ds[j] - delta) * sc
                mat_vec(kT, ds, n_pad, g)           # dQ_i = sum_j dS_ij k_j
                for d in range(D):
                    dq[bh, i, d] = g[d]
            add_outer(dvT, Gb, P, n_pad)            # dV_j += sum_i P_ij dO_i
            add_outer(dkT, Qb, dS, n_pad)           # dK_j += sum_i dS_ij q_i
        dk[bh] = dkT[:D, :Tk].T
        dv[bh] = dvT[:Dv, :Tk].T


def last_allowed_key(mask, shape) -> np.ndarray:
    """(B, H, Tq) int64: one past the last key each query row may see (0: none).  A padded
    batch's rows stop at their sequence's real length, so the kernels skip the padding keys
    instead of scoring them and masking the scores away: about half the work of a batch of
    sources padded to twice their mean length.  Computed on the unexpanded mask, then
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
        self.H, self.shapes = H, (q.shape, k.shape, v.shape)
        q3, k3, v3 = (xp.ascontiguousarray(a.reshape(B * H, a.shape[2], a.shape[3]))
                      for a in (q, k, v))
        out, lse = xp.empty((B * H, Tq, Dv), q.dtype), xp.empty((B * H, Tq), q.dtype)
        args = (q3, k3, v3, self.scale, self.causal)
        if xp is np:
            has_mask = self.mask is not None
            self.mask4 = (np.broadcast_to(self.mask, (B, H, Tq, Tk)) if has_mask
                          else np.ones((1, 1, 1, 1), dtype=bool))
            self.key_end = last_allowed_key(self.mask, (B, H, Tq, Tk))
            attention_forward_cpu(*args, self.mask4, has_mask, self.key_end, H, out, lse,
                                  size=q3.size * Tk)
        else:
            # the GPU kernels read a (B, 1, 1, Tk) padding mask as it is, never expanded
            self.mask4 = (None if self.mask is None else xp.ascontiguousarray(
                self.mask.reshape((1,) * (4 - self.mask.ndim) + self.mask.shape)))
            gpu_kernels().attention_forward_cuda(*args, out, lse, mask=self.mask4, H=H)
        self.save_for_backward(q3, k3, v3, out, lse)
        return out.reshape(B, H, Tq, Dv)

    def backward(self, g):
        q3, k3, v3, out, lse = self.saved
        xp = get_array_module(q3)
        # dq stays zero on rows with no allowed key; dk and dv are written whole.
        dq, dk, dv = xp.zeros_like(q3), xp.empty_like(k3), xp.empty_like(v3)
        g3 = xp.ascontiguousarray(g.reshape(out.shape), dtype=q3.dtype)
        args = (q3, k3, v3, out, g3, lse, self.scale, self.causal)
        if xp is np:
            attention_backward_cpu(*args, self.mask4, self.mask is not None, self.key_end,
                                   self.H, dq, dk, dv)
        else:
            gpu_kernels().attention_backward_cuda(*args, dq, dk, dv, mask=self.mask4, H=self.H)
        qs, ks, vs = self.shapes
        return dq.reshape(qs), dk.reshape(ks), dv.reshape(vs)
