"""Corpora, tokenizers and batches for GPT-style language-model training.

The pipeline a training script runs, top to bottom::

    text = load_corpus()                          # str: the embedded corpus, no download
    tok = CharTokenizer.from_text(text)           # or BPETokenizer.train(text, 512)
    ids = encode_corpus(tok, text)                # np.ndarray, int64, shape (N,)
    train_ids, val_ids = train_val_split(ids)     # first 90% / last 10%, contiguous
    x, y = get_batch(train_ids, batch_size=32, block_size=128)   # Tensors, (32, 128) int64

Corpora (``load_corpus``):

* ``None`` / ``"stdlib"``: the Python standard library's own ``.py`` source code.  Every machine
  that runs this file has it, so the main job needs no network.  See ``_stdlib_corpus`` for
  what is kept and why.
* ``"shakespeare"``: Tiny Shakespeare (1.1 MB), downloaded once, checked against a sha256 and
  cached (``cache_dir``, else ``$TINYGRADLM_CACHE``, else ``~/.cache/tinygradlm``).
* anything else: a path to a UTF-8 text file.

Tokenizers: ``CharTokenizer`` (one id per character, the vocabulary is the sorted set of
characters in the training text) and ``BPETokenizer`` (byte-level BPE, as GPT-2, trained with
HF ``tokenizers``).  Both have ``vocab_size``, ``encode``, ``decode``, ``save`` and ``load``;
``load_tokenizer`` reads either file back without being told which it is.

Masked-LM pretraining and fine-tuning (a BERT-style encoder) use the rest of the module::

    tok = WordPieceTokenizer.train(text, 4096)    # [PAD] [UNK] [CLS] [SEP] [MASK] = ids 0..4
    ids = encode_corpus(tok, text)                # the corpus as one stream of ids, (N,)
    x, labels, attn = get_mlm_batch(ids, 32, 128, tok)   # [CLS] window [SEP], 15% masked
    baseline = unigram_baseline_loss(ids, labels.numpy(), tok.vocab_size)   # nats per token

    task = stdlib_function_dataset()              # function source -> its stdlib package
    for x, attn, y in classification_batches(task.train, tok, 32, 256, shuffle=True):
        ...                                       # (B, T) int64, (B, T) bool, (B,) int64

``mask_tokens`` is BERT's masking rule on its own, ``encode_batch`` wraps and pads a list of
texts, and ``load_labelled_file`` / ``labelled_from_file`` read any CSV, TSV or JSONL file of
texts and labels instead of the built-in task.
"""
from __future__ import annotations

import ast
import csv
import functools
import hashlib
import json
import operator
import os
import re
import sysconfig
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import backend
from .tensor import Tensor

# --- corpora ----------------------------------------------------------------------------

# Cap on the stdlib corpus.  Files are taken whole, in sorted order, until the next one would
# cross it.  It is above the whole kept library (about 8.5 MB of ASCII source on CPython 3.11,
# ~8x Tiny Shakespeare), so every package is in, from asyncio to zoneinfo; it is there to keep
# a future, larger standard library from growing the corpus without bound.
STDLIB_MAX_CHARS = 12_000_000

# Directory names skipped anywhere in a stdlib path: third-party packages, the (huge, odd)
# test suites, the IDLE app and the deprecated 2to3 tool with its grammar fixtures, caches,
# and two packages of generated data rather than code: ``encodings`` (codec tables, which
# would otherwise be a fifth of the corpus) and ``pydoc_data`` (one giant help string).
STDLIB_EXCLUDED_DIRS = frozenset({
    "site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__",
    "encodings", "pydoc_data",
})
# Build-specific files (compiler flags and paths of this machine's build of Python) differ
# between machines with the same Python version, so they would make the corpus differ too.
_STDLIB_EXCLUDED_PREFIXES = ("config-", "_sysconfigdata")

SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                   "tinyshakespeare/input.txt")
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
DOWNLOAD_TIMEOUT_S = 30

_SOURCES_HELP = ("accepted values: None or 'stdlib' (the embedded Python standard-library "
                 "corpus), 'shakespeare' (Tiny Shakespeare, downloaded once), or a path to a "
                 "UTF-8 text file")


def load_corpus(source: str | None = None, cache_dir: str | None = None,
                exclude_files=()) -> str:
    """Return a training text.

    ``source`` is ``None``/``"stdlib"`` (the embedded default), ``"shakespeare"`` or a path to
    a UTF-8 text file.  ``cache_dir`` is only used for downloads.  Files are read with
    universal newlines, so ``\\r\\n`` becomes ``\\n`` and never enters a char vocabulary.
    ``exclude_files`` (stdlib only): relative paths such as ``"email/utils.py"`` to leave out,
    e.g. the held-out files of ``stdlib_function_dataset`` when pretraining for it.
    """
    if source is None or source == "stdlib":
        return _stdlib_corpus(exclude_files=exclude_files)
    if source == "shakespeare":
        return _shakespeare(cache_dir)
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {str(path)!r}; {_SOURCES_HELP}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"corpus file {str(path)!r} is not UTF-8 text ({exc})") from None
    if not text:
        raise ValueError(f"corpus file {str(path)!r} is empty; a language model needs text")
    return text


def _stdlib_files(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of every kept ``.py`` file under ``root``, sorted by the
    relative path so the order does not depend on the file system's listing order."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Prune in place so os.walk never descends into site-packages and the test suites.
        dirnames[:] = [d for d in dirnames if d not in STDLIB_EXCLUDED_DIRS
                       and not d.startswith(_STDLIB_EXCLUDED_PREFIXES)]
        for name in filenames:
            if name.endswith(".py") and not name.startswith(_STDLIB_EXCLUDED_PREFIXES):
                path = Path(dirpath, name)
                files.append((path.relative_to(root).as_posix(), path))
    return sorted(files)


def _stdlib_corpus(max_chars: int = STDLIB_MAX_CHARS, exclude_files=()) -> str:
    """The standard library's Python source, each file under a ``# ---- rel/path.py ----``
    header, capped at ``max_chars`` characters.

    Only ASCII files are kept (all but a handful; the rest hold non-English test strings and
    names).  That keeps the char vocabulary at the ~96 printable symbols of Python code instead
    of adding a long tail of characters seen a few times each, which a char model could never
    learn.  Files that are not valid UTF-8 are skipped too.  Same Python -> same text.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    total = 0
    exclude = set(exclude_files)
    for rel, path in _stdlib_files(root):
        if rel in exclude:
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not source.isascii():
            continue
        if not source.endswith("\n"):   # the next header must start on its own line
            source += "\n"
        piece = f"# ---- {rel} ----\n{source}"
        if total + len(piece) > max_chars:
            break
        parts.append(piece)
        total += len(piece)
    if not parts:
        raise RuntimeError(f"found no usable .py files in the standard library at {root}; "
                           "pass a text file instead (--data path/to/file.txt)")
    return "".join(parts)


def default_cache_dir() -> Path:
    """``$TINYGRADLM_CACHE`` if set, else ``~/.cache/tinygradlm``."""
    return Path(os.environ.get("TINYGRADLM_CACHE") or Path.home() / ".cache" / "tinygradlm")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _shakespeare(cache_dir: str | None) -> str:
    """Tiny Shakespeare from the cache, downloading it first if needed."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache / "tinyshakespeare.txt"
    # A cached file is checked as well: a truncated or edited copy is downloaded again.
    if path.is_file():
        data = path.read_bytes()
        if _sha256(data) == SHAKESPEARE_SHA256:
            return data.decode("utf-8")
    try:
        with urllib.request.urlopen(SHAKESPEARE_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except OSError as exc:   # urllib.error.URLError, timeouts and refused connections
        raise RuntimeError(
            f"could not download Tiny Shakespeare from {SHAKESPEARE_URL} ({exc}). "
            "Are you offline? Download it elsewhere and pass --data path/to/file.txt, "
            "or train on the embedded corpus (the default)") from exc
    digest = _sha256(data)
    if digest != SHAKESPEARE_SHA256:
        raise RuntimeError(f"downloaded Tiny Shakespeare from {SHAKESPEARE_URL} but its sha256 "
                           f"is {digest}, expected {SHAKESPEARE_SHA256}; not caching it. "
                           "Pass --data path/to/file.txt instead")
    _atomic_write(path, data)
    return data.decode("utf-8")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place, so a
    crash or a second process never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- tokenizers -------------------------------------------------------------------------

def _tokenizer_file(path) -> Path:
    """A directory stands for the ``tokenizer.json`` inside it (HF's convention)."""
    path = Path(path).expanduser()
    return path / "tokenizer.json" if path.is_dir() else path


def _as_id_list(ids) -> list[int]:
    """A list of ints from a list, a 1-D NumPy array or a 1-D Tensor."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return [operator.index(i) for i in ids]


def _check_ids(ids: list[int], vocab_size: int) -> None:
    for i in ids:
        if not 0 <= i < vocab_size:
            raise IndexError(f"token id {i} is out of range for a vocabulary of {vocab_size} "
                             f"(valid ids are 0..{vocab_size - 1})")


class CharTokenizer:
    """One token per character; id = position of the character in the sorted vocabulary.

    ``unk_token`` (e.g. ``"\\ufffd"``) is optional: only a tokenizer built with one can encode
    text with unseen characters using ``errors="replace"``.  Without it every unknown
    character is an error, so nothing is ever dropped silently.
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
        # Vectorised lookup for encode: code points sorted, with the id of each one.
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        order = np.argsort(codes)
        self._codes, self._code_ids = codes[order], order.astype(np.int64)

    @classmethod
    def from_text(cls, text: str, unk_token: str | None = None) -> "CharTokenizer":
        """Vocabulary = the sorted unique characters of ``text`` (plus ``unk_token``)."""
        if not text:
            raise ValueError("CharTokenizer.from_text: the text is empty")
        chars = set(text)
        if unk_token is not None:
            chars.add(unk_token)
        return cls(sorted(chars), unk_token=unk_token)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def unk_token_id(self) -> int | None:
        return None if self.unk_token is None else self.stoi[self.unk_token]

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unk_token={self.unk_token!r})"

    def encode_array(self, text: str, errors: str = "strict") -> np.ndarray:
        """``encode`` as an int64 array of shape (len(text),): one vectorised lookup, so a
        4 MB corpus takes a fraction of a second."""
        if errors not in ("strict", "replace"):
            raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
        if errors == "replace" and self.unk_token is None:
            raise ValueError("errors='replace' needs an unknown token, and this tokenizer has "
                             "none; build it with CharTokenizer.from_text(text, "
                             "unk_token='\\ufffd')")
        # UTF-32 gives one 4-byte code point per character: a str -> int array in C.
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        points = points.astype(np.int64)                                  # (len(text),)
        pos = np.searchsorted(self._codes, points)                       # where it would be
        pos_clipped = np.minimum(pos, len(self._codes) - 1)
        known = self._codes[pos_clipped] == points
        ids = self._code_ids[pos_clipped]
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
        ids = _as_id_list(ids)
        _check_ids(ids, self.vocab_size)
        return "".join(self.chars[i] for i in ids)

    def save(self, path) -> None:
        """Write ``{"type": "char", "chars": [...], "unk": ...}`` as JSON."""
        path = _tokenizer_file(path)
        payload = {"type": "char", "chars": self.chars, "unk": self.unk_token}
        _atomic_write(path, json.dumps(payload, indent=1).encode("utf-8"))

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        config = _read_json(path)
        if config.get("type") != "char" or not isinstance(config.get("chars"), list):
            raise ValueError(f"{str(_tokenizer_file(path))!r} is not a CharTokenizer file "
                             '(expected {"type": "char", "chars": [...]})')
        return cls(config["chars"], unk_token=config.get("unk"))


class BPETokenizer:
    """Byte-level BPE (GPT-2 style) on top of a ``tokenizers.Tokenizer``.

    Text is split into UTF-8 bytes first, each byte shown as a printable stand-in character,
    so every string can be encoded (no unknown tokens) and ``decode(encode(s)) == s``.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int, min_frequency: int = 2) -> "BPETokenizer":
        """Learn merges on ``text`` until the vocabulary has ``vocab_size`` tokens (fewer if
        the text runs out of pairs seen ``min_frequency`` times)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        alphabet = pre_tokenizers.ByteLevel.alphabet()       # the 256 byte stand-ins
        if vocab_size < len(alphabet):
            raise ValueError(f"BPETokenizer.train: vocab_size must be at least "
                             f"{len(alphabet)} (one token per byte), got {vocab_size}")
        if not text:
            raise ValueError("BPETokenizer.train: the text is empty")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      initial_alphabet=alphabet, show_progress=False)
        tokenizer.train_from_iterator(_safe_chunks(text), trainer=trainer)
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        ids = _as_id_list(ids)
        _check_ids(ids, self.vocab_size)   # tokenizers would silently skip unknown ids
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def save(self, path) -> None:
        """Write the standard ``tokenizer.json`` (a directory -> ``dir/tokenizer.json``)."""
        path = _tokenizer_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path) -> "BPETokenizer":
        from tokenizers import Tokenizer

        config = _read_json(path)
        if not _is_bpe_config(config):
            raise ValueError(f"{str(_tokenizer_file(path))!r} is not a BPE tokenizer.json")
        return cls(Tokenizer.from_str(json.dumps(config)))


def _is_bpe_config(config: dict) -> bool:
    model = config.get("model")
    return isinstance(model, dict) and model.get("type") == "BPE"


# The special tokens of a BERT-style encoder, with ids 0..4 in this order in every tokenizer
# that ``WordPieceTokenizer.train`` makes.  [PAD] fills short rows, [UNK] stands for text the
# vocabulary cannot spell, [CLS] starts every sequence (its final vector is what a classifier
# reads), [SEP] ends it, and [MASK] hides a token the masked-LM objective must guess.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN = SPECIAL_TOKENS

TOKENIZER_KINDS = ("wordpiece", "bpe")


class WordPieceTokenizer:
    """A subword tokenizer with BERT's special tokens, on top of a ``tokenizers.Tokenizer``.

    ``kind="wordpiece"`` (the default) is BERT's scheme: text is cut into words first, and a
    word the vocabulary lacks is spelled from pieces, each piece after the first marked
    ``##`` (``_foo_bar`` -> ``_f ##oo ##_b ##ar``).  A word with a character never seen in
    training becomes one ``[UNK]``, so encoding never fails.  The word split is HF's
    ``Whitespace`` pre-tokenizer, ``\\w+|[^\\w\\s]+``, chosen for source code:

    * no lowercasing, because ``Name`` and ``name`` are different identifiers;
    * identifiers stay whole (``_`` is a word character), so ``self._cache`` is three words;
    * a run of punctuation stays together, so frequent operators such as ``==``, ``):`` and
      ``()`` can each become one token instead of two or three.

    On 4 MB of stdlib code with 4,096 tokens that gives ~4.3 characters per token; BERT's own
    split (every punctuation character apart, ``_`` included) gives ~3.8.  Decoding joins
    words with single spaces (``def f ( x ):``): whitespace is not kept, which an encoder does
    not need, and a word that itself starts with ``##`` (a ``###`` comment rule) is glued to
    the word before it, as in every WordPiece tokenizer.

    ``kind="bpe"`` is byte-level BPE like ``BPETokenizer`` plus the same special tokens:
    decoding is exact and there are no unknown tokens.

    Text that happens to contain ``"[MASK]"`` is encoded as ordinary characters
    (``encode_special_tokens``), so only this code ever puts a special id in a sequence.
    """

    def __init__(self, tokenizer):
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"WordPieceTokenizer: the tokenizer lacks the special tokens "
                             f"{missing}; it needs all of {list(SPECIAL_TOKENS)}")
        # Not saved in tokenizer.json, so it is set here, on every construction and load.
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer
        self._special_ids = tuple(tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)

    @classmethod
    def train(cls, text: str, vocab_size: int, kind: str = "wordpiece",
              min_frequency: int = 2) -> "WordPieceTokenizer":
        """Learn a vocabulary of ``vocab_size`` tokens on ``text``, specials included.

        The vocabulary can come out smaller (the text runs out of pieces seen
        ``min_frequency`` times) and, for WordPiece, larger when the text's characters alone
        need more room: every character appears as itself and as ``##c``.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if kind not in TOKENIZER_KINDS:
            raise ValueError(f"WordPieceTokenizer.train: kind must be one of {TOKENIZER_KINDS}, "
                             f"got {kind!r}")
        if not text:
            raise ValueError("WordPieceTokenizer.train: the text is empty")
        vocab_size = _positive_int("vocab_size", vocab_size)
        specials = list(SPECIAL_TOKENS)       # trainers give them ids 0.. in this order
        if kind == "wordpiece":
            if vocab_size <= len(specials):
                raise ValueError(f"WordPieceTokenizer.train: vocab_size must be more than the "
                                 f"{len(specials)} special tokens, got {vocab_size}")
            tokenizer = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
            tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
            # cleanup=False: the cleanup rules are for English ("do not" -> "don't",
            # " ." -> "."), and would rewrite code.
            tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
            trainer = trainers.WordPieceTrainer(vocab_size=vocab_size,
                                                min_frequency=min_frequency,
                                                special_tokens=specials, show_progress=False)
        else:
            alphabet = pre_tokenizers.ByteLevel.alphabet()
            if vocab_size < len(alphabet) + len(specials):
                raise ValueError(f"WordPieceTokenizer.train: kind='bpe' needs vocab_size at "
                                 f"least {len(alphabet) + len(specials)} (256 bytes + "
                                 f"{len(specials)} special tokens), got {vocab_size}")
            tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tokenizer.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                          initial_alphabet=alphabet, special_tokens=specials,
                                          show_progress=False)
        # Chunks cut at newlines between words: both pre-tokenizers split there anyway.
        tokenizer.train_from_iterator(_safe_chunks(text), trainer=trainer)
        return cls(tokenizer)

    # -- the vocabulary --------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"wordpiece"`` or ``"bpe"``: the subword model inside."""
        return "bpe" if type(self.tokenizer.model).__name__ == "BPE" else "wordpiece"

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def pad_token_id(self) -> int:
        return self._special_ids[0]

    @property
    def unk_token_id(self) -> int:
        return self._special_ids[1]

    @property
    def cls_token_id(self) -> int:
        return self._special_ids[2]

    @property
    def sep_token_id(self) -> int:
        return self._special_ids[3]

    @property
    def mask_token_id(self) -> int:
        return self._special_ids[4]

    @property
    def special_token_ids(self) -> frozenset[int]:
        """The ids of all five special tokens: ``mask_tokens`` never picks these."""
        return frozenset(self._special_ids)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def id_to_token(self, i: int) -> str:
        _check_ids([operator.index(i)], self.vocab_size)
        return self.tokenizer.id_to_token(i)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"

    # -- text <-> ids ----------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Text -> ids, without [CLS]/[SEP] (``encode_batch`` adds those)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """``encode`` for many texts at once, in parallel in Rust."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts),
                                                           add_special_tokens=False)]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Ids -> text.  ``skip_special_tokens`` drops [PAD] [CLS] [SEP] [MASK] but keeps
        ``[UNK]``, so text the vocabulary could not spell stays visible."""
        ids = _as_id_list(ids)
        _check_ids(ids, self.vocab_size)   # tokenizers would silently skip unknown ids
        if skip_special_tokens:
            skip = self.special_token_ids - {self.unk_token_id}
            ids = [i for i in ids if i not in skip]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    # -- files -----------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the standard ``tokenizer.json`` (a directory -> ``dir/tokenizer.json``).
        ``load_tokenizer`` recognises it by the five special tokens it holds."""
        path = _tokenizer_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path) -> "WordPieceTokenizer":
        from tokenizers import Tokenizer

        config = _read_json(path)
        if not _has_special_tokens(config):
            raise ValueError(f"{str(_tokenizer_file(path))!r} is not a WordPieceTokenizer file: "
                             f"its added_tokens lack some of {list(SPECIAL_TOKENS)}")
        return cls(Tokenizer.from_str(json.dumps(config)))


def _has_special_tokens(config: dict) -> bool:
    """Whether a tokenizer.json declares all of SPECIAL_TOKENS as special added tokens."""
    added = config.get("added_tokens")
    if not isinstance(added, list):
        return False
    declared = {t.get("content") for t in added if isinstance(t, dict) and t.get("special")}
    return declared.issuperset(SPECIAL_TOKENS)


def _read_json(path) -> dict:
    path = _tokenizer_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {str(path)!r}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"tokenizer file {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"tokenizer file {str(path)!r} does not hold a JSON object")
    return config


def load_tokenizer(path) -> CharTokenizer | BPETokenizer | WordPieceTokenizer:
    """Read a tokenizer saved by ``CharTokenizer.save``, ``BPETokenizer.save`` or
    ``WordPieceTokenizer.save`` (or any byte-level BPE ``tokenizer.json``), deciding which from
    the file's contents: a ``tokenizer.json`` with BERT's five special tokens is a
    ``WordPieceTokenizer`` (of either kind), a plain BPE one a ``BPETokenizer``."""
    config = _read_json(path)
    if config.get("type") == "char":
        return CharTokenizer.load(path)
    if _has_special_tokens(config):
        return WordPieceTokenizer.load(path)
    if _is_bpe_config(config):
        return BPETokenizer.load(path)
    raise ValueError(f"{str(_tokenizer_file(path))!r} is neither a CharTokenizer file "
                     '({"type": "char", ...}), a BPE tokenizer.json ({"model": '
                     '{"type": "BPE", ...}}) nor a tokenizer.json with the special tokens '
                     f"{', '.join(SPECIAL_TOKENS)}")


# Byte-level BPE splits text into pre-tokens with GPT-2's regex and merges only inside them.
# A lone newline between two non-space characters is a pre-token of its own, so cutting the
# text right after it gives exactly the ids of encoding the text whole (a cut inside a longer
# whitespace run would not: "\n\n" + "x" splits as "\n" "\n" "x").  Pieces let tokenizers
# train and encode in parallel.
_SAFE_CUT = re.compile(r"(?<=\S)\n(?=\S)")


def _safe_chunks(text: str, chunk_chars: int = 1 << 16) -> Iterator[str]:
    start = 0
    while start < len(text):
        cut = _SAFE_CUT.search(text, start + chunk_chars)
        end = cut.end() if cut else len(text)
        yield text[start:end]
        start = end


def encode_corpus(tokenizer, text: str) -> np.ndarray:
    """The whole corpus as token ids: an int64 array of shape (N,)."""
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer.encode_array(text)
    if isinstance(tokenizer, (BPETokenizer, WordPieceTokenizer)):
        # Chunks cut where every pre-tokenizer here splits anyway: the same ids as encoding
        # the text whole, computed in parallel.
        encodings = tokenizer.tokenizer.encode_batch(list(_safe_chunks(text)),
                                                     add_special_tokens=False)
        pieces = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    return np.asarray(tokenizer.encode(text), dtype=np.int64)   # any other .encode()


# --- splits and batches -----------------------------------------------------------------

def train_val_split(ids, train_fraction: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """First ``train_fraction`` of the ids for training, the rest for validation (contiguous,
    as nanoGPT: the validation text is text the model has never seen, not shuffled lines)."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"train_val_split expects a 1-D array of ids, got shape {ids.shape}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be between 0 and 1, got {train_fraction}")
    n = int(train_fraction * len(ids))
    if n == 0 or n == len(ids):
        raise ValueError(f"{len(ids)} tokens are too few to split with train_fraction="
                         f"{train_fraction}: one of the splits would be empty")
    return ids[:n], ids[n:]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def get_batch(data: np.ndarray, batch_size: int, block_size: int, device=None,
              generator=None) -> tuple[Tensor, Tensor]:
    """A random batch of next-token examples from a 1-D array of ids.

    Each row is a window of ``block_size + 1`` consecutive tokens starting at a random
    offset; ``x`` is its first ``block_size`` tokens and ``y`` the last ``block_size``, so
    ``y[b, t]`` is the token that follows ``x[b, :t+1]``.  Offsets are drawn from
    ``generator`` (a NumPy ``Generator``), by default the library's CPU generator, which
    ``manual_seed`` seeds and a checkpoint saves, so a resumed run sees the same batches.

    Returns ``x, y``: int64 Tensors of shape (batch_size, block_size) on ``device``.
    """
    batch_size = _positive_int("batch_size", batch_size)
    block_size = _positive_int("block_size", block_size)
    data = np.asarray(data)
    if data.ndim != 1:
        raise ValueError(f"get_batch expects a 1-D array of ids, got shape {data.shape}")
    if len(data) < block_size + 1:
        raise ValueError(f"the corpus/split has {len(data)} tokens but one training window "
                         f"needs block_size + 1 = {block_size + 1}; use a smaller "
                         "--block_size or more text")
    # Looked up on every call: manual_seed and set_rng_state replace the generator object.
    rng = generator if generator is not None else backend.generator("cpu")
    offsets = rng.integers(0, len(data) - block_size, size=batch_size)     # (B,)
    window = offsets[:, None] + np.arange(block_size + 1)                  # (B, T+1)
    tokens = data[window].astype(np.int64, copy=False)                     # (B, T+1)
    x = np.ascontiguousarray(tokens[:, :-1])                               # (B, T)
    y = np.ascontiguousarray(tokens[:, 1:])                                # (B, T)
    return Tensor(x, device=device), Tensor(y, device=device)


# --- masked-LM batches ------------------------------------------------------------------

# Labels at positions that carry no loss: what ``cross_entropy(..., ignore_index=-100)`` skips
# (PyTorch's and HF's convention).
IGNORE_INDEX = -100

# BERT's split of the chosen positions: 80% become [MASK], 10% a random token, 10% stay.
# The random and kept ones matter because [MASK] never occurs at fine-tuning time: the model
# must build a good vector for every token, not only for the [MASK]ed ones.
MASK_FRACTION, RANDOM_FRACTION = 0.8, 0.1


def _check_max_length(max_length) -> int:
    max_length = _positive_int("max_length", max_length)
    if max_length < 3:
        raise ValueError(f"max_length must be at least 3 ([CLS], one token, [SEP]), "
                         f"got {max_length}")
    return max_length


def _wrap(tokenizer, token_lists: list[list[int]], max_length: int) -> list[list[int]]:
    """``[CLS] tokens [SEP]`` for each list, the tokens cut to fit in ``max_length``.  The
    head is kept: for a function that is its signature and docstring."""
    cls_id, sep_id, room = tokenizer.cls_token_id, tokenizer.sep_token_id, max_length - 2
    return [[cls_id, *ids[:room], sep_id] for ids in token_lists]


def _pad(rows: list[list[int]], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of different lengths -> (ids, attention_mask), both (len(rows), width): [PAD]
    after each row, the mask True on the real tokens."""
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)          # (N, width)
    mask = np.zeros((len(rows), width), dtype=bool)                    # (N, width)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = True
    return ids, mask


def _encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    if hasattr(tokenizer, "encode_many"):
        return tokenizer.encode_many(texts)
    return [tokenizer.encode(t) for t in texts]


def encode_batch(tokenizer, texts, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> ``[CLS] tokens [SEP] [PAD]...`` rows of exactly ``max_length`` ids.

    Returns ``input_ids`` (N, max_length) int64 and ``attention_mask`` (N, max_length) bool,
    True on real tokens ([CLS] and [SEP] included) and False on padding.  A text longer than
    ``max_length - 2`` tokens is cut; its [SEP] is still the last id of the row.
    """
    max_length = _check_max_length(max_length)
    if isinstance(texts, str):
        raise TypeError("encode_batch expects a list of texts, got a single str; "
                        "wrap it: encode_batch(tokenizer, [text], max_length)")
    texts = list(texts)
    if not texts:
        raise ValueError("encode_batch: the list of texts is empty")
    rows = _wrap(tokenizer, _encode_texts(tokenizer, texts), max_length)
    return _pad(rows, max_length, tokenizer.pad_token_id)


def mask_tokens(ids, mask_token_id, vocab_size=None, special_ids=None,
                mlm_probability: float = 0.15, generator=None) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking: which tokens the model must guess, and what it sees in their place.

    Each token that is not special ([PAD], [CLS], ...) is chosen with probability
    ``mlm_probability``.  Of the chosen, 80% become [MASK], 10% a token drawn uniformly from
    the non-special ids (it can be the token itself, as in BERT), 10% stay as they were.

    ``ids``: an integer array of any shape, not modified.  ``mask_token_id, vocab_size,
    special_ids`` say which ids are which; a tokenizer can stand in for all three
    (``mask_tokens(ids, tokenizer)``).  Randomness comes from ``generator`` (a NumPy
    ``Generator``), by default the library's CPU generator (``manual_seed`` seeds it).

    Returns ``(masked_ids, labels)``, both int64 with the shape of ``ids``: ``labels`` holds
    the original id where a token was chosen and ``IGNORE_INDEX`` (-100) everywhere else,
    so the loss is taken on the chosen positions only.  A short input can end up with no
    chosen position at all (a 10-token row does with probability 0.85**10 ~ 0.2).
    """
    if not isinstance(mask_token_id, (int, np.integer)):       # a tokenizer was passed
        tokenizer = mask_token_id
        mask_token_id, vocab_size = tokenizer.mask_token_id, tokenizer.vocab_size
        special_ids = tokenizer.special_token_ids
    if vocab_size is None or special_ids is None:
        raise TypeError("mask_tokens needs vocab_size and special_ids (or a tokenizer in "
                        "place of mask_token_id)")
    if not 0.0 < mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must be in (0, 1], got {mlm_probability}")
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"mask_tokens expects integer token ids, got dtype {ids.dtype}")
    special = np.asarray(sorted(special_ids), dtype=np.int64)
    ordinary = np.setdiff1d(np.arange(vocab_size), special)    # what a random token can be
    if ordinary.size == 0:
        raise ValueError(f"mask_tokens: every id of the {vocab_size}-token vocabulary is "
                         "special; there are no tokens to mask")
    # Looked up on every call: manual_seed and set_rng_state replace the generator object.
    rng = generator if generator is not None else backend.generator("cpu")

    chosen = ~np.isin(ids, special) & (rng.random(ids.shape) < mlm_probability)
    labels = np.where(chosen, ids, IGNORE_INDEX).astype(np.int64)
    action = rng.random(ids.shape)            # one draw per position picks mask/random/keep
    to_mask = chosen & (action < MASK_FRACTION)
    to_random = chosen & (action >= MASK_FRACTION) & (action < MASK_FRACTION + RANDOM_FRACTION)
    masked = ids.astype(np.int64)             # a copy: the caller's array is left alone
    masked[to_mask] = mask_token_id
    masked[to_random] = ordinary[rng.integers(0, ordinary.size, size=int(to_random.sum()))]
    return masked, labels


def get_mlm_batch(ids: np.ndarray, batch_size: int, block_size: int, tokenizer,
                  mlm_probability: float = 0.15, device=None,
                  generator=None) -> tuple[Tensor, Tensor, Tensor]:
    """A random batch of masked-LM examples from the corpus as one stream of ids.

    Each row is ``[CLS]`` + ``block_size - 2`` consecutive tokens from a random offset +
    ``[SEP]``: every row is full, so nothing is padded.  The rows are then masked with
    ``mask_tokens`` (the same ``generator`` draws the offsets and the masks).

    Returns ``input_ids`` (B, block_size) int64, ``labels`` (B, block_size) int64 (-100
    where there is no loss) and ``attention_mask`` (B, block_size) bool (all True), as
    Tensors on ``device``.
    """
    batch_size = _positive_int("batch_size", batch_size)
    block_size = _positive_int("block_size", block_size)
    if block_size < 3:
        raise ValueError(f"block_size must be at least 3 ([CLS], one token, [SEP]), "
                         f"got {block_size}")
    data = np.asarray(ids)
    if data.ndim != 1:
        raise ValueError(f"get_mlm_batch expects a 1-D array of ids, got shape {data.shape}")
    span = block_size - 2                      # corpus tokens per row
    if len(data) < span:
        raise ValueError(f"the corpus/split has {len(data)} tokens but one masked-LM window "
                         f"needs block_size - 2 = {span}; use a smaller --block_size or "
                         "more text")
    rng = generator if generator is not None else backend.generator("cpu")
    offsets = rng.integers(0, len(data) - span + 1, size=batch_size)    # (B,)
    window = data[offsets[:, None] + np.arange(span)]                   # (B, T-2)
    rows = np.empty((batch_size, block_size), dtype=np.int64)           # (B, T)
    rows[:, 0] = tokenizer.cls_token_id
    rows[:, 1:-1] = window
    rows[:, -1] = tokenizer.sep_token_id
    masked, labels = mask_tokens(rows, tokenizer, mlm_probability=mlm_probability,
                                 generator=rng)
    attention = np.ones((batch_size, block_size), dtype=bool)
    return (Tensor(masked, device=device), Tensor(labels, device=device),
            Tensor(attention, device=device))


def unigram_baseline_loss(train_ids, targets, vocab_size: int) -> float:
    """Cross-entropy (nats per token) of guessing every target from token frequencies alone.

    The guess ignores the context: p(token) = (count in ``train_ids`` + 1) / (N + V), add-one
    (Laplace) smoothing so a token never seen in training costs a finite loss.  It is the
    bar a masked LM must clear to have learned anything from the context.  ``targets`` is an
    array or Tensor of labels; positions equal to -100 are skipped.
    """
    vocab_size = _positive_int("vocab_size", vocab_size)
    train = np.asarray(train_ids).reshape(-1)
    targets = np.asarray(targets.numpy() if hasattr(targets, "numpy") else targets)
    counts = np.bincount(train, minlength=vocab_size)                  # (V,)
    if len(counts) > vocab_size:
        raise ValueError(f"train_ids holds id {len(counts) - 1}, out of range for a "
                         f"vocabulary of {vocab_size}")
    log_p = np.log(counts + 1.0) - np.log(counts.sum() + vocab_size)    # (V,)
    picked = targets[targets != IGNORE_INDEX]
    if picked.size == 0:
        raise ValueError("unigram_baseline_loss: every target is -100; there is nothing "
                         "to score")
    return float(-log_p[picked].mean())


# --- labelled data: classification ------------------------------------------------------

@dataclass(repr=False)
class LabelledData:
    """A text-classification task: ``(text, label_id)`` pairs in three splits, and the name
    of each label id (``label_names[label_id]``)."""

    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    test: list[tuple[str, int]]
    label_names: list[str]
    # Source files (stdlib-relative paths) whose functions are in val or test: a pretraining
    # corpus leaves them out, so the evaluation stays on text the model has never seen.
    held_out_files: tuple = ()

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def class_counts(self) -> dict[str, list[int]]:
        """``{"train": [n_0, n_1, ...], "val": [...], "test": [...]}``: examples per class."""
        return {split: np.bincount([label for _, label in getattr(self, split)],
                                   minlength=self.num_classes).tolist()
                for split in ("train", "val", "test")}

    def __repr__(self) -> str:     # the default would print every text
        return (f"LabelledData(train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, label_names={self.label_names})")


# Packages of the built-in task.  Each has enough files for a split by file and 200+
# functions, and they do different jobs (event loops, mail, HTTP, imports, logging,
# processes, tests, XML), so a function's package is learnable but not trivial: all of them
# define __init__, __repr__, read, close, ...  They exist on every CPython from 3.8 on; Linux
# distributions that split the standard library ship them all in the base package.
DEFAULT_PACKAGES = ("asyncio", "email", "http", "importlib", "logging", "multiprocessing",
                    "unittest", "xml")
FUNCTION_MIN_LINES = 3        # one- and two-liners (`return self._x`) say little
FUNCTION_MAX_CHARS = 1000     # ~250 WordPiece tokens: the head is what a classifier reads
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def _clip(text: str, max_chars: int) -> str:
    """The first ``max_chars`` characters, cut at the end of a line where there is one."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    return text[:cut] if cut > 0 else text[:max_chars]


def _unindent(line: str, width: int) -> str:
    """``line`` without its first ``width`` columns of indentation, or all of it if it has
    less (a line inside a triple-quoted string can; ``textwrap.dedent`` would then remove
    nothing from any line)."""
    indent = len(line) - len(line.lstrip(" \t"))
    return line[min(indent, width):]


def _functions_in_source(source: str, min_lines: int, max_chars: int) -> list[str]:
    """The source of every function and method in a module, at any depth, in line order,
    unindented so a method reads like a top-level function.  Decorators are not included."""
    # ast.get_source_segment would split the whole file into lines once per function,
    # which makes a 3,000-line module quadratic; split it once here instead.
    lines = source.splitlines(keepends=True)
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.end_lineno - node.lineno + 1 >= min_lines):
            # Whole lines from the `def` to the end, the last one cut where the node ends
            # (a `;`-joined statement can follow; offsets are in UTF-8 bytes).
            body = lines[node.lineno - 1:node.end_lineno]
            body[-1] = body[-1].encode("utf-8")[:node.end_col_offset].decode("utf-8")
            text = "".join(_unindent(line, node.col_offset) for line in body)
            found.append((node.lineno, node.col_offset, _clip(text, max_chars)))
    return [text for _, _, text in sorted(found)]


FileFunctions = tuple[tuple[str, tuple[str, ...]], ...]   # ((relative path, functions), ...)


@functools.lru_cache(maxsize=None)
def _package_functions(package: str, min_lines: int, max_chars: int) -> FileFunctions:
    """``((relative path, functions), ...)`` for every ``.py`` file of a stdlib package with
    at least one function, test suites skipped.  Cached: same arguments, same files."""
    root = Path(sysconfig.get_paths()["stdlib"])
    directory = root / package
    if not (directory / "__init__.py").is_file():
        raise ValueError(f"{package!r} is not a package of this Python's standard library "
                         f"(no {directory}/__init__.py); packages are directories such as "
                         f"{', '.join(DEFAULT_PACKAGES)}")
    files = []
    for rel, path in _stdlib_files(directory):   # sorted, test/tests/__pycache__ pruned
        try:
            functions = _functions_in_source(path.read_text(encoding="utf-8"),
                                             min_lines, max_chars)
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue                   # not parseable by this Python: not part of the task
        if functions:
            files.append((f"{package}/{rel}", tuple(functions)))
    return tuple(files)


def _stable_hash(text: str) -> int:
    """A hash that is the same in every process (``hash()`` of a str is salted per run)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _split_files(files: list[tuple[str, int]], seed: int) -> dict[str, str]:
    """Assign each file (relative path, number of functions) to "train", "val" or "test".

    Files are visited in the order of a seeded hash of their path (fixed for a seed, unlike
    a sort by name, which would put e.g. all of ``asyncio/base_*`` together).  Test, then
    val, take each file that brings their function count closer to 15% of the package's,
    so a package's biggest files stay in training; the rest is train.  Every split gets at
    least one file (an error says when that is impossible).
    """
    if len(files) < 3:
        raise ValueError(f"{len(files)} file(s) with functions are too few to split by "
                         "file into train, val and test")
    total = sum(count for _, count in files)
    order = sorted(files, key=lambda f: _stable_hash(f"{seed}:{f[0]}"))
    split_of: dict[str, str] = {}
    for split in ("test", "val"):
        target, held = SPLIT_FRACTIONS[split] * total, 0
        for path, count in order:
            if path not in split_of and abs(held + count - target) < abs(held - target):
                split_of[path] = split
                held += count
        if held == 0:     # every file left is big: take the smallest, leaving one for train
            left = [(count, path) for path, count in order if path not in split_of]
            if len(left) < 2:
                raise ValueError("its files are too unequal in size to split by file into "
                                 "train, val and test")
            split_of[min(left)[1]] = split
    return {path: split_of.get(path, "train") for path, _ in files}


def stdlib_function_dataset(packages: Iterable[str] = DEFAULT_PACKAGES,
                            max_per_class: int = 600, seed: int = 0,
                            min_lines: int = FUNCTION_MIN_LINES,
                            max_chars: int = FUNCTION_MAX_CHARS) -> LabelledData:
    """The built-in classification task: which standard-library package is this function from?

    Every function and method (``def`` and ``async def`` at any depth, ``min_lines`` lines
    or more, the first ``max_chars`` characters, docstring included) of every ``.py`` file of
    each package is an example, labelled by the package (``label_names == list(packages)``).

    * Split by file (``_split_files``): val and test hold only functions from files the
      model never trained on, so it cannot score by recognising a file's private names.
    * An exact duplicate of a text seen earlier (in train first, then val, then test) is
      dropped, so no test text is also a training text.
    * At most ``max_per_class`` functions per class: 70% of it in train and 15% in val and
      test each, drawn at random (``seed``) where a package has more.  That evens out the
      classes, which differ 4x in size.

    Deterministic for a given ``seed`` and Python version; ``seed`` also changes which files
    go to which split.  Needs nothing but the standard library's sources.
    """
    packages = [packages] if isinstance(packages, str) else list(packages)
    if len(packages) < 2:
        raise ValueError(f"a classification task needs at least 2 packages, got {packages}")
    if len(set(packages)) != len(packages):
        raise ValueError(f"packages are repeated: {packages}")
    max_per_class = _positive_int("max_per_class", max_per_class)
    caps = {split: max(1, round(fraction * max_per_class))
            for split, fraction in SPLIT_FRACTIONS.items()}
    rng = np.random.default_rng(seed)
    splits: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLIT_FRACTIONS}
    seen: set[str] = set()
    held_out: list[str] = []
    for label, package in enumerate(packages):
        files = _package_functions(package, min_lines, max_chars)
        try:
            split_of = _split_files([(path, len(fns)) for path, fns in files], seed)
        except ValueError as exc:
            raise ValueError(f"package {package!r}: {exc}") from None
        held_out += [path for path, split in split_of.items() if split != "train"]
        for split in SPLIT_FRACTIONS:                # train first: it keeps shared texts
            texts = [text for path, functions in files if split_of[path] == split
                     for text in functions]
            texts = [t for t in dict.fromkeys(texts) if t not in seen]   # unique, in order
            seen.update(texts)
            if len(texts) > caps[split]:             # keep a random subset, in file order
                keep = np.sort(rng.choice(len(texts), size=caps[split], replace=False))
                texts = [texts[i] for i in keep]
            splits[split].extend((text, label) for text in texts)
    return LabelledData(splits["train"], splits["val"], splits["test"], list(packages),
                        tuple(sorted(held_out)))


_LABELLED_FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".ndjson": None}


def load_labelled_file(path, text_column: str = "text",
                       label_column: str = "label") -> tuple[list[str], list[str]]:
    """Texts and their labels (as strings) from a CSV, TSV or JSONL file.

    The format comes from the extension.  CSV/TSV files need a header row naming the
    columns; JSONL files hold one JSON object per line.  Blank lines are skipped.  A missing
    column, an empty file or a malformed line raises an error naming the file and the line.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in _LABELLED_FORMATS:
        raise ValueError(f"{str(path)!r}: unknown extension {suffix or '(none)'!r}; expected "
                         f"one of {', '.join(_LABELLED_FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"labelled data file not found: {str(path)!r}")
    try:
        # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the header.
        with open(path, encoding="utf-8-sig", newline="") as f:
            if _LABELLED_FORMATS[suffix] is None:
                pairs = _read_jsonl(f, path, text_column, label_column)
            else:
                pairs = _read_delimited(f, path, _LABELLED_FORMATS[suffix], text_column,
                                        label_column)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not UTF-8 text ({exc})") from None
    if not pairs:
        raise ValueError(f"{str(path)!r} holds no examples")
    texts, labels = zip(*pairs)
    return list(texts), list(labels)


def _read_delimited(f, path: Path, delimiter: str, text_column: str,
                    label_column: str) -> list[tuple[str, str]]:
    reader = csv.reader(f, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{str(path)!r} is empty; expected a header row naming the columns "
                         f"{text_column!r} and {label_column!r}")
    columns = []
    for name in (text_column, label_column):
        if name not in header:
            raise ValueError(f"{str(path)!r}, line 1: no column {name!r} in the header; the "
                             f"columns are {header}")
        columns.append(header.index(name))
    text_at, label_at = columns
    pairs = []
    for row in reader:
        if not any(field.strip() for field in row):
            continue
        if len(row) != len(header):
            # reader.line_num is the line the row ends on (a quoted field can span lines).
            raise ValueError(f"{str(path)!r}, line {reader.line_num}: {len(row)} field(s), "
                             f"but the header has {len(header)}")
        pairs.append(_labelled_pair(row[text_at], row[label_at], path, reader.line_num,
                                    label_column))
    return pairs


def _read_jsonl(f, path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    pairs = []
    for line_number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(path)!r}, line {line_number}: not valid JSON "
                             f"({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{str(path)!r}, line {line_number}: expected a JSON object, "
                             f"got {type(record).__name__}")
        for name in (text_column, label_column):
            if name not in record:
                raise ValueError(f"{str(path)!r}, line {line_number}: no field {name!r}; the "
                                 f"fields are {sorted(record)}")
        text, label = record[text_column], record[label_column]
        if not isinstance(text, str):
            raise ValueError(f"{str(path)!r}, line {line_number}: field {text_column!r} must "
                             f"be a string, got {type(text).__name__}")
        if isinstance(label, (dict, list)) or label is None:
            raise ValueError(f"{str(path)!r}, line {line_number}: field {label_column!r} must "
                             f"be a string or a number, got {json.dumps(label)}")
        pairs.append(_labelled_pair(text, str(label), path, line_number, label_column))
    if not pairs:
        raise ValueError(f"{str(path)!r} is empty; expected one JSON object per line with "
                         f"fields {text_column!r} and {label_column!r}")
    return pairs


def _labelled_pair(text: str, label: str, path: Path, line: int,
                   label_column: str) -> tuple[str, str]:
    label = label.strip()
    if not label:
        raise ValueError(f"{str(path)!r}, line {line}: the {label_column!r} is empty")
    return text, label


def labelled_from_file(path, val_fraction: float = 0.1, test_fraction: float = 0.1,
                       seed: int = 0, text_column: str = "text",
                       label_column: str = "label") -> LabelledData:
    """A ``LabelledData`` from any CSV/TSV/JSONL file (see ``load_labelled_file``).

    Label ids follow the sorted label names.  The examples are shuffled (``seed``) and cut
    into test, val and train; a split with a nonzero fraction gets at least one example.
    """
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    texts, labels = load_labelled_file(path, text_column, label_column)
    label_names = sorted(set(labels))
    label_id = {name: i for i, name in enumerate(label_names)}
    n = len(texts)
    n_test, n_val = (max(1, round(fraction * n)) if fraction > 0 else 0
                     for fraction in (test_fraction, val_fraction))
    if n - n_test - n_val < 1:
        raise ValueError(f"{str(Path(path))!r} has {n} example(s): too few for "
                         f"val_fraction={val_fraction} and test_fraction={test_fraction} "
                         "to leave any for training")
    order = np.random.default_rng(seed).permutation(n).tolist()
    examples = [(texts[i], label_id[labels[i]]) for i in order]
    return LabelledData(train=examples[n_test + n_val:], val=examples[n_test:n_test + n_val],
                        test=examples[:n_test], label_names=label_names)


def classification_batches(examples, tokenizer, batch_size: int, max_length: int,
                           shuffle: bool, generator=None,
                           device=None) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """One pass over ``(text, label_id)`` examples in batches for a classifier.

    Yields ``(input_ids, attention_mask, labels)``: (B, T) int64, (B, T) bool and (B,)
    int64 Tensors on ``device``, rows ``[CLS] tokens [SEP]`` cut to ``max_length``.  Each
    batch is padded only to its own longest row (T <= max_length): attention costs T^2, and
    most functions are far shorter than the longest.  The last batch may be smaller.
    ``shuffle`` draws the order from ``generator``, by default the library's CPU generator.

    All texts are encoded (and the order drawn) when this is called, not lazily, so errors
    show up at once; iterate the result once per epoch.
    """
    batch_size = _positive_int("batch_size", batch_size)
    max_length = _check_max_length(max_length)
    examples = list(examples)
    if not examples:
        raise ValueError("classification_batches: there are no examples")
    texts = [text for text, _ in examples]
    labels = np.array([operator.index(label) for _, label in examples], dtype=np.int64)  # (N,)
    rows = _wrap(tokenizer, _encode_texts(tokenizer, texts), max_length)
    if shuffle:
        rng = generator if generator is not None else backend.generator("cpu")
        order = rng.permutation(len(rows))
    else:
        order = np.arange(len(rows))
    return _batches(rows, labels, order, batch_size, tokenizer.pad_token_id, device)


def _batches(rows, labels, order, batch_size, pad_id, device):
    for start in range(0, len(order), batch_size):
        picked = order[start:start + batch_size]                          # (B,)
        batch = [rows[i] for i in picked]
        ids, mask = _pad(batch, max(len(row) for row in batch), pad_id)   # (B, T)
        yield (Tensor(ids, device=device), Tensor(mask, device=device),
               Tensor(labels[picked], device=device))
