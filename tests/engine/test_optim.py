"""Optimizers, gradient clipping and learning-rate schedules: each update checked against its
formula written out in NumPy, and (when PyTorch is installed) against torch.optim over several
steps in float64; parameter groups, state_dict round trips and errors."""
import math

import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm import nn, optim

from strategies import shares_memory, host
# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")

RTOL = 1e-13


def make_params(shapes=((3, 4), (4,), (2, 2, 3)), seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    return arrays, [nn.Parameter(tg.Tensor(a.copy())) for a in arrays]


def grad_seq(shapes, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = tg.Tensor(g.copy())


SHAPES = ((3, 4), (4,), (2, 2, 3))


# --- SGD by hand ------------------------------------------------------------------------------
def sgd_reference(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD's documented algorithm, one parameter, every step; returns the path."""
    p, buf, path = p.copy(), None, []
    for g in grads:
        g = g + weight_decay * p if weight_decay else g
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        path.append(p.copy())
    return path


def test_sgd_plain_one_step():
    arrays, params = make_params()
    (grads,) = grad_seq(SHAPES, 1)
    opt = optim.SGD(params, lr=0.1)
    set_grads(params, grads)
    opt.step()
    for p, a, g in zip(params, arrays, grads):
        np.testing.assert_allclose(p.numpy(), a - 0.1 * g, rtol=RTOL, atol=0)


@pytest.mark.parametrize("kw", [
    dict(momentum=0.9),
    dict(momentum=0.9, weight_decay=0.1),
    dict(momentum=0.8, dampening=0.3, weight_decay=0.05),
    dict(momentum=0.9, nesterov=True),
    dict(momentum=0.7, nesterov=True, weight_decay=0.2),
])
def test_sgd_momentum_matches_hand_formula(kw):
    """Two steps, so the second uses (and updates) the momentum buffer from the first."""
    lr = 0.05
    arrays, params = make_params()
    seq = grad_seq(SHAPES, 2)
    opt = optim.SGD(params, lr=lr, **kw)
    for step in range(2):
        set_grads(params, seq[step])
        opt.step()
        for i, (p, a) in enumerate(zip(params, arrays)):
            ref = sgd_reference(a, [s[i] for s in seq[:step + 1]], lr, **kw)[-1]
            np.testing.assert_allclose(p.numpy(), ref, rtol=RTOL, atol=1e-15)


def test_sgd_momentum_explicit_numbers():
    """The same update with every term written inline (no helper to share a mistake with)."""
    p0, g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.25]), np.array([-1.0, 2.0])
    lr, mu, wd = 0.1, 0.9, 0.01
    p = nn.Parameter(tg.Tensor(p0.copy()))
    opt = optim.SGD([p], lr=lr, momentum=mu, weight_decay=wd, nesterov=True)
    p.grad = tg.Tensor(g1)
    opt.step()
    d1 = g1 + wd * p0
    b1 = d1
    p1 = p0 - lr * (d1 + mu * b1)
    np.testing.assert_allclose(p.numpy(), p1, rtol=RTOL)
    p.grad = tg.Tensor(g2)
    opt.step()
    d2 = g2 + wd * p1
    b2 = mu * b1 + d2
    p2 = p1 - lr * (d2 + mu * b2)
    np.testing.assert_allclose(p.numpy(), p2, rtol=RTOL)
    np.testing.assert_allclose(host(opt.state[id(p)]["momentum_buffer"]), b2, rtol=RTOL)


def test_sgd_nesterov_needs_momentum():
    _, params = make_params()
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(params, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


def test_step_skips_params_without_grad_and_zero_grad():
    arrays, params = make_params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    params[0].grad = tg.Tensor(np.ones(SHAPES[0]))
    opt.step()
    np.testing.assert_array_equal(params[1].numpy(), arrays[1])
    np.testing.assert_array_equal(params[2].numpy(), arrays[2])
    np.testing.assert_allclose(params[0].numpy(), arrays[0] - 0.1, rtol=RTOL)
    assert id(params[1]) not in opt.state
    opt.zero_grad(set_to_none=False)
    assert params[0].grad is not None and not params[0].grad.numpy().any()
    assert params[1].grad is None
    opt.zero_grad()
    assert all(p.grad is None for p in params)


# --- Adam / AdamW by hand ---------------------------------------------------------------------
def adam_reference(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   decoupled=False):
    b1, b2 = betas
    p, m, v, path = p.copy(), np.zeros_like(p), np.zeros_like(p), []
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        path.append(p.copy())
    return path


@pytest.mark.parametrize("cls,kw,decoupled", [
    (optim.Adam, dict(), False),
    (optim.Adam, dict(weight_decay=0.1), False),
    (optim.Adam, dict(betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3), False),
    (optim.AdamW, dict(), True),                       # default weight_decay = 1e-2
    (optim.AdamW, dict(weight_decay=0.1), True),
    (optim.AdamW, dict(betas=(0.85, 0.99), eps=1e-4, weight_decay=0.5), True),
])
def test_adam_family_one_and_two_steps_match_hand_formula(cls, kw, decoupled):
    lr = 0.01
    arrays, params = make_params()
    seq = grad_seq(SHAPES, 2)
    opt = cls(params, lr=lr, **kw)
    ref_kw = dict(kw)
    if cls is optim.AdamW:
        ref_kw.setdefault("weight_decay", 1e-2)
    for step in range(2):
        set_grads(params, seq[step])
        opt.step()
        for i, (p, a) in enumerate(zip(params, arrays)):
            ref = adam_reference(a, [s[i] for s in seq[:step + 1]], lr, decoupled=decoupled,
                                 **ref_kw)[-1]
            np.testing.assert_allclose(p.numpy(), ref, rtol=1e-12, atol=1e-15)
        assert all(opt.state[id(p)]["step"] == step + 1 for p in params)


def test_adam_first_step_is_lr_times_sign():
    """With bias correction, step one moves every element by lr * g/(|g| + eps) ~ lr sign(g)."""
    p0 = np.array([0.0, 1.0, -1.0, 3.0])
    g = np.array([2.0, -0.5, 1e-3, -7.0])
    p = nn.Parameter(tg.Tensor(p0.copy()))
    opt = optim.Adam([p], lr=0.1)
    p.grad = tg.Tensor(g)
    opt.step()
    np.testing.assert_allclose(p.numpy(), p0 - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_adamw_decay_is_decoupled_from_adam_l2():
    """Same hyper-parameters, different results: AdamW decays the weights, Adam the gradient."""
    p0, g = np.array([5.0, -3.0]), np.array([0.1, 0.1])
    out = {}
    for cls in (optim.Adam, optim.AdamW):
        p = nn.Parameter(tg.Tensor(p0.copy()))
        opt = cls([p], lr=0.1, weight_decay=0.5)
        p.grad = tg.Tensor(g)
        opt.step()
        out[cls.__name__] = p.numpy()
    # AdamW: p (1 - lr wd) - lr sign(g); Adam: L2 term flips the sign of the first element's step.
    np.testing.assert_allclose(out["AdamW"], p0 * (1 - 0.05) - 0.1 * g / (np.abs(g) + 1e-8),
                               rtol=1e-12)
    g_l2 = g + 0.5 * p0
    np.testing.assert_allclose(out["Adam"], p0 - 0.1 * g_l2 / (np.abs(g_l2) + 1e-8), rtol=1e-12)


# --- against torch.optim ---------------------------------------------------------------------
def _run_both(torch, ours_cls, torch_cls, kw, steps=6, groups=None):
    arrays, params = make_params()
    tparams = [torch.nn.Parameter(torch.tensor(a.copy())) for a in arrays]
    if groups is None:
        opt, topt = ours_cls(params, **kw), torch_cls(tparams, **kw)
    else:
        opt = ours_cls([{**g, "params": [params[i] for i in g["params"]]} for g in groups], **kw)
        topt = torch_cls([{**g, "params": [tparams[i] for i in g["params"]]} for g in groups],
                         **kw)
    for grads in grad_seq(SHAPES, steps, seed=7):
        set_grads(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    return params


@pytest.mark.parametrize("kw", [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, dampening=0.2, weight_decay=0.05),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
])
def test_sgd_matches_torch(kw):
    torch = pytest.importorskip("torch")
    _run_both(torch, optim.SGD, torch.optim.SGD, kw)


@pytest.mark.parametrize("kw", [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.003, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.2),
])
def test_adam_matches_torch(kw):
    torch = pytest.importorskip("torch")
    _run_both(torch, optim.Adam, torch.optim.Adam, kw)


@pytest.mark.parametrize("kw", [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.003, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.5),
])
def test_adamw_matches_torch(kw):
    torch = pytest.importorskip("torch")
    _run_both(torch, optim.AdamW, torch.optim.AdamW, kw)


def test_adamw_param_groups_match_torch():
    torch = pytest.importorskip("torch")
    groups = [{"params": [0, 2], "weight_decay": 0.1}, {"params": [1], "weight_decay": 0.0,
                                                         "lr": 0.05}]
    _run_both(torch, optim.AdamW, torch.optim.AdamW, dict(lr=0.01), groups=groups)


# --- parameter groups ------------------------------------------------------------------------
class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(7, 4)
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 5)
        self.head = nn.Linear(5, 7, bias=False)


def test_weight_decay_groups_split_by_ndim():
    m = TinyLM()
    decay, no_decay = optim.weight_decay_groups(m.named_parameters(), 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(m.wte.weight), id(m.fc.weight),
                                                id(m.head.weight)]
    assert [id(p) for p in no_decay["params"]] == [id(m.ln.weight), id(m.ln.bias),
                                                   id(m.fc.bias)]
    opt = optim.AdamW(optim.weight_decay_groups(m.named_parameters(), 0.1), lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)


def test_adamw_zero_grad_bias_untouched_matrix_shrinks():
    m = TinyLM().double()
    opt = optim.AdamW(optim.weight_decay_groups(m.named_parameters(), 0.1), lr=0.01)
    before = {n: p.numpy().copy() for n, p in m.named_parameters()}
    for p in m.parameters():
        p.grad = tg.zeros_like(p)
    opt.step()
    after = {n: p.numpy() for n, p in m.named_parameters()}
    for n in ("ln.weight", "ln.bias", "fc.bias"):
        np.testing.assert_array_equal(after[n], before[n])
    for n in ("wte.weight", "fc.weight", "head.weight"):
        np.testing.assert_allclose(after[n], before[n] * (1 - 0.01 * 0.1), rtol=1e-15)
        assert np.all(np.abs(after[n]) < np.abs(before[n]))


def test_param_groups_keep_their_own_hyperparameters():
    arrays, params = make_params()
    opt = optim.SGD([{"params": params[:1], "lr": 1.0}, {"params": params[1:]}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.1]
    set_grads(params, [np.ones(s) for s in SHAPES])
    opt.step()
    np.testing.assert_allclose(params[0].numpy(), arrays[0] - 1.0, rtol=RTOL)
    np.testing.assert_allclose(params[1].numpy(), arrays[1] - 0.1, rtol=RTOL)


# --- gradient clipping -----------------------------------------------------------------------
def _params_with_grads(scale, seed=3):
    rng = np.random.default_rng(seed)
    params = [nn.Parameter(tg.Tensor(rng.standard_normal(s))) for s in SHAPES]
    grads = [rng.standard_normal(s) * scale for s in SHAPES]
    set_grads(params, grads)
    return params, grads


def _norm(arrays):
    return math.sqrt(sum(float((a ** 2).sum()) for a in arrays))


def test_clip_grad_norm_scales_jointly_to_max_norm():
    params, grads = _params_with_grads(scale=5.0)
    total = _norm(grads)
    assert total > 1.0
    ret = optim.clip_grad_norm_(params, max_norm=1.0)
    assert ret == pytest.approx(total, rel=1e-12)
    new = [p.grad.numpy() for p in params]
    assert _norm(new) == pytest.approx(1.0, rel=1e-6)
    scale = 1.0 / total
    for n, g in zip(new, grads):                    # one common factor for every gradient
        np.testing.assert_allclose(n, g * scale, rtol=1e-5)
    ratios = [n.ravel() / g.ravel() for n, g in zip(new, grads)]
    np.testing.assert_allclose(np.concatenate(ratios), ratios[0][0], rtol=1e-12)


def test_clip_grad_norm_leaves_small_grads_alone():
    params, grads = _params_with_grads(scale=0.01)
    total = _norm(grads)
    assert total < 1.0
    ret = optim.clip_grad_norm_(params, max_norm=1.0)
    assert ret == pytest.approx(total, rel=1e-12)
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), g)


def test_clip_grad_norm_skips_missing_grads_and_inf_norm():
    params, grads = _params_with_grads(scale=3.0)
    params[1].grad = None
    total = _norm([grads[0], grads[2]])
    assert optim.clip_grad_norm_(iter(params), 2.0) == pytest.approx(total, rel=1e-12)
    assert _norm([params[0].grad.numpy(), params[2].grad.numpy()]) == pytest.approx(2.0, rel=1e-6)
    assert params[1].grad is None
    params, grads = _params_with_grads(scale=3.0)
    big = max(np.abs(g).max() for g in grads)
    assert optim.clip_grad_norm_(params, 0.5, norm_type=math.inf) == pytest.approx(big)
    assert max(np.abs(p.grad.numpy()).max() for p in params) == pytest.approx(0.5, rel=1e-6)


def test_clip_grad_norm_shared_grad_array_scaled_once():
    a = nn.Parameter(tg.Tensor(np.zeros(3)))
    b = nn.Parameter(tg.Tensor(np.zeros(3)))
    g = np.array([3.0, 4.0, 0.0])
    a.grad = tg.Tensor(g.copy())
    b.grad = a.grad                              # the same gradient tensor on two parameters
    ret = optim.clip_grad_norm_([a, b], 1.0)
    assert ret == pytest.approx(math.sqrt(50.0))
    np.testing.assert_allclose(a.grad.numpy(), g / math.sqrt(50), rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), g / math.sqrt(50), rtol=1e-6)


def test_clip_grad_norm_accepts_single_tensor():
    p = nn.Parameter(tg.Tensor(np.zeros(2)))
    p.grad = tg.Tensor(np.array([3.0, 4.0]))
    assert optim.clip_grad_norm_(p, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize("scale,max_norm,norm_type", [(5.0, 1.0, 2.0), (0.01, 1.0, 2.0),
                                                      (3.0, 0.5, math.inf), (2.0, 1.5, 1.0)])
def test_clip_grad_norm_matches_torch(scale, max_norm, norm_type):
    torch = pytest.importorskip("torch")
    params, grads = _params_with_grads(scale)
    tparams = [torch.nn.Parameter(torch.tensor(p.numpy())) for p in params]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g.copy())
    ours = optim.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    theirs = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    assert ours == pytest.approx(float(theirs), rel=1e-12)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12, atol=1e-15)


# --- learning-rate schedules -----------------------------------------------------------------
def nanogpt_get_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters):
    """nanoGPT train.py's get_lr, verbatim in substance."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def test_warmup_cosine_lr_matches_nanogpt():
    lr, min_lr, warmup, decay = 6e-4, 6e-5, 100, 1100
    f = lambda it: optim.warmup_cosine_lr(it, lr, min_lr, warmup, decay)  # noqa: E731
    assert f(0) == pytest.approx(lr / 101, rel=1e-15)
    assert f(50) == pytest.approx(lr * 51 / 101, rel=1e-15)
    assert f(warmup) == pytest.approx(lr, rel=1e-15)                   # peak at warmup end
    assert f(600) == pytest.approx((lr + min_lr) / 2, rel=1e-12)       # midpoint of the decay
    assert f(decay) == pytest.approx(min_lr, rel=1e-12)
    assert f(decay + 1) == min_lr and f(10 ** 6) == min_lr
    for it in [0, 1, 57, 99, 100, 101, 350, 600, 1099, 1100, 1101, 5000]:
        assert f(it) == pytest.approx(nanogpt_get_lr(it, lr, min_lr, warmup, decay), rel=1e-14)
    lrs = [f(it) for it in range(warmup, decay + 1)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))                 # monotone decay


def test_warmup_cosine_scheduler_sets_group_lr_each_step():
    _, params = make_params()
    opt = optim.AdamW([{"params": params[:1]}, {"params": params[1:], "lr": 1e-2}], lr=1e-3)
    sched = optim.WarmupCosineLR(opt, warmup_iters=3, lr_decay_iters=10, min_lr=1e-5)
    for it in range(14):
        expected = [nanogpt_get_lr(it, base, 1e-5, 3, 10) for base in (1e-3, 1e-2)]
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(expected, rel=1e-14)
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        sched.step()


def test_constant_lr_keeps_base_lr():
    _, params = make_params()
    opt = optim.SGD(params, lr=0.3)
    sched = optim.ConstantLR(opt)
    for _ in range(3):
        opt.param_groups[0]["lr"] = 99.0          # whatever happened in between
        sched.step()
        assert opt.param_groups[0]["lr"] == 0.3


def test_scheduler_state_dict_round_trip():
    _, params = make_params()
    opt = optim.SGD(params, lr=0.1)
    sched = optim.WarmupCosineLR(opt, warmup_iters=2, lr_decay_iters=8, min_lr=0.01)
    for _ in range(5):
        sched.step()
    state = sched.state_dict()
    assert state["last_iter"] == 5 and state["base_lrs"] == [0.1]

    _, params2 = make_params()
    opt2 = optim.SGD(params2, lr=0.1)
    sched2 = optim.WarmupCosineLR(opt2, warmup_iters=2, lr_decay_iters=8, min_lr=0.01)
    assert opt2.param_groups[0]["lr"] != opt.param_groups[0]["lr"]
    sched2.load_state_dict(state)
    for _ in range(5):
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        sched.step()
        sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.01


# --- optimizer state_dict --------------------------------------------------------------------
def _loss_and_backward(model, x):
    model.zero_grad()
    out = model(x)
    (out * out).sum().backward()


def _mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 2)).double()


def test_optimizer_state_dict_round_trip_exact():
    x = tg.Tensor(np.random.default_rng(0).standard_normal((5, 3)))
    tg.manual_seed(0)
    model = _mlp()
    opt = optim.AdamW(optim.weight_decay_groups(model.named_parameters(), 0.1), lr=0.01,
                      betas=(0.9, 0.95))
    for _ in range(3):
        _loss_and_backward(model, x)
        opt.step()
    model_sd, opt_sd = model.state_dict(), opt.state_dict()
    assert set(opt_sd) == {"state", "param_groups"}
    assert len(opt_sd["state"]) == len(list(model.parameters()))
    assert all(s["step"] == 3 for s in opt_sd["state"].values())

    tg.manual_seed(1)                              # a different initialisation
    model2 = _mlp()
    opt2 = optim.AdamW(optim.weight_decay_groups(model2.named_parameters(), 0.0), lr=0.5)
    model2.load_state_dict(model_sd)
    opt2.load_state_dict(opt_sd)
    assert [g["weight_decay"] for g in opt2.param_groups] == [0.1, 0.0]
    assert all(g["lr"] == 0.01 and g["betas"] == (0.9, 0.95) for g in opt2.param_groups)

    for _ in range(2):
        for m, o in ((model, opt), (model2, opt2)):
            _loss_and_backward(m, x)
            o.step()
    for (n, p), (n2, p2) in zip(model.named_parameters(), model2.named_parameters()):
        assert n == n2
        np.testing.assert_array_equal(p.numpy(), p2.numpy())
    # The two optimizers did not share moment buffers.
    for p, p2 in zip(model.parameters(), model2.parameters()):
        assert not shares_memory(opt.state[id(p)]["exp_avg"], opt2.state[id(p2)]["exp_avg"])
        assert opt2.state[id(p2)]["step"] == 5


def test_sgd_momentum_state_dict_round_trip_exact():
    _, params = make_params()
    seq = grad_seq(SHAPES, 4)
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    for grads in seq[:2]:
        set_grads(params, grads)
        opt.step()
    sd = opt.state_dict()
    _, params2 = make_params(seed=5)
    for p2, p in zip(params2, params):
        p2.data[...] = p.data
    opt2 = optim.SGD(params2, lr=0.1, momentum=0.9)
    opt2.load_state_dict(sd)
    for grads in seq[2:]:
        for ps, o in ((params, opt), (params2, opt2)):
            set_grads(ps, grads)
            o.step()
    for p, p2 in zip(params, params2):
        np.testing.assert_array_equal(p.numpy(), p2.numpy())


def test_optimizer_load_state_dict_mismatched_groups_raises():
    model = _mlp()
    opt = optim.AdamW(optim.weight_decay_groups(model.named_parameters(), 0.1), lr=0.01)
    sd = opt.state_dict()
    single = optim.AdamW(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="groups"):
        single.load_state_dict(sd)
    with pytest.raises(ValueError):
        opt.load_state_dict(single.state_dict())


# --- construction errors ------------------------------------------------------------------
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_empty_parameter_list_raises(cls):
    with pytest.raises(ValueError, match="empty"):
        cls([], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        cls(iter(()), lr=0.1)


def test_bad_parameters_raise():
    p = nn.Parameter(tg.zeros(2))
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(TypeError, match="require grad"):
        optim.SGD([tg.zeros(2)], lr=0.1)


def test_lambda_lr_scales_every_group_by_one_shape():
    _, params = make_params()
    opt = optim.SGD([{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 0.001}])
    sched = optim.LambdaLR(opt, lambda it: 0.5 ** it)
    for it in range(4):
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * 0.5 ** it,
                                                                     0.001 * 0.5 ** it])
        sched.step()


@pytest.mark.parametrize("cls, kw, says", [
    (optim.AdamW, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.Adam, dict(betas=(1.5, 0.9)), "Invalid beta parameter at index 0: 1.5"),
    (optim.AdamW, dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    (optim.Adam, dict(eps=-1e-8), "Invalid epsilon value"),
    (optim.AdamW, dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (optim.SGD, dict(lr=0.1, momentum=-1), "Invalid momentum value: -1"),
    (optim.SGD, dict(lr=-0.1), "Invalid learning rate: -0.1")])
def test_hyperparameters_are_checked_as_torch_optim_does(cls, kw, says):
    """The ranges (and wording) of torch.optim: a negative rate climbs the loss, a beta of 1
    divides by zero in the bias correction."""
    with pytest.raises(ValueError, match=f"{cls.__name__}: {says}"):
        cls([nn.Parameter(tg.zeros(2))], **kw)
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=says.split(":")[0]):
        getattr(torch.optim, cls.__name__)([torch.nn.Parameter(torch.zeros(2))], **kw)
