"""Primitive differentiable ops: one class per op, forward and backward side by side.

Every ``forward`` and ``backward`` works on raw backend arrays (NumPy or CuPy); ``xp`` is the
array module of the data at hand, so the same code runs on both devices.  Broadcasting is never
undone here: ``Function.apply`` records the inputs and the engine sums every gradient back to
its input's shape with ``reduce_to_shape``.  Shapes in comments use ``(...)`` for any shape.

    elementwise.py   Add, Sub, Mul, Div, Pow, Exp, Log, Sin, Tanh, ..., Maximum, Fmod, Step,
                     Cast, ToDevice
    reductions.py    Sum, Max, Min, Prod over some axes; the scans CumSum, CumProd, LogCumSumExp
    movement.py      Reshape, Permute, Expand, Cat, Pad
    indexing.py      GetItem (x[index]), Where, Gather, Scatter, ScatterReduce
    linalg.py        MatMul, Einsum
    windows.py       Unfold, Fold: sliding windows, for convolution and pooling

Everything else (softmax, layer norm, attention, losses, ...) is a composite of these, in
``functional.py``.
"""
from .elementwise import (Abs, Acos, Acosh, Add, Asin, Asinh, Atan, Atanh, Cast, Clip, Cos,
                          Cosh, Div, Erf, Exp, Fmod, Log, Maximum, Minimum, Mul, Neg, Pow,
                          ReLU, Remainder, Sigmoid, Sin, Sinh, Sqrt, Step, Sub, Tan, Tanh,
                          ToDevice)
from .reductions import (CumProd, CumSum, LogCumSumExp, Max, Min, Prod, Sum,
                         normalize_dims, running)
from .movement import Cat, Expand, Pad, Permute, Reshape
from .indexing import Gather, GetItem, Scatter, ScatterReduce, Where
from .linalg import Einsum, MatMul
from .windows import Fold, Unfold
