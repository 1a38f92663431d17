"""Softmax, cross-entropy and attention: each fused kernel against its reference (the
composite in ``functional.py``, run under ``kernels.use("reference")``), forward and backward,
float32 and float64; float64 gradchecks of the kernels; ``fast_exp``; and the switch that
selects between kernel and reference."""
import math
import os

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm import kernels
from tinygradlm.gradcheck import gradcheck
from tinygradlm.kernels.jit import fast_exp

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}


def both_paths(fn, *arrays, grad=None):
    """Run ``fn`` fused, then reference, on the same inputs: [(output, input grads, op name)]
    for each."""
    results = []
    for mode in kernels.MODES:
        ts = [tg.Tensor(a, requires_grad=True) for a in arrays]
        with kernels.use(mode):
            out = fn(*ts)
        g = np.ones(out.shape, out.dtype) if grad is None else grad.astype(out.dtype)
        out.backward(gradient=tg.Tensor(g))
        results.append((out.numpy(), [t.grad.numpy() for t in ts], out.grad_fn.name))
    return results


@st.composite
def logits(draw, max_rows=70, max_cols=70, scale=5.0):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    rows, cols = draw(st.integers(1, max_rows)), draw(st.integers(1, max_cols))
    seed = draw(st.integers(0, 2**31 - 1))
    a = np.random.default_rng(seed).standard_normal(lead + (rows, cols)) * scale
    return a.astype(dtype), seed


@given(data=logits())
def test_softmax_fused_equals_reference(data):
    a, seed = data
    g = np.random.default_rng(seed + 1).standard_normal(a.shape)
    (yf, gf, name_f), (yr, gr, name_r) = both_paths(lambda t: F.softmax(t, -1), a, grad=g)
    assert name_f == "Softmax" and name_r != "Softmax"
    np.testing.assert_allclose(yf, yr, **TOL[a.dtype.type])
    np.testing.assert_allclose(gf[0], gr[0], **TOL[a.dtype.type])
    assert yf.dtype == a.dtype and gf[0].dtype == a.dtype


@given(data=logits(max_rows=8, max_cols=8))
def test_softmax_fused_gradcheck(data):
    a, _ = data
    assert gradcheck(lambda t: F.softmax(t), tg.Tensor(a.astype(np.float64), requires_grad=True))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(data=logits(), ignore_frac=st.sampled_from([0.0, 0.3, 0.9]),
       smoothing=st.sampled_from([0.0, 0.1, 1.0]))
def test_cross_entropy_fused_equals_reference(reduction, data, ignore_frac, smoothing):
    a, seed = data
    rng = np.random.default_rng(seed + 2)
    t = rng.integers(0, a.shape[-1], a.shape[:-1])
    t[rng.random(t.shape) < ignore_frac] = -100
    t.reshape(-1)[0] = 0                      # at least one target counts
    g = rng.standard_normal(t.size) if reduction == "none" else None
    targets = tg.Tensor(t.reshape(-1))
    (lf, gf, name_f), (lr, gr, name_r) = both_paths(      # rows (N, C): the kernel's layout
        lambda z: F.cross_entropy(z.reshape(-1, z.shape[-1]), targets, reduction=reduction,
                                  label_smoothing=smoothing), a, grad=g)
    assert name_f == "CrossEntropy" and name_r != "CrossEntropy"
    tol = dict(TOL[a.dtype.type])
    if reduction == "sum":      # N rows' roundings add up: a loss of 0 can come out as N ulps
        tol["atol"] *= t.size
    np.testing.assert_allclose(lf, lr, **tol)
    np.testing.assert_allclose(gf[0], gr[0], **TOL[a.dtype.type])
    assert gf[0].dtype == a.dtype


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(data=logits(max_rows=6, max_cols=6), smoothing=st.sampled_from([0.0, 0.25]))
def test_cross_entropy_fused_gradcheck(reduction, data, smoothing):
    a, seed = data
    t = np.random.default_rng(seed).integers(0, a.shape[-1], a.shape[:-1])
    t.reshape(-1)[-1] = -100
    x = tg.Tensor(a.astype(np.float64), requires_grad=True)
    targets = tg.Tensor(t.reshape(-1))
    fn = lambda z: F.cross_entropy(z.reshape(-1, z.shape[-1]), targets,  # noqa: E731
                                   reduction=reduction, label_smoothing=smoothing)
    if reduction == "mean" and (t == -100).all():
        return
    assert gradcheck(fn, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extremes(dtype):
    a = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    x = tg.Tensor(a, requires_grad=True)
    y = F.softmax(x)
    y.backward(gradient=tg.Tensor(np.ones(a.shape, dtype)))
    assert np.isfinite(y.numpy()).all() and np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(y.numpy()[1], [1 / 3] * 3, rtol=1e-6)
    x.grad = None
    loss = F.cross_entropy(x, tg.Tensor([2, 0]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(loss.item(), (2e4 + math.log(3)) / 2, rtol=1e-6)


def test_ignore_index_everywhere_but_one_and_everywhere():
    a = np.random.default_rng(0).standard_normal((5, 4))
    t = np.full(5, -100)
    t[3] = 2
    for mode in kernels.MODES:
        x = tg.Tensor(a, requires_grad=True)
        with kernels.use(mode):
            loss = F.cross_entropy(x, tg.Tensor(t))
        loss.backward()
        expected = np.log(np.exp(a[3]).sum()) - a[3, 2]
        np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
        assert (x.grad.numpy()[[0, 1, 2, 4]] == 0).all()
        with kernels.use(mode):
            assert math.isnan(F.cross_entropy(x, tg.Tensor(np.full(5, -100))).item())


def test_single_class_and_single_row():
    x = tg.Tensor(np.array([[3.0]]), requires_grad=True)
    assert F.softmax(x).item() == 1.0
    loss = F.cross_entropy(x, tg.Tensor([0]))
    loss.backward()
    assert loss.item() == 0.0 and x.grad.item() == 0.0


def test_switch_context_manager_env_and_errors(monkeypatch):
    x = tg.Tensor(np.ones((2, 3)), requires_grad=True)
    assert kernels.mode() == "fused" and F.softmax(x).grad_fn.name == "Softmax"
    with kernels.use("reference"):
        assert kernels.mode() == "reference" and F.softmax(x).grad_fn.name != "Softmax"
        with kernels.use("fused"):
            assert F.softmax(x).grad_fn.name == "Softmax"
    t = tg.Tensor([0, 2])
    assert F.cross_entropy(x, t).grad_fn.name == "CrossEntropy"
    with kernels.use("reference"):
        assert F.cross_entropy(x, t).grad_fn.name != "CrossEntropy"
    monkeypatch.setenv("TINYGRADLM_KERNELS", "reference")
    assert kernels.mode() == "reference" and F.softmax(x).grad_fn.name != "Softmax"
    monkeypatch.setenv("TINYGRADLM_KERNELS", "fast")
    with pytest.raises(ValueError, match="TINYGRADLM_KERNELS='fast'"):
        kernels.mode()
    with pytest.raises(ValueError, match="unknown mode"):
        with kernels.use("turbo"):
            pass


def test_softmax_on_other_axes_uses_the_reference():
    a = np.random.default_rng(1).standard_normal((3, 4))
    y = F.softmax(tg.Tensor(a), dim=0)
    np.testing.assert_allclose(y.numpy(), np.exp(a) / np.exp(a).sum(0), rtol=1e-12)


FORK_SCRIPT = """
import multiprocessing as mp
import numpy as np
import tinygradlm as tg
import tinygradlm.nn.functional as F

def work(seed):
    x = tg.Tensor(np.random.default_rng(seed).standard_normal((64, 33)))
    return float(F.softmax(x).numpy().sum())

if __name__ == "__main__":
    work(0)                                  # the parallel kernel has run in the parent
    with mp.get_context("fork").Pool(2) as pool:
        print(pool.map(work, range(4)))
"""


def test_parallel_kernels_survive_fork(tmp_path):
    """Numba's OpenMP layer can deadlock a forked child; the workqueue layer must not."""
    import subprocess
    import sys
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr
    sums = [float(v) for v in out.stdout.strip().strip("[]").split(",")]
    np.testing.assert_allclose(sums, [64.0] * 4, rtol=1e-6)


@st.composite
def attention_case(draw):
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    Tq, D = draw(st.integers(1, 70)), draw(st.integers(1, 64))
    kind = draw(st.sampled_from(["none", "causal", "padding", "full_mask"]))
    Tk = Tq if kind == "causal" else draw(st.integers(1, 70))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    q, k, v = (rng.standard_normal((B, H, T, D)).astype(dtype) for T in (Tq, Tk, Tk))
    mask = None
    if kind == "padding":            # (B, 1, 1, Tk): some sequences may be fully padded
        mask = rng.random((B, 1, 1, Tk)) < 0.7
    elif kind == "full_mask":        # an arbitrary (Tq, Tk) mask, rows may be all False
        mask = rng.random((Tq, Tk)) < 0.5
    return q, k, v, kind == "causal", mask, rng.standard_normal((B, H, Tq, D))


@given(case=attention_case())
def test_attention_fused_equals_reference(case):
    q, k, v, causal, mask, g = case
    m = None if mask is None else tg.Tensor(mask)
    (of, gf, name_f), (orf, gr, name_r) = both_paths(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=m, is_causal=causal),
        q, k, v, grad=g)
    assert name_f == "Attention" and name_r != "Attention"
    tol = dict(rtol=1e-4, atol=1e-5) if q.dtype == np.float32 else TOL[np.float64]
    np.testing.assert_allclose(of, orf, **tol)
    for a, b in zip(gf, gr):
        assert a.dtype == q.dtype
        np.testing.assert_allclose(a, b, **tol)
    assert np.isfinite(of).all() and all(np.isfinite(a).all() for a in gf)


@given(case=attention_case())
def test_attention_fused_gradcheck(case):
    q, k, v, causal, mask, _ = case
    small = (slice(None, 2), slice(None, 2), slice(None, 5), slice(None, 4))
    q, k, v = (tg.Tensor(a[small].astype(np.float64), requires_grad=True) for a in (q, k, v))
    if mask is not None:
        mask = mask[..., :q.shape[2], :k.shape[2]] if mask.ndim == 2 else mask[:q.shape[0], ...,
                                                                                :k.shape[2]]
    m = None if mask is None else tg.Tensor(mask)
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(
        a, b, c, attn_mask=m, is_causal=causal), q, k, v)


@given(case=attention_case(), budget=st.integers(1, 600), rows=st.integers(1, 9))
def test_attention_in_many_query_chunks_equals_reference(case, budget, rows):
    # long sequences run in chunks of query rows (a score block within SCORES_BUDGET, causal
    # chunks of CAUSAL_ROWS rows): made tiny here, so that every case takes many chunks
    from tinygradlm.kernels import attention
    q, k, v, causal, mask, g = case
    m = None if mask is None else tg.Tensor(mask)
    saved = attention.SCORES_BUDGET, attention.CAUSAL_ROWS
    attention.SCORES_BUDGET, attention.CAUSAL_ROWS = budget, rows
    try:
        (of, gf, name_f), (orf, gr, _) = both_paths(
            lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=m,
                                                           is_causal=causal), q, k, v, grad=g)
    finally:
        attention.SCORES_BUDGET, attention.CAUSAL_ROWS = saved
    assert name_f == "Attention"
    tol = dict(rtol=1e-4, atol=1e-5) if q.dtype == np.float32 else TOL[np.float64]
    np.testing.assert_allclose(of, orf, **tol)
    for a, b in zip(gf, gr):
        np.testing.assert_allclose(a, b, **tol)


def test_attention_single_token_and_all_masked():
    rng = np.random.default_rng(3)
    q, k, v = (tg.Tensor(rng.standard_normal((1, 2, 1, 8)), requires_grad=True)
               for _ in range(3))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(out.numpy(), v.numpy(), rtol=1e-12)     # one key: weight 1
    mask = tg.Tensor(np.zeros((1, 1, 1, 1), bool))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.sum().backward()
    assert (out.numpy() == 0).all()
    for t in (q, k, v):
        assert np.isfinite(t.grad.numpy()).all()


def test_attention_dropout_and_float_masks_use_the_reference():
    x = tg.Tensor(np.ones((1, 1, 3, 2)), requires_grad=True)
    assert F.scaled_dot_product_attention(x, x, x).grad_fn.name == "Attention"
    fmask = tg.Tensor(np.zeros((3, 3)))
    assert F.scaled_dot_product_attention(x, x, x, attn_mask=fmask).grad_fn.name != "Attention"
    assert F.scaled_dot_product_attention(x, x, x, dropout_p=0.5).grad_fn.name != "Attention"


# ---- fast_exp: the vectorisable exp inside the kernels ----------------------------
@numba.njit
def _fast_exp_loop(x, out):
    for j in range(x.shape[0]):
        out[j] = fast_exp(x[j])


def _exact_exp(x):
    """exp correctly rounded to x's dtype (computed in a wider type, then rounded)."""
    wide = np.float64 if x.dtype == np.float32 else np.longdouble
    with np.errstate(over="ignore"):
        return np.exp(x.astype(wide)).astype(x.dtype)


@given(dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_fast_exp_within_two_ulp_of_exp(dtype, data):
    lo, hi = (-120.0, 100.0) if dtype == np.float32 else (-800.0, 720.0)
    values = data.draw(st.lists(st.floats(lo, hi, width=32 if dtype == np.float32 else 64),
                                min_size=1, max_size=50))
    x = np.array(values, dtype)
    out = np.empty_like(x)
    _fast_exp_loop(x, out)
    want = _exact_exp(x)
    assert out.dtype == dtype
    finite = np.isfinite(want)
    assert (out[~finite] == np.inf).all()
    # within 2 ulp of the correctly rounded result (also for subnormal results and 0)
    err = np.abs(out[finite].astype(np.longdouble) - want[finite].astype(np.longdouble))
    assert (err <= 2 * np.spacing(want[finite]).astype(np.longdouble)).all(), \
        (x[finite][err > 2 * np.spacing(want[finite])], out[finite], want[finite])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_exp_special_values(dtype):
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, -1e30, 1e30, -5000.0, 1.0], dtype)
    out = np.empty_like(x)
    _fast_exp_loop(x, out)
    assert out[0] == 0 and out[5] == 0 and out[7] == 0          # masked keys: exactly zero
    assert out[1] == np.inf and out[6] == np.inf and np.isnan(out[2])
    assert out[3] == 1 and out[4] == 1
    np.testing.assert_allclose(out[8], np.e, rtol=2 * np.finfo(dtype).eps)
    assert fast_exp(dtype(1.0)) == np.exp(dtype(1.0))           # from Python: np.exp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_longer_causal_rows_equal_reference(dtype):
    """Rows longer than one padded block of keys, a head size that is not a multiple of 4 and
    a row count that is not a multiple of the backward's row block."""
    rng = np.random.default_rng(5)
    q, k, v, g = (rng.standard_normal((2, 2, 83, 13)).astype(dtype) for _ in range(4))
    (of, gf, _), (orf, gr, _) = both_paths(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), q, k, v,
        grad=g)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else TOL[np.float64]
    np.testing.assert_allclose(of, orf, **tol)
    for a, b in zip(gf, gr):
        np.testing.assert_allclose(a, b, **tol)
