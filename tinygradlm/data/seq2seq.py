"""Sequence-to-sequence data for an encoder-decoder: ``(source, target)`` string pairs.

* ``stdlib_docstring_dataset()``: the built-in task, no download: **code summarisation**.
  The source is a standard-library function with its docstring taken out; the target is
  the first sentence of that docstring.  For example the pair::

      source:  def isdir(s):                          target:  Return true if the pathname
                   try:                                        refers to an existing
                       st = os.stat(s)                         directory.
                   except (OSError, ValueError):
                       return False
                   return stat.S_ISDIR(st.st_mode)

  ``function_name_baseline(source)`` ("Isdir.") is the score to beat: a model that only
  reads the function's name has learnt nothing about its code.
* ``load_pairs_file`` / ``pairs_from_file``: your own pairs (e.g. a translation task from
  a Tatoeba/Anki export) from a TSV or JSONL file; ``split_pairs`` for pairs in memory.

Every split keeps its sources apart: no test source is also a training source, and the
built-in task goes further and tests on files the model never trained on.
"""
from __future__ import annotations

import ast
import codecs
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import InputError
from .batches import positive_int
from .corpus import stdlib_files, stdlib_root
from .tasks import (FUNCTION_MIN_LINES, _clip, _jsonl_records, _split_files, _unindent,
                    checked_data_file)


@dataclass(repr=False)
class Seq2SeqData:
    """A sequence-to-sequence task: ``(source, target)`` string pairs in three splits."""

    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    # Source files (stdlib-relative paths) whose functions are in val or test: a pretraining
    # corpus leaves them out (load_corpus(exclude_files=...)), as for LabelledData.
    held_out_files: tuple = ()

    def __repr__(self) -> str:     # the default would print every text
        return (f"Seq2SeqData(train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, held_out_files={len(self.held_out_files)})")


# --- the built-in task: summarise a standard-library function -----------------------------

# ~230 subword tokens of code (about 3 characters per BPE/WordPiece token on Python), so an
# encoder with 256 positions reads a whole source: three quarters of the functions fit
# uncut, and the rest keep their signature and first statements, which carry the summary.
SOURCE_MAX_CHARS = 700
# A target needs a verb and an object to say anything ("Emit a record."); fewer words are
# labels ("Constructor.", "Internal function.").  Beyond 25 words (~1.5% of the first
# sentences) a "sentence" is mostly a paragraph with a missing period, not a summary, and
# a small decoder would spend its capacity on a few very long targets.
TARGET_MIN_WORDS = 3
TARGET_MAX_WORDS = 25
# Targets that say nothing about the code, compared in lower case without the final period:
# tkinter's 34 "Internal function."s, turtle's "dummy method - ...", placeholders.
_BOILERPLATE_TARGETS = frozenset({
    "constructor", "docstring", "internal function", "xxx", "todo", "**deprecated**",
    "deprecated", "not implemented", "dummy method - to be overwritten by child class",
})
# A period after these does not end a sentence ("Normalize path, eliminating double
# slashes, etc." ends at "etc." only because nothing follows it).
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.")


def _first_sentence(docstring: str) -> str | None:
    """The first sentence of a (cleaned, ``ast.get_docstring``) docstring, whitespace
    collapsed, ending in a period; None where it does not end like a sentence.

    A sentence ends at a period followed by whitespace or the end of the text, or at a blank
    line.  Where the blank line comes first, a period is added if the sentence ends in a word,
    a closing bracket or a quote ("Set focus on canvas" -> "Set focus on canvas."), so every
    target has the same form; one that ends in ``:`` or ``,`` is the head of a list and is
    dropped."""
    paragraph = " ".join(re.split(r"\n\s*\n", docstring.strip(), maxsplit=1)[0].split())
    for end in re.finditer(r"\.(?=\s|$)", paragraph):
        sentence = paragraph[:end.end()]
        if not sentence.lower().endswith(_ABBREVIATIONS) or end.end() == len(paragraph):
            return sentence
    if paragraph and (paragraph[-1].isalnum() or paragraph[-1] in ")]'\"`"):
        return paragraph + "."
    return None


def _docstring_target(docstring: str, min_words: int, max_words: int) -> str | None:
    """The target for a docstring: its first sentence, unless that is trivial (see the
    constants above), a doctest, or too long."""
    sentence = _first_sentence(docstring)
    if sentence is None or sentence.startswith(">>>"):
        return None
    if not min_words <= len(sentence.split()) <= max_words:
        return None
    bare = sentence.rstrip(".").strip().lower()
    if bare in _BOILERPLATE_TARGETS or bare.startswith(("xxx", "todo", "fixme")):
        return None
    return sentence


def _summarised_functions(source: str, min_lines: int, max_chars: int, min_words: int,
                          max_words: int) -> list[tuple[str, str]]:
    """``(code without its docstring, first sentence of the docstring)`` for every function
    and method of a module (any depth, in line order) that has a useful docstring.

    The code is unindented (a method reads like a top-level function, as in ``tasks``),
    without decorators, cut to ``max_chars`` at a line end.  The docstring's lines and the
    blank lines after it are dropped; a function that is then shorter than ``min_lines``
    non-blank lines (or has no body left) is skipped.  Docstrings of functions nested inside
    stay: they are part of the code the model reads, like comments."""
    lines = source.splitlines(keepends=True)     # once per file, not once per function
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        docstring = ast.get_docstring(node)
        if not docstring or len(node.body) < 2:   # no docstring, or nothing but one
            continue
        target = _docstring_target(docstring, min_words, max_words)
        # An old-style docstring opens with the signature ("get_source(fullname) -> str."),
        # which is not a summary.
        if target is None or re.match(rf"{re.escape(node.name)}\s*\(", target):
            continue
        doc, following = node.body[0], node.body[1]
        # The docstring must have its lines to itself (not `def f(): "..."`, nor `"..."; x`),
        # so dropping whole lines drops exactly the docstring.  Offsets are in UTF-8 bytes.
        before = lines[doc.lineno - 1].encode("utf-8")[:doc.col_offset]
        if doc.lineno == node.lineno or before.strip() or following.lineno == doc.end_lineno:
            continue
        body = lines[node.lineno - 1:node.end_lineno]               # header ... last line
        body[-1] = body[-1].encode("utf-8")[:node.end_col_offset].decode("utf-8")
        start, stop = doc.lineno - node.lineno, doc.end_lineno - node.lineno + 1
        while stop < len(body) and not body[stop].strip():          # blank lines after it
            stop += 1
        kept = body[:start] + body[stop:]
        if sum(1 for line in kept if line.strip()) < min_lines:
            continue
        code = "".join(_unindent(line, node.col_offset) for line in kept)
        # A target the code already spells out ("a ** b." for __rpow__, a signature copied
        # into the docstring) can be copied, not summarised; and it would leave docstring
        # text in the source.
        if target.rstrip(".") in " ".join(code.split()):
            continue
        found.append((node.lineno, node.col_offset, _clip(code, max_chars), target))
    return [(code, target) for _, _, code, target in sorted(found)]


@functools.lru_cache(maxsize=None)
def _stdlib_docstring_pairs(min_lines: int, max_chars: int, min_words: int,
                            max_words: int) -> tuple:
    """``((relative path, ((source, target), ...)), ...)`` for every kept ``.py`` file of the
    standard library (``stdlib_files``: sorted; test suites, IDLE, site-packages, codecs
    pruned) with at least one pair.  A source already seen in an earlier file (or earlier in
    the same file) is dropped, so a source is in one split only.  Cached: the walk parses
    ~475 files (a few seconds), and the same arguments give the same pairs."""
    files, seen = [], set()
    for rel, path in stdlib_files(stdlib_root()):
        try:
            pairs = _summarised_functions(path.read_text(encoding="utf-8"), min_lines,
                                          max_chars, min_words, max_words)
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue                   # not parseable by this Python: not part of the task
        kept = []
        for source, target in pairs:
            if source not in seen:
                seen.add(source)
                kept.append((source, target))
        if kept:
            files.append((rel, tuple(kept)))
    return tuple(files)


def stdlib_docstring_dataset(seed: int = 0, max_source_chars: int = SOURCE_MAX_CHARS,
                             min_lines: int = FUNCTION_MIN_LINES,
                             min_target_words: int = TARGET_MIN_WORDS,
                             max_target_words: int = TARGET_MAX_WORDS) -> Seq2SeqData:
    """The built-in sequence-to-sequence task: summarise a standard-library function.

    Each function and method of the standard library (any depth) whose docstring has a
    useful first sentence is a pair: ``source`` = its code without the docstring (at least
    ``min_lines`` non-blank lines, cut to ``max_source_chars``), ``target`` = that sentence
    (``min_target_words`` to ``max_target_words`` words, ending in a period).

    * Split by file (``tasks._split_files``, ~70/15/15 of the pairs): val and test hold only
      functions from files the model never trained on, so it cannot score by recognising a
      file's private names.  ``held_out_files`` lists those files.
    * Every source occurs once (its first occurrence in file order), so no test source is
      also a training source.

    Deterministic for a ``seed`` (which picks each split's files) and Python version; on
    CPython 3.11 about 4,100 pairs from ~315 files, of which ~15% (500+) are test pairs.
    """
    files = _stdlib_docstring_pairs(positive_int("min_lines", min_lines),
                                    positive_int("max_source_chars", max_source_chars),
                                    positive_int("min_target_words", min_target_words),
                                    positive_int("max_target_words", max_target_words))
    split_of = _split_files([(path, len(pairs)) for path, pairs in files], seed)
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    for path, pairs in files:                           # file order within each split
        splits[split_of[path]].extend(pairs)
    held_out = tuple(sorted(path for path, split in split_of.items() if split != "train"))
    return Seq2SeqData(splits["train"], splits["val"], splits["test"], held_out)


_DEF_NAME = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)", re.MULTILINE)
# One word of an identifier part: an acronym not followed by lower case ("HTTP" of
# "HTTPServer"), a capitalised or lower-case word, or a number.
_NAME_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def function_name_baseline(source: str) -> str:
    """The summary a model must beat: the name of the (first) function defined in
    ``source``, split into lower-case words and written like a docstring's first sentence.

        >>> function_name_baseline("def get_full_url(self):\\n    return self.url")
        'Get full url.'
        >>> function_name_baseline("def parseHTTPHeader(line): ...")
        'Parse http header.'

    Dunder and private names lose their underscores (``__init__`` -> "Init.")."""
    match = _DEF_NAME.search(source)
    if match is None:
        raise ValueError(f"function_name_baseline: no 'def' in the source {source[:60]!r}")
    words = []
    for part in match.group(1).split("_"):
        # A part with no ASCII word (a non-English identifier) is kept whole.
        words.extend(word.lower() for word in (_NAME_WORD.findall(part) or [part]) if word)
    text = " ".join(words) or match.group(1)          # a name of underscores only: as is
    return text[0].upper() + text[1:] + "."


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_identifiers(source: str) -> str:
    """Code with every identifier written as its lower-case words, the way code-summarisation
    models read code: ``def getFullURL(self, url_parts):`` -> ``def get full url(self, url
    parts):``.  A docstring says "full URL", not "getFullURL"; split, the name's words are the
    same tokens as the summary's, which a small model can learn to copy."""
    def words(match):
        found = [w.lower() for part in match.group(0).split("_")
                 for w in (_NAME_WORD.findall(part) or [part]) if w]
        return " ".join(found) or match.group(0)
    return _IDENTIFIER.sub(words, source)


# --- pairs from a user file ----------------------------------------------------------------

_PAIR_FORMATS = (".tsv", ".txt", ".jsonl", ".ndjson")


def load_pairs_file(path) -> list[tuple[str, str]]:
    """The ``(source, target)`` pairs of a file, in file order, by extension:

    * ``.tsv`` / ``.txt``: one pair per line, ``source<TAB>target``.  Columns after the
      second are ignored (Tatoeba and Anki exports put ids and attribution there).
    * ``.jsonl`` / ``.ndjson``: one object per line with string fields ``"source"`` and
      ``"target"`` (other fields are ignored).

    Sources and targets are stripped of surrounding whitespace; blank lines are skipped; the
    file is UTF-8 (a byte-order mark is allowed).  An error names the file and the line."""
    path, where, suffix = checked_data_file(path, _PAIR_FORMATS, "pairs file")
    lines = _utf8_lines(path.read_bytes(), where)
    if suffix in (".jsonl", ".ndjson"):
        pairs = [_json_pair(record, where, line) for line, record in _jsonl_records(lines, where)]
    else:
        pairs = [_tab_pair(text, where, line) for line, text in enumerate(lines, start=1)
                 if text.strip()]
    if not pairs:
        expected = ('one JSON object per line, {"source": ..., "target": ...}'
                    if suffix in (".jsonl", ".ndjson") else "one source<TAB>target per line")
        raise InputError(f"{where!r} is empty; expected {expected}")
    return pairs


def _utf8_lines(data: bytes, where: str) -> list[str]:
    """The lines of a file's bytes, decoded one by one so that an encoding error names its
    line.  Split at ``\\n`` only (and a ``\\r`` before it dropped), as an editor numbers
    lines; ``str.splitlines`` would also split at form feeds and Unicode separators."""
    if data.startswith(codecs.BOM_UTF8):     # spreadsheets write one; it is not text
        data = data[len(codecs.BOM_UTF8):]
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{where!r}, line {number}: not UTF-8 text ({exc.reason} at "
                             f"byte {exc.start} of the line); save the file as UTF-8") from None
    return lines


def _tab_pair(text: str, where: str, line: int) -> tuple[str, str]:
    """The pair on one line of a TSV file."""
    if "\t" not in text:
        raise InputError(f"{where!r}, line {line}: no TAB; expected source<TAB>target, "
                         f"got {text[:60]!r}")
    source, target = (field.strip() for field in text.split("\t")[:2])
    return _check_pair(source, target, where, line)


def _json_pair(record: dict, where: str, line: int) -> tuple[str, str]:
    """The pair in one JSON object of a JSONL file."""
    for name in ("source", "target"):
        if name not in record:
            raise InputError(f"{where!r}, line {line}: no field {name!r}; the fields are "
                             f"{sorted(record)}")
        if not isinstance(record[name], str):
            raise InputError(f"{where!r}, line {line}: field {name!r} must be a string, got "
                             f"{type(record[name]).__name__}")
    return _check_pair(record["source"].strip(), record["target"].strip(), where, line)


def _check_pair(source: str, target: str, where: str, line: int) -> tuple[str, str]:
    for name, text in (("source", source), ("target", target)):
        if not text:
            raise InputError(f"{where!r}, line {line}: the {name} is empty")
    return source, target


def split_pairs(pairs, val_fraction: float = 0.1, test_fraction: float = 0.1,
                seed: int = 0) -> Seq2SeqData:
    """Pairs shuffled (``seed``) into test, val and train, **by source**: all the pairs of
    one source (a sentence with several translations) go to the same split, so no test
    source is also a training source.

    The fractions count distinct sources; a split with a nonzero fraction gets at least one
    source, and train always does.  Within a split, a source's pairs keep their order."""
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise InputError(f"{name} must be in [0, 1), got {fraction}")
    groups: dict[str, list[tuple[str, str]]] = {}      # source -> its pairs, in first order
    for source, target in pairs:
        groups.setdefault(source, []).append((source, target))
    n_pairs, n = sum(len(group) for group in groups.values()), len(groups)
    n_test, n_val = (max(1, round(fraction * n)) if fraction > 0 else 0
                     for fraction in (test_fraction, val_fraction))
    if n - n_test - n_val < 1:
        raise InputError(f"{n_pairs} pair(s) with {n} distinct source(s) are too few for "
                         f"val_fraction={val_fraction} and test_fraction={test_fraction} to "
                         "leave any for training")
    sources = list(groups)
    order = [sources[i] for i in np.random.default_rng(seed).permutation(n)]

    def pairs_of(chosen: list[str]) -> list[tuple[str, str]]:
        return [pair for source in chosen for pair in groups[source]]

    return Seq2SeqData(train=pairs_of(order[n_test + n_val:]),
                       val=pairs_of(order[n_test:n_test + n_val]),
                       test=pairs_of(order[:n_test]))


def pairs_from_file(path, val_fraction: float = 0.1, test_fraction: float = 0.1,
                    seed: int = 0) -> Seq2SeqData:
    """A ``Seq2SeqData`` from a TSV or JSONL file of pairs (``load_pairs_file``), split by
    source with ``split_pairs``."""
    pairs = load_pairs_file(path)
    try:
        return split_pairs(pairs, val_fraction, test_fraction, seed)
    except InputError as exc:
        raise InputError(f"{str(Path(path).expanduser())!r}: {exc}") from None
