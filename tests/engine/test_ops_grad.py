"""Every primitive op, gradient-checked in float64 on hypothesis-drawn shapes and values,
and its forward compared with the plain NumPy expression."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
from tinygradlm.gradcheck import gradcheck

from strategies import T, arrays, broadcastable_pair, distinct_arrays, shapes

# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")

# name -> (tensor function, numpy reference, value range / kink to avoid)
UNARY = {
    "neg": (lambda x: -x, lambda a: -a, dict()),
    "exp": (lambda x: x.exp(), np.exp, dict()),
    "log": (lambda x: x.log(), np.log, dict(low=0.2, high=3.0)),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, dict(low=0.2, high=3.0)),
    "tanh": (lambda x: x.tanh(), np.tanh, dict()),
    "sigmoid": (lambda x: x.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), dict()),
    "relu": (lambda x: x.relu(), lambda a: np.maximum(a, 0), dict(avoid=(0.0,))),
    "abs": (lambda x: x.abs(), np.abs, dict(avoid=(0.0,))),
    "clip": (lambda x: x.clip(-1.0, 1.0), lambda a: np.clip(a, -1, 1),
             dict(low=-3, high=3, avoid=(-1.0, 1.0))),
    "erf": (lambda x: x.erf(), np.vectorize(math.erf), dict()),
    "pow_scalar": (lambda x: x ** 3, lambda a: a ** 3, dict()),
    "pow_fraction": (lambda x: x ** 1.5, lambda a: a ** 1.5, dict(low=0.2, high=3.0)),
    "rpow": (lambda x: 2.0 ** x, lambda a: 2.0 ** a, dict()),
    "scalar_arith": (lambda x: (3 - x) * 2 / 4 + 1, lambda a: (3 - a) * 2 / 4 + 1, dict()),
    "rdiv": (lambda x: 1.0 / x, lambda a: 1.0 / a, dict(low=0.5, high=3.0)),
    "cast_roundtrip": (lambda x: x.float().double() * 1.0, lambda a: a.astype(np.float32)
                       .astype(np.float64), dict()),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary(name, device, data):
    fn, ref, domain = UNARY[name]
    a = data.draw(arrays(data.draw(shapes()), **domain))
    x = T(a, device=device)
    np.testing.assert_allclose(fn(x).numpy(), ref(a), rtol=1e-6 if name != "cast_roundtrip"
                               else 1e-12, atol=1e-7)
    if name != "cast_roundtrip":        # float32 rounding is not differentiable
        assert gradcheck(fn, x)


BINARY = {
    "add": (lambda x, y: x + y, np.add, dict(), dict()),
    "sub": (lambda x, y: x - y, np.subtract, dict(), dict()),
    "mul": (lambda x, y: x * y, np.multiply, dict(), dict()),
    "div": (lambda x, y: x / y, np.divide, dict(), dict(low=0.5, high=2.0)),
    "pow": (lambda x, y: x ** y, np.power, dict(low=0.3, high=2.0), dict(low=-2.0, high=2.0)),
    "where": (lambda x, y: tg.where(x > 0, x, y), lambda a, b: np.where(a > 0, a, b),
              dict(avoid=(0.0,)), dict()),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_broadcasting(name, device, data):
    fn, ref, dom_x, dom_y = BINARY[name]
    sx, sy = data.draw(broadcastable_pair())
    a, b = data.draw(arrays(sx, **dom_x)), data.draw(arrays(sy, **dom_y))
    x, y = T(a, device=device), T(b, device=device)
    np.testing.assert_allclose(fn(x, y).numpy(), ref(a, b), rtol=1e-6, atol=1e-12)
    assert gradcheck(fn, x, y)


@st.composite
def matmul_shapes(draw):
    """(..., n, k) @ (..., k, m) with broadcast batch axes, or 1-D operands."""
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    batch_a, batch_b = draw(broadcastable_pair(max_dims=2, max_side=3))
    kind = draw(st.sampled_from(["matrix", "vec_left", "vec_right", "vec_both"]))
    sa = (k,) if kind in ("vec_left", "vec_both") else batch_a + (n, k)
    sb = (k,) if kind in ("vec_right", "vec_both") else batch_b + (k, m)
    return sa, sb


@given(data=st.data())
def test_matmul(device, data):
    sa, sb = data.draw(matmul_shapes())
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    x, y = T(a, device=device), T(b, device=device)
    np.testing.assert_allclose((x @ y).numpy(), a @ b, rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda p, q: p @ q, x, y)


def test_matmul_broadcast_batch_example():
    """The issue's example: (2, 1, 4, 5) @ (3, 5, 2) -> (2, 3, 4, 2)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 1, 4, 5)), rng.standard_normal((3, 5, 2))
    x, y = T(a), T(b)
    out = x @ y
    assert out.shape == (2, 3, 4, 2)
    out.sum().backward()
    g = np.ones((2, 3, 4, 2))
    np.testing.assert_allclose(x.grad.numpy(), (g @ np.swapaxes(b, -1, -2)).sum(1, keepdims=True))
    np.testing.assert_allclose(y.grad.numpy(), (np.swapaxes(a, -1, -2) @ g).sum(0))
    assert gradcheck(lambda p, q: p @ q, x, y)


@st.composite
def shape_and_dims(draw, min_dims=0):
    """A shape and a ``dim`` argument: None, an int (maybe negative) or a tuple."""
    shape = draw(shapes(min_dims=min_dims))
    nd = len(shape)
    if nd == 0:
        return shape, None
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return shape, None
    if kind == "int":
        return shape, draw(st.integers(-nd, nd - 1))
    dims = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
    return shape, tuple(dims)


def _np_dims(dim):
    return dim if dim is None or isinstance(dim, int) else tuple(dim)


@pytest.mark.parametrize("reduction", ["sum", "mean", "amax", "var"])
@given(data=st.data(), keepdim=st.booleans())
def test_reductions(reduction, device, data, keepdim):
    shape, dim = data.draw(shape_and_dims())
    a = data.draw(distinct_arrays(shape) if reduction == "amax" else arrays(shape))
    x = T(a, device=device)
    fn = lambda t: getattr(t, reduction)(dim=dim, keepdim=keepdim)  # noqa: E731
    axis = _np_dims(dim)
    if reduction == "var":
        n = a.size if dim is None else int(np.prod([shape[d] for d in np.atleast_1d(dim)]))
        if n < 2:
            return      # the unbiased variance of one element is undefined (0/0)
        expected = np.var(a, axis=axis, keepdims=keepdim, ddof=1)
    else:
        expected = getattr(np, {"amax": "max"}.get(reduction, reduction))(a, axis=axis,
                                                                            keepdims=keepdim)
    np.testing.assert_allclose(fn(x).numpy(), expected, rtol=1e-10, atol=1e-12)
    assert gradcheck(fn, x)


def test_max_with_dim_returns_values_and_indices():
    x = T([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    values, indices = x.max(dim=1)
    np.testing.assert_array_equal(values.numpy(), [5.0, 7.0])
    np.testing.assert_array_equal(indices.numpy(), [1, 0])
    values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])


def test_max_splits_gradient_on_ties():
    x = T([2.0, 2.0, 1.0])
    x.amax().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.5, 0.5, 0.0])


@given(data=st.data())
def test_reshape_view_flatten_squeeze(device, data):
    shape = data.draw(shapes(min_dims=1))
    a = data.draw(arrays(shape))
    x = T(a, device=device)
    target = data.draw(st.permutations(list(shape))).copy()
    assert gradcheck(lambda t: t.reshape(target) * 2, x)
    assert gradcheck(lambda t: t.view(-1), x)
    assert gradcheck(lambda t: t.flatten(), x)
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    assert x.unsqueeze(dim).shape == np.expand_dims(a, dim).shape
    assert gradcheck(lambda t: t.unsqueeze(dim).squeeze(), x)


@given(data=st.data())
def test_permute_transpose(device, data):
    shape = data.draw(shapes(min_dims=1))
    a = data.draw(arrays(shape))
    x = T(a, device=device)
    perm = data.draw(st.permutations(range(len(shape))))
    np.testing.assert_array_equal(x.permute(*perm).numpy(), a.transpose(perm))
    assert gradcheck(lambda t: t.permute(perm), x)
    i, j = data.draw(st.integers(0, len(shape) - 1)), data.draw(st.integers(0, len(shape) - 1))
    np.testing.assert_array_equal(x.transpose(i, j).numpy(), np.swapaxes(a, i, j))
    assert gradcheck(lambda t: t.transpose(i, j), x)
    np.testing.assert_array_equal(x.T.numpy(), a.T)
    assert gradcheck(lambda t: t.T, x)


@given(data=st.data())
def test_expand(device, data):
    small, big = data.draw(hnp_broadcast_to())
    a = data.draw(arrays(small))
    x = T(a, device=device)
    np.testing.assert_array_equal(x.expand(big).numpy(), np.broadcast_to(a, big))
    assert gradcheck(lambda t: t.expand(*big), x)


@st.composite
def hnp_broadcast_to(draw):
    """A shape and a larger shape it broadcasts to."""
    big = draw(shapes(min_dims=1))
    nd = draw(st.integers(0, len(big)))
    small = tuple(1 if draw(st.booleans()) else n for n in big[len(big) - nd:])
    return small, big


@st.composite
def basic_index(draw, shape):
    """A tuple of ints, slices (with steps, negative too), None and at most one Ellipsis."""
    parts, used_ellipsis = [], False
    for n in shape:
        kind = draw(st.sampled_from(["int", "slice", "none", "all"] +
                                    ([] if used_ellipsis else ["ellipsis"])))
        if kind == "int":
            parts.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            start = draw(st.one_of(st.none(), st.integers(-n, n)))
            stop = draw(st.one_of(st.none(), st.integers(-n, n)))
            step = draw(st.sampled_from([None, 1, 2, -1, -2]))
            parts.append(slice(start, stop, step))
        elif kind == "none":
            parts.extend([None, slice(None)])
        elif kind == "ellipsis":
            parts.append(Ellipsis)
            used_ellipsis = True
            break
        else:
            parts.append(slice(None))
    return tuple(parts)


@given(data=st.data())
def test_getitem_basic(device, data):
    shape = data.draw(shapes(min_dims=1))
    a = data.draw(arrays(shape))
    index = data.draw(basic_index(shape))
    x = T(a, device=device)
    np.testing.assert_array_equal(x[index].numpy(), a[index])
    assert gradcheck(lambda t: t[index], x)


@given(data=st.data())
def test_getitem_integer_arrays_accumulate(device, data):
    shape = data.draw(shapes(min_dims=1))
    a = data.draw(arrays(shape))
    ids = np.array(data.draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1,
                                      max_size=6)))
    x = T(a, device=device)
    np.testing.assert_array_equal(x[ids].numpy(), a[ids])
    assert gradcheck(lambda t: t[ids], x)
    x.grad = None
    x[tg.Tensor(ids)].sum().backward()      # a Tensor of ids works too
    counts = np.bincount(ids % shape[0], minlength=shape[0]).reshape((-1,) + (1,) * (a.ndim - 1))
    np.testing.assert_array_equal(x.grad.numpy(), np.broadcast_to(counts, shape))


def test_getitem_boolean_mask_and_pairs():
    a = np.arange(12.0).reshape(3, 4)
    x = T(a)
    mask = a % 3 == 0
    np.testing.assert_array_equal(x[mask].numpy(), a[mask])
    assert gradcheck(lambda t: t[mask] * 2, x)
    rows, cols = np.array([0, 2, 0]), np.array([1, 3, 1])
    assert gradcheck(lambda t: t[rows, cols], x)
    assert gradcheck(lambda t: t[..., np.array([3, 3])], x)


@given(data=st.data())
def test_cat_stack_split_chunk(device, data):
    shape = data.draw(shapes(min_dims=1))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    arrs = []
    for s in sizes:
        sh = list(shape)
        sh[dim] = s
        arrs.append(data.draw(arrays(tuple(sh))))
    xs = [T(a, device=device) for a in arrs]
    np.testing.assert_array_equal(tg.cat(xs, dim).numpy(), np.concatenate(arrs, dim))
    assert gradcheck(lambda *ts: tg.cat(ts, dim), *xs)
    same = [T(data.draw(arrays(shape)), device=device) for _ in range(len(sizes))]
    np.testing.assert_array_equal(tg.stack(same, dim).numpy(),
                                  np.stack([t.numpy() for t in same], dim))
    assert gradcheck(lambda *ts: tg.stack(ts, dim), *same)
    whole = tg.cat(xs, dim)
    pieces = whole.split(sizes, dim)
    for p, a in zip(pieces, arrs):
        np.testing.assert_array_equal(p.numpy(), a)
    k = data.draw(st.integers(1, 4))
    assert gradcheck(lambda t: tg.cat([c * (i + 1) for i, c in enumerate(t.chunk(k, dim))], dim),
                     xs[0])
    assert gradcheck(lambda t: t.split(1, dim)[-1], xs[0])


@given(data=st.data(), diagonal=st.integers(-2, 2))
def test_masked_fill_tril_triu(device, data, diagonal):
    shape = data.draw(shapes(min_dims=2))
    a = data.draw(arrays(shape))
    x = T(a, device=device)
    mask = data.draw(arrays(shape[-1:])) > 0
    np.testing.assert_array_equal(x.masked_fill(tg.Tensor(mask, device=device), -5.0).numpy(),
                                  np.where(mask, -5.0, a))
    assert gradcheck(lambda t: t.masked_fill(tg.Tensor(mask, device=device), 0.0), x)
    np.testing.assert_array_equal(x.tril(diagonal).numpy(), np.tril(a, diagonal))
    np.testing.assert_array_equal(tg.triu(x, diagonal).numpy(), np.triu(a, diagonal))
    assert gradcheck(lambda t: t.tril(diagonal) + t.triu(diagonal + 1) * 3, x)


def test_to_dtype_and_device_are_differentiable():
    x = T([1.0, 2.0])
    y = x.to(tg.float32).to("cpu").double() * 3
    y.sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
