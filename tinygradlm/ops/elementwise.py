"""Elementwise ops: arithmetic with broadcasting, and functions of one tensor."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..backend import get_array_module
from ..autograd import Function


# --- elementwise, two inputs (broadcasting) -----------------------------------------------
class Add(Function):
    """z = x + y"""
    broadcasts = True

    def forward(self, x, y):
        return x + y

    def backward(self, g):
        return g, g


class Sub(Function):
    """z = x - y"""
    broadcasts = True

    def forward(self, x, y):
        return x - y

    def backward(self, g):
        return g, -g


class Mul(Function):
    """z = x * y"""
    broadcasts = True

    def forward(self, x, y):
        self.save_for_backward(x, y)
        return x * y

    def backward(self, g):
        x, y = self.saved
        gx = g * y if self.needs_input_grad[0] else None
        gy = g * x if self.needs_input_grad[1] else None
        return gx, gy


class Div(Function):
    """z = x / y;  dz/dy = -x / y**2 = -z / y"""
    broadcasts = True

    def forward(self, x, y):
        z = x / y
        self.save_for_backward(y, z)
        return z

    def backward(self, g):
        y, z = self.saved
        gx = g / y if self.needs_input_grad[0] else None
        gy = -g * z / y if self.needs_input_grad[1] else None
        return gx, gy


class Pow(Function):
    """z = x ** y;  dz/dx = y * x**(y-1),  dz/dy = z * log(x).

    As PyTorch: dz/dx is 0 where y == 0 (x**0 is the constant 1, even at x = 0), and dz/dy is 0
    where x == 0 and y >= 0 (0**y is constant there), instead of the NaN and -inf the formulas
    give at those points."""
    broadcasts = True

    def forward(self, x, y):
        z = x ** y
        self.save_for_backward(x, y, z)
        return z

    def backward(self, g):
        x, y, z = self.saved
        xp = get_array_module(g)
        zero = xp.zeros((), dtype=g.dtype)
        gx = gy = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.needs_input_grad[0]:
                gx = xp.where(y == 0, zero, g * y * x ** (y - 1))
            if self.needs_input_grad[1]:
                gy = xp.where((x == 0) & (y >= 0), zero, g * z * xp.log(x))
        return gx, gy


# --- elementwise, one input -------------------------------------------------------------
class Neg(Function):
    """z = -x"""

    def forward(self, x):
        return -x

    def backward(self, g):
        return (-g,)


class Exp(Function):
    """z = e**x;  dz/dx = z"""

    def forward(self, x):
        z = get_array_module(x).exp(x)
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * z,)


class Log(Function):
    """z = ln(x);  dz/dx = 1/x"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).log(x)

    def backward(self, g):
        (x,) = self.saved
        return (g / x,)


class Sqrt(Function):
    """z = sqrt(x);  dz/dx = 1 / (2 z)"""

    def forward(self, x):
        z = get_array_module(x).sqrt(x)
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g / (2 * z),)


class Tanh(Function):
    """z = tanh(x);  dz/dx = 1 - z**2"""

    def forward(self, x):
        z = get_array_module(x).tanh(x)
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * (1 - z * z),)


class Sigmoid(Function):
    """z = 1 / (1 + e**-x);  dz/dx = z (1 - z)"""

    def forward(self, x):
        xp = get_array_module(x)
        z = xp.exp(-xp.logaddexp(0, -x))      # never overflows, unlike 1 / (1 + exp(-x))
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * z * (1 - z),)


class ReLU(Function):
    """z = max(x, 0);  dz/dx = 1 where x > 0 else 0"""

    def forward(self, x):
        self.save_for_backward(x > 0)
        return get_array_module(x).maximum(x, 0)

    def backward(self, g):
        (positive,) = self.saved
        return (g * positive,)


class Abs(Function):
    """z = |x|;  dz/dx = sign(x)"""

    def forward(self, x):
        xp = get_array_module(x)
        self.save_for_backward(xp.sign(x))
        return xp.abs(x)

    def backward(self, g):
        (sign,) = self.saved
        return (g * sign,)


class Clip(Function):
    """z = min(max(x, low), high);  dz/dx = 1 inside [low, high], 0 where clipped"""

    def __init__(self, low=None, high=None):
        self.low, self.high = low, high

    def forward(self, x):
        xp = get_array_module(x)
        inside = xp.ones(x.shape, dtype=bool)
        if self.low is not None:
            inside &= x >= self.low
        if self.high is not None:
            inside &= x <= self.high
        self.save_for_backward(inside)
        return xp.clip(x, self.low, self.high)

    def backward(self, g):
        (inside,) = self.saved
        return (g * inside,)


class Erf(Function):
    """z = erf(x);  dz/dx = 2/sqrt(pi) * e**(-x**2)"""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.erf(x)

    def backward(self, g):
        (x,) = self.saved
        xp = get_array_module(x)
        return (g * (2 / np.sqrt(np.pi)) * xp.exp(-x * x),)


class Cast(Function):
    """z = x converted to another dtype; the gradient converts back"""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, g):
        return (g.astype(self.in_dtype),)


class ToDevice(Function):
    """z = x copied to another device; the gradient is copied back"""

    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.in_device = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, g):
        return (backend.to_device(g, self.in_device),)


# --- trigonometric and hyperbolic ----------------------------------------------------------
class Sin(Function):
    """z = sin(x);  dz/dx = cos(x)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).sin(x)

    def backward(self, g):
        (x,) = self.saved
        return (g * get_array_module(x).cos(x),)


class Cos(Function):
    """z = cos(x);  dz/dx = -sin(x)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).cos(x)

    def backward(self, g):
        (x,) = self.saved
        return (-g * get_array_module(x).sin(x),)


class Tan(Function):
    """z = tan(x);  dz/dx = 1 + z**2"""

    def forward(self, x):
        z = get_array_module(x).tan(x)
        self.save_for_backward(z)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * (1 + z * z),)


class Asin(Function):
    """z = asin(x);  dz/dx = 1 / sqrt(1 - x**2)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).arcsin(x)

    def backward(self, g):
        (x,) = self.saved
        return (g / get_array_module(x).sqrt(1 - x * x),)


class Acos(Function):
    """z = acos(x);  dz/dx = -1 / sqrt(1 - x**2)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).arccos(x)

    def backward(self, g):
        (x,) = self.saved
        return (-g / get_array_module(x).sqrt(1 - x * x),)


class Atan(Function):
    """z = atan(x);  dz/dx = 1 / (1 + x**2)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).arctan(x)

    def backward(self, g):
        (x,) = self.saved
        return (g / (1 + x * x),)


class Sinh(Function):
    """z = sinh(x);  dz/dx = cosh(x)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).sinh(x)

    def backward(self, g):
        (x,) = self.saved
        return (g * get_array_module(x).cosh(x),)


class Cosh(Function):
    """z = cosh(x);  dz/dx = sinh(x)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).cosh(x)

    def backward(self, g):
        (x,) = self.saved
        return (g * get_array_module(x).sinh(x),)


class Asinh(Function):
    """z = asinh(x);  dz/dx = 1 / sqrt(x**2 + 1)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).arcsinh(x)

    def backward(self, g):
        (x,) = self.saved
        return (g / get_array_module(x).sqrt(x * x + 1),)


class Acosh(Function):
    """z = acosh(x) for x >= 1;  dz/dx = 1 / sqrt(x**2 - 1)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).arccosh(x)

    def backward(self, g):
        (x,) = self.saved
        return (g / get_array_module(x).sqrt(x * x - 1),)


class Atanh(Function):
    """z = atanh(x) for |x| < 1;  dz/dx = 1 / (1 - x**2)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).arctanh(x)

    def backward(self, g):
        (x,) = self.saved
        return (g / (1 - x * x),)


# --- step functions -------------------------------------------------------------------------
class Step(Function):
    """z = floor, ceil, trunc, round or sign of x.  These are constant between their jumps,
    so the gradient is 0 (PyTorch's convention at the jumps too)."""

    def __init__(self, fn: str):
        self.fn = fn

    def forward(self, x):
        xp = get_array_module(x)
        # NumPy's name for trunc is trunc, for round "round half to even" -- PyTorch's too.
        return getattr(xp, {"round": "rint"}.get(self.fn, self.fn))(x)

    def backward(self, g):
        return (get_array_module(g).zeros_like(g),)


# --- two inputs: the larger, the smaller, remainders -------------------------------------------
class Maximum(Function):
    """z = the larger of x and y; the gradient goes to the larger one, half to each on a tie
    (as PyTorch)."""
    broadcasts = True

    def forward(self, x, y):
        self.save_for_backward(x, y)
        return get_array_module(x).maximum(x, y)

    def pick(self, x, y):
        return x > y

    def backward(self, g):
        x, y = self.saved
        xp = get_array_module(g)
        share = xp.where(x == y, 0.5, xp.where(self.pick(x, y), 1.0, 0.0)).astype(g.dtype)
        return g * share, g * (1 - share)


class Minimum(Maximum):
    """z = the smaller of x and y; the gradient goes to the smaller one, half to each on a tie"""

    def forward(self, x, y):
        self.save_for_backward(x, y)
        return get_array_module(x).minimum(x, y)

    def pick(self, x, y):
        return x < y


class Fmod(Function):
    """z = x - trunc(x / y) * y (C's fmod: the sign of x);  dz/dx = 1, dz/dy = -trunc(x / y)"""
    broadcasts = True

    def forward(self, x, y):
        self.save_for_backward(x, y)
        return get_array_module(x).fmod(x, y)

    def backward(self, g):
        x, y = self.saved
        return g, -g * get_array_module(g).trunc(x / y)


class Remainder(Function):
    """z = x - floor(x / y) * y (Python's %: the sign of y);  dz/dy = -floor(x / y)"""
    broadcasts = True

    def forward(self, x, y):
        self.save_for_backward(x, y)
        return get_array_module(x).remainder(x, y)

    def backward(self, g):
        x, y = self.saved
        return g, -g * get_array_module(g).floor(x / y)
