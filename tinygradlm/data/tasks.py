"""Labelled data for fine-tuning a classifier: ``(text, label_id)`` pairs in three splits.

* ``stdlib_function_dataset()``: the built-in task, no download: which standard-library
  package (asyncio, email, http, ...) is this function's source from?
* ``load_labelled_file`` / ``labelled_from_file``: any CSV, TSV or JSONL file instead.
* ``classification_batches``: ``[CLS] text [SEP]`` rows, padded per batch::

      task = stdlib_function_dataset()
      for x, attn, y in classification_batches(task.train, tok, 32, 256, shuffle=True):
          ...                                   # (B, T) int64, (B, T) bool, (B,) int64
"""
from __future__ import annotations

import ast
import csv
import functools
import hashlib
import json
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..files import InputError
from ..tensor import Tensor
from .batches import (check_max_length, pad_rows, padding_id, positive_int, rng_or_default,
                      wrap_texts)
from .corpus import stdlib_files, stdlib_root


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

    num_classes = property(lambda self: len(self.label_names))

    def class_counts(self) -> dict[str, list[int]]:
        """``{"train": [n_0, n_1, ...], "val": [...], "test": [...]}``: examples per class."""
        return {split: np.bincount([label for _, label in getattr(self, split)],
                                   minlength=self.num_classes).tolist()
                for split in ("train", "val", "test")}

    def __repr__(self) -> str:     # the default would print every text
        return (f"LabelledData(train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, label_names={self.label_names})")


# Packages of the built-in task: each has enough files for a split by file and 200+
# functions, and they do different jobs, so a function's package is learnable but not
# trivial (all define __init__, __repr__, read, close, ...).  On every CPython from 3.8 on.
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
    less (as a line inside a triple-quoted string can, which defeats ``textwrap.dedent``)."""
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
            # The last line is cut where the node ends (a `;` statement can follow; in bytes).
            body = lines[node.lineno - 1:node.end_lineno]
            body[-1] = body[-1].encode("utf-8")[:node.end_col_offset].decode("utf-8")
            text = "".join(_unindent(line, node.col_offset) for line in body)
            found.append((node.lineno, node.col_offset, _clip(text, max_chars)))
    return [text for _, _, text in sorted(found)]


@functools.lru_cache(maxsize=None)
def _package_functions(package: str, min_lines: int, max_chars: int) -> tuple:
    """``((relative path, functions), ...)`` for every ``.py`` file of a stdlib package with
    at least one function, test suites skipped.  Cached: same arguments, same files."""
    directory = stdlib_root() / package
    if not (directory / "__init__.py").is_file():
        raise ValueError(f"{package!r} is not a package of this Python's standard library "
                         f"(no {directory}/__init__.py); packages are directories such as "
                         f"{', '.join(DEFAULT_PACKAGES)}")
    files = []
    for rel, path in stdlib_files(directory):   # sorted, test/tests/__pycache__ pruned
        try:
            functions = _functions_in_source(path.read_text(encoding="utf-8"), min_lines, max_chars)
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue                   # not parseable by this Python: not part of the task
        if functions:
            files.append((f"{package}/{rel}", tuple(functions)))
    return tuple(files)


def _split_files(files: list[tuple[str, int]], seed: int) -> dict[str, str]:
    """Assign each file (relative path, number of functions) to "train", "val" or "test".

    Files are visited in the order of a seeded hash of their path (not by name, which would
    keep e.g. ``asyncio/base_*`` together).  Test, then val, take each file that brings them
    closer to 15% of the package's functions, so the biggest files stay in train; every
    split gets at least one file (or an error says why it cannot).
    """
    if len(files) < 3:
        raise ValueError(f"{len(files)} file(s) with functions are too few to split by "
                         "file into train, val and test")
    total = sum(count for _, count in files)
    # sha256, not hash(): a str's hash() is salted per process.
    order = sorted(files, key=lambda f: hashlib.sha256(f"{seed}:{f[0]}".encode()).digest()[:8])
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

    Each function and method (any depth, ``min_lines`` lines or more, its first ``max_chars``
    characters) of a package's ``.py`` files is an example, labelled by the package
    (``label_names == list(packages)``).

    * Split by file (``_split_files``): val and test hold only functions from files the
      model never trained on, so it cannot score by recognising a file's private names.
    * A text seen earlier (in train first, then val, then test) is dropped: no test text
      is also a training text.
    * At most ``max_per_class`` functions per class (70% in train, 15% in val and in test),
      drawn at random where a package has more: it evens out classes that differ 4x in size.

    Deterministic for a ``seed`` (which also picks each split's files) and Python version.
    """
    packages = [packages] if isinstance(packages, str) else list(packages)
    if len(packages) < 2:
        raise ValueError(f"a classification task needs at least 2 packages, got {packages}")
    if len(set(packages)) != len(packages):
        raise ValueError(f"packages are repeated: {packages}")
    max_per_class = positive_int("max_per_class", max_per_class)
    caps = {split: max(1, round(fraction * max_per_class))
            for split, fraction in SPLIT_FRACTIONS.items()}
    rng = np.random.default_rng(seed)
    splits: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLIT_FRACTIONS}
    seen, held_out = set(), []      # texts already taken; files of val and test
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


def label_budget_subsets(labels, fractions, seed: int = 0) -> list[np.ndarray]:
    """Training subsets for a learning curve: for each label budget in ``fractions`` (of the
    ``N`` examples whose class ids are ``labels``), the sorted indices of the examples kept.

    * **Class-balanced**: ``round(fraction * N)`` examples (at least one per class), dealt
      one per class in turn, so class counts differ by at most one -- except where a small
      class has run out, and the others take its share.
    * **Nested**: a bigger budget keeps every example of a smaller one and adds more, so a
      curve's points differ only in how much was added.
    * **Deterministic** for a ``seed``: both arms of a comparison get the same subsets.

        >>> label_budget_subsets([0, 0, 0, 1, 1, 1], [0.34, 1.0])
        [array([2, 5]), array([0, 1, 2, 3, 4, 5])]
    """
    labels = np.asarray(labels, dtype=np.int64)                            # (N,)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"label_budget_subsets: labels must be a non-empty list of class ids, "
                         f"got shape {labels.shape}")
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"label_budget_subsets: a label budget must be a fraction in "
                             f"(0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    # One shuffled order per class, and an order of the classes for the deal: a budget is a
    # prefix of the deal, and each class's share a prefix of its order -- hence nested.
    members = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    turn = rng.permutation(classes)
    deal = [c for r in range(max(len(m) for m in members.values()))
            for c in turn if r < len(members[c])]                           # N class ids
    subsets = []
    for fraction in fractions:
        n = min(labels.size, max(len(classes), round(fraction * labels.size)))
        share = dict(zip(*np.unique(deal[:n], return_counts=True)))
        subsets.append(np.sort(np.concatenate([members[c][:share[c]] for c in share])))
    return subsets


_LABELLED_FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".ndjson": None}


def checked_data_file(path, formats, what: str) -> tuple[Path, str, str]:
    """(path, its name for messages, its lower-case extension), once the extension is one of
    ``formats`` and the file exists; otherwise an error that names the file."""
    path = Path(path).expanduser()
    where, suffix = str(path), path.suffix.lower()
    if suffix not in formats:
        raise InputError(f"{where!r}: unknown extension {suffix or '(none)'!r}; expected "
                         f"one of {', '.join(formats)}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {where!r}")
    return path, where, suffix


def load_labelled_file(path, text_column: str = "text",
                       label_column: str = "label") -> tuple[list[str], list[str]]:
    """Texts and their labels (as strings) from a CSV, TSV or JSONL file, by extension.

    CSV/TSV files need a header row naming the columns; JSONL files hold one JSON object per
    line.  Blank lines are skipped; an error names the file and the line."""
    path, where, suffix = checked_data_file(path, _LABELLED_FORMATS, "labelled data file")
    columns, delimiter = (text_column, label_column), _LABELLED_FORMATS[suffix]
    pairs = []
    try:
        # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the header.
        with open(path, encoding="utf-8-sig", newline="") as f:
            records = (_jsonl_records(f, where) if delimiter is None
                       else _delimited_records(f, where, delimiter, columns))
            for line, record in records:          # record: {column: value}
                for name in columns:
                    if name not in record:
                        raise InputError(f"{where!r}, line {line}: no field {name!r}; the "
                                         f"fields are {sorted(record)}")
                text, label = record[text_column], record[label_column]
                if not isinstance(text, str):
                    raise InputError(f"{where!r}, line {line}: field {text_column!r} must "
                                     f"be a string, got {type(text).__name__}")
                if isinstance(label, (dict, list)) or label is None:
                    raise InputError(f"{where!r}, line {line}: field {label_column!r} must "
                                     f"be a string or a number, got {json.dumps(label)}")
                if not str(label).strip():
                    raise InputError(f"{where!r}, line {line}: the {label_column!r} is empty")
                pairs.append((text, str(label).strip()))
    except UnicodeDecodeError as exc:
        raise InputError(f"{where!r} is not UTF-8 text ({exc})") from None
    if not pairs:
        raise InputError(f"{where!r} holds no examples" if delimiter else
                         f"{where!r} is empty; expected one JSON object per line with "
                         f"fields {text_column!r} and {label_column!r}")
    return [text for text, _ in pairs], [label for _, label in pairs]


def _delimited_records(f, where: str, delimiter: str, columns) -> Iterator[tuple[int, dict]]:
    """(line number, {column: field}) for each row of a CSV/TSV file with a header."""
    reader = csv.reader(f, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise InputError(f"{where!r} is empty; expected a header row naming the columns "
                         f"{columns[0]!r} and {columns[1]!r}")
    for name in columns:
        if name not in header:
            raise InputError(f"{where!r}, line 1: no column {name!r} in the header; "
                             f"the columns are {header}")
    at = {name: header.index(name) for name in columns}
    for row in reader:
        if not any(field.strip() for field in row):
            continue
        # reader.line_num is the line the row ends on (a quoted field can span lines).
        if len(row) != len(header):
            raise InputError(f"{where!r}, line {reader.line_num}: {len(row)} field(s), "
                             f"but the header has {len(header)}")
        yield reader.line_num, {name: row[i] for name, i in at.items()}


def _jsonl_records(f, where: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file."""
    for line_number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where!r}, line {line_number}: not valid JSON "
                             f"({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise InputError(f"{where!r}, line {line_number}: expected a JSON object, "
                             f"got {type(record).__name__}")
        yield line_number, record


def labelled_from_file(path, val_fraction: float = 0.1, test_fraction: float = 0.1,
                       seed: int = 0, text_column: str = "text",
                       label_column: str = "label") -> LabelledData:
    """A ``LabelledData`` from any CSV/TSV/JSONL file (see ``load_labelled_file``); label
    ids follow the sorted label names.  The examples are shuffled (``seed``) and cut into
    test, val and train; a split with a nonzero fraction gets at least one example."""
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise InputError(f"{name} must be in [0, 1), got {fraction}")
    texts, labels = load_labelled_file(path, text_column, label_column)
    label_names = sorted(set(labels))
    if len(label_names) < 2:
        raise InputError(f"{str(Path(path))!r}: every example has the {label_column!r} "
                         f"{label_names[0]!r}; a classifier needs at least 2 classes")
    label_id = {name: i for i, name in enumerate(label_names)}
    n = len(texts)
    n_test, n_val = (max(1, round(fraction * n)) if fraction > 0 else 0
                     for fraction in (test_fraction, val_fraction))
    if n - n_test - n_val < 1:
        raise InputError(f"{str(Path(path))!r} has {n} example(s): too few for "
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
    int64 Tensors on ``device``, rows ``[CLS] tokens [SEP]`` cut to ``max_length``.  A batch
    is padded only to its own longest row: attention costs T^2, and most functions are short.
    Texts are encoded (and the ``shuffle`` order drawn from ``generator``) when called, not
    lazily, so errors show up at once; iterate the result once per epoch.
    """
    batch_size = positive_int("batch_size", batch_size)
    rows, labels = encode_labelled(examples, tokenizer, max_length)
    order = rng_or_default(generator).permutation(len(rows)) if shuffle else np.arange(len(rows))
    pad_id = padding_id(tokenizer)
    return (labelled_batch(rows, labels, order[start:start + batch_size], pad_id, device)
            for start in range(0, len(order), batch_size))


def encode_labelled(examples, tokenizer, max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """``(text, label_id)`` examples -> (token rows ``[CLS] tokens [SEP]`` cut to
    ``max_length``, labels (N,) int64): encoded once, batched many times (``labelled_batch``)."""
    max_length = check_max_length(max_length)
    examples = list(examples)
    if not examples:
        raise ValueError("classification_batches: there are no examples")
    labels = np.array([operator.index(label) for _, label in examples], dtype=np.int64)  # (N,)
    return wrap_texts(tokenizer, [text for text, _ in examples], max_length), labels


def labelled_batch(rows, labels, picked, pad_id: int,
                   device=None) -> tuple[Tensor, Tensor, Tensor]:
    """The examples ``picked`` (indices into ``rows``/``labels``) as ``(input_ids,
    attention_mask, labels)``, padded to the longest of them."""
    batch = [rows[i] for i in picked]
    ids, mask = pad_rows(batch, max(len(row) for row in batch), pad_id)       # (B, T)
    return (Tensor(ids, device=device), Tensor(mask, device=device),
            Tensor(labels[picked], device=device))
