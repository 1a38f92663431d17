"""Properties of the autograd engine itself: graph shapes, accumulation, freeing, modes."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
from tinygradlm.autograd import reduce_to_shape

from strategies import T, arrays, broadcastable_pair

# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")


def test_reused_node_gradients_add_up():
    x = T([3.0])
    y = x * x + x            # x used three times
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 * 3.0 + 1])


def test_diamond_graph():
    x = T([2.0])
    a = x * 3                # x -> a -> d
    b = x.exp()              # x -> b -> d
    d = a * b                # d = 3x e^x, d' = 3 e^x (1 + x)
    d.backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.exp(2.0) * 3.0)


def test_intermediate_used_twice_downstream():
    x = T([1.5])
    h = x.tanh()
    y = h * h + h.sigmoid()
    y.backward()
    t = np.tanh(1.5)
    s = 1 / (1 + np.exp(-t))
    np.testing.assert_allclose(x.grad.numpy(), (2 * t + s * (1 - s)) * (1 - t * t))


def test_chain_of_20000_ops_has_no_recursion_limit():
    x = T([1.0])
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 20_000], rtol=1e-9)


def test_leaf_gradients_accumulate_across_backward_calls():
    x = T([1.0, 2.0])
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0])
    x.zero_grad()
    assert x.grad is None
    (x * 4).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 4.0])


def test_second_backward_through_freed_graph_raises():
    x = T([1.0])
    y = (x * x).exp()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_second_backward_through_shared_freed_part_raises():
    x = T([1.0])
    h = x.exp()
    a, b = h * 2, h * 3
    a.backward()
    with pytest.raises(RuntimeError, match="second time"):
        b.backward()


def test_retain_graph_allows_second_backward():
    x = T([1.0, -1.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, -4.0])


def test_no_grad_context_and_decorator():
    x = T([1.0])
    with tg.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None

    @tg.no_grad()
    def f(t):
        return t * 2
    assert not f(x).requires_grad
    assert tg.is_grad_enabled()
    with tg.no_grad():
        with tg.enable_grad():
            assert (x * 2).requires_grad
        assert not tg.is_grad_enabled()


def test_no_grad_restores_mode_after_exception():
    with pytest.raises(ValueError):
        with tg.no_grad():
            raise ValueError
    assert tg.is_grad_enabled()


def test_detach_cuts_the_graph_and_shares_data():
    x = T([2.0])
    d = (x * 3).detach()
    assert not d.requires_grad and d.is_leaf
    y = x * d
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0])


def test_nonleaf_grad_only_with_retain_grad():
    x = T([2.0])
    h = x * 3
    h.retain_grad()
    k = x * 4
    (h * k).sum().backward()
    np.testing.assert_array_equal(h.grad.numpy(), [8.0])
    assert k.grad is None


def test_backward_needs_gradient_for_non_scalar():
    x = T([1.0, 2.0])
    y = x * 2
    with pytest.raises(RuntimeError, match=r"shape \(2,\)"):
        y.backward()
    y.backward(gradient=tg.Tensor([1.0, 0.5], dtype=tg.float64))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 1.0])


def test_backward_gradient_shape_is_checked():
    y = T([1.0, 2.0]) * 2
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\)"):
        y.backward(gradient=np.ones(3))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.Tensor([1.0]).sum().backward()


def test_backward_on_leaf():
    x = T([3.0])
    x.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0])


def test_graph_is_recorded_only_when_an_input_requires_grad():
    a, b = T([1.0], requires_grad=False), T([1.0])
    assert (a * a).grad_fn is None
    assert (a * b).grad_fn.name == "Mul"
    assert (a * b).grad_fn.needs_input_grad == (False, True)


def test_shared_gradient_arrays_are_not_aliased():
    """Add hands the same array to both inputs; the leaves' grads must stay independent."""
    a, b = T([1.0]), T([2.0])
    (a + b).backward()
    a.grad.data *= 10
    np.testing.assert_array_equal(b.grad.numpy(), [1.0])


def test_gradient_dtype_matches_input():
    x = tg.Tensor([1.0, 2.0], requires_grad=True)          # float32
    (x * 2 + tg.Tensor([1, 2])).sum().backward()            # int operand is promoted
    assert x.grad.dtype == np.float32


@given(data=st.data())
def test_reduce_to_shape_sums_broadcast_axes(data):
    small, other = data.draw(broadcastable_pair())
    big = np.broadcast_shapes(small, other)
    g = data.draw(arrays(big))
    # reference: d/dx of sum(broadcast_to(x, big) * g) is what reduce_to_shape must produce
    x = T(np.zeros(small))
    (x.expand(big) * T(g, requires_grad=False)).sum().backward()
    np.testing.assert_allclose(reduce_to_shape(g, small), x.grad.numpy())
    assert reduce_to_shape(g, small).shape == tuple(small)


def test_broadcast_gradient_example():
    x = T(np.ones((3, 1)))
    y = T(np.ones((4, 3, 5)))
    (x * y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 1), 20.0))
    np.testing.assert_array_equal(y.grad.numpy(), np.ones((4, 3, 5)))


def test_manual_seed_makes_every_random_source_repeatable():
    import random
    tg.manual_seed(123)
    first = (tg.randn(3).numpy(), tg.rand(2).numpy(), np.random.rand(), random.random(),
             tg.nn.functional.dropout(tg.ones(8), 0.5).numpy())
    tg.manual_seed(123)
    second = (tg.randn(3).numpy(), tg.rand(2).numpy(), np.random.rand(), random.random(),
              tg.nn.functional.dropout(tg.ones(8), 0.5).numpy())
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_rng_state_round_trip():
    # The saved state is the CPU generator's (CuPy's cannot be saved); on the GPU the
    # training loop reseeds its generator from the CPU one every iteration instead.
    tg.manual_seed(5)
    state = tg.get_rng_state()
    a = tg.randn(4, device="cpu").numpy()
    tg.set_rng_state(state)
    np.testing.assert_array_equal(tg.randn(4, device="cpu").numpy(), a)


def test_one_no_grad_instance_nests_and_decorates_a_recursive_function():
    ng = tg.no_grad()

    @ng
    def depth(n):
        return depth(n - 1) if n else tg.is_grad_enabled()

    assert depth(3) is False and tg.is_grad_enabled()
    with ng:
        with ng:
            assert not tg.is_grad_enabled()
        assert not tg.is_grad_enabled()
        with tg.enable_grad():
            assert tg.is_grad_enabled()
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


def test_gradients_the_walk_adds_in_place_never_reach_another_tensor():
    # Add hands one array to both inputs; the walk then sums more gradients into each.  Summing
    # in place into an array an op handed to two tensors would change the other's gradient.
    x = tg.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    a, b = x * 1.0, x * 1.0             # two non-leaf tensors
    s = a + b                           # s's backward gives a and b the same array
    loss = (s + a * 3.0 + b * 5.0).sum()
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [10.0, 10.0])     # 1 + 1 + 3 + 5
    y = tg.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    z = tg.Tensor(np.array([3.0, 4.0]), requires_grad=True)
    (y + z).sum().backward()            # two leaves, one array from Add
    assert not np.shares_memory(y.grad.numpy(), z.grad.numpy())
    tg.optim.clip_grad_norm_([y, z], 0.5)
    np.testing.assert_allclose(y.grad.numpy(), z.grad.numpy())      # scaled once each


@pytest.mark.parametrize("leaf", [True, False])
def test_split_gradients_are_added_into_one_buffer(leaf):
    # the pieces of a split (slices: SliceGrad) add up to the gradient of the whole, also
    # when other gradients reach the same tensor
    rng = np.random.default_rng(0)
    w = tg.Tensor(rng.standard_normal((2, 3, 6)), requires_grad=True)
    t = w if leaf else w * 2.0
    q, k, v = t.split(2, dim=2)
    loss = (q * 1.0).sum() + (k * 2.0).sum() + (v * 3.0).sum() + (t * t).sum()
    loss.backward()
    scale = 1.0 if leaf else 2.0
    want = np.concatenate([np.full((2, 3, 2), c) for c in (1.0, 2.0, 3.0)], axis=2) * scale
    want = want + 2 * t.numpy() * scale
    np.testing.assert_allclose(w.grad.numpy(), want, rtol=1e-12)
    p = tg.Tensor(rng.standard_normal(5), requires_grad=True)
    p[1:3].sum().backward()                         # a slice of a leaf alone: dense, zeros
    np.testing.assert_array_equal(p.grad.numpy(), [0.0, 1.0, 1.0, 0.0, 0.0])


def test_a_gradient_and_a_view_of_it_from_one_op_stay_apart():
    # a user's Function may return an array for one input and a view of it for another: the
    # walk must not add into the first in place while the second still looks at it
    class TwoFromOne(tg.Function):
        def forward(self, a, b):
            return a + b.reshape(a.shape)

        def backward(self, g):
            ga = g * 1.0
            return ga, ga.reshape(-1)           # a view of ga

    a = tg.Tensor(np.array([[1.0, 2.0]]), requires_grad=True)
    b = tg.Tensor(np.array([3.0, 4.0]), requires_grad=True)
    a2, b2 = a * 1.0, b * 1.0
    out = TwoFromOne.apply(a2, b2)
    (out.sum() + (a2 * 10.0).sum()).backward()  # more gradient into a2 after TwoFromOne's
    np.testing.assert_array_equal(a.grad.numpy(), [[11.0, 11.0]])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])
