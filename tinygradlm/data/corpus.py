"""Training text: where it comes from, and the whole of it as one array of token ids.

``load_corpus(source)`` returns a str:

* ``None`` / ``"stdlib"``: the Python standard library's own ``.py`` source code.  Every
  machine that runs this file has it, so no network is needed.
* ``"shakespeare"``: Tiny Shakespeare (1.1 MB), downloaded once, checked against a sha256
  and cached (``cache_dir``, else ``$TINYGRADLM_CACHE``, else ``~/.cache/tinygradlm``).
* anything else: a path to a UTF-8 text file, read with universal newlines (``\\r\\n``
  becomes ``\\n`` and never enters a char vocabulary).

``encode_corpus(tokenizer, text)`` turns it into ids, an int64 array of shape (N,).
"""
from __future__ import annotations

import hashlib
import os
import sysconfig
import urllib.request
from pathlib import Path

import numpy as np

from ..files import InputError, atomic_write

# Cap on the stdlib corpus (whole files, in sorted order): above the whole kept library
# (~8.5 MB on CPython 3.11, ~8x Tiny Shakespeare), against a future, larger one.
STDLIB_MAX_CHARS = 12_000_000

# Directory names skipped anywhere in a stdlib path: third-party packages, test suites, the
# IDLE app, the deprecated 2to3 tool, caches, and generated data rather than code:
# ``encodings`` (codec tables, a fifth of the corpus) and ``pydoc_data`` (one help string).
STDLIB_EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib",
                                  "lib2to3", "__pycache__", "encodings", "pydoc_data"})
# Build-specific files (this machine's compiler flags and paths) would make the corpus
# differ between machines with the same Python version.
_STDLIB_EXCLUDED_PREFIXES = ("config-", "_sysconfigdata")

SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                   "tinyshakespeare/input.txt")
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
DOWNLOAD_TIMEOUT_S = 30


def load_corpus(source: str | None = None, cache_dir: str | None = None,
                exclude_files=()) -> str:
    """A training text (see the module docstring).  ``exclude_files`` (stdlib only): paths
    like ``"email/utils.py"`` to leave out, e.g. a classification task's held-out files."""
    if source is None or source == "stdlib":
        return _stdlib_corpus(exclude_files=exclude_files)
    if source == "shakespeare":
        return _shakespeare(cache_dir)
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {str(path)!r}; accepted values: None "
                                "or 'stdlib' (the embedded Python standard-library corpus), "
                                "'shakespeare' (Tiny Shakespeare, downloaded once), or a path "
                                "to a UTF-8 text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"corpus file {str(path)!r} is not UTF-8 text ({exc})") from None
    if not text:
        raise InputError(f"corpus file {str(path)!r} is empty; a language model needs text")
    return text


def stdlib_root() -> Path:
    """Where this Python's standard library lives."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[tuple[str, Path]]:
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
    header, capped at ``max_chars`` characters.  Same Python -> same text.

    Only ASCII files (all but a handful) are kept: the char vocabulary stays at the ~96
    printable symbols of code, without a long tail of rare characters no model could learn.
    """
    root = stdlib_root()
    parts, total, exclude = [], 0, set(exclude_files)
    for rel, path in stdlib_files(root):
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


def _shakespeare(cache_dir: str | None) -> str:
    """Tiny Shakespeare from the cache, downloading it first if needed."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache / "tinyshakespeare.txt"
    # A cached file is checked as well: a truncated or edited copy is downloaded again.
    if path.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == SHAKESPEARE_SHA256:
            return data.decode("utf-8")
    try:
        with urllib.request.urlopen(SHAKESPEARE_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except OSError as exc:   # urllib.error.URLError, timeouts and refused connections
        raise ConnectionError(
            f"could not download Tiny Shakespeare from {SHAKESPEARE_URL} ({exc}). "
            "Are you offline? Download it elsewhere and pass --data path/to/file.txt, "
            "or train on the embedded corpus (the default)") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise InputError(f"downloaded Tiny Shakespeare from {SHAKESPEARE_URL} but its sha256 "
                         f"is {digest}, expected {SHAKESPEARE_SHA256}; not caching it. "
                         "Pass --data path/to/file.txt instead")
    atomic_write(path, data)
    return data.decode("utf-8")


def encode_corpus(tokenizer, text: str) -> np.ndarray:
    """The whole corpus as token ids: an int64 array of shape (N,).  The library's tokenizers
    have a fast ``encode_array``; any other object with ``encode(text) -> list`` works too."""
    if hasattr(tokenizer, "encode_array"):
        return tokenizer.encode_array(text)
    return np.asarray(tokenizer.encode(text), dtype=np.int64)
