"""GPU versions of the fused kernels, written with ``numba.cuda``.

Import this module only when GPU kernels are wanted: it imports ``numba.cuda`` at the top.
Without a GPU the kernels still run under the Numba CUDA simulator, which must be switched
on *before* numba is first imported::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/gpu/test_cudasim.py

The host-side launchers take anything that speaks ``__cuda_array_interface__`` (CuPy arrays
on a real GPU; under the simulator plain NumPy arrays work too) and follow the argument
conventions of the CPU kernels in ``softmax.py``, ``cross_entropy.py`` and ``attention.py``.
Outputs are written in place; all arrays must be C-contiguous and share one float dtype
(float32 or float64), except the int64 targets.

Why one kernel set per dtype: a shared-memory array needs its dtype at compile time.  So
``_kernels(dtype)`` builds the set once per dtype (and caches it), and the constants such as
0 and -inf are made in that dtype once, outside the kernels (float32 data must never be
computed in float64); the CPU kernels make theirs inside, as ``x.dtype.type(0)``.

The attention kernels take ``causal`` and an optional boolean ``mask`` (True = may attend) of
4 axes, each of size 1 or full (B, H, Tq, Tk): a (B, 1, 1, Tk) padding mask is read through a
modulo index and never expanded.  Left out on purpose: any tiling / shared-memory reuse in
attention (one thread per query row or key row is slow but easy to read and has no atomics).
"""
from __future__ import annotations

import ctypes
import math

import numpy as np
from numba import config, cuda

# Threads per block for the row kernels (softmax, cross-entropy).  A power of two, so that
# the tree reduction halves cleanly; also the size of the shared-memory scratch buffer.
BLOCK = 128
# Threads per block for the attention kernels (one thread per query row or key row).
ATTN_BLOCK = 64

_CACHE = {}


def _kernels(dtype):
    """Compile (once) and return the kernel set for a float dtype."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"GPU kernels support float32 and float64, got {dtype}")
    if dtype not in _CACHE:
        _CACHE[dtype] = _build(dtype.type)
    return _CACHE[dtype]


def _build(ty):
    # Constants of the data's dtype, frozen into the kernels as compile-time values.
    ZERO = ty(0)
    ONE = ty(1)
    NEG_INF = ty(-np.inf)

    # ---- block-wide reductions over a shared buffer of BLOCK values -------------------
    # Every thread of the block must call these (they contain syncthreads); on return
    # every thread holds the result, and the buffer is free to be reused.

    @cuda.jit(device=True)
    def block_max(buf, tid, value):
        buf[tid] = value
        cuda.syncthreads()
        step = BLOCK // 2
        while step > 0:                             # tree: 128 -> 64 -> ... -> 1
            if tid < step:
                buf[tid] = max(buf[tid], buf[tid + step])
            cuda.syncthreads()
            step //= 2
        result = buf[0]
        cuda.syncthreads()                          # everyone has read buf[0] before reuse
        return result

    @cuda.jit(device=True)
    def block_sum(buf, tid, value):
        buf[tid] = value
        cuda.syncthreads()
        step = BLOCK // 2
        while step > 0:
            if tid < step:
                buf[tid] = buf[tid] + buf[tid + step]
            cuda.syncthreads()
            step //= 2
        result = buf[0]
        cuda.syncthreads()
        return result

    @cuda.jit(device=True)
    def row_max_lse(x, row, tid, buf):
        # log-sum-exp of x[row, :] (C >= 1): max first, so that exp never overflows.
        C = x.shape[1]
        m = x[row, 0]                               # a real element: safe start for max
        for j in range(tid, C, BLOCK):              # threads stride over the columns
            m = max(m, x[row, j])
        m = block_max(buf, tid, m)
        s = ZERO
        for j in range(tid, C, BLOCK):
            s += math.exp(x[row, j] - m)
        s = block_sum(buf, tid, s)
        return m + math.log(s)                      # s >= 1 (the max contributes exp(0))

    # ---- softmax -------------------------------------------------------------------

    @cuda.jit
    def softmax_forward(x, y):
        # x, y: (N, C); grid = N blocks (one per row), BLOCK threads per block.
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        C = x.shape[1]
        buf = cuda.shared.array(BLOCK, ty)
        m = x[row, 0]
        for j in range(tid, C, BLOCK):
            m = max(m, x[row, j])
        m = block_max(buf, tid, m)
        s = ZERO
        for j in range(tid, C, BLOCK):
            e = math.exp(x[row, j] - m)
            y[row, j] = e                           # unnormalised; scaled below
            s += e
        s = block_sum(buf, tid, s)
        inv = ONE / s
        for j in range(tid, C, BLOCK):              # each thread rescales its own columns
            y[row, j] *= inv

    @cuda.jit
    def softmax_backward(y, dy, dx):
        # y, dy, dx: (N, C); dx = y * (dy - sum(dy * y)), one block per row.
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        C = y.shape[1]
        buf = cuda.shared.array(BLOCK, ty)
        dot = ZERO
        for j in range(tid, C, BLOCK):
            dot += dy[row, j] * y[row, j]
        dot = block_sum(buf, tid, dot)
        for j in range(tid, C, BLOCK):
            dx[row, j] = y[row, j] * (dy[row, j] - dot)

    # ---- cross-entropy -------------------------------------------------------------

    @cuda.jit
    def cross_entropy_forward(x, targets, ignore_index, loss, lse):
        # x (N, C), targets (N,) int64 -> loss (N,), lse (N,); one block per row.
        # lse is computed for ignored rows too (as on the CPU); their loss is 0.
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        buf = cuda.shared.array(BLOCK, ty)
        L = row_max_lse(x, row, tid, buf)
        if tid == 0:                                # one writer per row
            lse[row] = L
            t = targets[row]
            if t != ignore_index:
                loss[row] = L - x[row, t]
            else:
                loss[row] = ZERO

    @cuda.jit
    def cross_entropy_backward(x, targets, ignore_index, lse, weight, dx):
        # dx[i] = weight[i] * (exp(x[i] - lse[i]) - onehot(t_i)); zero rows where ignored.
        # No reduction needed (lse is saved), so no shared memory: threads stride columns.
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        C = x.shape[1]
        t = targets[row]
        if t == ignore_index:
            for j in range(tid, C, BLOCK):
                dx[row, j] = ZERO
            return
        w = weight[row]
        L = lse[row]
        for j in range(tid, C, BLOCK):
            g = w * math.exp(x[row, j] - L)
            if j == t:
                g -= w
            dx[row, j] = g

    # ---- attention -----------------------------------------------------------------

    @cuda.jit(device=True)
    def allowed(mask, bh, H, i, j):
        # mask[b, h, i, j] where every axis of the mask has size 1 or the full size
        return mask[(bh // H) % mask.shape[0], (bh % H) % mask.shape[1],
                    i % mask.shape[2], j % mask.shape[3]]

    @cuda.jit
    def attention_forward(q, k, v, scale, causal, mask, has_mask, H, out, lse):
        # q (BH, Tq, D), k (BH, Tk, D), v (BH, Tk, Dv) -> out (BH, Tq, Dv), lse (BH, Tq).
        # One thread per (bh, query row i), flat index = bh * Tq + i.  Online softmax:
        # keep the running max m and running sum l, and rescale the output row (used as the
        # accumulator, so no per-thread array of unknown size) whenever m grows.
        BH, Tq, D = q.shape
        Tk, Dv = k.shape[1], v.shape[2]
        idx = cuda.grid(1)
        if idx >= BH * Tq:                          # the last block may be partly empty
            return
        bh = idx // Tq
        i = idx % Tq
        n = min(i + 1, Tk) if causal else Tk        # causal: keys 0..i only
        for d in range(Dv):
            out[bh, i, d] = ZERO
        m = NEG_INF
        total = ZERO
        for j in range(n):
            if has_mask and not allowed(mask, bh, H, i, j):
                continue                            # a masked key adds nothing
            s = ZERO
            for d in range(D):                      # s = scale * q_i . k_j
                s += q[bh, i, d] * k[bh, j, d]
            s *= scale
            m_new = max(m, s)
            corr = math.exp(m - m_new)              # first key: exp(-inf) = 0
            p = math.exp(s - m_new)
            total = total * corr + p
            for d in range(Dv):
                out[bh, i, d] = out[bh, i, d] * corr + p * v[bh, j, d]
            m = m_new
        if m == NEG_INF:                            # no key allowed: zeros, lse = -inf
            lse[bh, i] = NEG_INF
            return
        inv = ONE / total
        for d in range(Dv):
            out[bh, i, d] *= inv
        lse[bh, i] = m + math.log(total)

    @cuda.jit
    def attention_backward_dq(q, k, v, out, dout, lse, scale, causal, mask, has_mask, H, dq):
        # One thread per (bh, query row i): dQ_i = scale * sum_j dS_ij K_j, with
        # P_ij = exp(S_ij - L_i) recomputed from the saved lse and D_i = dO_i . O_i.
        BH, Tq, D = q.shape
        Tk, Dv = k.shape[1], v.shape[2]
        idx = cuda.grid(1)
        if idx >= BH * Tq:
            return
        bh = idx // Tq
        i = idx % Tq
        for d in range(D):
            dq[bh, i, d] = ZERO
        L = lse[bh, i]
        if L == NEG_INF:                            # row with no key: zero gradient
            return
        n = min(i + 1, Tk) if causal else Tk
        delta = ZERO
        for d in range(Dv):
            delta += out[bh, i, d] * dout[bh, i, d]
        for j in range(n):
            if has_mask and not allowed(mask, bh, H, i, j):
                continue
            s = ZERO
            for d in range(D):
                s += q[bh, i, d] * k[bh, j, d]
            p = math.exp(s * scale - L)
            dp = ZERO
            for d in range(Dv):                     # dP_ij = dO_i . V_j
                dp += dout[bh, i, d] * v[bh, j, d]
            ds = p * (dp - delta) * scale
            for d in range(D):
                dq[bh, i, d] += ds * k[bh, j, d]

    @cuda.jit
    def attention_backward_dkv(q, k, v, out, dout, lse, scale, causal, mask, has_mask, H,
                               dk, dv):
        # One thread per (bh, key row j), looping over the queries that may see key j, so
        # every thread owns its dK_j and dV_j rows: no atomics.  It recomputes P_ij and
        # D_i = dO_i . O_i itself (an extra O(Tq * Dv) per thread, kept for simplicity).
        #   dV_j = sum_i P_ij dO_i,   dK_j = scale * sum_i dS_ij Q_i
        BH, Tq, D = q.shape
        Tk, Dv = k.shape[1], v.shape[2]
        idx = cuda.grid(1)
        if idx >= BH * Tk:
            return
        bh = idx // Tk
        j = idx % Tk
        for d in range(D):
            dk[bh, j, d] = ZERO
        for d in range(Dv):
            dv[bh, j, d] = ZERO
        i0 = j if causal else 0                     # causal: query i sees key j iff j <= i
        for i in range(i0, Tq):
            L = lse[bh, i]
            if L == NEG_INF or (has_mask and not allowed(mask, bh, H, i, j)):
                continue
            s = ZERO
            for d in range(D):
                s += q[bh, i, d] * k[bh, j, d]
            p = math.exp(s * scale - L)
            delta = ZERO
            dp = ZERO
            for d in range(Dv):
                delta += out[bh, i, d] * dout[bh, i, d]
                dp += dout[bh, i, d] * v[bh, j, d]
                dv[bh, j, d] += p * dout[bh, i, d]
            ds = p * (dp - delta) * scale
            for d in range(D):
                dk[bh, j, d] += ds * q[bh, i, d]

    return dict(softmax_forward=softmax_forward, softmax_backward=softmax_backward,
                cross_entropy_forward=cross_entropy_forward,
                cross_entropy_backward=cross_entropy_backward,
                attention_forward=attention_forward,
                attention_backward_dq=attention_backward_dq,
                attention_backward_dkv=attention_backward_dkv)


# ---- host-side launchers -------------------------------------------------------------

def _blocks(n, block):
    return (n + block - 1) // block


def _arg(a):
    """What a kernel is handed for array ``a``.

    A CuPy array is wrapped as a numba device array over the same memory (read through
    ``__cuda_array_interface__``, no copy).  ``sync=False``: by default numba would first wait
    for the stream CuPy names in that interface, once per argument of every launch, stalling
    the host each time; it is not needed, because the kernels are launched on CuPy's current
    stream (``_stream``), which runs them in order with the CuPy work around them.

    The CUDA simulator (tests, no GPU) runs kernels on NumPy arrays only and ignores that
    interface; there the only "device" arrays are the tests' NumPy-backed CuPy stand-in,
    whose memory is host memory, so they are handed over as NumPy views of that same memory
    (writes go through)."""
    if isinstance(a, np.ndarray):
        return a
    if not config.ENABLE_CUDASIM:
        return cuda.as_cuda_array(a, sync=False)
    cai = a.__cuda_array_interface__
    dtype, shape = np.dtype(cai["typestr"]), tuple(cai["shape"])
    strides = cai.get("strides") or None
    if strides is None:
        span = int(np.prod(shape)) * dtype.itemsize
    else:
        span = sum((n - 1) * abs(st) for n, st in zip(shape, strides)) + dtype.itemsize
    buffer = (ctypes.c_char * max(span, 1)).from_address(cai["data"][0])
    return np.ndarray(shape, dtype, buffer=buffer, strides=strides)


def _stream():
    """The stream to launch on: CuPy's current one, so that a kernel runs after the CuPy work
    that produced its inputs and before the work that reads its outputs, on any stream."""
    if config.ENABLE_CUDASIM:
        return 0
    import cupy
    ptr = cupy.cuda.get_current_stream().ptr
    return 0 if ptr == 0 else cuda.external_stream(ptr)


def self_test():
    """Compile and launch the float32 softmax kernel on a (1, 3) CuPy array, and check the
    result: called once before the kernels are used, so that a numba-cuda / driver mismatch
    shows up as a fallback to the CuPy path with a warning, not as a crash mid-training."""
    from .. import backend
    cp = backend.xp_for("cuda")
    x = cp.asarray(np.array([[0.0, 1.0, 2.0]], dtype=np.float32))
    y = cp.empty_like(x)
    softmax_forward_cuda(x, y)
    got = backend.to_numpy(y)
    want = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    if not np.allclose(got[0], want, rtol=1e-5):
        raise RuntimeError(f"the softmax kernel's self-test gave {got[0]}, expected {want}")


_NO_MASK = {}


def _mask_args(mask):
    """(mask, has_mask) for the attention kernels; without a mask a 1-element stand-in,
    made once, so that the kernel's signature does not change."""
    if mask is not None:
        return _arg(mask), True
    if "array" not in _NO_MASK:
        _NO_MASK["array"] = cuda.to_device(np.ones((1, 1, 1, 1), dtype=np.bool_))
    return _NO_MASK["array"], False


def softmax_forward_cuda(x, y):
    """y = softmax(x) over the last axis; x, y: (N, C)."""
    N, C = x.shape
    if N and C:
        _kernels(x.dtype)["softmax_forward"][N, BLOCK, _stream()](_arg(x), _arg(y))


def softmax_backward_cuda(y, dy, dx):
    """dx = y * (dy - sum(dy * y)); all (N, C)."""
    N, C = y.shape
    if N and C:
        _kernels(y.dtype)["softmax_backward"][N, BLOCK, _stream()](_arg(y), _arg(dy), _arg(dx))


def cross_entropy_forward_cuda(x, t, ignore_index, loss, lse):
    """x (N, C), t (N,) int64 -> per-row loss (N,) (0 where ignored) and lse (N,)."""
    N, C = x.shape
    if N:
        _kernels(x.dtype)["cross_entropy_forward"][N, BLOCK, _stream()](
            _arg(x), _arg(t), np.int64(ignore_index), _arg(loss), _arg(lse))


def cross_entropy_backward_cuda(x, t, ignore_index, lse, weight, dx):
    """dx (N, C) = weight[:, None] * (softmax(x) - onehot(t)); zero rows where ignored."""
    N, C = x.shape
    if N:
        _kernels(x.dtype)["cross_entropy_backward"][N, BLOCK, _stream()](
            _arg(x), _arg(t), np.int64(ignore_index), _arg(lse), _arg(weight), _arg(dx))


def attention_forward_cuda(q, k, v, scale, causal, out, lse, mask=None, H=1):
    """q (BH, Tq, D), k (BH, Tk, D), v (BH, Tk, Dv) -> out (BH, Tq, Dv), lse (BH, Tq).
    ``mask``: None or boolean with 4 axes, each 1 or full (B, H, Tq, Tk), B * H = BH; ``H``
    splits the flat BH index for it.  Rows with no allowed key give zeros, lse = -inf."""
    BH, Tq, _ = q.shape
    if BH * Tq == 0:
        return
    ty = np.dtype(q.dtype).type
    m, has_mask = _mask_args(mask)
    _kernels(q.dtype)["attention_forward"][_blocks(BH * Tq, ATTN_BLOCK), ATTN_BLOCK, _stream()](
        _arg(q), _arg(k), _arg(v), ty(scale), bool(causal), m, has_mask, np.int64(H),
        _arg(out), _arg(lse))


def attention_backward_cuda(q, k, v, out, dout, lse, scale, causal, dq, dk, dv, mask=None,
                            H=1):
    """Gradients of attention; dq, dk, dv are fully overwritten (no need to zero them)."""
    BH, Tq, _ = q.shape
    Tk = k.shape[1]
    ks = _kernels(q.dtype)
    sc, causal = np.dtype(q.dtype).type(scale), bool(causal)
    m, has_mask = _mask_args(mask)
    q, k, v, out, dout, lse = (_arg(a) for a in (q, k, v, out, dout, lse))
    stream = _stream()
    if BH * Tq:
        ks["attention_backward_dq"][_blocks(BH * Tq, ATTN_BLOCK), ATTN_BLOCK, stream](
            q, k, v, out, dout, lse, sc, causal, m, has_mask, np.int64(H), _arg(dq))
    if BH * Tk:
        ks["attention_backward_dkv"][_blocks(BH * Tk, ATTN_BLOCK), ATTN_BLOCK, stream](
            q, k, v, out, dout, lse, sc, causal, m, has_mask, np.int64(H), _arg(dk), _arg(dv))
