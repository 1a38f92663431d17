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
"""
from __future__ import annotations

import hashlib
import json
import operator
import os
import re
import sysconfig
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import backend
from .tensor import Tensor

# --- corpora ----------------------------------------------------------------------------

# Cap on the stdlib corpus.  ~4 MB of characters is ~6x Tiny Shakespeare: plenty for a char
# model to learn Python's look, while encoding it and one pass over it stay quick on 2 CPU
# cores.  Files are taken whole, in sorted order, until the next one would cross the cap.
STDLIB_MAX_CHARS = 4_000_000

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


def load_corpus(source: str | None = None, cache_dir: str | None = None) -> str:
    """Return a training text.

    ``source`` is ``None``/``"stdlib"`` (the embedded default), ``"shakespeare"`` or a path to
    a UTF-8 text file.  ``cache_dir`` is only used for downloads.  Files are read with
    universal newlines, so ``\\r\\n`` becomes ``\\n`` and never enters a char vocabulary.
    """
    if source is None or source == "stdlib":
        return _stdlib_corpus()
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


def _stdlib_corpus(max_chars: int = STDLIB_MAX_CHARS) -> str:
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
    for rel, path in _stdlib_files(root):
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


def load_tokenizer(path) -> CharTokenizer | BPETokenizer:
    """Read a tokenizer saved by ``CharTokenizer.save`` or ``BPETokenizer.save`` (or any
    byte-level BPE ``tokenizer.json``), deciding which from the file's contents."""
    config = _read_json(path)
    if config.get("type") == "char":
        return CharTokenizer.load(path)
    if _is_bpe_config(config):
        return BPETokenizer.load(path)
    raise ValueError(f"{str(_tokenizer_file(path))!r} is neither a CharTokenizer file "
                     '({"type": "char", ...}) nor a BPE tokenizer.json ({"model": '
                     '{"type": "BPE", ...}})')


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
    if isinstance(tokenizer, BPETokenizer):
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


def get_batch(data: np.ndarray, batch_size: int, block_size: int, device="cpu",
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
