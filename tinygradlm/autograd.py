"""Reverse-mode automatic differentiation: everything backprop needs, in one file.

Read it top to bottom:

1. **Grad mode** -- ``no_grad()`` turns graph recording off (evaluation, optimizer steps).
2. **Function** -- the base class of every differentiable op.  A subclass implements
   ``forward(*arrays) -> array`` and ``backward(grad) -> one gradient per input`` on raw
   backend arrays (NumPy or CuPy).  ``Function.apply`` runs ``forward`` on tensors and, only
   when grad mode is on and some input requires grad, records the node: the output tensor
   remembers the Function (``_ctx``) and the Function remembers its inputs.
3. **reduce_to_shape** -- broadcasting copies an input; the gradient of a copy is the sum of
   the gradients of its copies.  This is the ONE place where broadcasting is undone: no op's
   backward ever sums over broadcast axes itself.
4. **backward** -- walk the recorded graph from the output back to the leaves in reverse
   topological order (an explicit stack, no recursion), call each Function's ``backward``,
   sum the gradients that meet at a tensor, store the leaves' in ``.grad``, and free what the
   graph saved.  Two economies, both about memory traffic, not math: gradients that meet are
   summed in place into an array the walk made itself (never into one an op may have handed
   to two inputs), and a slice's backward may return a ``SliceGrad`` (its gradient is zero
   outside ``x[index]``), so the pieces of a ``split`` are added into one buffer instead of
   each being zero-padded to the full shape first.

This module never imports ``tensor.py`` (``tensor.py`` imports it): the output of an op is made
by the class of its first input, so there is no import cycle.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .backend import get_array_module


# --- 1. grad mode -----------------------------------------------------------------------------
class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    return _GradMode.enabled


class _SetGradMode(contextlib.ContextDecorator):
    """Set grad mode inside a ``with`` block or a decorated function, and restore it after.
    The previous modes are a stack, so one instance can be nested or decorate a recursive
    function."""
    mode = True

    def __init__(self):
        self._previous = []

    def __enter__(self):
        self._previous.append(_GradMode.enabled)
        _GradMode.enabled = self.mode

    def __exit__(self, *exc):
        _GradMode.enabled = self._previous.pop()
        return False


class no_grad(_SetGradMode):
    """Context manager and decorator: ops inside record no graph (inference, optimizer steps)."""
    mode = False


class enable_grad(_SetGradMode):
    """Turn graph recording back on inside a ``no_grad`` block."""
    mode = True


# --- 2. Function ------------------------------------------------------------------------------
class Function:
    """Base class of every differentiable op (the primitives are in ``ops/``, the fused ones
    in ``kernels/``)."""

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
        fn = cls(**params)
        arrays = [t.data for t in inputs]
        if len(arrays) > 1:
            kind, dtype = type(arrays[0]), arrays[0].dtype
            # the common case, one array type and one dtype, needs no more than this look
            if not all(type(a) is kind and a.dtype == dtype for a in arrays):
                _check_devices(fn.name, inputs)
                arrays = _unify_dtypes(fn.name, inputs)
            if cls.broadcasts:
                _check_broadcast(fn.name, inputs)
        track = _GradMode.enabled and any(t.requires_grad for t in inputs)
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs) if track else ()
        out = type(inputs[0])._from_op(fn.forward(*arrays), requires_grad=track)
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


# --- 3. broadcasting, undone once -------------------------------------------------------------
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


def _fit(grad, inp, fn):
    """A gradient from ``fn.backward`` made to match its input: summed back to the input's
    shape, cast to its dtype, and checked (an op whose backward returns a wrong shape is a bug
    worth a clear message)."""
    if grad.ndim < inp.ndim or grad.size % max(inp.numel(), 1):
        raise RuntimeError(f"{fn.name}.backward returned a gradient of shape "
                           f"{tuple(grad.shape)} for an input of shape {inp.shape}")
    grad = reduce_to_shape(grad, inp.shape)
    if grad.dtype != inp.dtype:
        grad = grad.astype(inp.dtype)
    return grad


# --- 4. the graph walk ------------------------------------------------------------------------
class SliceGrad:
    """A gradient that is ``value`` on ``x[index]`` (a basic index: ints and slices) and zero
    everywhere else, as a slice's backward returns it."""
    __slots__ = ("index", "value")

    def __init__(self, index, value):
        self.index, self.value = index, value

    def dense(self, shape, dtype):
        """The whole gradient: zeros of ``shape`` with ``value`` written at ``index``."""
        full = get_array_module(self.value).zeros(shape, dtype=dtype)
        full[self.index] = self.value
        return full


def backward(root, grad, retain_graph: bool = False) -> None:
    """Propagate ``grad`` (an array shaped like ``root``) from ``root`` to every leaf that
    requires grad, adding into the leaves' ``.grad`` (``Tensor.backward`` calls this).

    Each node's saved arrays are freed afterwards unless ``retain_graph=True``; a second
    backward through freed nodes raises an error instead of returning wrong gradients.
    """
    if root._ctx is None:
        _accumulate(root, grad)
        return
    pending = {id(root): grad}          # gradients of non-leaf tensors still to propagate
    owned = set()                       # ids of tensors whose pending array the walk made
    handed = {id(grad)}                 # ids of arrays already given to a tensor
    for t in _topological_order(root):
        g = pending.pop(id(t), None)
        if g is None:
            continue
        owned.discard(id(t))
        if t._retains_grad:
            _accumulate(t, g)
        fn = t._ctx
        inputs = fn.inputs
        in_grads = fn.backward(g)
        if not retain_graph:
            fn.saved, fn.inputs, fn.freed = (), (), True
        # an op that returns a view of one of its gradients may share memory among them
        shares = any(getattr(a, "base", None) is not None for a in in_grads)
        for inp, ig in zip(inputs, in_grads):
            if ig is None or not inp.requires_grad:
                continue
            key = id(inp)
            if isinstance(ig, SliceGrad):
                if inp._ctx is not None and key in pending:
                    if key not in owned:    # add the slice into a copy the walk owns
                        pending[key] = pending[key].copy()
                        owned.add(key)
                    pending[key][ig.index] += ig.value
                    continue
                ig, fresh = ig.dense(inp.shape, inp.dtype), True
            else:
                ig = _fit(ig, inp, fn)
                # fresh: made by this op for this input alone (not its own incoming
                # gradient, not an array it also gave another input, not a view of one)
                fresh = not shares and ig.base is None and id(ig) not in handed
            handed.add(id(ig))
            if inp._ctx is None:
                _accumulate(inp, ig, fresh)
            elif key not in pending:
                pending[key] = ig
                if fresh:
                    owned.add(key)
            elif key in owned:
                pending[key] += ig
            else:
                pending[key] = pending[key] + ig
                owned.add(key)


def _topological_order(root):
    """The non-leaf tensors reachable from ``root``, each before every tensor it was made
    from (so when we reach a tensor, all gradients flowing into it have arrived)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, children_done = stack.pop()
        if children_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        fn = t._ctx
        if fn.freed:
            raise RuntimeError(
                f"backward: trying to backward through the graph a second time (the "
                f"values saved by {fn.name} were freed by the first backward); call "
                f"backward(retain_graph=True) the first time if you need two")
        stack.append((t, True))
        for inp in fn.inputs:
            if inp.requires_grad and inp._ctx is not None and id(inp) not in visited:
                stack.append((inp, False))
    order.reverse()
    return order


def _accumulate(t, g, fresh=False):
    """Add ``g`` into ``t.grad``.  The first gradient is copied unless the walk knows the
    array is ``fresh``: made by the op for this input alone, a view of nothing.  An op may
    hand one array to several inputs (``Add``), or a view of its own input gradient, and a
    ``.grad`` is changed in place later (``clip_grad_norm_``), so sharing one would be a bug."""
    if t.grad is None:
        t.grad = type(t)._from_op(g if fresh else g.copy())
    else:
        t.grad = type(t)._from_op(t.grad.data + g)
