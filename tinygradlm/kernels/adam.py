"""Adam's update as one pass over each parameter (AdamW's too), in place.

The reference is ``optim.Adam.update``: the formulas written out with array operations,
about fifteen passes over memory (each ``*=``, ``+=``, ``g * g``, ``sqrt``, ``/`` is one)
and a temporary for most of them.  Here every element is read once and written once::

    p = p (1 - lr wd)                           AdamW (decoupled);   Adam: g = g + wd p
    m = b1 m + (1 - b1) g
    v = b2 v + (1 - b2) g^2
    p = p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)

The step's scalars are worked out once per parameter in Python (float64) and converted to the
parameter's dtype, so a float32 model is updated in float32 arithmetic, as by the reference.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .jit import parallel_kernel


@parallel_kernel()
def adam_kernel(p, g, m, v, decay, l2, b1, b2, step_size, v_scale, eps):
    # p, g, m, v: (n,) contiguous; p, m, v are updated in place.
    f = p.dtype.type
    decay, l2, b1, b2 = f(decay), f(l2), f(b1), f(b2)
    c1, c2, step_size, v_scale, eps = f(1) - b1, f(1) - b2, f(step_size), f(v_scale), f(eps)
    for i in prange(p.shape[0]):
        w = p[i] * decay
        gi = g[i]
        if l2 != 0:                 # Adam's L2 term (0 * inf would turn an inf p into nan)
            gi += l2 * w
        mi = b1 * m[i] + c1 * gi
        vi = b2 * v[i] + c2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = w - step_size * mi / (np.sqrt(vi * v_scale) + eps)


def adam_step(p, g, m, v, lr, betas, eps, weight_decay, decoupled, step):
    """One Adam (``decoupled=False``) or AdamW step on the arrays of one parameter."""
    beta1, beta2 = betas
    decay = 1 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    adam_kernel(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), decay, l2,
                beta1, beta2, lr / (1 - beta1 ** step), 1 / (1 - beta2 ** step), eps)
