"""The fused Adam/AdamW update (one Numba pass per parameter, ``kernels/adam.py``) against the
reference update written with array operations in ``optim.Adam.update``: the same parameters
and moments after several steps, float32 and float64, with and without weight decay."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
from tinygradlm import kernels, optim

TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def run(mode, cls, arrays, grads, **hyper):
    """``len(grads)`` steps of ``cls`` under kernel ``mode``; the parameters and moments."""
    params = [tg.Tensor(a.copy(), requires_grad=True) for a in arrays]
    opt = cls(params, **hyper)
    with kernels.use(mode):
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = tg.Tensor(g)
            opt.step()
    states = [opt.state[id(p)] for p in params]
    return ([p.numpy() for p in params], [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states])


@given(dtype=st.sampled_from([np.float32, np.float64]),
       shapes=st.lists(st.lists(st.integers(1, 5), min_size=0, max_size=3), min_size=1,
                       max_size=3),
       decoupled=st.booleans(), lr=st.sampled_from([1e-3, 0.1]),
       betas=st.sampled_from([(0.9, 0.999), (0.8, 0.95)]), eps=st.sampled_from([1e-8, 1e-3]),
       weight_decay=st.sampled_from([0.0, 0.1]), steps=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1))
def test_fused_adam_equals_reference(dtype, shapes, decoupled, lr, betas, eps, weight_decay,
                                     steps, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    cls = optim.AdamW if decoupled else optim.Adam
    hyper = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    fused, ref = run("fused", cls, arrays, grads, **hyper), run("reference", cls, arrays, grads,
                                                                 **hyper)
    # Each step moves a weight by up to ~lr, and m by up to ~|g|: where the result is close to 0
    # after such moves (a cancellation), the error is relative to the moves, not to the result.
    rtol = TOL[dtype]["rtol"]
    g_max = max((float(np.abs(g).max()) for gs in grads for g in gs if g.size), default=1.0)
    moves = {"p": lr * steps, "m": g_max, "v": g_max ** 2}
    for what, got_list, want_list in zip("pmv", fused, ref):
        atol = TOL[dtype]["atol"] + rtol * moves[what]
        for got, want in zip(got_list, want_list):
            assert got.dtype == dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_fused_adam_is_used_and_the_reference_covers_the_rest(monkeypatch):
    calls = []
    fused = kernels.load("adam_step")
    monkeypatch.setattr("tinygradlm.kernels.adam.adam_step",
                        lambda *a: (calls.append(a[0].shape), fused(*a))[1])
    kernels.load.cache_clear()
    try:
        p = tg.randn(3, 4, requires_grad=True)
        opt = optim.AdamW([p], weight_decay=0.1)
        p.grad = tg.randn(3, 4)
        opt.step()
        assert calls == [(3, 4)]
        p.grad = tg.Tensor(np.asfortranarray(np.ones((3, 4), np.float32)))  # not C-contiguous
        opt.step()
        with kernels.use("reference"):
            opt.step()
        assert calls == [(3, 4)] and opt.state[id(p)]["step"] == 3
    finally:
        kernels.load.cache_clear()


@pytest.mark.parametrize("mode", ["fused", "reference"])
def test_adamw_keeps_an_infinite_weight_infinite(mode):
    # AdamW has no L2 term: 0 * inf must not turn the weight into nan
    p = tg.Tensor(np.array([np.inf, 1.0], np.float32), requires_grad=True)
    opt = optim.AdamW([p], weight_decay=0.0)
    p.grad = tg.Tensor(np.array([1.0, 1.0], np.float32))
    with kernels.use(mode):
        opt.step()
    assert np.isinf(p.numpy()[0]) and np.isfinite(p.numpy()[1])
