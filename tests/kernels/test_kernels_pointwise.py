"""The fused GELU (tanh) and LayerNorm (last axis) kernels against their references (the
composites in ``functional.py``), forward and backward, float32 and float64; float64
gradchecks; the dispatch that selects between them; serial twins against parallel kernels.

Tolerances (data of scale ~3): ``TOL`` float32 rtol 1e-5 / atol 2e-6, float64 rtol 1e-12 /
atol 1e-14, for the fused outputs against the composite path and against float64 math.  The
composite GELU computes 1 + tanh(u) and 1 - tanh(u)^2, which cancel in the tails; the
kernel's sigmoid form does not, so GELU is held to ``TOL`` against an accurate float64 GELU
(``gelu_accurate``) and to ``GELU_REF_TOL`` (atol 1e-5 / 1e-13) against the composite.
LayerNorm's gradients are held to ``LN_GRAD_TOL`` (see there).
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm import kernels
from tinygradlm.gradcheck import gradcheck
from tinygradlm.kernels import jit
from tinygradlm.kernels.gelu import COEF, SQRT_2_OVER_PI

TOL = {np.float32: dict(rtol=1e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
GELU_REF_TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-13)}
# LayerNorm's dx is rstd * (a difference of terms of size |g w|): a looser atol
LN_GRAD_TOL = {np.float32: dict(rtol=1e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def run(mode, fn, arrays, grad):
    """``fn`` on fresh leaf tensors under kernel ``mode``; (output, input grads, op name)."""
    ts = [None if a is None else tg.Tensor(a, requires_grad=True) for a in arrays]
    with kernels.use(mode):
        out = fn(*ts)
    out.backward(gradient=tg.Tensor(grad.astype(out.dtype)))
    return (out.numpy(), [None if t is None or t.grad is None else t.grad.numpy() for t in ts],
            out.grad_fn.name)


def gelu_accurate(x):
    """tanh-GELU and its derivative in float64, as x sigmoid(2u) (no cancellation)."""
    x = x.astype(np.float64)
    u = SQRT_2_OVER_PI * (x + COEF * x ** 3)
    with np.errstate(over="ignore"):
        s = 1.0 / (1.0 + np.exp(-2.0 * u))
    return x * s, s + 2.0 * x * s * (1.0 - s) * SQRT_2_OVER_PI * (1.0 + 3.0 * COEF * x * x)


@st.composite
def batches(draw, max_last=70, scale=3.0):
    """(array of shape lead + (C,), dtype, seed): 1-3 leading dims, C in 1..max_last."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    lead = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    C = draw(st.integers(1, max_last))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(lead + (C,)) * scale + rng.uniform(-2, 2)
    return a.astype(dtype), dtype, seed


# --- GELU --------------------------------------------------------------------------------

@given(data=batches())
def test_gelu_fused_equals_reference(data):
    a, dtype, seed = data
    g = np.random.default_rng(seed + 1).standard_normal(a.shape)
    yf, (gf,), name_f = run("fused", F.gelu, [a], g)
    yr, (gr,), name_r = run("reference", F.gelu, [a], g)
    assert name_f == "GELU" and name_r != "GELU"
    assert yf.dtype == dtype and gf.dtype == dtype and yf.shape == a.shape
    np.testing.assert_allclose(yf, yr, **GELU_REF_TOL[dtype])
    np.testing.assert_allclose(gf, gr, **GELU_REF_TOL[dtype])
    y64, d64 = gelu_accurate(a)
    np.testing.assert_allclose(yf, y64, **TOL[dtype])
    np.testing.assert_allclose(gf, g.astype(dtype) * d64, **TOL[dtype])


@given(data=batches(max_last=6))
def test_gelu_fused_gradcheck(data):
    a, _, _ = data
    assert gradcheck(F.gelu, tg.Tensor(a.astype(np.float64), requires_grad=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_large_magnitudes_and_special_values(dtype):
    a = np.array([1e4, -1e4, 30.0, -30.0, 0.0, -0.0, 1e-30, -7.0], dtype=dtype)
    y, (gx,), name = run("fused", F.gelu, [a], np.ones(a.shape))
    assert name == "GELU" and np.isfinite(y).all() and np.isfinite(gx).all()
    np.testing.assert_array_equal(y[:4], [1e4, 0.0, 30.0, 0.0])
    np.testing.assert_array_equal(gx[:4], [1.0, 0.0, 1.0, 0.0])
    assert y[4] == 0.0 and gx[4] == 0.5
    y64, d64 = gelu_accurate(a)
    np.testing.assert_allclose(y, y64, **TOL[dtype])
    np.testing.assert_allclose(gx, d64, **TOL[dtype])
    x = tg.Tensor(np.array([np.nan], dtype))
    assert math.isnan(F.gelu(x).item())


def test_gelu_noncontiguous_and_empty():
    a = np.random.default_rng(0).standard_normal((5, 7)).T          # a transposed view
    g = np.random.default_rng(1).standard_normal(a.shape)
    yf, (gf,), name = run("fused", F.gelu, [a], g)
    yr, (gr,), _ = run("reference", F.gelu, [a], g)
    assert name == "GELU"
    np.testing.assert_allclose(yf, yr, **TOL[np.float64])
    np.testing.assert_allclose(gf, gr, **TOL[np.float64])
    e, (ge,), _ = run("fused", F.gelu, [np.zeros((0, 3), np.float32)], np.zeros((0, 3)))
    assert e.shape == (0, 3) and ge.shape == (0, 3)


# --- LayerNorm ---------------------------------------------------------------------------

def ln(has_w, has_b, eps=1e-5):
    def fn(x, w, b):
        return F.layer_norm(x, x.shape[-1], w if has_w else None, b if has_b else None, eps)
    return fn


def ln_params(C, dtype, seed):
    rng = np.random.default_rng(seed)
    return ((1 + 0.5 * rng.standard_normal(C)).astype(dtype),
            rng.standard_normal(C).astype(dtype))


def assert_ln_match(fused, ref, dtype, truth=None):
    """Fused outputs and grads close to the reference path's; where a row is ill-conditioned
    (variance small against the mean: both float32 paths lose digits), it is enough that
    the fused error against float64 ``truth`` is at most twice the reference path's."""
    (yf, gf, _), (yr, gr, _) = fused, ref
    for a, b, t, tol in zip([yf] + gf, [yr] + gr, [None] * len(gr) if truth is None else
                            [truth[0]] + truth[1], [TOL[dtype]] + [LN_GRAD_TOL[dtype]] * len(gr)):
        if b is None:
            assert a is None
            continue
        assert a.dtype == dtype
        if t is not None and not np.allclose(a, b, **tol):
            assert np.abs(a - t).max() <= 2 * np.abs(b - t).max() + tol["atol"], \
                (np.abs(a - t).max(), np.abs(b - t).max())
        else:
            np.testing.assert_allclose(a, b, **tol)


@given(data=batches(), has_w=st.booleans(), has_b=st.booleans(),
       eps=st.sampled_from([1e-5, 1e-3]))
def test_layer_norm_fused_equals_reference(data, has_w, has_b, eps):
    a, dtype, seed = data
    w, b = ln_params(a.shape[-1], dtype, seed + 1)
    g = np.random.default_rng(seed + 2).standard_normal(a.shape)
    fn = ln(has_w, has_b, eps)
    fused = run("fused", fn, [a, w, b], g)
    ref = run("reference", fn, [a, w, b], g)
    assert fused[2] == "LayerNorm" and ref[2] != "LayerNorm"
    assert fused[0].dtype == dtype and fused[0].shape == a.shape
    # weight / bias not passed: fn ignores them, so their leaf tensors get no gradient
    assert (fused[1][1] is None) == (not has_w) and (fused[1][2] is None) == (not has_b)
    truth = run("reference", fn, [a.astype(np.float64), w.astype(np.float64),
                                  b.astype(np.float64)], g)
    assert_ln_match(fused, ref, dtype, truth)


@given(data=batches(max_last=6, scale=1.0), has_w=st.booleans(), has_b=st.booleans())
def test_layer_norm_fused_gradcheck(data, has_w, has_b):
    a, _, seed = data
    a = a.astype(np.float64)
    C = a.shape[-1]
    if C > 1:       # keep every row's variance well away from 0 (rstd stays moderate)
        a = a + np.linspace(-1.0, 1.0, C) * np.random.default_rng(seed).permutation(C)
    w, b = ln_params(C, np.float64, seed + 1)
    inputs = [tg.Tensor(a, requires_grad=True)]
    inputs += [tg.Tensor(p, requires_grad=True) for p, on in ((w, has_w), (b, has_b)) if on]

    def fn(x, *wb):
        wb = list(wb)
        return F.layer_norm(x, C, wb.pop(0) if has_w else None, wb.pop(0) if has_b else None)

    assert fn(*inputs).grad_fn.name == "LayerNorm"
    assert gradcheck(fn, *inputs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_constant_rows(dtype):
    # 3.5 and -2.25 are exact, so both paths get mean == x and xhat == 0 exactly
    a = np.array([[3.5] * 6, [-2.25] * 6, [0.0] * 6, [1, 2, 3, 4, 5, 6]], dtype=dtype)
    w, b = ln_params(6, dtype, 0)
    g = np.random.default_rng(1).standard_normal(a.shape)
    fused = run("fused", ln(True, True), [a, w, b], g)
    ref = run("reference", ln(True, True), [a, w, b], g)
    for arr in [fused[0]] + fused[1]:
        assert np.isfinite(arr).all()
    np.testing.assert_array_equal(fused[0][:3], np.broadcast_to(b, (3, 6)))
    assert_ln_match(fused, ref, dtype)
    # an inexact constant: x - mean is a rounding error (or 0) times rstd = 1/sqrt(eps)
    c = np.full((2, 5), 0.1, dtype)
    yc, (gc,), _ = run("fused", lambda x: F.layer_norm(x, 5), [c], np.ones(c.shape))
    yr, (gr,), _ = run("reference", lambda x: F.layer_norm(x, 5), [c], np.ones(c.shape))
    assert np.isfinite(yc).all() and np.isfinite(gc).all()
    np.testing.assert_allclose(yc, yr, atol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_large_magnitudes(dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((4, 33)) * 1e4).astype(dtype)
    a[1] += dtype(3e4)
    w, b = ln_params(33, dtype, 1)
    g = rng.standard_normal(a.shape)
    fused = run("fused", ln(True, True), [a, w, b], g)
    ref = run("reference", ln(True, True), [a, w, b], g)
    for arr in [fused[0]] + fused[1]:
        assert np.isfinite(arr).all()
    assert_ln_match(fused, ref, dtype)


def test_layer_norm_weight_or_bias_only_and_nn_module():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 8))
    w, b = ln_params(8, np.float64, 1)
    for has_w, has_b in [(True, False), (False, True), (False, False)]:
        x = tg.Tensor(a, requires_grad=True)
        wt, bt = tg.Tensor(w, requires_grad=True), tg.Tensor(b, requires_grad=True)
        y = F.layer_norm(x, (8,), wt if has_w else None, bt if has_b else None)
        assert y.grad_fn.name == "LayerNorm"
        y.sum().backward()
        assert (wt.grad is not None) == has_w and (bt.grad is not None) == has_b
        with kernels.use("reference"):
            want = F.layer_norm(tg.Tensor(a), (8,), tg.Tensor(w) if has_w else None,
                                tg.Tensor(b) if has_b else None)
        np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=1e-12, atol=1e-14)
    layer = tg.nn.LayerNorm(8)
    out = layer(tg.Tensor(a.astype(np.float32)))
    assert out.grad_fn.name == "LayerNorm" and out.dtype == np.float32


# --- dispatch ----------------------------------------------------------------------------

def test_dispatch_switch_and_fallbacks(monkeypatch):
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    w, b = tg.Tensor(np.ones(4), requires_grad=True), tg.Tensor(np.zeros(4), requires_grad=True)
    assert F.gelu(x).grad_fn.name == "GELU"
    assert F.layer_norm(x, 4, w, b).grad_fn.name == "LayerNorm"
    assert F.layer_norm(x, [4]).grad_fn.name == "LayerNorm"
    with kernels.use("reference"):
        assert F.gelu(x).grad_fn.name != "GELU"
        assert F.layer_norm(x, 4, w, b).grad_fn.name != "LayerNorm"
        with kernels.use("fused"):
            assert F.gelu(x).grad_fn.name == "GELU"
    # the exact (erf) GELU keeps the composite
    assert F.gelu(x, approximate="none").grad_fn.name != "GELU"
    # normalising over the last two axes falls back, and still matches the math
    y2 = F.layer_norm(x, (3, 4))
    assert y2.grad_fn.name != "LayerNorm"
    flat = x.numpy().reshape(2, 12)
    want = (flat - flat.mean(-1, keepdims=True)) / np.sqrt(flat.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y2.numpy().reshape(2, 12), want, rtol=1e-12, atol=1e-14)
    # a weight that only broadcasts to (4,) falls back too
    assert F.layer_norm(x, 4, tg.Tensor(np.ones((1, 4)))).grad_fn.name != "LayerNorm"
    with pytest.raises(ValueError, match="does not match"):
        F.layer_norm(x, 5)
    monkeypatch.setenv("TINYGRADLM_KERNELS", "reference")
    assert F.gelu(x).grad_fn.name != "GELU"
    assert F.layer_norm(x, 4).grad_fn.name != "LayerNorm"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_twins_equal_the_parallel_kernels(monkeypatch, dtype):
    """Small inputs run each kernel's serial twin (jit.SERIAL_BELOW); both compilations
    must give the same numbers, forward and backward."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 24)).astype(dtype)
    w, b = rng.standard_normal(24).astype(dtype), rng.standard_normal(24).astype(dtype)
    q, k, v = (rng.standard_normal((2, 3, 7, 8)).astype(dtype) for _ in range(3))
    targets = rng.integers(0, 24, (3, 5))

    def run():
        xs = [tg.Tensor(a, requires_grad=True) for a in (x, w, b)]
        qs = [tg.Tensor(a, requires_grad=True) for a in (q, k, v)]
        out = (F.gelu(xs[0]) * 1.5 + F.layer_norm(xs[0], 24, xs[1], xs[2])).sum()
        att = F.scaled_dot_product_attention(*qs, is_causal=True)
        sm = F.softmax(xs[0] * 2.0, dim=-1)
        ce = F.cross_entropy(xs[0].reshape(-1, 24), tg.Tensor(targets.reshape(-1)))
        (out + (att * att).sum() + (sm * sm).sum() + ce).backward()
        return ([out.numpy(), att.numpy(), sm.numpy(), ce.numpy()]
                + [t.grad.numpy() for t in xs + qs])

    monkeypatch.setattr(jit, "SERIAL_BELOW", 0)         # everything parallel
    parallel = run()
    monkeypatch.setattr(jit, "SERIAL_BELOW", 1 << 40)   # everything serial
    serial = run()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for a, s in zip(parallel, serial):
        np.testing.assert_allclose(a, s, rtol=rtol, atol=rtol)


def test_kernel_cache_names_follow_their_options():
    # Numba's disk cache finds a kernel by its qualified name: new options (or a new jit.py)
    # must give a new name, or the old machine code would keep running
    def k(x):
        return x
    a, b = jit._copy(k, "k", {"fastmath": True}), jit._copy(k, "k", {"fastmath": False})
    assert a.__name__ == b.__name__ == "k" and a.__qualname__ != b.__qualname__
    assert jit._copy(k, "k_serial", {}).__qualname__.startswith(k.__qualname__ + "_serial_")
    assert jit._copy(k, "k", {"fastmath": True}).__qualname__ == a.__qualname__   # stable
    # ... from one process to the next too: a set's order changes with string hashing
    code = ("from tinygradlm.kernels import jit\n"
            "print(jit._copy(lambda x: x, 'k', {'fastmath': jit.FASTMATH}).__qualname__)")
    names = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONHASHSEED": str(seed)}
                            ).stdout for seed in (1, 2, 3)}
    assert len(names) == 1 and names != {""}
