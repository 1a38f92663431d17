"""Saving and loading models and training state: safetensors + JSON, atomic writes, clear errors.

Two kinds of directory, the second a superset of the first::

    save_pretrained(model, "out/")            save_checkpoint("out/", model, optimizer, meta)
    ------------------------------            -----------------------------------------------
    config.json        model_type + config    the three files on the left, plus
    model.safetensors  the weights            optimizer.safetensors  the optimizer's arrays
    tokenizer.json     (if one was given)     trainer.json           numbers, meta and the
                                                                     sha256 of every other
                                                                     file, written LAST

Why these formats
    *No pickle.*  ``pickle.load`` runs code chosen by whoever wrote the file.  Arrays go into
    safetensors files (a JSON header with each array's name, dtype, shape and byte range, then
    the raw bytes): the format of the Hugging Face Hub, readable without running any code from
    the file, and memory-mappable.  Everything else is JSON, readable in any editor.

    *Atomic writes.*  Every file goes through ``files.atomic_path`` (a temporary file, fsync,
    rename): a reader sees the old file or the new one, never half of one.

    *Consistent training checkpoints.*  No file system renames several files at once, so
    ``trainer.json`` is written last and records the sha256 of every other file;
    ``load_checkpoint`` checks them.  A crash mid-save therefore never resumes silently from new
    weights with old optimizer moments: the load raises ``CheckpointError`` ("inconsistent").

    *Always one complete state.*  A directory *can* be renamed at once: ``save_state`` writes
    each training state into a hidden directory and renames it to ``iter-NNNNNNNN`` when it is
    complete, keeping the previous one; ``latest_state`` finds the newest complete one.

Tied weights (a GPT's ``lm_head.weight`` IS ``transformer.wte.weight``) are stored once, under
their first name, as Hugging Face does; the model's construction ties them again on load.
Arrays go through the host, so a model on ``"cuda"`` saves and loads the same way.
``safetensors`` is imported only when used, so ``import tinygradlm`` needs NumPy alone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from . import backend
from .config import check_types
from .creation import skip_init
from .files import (atomic_path, atomic_write, json_bytes, read_json, restore_non_finite,
                    write_json)

__all__ = ["CheckpointError", "save_pretrained", "load_pretrained", "tokenizer_path",
           "save_checkpoint", "load_checkpoint", "verify_checkpoint", "save_state",
           "latest_state"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.json"
OPTIMIZER_NAME = "optimizer.safetensors"
TRAINER_NAME = "trainer.json"


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used: corrupt, truncated, inconsistent, or not
    matching the model or optimizer it is loaded into.  The message names the file."""


# --- reading and writing files ----------------------------------------------------------------
def _read_json(path: Path, what: str):
    """The JSON in ``path`` (holding ``what``); missing or corrupt files raise errors naming it."""
    try:
        return read_json(path, what)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def _read_arrays(path: Path, data: bytes | None = None) -> dict:
    """The safetensors arrays in ``path`` (parsed from ``data``, its bytes already read, when
    given); missing or corrupt files raise errors naming it."""
    import inspect

    from safetensors import SafetensorError
    from safetensors.numpy import load, load_file
    if data is None and not path.is_file():
        raise FileNotFoundError(f"no {path.name} in {path.parent}: expected {path}")
    try:
        if data is not None:
            return load(data)
        if "backend" in inspect.signature(load_file).parameters:   # safetensors >= 0.8
            # read, not memory-mapped: the mapped pages would double the peak memory
            return load_file(path, backend="pread")
        return load_file(path)
    except SafetensorError as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({exc}); re-save or "
                              f"re-download it") from None
    except TypeError as exc:            # a dtype NumPy does not have
        if "bfloat16" not in str(exc):
            raise
        return _read_bfloat16(path, data)


_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
                       "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
                       "U8": np.uint8, "BOOL": np.bool_}


def _read_bfloat16(path: Path, data: bytes | None = None) -> dict:
    """A safetensors file holding bfloat16 arrays, which NumPy cannot represent: each becomes
    float32, exactly (bfloat16 is float32's upper 16 bits).  The format is simple: 8 bytes of
    header length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw bytes."""
    raw = path.read_bytes() if data is None else data
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    body = memoryview(raw)[8 + n:]
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            halves = np.frombuffer(body[begin:end], dtype="<u2").astype(np.uint32)
            array = (halves << 16).view(np.float32)
        elif info["dtype"] in _SAFETENSORS_DTYPES:
            array = np.frombuffer(body[begin:end], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
        else:
            raise CheckpointError(f"{path}: {name!r} has dtype {info['dtype']}, which cannot "
                                  f"be read here")
        arrays[name] = array.reshape(info["shape"]).copy()
    return arrays


def _safetensors_bytes(arrays: dict) -> bytes:
    """C order: safetensors copies raw memory, so a transposed view would be stored scrambled."""
    from safetensors.numpy import save
    return save({k: np.asarray(backend.to_numpy(v), order="C") for k, v in arrays.items()})


def _check_type(saved, expected: str, path: Path, what: str = "model") -> None:
    saved = saved.get("model_type") if isinstance(saved, dict) else saved    # a config's
    if saved != expected:
        raise CheckpointError(f"{path} was saved from a {saved!r} {what}, but you are loading "
                              f"it into {expected!r}")


def _retuple(value, target):
    """JSON has no tuples: ``value`` becomes a tuple again where ``target`` (the value it
    replaces, or a field's annotation: a string under ``from __future__``) is or names one."""
    name = str(getattr(target, "__name__", target)).lower()
    is_tuple = isinstance(target, tuple) or name.startswith(("tuple", "typing.tuple"))
    return tuple(value) if isinstance(value, list) and is_tuple else value


# --- weights ----------------------------------------------------------------------------------
def _first_names(state: dict) -> dict:
    """Each name -> the first name of its array: a tied weight is one array under two names."""
    first = {}
    return {name: first.setdefault(id(tensor.data), name) for name, tensor in state.items()}


def _load_weights(model, arrays: dict, path: Path, assign: bool = False) -> None:
    """Check the arrays against ``model`` and copy them in (``assign``: hand them over, for a
    model built just to receive them); a refused file leaves the model as it was
    (``load_state_dict`` checks everything before changing anything)."""
    own, arrays = model.state_dict(), dict(arrays)
    kinds = {"f": "floating point", "i": "integer", "u": "integer", "b": "boolean"}
    for name, first in _first_names(own).items():
        if name not in arrays and first in arrays:          # a tied weight, stored once
            arrays[name] = arrays[first]
        a, b = (arrays[name].dtype if name in arrays else None), own[name].dtype
        if a is not None and kinds.get(a.kind, a) != kinds.get(b.kind, b):
            raise CheckpointError(f"{path}: {name!r} is {a} in the file but {b} in the model "
                                  f"({kinds.get(a.kind, a)} vs {kinds.get(b.kind, b)})")
    try:
        model.load_state_dict(arrays, assign=assign)
    except (KeyError, ValueError) as exc:   # args[0]: KeyError's str() adds quotes
        raise CheckpointError(f"{path} does not fit the model (was config.json edited, or "
                              f"saved from another model?): {exc.args[0]}") from None


# --- pretrained models ------------------------------------------------------------------------
def save_pretrained(model, directory, tokenizer=None) -> Path:
    """Save ``model.config`` (a dataclass) and ``model.state_dict()`` into ``directory``, with
    ``tokenizer.json`` when given (written by ``tokenizer.save(path)``).  Returns the directory."""
    directory = Path(directory)
    # Both prepared before the first file is touched: a model that cannot be saved changes nothing.
    config = json_bytes({"model_type": type(model).__name__, **dataclasses.asdict(model.config)})
    state = model.state_dict()
    weights = _safetensors_bytes({name: state[name].data
                                  for name, first in _first_names(state).items() if name == first})
    atomic_write(directory / WEIGHTS_NAME, weights)
    if tokenizer is not None:
        with atomic_path(directory / TOKENIZER_NAME) as tmp:
            tokenizer.save(tmp)
    # config.json last: an interrupted first save fails to load with "not found".
    atomic_write(directory / CONFIG_NAME, config)
    return directory


def tokenizer_path(directory) -> Path | None:
    """The path of ``tokenizer.json`` in ``directory``, or None when none was saved.  Load it
    with ``tinygradlm.data.load_tokenizer(path)``."""
    path = Path(directory) / TOKENIZER_NAME
    return path if path.is_file() else None


def load_pretrained(model_cls, config_cls, directory, device: str | None = None, dtype=None):
    """Build ``model_cls(config_cls(**config.json))``, load ``model.safetensors`` into it, move
    it to ``device`` (None: the default device) and return it **in eval mode**, as Hugging
    Face's ``from_pretrained`` does (call ``.train()`` to fine-tune).

    The model gets the floating dtype its weights were saved in (float64 stays float64) unless
    ``dtype`` asks for another.  A missing, corrupt or unfitting file raises an error naming it."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    fields = _read_json(config_path, "the model's configuration")
    _check_type(fields, model_cls.__name__, config_path)
    # Unknown keys are refused; init=False fields are left to __post_init__.
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(fields) - set(known) - {"model_type"})
    if unknown:
        raise CheckpointError(f"{config_path} has keys that {config_cls.__name__} does not know: "
                              f"{', '.join(unknown)} (its fields are {', '.join(known)})")
    try:
        check_types(config_cls, fields)         # a hand-edited "n_layer": "4"
        config = config_cls(**{k: _retuple(v, known[k].type) for k, v in fields.items()
                               if k in known and known[k].init})
    except (TypeError, ValueError) as exc:  # e.g. a field without a default is missing
        raise CheckpointError(f"cannot build {config_cls.__name__} from {config_path}: "
                              f"{exc}") from None
    arrays = _read_arrays(weights_path)
    with skip_init():                   # every weight is loaded right below: draw none
        model = model_cls(config)
    floats = {a.dtype for a in arrays.values() if a.dtype.kind == "f"}
    target = dtype if dtype is not None else (floats.pop() if len(floats) == 1 else None)
    if target is not None:
        model.to(np.dtype(target))      # before loading, so no saved value is rounded
    _load_weights(model, arrays, weights_path, assign=True)
    return (model if device is None else model.to(device)).eval()


# --- training checkpoints ---------------------------------------------------------------------
def save_checkpoint(directory, model, optimizer, meta: dict, tokenizer=None) -> Path:
    """Save everything needed to resume training exactly: the pretrained files, the optimizer's
    arrays in ``optimizer.safetensors`` and, last, ``trainer.json``::

        {"meta": {...},            # yours: iter_num, best score, backend.get_rng_state(), ...
         "optimizer": {"type": "AdamW", "param_groups": [...], "state": {"0": {"step": 3}}},
                                                           # or null without an optimizer
         "files": {"model.safetensors": "<sha256>", ...}}     # checked by load_checkpoint

    ``meta`` must be JSON-able (NumPy scalars are converted), or nothing is written.  A crash
    part-way leaves a checkpoint that ``load_checkpoint`` refuses, never one that resumes wrongly
    (``save_state`` keeps the previous one until the new one is complete)."""
    directory = Path(directory)
    rest, optimizer_bytes = None, None
    if optimizer is not None:
        # Arrays as state.{index}.{name}; numbers such as Adam's ``step`` stay in JSON, where an
        # int stays an int (so ``1 - beta ** step`` is bit for bit the same after a resume).
        sd = optimizer.state_dict()
        optimizer_bytes = _safetensors_bytes({f"state.{i}.{k}": v for i, s in sd["state"].items()
                                              for k, v in s.items() if hasattr(v, "shape")})
        rest = {"type": type(optimizer).__name__, "param_groups": sd["param_groups"],
                "state": {str(i): {k: v for k, v in s.items() if not hasattr(v, "shape")}
                          for i, s in sd["state"].items()}}
    json_bytes({"meta": meta, "optimizer": rest})   # refuse what JSON cannot hold, up front
    save_pretrained(model, directory, tokenizer)
    names = [WEIGHTS_NAME, CONFIG_NAME] + [TOKENIZER_NAME] * (tokenizer is not None)
    if optimizer_bytes is not None:
        atomic_write(directory / OPTIMIZER_NAME, optimizer_bytes)
        names.append(OPTIMIZER_NAME)
    digests = {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in names}
    # The commit point: until this rename, a reader sees the previous trainer.json, whose
    # checksums no longer match the files just replaced, and refuses to load.
    write_json(directory / TRAINER_NAME, {"meta": meta, "optimizer": rest, "files": digests})
    return directory


def _optimizer_state(optimizer, rest: dict, arrays: dict, path: Path) -> dict:
    """The ``state_dict`` for ``optimizer`` from trainer.json's part and ``arrays``, checked
    against its parameters (a message now, not an error inside an update later)."""
    _check_type(rest["type"], type(optimizer).__name__, path, "optimizer")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {int(i): dict(s) for i, s in rest["state"].items()}
    # In index order (a safetensors file keeps its own), so the first mismatch is reported.
    for key in sorted(arrays, key=lambda key: (int(key.split(".")[1]), key)):
        _, i, name = key.split(".", 2)
        i, array = int(i), arrays[key]
        if i < len(params) and array.shape != params[i].shape:  # a wrong count: load_state_dict
            raise CheckpointError(f"{path}: {key} has shape {array.shape}, but parameter {i} "
                                  f"of this optimizer has shape {params[i].shape} "
                                  f"(another model, or its parameters in another order?)")
        state.setdefault(i, {})[name] = array
    groups = [{k: _retuple(v, g.get(k)) for k, v in saved.items()}
              for saved, g in zip(rest["param_groups"], optimizer.param_groups)]
    return {"state": state, "param_groups": groups + rest["param_groups"][len(groups):]}


def verify_checkpoint(directory) -> tuple[dict, dict]:
    """(trainer.json's content, {file name: bytes}) of the checkpoint in ``directory``, every
    file checked against the sha256 recorded for it; CheckpointError when one is missing or
    differs (a save that never finished, or files mixed from different saves)."""
    directory = Path(directory)
    trainer_path = directory / TRAINER_NAME
    trainer = _read_json(trainer_path, "the training state (a directory written by "
                                       "save_pretrained has none: use load_pretrained)")
    digests = trainer.get("files") if isinstance(trainer, dict) else None
    if not isinstance(digests, dict) or not {CONFIG_NAME, WEIGHTS_NAME} <= digests.keys():
        raise CheckpointError(f"{trainer_path} is not a tinygradlm training checkpoint (its "
                              f"'files' must list {CONFIG_NAME} and {WEIGHTS_NAME})")
    contents = {}                       # hash exactly the bytes that are parsed later
    for name in digests:
        path = directory / name
        data = contents[name] = path.read_bytes() if path.is_file() else None
        if data is None or hashlib.sha256(data).hexdigest() != digests[name]:
            problem = (f"{TRAINER_NAME} lists {name}, which is missing" if data is None else
                       f"{name} does not match the sha256 recorded in {TRAINER_NAME}")
            raise CheckpointError(f"checkpoint in {directory} is inconsistent (partially "
                                  f"written, or files removed or from different saves): {problem}")
    return trainer, contents


def load_checkpoint(directory, model, optimizer=None) -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``model`` (and ``optimizer``), in
    place, and return the saved ``meta``; the model keeps its mode and device.  Every file is
    checked against its sha256 and parsed before the model changes: CheckpointError otherwise."""
    directory = Path(directory)
    trainer_path = directory / TRAINER_NAME
    trainer, contents = verify_checkpoint(directory)
    digests = trainer["files"]
    _check_type(json.loads(contents[CONFIG_NAME]), type(model).__name__, directory / CONFIG_NAME)
    weights = _read_arrays(directory / WEIGHTS_NAME, contents[WEIGHTS_NAME])
    state = None
    if optimizer is not None:
        path = directory / OPTIMIZER_NAME
        if trainer.get("optimizer") is None or OPTIMIZER_NAME not in digests:
            raise CheckpointError(f"checkpoint in {directory} was saved without an optimizer")
        arrays = _read_arrays(path, contents[OPTIMIZER_NAME])
        try:
            state = _optimizer_state(optimizer, trainer["optimizer"], arrays, path)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:     # a hand-edited file
            raise CheckpointError(f"the optimizer part of {trainer_path} is malformed "
                                  f"({type(exc).__name__}: {exc})") from None
    _load_weights(model, weights, directory / WEIGHTS_NAME)
    if state is not None:
        try:
            optimizer.load_state_dict(state)
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise CheckpointError(f"{directory / OPTIMIZER_NAME} does not fit the optimizer: "
                                  f"{exc}") from None
    # JSON has no inf or NaN: they were stored as null with a note (files.finite); put back.
    return restore_non_finite(trainer.get("meta"))


# --- a series of training states, one always complete -------------------------------------------
STATE_PREFIX = "iter-"


def _fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a power cut cannot undo it).  Windows
    cannot open a directory for this; its renames are made durable by the file system."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    """Remove a state directory: renamed to a hidden name first (one atomic step), so a crash
    part-way through the removal leaves a hidden leftover, never a half-deleted state."""
    hidden = path.parent / f".old-{path.name}-{secrets.token_hex(4)}"
    os.replace(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def state_dirs(root) -> list[Path]:
    """The state directories in ``root``, newest (highest iteration) first."""
    root = Path(root)
    found = [p for p in root.glob(STATE_PREFIX + "*") if p.is_dir()
             and p.name[len(STATE_PREFIX):].isdigit()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[len(STATE_PREFIX):]), reverse=True)


def remove_leftovers(root) -> list[str]:
    """Delete what a crash left in ``root``: unfinished saves (``.tmp-*``), half-removed old
    states (``.old-*``) and temporary files of interrupted atomic writes.  Returns their names."""
    root = Path(root)
    gone = []
    if root.is_dir():
        for path in root.iterdir():
            name = path.name
            if path.is_dir() and name.startswith((".tmp-", ".old-")):
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file() and name.startswith(".") and ".tmp" in name:
                path.unlink(missing_ok=True)
            else:
                continue
            gone.append(name)
    return gone


def save_state(root, iteration: int, model, optimizer, meta: dict, tokenizer=None,
               keep: int = 2) -> Path:
    """``save_checkpoint`` into ``root/iter-{iteration}`` without ever touching a complete state.

    The checkpoint is written into a hidden ``root/.tmp-*`` directory, made durable, and only
    then renamed to its name in one atomic step; after that the oldest states beyond ``keep``
    are removed.  A crash, a kill, Ctrl-C or a full disk at any moment therefore leaves every
    earlier state as it was (the unfinished one is hidden, and removed by ``remove_leftovers``).
    Returns the new state's directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{STATE_PREFIX}{iteration:08d}"
    tmp = root / f".tmp-{final.name}-{secrets.token_hex(4)}"
    try:
        save_checkpoint(tmp, model, optimizer, meta, tokenizer)
        _fsync_dir(tmp)
        if final.exists():                  # the same iteration again: newer facts (see fit)
            _discard(final)
        os.replace(tmp, final)              # the commit point
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in state_dirs(root)[keep:]:
        _discard(old)
    return final


def latest_state(root) -> tuple[Path, dict, list[str]]:
    """The newest complete state in ``root``: (its directory, its trainer.json, what was
    skipped and why).  Every candidate's files are checked against their sha256, newest first;
    FileNotFoundError when ``root`` holds no state, CheckpointError when none is complete."""
    skipped = []
    for path in state_dirs(root):
        try:
            trainer, _ = verify_checkpoint(path)
            return path, trainer, skipped
        except (CheckpointError, OSError) as exc:
            skipped.append(f"{path.name}: {exc}")
    if skipped:
        raise CheckpointError(f"no complete training state in {root}: " + "; ".join(skipped))
    raise FileNotFoundError(f"no training state in {str(root)!r}")
