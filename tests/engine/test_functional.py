"""The functional API: forward against plain NumPy (and PyTorch when installed), gradients
against finite differences in float64."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm.gradcheck import gradcheck

from strategies import T, arrays, shapes

# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")


def np_softmax(a, axis=-1):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@given(data=st.data())
def test_softmax_and_log_softmax(device, data):
    shape = data.draw(shapes(min_dims=1))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    a = data.draw(arrays(shape, low=-5, high=5))
    x = T(a, device=device)
    np.testing.assert_allclose(F.softmax(x, dim).numpy(), np_softmax(a, dim), rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(x, dim).numpy(), np.log(np_softmax(a, dim)),
                               rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda t: F.softmax(t, dim), x)
    assert gradcheck(lambda t: t.log_softmax(dim), x)


def test_softmax_huge_logits_stay_finite():
    x = tg.Tensor([[1e4, 0.0, -1e4]], requires_grad=True)
    y = F.softmax(x)
    assert np.isfinite(y.numpy()).all()
    assert np.isfinite(F.log_softmax(x).numpy()).all()
    (y * tg.Tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


@st.composite
def logits_and_targets(draw):
    lead = draw(shapes(min_dims=0, max_dims=3))
    C = draw(st.integers(1, 6))
    a = draw(arrays(lead + (C,), low=-4, high=4))
    t = np.array(draw(st.lists(st.integers(0, C - 1), min_size=int(np.prod(lead, dtype=int)),
                               max_size=int(np.prod(lead, dtype=int))))).reshape(lead)
    ignored = np.array(draw(st.lists(st.booleans(), min_size=t.size, max_size=t.size)))
    t = np.where(ignored.reshape(lead), -100, t).astype(np.int64)
    return a, t


def np_cross_entropy(a, t, reduction):
    C = a.shape[-1]
    logp = np.log(np_softmax(a.reshape(-1, C)))
    flat = t.reshape(-1)
    valid = flat != -100
    nll = np.where(valid, -logp[np.arange(flat.size), np.where(valid, flat, 0)], 0.0)
    if reduction == "none":
        return nll.reshape(t.shape)
    if reduction == "sum":
        return nll.sum()
    return nll.sum() / valid.sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(data=st.data())
def test_cross_entropy(device, reduction, data):
    a, t = data.draw(logits_and_targets())
    if reduction == "mean" and not (t != -100).any():
        t = np.zeros_like(t)            # the mean over zero targets is nan; tested separately
    x, targets = T(a, device=device), tg.Tensor(t, device=device)

    def loss(z):                        # PyTorch's layout: classes on dim 1 beyond 2-D
        return F.cross_entropy(z.movedim(-1, 1) if z.ndim > 2 else z, targets,
                               reduction=reduction)
    np.testing.assert_allclose(loss(x).numpy(), np_cross_entropy(a, t, reduction), rtol=1e-10,
                               atol=1e-12)
    assert gradcheck(loss, x)


def test_cross_entropy_all_ignored_is_nan_like_pytorch():
    x = T(np.zeros((2, 3)))
    loss = F.cross_entropy(x, tg.Tensor([-100, -100]))
    assert math.isnan(loss.item())


def test_cross_entropy_errors():
    x = T(np.zeros((2, 3)))
    with pytest.raises(IndexError, match=r"target id 3 is out of range for 3 classes"):
        F.cross_entropy(x, tg.Tensor([0, 3]))
    with pytest.raises(ValueError, match=r"needs targets of shape \(2,\)"):
        F.cross_entropy(x, tg.Tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"needs class probabilities of shape \(2, 3\)"):
        F.cross_entropy(x, tg.Tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="targets must be integer class ids"):
        F.nll_loss(x, tg.Tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction must be"):
        F.cross_entropy(x, tg.Tensor([0, 1]), reduction="avg")


@pytest.mark.parametrize("approximate", ["tanh", "none"])
@given(data=st.data())
def test_gelu(device, approximate, data):
    a = data.draw(arrays(data.draw(shapes()), low=-4, high=4))
    x = T(a, device=device)
    if approximate == "tanh":
        ref = 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)))
    else:
        ref = 0.5 * a * (1 + np.vectorize(math.erf)(a / math.sqrt(2)))
    np.testing.assert_allclose(F.gelu(x, approximate).numpy(), ref, rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda t: F.gelu(t, approximate), x)


@given(data=st.data(), affine=st.booleans())
def test_layer_norm(device, data, affine):
    shape = data.draw(shapes(min_dims=1))
    k = data.draw(st.integers(1, len(shape)))
    norm_shape = shape[len(shape) - k:]
    a = data.draw(arrays(shape))
    a = a + np.linspace(0, 1, a.size).reshape(shape)     # avoid zero-variance rows
    x = T(a, device=device)
    w = T(data.draw(arrays(norm_shape)), device=device) if affine else None
    b = T(data.draw(arrays(norm_shape)), device=device) if affine else None
    axes = tuple(range(len(shape) - k, len(shape)))
    ref = (a - a.mean(axes, keepdims=True)) / np.sqrt(a.var(axes, keepdims=True) + 1e-5)
    if affine:
        ref = ref * w.numpy() + b.numpy()
    np.testing.assert_allclose(F.layer_norm(x, norm_shape, w, b).numpy(), ref, rtol=1e-9,
                               atol=1e-12)
    inputs = (x, w, b) if affine else (x,)
    assert gradcheck(lambda *ts: F.layer_norm(ts[0], norm_shape, *ts[1:]), *inputs, atol=1e-4)


@given(data=st.data(), p=st.sampled_from([0.0, 0.2, 0.5, 0.9]))
def test_dropout(data, p):
    a = data.draw(arrays(data.draw(shapes())))
    x = T(a)

    def f(t):
        tg.manual_seed(7)               # the same mask on every evaluation
        return F.dropout(t, p, training=True)
    out = f(x).numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], a[kept] / (1 - p))
    assert gradcheck(f, x)
    assert F.dropout(x, p, training=False) is x


def test_dropout_rate_and_errors():
    tg.manual_seed(0)
    out = F.dropout(tg.ones(100_000), 0.3).numpy()
    assert abs((out == 0).mean() - 0.3) < 0.01
    assert abs(out.mean() - 1.0) < 0.02
    with pytest.raises(ValueError, match="probability"):
        F.dropout(tg.ones(2), 1.5)


@given(data=st.data())
def test_embedding(device, data):
    V, D = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    ids_shape = data.draw(shapes(min_dims=0, max_dims=2))
    ids = np.array(data.draw(st.lists(st.integers(0, V - 1), min_size=int(np.prod(ids_shape)),
                                      max_size=int(np.prod(ids_shape))))).reshape(ids_shape)
    w = T(data.draw(arrays((V, D))), device=device)
    ids_t = tg.Tensor(ids.astype(np.int64), device=device)
    np.testing.assert_array_equal(F.embedding(ids_t, w).numpy(), w.numpy()[ids])
    assert gradcheck(lambda weight: F.embedding(ids_t, weight), w)


def test_embedding_errors():
    """Ids are range-checked on the host (a list, a NumPy array, a CPU tensor), before host data
    is copied to the weight's device: on every device."""
    w = T(np.zeros((5, 2)))
    with pytest.raises(IndexError, match=r"token id 9 is out of range for an embedding with 5 "
                                         r"rows"):
        F.embedding([1, 9], w)
    with pytest.raises(IndexError, match="token id -1"):
        F.embedding(np.array([-1]), w)
    with pytest.raises(IndexError, match="token id 5"):
        F.embedding(tg.Tensor([5], device="cpu"), w)
    with pytest.raises(TypeError, match="ids must be integers"):
        F.embedding(tg.Tensor([1.0]), w)


@given(data=st.data(), bias=st.booleans())
def test_linear(device, data, bias):
    lead = data.draw(shapes(min_dims=0, max_dims=2))
    n_in, n_out = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    x = T(data.draw(arrays(lead + (n_in,))), device=device)
    w = T(data.draw(arrays((n_in, n_out))), device=device)
    b = T(data.draw(arrays((n_out,))), device=device) if bias else None
    ref = x.numpy() @ w.numpy() + (b.numpy() if bias else 0)
    np.testing.assert_allclose(F.linear(x, w, b).numpy(), ref, rtol=1e-12, atol=1e-14)
    inputs = (x, w, b) if bias else (x, w)
    assert gradcheck(lambda *ts: F.linear(*ts), *inputs)


def test_linear_shape_error():
    with pytest.raises(ValueError, match=r"linear: input \(2, 3\) has 3 features but the weight "
                                         r"\(4, 5\) expects 4"):
        F.linear(tg.zeros(2, 3), tg.zeros(4, 5))


def np_attention(q, k, v, allowed=None, additive=None, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if additive is not None:
        s = s + additive
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    with np.errstate(invalid="ignore"):
        p = np.exp(s - s.max(-1, keepdims=True))
        p = p / p.sum(-1, keepdims=True)
    p = np.nan_to_num(p)              # rows with no key -> zeros
    return p @ v


@st.composite
def attention_inputs(draw):
    B, H = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    Tq, D = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["none", "causal", "bool", "float"]))
    Tk = Tq if kind == "causal" else draw(st.integers(1, 5))
    q, k, v = (draw(arrays(s)) for s in ((B, H, Tq, D), (B, H, Tk, D), (B, H, Tk, D)))
    mask = None
    if kind == "bool":      # a key-padding style mask (B, 1, 1, Tk), sometimes empty rows
        mask = np.array(draw(st.lists(st.booleans(), min_size=B * Tk, max_size=B * Tk)))
        mask = mask.reshape(B, 1, 1, Tk)
    elif kind == "float":
        mask = draw(arrays((Tq, Tk)))
    return q, k, v, kind, mask


@given(inputs=attention_inputs())
def test_scaled_dot_product_attention(device, inputs):
    q, k, v, kind, mask = inputs
    Q, K, V = (T(a, device=device) for a in (q, k, v))
    kwargs = {"is_causal": kind == "causal"}
    if mask is not None:
        kwargs["attn_mask"] = tg.Tensor(mask, device=device)
    out = F.scaled_dot_product_attention(Q, K, V, **kwargs)
    allowed = np.tril(np.ones((q.shape[2], k.shape[2]), bool)) if kind == "causal" else (
        mask if kind == "bool" else None)
    ref = np_attention(q, k, v, allowed=allowed, additive=mask if kind == "float" else None)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)
    assert np.isfinite(out.numpy()).all()
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, **kwargs), Q, K, V)


def test_attention_fully_masked_row_is_zero_with_zero_grad():
    q = T(np.ones((1, 1, 2, 3)))
    k = T(np.ones((1, 1, 2, 3)))
    v = T(np.ones((1, 1, 2, 3)))
    mask = tg.Tensor(np.array([[True, True], [False, False]]))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    np.testing.assert_array_equal(out.numpy()[0, 0, 1], 0.0)
    out.sum().backward()
    assert np.isfinite(q.grad.numpy()).all() and np.isfinite(v.grad.numpy()).all()


def test_attention_errors():
    q = tg.zeros(1, 1, 2, 3)
    with pytest.raises(ValueError, match="same head size"):
        F.scaled_dot_product_attention(q, tg.zeros(1, 1, 2, 4), tg.zeros(1, 1, 2, 4))
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=tg.ones(2, 2).bool(), is_causal=True)


# --- PyTorch as an oracle (optional) ------------------------------------------------------------
def test_against_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4, 7))
    t = rng.integers(0, 7, (3, 4))
    t[0, 1] = -100
    x, xt = T(a), torch.tensor(a, requires_grad=True)
    loss = F.cross_entropy(x.movedim(-1, 1), tg.Tensor(t))         # classes on dim 1
    loss_t = torch.nn.functional.cross_entropy(xt.movedim(-1, 1), torch.tensor(t))
    loss.backward()
    loss_t.backward()
    np.testing.assert_allclose(loss.item(), loss_t.item(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-14)

    for approx in ("tanh", "none"):
        np.testing.assert_allclose(F.gelu(T(a), approx).numpy(),
                                   torch.nn.functional.gelu(torch.tensor(a), approximate=approx)
                                   .numpy(), rtol=1e-12, atol=1e-14)
    w, b = rng.standard_normal(7), rng.standard_normal(7)
    np.testing.assert_allclose(
        F.layer_norm(T(a), 7, T(w), T(b)).numpy(),
        torch.nn.functional.layer_norm(torch.tensor(a), (7,), torch.tensor(w), torch.tensor(b))
        .numpy(), rtol=1e-10, atol=1e-12)
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
    Q, K, V = T(q), T(k), T(v)
    Qt, Kt, Vt = (torch.tensor(z, requires_grad=True) for z in (q, k, v))
    out = F.scaled_dot_product_attention(Q, K, V, is_causal=True)
    out_t = torch.nn.functional.scaled_dot_product_attention(Qt, Kt, Vt, is_causal=True)
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(out.shape)
    out.backward(gradient=tg.Tensor(g))
    out_t.backward(torch.tensor(g))
    for ours, theirs in ((Q, Qt), (K, Kt), (V, Vt)):
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("shape, dim", [((3, 0), -1), ((0, 3), -1), ((0, 3), 0), ((2, 0, 4), 1)])
def test_softmax_of_an_empty_tensor_is_empty(fn, shape, dim):
    """As in PyTorch: nothing to normalise gives an empty result, and backward works."""
    x = tg.zeros(*shape, requires_grad=True)
    y = fn(x, dim=dim)
    assert y.shape == shape and y.dtype == x.dtype
    y.sum().backward()
    assert x.grad.shape == shape
