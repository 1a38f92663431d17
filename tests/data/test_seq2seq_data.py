"""Sequence-to-sequence data (tinygradlm.data.seq2seq): the built-in code-summarisation task
and (source, target) pairs from TSV and JSONL files."""
import ast
import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data import (SOURCE_MAX_CHARS, Seq2SeqData, function_name_baseline,
                             load_pairs_file, pairs_from_file, split_pairs,
                             stdlib_docstring_dataset)
from tinygradlm.data import seq2seq
from tinygradlm.files import InputError


@pytest.fixture(scope="module")
def task():
    return stdlib_docstring_dataset()      # the walk is cached: later calls are instant


def _files_of(split: str, seed: int = 0) -> set:
    """The stdlib files whose pairs make up ``split`` (the cached walk, split as the task)."""
    files = seq2seq._stdlib_docstring_pairs(3, SOURCE_MAX_CHARS, seq2seq.TARGET_MIN_WORDS,
                                            seq2seq.TARGET_MAX_WORDS)
    split_of = seq2seq._split_files([(path, len(pairs)) for path, pairs in files], seed)
    return {path for path, s in split_of.items() if s == split}


# --- the built-in task ----------------------------------------------------------------------

@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="sizes measured on CPython 3.11")
def test_stdlib_docstring_sizes(task):
    assert len(task.test) >= 500 and len(task.val) >= 300
    total = len(task.train) + len(task.val) + len(task.test)
    assert 0.6 < len(task.train) / total < 0.8, task
    assert repr(task).startswith("Seq2SeqData(train=") and "def " not in repr(task)


def test_stdlib_docstring_split_by_file(task):
    train, val, test = (_files_of(s) for s in ("train", "val", "test"))
    assert train and val and test
    assert not train & val and not train & test and not val & test
    assert task.held_out_files == tuple(sorted(val | test))
    assert all("/test/" not in path and "/tests/" not in path for path in train | val | test)
    # The splits hold exactly those files' pairs, in file order.
    files = dict(seq2seq._stdlib_docstring_pairs(3, SOURCE_MAX_CHARS, seq2seq.TARGET_MIN_WORDS,
                                                 seq2seq.TARGET_MAX_WORDS))
    assert task.test == [pair for path in sorted(test) for pair in files[path]]


def test_stdlib_docstring_sources_are_unique(task):
    sources = [source for source, _ in task.train + task.val + task.test]
    assert len(set(sources)) == len(sources)        # hence no source in two splits


def test_stdlib_docstring_pairs_are_clean(task):
    for source, target in task.train + task.val + task.test:
        assert source.startswith(("def ", "async def ")), source[:80]
        assert len(source) <= SOURCE_MAX_CHARS
        assert sum(1 for line in source.splitlines() if line.strip()) >= 3
        # A single sentence, ending in a period: taking its first sentence changes nothing.
        assert target.endswith(".") and seq2seq._first_sentence(target) == target, target
        assert " ".join(target.split()) == target
        words = len(target.split())
        assert seq2seq.TARGET_MIN_WORDS <= words <= seq2seq.TARGET_MAX_WORDS, target
        assert not target.startswith(">>>")
        # No docstring text is left in the code the model reads.
        assert target.rstrip(".") not in " ".join(source.split()), (target, source)
    whole = 0
    for source, _ in task.test:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue                            # cut at SOURCE_MAX_CHARS mid-statement
        whole += 1
        assert ast.get_docstring(tree.body[0]) is None, source
    assert whole > 0.5 * len(task.test)         # most sources are whole functions


def test_stdlib_docstring_deterministic_per_seed(task):
    again = stdlib_docstring_dataset()
    assert again.train == task.train and again.test == task.test
    other = stdlib_docstring_dataset(seed=1)
    assert other.test != task.test and other.held_out_files != task.held_out_files
    assert sorted(other.train + other.val + other.test) == \
        sorted(task.train + task.val + task.test)          # the same pairs, split otherwise


def test_stdlib_docstring_options_checked_before_the_walk():
    with pytest.raises(ValueError, match="max_source_chars must be a positive integer"):
        stdlib_docstring_dataset(max_source_chars=0)
    with pytest.raises(ValueError, match="min_target_words must be a positive integer"):
        stdlib_docstring_dataset(min_target_words=2.5)


def test_summarised_functions_drop_the_docstring():
    source = ('class A:\n'
              '    @property\n'
              '    def size_of(self, x):\n'
              '        """Return the size of x in bytes.\n'
              '\n'
              '        Longer text that is not the target.\n'
              '        """\n'
              '\n'
              '        n = len(x)\n'
              '        return n * 8\n'
              '    def one_liner(self): "Do the thing now."; return 1\n'
              '    def only_doc(self):\n'
              '        """Nothing but a docstring here."""\n'
              'def first(s):\n'
              '    """Set focus on the canvas\n'
              '\n'
              '    The first paragraph had no period."""\n'
              '    a = 1\n'
              '    return a\n'
              'def short(s):\n'
              '    """Too short to keep."""\n'
              '    return s\n'
              'def boiler(s):\n'
              '    """Constructor."""\n'
              '    a = 1\n'
              '    return a\n')
    assert seq2seq._summarised_functions(source, 3, 1000, 3, 25) == [
        ("def size_of(self, x):\n    n = len(x)\n    return n * 8",
         "Return the size of x in bytes."),
        ("def first(s):\n    a = 1\n    return a", "Set focus on the canvas."),
    ]
    # Cut at a line end; the whole function still decides what is kept.
    assert seq2seq._summarised_functions(source, 3, 30, 3, 25)[0] == \
        ("def size_of(self, x):", "Return the size of x in bytes.")


@pytest.mark.parametrize("docstring, sentence", [
    ("Return the size.  More text.", "Return the size."),
    ("Join paths, e.g. a and b.\n\nMore.", "Join paths, e.g. a and b."),
    ("Normalize path, eliminating double slashes, etc.", "Normalize path, eliminating "
                                                         "double slashes, etc."),
    ("Call os.path.join on\n   every   part.", "Call os.path.join on every part."),
    ("Set focus on canvas (for keys)\n\nMore.", "Set focus on canvas (for keys)."),
    ("The formats are:\n\n  a, b", None),
])
def test_first_sentence(docstring, sentence):
    assert seq2seq._first_sentence(docstring) == sentence


@pytest.mark.parametrize("name, summary", [
    ("get_full_url", "Get full url."),
    ("__init__", "Init."),
    ("_parseHTTPHeader", "Parse http header."),
    ("getFullURL", "Get full url."),
    ("utf8_decode", "Utf 8 decode."),
    ("x", "X."),
])
def test_function_name_baseline(name, summary):
    assert function_name_baseline(f"def {name}(self):\n    return 1") == summary
    assert function_name_baseline(f"async def {name}():\n    pass") == summary


def test_function_name_baseline_needs_a_def(task):
    with pytest.raises(ValueError, match="no 'def'"):
        function_name_baseline("x = 1")
    assert all(function_name_baseline(source).endswith(".") for source, _ in task.test)


@pytest.mark.parametrize("code, split", [
    ("def getFullURL(self, url_parts):", "def get full url(self, url parts):"),
    ("return HTTPServer(__name__)", "return http server(name)"),
    ("x = a1 + _", "x = a 1 + _"),
    ("s = 'it''s' # no_change? yes", "s = 'it''s' # no change? yes"),
])
def test_split_identifiers_writes_names_as_words(code, split):
    from tinygradlm.data import split_identifiers
    assert split_identifiers(code) == split


# --- pairs from files -------------------------------------------------------------------------

def test_load_pairs_tsv_with_extra_columns(tmp_path):
    path = tmp_path / "tatoeba.tsv"
    path.write_text("\ufeffHi.\tSalut.\t#123 (CK)\t#456 (Aiji)\n\n"
                    "  Run!  \tCours !\r\nWho?\tQui ?\n", encoding="utf-8")
    assert load_pairs_file(path) == [("Hi.", "Salut."), ("Run!", "Cours !"), ("Who?", "Qui ?")]
    txt = tmp_path / "pairs.txt"
    txt.write_text("a\tb\n")
    assert load_pairs_file(txt) == [("a", "b")]


def test_load_pairs_jsonl(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"source": "def f():\\n    pass", "target": "Do nothing.", "id": 3}\n'
                    '\n{"target": " B ", "source": "a"}\n')
    assert load_pairs_file(path) == [("def f():\n    pass", "Do nothing."), ("a", "B")]


@pytest.mark.parametrize("name, content, pattern", [
    ("t.tsv", "a\tb\nno tab here\n", r"t\.tsv', line 2: no TAB"),
    ("s.tsv", "a\tb\n\n \tb\n", r"s\.tsv', line 3: the source is empty"),
    ("g.txt", "a\t  \t extra\n", r"g\.txt', line 1: the target is empty"),
    ("e.tsv", "", r"e\.tsv' is empty"),
    ("w.tsv", "\n  \n", r"w\.tsv' is empty"),
    ("e.jsonl", "\n", r"e\.jsonl' is empty"),
    ("b.jsonl", '{"source": "a", "target": "b"}\n{"source": "a", target: 2}\n',
     r"b\.jsonl', line 2: not valid JSON"),
    ("l.jsonl", '["a", "b"]\n', r"l\.jsonl', line 1: expected a JSON object"),
    ("k.jsonl", '\n{"source": "a", "label": "b"}\n',
     r"k\.jsonl', line 2: no field 'target'; the fields are \['label', 'source'\]"),
    ("n.jsonl", '{"source": 3, "target": "b"}\n', r"n\.jsonl', line 1: field 'source' "
                                                  "must be a string, got int"),
    ("m.jsonl", '{"source": "a", "target": null}\n', r"m\.jsonl', line 1: field 'target' "
                                                     "must be a string, got NoneType"),
    ("z.jsonl", '{"source": "a", "target": " "}\n', r"z\.jsonl', line 1: the target is empty"),
    ("d.csv", "a,b\n", r"d\.csv': unknown extension '\.csv'"),
])
def test_load_pairs_file_errors(tmp_path, name, content, pattern):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=pattern):
        load_pairs_file(tmp_path / name)


def test_load_pairs_file_missing_and_not_utf8(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        load_pairs_file(tmp_path / "nope.tsv")
    (tmp_path / "latin1.tsv").write_bytes(b"a\tb\ncaf\xe9\tcoffee\n")
    with pytest.raises(InputError, match=r"latin1\.tsv', line 2: not UTF-8 text"):
        load_pairs_file(tmp_path / "latin1.tsv")


def test_pairs_from_file(tmp_path):
    path = tmp_path / "pairs.tsv"
    # 50 sources, the first 10 with a second translation: 60 pairs.
    lines = [f"source {i}\ttarget {i}" for i in range(50)]
    lines += [f"source {i}\tother target {i}" for i in range(10)]
    path.write_text("\n".join(lines) + "\n")
    task = pairs_from_file(path)
    assert isinstance(task, Seq2SeqData) and task.held_out_files == ()
    assert sorted(task.train + task.val + task.test) == sorted(load_pairs_file(path))
    sources = [{s for s, _ in split} for split in (task.train, task.val, task.test)]
    assert [len(s) for s in sources] == [40, 5, 5]     # fractions count distinct sources
    assert not sources[0] & sources[1] and not sources[0] & sources[2] \
        and not sources[1] & sources[2]
    assert pairs_from_file(path).test == task.test        # same seed, same split
    assert pairs_from_file(path, seed=1).test != task.test
    no_val = pairs_from_file(path, val_fraction=0.0, test_fraction=0.3)
    assert no_val.val == [] and len({s for s, _ in no_val.test}) == 15
    with pytest.raises(InputError, match="val_fraction must be in"):
        pairs_from_file(path, val_fraction=1.0)


def test_pairs_from_file_too_few(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text('{"source": "a", "target": "x"}\n{"source": "a", "target": "y"}\n'
                    '{"source": "b", "target": "z"}\n')
    with pytest.raises(InputError, match=r"tiny\.jsonl': 3 pair\(s\) with 2 distinct "
                                         r"source\(s\) are too few"):
        pairs_from_file(path)
    assert len(pairs_from_file(path, val_fraction=0.0).train) >= 1


@given(sources=st.lists(st.integers(0, 30), min_size=3, max_size=80),
       val_fraction=st.sampled_from([0.0, 0.1, 0.25]),
       test_fraction=st.sampled_from([0.05, 0.1, 0.3]),
       seed=st.integers(0, 2**32 - 1))
def test_split_pairs_never_leaks_a_source(sources, val_fraction, test_fraction, seed):
    pairs = [(f"s{s}", f"t{i}") for i, s in enumerate(sources)]
    try:
        task = split_pairs(pairs, val_fraction, test_fraction, seed)
    except InputError as exc:
        assert "too few" in str(exc)
        assert len(set(sources)) < 3                  # only where train would be empty
        return
    splits = (task.train, task.val, task.test)
    assert sorted(task.train + task.val + task.test) == sorted(pairs)    # sizes add up
    owner = {}
    for k, split in enumerate(splits):
        for source, _ in split:
            assert owner.setdefault(source, k) == k   # a source lives in one split only
    assert task.train and task.test and (task.val or val_fraction == 0.0)
    assert split_pairs(pairs, val_fraction, test_fraction, seed).test == task.test
