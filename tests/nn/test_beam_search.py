"""Beam search and n-gram blocking in ``tinygradlm.generate``, and the encoder-decoder side of
``generate``.

Three kinds of evidence:
- exhaustive: on models small enough to enumerate every continuation (vocabulary 4, three
  new tokens), beam search with enough beams returns exactly the hypotheses of highest
  (length-penalised) log-probability, computed from the model's full forward;
- transformers: token-identical outputs on the checked-in tiny GPT-2 across num_beams,
  length_penalty, early_stopping, num_return_sequences, no_repeat_ngram_size, eos, padding;
- consistency: the KV cache changes nothing, one beam is greedy decoding.

The encoder-decoder path runs on ``Seq2SeqStandIn``: a NumPy model with the interface
``generate`` expects (encode / decode / new_cache), whose next-token logits depend on the
source (through the memory and its padding mask), the last two target tokens and the
position, with a cached path and a deliberately separate, uncached recompute path."""
import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygradlm as tg
from tinygradlm import nn
from tinygradlm.generate import EncoderDecoderSteps, _beam_search, generate

from strategies import set_data

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-gpt2"


# --- models --------------------------------------------------------------------------------
def tiny_gpt(seed=0, vocab=11, block=8, scale=0.5):
    """A float64 GPT with large random weights: peaked, tie-free next-token distributions."""
    tg.manual_seed(seed)
    model = nn.GPT(nn.GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2,
                                n_embd=8)).double()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        set_data(p, rng.standard_normal(p.shape) * scale)
    return model


class StandInCache:
    """The stand-in's decoder cache: every target token seen so far, (N, past)."""

    def __init__(self):
        self.tokens = np.zeros((0, 0), dtype=np.int64)

    def __len__(self):
        return self.tokens.shape[1]

    def reorder(self, index, cross=True):      # no source state: ``cross`` changes nothing
        self.tokens = self.tokens[np.asarray(index)]


class Seq2SeqStandIn(nn.Module):
    """Next-token logits at target position t =
    bigram[first real source token, y_t] + skip[y_{t-1}] + pos[t] + length[number of real
    source tokens].  The memory is the source ids (B, Ts, 1); the padding mask decides which
    of them is "first" and how many count."""

    is_encoder_decoder = True

    def __init__(self, seed=0, src_vocab=6, tgt_vocab=5, block=6, start=0, eos=None,
                 pad=None, bos=None, scale=1.5):
        super().__init__()
        self.config = SimpleNamespace(vocab_size=src_vocab, tgt_vocab_size=tgt_vocab,
                                      tgt_block_size=block, decoder_start_token_id=start,
                                      eos_token_id=eos, pad_token_id=pad, bos_token_id=bos)
        self.weight = nn.Parameter(tg.zeros(1))
        rng = np.random.default_rng(seed)
        self.bigram = rng.standard_normal((src_vocab, tgt_vocab, tgt_vocab)) * scale
        self.skip = rng.standard_normal((tgt_vocab, tgt_vocab)) * scale
        self.pos = rng.standard_normal((block, tgt_vocab)) * scale
        self.length = rng.standard_normal((32, tgt_vocab)) * scale
        self.encodes, self.fed = 0, []

    def encode(self, input_ids, attention_mask=None):
        self.encodes += 1
        ids = np.asarray(input_ids)
        assert ids.ndim == 2 and (attention_mask is None or
                                  np.asarray(attention_mask).shape == ids.shape)
        return tg.Tensor(ids[..., None].astype(np.float64), device="cpu")   # (B, Ts, 1)

    def new_cache(self):
        return StandInCache()

    def _source(self, memory, attention_mask):
        src = memory.numpy()[..., 0].astype(np.int64)               # (N, Ts)
        mask = (np.ones(src.shape, bool) if attention_mask is None
                else np.asarray(attention_mask, dtype=bool))
        first = src[np.arange(len(src)), mask.argmax(axis=1)]       # (N,)
        return first, mask.sum(axis=1)

    def decode(self, decoder_ids, memory, attention_mask=None, cache=None):
        ids = np.asarray(decoder_ids)
        self.fed.append(ids.shape)
        first, n_real = self._source(memory, attention_mask)
        assert len(ids) == len(first), "memory and decoder rows must match"
        if cache is None:
            return tg.Tensor(self._recompute(ids, first, n_real))
        past = len(cache)
        assert past + ids.shape[1] <= self.config.tgt_block_size
        full = np.concatenate([cache.tokens.reshape(len(ids), past), ids], axis=1)
        cache.tokens = full
        t = np.arange(past, full.shape[1])                          # positions of the new
        prev = np.where(t > 0, full[:, np.maximum(t - 1, 0)], -1)   # (N, T_new)
        logits = (self.bigram[first[:, None], full[:, t]] + self.pos[t]
                  + self.length[n_real][:, None])
        return tg.Tensor(logits + np.where(prev[..., None] >= 0, self.skip[prev], 0.0))

    def _recompute(self, ids, first, n_real):
        """The uncached path, written out position by position."""
        N, T = ids.shape
        logits = np.zeros((N, T, self.config.tgt_vocab_size))
        for n in range(N):
            for t in range(T):
                logits[n, t] = (self.bigram[first[n], ids[n, t]] + self.pos[t]
                                + self.length[n_real[n]])
                if t > 0:
                    logits[n, t] += self.skip[ids[n, t - 1]]
        return logits

    def log_prob(self, src, targets):
        """Sum of log p of each row of ``targets`` (M, n) after the start token, given one
        source row; (M, n) per-token log-probs."""
        ids = np.concatenate([np.full((len(targets), 1), self.config.decoder_start_token_id),
                              targets], axis=1)
        mem = tg.Tensor(np.repeat(np.asarray(src)[None, :, None], len(ids), 0).astype(float))
        logits = self.decode(ids[:, :-1], mem, None)
        return token_log_probs(logits.numpy(), targets)


def token_log_probs(logits, targets):
    """logits (M, n, V) predicting targets (M, n) -> per-token log p (M, n)."""
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def gpt_log_probs(model, prompt, targets):
    """Per-token log p (M, n) of each continuation in targets (M, n) after ``prompt`` (T,),
    from one full forward pass (no cache)."""
    T = len(prompt)
    seqs = np.concatenate([np.repeat(np.asarray(prompt)[None], len(targets), 0), targets], 1)
    with tg.no_grad():
        logits, _ = model(seqs)
    return token_log_probs(logits.numpy()[:, T - 1:-1], targets)


def ranked_hypotheses(per_token, continuations, eos, length_penalty):
    """Every distinct hypothesis (cut after its first eos), best first, with its score
    sum(log p) / length ** length_penalty, as transformers scores finished hypotheses."""
    scored = {}
    for row, logp in zip(continuations, per_token):
        hits = np.flatnonzero(np.isin(row, eos)) if eos is not None else []
        n = hits[0] + 1 if len(hits) else len(row)
        scored[tuple(row[:n])] = logp[:n].sum() / n ** length_penalty
    return sorted(scored.items(), key=lambda kv: -kv[1])


def strip(row, prompt_len, eos, n_max):
    """A generated row's continuation, cut after its first eos (the rest is filler)."""
    new = row[prompt_len:prompt_len + n_max]
    hits = np.flatnonzero(np.isin(new, eos)) if eos is not None else []
    return tuple(new[:hits[0] + 1]) if len(hits) else tuple(new)


def beam_options(**kw):
    """The options ``_beam_search`` reads, HF's defaults unless given."""
    o = dict(num_beams=1, num_return_sequences=1, length_penalty=1.0, early_stopping=False,
             repetition_penalty=1.0, no_repeat_ngram_size=0)
    o.update(kw)
    return o


# --- decoder-only: beams against enumeration, greedy and the cache -------------------------
@pytest.mark.usefixtures("device")   # cpu, and cuda when usable
def test_one_beam_is_greedy():
    model = tiny_gpt(1)
    x = np.random.default_rng(1).integers(0, 11, (3, 3))
    greedy = generate(model, x, max_new_tokens=9).numpy()           # past block_size too
    np.testing.assert_array_equal(generate(model, x, max_new_tokens=9, num_beams=1).numpy(),
                                  greedy)
    # The beam-search loop itself with a single beam (no eos: nothing ends early).
    from tinygradlm.generate import DecoderOnlySteps
    steps = DecoderOnlySteps(model, x, None, 1, use_cache=True)
    with tg.no_grad():
        np.testing.assert_array_equal(_beam_search(steps, 9, 3, beam_options(), [], None),
                                      greedy)


@pytest.mark.parametrize("eos, length_penalty, early_stopping", [
    (None, 0.0, False), (None, 1.0, "never"),
    (1, 0.0, False), (1, 0.0, "never"), (1, 1.0, "never"), (1, 2.5, "never"),
    (1, -0.7, "never"), (2, 1.0, "never"), ([1, 2], 1.0, "never"),
])
@pytest.mark.usefixtures("device")   # cpu, and cuda when usable
def test_enough_beams_find_the_most_likely_hypotheses(eos, length_penalty, early_stopping):
    """V = 4, 3 new tokens: 16 = V^2 beams keep every prefix alive, so beam search must
    return the exact top hypotheses among all 64 continuations, best first (the winners here
    mix lengths 1, 2 and 3; early_stopping="never" makes the search exact for any length
    penalty, False only for length_penalty <= 0)."""
    V, n, K = 4, 3, 16
    model = tiny_gpt(7, vocab=V, scale=1.0)
    prompts = np.array([[1, 0], [3, 2]])
    out = generate(model, prompts, max_new_tokens=n, num_beams=K, num_return_sequences=3,
                   length_penalty=length_penalty, early_stopping=early_stopping,
                   eos_token_id=eos).numpy()
    continuations = np.array(list(itertools.product(range(V), repeat=n)))    # (64, 3)
    for b, prompt in enumerate(prompts):
        ranked = ranked_hypotheses(gpt_log_probs(model, prompt, continuations), continuations,
                                   eos, length_penalty)
        got = [strip(row, 2, eos, n) for row in out[3 * b:3 * b + 3]]
        assert got == [h for h, _ in ranked[:3]], (b, got, ranked[:4])


@pytest.mark.parametrize("use_padding", [False, True])
@pytest.mark.usefixtures("device")   # cpu, and cuda when usable
def test_beams_with_cache_equal_without(use_padding):
    """Including past block_size (the window is rebuilt) and with left padding."""
    model = tiny_gpt(2)
    x = np.random.default_rng(2).integers(1, 11, (2, 4))
    mask = np.ones_like(x)
    if use_padding:
        x[1, :2], mask[1, :2] = 0, 0
    kw = dict(attention_mask=mask, max_new_tokens=9, num_beams=3, num_return_sequences=2,
              eos_token_id=5, pad_token_id=0, no_repeat_ngram_size=3, length_penalty=0.5)
    cached = generate(model, x, **kw).numpy()
    plain = generate(model, x, use_cache=False, **kw).numpy()
    np.testing.assert_array_equal(cached, plain)
    assert cached.shape[0] == 4


def test_beam_search_keeps_the_survivors_caches(monkeypatch):
    """After the first step the model sees one new token per row (the cache was reordered,
    not rebuilt) until the window is full."""
    model = tiny_gpt(3)
    fed = []
    forward = type(model).forward

    def spy(idx, *args, **kwargs):
        fed.append(np.asarray(idx).shape)
        return forward(model, idx, *args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    generate(model, [[1, 2, 3], [4, 5, 6]], max_new_tokens=7, num_beams=4)
    assert fed == [(8, 3)] + [(8, 1)] * 5 + [(8, 8)]


@pytest.mark.usefixtures("device")   # cpu, and cuda when usable
def test_no_repeat_ngrams_in_every_mode():
    model = tiny_gpt(4, scale=0.3)
    x = np.random.default_rng(4).integers(0, 11, (3, 3))
    for n, opts in itertools.product([1, 2, 3], [dict(), dict(do_sample=True),
                                                 dict(num_beams=3, num_return_sequences=3)]):
        tg.manual_seed(0)
        out = generate(model, x, max_new_tokens=5, no_repeat_ngram_size=n, **opts).numpy()
        for row in out:     # an n-gram ending in a new token occurred nowhere before
            grams = [tuple(row[i - n:i]) for i in range(n, len(row) + 1)]
            for end in range(max(x.shape[1] + 1, n), len(row) + 1):
                assert grams[end - n] not in grams[:end - n], (n, opts, row)
    # Without the ban this model repeats itself, so the ban did something.
    free = generate(model, x, max_new_tokens=5).numpy()
    assert any(len(set(row)) < len(row) for row in free)


def test_generation_config_sets_beam_defaults():
    model = tiny_gpt(5)
    x = np.array([[1, 2], [3, 4]])
    explicit = generate(model, x, max_new_tokens=4, num_beams=3, num_return_sequences=2,
                        length_penalty=0.0).numpy()
    model.generation_config = {"num_beams": 3, "num_return_sequences": 2,
                               "length_penalty": 0.0}
    np.testing.assert_array_equal(generate(model, x, max_new_tokens=4).numpy(), explicit)
    assert generate(model, x, max_new_tokens=4, num_beams=1, num_return_sequences=1,
                    ).shape == (2, 6)


# --- against transformers on the checked-in tiny GPT-2 -------------------------------------
@pytest.fixture(scope="module")
def gpt2_pair():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    hf = transformers.GPT2LMHeadModel.from_pretrained(FIXTURE).double().eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # tiny matrices: threads only contend (10x slower)
    yield torch, hf, nn.GPT.from_pretrained(FIXTURE, dtype=tg.float64)
    torch.set_num_threads(threads)


HF_CASES = [   # num_beams, length_penalty, early_stopping, num_return_sequences, ngram, eos
    (2, 1.0, False, 1, 0, None),
    (3, 1.0, False, 3, 0, 4),
    (4, 0.0, True, 2, 0, 4),
    (4, 2.0, "never", 4, 0, 4),
    (5, -1.0, "never", 2, 2, 14),
    (3, 1.0, True, 1, 2, [4, 9]),
    (8, 0.5, False, 3, 3, [14, 4, 9]),
    (2, 1.0, "never", 2, 1, 14),
    (6, 1.0, False, 6, 0, 9),
    (3, 2.0, False, 3, 0, 14),      # these two differ: the heuristic stops too early
    (3, 2.0, "never", 3, 0, 14),
    (2, 1.0, False, 2, 0, 4),
    (2, 1.0, "never", 2, 0, 4),
    (2, 1.0, False, 2, 0, [14, 4, 9, 8]),  # 5 * num_beams candidates: all best ones may end
]


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("beams, length_penalty, early_stopping, returned, ngram, eos", HF_CASES)
def test_beam_search_equals_transformers(gpt2_pair, beams, length_penalty, early_stopping,
                                         returned, ngram, eos, padded):
    torch, hf, model = gpt2_pair
    x = np.random.default_rng(1).integers(1, 16, (3, 5))
    mask = np.ones_like(x)
    if padded:
        x[0, :2], mask[0, :2], x[2, :1], mask[2, :1] = 0, 0, 0, 0
    kw = dict(num_beams=beams, length_penalty=length_penalty, early_stopping=early_stopping,
              num_return_sequences=returned, no_repeat_ngram_size=ngram, eos_token_id=eos,
              pad_token_id=0, max_new_tokens=7)
    ours, our_steps = count_forwards(model, lambda: model.generate(x, attention_mask=mask,
                                                                    **kw))
    ref = hf.generate(torch.tensor(x), attention_mask=torch.tensor(mask), do_sample=False,
                      **kw).numpy()
    np.testing.assert_array_equal(ours.numpy(), ref)
    assert our_steps == hf_steps(hf, torch, x, mask, kw)    # stopped at the same step


def count_forwards(model, run):
    """run()'s result and how many times it called the model."""
    calls = []
    forward = type(model).forward
    model.forward = lambda *a, **k: calls.append(1) or forward(model, *a, **k)
    try:
        return run(), len(calls)
    finally:
        del model.forward


def hf_steps(hf, torch, x, mask, kw):
    calls = []
    hook = hf.register_forward_hook(lambda *args: calls.append(1))
    try:
        hf.generate(torch.tensor(x), attention_mask=torch.tensor(mask), do_sample=False, **kw)
    finally:
        hook.remove()
    return len(calls)


@pytest.mark.parametrize("ngram, eos", [(1, None), (2, 14), (3, None)])
def test_greedy_no_repeat_ngram_equals_transformers(gpt2_pair, ngram, eos):
    torch, hf, model = gpt2_pair
    x = np.random.default_rng(2).integers(1, 16, (3, 4))
    kw = dict(no_repeat_ngram_size=ngram, eos_token_id=eos, pad_token_id=0, max_new_tokens=8)
    ours = model.generate(x, **kw).numpy()
    ref = hf.generate(torch.tensor(x), attention_mask=torch.ones(x.shape, dtype=torch.long),
                      do_sample=False, **kw).numpy()
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default")
def test_beam_defaults_equal_transformers(gpt2_pair):
    """Only num_beams given: length_penalty 1, early_stopping False, 20 new tokens capped
    at the context (12), one sequence per input."""
    torch, hf, model = gpt2_pair
    x = np.random.default_rng(3).integers(1, 16, (2, 3))
    ref = hf.generate(torch.tensor(x), attention_mask=torch.ones(x.shape, dtype=torch.long),
                      num_beams=3).numpy()
    np.testing.assert_array_equal(model.generate(x, num_beams=3).numpy(), ref)


# --- the encoder-decoder adapter -----------------------------------------------------------
def sources(seed=0, B=3, Ts=4, vocab=6):
    return np.random.default_rng(seed).integers(1, vocab, (B, Ts))


def test_seq2seq_output_starts_with_the_start_token_and_encodes_once():
    model = Seq2SeqStandIn(start=2)
    out = generate(model, sources(), max_new_tokens=4).numpy()
    assert out.shape == (3, 5) and (out[:, 0] == 2).all()
    assert model.encodes == 1
    assert model.fed == [(3, 1)] * 4                 # the cache holds the rest
    model.fed.clear()
    out = generate(model, sources(), max_new_tokens=3, num_beams=4, use_cache=False)
    assert model.fed == [(12, 1), (12, 2), (12, 3)] and model.encodes == 2
    # max_length counts the start token; the default is 20 new, capped at tgt_block_size.
    assert generate(model, sources(), max_length=4).shape == (3, 4)
    assert generate(model, sources(), num_beams=2).shape == (3, 6)
    # No decoder_start_token_id: bos_token_id, as in transformers.
    model.config.decoder_start_token_id, model.config.bos_token_id = None, 3
    assert (generate(model, sources(), max_new_tokens=1).numpy()[:, 0] == 3).all()


def test_seq2seq_greedy_is_the_reference_and_one_beam():
    model = Seq2SeqStandIn(seed=1)
    src = sources(1)
    out = generate(model, src, max_new_tokens=5).numpy()
    ids = np.zeros((3, 1), dtype=np.int64)                         # greedy, spelled out
    mem = tg.Tensor(src[..., None].astype(float))
    for _ in range(5):
        nxt = model.decode(ids, mem, None).numpy()[:, -1].argmax(-1)
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(out, ids)
    with tg.no_grad():
        steps = EncoderDecoderSteps(model, src, None, 1, 0, use_cache=True)
        np.testing.assert_array_equal(_beam_search(steps, 5, 3, beam_options(), [], None), out)


@pytest.mark.parametrize("opts", [dict(), dict(num_beams=3, num_return_sequences=2),
                                  dict(num_beams=4, length_penalty=0.0, eos_token_id=1,
                                       pad_token_id=4, no_repeat_ngram_size=2)])
def test_seq2seq_cached_equals_uncached(opts):
    model = Seq2SeqStandIn(seed=2)
    src = sources(2)
    src[0, :2] = 0                                   # left-padded source
    mask = src != 0
    cached = generate(model, src, attention_mask=mask, max_new_tokens=5, **opts).numpy()
    plain = generate(model, src, attention_mask=mask, max_new_tokens=5, use_cache=False,
                     **opts).numpy()
    np.testing.assert_array_equal(cached, plain)


@pytest.mark.parametrize("eos, length_penalty", [(None, 0.0), (1, 0.0), (1, 1.0), (1, 2.0),
                                                 (1, -0.5)])
def test_seq2seq_enough_beams_find_the_most_likely_hypotheses(eos, length_penalty):
    V, n, K = 4, 3, 16
    model = Seq2SeqStandIn(seed=3, tgt_vocab=V, block=4)
    src = sources(3, B=2)
    out = generate(model, src, max_new_tokens=n, num_beams=K, num_return_sequences=3,
                   eos_token_id=eos, length_penalty=length_penalty,
                   early_stopping="never").numpy()
    continuations = np.array(list(itertools.product(range(V), repeat=n)))
    for b in range(2):
        ranked = ranked_hypotheses(model.log_prob(src[b], continuations), continuations, eos,
                                   length_penalty)
        got = [strip(row, 1, eos, n) for row in out[3 * b:3 * b + 3]]
        assert got == [h for h, _ in ranked[:3]], (b, got, ranked[:4])


def test_seq2seq_eos_pads_finished_rows_and_hypotheses():
    model = Seq2SeqStandIn(seed=4, tgt_vocab=5, block=8)
    src = sources(4, B=4)
    free = generate(model, src, max_new_tokens=7).numpy()
    eos = int(free[0, 2])                            # row 0 emits it second
    out = generate(model, src, max_new_tokens=7, eos_token_id=eos, pad_token_id=4).numpy()
    for row in out:
        hits = np.flatnonzero(row[1:] == eos)
        if hits.size:
            assert (row[hits[0] + 2:] == 4).all(), row
    assert out[0, 2] == eos and (out[0, 3:] == 4).all()
    beams = generate(model, src, max_new_tokens=7, eos_token_id=eos, pad_token_id=4,
                     num_beams=3, num_return_sequences=3).numpy()
    lengths = []
    for row in beams:
        hits = np.flatnonzero(row[1:] == eos)
        lengths.append(hits[0] + 2 if hits.size else len(row))
        assert (row[lengths[-1]:] == 4).all(), row
    assert max(lengths) == beams.shape[1]            # cut to the longest returned


def test_seq2seq_source_mask_from_the_pad_id():
    """Without attention_mask the pad id marks the source's padding (either side); each row
    then gives what it gives alone."""
    model = Seq2SeqStandIn(seed=5, pad=0)
    src = np.array([[0, 0, 3, 4], [5, 1, 2, 0], [1, 2, 3, 4]])
    for opts in (dict(), dict(num_beams=3)):
        out = generate(model, src, max_new_tokens=4, **opts).numpy()
        np.testing.assert_array_equal(
            out, generate(model, src, attention_mask=src != 0, max_new_tokens=4,
                          **opts).numpy())
        for row, s in zip(out, src):
            alone = generate(model, [s[s != 0]], max_new_tokens=4, **opts).numpy()[0]
            np.testing.assert_array_equal(row, alone)
        # and the mask matters: all-real gives a different answer
        assert not np.array_equal(out, generate(model, src, attention_mask=np.ones_like(src),
                                                max_new_tokens=4, **opts).numpy())


def test_seq2seq_length_errors():
    model = Seq2SeqStandIn(block=6)
    with pytest.raises(ValueError, match=r"tgt_block_size=6.*max_new_tokens=5"):
        generate(model, sources(), max_new_tokens=6)
    with pytest.raises(ValueError, match=r"tgt_block_size=6"):
        generate(model, sources(), max_length=7)
    model.config.decoder_start_token_id = None
    with pytest.raises(ValueError, match=r"decoder_start_token_id"):
        generate(model, sources(), max_new_tokens=2)


def test_adapters_reorder_every_row_wise_state():
    """The adapter contract: after reorder(index), scores() are those of the rows ``index``
    (sequence, padding mask, memory and cache all follow), here across inputs too."""
    from tinygradlm.generate import DecoderOnlySteps
    gpt, s2s = tiny_gpt(6), Seq2SeqStandIn(seed=6)
    src = np.array([[0, 1, 2, 3], [4, 5, 1, 2], [3, 3, 2, 1]])
    mask = src != 0
    index = np.array([2, 0, 0, 1])
    with tg.no_grad():
        for make in (lambda s, m: DecoderOnlySteps(gpt, s, m, 1, True),
                     lambda s, m: EncoderDecoderSteps(s2s, s, m, 1, 0, True)):
            steps = make(src, mask)
            first = steps.scores()
            steps.append(first.argmax(-1))
            steps.reorder(index)
            fresh = make(src[index], mask[index])
            fresh.scores()
            fresh.append(first.argmax(-1)[index])
            np.testing.assert_array_equal(steps.sequences, fresh.sequences)
            np.testing.assert_allclose(steps.scores(), fresh.scores(), atol=1e-12)


def test_real_encoder_decoder_beam_rows_stay_with_their_source():
    """With the real model, beam search reorders rows only among copies of one source: the
    memory and cross-attention keys/values are left in place, and the result equals beam
    search without the cache (which recomputes everything from the sequences)."""
    tg.manual_seed(3)
    model = nn.EncoderDecoder(nn.EncoderDecoderConfig(
        vocab_size=9, block_size=6, tgt_block_size=8, n_layer=1, n_head=2, n_embd=8,
        pad_token_id=0, bos_token_id=1, eos_token_id=2))
    src = np.array([[3, 4, 5, 6, 0, 0], [7, 8, 3, 4, 5, 6]])
    for kw in (dict(num_beams=3), dict(num_beams=4, num_return_sequences=2, length_penalty=0.5)):
        cached = model.generate(src, max_new_tokens=6, **kw).numpy()
        plain = model.generate(src, max_new_tokens=6, use_cache=False, **kw).numpy()
        np.testing.assert_array_equal(cached, plain)
        assert (cached[:, 0] == 1).all()


@given(st.integers(1, 4), st.integers(1, 40), st.integers(1, 12), st.integers(0, 2**16),
       st.booleans())
def test_best_is_a_stable_sort_top_k(B, n, k, seed, ties):
    """``_best`` (partition, then sort the few) equals the plain stable argsort's first k,
    ties (lower index first) and -inf included."""
    from tinygradlm.generate import _best
    rng = np.random.default_rng(seed)
    scores = (rng.integers(-3, 3, (B, n)).astype(float) if ties else rng.standard_normal((B, n)))
    scores[rng.random((B, n)) < 0.2] = -np.inf
    want = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(_best(scores, k), want)


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, pattern", [
    (dict(num_beams=0), r"num_beams must be >= 1, got 0"),
    (dict(num_beams=-2), r"num_beams must be >= 1, got -2"),
    (dict(num_beams=2.0), r"num_beams must be an integer, got 2\.0"),
    (dict(num_beams=True), r"num_beams must be an integer, got True"),
    (dict(num_beams=2, num_return_sequences=3), r"num_return_sequences=3.*num_beams=2"),
    (dict(num_beams=2, num_return_sequences="2"), r"num_return_sequences.*integer.*'2'"),
    (dict(num_beams=2, do_sample=True), r"beam sampling.*num_beams=2"),
    (dict(num_beams=2, length_penalty="1"), r"length_penalty.*number.*'1'"),
    (dict(num_beams=2, length_penalty=float("nan")), r"length_penalty.*nan"),
    (dict(num_beams=2, early_stopping="always"), r"early_stopping.*'always'"),
    (dict(num_beams=2, early_stopping=1), r"early_stopping.*got 1"),
    (dict(no_repeat_ngram_size=-1), r"no_repeat_ngram_size must be >= 0, got -1"),
    (dict(no_repeat_ngram_size=1.5), r"no_repeat_ngram_size must be an integer, got 1\.5"),
    (dict(num_return_sequences=2), r"num_return_sequences=2.*num_beams"),
])
def test_invalid_beam_options_raise_helpful_errors(kwargs, pattern):
    model = tiny_gpt()
    with pytest.raises(ValueError, match=pattern):
        generate(model, [[1, 2, 3]], max_new_tokens=2, **kwargs)
    assert model.training


def test_beam_search_restores_the_mode_and_leaves_no_gradients():
    model = tiny_gpt()
    out = generate(model, [[1, 2]], max_new_tokens=3, num_beams=2)
    assert model.training and not out.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert generate(model, [[1, 2]], max_new_tokens=0, num_beams=3,
                    num_return_sequences=2).numpy().tolist() == [[1, 2], [1, 2]]
