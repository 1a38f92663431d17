"""What every Numba CPU kernel shares: the threading layer, fast-math flags, typed constants,
serial twins for small inputs (with the switch to the GPU launchers), and ``fast_exp``.

* **Threading layer.**  Numba's default OpenMP layer can hang a process that forks
  (multiprocessing, pytest-xdist), and its idle threads spin, fighting NumPy's BLAS threads
  for the same cores (a training step ran 4x slower); the ``workqueue`` layer is fork-safe,
  needs no extra library and sleeps when idle.  It is chosen here, before any parallel kernel
  runs, unless the user set ``NUMBA_THREADING_LAYER``; its thread count is capped with BLAS's
  (``threads.py``).
* **Fast-math.**  ``FASTMATH`` lets LLVM reassociate sums (so row sums vectorise), contract
  into fused multiply-adds and use reciprocals.  It leaves out "no infinities": -inf marks
  masked keys and empty rows, and huge logits keep IEEE behaviour.
* **error_model="numpy".**  Under Numba's default ("python"), every float division checks
  for zero so that it can raise ``ZeroDivisionError``; that branch stops LLVM vectorising the
  loop (a serial GELU ran 8x slower).  With NumPy's model x / 0 is inf, as in NumPy.
* **Typed constants.**  Inside a kernel every constant is made from the data's dtype,
  ``x.dtype.type(0.5)``: a bare ``0.5`` or ``-np.inf`` is a float64 and would silently turn
  float32 arithmetic into float64.
* **Serial below a million elements.**  Waking the workqueue's threads costs ~130 µs per
  kernel call, and right after a matmul one core is still taken by a spinning BLAS thread:
  on 2 cores a LayerNorm of 100k numbers ran 3.5x faster on one thread than on two.  Below
  ``SERIAL_BELOW`` elements a kernel's serial twin runs in the calling thread; only work big
  enough to repay the start (about a millisecond of it) is split over threads.  The parallel
  version is compiled the first time such an input comes, so a small model's first run
  compiles only the (much quicker to compile) serial twins.
"""
from __future__ import annotations

import math
import os
import types
import zlib

import numba
import numpy as np
from numba.extending import overload

from .. import threads
from . import gpu_kernels

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
threads.apply_to_numba()        # no more threads than this process has CPUs (threads.py)

FASTMATH = {"reassoc", "contract", "arcp"}

SERIAL_BELOW = 1 << 20


class ParallelKernel:
    """A kernel written with ``prange``, compiled twice: with ``parallel=True``, and without it
    (``prange`` then runs as ``range`` in the calling thread), its serial twin.  Called, it runs
    the twin below ``SERIAL_BELOW`` elements (``size``, by default the first argument's); handed
    CuPy arrays, it runs the launcher ``gpu`` of ``cuda_kernels.py`` instead."""

    def __init__(self, f, fastmath, gpu):
        options = dict(cache=True, fastmath=fastmath, error_model="numpy")
        self.parallel = numba.njit(parallel=True, **options)(_copy(f, f.__name__, options))
        # nogil: several Python threads may run the twin at once (threads.in_parts)
        self.serial = numba.njit(nogil=True, **options)(_copy(f, f.__name__ + "_serial",
                                                              options))
        self.gpu = gpu

    def __call__(self, *args, size=None):
        if not isinstance(args[0], np.ndarray):
            return getattr(gpu_kernels(), self.gpu)(*args)
        size = args[0].size if size is None else size
        return (self.serial if size < SERIAL_BELOW else self.parallel)(*args)


with open(__file__, "rb") as _source:
    _THIS_FILE_CRC = zlib.crc32(_source.read())


def _copy(f, name, options):
    """``f`` under ``name``, with a qualified name that carries a fingerprint of ``options`` and
    of this file.  Numba's on-disk cache finds a kernel by its qualified name and trusts it
    while the kernel's own file is unchanged: it would not notice new options (the twin's
    and the parallel version's would even overwrite each other) or a change here (fast_exp is
    compiled into every kernel), and would keep running the old machine code."""
    # sets sorted: their order (string hashing) changes from one process to the next
    spelled = sorted((k, sorted(v) if isinstance(v, (set, frozenset)) else v)
                     for k, v in options.items())
    tag = zlib.crc32(repr(spelled).encode(), _THIS_FILE_CRC)
    g = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    g.__qualname__ = f"{f.__qualname__}{name[len(f.__name__):]}_{tag:08x}"
    return g


def parallel_kernel(fastmath=FASTMATH, gpu=None):
    """``@parallel_kernel()`` over a kernel function makes it a ``ParallelKernel``."""
    return lambda f: ParallelKernel(f, fastmath, gpu)


# --- fast_exp -------------------------------------------------------------------------------
def fast_exp(x):
    """exp(x) for a float32 or float64 scalar, written so that LLVM can vectorise a loop of it.

    ``np.exp`` inside a Numba loop is a call into the C library for every element: no SIMD
    (Numba's pip wheels come without Intel's SVML), and in the softmax, cross-entropy and
    attention kernels that call was most of the run time.  This version is plain arithmetic:

        n = round(x / ln 2),   r = x - n ln 2  (|r| <= ln(2)/2, in two parts: Cody-Waite)
        exp(x) = 2^n * exp(r),  exp(r) by its Taylor polynomial (degree 7 / 13 for f32 / f64)
        2^n    = a float built from its bits: exponent field n + bias, shifted into place
               (as 2^(n//2) * 2^(n - n//2) so that results near overflow and in the
               subnormal range come out right)

    Error within ~1 ulp of np.exp; -inf -> 0 exactly, +inf -> inf, nan -> nan.  It is
    compiled with only the "contract" fast-math flag (fused multiply-add): "reassoc" could
    rewrite ``x - n*hi - n*lo`` as ``x - n*(hi+lo)`` and undo the two-part reduction.
    Called from Python it is ``np.exp``; in compiled code Numba uses the overload below.
    """
    return np.exp(x)


def _exp_impl(f, degree, int_t, mant_bits, bias, x_min, x_max, ln2_hi, ln2_lo):
    """The Numba implementation of ``fast_exp`` for one float type ``f`` (the constants are
    converted to ``f`` here, once, and frozen into the compiled code)."""
    log2e, half, one = f(1.4426950408889634), f(0.5), f(1.0)
    hi, lo, lo_x, hi_x = f(ln2_hi), f(ln2_lo), f(x_min), f(x_max)
    # Taylor coefficients 1/k! for k = degree .. 2, for Horner's rule
    coeffs = tuple(f(1.0 / math.factorial(k)) for k in range(degree, 1, -1))

    def impl(x):
        y = min(max(x, lo_x), hi_x)             # beyond these exp is 0 / inf anyway
        n = np.floor(y * log2e + half)          # nearest integer to y / ln 2
        r = y - n * hi                          # exact: hi has few significant bits
        r = r - n * lo
        p = coeffs[0]
        for c in coeffs[1:]:                    # a tuple: unrolled at compile time
            p = p * r + c
        p = (p * r + one) * r + one             # exp(r) = 1 + r + r^2/2 + ...
        ni = int_t(n)
        n1 = ni >> 1
        n2 = ni - n1
        s1 = int_t((n1 + bias) << mant_bits).view(f)   # 2^n1 from its bit pattern
        s2 = int_t((n2 + bias) << mant_bits).view(f)
        e = p * s1 * s2
        return x if x != x else e               # nan stays nan
    return impl


@overload(fast_exp, jit_options={"fastmath": {"contract"}})
def _fast_exp_overload(x):
    if isinstance(x, numba.types.Float) and x.bitwidth == 32:
        # ln 2 = hi + lo with hi = 0.693359375 (9 significant bits), as in Cephes' expf
        return _exp_impl(np.float32, 7, np.int32, 23, 127, -110.0, 89.0,
                         0.693359375, -2.12194440e-4)
    if isinstance(x, numba.types.Float) and x.bitwidth == 64:
        # ln 2 = hi + lo as in fdlibm's exp (hi has 32 significant bits)
        return _exp_impl(np.float64, 13, np.int64, 52, 1023, -760.0, 710.0,
                         6.93147180369123816490e-01, 1.90821492927058770002e-10)
