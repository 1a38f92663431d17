"""Corpora, tokenizers, splits and batches (tinygradlm.data).  Never touches the network:
every download goes through a monkeypatched ``urllib.request.urlopen``."""
import hashlib
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygradlm as tg
from tinygradlm import data
from tinygradlm.data import corpus as corpora
from tinygradlm.data import tokenizers
from tinygradlm.data import (CharTokenizer, SubwordTokenizer, encode_corpus,
                             get_batch, load_corpus, load_tokenizer, train_val_split)

REAL_SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def char_tok(corpus):
    return CharTokenizer.from_text(corpus)


@pytest.fixture(scope="module")
def bpe(corpus):
    # ~200 KB of Python with blank lines and indentation: enough merges for 400 tokens.
    return SubwordTokenizer.train(corpus[:200_000], vocab_size=400)     # model="bpe"


def test_import_needs_numpy_only():
    # Hugging Face tokenizers is imported by the functions that use it, not by the package.
    code = "import sys, tinygradlm.data; assert 'tokenizers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- corpora ----------------------------------------------------------------------------

def test_stdlib_corpus_is_deterministic_and_nontrivial(corpus):
    assert load_corpus("stdlib") == corpus
    assert corpora._stdlib_corpus() == corpus          # rebuilt from the files, not a cache
    assert 1_000_000 < len(corpus) <= data.STDLIB_MAX_CHARS
    assert corpus.startswith("# ---- ") and "def " in corpus and "class " in corpus
    assert corpus.isascii() and "\r" not in corpus
    headers = [line[len("# ---- "):-len(" ----")] for line in corpus.splitlines()
               if line.startswith("# ---- ") and line.endswith(" ----")]
    assert len(headers) > 100 and headers == sorted(headers)
    for name in headers:
        parts = name.split("/")
        assert name.endswith(".py") and data.STDLIB_EXCLUDED_DIRS.isdisjoint(parts[:-1])
        assert not parts[-1].startswith("_sysconfigdata")
    assert CharTokenizer.from_text(corpus).vocab_size < 128


def test_stdlib_cap_takes_whole_files_in_order(corpus):
    small = corpora._stdlib_corpus(max_chars=50_000)
    assert 0 < len(small) <= 50_000 and corpus.startswith(small)
    assert corpus[len(small):].startswith("# ---- ")     # cut at a file boundary


def test_path_corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_bytes("héllo\r\nworld\n".encode("utf-8"))
    assert load_corpus(str(path)) == "héllo\nworld\n"     # universal newlines


def test_path_corpus_errors(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=r"nope\.txt.*'stdlib'.*'shakespeare'"):
        load_corpus(str(missing))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(str(empty))
    binary = tmp_path / "latin1.txt"
    binary.write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_corpus(str(binary))


class FakeResponse(io.BytesIO):
    """What ``urlopen`` returns: a readable context manager."""


def fake_urlopen(payload, calls):
    def urlopen(url, timeout=None):
        calls.append((url, timeout))
        assert timeout is not None and timeout > 0
        return FakeResponse(payload)
    return urlopen


def offline_urlopen(url, timeout=None):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_shakespeare_downloads_once_then_uses_cache(tmp_path, monkeypatch):
    payload = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
    monkeypatch.setattr(corpora, "SHAKESPEARE_SHA256", hashlib.sha256(payload).hexdigest())
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen(payload, calls))
    assert load_corpus("shakespeare", cache_dir=str(tmp_path)) == payload.decode()
    assert calls == [(data.SHAKESPEARE_URL, data.DOWNLOAD_TIMEOUT_S)]
    assert [p.name for p in tmp_path.iterdir()] == ["tinyshakespeare.txt"]   # no temp left
    monkeypatch.setattr(urllib.request, "urlopen", offline_urlopen)
    assert load_corpus("shakespeare", cache_dir=str(tmp_path)) == payload.decode()


def test_shakespeare_cache_dir_from_environment(tmp_path, monkeypatch):
    payload = b"ROMEO:\nBut soft!\n"
    monkeypatch.setattr(corpora, "SHAKESPEARE_SHA256", hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen(payload, []))
    monkeypatch.setenv("TINYGRADLM_CACHE", str(tmp_path / "env-cache"))
    assert load_corpus("shakespeare") == payload.decode()
    assert (tmp_path / "env-cache" / "tinyshakespeare.txt").read_bytes() == payload


def test_shakespeare_offline_error(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", offline_urlopen)
    with pytest.raises(ConnectionError, match="could not download") as info:
        load_corpus("shakespeare", cache_dir=str(tmp_path))
    assert data.SHAKESPEARE_URL in str(info.value) and "--data path/to/file.txt" in str(info.value)


def test_shakespeare_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen(b"<html>captive portal</html>", []))
    with pytest.raises(ValueError, match="sha256"):
        load_corpus("shakespeare", cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []                  # nothing cached


def test_shakespeare_corrupt_cache_is_downloaded_again(tmp_path, monkeypatch):
    payload = b"KING HENRY:\nOnce more unto the breach.\n"
    monkeypatch.setattr(corpora, "SHAKESPEARE_SHA256", hashlib.sha256(payload).hexdigest())
    (tmp_path / "tinyshakespeare.txt").write_bytes(payload[:10])     # truncated
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen(payload, calls))
    assert load_corpus("shakespeare", cache_dir=str(tmp_path)) == payload.decode()
    assert len(calls) == 1


@pytest.mark.skipif(not REAL_SHAKESPEARE.is_file(), reason="shared Tiny Shakespeare not present")
def test_shakespeare_real_checksum(tmp_path, monkeypatch):
    payload = REAL_SHAKESPEARE.read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen(payload, []))
    text = load_corpus("shakespeare", cache_dir=str(tmp_path))
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")


# --- char tokenizer ---------------------------------------------------------------------

def test_char_tokenizer_vocab_is_sorted_unique_chars():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == sorted(set("hello world")) and tok.vocab_size == len(tok) == 8
    assert tok.encode("hello") == [tok.stoi[c] for c in "hello"] and tok.unk_token is None
    assert tok.encode("") == [] and tok.decode([]) == ""


@given(st.text(min_size=1, max_size=50))
def test_char_tokenizer_round_trip_any_text(text):
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert len(ids) == len(text) and all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@given(st.data())
def test_char_tokenizer_round_trip_corpus_vocab(char_tok, draw):
    text = draw.draw(st.text(alphabet=char_tok.chars, max_size=200))
    assert char_tok.decode(char_tok.encode(text)) == text
    assert char_tok.decode(np.array(char_tok.encode(text))) == text     # arrays decode too


def test_char_tokenizer_unknown_strict():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'é' at position 2 .*3 unknown character\(s\)"):
        tok.encode("abéxé")


def test_char_tokenizer_unknown_replace():
    tok = CharTokenizer.from_text("abc", unk_token="\ufffd")
    assert tok.vocab_size == 4 and tok.unk_token_id == tok.stoi["\ufffd"]
    ids = tok.encode("aé€c", errors="replace")
    assert tok.decode(ids) == "a\ufffd\ufffdc"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("aé")                                      # strict is still the default
    with pytest.raises(ValueError, match="unknown token"):
        CharTokenizer.from_text("abc").encode("aé", errors="replace")
    with pytest.raises(ValueError, match="errors must be"):
        tok.encode("a", errors="ignore")


def test_char_tokenizer_decode_out_of_range():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(IndexError, match="token id 3 .* vocabulary of 3"):
        tok.decode([0, 3])
    with pytest.raises(IndexError, match="token id -1"):
        tok.decode([-1])


@pytest.mark.parametrize("unk", [None, "\ufffd"])
def test_char_tokenizer_save_load(tmp_path, unk):
    tok = CharTokenizer.from_text("Zebra \"quotes\" \n\tand ünïcode ✓", unk_token=unk)
    path = tmp_path / "char.json"
    tok.save(path)
    config = json.loads(path.read_text())
    assert config == {"type": "char", "chars": tok.chars, "unk": unk}
    loaded = CharTokenizer.load(path)
    assert loaded.chars == tok.chars and loaded.unk_token == unk
    assert loaded.encode("Zebra ✓") == tok.encode("Zebra ✓")


# --- BPE tokenizer ----------------------------------------------------------------------

def test_bpe_vocab_size(bpe):
    assert bpe.vocab_size == len(bpe) == 400
    assert bpe.model == "bpe" and bpe.special_tokens == () and bpe.unk_token_id is None
    with pytest.raises(ValueError, match="at least 256"):
        SubwordTokenizer.train("some text", vocab_size=100)
    with pytest.raises(ValueError, match="has no \\[PAD\\] token"):
        bpe.pad_token_id                              # only BERT's tokenizers have one


@given(st.data())
def test_bpe_round_trip_corpus_snippets(bpe, corpus, draw):
    start = draw.draw(st.integers(0, len(corpus) - 1))
    length = draw.draw(st.integers(0, 2000))
    text = corpus[start:start + length]
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text


@given(st.text(max_size=80))
def test_bpe_round_trip_any_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text     # byte level: no unknown tokens, ever


def test_bpe_compresses_code(bpe, corpus):
    text = corpus[300_000:310_000]                   # not seen in training
    assert len(bpe.encode(text)) < 0.6 * len(text)


def test_bpe_decode_out_of_range(bpe):
    with pytest.raises(IndexError, match="token id 400 .* vocabulary of 400"):
        bpe.decode([1, 400])


def test_bpe_save_load(bpe, corpus, tmp_path):
    from tokenizers import Tokenizer

    text = corpus[:5000]
    path = tmp_path / "tokenizer.json"
    bpe.save(path)
    Tokenizer.from_file(str(path))                   # the standard format
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]   # no temp file left
    loaded = SubwordTokenizer.load(path)
    assert loaded.vocab_size == bpe.vocab_size and loaded.encode(text) == bpe.encode(text)
    assert loaded.decode(loaded.encode(text)) == text
    bpe.save(tmp_path)                                # a directory -> dir/tokenizer.json
    assert SubwordTokenizer.load(tmp_path).encode(text) == bpe.encode(text)


# --- load_tokenizer and encode_corpus ---------------------------------------------------

def test_load_tokenizer_dispatch(bpe, tmp_path):
    CharTokenizer.from_text("abc").save(tmp_path / "char.json")
    bpe.save(tmp_path / "bpe.json")
    assert isinstance(load_tokenizer(tmp_path / "char.json"), CharTokenizer)
    loaded = load_tokenizer(str(tmp_path / "bpe.json"))
    assert isinstance(loaded, SubwordTokenizer) and loaded.model == "bpe"
    with pytest.raises(ValueError, match="not a CharTokenizer file"):
        CharTokenizer.load(tmp_path / "bpe.json")
    with pytest.raises(ValueError, match="neither a CharTokenizer file.*nor a BPE"):
        SubwordTokenizer.load(tmp_path / "char.json")


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"type": "word", "words": ["a"]}))
    with pytest.raises(ValueError, match="neither"):
        load_tokenizer(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokenizer(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_tokenizer(tmp_path / "list.json")


def test_encode_corpus_char(char_tok, corpus):
    ids = encode_corpus(char_tok, corpus)
    assert ids.dtype == np.int64 and ids.shape == (len(corpus),)
    assert ids[:1000].tolist() == char_tok.encode(corpus[:1000])
    assert char_tok.decode(ids[-1000:]) == corpus[-1000:]


def test_encode_corpus_bpe_matches_whole_text_encoding(bpe, corpus):
    # Long enough for several chunks, and chunk cuts fall near blank lines and indentation.
    text = corpus[:400_000]
    ids = encode_corpus(bpe, text)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert ids.tolist() == bpe.encode(text)


@pytest.mark.parametrize("chunk_chars", [1, 10, 300])
def test_bpe_chunk_cuts_do_not_change_pre_tokens(bpe, corpus, chunk_chars):
    # Tiny chunks put a cut at nearly every allowed point (blank lines, indented lines, ...).
    # Compare pre-tokens, not ids: a small vocabulary may hide a wrong split such as "\n\n".
    text = corpus[:30_000]
    chunks = list(tokenizers._safe_chunks(text, chunk_chars))
    assert "".join(chunks) == text and len(chunks) > 10

    def pre_tokens(s):
        return [piece for piece, _ in bpe.tokenizer.pre_tokenizer.pre_tokenize_str(s)]
    assert [p for c in chunks for p in pre_tokens(c)] == pre_tokens(text)
    assert [i for c in chunks for i in bpe.encode(c)] == bpe.encode(text)


# --- splits and batches -----------------------------------------------------------------

def test_train_val_split():
    ids = np.arange(1000)
    train, val = train_val_split(ids)
    assert len(train) == 900 and len(val) == 100
    np.testing.assert_array_equal(np.concatenate([train, val]), ids)
    train, val = train_val_split(ids, train_fraction=0.75)
    assert (len(train), len(val)) == (750, 250)
    with pytest.raises(ValueError, match="train_fraction"):
        train_val_split(ids, train_fraction=1.0)
    with pytest.raises(ValueError, match="1-D"):
        train_val_split(ids.reshape(10, 100))
    with pytest.raises(ValueError, match="too few"):
        train_val_split(np.arange(1))


def test_get_batch_shapes_and_shift():
    ids = np.arange(10_000, dtype=np.uint16)          # window contents reveal the offsets
    x, y = get_batch(ids, batch_size=8, block_size=16)
    assert isinstance(x, tg.Tensor) and isinstance(y, tg.Tensor)
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int64
    assert x.device == "cpu" and not x.requires_grad
    xs, ys = x.numpy(), y.numpy()
    np.testing.assert_array_equal(xs[:, 1:], ys[:, :-1])
    np.testing.assert_array_equal(ys, xs + 1)          # y is the next token
    np.testing.assert_array_equal(xs, xs[:, :1] + np.arange(16))   # contiguous windows


def test_get_batch_reaches_both_ends():
    # With len(data) == block_size + 1 there is exactly one window: the whole array.
    ids = np.arange(5)
    x, y = get_batch(ids, batch_size=3, block_size=4)
    assert x.tolist() == [[0, 1, 2, 3]] * 3 and y.tolist() == [[1, 2, 3, 4]] * 3


def test_get_batch_reproducible():
    ids = np.arange(5000)
    tg.manual_seed(1234)
    first = [get_batch(ids, 4, 8)[0].numpy() for _ in range(3)]
    tg.manual_seed(1234)
    again = [get_batch(ids, 4, 8)[0].numpy() for _ in range(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])
    # Save/restore the generator state (what a checkpoint does) -> the same next batch.
    state = tg.get_rng_state()
    expected = get_batch(ids, 4, 8)[0].numpy()
    tg.set_rng_state(state)
    np.testing.assert_array_equal(get_batch(ids, 4, 8)[0].numpy(), expected)
    # An explicit generator is used instead of the library's.
    a = get_batch(ids, 4, 8, generator=np.random.default_rng(7))[0].numpy()
    b = get_batch(ids, 4, 8, generator=np.random.default_rng(7))[0].numpy()
    np.testing.assert_array_equal(a, b)


def test_get_batch_short_corpus():
    with pytest.raises(ValueError, match=r"has 10 tokens .* block_size \+ 1 = 17.*--block_size"):
        get_batch(np.arange(10), batch_size=2, block_size=16)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8", None])
def test_get_batch_rejects_bad_sizes(bad):
    ids = np.arange(100)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        get_batch(ids, batch_size=bad, block_size=4)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        get_batch(ids, batch_size=2, block_size=bad)
