"""Convolution, pooling and resizing (tinygradlm/conv.py, ops/windows.py, nn/conv.py).

Every function is gradient-checked in float64 on hypothesis-drawn geometries (batch, channels,
sizes, kernel, stride, padding, dilation, groups), and compared with PyTorch -- value and
gradient along a random upstream gradient -- on a fixed set of configurations that covers the
corner cases (groups, dilation, strides, ceil_mode, count_include_pad, output_padding,
align_corners).  A small CNN must learn to tell horizontal from vertical bars."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm import conv as C
from tinygradlm import nn
from tinygradlm.gradcheck import gradcheck
from tinygradlm.nn import conv as cnn
from tinygradlm.ops.windows import Unfold

from strategies import T, arrays, distinct_arrays

pytestmark = pytest.mark.usefixtures("device")


# --- strategies ---------------------------------------------------------------------------------
@st.composite
def axis(draw, pool=False, max_kernel=3):
    """One spatial axis: (size, kernel, stride, padding, dilation) with at least one window.
    Pooling keeps padding <= half the (dilated) kernel, as PyTorch requires, and a dilated
    window no smaller than the input, so that no window reads padding only (PyTorch returns
    -inf there, and sends the gradient to a wrong element)."""
    k = draw(st.integers(1, max_kernel))
    d = draw(st.integers(1, 2)) if k > 1 else 1
    span = d * (k - 1) + 1
    p = draw(st.integers(0, span // 2 if pool else 2))
    size = draw(st.integers(span if pool and d > 1 else max(1, span - 2 * p), span + 3))
    return size, k, draw(st.integers(1, 2)), p, d


@st.composite
def geometry(draw, n, pool=False):
    """n axes, transposed into (sizes, kernel, stride, padding, dilation) tuples."""
    return tuple(zip(*[draw(axis(pool)) for _ in range(n)]))


def random_array(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape)


# --- gradchecks (hypothesis) --------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2])
@given(data=st.data())
def test_conv_gradcheck(n, device, data):
    size, k, s, p, d = data.draw(geometry(n))
    N, groups = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    cin, cout = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    x = T(data.draw(arrays((N, cin) + size)))
    w = T(data.draw(arrays((cout, cin // groups) + k)))
    b = T(data.draw(arrays((cout,))))
    conv = C.conv1d if n == 1 else C.conv2d
    assert gradcheck(lambda x, w, b: conv(x, w, b, s, p, d, groups), x, w, b)


@given(data=st.data())
def test_conv_same_padding_and_unbatched_gradcheck(device, data):
    k, d = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 2))     # even k: asymmetric
    x = T(data.draw(arrays((2, data.draw(st.integers(1, 5)), 4))))          # (C, H, W)
    w = T(data.draw(arrays((3, 2, k, 2))))
    y = C.conv2d(x, w, padding="same", dilation=d)
    assert y.shape == (3,) + x.shape[1:]
    assert gradcheck(lambda x, w: C.conv2d(x, w, padding="same", dilation=d), x, w)


@pytest.mark.parametrize("n", [1, 2])
@given(data=st.data())
def test_conv_transpose_gradcheck(n, device, data):
    size, k, s, p, d = data.draw(geometry(n))
    size = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    p = tuple(min(pp, ((l - 1) * ss + dd * (kk - 1)) // 2)            # a non-empty output
              for pp, l, ss, kk, dd in zip(p, size, s, k, d))
    extra = tuple(data.draw(st.integers(0, max(ss, dd) - 1)) for ss, dd in zip(s, d))
    N, groups = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    cin, cout = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    x = T(data.draw(arrays((N, cin) + size)))
    w = T(data.draw(arrays((cin, cout // groups) + k)))
    b = T(data.draw(arrays((cout,))))
    convt = C.conv_transpose1d if n == 1 else C.conv_transpose2d
    assert gradcheck(lambda x, w, b: convt(x, w, b, s, p, extra, groups, d), x, w, b)


@pytest.mark.parametrize("n", [1, 2])
@given(data=st.data())
def test_max_pool_gradcheck(n, device, data):
    size, k, s, p, d = data.draw(geometry(n, pool=True))
    ceil_mode = data.draw(st.booleans())
    x = T(data.draw(distinct_arrays((data.draw(st.integers(1, 2)), 2) + size)))   # no ties
    pool = C.max_pool1d if n == 1 else C.max_pool2d
    assert gradcheck(lambda x: pool(x, k, s, p, d, ceil_mode), x)


@pytest.mark.parametrize("n", [1, 2])
@given(data=st.data())
def test_avg_pool_gradcheck(n, device, data):
    size, k, s, p, _ = data.draw(geometry(n, pool=True))
    p = tuple(min(pp, kk // 2) for pp, kk in zip(p, k))           # no dilation: half of k
    ceil_mode, include = data.draw(st.booleans()), data.draw(st.booleans())
    x = T(data.draw(arrays((data.draw(st.integers(1, 2)), 2) + size)))
    if n == 1:
        fn = lambda x: C.avg_pool1d(x, k, s, p, ceil_mode, include)          # noqa: E731
    else:
        divisor = data.draw(st.sampled_from([None, 3]))
        fn = lambda x: C.avg_pool2d(x, k, s, p, ceil_mode, include, divisor)  # noqa: E731
    assert gradcheck(fn, x)


@pytest.mark.parametrize("n", [1, 2])
@given(data=st.data())
def test_adaptive_avg_pool_gradcheck(n, device, data):
    size = tuple(data.draw(st.integers(1, 6)) for _ in range(n))
    out = tuple(data.draw(st.integers(1, 6)) for _ in range(n))
    x = T(data.draw(arrays((2,) + size)))                                  # unbatched
    pool = C.adaptive_avg_pool1d if n == 1 else C.adaptive_avg_pool2d
    assert pool(x, out).shape == (2,) + out
    assert gradcheck(lambda x: pool(x, out), x)


@given(data=st.data())
def test_interpolate_gradcheck(device, data):
    mode = data.draw(st.sampled_from(["nearest", "nearest-exact", "linear", "bilinear", "area"]))
    n = {"linear": 1, "bilinear": 2}.get(mode, data.draw(st.integers(1, 2)))
    size = tuple(data.draw(st.integers(2, 5)) for _ in range(n))       # 0.5 * 2 >= 1 pixel
    x = T(data.draw(arrays((1, 2) + size)))
    align = data.draw(st.booleans()) if mode in ("linear", "bilinear") else None
    if data.draw(st.booleans()):
        kw = dict(size=tuple(data.draw(st.integers(1, 7)) for _ in range(n)))
    else:
        kw = dict(scale_factor=data.draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.5])))
    assert gradcheck(lambda x: C.interpolate(x, mode=mode, align_corners=align, **kw), x)


@given(data=st.data())
def test_unfold_fold_gradcheck(device, data):
    size, k, s, p, d = data.draw(geometry(2))
    x = T(data.draw(arrays((1, 2) + size)))
    cols = C.unfold(x, k, d, p, s)
    assert gradcheck(lambda x: C.unfold(x, k, d, p, s), x)
    c = T(data.draw(arrays(cols.shape)))
    assert gradcheck(lambda c: C.fold(c, size, k, d, p, s), c)


# --- against PyTorch ----------------------------------------------------------------------------
def same_as_torch(name, *arrays_, rtol=1e-9, atol=1e-11, **kw):
    """``conv.<name>(*arrays, **kw)`` against ``torch.nn.functional.<name>``: the value, and
    every input's gradient along a random upstream gradient, in float64."""
    torch = pytest.importorskip("torch")
    ours = [tg.Tensor(a, requires_grad=True) for a in arrays_]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays_]
    out = getattr(C, name)(*ours, **kw)
    ref = getattr(torch.nn.functional, name)(*theirs, **kw)
    assert out.shape == tuple(ref.shape)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=rtol, atol=atol)
    u = random_array(out.shape, seed=1)
    out.backward(tg.Tensor(u))
    ref.backward(torch.tensor(u))
    for mine, their in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad.numpy(), their.grad.numpy(), rtol=rtol, atol=atol)


def distinct(shape):
    """Values without ties (max pooling's gradient is a choice on a tie)."""
    return np.random.default_rng(0).permutation(int(np.prod(shape))).reshape(shape) / 10.0


CONV2D = [dict(), dict(stride=2, padding=1), dict(stride=(2, 1), padding=(0, 2), dilation=(2, 1)),
          dict(groups=2, dilation=2, padding=2), dict(groups=4, stride=3), dict(padding="same"),
          dict(padding="same", dilation=(1, 2)), dict(padding="valid")]


@pytest.mark.filterwarnings("ignore:Using padding='same'")      # torch: a padded copy
@pytest.mark.parametrize("kw", CONV2D, ids=str)
@pytest.mark.parametrize("kernel", [(3, 3), (2, 3), (1, 1)], ids=str)
def test_conv2d_against_pytorch(kw, kernel):
    w = random_array((8, 4 // kw.get("groups", 1)) + kernel, seed=2)
    same_as_torch("conv2d", random_array((2, 4, 7, 6)), w, random_array((8,), seed=3), **kw)


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=2, dilation=2), dict(groups=3),
                                dict(padding="same", dilation=3)], ids=str)
@pytest.mark.parametrize("unbatched", [False, True])
def test_conv1d_against_pytorch(kw, unbatched):
    x = random_array((3, 9) if unbatched else (2, 3, 9))
    same_as_torch("conv1d", x, random_array((6, 3 // kw.get("groups", 1), 4), seed=2), **kw)


CONVT = [dict(), dict(stride=2), dict(stride=2, padding=1, output_padding=1),
         dict(stride=(3, 2), padding=(2, 0), output_padding=(2, 1)),
         dict(groups=2, dilation=2, stride=2), dict(dilation=3, padding=2, output_padding=2),
         dict(groups=4, padding=1)]


@pytest.mark.parametrize("kw", CONVT, ids=str)
def test_conv_transpose2d_against_pytorch(kw):
    w = random_array((4, 4 // kw.get("groups", 1), 3, 3), seed=2)
    same_as_torch("conv_transpose2d", random_array((2, 4, 3, 4)), w, random_array((4,), seed=3),
                  **kw)


@pytest.mark.parametrize("kw", [dict(), dict(stride=3, padding=1, output_padding=2),
                                dict(groups=2, dilation=2)], ids=str)
def test_conv_transpose1d_against_pytorch(kw):
    same_as_torch("conv_transpose1d", random_array((2, 4, 5)), random_array((4, 3, 3), seed=2),
                  **kw)


POOL2D = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
          dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=(2, 3), stride=(2, 1)),
          dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)]
DILATED = [dict(kernel_size=2, dilation=2, padding=1),
           dict(kernel_size=3, dilation=(1, 2), ceil_mode=True, stride=2)]


@pytest.mark.parametrize("kw", POOL2D + DILATED, ids=str)
def test_max_pool2d_against_pytorch(kw):
    torch = pytest.importorskip("torch")
    x = distinct((2, 3, 7, 8))
    same_as_torch("max_pool2d", x, **kw)
    _, mine = C.max_pool2d(tg.Tensor(x), return_indices=True, **kw)
    _, theirs = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


AVG2D = [dict(kernel_size=3, padding=1, count_include_pad=False),
         dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
         dict(kernel_size=2, padding=1, divisor_override=3)]


@pytest.mark.parametrize("kw", POOL2D + AVG2D, ids=str)
def test_avg_pool2d_against_pytorch(kw):
    same_as_torch("avg_pool2d", random_array((2, 3, 7, 8)), **kw)


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                dict(kernel_size=2, dilation=2),
                                dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)], ids=str)
def test_pool1d_against_pytorch(kw):
    x = distinct((2, 3, 9))
    same_as_torch("max_pool1d", x, **kw)
    if "dilation" not in kw:
        for include in (True, False):
            same_as_torch("avg_pool1d", x, count_include_pad=include, **kw)


@pytest.mark.parametrize("out", [(3, 4), (5, 5), (1, 1), (7, None), (4, 9)], ids=str)
def test_adaptive_avg_pool_against_pytorch(out):
    same_as_torch("adaptive_avg_pool2d", random_array((2, 3, 7, 6)), output_size=out)
    same_as_torch("adaptive_avg_pool1d", random_array((3, 6)), output_size=out[0])


INTERP2D = [dict(size=(5, 9)), dict(scale_factor=1.7), dict(scale_factor=(2, 0.5)),
            dict(scale_factor=2), dict(size=(5, 13), mode="nearest-exact"),
            dict(size=(3, 2), mode="area"),
            dict(size=(13, 4), mode="bilinear", align_corners=True),
            dict(size=(13, 4), mode="bilinear", align_corners=False),
            dict(size=(1, 3), mode="bilinear", align_corners=True),
            dict(scale_factor=1.7, mode="bilinear"),
            dict(scale_factor=2.3, mode="bilinear", recompute_scale_factor=True),
            dict(scale_factor=(1.1, 2.1)), dict(scale_factor=(1.1, 1.3), mode="bilinear")]
INTERP1D = [dict(size=13, mode="linear"), dict(size=4, mode="linear"),
            dict(scale_factor=0.6, mode="linear", align_corners=True),
            dict(scale_factor=3, mode="linear"), dict(size=4), dict(scale_factor=2.5)]


@pytest.mark.parametrize("kw", INTERP2D, ids=str)
def test_interpolate2d_against_pytorch(kw):
    same_as_torch("interpolate", random_array((2, 3, 7, 6)), **kw)


@pytest.mark.parametrize("kw", INTERP1D, ids=str)
def test_interpolate1d_against_pytorch(kw):
    same_as_torch("interpolate", random_array((2, 3, 7)), **kw)


def test_unfold_and_fold_against_pytorch():
    kw = dict(kernel_size=(2, 3), dilation=(1, 2), padding=1, stride=(2, 1))
    same_as_torch("unfold", random_array((2, 3, 6, 7)), **kw)
    same_as_torch("fold", random_array((2, 3 * 6, 4 * 5)), output_size=(6, 7), **kw)


def test_max_pool_ties_give_the_gradient_to_one_element():
    """Equal values in a window: the whole gradient goes to the first of them, as PyTorch."""
    x = np.zeros((1, 2, 4, 6))
    x[0, 1, :2, :2] = 1.0                                   # a tie of four ones
    same_as_torch("max_pool2d", x, kernel_size=2)
    same_as_torch("max_pool2d", x, kernel_size=3, stride=1)  # overlapping windows
    t = tg.Tensor(x, requires_grad=True)
    C.max_pool2d(t, 3, stride=1).sum().backward()
    g = t.grad.numpy()
    assert g.sum() == 2 * 2 * 4 and np.all(g == np.round(g))   # whole units: never split
    np.testing.assert_array_equal(g[0, 0, :2, :4], 1)          # all zeros: each window's first


# --- clear errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: C.conv2d(tg.zeros(1, 3, 5, 5), tg.zeros(4, 2, 3, 3)), "expects 2 input channels"),
    (lambda: C.conv2d(tg.zeros(1, 4, 5, 5), tg.zeros(3, 2, 3, 3), groups=2), "groups=2"),
    (lambda: C.conv2d(tg.zeros(1, 3, 5, 5), tg.zeros(4, 1, 3, 3), groups=3), "groups=3"),
    (lambda: C.conv2d(tg.zeros(1, 1, 3, 3), tg.zeros(1, 1, 5, 5)), "larger than the padded"),
    (lambda: C.conv2d(tg.zeros(1, 1, 4, 4), tg.zeros(1, 1, 3, 3), dilation=2), r"dilated: \(5, 5"),
    (lambda: C.conv2d(tg.zeros(1, 5, 5), tg.zeros(1, 1, 3)), "4-D weight"),
    (lambda: C.conv2d(tg.zeros(5, 5), tg.zeros(1, 1, 3, 3)), "4-D input"),
    (lambda: C.conv2d(tg.zeros(1, 1, 5, 5), tg.zeros(2, 1, 3, 3), tg.zeros(3)), r"bias.*\(2,\)"),
    (lambda: C.conv2d(tg.zeros(1, 1, 5, 5), tg.zeros(2, 1, 3, 3), stride=2, padding="same"),
     "strided"),
    (lambda: C.conv2d(tg.zeros(1, 1, 5, 5), tg.zeros(2, 1, 3, 3), stride=0), "stride"),
    (lambda: C.conv1d(tg.zeros(1, 1, 5), tg.zeros(2, 1, 3), padding="full"), "'full'"),
    (lambda: C.conv_transpose2d(tg.zeros(1, 3, 4, 4), tg.zeros(2, 1, 3, 3)), "expects 2 input"),
    (lambda: C.conv_transpose2d(tg.zeros(1, 3, 4, 4), tg.zeros(3, 1, 3, 3), groups=2), "groups"),
    (lambda: C.conv_transpose1d(tg.zeros(1, 1, 4), tg.zeros(1, 1, 3), stride=2, output_padding=2),
     "output_padding"),
    (lambda: C.max_pool2d(tg.zeros(1, 1, 4, 4), 3, padding=2), "at most half"),
    (lambda: C.max_pool2d(tg.zeros(1, 1, 2, 2), 3), "too small"),
    (lambda: C.avg_pool2d(tg.zeros(1, 1, 4, 4, dtype=tg.int64), 2), "floating-point"),
    (lambda: C.adaptive_avg_pool2d(tg.zeros(1, 1, 4, 4), (2, 2, 2)), "output_size"),
    (lambda: C.interpolate(tg.zeros(1, 1, 4, 4), size=3, mode="linear"), "3-D input"),
    (lambda: C.interpolate(tg.zeros(1, 1, 4), size=3, mode="cubic"), "unknown mode"),
    (lambda: C.interpolate(tg.zeros(1, 1, 4), size=3, scale_factor=2), "exactly one"),
    (lambda: C.interpolate(tg.zeros(1, 1, 4), size=3, align_corners=True), "align_corners"),
    (lambda: C.fold(tg.zeros(1, 8, 5), (4, 4), 2), r"\(N, C\*4, 9\)"),
    (lambda: Unfold.apply(tg.zeros(1, 2), kernel_size=(3,)), "larger than"),
])
def test_clear_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- modules ------------------------------------------------------------------------------------
def test_module_parameters_and_init():
    tg.manual_seed(0)
    m = cnn.Conv2d(4, 6, (3, 2), groups=2)
    assert m.weight.shape == (6, 2, 3, 2) and m.bias.shape == (6,)
    assert np.abs(m.weight.numpy()).max() <= 1 / np.sqrt(2 * 3 * 2)
    assert np.abs(m.weight.numpy()).max() > 0.8 / np.sqrt(2 * 3 * 2)      # uses the range
    t = cnn.ConvTranspose2d(4, 6, 3, groups=2, bias=False)
    assert t.weight.shape == (4, 3, 3, 3) and t.bias is None
    assert np.abs(t.weight.numpy()).max() <= 1 / np.sqrt(3 * 9)
    assert cnn.Conv1d(2, 3, 5).weight.shape == (3, 2, 5)
    assert cnn.ConvTranspose1d(2, 3, 5).weight.shape == (2, 3, 5)
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    with pytest.raises(ValueError, match="divisible by groups"):
        cnn.Conv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="strided"):
        cnn.Conv2d(4, 6, 3, stride=2, padding="same")


def test_modules_equal_functional():
    x = tg.Tensor(random_array((2, 4, 8, 8)), dtype=tg.float32)       # the modules' dtype
    m = cnn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    np.testing.assert_array_equal(m(x).numpy(), C.conv2d(x, m.weight, m.bias, 2, 1, 1, 2).numpy())
    t = cnn.ConvTranspose2d(4, 2, 3, stride=2, padding=1)
    assert t(x, output_size=(16, 16)).shape == (2, 2, 16, 16)
    assert t(x).shape == (2, 2, 15, 15)
    x1 = x[:, :, 0]
    assert cnn.Conv1d(4, 3, 3, padding="same")(x1).shape == (2, 3, 8)
    assert cnn.ConvTranspose1d(4, 3, 2, stride=2)(x1).shape == (2, 3, 16)
    assert cnn.MaxPool2d(2)(x).shape == (2, 4, 4, 4)
    assert cnn.MaxPool1d(3, 2, ceil_mode=True)(x1).shape == (2, 4, 4)
    assert len(cnn.MaxPool2d(2, return_indices=True)(x)) == 2
    np.testing.assert_array_equal(cnn.AvgPool2d(3, 1, 1, count_include_pad=False)(x).numpy(),
                                  C.avg_pool2d(x, 3, 1, 1, count_include_pad=False).numpy())
    assert cnn.AvgPool1d(2)(x1).shape == (2, 4, 4)
    assert cnn.AdaptiveAvgPool2d((1, 3))(x).shape == (2, 4, 1, 3)
    assert cnn.AdaptiveAvgPool1d(5)(x1).shape == (2, 4, 5)
    assert cnn.Upsample(scale_factor=2, mode="bilinear")(x).shape == (2, 4, 16, 16)
    assert cnn.Flatten()(x).shape == (2, 256)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, "same", (2, 1)], ids=str)
def test_conv_padding_modes_as_pytorch(mode, padding):
    """Conv1d/Conv2d with padding_mode: the input is padded by F.pad, then convolved."""
    torch = pytest.importorskip("torch")
    for n, shape in ((1, (2, 3, 7)), (2, (2, 3, 6, 7))):
        if n == 1 and isinstance(padding, tuple):
            continue
        kw = dict(padding=padding, padding_mode=mode, dilation=2 if padding == "same" else 1)
        ours = getattr(nn, f"Conv{n}d")(3, 4, 3, **kw)
        theirs = getattr(torch.nn, f"Conv{n}d")(3, 4, 3, dtype=torch.float64, **kw)
        for p in ("weight", "bias"):
            setattr(ours, p, nn.Parameter(tg.tensor(getattr(theirs, p).detach().numpy())))
        x = random_array(shape)
        mine, ref = tg.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        out, expected = ours(mine), theirs(ref)
        np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-9, atol=1e-11)
        out.backward(tg.Tensor(random_array(out.shape, 1)))
        expected.backward(torch.tensor(random_array(out.shape, 1)))
        np.testing.assert_allclose(mine.grad.numpy(), ref.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(),
                                   rtol=1e-9, atol=1e-11)
        assert repr(ours) == repr(theirs).replace(", dtype=torch.float64", "")


def test_module_repr_as_pytorch():
    torch = pytest.importorskip("torch")
    pairs = [("Conv2d", (3, 8, 3)), ("Conv2d", (4, 8, (3, 2), 2, 1, 2, 2, False)),
             ("Conv1d", (3, 8, 3, 1, "same")), ("ConvTranspose2d", (4, 2, 3, 2, 1, 1)),
             ("ConvTranspose1d", (4, 2, 3)), ("MaxPool2d", (2,)), ("MaxPool1d", (3, 2, 1)),
             ("AvgPool2d", (3, 2, 1)), ("AvgPool1d", (2,)), ("AdaptiveAvgPool2d", ((1, 1),)),
             ("AdaptiveAvgPool1d", (4,)), ("Flatten", ())]
    for name, args in pairs:
        assert repr(getattr(cnn, name)(*args)) == repr(getattr(torch.nn, name)(*args)), name
    for kw in (dict(scale_factor=2), dict(size=(3, 4), mode="bilinear")):
        assert repr(cnn.Upsample(**kw)) == repr(torch.nn.Upsample(**kw))


def test_small_cnn_learns_bars():
    """Horizontal or vertical bar in a noisy 8x8 image: a two-conv CNN learns it."""
    tg.manual_seed(0)
    rng = np.random.default_rng(0)

    def batch(n):
        labels = rng.integers(0, 2, n)
        images = rng.normal(0, 0.3, (n, 1, 8, 8))
        for i, (label, pos, start) in enumerate(zip(labels, rng.integers(0, 8, n),
                                                    rng.integers(0, 3, n))):
            if label:
                images[i, 0, start:start + 6, pos] += 1.0      # vertical
            else:
                images[i, 0, pos, start:start + 6] += 1.0      # horizontal
        return tg.Tensor(images.astype(np.float32)), tg.Tensor(labels)

    model = nn.Sequential(cnn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), cnn.MaxPool2d(2),
                          cnn.Conv2d(8, 8, 3, padding=1), cnn.AdaptiveAvgPool2d(1),
                          cnn.Flatten(), nn.Linear(8, 2))
    opt = tg.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        x, y = batch(32)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = batch(500)
    with tg.no_grad():
        accuracy = (model(x).argmax(dim=1).numpy() == y.numpy()).mean()
    assert accuracy >= 0.95, accuracy
