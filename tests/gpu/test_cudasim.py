"""The numba.cuda kernels (``kernels/cuda_kernels.py``) against their references (the
composites in ``functional.py``, in float64 under ``kernels.use("reference")``), forward and
backward, float32 and float64, run under the Numba CUDA simulator:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/gpu/test_cudasim.py

The simulator runs every GPU thread as a Python thread, so shapes stay tiny (a few rows,
C = 130 to cross one 128-thread block).  Deselected by default (``addopts``) and skipped
unless the simulator is switched on before numba is imported.
"""
import importlib
import os

import numpy as np
import pytest

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm import kernels

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
                       reason="run as NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim"),
]

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def ck():
    # Imported here, not at the top: collecting this file must never touch numba.cuda.
    return importlib.import_module("tinygradlm.kernels.cuda_kernels")


def rng(seed):
    return np.random.default_rng(seed)


def reference(fn, *arrays, grad):
    """``fn``'s composite on float64 CPU tensors made from ``arrays``: its output, and the
    gradient of sum(output * grad) for each input."""
    xs = [tg.Tensor(np.asarray(a, np.float64), requires_grad=True) for a in arrays]
    with kernels.use("reference"):
        out = fn(*xs)
    out.backward(gradient=tg.Tensor(np.asarray(grad, np.float64)))
    return out.numpy(), [x.grad.numpy() for x in xs]


# ---- softmax -----------------------------------------------------------------------------

@pytest.mark.cudasim
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(3, 1), (4, 7), (2, 130)])
def test_softmax_forward_backward(ck, dtype, N, C):
    r = rng(N * 1000 + C)
    x = (r.standard_normal((N, C)) * 4).astype(dtype)
    dy = r.standard_normal((N, C)).astype(dtype)
    y = np.empty_like(x)
    ck.softmax_forward_cuda(x, y)
    dx = np.empty_like(x)
    ck.softmax_backward_cuda(y, dy, dx)
    y_ref, (dx_ref,) = reference(F.softmax, x, grad=dy)
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    np.testing.assert_allclose(dx, dx_ref, **TOL[dtype])
    assert y.dtype == dx.dtype == dtype


# ---- cross-entropy -----------------------------------------------------------------------

def ce_reference(x, t, ignore_index, w, smoothing=0.0):
    """Per-row loss, log-sum-exp and gradient (for per-row weights w) of the composite."""
    loss, (dx,) = reference(lambda z: F.cross_entropy(z, tg.Tensor(t),
                                                      ignore_index=ignore_index,
                                                      reduction="none",
                                                      label_smoothing=smoothing), x, grad=w)
    x64 = x.astype(np.float64)
    with kernels.use("reference"):
        lse = x64 - F.log_softmax(tg.Tensor(x64)).numpy()     # the same in every column
    return loss, lse[:, 0], dx


@pytest.mark.cudasim
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(3, 1), (5, 7), (2, 130)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_forward_backward(ck, dtype, N, C, smoothing):
    r = rng(N * 7 + C)
    ignore_index = -100
    x = (r.standard_normal((N, C)) * 3).astype(dtype)
    t = r.integers(0, C, N).astype(np.int64)
    t[0] = ignore_index                                     # an ignored row
    t[-1] = C - 1                                           # the last column, past block 0
    w = r.standard_normal(N).astype(dtype)
    loss, lse = np.empty(N, dtype), np.empty(N, dtype)
    ck.cross_entropy_forward_cuda(x, t, ignore_index, smoothing, loss, lse)
    loss_ref, lse_ref, dx_ref = ce_reference(x, t, ignore_index, w.astype(np.float64),
                                             smoothing)
    np.testing.assert_allclose(loss, loss_ref, **TOL[dtype])
    np.testing.assert_allclose(lse, lse_ref, **TOL[dtype])
    assert loss[0] == 0
    dx = np.full_like(x, np.nan)                            # every element must be written
    ck.cross_entropy_backward_cuda(x, t, ignore_index, smoothing, lse, w, dx)
    np.testing.assert_allclose(dx, dx_ref, **TOL[dtype])
    assert np.all(dx[0] == 0)


@pytest.mark.cudasim
def test_cross_entropy_all_rows_ignored(ck):
    N, C, ignore_index = 3, 7, 2                            # ignore_index can be a real class
    x = rng(5).standard_normal((N, C))
    t = np.full(N, ignore_index, np.int64)
    loss, lse = np.empty(N), np.empty(N)
    ck.cross_entropy_forward_cuda(x, t, ignore_index, 0.1, loss, lse)
    assert np.all(loss == 0)
    np.testing.assert_allclose(lse, ce_reference(x, t, ignore_index, np.ones(N))[1],
                               **TOL[np.float64])
    dx = np.full_like(x, np.nan)
    ck.cross_entropy_backward_cuda(x, t, ignore_index, 0.1, lse, np.ones(N), dx)
    assert np.all(dx == 0)


# ---- attention ---------------------------------------------------------------------------

def attention_reference(q, k, v, dout, allowed, scale):
    """Output and (dq, dk, dv) of the composite, (BH, T, D) arrays seen as (1, BH, T, D);
    ``allowed`` (BH, Tq, Tk) boolean."""
    out, grads = reference(
        lambda a, b, c: F.scaled_dot_product_attention(
            a, b, c, attn_mask=tg.Tensor(allowed[None]), scale=scale),
        q[None], k[None], v[None], grad=dout[None])
    return out[0], [g[0] for g in grads]


def run_attention(ck, q, k, v, dout, scale, causal, mask=None, H=1):
    BH, Tq, _ = q.shape
    Dv = v.shape[2]
    out = np.full((BH, Tq, Dv), np.nan, q.dtype)
    lse = np.full((BH, Tq), np.nan, q.dtype)
    ck.attention_forward_cuda(q, k, v, scale, causal, out, lse, mask=mask, H=H)
    dq, dk, dv = (np.full_like(a, np.nan) for a in (q, k, v))  # all must be overwritten
    ck.attention_backward_cuda(q, k, v, out, dout, lse, scale, causal, dq, dk, dv, mask=mask,
                               H=H)
    return out, lse, dq, dk, dv


@pytest.mark.cudasim
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("BH,Tq,Tk,D,Dv", [(2, 9, 9, 5, 5), (1, 4, 6, 3, 2), (3, 6, 4, 1, 3)])
def test_attention_forward_backward(ck, dtype, causal, BH, Tq, Tk, D, Dv):
    r = rng(BH * 100 + Tq * 10 + Tk + causal)
    q, k = (r.standard_normal((BH, T, D)).astype(dtype) for T in (Tq, Tk))
    v = r.standard_normal((BH, Tk, Dv)).astype(dtype)
    dout = r.standard_normal((BH, Tq, Dv)).astype(dtype)
    scale = 1 / np.sqrt(D)
    out, lse, dq, dk, dv = run_attention(ck, q, k, v, dout, scale, causal)

    i, j = np.arange(Tq)[:, None], np.arange(Tk)[None, :]
    allowed = np.broadcast_to((j <= i) if causal else np.ones((Tq, Tk), bool), (BH, Tq, Tk))
    out_ref, grads_ref = attention_reference(q, k, v, dout, allowed, scale)
    np.testing.assert_allclose(out, out_ref, **TOL[dtype])
    s = np.where(allowed, q.astype(np.float64) @ np.swapaxes(k, -1, -2) * scale, -np.inf)
    m = s.max(-1)
    lse_ref = m + np.log(np.exp(s - m[..., None]).sum(-1))
    np.testing.assert_allclose(lse, lse_ref, **TOL[dtype])
    for got, want in zip((dq, dk, dv), grads_ref):
        np.testing.assert_allclose(got, want, **TOL[dtype])
        assert got.dtype == dtype


@pytest.mark.cudasim
@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_row_with_no_key(ck, dtype):
    # With no keys at all (Tk == 0) every row gives zeros and lse = -inf, and every gradient
    # is zero (rows emptied by a boolean mask: test_attention_boolean_masks).
    BH, Tq, D = 2, 3, 4
    q = rng(1).standard_normal((BH, Tq, D)).astype(dtype)
    k = np.empty((BH, 0, D), dtype)
    v = np.empty((BH, 0, D), dtype)
    dout = rng(2).standard_normal((BH, Tq, D)).astype(dtype)
    for causal in (False, True):
        out, lse, dq, dk, dv = run_attention(ck, q, k, v, dout, 0.5, causal)
        assert np.all(out == 0) and np.all(lse == -np.inf) and np.all(dq == 0)
        assert dk.shape == dv.shape == (BH, 0, D)


@pytest.mark.cudasim
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["padding", "full", "per_query"])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_boolean_masks(ck, dtype, kind, causal):
    # Masks with axes of size 1 or full (B, H, Tq, Tk): the kernel indexes them modulo their
    # own sizes.  Each case empties at least one query row (zeros out, zero gradients).
    B, H, Tq, Tk, D = 2, 2, 5, 6, 3
    r = rng({"padding": 1, "full": 2, "per_query": 3}[kind] + 10 * causal)
    if kind == "padding":                                   # (B, 1, 1, Tk): key padding
        mask = np.ones((B, 1, 1, Tk), bool)
        mask[0, ..., 4:] = False
        mask[1] = False                                     # a sequence that is all padding
    elif kind == "full":
        mask = r.random((B, H, Tq, Tk)) < 0.6
        mask[0, 1, 2, :] = False
    else:                                                   # (1, 1, Tq, Tk)
        mask = r.random((1, 1, Tq, Tk)) < 0.5
        mask[0, 0, 4, :] = False
    q, k = (r.standard_normal((B * H, T, D)).astype(dtype) for T in (Tq, Tk))
    v = r.standard_normal((B * H, Tk, D)).astype(dtype)
    dout = r.standard_normal((B * H, Tq, D)).astype(dtype)
    out, lse, dq, dk, dv = run_attention(ck, q, k, v, dout, 0.5, causal, mask=mask, H=H)

    allowed = np.broadcast_to(mask, (B, H, Tq, Tk)).reshape(B * H, Tq, Tk)
    if causal:
        allowed = allowed & np.tril(np.ones((Tq, Tk), bool))
    out_ref, grads_ref = attention_reference(q, k, v, dout, allowed, 0.5)
    np.testing.assert_allclose(out, out_ref, **TOL[dtype])
    empty = ~allowed.any(-1)                                # (BH, Tq)
    assert empty.any() and np.all(lse[empty] == -np.inf) and np.all(out[empty] == 0)
    for got, want in zip((dq, dk, dv), grads_ref):
        np.testing.assert_allclose(got, want, **TOL[dtype])
    assert np.all(dq[empty] == 0)


# ---- the kernels behind the functional API, on device tensors ------------------------------
# With the tests' NumPy-backed CuPy stand-in installed (TINYGRADLM_FAKE_CUPY=1, as .ci/run's
# simulator pass does), tensors on "cuda" dispatch to these kernels through the same code a
# GPU runs: F.softmax / F.cross_entropy / F.scaled_dot_product_attention on device tensors
# must equal the CPU kernels, forward and backward.

def _cuda_or_skip():
    if not tg.cuda.is_available():
        pytest.skip("needs a device: a GPU, or TINYGRADLM_FAKE_CUPY=1 (the tests' stand-in)")
    if kernels.gpu_kernels() is None:
        pytest.skip("numba.cuda cannot launch kernels here")


def _both(fn, *arrays):
    """fn on CPU tensors and on device tensors built from the same arrays: outputs and the
    gradients of sum(out * w) for a fixed random w."""
    results = []
    for device in ("cpu", "cuda"):
        xs = [tg.Tensor(a, device=device, requires_grad=a.dtype.kind == "f") for a in arrays]
        out = fn(*xs)
        w = rng(99).standard_normal(out.shape).astype(out.dtype)
        (out * tg.Tensor(w, device=device)).sum().backward()
        assert out.device == device
        results.append([out.numpy()] + [x.grad.numpy() for x in xs if x.requires_grad])
    return results


@pytest.mark.cudasim
@pytest.mark.parametrize("dtype", DTYPES)
def test_dispatch_softmax_and_cross_entropy(dtype):
    _cuda_or_skip()
    r = rng(7)
    x = (r.standard_normal((2, 3, 9)) * 3).astype(dtype)
    t = r.integers(0, 9, (2, 3))
    t[0, 1] = -100
    cpu, dev = _both(lambda a: F.softmax(a, dim=-1), x)
    for a, b in zip(cpu, dev):
        np.testing.assert_allclose(b, a, **TOL[dtype])
    cpu, dev = _both(lambda a: F.cross_entropy(a.reshape(-1, 9),
                                               tg.Tensor(t.reshape(-1), device=a.device)), x)
    for a, b in zip(cpu, dev):
        np.testing.assert_allclose(b, a, **TOL[dtype])


@pytest.mark.cudasim
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked", [False, True])
def test_dispatch_attention(dtype, masked):
    _cuda_or_skip()
    r = rng(8 + masked)
    B, H, T, D = 2, 2, 5, 4
    q, k, v = (r.standard_normal((B, H, T, D)).astype(dtype) for _ in range(3))
    pad = np.ones((B, 1, 1, T), bool)
    pad[1, ..., 3:] = False

    def attend(q, k, v):
        mask = tg.Tensor(pad, device=q.device) if masked else None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=not masked)

    cpu, dev = _both(attend, q, k, v)
    for a, b in zip(cpu, dev):
        np.testing.assert_allclose(b, a, **TOL[dtype])


@pytest.mark.cudasim
def test_dispatch_gpt_forward_backward_equals_cpu():
    # A whole (tiny) GPT step through the GPU kernels (attention and cross-entropy) equals
    # the same model on the CPU kernels, float64.
    _cuda_or_skip()
    from tinygradlm.nn import GPT, GPTConfig
    tg.manual_seed(0)
    cpu = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=2, n_embd=8,
                        dropout=0.0)).double()
    dev = GPT(cpu.config).double()
    dev.load_state_dict(cpu.state_dict())
    dev.to("cuda")
    ids = rng(3).integers(0, 7, (1, 4))
    results = []
    for model, device in ((cpu, "cpu"), (dev, "cuda")):
        logits, loss = model(tg.Tensor(ids, device=device), tg.Tensor(ids, device=device))
        loss.backward()
        results.append([logits.numpy()] + [p.grad.numpy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, **TOL[np.float64])


@pytest.mark.cudasim
def test_dispatch_encoder_decoder_forward_backward_equals_cpu():
    # The encoder-decoder through the GPU kernels: padded self-attention, cross-attention with
    # Tq != Tk and a source that is all padding, cross-entropy with label smoothing; equal to
    # the CPU kernels, float64.
    _cuda_or_skip()
    from tinygradlm.nn import EncoderDecoder, EncoderDecoderConfig
    tg.manual_seed(0)
    cpu = EncoderDecoder(EncoderDecoderConfig(vocab_size=9, block_size=6, tgt_block_size=4,
                                              n_layer=1, n_head=2, n_embd=8)).double()
    dev = EncoderDecoder(cpu.config).double()
    dev.load_state_dict(cpu.state_dict())
    dev.to("cuda")
    src = rng(4).integers(1, 9, (3, 6))
    mask = np.ones((3, 6), bool)
    mask[1, 4:] = False
    mask[2] = False
    labels = rng(5).integers(1, 9, (3, 4))
    labels[0, 3] = -100
    results = []
    for model, device in ((cpu, "cpu"), (dev, "cuda")):
        logits, loss = model(tg.Tensor(src, device=device), tg.Tensor(mask, device=device),
                             labels=tg.Tensor(labels, device=device), label_smoothing=0.1)
        loss.backward()
        results.append([logits.numpy()] + [p.grad.numpy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, **TOL[np.float64])
