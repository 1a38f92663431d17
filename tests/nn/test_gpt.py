"""GPT (``tinygradlm.nn.GPT``) and its building blocks (``MultiHeadAttention``,
``TransformerBlock``, ``KVCache``): GPT-2's parameter names and initialisation, the loss, the
optimizer groups, overfitting one batch, finite-difference gradient checks in float64 (with the
fused kernels and with the references), padding masks, the KV cache, the errors a student
hits, and, when PyTorch is installed, logits, loss and every gradient against the PyTorch GPT-2
of ``tests/torch_reference.py``."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinygradlm as tg
from tinygradlm import kernels, nn
from tinygradlm.gradcheck import gradcheck

from strategies import TOLERANCE, set_data, shares_memory
# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")

MODES = ["fused", "reference"]


# --- helpers ----------------------------------------------------------------------------
def tiny_config(**kw):
    base = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    return nn.GPTConfig(**{**base, **kw})


def tiny_gpt(seed=0, dtype="float64", scale=0.3, **kw):
    """A tiny GPT whose every parameter (biases and LayerNorm gains included) is random, so
    that no gradient is trivially zero and no term vanishes."""
    tg.manual_seed(seed)
    model = nn.GPT(tiny_config(**kw)).to(dtype)
    randomize(model, seed, scale)
    return model


def randomize(module, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    for name, p in module.named_parameters():
        r = rng.standard_normal(p.shape) * scale
        if re.search(r"ln_\w+\.weight$", name):
            r = 1.0 + r                        # LayerNorm gains around 1
        set_data(p, r)
    return module


def token_batch(seed=0, B=2, T=6, vocab=11, ignore=True):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, vocab, (B, T))
    targets = rng.integers(0, vocab, (B, T))
    if ignore:
        targets[0, 1] = -100                   # one position without a loss
    return idx, targets


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def expected_names(n_layer, bias=True):
    names = ["transformer.wte.weight", "transformer.wpe.weight"]
    kinds = ("weight", "bias") if bias else ("weight",)
    for i in range(n_layer):
        for sub in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            names += [f"transformer.h.{i}.{sub}.{k}" for k in kinds]
    names += [f"transformer.ln_f.{k}" for k in kinds]
    return names


# --- names, shapes, tying -------------------------------------------------------------
@pytest.mark.parametrize("n_layer", [1, 3])
def test_parameter_names_are_gpt2s_and_head_is_tied(n_layer):
    model = nn.GPT(tiny_config(n_layer=n_layer))
    names = expected_names(n_layer)
    # The tied head is listed once among the parameters, and under its own name in the
    # state dict (as GPT-2's checkpoints have it).
    assert [n for n, _ in model.named_parameters()] == names
    assert list(model.state_dict()) == names + ["lm_head.weight"]
    assert model.lm_head.weight is model.transformer.wte.weight
    sd = model.state_dict()
    assert shares_memory(sd["lm_head.weight"].data, sd["transformer.wte.weight"].data)
    C, V = 8, 11
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert shapes["transformer.wte.weight"] == (V, C)
    assert shapes["transformer.wpe.weight"] == (8, C)
    # Linear weights are stored (in, out), GPT-2's Conv1D layout.
    assert shapes["transformer.h.0.attn.c_attn.weight"] == (C, 3 * C)
    assert shapes["transformer.h.0.attn.c_attn.bias"] == (3 * C,)
    assert shapes["transformer.h.0.attn.c_proj.weight"] == (C, C)
    assert shapes["transformer.h.0.mlp.c_fc.weight"] == (C, 4 * C)
    assert shapes["transformer.h.0.mlp.c_proj.weight"] == (4 * C, C)
    assert shapes["transformer.h.0.ln_1.weight"] == (C,)
    assert shapes["transformer.ln_f.bias"] == (C,)


def test_bias_false_removes_every_bias():
    model = nn.GPT(tiny_config(bias=False))
    assert [n for n, _ in model.named_parameters()] == expected_names(2, bias=False)
    assert not any(n.endswith("bias") for n in model.state_dict())
    logits, loss = model(*token_batch())
    assert logits.shape == (2, 6, 11) and np.isfinite(loss.item())


def test_tied_head_gets_gradient_from_both_uses():
    """The gradient of wte is the embedding's scatter plus the head's matmul, in one tensor."""
    model = tiny_gpt()
    idx, targets = token_batch()
    model(idx, targets)[1].backward()
    full = model.transformer.wte.weight.grad.numpy().copy()
    assert model.lm_head.weight.grad is model.transformer.wte.weight.grad
    # A token that never appears in idx gets gradient only through the head: nonzero.
    unused = sorted(set(range(11)) - set(idx.ravel().tolist()))
    assert unused and np.abs(full[unused]).max() > 0


def test_bad_config_raises():
    with pytest.raises(ValueError, match="n_layer"):
        nn.GPT(tiny_config(n_layer=0))
    with pytest.raises(ValueError, match=r"n_embd=8.*n_head=3"):
        nn.GPT(tiny_config(n_head=3))


# --- initialisation -------------------------------------------------------------------
def test_gpt2_initialisation_statistics():
    """N(0, 0.02) for matrices and embeddings, 0.02/sqrt(2 n_layer) for the projections into
    the residual stream, zero biases, unit LayerNorm gains -- on a model big enough for the
    sample statistics to be sharp (every matrix has >= 16k entries: 1.5% relative error)."""
    n_layer = 4
    tg.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(vocab_size=256, block_size=128, n_layer=n_layer, n_head=4,
                                n_embd=128))
    residual_std = 0.02 / math.sqrt(2 * n_layer)
    matrices = 0
    for name, p in model.named_parameters():
        a = p.numpy().astype(np.float64)
        if p.ndim >= 2:
            matrices += 1
            std = residual_std if name.endswith("c_proj.weight") else 0.02
            assert a.size >= 16384
            assert abs(a.std() / std - 1) < 0.05, (name, a.std(), std)
            assert abs(a.mean()) < 0.05 * std, name
            # Normal, not uniform: 68.3% within one std (a uniform would give 57.7%).
            assert abs(np.mean(np.abs(a) < std) - 0.6827) < 0.02, name
        elif name.endswith(".bias"):
            assert np.all(a == 0), name
        else:
            assert re.search(r"ln_(1|2|f)\.weight$", name) and np.all(a == 1), name
    assert matrices == 2 + 4 * n_layer
    # manual_seed makes the initialisation repeatable; another seed changes it.
    tg.manual_seed(0)
    again = nn.GPT(tiny_config())
    tg.manual_seed(0)
    same = nn.GPT(tiny_config())
    tg.manual_seed(1)
    other = nn.GPT(tiny_config())
    for (n, a), b, c in zip(again.named_parameters(), same.parameters(), other.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        if a.ndim >= 2:
            assert not np.array_equal(a.numpy(), c.numpy()), n


# --- forward, loss, counts, optimizer groups ------------------------------------------
def test_forward_shapes_and_loss_is_mean_cross_entropy_ignoring_minus_100():
    model = tiny_gpt()
    idx, targets = token_batch()
    logits, loss = model(tg.Tensor(idx))
    assert logits.shape == (2, 6, 11) and loss is None
    logits, loss = model(tg.Tensor(idx), tg.Tensor(targets))
    logp = np_log_softmax(logits.numpy())
    keep = targets != -100
    expected = -logp[keep, targets[keep]].mean()
    assert loss.shape == () and loss.item() == pytest.approx(expected, rel=1e-12)
    # Plain NumPy ids work too, and a 1-D sequence is a batch of one.
    logits1, _ = model(idx[1])
    assert logits1.shape == (1, 6, 11)
    np.testing.assert_allclose(logits1.numpy()[0], logits.numpy()[1], rtol=1e-12, atol=1e-12)
    # The model is causal: a later token never changes an earlier position's logits.
    changed = idx.copy()
    changed[:, 4] = (changed[:, 4] + 1) % 11
    l2, _ = model(changed)
    np.testing.assert_allclose(l2.numpy()[:, :4], logits.numpy()[:, :4], rtol=1e-12,
                               atol=1e-12)
    assert not np.allclose(l2.numpy()[:, 4:], logits.numpy()[:, 4:])


def test_num_params():
    model = nn.GPT(tiny_config())
    V, B, C, L = 11, 8, 8, 2
    total = V * C + B * C + L * (12 * C * C + 13 * C) + 2 * C     # the tied head counted once
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - B * C                    # without wpe (nanoGPT)
    assert model.num_params(non_embedding=False) == sum(p.numel() for p in model.parameters())
    nb = nn.GPT(tiny_config(bias=False))
    assert nb.num_params(non_embedding=False) == V * C + B * C + L * (12 * C * C + 2 * C) + C


def test_configure_optimizers_decays_only_matrices_and_embeddings():
    model = tiny_gpt(dtype="float32")
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-2, betas=(0.8, 0.95))
    assert isinstance(opt, tg.optim.AdamW)
    named = dict(model.named_parameters())
    by_id = {id(p): n for n, p in named.items()}
    decay = [g for g in opt.param_groups if g["weight_decay"] > 0]
    no_decay = [g for g in opt.param_groups if g["weight_decay"] == 0]
    assert len(decay) == 1 and decay[0]["weight_decay"] == 0.1 and len(no_decay) == 1
    decayed = {by_id[id(p)] for p in decay[0]["params"]}
    kept = {by_id[id(p)] for p in no_decay[0]["params"]}
    assert decayed == {n for n, p in named.items() if p.ndim >= 2}
    assert kept == {n for n, p in named.items() if p.ndim < 2}
    assert "transformer.wte.weight" in decayed and "transformer.h.0.ln_1.weight" in kept
    # Every parameter once (the tied head is not a second copy of wte).
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)
    for g in opt.param_groups:
        assert g["lr"] == 1e-2 and tuple(g["betas"]) == (0.8, 0.95)
    # With zero gradients Adam's step is 0, so only the decoupled decay moves anything.
    before = {n: p.numpy().copy() for n, p in named.items()}
    for p in named.values():
        p.grad = tg.Tensor(np.zeros(p.shape, dtype=p.dtype))
    opt.step()
    for n, p in named.items():
        factor = 1 - 1e-2 * 0.1 if n in decayed else 1.0
        np.testing.assert_allclose(p.numpy(), before[n] * factor, rtol=1e-6, atol=1e-9)


def test_tiny_gpt_overfits_one_batch():
    tg.manual_seed(0)
    model = nn.GPT(tiny_config(n_embd=16))
    rng = np.random.default_rng(0)
    data = rng.integers(0, 11, (4, 9))
    idx, targets = data[:, :-1], data[:, 1:]
    opt = model.configure_optimizers(weight_decay=0.0, learning_rate=1e-2, betas=(0.9, 0.99))
    first = None
    for _ in range(300):
        _, loss = model(idx, targets)
        first = loss.item() if first is None else first
        if loss.item() < 0.05:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 2.0                           # about log(11) at the start
    assert loss.item() < 0.05, f"loss only fell from {first:.3f} to {loss.item():.3f}"


def test_dropout_only_while_training():
    model = tiny_gpt(dropout=0.5)
    plain = tiny_gpt(dropout=0.0)               # same seed: the same weights
    idx, _ = token_batch()
    model.eval()
    np.testing.assert_array_equal(model(idx)[0].numpy(), plain(idx)[0].numpy())
    model.train()
    a, b = model(idx)[0].numpy(), model(idx)[0].numpy()
    assert not np.allclose(a, b)


# --- gradient checks ------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("output", ["loss", "logits"])
def test_gpt_gradcheck_every_parameter_elementwise(mode, output):
    """Every element of every parameter of a (very) tiny GPT against central differences.
    The parameters themselves are gradcheck's inputs: it perturbs their data in place."""
    tg.manual_seed(0)
    model = randomize(nn.GPT(nn.GPTConfig(vocab_size=7, block_size=4, n_layer=2, n_head=2,
                                          n_embd=4)).double(), seed=1, scale=0.5)
    idx, targets = token_batch(seed=2, B=2, T=4, vocab=7)
    params = list(model.parameters())
    assert len(params) == len(expected_names(2))

    def fn(*_):
        logits, loss = model(idx, targets)
        return loss if output == "loss" else logits

    with kernels.use(mode):
        assert gradcheck(fn, *params, max_elements=10_000)


@pytest.mark.parametrize("mode", MODES)
def test_gpt_gradcheck_representative_parameters_on_the_tiny_config(mode):
    model = tiny_gpt(seed=3)
    idx, targets = token_batch(seed=3, B=2, T=8)
    named = dict(model.named_parameters())
    params = [named[n] for n in ("transformer.wte.weight", "transformer.wpe.weight",
                                 "transformer.h.0.attn.c_attn.weight",
                                 "transformer.h.1.ln_1.weight", "transformer.h.0.mlp.c_fc.bias",
                                 "transformer.h.1.mlp.c_proj.weight", "transformer.ln_f.bias")]
    with kernels.use(mode):
        assert gradcheck(lambda *_: model(idx, targets)[1], *params)


def test_fused_and_reference_agree_on_gpt():
    model = tiny_gpt(seed=4)
    idx, targets = token_batch(seed=4, T=8)
    out = {}
    for mode in MODES:
        with kernels.use(mode):
            model.zero_grad()
            logits, loss = model(idx, targets)
            loss.backward()
            out[mode] = [logits.numpy(), loss.numpy()] + [p.grad.numpy()
                                                          for p in model.parameters()]
    for a, b in zip(out["fused"], out["reference"]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# --- errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [11, 12, -1])
def test_token_id_out_of_range_names_the_id(bad):
    model = nn.GPT(tiny_config())
    with pytest.raises(IndexError, match=rf"(?<![\d-]){bad}(?!\d)"):
        model(np.array([[0, bad, 3]]))


def test_sequence_longer_than_block_size_names_both_numbers():
    model = nn.GPT(tiny_config())
    with pytest.raises(ValueError, match=r"\b9\b.*block_size=8"):
        model(np.zeros((1, 9), dtype=np.int64))
    model(np.zeros((1, 8), dtype=np.int64))         # exactly block_size is fine


@pytest.mark.parametrize("idx", [np.zeros((2, 3), dtype=np.float32),
                                 np.zeros((2, 3), dtype=bool),
                                 np.zeros((1, 2, 3), dtype=np.int64),
                                 np.array(3)])
def test_wrong_idx_dtype_or_shape_raises(idx):
    model = nn.GPT(tiny_config())
    with pytest.raises(ValueError, match=r"idx.*\(batch, time\)"):
        model(idx)


def test_targets_must_match_idx():
    model = nn.GPT(tiny_config())
    idx = np.zeros((2, 4), dtype=np.int64)
    with pytest.raises(ValueError, match=re.escape("(2, 3)") + ".*" + re.escape("(2, 4)")):
        model(idx, np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        model(idx, np.zeros((8,), dtype=np.int64))
    with pytest.raises(IndexError, match=r"\b11\b"):
        model(idx, np.full((2, 4), 11))


# --- multi-head attention and the Transformer block -----------------------------------
def tiny_block(causal, seed=0, C=4, n_head=2):
    tg.manual_seed(seed)
    return randomize(nn.TransformerBlock(C, n_head, causal=causal).double(), seed, 0.5)


@st.composite
def padded_case(draw):
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    mask = np.array(draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T),
                                  min_size=B, max_size=B)), dtype=bool)
    seed = draw(st.integers(0, 2**16))
    return mask, seed


@settings(max_examples=25)
@given(padded_case(), st.booleans(), st.sampled_from(MODES))
def test_padding_mask_hides_padded_positions(case, causal, mode):
    """Outputs at real positions do not depend on the inputs at padded ones, and equal the
    block run on the real tokens alone (with no padding at all)."""
    mask, seed = case
    B, T = mask.shape
    block = tiny_block(causal, seed % 7)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, 4))
    x2 = np.where(mask[..., None], x, rng.standard_normal((B, T, 4)) * 10)
    with kernels.use(mode):
        y = block(tg.Tensor(x), attention_mask=mask).numpy()
        y2 = block(tg.Tensor(x2), attention_mask=tg.Tensor(mask)).numpy()
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(y2))
        np.testing.assert_allclose(y[mask], y2[mask], rtol=1e-12, atol=1e-12)
        for b in range(B):
            if mask[b].any():
                alone = block(tg.Tensor(x[b:b + 1, mask[b]])).numpy()[0]
                np.testing.assert_allclose(y[b, mask[b]], alone, rtol=1e-10, atol=1e-12)


def test_integer_mask_means_the_same_as_boolean():
    block = tiny_block(False)
    x = tg.Tensor(np.random.default_rng(0).standard_normal((2, 4, 4)))
    m = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(block(x, attention_mask=m).numpy(),
                                  block(x, attention_mask=m.astype(bool)).numpy())


@pytest.mark.parametrize("shape", [(2, 3), (1, 4), (2, 4, 1), (4, 2)])
def test_wrong_mask_shape_raises(shape):
    block = tiny_block(False)
    x = tg.Tensor(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=re.escape(str(shape)) + r"|" + re.escape("(2, 4)")):
        block(x, attention_mask=np.ones(shape, dtype=bool))
    with pytest.raises(ValueError, match="attention_mask"):
        block.attn(x, attention_mask=np.ones(shape, dtype=bool))


def test_heads_must_divide_embedding():
    with pytest.raises(ValueError, match=r"n_embd=6.*n_head=4"):
        nn.MultiHeadAttention(6, 4)


def test_attention_heads_are_independent_and_causal():
    """MultiHeadAttention = c_proj(concat_h softmax(q_h k_h^T / sqrt(hs)) v_h), in NumPy."""
    tg.manual_seed(0)
    attn = randomize(nn.MultiHeadAttention(6, 3).double(), 0, 0.5)
    x = np.random.default_rng(1).standard_normal((2, 5, 6))
    qkv = x @ attn.c_attn.weight.numpy() + attn.c_attn.bias.numpy()
    q, k, v = np.split(qkv, 3, axis=-1)
    heads = []
    for h in range(3):
        s = slice(2 * h, 2 * h + 2)
        scores = q[..., s] @ k[..., s].transpose(0, 2, 1) / np.sqrt(2)
        scores = np.where(np.tril(np.ones((5, 5), bool)), scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        heads.append(p / p.sum(-1, keepdims=True) @ v[..., s])
    expected = np.concatenate(heads, -1) @ attn.c_proj.weight.numpy() + attn.c_proj.bias.numpy()
    for mode in MODES:
        with kernels.use(mode):
            np.testing.assert_allclose(attn(tg.Tensor(x)).numpy(), expected, rtol=1e-10,
                                       atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("causal,padded", [(True, False), (False, True), (True, True),
                                           (False, False)])
def test_transformer_block_gradcheck(mode, causal, padded):
    block = tiny_block(causal, seed=5)
    rng = np.random.default_rng(5)
    x = tg.Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    mask = np.array([[True, True, False], [False, True, True]]) if padded else None
    params = list(block.parameters())
    assert len(params) == 12
    with kernels.use(mode):
        assert gradcheck(lambda *_: block(x, attention_mask=mask), x, *params,
                         max_elements=10_000)


# --- KV cache -------------------------------------------------------------------------
@st.composite
def chunked(draw):
    T = draw(st.integers(1, 8))
    cuts = sorted(draw(st.sets(st.integers(1, T - 1), max_size=T - 1))) if T > 1 else []
    return T, [0] + cuts + [T]


@settings(max_examples=25)
@given(chunked(), st.integers(1, 2), st.sampled_from(MODES))
def test_kv_cache_chunks_give_the_full_forward(split, B, mode):
    T, bounds = split
    model = tiny_gpt(seed=6)
    idx = np.random.default_rng(T * 31 + B).integers(0, 11, (B, T))
    with kernels.use(mode):
        full, _ = model(idx)
        cache = nn.KVCache(2)
        assert len(cache) == 0
        parts = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            logits, _ = model(idx[:, a:b], kv_cache=cache)
            assert len(cache) == b
            parts.append(logits.numpy())
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full.numpy(), rtol=1e-10,
                               atol=1e-12)
    for k, v in zip(cache.keys, cache.values):
        assert k.shape == v.shape == (B, 2, T, 4)


def test_kv_cache_overflow():
    model = tiny_gpt(seed=7)
    idx = np.random.default_rng(7).integers(0, 11, (2, 8))
    cache = nn.KVCache(2)
    model(idx[:, :6], kv_cache=cache)
    with pytest.raises(ValueError, match=r"\b9\b.*block_size=8"):
        model(idx[:, :3], kv_cache=cache)


def test_kv_cache_keeps_no_graph():
    model = tiny_gpt(seed=8)
    cache = nn.KVCache(2)
    model(np.array([[1, 2, 3]]), kv_cache=cache)
    assert all(not k.requires_grad and not v.requires_grad
               for k, v in zip(cache.keys, cache.values))


# --- against PyTorch (tests/torch_reference.py) ---------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,tol", list(TOLERANCE.items()))
@pytest.mark.parametrize("bias", [True, False])
def test_gpt_matches_pytorch(mode, dtype, tol, bias):
    torch = pytest.importorskip("torch")
    from torch_reference import assert_grads_match, build_torch_gpt, copy_weights_from
    model = tiny_gpt(seed=9, dtype=dtype, bias=bias)
    idx, targets = token_batch(seed=9, B=3, T=8)
    tmodel = build_torch_gpt(model.config, dtype)
    # the same names, in the same order
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tmodel.named_parameters()]
    copy_weights_from(model, tmodel)
    with kernels.use(mode):
        model.zero_grad()
        logits, loss = model(idx, targets)
        loss.backward()
    tl, tloss = tmodel(torch.from_numpy(idx), torch.from_numpy(targets))
    tloss.backward()
    assert logits.dtype == np.dtype(dtype)
    np.testing.assert_allclose(logits.numpy(), tl.detach().numpy(), **tol)
    np.testing.assert_allclose(loss.item(), tloss.item(), **tol)
    assert_grads_match(model, tmodel, **tol)
