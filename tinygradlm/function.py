"""The ``Function`` base class: one differentiable operation, forward and backward side by side.

A subclass implements ``forward(*arrays) -> array`` and ``backward(grad) -> tuple of arrays``
on raw backend arrays.  ``Function.apply`` does the bookkeeping that every op shares, in one
place:

* it checks that all inputs live on the same device and have compatible dtypes;
* it runs ``forward`` and, only when grad mode is on and some input requires grad, records the
  node so that ``Tensor.backward`` can find it;
* ``reduce_to_shape`` (used by the engine after every ``backward``) sums a gradient back to its
  input's shape, so no op ever re-implements broadcasting in its backward.
"""
from __future__ import annotations

import contextlib

import numpy as np


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    return _GradMode.enabled


class no_grad(contextlib.ContextDecorator):
    """Context manager and decorator: ops inside record no graph (inference, optimizer steps)."""

    def __enter__(self):
        self.prev = _GradMode.enabled
        _GradMode.enabled = False

    def __exit__(self, *exc):
        _GradMode.enabled = self.prev
        return False


class enable_grad(contextlib.ContextDecorator):
    """Turn graph recording back on inside a ``no_grad`` block."""

    def __enter__(self):
        self.prev = _GradMode.enabled
        _GradMode.enabled = True

    def __exit__(self, *exc):
        _GradMode.enabled = self.prev
        return False


def reduce_to_shape(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, giving ``shape``.

    Broadcasting copies an input along new leading axes and along axes of size 1; the gradient
    of a copy is the sum of the gradients of its copies.  E.g. grad (4, 3, 5) -> shape (3, 1).
    """
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    if lead:
        grad = grad.reshape(grad.shape[lead:])
    return grad.reshape(shape)


class Function:
    """Base class of every differentiable op (see ``ops.py`` for the primitives)."""

    # Set by ``apply``: the input Tensors and which of them need a gradient.
    inputs: tuple = ()
    needs_input_grad: tuple = ()
    saved: tuple = ()
    freed = False           # True once backward has run without retain_graph
    broadcasts = False      # elementwise ops whose inputs broadcast against each other

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad):
        """Return one gradient array per input (or None where ``needs_input_grad`` is False)."""
        raise NotImplementedError

    def save_for_backward(self, *arrays):
        self.saved = arrays

    @property
    def name(self) -> str:
        return type(self).__name__

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op on Tensors: ``Mul.apply(x, y)``, ``Sum.apply(x, dim=1, keepdim=True)``."""
        from .tensor import Tensor
        fn = cls(**params)
        _check_devices(fn.name, inputs)
        if cls.broadcasts:
            _check_broadcast(fn.name, inputs)
        arrays = _unify_dtypes(fn.name, inputs)
        track = _GradMode.enabled and any(t.requires_grad for t in inputs)
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs) if track else ()
        out = Tensor._from_op(fn.forward(*arrays), requires_grad=track)
        if track:
            fn.inputs = inputs
            out._ctx = fn
        else:
            fn.saved = ()
        return out


def _check_devices(op, inputs):
    devices = {t.device for t in inputs}
    if len(devices) > 1:
        a, b = sorted(devices)
        shapes = ", ".join(f"{tuple(t.shape)} on {t.device}" for t in inputs)
        raise RuntimeError(f"{op.lower()}: expected all tensors on one device, found {a} and {b} "
                           f"({shapes}); move them with .to('{a}') or .to('{b}')")


def _check_broadcast(op, inputs):
    first = inputs[0].shape
    if all(t.shape == first for t in inputs):       # the common case needs no work
        return
    try:
        np.broadcast_shapes(*(t.shape for t in inputs))
    except ValueError:
        shapes = " and ".join(str(tuple(t.shape)) for t in inputs)
        raise ValueError(f"{op.lower()}: shapes {shapes} cannot be broadcast together "
                         "(aligned from the right, each pair of sizes must match or one must "
                         "be 1)") from None


def _unify_dtypes(op, inputs):
    """Integer and boolean operands adopt the floating dtype of the others; two different
    floating dtypes are an error (a silent float64 -> float32 cast would fool a gradcheck)."""
    floats = {t.dtype for t in inputs if t.dtype.kind == "f"}
    if len(floats) > 1:
        a, b = sorted(str(d) for d in floats)
        raise TypeError(f"{op.lower()}: dtype mix {a} and {b}; convert one side with .float() or "
                        f".double() first")
    arrays = [t.data for t in inputs]
    if floats:
        (dtype,) = floats
        arrays = [a if a.dtype == dtype else a.astype(dtype) for a in arrays]
    return arrays
