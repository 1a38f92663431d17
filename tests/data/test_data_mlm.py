"""Masked-LM and fine-tuning data (tinygradlm.data): subword tokenizers with BERT's
special tokens, [CLS]/[SEP] batches, BERT masking, masked-LM batches, the unigram baseline,
the stdlib function-classification task, labelled files and classification batches."""
import json
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygradlm as tg
from tinygradlm import data
from tinygradlm.data import corpus as corpora
from tinygradlm.data import tasks
from tinygradlm.data import (BERT_SPECIAL_TOKENS, IGNORE_INDEX, CharTokenizer,
                             LabelledData, SubwordTokenizer,
                             classification_batches, encode_batch, encode_corpus, get_mlm_batch,
                             labelled_from_file, load_labelled_file, load_tokenizer, mask_tokens,
                             stdlib_function_dataset, unigram_baseline_loss)

PAD, UNK, CLS, SEP, MASK = range(5)


@pytest.fixture(scope="module")
def text():
    return corpora._stdlib_corpus(max_chars=300_000)       # ~100 KB of whole files


@pytest.fixture(scope="module")
def wp(text):
    return SubwordTokenizer.train(text, vocab_size=600, model="wordpiece",
                                  special_tokens=BERT_SPECIAL_TOKENS)


@pytest.fixture(scope="module")
def wp_bpe(text):
    return SubwordTokenizer.train(text, vocab_size=400, model="bpe",
                                  special_tokens=BERT_SPECIAL_TOKENS)


@pytest.fixture(scope="module")
def task():
    return stdlib_function_dataset()


# --- SubwordTokenizer with BERT's special tokens -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["wp", "wp_bpe"])
def test_special_tokens_are_ids_0_to_4(name, request):
    tok = request.getfixturevalue(name)
    assert BERT_SPECIAL_TOKENS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert tok.special_tokens == BERT_SPECIAL_TOKENS
    assert [tok.id_to_token(i) for i in range(5)] == list(BERT_SPECIAL_TOKENS)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id) == (PAD, UNK, CLS, SEP, MASK)
    assert tok.special_token_ids == frozenset(range(5))
    assert tok.model == ("wordpiece" if name == "wp" else "bpe")


def test_wordpiece_vocab_and_encoding(wp):
    assert wp.vocab_size == len(wp) == 600
    ids = wp.encode("def _foo_bar(self, x):\n    return self.x == 1")
    assert ids and all(5 <= i < 600 for i in ids)                  # no specials added
    tokens = [wp.id_to_token(i) for i in ids]
    assert tokens[0] == "def" and "(" in "".join(tokens)
    assert any(t.startswith("##") for t in tokens)                 # an unseen word in pieces
    assert wp.encode("") == []


def test_wordpiece_keeps_case_and_identifiers(wp):
    assert wp.encode("self") != wp.encode("Self") != wp.encode("SELF")
    # `_` is a word character: `self._x` is three words, "self" "." "_x", not five.
    words = [w for w, _ in wp.tokenizer.pre_tokenizer.pre_tokenize_str("self._x == y")]
    assert words == ["self", ".", "_x", "==", "y"]


def test_wordpiece_unknown_text_is_unk_never_an_error(wp):
    ids = wp.encode("x = 'héllo ☃' + y")                        # not in the ASCII corpus
    assert UNK in ids and wp.decode(ids).count("[UNK]") == ids.count(UNK)
    assert wp.decode(ids).startswith("x = '")


def test_special_token_text_is_ordinary_text(wp):
    # A corpus that mentions "[MASK]" must not put a real [MASK] id in the stream.
    ids = wp.encode("x = '[MASK] [CLS] [PAD]'")
    assert not set(ids) & wp.special_token_ids


@given(st.data())
def test_wordpiece_decode_joins_the_words(wp, text, draw):
    start = draw.draw(st.integers(0, len(text) - 1))
    snippet = text[start:start + draw.draw(st.integers(0, 400))]
    ids = wp.encode(snippet)
    assume(UNK not in ids)                 # a 100+ character word would be [UNK]
    # A word that starts with "##" (a "###" comment rule) reads back as a continuation
    # piece and is glued to the word before it: WordPiece's known blind spot.
    assume("##" not in snippet)
    words = [w for w, _ in wp.tokenizer.pre_tokenizer.pre_tokenize_str(snippet)]
    assert wp.decode(ids) == " ".join(words)                     # whitespace is not kept


def test_decode_skips_specials_but_not_unk(wp):
    ids = wp.encode("return x")
    row = [CLS, *ids, MASK, UNK, SEP, PAD, PAD]
    assert wp.decode(row) == "return x [UNK]"
    full = wp.decode(row, skip_special_tokens=False)
    assert full.startswith("[CLS]") and "[MASK]" in full and full.endswith("[PAD] [PAD]")
    assert wp.decode(np.array(ids)) == "return x"
    with pytest.raises(IndexError, match="token id 600"):
        wp.decode([600])


@given(st.text(max_size=60))
def test_bpe_kind_round_trips_any_text(wp_bpe, s):
    ids = wp_bpe.encode(s)
    assert not set(ids) & wp_bpe.special_token_ids               # byte level: no [UNK]
    assert wp_bpe.decode(ids) == s


def test_train_errors(text):
    bert = {"special_tokens": BERT_SPECIAL_TOKENS}
    with pytest.raises(ValueError, match="model must be one of"):
        SubwordTokenizer.train(text[:1000], 100, model="unigram", **bert)
    with pytest.raises(ValueError, match="empty"):
        SubwordTokenizer.train("", 100, model="wordpiece", **bert)
    with pytest.raises(ValueError, match="more than the 5 special tokens"):
        SubwordTokenizer.train(text[:1000], 5, model="wordpiece", **bert)
    with pytest.raises(ValueError, match="at least 261"):
        SubwordTokenizer.train(text[:1000], 260, model="bpe", **bert)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        SubwordTokenizer.train(text[:1000], 0, model="wordpiece", **bert)
    with pytest.raises(ValueError, match=r"wordpiece' needs '\[UNK\]'"):
        SubwordTokenizer.train(text[:1000], 100, model="wordpiece")


@pytest.mark.parametrize("name", ["wp", "wp_bpe"])
def test_save_load_and_load_tokenizer_dispatch(name, request, text, tmp_path):
    from tokenizers import Tokenizer

    tok = request.getfixturevalue(name)
    snippet = text[:3000]
    tok.save(tmp_path / "tokenizer.json")
    Tokenizer.from_file(str(tmp_path / "tokenizer.json"))       # the standard format
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]   # no temp file left
    for loaded in (SubwordTokenizer.load(tmp_path / "tokenizer.json"),
                   load_tokenizer(tmp_path),                     # a directory works too
                   load_tokenizer(str(tmp_path / "tokenizer.json"))):
        assert isinstance(loaded, SubwordTokenizer) and loaded.model == tok.model
        assert loaded.special_tokens == BERT_SPECIAL_TOKENS
        assert loaded.vocab_size == tok.vocab_size and loaded.encode(snippet) == tok.encode(snippet)
        assert not set(loaded.encode("[MASK]")) & loaded.special_token_ids   # still text


def test_load_tokenizer_tells_plain_bpe_from_bert(text, tmp_path):
    SubwordTokenizer.train(text[:20_000], 300).save(tmp_path / "bpe.json")
    CharTokenizer.from_text("abc").save(tmp_path / "char.json")
    plain = load_tokenizer(tmp_path / "bpe.json")
    assert type(plain) is SubwordTokenizer and plain.special_tokens == ()
    assert type(load_tokenizer(tmp_path / "char.json")) is CharTokenizer
    # A tokenizer without BERT's tokens cannot make masked-LM or classification rows, and
    # says so where it is used.
    with pytest.raises(ValueError, match=r"has no \[MASK\] token.*BERT_SPECIAL_TOKENS"):
        mask_tokens(np.arange(10), plain)
    with pytest.raises(ValueError, match=r"has no \[CLS\] token"):
        encode_batch(plain, ["x = 1"], 8)


def test_encode_corpus_wordpiece(wp, text):
    ids = encode_corpus(wp, text)                   # in chunks, in parallel
    assert ids.dtype == np.int64 and ids.ndim == 1 and len(ids) < len(text) / 2
    assert ids.tolist() == wp.encode(text)          # ... the same ids as encoding it whole


# --- encode_batch -----------------------------------------------------------------------

def test_encode_batch_wraps_truncates_and_pads(wp):
    texts = ["return x", "", "def f(a, b):\n    return a + b * 2 - (a // b) ** 3 if a else b"]
    lengths = [len(wp.encode(t)) for t in texts]
    assert lengths[2] > 8
    ids, mask = encode_batch(wp, texts, max_length=10)
    assert ids.shape == mask.shape == (3, 10) and ids.dtype == np.int64 and mask.dtype == bool
    assert ids[:, 0].tolist() == [CLS] * 3
    assert ids[0].tolist() == [CLS, *wp.encode("return x"), SEP] + [PAD] * (8 - lengths[0])
    assert ids[1].tolist() == [CLS, SEP] + [PAD] * 8               # empty text: CLS SEP
    assert ids[2].tolist() == [CLS, *wp.encode(texts[2])[:8], SEP]  # cut, SEP kept last
    np.testing.assert_array_equal(mask, ids != PAD)
    assert mask.sum(axis=1).tolist() == [lengths[0] + 2, 2, 10]


def test_encode_batch_errors(wp):
    with pytest.raises(ValueError, match="max_length must be at least 3"):
        encode_batch(wp, ["x"], max_length=2)
    with pytest.raises(ValueError, match="empty"):
        encode_batch(wp, [], max_length=8)
    with pytest.raises(TypeError, match="single str"):
        encode_batch(wp, "x = 1", max_length=8)


# --- mask_tokens ------------------------------------------------------------------------

VOCAB = 1000
SPECIALS = frozenset(range(5))


def _ids_with_specials(shape, seed=0):
    """Random ordinary ids, with [PAD] tails and [CLS] ... [SEP] ends as real rows have."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=shape)
    ids[..., 0], ids[..., -1] = CLS, SEP
    ids[..., -40:-1] = PAD
    return ids


def test_mask_tokens_proportions():
    ids = _ids_with_specials((400, 500))                           # 200k positions
    original = ids.copy()
    masked, labels = mask_tokens(ids, MASK, VOCAB, SPECIALS, generator=np.random.default_rng(0))
    np.testing.assert_array_equal(ids, original)                   # input untouched
    assert masked.shape == labels.shape == ids.shape
    assert masked.dtype == labels.dtype == np.int64
    eligible = ~np.isin(ids, list(SPECIALS))
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~eligible).any()                          # specials never chosen
    # 15% +- 0.4% (~9 standard deviations for 184k eligible tokens, still exact enough).
    assert abs(chosen.sum() / eligible.sum() - 0.15) < 0.004
    np.testing.assert_array_equal(labels[chosen], ids[chosen])    # labels: the originals
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])  # the rest is untouched
    n = chosen.sum()                                               # ~27.6k chosen
    to_mask = (masked == MASK) & chosen
    kept = (masked == ids) & chosen                 # includes 1/995 random picks of itself
    replaced = chosen & ~to_mask & ~kept
    assert abs(to_mask.sum() / n - 0.8) < 0.015
    assert abs(kept.sum() / n - 0.1) < 0.012
    assert abs(replaced.sum() / n - 0.1) < 0.012
    assert to_mask.sum() + kept.sum() + replaced.sum() == n
    random_ids = masked[replaced]
    assert random_ids.min() >= 5 and random_ids.max() < VOCAB      # never a special id
    # Uniform over the 995 ordinary ids: roughly flat across five bands of 199 ids each.
    bands = np.bincount((random_ids - 5) // 199, minlength=5) / len(random_ids)
    assert np.all(np.abs(bands - 0.2) < 0.04)


def test_mask_tokens_reproducible_and_default_generator():
    ids = _ids_with_specials((8, 64))
    a = mask_tokens(ids, MASK, VOCAB, SPECIALS, generator=np.random.default_rng(3))
    b = mask_tokens(ids, MASK, VOCAB, SPECIALS, generator=np.random.default_rng(3))
    c = mask_tokens(ids, MASK, VOCAB, SPECIALS, generator=np.random.default_rng(4))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    tg.manual_seed(11)
    d = mask_tokens(ids, MASK, VOCAB, SPECIALS)
    tg.manual_seed(11)
    e = mask_tokens(ids, MASK, VOCAB, SPECIALS)
    np.testing.assert_array_equal(d[0], e[0])
    np.testing.assert_array_equal(d[1], e[1])


def test_mask_tokens_takes_a_tokenizer(wp):
    ids = _ids_with_specials((4, 50)) % wp.vocab_size
    a = mask_tokens(ids, wp, generator=np.random.default_rng(1))
    b = mask_tokens(ids, wp.mask_token_id, wp.vocab_size, wp.special_token_ids,
                    generator=np.random.default_rng(1))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_mask_tokens_probability_one_chooses_every_ordinary_token():
    ids = _ids_with_specials((3, 7, 60))                           # any shape
    masked, labels = mask_tokens(ids, MASK, VOCAB, SPECIALS, mlm_probability=1.0,
                                 generator=np.random.default_rng(0))
    np.testing.assert_array_equal(labels != IGNORE_INDEX, ~np.isin(ids, list(SPECIALS)))


@given(ids=st.lists(st.integers(0, 19), min_size=1, max_size=60),
       p=st.floats(0.01, 1.0), seed=st.integers(0, 2**32 - 1))
def test_mask_tokens_invariants(ids, p, seed):
    ids = np.array(ids, dtype=np.int32)                            # any integer dtype
    masked, labels = mask_tokens(ids, 4, 20, {0, 1, 2, 3, 4}, mlm_probability=p,
                                 generator=np.random.default_rng(seed))
    chosen = labels != IGNORE_INDEX
    assert not chosen[ids < 5].any()
    assert (labels[chosen] == ids[chosen]).all() and (masked[~chosen] == ids[~chosen]).all()
    changed = masked[chosen]
    assert ((changed == 4) | (changed >= 5)).all()                 # [MASK] or an ordinary id


def test_mask_tokens_errors():
    ids = np.arange(5, 20)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="mlm_probability"):
            mask_tokens(ids, MASK, VOCAB, SPECIALS, mlm_probability=bad)
    with pytest.raises(TypeError, match="integer token ids"):
        mask_tokens(ids.astype(float), MASK, VOCAB, SPECIALS)
    with pytest.raises(TypeError, match="vocab_size and special_ids"):
        mask_tokens(ids, MASK)
    with pytest.raises(ValueError, match="every id .* is special"):
        mask_tokens(ids, MASK, 5, SPECIALS)


# --- get_mlm_batch and the unigram baseline ---------------------------------------------

def test_get_mlm_batch(wp):
    stream = 5 + np.arange(20_000) % (wp.vocab_size - 5)         # contents reveal offsets
    x, labels, attention = get_mlm_batch(stream, batch_size=16, block_size=32, tokenizer=wp,
                                         generator=np.random.default_rng(0))
    assert all(isinstance(t, tg.Tensor) for t in (x, labels, attention))
    assert x.shape == labels.shape == attention.shape == (16, 32)
    assert x.dtype == labels.dtype == np.int64 and attention.dtype == np.bool_
    assert x.device == "cpu" and not x.requires_grad
    xs, ys = x.numpy(), labels.numpy()
    assert (xs[:, 0] == CLS).all() and (xs[:, -1] == SEP).all() and attention.numpy().all()
    assert (ys[:, [0, -1]] == IGNORE_INDEX).all()                 # CLS/SEP never chosen
    original = np.where(ys != IGNORE_INDEX, ys, xs)[:, 1:-1]     # undo the masking
    steps = (np.diff(original, axis=1) - 1) % (wp.vocab_size - 5)
    assert (steps == 0).all()                                     # contiguous windows
    chosen = (ys != IGNORE_INDEX).mean() * 32 / 30
    assert 0.08 < chosen < 0.22


def test_get_mlm_batch_reaches_both_ends_and_is_reproducible(wp):
    stream = np.arange(5, 35)                                     # exactly one window of 30
    tg.manual_seed(5)
    a = [t.numpy() for t in get_mlm_batch(stream, 4, 32, wp, mlm_probability=1.0)]
    tg.manual_seed(5)
    b = [t.numpy() for t in get_mlm_batch(stream, 4, 32, wp, mlm_probability=1.0)]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert (a[1][:, 1:-1] == stream).all()                        # every token chosen


def test_get_mlm_batch_errors(wp):
    with pytest.raises(ValueError, match=r"has 10 tokens .* block_size - 2 = 30.*--block_size"):
        get_mlm_batch(np.arange(5, 15), 2, 32, wp)
    with pytest.raises(ValueError, match="block_size must be at least 3"):
        get_mlm_batch(np.arange(5, 15), 2, 2, wp)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        get_mlm_batch(np.arange(5, 15), 0, 8, wp)
    with pytest.raises(ValueError, match="1-D"):
        get_mlm_batch(np.ones((4, 10), dtype=np.int64), 2, 8, wp)


def test_unigram_baseline_loss_by_hand():
    # counts + 1 over a vocabulary of 8: [1, 1, 1, 1, 1, 3, 2, 1], total 11.
    targets = np.array([[5, IGNORE_INDEX], [6, 7]])
    expected = -(math.log(3 / 11) + math.log(2 / 11) + math.log(1 / 11)) / 3
    assert unigram_baseline_loss([5, 5, 6], targets, 8) == pytest.approx(expected)
    assert unigram_baseline_loss(np.array([5, 5, 6]), tg.Tensor(targets), 8) == \
        pytest.approx(expected)                                   # Tensors work too
    with pytest.raises(ValueError, match="nothing to score"):
        unigram_baseline_loss([5], np.full(3, IGNORE_INDEX), 8)
    with pytest.raises(ValueError, match="id 9, out of range"):
        unigram_baseline_loss([9], np.array([5]), 8)


def test_unigram_baseline_on_the_corpus(wp, text):
    ids = encode_corpus(wp, text)
    _, labels, _ = get_mlm_batch(ids, 64, 64, wp, generator=np.random.default_rng(0))
    loss = unigram_baseline_loss(ids, labels, wp.vocab_size)
    # Better than uniform guessing (log 600 = 6.4 nats), far from perfect.
    assert 3.0 < loss < math.log(wp.vocab_size)


# --- the stdlib function-classification task --------------------------------------------

def test_stdlib_dataset_shape(task):
    assert isinstance(task, LabelledData) and task.label_names == list(data.DEFAULT_PACKAGES)
    assert task.num_classes == len(data.DEFAULT_PACKAGES) >= 5
    counts = task.class_counts()
    for split, cap in (("train", 420), ("val", 90), ("test", 90)):
        assert all(0 < n <= cap for n in counts[split]), (split, counts[split])
    assert 3000 <= len(task.train) + len(task.val) + len(task.test) <= 5000
    assert "LabelledData(train=" in repr(task) and len(repr(task)) < 300


def test_stdlib_dataset_texts(task):
    examples = task.train + task.val + task.test
    for source, label in examples:
        assert source.startswith(("def ", "async def ")), source[:80]
        assert len(source.splitlines()) >= 3 and len(source) <= data.FUNCTION_MAX_CHARS
        assert 0 <= label < task.num_classes
    texts = [t for t, _ in examples]
    assert len(set(texts)) == len(texts)              # no text in two places
    compile(next(t for t in texts if len(t) < 300), "<function>", "exec")   # whole, valid


def test_stdlib_dataset_is_split_by_file():
    for package in data.DEFAULT_PACKAGES:
        files = tasks._package_functions(package, data.FUNCTION_MIN_LINES,
                                        data.FUNCTION_MAX_CHARS)
        split_of = tasks._split_files([(path, len(fns)) for path, fns in files], seed=0)
        assert set(split_of) == {path for path, _ in files}
        assert all(path.startswith(package + "/") and "/test/" not in path for path in split_of)
        functions = {s: sum(len(f) for p, f in files if split_of[p] == s) for s in
                     ("train", "val", "test")}
        total = sum(functions.values())
        assert functions["val"] > 0 and functions["test"] > 0
        assert functions["train"] >= 0.5 * total, (package, functions)


def test_stdlib_dataset_deterministic_per_seed(task):
    again = stdlib_function_dataset()
    assert again.train == task.train and again.test == task.test
    other = stdlib_function_dataset(seed=1)
    assert other.test != task.test and other.label_names == task.label_names


def test_stdlib_dataset_options_and_errors():
    small = stdlib_function_dataset(("json", "logging"), max_per_class=20)
    assert small.label_names == ["json", "logging"]
    assert small.class_counts() == {"train": [14, 14], "val": [3, 3], "test": [3, 3]}
    with pytest.raises(ValueError, match="'os' is not a package"):
        stdlib_function_dataset(("os", "json"))
    with pytest.raises(ValueError, match="package 'venv'.*too few"):
        stdlib_function_dataset(("venv", "json"))
    with pytest.raises(ValueError, match="at least 2 packages"):
        stdlib_function_dataset(("json",))
    with pytest.raises(ValueError, match="repeated"):
        stdlib_function_dataset(("json", "json"))


def test_functions_in_source_unindents_methods():
    source = ("class A:\n"
              "    @property\n"
              "    def f(self):\n"
              "        s = '''\n"
              "raw\n"
              "'''\n"
              "        return s\n"
              "    def g(self): return 1\n"
              "\n"
              "async def h():\n"
              "    async def inner():\n"
              "        pass\n"
              "        pass\n"
              "    return inner\n")
    assert tasks._functions_in_source(source, 3, 1000) == [
        "def f(self):\n    s = '''\nraw\n'''\n    return s",
        "async def h():\n    async def inner():\n        pass\n        pass\n    return inner",
        "async def inner():\n    pass\n    pass",
    ]
    assert tasks._functions_in_source(source, 3, 20) == [
        "def f(self):", "async def h():", "async def inner():"]   # cut at a line end


# --- labelled files ---------------------------------------------------------------------

def test_load_labelled_csv_tsv_jsonl(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('\ufeffid,text,label\n1,"hello, world",pos\n\n2,"two\nlines",neg\n',
                        encoding="utf-8")
    assert load_labelled_file(csv_path) == (["hello, world", "two\nlines"], ["pos", "neg"])
    tsv_path = tmp_path / "d.tsv"
    tsv_path.write_text("sentence\tclass\nhi there\tA\nbye\tB\n")
    assert load_labelled_file(tsv_path, text_column="sentence", label_column="class") == \
        (["hi there", "bye"], ["A", "B"])
    jsonl_path = tmp_path / "d.jsonl"
    jsonl_path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": "x", "n": 2}\n')
    assert load_labelled_file(jsonl_path) == (["a", "b"], ["1", "x"])


@pytest.mark.parametrize("name, content, pattern", [
    ("e.csv", "", r"e\.csv' is empty"),
    ("e.jsonl", "\n\n", r"e\.jsonl' is empty"),
    ("h.csv", "text,label\n", "holds no examples"),
    ("m.csv", "text,category\nx,y\n", r"m\.csv', line 1: no column 'label'.*'category'"),
    ("f.csv", "text,label\nx,y\nonly one field\n", r"f\.csv', line 3: 1 field"),
    ("b.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 2}\n',
     r"b\.jsonl', line 2: not valid JSON"),
    ("k.jsonl", '{"text": "a"}\n', r"k\.jsonl', line 1: no field 'label'; the fields are"),
    ("l.jsonl", '[1, 2]\n', "line 1: expected a JSON object"),
    ("t.jsonl", '{"text": 3, "label": 1}\n', "line 1: field 'text' must be a string"),
    ("n.jsonl", '{"text": "a", "label": null}\n', "line 1: field 'label' must be"),
    ("z.csv", "text,label\nx, \n", r"z\.csv', line 2: the 'label' is empty"),
    ("d.txt", "whatever", "unknown extension '.txt'"),
])
def test_load_labelled_file_errors(tmp_path, name, content, pattern):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=pattern):
        load_labelled_file(tmp_path / name)


def test_load_labelled_file_missing_and_binary(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_labelled_file(tmp_path / "nope.csv")
    (tmp_path / "bin.csv").write_bytes(b"text,label\ncaf\xe9,x\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_labelled_file(tmp_path / "bin.csv")


def test_labelled_from_file(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"text": f"example {i}", "label": ["spam", "ham", "eggs"][i % 3]} for i in range(50)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = labelled_from_file(path)
    assert task.label_names == ["eggs", "ham", "spam"]
    assert (len(task.train), len(task.val), len(task.test)) == (40, 5, 5)
    everything = task.train + task.val + task.test
    assert sorted(everything) == sorted((r["text"], task.label_names.index(r["label"]))
                                        for r in rows)
    assert labelled_from_file(path).test == task.test            # same seed, same split
    assert labelled_from_file(path, seed=1).test != task.test
    no_val = labelled_from_file(path, val_fraction=0.0, test_fraction=0.3)
    assert (len(no_val.train), len(no_val.val), len(no_val.test)) == (35, 0, 15)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        labelled_from_file(path, val_fraction=1.0)
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n')
    with pytest.raises(ValueError, match="2 example.*leave any for training"):
        labelled_from_file(tiny)


# --- classification_batches -------------------------------------------------------------

def test_classification_batches_in_order(wp):
    examples = [("x = 1", 0), ("def f(a):\n    return a * 2 + 3", 1),
                ("return self._value", 2), ("pass", 1), ("import os", 0)]
    batches = list(classification_batches(examples, wp, batch_size=2, max_length=8,
                                          shuffle=False))
    assert [b[2].tolist() for b in batches] == [[0, 1], [2, 1], [0]]   # last one smaller
    for (ids, mask, labels), chunk in zip(batches, [examples[:2], examples[2:4], examples[4:]]):
        assert ids.dtype == labels.dtype == np.int64 and mask.dtype == np.bool_
        expected, expected_mask = encode_batch(wp, [t for t, _ in chunk], max_length=8)
        width = ids.shape[1]                                      # the batch's longest row
        assert width == expected_mask.sum(axis=1).max() <= 8
        np.testing.assert_array_equal(ids.numpy(), expected[:, :width])
        np.testing.assert_array_equal(mask.numpy(), expected_mask[:, :width])


def test_classification_batches_shuffle(wp, task):
    examples = task.val[:100]
    first = list(classification_batches(examples, wp, 32, 64, shuffle=True,
                                        generator=np.random.default_rng(0)))
    again = list(classification_batches(examples, wp, 32, 64, shuffle=True,
                                        generator=np.random.default_rng(0)))
    assert [len(b[2]) for b in first] == [32, 32, 32, 4]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    labels = np.concatenate([b[2].numpy() for b in first])
    assert sorted(labels.tolist()) == sorted(label for _, label in examples)
    assert labels.tolist() != [label for _, label in examples]   # the order did change
    assert max(b[0].shape[1] for b in first) <= 64
    tg.manual_seed(2)
    c = next(iter(classification_batches(examples, wp, 32, 64, shuffle=True)))[2].numpy()
    tg.manual_seed(2)
    d = next(iter(classification_batches(examples, wp, 32, 64, shuffle=True)))[2].numpy()
    np.testing.assert_array_equal(c, d)


def test_classification_batches_errors_are_immediate(wp):
    with pytest.raises(ValueError, match="no examples"):
        classification_batches([], wp, 4, 16, shuffle=False)      # no next() needed
    with pytest.raises(ValueError, match="max_length must be at least 3"):
        classification_batches([("x", 0)], wp, 4, 2, shuffle=False)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        classification_batches([("x", 0)], wp, 0, 16, shuffle=False)
