"""A fake CuPy for machines without a GPU: NumPy underneath, stricter than CuPy on top.

tinygradlm must run on CuPy arrays without ever handing device data to NumPy.  Real CuPy only
shows such mistakes on a machine with a GPU, so the tests use this module instead: it imitates
the small part of CuPy's API the library uses, keeps each "device" array in a private NumPy
array, and refuses every path by which device data could reach NumPy by accident:

* ``np.asarray(d)``, ``np.array(d)``, ``np.ascontiguousarray(d)`` raise CuPy's own error;
* ``np.exp(d)``, ``np.sum(d)`` and every other NumPy function raise ``TypeError`` -- real CuPy
  forwards those to itself (NEP 13/18), but library code must ask the tensor for ``xp``;
* mixing a ``numpy.ndarray`` with a device array in operators and ``cupy.*`` functions raises
  ``TypeError("Unsupported type <class 'numpy.ndarray'>")`` as CuPy does; so does a NumPy array
  in an index key or an assigned value, where CuPy would often copy it to the device quietly
  (the fake wants every host -> device copy written out).
  Host data enters only through ``cupy.asarray`` / ``cupy.array`` and leaves through ``.get()``,
  ``cupy.asnumpy``, ``.item()``, ``.tolist()``, ``float()`` ...

With ``install()`` called before tinygradlm is imported, the whole test suite can run on
``device="cuda"``.  This checks device plumbing, not GPU numerics: the arithmetic is NumPy's.
"""
from __future__ import annotations

import functools
import math
import operator
import sys
import time
import types

import numpy as np

__version__ = "13.0.0+fake"
FAKE = True            # lets a test tell this module from the real CuPy


# --- moving values between the fake device and NumPy ------------------------------------------
def _host_error(where):
    return TypeError(f"Unsupported type {np.ndarray!r} (a NumPy array reached {where}; "
                     "move host data to the device with cupy.asarray first)")


def _unwrap(obj, where):
    """Fake arrays -> their NumPy data, looking inside lists and tuples; a NumPy array is an
    error, because on a real GPU it would be host memory mixed with device memory."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, np.ndarray):
        raise _host_error(where)
    if isinstance(obj, (list, tuple)):
        return _rebuild(obj, [_unwrap(x, where) for x in obj])
    return obj


def _wrap(obj):
    """NumPy results -> fake arrays.  CuPy never returns a NumPy scalar from device data, so a
    scalar becomes a 0-d fake array (reading it needs float(), int() or .item(), as on a GPU)."""
    if isinstance(obj, np.ndarray):
        return ndarray._from(obj)
    if isinstance(obj, np.generic):
        return ndarray._from(np.asarray(obj))
    if isinstance(obj, (list, tuple)):
        return _rebuild(obj, [_wrap(x) for x in obj])
    return obj


def _rebuild(container, items):
    """A list/tuple like ``container`` holding ``items`` (named tuples such as NumPy's
    ``SVDResult`` keep their type)."""
    if isinstance(container, tuple) and hasattr(container, "_fields"):
        return type(container)(*items)
    return tuple(items) if isinstance(container, tuple) else list(items)


def _device_function(fn, where):
    """``fn`` (a NumPy function) as a CuPy function: fake arrays in, fake arrays out."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        result = fn(*_unwrap(args, where), **{k: _unwrap(v, where) for k, v in kwargs.items()})
        out = kwargs.get("out")
        return out if isinstance(out, ndarray) else _wrap(result)
    return call


_SCALARS = (bool, int, float, complex, np.generic)


def _operand(other):
    """The other side of an operator: fake arrays and scalars only, like CuPy."""
    if isinstance(other, ndarray):
        return other._a
    if isinstance(other, _SCALARS):
        return other
    if isinstance(other, (np.ndarray, list, tuple)):
        raise TypeError(f"Unsupported type {type(other)!r}")
    return NotImplemented        # let the other object try (e.g. a Tensor's reflected operator)


# --- the device array -------------------------------------------------------------------------
class _Flags:
    def __init__(self, a):
        self.c_contiguous = bool(a.flags.c_contiguous)
        self.f_contiguous = bool(a.flags.f_contiguous)
        self.owndata = bool(a.flags.owndata)
        self.writeable = bool(a.flags.writeable)

    def __getitem__(self, name):          # a.flags["C_CONTIGUOUS"], as in CuPy and NumPy
        return getattr(self, name.lower())

    def __repr__(self):
        return (f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n"
                f"  OWNDATA : {self.owndata}")


class _MemoryPointer:                      # a.data.ptr; NumPy's a.data would be host memory
    def __init__(self, ptr):
        self.ptr = ptr
        self.device = Device(0)


# Operators that NumPy may hand back to us through __array_ufunc__ when a NumPy *scalar* is on
# the left (np.float32(2) * d).  Real CuPy accepts that, so the fake must too.
_OPERATOR_UFUNCS = {np.add, np.subtract, np.multiply, np.true_divide, np.floor_divide,
                    np.remainder, np.power, np.matmul, np.bitwise_and, np.bitwise_or,
                    np.bitwise_xor, np.left_shift, np.right_shift, np.divmod}
_COMPARISON_UFUNCS = {np.less, np.less_equal, np.greater, np.greater_equal, np.equal,
                      np.not_equal}
_BINOP_UFUNCS = _OPERATOR_UFUNCS | _COMPARISON_UFUNCS


class ndarray:
    """A "device" array: a private NumPy array that NumPy itself is not allowed to see."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        # CuPy's constructor allocates uninitialised memory of a given shape.
        self._a = np.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _from(cls, array):
        self = cls.__new__(cls)
        self._a = array
        return self

    @property
    def base(self):             # as CuPy's: the array this one is a view of, else None
        return None if self._a.base is None else ndarray._from(self._a.base)

    # -- the walls between host and device --
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # Only path allowed: NumPy forwarding `host_scalar <op> device_array` to us.
        if method == "__call__" and not kwargs and len(inputs) == 2 and inputs[1] is self:
            left = inputs[0]
            if ufunc in _BINOP_UFUNCS and isinstance(left, np.generic):
                return _wrap(ufunc(left, self._a))
            if ufunc in _COMPARISON_UFUNCS and isinstance(left, np.ndarray) and left.ndim == 0:
                return _wrap(ufunc(left[()], self._a))   # NumPy turned a scalar into 0-d
            if ufunc in _BINOP_UFUNCS and isinstance(left, np.ndarray):
                raise TypeError(f"Unsupported type {np.ndarray!r}")
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        raise TypeError(f"numpy.{name} called on a device array; "
                        "use the array module of the tensor (xp)")

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} called on a device array; "
                        "use the array module of the tensor (xp)")

    @property
    def __cuda_array_interface__(self):
        a = self._a
        return {"version": 3, "shape": a.shape, "typestr": a.dtype.str, "descr": a.dtype.descr,
                "data": (a.__array_interface__["data"][0] if a.size else 0, False),
                "strides": None if a.flags.c_contiguous else a.strides, "stream": None}

    # -- explicit transfers (each would be a device synchronisation on a GPU) --
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is None:
            return np.array(self._a, order=order, copy=True)
        if not isinstance(out, np.ndarray):
            raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
        if out.dtype != self.dtype:
            raise TypeError(f"{out.dtype} array cannot be obtained from {self.dtype} array")
        if out.shape != self.shape:
            raise ValueError(f"Shape mismatch. Expected shape: {self.shape}, "
                             f"actual shape: {out.shape}")
        np.copyto(out, self._a)
        return out

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        self._a[...] = arr

    def item(self):
        if self._a.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    # CuPy converts through .get(), so errors and warnings are NumPy's own.
    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __bool__(self):
        return bool(self._a)

    def __reduce__(self):                  # pickling copies to the host and back, as in CuPy
        return asarray, (self.get(),)

    def __copy__(self):
        return ndarray._from(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray._from(self._a.copy())

    def __repr__(self):
        return repr(self._a)[:-1] + ", device='fake cuda:0')"

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec)

    # -- attributes --
    @property
    def shape(self):
        return self._a.shape

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    device = property(lambda self: Device(0))
    data = property(lambda self: _MemoryPointer(self.__cuda_array_interface__["data"][0]))

    @property
    def T(self):
        return self if self.ndim < 2 else ndarray._from(self._a.T)

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and self._a.dtype == np.dtype(dtype):
            return self            # CuPy returns the array itself, not a new view
        return ndarray._from(self._a.astype(dtype, order=order, copy=True))

    def __getattr__(self, name):
        # Every other method/attribute comes from NumPy, behind the same unwrap/wrap rules.
        # Underscore names are refused: dunders so NumPy cannot find __array_interface__ and
        # friends here, and `_a` so a half-built array fails instead of recursing.
        if name.startswith("_") or name == "ctypes":
            raise AttributeError(f"'cupy.ndarray' (fake) object has no attribute {name!r}")
        attr = getattr(self._a, name)
        if callable(attr):
            return _device_function(attr, f"cupy.ndarray.{name}")
        return _wrap(attr)

    # -- containers and indexing --
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    def __getitem__(self, key):
        # Stricter than CuPy, which copies a NumPy (or list) index to the device silently.
        key = _unwrap(key, "an index key")
        out = self._a[key]
        if isinstance(out, np.generic):
            # NumPy returns a scalar copy here; CuPy returns a 0-d view.  Adding `...` to the
            # key makes NumPy return that view too.
            k = key if isinstance(key, tuple) else (key,)
            if not any(x is Ellipsis for x in k):
                return ndarray._from(self._a[k + (Ellipsis,)])
        return _wrap(out)

    def __setitem__(self, key, value):
        # Stricter than CuPy, which copies a NumPy key to the device silently, and a NumPy
        # value too when the key has arrays in it or is `[:]` (other basic keys refuse it).
        self._a[_unwrap(key, "an index key")] = _unwrap(value, "an assigned value")

    def __contains__(self, value):
        return _unwrap(value, "an `in` test") in self._a

    # -- operators --
    def __pos__(self):
        return self

    def __neg__(self):
        return _wrap(-self._a)

    def __abs__(self):
        return _wrap(abs(self._a))

    def __invert__(self):
        return _wrap(~self._a)


def _binary(op):
    def method(self, other):
        other = _operand(other)
        return NotImplemented if other is NotImplemented else _wrap(op(self._a, other))
    return method


def _reflected(op):
    def method(self, other):
        other = _operand(other)
        return NotImplemented if other is NotImplemented else _wrap(op(other, self._a))
    return method


def _inplace(op):
    def method(self, other):
        other = _operand(other)
        if other is NotImplemented:
            return NotImplemented
        op(self._a, other)         # NumPy's in-place op writes into the same buffer
        return self
    return method


# Python name -> operator function; each gets __op__, __rop__ and __iop__.
for _name, _op in {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
                   "truediv": operator.truediv, "floordiv": operator.floordiv,
                   "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
                   "and": operator.and_, "or": operator.or_, "xor": operator.xor,
                   "lshift": operator.lshift, "rshift": operator.rshift}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _reflected(_op))
    setattr(ndarray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name}")))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(getattr(operator, _name)))
ndarray.__divmod__, ndarray.__rdivmod__ = _binary(divmod), _reflected(divmod)


# --- ufuncs -----------------------------------------------------------------------------------
class ufunc:
    """A NumPy ufunc that takes fake arrays, with ``at`` (scatter), ``reduce``, ``accumulate``
    and ``outer``."""

    def __init__(self, np_ufunc):
        self._uf = np_ufunc
        self.__name__ = np_ufunc.__name__
        self.__doc__ = np_ufunc.__doc__
        self._call = _device_function(np_ufunc, f"cupy.{self.__name__}")

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise TypeError(f"cupy.{self.__name__}.at needs a cupy.ndarray, got {type(a)!r}")
        where = f"cupy.{self.__name__}.at"
        extra = () if b is None else (_unwrap(b, where),)
        self._uf.at(a._a, _unwrap(indices, where), *extra)   # in place, repeats accumulate

    def __getattr__(self, name):          # reduce, accumulate, outer, nin, identity, ...
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._uf, name)
        return _device_function(attr, f"cupy.{self.__name__}.{name}") if callable(attr) else attr

    def __repr__(self):
        return f"<ufunc '{self.__name__}' (fake cupy)>"


# --- module-level functions -------------------------------------------------------------------
def asarray(a, dtype=None, order=None, *, blocking=False):
    """Host -> device (always a copy: device memory is separate); a device array is returned
    as it is when no conversion is needed."""
    if isinstance(a, ndarray):
        return a.astype(dtype, copy=False) if dtype is not None else a
    return ndarray._from(np.array(_unwrap_fakes(a), dtype=dtype, order=order, copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if copy is False or copy is None:
        out = asarray(obj, dtype=dtype)
        return out if out.ndim >= ndmin else ndarray._from(np.array(out._a, ndmin=ndmin))
    return ndarray._from(np.array(_unwrap_fakes(obj), dtype=dtype, copy=True, order=order,
                                  ndmin=ndmin))


asanyarray = asarray


def _unwrap_fakes(obj):
    """Like _unwrap, but NumPy arrays are fine: used only by the host -> device entry points."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, (list, tuple)):
        return _rebuild(obj, [_unwrap_fakes(x) for x in obj])
    return obj


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


def is_available():
    return True


def fuse(*args, **kwargs):
    """``@cupy.fuse`` / ``@cupy.fuse()``: the fake just runs the function unfused."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


class _Namespace(types.ModuleType):
    """A NumPy submodule (linalg, fft, ...) behind the device rules."""

    def __init__(self, np_module, name):
        super().__init__(name)
        self._np_module = np_module

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _device_attr(getattr(self._np_module, name), f"{self.__name__}.{name}")


def _device_attr(obj, where):
    if isinstance(obj, np.ufunc):
        return ufunc(obj)
    if isinstance(obj, types.ModuleType):
        return _Namespace(obj, where)
    if isinstance(obj, type) or not callable(obj):
        return obj             # dtypes, finfo, inf, pi, newaxis: the same objects as NumPy's
    return _device_function(obj, where)


_built: dict = {}       # not globals(): cupy.sum, cupy.abs, cupy.any must not shadow builtins here


def __getattr__(name):
    """Anything else in ``cupy.*`` is NumPy's, behind the device rules (built once)."""
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in _built:
        try:
            obj = getattr(np, name)
        except AttributeError:
            raise AttributeError(f"module 'cupy' (fake) has no attribute {name!r}") from None
        _built[name] = _device_attr(obj, f"cupy.{name}")
    return _built[name]


# --- cupy.cuda ----------------------------------------------------------------------------------
_TOTAL_MEMORY = 16 * 2**30


class CUDARuntimeError(RuntimeError):
    pass


def _module(name, doc, **attrs):
    module = types.ModuleType(name, doc)
    module.__dict__.update(attrs)
    return module


runtime = _module(
    "cupy.cuda.runtime", "The few CUDA runtime queries the library makes.",
    CUDARuntimeError=CUDARuntimeError,
    getDeviceCount=lambda: 1,
    getDevice=lambda: 0,
    runtimeGetVersion=lambda: 12040,
    driverGetVersion=lambda: 12040,
    getDeviceProperties=lambda device=0: {"name": b"Fake CUDA device (NumPy)",
                                          "totalGlobalMem": _TOTAL_MEMORY,
                                          "major": 9, "minor": 0, "multiProcessorCount": 1},
)


class Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self.compute_capability = "90"

    mem_info = property(lambda self: (_TOTAL_MEMORY - _memory_pool.used_bytes(), _TOTAL_MEMORY))

    def synchronize(self):
        pass

    def use(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<CUDA Device {self.id} (fake)>"


class Stream:
    null = None                           # set below: the default stream

    def __init__(self, null=False, non_blocking=False, ptr=0):
        self.ptr = ptr

    def synchronize(self):
        pass

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


Stream.null = Stream(null=True)


class Event:
    """Records host time: on the fake device every kernel has finished when it returns."""

    def __init__(self, *args, **kwargs):
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        pass


def _get_elapsed_time(start, end):
    return (end.time - start.time) * 1000.0        # milliseconds, as CuPy


class MemoryPool:
    """Nothing to pool: the numbers say so."""

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_bytes(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def set_limit(self, size=None, fraction=None):
        pass


_memory_pool = MemoryPool()
_pinned_memory_pool = MemoryPool()


def get_default_memory_pool():
    return _memory_pool


def get_default_pinned_memory_pool():
    return _pinned_memory_pool


cuda = _module(
    "cupy.cuda", "Device, streams, events and memory of the one fake device.",
    runtime=runtime, Device=Device, Stream=Stream, Event=Event, MemoryPool=MemoryPool,
    CUDARuntimeError=CUDARuntimeError, is_available=is_available,
    get_current_stream=lambda device=None: Stream.null,
    get_elapsed_time=_get_elapsed_time,
)


# --- cupy.random ------------------------------------------------------------------------------
class _Random:
    """A NumPy Generator or RandomState whose draws land on the fake device.

    CuPy returns arrays (0-d for a single draw) and takes a ``dtype=`` for float draws where
    NumPy mostly has none, so the fake draws in NumPy's dtype and then casts.
    """

    _INT_DRAWS = ("integers", "randint")    # NumPy already understands dtype= for these

    def __init__(self, rng):
        self._rng = rng

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._rng, name)
        if not callable(attr) or name in ("seed", "bit_generator"):
            return attr
        where = f"cupy.random.{name}"

        def draw(*args, **kwargs):
            dtype = None if name in self._INT_DRAWS else kwargs.pop("dtype", None)
            result = attr(*_unwrap(args, where),
                          **{k: _unwrap(v, where) for k, v in kwargs.items()})
            if isinstance(result, (int, float, complex)):
                result = np.asarray(result)       # a single draw is a 0-d array in CuPy
            if dtype is not None and isinstance(result, (np.ndarray, np.generic)):
                result = np.asarray(result).astype(dtype, copy=False)
            return _wrap(result)
        return draw


class Generator(_Random):
    """``cupy.random.default_rng()``: CuPy's Generator has only these four draws (checked
    against CuPy 14.2), so the fake refuses the rest of NumPy's (``normal``, ``choice``, ...)."""

    METHODS = ("random", "standard_normal", "integers", "uniform")

    def __init__(self, bit_generator):
        seed = getattr(bit_generator, "seed", bit_generator)   # default_rng passes a seed
        super().__init__(np.random.default_rng(_unwrap(seed, "cupy.random.Generator")))

    def __getattr__(self, name):
        if name not in self.METHODS:
            raise AttributeError(f"'cupy.random.Generator' object has no attribute {name!r}")
        return super().__getattr__(name)


class _BitGenerator:
    """``cupy.random.Philox4x3210(seed)`` / ``XORWOW(seed)``: here only the seed matters (the
    draws come from NumPy's generator, never equal to cuRAND's)."""

    def __init__(self, seed=None, *, size=-1):
        self.seed = seed


_global_random = _Random(np.random.RandomState())


def _seed(seed=None):
    _global_random._rng.seed(None if seed is None else int(seed) % 2**32)


random = _module(
    "cupy.random", "Seeded random draws on the fake device.",
    seed=_seed, default_rng=lambda seed=None: Generator(_BitGenerator(seed)),
    Generator=Generator, Philox4x3210=_BitGenerator, XORWOW=_BitGenerator,
    get_random_state=lambda: _global_random,
    **{name: getattr(_global_random, name)
       for name in ("rand", "randn", "randint", "random", "random_sample", "normal", "uniform",
                    "standard_normal", "permutation", "shuffle", "choice")},
)


# --- cupyx --------------------------------------------------------------------------------------
def _erf(x):
    """Elementwise error function, keeping float32/float16 inputs in their dtype."""
    a = _unwrap(x, "cupyx.scipy.special.erf")
    a = np.asarray(a)
    dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)
    try:
        from scipy.special import erf as host_erf   # fast when SciPy happens to be installed
    except ImportError:
        host_erf = np.vectorize(math.erf, otypes=[np.float64])
    return _wrap(np.asarray(host_erf(a)).astype(dtype, copy=False))


def _scatter_add(a, slices, value):
    ufunc(np.add).at(a, slices, value)


_special = _module("cupyx.scipy.special", "Special functions.", erf=_erf)
_scipy = _module("cupyx.scipy", "SciPy-like routines.", special=_special)
_cupyx = _module("cupyx", "CuPy extras used by tinygradlm.", scipy=_scipy,
                 scatter_add=_scatter_add)


# --- installing the fake as `cupy` ----------------------------------------------------------------
_NAMES = ("cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.random", "cupyx", "cupyx.scipy",
          "cupyx.scipy.special")
_saved: dict = {}


def install():
    """Make ``import cupy`` (and ``cupyx.scipy.special``) give this fake; return it."""
    this = sys.modules[__name__]
    modules = dict(zip(_NAMES, (this, cuda, runtime, random, _cupyx, _scipy, _special)))
    for name, module in modules.items():
        if name not in _saved:
            _saved[name] = sys.modules.get(name)
        sys.modules[name] = module
    return this


def uninstall():
    """Undo install(): put back whatever ``cupy`` and friends were before (or nothing)."""
    for name in _NAMES:
        if name in _saved:
            previous = _saved.pop(name)
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
