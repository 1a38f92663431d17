"""PyTorch's reductions, scans, sorting and indexing ops (issue 13): each gradient-checked
in float64 on hypothesis-drawn shapes and values, and compared with PyTorch -- value and
gradient -- when torch is installed."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
from tinygradlm.gradcheck import gradcheck

from strategies import T, arrays, compare_with_torch, distinct_arrays, shapes

pytestmark = pytest.mark.usefixtures("device")


def index_for(shape, dim, n, seed=0, size=None):
    """Random indices in [0, n) of ``shape`` (with ``size`` along ``dim`` if given)."""
    shape = list(shape)
    if size is not None:
        shape[dim] = size
    return np.random.default_rng(seed).integers(0, n, shape)


def idx(a, device=None):
    return tg.tensor(a, device=device or tg.get_default_device())


# name -> (f(x) over a tensor of at least one dim, flag): True for values with no ties
# (sorting and running maxima are not differentiable where two values are equal); 2 for no
# ties and at least two values along every dim (a standard deviation of one value is 0, where
# its square root has no gradient).
ONE_INPUT = {
    "prod": (lambda x: x.prod(-1), False),
    "prod_all": (lambda x: x.prod(), False),
    "logsumexp": (lambda x: x.logsumexp(-1), False),
    "logsumexp_dims": (lambda x: tg.logsumexp(x, (0, -1), keepdim=True), False),
    "std": (lambda x: x.std(0), 2),
    "var_mean": (lambda x: tg.cat([v.flatten() for v in tg.var_mean(x, -1, correction=0)]),
                 False),
    "std_mean": (lambda x: tg.std_mean(x, correction=0)[0], 2),
    "cumsum": (lambda x: x.cumsum(0), False),
    "cumprod": (lambda x: x.cumprod(-1), False),
    "logcumsumexp": (lambda x: x.logcumsumexp(-1), False),
    "cummax": (lambda x: x.cummax(-1).values, True),
    "cummin": (lambda x: x.cummin(0).values, True),
    "sort": (lambda x: x.sort(-1, descending=True).values, True),
    "topk": (lambda x: x.topk(1, dim=0).values, True),
    "gather": (lambda x: x.gather(-1, idx(index_for(x.shape, -1, x.shape[-1]))), False),
    "take_along_dim": (lambda x: x.take_along_dim(idx(index_for(x.shape, 0, x.shape[0])), 0),
                       False),
    "index_select": (lambda x: x.index_select(0, idx([x.shape[0] - 1, 0, 0])), False),
    "masked_select": (lambda x: x.masked_select(
        idx(np.random.default_rng(0).random(x.shape) > 0.4)), False),
    "diagonal": (lambda x: x.diagonal(-1, 0, -1) if x.ndim > 1 else x, False),
    "diag": (lambda x: x.flatten().diag(1).diag(1), False),
    "amax_ties": (lambda x: x.amax(-1), True),
}


@pytest.mark.parametrize("name", sorted(ONE_INPUT))
@given(data=st.data())
def test_one_input_gradcheck(name, device, data):
    fn, distinct = ONE_INPUT[name]
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=2 if distinct == 2 else 1))
    a = data.draw(distinct_arrays(shape) if distinct else arrays(shape))
    assert gradcheck(fn, T(a, device=device))


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@given(data=st.data())
def test_scatter_reduce_gradcheck(reduce, include_self, device, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    size = data.draw(st.integers(1, 4))
    index = idx(index_for(shape, dim, shape[dim], seed=data.draw(st.integers(0, 99)),
                          size=size))
    src_shape = list(shape)
    src_shape[dim] = size
    n, m = int(np.prod(shape)), int(np.prod(src_shape))
    both = data.draw(distinct_arrays((n + m,)))        # no ties between x and src either
    x = T(both[:n].reshape(shape), device=device)
    src = T(both[n:].reshape(src_shape), device=device)
    assert gradcheck(lambda a, b: a.scatter_reduce(dim, index, b, reduce,
                                                   include_self=include_self), x, src)


@given(data=st.data())
def test_scatter_and_scatter_add_gradcheck(device, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    x, src = T(data.draw(arrays(shape)), device=device), T(data.draw(arrays(shape)), device=device)
    # a permutation along the last dim: scatter writes every position exactly once
    perm = np.argsort(np.random.default_rng(data.draw(st.integers(0, 99))).random(shape), -1)
    assert gradcheck(lambda a, b: a.scatter(-1, idx(perm[..., :1]), b), x, src)
    assert gradcheck(lambda a, b: a.scatter_add(0, idx(index_for(shape, 0, shape[0])), b),
                     x, src)


def test_prod_and_cumprod_with_zeros_as_pytorch():
    a = np.array([[2.0, 0.0, 3.0, -1.5], [0.0, 0.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    compare_with_torch(lambda x: x.prod(1), lambda x: x.prod(1), a)
    compare_with_torch(lambda x: x.prod(), lambda x: x.prod(), a)
    compare_with_torch(lambda x: x.cumprod(1), lambda x: x.cumprod(1), a)
    compare_with_torch(lambda x: tg.prod(x, 0, keepdim=True), lambda x: x.prod(0, keepdim=True),
                       a)


def test_reductions_and_scans_against_pytorch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(4).standard_normal((3, 4, 2))
    a[0, 1, 0] = 1e3                                      # logsumexp/logcumsumexp: no overflow
    cases = [
        (lambda x: x.logsumexp(1), lambda x: x.logsumexp(1)),
        (lambda x: x.logcumsumexp(1), lambda x: x.logcumsumexp(1)),
        (lambda x: x.cumsum(-1), lambda x: x.cumsum(-1)),
        (lambda x: x.cummax(1).values, lambda x: x.cummax(1).values),
        (lambda x: x.cummin(0).values, lambda x: x.cummin(0).values),
        (lambda x: x.sort(1).values, lambda x: x.sort(1).values),
        (lambda x: x.topk(2, 1).values, lambda x: x.topk(2, 1).values),
        (lambda x: x.topk(2, 1, largest=False).values,
         lambda x: x.topk(2, 1, largest=False).values),
        (lambda x: tg.std_mean(x, 1)[0], lambda x: torch.std_mean(x, 1)[0]),
        (lambda x: tg.var_mean(x, (0, 2), correction=0)[0],
         lambda x: torch.var_mean(x, (0, 2), correction=0)[0]),
    ]
    for ours, theirs in cases:
        compare_with_torch(ours, theirs, a)
    t, g = torch.tensor(a), tg.tensor(a)
    for name in ("cummax", "cummin", "sort", "argsort"):
        mine, ref = getattr(g, name)(1), getattr(t, name)(1)
        mine = mine if name == "argsort" else mine.indices
        ref = ref if name == "argsort" else ref.indices
        assert mine.tolist() == ref.tolist(), name
    assert g.argmin().item() == t.argmin().item()
    assert g.argmin(1, keepdim=True).tolist() == t.argmin(1, keepdim=True).tolist()
    assert (g > 0).all(1).tolist() == (t > 0).all(1).tolist()
    assert (g > 0).any((0, 2)).tolist() == (t > 0).any(0).any(1).tolist()
    assert tg.tensor([1, 2, 3]).prod().dtype == tg.int64           # ints multiply as int64


def test_ties_follow_pytorch():
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [2.0, 2.0, 1.0, 1.0, 0.0]])
    t, g = torch.tensor(a), tg.tensor(a)
    # cummax/cummin report the latest position of a tie; sort is stable (descending too)
    assert g.cummax(1).indices.tolist() == t.cummax(1).indices.tolist()
    assert g.cummin(1).indices.tolist() == t.cummin(1).indices.tolist()
    for descending in (False, True):
        assert (g.sort(1, descending=descending).indices.tolist()
                == t.sort(dim=1, descending=descending, stable=True).indices.tolist())


def test_indexing_against_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    i2 = rng.integers(0, 4, (3, 2))
    i0 = rng.integers(0, 3, (2, 4))
    sel = np.array([2, 0, 2])
    mask = rng.random((3, 4)) > 0.5
    ti, tg_ = torch.tensor, tg.tensor
    cases = [
        (lambda x: x.gather(1, tg_(i2)), lambda x: x.gather(1, ti(i2))),
        (lambda x: x.gather(0, tg_(i0)), lambda x: x.gather(0, ti(i0))),
        (lambda x: x.take_along_dim(tg_(i2), 1), lambda x: x.take_along_dim(ti(i2), 1)),
        (lambda x: x.take_along_dim(tg_(i2[:1]), 1), lambda x: x.take_along_dim(ti(i2[:1]), 1)),
        (lambda x: x.take_along_dim(tg_([5, 0])), lambda x: x.take_along_dim(ti([5, 0]))),
        (lambda x: x.index_select(1, tg_(sel)), lambda x: x.index_select(1, ti(sel))),
        (lambda x: x.masked_select(tg_(mask)), lambda x: x.masked_select(ti(mask))),
        (lambda x: x.masked_select(tg_(mask[0])), lambda x: x.masked_select(ti(mask[0]))),
        (lambda x: x.diagonal(1), lambda x: x.diagonal(1)),
        (lambda x: x.diagonal(-1, 1, 0), lambda x: x.diagonal(-1, 1, 0)),
        (lambda x: x[0].diag(-2), lambda x: x[0].diag(-2)),
        (lambda x: x.diag(), lambda x: x.diag()),
    ]
    for ours, theirs in cases:
        compare_with_torch(ours, theirs, a)
    perm = np.argsort(rng.random((3, 4)), 1)[:, :2]
    for reduce in ("sum", "prod", "mean", "amax", "amin"):
        for include_self in (True, False):
            compare_with_torch(
                lambda x, y: x.scatter_reduce(1, tg_(i2), y[:, :2], reduce,
                                              include_self=include_self),
                lambda x, y: x.scatter_reduce(1, ti(i2), y[:, :2], reduce,
                                              include_self=include_self), a, b)
    compare_with_torch(lambda x, y: x.scatter(1, tg_(perm), y[:, :2]),
                       lambda x, y: x.scatter(1, ti(perm), y[:, :2]), a, b)
    compare_with_torch(lambda x, y: x.scatter_add(0, tg_(i0), y[:2]),
                       lambda x, y: x.scatter_add(0, ti(i0), y[:2]), a, b)
    assert (tg_(a).scatter(1, tg_(perm), value=7.0).tolist()
            == ti(a).scatter(1, ti(perm), value=7.0).tolist())
    z = np.array([[0, 1.5, 0], [2, 0, 0]])
    assert tg_(z).nonzero().tolist() == ti(z).nonzero().tolist()
    assert [t.tolist() for t in tg_(z).nonzero(as_tuple=True)] == [
        t.tolist() for t in ti(z).nonzero(as_tuple=True)]


def test_scatter_reduce_prod_with_zeros_as_pytorch():
    a = np.array([[0.0, 2.0, 3.0], [1.0, 0.0, 5.0]])
    src = np.array([[0.0, 4.0, 0.5, 2.0], [3.0, 0.0, 7.0, 1.5]])
    index = np.array([[0, 0, 1, 2], [1, 1, 1, 0]])
    for include_self in (True, False):
        compare_with_torch(
            lambda x, y: x.scatter_reduce(1, tg.tensor(index), y, "prod",
                                          include_self=include_self),
            lambda x, y: x.scatter_reduce(1, __import__("torch").tensor(index), y, "prod",
                                          include_self=include_self), a, src)


def test_bad_indices_get_clear_errors():
    x = tg.zeros(2, 3)
    with pytest.raises(IndexError, match=r"gather: index 3 is out of bounds for dim 1 with "
                                         r"size 3"):
        x.gather(1, tg.tensor([[3]]))
    with pytest.raises(IndexError, match="index -1 is out of bounds"):
        x.scatter_add(0, tg.tensor([[-1, 0, 0]]), tg.ones(1, 3))
    with pytest.raises(TypeError, match="must be an integer tensor|must hold integers"):
        x.gather(1, tg.tensor([[0.0]]))
    with pytest.raises(ValueError, match=r"index has 1 dims but the tensor has 2"):
        x.gather(1, tg.tensor([0]))
    with pytest.raises(ValueError, match="larger than the tensor"):
        x.gather(1, tg.zeros(3, 1, dtype=tg.int64))
    with pytest.raises(ValueError, match="reduce must be one of"):
        x.scatter_reduce(0, tg.zeros(1, 3, dtype=tg.int64), tg.ones(1, 3), "max")
    with pytest.raises(ValueError, match=r"topk: k=4 is out of range for dim -1 of size 3"):
        x.topk(4)
    with pytest.raises(TypeError, match="masked_select: the mask must be boolean"):
        x.masked_select(tg.ones(2, 3))
    with pytest.raises(ValueError, match="diagonal: dim1 and dim2 are the same"):
        x.diagonal(0, 1, -1)


@given(n_rows=st.integers(1, 7), row_shape=st.sampled_from([(), (3,), (2, 0), (2, 3)]),
       ids=st.lists(st.integers(-7, 6), max_size=12), seed=st.integers(0, 2**31 - 1))
def test_add_rows_equals_numpy_add_at(n_rows, row_shape, ids, seed):
    # the row lookup's backward (an embedding's): repeated and negative ids summed as add.at
    from tinygradlm.ops.indexing import add_rows
    ids = np.array([i % n_rows - (n_rows if i < 0 else 0) for i in ids], dtype=np.int64)
    g = np.random.default_rng(seed).standard_normal((len(ids),) + row_shape)
    want, got = np.zeros((n_rows,) + row_shape), np.zeros((n_rows,) + row_shape)
    np.add.at(want, ids, g)
    add_rows(got, ids, g)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
