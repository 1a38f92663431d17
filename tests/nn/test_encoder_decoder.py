"""The encoder-decoder (``tinygradlm.nn.EncoderDecoder``) and its new parts: cross-attention
(``Tq != Tk``, a source padding mask, a source that is all padding), sinusoidal positions, the
decoder block, teacher forcing (labels shifted right), the generation cache, tied or separate
embeddings, save/load; float64 finite-difference gradient checks driven by hypothesis (fused
kernels and references), and, when PyTorch is installed, cross-attention against
``F.scaled_dot_product_attention`` and the whole model's logits, loss (label smoothing too) and
every gradient against the PyTorch encoder-decoder of ``tests/torch_reference.py``."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinygradlm as tg
from tinygradlm import kernels, nn
from tinygradlm.gradcheck import gradcheck

from strategies import TOLERANCE, assert_close, set_data

pytestmark = pytest.mark.usefixtures("device")
MODES = ["fused", "reference"]


def tiny_config(**kw):
    base = dict(vocab_size=13, block_size=9, tgt_block_size=7, n_layer=2, n_decoder_layer=1,
                n_head=2, n_embd=8, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return nn.EncoderDecoderConfig(**{**base, **kw})


def randomize(module, seed=0, scale=0.3):
    """Every parameter random (LayerNorm gains around 1), so no gradient is trivially zero."""
    rng = np.random.default_rng(seed)
    for name, p in module.named_parameters():
        r = rng.standard_normal(p.shape) * scale
        set_data(p, 1.0 + r if re.search(r"ln_\w+\.weight$", name) else r)
    return module


def tiny_model(seed=0, dtype="float64", **kw):
    tg.manual_seed(seed)
    return randomize(nn.EncoderDecoder(tiny_config(**kw)).to(dtype), seed)


def batch(seed=0, B=3, Ts=6, Tt=5, vocab=13, tgt_vocab=None, pad_rows=(1,), empty_row=None):
    """Source ids with padding at the end of ``pad_rows`` (and a source row that is all
    padding when ``empty_row`` is given), labels with -100 after each target's end."""
    rng = np.random.default_rng(seed)
    src = rng.integers(3, vocab, (B, Ts))
    mask = np.ones((B, Ts), bool)
    for r in pad_rows:
        if r < B:
            mask[r, Ts // 2:] = False
    if empty_row is not None:
        mask[empty_row] = False
    src[~mask] = 0
    labels = rng.integers(3, tgt_vocab or vocab, (B, Tt))
    labels[0, Tt - 2:] = -100
    return src, mask, labels


# --- structure -------------------------------------------------------------------------------
def test_parameter_names_ties_and_config_resolution():
    cfg = tiny_config()
    assert (cfg.tgt_vocab_size, cfg.tgt_block_size, cfg.n_decoder_layer,
            cfg.decoder_start_token_id) == (13, 7, 1, 1)
    model = nn.EncoderDecoder(cfg)
    names = [n for n, _ in model.named_parameters()]
    assert names[:2] == ["encoder.wte.weight", "encoder.wpe.weight"]
    for n in ("decoder.h.0.cross_attn.q_proj.weight", "decoder.h.0.cross_attn.kv_proj.weight",
              "decoder.h.0.cross_attn.c_proj.bias", "decoder.h.0.ln_3.weight",
              "decoder.h.0.attn.c_attn.weight", "encoder.h.1.mlp.c_fc.weight"):
        assert n in names
    assert "decoder.wte.weight" not in names and "lm_head.weight" not in names   # tied
    assert model.decoder.wte.weight is model.encoder.wte.weight is model.lm_head.weight
    assert model.decoder.h[0].cross_attn.kv_proj.weight.shape == (8, 16)

    sep = nn.EncoderDecoder(tiny_config(tgt_vocab_size=5, tie_embeddings=False))
    names = [n for n, _ in sep.named_parameters()]
    assert "decoder.wte.weight" in names and "lm_head.weight" in names
    assert sep.decoder.wte.weight.shape == sep.lm_head.weight.shape == (5, 8)
    assert sep.encoder.wte.weight.shape == (13, 8)

    sin = nn.EncoderDecoder(tiny_config(positions="sinusoidal"))
    assert not any("wpe" in n for n, _ in sin.named_parameters())
    assert sin.num_params() == sin.num_parameters()
    assert model.num_params() == model.num_parameters() - (9 + 7) * 8


def test_sinusoidal_table_is_the_papers_formula():
    table = nn.layers.sinusoidal_table(50, 6)
    for pos in (0, 1, 7, 49):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-15)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-15)
    odd = nn.layers.sinusoidal_table(4, 5)          # an odd width ends with a sine column
    assert odd.shape == (4, 5) and odd[3, 4] == pytest.approx(math.sin(3 / 10000 ** 0.8))
    emb = nn.SinusoidalPositionalEmbedding(10, 4)
    out = emb(np.array([[0, 3]]), dtype="float64")
    assert out.shape == (1, 2, 4) and out.dtype == np.float64
    np.testing.assert_allclose(out.numpy()[0, 1], nn.layers.sinusoidal_table(10, 4)[3])
    assert emb(np.arange(2)).dtype == np.float32           # never widens a float32 model
    with pytest.raises(IndexError, match="position 10 is out of range for 10"):
        emb(np.array([10]))


def test_shift_right_puts_the_start_token_first_and_pads_ignored_labels():
    model = nn.EncoderDecoder(tiny_config())
    labels = np.array([[5, 6, 2, -100], [7, 8, 9, 2]])
    np.testing.assert_array_equal(model.shift_right(labels), [[1, 5, 6, 2], [1, 7, 8, 9]])
    start_pad = nn.EncoderDecoder(tiny_config(bos_token_id=None))
    assert start_pad.config.decoder_start_token_id == 0
    np.testing.assert_array_equal(start_pad.shift_right(np.array([[5, -100, -100]])),
                                  [[0, 5, 0]])


def test_forward_with_labels_equals_forward_with_shifted_ids():
    model = tiny_model()
    src, mask, labels = batch()
    logits, loss = model(src, mask, labels=labels)
    logits2, _ = model(src, mask, decoder_input_ids=model.shift_right(labels))
    np.testing.assert_array_equal(logits.numpy(), logits2.numpy())
    assert logits.shape == (3, 5, 13)
    # the loss is the mean next-token cross-entropy over the labelled positions
    z = logits.numpy()
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    keep = labels != -100
    want = -logp[keep, labels[keep]].mean()
    assert loss.item() == pytest.approx(want, rel=1e-12)


def test_padding_in_the_source_changes_nothing_for_real_tokens():
    """A padded source gives the same output as the same source without its padding."""
    model = tiny_model(seed=3)
    src, mask, labels = batch(seed=3, pad_rows=(1,))
    dec = model.shift_right(labels)
    full, _ = model(src, mask, decoder_input_ids=dec)
    n = int(mask[1].sum())
    alone, _ = model(src[1:2, :n], None, decoder_input_ids=dec[1:2])
    np.testing.assert_allclose(full.numpy()[1], alone.numpy()[0], rtol=1e-10, atol=1e-12)
    other = src.copy()
    other[1, n:] = 7                                # padding content must not matter
    moved, _ = model(other, mask, decoder_input_ids=dec)
    np.testing.assert_allclose(moved.numpy(), full.numpy(), rtol=1e-12, atol=1e-14)


def test_decoder_is_causal():
    model = tiny_model(seed=4)
    src, mask, labels = batch(seed=4)
    dec = model.shift_right(labels)
    base, _ = model(src, mask, decoder_input_ids=dec)
    changed = dec.copy()
    changed[:, 3] = 4
    out, _ = model(src, mask, decoder_input_ids=changed)
    np.testing.assert_array_equal(out.numpy()[:, :3], base.numpy()[:, :3])
    assert not np.allclose(out.numpy()[:, 3:], base.numpy()[:, 3:])


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_cached_decoding_equals_the_full_forward(positions):
    model = tiny_model(seed=5, positions=positions)
    src, mask, labels = batch(seed=5)
    dec = model.shift_right(labels)
    memory = model.encode(src, mask)
    full = model.decode(dec, memory, mask).numpy()
    cache = model.new_cache()
    steps = [model.decode(dec[:, :2], memory, mask, cache)]          # a prompt of two
    for t in range(2, dec.shape[1]):
        steps.append(model.decode(dec[:, t:t + 1], memory, mask, cache))
    assert len(cache) == dec.shape[1]
    np.testing.assert_allclose(np.concatenate([s.numpy() for s in steps], axis=1), full,
                               rtol=1e-10, atol=1e-12)
    # cross-attention keys/values are computed once, at the first step
    assert all(kv is not None for kv in cache.cross)


def test_cache_reorder_keeps_the_chosen_rows():
    model = tiny_model(seed=6)
    src, mask, labels = batch(seed=6)
    dec = model.shift_right(labels)
    memory = model.encode(src, mask)
    cache = model.new_cache()
    model.decode(dec[:, :3], memory, mask, cache)
    index = np.array([2, 2, 0])
    cache.reorder(index)
    nxt = model.decode(dec[index, 3:4], memory[index], mask[index], cache).numpy()
    full = model.decode(dec[index, :4], memory[index], mask[index]).numpy()
    np.testing.assert_allclose(nxt[:, 0], full[:, 3], rtol=1e-10, atol=1e-12)


# --- gradient checks (float64, finite differences) ---------------------------------------------
@st.composite
def cross_case(draw):
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    hs = draw(st.integers(1, 3))
    Tq, Tk = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["none", "padding", "empty_row"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    mask = None
    if kind != "none":
        mask = rng.random((B, Tk)) < 0.7
        mask[:, 0] = True
        if kind == "empty_row":
            mask[rng.integers(B)] = False           # a source that is all padding
    return B, H, hs, Tq, Tk, mask, rng


@pytest.mark.parametrize("mode", MODES)
@given(case=cross_case())
@settings(max_examples=15)
def test_cross_attention_gradcheck(mode, case):
    B, H, hs, Tq, Tk, mask, rng = case
    C = H * hs
    tg.manual_seed(1)
    layer = randomize(nn.CrossAttention(C, H).to("float64"), int(rng.integers(100)))
    x = tg.Tensor(rng.standard_normal((B, Tq, C)), requires_grad=True)
    memory = tg.Tensor(rng.standard_normal((B, Tk, C)), requires_grad=True)
    params = list(layer.parameters())
    with kernels.use(mode):
        out = layer(x, memory, mask)
        assert out.shape == (B, Tq, C)
        if mask is not None:        # no key at all: the attention output is zero, so only
            empty = ~mask.any(-1)   # c_proj's bias remains
            bias = layer.c_proj.bias.numpy()
            np.testing.assert_allclose(out.numpy()[empty], np.broadcast_to(bias, (int(
                empty.sum()), Tq, C)), atol=1e-14)
        assert gradcheck(lambda a, m, *ps: layer(a, m, mask), x, memory, *params)


@pytest.mark.parametrize("mode", MODES)
@given(positions=st.sampled_from(["learned", "sinusoidal"]),
       separate=st.booleans(), tie=st.booleans(), empty=st.booleans(),
       seed=st.integers(0, 2**16))
@settings(max_examples=3)       # every parameter, element by element: the costliest check here
def test_model_gradcheck(mode, positions, separate, tie, empty, seed):
    kw = dict(positions=positions, tie_embeddings=tie, n_layer=1, n_embd=4, block_size=5,
              tgt_block_size=4)
    if separate:
        kw["tgt_vocab_size"] = 7
    model = tiny_model(seed=seed, **kw)
    src, mask, labels = batch(seed=seed, B=2, Ts=4, Tt=3, tgt_vocab=kw.get("tgt_vocab_size"),
                              empty_row=1 if empty else None)
    params = list(model.parameters())

    def loss_of(*ps):
        return model(src, mask, labels=labels, label_smoothing=0.1)[1]
    with kernels.use(mode):
        assert gradcheck(loss_of, *params)


# --- against PyTorch ---------------------------------------------------------------------------
@given(case=cross_case())
@settings(max_examples=15)
def test_cross_attention_matches_torch_sdpa(case):
    torch = pytest.importorskip("torch")
    B, H, hs, Tq, Tk, mask, rng = case
    q, k, v = (rng.standard_normal((B, H, T, hs)) for T in (Tq, Tk, Tk))
    keep = np.ones((B, Tk), bool) if mask is None else mask
    m = keep[:, None, None, :]
    ours = tg.nn.functional.scaled_dot_product_attention(
        *(tg.Tensor(a) for a in (q, k, v)), attn_mask=tg.Tensor(m)).numpy()
    theirs = torch.nn.functional.scaled_dot_product_attention(
        *(torch.from_numpy(a) for a in (q, k, v)), attn_mask=torch.from_numpy(m)).numpy()
    rows = keep.any(-1)             # torch: NaN where no key is allowed; tinygradlm: zeros
    np.testing.assert_allclose(ours[rows], theirs[rows], rtol=1e-10, atol=1e-12)
    assert (ours[~rows] == 0).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,tol", list(TOLERANCE.items()))
@pytest.mark.parametrize("variant", [dict(), dict(positions="sinusoidal"),
                                     dict(tgt_vocab_size=6, tie_embeddings=False),
                                     dict(bias=False, tgt_vocab_size=6)])
def test_model_matches_pytorch(mode, dtype, tol, variant):
    torch = pytest.importorskip("torch")
    from torch_reference import (assert_grads_match, build_torch_encoder_decoder,
                                 copy_weights_from)
    model = tiny_model(seed=11, dtype=dtype, **variant)
    src, mask, labels = batch(seed=11, tgt_vocab=variant.get("tgt_vocab_size"), empty_row=2)
    tmodel = build_torch_encoder_decoder(model.config, dtype)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tmodel.named_parameters()]
    copy_weights_from(model, tmodel)
    with kernels.use(mode):
        model.zero_grad()
        logits, loss = model(src, mask, labels=labels, label_smoothing=0.1)
        loss.backward()
    dec = torch.from_numpy(model.shift_right(labels))
    tl, tloss = tmodel(torch.from_numpy(src), torch.from_numpy(mask), dec,
                       torch.from_numpy(labels), label_smoothing=0.1)
    tloss.backward()
    assert_close(logits.numpy(), tl.detach().numpy(), **tol)
    assert_close(loss.item(), tloss.item(), **tol)
    assert_grads_match(model, tmodel, **tol)


# --- training, saving, errors ----------------------------------------------------------------
def test_overfits_one_batch():
    tg.manual_seed(0)
    model = nn.EncoderDecoder(tiny_config(n_embd=16, n_layer=1))
    src, mask, labels = batch(seed=1, B=4)
    opt = tg.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        _, loss = model(src, mask, labels=labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.05


@pytest.mark.parametrize("variant", [dict(), dict(tgt_vocab_size=6, tie_embeddings=False,
                                                  positions="sinusoidal")])
def test_save_and_load_round_trip(tmp_path, variant):
    model = tiny_model(seed=12, dtype="float32", **variant)
    model.save_pretrained(tmp_path)
    back = nn.EncoderDecoder.from_pretrained(tmp_path)
    assert back.config == model.config
    src, mask, labels = batch(seed=12, tgt_vocab=variant.get("tgt_vocab_size"))
    np.testing.assert_array_equal(model(src, mask, labels=labels)[0].numpy(),
                                  back(src, mask, labels=labels)[0].numpy())
    if not variant:
        assert back.lm_head.weight is back.decoder.wte.weight is back.encoder.wte.weight


def test_errors_name_the_shapes_and_ids():
    model = tiny_model()
    src, mask, labels = batch()
    with pytest.raises(ValueError, match=r"attention_mask \(3, 4\) must match the source "
                                         r"\(batch, length\) \(3, 6\)"):
        model(src, mask[:, :4], labels=labels)
    with pytest.raises(ValueError, match=r"labels \(3, 4\) must match decoder_input_ids"):
        model(src, mask, decoder_input_ids=model.shift_right(labels), labels=labels[:, :4])
    with pytest.raises(ValueError, match="give decoder_input_ids, or labels"):
        model(src, mask)
    with pytest.raises(ValueError, match="a sequence of 10 tokens is longer than block_size=9"):
        model(np.ones((1, 10), dtype=np.int64), labels=labels[:1])
    with pytest.raises(ValueError, match="a sequence of 8 tokens is longer than block_size=7"):
        model(src, mask, labels=np.full((3, 8), 3))
    with pytest.raises(IndexError, match="token id 13 is out of range"):
        model(np.full((1, 3), 13), labels=labels[:1])
    with pytest.raises(ValueError, match="decoder_start_token_id=9 is not a token id of the "
                                         "target vocabulary of 6"):
        nn.EncoderDecoder(tiny_config(tgt_vocab_size=6, decoder_start_token_id=9))
    with pytest.raises(ValueError, match="positions must be 'learned' or 'sinusoidal'"):
        nn.EncoderDecoder(tiny_config(positions="rotary"))
    with pytest.raises(ValueError, match=r"memory \(2, 4, 8\) must be \(batch, source length, "
                                         r"n_embd\) with batch 3"):
        model.decoder.h[0].cross_attn(tg.Tensor(np.zeros((3, 2, 8))),
                                      tg.Tensor(np.zeros((2, 4, 8))))
