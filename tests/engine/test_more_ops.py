"""The PyTorch op set beyond the Transformer's needs (issue 13): elementwise functions,
activations and losses.  Each is gradient-checked in float64 on hypothesis-drawn shapes and
values (away from its kinks), and compared with PyTorch -- value and gradient -- when torch is
installed."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm.gradcheck import gradcheck

from strategies import T, arrays, compare_with_torch, shapes

pytestmark = pytest.mark.usefixtures("device")

HALVES = tuple(k / 2 for k in range(-6, 7))          # kinks of floor, ceil, round, trunc, sign

# name -> (tinygradlm function, the same call on a torch tensor, value range / kinks to avoid)
UNARY = {
    "sin": (lambda x: x.sin(), lambda t: t.sin(), dict()),
    "cos": (lambda x: x.cos(), lambda t: t.cos(), dict()),
    "tan": (lambda x: x.tan(), lambda t: t.tan(), dict(low=-1.2, high=1.2)),
    "asin": (lambda x: x.asin(), lambda t: t.asin(), dict(low=-0.9, high=0.9)),
    "acos": (lambda x: x.acos(), lambda t: t.acos(), dict(low=-0.9, high=0.9)),
    "atan": (lambda x: x.atan(), lambda t: t.atan(), dict()),
    "sinh": (lambda x: x.sinh(), lambda t: t.sinh(), dict()),
    "cosh": (lambda x: x.cosh(), lambda t: t.cosh(), dict()),
    "asinh": (lambda x: x.asinh(), lambda t: t.asinh(), dict()),
    "acosh": (lambda x: x.acosh(), lambda t: t.acosh(), dict(low=1.2, high=3.0)),
    "atanh": (lambda x: x.atanh(), lambda t: t.atanh(), dict(low=-0.9, high=0.9)),
    "exp2": (lambda x: x.exp2(), lambda t: t.exp2(), dict()),
    "log2": (lambda x: x.log2(), lambda t: t.log2(), dict(low=0.2, high=3.0)),
    "log10": (lambda x: x.log10(), lambda t: t.log10(), dict(low=0.2, high=3.0)),
    "rsqrt": (lambda x: x.rsqrt(), lambda t: t.rsqrt(), dict(low=0.2, high=3.0)),
    "reciprocal": (lambda x: x.reciprocal(), lambda t: t.reciprocal(), dict(low=0.5, high=3.0)),
    "floor": (lambda x: x.floor(), lambda t: t.floor(), dict(low=-3, high=3, avoid=HALVES)),
    "ceil": (lambda x: x.ceil(), lambda t: t.ceil(), dict(low=-3, high=3, avoid=HALVES)),
    "trunc": (lambda x: x.trunc(), lambda t: t.trunc(), dict(low=-3, high=3, avoid=HALVES)),
    "round": (lambda x: x.round(), lambda t: t.round(), dict(low=-3, high=3, avoid=HALVES)),
    "sign": (lambda x: x.sign(), lambda t: t.sign(), dict(avoid=(0.0,))),
    "copysign": (lambda x: x.copysign(-1.0), lambda t: t.copysign(-1.0), dict(avoid=(0.0,))),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda t: t.nn.functional.leaky_relu(t, 0.1)
                   if False else None, dict(avoid=(0.0,))),
    "elu": (lambda x: F.elu(x, 0.7), None, dict(avoid=(0.0,))),
    "celu": (lambda x: F.celu(x, 0.7), None, dict(avoid=(0.0,))),
    "selu": (F.selu, None, dict(avoid=(0.0,))),
    "silu": (F.silu, None, dict()),
    "softplus": (lambda x: F.softplus(x, 2.0, 3.0), None, dict(avoid=(1.5,))),
    "mish": (F.mish, None, dict()),
    "softsign": (F.softsign, None, dict(avoid=(0.0,))),
    "hardtanh": (lambda x: F.hardtanh(x, -1.0, 1.5), None, dict(avoid=(-1.0, 1.5))),
    "relu6": (F.relu6, None, dict(low=-2, high=8, avoid=(0.0, 6.0))),
    "hardsigmoid": (F.hardsigmoid, None, dict(low=-5, high=5, avoid=(-3.0, 3.0))),
    "hardswish": (F.hardswish, None, dict(low=-5, high=5, avoid=(-3.0, 3.0))),
    "logsigmoid": (F.logsigmoid, None, dict()),
}
# What each activation is called in torch.nn.functional, with its arguments.
TORCH_F = {"leaky_relu": ("leaky_relu", (0.1,)), "elu": ("elu", (0.7,)),
           "celu": ("celu", (0.7,)), "selu": ("selu", ()), "silu": ("silu", ()),
           "softplus": ("softplus", (2.0, 3.0)), "mish": ("mish", ()),
           "softsign": ("softsign", ()), "hardtanh": ("hardtanh", (-1.0, 1.5)),
           "relu6": ("relu6", ()), "hardsigmoid": ("hardsigmoid", ()),
           "hardswish": ("hardswish", ()), "logsigmoid": ("logsigmoid", ())}


def torch_unary(name):
    import torch
    if name in TORCH_F:
        fname, args = TORCH_F[name]
        return lambda t: getattr(torch.nn.functional, fname)(t, *args)
    return UNARY[name][1]


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary_gradcheck(name, device, data):
    fn, _, domain = UNARY[name]
    x = T(data.draw(arrays(data.draw(shapes()), **domain)), device=device)
    assert gradcheck(fn, x)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_against_pytorch(name):
    fn, _, domain = UNARY[name]
    low, high = domain.get("low", -2.0), domain.get("high", 2.0)
    a = np.random.default_rng(0).uniform(low, high, (4, 5))
    for kink in domain.get("avoid", ()):                    # keep clear of the kinks
        a = np.where(np.abs(a - kink) < 0.05, a + 0.1, a)
    compare_with_torch(fn, torch_unary(name), a)


BINARY = {  # name -> (function, torch function, range of x, range of y)
    "maximum": (lambda x, y: x.maximum(y), lambda x, y: x.maximum(y), {}, {}),
    "minimum": (lambda x, y: x.minimum(y), lambda x, y: x.minimum(y), {}, {}),
    "logaddexp": (lambda x, y: x.logaddexp(y), lambda x, y: x.logaddexp(y), {}, {}),
    "lerp": (lambda x, y: x.lerp(y, 0.3), lambda x, y: x.lerp(y, 0.3), {}, {}),
    "mse_loss": (lambda x, y: F.mse_loss(x, y, reduction="none"),
                 lambda x, y: __import__("torch").nn.functional.mse_loss(x, y, reduction="none"),
                 {}, {}),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_gradcheck(name, device, data):
    fn, _, dx, dy = BINARY[name]
    shape = data.draw(shapes())
    a = data.draw(arrays(shape, **dx))
    b = a + data.draw(st.sampled_from([-1, 1])) * data.draw(arrays(shape, low=0.2, high=1.0))
    assert gradcheck(fn, T(a, device=device), T(b, device=device))    # no ties: a != b


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_against_pytorch(name):
    fn, torch_fn, _, _ = BINARY[name]
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    b[0, 0] = a[0, 0]                       # a tie: PyTorch splits the gradient in half
    compare_with_torch(fn, torch_fn, a, b)


def test_fmod_and_remainder_as_pytorch():
    a = np.array([-3.7, -1.2, 0.4, 2.9, 5.3])
    b = np.array([1.5, -2.0, 0.7, -1.1, 2.5])
    for name, op in (("fmod", "fmod"), ("remainder", "remainder")):
        compare_with_torch(lambda x, y: getattr(x, name)(y), lambda x, y: getattr(x, op)(y),
                           a, b)
        assert gradcheck(lambda x, y: getattr(x, name)(y), T(a), T(b))
    assert (tg.tensor([-7, 7]) % 3).tolist() == [2, 1]              # the sign of the divisor
    assert tg.tensor([-7.0, 7.0]).fmod(3).tolist() == [-1.0, 1.0]    # the sign of the dividend
    assert (tg.tensor([-7, 7]) // 2).tolist() == [-4, 3]
    assert tg.tensor([-7, 7]).div(2, rounding_mode="trunc").tolist() == [-3, 3]
    assert tg.tensor([-7.0, 7.0]).div(2, rounding_mode="floor").tolist() == [-4.0, 3.0]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(data=st.data())
def test_losses_gradcheck(reduction, device, data):
    shape = data.draw(shapes(min_dims=1))
    x = T(data.draw(arrays(shape)), device=device)
    y = T(data.draw(arrays(shape)), device=device).detach()
    p = T(data.draw(arrays(shape, low=0.1, high=0.9)), device=device)
    t = tg.Tensor(data.draw(arrays(shape, low=0.0, high=1.0)), device=device)
    w = tg.Tensor(data.draw(arrays(shape, low=0.5, high=2.0)), device=device)
    a, b = x.numpy(), y.numpy()
    away = T(a + np.where(a >= b, 0.2, -0.2), device=device)    # |x - y| >= 0.2: no kinks
    assert gradcheck(lambda z: F.mse_loss(z, y, reduction), x)
    assert gradcheck(lambda z: F.l1_loss(z, y, reduction), away)
    assert gradcheck(lambda z: F.smooth_l1_loss(z, y, reduction, beta=0.05), away)
    assert gradcheck(lambda z: F.binary_cross_entropy(z, t, w, reduction), p)
    assert gradcheck(lambda z: F.binary_cross_entropy_with_logits(
        z, t, w, reduction, pos_weight=w), x)


def test_losses_against_pytorch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    p, t = rng.uniform(0.05, 0.95, (3, 4)), rng.uniform(0, 1, (3, 4))
    w, pw = rng.uniform(0.5, 2, (3, 4)), rng.uniform(0.5, 2, (4,))
    for reduction in ("mean", "sum", "none"):
        compare_with_torch(lambda a, b: F.l1_loss(a, b, reduction),
                           lambda a, b: tF.l1_loss(a, b, reduction=reduction), x, y)
        compare_with_torch(lambda a, b: F.smooth_l1_loss(a, b, reduction, beta=0.5),
                           lambda a, b: tF.smooth_l1_loss(a, b, reduction=reduction, beta=0.5),
                           x, y)
        compare_with_torch(lambda a: F.binary_cross_entropy(a, tg.Tensor(t), tg.Tensor(w),
                                                            reduction),
                           lambda a: tF.binary_cross_entropy(a, torch.tensor(t), torch.tensor(w),
                                                             reduction=reduction), p)
        compare_with_torch(lambda a: F.binary_cross_entropy_with_logits(
            a, tg.Tensor(t), tg.Tensor(w), reduction, pos_weight=tg.Tensor(pw)),
            lambda a: tF.binary_cross_entropy_with_logits(
                a, torch.tensor(t), torch.tensor(w), reduction=reduction,
                pos_weight=torch.tensor(pw)), x)
    # p of exactly 0 or 1: the logs are clamped at -100, as PyTorch
    edge = F.binary_cross_entropy(tg.tensor([0.0, 1.0], dtype=tg.float64),
                                  tg.tensor([1.0, 0.0], dtype=tg.float64))
    assert edge.item() == pytest.approx(100.0)


@given(data=st.data())
def test_softmin_and_normalize_gradcheck(device, data):
    x = T(data.draw(arrays(data.draw(shapes(min_dims=1)))), device=device)
    assert gradcheck(lambda z: F.softmin(z, dim=-1), x)
    a = x.numpy()
    away = T(a + np.where(a >= 0, 0.3, -0.3), device=device)   # no row of zeros
    assert gradcheck(lambda z: F.normalize(z, dim=-1), away)


def test_softmin_normalize_one_hot_against_pytorch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(3).standard_normal((3, 5))
    compare_with_torch(lambda z: F.softmin(z, dim=1),
                       lambda z: torch.nn.functional.softmin(z, dim=1), a)
    compare_with_torch(lambda z: F.normalize(z, p=3.0, dim=0),
                       lambda z: torch.nn.functional.normalize(z, p=3.0, dim=0), a)
    ids = np.array([[0, 2], [3, 1]])
    assert F.one_hot(tg.tensor(ids)).tolist() == torch.nn.functional.one_hot(
        torch.tensor(ids)).tolist()
    assert F.one_hot(tg.tensor(ids), 6).shape == (2, 2, 6)
    with pytest.raises(ValueError, match=r"one_hot: ids must be in \[0, 3\)"):
        F.one_hot(tg.tensor([0, 3]), 3)


def test_tests_of_values_and_bitwise_operators_as_pytorch():
    torch = pytest.importorskip("torch")
    a = np.array([1.0, np.nan, np.inf, -np.inf, 0.0])
    for name in ("isnan", "isinf", "isfinite"):
        assert getattr(tg.tensor(a), name)().tolist() == getattr(torch.tensor(a), name)().tolist()
    assert tg.tensor([1.0, 2.0]).isclose(tg.tensor([1.0 + 1e-9, 2.1])).tolist() == [True, False]
    i, j = np.array([5, -3, 12]), np.array([3, 6, -1])
    ti, tj, gi, gj = torch.tensor(i), torch.tensor(j), tg.tensor(i), tg.tensor(j)
    for op in ("__and__", "__or__", "__xor__", "__lshift__", "__rshift__"):
        k = np.array([1, 2, 0]) if "shift" in op else j
        assert getattr(gi, op)(tg.tensor(k)).tolist() == getattr(ti, op)(torch.tensor(k)).tolist()
    assert (3 & gi).tolist() == (3 & ti).tolist() and (3 | gi).tolist() == (3 | ti).tolist()
    assert (~gi).tolist() == (~ti).tolist() and gi.bitwise_xor(gj).tolist() == [6, -5, -13]
    b, c = tg.tensor([True, False, True]), tg.tensor([True, True, False])
    assert b.logical_and(c).tolist() == [True, False, False]
    assert b.logical_or(c).tolist() == [True, True, True]
    assert b.logical_not().tolist() == [False, True, False]
    assert tg.tensor([0.0, 2.0]).logical_xor(tg.tensor([1.0, 3.0])).tolist() == [True, False]


def test_method_forms_and_conversions():
    x = tg.tensor([1.5, -2.0], requires_grad=True)
    assert x.add(1, alpha=2).tolist() == [3.5, 0.0] and x.sub(x).tolist() == [0.0, 0.0]
    assert x.mul(2).tolist() == [3.0, -4.0] and x.pow(2).tolist() == [2.25, 4.0]
    assert x.neg().tolist() == [-1.5, 2.0] and x.div(2).tolist() == [0.75, -1.0]
    assert x.int().dtype == tg.int32 and x.half().dtype == tg.float16
    y = x.clone()
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0] and x.contiguous() is x
    z = tg.tensor([1, 2])
    w = z.clone()
    w.data[0] = 9
    assert z.tolist() == [1, 2]                      # the clone has its own memory
    assert math.isclose(tg.tensor(2.0).logaddexp(tg.tensor(1000.0)).item(), 1000.0)


# module name -> (constructor arguments, what it takes: "x" one input, "xy" input and
# target, "p" probabilities and a target, "ids" logits and class ids, "logp" log-probs and ids)
MODULES = {
    "ReLU": ((), "x"), "Tanh": ((), "x"), "Sigmoid": ((), "x"), "GELU": ((), "x"),
    "SiLU": ((), "x"), "ELU": ((0.7,), "x"), "CELU": ((0.7,), "x"), "SELU": ((), "x"),
    "LeakyReLU": ((0.2,), "x"), "Softplus": ((2.0, 3.0), "x"), "Hardtanh": ((-0.5, 1.5), "x"),
    "Mish": ((), "x"), "Softsign": ((), "x"), "Hardsigmoid": ((), "x"), "Hardswish": ((), "x"),
    "ReLU6": ((), "x"), "LogSigmoid": ((), "x"), "Softmax": ((1,), "x"),
    "LogSoftmax": ((1,), "x"), "Softmin": ((0,), "x"), "Identity": ((), "x"),
    "MSELoss": ((), "xy"), "L1Loss": (dict(reduction="sum"), "xy"),
    "SmoothL1Loss": (dict(beta=0.5), "xy"), "BCELoss": ((), "p"),
    "BCEWithLogitsLoss": (dict(reduction="none"), "xy01"), "NLLLoss": ((), "logp"),
    "CrossEntropyLoss": (dict(label_smoothing=0.1, ignore_index=2), "ids"),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_nn_modules_as_pytorch(name):
    """Each nn module, built with the same arguments, computes what PyTorch's does."""
    torch = pytest.importorskip("torch")
    args, takes = MODULES[name]
    args, kwargs = (args, {}) if isinstance(args, tuple) else ((), args)
    ours = getattr(tg.nn, name)(*args, **kwargs)
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    if name == "GELU":                       # tinygradlm's default is GPT-2's tanh form
        theirs = torch.nn.GELU(approximate="tanh")
    rng = np.random.default_rng(8)
    x = rng.uniform(-3, 3, (4, 5))
    x = np.where(np.abs(x) < 0.05, 0.1, x)                      # away from the kinks at 0
    if takes == "x":
        compare_with_torch(ours, theirs, x)
        return
    if takes in ("xy", "xy01"):
        y = rng.uniform(0, 1, (4, 5)) if takes == "xy01" else rng.standard_normal((4, 5))
        compare_with_torch(lambda a: ours(a, tg.tensor(y)), lambda a: theirs(a, torch.tensor(y)),
                           x)
    elif takes == "p":
        p, y = rng.uniform(0.05, 0.95, (4, 5)), rng.uniform(0, 1, (4, 5))
        compare_with_torch(lambda a: ours(a, tg.tensor(y)), lambda a: theirs(a, torch.tensor(y)),
                           p)
    else:
        ids = rng.integers(0, 5, 4)
        if takes == "logp":
            x = x - np.log(np.exp(x).sum(1, keepdims=True))
        compare_with_torch(lambda a: ours(a, tg.tensor(ids)),
                           lambda a: theirs(a, torch.tensor(ids)), x)
