"""Command-line flags from a config dataclass, shared by the example scripts.

Every field of the dataclass becomes a ``--field`` flag of its type with its default, help
and accepted range (``config.flag``), so a config and its command line can never drift apart.  Both ``--x=1`` and ``--x 1`` work; a
boolean flag alone means true (``--resume``), and ``--bias=False`` / ``--bias false`` turn one
off.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from .config import metadata, range_text


def str2bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if text.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def config_from_args(config_cls, doc: str, argv=None):
    """Parse ``argv`` into ``config_cls`` (a dataclass whose fields carry their help, see
    ``config.flag``); ``doc`` is the script's docstring: its first line heads ``--help``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for field in dataclasses.fields(config_cls):
        meta = metadata(config_cls, field.name)
        kind = {"int": int, "float": float, "str": str, "bool": bool}.get(field.type,
                                                                          field.type)
        default = (field.default if field.default is not dataclasses.MISSING
                   else field.default_factory())
        accepted = range_text(meta) or ("true or false" if kind is bool else "")
        help_text = meta.get("help", field.name.replace("_", " ")).replace("%", "%%")
        # repr, so a default string shows as one: '\n', '' (argparse adds nothing then).
        help_text += (f"; {accepted}" if accepted else "") + " (default: %(default)r)"
        if kind is bool:
            parser.add_argument(f"--{field.name}", type=str2bool, nargs="?", const=True,
                                default=default, help=help_text)
        else:
            parser.add_argument(f"--{field.name}", type=kind, default=default, help=help_text)
    return config_cls(**vars(parser.parse_args(argv)))


def run_cli(main, cfg):
    """Check the flags, then run ``main(cfg)``.  The errors a user causes and fixes from the
    command line -- a bad flag, a missing or unreadable file, a checkpoint that does not fit,
    no usable GPU -- print as one line; anything else is a bug and keeps its traceback.
    A run that diverges (FloatingPointError) says so in one line too.  Ctrl-C exits with 130
    (after the training loop has saved its state)."""
    from .backend import DeviceUnavailableError
    from .checkpoint import CheckpointError
    from .files import InputError
    try:
        cfg.validate()
    except (ValueError, OSError, DeviceUnavailableError) as e:
        sys.exit(f"error: {e}")
    try:
        return main(cfg)
    except KeyboardInterrupt:
        sys.exit(130)
    except (OSError, InputError, CheckpointError, DeviceUnavailableError,
            FloatingPointError) as e:
        sys.exit(f"error: {e}")
