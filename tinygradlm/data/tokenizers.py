"""Tokenizers: text <-> token ids, and the files they are saved in.

* ``CharTokenizer``: one id per character of the training text's sorted set.  Pure NumPy.
* ``SubwordTokenizer``: a subword vocabulary learnt by Hugging Face ``tokenizers`` (imported
  only when used): ``model="bpe"`` (GPT-2's byte-level BPE) or ``"wordpiece"`` (BERT's), with
  no special tokens for a GPT or ``BERT_SPECIAL_TOKENS`` (ids 0..4) for a BERT::

      gpt_tok = SubwordTokenizer.train(text, 512)                     # plain byte-level BPE
      bert_tok = SubwordTokenizer.train(text, 4096, model="wordpiece",
                                        special_tokens=BERT_SPECIAL_TOKENS)

Both have ``vocab_size``, ``encode``, ``encode_array``, ``decode``, ``save`` and ``load``
(a subword one as the standard ``tokenizer.json``); ``load_tokenizer`` reads either back,
and also Hugging Face GPT-2 / BERT tokenizer directories (``pretrained_tokenizers.py``).
"""
from __future__ import annotations

import json
import operator
import re
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..files import atomic_path, read_json, write_json
from .batches import positive_int

# A BERT's special tokens, ids 0..4.  [PAD] fills short rows, [UNK] stands for text the
# vocabulary cannot spell, [CLS] starts every sequence (a classifier reads its final vector),
# [SEP] ends it, and [MASK] hides a token the masked-LM objective must guess.
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN = BERT_SPECIAL_TOKENS

SUBWORD_MODELS = ("wordpiece", "bpe")


def _tokenizer_file(path) -> Path:
    """A directory stands for the ``tokenizer.json`` inside it (HF's convention)."""
    path = Path(path).expanduser()
    return path / "tokenizer.json" if path.is_dir() else path


def _read_config(path) -> dict:
    config = read_json(_tokenizer_file(path), "tokenizer file")
    if not isinstance(config, dict):
        raise ValueError(f"tokenizer file {str(_tokenizer_file(path))!r} does not hold a "
                         "JSON object")
    return config


def _as_id_list(ids, vocab_size: int) -> list[int]:
    """A list of ints from a list, a 1-D NumPy array or a 1-D Tensor, each checked to be in
    the vocabulary (HF ``tokenizers`` would silently skip an unknown id)."""
    ids = [operator.index(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    for i in ids:
        if not 0 <= i < vocab_size:
            raise IndexError(f"token id {i} is out of range for a vocabulary of {vocab_size} "
                             f"(valid ids are 0..{vocab_size - 1})")
    return ids


class CharTokenizer:
    """One token per character; id = position of the character in the sorted vocabulary.
    ``unk_token`` (e.g. ``"\\ufffd"``) is optional: only with one can ``errors="replace"``
    encode unseen characters.  Without it each is an error: nothing is dropped silently.
    """

    def __init__(self, chars: Iterable[str], unk_token: str | None = None):
        self.chars: list[str] = list(chars)
        if not self.chars:
            raise ValueError("CharTokenizer: the vocabulary is empty")
        for c in self.chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"CharTokenizer: vocabulary entries must be single "
                                 f"characters, got {c!r}")
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("CharTokenizer: the vocabulary has repeated characters")
        if unk_token is not None and unk_token not in self.chars:
            raise ValueError(f"CharTokenizer: unk_token {unk_token!r} is not in the vocabulary")
        self.unk_token = unk_token
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        # For the vectorised encode: a table from code point to id (-1: not in the vocabulary).
        codes = [ord(c) for c in self.chars]
        self._id_of_code = np.full(max(codes) + 1, -1, dtype=np.int64)    # (max code + 1,)
        self._id_of_code[codes] = np.arange(len(codes))

    @classmethod
    def from_text(cls, text: str, unk_token: str | None = None) -> "CharTokenizer":
        """Vocabulary = the sorted unique characters of ``text`` (plus ``unk_token``)."""
        if not text:
            raise ValueError("CharTokenizer.from_text: the text is empty")
        return cls(sorted(set(text) | {unk_token} - {None}), unk_token=unk_token)

    vocab_size = property(lambda self: len(self.chars))

    unk_token_id = property(lambda self: self.stoi.get(self.unk_token))    # None without one

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unk_token={self.unk_token!r})"

    def encode_array(self, text: str, errors: str = "strict") -> np.ndarray:
        """``encode`` as an int64 array of shape (len(text),): one vectorised lookup."""
        if errors not in ("strict", "replace"):
            raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
        if errors == "replace" and self.unk_token is None:
            raise ValueError("errors='replace' needs an unknown token, and this tokenizer has "
                             "none; build it with CharTokenizer.from_text(text, "
                             "unk_token='\\ufffd')")
        # UTF-32 gives one 4-byte code point per character: a str -> int array in C.
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")  # (N,)
        table = self._id_of_code
        ids = table[np.minimum(points, len(table) - 1)]                  # (N,)
        known = (ids >= 0) & (points < len(table))                        # (N,)
        if not known.all():
            if errors == "strict":
                unknown = np.flatnonzero(~known)
                first = int(unknown[0])
                raise ValueError(
                    f"character {text[first]!r} at position {first} is not in the vocabulary "
                    f"({len(unknown)} unknown character(s) in the text, "
                    f"{len(set(text[i] for i in unknown.tolist()))} distinct); build the "
                    "tokenizer from text that contains it, or use errors='replace' with a "
                    "tokenizer that has an unk_token")
            ids = np.where(known, ids, self.unk_token_id)
        return ids

    def encode(self, text: str, errors: str = "strict") -> list[int]:
        """Characters -> ids.  ``errors="strict"`` raises on a character outside the
        vocabulary; ``"replace"`` maps it to the unknown token's id."""
        return self.encode_array(text, errors).tolist()

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in _as_id_list(ids, self.vocab_size))

    def save(self, path) -> None:
        write_json(_tokenizer_file(path), {"type": "char", "chars": self.chars,
                                           "unk": self.unk_token})

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        config = _read_config(path)
        if config.get("type") != "char" or not isinstance(config.get("chars"), list):
            raise ValueError(f"{str(_tokenizer_file(path))!r} is not a CharTokenizer file "
                             '(expected {"type": "char", "chars": [...]})')
        return cls(config["chars"], unk_token=config.get("unk"))


class SubwordTokenizer:
    """A byte-level BPE or a WordPiece vocabulary, on top of a ``tokenizers.Tokenizer``.

    ``model="bpe"``: text is split into UTF-8 bytes, each shown as a printable stand-in
    character, so every string can be encoded and ``decode(encode(s)) == s``.  Words are cut
    with GPT-2's regex.

    ``model="wordpiece"``: a word the vocabulary lacks is spelled from pieces, each after the
    first marked ``##`` (``_foo_bar`` -> ``_f ##oo ##_b ##ar``); a word with a character
    never seen in training becomes one ``[UNK]``.  Words are cut by HF's ``Whitespace``
    pre-tokenizer, ``\\w+|[^\\w\\s]+``, chosen for source code: no lowercasing (``Name`` and
    ``name`` differ), identifiers stay whole (``self._cache`` is three words), and a run of
    punctuation stays together, so ``==``, ``):`` and ``()`` can each become one token (~4.3
    characters per token on stdlib code, ~3.8 with BERT's split).  Decoding joins words with
    single spaces (``def f ( x ):``) and glues a word starting with ``##`` to the one before.

    Special tokens get the first ids, in the order given.  Text containing ``"[MASK]"`` is
    encoded as ordinary characters, so only this library puts a special id in a sequence.
    """

    def __init__(self, tokenizer):
        # Not saved in tokenizer.json, so it is set here, on every construction and load.
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer
        added = sorted(tokenizer.get_added_tokens_decoder().items())      # [(id, AddedToken)]
        self.special_tokens: tuple[str, ...] = tuple(t.content for _, t in added if t.special)

    @classmethod
    def train(cls, text: str, vocab_size: int, model: str = "bpe",
              special_tokens: Iterable[str] = (), min_frequency: int = 2) -> "SubwordTokenizer":
        """Learn a vocabulary of ``vocab_size`` tokens on ``text``, special tokens included.
        It can come out smaller (too few pieces seen ``min_frequency`` times) and, for
        WordPiece, larger: every character of the text appears as itself and as ``##c``."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        name = f"{cls.__name__}.train"
        if model not in SUBWORD_MODELS:
            raise ValueError(f"{name}: model must be one of {SUBWORD_MODELS}, got {model!r}")
        if not text:
            raise ValueError(f"{name}: the text is empty")
        vocab_size = positive_int("vocab_size", vocab_size)
        specials = list(special_tokens)           # trainers give them ids 0.. in this order
        unk = UNK_TOKEN if UNK_TOKEN in specials else None
        if model == "wordpiece":
            if unk is None:
                raise ValueError(f"{name}: model='wordpiece' needs {UNK_TOKEN!r} among the "
                                 f"special tokens (a word it cannot spell becomes {UNK_TOKEN})")
            if vocab_size <= len(specials):
                raise ValueError(f"{name}: vocab_size must be more than the {len(specials)} "
                                 f"special tokens, got {vocab_size}")
            tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
            tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
            # cleanup=False: its rules are for English ("do not" -> "don't"); they rewrite code.
            tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
            trainer, options = trainers.WordPieceTrainer, {}
        else:
            alphabet = pre_tokenizers.ByteLevel.alphabet()        # the 256 byte stand-ins
            if vocab_size < len(alphabet) + len(specials):
                extra = f" + {len(specials)} special tokens" if specials else ""
                raise ValueError(f"{name}: model='bpe' needs vocab_size at least "
                                 f"{len(alphabet) + len(specials)} (one token per byte{extra}), "
                                 f"got {vocab_size}")
            tokenizer = Tokenizer(models.BPE(unk_token=unk))
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tokenizer.decoder = decoders.ByteLevel()
            trainer, options = trainers.BpeTrainer, {"initial_alphabet": alphabet}
        trainer = trainer(vocab_size=vocab_size, min_frequency=min_frequency,
                          special_tokens=specials, show_progress=False, **options)
        tokenizer.train_from_iterator(_safe_chunks(text), trainer=trainer)
        return cls(tokenizer)

    model = property(lambda self: type(self.tokenizer.model).__name__.lower())  # bpe, wordpiece

    vocab_size = property(lambda self: self.tokenizer.get_vocab_size(with_added_tokens=True))

    def _special_id(self, token: str) -> int:
        if token not in self.special_tokens:
            raise ValueError(f"this tokenizer has no {token} token (its special tokens are "
                             f"{list(self.special_tokens)}); masked-LM and classification batches "
                             "need a tokenizer trained with special_tokens=BERT_SPECIAL_TOKENS")
        return self.tokenizer.token_to_id(token)

    pad_token_id = property(lambda self: self._special_id(PAD_TOKEN))
    cls_token_id = property(lambda self: self._special_id(CLS_TOKEN))
    sep_token_id = property(lambda self: self._special_id(SEP_TOKEN))
    mask_token_id = property(lambda self: self._special_id(MASK_TOKEN))

    @property
    def unk_token_id(self) -> int | None:
        """None when there is no [UNK] (byte-level BPE never needs one)."""
        return self._special_id(UNK_TOKEN) if UNK_TOKEN in self.special_tokens else None

    @property
    def special_token_ids(self) -> frozenset[int]:
        """The ids of all special tokens: ``mask_tokens`` never picks these."""
        return frozenset(self.tokenizer.token_to_id(t) for t in self.special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def id_to_token(self, i: int) -> str:
        return self.tokenizer.id_to_token(_as_id_list([i], self.vocab_size)[0])

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model!r}, vocab_size={self.vocab_size}, "
                f"special_tokens={list(self.special_tokens)})")

    def encode(self, text: str) -> list[int]:
        """Text -> ids, without [CLS]/[SEP] (``encode_batch`` adds those)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """``encode`` for many texts at once, in parallel in Rust."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode_array(self, text: str) -> np.ndarray:
        """``encode`` of a long text as an int64 array of shape (N,), in chunks encoded in
        parallel, cut where the pre-tokenizer splits anyway: the ids of the whole text."""
        pieces = [np.asarray(ids, dtype=np.int64) for ids in self.encode_many(_safe_chunks(text))]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Ids -> text.  ``skip_special_tokens`` drops [PAD] [CLS] [SEP] [MASK] but keeps
        ``[UNK]``, so text the vocabulary could not spell stays visible."""
        ids = _as_id_list(ids, self.vocab_size)
        if skip_special_tokens:
            skip = self.special_token_ids - {self.unk_token_id}
            ids = [i for i in ids if i not in skip]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def save(self, path) -> None:
        """Write the standard ``tokenizer.json`` (a directory -> ``dir/tokenizer.json``)."""
        with atomic_path(_tokenizer_file(path)) as tmp:
            self.tokenizer.save(tmp)

    @classmethod
    def load(cls, path) -> "SubwordTokenizer":
        from tokenizers import Tokenizer
        config = _read_config(path)
        model = config.get("model")
        if not (isinstance(model, dict) and model.get("type") in ("BPE", "WordPiece")):
            raise ValueError(f"{str(_tokenizer_file(path))!r} is neither a CharTokenizer file "
                             '({"type": "char", ...}) nor a BPE or WordPiece tokenizer.json '
                             '({"model": {"type": "BPE", ...}})')
        return cls(Tokenizer.from_str(json.dumps(config)))


def load_tokenizer(path):
    """Read a tokenizer saved by ``CharTokenizer.save`` or ``SubwordTokenizer.save`` (or any
    byte-level BPE or WordPiece ``tokenizer.json``), deciding which from the file's contents.
    A Hugging Face tokenizer directory (or a tokenizer.json in one) -- tokenizer_config.json,
    vocab.json + merges.txt, vocab.txt, ... -- gives a ``PretrainedTokenizer`` that encodes
    exactly as transformers' GPT-2 or BERT tokenizer does."""
    from .pretrained_tokenizers import PretrainedTokenizer, is_pretrained_dir
    if is_pretrained_dir(path):
        return PretrainedTokenizer.from_pretrained(path)
    is_char = _read_config(path).get("type") == "char"
    return (CharTokenizer if is_char else SubwordTokenizer).load(path)


# BPE merges only inside GPT-2's pre-tokens.  A lone newline between two non-space
# characters is a pre-token (and a WordPiece word boundary), so cutting after it gives the
# ids of the whole text (not so inside a whitespace run: "\n\n" + "x" -> "\n" "\n" "x").
# Pieces let tokenizers train and encode in parallel.
_SAFE_CUT = re.compile(r"(?<=\S)\n(?=\S)")


def _safe_chunks(text: str, chunk_chars: int = 1 << 16) -> Iterator[str]:
    start = 0
    while start < len(text):
        cut = _SAFE_CUT.search(text, start + chunk_chars)
        end = cut.end() if cut else len(text)
        yield text[start:end]
        start = end
