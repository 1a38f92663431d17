"""Where tinygradlm used to differ from PyTorch (issue 13's bug list), it now agrees: each case
checks the value PyTorch gives (written out, so it runs without torch) and, when torch is
installed, torch itself; the new differentiable paths are gradient-checked in float64."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm.gradcheck import gradcheck

from strategies import T, arrays

pytestmark = pytest.mark.usefixtures("device")


def torch_or_none():
    try:
        import torch
        return torch
    except ImportError:
        return None


# --- 1. Pow's gradient where the formulas give nan or -inf --------------------------------
def test_pow_gradients_at_zero_are_those_of_pytorch():
    x = tg.tensor([0.0, 2.0], dtype=tg.float64, requires_grad=True)
    (x ** 0.0).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]                    # x**0 is the constant 1
    x = tg.tensor([0.0], dtype=tg.float64, requires_grad=True)
    y = tg.tensor([0.3], dtype=tg.float64, requires_grad=True)
    (x ** y).sum().backward()
    assert y.grad.tolist() == [0.0]                         # 0**y is constant for y > 0
    e = tg.tensor([0.0, 1.0, 2.0], dtype=tg.float64, requires_grad=True)
    (0.0 ** e).sum().backward()
    assert e.grad.tolist() == [0.0, 0.0, 0.0]
    torch = torch_or_none()
    if torch is not None:
        te = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
        (0.0 ** te).sum().backward()
        assert te.grad.tolist() == e.grad.tolist()


# --- 2. a float attention mask that requires grad gets it ---------------------------------
def test_learned_attention_bias_gets_its_gradient(device):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 3, 4)) for _ in range(3))
    bias = rng.standard_normal((2, 3, 3))
    tq, tk, tv, tb = (T(a, device=device) for a in (q, k, v, bias))
    assert gradcheck(lambda b: F.scaled_dot_product_attention(tq, tk, tv, attn_mask=b), tb)
    tb.grad = None                      # (gradcheck leaves its own backward's there)
    out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tb)
    out.sum().backward()
    assert tb.grad is not None and np.abs(tb.grad.numpy()).sum() > 0
    torch = torch_or_none()
    if torch is not None:
        b = torch.tensor(bias, requires_grad=True)
        ref = torch.nn.functional.scaled_dot_product_attention(
            *(torch.tensor(a) for a in (q, k, v)), attn_mask=b)
        ref.sum().backward()
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10)
        np.testing.assert_allclose(tb.grad.numpy(), b.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_grouped_query_attention_as_pytorch(device):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 4, 3, 5))
    k, v = rng.standard_normal((2, 2, 3, 5)), rng.standard_normal((2, 2, 3, 5))
    tq, tk, tv = (T(a, device=device) for a in (q, k, v))
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True,
                                                                    enable_gqa=True),
                     tq, tk, tv)
    with pytest.raises(ValueError, match="multiple"):
        F.scaled_dot_product_attention(tq, T(rng.standard_normal((2, 3, 3, 5))),
                                       T(rng.standard_normal((2, 3, 3, 5))), enable_gqa=True)
    torch = torch_or_none()
    if torch is not None:
        ref = torch.nn.functional.scaled_dot_product_attention(
            *(torch.tensor(a) for a in (q, k, v)), is_causal=True, enable_gqa=True)
        out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=True, enable_gqa=True)
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-10)


# --- 3. min is exact at the edges of integer and boolean types ----------------------------
def test_min_of_integers_and_booleans():
    assert tg.Tensor(np.array([0, -2 ** 31], dtype=np.int32)).min().item() == -2 ** 31
    assert tg.Tensor(np.array([3, 2 ** 31 - 1], dtype=np.int32)).amin().item() == 3
    assert tg.tensor([True, False]).min().item() is False
    assert tg.tensor([[True, True], [False, True]]).amin(dim=1).tolist() == [True, False]
    x = tg.tensor([[1.0, 3.0], [2.0, 2.0]], dtype=tg.float64, requires_grad=True)
    values, indices = x.min(dim=1)
    values.sum().backward()
    assert values.tolist() == [1.0, 2.0] and indices.tolist() == [0, 0]
    assert x.grad.tolist() == [[1.0, 0.0], [0.5, 0.5]]      # ties share, as for max


# --- 4. an out-of-range dim is an IndexError ------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda: tg.ones(2, 3).unsqueeze(5), lambda: tg.ones(2, 3).unsqueeze(-4),
    lambda: tg.stack([tg.ones(2, 3)], dim=77), lambda: tg.ones(2, 3).transpose(0, 5),
    lambda: tg.ones(2, 3).flatten(0, 9), lambda: tg.ones(2, 3).split(1, dim=2),
    lambda: tg.ones(2, 3).movedim(0, 2), lambda: tg.ones(2, 3).sum(2),
    lambda: F.softmax(tg.ones(2, 3), dim=2)])
def test_out_of_range_dims_raise(call):
    with pytest.raises(IndexError, match="out of range"):
        call()


def test_in_range_edge_dims_work():
    assert tg.ones(2, 3).unsqueeze(2).shape == (2, 3, 1)
    assert tg.ones(2, 3).unsqueeze(-3).shape == (1, 2, 3)
    assert tg.stack([tg.ones(2, 3)] * 2, dim=-1).shape == (2, 3, 2)


# --- 5. advanced indexing follows PyTorch's axis order --------------------------------------
INDEXES = [
    lambda i: (1, slice(None), slice(None), i([0, 2])),
    lambda i: (i([0, 1]), 1),
    lambda i: (Ellipsis, 1, i([0, 2])),
    lambda i: (None, 1, slice(None), i([0, 2])),
    lambda i: (i([0, 1]), slice(None), 1),
    lambda i: (1, i([0, 1]), slice(None), i([1, 2])),
    lambda i: (slice(None), i([[0, 1], [2, 0]]), 2),
]


@pytest.mark.parametrize("make", INDEXES)
def test_integer_and_array_indices_as_pytorch(make, device):
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    t = T(x, device=device)
    got = t[make(lambda v: tg.tensor(v, device=device))]
    assert gradcheck(lambda z: z[make(lambda v: tg.tensor(v, device=device))], t)
    torch = torch_or_none()
    if torch is not None:
        want = torch.tensor(x)[make(torch.tensor)]
        assert got.shape == tuple(want.shape)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert got.shape == {0: (3, 4, 2), 1: (2, 4, 5), 2: (2, 3, 2), 3: (1, 3, 2, 5),
                         4: (2, 3, 5), 5: (2, 4), 6: (2, 2, 2, 5)}[INDEXES.index(make)]


# --- 6-9. dtypes -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "erf"])
def test_float_functions_of_integer_tensors_give_float32(name):
    assert getattr(tg.tensor([1, 2]), name)().dtype == tg.float32
    assert getattr(tg.tensor([True]), name)().dtype == tg.float32


def test_full_infers_its_dtype_from_the_fill_value():
    assert tg.full((2, 2), 4).dtype == tg.int64
    assert tg.full((2,), True).dtype == tg.bool_
    assert tg.full((2,), 0.5).dtype == tg.float32
    assert tg.full((2,), 4, dtype=tg.float64).dtype == tg.float64


def test_tril_and_triu_keep_the_dtype():
    for dtype in (tg.bool_, tg.int32, tg.float64):
        m = tg.ones(3, 3).to(dtype)
        assert m.tril().dtype == dtype and m.triu(1).dtype == dtype
    assert tg.ones(3, 3).bool().tril().numpy().sum() == 6


def test_python_scalars_never_widen_a_tensor():
    i32 = tg.Tensor(np.array([1, 2], dtype=np.int32))
    assert (i32 + 1).dtype == tg.int32 and (1 - i32).dtype == tg.int32
    assert (i32 | 0xFFFFFFFF).tolist() == [-1, -1]          # wraps as in C and PyTorch
    assert (i32 * 0.5).dtype == tg.float32                  # higher kind: its default dtype
    assert (tg.tensor([True]) + 1).dtype == tg.int64
    assert (tg.ones(2, dtype=tg.float64) * 2).dtype == tg.float64
    assert (tg.ones(2, dtype=tg.float16) + 1.5).dtype == tg.float16
    torch = torch_or_none()
    if torch is not None:
        ti = torch.tensor([1, 2], dtype=torch.int32)
        assert (ti | 0xFFFFFFFF).tolist() == [-1, -1] and (ti + 1).dtype == torch.int32


def test_clip_needs_a_bound():
    with pytest.raises(ValueError, match="at least one of min or max"):
        tg.ones(2).clip(None, None)


# --- crashes on supported ops ------------------------------------------------------------------
def test_softmax_and_sums_of_0d_tensors():
    x = tg.tensor(3.0)
    assert F.softmax(x, dim=0).item() == 1.0 and F.log_softmax(x, dim=-1).item() == 0.0
    assert x.sum(0).item() == 3.0 and x.sum(-1).shape == ()
    assert tg.tensor([1, 2]).sum(dtype=tg.float64).dtype == tg.float64
    assert tg.ones(2, 3).sum(axis=1).tolist() == [3.0, 3.0]
    assert tg.ones(2, 3).mean(axis=0).shape == (3,)
    assert tg.tensor([True, True, False]).sum().dtype == tg.int64


def test_invert_is_bitwise_on_integers():
    assert (~tg.tensor([0, 1, -2])).tolist() == [-1, -2, 1]
    assert (~tg.tensor([True, False])).tolist() == [False, True]
    with pytest.raises(TypeError, match="boolean and integer"):
        ~tg.ones(2)


@st.composite
def class_problem(draw):
    """logits (N, C) or (N, C, d), integer targets with some ignored, probabilities, weights."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    extra = draw(st.sampled_from([(), (3,)]))
    shape = (n, c) + extra
    logits = draw(arrays(shape))
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, c, (n,) + extra)
    targets.reshape(-1)[1:][rng.random(targets.size - 1) < 0.3] = -100   # first one counts
    probs = rng.random(shape)
    probs /= probs.sum(axis=1, keepdims=True)
    weight = rng.uniform(0.5, 2.0, c)
    return logits, targets, probs, weight


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(problem=class_problem(), smoothing=st.sampled_from([0.0, 0.1]),
       weighted=st.booleans())
def test_cross_entropy_and_nll_loss_as_pytorch(device, reduction, problem, smoothing, weighted):
    """Class ids with ignore_index, class weights and label smoothing, and class
    probabilities; classes on dim 1; gradients checked in float64, values against torch."""
    logits, targets, probs, weight = problem
    x = T(logits, device=device)
    t, p = tg.Tensor(targets, device=device), tg.Tensor(probs, device=device)
    w = tg.Tensor(weight, device=device) if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing)
    assert gradcheck(lambda z: F.cross_entropy(z, t, **kw), x)
    assert gradcheck(lambda z: F.cross_entropy(z, p, **kw), x)
    assert gradcheck(lambda z: F.nll_loss(F.log_softmax(z, dim=1), t, weight=w,
                                          reduction=reduction), x)
    torch = torch_or_none()
    if torch is None:
        return
    tF = torch.nn.functional
    tx, tt, tp = torch.tensor(logits), torch.tensor(targets), torch.tensor(probs)
    tw = torch.tensor(weight) if weighted else None
    for ours, theirs in (
            (F.cross_entropy(x, t, **kw), tF.cross_entropy(tx, tt, tw, reduction=reduction,
                                                           label_smoothing=smoothing)),
            (F.cross_entropy(x, p, **kw), tF.cross_entropy(tx, tp, tw, reduction=reduction,
                                                           label_smoothing=smoothing)),
            (F.nll_loss(F.log_softmax(x, 1), t, weight=w, reduction=reduction),
             tF.nll_loss(tF.log_softmax(tx, 1), tt, tw, reduction=reduction))):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-9, atol=1e-12)


def test_nll_loss_of_one_sample():
    logp = F.log_softmax(tg.tensor([1.0, 2.0, 0.5]), dim=0)
    assert F.nll_loss(logp, tg.tensor(1)).item() == pytest.approx(-logp.numpy()[1])


def test_ops_on_a_parameter_give_plain_tensors():
    layer = tg.nn.Linear(2, 3)
    for out in (layer.weight * 2, layer.weight.sum(), layer.weight[0], layer.weight.T):
        assert type(out) is tg.Tensor          # PyTorch: torch.Tensor, not nn.Parameter
    model = tg.nn.Module()
    model.w = tg.nn.Parameter(tg.ones(2))
    model.doubled = model.w * 2                # a tensor attribute, not a new parameter
    assert [name for name, _ in model.named_parameters()] == ["w"]
