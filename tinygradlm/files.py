"""Writing files so that a crash never leaves half of one.

Every file a later run reads back (checkpoints, tokenizers, summaries, the Tiny Shakespeare
download, benchmark results) is written through ``atomic_path``: the bytes go to a temporary
file in the same directory, are flushed to the disk (``fsync``), and the file is renamed onto
its real name with ``os.replace``.  A rename within one file system is atomic, so a reader
sees the old file or the new one, never a mixture; if anything fails (Ctrl-C included) the
temporary file is removed and the old file is left as it was.  (A process killed outright can leave a hidden ``.name.*.tmp``
file behind; nothing reads it.)
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from pathlib import Path

import numpy as np


class InputError(ValueError):
    """Something the user gave cannot be used: a malformed data file, a corpus too short for
    the block size, a flag that does not fit the model.  The command-line scripts print it as
    one line, without a traceback (a plain ValueError is a bug and keeps its traceback)."""


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path`` to write to; when the block ends without an
    error, the file is fsync-ed and renamed onto ``path``.  Creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory: os.replace is atomic only within one file system.  The real suffix is
    # kept last, for tools that insist on one (a tokenizer's save).  Created with os.open's
    # default mode, so the file gets the usual permissions (0o666 minus the umask).
    tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield str(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def _json_default(obj):
    """NumPy scalars become Python numbers; anything else JSON cannot hold is refused."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store a value of type {type(obj).__name__} ({obj!r:.60}) in JSON; "
                    f"only numbers, strings, booleans, None, lists and dicts (convert arrays "
                    f"with .tolist(), dataclasses with dataclasses.asdict)")


def finite(obj):
    """``obj`` with every NaN or infinite number replaced by None (JSON has neither; most
    parsers refuse Python's ``NaN``).  A dict that held one gains ``"non_finite"``, saying what
    was there -- ``{"val_loss": null, "non_finite": {"val_loss": "nan"}}`` -- so the reason
    is not lost with the value."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        out = {k: finite(v) for k, v in obj.items()}
        bad = {k: str(_scalar(v)) for k, v in obj.items()
               if isinstance(_scalar(v), float) and not math.isfinite(_scalar(v))}
        if bad:
            out["non_finite"] = {**out.get("non_finite", {}), **bad}
        return out
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def restore_non_finite(obj):
    """The inverse of ``finite`` for values read back from JSON: every dict's ``non_finite``
    notes become its numbers again (nan, inf).  A non-finite number inside a list has no key
    to note it under and stays None."""
    if isinstance(obj, list):
        return [restore_non_finite(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    notes = obj.get("non_finite", {}) if isinstance(obj.get("non_finite"), dict) else {}
    out = {k: restore_non_finite(v) for k, v in obj.items() if k != "non_finite" or not notes}
    return {**out, **{k: float(v) for k, v in notes.items()}}


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def json_bytes(obj) -> bytes:
    """Pretty JSON a student can read in any editor.  Floats are written with ``repr`` (they
    read back exactly); NaN and infinities become null with a note (see ``finite``)."""
    return (json.dumps(finite(obj), indent=2, allow_nan=False, default=_json_default)
            + "\n").encode("utf-8")


def write_json(path, obj) -> Path:
    """Write ``obj`` as pretty JSON to ``path`` atomically; an unstorable value is refused
    before anything is written."""
    return atomic_write(path, json_bytes(obj))


def read_json(path, what: str = "JSON file"):
    """Parse the JSON file at ``path``; a missing or unreadable file raises an error that
    names it (FileNotFoundError, or ValueError for a corrupt one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {str(path)!r}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON ({exc}); the file is "
                         f"corrupt or was not written by tinygradlm") from None


def check_writable_dir(path, flag: str = "--out_dir") -> None:
    """Create the directory ``path`` if needed and prove a file can be written in it, so a run
    fails at once -- not after an hour of training -- when it could never save its results.
    InputError naming the flag and the path otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {str(path)!r} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test.{secrets.token_hex(4)}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{flag} {str(path)!r} cannot be written to: "
                         f"{exc.strerror or exc}") from None
