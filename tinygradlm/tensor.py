"""``Tensor``: an array (NumPy or CuPy) plus what reverse-mode autograd needs.

A tensor made by an op remembers the ``Function`` that made it (``_ctx``); ``backward()`` hands
the graph to ``autograd.backward``, which walks those links back to the leaves.  The operators
below are thin wrappers: every op's forward and backward live in ``ops/``.
"""
from __future__ import annotations

import operator

import numpy as np

from . import autograd, backend, ops
from .tensor_math import MathMethods, float_unary
from .tensor_shape import ShapeMethods

float32, float64, float16 = np.dtype("float32"), np.dtype("float64"), np.dtype("float16")
int32, int64, bool_ = np.dtype("int32"), np.dtype("int64"), np.dtype("bool")

# ``TINYGRADLM_DEVICE=cuda python script.py`` runs a whole script on the GPU.
_default = {"device": backend.default_device_from_env()}


def set_default_device(device) -> None:
    """Device used by factories and ``Tensor(...)`` when none is given (as PyTorch's
    ``torch.set_default_device``): Python data and NumPy arrays go there; a CuPy array
    stays on the GPU; a tensor stays where it is."""
    _default["device"] = backend.normalize_device(device)


def get_default_device() -> str:
    return _default["device"]


def _to_array(data, dtype, device):
    """Turn ``data`` into an array on ``device``: arrays keep their dtype, Python floats and
    lists of floats become float32, lists of ints int64 (ids and targets), bools stay bool."""
    if isinstance(data, Tensor):
        data = data.data
    if hasattr(data, "__cuda_array_interface__") or isinstance(data, (np.ndarray, np.generic)):
        array = backend.to_device(data, device)
    else:
        array = np.asarray(data)
        if array.dtype.kind == "f":
            array = array.astype(float32)
        elif array.dtype.kind in "iu":
            array = array.astype(int64)
        elif array.dtype.kind not in "b":
            raise TypeError(f"Tensor: cannot make a tensor from {type(data).__name__} "
                            f"(numpy dtype {array.dtype})")
        array = backend.to_device(array, device)
    if dtype is not None and array.dtype != np.dtype(dtype):
        array = array.astype(dtype)
    return array


# Most Tensor methods only say which op of ``ops/`` they run; these make such methods.
def _unary(op):
    """``x.neg()`` -> ``ops.Neg.apply(x)``."""
    return lambda self: op.apply(self)


def _binary(op, reflected=False):
    """``x + y`` -> ``ops.Add.apply(x, y)``; ``reflected``: ``2 + x`` -> ``ops.Add(2, x)``.  A
    Python number or array becomes a tensor that matches ``self`` (``_operand``)."""
    if reflected:
        return lambda self, other: op.apply(self._operand(other), self)
    return lambda self, other: op.apply(self, self._operand(other))


def _comparison(op):
    """``x < y`` -> an elementwise boolean tensor (no gradient)."""
    return lambda self, other: self._compare(other, op)


class Tensor(MathMethods, ShapeMethods):
    """A multi-dimensional array that can record the ops applied to it and differentiate them.

    >>> x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    tensor([2., 4., 6.])
    """

    __array_ufunc__ = None      # numpy_array + tensor calls Tensor.__radd__, not numpy

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        if device is None:      # GPU data stays there; host data goes to the default device
            device = data.device if isinstance(data, Tensor) else (
                "cuda" if hasattr(data, "__cuda_array_interface__") else _default["device"])
        self.data = _to_array(data, dtype, backend.normalize_device(device))
        self.grad = None
        self._ctx = None            # the Function that produced this tensor (None for leaves)
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_op(cls, array, requires_grad=False):
        """Wrap an op's output array without any conversion (the fast path)."""
        t = cls.__new__(cls)
        t.data, t.grad, t._ctx, t._retains_grad = array, None, None, False
        t.requires_grad = requires_grad
        return t

    # --- what it is ---------------------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def xp(self):
        """The array module (numpy or cupy) that holds this tensor's data."""
        return backend.get_array_module(self.data)

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def numpy(self):
        """The data as a NumPy array (copied off the GPU when needed; no graph)."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number; "
                             f"this one has shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __bool__(self):
        return bool(self.item())

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", precision=4, prefix="tensor(")
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (float32, int64, bool_):
            extras.append(f"dtype={self.dtype}")
        if self._ctx is not None:
            extras.append(f"grad_fn=<{self._ctx.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}{''.join(', ' + e for e in extras)})"

    # --- autograd bookkeeping -----------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"requires_grad: only floating-point tensors can require "
                            f"gradients; this one is {self.dtype} (ids and masks never do)")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        self._retains_grad = True
        return self

    def zero_grad(self):
        self.grad = None

    def detach(self):
        """The same data, cut from the graph (no copy)."""
        return Tensor._from_op(self.data)

    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (the walk is in
        ``autograd.backward``)."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad; it was computed "
                               "from tensors without requires_grad=True, or under no_grad()")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: the gradient can only be implied for a "
                                   f"one-element output, but this one has shape {self.shape}; "
                                   f"pass gradient=... of that shape or reduce with .sum()")
            grad = self.xp.ones_like(self.data)
        else:
            grad = _to_array(gradient, self.dtype, self.device)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward: gradient has shape {tuple(grad.shape)} but the "
                                 f"tensor has shape {self.shape}")
        autograd.backward(self, grad, retain_graph)

    # --- conversion ---------------------------------------------------------------------
    def to(self, target):
        """``.to("cuda")``, ``.to("cpu")`` or ``.to(tinygradlm.float64)``; differentiable."""
        if target is None:
            raise TypeError("to: expected a device ('cpu', 'cuda'), a dtype or a tensor, "
                            "got None")
        if isinstance(target, Tensor):
            return self.to(target.device).to(target.dtype)
        if isinstance(target, str) and target.split(":")[0] in backend.DEVICES:
            device = backend.normalize_device(target)
            return self if device == self.device else ops.ToDevice.apply(self, device=device)
        try:
            dtype = np.dtype(target)
        except TypeError:
            raise ValueError(f"to: {target!r} is neither a device ({', '.join(backend.DEVICES)})"
                             f" nor a dtype") from None
        return self if dtype == self.dtype else ops.Cast.apply(self, dtype=dtype)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def half(self):
        return self.to(float16)

    def int(self):
        return Tensor._from_op(self.data.astype(int32))

    def long(self):
        return Tensor._from_op(self.data.astype(int64))

    def clone(self):
        """A copy with its own memory; gradients flow through it unchanged."""
        if self.requires_grad:
            return self * self._operand(1)
        return Tensor._from_op(self.data.copy())

    def contiguous(self):
        """Here every result is already an ordinary array: nothing to do (kept so PyTorch
        code runs unchanged)."""
        return self

    def bool(self):
        return Tensor._from_op(self.data.astype(bool_))

    def _operand(self, other):
        """A Python number or array as a tensor to combine with ``self``.  PyTorch's rule: a
        Python scalar never widens the tensor's dtype -- it takes the tensor's dtype when it
        is of the same kind or lower (``int32 + 1`` is int32, ``float64 * 2`` float64;
        ``int32 | 0xFFFFFFFF`` wraps as in C), and the default dtype of its own kind when it
        is higher (``int_tensor * 0.5`` is float32, ``bool_tensor + 1`` is int64)."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (bool, int, float)):
            rank = {"b": 0, "u": 1, "i": 1, "f": 2}
            scalar = 0 if isinstance(other, bool) else 1 if isinstance(other, int) else 2
            if scalar <= rank[self.dtype.kind]:
                dtype = self.dtype
            else:
                dtype = (bool_, int64, float32)[scalar]
            return Tensor._from_op(self.xp.asarray(np.asarray(other).astype(dtype)))
        return Tensor(other, device=self.device)

    # --- arithmetic (differentiable) ----------------------------------------------------
    # x + y calls ops.Add; 2 + x calls x.__radd__(2), which puts the operands back in order.
    __add__, __radd__ = _binary(ops.Add), _binary(ops.Add, reflected=True)
    __sub__, __rsub__ = _binary(ops.Sub), _binary(ops.Sub, reflected=True)
    __mul__, __rmul__ = _binary(ops.Mul), _binary(ops.Mul, reflected=True)
    __pow__, __rpow__ = _binary(ops.Pow), _binary(ops.Pow, reflected=True)

    def __truediv__(self, other):
        x, y = self, self._operand(other)
        if x.dtype.kind != "f" and y.dtype.kind != "f":     # int / int gives float32, as torch
            x = x.float()
        return ops.Div.apply(x, y)

    def __rtruediv__(self, other):
        return self._operand(other).__truediv__(self)

    __neg__ = _unary(ops.Neg)

    def __matmul__(self, other):
        return self.matmul(other)

    def __rmatmul__(self, other):
        return self._operand(other).matmul(self)

    def matmul(self, other):
        """Matrix product with NumPy's rules: 1-D operands are promoted to a row (left) or a
        column (right) matrix and the added axis is removed from the result."""
        a, b = self, self._operand(other)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least one dimension; got shapes "
                             f"{a.shape} and {b.shape} (use * for scalars)")
        a2 = a.unsqueeze(0) if a.ndim == 1 else a
        b2 = b.unsqueeze(-1) if b.ndim == 1 else b
        out = ops.MatMul.apply(a2, b2)
        if b.ndim == 1:
            out = out.squeeze(-1)
        if a.ndim == 1:
            out = out.squeeze(-2 if b.ndim > 1 else -1)
        return out

    exp, log, sqrt = float_unary(ops.Exp), float_unary(ops.Log), float_unary(ops.Sqrt)
    tanh, sigmoid = float_unary(ops.Tanh), float_unary(ops.Sigmoid)
    erf = float_unary(ops.Erf)
    relu, abs = _unary(ops.ReLU), _unary(ops.Abs)

    def clip(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clip: at least one of min or max must be given")
        return ops.Clip.apply(self, low=min, high=max)

    clamp = clip

    # --- comparisons (no gradient) ------------------------------------------------------
    def _compare(self, other, op):
        other = self._operand(other)
        if other.device != self.device:
            raise RuntimeError(f"comparison: tensors on different devices: {self.device} and "
                               f"{other.device}")
        return Tensor._from_op(op(self.data, other.data))

    # x == y, x < y, x & y, ...: elementwise, on the arrays, giving a boolean tensor.
    __eq__ = _comparison(operator.eq)
    __ne__ = _comparison(operator.ne)
    __lt__ = _comparison(operator.lt)
    __le__ = _comparison(operator.le)
    __gt__ = _comparison(operator.gt)
    __ge__ = _comparison(operator.ge)
    __and__ = _comparison(operator.and_)
    __or__ = _comparison(operator.or_)
    __xor__ = _comparison(operator.xor)
    __lshift__ = _comparison(operator.lshift)
    __rshift__ = _comparison(operator.rshift)

    def __rand__(self, other):
        return self & other

    def __ror__(self, other):
        return self | other

    def __rxor__(self, other):
        return self ^ other

    def __invert__(self):
        """Logical not of a boolean tensor, bitwise not of an integer one."""
        if self.dtype.kind not in "biu":
            raise TypeError(f"~ is only defined for boolean and integer tensors, not "
                            f"{self.dtype}")
        return Tensor._from_op(~self.data)

    __hash__ = object.__hash__      # == is elementwise, so hash by identity

    # --- shape and movement -------------------------------------------------------------
    def reshape(self, *shape):
        """The same elements in a new shape; one size may be -1 (inferred).  A shape that does
        not fit is refused by the op, ``ops.Reshape``."""
        shape = _shape_arg(shape)
        return self if shape == self.shape else ops.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        s, e = _dim("flatten", start_dim, self.ndim), _dim("flatten", end_dim, self.ndim)
        return self.reshape(self.shape[:s] + (-1,) + self.shape[e + 1:])

    def unsqueeze(self, dim):
        dim = _dim("unsqueeze", dim, self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        dims = ops.normalize_dims("squeeze", dim, self.ndim)
        return self.reshape(tuple(n for i, n in enumerate(self.shape)
                                  if not (i in dims and n == 1)))

    def permute(self, *dims):
        return ops.Permute.apply(self, dims=_shape_arg(dims))

    def transpose(self, dim0, dim1):
        dim0, dim1 = _dim("transpose", dim0, self.ndim), _dim("transpose", dim1, self.ndim)
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(dims)

    def movedim(self, source, destination):
        """Axis ``source`` moved to position ``destination``; the others keep their order."""
        src, dst = _dim("movedim", source, self.ndim), _dim("movedim", destination, self.ndim)
        order = [d for d in range(self.ndim) if d != src]
        order.insert(dst, src)
        return self.permute(order)

    @property
    def T(self):
        """All axes reversed (NumPy's ``.T``); use ``.mT`` or ``transpose(-2, -1)`` for a
        batch of matrices."""
        return self.permute(tuple(reversed(range(self.ndim))))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def expand(self, *shape):
        shape = _shape_arg(shape)
        lead = len(shape) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: shape {shape} has fewer dims than the tensor {self.shape}")
        shape = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        return self if shape == self.shape else ops.Expand.apply(self, shape=shape)

    def expand_as(self, other):
        return self.expand(other.shape)

    def __getitem__(self, index):
        index = _index_arg(index)
        if isinstance(index, tuple) and _mixes_ints_and_arrays(index):
            # PyTorch selects with the integers first, then indexes with the rest; NumPy counts
            # the integers as index arrays, which moves the result's axes when a slice
            # separates them from an array (x[1, :, :, idx] on (2, 3, 4, 5): NumPy (2, 3, 4),
            # PyTorch (3, 4, 2)).
            ints = tuple(p if _is_int(p) else (Ellipsis if p is Ellipsis else slice(None))
                         for p in index for _ in range(_axes_used(p)))
            rest = tuple(p for p in index if not _is_int(p))
            return self[ints][rest]
        return ops.GetItem.apply(self, index=index)

    def repeat_interleave(self, repeats, dim=None):
        """Each element ``repeats`` times in a row along ``dim`` (the flattened tensor when
        None): [a, b] -> [a, a, b, b].  ``repeats`` may give one count per element."""
        if dim is None:
            return self.flatten().repeat_interleave(repeats, 0)
        dim = _dim("repeat_interleave", dim, self.ndim)
        counts = repeats.numpy() if isinstance(repeats, Tensor) else repeats
        picks = np.repeat(np.arange(self.shape[dim]), counts)
        return self[(slice(None),) * dim + (Tensor(picks, device=self.device),)]

    def split(self, split_size_or_sections, dim=0):
        """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or pieces of the
        listed sizes."""
        n = self.shape[_dim("split", dim, self.ndim)]
        if isinstance(split_size_or_sections, int):
            size = split_size_or_sections
            sizes = [size] * (n // size) + ([n % size] if n % size else [])
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} add up to {sum(sizes)}, but dim {dim} "
                                 f"has size {n}")
        pieces, start = [], 0
        lead = (slice(None),) * _dim("split", dim, self.ndim)
        for size in sizes:
            pieces.append(self[lead + (slice(start, start + size),)])
            start += size
        return tuple(pieces)

    def chunk(self, chunks, dim=0):
        n = self.shape[dim]
        return self.split(-(-n // chunks), dim)

    def masked_fill(self, mask, value):
        """``value`` where ``mask`` is True, ``self`` elsewhere (mask broadcasts)."""
        mask = mask if isinstance(mask, Tensor) else Tensor(mask, device=self.device)
        if mask.dtype != bool_:
            raise TypeError(f"masked_fill: the mask must be boolean, not {mask.dtype}")
        return where(mask, self._operand(value), self)

    def tril(self, diagonal=0):
        """Keep the lower triangle (``col - row <= diagonal``) of the last two axes, zero the
        rest."""
        return where(Tensor._from_op(_triangle_mask(self.shape, diagonal, True, self.xp)),
                     self, self._zero())

    def triu(self, diagonal=0):
        """Keep the upper triangle (``col - row >= diagonal``) of the last two axes."""
        return where(Tensor._from_op(_triangle_mask(self.shape, diagonal, False, self.xp)),
                     self, self._zero())

    def _zero(self):
        """A 0-d zero of this tensor's dtype and device (bool stays bool)."""
        return Tensor._from_op(self.xp.zeros((), dtype=self.dtype))

    def softmax(self, dim=-1):
        from . import functional
        return functional.softmax(self, dim)

    def log_softmax(self, dim=-1):
        from . import functional
        return functional.log_softmax(self, dim)


def _shape_arg(shape):
    """Accept ``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(n) for n in shape)


def _dim(op, dim, ndim):
    """One ``dim`` as a non-negative axis; out of range is an IndexError, as in PyTorch."""
    return ops.normalize_dims(op, dim, ndim)[0]


def _is_int(p):
    return isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_))


def _is_array(p):
    return isinstance(p, list) or (hasattr(p, "shape") and p.ndim > 0)


def _axes_used(p):
    """How many of the tensor's axes an index part consumes (``...`` counted once)."""
    if p is None:
        return 0
    if hasattr(p, "dtype") and p.dtype == bool:
        return p.ndim
    return 1


def _mixes_ints_and_arrays(index):
    return any(_is_int(p) for p in index) and any(_is_array(p) for p in index)


def _index_arg(index):
    """Tensors inside an index become their arrays (integer or boolean)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


# --- functions of tensors the methods above use ------------------------------------------
def where(cond, x, y):
    """Elementwise ``x if cond else y``; ``cond`` is a boolean tensor (not differentiated)."""
    ref = x if isinstance(x, Tensor) else y
    if not isinstance(ref, Tensor):
        ref = Tensor(x)
    x, y = ref._operand(x), ref._operand(y)
    cond = cond if isinstance(cond, Tensor) else Tensor(cond, device=ref.device)
    if cond.device != ref.device:
        raise RuntimeError(f"where: condition on {cond.device} but values on {ref.device}")
    return ops.Where.apply(x, y, cond=cond.data.astype(bool))


def _triangle_mask(shape, diagonal, lower, xp):
    n, m = shape[-2], shape[-1]
    rows, cols = xp.arange(n)[:, None], xp.arange(m)[None, :]
    return cols - rows <= diagonal if lower else cols - rows >= diagonal
