"""``fast_exp``: an exp that LLVM can vectorise, shared by the softmax, cross-entropy and
attention kernels.

``np.exp`` inside a Numba loop compiles to one call into the C library per element: no SIMD
(Numba's pip wheels come without Intel's SVML).  In the softmax and cross-entropy kernels that
call was two thirds of the time (float32, 2 cores: softmax forward on (12*4*256, 256) 8.0 ms
-> 2.7 ms, cross-entropy forward + backward on (768, 50257) 157 ms -> 34 ms).
"""
from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload


def fast_exp(x):
    """exp(x) for a float32 or float64 scalar, written so that LLVM can vectorise a loop of it.

    ``np.exp`` inside a Numba loop is a call into the C library for every element (no SIMD
    without Intel's SVML).  This version is plain arithmetic:

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
    """The Numba implementation of ``fast_exp`` for one float type ``f``."""
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
    if isinstance(x, types.Float) and x.bitwidth == 32:
        # ln 2 = hi + lo with hi = 0.693359375 (9 significant bits), as in Cephes' expf
        return _exp_impl(np.float32, 7, np.int32, 23, 127, -110.0, 89.0,
                         0.693359375, -2.12194440e-4)
    if isinstance(x, types.Float) and x.bitwidth == 64:
        # ln 2 = hi + lo as in fdlibm's exp (hi has 32 significant bits)
        return _exp_impl(np.float64, 13, np.int64, 52, 1023, -760.0, 710.0,
                         6.93147180369123816490e-01, 1.90821492927058770002e-10)
    return None
