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
``_kernels(dtype)`` builds the set once per dtype, and the constants such as 0 and -inf are
made in that dtype once, outside the kernels (float32 data must never be computed in
float64); the CPU kernels make theirs inside, as ``x.dtype.type(0)``.

Left out on purpose: any tiling / shared-memory reuse in attention (one thread per query row
or key row is slow but easy to read and has no atomics).
"""
from __future__ import annotations

import ctypes
import functools
import math
import operator

import numpy as np
from numba import config, cuda

# Threads per block for the row kernels (softmax, cross-entropy).  A power of two, so that
# the tree reduction halves cleanly; also the size of the shared-memory scratch buffer.
BLOCK = 128
ATTN_BLOCK = 64     # threads per block for the attention kernels (one per query or key row)


@functools.lru_cache(maxsize=None)
def _kernels(dtype):
    """Compile (once) and return the kernel set for a float dtype."""
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"GPU kernels support float32 and float64, got {dtype}")
    return _build(np.dtype(dtype).type)


def _build(ty):
    ZERO, ONE, NEG_INF = ty(0), ty(1), ty(-np.inf)

    # ---- block-wide reductions over a shared buffer of BLOCK values -------------------
    # Every thread of the block must call these (they contain syncthreads); on return
    # every thread holds the result, and the buffer is free to be reused.

    def block_reduce(op):
        @cuda.jit(device=True)
        def reduce(buf, tid, value):
            buf[tid] = value
            cuda.syncthreads()
            step = BLOCK // 2
            while step > 0:                         # tree: 128 -> 64 -> ... -> 1
                if tid < step:
                    buf[tid] = op(buf[tid], buf[tid + step])
                cuda.syncthreads()
                step //= 2
            result = buf[0]
            cuda.syncthreads()                      # everyone has read buf[0] before reuse
            return result
        return reduce

    block_max, block_sum = block_reduce(max), block_reduce(operator.add)

    @cuda.jit(device=True)
    def row_max(x, row, tid, buf):
        m = x[row, 0]                               # a real element: safe start for max
        for j in range(tid, x.shape[1], BLOCK):     # threads stride over the columns
            m = max(m, x[row, j])
        return block_max(buf, tid, m)

    @cuda.jit
    def softmax_forward(x, y):
        # x, y: (N, C); grid = N blocks (one per row), BLOCK threads per block.
        row, tid = cuda.blockIdx.x, cuda.threadIdx.x
        C = x.shape[1]
        buf = cuda.shared.array(BLOCK, ty)
        m = row_max(x, row, tid, buf)
        s = ZERO
        for j in range(tid, C, BLOCK):
            e = math.exp(x[row, j] - m)
            y[row, j] = e                           # unnormalised; scaled below
            s += e
        inv = ONE / block_sum(buf, tid, s)
        for j in range(tid, C, BLOCK):              # each thread rescales its own columns
            y[row, j] *= inv

    @cuda.jit
    def softmax_backward(y, dy, dx):
        # y, dy, dx: (N, C); dx = y * (dy - sum(dy * y)), one block per row.
        row, tid = cuda.blockIdx.x, cuda.threadIdx.x
        C = y.shape[1]
        buf = cuda.shared.array(BLOCK, ty)
        dot = ZERO
        for j in range(tid, C, BLOCK):
            dot += dy[row, j] * y[row, j]
        dot = block_sum(buf, tid, dot)
        for j in range(tid, C, BLOCK):
            dx[row, j] = y[row, j] * (dy[row, j] - dot)

    @cuda.jit
    def cross_entropy_forward(x, targets, ignore_index, smoothing, loss, lse):
        # x (N, C), targets (N,) int64 -> loss (N,), lse (N,); one block per row.
        # lse is computed for ignored rows too (as on the CPU); their loss is 0.
        # smoothing e: loss = L - (1 - e) x_t - e mean_j x_j (see cross_entropy.py).
        row, tid = cuda.blockIdx.x, cuda.threadIdx.x
        C = x.shape[1]
        buf = cuda.shared.array(BLOCK, ty)
        m = row_max(x, row, tid, buf)               # max first, so that exp never overflows
        s = ZERO
        total = ZERO
        for j in range(tid, C, BLOCK):
            s += math.exp(x[row, j] - m)
            total += x[row, j]
        L = m + math.log(block_sum(buf, tid, s))    # s >= 1 (the max contributes exp(0))
        total = block_sum(buf, tid, total)
        if tid == 0:                                # one writer per row
            lse[row] = L
            t = targets[row]
            e = smoothing
            loss[row] = (L - (ONE - e) * x[row, t] - e * total / ty(C) if t != ignore_index
                         else ZERO)

    @cuda.jit
    def cross_entropy_backward(x, targets, ignore_index, smoothing, lse, weight, dx):
        # dx[i] = weight[i] * (exp(x[i] - lse[i]) - (1 - e) onehot(t_i) - e / C); zero rows
        # where ignored.  No reduction needed (lse is saved): threads stride columns.
        row, tid = cuda.blockIdx.x, cuda.threadIdx.x
        C = x.shape[1]
        t = targets[row]
        if t == ignore_index:
            for j in range(tid, C, BLOCK):
                dx[row, j] = ZERO
            return
        w, L, spread = weight[row], lse[row], smoothing / ty(C)
        for j in range(tid, C, BLOCK):
            g = w * (math.exp(x[row, j] - L) - spread)
            if j == t:
                g -= w * (ONE - smoothing)
            dx[row, j] = g

    @cuda.jit(device=True)
    def allowed(mask, bh, H, i, j):
        # mask[b, h, i, j] where every axis of the mask has size 1 or the full size: a
        # (B, 1, 1, Tk) padding mask is read through a modulo index and never expanded.
        return mask[(bh // H) % mask.shape[0], (bh % H) % mask.shape[1],
                    i % mask.shape[2], j % mask.shape[3]]

    @cuda.jit(device=True)
    def dot(a, i, b, j, bh):
        # a[bh, i, :] . b[bh, j, :]
        s = ZERO
        for d in range(a.shape[2]):
            s += a[bh, i, d] * b[bh, j, d]
        return s

    @cuda.jit
    def attention_forward(q, k, v, scale, causal, mask, has_mask, H, out, lse):
        # q (BH, Tq, D), k (BH, Tk, D), v (BH, Tk, Dv) -> out (BH, Tq, Dv), lse (BH, Tq).
        # One thread per (bh, query row i), flat index = bh * Tq + i.  Online softmax:
        # keep the running max m and running sum total, and rescale the output row (used as the
        # accumulator, so no per-thread array of unknown size) whenever m grows.
        BH, Tq, D = q.shape
        Tk, Dv = k.shape[1], v.shape[2]
        idx = cuda.grid(1)
        if idx >= BH * Tq:                          # the last block may be partly empty
            return
        bh, i = idx // Tq, idx % Tq
        n = min(i + 1, Tk) if causal else Tk        # causal: keys 0..i only
        for d in range(Dv):
            out[bh, i, d] = ZERO
        m, total = NEG_INF, ZERO
        for j in range(n):
            if has_mask and not allowed(mask, bh, H, i, j):
                continue                            # a masked key adds nothing
            s = dot(q, i, k, j, bh) * scale
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
        bh, i = idx // Tq, idx % Tq
        for d in range(D):
            dq[bh, i, d] = ZERO
        L = lse[bh, i]
        if L == NEG_INF:                            # row with no key: zero gradient
            return
        n = min(i + 1, Tk) if causal else Tk
        delta = dot(out, i, dout, i, bh)
        for j in range(n):
            if has_mask and not allowed(mask, bh, H, i, j):
                continue
            p = math.exp(dot(q, i, k, j, bh) * scale - L)
            ds = p * (dot(dout, i, v, j, bh) - delta) * scale     # dP_ij = dO_i . V_j
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
        bh, j = idx // Tk, idx % Tk
        for d in range(D):
            dk[bh, j, d] = ZERO
        for d in range(Dv):
            dv[bh, j, d] = ZERO
        i0 = j if causal else 0                     # causal: query i sees key j iff j <= i
        for i in range(i0, Tq):
            L = lse[bh, i]
            if L == NEG_INF or (has_mask and not allowed(mask, bh, H, i, j)):
                continue
            p = math.exp(dot(q, i, k, j, bh) * scale - L)
            delta = dp = ZERO
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

def _arg(a):
    """What a kernel is handed for array ``a``: a CuPy array as a numba device array over the
    same memory (no copy).  ``sync=False``: numba would otherwise wait for the stream CuPy
    names, once per argument of every launch, stalling the host; the kernels run on CuPy's
    current stream (``_stream``), in order with the CuPy work around them anyway.

    The CUDA simulator (tests, no GPU) runs kernels on NumPy arrays only; there the "device"
    arrays are the tests' NumPy-backed CuPy stand-in, handed over as NumPy views of the same
    host memory (writes go through)."""
    if isinstance(a, np.ndarray):
        return a
    if not config.ENABLE_CUDASIM:
        return cuda.as_cuda_array(a, sync=False)
    cai = a.__cuda_array_interface__
    dtype, shape = np.dtype(cai["typestr"]), tuple(cai["shape"])
    strides = cai.get("strides") or None
    span = (int(np.prod(shape)) * dtype.itemsize if strides is None
            else sum((n - 1) * abs(st) for n, st in zip(shape, strides)) + dtype.itemsize)
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


@functools.lru_cache(maxsize=None)
def _no_mask():
    """The attention kernels' mask when there is none: a 1-element stand-in, made once, so
    that the kernel's signature does not change (``has_mask=False`` says to ignore it)."""
    return cuda.to_device(np.ones((1, 1, 1, 1), dtype=np.bool_))


def _launch(name, dtype, blocks, block, *args):
    """Run kernel ``name`` of the ``dtype`` set as ``blocks`` blocks of ``block`` threads, on
    CuPy's current stream."""
    _kernels(dtype)[name][blocks, block, _stream()](*args)


def _launch_rows(name, dtype, rows, *args):
    """Run attention kernel ``name`` with one thread per row, ATTN_BLOCK threads a block."""
    _launch(name, dtype, (rows + ATTN_BLOCK - 1) // ATTN_BLOCK, ATTN_BLOCK, *args)


def softmax_forward_cuda(x, y):
    """y = softmax(x) over the last axis; x, y: (N, C)."""
    if x.size:
        _launch("softmax_forward", x.dtype, x.shape[0], BLOCK, _arg(x), _arg(y))


def softmax_backward_cuda(y, dy, dx):
    """dx = y * (dy - sum(dy * y)); all (N, C)."""
    if y.size:
        _launch("softmax_backward", y.dtype, y.shape[0], BLOCK, _arg(y), _arg(dy), _arg(dx))


def cross_entropy_forward_cuda(x, t, ignore_index, smoothing, loss, lse):
    """x (N, C), t (N,) int64 -> per-row loss (N,) (0 where ignored; label smoothing
    ``smoothing``) and lse (N,)."""
    if x.shape[0]:
        _launch("cross_entropy_forward", x.dtype, x.shape[0], BLOCK,
                _arg(x), _arg(t), np.int64(ignore_index), np.dtype(x.dtype).type(smoothing),
                _arg(loss), _arg(lse))


def cross_entropy_backward_cuda(x, t, ignore_index, smoothing, lse, weight, dx):
    """dx (N, C) = weight[:, None] * (softmax(x) - (1 - e) onehot(t) - e / C), e =
    ``smoothing``; zero rows where ignored."""
    if x.shape[0]:
        _launch("cross_entropy_backward", x.dtype, x.shape[0], BLOCK,
                _arg(x), _arg(t), np.int64(ignore_index), np.dtype(x.dtype).type(smoothing),
                _arg(lse), _arg(weight), _arg(dx))


def attention_forward_cuda(q, k, v, scale, causal, out, lse, mask=None, H=1):
    """q (BH, Tq, D), k (BH, Tk, D), v (BH, Tk, Dv) -> out (BH, Tq, Dv), lse (BH, Tq).
    ``mask``: None or boolean with 4 axes, each 1 or full (B, H, Tq, Tk), B * H = BH; ``H``
    splits the flat BH index for it.  Rows with no allowed key give zeros, lse = -inf."""
    BH, Tq, _ = q.shape
    if BH * Tq:
        m = _no_mask() if mask is None else _arg(mask)
        _launch_rows("attention_forward", q.dtype, BH * Tq, _arg(q), _arg(k), _arg(v),
                     np.dtype(q.dtype).type(scale), bool(causal), m, mask is not None,
                     np.int64(H), _arg(out), _arg(lse))


def attention_backward_cuda(q, k, v, out, dout, lse, scale, causal, dq, dk, dv, mask=None,
                            H=1):
    """Gradients of attention; dq, dk, dv are fully overwritten (no need to zero them)."""
    BH, Tq, _ = q.shape
    Tk = k.shape[1]
    m = _no_mask() if mask is None else _arg(mask)
    args = tuple(_arg(a) for a in (q, k, v, out, dout, lse)) + (
        np.dtype(q.dtype).type(scale), bool(causal), m, mask is not None, np.int64(H))
    if BH * Tq:
        _launch_rows("attention_backward_dq", q.dtype, BH * Tq, *args, _arg(dq))
    if BH * Tk:
        _launch_rows("attention_backward_dkv", q.dtype, BH * Tk, *args, _arg(dk), _arg(dv))
