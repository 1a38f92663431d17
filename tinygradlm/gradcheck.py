"""Numerical gradient checking: does an op's backward agree with finite differences?

For a function ``f`` and inputs ``x``, project the output on a fixed random tensor ``u`` to get
a scalar ``L(x) = sum(f(x) * u)``.  The analytic gradient is ``backward(gradient=u)``; the
numerical one is the central difference ``(L(x + eps e) - L(x - eps e)) / (2 eps)``, taken
along every element ``e`` of small inputs, and along one random direction ``d`` for large
ones (comparing ``<grad, d>``; Chainer's trick, which catches a wrong gradient with
probability 1 at the cost of two evaluations).  Everything runs in float64: in float32 the
rounding error of a difference quotient is as large as the errors being looked for.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with the numerical one; the message says where."""


def gradcheck(fn, *inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              max_elements: int = 200, seed: int = 0, raise_exception: bool = True) -> bool:
    """Check ``fn(*inputs)``'s gradient with respect to every input that requires grad.

    Inputs with at most ``max_elements`` elements are checked element by element, larger ones
    along a random direction.  Returns True, or raises ``GradcheckError`` with a report of
    the worst element (or returns False when ``raise_exception=False``).
    """
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; create inputs with "
                         "requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences "
                            f"need float64 (use .double()), float32 passes or fails by luck")
    rng = np.random.default_rng(seed)
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    u = rng.standard_normal(out.shape)
    for i in checked:
        inputs[i].grad = None
    if out.requires_grad:
        out.backward(gradient=Tensor(u.astype(out.dtype), device=out.device))

    for i in checked:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else x.grad.numpy()
        original = x.data.copy()
        xp = x.xp

        def at(delta):          # L(x + delta) = sum(f(x + delta) * u)
            x.data = original + xp.asarray(delta)
            try:
                return float((fn(*inputs).numpy().astype(np.float64) * u).sum())
            finally:
                x.data = original

        if x.numel() <= max_elements:
            numeric = np.zeros(x.shape)
            for idx in np.ndindex(*x.shape):
                e = np.zeros(x.shape)
                e[idx] = eps
                numeric[idx] = (at(e) - at(-e)) / (2 * eps)
            err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
            if err.size and err.max() > 0:
                worst = np.unravel_index(np.argmax(err), err.shape)
                report = (f"gradcheck failed for input {i} (shape {x.shape}) at element "
                          f"{tuple(int(j) for j in worst)}:\n"
                          f"  analytic  {analytic[worst]: .8e}\n"
                          f"  numerical {numeric[worst]: .8e}\n"
                          f"  |diff|    {abs(analytic[worst] - numeric[worst]):.3e} > "
                          f"atol + rtol*|numerical| = {atol + rtol * abs(numeric[worst]):.3e}\n"
                          f"  elements out of tolerance: {int((err > 0).sum())} of {err.size}")
                return _fail(report, raise_exception)
        else:
            d = rng.standard_normal(x.shape)
            numeric = (at(eps * d) - at(-eps * d)) / (2 * eps)
            projected = float((analytic * d).sum())
            if abs(projected - numeric) > atol + rtol * abs(numeric):
                report = (f"gradcheck failed for input {i} (shape {x.shape}) along a random "
                          f"direction d:\n  <analytic grad, d> {projected: .8e}\n"
                          f"  numerical d-derivative {numeric: .8e}\n"
                          f"  |diff| {abs(projected - numeric):.3e}")
                return _fail(report, raise_exception)
    return True


def _fail(report, raise_exception):
    if raise_exception:
        raise GradcheckError(report)
    print(report)
    return False
