"""PyTorch's movement ops, einsum, padding and factories (issue 13): each differentiable one
gradient-checked in float64 on hypothesis-drawn shapes, and compared with PyTorch -- value
and gradient -- when torch is installed."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm.gradcheck import gradcheck

from strategies import T, arrays, compare_with_torch, shapes

pytestmark = pytest.mark.usefixtures("device")

# name -> f(x) for x of at least one dim
MOVES = {
    "flip": lambda x: x.flip(0, -1),
    "roll": lambda x: x.roll(1, -1),
    "roll_dims": lambda x: x.roll((2, -1), (0, -1)),
    "roll_flat": lambda x: x.roll(3),
    "repeat": lambda x: x.repeat(*(2,) * x.ndim),
    "repeat_new_dims": lambda x: x.repeat(2, *(1,) * x.ndim),
    "repeat_interleave": lambda x: x.repeat_interleave(2, dim=-1),
    "unflatten": lambda x: x.flatten().unflatten(0, (1, -1)),
    "unfold": lambda x: x.unfold(-1, 1, 1) if x.shape[-1] < 2 else x.unfold(-1, 2, 1),
    "narrow": lambda x: x.narrow(0, 0, 1),
    "pad_constant": lambda x: F.pad(x, (1, 2), value=0.5),
    "pad_crop": lambda x: F.pad(x, (-1, 1)) if x.shape[-1] > 1 else F.pad(x, (1, -1)),
    "pad_reflect": lambda x: F.pad(x, (x.shape[-1] - 1, 0)),
    "pad_replicate": lambda x: F.pad(x, (2, 1), mode="replicate"),
    "pad_circular": lambda x: F.pad(x, (1, x.shape[-1]), mode="circular"),
    "einsum_trace": lambda x: tg.einsum("i...i", x) if x.ndim >= 2 and x.shape[0] == x.shape[-1]
    else tg.einsum("i...->...", x),
    "einsum_outer": lambda x: tg.einsum("...,j->...j", x, x.flatten()),
}


@pytest.mark.parametrize("name", sorted(MOVES))
@given(data=st.data())
def test_movement_gradcheck(name, device, data):
    x = T(data.draw(arrays(data.draw(shapes(min_dims=1, max_dims=3)))), device=device)
    assert gradcheck(MOVES[name], x)


@given(data=st.data())
def test_einsum_gradcheck(device, data):
    b, i, j, k = (data.draw(st.integers(1, 3)) for _ in range(4))
    x = T(data.draw(arrays((b, i, j))), device=device)
    y = T(data.draw(arrays((b, j, k))), device=device)
    z = T(data.draw(arrays((k,))), device=device)
    assert gradcheck(lambda p, q: tg.einsum("bij,bjk->bik", p, q), x, y)
    assert gradcheck(lambda p, q, r: tg.einsum("bij,bjk,k->i", p, q, r), x, y, z)
    assert gradcheck(lambda p, q: tg.einsum("bij,bjk", p, q), x, y)      # implicit: "bik"
    assert gradcheck(lambda p: tg.einsum("bij->j", p), x)
    w = T(data.draw(arrays((1, j, k))), device=device)                   # b broadcasts
    assert gradcheck(lambda p, q: tg.einsum("bij,bjk->bik", p, q), x, w)


def test_movement_against_pytorch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    a = np.random.default_rng(6).standard_normal((2, 3, 4))
    same = [  # the same call spelled the same way on both sides
        lambda x: x.flip(0, 2), lambda x: x.flip((1,)), lambda x: x.roll(2, 1),
        lambda x: x.roll((1, -2), (0, 2)), lambda x: x.roll(5), lambda x: x.repeat(2, 1, 3),
        lambda x: x.repeat(2, 1, 1, 2), lambda x: x.unflatten(2, (2, -1)),
        lambda x: x.unfold(2, 2, 1), lambda x: x.unfold(1, 2, 2), lambda x: x.narrow(2, 1, 2),
        lambda x: x.narrow(-1, -3, 2), lambda x: x.repeat_interleave(2, dim=1),
    ]
    for fn in same:
        compare_with_torch(fn, fn, a)
    for pad, mode in [((1, 2), "constant"), ((1, 2, 0, 1), "constant"), ((-1, 1), "constant"),
                      ((2, 3), "reflect"), ((1, 1, 2, 0), "reflect"), ((3, 1), "replicate"),
                      ((1, 2, 2, 1), "replicate"), ((2, 4), "circular"),
                      ((1, 0, 1, 2), "circular")]:
        compare_with_torch(lambda x: F.pad(x, pad, mode), lambda x: tF.pad(x, pad, mode), a)
    compare_with_torch(lambda x: F.pad(x, (1, 1), value=-2.5),
                       lambda x: tF.pad(x, (1, 1), value=-2.5), a)


def test_einsum_against_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    sq, v = rng.standard_normal((3, 3)), rng.standard_normal(4)
    for eq, arrays_ in [("bij,bjk->bik", (a, b)), ("bij,bjk->", (a, b)), ("bij,bjk", (a, b)),
                        ("...ij,...jk->...ik", (a, b)), ("bij->jb", (a,)), ("ii->i", (sq,)),
                        ("ii", (sq,)), ("ij,ij->i", (sq, sq)), ("i,j->ij", (v, v)),
                        ("bij,j->bi", (a, v)), ("b i j -> b j i", (a,)), ("ij,jk", (sq, sq)),
                        ("...j,j", (a, v)), ("Bij->iB", (a,))]:
        compare_with_torch(lambda *xs: tg.einsum(eq, *xs),
                           lambda *xs: torch.einsum(eq, *xs), *arrays_)
    compare_with_torch(lambda x, y: tg.einsum("bij,bjk->bik", [x, y]),       # a list too
                       lambda x, y: torch.einsum("bij,bjk->bik", [x, y]), a, b)


def test_einsum_errors_name_the_problem():
    x = tg.ones(2, 3)
    with pytest.raises(ValueError, match="names 2 operands but 1 were given"):
        tg.einsum("ij,jk->ik", x)
    with pytest.raises(ValueError, match=r"operand 0 has 2 dims \(2, 3\) but subscripts 'ijk'"):
        tg.einsum("ijk->i", x)
    with pytest.raises(ValueError, match="output subscript 'q'"):
        tg.einsum("ij->q", x)
    with pytest.raises(ValueError, match="use letters"):
        tg.einsum("i1->i", x)


def test_factories_as_pytorch():
    torch = pytest.importorskip("torch")
    x = tg.tensor([[1.5, 2.0]], dtype=tg.float64)
    assert tg.eye(3).tolist() == torch.eye(3).tolist() and tg.eye(2, 3).shape == (2, 3)
    assert tg.eye(2, dtype=tg.int64).dtype == tg.int64
    assert np.allclose(tg.linspace(-1, 2, 7).numpy(), torch.linspace(-1, 2, 7).numpy())
    assert tg.linspace(0, 1, 1).tolist() == [0.0] and tg.linspace(0, 1, 0).shape == (0,)
    assert tg.empty(2, 3).shape == (2, 3) and tg.empty(2).dtype == tg.float32
    assert tg.full_like(x, 7).tolist() == [[7.0, 7.0]] and tg.full_like(x, 7).dtype == tg.float64
    for like in (tg.zeros_like, tg.ones_like, tg.rand_like, tg.randn_like, tg.empty_like):
        y = like(x)
        assert y.shape == x.shape and y.dtype == tg.float64 and not y.requires_grad
        assert like(x, dtype=tg.float32, requires_grad=True).requires_grad
    assert ((tg.rand_like(tg.zeros(1000)) >= 0) & (tg.rand_like(tg.zeros(1000)) < 1)).all()
    a, b = torch.arange(3), torch.arange(4)
    for indexing in ("ij", "xy"):
        mine = tg.meshgrid(tg.arange(3), tg.arange(4), indexing=indexing)
        ref = torch.meshgrid(a, b, indexing=indexing)
        assert [m.tolist() for m in mine] == [r.tolist() for r in ref]
    x, y = tg.tensor([1.0, 2.0], requires_grad=True), tg.tensor([3.0, 4.0, 5.0],
                                                                  requires_grad=True)
    gx, gy = tg.meshgrid([x, y])
    (gx * gy).sum().backward()                  # each value meets every value of the other
    assert x.grad.tolist() == [12.0, 12.0] and y.grad.tolist() == [3.0, 3.0, 3.0]


def test_function_forms_are_the_methods():
    x = tg.tensor([[0.5, -1.0], [2.0, 0.25]])
    assert tg.sin(x).tolist() == x.sin().tolist()
    assert tg.gather(x, 1, tg.tensor([[1], [0]])).tolist() == [[-1.0], [2.0]]
    assert tg.max(x).item() == 2.0 and tg.max(x, 1).indices.tolist() == [0, 0]
    assert tg.sum(x, dim=0).tolist() == [2.5, -0.75] and tg.clamp(x, 0, 1).tolist() == [
        [0.5, 0.0], [1.0, 0.25]]
    assert tg.all(x > -2).item() and not tg.any(x > 5).item()
    assert tg.topk(x, 1).values.tolist() == [[0.5], [2.0]]
    assert sorted(set(tg.function_forms.__all__)) == sorted(tg.function_forms.__all__)
    assert all(hasattr(tg, name) for name in tg.function_forms.__all__)


def test_bad_padding_and_movement_get_clear_errors():
    x = tg.zeros(2, 3)
    with pytest.raises(ValueError, match=r"pad: expects \(left, right\) pairs"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match="reflect padding of \\(3, 0\\) .* at most 2"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="mode must be"):
        F.pad(x, (1, 1), mode="mirror")
    with pytest.raises(ValueError, match="negative size"):
        F.pad(x, (-2, -2))
    with pytest.raises(ValueError, match="repeat: 1 sizes for a tensor with 2 dims"):
        x.repeat(2)
    with pytest.raises(ValueError, match="unfold: windows of size 4"):
        x.unfold(1, 4, 1)
    with pytest.raises(IndexError, match=r"narrow: \[2, 4\) is outside dim 1"):
        x.narrow(1, 2, 2)
    with pytest.raises(ValueError, match="roll: 2 shifts for 1 dims"):
        x.roll((1, 2), 0)
    with pytest.raises(ValueError, match="meshgrid: expects 0-d or 1-D"):
        tg.meshgrid(x, x)
