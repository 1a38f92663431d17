"""The fused Linear op (y = x @ W + b as one Function) against its reference, the composite
``MatMul`` + ``Add`` of ``functional.linear``: forward and every gradient, float32 and
float64, with and without a bias, any number of leading axes; a float64 gradcheck; which
calls take it."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm import kernels
from tinygradlm.gradcheck import gradcheck

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@st.composite
def linear_case(draw, max_dim=9):
    """(x, W, b or None, output gradient, dtype): x (lead..., in) with 0-3 leading axes."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    lead = tuple(draw(st.lists(st.integers(1, 4), max_size=3)))
    n_in, n_out = draw(st.integers(1, max_dim)), draw(st.integers(1, max_dim))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal(lead + (n_in,)).astype(dtype)
    w = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype) if draw(st.booleans()) else None
    g = rng.standard_normal(lead + (n_out,)).astype(dtype)
    return x, w, b, g, dtype


def run(mode, x, w, b, g):
    ts = [tg.Tensor(a, requires_grad=True) for a in (x, w) + (() if b is None else (b,))]
    with kernels.use(mode):
        y = F.linear(*ts)
    y.backward(gradient=tg.Tensor(g))
    return y, [t.grad.numpy() for t in ts]


@given(case=linear_case())
def test_linear_fused_equals_reference(case):
    x, w, b, g, dtype = case
    yf, grads_f = run("fused", x, w, b, g)
    yr, grads_r = run("reference", x, w, b, g)
    assert yf.grad_fn.name == "Linear" and yr.grad_fn.name != "Linear"
    assert yf.shape == yr.shape == x.shape[:-1] + (w.shape[1],) and yf.dtype == dtype
    np.testing.assert_allclose(yf.numpy(), yr.numpy(), **TOL[dtype])
    for got, want in zip(grads_f, grads_r):
        assert got.shape == want.shape and got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])


@given(case=linear_case(max_dim=5))
def test_linear_fused_gradcheck(case):
    x, w, b, _, _ = case
    ts = [tg.Tensor(a.astype(np.float64), requires_grad=True)
          for a in (x, w) + (() if b is None else (b,))]
    with kernels.use("fused"):
        assert gradcheck(F.linear, *ts)


def test_linear_only_some_inputs_need_grad_and_noncontiguous_input():
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal((5, 3, 4)).astype(np.float32)).transpose(0, 1)  # (3, 5, 4)
    w = tg.Tensor(rng.standard_normal((4, 6)).astype(np.float32), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(6).astype(np.float32))
    y = F.linear(x, w, b)
    assert y.grad_fn.name == "Linear" and y.shape == (3, 5, 6)
    y.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), x.numpy().reshape(-1, 4).sum(0)[:, None]
                               * np.ones((1, 6)), rtol=1e-5)
    assert x.grad is None and b.grad is None


def test_linear_dispatch():
    w = tg.randn(4, 3, requires_grad=True)
    assert F.linear(tg.randn(2, 4), w).grad_fn.name == "Linear"
    # a bias that is not (out,) broadcasts like the composite: the composite runs
    assert F.linear(tg.randn(2, 4), w, tg.randn(1, 3)).grad_fn.name == "Add"
    with kernels.use("reference"):
        assert F.linear(tg.randn(2, 4), w).grad_fn.name == "MatMul"
    with pytest.raises(ValueError, match=r"\(2, 5\) has 5 features but the weight \(4, 3\) expects 4"):
        F.linear(tg.randn(2, 5), w)
    y = F.linear(tg.randn(0, 4), w, tg.randn(3))             # no rows
    assert y.shape == (0, 3)
    y.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((4, 3), np.float32))
