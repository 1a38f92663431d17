"""Hugging Face GPT-2 and BERT tokenizer directories (tinygradlm.data.pretrained_tokenizers),
compared id for id with transformers' fast tokenizers.  Every file is built here: a byte-level
BPE trained on a few KB of varied text, a hand-written WordPiece vocabulary, and the
directories transformers' ``save_pretrained`` writes from them.  No download."""
import json
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygradlm as tg
from tinygradlm.data import (BERT_SPECIAL_TOKENS, CharTokenizer, PretrainedTokenizer,
                             SubwordTokenizer, encode_batch, load_tokenizer, mask_tokens)

tokenizers = pytest.importorskip("tokenizers")

TEXT = ("The quick brown fox jumps over the lazy dog. Café naïve résumé façade coöperate.\n"
        "日本語のテキストと中文文本。 Emoji 🙂🚀 and tabs\tand  double  spaces\n\n"
        "def f(x):\n    return x ** 2  # don't, it's fine!\n") * 20
SAMPLES = ["", " ", "Hello world", " leading space", "trailing  ", "tabs\tand\nnewlines\r\n x",
           "Café naïve RÉSUMÉ façade", "日本語のテキスト 中文", "emoji 🙂🚀👩‍👩‍👧", "a" * 150,
           "x" * 101 + " ok", "[CLS] hi [SEP]", "[MASK] is [mask] here", "multiple     spaces",
           "<|endoftext|>hi<|endoftext|>", "x<|endoftext|> y", "don't stop, it's ok!",
           "\u0000ctrl\u200bzero\u00adsoft", "ＦＵＬＬ width", "Ελληνικά кириллица", "unaffable"]
PAIRS = (["Hello world", "", "a " * 30, "[CLS]"], ["The quick brown fox", "b", "b " * 10, "[SEP]"])
BATCH_OPTIONS = [{}, {"padding": True}, {"padding": "longest", "padding_side": "left"},
                 {"padding": "max_length", "max_length": 12, "truncation": True},
                 {"truncation": True, "max_length": 5}, {"max_length": 6},
                 {"padding": True, "pad_to_multiple_of": 8}, {"return_attention_mask": False},
                 {"return_token_type_ids": True}]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "café",
         "cafe", "naive", "naïve", "resume", "résumé", "日", "本", "語", "中", "文", "hello",
         "world", "un", "##aff", "##able", "!", ".", ",", "'", "s", "t", "hi", "a", "b", "x",
         "##x", "##a", "The", "Hello", "##s", "##e", "e", "é", "##é", "🙂", "is", "here", "mask",
         "ok", "don", "it", "stop", "ε", "λ"]
BERT_OPTIONS = [{"do_lower_case": True}, {"do_lower_case": False},
                {"do_lower_case": True, "strip_accents": False},
                {"do_lower_case": False, "strip_accents": True},
                {"tokenize_chinese_chars": False, "model_max_length": 16}]


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def _gpt2_files(directory, special_tokens=("<|endoftext|>",)):
    """vocab.json + merges.txt of a byte-level BPE, as GPT-2 ships them."""
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([TEXT], vocab_size=400, min_frequency=2, show_progress=False,
                            special_tokens=list(special_tokens))
    directory.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(directory))
    return directory


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return _gpt2_files(tmp_path_factory.mktemp("gpt2"))


def _bert_files(directory, **config):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {**config, "tokenizer_class": "BertTokenizer"}))
    return directory


def _outputs(tok, pairs: bool):
    """Everything a caller sees, on the sample: ids, masks, type ids, tokens and decodes."""
    out = {"len": len(tok), "vocab_size": tok.vocab_size, "special": tok.all_special_ids,
           "max": tok.model_max_length,
           "ids": {name: getattr(tok, f"{name}_token_id") for name in
                   ("bos", "eos", "unk", "sep", "pad", "cls", "mask")},
           "unknown": tok.convert_tokens_to_ids(["zzzq", "the", "[CLS]", "<|endoftext|>"])}
    for s in SAMPLES:
        ids = tok.encode(s)
        out[s] = (tok(s), ids, tok.encode(s, add_special_tokens=False), tok.decode(ids),
                  tok.decode(ids, skip_special_tokens=True), tok.convert_ids_to_tokens(ids),
                  tok.convert_ids_to_tokens(ids, skip_special_tokens=True))
    for options in BATCH_OPTIONS:
        if tok.pad_token is None and options.get("padding"):
            continue
        key = json.dumps(options)
        out[key] = dict(tok(SAMPLES, **options))
        if pairs:
            out["pairs" + key] = dict(tok(*PAIRS, **options))
    return out


def _assert_same(hf, ours, pairs=False):
    expected, got = _outputs(hf, pairs), _outputs(ours, pairs)
    assert expected.keys() == got.keys()
    for key in expected:
        assert got[key] == expected[key], key


# --- GPT-2 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"add_prefix_space": True}, {"add_bos_token": True}])
def test_gpt2_matches_transformers(options, gpt2_dir, tmp_path, transformers):
    raw = tmp_path / "raw"
    shutil.copytree(gpt2_dir, raw)
    if options:
        (raw / "tokenizer_config.json").write_text(json.dumps(
            {**options, "tokenizer_class": "GPT2TokenizerFast"}))
    hf = transformers.GPT2TokenizerFast.from_pretrained(raw)
    ours = load_tokenizer(raw)
    assert isinstance(ours, PretrainedTokenizer) and ours.kind == "gpt2"
    _assert_same(hf, ours, pairs=True)
    hf.save_pretrained(tmp_path / "saved")                 # a real transformers directory
    _assert_same(transformers.AutoTokenizer.from_pretrained(tmp_path / "saved"),
                 load_tokenizer(tmp_path / "saved" / "tokenizer.json"), pairs=True)


def test_gpt2_tokenizer_json_not_add_bos_token_decides(gpt2_dir, tmp_path, transformers):
    transformers.GPT2TokenizerFast.from_pretrained(gpt2_dir).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": True}))
    hf, ours = transformers.AutoTokenizer.from_pretrained(tmp_path), load_tokenizer(tmp_path)
    assert ours.encode("hi", "x") == hf.encode("hi", "x")
    assert ours.bos_token_id not in ours.encode("hi")    # the post-processor of the file rules


def test_gpt2_special_token_outside_the_vocabulary_is_added(tmp_path, transformers):
    raw = _gpt2_files(tmp_path, special_tokens=())      # no <|endoftext|> in vocab.json
    hf, ours = transformers.GPT2TokenizerFast.from_pretrained(raw), load_tokenizer(raw)
    assert len(ours) == ours.vocab_size + 1 == ours.eos_token_id + 1
    _assert_same(hf, ours)


def test_gpt2_padding_needs_a_pad_token(gpt2_dir, transformers):
    tok = load_tokenizer(gpt2_dir)
    assert tok.pad_token is None and tok.pad_token_id is None and tok.encode("") == []
    with pytest.raises(ValueError, match=r"tokenizer\.pad_token = tokenizer\.eos_token"):
        tok(["a", "bb b"], padding=True)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.pad_token = "[NOT-A-TOKEN]"
    tok.pad_token = tok.eos_token
    hf = transformers.GPT2TokenizerFast.from_pretrained(gpt2_dir)
    hf.pad_token = hf.eos_token
    for side in ("left", "right"):
        batch = tok(["a", "the quick fox"], padding=True, padding_side=side)
        assert batch == dict(hf(["a", "the quick fox"], padding=True, padding_side=side))
        row = batch["input_ids"][0]
        assert (row[0] if side == "left" else row[-1]) == tok.eos_token_id == tok.pad_token_id
        assert 0 in batch["attention_mask"][0] and 0 not in batch["attention_mask"][1]


# --- BERT -------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", BERT_OPTIONS, ids=lambda c: ",".join(f"{k}={v}" for k, v in
                                                                       c.items()))
def test_bert_matches_transformers(config, tmp_path, transformers):
    raw = _bert_files(tmp_path / "raw", **config)
    hf = transformers.BertTokenizerFast.from_pretrained(raw)
    ours = load_tokenizer(raw)
    assert isinstance(ours, PretrainedTokenizer) and ours.kind == "bert"
    _assert_same(hf, ours, pairs=True)
    hf.save_pretrained(tmp_path / "saved")
    _assert_same(transformers.AutoTokenizer.from_pretrained(tmp_path / "saved"),
                 load_tokenizer(tmp_path / "saved"), pairs=True)


def test_bert_specials_long_words_and_pairs(tmp_path):
    tok = load_tokenizer(_bert_files(tmp_path))
    cls, sep, mask, unk = (tok.cls_token_id, tok.sep_token_id, tok.mask_token_id,
                           tok.unk_token_id)
    assert (tok.pad_token_id, unk, cls, sep, mask) == (0, 1, 2, 3, 4) and tok.bos_token_id is None
    assert tok.encode("[MASK] hi") == [cls, mask, WORDS.index("hi"), sep]   # special in text
    assert tok.encode("x" * 100) == [cls, WORDS.index("x")] + [WORDS.index("##x")] * 99 + [sep]
    assert tok.encode("x" * 101, add_special_tokens=False) == [unk]      # over 100 characters
    batch = tok("hi", "the fox")
    assert batch["token_type_ids"] == [0, 0, 0, 1, 1, 1] and batch["input_ids"][-1] == sep
    assert tok.decode(batch["input_ids"]) == "[CLS] hi [SEP] the fox [SEP]"
    assert tok.encode("hi", "") == tok.encode("hi")        # transformers: "" is no pair
    assert tok(["hi"], [""])["input_ids"] == [[cls, WORDS.index("hi"), sep, sep]]
    assert tok.decode(batch["input_ids"], skip_special_tokens=True) == "hi the fox"
    assert tok.batch_decode([[cls, 5], [6]], skip_special_tokens=True) == ["the", "quick"]
    assert tok.convert_ids_to_tokens(np.int64(5)) == "the"


# --- save_pretrained, tensors, the library's pipeline -----------------------------------------

@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_save_pretrained_loads_back_in_transformers(kind, gpt2_dir, tmp_path, transformers):
    ours = load_tokenizer(gpt2_dir if kind == "gpt2" else _bert_files(tmp_path / "raw"))
    if kind == "gpt2":
        ours.pad_token = ours.eos_token
    out = ours.save_pretrained(tmp_path / "ours")
    assert sorted(p.name for p in out.iterdir()) == ["special_tokens_map.json", "tokenizer.json",
                                                     "tokenizer_config.json"]
    hf = transformers.AutoTokenizer.from_pretrained(out)
    assert type(hf).__name__.startswith({"gpt2": "GPT2", "bert": "Bert"}[kind])
    _assert_same(hf, ours, pairs=True)
    _assert_same(hf, load_tokenizer(out), pairs=True)
    assert json.loads((out / "special_tokens_map.json").read_text()) == ours.special_tokens_map


def test_return_tensors(tmp_path):
    tok = load_tokenizer(_bert_files(tmp_path))
    batch = tok(["hi", "the quick fox"], padding=True, return_tensors="np")
    assert list(batch) == ["input_ids", "token_type_ids", "attention_mask"]
    assert all(a.dtype == np.int64 and a.shape == (2, 5) for a in batch.values())
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert tok("hi", return_tensors="np")["input_ids"].shape == (1, 3)
    ids = tok(["hi", "the fox"], padding=True, return_tensors="tg")["input_ids"]
    assert isinstance(ids, tg.Tensor) and ids.shape == (2, 4)
    with pytest.raises(ValueError, match="padding=True"):
        tok(["hi", "the quick fox"], return_tensors="np")
    with pytest.raises(ValueError, match="return_tensors"):
        tok("hi", return_tensors="pt")


def test_works_with_the_library_batches(tmp_path, transformers):
    raw = _bert_files(tmp_path)
    tok, hf = load_tokenizer(raw), transformers.BertTokenizerFast.from_pretrained(raw)
    texts = ["the quick brown fox", "hi", "Café " * 10]
    ids, mask = encode_batch(tok, texts, max_length=8)
    expected = hf(texts, padding="max_length", truncation=True, max_length=8, return_tensors="np")
    assert (ids == expected["input_ids"]).all() and (mask == expected["attention_mask"]).all()
    _, labels = mask_tokens(ids, tok, mlm_probability=0.5)
    assert not np.isin(labels[labels >= 0], list(tok.special_token_ids)).any()


@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
       st.sampled_from(["", " [SEP]", "<|endoftext|>", " the café"]))
def test_any_text_matches_transformers(gpt2_and_bert, text, suffix):
    for ours, hf in gpt2_and_bert:
        assert ours.encode(text + suffix) == hf.encode(text + suffix)
        ids = hf.encode(text + suffix)
        assert (ours.decode(ids, skip_special_tokens=True)
                == hf.decode(ids, skip_special_tokens=True))


@pytest.fixture(scope="module")
def gpt2_and_bert(gpt2_dir, tmp_path_factory, transformers):
    bert = _bert_files(tmp_path_factory.mktemp("bert"), do_lower_case=True)
    return [(load_tokenizer(gpt2_dir), transformers.GPT2TokenizerFast.from_pretrained(gpt2_dir)),
            (load_tokenizer(bert), transformers.BertTokenizerFast.from_pretrained(bert))]


# --- this library's own files, and errors -----------------------------------------------------

def test_the_library_tokenizers_load_as_before(tmp_path):
    sub = SubwordTokenizer.train(TEXT, 300, special_tokens=BERT_SPECIAL_TOKENS)
    sub.save(tmp_path / "tokenizer.json")
    (tmp_path / "config.json").write_text("{}")        # a checkpoint's model config beside it
    for path in (tmp_path, tmp_path / "tokenizer.json"):
        loaded = load_tokenizer(path)
        assert type(loaded) is SubwordTokenizer and loaded.encode("x") == sub.encode("x")
        assert not set(loaded.encode("[MASK]")) & loaded.special_token_ids    # still text
    CharTokenizer.from_text("abc").save(tmp_path / "char.json")
    assert type(load_tokenizer(tmp_path / "char.json")) is CharTokenizer


def test_save_beside_a_checkpoint_loads_back_as_pretrained(gpt2_dir, tmp_path):
    tok = load_tokenizer(gpt2_dir)
    tok.save(tmp_path / "tokenizer.json")               # what checkpoint.save_pretrained calls
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert isinstance(loaded, PretrainedTokenizer) and loaded.encode(TEXT) == tok.encode(TEXT)


def test_errors_name_the_file(gpt2_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="none of tokenizer.json, vocab.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_bytes((gpt2_dir / "vocab.json").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"merges\.txt' not found.*vocab\.json \+ merges"):
        load_tokenizer(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    (tmp_path / "vocab.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"vocab\.json' is not valid JSON"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_text('{"a": 0}')
    (tmp_path / "merges.txt").write_text("a b c\n")
    with pytest.raises(ValueError, match=r"cannot read the vocabulary .*merges\.txt"):
        load_tokenizer(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    (tmp_path / "tokenizer_config.json").write_text("[1]")
    with pytest.raises(ValueError, match=r"tokenizer_config\.json' does not hold a JSON object"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "T5Tokenizer"}')
    with pytest.raises(ValueError, match="tokenizer_class 'T5Tokenizer' is not supported"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "GPT2Tokenizer"}')
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "WordPiece", "vocab": {}}}')
    with pytest.raises(ValueError, match="should hold a BPE model.*found 'WordPiece'"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{truncated")
    with pytest.raises(ValueError, match=r"tokenizer\.json' is not valid JSON"):
        load_tokenizer(tmp_path / "tokenizer.json")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("")
    with pytest.raises(ValueError, match=r"vocab\.txt' is empty"):
        load_tokenizer(bert)


def test_bad_arguments(gpt2_dir):
    tok = load_tokenizer(gpt2_dir)
    with pytest.raises(IndexError, match="out of range"):
        tok.decode([len(tok)])
    with pytest.raises(ValueError, match="padding must be one of"):
        tok("hi", padding="sideways")
    with pytest.raises(ValueError, match="truncation must be one of"):
        tok("hi", truncation=3)
    with pytest.raises(TypeError, match="texts must be str"):
        tok(["hi", None])
    with pytest.raises(ValueError, match="text_pair must be a list of 2"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="unknown special token name"):
        tok.add_special_tokens({"pad": "[PAD]"})
    assert tok.add_special_tokens({"pad_token": "[PAD]"}) == 1 and tok.pad_token_id == len(tok) - 1
