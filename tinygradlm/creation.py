"""Making tensors: factories (``zeros``, ``randn``, ``arange``, ...) and joins (``cat``, ``stack``),
with PyTorch's names and defaults.  Random factories draw from the library's seeded generators
(``manual_seed``), on the device the tensor is made on.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import backend, ops
from .tensor import Tensor, _default, _shape_arg, bool_, float32, int64


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    return tensors[0] if len(tensors) == 1 else ops.Cat.apply(*tensors, dim=dim)


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors must have the same shape; got {sorted(shapes)}")
    dim = ops.normalize_dims("stack", dim, tensors[0].ndim + 1)[0]    # out of range: IndexError
    return cat([t.unsqueeze(dim) for t in tensors], dim=dim)


def tril(x, diagonal=0):
    return x.tril(diagonal)


def triu(x, diagonal=0):
    return x.triu(diagonal)


# --- factories --------------------------------------------------------------------------
def _factory(make, shape, dtype, device, requires_grad):
    """``make(device, shape, dtype)`` -> an array, wrapped as a leaf tensor."""
    device = backend.normalize_device(device or _default["device"])
    backend.xp_for(device)          # "cuda" without a usable GPU: an error that says why
    array = make(device, _shape_arg(shape), np.dtype(dtype))
    return Tensor._from_op(array).requires_grad_(requires_grad)


def zeros(*shape, dtype=float32, device=None, requires_grad=False):
    return _factory(lambda dev, s, d: backend.xp_for(dev).zeros(s, d), shape, dtype, device,
                    requires_grad)


def ones(*shape, dtype=float32, device=None, requires_grad=False):
    return _factory(lambda dev, s, d: backend.xp_for(dev).ones(s, d), shape, dtype, device,
                    requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    """``shape`` filled with ``fill_value``; without ``dtype`` the value says which, as in
    PyTorch: a bool gives bool, an int int64, a float the default float32."""
    if dtype is None:
        dtype = (bool_ if isinstance(fill_value, bool) else
                 int64 if isinstance(fill_value, int) else float32)
    return _factory(lambda dev, s, d: backend.xp_for(dev).full(s, fill_value, d), (shape,),
                    dtype, device, requires_grad)


class skip_init(contextlib.ContextDecorator):
    """Inside, ``rand``/``randn`` give zeros and the models skip their initialisation: for
    building a model whose weights are loaded right after (``from_pretrained``), so that no
    time goes into drawing 124M random numbers only to overwrite them (PyTorch's
    ``torch.nn.utils.skip_init``).  The random generators are not advanced either."""
    active = False

    def __enter__(self):
        self._previous, skip_init.active = skip_init.active, True

    def __exit__(self, *exc):
        skip_init.active = self._previous
        return False


def _sampler(name: str, method: str):
    """A factory's draw: ``method`` of the device's generator, which samples float32 or
    float64 only -- float16 is drawn in float32 and rounded, as other libraries do."""
    def draw(device, shape, dtype):
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"{name}: dtype must be a floating point type, got {dtype}")
        if skip_init.active:
            return backend.xp_for(device).zeros(shape, dtype)
        wide = dtype if dtype.itemsize >= 4 else np.dtype(np.float32)
        return getattr(backend.generator(device), method)(shape, dtype=wide).astype(dtype,
                                                                                   copy=False)
    return draw


def randn(*shape, dtype=float32, device=None, requires_grad=False):
    """Standard normal samples from the library's seeded generator (see ``manual_seed``)."""
    return _factory(_sampler("randn", "standard_normal"), shape, dtype, device, requires_grad)


def rand(*shape, dtype=float32, device=None, requires_grad=False):
    """Uniform samples in [0, 1) from the library's seeded generator."""
    return _factory(_sampler("rand", "random"), shape, dtype, device, requires_grad)


def randint(low, high, size, device=None):
    device = backend.normalize_device(device or _default["device"])
    return Tensor._from_op(backend.generator(device).integers(low, high, _shape_arg((size,)),
                                                              dtype=np.int64))


def arange(start, end=None, step=1, dtype=None, device=None):
    """Like ``range`` as a tensor: int64 when all bounds are ints, float32 otherwise."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, int) for v in (start, end, step)) else float32
    device = backend.normalize_device(device or _default["device"])
    return Tensor._from_op(backend.xp_for(device).arange(start, end, step, dtype=dtype))


def empty(*shape, dtype=float32, device=None, requires_grad=False):
    """PyTorch leaves an empty tensor's values unset; here they are zeros (never garbage a
    student might mistake for a result)."""
    return zeros(*shape, dtype=dtype, device=device, requires_grad=requires_grad)


def eye(n, m=None, dtype=float32, device=None, requires_grad=False):
    """The (n, m) identity matrix: ones on the diagonal, zeros elsewhere."""
    m = n if m is None else m
    return _factory(lambda dev, s, d: backend.xp_for(dev).eye(s[0], s[1], dtype=d), (n, m),
                    dtype, device, requires_grad)


def linspace(start, end, steps, dtype=float32, device=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end``, both included."""
    if steps < 0:
        raise ValueError(f"linspace: steps must be non-negative, got {steps}")
    return _factory(lambda dev, s, d: backend.xp_for(dev).linspace(start, end, s[0], dtype=d),
                    (steps,), dtype, device, requires_grad)


# --- factories shaped like a tensor: its shape, and its dtype and device unless given ----------
def _like(factory, t, dtype, device, requires_grad, *args):
    return factory(t.shape, *args, dtype=dtype or t.dtype, device=device or t.device,
                   requires_grad=requires_grad)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return _like(zeros, t, dtype, device, requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return _like(ones, t, dtype, device, requires_grad)


def empty_like(t, dtype=None, device=None, requires_grad=False):
    return _like(empty, t, dtype, device, requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False):
    return _like(rand, t, dtype, device, requires_grad)


def randn_like(t, dtype=None, device=None, requires_grad=False):
    return _like(randn, t, dtype, device, requires_grad)


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids: for 1-D tensors of sizes (n1, n2, ...), each expanded to the shape
    (n1, n2, ...) along its own dim.  ``indexing="xy"`` swaps the first two dims (matrix
    rows are y), as NumPy's default."""
    tensors = list(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) \
        else list(tensors)
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', not {indexing!r}")
    if any(t.ndim > 1 for t in tensors):
        raise ValueError("meshgrid: expects 0-d or 1-D tensors, got shapes "
                         f"{[tuple(t.shape) for t in tensors]}")
    axes = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) >= 2:
        axes[0], axes[1] = 1, 0
    shape = [0] * len(tensors)
    for t, axis in zip(tensors, axes):
        shape[axis] = t.numel()
    grids = []
    for t, axis in zip(tensors, axes):
        view = [1] * len(tensors)
        view[axis] = t.numel()
        grids.append(t.reshape(view).expand(shape))
    return tuple(grids)
