"""Saving and loading models and training state: no pickle, atomic writes, clear errors.

Two kinds of directory, the second a superset of the first::

    save_pretrained(model, "out/")          save_checkpoint("out/", model, optimizer, meta)
    ------------------------------          -----------------------------------------------
    config.json     model_type + config     config.json, model.npz, tokenizer.json   (same)
    model.npz       the weights             optimizer.npz   optimizer arrays (Adam's moments, ...)
    tokenizer.json  (if one was given)      trainer.json    numbers + meta + sha256 of the rest,
                                                            written LAST

Why these formats
    *No pickle.*  ``pickle.load`` runs code chosen by whoever wrote the file, so a checkpoint
    downloaded from somewhere could do anything.  Arrays go into ``.npz`` files (a zip of
    ``.npy`` files: a small text header with dtype and shape, then the raw bytes) that we read
    with ``np.load(..., allow_pickle=False)``; everything else is JSON.  Both can be opened and
    inspected without tinygradlm.

    *Atomic writes.*  Every file is written to a temporary file in the same directory, flushed and
    ``fsync``-ed to the disk, then renamed onto its final name with ``os.replace`` (a rename
    within one file system is atomic: a reader sees the old file or the new one, never half of
    one).  If anything fails, the temporary file is removed and the previous file is untouched.

    *Consistent training checkpoints.*  A checkpoint is several files, and no file system renames
    several files at once.  So ``trainer.json`` is written last and records the sha256 of every
    other file of the checkpoint; ``load_checkpoint`` checks them.  A crash mid-save therefore
    never resumes silently from new weights with old optimizer moments: it raises
    ``CheckpointError`` ("inconsistent ... partially written").  (To also *keep* the previous
    checkpoint loadable, alternate between two directories.)

All arrays are copied to the host (``backend.to_numpy``) before writing, so models on
``"cuda"`` save the same way; loading copies each value onto the device of the tensor it goes
into (``Module.load_state_dict`` and ``Optimizer.load_state_dict`` do that).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import stat
import tempfile
import typing
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from . import backend

__all__ = ["CheckpointError", "save_pretrained", "load_pretrained", "tokenizer_path",
           "save_checkpoint", "load_checkpoint", "capture_rng_state", "restore_rng_state",
           "write_json"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.npz"
TOKENIZER_NAME = "tokenizer.json"
OPTIMIZER_NAME = "optimizer.npz"
TRAINER_NAME = "trainer.json"

# Bump when the layout of trainer.json / optimizer.npz changes, so an old reader refuses a
# newer checkpoint with a message instead of misreading it.
FORMAT_VERSION = 1

# Tied weights (one Parameter under two names, e.g. a GPT's token embedding and its output
# head) are stored once.  An .npz can hold only arrays, so the list of extra names is kept as a
# small (n, 2) array of strings [[alias, stored_name], ...] under this reserved key; NumPy
# stores string arrays without pickle.
ALIASES_KEY = "__aliases__"

# Errors NumPy and zipfile raise on a damaged .npz (a cut-off download, a disk that filled up).
_NPZ_READ_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError)


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used: corrupt, truncated, inconsistent, or not
    matching the model or optimizer it is loaded into.  The message names the file."""


# --- small file helpers ---------------------------------------------------------------------
def _file_mode(path: Path) -> int:
    """The permissions the file at ``path`` should get: those of the file it replaces, or else
    what ``open(path, "w")`` would give a new file, 0o666 minus the umask.  (``mkstemp``
    creates its files 0o600, which would quietly make every checkpoint private.)  The umask
    can only be read by setting it, so we set it and put it straight back (for that instant a
    file another thread creates would ignore the umask; checkpoints are saved from one
    thread)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (POSIX: the new name lives in the directory's
    own data).  Windows cannot open directories; there ``os.replace`` is as good as it gets."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_path(path: Path):
    """Yield a temporary path next to ``path``; when the block finishes without an error,
    fsync that file and rename it onto ``path``.  On any error (KeyboardInterrupt included)
    the temporary file is removed and whatever was at ``path`` before is left as it was.

    The temporary file must be in the *same directory*: ``os.replace`` is atomic only within
    one file system, and /tmp is often another one.  It starts with a dot and ends in .tmp
    plus the real extension, so a listing shows what it is and tools that insist on an
    extension (a tokenizer's ``save``) accept it."""
    # (A process killed outright, SIGKILL or power loss, can leave such a hidden file behind;
    # nothing ever reads it, and it can be deleted.)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                               suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:         # fsync: the bytes are on disk before the rename
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _atomic_write_bytes(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; returns its sha256 (hex)."""
    with _atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- JSON -------------------------------------------------------------------------------------
def _json_default(obj):
    """NumPy scalars (an ``np.float32`` learning rate, an ``np.int64`` count) become Python
    numbers; anything else JSON cannot hold is refused with a message that says what it was."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store a value of type {type(obj).__name__} ({obj!r:.60}) in JSON; "
                    f"checkpoints hold only numbers, strings, booleans, None, lists and dicts "
                    f"(convert arrays with .tolist(), dataclasses with dataclasses.asdict)")


def _json_bytes(obj) -> bytes:
    """Pretty JSON, so a student can read a config or a trainer state in any editor.  Python's
    json writes floats with ``repr`` (the shortest string that reads back to the same float) and
    ints with every digit, so numbers round-trip exactly; NaN and Infinity (a best_val_loss that
    starts at inf) are written as Python's json reads them back."""
    return (json.dumps(obj, indent=2, default=_json_default) + "\n").encode("utf-8")


def _parse_json(data: bytes, path: Path):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the file is corrupt or was "
                              f"not written by tinygradlm.checkpoint") from None


def write_json(path, obj) -> Path:
    """Write ``obj`` as pretty JSON to ``path`` atomically (a summary, a log of results), with
    the same rules as checkpoints: NumPy scalars become numbers, NaN and inf are kept, other
    types are refused before anything is written.  Creates the parent directory."""
    path = Path(path)
    data = _json_bytes(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(path, data)
    return path


def _read_file(path: Path, what: str) -> bytes:
    """The bytes of ``path``; a missing file or directory raises FileNotFoundError naming both
    the file and its directory, which is the first thing to check."""
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"no {path.name} ({what}) in {directory}: expected {path}")
    return path.read_bytes()


# --- .npz without pickle ---------------------------------------------------------------------
def _npz_bytes(arrays: dict, path: Path) -> bytes:
    """An .npz file (what ``np.savez`` writes: an uncompressed zip with one ``NAME.npy`` per
    array) built in memory.  We write the zip ourselves rather than call ``np.savez`` for two
    reasons: ``allow_pickle=False`` refuses object arrays at save time on every NumPy version
    (``np.savez`` only accepts that flag from NumPy 2.1), and names such as ``file`` cannot
    collide with ``np.savez``'s own keyword arguments."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                try:
                    np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)
                except ValueError as exc:
                    raise TypeError(f"cannot write {name!r} to {path} without pickle "
                                    f"(dtype {np.asarray(array).dtype}): {exc}") from None
    return buffer.getvalue()


def _parse_npz(data: bytes, path: Path) -> dict:
    """Every array of an .npz, read eagerly (``np.load`` is lazy, and a damaged member only
    fails when it is read) and without pickle."""
    def corrupt(reason):
        return CheckpointError(f"{path} is truncated or corrupt ({reason}); re-save or "
                               f"re-download it")

    # Check the zip signature ourselves: given anything else, np.load would try to read the
    # bytes as a single .npy or as a pickle, and fail with a misleading message.  A zip starts
    # with a member's header, or, with no members (an optimizer before its first step), with
    # the end-of-archive record.
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise corrupt("it does not start like a zip file" if data else "it is empty")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except _NPZ_READ_ERRORS as exc:
        if "allow_pickle" in str(exc):      # NumPy's refusal of an object (pickled) array
            raise CheckpointError(f"{path} holds a pickled object array; checkpoints are "
                                  f"read without pickle, so it is refused") from None
        raise corrupt(f"{type(exc).__name__}: {exc}") from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):   # np.load hands back a non-.npy member as bytes
            raise corrupt(f"member {name!r} is not a NumPy array")
    return arrays


# --- model weights ----------------------------------------------------------------------------
def _parameter_data_ids(model) -> set:
    """ids of the arrays behind the model's learnable parameters.  ``state_dict()`` returns
    detached tensors that share those arrays, so this tells parameters (which must be finite)
    from buffers (a causal mask may hold -inf), tied names included."""
    return {id(p.data) for p in model.parameters()}


def _weights_to_arrays(model, path: Path) -> dict:
    """The model's state as host arrays, each tied tensor once, plus the alias table."""
    param_ids = _parameter_data_ids(model)
    arrays, aliases, stored_as = OrderedDict(), [], {}
    for name, tensor in model.state_dict().items():
        key = id(tensor.data)
        if key in stored_as:                        # a second name for a tied weight
            aliases.append((name, stored_as[key]))
            continue
        stored_as[key] = name
        array = backend.to_numpy(tensor.data)
        if key in param_ids and array.dtype.kind == "f" and not np.isfinite(array).all():
            # Refusing here keeps the last good checkpoint on disk when a run diverges.
            raise CheckpointError(f"refusing to write {path}: parameter {name!r} has "
                                  f"{int((~np.isfinite(array)).sum())} non-finite values "
                                  f"(the run has diverged)")
        arrays[name] = array
    if aliases:
        arrays[ALIASES_KEY] = np.array(aliases, dtype=str).reshape(-1, 2)
    return arrays


def _expand_aliases(arrays: dict, path: Path) -> dict:
    """Undo the storing-once of tied weights: every alias gets the array of its target."""
    arrays = dict(arrays)
    table = arrays.pop(ALIASES_KEY, None)
    if table is None:
        return arrays
    if table.dtype.kind != "U" or table.ndim != 2 or table.shape[1] != 2:
        raise CheckpointError(f"{path}: the tied-weight table {ALIASES_KEY!r} should be an "
                              f"(n, 2) array of names, got {table.dtype} {table.shape}")
    for alias, target in table.tolist():
        if target not in arrays:
            raise CheckpointError(f"{path}: tied weight {alias!r} refers to {target!r}, "
                                  f"which is not in the file")
        arrays[alias] = arrays[target]
    return arrays


_KIND_NAMES = {"f": "floating point", "i": "integer", "u": "integer", "b": "boolean"}


def _load_weights(model, arrays: dict, path: Path) -> None:
    """Check the arrays of ``path`` and copy them into ``model`` in place.  Everything is
    checked before the first value is copied, so a refused file leaves the model as it was."""
    arrays = _expand_aliases(arrays, path)
    own = model.state_dict()
    param_ids = _parameter_data_ids(model)
    for name, array in arrays.items():
        if array.dtype.kind not in _KIND_NAMES:
            raise CheckpointError(f"{path}: {name!r} has dtype {array.dtype}; weights must be "
                                  f"floating point, integer or boolean")
        own_kind = _KIND_NAMES.get(own[name].dtype.kind) if name in own else None
        if own_kind is not None and own_kind != _KIND_NAMES[array.dtype.kind]:
            raise CheckpointError(f"{path}: {name!r} is {array.dtype} in the file but "
                                  f"{own[name].dtype} in the model "
                                  f"({_KIND_NAMES[array.dtype.kind]} vs {own_kind})")
        if (name in own and id(own[name].data) in param_ids and array.dtype.kind == "f"
                and not np.isfinite(array).all()):
            raise CheckpointError(f"{path}: parameter {name!r} has "
                                  f"{int((~np.isfinite(array)).sum())} non-finite values "
                                  f"(NaN or inf); the checkpoint was saved from a diverged run")
    try:
        model.load_state_dict(arrays)
    except (KeyError, ValueError) as exc:
        # KeyError's str() adds quotes; args[0] is the message, which already names every
        # missing, unexpected and mis-shaped entry with both shapes.
        message = exc.args[0] if exc.args else str(exc)
        raise CheckpointError(f"{path} does not fit the model (was config.json edited, or "
                              f"saved from another model?): {message}") from None


# --- configs ----------------------------------------------------------------------------------
def _config_dict(model) -> dict:
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"{type(model).__name__} needs a dataclass instance as .config to be "
                        f"saved with save_pretrained (got {type(config).__name__})")
    fields = dataclasses.asdict(config)
    if "model_type" in fields:
        raise ValueError(f"{type(config).__name__} has a field named 'model_type', which "
                         f"config.json reserves for the model's class name")
    return {"model_type": type(model).__name__, **fields}


def _is_tuple_type(tp) -> bool:
    """Whether a dataclass field is declared as a tuple (``tuple[int, int]``, ``Tuple``, or
    the same as a string under ``from __future__ import annotations``)."""
    if isinstance(tp, str):
        return tp.replace(" ", "").lower().startswith(("tuple", "typing.tuple"))
    return tp is tuple or typing.get_origin(tp) is tuple


def _config_from_dict(config_cls, fields: dict, path: Path):
    """``config_cls(**fields)`` with checks: every key must be a field, lists go back to tuples
    where the field is a tuple (JSON has no tuples), and fields with ``init=False`` (derived in
    ``__post_init__``) are recomputed rather than passed in."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config_cls must be a dataclass, got {config_cls!r}")
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise CheckpointError(f"{path} has keys that {config_cls.__name__} does not know: "
                              f"{', '.join(unknown)} (its fields are {', '.join(known)})")
    kwargs = {}
    for name, value in fields.items():
        field = known[name]
        if not field.init:
            continue
        if isinstance(value, list) and _is_tuple_type(field.type):
            value = tuple(value)
        kwargs[name] = value
    try:
        return config_cls(**kwargs)
    except TypeError as exc:            # e.g. a field without a default is missing
        raise CheckpointError(f"cannot build {config_cls.__name__} from {path}: {exc}") from None


def _check_model_type(config: dict, expected: str, path: Path) -> None:
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} should hold a JSON object, not {type(config).__name__}")
    saved = config.get("model_type")
    if saved != expected:
        raise CheckpointError(f"{path} was saved from a {saved!r} model, but you are loading "
                              f"it into {expected!r}")


# --- tokenizer ----------------------------------------------------------------------------------
def _save_tokenizer(tokenizer, directory: Path) -> str:
    """``tokenizer.save(path)`` into a temporary name, then renamed like every other file.
    Returns the sha256 of what was written."""
    path = directory / TOKENIZER_NAME
    with _atomic_path(path) as tmp:
        tokenizer.save(tmp)
    return _sha256_file(path)


def tokenizer_path(directory) -> Path | None:
    """The path of ``tokenizer.json`` in ``directory``, or None when none was saved.  Load it
    with ``tinygradlm.data.load_tokenizer(path)``."""
    path = Path(directory) / TOKENIZER_NAME
    return path if path.is_file() else None


# --- pretrained models ----------------------------------------------------------------------
def _write_model_files(model, directory: Path, tokenizer) -> dict:
    """Write model.npz, tokenizer.json and config.json; return {file name: sha256}.
    Every byte is prepared before the first file is touched, so a model that cannot be saved
    (non-finite weights, a config JSON cannot hold) leaves the directory as it was."""
    config_bytes = _json_bytes(_config_dict(model))
    weights_bytes = _npz_bytes(_weights_to_arrays(model, directory / WEIGHTS_NAME),
                               directory / WEIGHTS_NAME)
    directory.mkdir(parents=True, exist_ok=True)
    digests = {WEIGHTS_NAME: _atomic_write_bytes(directory / WEIGHTS_NAME, weights_bytes)}
    if tokenizer is not None:
        digests[TOKENIZER_NAME] = _save_tokenizer(tokenizer, directory)
    # config.json last: a directory whose very first save was interrupted has no config.json
    # and fails to load with "not found" instead of loading half of something.
    digests[CONFIG_NAME] = _atomic_write_bytes(directory / CONFIG_NAME, config_bytes)
    return digests


def save_pretrained(model, directory, tokenizer=None) -> Path:
    """Save ``model`` (its ``.config`` dataclass and ``state_dict()``) to ``directory``, which is
    created if needed, as ``config.json``, ``model.npz`` and, when given, ``tokenizer.json``
    (written by ``tokenizer.save(path)``).  Returns the directory as a Path.

    Tied weights are stored once (see ``ALIASES_KEY``).  Each file is replaced atomically; a
    crash between two files can leave a new ``model.npz`` beside an old ``config.json`` (loads
    that do not fit raise ``CheckpointError``; training checkpoints also catch those that do).
    A parameter with NaN or inf values raises ``CheckpointError`` and nothing is written."""
    directory = Path(directory)
    _write_model_files(model, directory, tokenizer)
    return directory


def _saved_float_dtype(arrays: dict):
    """The one floating dtype of a file's weights, or None when they have none or several."""
    dtypes = {a.dtype for a in arrays.values() if a.dtype.kind == "f"}
    return dtypes.pop() if len(dtypes) == 1 else None


def load_pretrained(model_cls, config_cls, directory, device: str | None = None, dtype=None):
    """Build ``model_cls(config_cls(**fields of config.json))``, load ``model.npz`` into it, move
    it to ``device`` (None: the default device, see ``set_default_device``; the saved arrays are
    always host arrays) and return it **in eval mode** (dropout off), as Hugging Face's
    ``from_pretrained`` does: call ``.train()`` to fine-tune.  The tokenizer is not loaded: see
    ``tokenizer_path``.

    The model gets the floating dtype the weights were saved in (a float64 model comes back
    float64, not rounded to the float32 a fresh model starts in); pass ``dtype`` (e.g.
    ``"float32"``) to cast instead.

    Raises FileNotFoundError (naming the path) when the directory or a file is missing, and
    CheckpointError (naming the file) when a file is corrupt, was saved from another model
    class, has keys the config class does not know, or holds weights that do not fit the model
    built from the config (every mismatched key with both shapes) or are not finite."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    fields = _parse_json(_read_file(config_path, "the model's configuration"), config_path)
    _check_model_type(fields, model_cls.__name__, config_path)
    fields = {k: v for k, v in fields.items() if k != "model_type"}
    config = _config_from_dict(config_cls, fields, config_path)
    arrays = _parse_npz(_read_file(weights_path, "the model's weights"), weights_path)
    model = model_cls(config)
    target = np.dtype(dtype) if dtype is not None else _saved_float_dtype(arrays)
    if target is not None:
        model.to(target)                # before loading, so no saved value is rounded
    _load_weights(model, arrays, weights_path)
    return (model if device is None else model.to(device)).eval()


# --- training checkpoints -------------------------------------------------------------------
def _all_params(optimizer) -> list:
    """The optimizer's parameters in the order its ``state_dict`` numbers them."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def _split_optimizer_state(optimizer) -> tuple[dict, dict]:
    """``optimizer.state_dict()`` split into (arrays for optimizer.npz, the JSON rest).

    Arrays (anything with a ``shape``, as ``Optimizer.state_dict`` decides) are flattened to
    keys ``state.{index}.{name}``; numbers such as Adam's ``step`` stay in JSON, where a Python
    int stays an int (so the bias correction ``1 - beta ** step`` is bit-for-bit the same)."""
    sd = optimizer.state_dict()
    arrays, scalars = OrderedDict(), {}
    for index, entries in sd["state"].items():
        for name, value in entries.items():
            if hasattr(value, "shape"):
                arrays[f"state.{index}.{name}"] = backend.to_numpy(value)
            else:
                scalars.setdefault(str(index), {})[name] = value
    rest = {
        "type": type(optimizer).__name__,
        "param_groups": sd["param_groups"],
        "state": scalars,
        # Shapes of the parameters, in order: a model/optimizer that differs from the saved one
        # is caught with a clear message instead of failing later inside an update.
        "param_shapes": [list(p.shape) for p in _all_params(optimizer)],
    }
    return arrays, rest


def save_checkpoint(directory, model, optimizer, meta: dict, tokenizer=None) -> Path:
    """Save everything needed to resume training exactly: the pretrained files (config.json,
    model.npz, tokenizer.json when given), ``optimizer.npz`` (the optimizer's arrays, keys
    ``state.{index}.{name}``) and, last, ``trainer.json``::

        {"format_version": 1,
         "meta": {...},                      # yours: iter_num, best_val_loss, config, RNG state
         "optimizer": {"type": "AdamW", "param_groups": [...], "state": {"0": {"step": 3}},
                       "param_shapes": [[16, 8], ...]},      # or null without an optimizer
         "files": {"model.npz": "<sha256>", ...}}            # checked by load_checkpoint

    ``meta`` must be JSON-able (NumPy scalars are converted; dict keys become strings and tuples
    lists, as JSON has nothing else).  ``capture_rng_state()`` gives the random-number state in
    that form.  Returns the directory as a Path.  Nothing is written if ``meta``, the weights or
    the optimizer state cannot be stored.  Files this save does not write (a tokenizer.json
    from an earlier save when ``tokenizer`` is None) are left alone and not listed.

    The directory is updated in place: a crash part-way leaves a checkpoint that
    ``load_checkpoint`` refuses rather than one that resumes wrongly.  To always keep a
    loadable one, save alternately into two directories (or into a new one each time)."""
    directory = Path(directory)
    # Serialise first what might be refused (meta JSON cannot hold, object arrays), so an
    # error here leaves the directory untouched rather than half rewritten.
    _json_bytes(meta)
    optimizer_bytes, optimizer_rest = None, None
    if optimizer is not None:
        arrays, optimizer_rest = _split_optimizer_state(optimizer)
        optimizer_bytes = _npz_bytes(arrays, directory / OPTIMIZER_NAME)
        _json_bytes(optimizer_rest)
    digests = _write_model_files(model, directory, tokenizer)
    if optimizer_bytes is not None:
        digests[OPTIMIZER_NAME] = _atomic_write_bytes(directory / OPTIMIZER_NAME, optimizer_bytes)
    trainer = {"format_version": FORMAT_VERSION, "meta": meta, "optimizer": optimizer_rest,
               "files": digests}
    # The commit point: until this rename, a reader sees the previous trainer.json, whose
    # checksums no longer match the files just replaced, and refuses to load.
    _atomic_write_bytes(directory / TRAINER_NAME, _json_bytes(trainer))
    return directory


def _read_checked(directory: Path, name: str, digests: dict) -> bytes:
    """The bytes of a file listed in trainer.json, after checking its sha256."""
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint in {directory} is inconsistent (partially written "
                              f"or files removed): trainer.json lists {name}, which is missing")
    data = path.read_bytes()            # hash exactly the bytes we go on to parse
    if hashlib.sha256(data).hexdigest() != digests[name]:
        raise CheckpointError(f"checkpoint in {directory} is inconsistent (partially written, "
                              f"or files from different saves): {name} does not match the "
                              f"sha256 recorded in trainer.json")
    return data


def _restore_optimizer_state(optimizer, rest: dict, arrays: dict, path: Path) -> dict:
    """Rebuild ``optimizer.state_dict()`` from trainer.json's part and optimizer.npz, checking
    that it was saved from the same kind of optimizer over parameters of the same shapes."""
    name = type(optimizer).__name__
    if rest.get("type") != name:
        raise CheckpointError(f"{path} was saved from a {rest.get('type')!r} optimizer, but you "
                              f"are loading it into {name!r}")
    params = _all_params(optimizer)
    shapes = [list(p.shape) for p in params]
    saved_shapes = rest["param_shapes"]
    if saved_shapes != shapes:
        if len(saved_shapes) != len(shapes):
            detail = f"{len(saved_shapes)} parameters saved, {len(shapes)} in the optimizer"
        else:
            detail = "; ".join(f"parameter {i}: saved {tuple(a)}, optimizer {tuple(b)}"
                               for i, (a, b) in enumerate(zip(saved_shapes, shapes)) if a != b)
        raise CheckpointError(f"{path} does not fit this optimizer's parameters: {detail}")
    state = {int(i): dict(entries) for i, entries in rest["state"].items()}
    for key, array in arrays.items():
        prefix, index, entry = (key.split(".", 2) + ["", ""])[:3]
        if prefix != "state" or not index.isdigit() or not entry or int(index) >= len(params):
            raise CheckpointError(f"{path}: unexpected array {key!r}")
        state.setdefault(int(index), {})[entry] = array
    # JSON turned tuples (Adam's betas) into lists; give them back their type.
    groups = []
    for saved, current in zip(rest["param_groups"], optimizer.param_groups):
        groups.append({k: (tuple(v) if isinstance(v, list) and isinstance(current.get(k), tuple)
                           else v) for k, v in saved.items()})
    groups += rest["param_groups"][len(groups):]        # a count mismatch is reported below
    return {"state": dict(sorted(state.items())), "param_groups": groups}


def load_checkpoint(directory, model, optimizer=None) -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``model`` (and ``optimizer``, when
    given), in place, and return the ``meta`` dict that was saved.  The model keeps its mode
    and device; optimizer arrays go onto each parameter's device.

    Every file's sha256 is checked against trainer.json first, and everything is parsed and
    checked before the model is changed.  Raises FileNotFoundError when the directory or
    trainer.json is missing, CheckpointError when the checkpoint is corrupt, inconsistent
    (partially written), or does not fit the model or the optimizer."""
    directory = Path(directory)
    trainer_path = directory / TRAINER_NAME
    trainer = _parse_json(_read_file(trainer_path, "the training state; a directory written by "
                                     "save_pretrained loads with load_pretrained"), trainer_path)
    if (not isinstance(trainer, dict) or not {"meta", "optimizer", "files"} <= set(trainer)
            or not isinstance(trainer["files"], dict)):
        raise CheckpointError(f"{trainer_path} is not a tinygradlm training checkpoint (it "
                              f"needs the keys format_version, meta, optimizer and files)")
    if trainer.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{trainer_path} has format version "
                              f"{trainer.get('format_version')!r}; this tinygradlm reads "
                              f"version {FORMAT_VERSION}")
    digests = trainer["files"]
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if name not in digests:
            raise CheckpointError(f"{trainer_path} does not list {name}")
    # Check every listed file (tokenizer.json included) before using any of them.
    contents = {name: _read_checked(directory, name, digests) for name in digests}

    config_path = directory / CONFIG_NAME
    _check_model_type(_parse_json(contents[CONFIG_NAME], config_path), type(model).__name__,
                      config_path)
    weights_path = directory / WEIGHTS_NAME
    weights = _parse_npz(contents[WEIGHTS_NAME], weights_path)

    optimizer_state = None
    if optimizer is not None:
        optimizer_path = directory / OPTIMIZER_NAME
        if trainer.get("optimizer") is None or OPTIMIZER_NAME not in digests:
            raise CheckpointError(f"checkpoint in {directory} was saved without an optimizer")
        arrays = _parse_npz(contents[OPTIMIZER_NAME], optimizer_path)
        try:
            optimizer_state = _restore_optimizer_state(optimizer, trainer["optimizer"], arrays,
                                                       optimizer_path)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:   # a hand-edited file
            raise CheckpointError(f"the optimizer part of {trainer_path} is malformed "
                                  f"({type(exc).__name__}: {exc})") from None

    _load_weights(model, weights, weights_path)
    if optimizer_state is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise CheckpointError(f"{directory / OPTIMIZER_NAME} does not fit the optimizer: "
                                  f"{exc}") from None
    return trainer["meta"]


# --- random-number state, for exact resume ------------------------------------------------
def capture_rng_state() -> dict:
    """Every CPU random source tinygradlm seeds (its own generator, NumPy's global one and
    Python's ``random``), as JSON-able data for ``meta``.  CuPy's generator is not included."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "tinygradlm": backend.get_rng_state(),      # PCG64: large Python ints, JSON holds them
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "python": [py_version, list(py_internal), py_gauss],
    }


def restore_rng_state(state: dict) -> None:
    """Undo ``capture_rng_state``: put every random source back where it was (JSON turned the
    tuples into lists; the generators want tuples and a uint32 array back)."""
    backend.set_rng_state(state["tinygradlm"])
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss,
                         np_gauss))
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
