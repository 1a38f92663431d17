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

Tied weights (a GPT's ``lm_head.weight`` IS ``transformer.wte.weight``) are stored once, under
their first name, as Hugging Face does; the model's own construction ties them again on load.
Arrays are copied to the host before writing, so a model on ``"cuda"`` saves the same way;
``Module.load_state_dict`` / ``Optimizer.load_state_dict`` copy each value onto the device and
dtype of the tensor it goes into.  ``safetensors`` is imported only when a file is read or
written, so ``import tinygradlm`` needs NumPy alone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path

import numpy as np

from . import backend
from .files import atomic_path, atomic_write, json_bytes, read_json, write_json

__all__ = ["CheckpointError", "save_pretrained", "load_pretrained", "tokenizer_path",
           "save_checkpoint", "load_checkpoint", "write_json"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.json"
OPTIMIZER_NAME = "optimizer.safetensors"
TRAINER_NAME = "trainer.json"


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used: corrupt, truncated, inconsistent, or not
    matching the model or optimizer it is loaded into.  The message names the file."""


# --- reading files ----------------------------------------------------------------------------
def _read_json(path: Path, what: str):
    try:
        return read_json(path, what)        # a missing file: FileNotFoundError, as it is
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def _read_arrays(path: Path, data: bytes | None = None) -> dict:
    """The arrays of a safetensors file (from ``data`` when given, the bytes already read)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load, load_file
    if data is None and not path.is_file():
        raise FileNotFoundError(f"no {path.name} in {path.parent}: expected {path}")
    try:
        return load(data) if data is not None else load_file(path)
    except SafetensorError as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({exc}); re-save or "
                              f"re-download it") from None


def _safetensors_bytes(arrays: dict) -> bytes:
    """The bytes of a safetensors file of host arrays.  C order: safetensors copies raw memory,
    and would store a transposed view's bytes in the wrong order."""
    from safetensors.numpy import save
    return save({k: np.asarray(backend.to_numpy(v), order="C") for k, v in arrays.items()})


# --- configs ----------------------------------------------------------------------------------
def _check_model_type(fields, expected: str, path: Path) -> None:
    saved = fields.get("model_type") if isinstance(fields, dict) else None
    if saved != expected:
        raise CheckpointError(f"{path} was saved from a {saved!r} model, but you are loading "
                              f"it into {expected!r}")


def _is_tuple_type(tp) -> bool:
    """Whether a field is declared a tuple (also as a string, under ``from __future__``)."""
    name = tp if isinstance(tp, str) else getattr(typing.get_origin(tp) or tp, "__name__", "")
    return name.lower().startswith(("tuple", "typing.tuple"))


def _config_from_dict(config_cls, fields: dict, path: Path):
    """``config_cls(**fields)``: unknown keys are refused, lists become tuples again where the
    field is a tuple (JSON has none), and ``init=False`` fields are left to ``__post_init__``."""
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    fields = {k: v for k, v in fields.items() if k != "model_type"}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise CheckpointError(f"{path} has keys that {config_cls.__name__} does not know: "
                              f"{', '.join(unknown)} (its fields are {', '.join(known)})")
    kwargs = {k: tuple(v) if isinstance(v, list) and _is_tuple_type(known[k].type) else v
              for k, v in fields.items() if known[k].init}
    try:
        return config_cls(**kwargs)
    except TypeError as exc:            # e.g. a field without a default is missing
        raise CheckpointError(f"cannot build {config_cls.__name__} from {path}: {exc}") from None


# --- weights ----------------------------------------------------------------------------------
def _weights(model) -> dict:
    """The state's arrays, each tied tensor once, under its first name (``state_dict()``'s
    tensors share the module's arrays, so a tied weight is the same array under two names)."""
    first = {}
    for name, tensor in model.state_dict().items():
        first.setdefault(id(tensor.data), (name, tensor.data))
    return dict(first.values())


def _kind(dtype) -> str:
    return {"f": "floating point", "i": "integer", "u": "integer", "b": "boolean"}.get(
        dtype.kind, str(dtype))


def _load_weights(model, arrays: dict, path: Path) -> None:
    """Check the arrays of ``path`` against ``model`` and copy them in, in place; a refused
    file leaves the model as it was (``load_state_dict`` checks everything before copying)."""
    own, first = model.state_dict(), {}
    arrays = dict(arrays)
    for name, tensor in own.items():
        first.setdefault(id(tensor.data), name)
        if name not in arrays and first[id(tensor.data)] in arrays:    # a tied weight
            arrays[name] = arrays[first[id(tensor.data)]]
        if name in arrays and _kind(arrays[name].dtype) != _kind(tensor.dtype):
            raise CheckpointError(f"{path}: {name!r} is {arrays[name].dtype} in the file but "
                                  f"{tensor.dtype} in the model ({_kind(arrays[name].dtype)} "
                                  f"vs {_kind(tensor.dtype)})")
    try:
        model.load_state_dict(arrays)
    except (KeyError, ValueError) as exc:
        # args[0]: KeyError's str() adds quotes.  The message names every missing, unexpected
        # and mis-shaped entry, with both shapes.
        raise CheckpointError(f"{path} does not fit the model (was config.json edited, or "
                              f"saved from another model?): {exc.args[0]}") from None


# --- pretrained models ------------------------------------------------------------------------
def save_pretrained(model, directory, tokenizer=None) -> Path:
    """Save ``model`` (its ``.config`` dataclass and ``state_dict()``) into ``directory``
    (created if needed) as ``config.json``, ``model.safetensors`` and, when given,
    ``tokenizer.json`` (written by ``tokenizer.save(path)``).  Returns the directory."""
    directory = Path(directory)
    # Both prepared before the first file is touched: a model that cannot be saved leaves
    # the directory as it was.  (model.config must be a dataclass; asdict says so if not.)
    config = json_bytes({"model_type": type(model).__name__, **dataclasses.asdict(model.config)})
    weights = _safetensors_bytes(_weights(model))
    atomic_write(directory / WEIGHTS_NAME, weights)
    if tokenizer is not None:
        with atomic_path(directory / TOKENIZER_NAME) as tmp:
            tokenizer.save(tmp)
    # config.json last: a directory whose first save was interrupted has no config.json and
    # fails to load with "not found" instead of loading half of something.
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

    The model gets the floating dtype its weights were saved in (a float64 model comes back
    float64), unless ``dtype`` asks for another.  Raises FileNotFoundError naming a missing
    file, and CheckpointError naming the file when one is corrupt, was saved from another model
    class, or does not fit the model the config builds."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    fields = _read_json(config_path, "the model's configuration")
    _check_model_type(fields, model_cls.__name__, config_path)
    config = _config_from_dict(config_cls, fields, config_path)
    arrays = _read_arrays(weights_path)
    model = model_cls(config)
    floats = {a.dtype for a in arrays.values() if a.dtype.kind == "f"}
    target = dtype if dtype is not None else (floats.pop() if len(floats) == 1 else None)
    if target is not None:
        model.to(np.dtype(target))      # before loading, so no saved value is rounded
    _load_weights(model, arrays, weights_path)
    return (model if device is None else model.to(device)).eval()


# --- training checkpoints ---------------------------------------------------------------------
def _split_optimizer_state(optimizer) -> tuple[dict, dict]:
    """``optimizer.state_dict()`` as (its arrays, named ``state.{index}.{name}``; the JSON
    rest).  Numbers such as Adam's ``step`` stay in JSON, where an int stays an int (so the
    bias correction ``1 - beta ** step`` is bit for bit the same after a resume)."""
    sd = optimizer.state_dict()
    arrays = {f"state.{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items()
              if hasattr(v, "shape")}
    numbers = {str(i): {k: v for k, v in s.items() if not hasattr(v, "shape")}
               for i, s in sd["state"].items()}
    return arrays, {"type": type(optimizer).__name__, "param_groups": sd["param_groups"],
                    "state": numbers}


def _optimizer_state(optimizer, rest: dict, arrays: dict, path: Path) -> dict:
    """The ``state_dict`` for ``optimizer``, rebuilt from trainer.json's part and ``arrays``
    and checked against the optimizer's parameters (a message now, not an error inside an
    update later)."""
    if rest["type"] != type(optimizer).__name__:
        raise CheckpointError(f"{path} was saved from a {rest['type']!r} optimizer, but you "
                              f"are loading it into {type(optimizer).__name__!r}")
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
    # JSON turned tuples (Adam's betas) into lists; give them back their type.
    groups = [{k: tuple(v) if isinstance(v, list) and isinstance(g.get(k), tuple) else v
               for k, v in saved.items()}
              for saved, g in zip(rest["param_groups"], optimizer.param_groups)]
    return {"state": state, "param_groups": groups + rest["param_groups"][len(groups):]}


def save_checkpoint(directory, model, optimizer, meta: dict, tokenizer=None) -> Path:
    """Save everything needed to resume training exactly: the pretrained files, the optimizer's
    arrays in ``optimizer.safetensors`` and, last, ``trainer.json``::

        {"meta": {...},            # yours: iter_num, best score, backend.get_rng_state(), ...
         "optimizer": {"type": "AdamW", "param_groups": [...], "state": {"0": {"step": 3}}},
                                                           # or null without an optimizer
         "files": {"model.safetensors": "<sha256>", ...}}     # checked by load_checkpoint

    ``meta`` must be JSON-able (NumPy scalars are converted); if it is not, nothing is written.
    The directory is updated in place: a crash part-way leaves a checkpoint that
    ``load_checkpoint`` refuses rather than one that resumes wrongly (to always keep a loadable
    one, save alternately into two directories)."""
    directory = Path(directory)
    arrays, rest = _split_optimizer_state(optimizer) if optimizer is not None else (None, None)
    json_bytes({"meta": meta, "optimizer": rest})   # refuse what JSON cannot hold, up front
    optimizer_bytes = None if arrays is None else _safetensors_bytes(arrays)
    save_pretrained(model, directory, tokenizer)
    names = [WEIGHTS_NAME, CONFIG_NAME] + [TOKENIZER_NAME] * (tokenizer is not None)
    if optimizer_bytes is not None:
        atomic_write(directory / OPTIMIZER_NAME, optimizer_bytes)
        names.append(OPTIMIZER_NAME)
    digests = {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
               for name in names}
    # The commit point: until this rename, a reader sees the previous trainer.json, whose
    # checksums no longer match the files just replaced, and refuses to load.
    write_json(directory / TRAINER_NAME, {"meta": meta, "optimizer": rest, "files": digests})
    return directory


def _read_checked(directory: Path, name: str, digests: dict) -> bytes:
    """The bytes of a file listed in trainer.json, after checking its sha256."""
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint in {directory} is inconsistent (partially written "
                              f"or files removed): {TRAINER_NAME} lists {name}, which is missing")
    data = path.read_bytes()            # hash exactly the bytes we go on to parse
    if hashlib.sha256(data).hexdigest() != digests[name]:
        raise CheckpointError(f"checkpoint in {directory} is inconsistent (partially written, "
                              f"or files from different saves): {name} does not match the "
                              f"sha256 recorded in {TRAINER_NAME}")
    return data


def load_checkpoint(directory, model, optimizer=None) -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``model`` (and ``optimizer``), in
    place, and return the saved ``meta``.  The model keeps its mode and device.  Every file is
    checked against its sha256 and parsed before the model is changed.  Raises
    FileNotFoundError when trainer.json is missing, CheckpointError when the checkpoint is
    corrupt, inconsistent (partially written) or does not fit the model or optimizer."""
    directory = Path(directory)
    trainer_path = directory / TRAINER_NAME
    trainer = _read_json(trainer_path, "the training state (a directory written by "
                                       "save_pretrained has none: use load_pretrained)")
    digests = trainer.get("files") if isinstance(trainer, dict) else None
    if not isinstance(digests, dict) or not {CONFIG_NAME, WEIGHTS_NAME} <= digests.keys():
        raise CheckpointError(f"{trainer_path} is not a tinygradlm training checkpoint (it "
                              f"needs 'meta', 'optimizer' and 'files' listing {CONFIG_NAME} "
                              f"and {WEIGHTS_NAME})")
    contents = {name: _read_checked(directory, name, digests) for name in digests}
    _check_model_type(json.loads(contents[CONFIG_NAME]), type(model).__name__,
                      directory / CONFIG_NAME)
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
    return trainer.get("meta")
