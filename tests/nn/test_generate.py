"""Text generation (``tinygradlm.generate``): Hugging Face's ``generate`` semantics (lengths,
num_return_sequences, greedy vs sampling), the KV cache and cropping to block_size, top-k /
top-p / temperature / repetition penalty in ``next_token``, eos handling, seeding, option
checks, and the model's train/eval mode.

Besides tiny random GPTs, two hand-made models make outcomes exact: a GPT whose final
LayerNorm is switched off so that every position's logits are one chosen vector, and a
"Markov" language model whose next-token logits depend only on the last token."""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import tinygradlm as tg
from tinygradlm import backend, nn
from tinygradlm.generate import generate, next_token

from strategies import set_data
# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")

V = 11          # vocabulary of every model here
BLOCK = 8


# --- models ---------------------------------------------------------------------------
def tiny_gpt(seed=0, dropout=0.0, scale=0.5):
    """A float64 GPT with large random weights: peaked next-token distributions, so greedy
    choices are far from ties and sampling is far from uniform."""
    tg.manual_seed(seed)
    model = nn.GPT(nn.GPTConfig(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=8,
                                dropout=dropout)).double()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        set_data(p, rng.standard_normal(p.shape) * scale)
    return model


def constant_gpt(scores):
    """A real GPT whose logits are ``scores`` at every position, whatever the input: ln_f's
    gain is 0 and its bias e_0, so the head sees e_0 and returns column 0 of wte."""
    model = tiny_gpt()
    model.transformer.ln_f.weight.data[...] = 0
    set_data(model.transformer.ln_f.bias, np.eye(8)[0])
    wte = model.transformer.wte.weight
    wte.data[:, 0] = tg.backend.to_device(np.asarray(scores, dtype=wte.dtype), wte.device)
    logits, _ = model(np.array([[1, 2, 3], [4, 5, 6]]))
    np.testing.assert_array_equal(logits.numpy(), np.broadcast_to(scores, (2, 3, V)))
    return model


class MarkovLM(nn.Module):
    """Next-token logits = ``table[last token]``; records how it was called (the shape of
    each input, whether it was in training mode) and keeps a KVCache's length honest."""

    def __init__(self, table, block_size=BLOCK, fail_at=None):
        super().__init__()
        self.config = nn.GPTConfig(vocab_size=table.shape[0], block_size=block_size,
                                   n_layer=1, n_head=1, n_embd=1)
        self.weight = nn.Parameter(tg.zeros(1))
        self.table = np.asarray(table, dtype=np.float64)
        self.calls = []
        self.fail_at = fail_at

    def forward(self, idx, targets=None, attention_mask=None, kv_cache=None):
        ids = idx.numpy() if isinstance(idx, tg.Tensor) else np.asarray(idx)
        self.calls.append((ids.shape, self.training))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("boom")
        if kv_cache is not None:
            z = tg.zeros(ids.shape[0], 1, ids.shape[1], 1)
            kv_cache.update(0, z, z)
        return tg.Tensor(self.table[ids]), None


def chain_table(chains, default=4):
    """Transition logits: chains like [0, 1, 2, 10] make 0 -> 1 -> 2 -> 10 certain."""
    table = np.zeros((V, V))
    table[:, default] = 5.0
    for chain in chains:
        for a, b in zip(chain[:-1], chain[1:]):
            table[a] = 0.0
            table[a, b] = 5.0
    return table


def reference_greedy(model, prompt, n):
    """Greedy decoding spelled out: the whole sequence, cropped to the last block_size
    tokens, through the model every step."""
    ids = np.array(prompt)
    with tg.no_grad():
        for _ in range(n):
            logits, _ = model(ids[:, -BLOCK:])
            ids = np.concatenate([ids, logits.numpy()[:, -1].argmax(-1)[:, None]], axis=1)
    return ids


def prompt(seed=0, B=2, T=3):
    return np.random.default_rng(seed).integers(0, V, (B, T))


# --- lengths and shapes (Hugging Face semantics) --------------------------------------
def test_output_shape_dtype_and_prompt_kept():
    model = tiny_gpt()
    p = prompt(B=2, T=3)
    out = generate(model, tg.Tensor(p), max_new_tokens=4)
    assert isinstance(out, tg.Tensor) and out.shape == (2, 7) and out.dtype == np.int64
    o = out.numpy()
    np.testing.assert_array_equal(o[:, :3], p)
    assert o.min() >= 0 and o.max() < V


def test_max_length_counts_the_prompt_and_max_new_tokens_wins():
    model = tiny_gpt()
    p = prompt(B=2, T=3)
    assert generate(model, p, max_length=6).shape == (2, 6)
    assert generate(model, p, max_length=6, max_new_tokens=2).shape == (2, 5)
    assert generate(model, p, max_length=2, max_new_tokens=2).shape == (2, 5)
    assert generate(model, p).shape == (2, BLOCK)      # 20 new tokens, at most to block_size
    long_context = nn.GPT(nn.GPTConfig(vocab_size=V, block_size=64, n_layer=1, n_head=1,
                                       n_embd=4))
    assert generate(long_context, p).shape == (2, 23)              # transformers' default
    assert generate(model, p, max_new_tokens=0).shape == (2, 3)
    assert generate(model, p[0], max_new_tokens=2).shape == (1, 5)  # a 1-D prompt
    assert generate(model, p[0].tolist(), max_new_tokens=2).shape == (1, 5)
    assert model.generate(p, max_new_tokens=2, do_sample=False).shape == (2, 5)


def test_num_return_sequences_repeats_each_prompt_in_place():
    model = tiny_gpt()
    p = prompt(B=2, T=3)
    tg.manual_seed(0)
    out = generate(model, p, max_new_tokens=6, num_return_sequences=3, temperature=2.0,
                   do_sample=True).numpy()
    assert out.shape == (6, 9)
    np.testing.assert_array_equal(out[:, :3], np.repeat(p, 3, axis=0))   # p0 p0 p0 p1 p1 p1
    assert len({tuple(r) for r in out[:3, 3:]}) > 1                      # sampled apart


def test_greedy_with_several_sequences_is_an_error():
    with pytest.raises(ValueError, match=r"num_return_sequences=2.*do_sample=True"):
        generate(tiny_gpt(), prompt(), do_sample=False, num_return_sequences=2)


def test_model_generate_is_generate():
    model = tiny_gpt()
    p = prompt()
    tg.manual_seed(3)
    a = model.generate(p, max_new_tokens=5, top_k=4, do_sample=True).numpy()
    tg.manual_seed(3)
    b = generate(model, p, max_new_tokens=5, top_k=4, do_sample=True).numpy()
    np.testing.assert_array_equal(a, b)


# --- greedy, the KV cache and cropping ------------------------------------------------
@settings(max_examples=12)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 2), st.integers(0, 3))
def test_greedy_with_cache_equals_without_and_the_reference(T, n, B, seed):
    """Also past block_size (the cache is rebuilt from the cropped window) and with prompts
    longer than block_size (cropped, no error)."""
    model = tiny_gpt(seed)
    p = prompt(seed, B, T)
    cached = generate(model, p, max_new_tokens=n, do_sample=False, use_cache=True).numpy()
    plain = generate(model, p, max_new_tokens=n, do_sample=False, use_cache=False).numpy()
    np.testing.assert_array_equal(cached, plain)
    np.testing.assert_array_equal(cached, reference_greedy(model, p, n))


def test_cache_feeds_one_token_until_the_window_is_full(monkeypatch):
    model = tiny_gpt()
    for use_cache, expected in [(True, [3, 1, 1, 1, 1, 1, 8, 8]),
                                (False, [3, 4, 5, 6, 7, 8, 8, 8])]:
        seen = []
        forward = type(model).forward

        def spy(idx, *args, **kwargs):
            seen.append(idx.shape[1])
            return forward(model, idx, *args, **kwargs)

        monkeypatch.setattr(model, "forward", spy)
        generate(model, prompt(T=3), max_new_tokens=8, do_sample=False, use_cache=use_cache)
        assert seen == expected, use_cache


def test_sampling_with_cache_equals_without():
    model = tiny_gpt(1)
    outs = []
    for use_cache in (True, False):
        tg.manual_seed(5)
        outs.append(generate(model, prompt(1, T=5), max_new_tokens=10, top_p=0.9,
                             do_sample=True, use_cache=use_cache).numpy())
    np.testing.assert_array_equal(*outs)


# --- sampling: greedy limits and seeds ------------------------------------------------
@pytest.mark.parametrize("opts", [dict(top_k=1), dict(top_k=1, temperature=5.0),
                                  dict(top_p=1e-9), dict(temperature=1e-8)])
def test_sampling_limits_equal_greedy(opts):
    model = tiny_gpt(2)
    p = prompt(2, B=3, T=2)
    greedy = generate(model, p, max_new_tokens=10, do_sample=False).numpy()
    for seed in (0, 1):
        tg.manual_seed(seed)
        np.testing.assert_array_equal(
            generate(model, p, max_new_tokens=10, do_sample=True, **opts).numpy(), greedy)


def test_same_seed_same_samples_other_seed_other_samples():
    model = tiny_gpt(3, scale=0.2)                 # a flatter distribution
    p = prompt(3, B=4, T=2)

    def sample(seed):
        tg.manual_seed(seed)
        return generate(model, p, max_new_tokens=12, temperature=1.5, do_sample=True).numpy()

    a, b, c = sample(7), sample(7), sample(8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Without reseeding the generator moves on.
    tg.manual_seed(7)
    first = generate(model, p, max_new_tokens=12, temperature=1.5, do_sample=True).numpy()
    second = generate(model, p, max_new_tokens=12, temperature=1.5, do_sample=True).numpy()
    assert not np.array_equal(first, second)


# --- next_token: distribution, top-k, top-p, repetition penalty -----------------------
def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def chi_square(counts, probs):
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("temperature,top_k,top_p,allowed", [
    (1.0, None, None, [0, 1, 2, 3, 4, 5]),
    (0.7, None, None, [0, 1, 2, 3, 4, 5]),
    (2.5, None, None, [0, 1, 2, 3, 4, 5]),
    (1.0, 3, None, [1, 3, 5]),
    (1.0, None, 0.8, [1, 3, 5]),          # mass of 5, 3 is < 0.8, adding 1 reaches it
    (0.7, 4, 0.95, [1, 3, 4, 5]),
])
def test_next_token_samples_from_the_warped_softmax(temperature, top_k, top_p, allowed):
    scores = np.array([-1.0, 0.9, -0.4, 1.3, 0.2, 1.7])
    z = scores / temperature
    if top_k == 3 or top_p == 0.8:
        p = softmax(scores)
        order = np.argsort(-p)
        assert list(order[:3]) == [5, 3, 1]
        assert p[[5, 3]].sum() < 0.8 <= p[[5, 3, 1]].sum()
    if top_p == 0.95:
        p = softmax(z[[1, 3, 4, 5]])
        assert p[[3, 2, 1]].sum() < 0.95          # tokens 5, 4, 3 leave room for 1
    probs = np.zeros(6)
    probs[allowed] = softmax(z[allowed])
    N = 40_000
    tg.manual_seed(11)
    draws = next_token(np.tile(scores, (N, 1)), np.zeros((N, 1), dtype=np.int64),
                       do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
    assert draws.shape == (N,)
    counts = np.bincount(draws, minlength=6)
    assert counts[[i for i in range(6) if i not in allowed]].sum() == 0
    # df <= 5: P(chi2 > 35) < 2e-6, so this catches a wrong distribution, not bad luck.
    assert chi_square(counts[allowed], probs[allowed]) < 35, (counts, probs * N)


@st.composite
def warp_case(draw):
    n = draw(st.integers(2, 8))
    scores = np.array(draw(st.lists(st.floats(-4, 4, allow_nan=False), min_size=n,
                                    max_size=n, unique=True)))
    assume(np.min(np.diff(np.sort(scores))) > 1e-3)        # no ties at the cut
    temperature = draw(st.floats(0.2, 3.0))
    top_k = draw(st.none() | st.integers(1, n + 2))
    top_p = draw(st.none() | st.floats(0.01, 1.0))
    return scores, temperature, top_k, top_p


def allowed_tokens(scores, temperature, top_k, top_p):
    order = np.argsort(-scores)                             # best first
    keep = list(order[:top_k] if top_k is not None else order)
    if top_p is not None:
        p = softmax(scores[keep] / temperature)             # already best first
        cum = np.cumsum(p)
        assume(np.min(np.abs(cum - top_p)) > 1e-9)
        keep = keep[:int(np.searchsorted(cum, top_p)) + 1]  # smallest prefix reaching top_p
    return set(int(i) for i in keep)


@settings(max_examples=40)
@given(warp_case(), st.integers(0, 2**16))
def test_top_k_and_top_p_never_leave_the_allowed_set(case, seed):
    scores, temperature, top_k, top_p = case
    allowed = allowed_tokens(scores, temperature, top_k, top_p)
    N = 300
    tg.manual_seed(seed)
    draws = next_token(np.tile(scores, (N, 1)), np.zeros((N, 1), dtype=np.int64),
                       temperature=temperature, top_k=top_k, top_p=top_p)
    assert set(draws.tolist()) <= allowed
    assert int(np.argmax(scores)) in allowed


class FixedDraws:
    """A stand-in generator whose uniform draws are all ``u``."""

    def __init__(self, u):
        self.u = u

    def random(self, shape):
        return np.full(shape, self.u)


@pytest.mark.parametrize("u", [0.0, float(np.nextafter(1.0, 0.0))])
def test_extreme_uniform_draws_stay_in_the_allowed_set(monkeypatch, u):
    """rng.random() returns values in [0, 1): both 0.0 and the largest double below 1 are
    possible draws.  Inverse-CDF sampling must map them to tokens with nonzero probability:
    the first allowed token for 0, the last allowed one for 1 - 2**-53, even when rounding
    leaves the normalised cumulative sum a few ulps short of 1."""
    monkeypatch.setattr(backend, "generator", lambda device="cpu": FixedDraws(u))
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((200, 25)) * 3
    scores[:, [0, -1]] = -50.0                  # the two worst: outside every top_k <= 23
    ids = np.zeros((200, 1), dtype=np.int64)
    draws = next_token(scores, ids, top_k=23)
    bad = (draws == 0) | (draws == 24)
    assert not bad.any(), f"{int(bad.sum())} of 200 draws with u={u!r} fell outside top_k=23"
    draws = next_token(scores, ids, top_p=0.5)
    for row, t in zip(scores, draws):
        p = softmax(row)
        assert p[p > p[t]].sum() < 0.5, "outside top_p=0.5"     # the better ones < top_p
    # Where a low temperature underflows every other probability to 0, sampling is greedy.
    z = scores / 1e-4
    one_hot = (np.exp(z - z.max(-1, keepdims=True)) > 0).sum(-1) == 1
    assert one_hot.sum() > 150
    draws = next_token(scores, ids, temperature=1e-4)
    np.testing.assert_array_equal(draws[one_hot], scores.argmax(-1)[one_hot])


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    ids = np.array([[0, 2]])

    def greedy(scores, penalty=2.0, seen=ids):
        return int(next_token(np.array([scores]), seen, do_sample=False,
                              repetition_penalty=penalty)[0])

    # Token 0 is seen: 3.0 / 2 = 1.5 -- just above 1.49, just below 1.51.
    assert greedy([3.0, 1.49, 0.0]) == 0
    assert greedy([3.0, 1.51, 0.0]) == 1
    # Negative and seen: -1.0 * 2 = -2.0 -- just above -2.01, just below -1.99.
    assert greedy([-1.0, -2.01, -5.0]) == 0
    assert greedy([-1.0, -1.99, -5.0]) == 1
    # Unseen tokens keep their logits; penalty 1 changes nothing.
    assert greedy([0.0, 0.5, 0.4]) == 1
    assert greedy([3.0, 1.51, 0.0], penalty=1.0) == 0
    # A token seen three times is penalised once (4 / 2 = 2 > 1), not three times (0.5).
    assert greedy([4.0, 1.0], seen=np.array([[0, 0, 0]])) == 0
    # Each row has its own history.
    two = next_token(np.array([[3.0, 2.0], [3.0, 2.0]]), np.array([[0], [1]]),
                     do_sample=False, repetition_penalty=2.0)
    assert two.tolist() == [1, 0]
    # The penalty comes before the temperature: a penalised token is never sampled when
    # top_k=1 would keep only the best of the penalised scores.
    tg.manual_seed(0)
    drawn = next_token(np.tile([3.0, 2.0], (50, 1)), np.zeros((50, 1), dtype=np.int64),
                       top_k=1, repetition_penalty=2.0, temperature=0.5)
    assert set(drawn.tolist()) == {1}


def test_repetition_penalty_changes_greedy_output_when_it_should():
    scores = np.full(V, -1.0)
    scores[[3, 5, 6]] = [3.0, 2.0, 1.2]
    model = constant_gpt(scores)
    p = np.array([[0]])
    plain = generate(model, p, max_new_tokens=5, do_sample=False).numpy()
    assert plain.tolist() == [[0, 3, 3, 3, 3, 3]]
    # 3 -> 3/2 = 1.5 < 2.0: token 5; then 5 -> 1.0 and 3 -> 1.5 > 1.2: token 3 from then on.
    penalised = generate(model, p, max_new_tokens=5, do_sample=False, repetition_penalty=2.0)
    assert penalised.numpy().tolist() == [[0, 3, 5, 3, 3, 3]]
    # The prompt counts as seen.
    seen = generate(model, np.array([[3]]), max_new_tokens=1, do_sample=False,
                    repetition_penalty=2.0)
    assert seen.numpy().tolist() == [[3, 5]]


# --- eos ------------------------------------------------------------------------------
@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("pad", [None, 9])
def test_eos_pads_finished_sequences_and_stops_when_all_are_done(use_cache, pad):
    # eos = 10; after eos the table would say 4, padding must win.
    model = MarkovLM(chain_table([[0, 1, 2, 10], [5, 6, 7, 8, 10]]))
    out = generate(model, np.array([[0], [5]]), max_new_tokens=8, do_sample=False,
                   eos_token_id=10, pad_token_id=pad, use_cache=use_cache).numpy()
    fill = 10 if pad is None else pad
    assert out.tolist() == [[0, 1, 2, 10, fill], [5, 6, 7, 8, 10]]
    assert len(model.calls) == 4                   # stopped as soon as both were done


def test_without_eos_generation_runs_to_the_length():
    model = MarkovLM(chain_table([[0, 1, 2, 10]]))
    out = generate(model, np.array([[0]]), max_new_tokens=6, do_sample=False).numpy()
    assert out.tolist() == [[0, 1, 2, 10, 4, 4, 4]]
    out = generate(model, np.array([[5]]), max_new_tokens=6, do_sample=False,
                   eos_token_id=10).numpy()
    assert out.tolist() == [[5, 4, 4, 4, 4, 4, 4]]


def test_eos_from_a_real_gpt_stops_after_one_token():
    scores = np.zeros(V)
    scores[7] = 4.0
    model = constant_gpt(scores)
    out = generate(model, prompt(B=3, T=4), max_new_tokens=10, do_sample=False,
                   eos_token_id=7).numpy()
    assert out.shape == (3, 5) and np.all(out[:, -1] == 7)


@pytest.mark.parametrize("pad", [None, 9])
def test_sampled_eos_padding_and_early_stop(pad):
    scores = np.zeros(V)
    scores[7] = 1.0                              # eos: about 1 in 4 per step
    model = constant_gpt(scores)
    T, n = 2, 15
    tg.manual_seed(4)
    out = generate(model, prompt(B=2, T=T), max_new_tokens=n, num_return_sequences=10,
                   eos_token_id=7, pad_token_id=pad, do_sample=True).numpy()
    fill = 7 if pad is None else pad
    gen = out[:, T:]
    firsts = []
    for row in gen:
        hits = np.flatnonzero(row == 7)
        if hits.size:
            firsts.append(hits[0])
            assert np.all(row[hits[0] + 1:] == fill), row
        else:
            assert out.shape[1] == T + n, row    # unfinished rows only at full length
    if out.shape[1] < T + n:                     # stopped early: all finished, the last just now
        assert len(firsts) == len(gen) and max(firsts) == gen.shape[1] - 1


# --- option checks and modes ----------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,pattern", [
    (dict(temperature=0.0), ValueError, r"temperature.*0"),
    (dict(temperature=-1.0), ValueError, r"temperature.*-1"),
    (dict(top_p=0.0), ValueError, r"top_p.*0"),
    (dict(top_p=1.5), ValueError, r"top_p.*1\.5"),
    (dict(top_k=-1), ValueError, r"top_k.*-1"),
    (dict(max_length=3), ValueError, r"max_length=3.*3 tokens"),
    (dict(max_length=2), ValueError, r"max_length=2"),
    (dict(max_new_tokens=-1), ValueError, r"max_new_tokens.*-1"),
    (dict(num_return_sequences=0), ValueError, r"num_return_sequences.*0"),
    (dict(repetition_penalty=0.0), ValueError, r"repetition_penalty"),
    (dict(input_ids=[[1, 11, 2]]), IndexError, r"token id 11 is out of range.* 11 rows"),
    (dict(input_ids=[[1, -1, 2]]), IndexError, r"token id -1 is out of range.* 11 rows"),
    (dict(input_ids=np.zeros((1, 0), dtype=np.int64)), ValueError, r"empty"),
    (dict(input_ids=[]), ValueError, r"empty"),
    (dict(input_ids=np.zeros((1, 3))), ValueError, r"integer"),
    (dict(input_ids=np.zeros((1, 1, 3), dtype=np.int64)), ValueError, r"\(batch, time\)"),
])
def test_invalid_options_raise_helpful_errors(kwargs, error, pattern):
    model = tiny_gpt()
    args = dict(input_ids=[[1, 2, 3]], max_new_tokens=None if "max_length" in kwargs else 2,
                do_sample=True)
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        generate(model, **args)
    assert model.training                            # restored even on errors


def test_temperature_zero_is_fine_for_greedy():
    out = generate(tiny_gpt(), [[1, 2]], max_new_tokens=3, do_sample=False, temperature=0.0)
    assert out.shape == (1, 5)


@pytest.mark.parametrize("start_training", [True, False])
def test_eval_during_generation_and_mode_restored_after(start_training):
    model = MarkovLM(chain_table([]))
    model.train(start_training)
    generate(model, [[1, 2]], max_new_tokens=3)
    assert [training for _, training in model.calls] == [False] * 3
    assert model.training is start_training
    # Also when the model raises half way.
    failing = MarkovLM(chain_table([]), fail_at=2).train(start_training)
    with pytest.raises(RuntimeError, match="boom"):
        generate(failing, [[1, 2]], max_new_tokens=3)
    assert failing.training is start_training


def test_gpt_mode_restored_and_dropout_off_while_generating():
    model = tiny_gpt(4, dropout=0.5)
    model.train()
    a = generate(model, prompt(), max_new_tokens=8, do_sample=False).numpy()
    assert all(m.training for m in model.modules())
    model.eval()
    b = generate(model, prompt(), max_new_tokens=8, do_sample=False).numpy()
    assert not any(m.training for m in model.modules())
    np.testing.assert_array_equal(a, b)            # no dropout in either run
    np.testing.assert_array_equal(a, reference_greedy(model, prompt(), 8))


def test_generate_leaves_no_graph_and_no_gradients():
    model = tiny_gpt()
    out = generate(model, prompt(), max_new_tokens=3)
    assert not out.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_error_messages_name_the_offending_values():
    with pytest.raises(ValueError) as info:
        generate(tiny_gpt(), [[1, 2, 3, 4]], max_length=4)
    assert re.search(r"max_new_tokens", str(info.value))         # says what to use instead
