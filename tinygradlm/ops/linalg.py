"""Linear algebra: the matrix product and einsum."""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..autograd import Function


# --- linear algebra ---------------------------------------------------------------------
class MatMul(Function):
    """z = a @ b for a (..., n, k) and b (..., k, m), batch axes broadcast.

    dL/da = g @ b^T and dL/db = a^T @ g, where ^T swaps the *last two* axes (never ``.T``,
    which would reverse the batch axes too); broadcast batch axes are summed by the engine.
    """

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError("MatMul works on >= 2-D arrays; Tensor.matmul handles 1-D operands")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not "
                             f"aligned: the left has {a.shape[-1]} columns but the right has "
                             f"{b.shape[-2]} rows")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of {tuple(a.shape)} and "
                             f"{tuple(b.shape)} cannot be broadcast together") from None
        self.save_for_backward(a, b)
        if b.ndim == 2 and a.ndim > 2:
            # x @ W in a Linear: one (B*T, k) @ (k, m) product is faster than B products.
            return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])
        return a @ b

    def backward(self, g):
        a, b = self.saved
        ga = None
        if self.needs_input_grad[0]:
            if b.ndim == 2 and g.ndim > 2:
                ga = (g.reshape(-1, g.shape[-1]) @ b.T).reshape(*g.shape[:-1], b.shape[0])
            else:
                ga = g @ b.swapaxes(-1, -2)
        gb = None
        if self.needs_input_grad[1]:
            if b.ndim == 2 and a.ndim > 2:
                # A shared weight (x @ W in a Linear): fold the batch axes into one product
                # instead of a batch of products that the engine would then sum.
                gb = a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])
            else:
                gb = a.swapaxes(-1, -2) @ g
        return ga, gb


class Einsum(Function):
    """z = einsum(equation, *operands), e.g. "bij,bjk->bik" (a batched matmul).

    The gradient of an operand is an einsum too: the output's gradient contracted with the
    other operands, written in this operand's letters ("bik,bjk->bij" for the left one).
    That holds when no operand repeats a letter and every letter of an operand also appears
    in the output or in another operand; ``tinygradlm.einsum`` rewrites any equation into
    that form first (taking diagonals and sums, which have gradients of their own).  A size-1
    axis that broadcasts gets a full-size gradient, which the engine sums back."""

    def __init__(self, equation):
        self.equation = equation
        inputs, self.output = equation.split("->")
        self.specs = inputs.split(",")

    def forward(self, *xs):
        self.save_for_backward(*xs)
        return get_array_module(xs[0]).einsum(self.equation, *xs)

    def backward(self, g):
        xs = self.saved
        xp = get_array_module(g)
        grads = []
        for i, spec in enumerate(self.specs):
            if not self.needs_input_grad[i]:
                grads.append(None)
                continue
            others = [j for j in range(len(xs)) if j != i]
            equation = ",".join([self.output] + [self.specs[j] for j in others]) + "->" + spec
            grads.append(xp.einsum(equation, g, *(xs[j] for j in others)))
        return tuple(grads)
