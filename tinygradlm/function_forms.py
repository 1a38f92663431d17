"""PyTorch's function spellings of the tensor methods: ``tg.sin(x)`` is ``x.sin()``,
``tg.gather(x, 1, index)`` is ``x.gather(1, index)``, as ``torch.sin`` is ``Tensor.sin``.

Each name below is the method itself, taken from the class (``Tensor.sin(x)`` is
``x.sin()``), so there is one implementation.  Then the functions that are not methods:
``einsum``, ``std_mean`` and ``var_mean``.
"""
from __future__ import annotations

import builtins
import string

from . import ops
from .tensor import Tensor

__all__ = [  # what ``import tinygradlm as tg`` puts beside tg.tensor, tg.zeros, ...
    "abs", "acos", "acosh", "add", "all", "amax", "amin", "any", "arccos", "arcsin", "arctan",
    "argmax", "argmin", "argsort", "asin", "asinh", "atan", "atanh", "bitwise_and", "bitwise_not",
    "bitwise_or", "bitwise_xor", "ceil", "chunk", "clamp", "clip", "copysign", "cos", "cosh",
    "cummax", "cummin", "cumprod", "cumsum", "diag", "diagonal", "div", "einsum", "exp", "exp2",
    "flatten", "flip", "floor", "fmod", "gather", "index_select", "isclose", "isfinite", "isinf",
    "isnan", "lerp", "log", "log10", "log2", "logaddexp", "logcumsumexp", "logical_and",
    "logical_not", "logical_or", "logical_xor", "logsumexp", "masked_fill", "masked_select",
    "matmul", "max", "maximum", "mean", "min", "minimum", "movedim", "mul", "narrow", "neg",
    "nonzero", "permute", "pow", "prod", "reciprocal", "relu", "remainder", "repeat_interleave",
    "reshape", "roll", "round", "rsqrt", "scatter", "scatter_add", "scatter_reduce", "sigmoid",
    "sign", "sin", "sinh", "sort", "split", "sqrt", "squeeze", "std", "std_mean", "sub", "sum",
    "take_along_dim", "tan", "tanh", "topk", "transpose", "trunc", "unflatten", "unsqueeze",
    "var", "var_mean",
]

# --- elementwise ------------------------------------------------------------------------------
abs, neg, exp, exp2, log, log2, log10 = (Tensor.abs, Tensor.neg, Tensor.exp, Tensor.exp2,
                                         Tensor.log, Tensor.log2, Tensor.log10)
sqrt, rsqrt, reciprocal, sign, copysign = (Tensor.sqrt, Tensor.rsqrt, Tensor.reciprocal,
                                           Tensor.sign, Tensor.copysign)
sin, cos, tan, asin, acos, atan = (Tensor.sin, Tensor.cos, Tensor.tan, Tensor.asin,
                                   Tensor.acos, Tensor.atan)
sinh, cosh, tanh, asinh, acosh, atanh = (Tensor.sinh, Tensor.cosh, Tensor.tanh, Tensor.asinh,
                                         Tensor.acosh, Tensor.atanh)
arcsin, arccos, arctan = asin, acos, atan
sigmoid, relu = Tensor.sigmoid, Tensor.relu
floor, ceil, trunc, round = Tensor.floor, Tensor.ceil, Tensor.trunc, Tensor.round
clip = clamp = Tensor.clip
add, sub, mul, div, pow = Tensor.add, Tensor.sub, Tensor.mul, Tensor.div, Tensor.pow
fmod, remainder, maximum, minimum = (Tensor.fmod, Tensor.remainder, Tensor.maximum,
                                     Tensor.minimum)
logaddexp, lerp, matmul = Tensor.logaddexp, Tensor.lerp, Tensor.matmul
isnan, isinf, isfinite, isclose = Tensor.isnan, Tensor.isinf, Tensor.isfinite, Tensor.isclose
logical_not, logical_and = Tensor.logical_not, Tensor.logical_and
logical_or, logical_xor = Tensor.logical_or, Tensor.logical_xor
bitwise_not, bitwise_and = Tensor.bitwise_not, Tensor.bitwise_and
bitwise_or, bitwise_xor = Tensor.bitwise_or, Tensor.bitwise_xor

# --- reductions, scans, sorting ------------------------------------------------------------
sum, mean, prod, var, std = Tensor.sum, Tensor.mean, Tensor.prod, Tensor.var, Tensor.std
amax, amin, argmax, argmin = Tensor.amax, Tensor.amin, Tensor.argmax, Tensor.argmin
all, any, logsumexp = Tensor.all, Tensor.any, Tensor.logsumexp
cumsum, cumprod, logcumsumexp = Tensor.cumsum, Tensor.cumprod, Tensor.logcumsumexp
cummax, cummin = Tensor.cummax, Tensor.cummin
sort, argsort, topk = Tensor.sort, Tensor.argsort, Tensor.topk

# --- indexing and movement ------------------------------------------------------------------
gather, scatter, scatter_add = Tensor.gather, Tensor.scatter, Tensor.scatter_add
scatter_reduce, take_along_dim = Tensor.scatter_reduce, Tensor.take_along_dim
index_select, masked_select, nonzero = (Tensor.index_select, Tensor.masked_select,
                                        Tensor.nonzero)
diagonal, diag, narrow = Tensor.diagonal, Tensor.diag, Tensor.narrow
reshape, flatten, unflatten = Tensor.reshape, Tensor.flatten, Tensor.unflatten
squeeze, unsqueeze, permute = Tensor.squeeze, Tensor.unsqueeze, Tensor.permute
transpose, movedim = Tensor.transpose, Tensor.movedim
flip, roll, repeat_interleave = Tensor.flip, Tensor.roll, Tensor.repeat_interleave
split, chunk, masked_fill = Tensor.split, Tensor.chunk, Tensor.masked_fill


def max(x, dim=None, keepdim=False):                      # noqa: A001 (PyTorch's name)
    return x.max(dim, keepdim)


def min(x, dim=None, keepdim=False):                      # noqa: A001
    return x.min(dim, keepdim)


def var_mean(x, dim=None, *, correction=1, keepdim=False):
    """(variance, mean) over ``dim`` in one call."""
    return x.var(dim, keepdim, correction), x.mean(dim, keepdim)


def std_mean(x, dim=None, *, correction=1, keepdim=False):
    """(standard deviation, mean) over ``dim`` in one call."""
    return x.std(dim, keepdim, correction), x.mean(dim, keepdim)


# --- einsum -------------------------------------------------------------------------------
def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation: each operand's axes are named by letters, the output keeps the
    letters after ``->``, and every other letter is summed over.  "ij,jk->ik" is a matmul,
    "bhqd,bhkd->bhqk" attention scores, "ii->i" a diagonal, "ij->" a sum; "..." stands for
    the leading axes; without "->" the output is the letters used once, in alphabetical order.

    The equation is first rewritten so that ``ops.Einsum``'s gradient rule applies: a letter
    repeated inside one operand becomes that operand's diagonal, and a letter found in one
    operand only (and not in the output) is summed away up front."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    specs, output = _parse_einsum(equation.replace(" ", ""), operands)
    operands = list(operands)
    for i, x in enumerate(operands):
        spec = specs[i]
        for letter in sorted(set(spec)):
            while spec.count(letter) > 1:               # "ii": take the diagonal, once per pair
                a = spec.index(letter)
                b = spec.index(letter, a + 1)
                x = x.diagonal(0, a, b)                 # the pair becomes one last axis
                spec = spec[:a] + spec[a + 1:b] + spec[b + 1:] + letter
        elsewhere = output + "".join(s for j, s in enumerate(specs) if j != i)
        alone = [a for a, letter in enumerate(spec) if letter not in elsewhere]
        if alone:                                       # summed over, whatever the others do
            x = x.sum(dim=tuple(alone))
            spec = "".join(letter for letter in spec if letter in elsewhere)
        operands[i], specs[i] = x, spec
    return ops.Einsum.apply(*operands, equation=",".join(specs) + "->" + output)


def _parse_einsum(equation, operands):
    """(one letter string per operand, the output's letters), with "..." replaced by unused
    letters and an implicit output made explicit.  Errors name the operand."""
    inputs, arrow, output = equation.partition("->")
    specs = inputs.split(",")
    if len(specs) != len(operands):
        raise ValueError(f"einsum: the equation {equation!r} names {len(specs)} operands but "
                         f"{len(operands)} were given")
    broadcast = 0                   # how many dims "..." stands for (the most any operand has)
    for i, (spec, x) in enumerate(zip(specs, operands)):
        letters = spec.replace("...", "")
        if letters and not (letters.isascii() and letters.isalpha()):
            raise ValueError(f"einsum: operand {i} has subscripts {spec!r}; use letters "
                             "a-z, A-Z and '...' only")
        n = len(letters)
        if ("..." in spec and n > x.ndim) or ("..." not in spec and n != x.ndim):
            raise ValueError(f"einsum: operand {i} has {x.ndim} dims {tuple(x.shape)} but "
                             f"subscripts {spec!r}")
        if "..." in spec:
            broadcast = builtins.max(broadcast, x.ndim - n)
    unused = [c for c in string.ascii_letters if c not in equation]
    fill = "".join(unused[:broadcast])               # "..." aligns its dims from the right
    specs = [s.replace("...", fill[broadcast - (x.ndim - len(s.replace("...", ""))):])
             for s, x in zip(specs, operands)]
    everything = "".join(specs)
    if not arrow:
        output = fill + "".join(sorted(c for c in set(everything) if c not in fill
                                       and everything.count(c) == 1))
    output = output.replace("...", fill)
    for letter in output:
        if output.count(letter) > 1 or letter not in everything:
            raise ValueError(f"einsum: output subscript {letter!r} in {equation!r} must "
                             "appear once in the output and in some operand")
    return specs, output
