"""The BERT-style encoder (``tinygradlm.nn.BERT``) and the sequence classifier on top of it
(``tinygradlm.nn.SequenceClassifier``): bidirectional attention with a padding mask, the
masked-LM loss on the labelled positions only, the tied MLM head, GPT-2's initialisation,
float64 gradient checks (fused kernels and references), save/load, and, when PyTorch is
installed, loss and every gradient against the PyTorch encoder of ``tests/torch_reference.py``.
For the classifier: the three poolings against NumPy, loading a pretrained BERT or GPT body,
freezing, the body learning rate, gradient checks, save/load and the errors a student hits."""
import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinygradlm as tg
from tinygradlm import kernels, nn
from tinygradlm.gradcheck import gradcheck
from tinygradlm.nn import BERT, GPT, BERTConfig, ClassifierConfig, SequenceClassifier

from strategies import TOLERANCE, set_data, shares_memory
# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")

MODES = ["fused", "reference"]
V, BLOCK, C = 13, 8, 8


# --- helpers ----------------------------------------------------------------------------
def tiny_config(**kw):
    base = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=C, dropout=0.0,
                pad_token_id=0)
    return BERTConfig(**{**base, **kw})


def is_ln_weight(name):
    return re.search(r"(^|\.)ln(_\w+)?\.weight$", name) is not None


def randomize(module, seed=0, scale=0.3):
    """Every parameter random (biases and LayerNorm gains included, gains around 1), so no
    gradient is trivially zero and no term vanishes."""
    rng = np.random.default_rng(seed)
    for name, p in module.named_parameters():
        r = rng.standard_normal(p.shape) * scale
        if is_ln_weight(name):
            r = 1.0 + r
        set_data(p, r)
    return module


def tiny_bert(seed=0, dtype="float64", scale=0.3, **kw):
    tg.manual_seed(seed)
    return randomize(BERT(tiny_config(**kw)).to(dtype), seed, scale)


def tiny_gpt(seed=0, dtype="float64", scale=0.3, **kw):
    tg.manual_seed(seed)
    base = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=C)
    return randomize(GPT(nn.GPTConfig(**{**base, **kw})).to(dtype), seed, scale)


def tiny_classifier(body_type="BERT", pooling="cls", num_labels=3, seed=0, dtype="float64",
                    **body_kw):
    body = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=C, dropout=0.0)
    if body_type == "BERT":
        body["pad_token_id"] = 0
    tg.manual_seed(seed)
    model = SequenceClassifier(ClassifierConfig(body_type, {**body, **body_kw}, num_labels,
                                                pooling, dropout=0.0))
    return randomize(model.to(dtype), seed)


def padded_batch(lengths, T=BLOCK, pad=0, seed=0, vocab=V):
    """Rows of real tokens (never the pad id) followed by [PAD]: ids (B, T), mask (B, T)."""
    rng = np.random.default_rng(seed)
    real = np.array([i for i in range(vocab) if i != pad])
    ids = np.full((len(lengths), T), pad, dtype=np.int64)
    mask = np.zeros((len(lengths), T), dtype=bool)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.choice(real, size=n)
        mask[b, :n] = True
    return ids, mask


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_cross_entropy(logits, targets):
    return -np_log_softmax(logits)[np.arange(len(targets)), targets].mean()


def expected_names(n_layer, bias=True):
    kinds = ("weight", "bias") if bias else ("weight",)
    names = ["transformer.wte.weight", "transformer.wpe.weight"]
    for i in range(n_layer):
        for sub in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            names += [f"transformer.h.{i}.{sub}.{k}" for k in kinds]
    names += [f"transformer.ln_f.{k}" for k in kinds]
    names += ["mlm_head.bias"] + [f"mlm_head.dense.{k}" for k in kinds]
    names += [f"mlm_head.ln.{k}" for k in kinds]
    return names


def state(model):
    return {k: t.numpy().copy() for k, t in model.state_dict().items()}


# --- names, tying, initialisation -------------------------------------------------------
@pytest.mark.parametrize("n_layer", [1, 3])
def test_parameter_names_and_tied_mlm_head(n_layer):
    model = BERT(tiny_config(n_layer=n_layer))
    assert [n for n, _ in model.named_parameters()] == expected_names(n_layer)
    assert model.mlm_head.weight is model.transformer.wte.weight
    sd = model.state_dict()
    assert "mlm_head.weight" in sd and set(sd) == set(expected_names(n_layer)) | {
        "mlm_head.weight"}
    assert shares_memory(sd["mlm_head.weight"].data, sd["transformer.wte.weight"].data)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert shapes["transformer.wte.weight"] == (V, C)
    assert shapes["transformer.wpe.weight"] == (BLOCK, C)
    assert shapes["transformer.h.0.attn.c_attn.weight"] == (C, 3 * C)     # (in, out)
    assert shapes["mlm_head.dense.weight"] == (C, C)
    assert shapes["mlm_head.bias"] == (V,)
    assert shapes["mlm_head.ln.weight"] == (C,)
    # The tied matrix is counted once.
    assert model.num_params(non_embedding=False) == sum(p.numel() for p in model.parameters())
    assert model.num_params() == model.num_params(non_embedding=False) - BLOCK * C


def test_tied_head_gets_gradient_from_the_embedding_and_the_head():
    model = tiny_bert(seed=1)
    ids, _ = padded_batch([8, 8], seed=1)
    labels = np.full(ids.shape, -100)
    labels[0, 2], labels[1, 5] = 4, 7
    model(ids, labels=labels)[1].backward()
    assert model.mlm_head.weight.grad is model.transformer.wte.weight.grad
    g = model.transformer.wte.weight.grad.numpy()
    unused = sorted(set(range(V)) - set(ids.ravel().tolist()))
    # A token absent from the input still gets gradient through the tied decoder.
    assert unused and np.abs(g[unused]).max() > 0


def test_gpt2_initialisation_statistics():
    """N(0, 0.02) for matrices and embeddings (the MLM transform included),
    0.02/sqrt(2 n_layer) for c_proj, zero biases (the decoder bias included), unit gains."""
    n_layer = 2
    tg.manual_seed(0)
    model = BERT(BERTConfig(vocab_size=256, block_size=128, n_layer=n_layer, n_head=4,
                            n_embd=128))
    residual = 0.02 / math.sqrt(2 * n_layer)
    for name, p in model.named_parameters():
        a = p.numpy().astype(np.float64)
        if p.ndim >= 2:
            std = residual if name.endswith("c_proj.weight") else 0.02
            assert abs(a.std() / std - 1) < 0.05, (name, a.std(), std)
            assert abs(a.mean()) < 0.05 * std, name
            assert abs(np.mean(np.abs(a) < std) - 0.6827) < 0.02, name    # normal, not uniform
        elif name.endswith("bias"):
            assert np.all(a == 0), name
        else:
            assert is_ln_weight(name) and np.all(a == 1), name
    tg.manual_seed(3)
    a = BERT(tiny_config())
    tg.manual_seed(3)
    b = BERT(tiny_config())
    for (n, x), y in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=n)


# --- bidirectional attention and padding ------------------------------------------------
def test_encoder_is_bidirectional_unlike_gpt():
    """Changing a later token changes the hidden states of earlier positions in BERT; the same
    weights in a causal GPT leave them alone."""
    bert = tiny_bert(seed=2)
    ids, _ = padded_batch([8, 8], seed=2)
    changed = ids.copy()
    changed[:, 6] = changed[:, 6] % (V - 1) + 1           # another non-pad token
    h, h2 = bert.hidden_states(ids).numpy(), bert.hidden_states(changed).numpy()
    for i in range(6):
        assert not np.allclose(h[:, i], h2[:, i]), i
    gpt = GPT(nn.GPTConfig(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2,
                           n_embd=C)).double()
    gpt.load_state_dict({k: v for k, v in bert.state_dict().items()
                         if k.startswith("transformer.")}, strict=False)
    g, g2 = gpt.hidden_states(ids).numpy(), gpt.hidden_states(changed).numpy()
    np.testing.assert_allclose(g[:, :6], g2[:, :6], rtol=1e-12, atol=1e-12)
    assert not np.allclose(g[:, 6:], g2[:, 6:])


@st.composite
def right_padded(draw):
    B = draw(st.integers(1, 3))
    lengths = draw(st.lists(st.integers(1, BLOCK), min_size=B, max_size=B))
    T = draw(st.integers(max(lengths), BLOCK))
    return lengths, T, draw(st.integers(0, V - 1)), draw(st.integers(0, 2**16))


@settings(max_examples=25)
@given(right_padded(), st.sampled_from(MODES))
def test_padding_at_the_end_changes_nothing_for_real_tokens(case, mode):
    """[PAD] after the text (the default mask comes from pad_token_id) gives the real tokens
    the hidden states of the unpadded sequence; an explicit mask means the same; and what
    sits at masked positions does not matter."""
    lengths, T, pad, seed = case
    model = tiny_bert(seed % 5, pad_token_id=pad)
    ids, mask = padded_batch(lengths, T, pad=pad, seed=seed)
    with kernels.use(mode):
        h = model.hidden_states(ids).numpy()
        assert np.all(np.isfinite(h))
        np.testing.assert_array_equal(model.hidden_states(ids, mask).numpy(), h)
        np.testing.assert_array_equal(model.hidden_states(ids, tg.Tensor(mask)).numpy(), h)
        np.testing.assert_array_equal(model.hidden_states(ids, mask.astype(np.int64)).numpy(),
                                      h)
        junk = np.where(mask, ids, np.random.default_rng(seed).integers(0, V, ids.shape))
        np.testing.assert_allclose(model.hidden_states(junk, mask).numpy()[mask], h[mask],
                                   rtol=1e-12, atol=1e-12)
        for b, n in enumerate(lengths):
            alone = model.hidden_states(ids[b:b + 1, :n]).numpy()[0]
            np.testing.assert_allclose(h[b, :n], alone, rtol=1e-10, atol=1e-12)
        # The MLM logits without labels cover every position, and agree too.
        logits, loss = model(ids)
        assert loss is None and logits.shape == (len(lengths), T, V)


def test_one_dimensional_input_is_a_batch_of_one():
    model = tiny_bert(seed=3)
    ids, _ = padded_batch([5], seed=3)
    np.testing.assert_array_equal(model.hidden_states(ids[0]).numpy(),
                                  model.hidden_states(ids).numpy())


# --- the masked-LM loss -----------------------------------------------------------------
@st.composite
def labelled_batch(draw):
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, BLOCK))
    seed = draw(st.integers(0, 2**16))
    picked = np.array(draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T),
                                    min_size=B, max_size=B)), dtype=bool)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V, (B, T))
    labels = np.where(picked, rng.integers(0, V, (B, T)), -100)
    return ids, labels, seed


@settings(max_examples=30)
@given(labelled_batch())
def test_mlm_loss_is_cross_entropy_on_the_labelled_positions_only(case):
    ids, labels, seed = case
    model = tiny_bert(seed % 7)
    picked = labels != -100
    full, _ = model(ids)                                   # (B, T, V)
    logits, loss = model(ids, labels=labels)
    M = int(picked.sum())
    assert logits.shape == (M, V)
    # Row-major order: the i-th row is the i-th labelled position reading left to right,
    # top to bottom, and its target is labels[labels != -100][i].
    np.testing.assert_allclose(logits.numpy(), full.numpy()[picked], rtol=1e-12, atol=1e-12)
    if M == 0:
        assert loss.item() == 0.0
        return
    expected = np_cross_entropy(full.numpy()[picked], labels[picked])
    assert loss.shape == () and loss.item() == pytest.approx(expected, rel=1e-12)
    # The loss reads only the labelled rows: garbage in every other row changes nothing.
    garbage = np.where(picked[..., None], full.numpy(), 1e3 * np.random.default_rng(
        seed).standard_normal(full.shape))
    assert np_cross_entropy(garbage[picked], labels[picked]) == pytest.approx(expected,
                                                                              rel=1e-12)
    # The same as GPT's loss on the full logits with ignore_index=-100.
    same = tg.functional.cross_entropy(full.movedim(-1, 1), tg.Tensor(labels),
                                       ignore_index=-100)          # classes on dim 1
    assert same.item() == pytest.approx(loss.item(), rel=1e-12)
    # The decoder bias's gradient is mean(softmax - one_hot) over the labelled rows only.
    model.zero_grad()
    loss.backward()
    p = np.exp(np_log_softmax(full.numpy()[picked]))
    p[np.arange(M), labels[picked]] -= 1
    np.testing.assert_allclose(model.mlm_head.bias.grad.numpy(), p.sum(0) / M, rtol=1e-9,
                               atol=1e-12)


def test_changing_unlabelled_targets_or_labelled_targets():
    """A label changed at a labelled position changes the loss; one more labelled position
    changes it; an unlabelled position's label (-100) was never read."""
    model = tiny_bert(seed=4)
    ids, _ = padded_batch([8, 8], seed=4)
    labels = np.full(ids.shape, -100)
    labels[0, 1], labels[1, 3] = 5, 9
    base = model(ids, labels=labels)[1].item()
    other = labels.copy()
    other[0, 1] = 6
    assert model(ids, labels=other)[1].item() != pytest.approx(base, rel=1e-9)
    more = labels.copy()
    more[1, 6] = 2
    assert model(ids, labels=more)[1].item() != pytest.approx(base, rel=1e-9)
    np.testing.assert_array_equal(model(ids, labels=tg.Tensor(labels))[1].numpy(),
                                  model(ids, labels=labels)[1].numpy())


def test_no_labelled_position_gives_zero_loss_and_backward_works():
    model = tiny_bert(seed=5)
    ids, _ = padded_batch([8, 5], seed=5)
    logits, loss = model(ids, labels=np.full(ids.shape, -100))
    assert logits.shape == (0, V)
    assert loss.shape == () and loss.item() == 0.0 and np.isfinite(loss.item())
    model.zero_grad()
    loss.backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            g = p.grad.numpy()
            assert np.all(np.isfinite(g)) and np.all(g == 0), n
    # An optimizer step after it is harmless (no NaN reaches the weights).
    opt = model.configure_optimizers(0.1, 1e-2)
    opt.step()
    assert all(np.all(np.isfinite(p.numpy())) for p in model.parameters())


def test_errors():
    model = BERT(tiny_config())
    ids = np.ones((2, 4), dtype=np.int64)
    with pytest.raises(ValueError, match=re.escape("(2, 3)") + ".*" + re.escape("(2, 4)")):
        model(ids, labels=np.full((2, 3), -100))
    with pytest.raises(ValueError, match="labels"):
        model(ids, labels=np.full((8,), -100))
    with pytest.raises(ValueError, match=r"\b9\b.*block_size=8"):
        model(np.ones((1, 9), dtype=np.int64))
    model(np.ones((1, 8), dtype=np.int64))                # exactly block_size is fine
    with pytest.raises(ValueError, match=r"input_ids.*\(batch, time\)"):
        model(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"input_ids.*\(batch, time\)"):
        model(np.ones((1, 2, 3), dtype=np.int64))
    for bad in (-1, V, V + 5):
        with pytest.raises(ValueError, match=rf"pad_token_id={bad}\b.*{V}"):
            BERT(tiny_config(pad_token_id=bad))
    with pytest.raises(ValueError, match="n_layer"):
        BERT(tiny_config(n_layer=0))
    with pytest.raises(ValueError, match=r"n_embd=8.*n_head=3"):
        BERT(tiny_config(n_head=3))


def test_dropout_only_while_training_and_configure_optimizers():
    model = tiny_bert(seed=6, dropout=0.5)
    plain = tiny_bert(seed=6, dropout=0.0)
    ids, _ = padded_batch([8, 6], seed=6)
    model.eval()
    np.testing.assert_array_equal(model.hidden_states(ids).numpy(),
                                  plain.hidden_states(ids).numpy())
    model.train()
    assert not np.allclose(model.hidden_states(ids).numpy(), model.hidden_states(ids).numpy())
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.8, 0.9))
    named = dict(model.named_parameters())
    by_id = {id(p): n for n, p in named.items()}
    decayed = {by_id[id(p)] for g in opt.param_groups if g["weight_decay"] > 0
               for p in g["params"]}
    assert decayed == {n for n, p in named.items() if p.ndim >= 2}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)


# --- gradient checks --------------------------------------------------------------------
GRADCHECK_PARAMS = ("transformer.wte.weight", "transformer.wpe.weight",
                    "transformer.h.0.attn.c_attn.weight", "transformer.h.1.ln_1.weight",
                    "transformer.ln_f.weight", "mlm_head.dense.weight", "mlm_head.bias",
                    "mlm_head.ln.weight")


def masked_lm_case(seed):
    ids, mask = padded_batch([8, 5, 3], seed=seed)
    rng = np.random.default_rng(seed)
    labels = np.where(mask & (rng.random(ids.shape) < 0.5), rng.integers(0, V, ids.shape),
                      -100)
    labels[0, 0], labels[2, 2] = 3, 11           # at least two labelled positions
    return ids, labels


@pytest.mark.parametrize("mode", MODES)
def test_mlm_loss_gradcheck_with_padding(mode):
    model = tiny_bert(seed=7)
    ids, labels = masked_lm_case(7)
    named = dict(model.named_parameters())
    params = [named[n] for n in GRADCHECK_PARAMS]
    with kernels.use(mode):
        assert gradcheck(lambda *_: model(ids, labels=labels)[1], *params)
        assert gradcheck(lambda *_: model.hidden_states(ids), named["transformer.wte.weight"],
                         named["transformer.h.1.mlp.c_fc.weight"])


@pytest.mark.parametrize("mode", MODES)
def test_mlm_gradcheck_every_parameter_elementwise(mode):
    tg.manual_seed(0)
    model = randomize(BERT(BERTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=2,
                                      n_embd=4, dropout=0.0)).double(), seed=1, scale=0.5)
    ids = np.array([[2, 5, 6, 0], [3, 1, 0, 0]])
    labels = np.array([[-100, 4, 1, -100], [6, -100, -100, -100]])
    with kernels.use(mode):
        assert gradcheck(lambda *_: model(ids, labels=labels)[1], *model.parameters(),
                         max_elements=10_000)


def test_fused_and_reference_agree():
    model = tiny_bert(seed=8)
    ids, labels = masked_lm_case(8)
    out = {}
    for mode in MODES:
        with kernels.use(mode):
            model.zero_grad()
            logits, loss = model(ids, labels=labels)
            loss.backward()
            out[mode] = [logits.numpy(), loss.numpy()] + [p.grad.numpy()
                                                          for p in model.parameters()]
    for a, b in zip(out["fused"], out["reference"]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# --- against PyTorch (tests/torch_reference.py) ---------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bias", [True, False])
def test_bert_matches_pytorch(mode, bias):
    torch = pytest.importorskip("torch")
    from torch_reference import assert_grads_match, build_torch_bert, copy_weights_from
    model = tiny_bert(seed=9, bias=bias)
    ids, labels = masked_lm_case(9)
    tmodel = build_torch_bert(model.config, torch.float64)
    assert {n for n, _ in model.named_parameters()} == {n for n, _ in tmodel.named_parameters()}
    copy_weights_from(model, tmodel)
    with kernels.use(mode):
        model.zero_grad()
        logits, loss = model(ids, labels=labels)
        loss.backward()
        full, _ = model(ids)
    tl, tloss = tmodel(torch.from_numpy(ids), torch.from_numpy(labels))
    tloss.backward()
    tight = TOLERANCE["float64"]
    np.testing.assert_allclose(full.numpy(), tl.detach().numpy(), **tight)
    np.testing.assert_allclose(logits.numpy(), tl.detach().numpy()[labels != -100], **tight)
    np.testing.assert_allclose(loss.item(), tloss.item(), **tight)
    assert_grads_match(model, tmodel, **tight)


# --- save / load ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_pretrained_round_trip(tmp_path, dtype):
    model = tiny_bert(seed=10, dtype=dtype, pad_token_id=4, dropout=0.2)
    model.save_pretrained(tmp_path)
    config = json.load(open(tmp_path / "config.json"))
    assert config["model_type"] == "BERT" and config["pad_token_id"] == 4
    loaded = BERT.from_pretrained(tmp_path)
    assert loaded.config == model.config and not loaded.training
    assert loaded.mlm_head.weight is loaded.transformer.wte.weight        # still tied
    a, b = state(model), state(loaded)
    assert a.keys() == b.keys()
    for k in a:
        assert b[k].dtype == np.dtype(dtype), k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ids, labels = masked_lm_case(10)
    model.eval()
    np.testing.assert_array_equal(model(ids, labels=labels)[1].numpy(),
                                  loaded(ids, labels=labels)[1].numpy())
    with pytest.raises(ValueError, match="'BERT'.*'GPT'"):
        GPT.from_pretrained(tmp_path)


# --- the sequence classifier: pooling ---------------------------------------------------
def head(model, pooled):
    return pooled @ model.classifier.weight.numpy() + model.classifier.bias.numpy()


@settings(max_examples=20)
@given(st.lists(st.integers(1, BLOCK), min_size=1, max_size=3), st.integers(0, 2**16),
       st.sampled_from(MODES))
def test_cls_and_mean_pooling_against_numpy(lengths, seed, mode):
    ids, mask = padded_batch(lengths, seed=seed)
    for pooling in ("cls", "mean"):
        model = tiny_classifier("BERT", pooling, seed=seed % 3)
        with kernels.use(mode):
            h = model.body.hidden_states(ids).numpy()                  # (B, T, C)
            logits, loss = model(ids)
            assert loss is None and logits.shape == (len(lengths), 3)
            if pooling == "cls":
                pooled = h[:, 0]
            else:     # the mean over the real tokens only
                pooled = np.stack([h[b, :n].mean(0) for b, n in enumerate(lengths)])
            np.testing.assert_allclose(model.pool(tg.Tensor(h), mask).numpy(), pooled,
                                       rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(logits.numpy(), head(model, pooled), rtol=1e-10,
                                       atol=1e-12)
            # The explicit mask means the same; the ids under padding do not matter.
            junk = np.where(mask, ids, 7)
            np.testing.assert_allclose(model(junk, mask)[0].numpy(), logits.numpy(),
                                       rtol=1e-10, atol=1e-12)


@settings(max_examples=20)
@given(st.lists(st.integers(1, BLOCK), min_size=1, max_size=3), st.integers(0, 2**16))
def test_last_token_pooling_of_a_gpt_with_right_padding(lengths, seed):
    """'last' reads the last real token of each row, and for a GPT body it equals running
    GPT.hidden_states on the unpadded sequence and taking its final position."""
    ids, mask = padded_batch(lengths, seed=seed)
    model = tiny_classifier("GPT", "last", seed=seed % 3)
    assert model.config.pooling == "last"
    logits, _ = model(ids, mask)
    gpt = model.body
    pooled = np.stack([gpt.hidden_states(ids[b:b + 1, :n]).numpy()[0, -1]
                       for b, n in enumerate(lengths)])
    np.testing.assert_allclose(logits.numpy(), head(model, pooled), rtol=1e-10, atol=1e-12)
    h = gpt.hidden_states(ids, mask).numpy()
    np.testing.assert_allclose(model.pool(tg.Tensor(h), mask).numpy(),
                               h[np.arange(len(lengths)), np.array(lengths) - 1], rtol=0,
                               atol=0)
    # Without a mask a GPT (which has no [PAD]) reads every token: the last column.
    full, _ = model(ids)
    np.testing.assert_allclose(full.numpy(), head(model, gpt.hidden_states(ids).numpy()[:, -1]),
                               rtol=1e-10, atol=1e-12)


def test_last_pooling_on_a_bert_body_uses_the_default_pad_mask():
    ids, mask = padded_batch([3, 8, 5], seed=11)
    model = tiny_classifier("BERT", "last", seed=1)
    h = model.body.hidden_states(ids).numpy()
    np.testing.assert_allclose(model(ids)[0].numpy(), head(model, h[[0, 1, 2], [2, 7, 4]]),
                               rtol=1e-10, atol=1e-12)


def test_classifier_loss_and_labels_shape():
    model = tiny_classifier("BERT", "mean", num_labels=4)
    ids, mask = padded_batch([8, 4, 2], seed=12)
    labels = np.array([0, 3, 1])
    logits, loss = model(ids, mask, labels)
    assert loss.item() == pytest.approx(np_cross_entropy(logits.numpy(), labels), rel=1e-12)
    for bad in (np.array([0, 1]), np.array([[0], [1], [2]]), np.array(1)):
        with pytest.raises(ValueError, match=r"labels.*\(3,\)"):
            model(ids, mask, bad)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("body_type,pooling", [("BERT", "cls"), ("BERT", "mean"),
                                               ("BERT", "last"), ("GPT", "last"),
                                               ("GPT", "mean")])
def test_classifier_gradcheck(mode, body_type, pooling):
    model = tiny_classifier(body_type, pooling, seed=13)
    ids, mask = padded_batch([8, 5, 2], seed=13)
    labels = np.array([2, 0, 1])
    named = dict(model.named_parameters())
    params = [named[n] for n in ("body.transformer.wte.weight", "body.transformer.wpe.weight",
                                 "body.transformer.h.0.attn.c_attn.weight",
                                 "body.transformer.h.1.mlp.c_proj.weight",
                                 "body.transformer.ln_f.weight", "classifier.weight",
                                 "classifier.bias")]
    with kernels.use(mode):
        assert gradcheck(lambda *_: model(ids, mask, labels)[1], *params)


# --- building a classifier from a body ----------------------------------------------------
@pytest.mark.parametrize("body_type", ["BERT", "GPT"])
def test_from_body_keeps_the_body_weights(body_type):
    body = (tiny_bert if body_type == "BERT" else tiny_gpt)(seed=14, dtype="float32")
    body.eval()
    model = SequenceClassifier.from_body(body, 5, label_names=list("abcde"))
    assert model.config.body_type == body_type and model.config.num_labels == 5
    assert model.config.pooling == ("cls" if body_type == "BERT" else "last")
    assert model.config.label_names == list("abcde") and not model.body.training
    a, b = state(body), state(model.body)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert model.classifier.weight.shape == (C, 5)
    assert SequenceClassifier.from_body(body, 2, pooling="mean").config.pooling == "mean"


@pytest.mark.parametrize("body_type", ["BERT", "GPT"])
def test_from_body_keeps_a_float64_body_float64(body_type):
    """The weights are kept, not rounded to the float32 a fresh classifier starts in (as
    ``from_pretrained`` keeps a float64 model float64)."""
    body = (tiny_bert if body_type == "BERT" else tiny_gpt)(seed=15, dtype="float64")
    model = SequenceClassifier.from_body(body, 3)
    a, b = state(body), state(model.body)
    for k in a:
        assert b[k].dtype == np.float64, (k, b[k].dtype)
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_from_pretrained_body_bert_and_gpt(tmp_path):
    bert, gpt = tiny_bert(seed=16, dtype="float32"), tiny_gpt(seed=16, dtype="float32")
    bert.save_pretrained(tmp_path / "bert")
    gpt.save_pretrained(tmp_path / "gpt")
    for name, body, pooling in (("bert", bert, "cls"), ("gpt", gpt, "last")):
        model = SequenceClassifier.from_pretrained_body(tmp_path / name, 4,
                                                        label_names=["a", "b", "c", "d"])
        assert model.config.body_type == type(body).__name__
        assert model.config.pooling == pooling and model.config.num_labels == 4
        assert model.training and model.body.training          # ready to fine-tune
        assert {p.dtype for p in model.parameters()} == {np.dtype("float32")}  # not cast
        assert {p.device for p in model.parameters()} == {tg.get_default_device()}
        a, b = state(body), state(model.body)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        other = SequenceClassifier.from_pretrained_body(str(tmp_path / name), 2, "mean",
                                                        dropout=0.3)
        assert other.config.pooling == "mean" and other.config.dropout == 0.3


def test_from_pretrained_body_errors(tmp_path):
    missing = tmp_path / "nothing_here"
    with pytest.raises(FileNotFoundError, match="no pretrained model in.*nothing_here"):
        SequenceClassifier.from_pretrained_body(missing, 2)
    tiny_classifier().save_pretrained(tmp_path / "clf")      # a classifier is not a body
    with pytest.raises(ValueError, match="SequenceClassifier.*cannot be fine-tuned"):
        SequenceClassifier.from_pretrained_body(tmp_path / "clf", 2)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": "MLP"}))
    with pytest.raises(ValueError, match="'MLP'"):
        SequenceClassifier.from_pretrained_body(tmp_path / "odd", 2)


def test_invalid_classifier_configs():
    with pytest.raises(ValueError, match="pooling.*'max'"):
        tiny_classifier(pooling="max")
    with pytest.raises(ValueError, match="at least 2 labels.*1"):
        tiny_classifier(num_labels=1)
    with pytest.raises(ValueError, match="body_type.*'LSTM'"):
        SequenceClassifier(ClassifierConfig("LSTM", {}, 2))
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier.from_body(tiny_bert(), 2, pooling="first")


# --- freezing and the optimizer -----------------------------------------------------------
def batch_loss(model, seed=17):
    ids, mask = padded_batch([8, 6, 3], seed=seed)
    return model(ids, mask, np.array([1, 0, 2]))[1]


def optimizer_ids(opt):
    return [id(p) for g in opt.param_groups for p in g["params"]]


@pytest.mark.parametrize("body_type", ["BERT", "GPT"])
def test_freeze_body_freezes_every_body_parameter(body_type):
    """freeze_body(): all of the body stops training -- no requires_grad, no gradient, not in
    the optimizer -- and only the head learns."""
    model = tiny_classifier(body_type, "last" if body_type == "GPT" else "cls", seed=18)
    assert model.freeze_body() is model
    loss = batch_loss(model)
    loss.backward()
    for n, p in model.body.named_parameters():
        assert p.grad is None, n
    assert all(p.grad is not None for p in model.classifier.parameters())
    trainable = [n for n, p in model.body.named_parameters() if p.requires_grad]
    assert trainable == [], f"still trainable after freeze_body(): {trainable}"
    opt = model.configure_optimizers(0.1, 1e-3, body_lr=1e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[i] for i in optimizer_ids(opt)) == ["classifier.bias",
                                                            "classifier.weight"]


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("body_type", ["BERT", "GPT"])
def test_freeze_first_k_layers(body_type, k):
    model = tiny_classifier(body_type, "mean", seed=19)
    model.freeze_body(k)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected = {"body.transformer.wte.weight", "body.transformer.wpe.weight"}
    expected |= {n for n, _ in model.named_parameters()
                 if re.match(rf"body\.transformer\.h\.({'|'.join(map(str, range(k)))})\.", n)
                 and k > 0}
    assert frozen == expected
    batch_loss(model).backward()
    named = dict(model.named_parameters())
    for n in expected:
        assert named[n].grad is None, n
    for n in ("body.transformer.ln_f.weight", "classifier.weight"):
        assert named[n].grad is not None, n
    if k < 2:
        assert named["body.transformer.h.1.attn.c_attn.weight"].grad is not None
    opt = model.configure_optimizers(0.0, 1e-3)
    assert not {id(named[n]) for n in expected} & set(optimizer_ids(opt))


def test_configure_optimizers_body_lr_and_decay():
    model = tiny_classifier("BERT", "cls", seed=20, dtype="float32")
    opt = model.configure_optimizers(weight_decay=0.05, learning_rate=1e-3, body_lr=2e-4,
                                     betas=(0.8, 0.95))
    assert isinstance(opt, tg.optim.AdamW)
    body_ids = {id(p) for p in model.body.parameters()}
    head_ids = {id(p) for p in model.classifier.parameters()}
    by_id = {id(p): p for p in model.parameters()}
    seen = optimizer_ids(opt)
    assert len(seen) == len(set(seen))                               # each parameter once
    assert head_ids <= set(seen) and set(seen) <= body_ids | head_ids
    assert {id(p) for p in model.body.transformer.parameters()} <= set(seen)
    for g in opt.param_groups:
        ids = {id(p) for p in g["params"]}
        assert ids <= body_ids or ids <= head_ids                    # never mixed
        assert g["lr"] == (2e-4 if ids <= body_ids else 1e-3)
        assert tuple(g["betas"]) == (0.8, 0.95)
        for i in ids:
            assert (by_id[i].ndim >= 2) == (g["weight_decay"] == 0.05)
            assert g["weight_decay"] in (0.0, 0.05)
    same = model.configure_optimizers(0.05, 1e-3)                    # body_lr defaults to lr
    assert {g["lr"] for g in same.param_groups} == {1e-3}
    # Frozen parameters are left out: with the body frozen only the head's groups remain.
    model.freeze_body()
    head_only = model.configure_optimizers(0.05, 1e-3, body_lr=2e-4)
    assert set(optimizer_ids(head_only)) <= body_ids | head_ids
    assert head_ids <= set(optimizer_ids(head_only))
    assert not {id(p) for p in model.body.transformer.parameters()} & set(
        optimizer_ids(head_only))


# --- classifier save / load ---------------------------------------------------------------
@pytest.mark.parametrize("body_type", ["BERT", "GPT"])
def test_classifier_save_pretrained_round_trip(tmp_path, body_type):
    model = tiny_classifier(body_type, "mean", num_labels=3, seed=21)
    model.config.label_names = ["json", "email", "logging"]
    model.save_pretrained(tmp_path)
    config = json.load(open(tmp_path / "config.json"))
    assert config["model_type"] == "SequenceClassifier" and config["body_type"] == body_type
    loaded = SequenceClassifier.from_pretrained(tmp_path)
    assert loaded.config == model.config and not loaded.training
    assert loaded.config.label_names == ["json", "email", "logging"]
    a, b = state(model), state(loaded)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ids, mask = padded_batch([8, 3], seed=21)
    model.eval()
    np.testing.assert_array_equal(model(ids, mask)[0].numpy(), loaded(ids, mask)[0].numpy())
    with pytest.raises(ValueError, match="SequenceClassifier"):
        BERT.from_pretrained(tmp_path)
