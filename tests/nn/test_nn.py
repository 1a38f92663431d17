"""nn.Module bookkeeping (registration order, names, tied weights, state_dict, modes, repr,
containers, casting) and the basic layers (Linear, LayerNorm, Embedding, GELU, Dropout):
forward against NumPy, gradients against finite differences in float64 on hypothesis-drawn
shapes, and, when PyTorch is installed, forward and backward against torch."""
import re
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm import nn
from tinygradlm.gradcheck import gradcheck

from strategies import T, arrays, assert_matches, set_data, shapes, shares_memory

# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")


# --- small models used throughout ---------------------------------------------------------
class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, 2 * d)
        self.ln = nn.LayerNorm(2 * d)

    def forward(self, x):
        return self.ln(self.fc(x).relu())


class Net(nn.Module):
    """Parameters directly on the module, a ModuleDict, a ModuleList and a plain Linear."""

    def __init__(self, d=3, n_layers=2, vocab=5):
        super().__init__()
        self.scale = nn.Parameter(tg.ones(d))
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, d),
            h=nn.ModuleList([Block(d) for _ in range(n_layers)]),
        ))
        self.head = nn.Linear(2 * d, vocab)

    def forward(self, ids):
        x = self.transformer["wte"](ids) * self.scale
        x = self.transformer["h"][0](x)
        for blk in list(self.transformer["h"])[1:]:
            x = blk(x[..., : blk.fc.in_features])
        return self.head(x)


NET_NAMES = [
    "scale",
    "transformer.wte.weight",
    "transformer.h.0.fc.weight", "transformer.h.0.fc.bias",
    "transformer.h.0.ln.weight", "transformer.h.0.ln.bias",
    "transformer.h.1.fc.weight", "transformer.h.1.fc.bias",
    "transformer.h.1.ln.weight", "transformer.h.1.ln.bias",
    "head.weight", "head.bias",
]


def ids_batch():
    return tg.Tensor(np.array([[0, 1, 4], [3, 3, 2]], dtype=np.int64))


# --- registration and names -------------------------------------------------------------
def test_parameters_registered_in_insertion_order():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.z = nn.Parameter(tg.zeros(1))
            self.a = nn.Parameter(tg.zeros(2))
            self.m = nn.Parameter(tg.zeros(3))
            self.child_b = nn.Linear(1, 1)
            self.child_a = nn.Linear(2, 2)

    m = M()
    assert [n for n, _ in m.named_parameters()] == [
        "z", "a", "m", "child_b.weight", "child_b.bias", "child_a.weight", "child_a.bias"]
    assert [p.shape for p in m.parameters()] == [(1,), (2,), (3,), (1, 1), (1,), (2, 2), (2,)]
    assert [n for n, _ in m.named_children()] == ["child_b", "child_a"]
    assert [n for n, _ in m.named_modules()] == ["", "child_b", "child_a"]
    assert list(m.state_dict()) == [n for n, _ in m.named_parameters()]


def test_named_parameters_nested_modulelist_moduledict():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NET_NAMES
    assert list(net.state_dict().keys()) == NET_NAMES
    named = dict(net.named_parameters())
    assert named["transformer.h.1.fc.weight"] is net.transformer["h"][1].fc.weight
    assert named["transformer.wte.weight"] is net.transformer.wte.weight
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert net.num_parameters() == sum(int(np.prod(p.shape)) for p in net.parameters())


def test_reassigning_and_deleting_attributes_updates_registries():
    m = nn.Linear(2, 3)
    m.bias = None                                 # no longer a parameter
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    assert m.bias is None
    m.extra = nn.Parameter(tg.zeros(4))
    del m.extra
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    with pytest.raises(AttributeError, match="extra"):
        m.extra


def test_module_without_super_init_raises():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tg.zeros(1))

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_tied_parameter_once_in_parameters_twice_in_state_dict():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(3, 3, bias=False)
            self.dec = nn.Linear(3, 3, bias=False)
            self.dec.weight = self.enc.weight

    m = Tied()
    params = list(m.parameters())
    assert len(params) == 1 and params[0] is m.enc.weight
    assert [n for n, _ in m.named_parameters()] == ["enc.weight"]
    sd = m.state_dict()
    assert list(sd) == ["enc.weight", "dec.weight"]
    assert shares_memory(sd["enc.weight"].data, sd["dec.weight"].data)
    # Round trip keeps the tie and the values.
    m2 = Tied()
    m2.load_state_dict(sd)
    assert m2.dec.weight is m2.enc.weight
    np.testing.assert_array_equal(m2.enc.weight.numpy(), m.enc.weight.numpy())


def test_shared_submodule_appears_under_both_names_in_state_dict():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, lin)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_assigning_parameter_over_plain_attribute_is_visible():
    lin = nn.Linear(2, 3, bias=False)
    lin.bias = nn.Parameter(tg.ones(3))
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    assert lin.bias is not None and lin.bias.shape == (3,)
    np.testing.assert_array_equal(lin(tg.zeros(1, 2)).numpy(), np.ones((1, 3)))


def test_buffers_in_state_dict_and_loaded():
    m = nn.Linear(2, 2)
    m.register_buffer("running", tg.Tensor(np.arange(3.0)))
    assert list(m.state_dict()) == ["weight", "bias", "running"]
    assert [n for n, _ in m.named_buffers()] == ["running"]
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    sd = m.state_dict()
    m2 = nn.Linear(2, 2)
    m2.register_buffer("running", tg.zeros(3, dtype=tg.float64))
    m2.load_state_dict(sd)
    np.testing.assert_array_equal(m2.running.numpy(), np.arange(3.0))


def test_reassigning_buffer_keeps_it_registered():
    m = nn.Module()
    m.register_buffer("mask", tg.zeros(2, 2))
    m.mask = tg.ones(2, 2)
    assert list(m.state_dict()) == ["mask"]
    np.testing.assert_array_equal(m.state_dict()["mask"].numpy(), np.ones((2, 2)))


def test_double_keeps_non_float_buffers():
    m = nn.Linear(2, 2)
    m.register_buffer("mask", tg.Tensor(np.tril(np.ones((3, 3), dtype=bool))))
    m.register_buffer("ids", tg.Tensor(np.arange(3)))
    m.double()
    assert m.weight.dtype == np.float64
    assert m.mask.dtype == np.bool_ and m.ids.dtype == np.int64


# --- state_dict / load_state_dict ---------------------------------------------------------
def test_state_dict_round_trip_into_fresh_model():
    tg.manual_seed(1)
    a = Net()
    tg.manual_seed(2)
    b = Net()
    ids = ids_batch()
    assert not np.array_equal(a(ids).numpy(), b(ids).numpy())
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(ids).numpy(), b(ids).numpy())
    # Loaded by copy, in place: b's Parameters are the same objects, not linked to a's data.
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and pa is not pb
        assert not shares_memory(pa.data, pb.data)
    a.head.bias.data += 1.0
    assert not np.array_equal(a(ids).numpy(), b(ids).numpy())


def test_state_dict_shares_data_and_accepts_numpy_values():
    m = nn.Linear(2, 3)
    sd = m.state_dict()
    assert shares_memory(sd["weight"].data, m.weight.data)
    assert not sd["weight"].requires_grad
    w_id = id(m.weight)
    m.load_state_dict({"weight": np.full((2, 3), 0.5), "bias": np.arange(3.0)})
    assert id(m.weight) == w_id and m.weight.dtype == np.float32
    np.testing.assert_array_equal(m.weight.numpy(), np.full((2, 3), 0.5, np.float32))
    np.testing.assert_array_equal(m.bias.numpy(), np.arange(3.0, dtype=np.float32))


def test_load_state_dict_missing_key():
    m = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    sd = m.state_dict()
    del sd["1.bias"]
    with pytest.raises(KeyError, match=r"missing keys: 1\.bias"):
        m.load_state_dict(sd)
    m.load_state_dict(sd, strict=False)          # non-strict: loads what is there


def test_load_state_dict_unexpected_key():
    m = nn.Linear(2, 3)
    sd = m.state_dict()
    sd["extra.weight"] = tg.zeros(4)
    with pytest.raises(KeyError, match=r"unexpected keys: extra\.weight"):
        m.load_state_dict(sd)


def test_load_state_dict_mis_shaped_entry_names_key_and_both_shapes_and_changes_nothing():
    tg.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    sd = {k: tg.ones(v.shape) for k, v in m.state_dict().items()}
    sd["0.weight"] = tg.zeros(5, 4)
    pattern = r"0\.weight.*" + re.escape("(5, 4)") + r".*" + re.escape("(2, 3)")
    with pytest.raises((KeyError, ValueError), match=pattern):
        m.load_state_dict(sd)
    # The check runs before any copy: no parameter was half-loaded.
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])


# --- modes, gradients, casting -----------------------------------------------------------
def test_train_eval_propagate_to_children():
    net = nn.Sequential(nn.Linear(2, 2), nn.ModuleList([nn.Dropout(0.5), nn.Sequential(
        nn.Dropout(0.2))]))
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert all(not m.training for m in net.modules())
    assert len(list(net.modules())) == 6
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False)
    assert all(not m.training for m in net.modules())


def test_dropout_train_and_eval():
    p = 0.25
    drop = nn.Dropout(p)
    x = tg.Tensor(np.random.default_rng(0).uniform(1.0, 2.0, size=(200, 100)))
    tg.manual_seed(0)
    y = drop(x).numpy()
    zero = y == 0
    assert abs(zero.mean() - p) < 0.02                      # 20,000 Bernoulli draws
    np.testing.assert_allclose(y[~zero], x.numpy()[~zero] / (1 - p), rtol=1e-15)
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())
    # Seeded: the same mask again.
    drop.train()
    tg.manual_seed(0)
    np.testing.assert_array_equal(drop(x).numpy(), y)
    assert np.all(nn.Dropout(1.0)(x).numpy() == 0)
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="1.5"):
        nn.Dropout(1.5)


def test_dropout_eval_through_parent():
    net = nn.Sequential(nn.Dropout(0.9))
    x = tg.ones(50, 50, dtype=tg.float64)
    net.eval()
    np.testing.assert_array_equal(net(x).numpy(), x.numpy())
    net.train()
    assert (net(x).numpy() == 0).mean() > 0.8


def test_zero_grad():
    m = Net()
    m(ids_batch()).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    for p in m.parameters():
        assert p.grad is not None and p.grad.shape == p.shape and not p.grad.numpy().any()
    m(ids_batch()).sum().backward()
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_repr_shows_tree():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.h = nn.ModuleList([nn.Linear(2, 3), nn.GELU()])
            self.ln_f = nn.LayerNorm(3)

    expected = ("Model(\n"
                "  (h): ModuleList(\n"
                "    (0): Linear(in_features=2, out_features=3, bias=True)\n"
                "    (1): GELU(approximate='tanh')\n"
                "  )\n"
                "  (ln_f): LayerNorm((3,), eps=1e-05)\n"
                ")")
    assert repr(Model()) == expected
    assert repr(nn.Linear(4, 5, bias=False)) == "Linear(in_features=4, out_features=5, bias=False)"
    assert repr(nn.Embedding(7, 2)) == "Embedding(7, 2)"
    assert repr(nn.Dropout(0.1)) == "Dropout(p=0.1)"


def test_sequential_indexing_len_iteration_and_forward():
    tg.manual_seed(0)
    a, b = nn.Linear(2, 3), nn.Linear(3, 1)
    seq = nn.Sequential(a, nn.Tanh(), b)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is b and seq[2] is b
    assert list(seq) == [a, seq[1], b]
    x = tg.randn(4, 2)
    np.testing.assert_array_equal(seq(x).numpy(), b(a(x).tanh()).numpy())
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    named = nn.Sequential(OrderedDict([("fc", a), ("act", nn.ReLU())]))
    assert named.fc is a and len(named) == 2
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]


def test_modulelist_indexing_len_iteration():
    layers = [nn.Linear(1, 1) for _ in range(4)]
    ml = nn.ModuleList(layers[:2])
    ml.append(layers[2]).extend(layers[3:])
    assert len(ml) == 4 and list(ml) == layers
    assert ml[0] is layers[0] and ml[-1] is layers[3]
    sl = ml[1:3]
    assert isinstance(sl, nn.ModuleList) and list(sl) == layers[1:3]
    assert [n for n, _ in ml.named_parameters()][:3] == ["0.weight", "0.bias", "1.weight"]
    with pytest.raises(IndexError):
        ml[4]


def test_moduledict_indexing_len_iteration():
    a, b = nn.Linear(1, 1), nn.LayerNorm(2)
    md = nn.ModuleDict({"wte": a, "ln_f": b})
    assert len(md) == 2 and md["wte"] is a and "ln_f" in md and "x" not in md
    assert list(md) == ["wte", "ln_f"] and list(md.keys()) == ["wte", "ln_f"]
    assert list(md.values()) == [a, b] and list(md.items()) == [("wte", a), ("ln_f", b)]
    c = nn.Linear(2, 2)
    md["head"] = c
    assert len(md) == 3 and md.head is c
    assert [n for n, _ in md.named_parameters()][-2:] == ["head.weight", "head.bias"]
    with pytest.raises(KeyError):
        md["missing"]


def test_module_to_float64_and_double_cast_params_in_place():
    m = Net()
    params = list(m.parameters())
    assert all(p.dtype == np.float32 for p in params)
    before = [p.numpy().copy() for p in params]
    assert m.to(tg.float64) is m
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]     # same objects
    for p, b in zip(m.parameters(), before):
        assert p.dtype == np.float64 and p.requires_grad
        np.testing.assert_array_equal(p.numpy(), b.astype(np.float64))
    assert m(ids_batch()).dtype == np.float64
    m.float()
    assert all(p.dtype == np.float32 for p in m.parameters())
    m(ids_batch()).sum().backward()
    m.double()
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in m.parameters())


def test_apply_visits_every_module():
    net = Net()
    seen = []
    net.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen[-1] == "Net" and seen.count("Linear") == 3 and seen.count("LayerNorm") == 2


# --- Linear ---------------------------------------------------------------------------------
def test_linear_shape_and_exact_formula():
    tg.manual_seed(0)
    lin = nn.Linear(4, 3)
    assert lin.weight.shape == (4, 3) and lin.bias.shape == (3,)
    bound = 1 / np.sqrt(4)
    assert np.all(np.abs(lin.weight.numpy()) <= bound) and np.all(np.abs(lin.bias.numpy()) <= bound)
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    y = lin(tg.Tensor(x))
    assert y.shape == (2, 5, 3)
    assert_matches(y.numpy(), x @ lin.weight.numpy() + lin.bias.numpy())
    nb = nn.Linear(4, 3, bias=False)
    assert nb.bias is None
    assert_matches(nb(tg.Tensor(x)).numpy(), x @ nb.weight.numpy())
    with pytest.raises(ValueError, match=re.escape("(4, 3)")):
        lin(tg.zeros(2, 5))


@st.composite
def linear_case(draw):
    batch = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    n_in, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    x = draw(arrays(batch + (n_in,)))
    w = draw(arrays((n_in, n_out)))
    b = draw(arrays((n_out,)))
    return x, w, b


@given(linear_case())
def test_linear_gradcheck(case):
    a, w, b = case
    lin = nn.Linear(*w.shape).double()
    set_data(lin.weight, w)
    set_data(lin.bias, b)
    x = T(a)
    np.testing.assert_allclose(lin(x).numpy(), a @ w + b, rtol=1e-12, atol=1e-12)
    # The module, differentiated w.r.t. the input and its own parameters.
    assert gradcheck(lambda x_, w_, b_: lin(x_), x, lin.weight, lin.bias)
    # The functional, with the weight and bias passed in.
    assert gradcheck(lambda x_, w_, b_: F.linear(x_, w_, b_), x, T(w), T(b))


# --- LayerNorm ------------------------------------------------------------------------------
@st.composite
def layer_norm_case(draw):
    batch = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    norm = draw(shapes(min_dims=1, max_dims=2, min_side=2, max_side=3))
    x = draw(arrays(batch + norm))
    # A spread over the normalised axes keeps every row's variance well away from zero.
    x = x + np.linspace(-1.5, 1.5, int(np.prod(norm))).reshape(norm)
    w = draw(arrays(norm, low=0.5, high=2.0))
    b = draw(arrays(norm))
    return x, w, b


def np_layer_norm(x, w, b, n, eps=1e-5):
    axes = tuple(range(x.ndim - n, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


@given(layer_norm_case())
def test_layer_norm_gradcheck(case):
    a, w, b = case
    ln = nn.LayerNorm(w.shape).double()
    assert ln.weight.shape == w.shape and np.all(ln.weight.numpy() == 1)
    assert np.all(ln.bias.numpy() == 0)
    set_data(ln.weight, w)
    set_data(ln.bias, b)
    x = T(a)
    np.testing.assert_allclose(ln(x).numpy(), np_layer_norm(a, w, b, w.ndim), rtol=1e-10,
                               atol=1e-10)
    assert gradcheck(lambda x_, w_, b_: ln(x_), x, ln.weight, ln.bias)
    assert gradcheck(lambda x_, w_, b_: F.layer_norm(x_, w.shape, w_, b_), x, T(w), T(b))


def test_layer_norm_normalises_and_checks_shape():
    x = tg.Tensor(np.random.default_rng(0).standard_normal((4, 6)) * 3 + 2)
    y = nn.LayerNorm(6).double()(x).numpy()
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1, rtol=1e-5)
    no_affine = nn.LayerNorm(6, elementwise_affine=False)
    assert list(no_affine.parameters()) == []
    np.testing.assert_allclose(no_affine(x).numpy(), y, rtol=1e-12)
    with pytest.raises(ValueError, match=re.escape("(4, 6)")):
        nn.LayerNorm(5)(x)


# --- Embedding ------------------------------------------------------------------------------
@st.composite
def embedding_case(draw):
    n, d = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    id_shape = draw(shapes(min_dims=0, max_dims=2, max_side=4))
    ids = draw(st.lists(st.integers(0, n - 1), min_size=int(np.prod(id_shape)),
                        max_size=int(np.prod(id_shape))))
    w = draw(arrays((n, d)))
    return np.array(ids, dtype=np.int64).reshape(id_shape), w


@given(embedding_case())
def test_embedding_gradcheck(case):
    ids, w = case
    emb = nn.Embedding(*w.shape).double()
    set_data(emb.weight, w)
    out = emb(tg.Tensor(ids))
    assert out.shape == ids.shape + (w.shape[1],)
    np.testing.assert_array_equal(out.numpy(), w[ids])
    assert gradcheck(lambda w_: emb(tg.Tensor(ids)), emb.weight)
    assert gradcheck(lambda w_: F.embedding(tg.Tensor(ids), w_), T(w))


def test_embedding_repeated_ids_accumulate():
    emb = nn.Embedding(5, 3).double()
    ids = tg.Tensor(np.array([[1, 3, 1], [1, 0, 3]]))
    g = np.arange(18, dtype=np.float64).reshape(2, 3, 3)
    emb(ids).backward(gradient=tg.Tensor(g))
    expected = np.zeros((5, 3))
    expected[1] = g[0, 0] + g[0, 2] + g[1, 0]
    expected[3] = g[0, 1] + g[1, 2]
    expected[0] = g[1, 1]
    np.testing.assert_array_equal(emb.weight.grad.numpy(), expected)


@pytest.mark.parametrize("bad", [7, 5, -1])
def test_embedding_out_of_range_id_raises(bad):
    emb = nn.Embedding(5, 2)
    ids = np.array([0, bad, 2])        # host ids: checked (on every device) before the copy
    with pytest.raises(IndexError, match=rf"(?<![\d-]){bad}(?!\d).*\b5 rows"):
        emb(ids)


def test_embedding_rejects_float_ids():
    with pytest.raises(TypeError, match="integer"):
        nn.Embedding(5, 2)(tg.Tensor([0.0, 1.0]))


# --- GELU -----------------------------------------------------------------------------------
def np_gelu(a, approximate):
    if approximate == "tanh":
        return 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))
    from math import erf
    return 0.5 * a * (1 + np.vectorize(erf)(a / np.sqrt(2)))


@pytest.mark.parametrize("approximate", ["tanh", "none"])
@given(data=st.data())
def test_gelu_gradcheck(approximate, data):
    a = data.draw(arrays(data.draw(shapes(max_dims=3, max_side=3)), low=-3.0, high=3.0))
    act = nn.GELU(approximate)
    x = T(a)
    np.testing.assert_allclose(act(x).numpy(), np_gelu(a, approximate), rtol=1e-12, atol=1e-14)
    assert gradcheck(act, x)


def test_gelu_default_and_bad_approximation():
    x = tg.Tensor(np.linspace(-3, 3, 13))
    np.testing.assert_array_equal(nn.GELU()(x).numpy(), F.gelu(x, "tanh").numpy())
    # The two approximations differ, but by little.
    d = nn.GELU("tanh")(x).numpy() - nn.GELU("none")(x).numpy()
    assert 0 < np.abs(d).max() < 1e-3
    with pytest.raises(ValueError, match="exact"):
        nn.GELU("exact")(x)


# --- Dropout gradient -------------------------------------------------------------------
@given(data=st.data())
def test_dropout_gradcheck(data):
    a = data.draw(arrays(data.draw(shapes(min_dims=1, max_dims=3, max_side=4))))
    p = data.draw(st.sampled_from([0.2, 0.5]))
    drop = nn.Dropout(p)

    def fn(x_):
        tg.manual_seed(123)                     # the same mask on every evaluation
        return drop(x_)

    x = T(a)
    y = fn(x).numpy()
    assert set(np.unique(np.round(y[a != 0] / a[a != 0], 9))) <= {0.0, round(1 / (1 - p), 9)}
    assert gradcheck(fn, x)
    assert gradcheck(lambda x_: (tg.manual_seed(7), F.dropout(x_, p, True))[1], x)


# --- PyTorch oracle -----------------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch")


def test_linear_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    x, g = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 3))
    lin = nn.Linear(4, 3).double()
    set_data(lin.weight, w)
    set_data(lin.bias, b)
    xt = T(x)
    y = lin(xt)
    y.backward(gradient=tg.Tensor(g))

    tl = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(w.T))         # torch stores (out, in)
        tl.bias.copy_(torch.from_numpy(b))
    xx = torch.tensor(x, requires_grad=True)
    yy = tl(xx)
    yy.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y.numpy(), yy.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xt.grad.numpy(), xx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lin.weight.grad.numpy(), tl.weight.grad.numpy().T, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(lin.bias.grad.numpy(), tl.bias.grad.numpy(), rtol=1e-12,
                               atol=1e-12)


def test_layer_norm_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(1)
    w, b = rng.uniform(0.5, 2, (3, 4)), rng.standard_normal((3, 4))
    x, g = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    ln = nn.LayerNorm((3, 4)).double()
    set_data(ln.weight, w)
    set_data(ln.bias, b)
    xt = T(x)
    y = ln(xt)
    y.backward(gradient=tg.Tensor(g))

    tln = torch.nn.LayerNorm((3, 4)).double()
    with torch.no_grad():
        tln.weight.copy_(torch.from_numpy(w))
        tln.bias.copy_(torch.from_numpy(b))
    xx = torch.tensor(x, requires_grad=True)
    yy = tln(xx)
    yy.backward(torch.from_numpy(g))
    for ours, theirs in [(y.numpy(), yy.detach().numpy()), (xt.grad.numpy(), xx.grad.numpy()),
                         (ln.weight.grad.numpy(), tln.weight.grad.numpy()),
                         (ln.bias.grad.numpy(), tln.bias.grad.numpy())]:
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_embedding_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 3))
    ids = np.array([[0, 5, 5, 2], [2, 2, 1, 0]])
    g = rng.standard_normal((2, 4, 3))
    emb = nn.Embedding(6, 3).double()
    set_data(emb.weight, w)
    y = emb(tg.Tensor(ids))
    y.backward(gradient=tg.Tensor(g))

    te = torch.nn.Embedding(6, 3).double()
    with torch.no_grad():
        te.weight.copy_(torch.from_numpy(w))
    yy = te(torch.from_numpy(ids))
    yy.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(y.numpy(), yy.detach().numpy())
    np.testing.assert_allclose(emb.weight.grad.numpy(), te.weight.grad.numpy(), rtol=1e-14,
                               atol=1e-15)


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_matches_torch(approximate):
    torch = _torch()
    rng = np.random.default_rng(3)
    x, g = rng.uniform(-4, 4, (5, 7)), rng.standard_normal((5, 7))
    xt = T(x)
    y = nn.GELU(approximate)(xt)
    y.backward(gradient=tg.Tensor(g))
    xx = torch.tensor(x, requires_grad=True)
    yy = torch.nn.GELU(approximate=approximate)(xx)
    yy.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y.numpy(), yy.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(xt.grad.numpy(), xx.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_named_parameters_and_state_dict_keys_match_torch_layout():
    torch = _torch()

    class TBlock(torch.nn.Module):
        def __init__(self, d):
            super().__init__()
            self.fc = torch.nn.Linear(d, 2 * d)
            self.ln = torch.nn.LayerNorm(2 * d)

    class TNet(torch.nn.Module):
        def __init__(self, d=3, n_layers=2, vocab=5):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(d))
            self.transformer = torch.nn.ModuleDict(dict(
                wte=torch.nn.Embedding(vocab, d),
                h=torch.nn.ModuleList([TBlock(d) for _ in range(n_layers)])))
            self.head = torch.nn.Linear(2 * d, vocab)

    tnet = TNet()
    assert [n for n, _ in tnet.named_parameters()] == NET_NAMES
    assert list(tnet.state_dict()) == list(Net().state_dict())


def test_load_state_dict_assign_hands_the_arrays_over():
    """``assign=True`` (PyTorch's): the module takes the given arrays instead of copies, so a
    model built only to receive a checkpoint never holds every weight twice; read-only
    arrays are copied (an optimizer must be able to update them).  On the CPU, where host
    arrays need no move."""
    layer = nn.Linear(3, 2).to("cpu")
    w, b = np.arange(6, dtype=np.float32).reshape(3, 2), np.ones(2, dtype=np.float32)
    layer.load_state_dict({"weight": w, "bias": b}, assign=True)
    assert layer.weight.data is w and isinstance(layer.weight, nn.Parameter)
    frozen = np.zeros(2, dtype=np.float32)
    frozen.flags.writeable = False
    layer.load_state_dict({"weight": w, "bias": frozen}, assign=True)
    assert layer.bias.data is not frozen and layer.bias.data.flags.writeable
    copied = nn.Linear(3, 2).to("cpu")
    copied.load_state_dict({"weight": w, "bias": b})
    assert copied.weight.data is not w and np.array_equal(copied.weight.data, w)


def test_skip_init_draws_nothing():
    """Under ``skip_init`` a model is built with zeros (LayerNorm gains stay 1) and the
    random generator does not move: what from_pretrained uses before loading the weights."""
    tg.manual_seed(0)
    state = tg.get_rng_state()
    config = nn.GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4)
    with tg.creation.skip_init():
        model = nn.GPT(config)
    for name, p in model.named_parameters():
        expected = 1.0 if re.search(r"ln_\w+\.weight$", name) else 0.0
        assert np.all(p.numpy() == expected), name
    assert tg.get_rng_state() == state
    assert nn.GPT(config).transformer.wte.weight.numpy().any()     # outside: drawn again
