"""Tensor methods that compute with values: the rest of PyTorch's elementwise methods
(trigonometric and hyperbolic functions, rounding, remainders, ``maximum``/``minimum``, tests
of values, logical and bitwise ops), the reductions (sum, mean, var, max, prod, ...), the scans
(cumsum, cummax, ...) and sorting (sort, topk).

``Tensor`` inherits them from ``MathMethods``; they live here so that ``tensor.py`` stays a
file one reads in a sitting.  The differentiable ones run the ops of ``ops/elementwise.py``
and ``ops/reductions.py`` or are composites of them; the tests of values, the logical ops and
the indices act on the arrays directly and have no gradient.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from . import ops

MaxResult = namedtuple("MaxResult", ["values", "indices"])   # what max(dim), sort, topk return


def float_unary(op):
    """``x.exp()`` -> ``ops.Exp.apply(x)``; an integer or boolean tensor is converted to the
    default float dtype first (float32), as PyTorch does for its floating-point functions."""
    return lambda self: op.apply(self if self.dtype.kind == "f" else self.float())



class MathMethods:
    sin, cos, tan = float_unary(ops.Sin), float_unary(ops.Cos), float_unary(ops.Tan)
    asin, acos, atan = float_unary(ops.Asin), float_unary(ops.Acos), float_unary(ops.Atan)
    sinh, cosh = float_unary(ops.Sinh), float_unary(ops.Cosh)
    asinh, acosh = float_unary(ops.Asinh), float_unary(ops.Acosh)
    atanh = float_unary(ops.Atanh)
    arcsin, arccos, arctan = asin, acos, atan            # PyTorch's NumPy-style aliases

    def reciprocal(self):
        return 1.0 / self

    def rsqrt(self):
        return self.sqrt().reciprocal()

    def exp2(self):
        return 2.0 ** (self if self.dtype.kind == "f" else self.float())

    def log2(self):
        return self.log() / math.log(2.0)

    def log10(self):
        return self.log() / math.log(10.0)

    def _step(self, fn):
        # floor/ceil/trunc/round of an integer is itself (PyTorch keeps the dtype too).
        if fn != "sign" and self.dtype.kind in "biu":
            return self.clone()
        return ops.Step.apply(self, fn=fn)

    def floor(self):
        return self._step("floor")

    def ceil(self):
        return self._step("ceil")

    def trunc(self):
        return self._step("trunc")

    def round(self, decimals=0):
        """Round half to even, as PyTorch; ``decimals`` digits after the point."""
        if decimals:
            scale = 10.0 ** decimals
            return (self * scale)._step("round") / scale
        return self._step("round")

    def sign(self):
        return self._step("sign")

    def maximum(self, other):
        return ops.Maximum.apply(self, self._operand(other))

    def minimum(self, other):
        return ops.Minimum.apply(self, self._operand(other))

    def fmod(self, other):
        """The remainder with the sign of ``self`` (C's fmod)."""
        return ops.Fmod.apply(self, self._operand(other))

    def remainder(self, other):
        """The remainder with the sign of ``other`` (Python's ``%``)."""
        return ops.Remainder.apply(self, self._operand(other))

    __mod__ = remainder

    def __rmod__(self, other):
        return self._operand(other).remainder(self)

    def div(self, other, rounding_mode=None):
        """``self / other``; ``rounding_mode`` "trunc" rounds toward zero, "floor" down (the
        result of an integer division stays an integer, as in PyTorch)."""
        if rounding_mode is None:
            return self / other
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', not "
                             f"{rounding_mode!r}")
        other = self._operand(other)
        if self.dtype.kind in "biu" and other.dtype.kind in "biu":
            xp = self.xp
            if rounding_mode == "floor":
                return self._from_op(xp.floor_divide(self.data, other.data))
            return self._from_op(xp.trunc(self.data / other.data).astype(
                xp.result_type(self.data, other.data)))
        return ops.Div.apply(self, other)._step(rounding_mode)

    def __floordiv__(self, other):
        return self.div(other, rounding_mode="floor")

    def __rfloordiv__(self, other):
        return self._operand(other).div(self, rounding_mode="floor")

    def add(self, other, alpha=1):
        return self + (other * alpha if alpha != 1 else other)

    def sub(self, other, alpha=1):
        return self - (other * alpha if alpha != 1 else other)

    def mul(self, other):
        return self * other

    def pow(self, exponent):
        return self ** exponent

    def neg(self):
        return -self

    def copysign(self, other):
        """|self| with the sign of ``other`` (-0.0 counts as negative); no gradient flows to
        ``other``, whose sign is a step function."""
        other = self._operand(other)
        magnitude = self.abs() if self.dtype.kind == "f" else self.float().abs()
        return ops.Where.apply(-magnitude, magnitude, cond=self.xp.signbit(other.data))

    def logaddexp(self, other):
        """log(exp(self) + exp(other)) without overflow: the larger is taken out first."""
        other = self._operand(other)
        top = self.maximum(other).detach()
        return top + ((self - top).exp() + (other - top).exp()).log()

    def lerp(self, end, weight):
        """self + weight * (end - self)."""
        return self + (self._operand(end) - self) * weight

    # --- tests of values (no gradient) --------------------------------------------------
    def isnan(self):
        return self._from_op(self.xp.isnan(self.data))

    def isinf(self):
        return self._from_op(self.xp.isinf(self.data))

    def isfinite(self):
        return self._from_op(self.xp.isfinite(self.data))

    def isclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        other = self._operand(other)
        return self._from_op(self.xp.isclose(self.data, other.data, rtol=rtol, atol=atol,
                                               equal_nan=equal_nan))

    def logical_not(self):
        return self._from_op(self.xp.logical_not(self.data))

    def logical_and(self, other):
        return self._from_op(self.xp.logical_and(self.data, self._operand(other).data))

    def logical_or(self, other):
        return self._from_op(self.xp.logical_or(self.data, self._operand(other).data))

    def logical_xor(self, other):
        return self._from_op(self.xp.logical_xor(self.data, self._operand(other).data))

    def bitwise_not(self):
        return ~self

    def bitwise_and(self, other):
        return self & other

    def bitwise_or(self, other):
        return self | other

    def bitwise_xor(self, other):
        return self ^ other

    # --- reductions -----------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False, *, dtype=None, axis=None):
        """Sum over ``dim`` (``axis`` is accepted as PyTorch accepts it).  Integer and
        boolean tensors sum as int64, as in PyTorch; ``dtype`` converts first."""
        x = self.to(dtype) if dtype is not None else (
            self.long() if self.dtype.kind in "biu" else self)
        return ops.Sum.apply(x, dim=_dim_alias(dim, axis), keepdim=keepdim)

    def mean(self, dim=None, keepdim=False, *, axis=None):
        dim = _dim_alias(dim, axis)
        dims = ops.normalize_dims("mean", dim, self.ndim)
        count = int(np.prod([self.shape[d] for d in dims]))
        return self.sum(dim=dims, keepdim=keepdim) / count

    def var(self, dim=None, keepdim=False, correction=1, unbiased=None):
        """Variance with Bessel's correction by default (divide by N - 1), as PyTorch."""
        if unbiased is not None:
            correction = 1 if unbiased else 0
        dims = ops.normalize_dims("var", dim, self.ndim)
        count = int(np.prod([self.shape[d] for d in dims]))
        centred = self - self.mean(dim=dims, keepdim=True)
        return (centred * centred).sum(dim=dims, keepdim=keepdim) / max(count - correction, 0)

    def std(self, dim=None, keepdim=False, correction=1, unbiased=None):
        return self.var(dim, keepdim, correction, unbiased).sqrt()

    def amax(self, dim=None, keepdim=False):
        return ops.Max.apply(self, dim=dim, keepdim=keepdim)

    def amin(self, dim=None, keepdim=False):
        return ops.Min.apply(self, dim=dim, keepdim=keepdim)

    def max(self, dim=None, keepdim=False):
        """``x.max()`` is the largest element; ``x.max(dim)`` with an int returns
        ``(values, indices)`` as in PyTorch; with a tuple of dims it returns the values."""
        values = self.amax(dim=dim, keepdim=keepdim)
        if isinstance(dim, int):
            return MaxResult(values, self.argmax(dim=dim, keepdim=keepdim))
        return values

    def min(self, dim=None, keepdim=False):
        values = self.amin(dim=dim, keepdim=keepdim)
        if isinstance(dim, int):
            return MaxResult(values, self.argmin(dim=dim, keepdim=keepdim))
        return values

    def argmax(self, dim=None, keepdim=False):
        return self._arg_extreme("argmax", dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return self._arg_extreme("argmin", dim, keepdim)

    def _arg_extreme(self, name, dim, keepdim):
        """The index of the first largest (smallest) element: of the flattened tensor when
        ``dim`` is None, else along ``dim``.  An integer tensor, no gradient."""
        if self.numel() == 0:
            raise ValueError(f"{name}: the tensor of shape {self.shape} is empty")
        if dim is None:
            idx = getattr(self.data, name)()
            shape = (1,) * self.ndim if keepdim else ()
            return self._from_op(self.xp.asarray(idx, dtype=np.int64).reshape(shape))
        dim = ops.normalize_dims(name, dim, self.ndim)[0] if self.ndim else None
        idx = getattr(self.data, name)(axis=dim).astype(np.int64)
        return self._from_op(self.xp.expand_dims(idx, dim) if keepdim and self.ndim else idx)

    def prod(self, dim=None, keepdim=False, *, dtype=None):
        """The product over ``dim``; integers and booleans multiply as int64 (PyTorch)."""
        x = self.to(dtype) if dtype is not None else (
            self.long() if self.dtype.kind in "biu" else self)
        return ops.Prod.apply(x, dim=dim, keepdim=keepdim)

    def all(self, dim=None, keepdim=False):
        """Is every element true (non-zero)?  A boolean tensor, no gradient."""
        dims = ops.normalize_dims("all", dim, self.ndim)
        return self._from_op(self.xp.asarray(self.data.astype(bool).all(axis=dims,
                                                                         keepdims=keepdim)))

    def any(self, dim=None, keepdim=False):
        dims = ops.normalize_dims("any", dim, self.ndim)
        return self._from_op(self.xp.asarray(self.data.astype(bool).any(axis=dims,
                                                                         keepdims=keepdim)))

    def logsumexp(self, dim, keepdim=False):
        """log(sum(exp(x))) over ``dim``, computed as m + log(sum(exp(x - m))) with m the
        maximum, so that nothing overflows (m is a constant: its gradients cancel)."""
        x = self if self.dtype.kind == "f" else self.float()
        top = x.amax(dim=dim, keepdim=True).detach()
        top = top.masked_fill(~top.isfinite(), 0.0)           # rows of -inf stay -inf
        out = (x - top).exp().sum(dim=dim, keepdim=True).log() + top
        return out if keepdim else out.squeeze(ops.normalize_dims("logsumexp", dim, x.ndim))

    # --- scans: a running result along one dim ------------------------------------------
    def cumsum(self, dim, *, dtype=None):
        x = self.to(dtype) if dtype is not None else (
            self.long() if self.dtype.kind in "biu" else self)
        return ops.CumSum.apply(x, dim=dim)

    def cumprod(self, dim, *, dtype=None):
        x = self.to(dtype) if dtype is not None else (
            self.long() if self.dtype.kind in "biu" else self)
        return ops.CumProd.apply(x, dim=dim)

    def logcumsumexp(self, dim):
        return ops.LogCumSumExp.apply(self if self.dtype.kind == "f" else self.float(),
                                      dim=dim)

    def cummax(self, dim):
        """(values, indices): the running maximum along ``dim`` and where it was found (the
        latest position on ties, as PyTorch).  The values are gathered, so the gradient goes
        to the element each running maximum came from."""
        return self._running_extreme(dim, "maximum")

    def cummin(self, dim):
        return self._running_extreme(dim, "minimum")

    def _running_extreme(self, dim, ufunc):
        if self.ndim == 0:
            return MaxResult(self.clone(), self._from_op(self.xp.zeros((), np.int64)))
        dim = ops.normalize_dims("cum" + ufunc[:3], dim, self.ndim)[0]
        xp, a = self.xp, self.data
        extreme = ops.running(ufunc, a, dim)
        where = [1] * self.ndim
        where[dim] = self.shape[dim]
        positions = xp.arange(self.shape[dim]).reshape(where)
        # The running extreme changes only where an element reaches it, so the index of the
        # last element equal to its running value is the index of the current extreme.
        found = xp.where(a == extreme, positions, 0)
        indices = self._from_op(ops.running("maximum", found, dim).astype(np.int64))
        return MaxResult(self.gather(dim, indices), indices)

    # --- sorting --------------------------------------------------------------------------
    def sort(self, dim=-1, descending=False, stable=False):
        """(values, indices) sorted along ``dim``.  The sort is always stable here: equal
        elements keep their order, descending too.  The values are gathered, so each gets
        the gradient of where it moved to."""
        if self.ndim == 0:
            return MaxResult(self.clone(), self._from_op(self.xp.zeros((), np.int64)))
        dim = ops.normalize_dims("sort", dim, self.ndim)[0]
        xp, a = self.xp, self.data
        if descending:      # sort the reversed tensor ascending, then read it backwards
            n = self.shape[dim]
            flipped = xp.argsort(xp.flip(a, dim), axis=dim, kind="stable")
            order = n - 1 - xp.flip(flipped, dim)
        else:
            order = xp.argsort(a, axis=dim, kind="stable")
        indices = self._from_op(order.astype(np.int64))
        return MaxResult(self.gather(dim, indices), indices)

    def argsort(self, dim=-1, descending=False, stable=False):
        return self.sort(dim, descending, stable).indices

    def topk(self, k, dim=-1, largest=True, sorted=True):
        """(values, indices) of the ``k`` largest (smallest) elements along ``dim``, largest
        first (smallest first)."""
        axis = ops.normalize_dims("topk", dim, self.ndim)[0] if self.ndim else 0
        n = self.shape[axis] if self.ndim else 1
        if not 0 <= k <= n:
            raise ValueError(f"topk: k={k} is out of range for dim {dim} of size {n}")
        values, indices = self.sort(dim, descending=largest)
        if self.ndim == 0:
            return MaxResult(values, indices)
        keep = (slice(None),) * axis + (slice(0, k),)
        return MaxResult(values[keep], indices[keep])


def _dim_alias(dim, axis):
    """PyTorch's reductions accept NumPy's ``axis=`` for ``dim=``."""
    if axis is not None and dim is not None:
        raise TypeError("pass dim or axis, not both")
    return axis if axis is not None else dim
