"""The fake CuPy (tests/fake_cupy.py) must be strict -- every way device data could reach NumPy
raises -- and faithful -- what CuPy allows gives NumPy's numbers, as fake device arrays."""
import copy
import math
import operator
import pickle
import sys
import types

import numpy as np
import pytest

import fake_cupy as cp


def dev(values, dtype=np.float32):
    return cp.asarray(np.asarray(values, dtype=dtype))


@pytest.fixture
def d():
    return dev([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])


# --- strictness ---------------------------------------------------------------------------------
IMPLICIT = "Implicit conversion to a NumPy array is not allowed"


@pytest.mark.parametrize("call, message", [
    (lambda d: np.asarray(d), IMPLICIT),
    (lambda d: np.array(d), IMPLICIT),
    (lambda d: np.ascontiguousarray(d), IMPLICIT),
    (lambda d: np.array([d, d]), IMPLICIT),
    (lambda d: np.testing.assert_allclose(d, d), "device array|Implicit"),
    (lambda d: np.exp(d), "numpy.exp called on a device array"),
    (lambda d: np.tanh(d), "numpy.tanh called on a device array"),
    (lambda d: np.maximum(d, 0), "numpy.maximum called on a device array"),
    (lambda d: np.sum(d), "numpy.sum called on a device array"),
    (lambda d: np.mean(d, axis=0), "numpy.mean called on a device array"),
    (lambda d: np.concatenate([d, d]), "numpy.concatenate called on a device array"),
    (lambda d: np.where(d > 0, d, 0.0), "numpy.where called on a device array"),
    (lambda d: np.add.reduce(d), "numpy.add.reduce called on a device array"),
    (lambda d: np.add.at(d, [0], 1.0), "numpy.add.at called on a device array"),
])
def test_numpy_entry_points_refuse_device_arrays(d, call, message):
    with pytest.raises(TypeError, match=message):
        call(d)


HOST = np.ones((2, 3), dtype=np.float32)
BINARY = [operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
          operator.mod, operator.pow, operator.lt, operator.le, operator.gt, operator.ge,
          operator.eq, operator.ne]


@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.__name__)
def test_operators_refuse_numpy_arrays_on_either_side(d, op):
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        op(d, HOST)
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        op(HOST, d)


def test_other_operators_refuse_numpy_arrays(d):
    ints = dev([1, 2, 3], np.int64)
    host_ints = np.array([1, 1, 1])
    for op in (operator.and_, operator.or_, operator.xor, operator.lshift, operator.rshift):
        with pytest.raises(TypeError, match="Unsupported type"):
            op(ints, host_ints)
    with pytest.raises(TypeError, match="Unsupported type"):
        d @ HOST.T
    with pytest.raises(TypeError, match="Unsupported type"):
        d += HOST
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        d + np.ones(())                             # a 0-d NumPy array is still host memory
    with pytest.raises(TypeError, match="Unsupported type <class 'list'>"):
        d + [1.0, 2.0, 3.0]                         # CuPy takes no lists in operators either


@pytest.mark.parametrize("call", [
    lambda d: cp.concatenate([d, HOST]),
    lambda d: cp.stack((d, HOST)),
    lambda d: cp.maximum(d, HOST),
    lambda d: cp.where(d > 0, HOST, 0.0),
    lambda d: cp.add(HOST, d),
    lambda d: cp.matmul(d, HOST.T),
    lambda d: cp.ascontiguousarray(HOST),
    lambda d: cp.zeros_like(HOST),
    lambda d: d.take(np.array([0, 1])),
    lambda d: d.reshape(np.array([3, 2])),
    lambda d: cp.add.at(d, (np.array([0]),), 1.0),
    lambda d: cp.add.at(d, (dev([0], np.int64),), np.ones(3, np.float32)),
    lambda d: cp.random.default_rng(0).uniform(np.zeros(3), 1.0),
    lambda d: cp._special.erf(HOST),
], ids=["concatenate", "stack", "maximum", "where", "add", "matmul", "ascontiguousarray",
        "zeros_like", "method arg", "method shape", "at index", "at value", "rng arg", "erf"])
def test_device_functions_refuse_numpy_arrays(d, call):
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        call(d)


@pytest.mark.parametrize("key", [np.array([0, 1]), np.array([True, False]),
                                 (slice(None), np.array([0, 2])), (np.int64(0), np.array([1]))],
                         ids=["int array", "bool mask", "in tuple", "after scalar"])
def test_index_keys_refuse_numpy_arrays(d, key):
    with pytest.raises(TypeError, match="an index key"):
        d[key]
    with pytest.raises(TypeError, match="an index key"):
        d[key] = 0.0


def test_assigned_values_refuse_numpy_arrays(d):
    for key in (0, slice(None), (1, slice(0, 2)), dev([True, False], np.bool_)):
        with pytest.raises(TypeError, match="an assigned value"):
            d[key] = np.zeros(3, dtype=np.float32)[: d[key].shape[-1]]
    assert d.get().tolist() == [[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]]   # nothing was written


def test_no_host_views_of_device_memory(d):
    with pytest.raises(AttributeError):
        d.__array_interface__
    with pytest.raises(AttributeError):
        d.ctypes
    assert not isinstance(d.data, memoryview)
    assert d.data.ptr == d.__cuda_array_interface__["data"][0]
    assert d.__hash__ is None


# --- host <-> device ------------------------------------------------------------------------------
def test_asarray_and_array_copy_host_data_to_the_device():
    host = np.arange(4, dtype=np.float32)
    a, b, c = cp.asarray(host), cp.array(host), cp.asanyarray(host)
    host[0] = 99.0                               # device memory is separate
    for x in (a, b, c):
        assert isinstance(x, cp.ndarray) and not isinstance(x, np.ndarray)
        assert x.dtype == np.float32 and x.get().tolist() == [0.0, 1.0, 2.0, 3.0]
    lst = cp.asarray([[1, 2], [3, 4]], dtype=cp.float64)
    assert lst.shape == (2, 2) and lst.dtype == np.float64 and int(lst.sum()) == 10
    scalar = cp.asarray(2.5)
    assert scalar.ndim == 0 and float(scalar) == 2.5
    assert cp.asarray([dev(1.0), dev(2.0)]).get().tolist() == [1.0, 2.0]


def test_asarray_of_a_device_array_copies_only_when_it_must(d):
    assert cp.asarray(d) is d
    assert cp.asarray(d, dtype=np.float32) is d
    as64 = cp.asarray(d, dtype=np.float64)
    assert as64 is not d and as64.dtype == np.float64
    assert d.astype(np.float32, copy=False) is d
    assert d.astype(np.float32) is not d
    copied = cp.array(d)
    copied[0, 0] = 42.0
    assert float(d[0, 0]) == 1.0


def test_get_and_set_round_trip(d):
    host = d.get()
    assert isinstance(host, np.ndarray) and host.dtype == np.float32
    np.testing.assert_array_equal(host, [[1, -2, 3], [4, 5, -6]])
    host[0, 0] = 100.0
    assert float(d[0, 0]) == 1.0                 # .get() is a copy
    np.testing.assert_array_equal(cp.asnumpy(d), d.get())
    np.testing.assert_array_equal(cp.asnumpy(np.arange(3)), [0, 1, 2])
    out = np.empty((2, 3), np.float32)
    assert d.get(out=out) is out and out[1, 2] == -6.0
    assert d.T.get().tolist() == [[1.0, 4.0], [-2.0, 5.0], [3.0, -6.0]]
    d.set(np.full((2, 3), 7.0, np.float32))
    assert d.get().tolist() == [[7.0] * 3] * 2
    with pytest.raises(TypeError):
        d.set(np.zeros((2, 3), np.float64))
    with pytest.raises(ValueError):
        d.set(np.zeros((3, 2), np.float32))
    assert d.tolist() == [[7.0] * 3] * 2


def test_reductions_return_0d_device_arrays(d):
    for value, expected in [(d.sum(), 5.0), (d.max(), 5.0), (d.min(), -6.0), (d.mean(), 5 / 6),
                            (d.argmax(), 4), (d.any(), 1), (d.all(), 1),
                            (d.prod(), 720.0), (cp.sum(d), 5.0), (cp.max(d), 5.0),
                            (d.std(), float(np.std(d.get()))), (cp.linalg.norm(d),
                                                                float(np.linalg.norm(d.get())))]:
        assert isinstance(value, cp.ndarray) and value.ndim == 0
        assert value.item() == pytest.approx(expected)
        assert float(value) == pytest.approx(expected)
    assert int(d.argmax()) == 4 and bool(d.any()) is True
    assert complex(dev(2.0)) == 2 + 0j
    assert d.sum(axis=0).get().tolist() == [5.0, 3.0, -3.0]
    assert isinstance(d[0, 0], cp.ndarray)       # CuPy has no NumPy scalars, even when indexing


def test_scalar_conversions_need_one_element(d):
    with pytest.raises(ValueError, match="size 1"):
        d.item()
    with pytest.raises(TypeError):               # NumPy (and so CuPy) raise TypeError here
        float(d)
    with pytest.raises(TypeError):
        int(d)
    with pytest.raises(ValueError, match="ambiguous"):
        bool(d)
    assert float(d[1, 1]) == 5.0 and int(d[1, 1]) == 5


# --- fidelity -------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", BINARY + [operator.matmul], ids=lambda op: op.__name__)
def test_operators_match_numpy(op):
    a = np.array([[1.5, 2.0], [3.0, 4.5]], np.float32)
    b = np.array([[0.5, 2.0], [1.0, 3.0]], np.float32)
    np.testing.assert_array_equal(op(cp.asarray(a), cp.asarray(b)).get(), op(a, b))
    for scalar in (2, 2.5, np.float32(2.5)):
        if op is operator.matmul:
            continue
        left, right = op(cp.asarray(a), scalar), op(scalar, cp.asarray(a))
        assert isinstance(left, cp.ndarray) and isinstance(right, cp.ndarray)
        np.testing.assert_array_equal(left.get(), op(a, scalar))
        np.testing.assert_array_equal(right.get(), op(scalar, a))
        assert left.dtype == op(a, scalar).dtype


def test_unary_and_bitwise_operators():
    a = np.array([-2, 0, 3], np.int64)
    x = cp.asarray(a)
    for got, want in [(-x, -a), (+x, a), (abs(x), abs(a)), (~x, ~a), (x & 1, a & 1),
                      (x | 4, a | 4), (x ^ x, a ^ a), (x << 1, a << 1), (x >> 1, a >> 1),
                      (3 - x, 3 - a), (divmod(x, 2)[1], a % 2), (x ** 2, a ** 2)]:
        assert isinstance(got, cp.ndarray)
        np.testing.assert_array_equal(got.get(), want)
    assert +x is x


def test_inplace_operators_mutate_the_same_buffer(d):
    view = d[1]
    original_id = id(d)
    d += 1.0
    d *= dev([2.0, 2.0, 2.0])
    d -= np.float32(1.0)
    assert id(d) == original_id
    assert d.get().tolist() == [[3.0, -3.0, 7.0], [9.0, 11.0, -11.0]]
    assert view.get().tolist() == [9.0, 11.0, -11.0]       # the view saw it
    m = dev([[1.0, 2.0], [3.0, 4.0]])
    m @= dev([[0.0, 1.0], [1.0, 0.0]])
    assert m.get().tolist() == [[2.0, 1.0], [4.0, 3.0]]
    flags = dev([1, 2, 3], np.int64)
    flags &= 1
    assert flags.get().tolist() == [1, 0, 1]


def test_basic_slices_are_views_that_write_through(d):
    row = d[0]
    row[1] = 20.0
    d[1, :2] = dev([40.0, 50.0])
    corner = d[1, 2]                             # a 0-d view, as in CuPy
    corner[...] = 60.0
    d.T[0, 0] = 10.0
    flat = d.reshape(-1)
    flat[2] = 30.0
    assert d.get().tolist() == [[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]]
    d[d > 35.0] = 0.0                            # a device bool mask
    d[dev([0], np.int64), dev([1], np.int64)] = -1.0
    d[[0], 0] = 7
    assert d.get().tolist() == [[7.0, -1.0, 30.0], [0.0, 0.0, 0.0]]


def test_indexing_with_every_supported_key(d):
    assert d[0, 1].get() == -2.0
    assert d[-1].get().tolist() == [4.0, 5.0, -6.0]
    assert d[:, ::2].get().tolist() == [[1.0, 3.0], [4.0, -6.0]]
    assert d[None].shape == (1, 2, 3) and d[..., None].shape == (2, 3, 1)
    assert d[[1, 0]].get()[0].tolist() == [4.0, 5.0, -6.0]
    assert d[[True, False]].shape == (1, 3)
    assert d[dev([1, 1], np.int64)].shape == (2, 3)
    assert d[d < 0].get().tolist() == [-2.0, -6.0]
    assert d[dev(1, np.int64), np.int64(2)].get() == -6.0
    assert d[(slice(None), dev([2, 0], np.int64))].get().tolist() == [[3.0, 1.0], [-6.0, 4.0]]


def test_iteration_length_and_repr(d):
    rows = list(d)
    assert len(d) == 2 and len(rows) == 2 and all(isinstance(r, cp.ndarray) for r in rows)
    items = list(dev([1.0, 2.0]))
    assert [x.ndim for x in items] == [0, 0] and [float(x) for x in items] == [1.0, 2.0]
    with pytest.raises(TypeError):
        len(dev(1.0))
    with pytest.raises(TypeError):
        iter(dev(1.0))
    text = repr(dev([1.0, 2.0]))
    assert text.startswith("array([1., 2.], dtype=float32") and "fake" in text
    assert str(dev([1.0, 2.0])) == "[1. 2.]" and f"{dev(0.5):.2f}" == "0.50"
    assert 5.0 in d and 9.0 not in d


def test_attributes(d):
    assert d.shape == (2, 3) and d.dtype == np.float32 and d.ndim == 2 and d.size == 6
    assert d.itemsize == 4 and d.nbytes == 24 and d.strides == (12, 4)
    assert d.T.shape == (3, 2) and d.T.strides == (4, 12)
    assert d.flags.c_contiguous and not d.flags.f_contiguous and d.flags.writeable
    assert d.T.flags["F_CONTIGUOUS"] and not d.T.flags.c_contiguous
    assert d.device.id == 0 and d.device == cp.cuda.Device(0)
    assert isinstance(d, cp.ndarray) and isinstance(cp.zeros(1), cp.ndarray)
    e = cp.ndarray((2, 2), dtype=cp.float32)     # CuPy's (shape, dtype) constructor
    assert e.shape == (2, 2) and e.dtype == np.float32


def test_cuda_array_interface(d):
    cai = d.__cuda_array_interface__
    assert cai["version"] == 3 and cai["shape"] == (2, 3) and cai["typestr"] == "<f4"
    assert cai["strides"] is None and cai["data"][1] is False and cai["data"][0] != 0
    assert cai["stream"] is None
    assert d[:, 1:].__cuda_array_interface__["data"][0] == cai["data"][0] + 4
    assert d.T.__cuda_array_interface__["strides"] == (4, 12)
    assert dev([1, 2], np.int64).__cuda_array_interface__["typestr"] == "<i8"
    assert hasattr(d, "__cuda_array_interface__") and not hasattr(np.ones(1),
                                                                  "__cuda_array_interface__")


def test_methods_delegate_to_numpy_and_return_device_arrays(d):
    h = d.get()
    checks = [(d.reshape(3, 2), h.reshape(3, 2)), (d.transpose(1, 0), h.transpose(1, 0)),
              (d.swapaxes(0, 1), h.swapaxes(0, 1)), (d.copy(), h), (d.ravel(), h.ravel()),
              (d.flatten(), h.flatten()), (d[None].squeeze(0), h), (d.cumsum(1), h.cumsum(1)),
              (d.clip(-1, 1), h.clip(-1, 1)), (d.var(0), h.var(0)), (d.take([0, 2], 1),
                                                                   h.take([0, 2], 1)),
              (d.repeat(2, 0), h.repeat(2, 0)), (d.argsort(1), h.argsort(1)),
              (d.dot(d.T), h.dot(h.T)), (d.round(), h.round()), (d.conj(), h),
              (d.view(np.int32), h.view(np.int32)), (d.astype(np.int64), h.astype(np.int64)),
              (d.take(dev([1], np.int64), 0), h[[1]])]
    for got, want in checks:
        assert isinstance(got, cp.ndarray)
        np.testing.assert_array_equal(got.get(), want)
        assert got.dtype == want.dtype
    rows, cols = d.nonzero()
    assert isinstance(rows, cp.ndarray) and rows.get().tolist() == [0, 0, 0, 1, 1, 1]
    d.sort(axis=1)                               # in place, returns None
    assert d.get().tolist() == [[-2.0, 1.0, 3.0], [-6.0, 4.0, 5.0]]
    d.fill(0.5)
    assert float(d.sum()) == 3.0


def test_module_functions_wrap_results():
    a = cp.arange(6, dtype=cp.float32).reshape(2, 3)
    assert isinstance(a, cp.ndarray) and a.get().tolist() == [[0, 1, 2], [3, 4, 5]]
    checks = [(cp.zeros((2, 2)), np.zeros((2, 2))),
              (cp.ones(3, dtype=cp.int32), np.ones(3, np.int32)),
              (cp.empty_like(a).shape, (2, 3)),
              (cp.tril(cp.ones((3, 3))), np.tril(np.ones((3, 3)))),
              (cp.concatenate([a, a]), np.concatenate([a.get()] * 2)),
              (cp.stack([a, a], axis=0).shape, (2, 2, 3)),
              (cp.where(a > 2, a, -1.0), np.where(a.get() > 2, a.get(), -1.0)),
              (cp.broadcast_to(cp.asarray(3.0), (2, 2)), np.full((2, 2), 3.0)),
              (cp.maximum(a, 2.0), np.maximum(a.get(), 2.0)), (cp.exp(a), np.exp(a.get())),
              (cp.isfinite(cp.asarray([1.0, cp.inf, cp.nan])), [True, False, False]),
              (cp.ascontiguousarray(a.T), a.get().T), (cp.expand_dims(a, 0).shape, (1, 2, 3))]
    for got, want in checks:
        if isinstance(want, tuple):
            assert got == want
            continue
        assert isinstance(got, cp.ndarray)
        np.testing.assert_array_equal(got.get(), want)
    parts = cp.split(a, 3, axis=1)
    assert isinstance(parts, list) and all(isinstance(p, cp.ndarray) for p in parts)
    values, counts = cp.unique(cp.asarray([1, 1, 2]), return_counts=True)
    assert values.get().tolist() == [1, 2] and counts.get().tolist() == [2, 1]
    out = cp.empty((2, 3), dtype=cp.float32)
    assert cp.multiply(a, 2.0, out=out) is out and float(out.sum()) == 30.0
    assert cp.finfo(cp.float32).eps == np.finfo(np.float32).eps
    assert cp.shape(a) == (2, 3) and cp.dtype("float32") == np.float32


def test_types_and_constants_pass_through():
    assert cp.float32 is np.float32 and cp.int64 is np.int64 and cp.bool_ is np.bool_
    assert cp.dtype is np.dtype and cp.finfo is np.finfo
    assert cp.inf == np.inf and cp.newaxis is None and cp.pi == math.pi and cp.e == math.e
    assert cp.FAKE is True and cp.__version__ == "13.0.0+fake"
    assert cp.get_array_module(dev(1.0)) is cp and cp.get_array_module(np.ones(1)) is np
    assert cp.get_array_module(1.0, dev(1.0)) is cp and cp.get_array_module() is np
    assert isinstance(cp.add, cp.ufunc) and cp.add.nin == 2 and cp.exp.__name__ == "exp"
    with pytest.raises(AttributeError):
        cp.no_such_function


def test_numpy_scalars_on_the_left_are_allowed_as_in_cupy(d):
    assert (np.float32(2) * d).get().tolist() == (2 * d).get().tolist()
    assert isinstance(np.float64(1) - d, cp.ndarray)
    assert (np.int64(0) < d).get().tolist() == [[True, False, True], [True, True, False]]


def test_add_at_accumulates_repeated_indices():
    x = cp.zeros(4, dtype=cp.float32)
    cp.add.at(x, dev([0, 0, 2, 0], np.int64), 1.0)
    assert x.get().tolist() == [3.0, 0.0, 1.0, 0.0]
    table = cp.zeros((3, 2), dtype=cp.float32)
    cp.add.at(table, dev([2, 2, 0], np.int64), dev([[1, 1], [2, 2], [5, 5]]))
    assert table.get().tolist() == [[5.0, 5.0], [0.0, 0.0], [3.0, 3.0]]
    cp.add.at(table, (dev([1, 1], np.int64), dev([0, 1], np.int64)), dev([10, 20]))
    cp.add.at(table, (slice(None), 0), 100.0)
    assert table.get().tolist() == [[105.0, 5.0], [110.0, 20.0], [103.0, 3.0]]
    cp.maximum.at(x, dev([1, 1], np.int64), dev([4.0, 2.0]))
    assert x.get().tolist() == [3.0, 4.0, 1.0, 0.0]
    cp._cupyx.scatter_add(x, dev([3, 3], np.int64), dev([1.0, 1.0]))
    assert x.get().tolist() == [3.0, 4.0, 1.0, 2.0]
    with pytest.raises(TypeError, match="needs a cupy.ndarray"):
        cp.add.at(np.zeros(2), [0], 1.0)


def test_ufunc_methods(d):
    assert cp.add.reduce(d, axis=1).get().tolist() == [2.0, 3.0]
    assert cp.add.accumulate(dev([1.0, 2.0, 3.0])).get().tolist() == [1.0, 3.0, 6.0]
    assert cp.multiply.outer(dev([1.0, 2.0]), dev([3.0])).get().tolist() == [[3.0], [6.0]]
    assert isinstance(cp.add.reduce(dev([1.0, 2.0])), cp.ndarray)


def test_generators_are_seeded_and_draw_device_arrays():
    a, b = cp.random.default_rng(123), cp.random.default_rng(123)
    x = a.standard_normal((3, 4), dtype=cp.float32)
    assert isinstance(x, cp.ndarray) and x.shape == (3, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x.get(), b.standard_normal((3, 4), dtype=cp.float32).get())
    assert not np.array_equal(x.get(), a.standard_normal((3, 4), dtype=cp.float32).get())
    for draw in (a.random((2,)), a.uniform(-1, 1, 2), a.integers(0, 10, size=5),
                 a.random(), a.integers(0, 3)):
        assert isinstance(draw, cp.ndarray)
    for missing in ("normal", "choice", "permutation"):     # not in CuPy's Generator
        with pytest.raises(AttributeError, match=missing):
            getattr(a, missing)
    assert a.random().ndim == 0 and 0.0 <= float(a.random()) < 1.0
    ints = a.integers(0, 10, size=100, dtype=cp.int32)
    assert ints.dtype == np.int32 and 0 <= int(ints.min()) and int(ints.max()) < 10
    assert a.random(3, dtype=cp.float32).dtype == np.float32


def test_global_random_functions_follow_seed():
    cp.random.seed(7)
    first = [cp.random.randn(2, 3), cp.random.rand(4), cp.random.randint(0, 5, size=3),
             cp.random.normal(size=2), cp.random.uniform(size=2), cp.random.random((2,)),
             cp.random.standard_normal(2)]
    cp.random.seed(7)
    second = [cp.random.randn(2, 3), cp.random.rand(4), cp.random.randint(0, 5, size=3),
              cp.random.normal(size=2), cp.random.uniform(size=2), cp.random.random((2,)),
              cp.random.standard_normal(2)]
    for x, y in zip(first, second):
        assert isinstance(x, cp.ndarray)
        np.testing.assert_array_equal(x.get(), y.get())
    assert cp.random.randn(2, dtype=cp.float32).dtype == np.float32
    shuffled = cp.arange(10)
    cp.random.shuffle(shuffled)                  # in place on the device array
    assert sorted(shuffled.tolist()) == list(range(10))


def test_cuda_runtime_device_stream_and_memory():
    rt = cp.cuda.runtime
    assert rt.getDeviceCount() == 1
    assert rt.runtimeGetVersion() == 12040 and rt.driverGetVersion() == 12040
    props = rt.getDeviceProperties(0)
    assert props["name"] == b"Fake CUDA device (NumPy)" and props["totalGlobalMem"] > 0
    assert cp.cuda.is_available() is True and cp.is_available() is True
    with cp.cuda.Device(0) as device:
        assert device.id == 0 and device.compute_capability == "90"
        free, total = device.mem_info
        assert 0 < free <= total
        device.synchronize()
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError):
        cp.cuda.Device(1)
    cp.cuda.Stream.null.synchronize()
    assert cp.cuda.get_current_stream() is cp.cuda.Stream.null
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    end.record()
    end.synchronize()
    assert cp.cuda.get_elapsed_time(start, end) >= 0.0
    pool = cp.get_default_memory_pool()
    assert pool.used_bytes() == 0 and pool.total_bytes() == 0
    pool.free_all_blocks()


def test_erf_matches_math_and_keeps_dtype():
    special = cp._special
    xs = [-2.0, -0.5, 0.0, 0.3, 1.7]
    for dtype in (np.float32, np.float64):
        y = special.erf(dev(xs, dtype))
        assert isinstance(y, cp.ndarray) and y.dtype == dtype
        np.testing.assert_allclose(y.get(), [math.erf(v) for v in xs], rtol=1e-6)
    assert special.erf(dev([0, 1], np.int64)).dtype == np.float64
    assert float(special.erf(0.5)) == pytest.approx(math.erf(0.5))


def test_pickle_and_copies_make_new_device_arrays(d):
    for clone in (pickle.loads(pickle.dumps(d)), copy.copy(d), copy.deepcopy(d)):
        assert isinstance(clone, cp.ndarray) and clone is not d
        np.testing.assert_array_equal(clone.get(), d.get())
        clone[0, 0] = 0.0
        assert float(d[0, 0]) == 1.0


def test_install_and_uninstall_restore_sys_modules():
    names = cp._NAMES
    before = {name: sys.modules.get(name) for name in names}
    saved = dict(cp._saved)
    try:
        cp._saved.clear()
        for name in names:
            sys.modules.pop(name, None)
        placeholder = types.ModuleType("cupy")   # e.g. a real CuPy that was imported earlier
        sys.modules["cupy"] = placeholder

        assert cp.install() is cp
        import cupy
        import cupyx.scipy.special
        from cupy.cuda import runtime
        assert cupy is cp and cupy.FAKE and runtime.getDeviceCount() == 1
        assert float(cupyx.scipy.special.erf(cupy.asarray(0.0))) == 0.0
        assert sys.modules["cupy.random"] is cp.random
        assert cp.install() is cp                # idempotent: still remembers the placeholder

        cp.uninstall()
        assert sys.modules["cupy"] is placeholder
        for name in names[1:]:
            assert name not in sys.modules
    finally:
        for name, module in before.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        cp._saved.clear()
        cp._saved.update(saved)
