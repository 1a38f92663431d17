"""Hugging Face GPT-2 and BERT tokenizers, read from their directories and run as transformers'
fast tokenizers run them, so a pretrained model gets exactly the ids it was trained on.

A Hugging Face tokenizer directory holds ``tokenizer.json`` (the whole pipeline) or the older
vocabulary files -- ``vocab.json`` + ``merges.txt`` for GPT-2's byte-level BPE, ``vocab.txt``
for BERT's WordPiece -- with ``tokenizer_config.json`` / ``special_tokens_map.json`` naming the
special tokens and options.  As transformers does, the pipeline of a GPT-2 or BERT is rebuilt
from the class's recipe and the config's options around the saved vocabulary::

    GPT-2: byte-level BPE, no normaliser, ByteLevel pre-tokenizer and decoder, nothing added
    BERT:  BertNormalizer -> BertPreTokenizer -> WordPiece (unk "[UNK]", words over 100
           characters -> [UNK]) -> "[CLS] A [SEP]" / "[CLS] A [SEP] B [SEP]" (type ids 0, 1)

Unlike this library's ``SubwordTokenizer``, special tokens written in the text ("[MASK]",
"<|endoftext|>") are recognised and become their ids, as in transformers::

    tok = load_tokenizer("bert-dir")
    batch = tok(["a text", "another one"], padding=True, return_tensors="np")
    batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]    # (2, T) int64
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..files import atomic_path, read_json, write_json
from .tokenizers import _as_id_list

TOKENIZER_FILE, CONFIG_FILE, SPECIAL_MAP_FILE = ("tokenizer.json", "tokenizer_config.json",
                                                 "special_tokens_map.json")
VOCAB_JSON, MERGES_TXT, VOCAB_TXT = "vocab.json", "merges.txt", "vocab.txt"
HF_FILES = (CONFIG_FILE, SPECIAL_MAP_FILE, VOCAB_JSON, MERGES_TXT, VOCAB_TXT)  # not tokenizer.json

# transformers' names, in the order of its all_special_ids.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                       "cls_token", "mask_token")
VERY_LARGE_INTEGER = int(1e30)     # transformers' model_max_length for "no limit"
LARGE_INTEGER = int(1e20)          # above it, padding/truncation to model_max_length is off

KINDS = {"GPT2Tokenizer": "gpt2", "GPT2TokenizerFast": "gpt2", "BertTokenizer": "bert",
         "BertTokenizerFast": "bert", "PreTrainedTokenizerFast": "plain",
         "TokenizersBackend": "plain"}     # "plain": tokenizer.json used as it is
CLASS_NAMES = {"gpt2": "GPT2Tokenizer", "bert": "BertTokenizer", "plain": "PreTrainedTokenizerFast"}
DEFAULTS = {   # the defaults of transformers' constructors
    "gpt2": {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
             "eos_token": "<|endoftext|>", "add_prefix_space": False},
    "bert": {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
             "cls_token": "[CLS]", "mask_token": "[MASK]", "do_lower_case": True,
             "tokenize_chinese_chars": True, "strip_accents": None},
    "plain": {},
}
SAVED_OPTIONS = {"gpt2": ("add_prefix_space",),
                 "bert": ("do_lower_case", "strip_accents", "tokenize_chinese_chars")}
PADDINGS = {False: None, "do_not_pad": None, True: "longest", "longest": "longest",
            "max_length": "max_length"}
TRUNCATIONS = {None: None, False: None, "do_not_truncate": None, True: "longest_first",
               "longest_first": "longest_first", "only_first": "only_first",
               "only_second": "only_second"}


def is_pretrained_dir(path) -> bool:
    """Whether ``load_tokenizer`` should read ``path`` as a Hugging Face directory: a directory
    (or a ``tokenizer.json`` in one) holding a file that only such a directory has, or a
    directory without ``tokenizer.json`` at all.  This library's own ``tokenizer.json`` --
    alone, or in a checkpoint beside ``config.json`` -- is not one."""
    path = Path(path).expanduser()
    has_hf = lambda d: any((d / name).is_file() for name in HF_FILES)    # noqa: E731
    if path.is_dir():
        return not (path / TOKENIZER_FILE).is_file() or has_hf(path)
    return path.name == TOKENIZER_FILE and has_hf(path.parent)


class PretrainedTokenizer:
    """A GPT-2 or BERT tokenizer from a Hugging Face directory, with transformers' API."""

    def __init__(self, backend, kind: str, settings: dict):
        self.backend, self.kind, self.settings = backend, kind, settings   # a tokenizers.Tokenizer
        backend.encode_special_tokens = bool(settings.get("split_special_tokens"))
        self._specials = {name: _content(settings.get(name)) for name in SPECIAL_TOKEN_NAMES}
        extra = settings.get("extra_special_tokens", settings.get("additional_special_tokens"))
        self.extra_special_tokens = [_content(t) for t in extra] if isinstance(extra, list) else []
        self.model_max_length = int(settings.get("model_max_length") or VERY_LARGE_INTEGER)
        self.padding_side = settings.get("padding_side", "right")
        self.truncation_side = settings.get("truncation_side", "right")
        self.clean_up_tokenization_spaces = bool(settings.get("clean_up_tokenization_spaces"))
        self.model_input_names = ["input_ids", "attention_mask"]
        if kind == "bert":
            self.model_input_names.insert(1, "token_type_ids")

    @classmethod
    def from_pretrained(cls, path) -> "PretrainedTokenizer":
        """Read a directory (or a ``tokenizer.json`` in one); see the module docstring."""
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"tokenizer directory not found: {str(path)!r}")
        directory = path if path.is_dir() else path.parent
        file = path if path.is_file() else directory / TOKENIZER_FILE
        config, special_map = directory / CONFIG_FILE, directory / SPECIAL_MAP_FILE
        settings = _read_object(config) if config.is_file() else {}
        if special_map.is_file() and "added_tokens_decoder" not in settings:
            settings.update(_read_object(special_map))      # transformers: the map wins then
        file_json = _read_object(file) if file.is_file() else None
        kind = _kind(directory, settings, file_json)
        settings = {**DEFAULTS[kind], **settings}
        backend = (_from_json(file, file_json) if kind == "plain" else
                   _build(kind, directory, file, file_json, settings))
        tokenizer = cls(backend, kind, settings)
        tokenizer._add_tokens(None if kind == "plain" else settings.get("added_tokens_decoder")
                              or (file_json or {}).get("added_tokens") or [])
        if kind == "bert" or (kind == "gpt2" and file_json is None):   # else tokenizer.json's
            tokenizer._set_template()
        return tokenizer

    def _add_tokens(self, saved) -> None:
        """The saved added tokens (the config's, else tokenizer.json's), then each special
        token still missing, as transformers adds them: a token outside the vocabulary gets
        the next free id, so ``len(tok)`` can exceed ``tok.vocab_size``."""
        if saved is not None:
            tokens = ([saved[k] for k in sorted(saved, key=int)] if isinstance(saved, dict)
                      else sorted(saved, key=lambda t: t["id"]))
            self.backend.add_tokens([_added_token(t) for t in tokens])
        have = {t.content for t in self.backend.get_added_tokens_decoder().values()}
        wanted = [self.settings.get(n) for n in SPECIAL_TOKEN_NAMES] + self.extra_special_tokens
        missing = {_content(t): t for t in wanted if t is not None and _content(t) not in have}
        self.backend.add_tokens([_added_token(t, special=True) for t in missing.values()])

    def _set_template(self) -> None:
        """BERT's ``[CLS] A [SEP] B [SEP]`` (type ids 0 then 1); GPT-2 adds nothing, unless
        its config sets ``add_bos_token`` / ``add_eos_token`` (read only without a
        tokenizer.json, whose post-processor says it otherwise, as in transformers)."""
        from tokenizers import processors
        if self.kind == "bert":
            first, last = [self.cls_token], [self.sep_token]
        else:
            first = [self.bos_token] if self.settings.get("add_bos_token") else []
            last = [self.eos_token] if self.settings.get("add_eos_token") else []
        a = [f"{t}:0" for t in first] + ["$A:0"] + [f"{t}:0" for t in last]
        b = [f"{t}:1" for t in first] + ["$B:1"] + [f"{t}:1" for t in last]
        pair = a + (b[len(first):] if self.kind == "bert" else b)     # BERT: one [CLS]
        ids = [(t, self.convert_tokens_to_ids(t)) for t in dict.fromkeys(first + last)]
        self.backend.post_processor = processors.TemplateProcessing(
            single=" ".join(a), pair=" ".join(pair), special_tokens=ids)

    # --- vocabulary and special tokens --------------------------------------------------------
    vocab_size = property(lambda self: self.backend.get_vocab_size(with_added_tokens=False),
                          doc="The model's vocabulary, without added tokens (as transformers).")

    def __len__(self) -> int:
        """The whole vocabulary, added tokens included: the embedding needs this many rows."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __repr__(self) -> str:
        return (f"PretrainedTokenizer({CLASS_NAMES[self.kind]}, vocab_size={self.vocab_size}, "
                f"len={len(self)}, special_tokens={self.special_tokens_map})")

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    special_tokens_map = property(lambda self: {n: t for n, t in self._specials.items() if t})
    all_special_tokens = property(lambda self: list(dict.fromkeys(
        [*self.special_tokens_map.values(), *self.extra_special_tokens])))
    all_special_ids = property(lambda self: self.convert_tokens_to_ids(self.all_special_tokens))
    special_token_ids = property(lambda self: frozenset(self.all_special_ids),
                                 doc="As SubwordTokenizer's: mask_tokens never picks these.")

    def convert_tokens_to_ids(self, tokens):
        """A token (or a list) -> its id; an unknown token -> ``unk_token_id`` (None without)."""
        if isinstance(tokens, str):
            i = self.backend.token_to_id(tokens)
            return i if i is not None or tokens == self.unk_token else self.unk_token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        if isinstance(ids, (int, np.integer)):
            return self.backend.id_to_token(_as_id_list([ids], len(self))[0])
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.backend.id_to_token(i) for i in _as_id_list(ids, len(self)) if i not in skip]

    def add_special_tokens(self, tokens: dict) -> int:
        """``{"pad_token": "[PAD]"}``: set these special tokens, adding the ones the vocabulary
        lacks (a model then needs ``len(tok)`` embedding rows).  Returns how many were added."""
        before = len(self)
        for name, token in tokens.items():
            if name not in SPECIAL_TOKEN_NAMES:
                raise ValueError(f"unknown special token name {name!r}; expected one of "
                                 f"{', '.join(SPECIAL_TOKEN_NAMES)}")
            self.backend.add_special_tokens([_added_token(token, special=True)])
            setattr(self, name, _content(token))
        return len(self) - before

    # --- encoding -----------------------------------------------------------------------------
    def __call__(self, text, text_pair=None, *, add_special_tokens: bool = True, padding=False,
                 truncation=None, max_length: int | None = None,
                 pad_to_multiple_of: int | None = None, padding_side: str | None = None,
                 return_tensors: str | None = None, return_attention_mask: bool | None = None,
                 return_token_type_ids: bool | None = None) -> dict:
        """A text (or a list of texts, and ``text_pair`` the second texts of pairs) -> a dict of
        ``input_ids``, ``token_type_ids`` (BERT) and ``attention_mask``: lists, or int64 arrays
        of shape (B, T) with ``return_tensors="np"`` ("tg": tinygradlm Tensors).  ``padding``:
        False, True / "longest", "max_length"; ``truncation``: False, True / "longest_first",
        "only_first", "only_second".  As in transformers, ``max_length`` alone truncates, and
        without it padding to "max_length" and truncation use ``model_max_length``."""
        batched = not isinstance(text, str)
        if not batched and not text_pair:
            text_pair = None          # transformers reads a single text with pair "" as no pair
        texts, pairs = (list(text), text_pair) if batched else ([text], [text_pair])
        if text_pair is not None:
            if isinstance(pairs, str) or len(pairs := list(pairs)) != len(texts):
                raise ValueError(f"text_pair must be a list of {len(texts)} texts, as text is")
        for t in texts + (pairs if text_pair is not None else []):
            if not isinstance(t, str):
                raise TypeError(f"texts must be str (or lists of str), got a "
                                f"{type(t).__name__}: {t!r:.60}")
        inputs = texts if text_pair is None else list(zip(texts, pairs))
        padding, truncation, max_length = self._strategies(padding, truncation, max_length)
        encodings = self._encode_batch(inputs, add_special_tokens, padding, truncation,
                                       max_length, pad_to_multiple_of, padding_side)
        wanted = {"token_type_ids": return_token_type_ids, "attention_mask": return_attention_mask}
        names = [n for n in self.model_input_names if wanted.get(n) is not False]
        if return_token_type_ids and "token_type_ids" not in names:
            names.insert(1, "token_type_ids")
        fields = {"input_ids": "ids", "token_type_ids": "type_ids",
                  "attention_mask": "attention_mask"}
        out = {n: [getattr(e, fields[n]) for e in encodings] for n in names}
        if return_tensors is not None:
            return {n: _as_tensor(rows, return_tensors, n) for n, rows in out.items()}
        return out if batched else {n: rows[0] for n, rows in out.items()}

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, truncation=None,
               max_length: int | None = None) -> list[int]:
        """Text -> ids.  BERT adds [CLS] ... [SEP] unless ``add_special_tokens=False``."""
        return self(text, text_pair, add_special_tokens=add_special_tokens,
                    truncation=truncation, max_length=max_length)["input_ids"]

    def tokenize(self, text: str) -> list[str]:
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode_many(self, texts) -> list[list[int]]:
        """Ids of each text without [CLS]/[SEP]: what this library's ``encode_batch`` and
        ``classification_batches`` expect (they add [CLS]/[SEP] themselves)."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def encode_array(self, text: str) -> np.ndarray:
        """A corpus -> int64 ids of shape (N,), no special tokens added (``encode_corpus``)."""
        return np.asarray(self.backend.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def _strategies(self, padding, truncation, max_length):
        """transformers' rules (``_get_padding_truncation_strategies``), step by step."""
        for value, table, what in ((padding, PADDINGS, "padding"),
                                   (truncation, TRUNCATIONS, "truncation")):
            if not isinstance(value, (bool, str, type(None))) or value not in table:
                raise ValueError(f"{what} must be one of {list(table)}, got {value!r}")
        if max_length is not None and padding is False and truncation is None:
            truncation = True                          # max_length alone truncates
        padding, truncation = PADDINGS[padding], TRUNCATIONS[truncation]
        if max_length is None and (padding == "max_length" or truncation):
            max_length = self.model_max_length
            if max_length > LARGE_INTEGER:             # "no limit": neither is done
                padding = None if padding == "max_length" else padding
                truncation = None
        if padding and self.pad_token is None:
            raise ValueError("Asking to pad but the tokenizer does not have a padding token "
                             f"({CLASS_NAMES[self.kind]} has none). Set one to use: "
                             "`tokenizer.pad_token = tokenizer.eos_token` (usual for GPT-2), "
                             "or add one: `tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.")
        return padding, truncation, max_length

    def _encode_batch(self, inputs, add_special_tokens, padding, truncation, max_length,
                      pad_to_multiple_of, padding_side):
        """The backend pads and truncates as transformers asks it to; the settings are cleared
        afterwards, so a saved tokenizer.json never carries them."""
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        try:
            if truncation:
                self.backend.enable_truncation(max_length, stride=0, strategy=truncation,
                                               direction=self.truncation_side)
            if padding:
                self.backend.enable_padding(
                    direction=side, pad_id=self.pad_token_id, pad_type_id=0,
                    pad_token=self.pad_token, pad_to_multiple_of=pad_to_multiple_of,
                    length=max_length if padding == "max_length" else None)
            return self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        except Exception as exc:
            if isinstance(exc, (TypeError, ValueError)):
                raise
            # tokenizers raises a bare Exception, e.g. when max_length leaves no room
            raise ValueError(f"cannot encode with max_length={max_length}, truncation="
                             f"{truncation!r}: {exc}") from None
        finally:
            self.backend.no_truncation()
            self.backend.no_padding()

    # --- decoding -----------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """Ids -> text.  ``skip_special_tokens`` drops the special tokens (transformers'
        default keeps them).  An id outside the vocabulary is an error, not skipped."""
        ids = _as_id_list([ids] if isinstance(ids, (int, np.integer)) else ids, len(self))
        text = self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces and type(self.backend.model).__name__ != "BPE":
            for before in (" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"):
                text = text.replace(before, before.strip() if before != " ' " else "'")
        return text

    def batch_decode(self, sequences, skip_special_tokens: bool = False, **kwargs) -> list[str]:
        return [self.decode(ids, skip_special_tokens, **kwargs) for ids in sequences]

    # --- saving -------------------------------------------------------------------------------
    def save_pretrained(self, directory) -> Path:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json, which
        transformers' ``AutoTokenizer.from_pretrained`` (and ``load_tokenizer``) read back
        to the same ids.  Returns the directory."""
        self.save(Path(directory) / TOKENIZER_FILE)
        return Path(directory)

    def save(self, path) -> None:
        """Write ``path`` (a directory -> its tokenizer.json) and the two config files beside
        it, so that a checkpoint's tokenizer.json loads back as this class."""
        path = Path(path)
        path = path / TOKENIZER_FILE if path.is_dir() else path
        with atomic_path(path) as tmp:
            self.backend.save(tmp)
        options = {k: self.settings[k] for k in SAVED_OPTIONS.get(self.kind, ())}
        extra = {"additional_special_tokens": self.extra_special_tokens} \
            if self.extra_special_tokens else {}
        added = {str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                          "rstrip": t.rstrip, "single_word": t.single_word, "special": t.special}
                 for i, t in sorted(self.backend.get_added_tokens_decoder().items())}
        write_json(path.parent / CONFIG_FILE, {
            "tokenizer_class": CLASS_NAMES[self.kind], **self._specials, **options, **extra,
            "model_max_length": self.model_max_length, "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "added_tokens_decoder": added})
        write_json(path.parent / SPECIAL_MAP_FILE, {**self.special_tokens_map, **extra})


def _special_property(name: str):
    """``tok.pad_token`` (settable, e.g. ``tok.pad_token = tok.eos_token``) and
    ``tok.pad_token_id``: None when the tokenizer has no such token."""
    def set_token(self, token):
        token = _content(token)
        if token is not None and self.backend.token_to_id(token) is None:
            raise ValueError(f"{name} {token!r} is not in the vocabulary; pick one that is "
                             f"(e.g. tokenizer.pad_token = tokenizer.eos_token) or add it with "
                             f"tokenizer.add_special_tokens({{{name!r}: {token!r}}})")
        self._specials[name] = token

    def get_id(self):
        token = self._specials[name]
        return None if token is None else self.convert_tokens_to_ids(token)

    setattr(PretrainedTokenizer, name, property(lambda self: self._specials[name], set_token))
    setattr(PretrainedTokenizer, f"{name}_id", property(get_id))


for _name in SPECIAL_TOKEN_NAMES:
    _special_property(_name)


# --- reading the files and building the backend -----------------------------------------------
def _read_object(path: Path) -> dict:
    obj = read_json(path, "tokenizer file")
    if not isinstance(obj, dict):
        raise ValueError(f"{str(path)!r} does not hold a JSON object")
    return obj


def _content(token):
    """A token as its text: configs write it as a string or as an AddedToken's fields."""
    return token.get("content") if isinstance(token, dict) else token


def _added_token(token, special: bool | None = None):
    from tokenizers import AddedToken
    if not isinstance(token, dict):
        return AddedToken(token, special=True)
    flags = {k: token[k] for k in ("single_word", "lstrip", "rstrip", "normalized", "special")
             if k in token}
    return AddedToken(token["content"], **{**flags, **({} if special is None else
                                                       {"special": special})})


def _kind(directory: Path, settings: dict, file_json) -> str:
    """gpt2, bert or plain: from tokenizer_class, else from the files there are."""
    name = settings.get("tokenizer_class")
    if name is not None:
        if name not in KINDS:
            raise ValueError(f"{str(directory / CONFIG_FILE)!r}: tokenizer_class {name!r} is not "
                             f"supported; expected one of {', '.join(KINDS)}")
        if KINDS[name] == "plain" and file_json is None:
            raise FileNotFoundError(f"{name} needs {str(directory / TOKENIZER_FILE)!r}")
        return KINDS[name]
    if (directory / VOCAB_JSON).is_file() or (directory / MERGES_TXT).is_file():
        return "gpt2"
    if (directory / VOCAB_TXT).is_file():
        return "bert"
    if file_json is not None:
        return "plain"
    raise FileNotFoundError(
        f"{str(directory)!r} is not a tokenizer directory: it holds none of {TOKENIZER_FILE}, "
        f"{VOCAB_JSON} + {MERGES_TXT} (GPT-2's byte-level BPE) or {VOCAB_TXT} (BERT's WordPiece)")


def _from_json(file: Path, file_json: dict):
    from tokenizers import Tokenizer
    try:
        return Tokenizer.from_str(json.dumps(file_json))
    except Exception as exc:
        raise ValueError(f"{str(file)!r} is not a tokenizer.json the tokenizers library can "
                         f"read: {exc}") from None


def _build(kind: str, directory: Path, file: Path, file_json, settings: dict):
    """transformers' GPT2Tokenizer / BertTokenizer recipe around the saved vocabulary: the
    model of tokenizer.json, else vocab.json + merges.txt / vocab.txt."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    needed = (VOCAB_JSON, MERGES_TXT) if kind == "gpt2" else (VOCAB_TXT,)
    if file_json is not None:
        want, saved = ("BPE" if kind == "gpt2" else "WordPiece"), file_json.get("model")
        if not (isinstance(saved, dict) and saved.get("type") == want
                and isinstance(saved.get("vocab"), dict)):
            raise ValueError(f"{str(file)!r} should hold a {want} model with a vocab for "
                             f"{CLASS_NAMES[kind]} (found {(saved or {}).get('type')!r})")
    for name in needed if file_json is None else ():
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{str(directory / name)!r} not found: {CLASS_NAMES[kind]} "
                                    f"needs {TOKENIZER_FILE} or {' + '.join(needed)}")
    paths = [str(directory / name) for name in needed]
    sources = [str(file)] if file_json is not None else paths
    try:
        if kind == "gpt2":        # no unknown token: every string is bytes, each has a token
            options = dict(dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                           fuse_unk=False)
            if file_json is None:
                _read_object(directory / VOCAB_JSON)   # a clear error for a corrupt vocab.json
                model = models.BPE.from_file(*paths, **options)
            else:
                merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                          for m in saved.get("merges", [])]
                model = models.BPE(saved["vocab"], merges, **options)
        else:
            unk = str(_content(settings["unk_token"]))
            if file_json is None and Path(paths[0]).stat().st_size == 0:
                raise ValueError(f"{paths[0]!r} is empty: expected one WordPiece token a line")
            model = (models.WordPiece.from_file(paths[0], unk_token=unk) if file_json is None
                     else models.WordPiece(saved["vocab"], unk_token=unk))
    except (OSError, ValueError):
        raise
    except Exception as exc:                 # tokenizers' parse errors: name the files
        raise ValueError(f"cannot read the vocabulary {' + '.join(sources)}: {exc}") from None
    backend = Tokenizer(model)
    if kind == "gpt2":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(
            add_prefix_space=bool(settings["add_prefix_space"]))
        backend.decoder = decoders.ByteLevel()
        if file_json is not None and file_json.get("post_processor"):
            # The file's post-processor, read from a copy without the (large) vocabulary.
            empty = {**file_json, "added_tokens": [], "model": {**saved, "vocab": {}, "merges": []}}
            backend.post_processor = _from_json(file, empty).post_processor
        return backend
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=bool(settings["tokenize_chinese_chars"]),
        strip_accents=settings["strip_accents"], lowercase=bool(settings["do_lower_case"]))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def _as_tensor(rows: list[list[int]], kind: str, name: str):
    if kind not in ("np", "tg"):
        raise ValueError(f"return_tensors must be 'np', 'tg' or None, got {kind!r}")
    lengths = sorted({len(r) for r in rows})
    if len(lengths) > 1:
        raise ValueError(f"cannot stack {name} into an array: the sequences have lengths "
                         f"{lengths[0]} to {lengths[-1]}; pass padding=True")
    array = np.asarray(rows, dtype=np.int64).reshape(len(rows), lengths[0] if rows else 0)
    if kind == "tg":
        from ..tensor import Tensor
        return Tensor(array)
    return array
