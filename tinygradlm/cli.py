"""Command-line flags from a config dataclass, shared by the example scripts.

Every field of the dataclass becomes a ``--field`` flag of its type with its default, so a
config and its command line can never drift apart.  Both ``--x=1`` and ``--x 1`` work; a
boolean flag alone means true (``--resume``), and ``--bias=False`` / ``--bias false`` turn one
off.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

HELP = {
    "data": "'stdlib' (default, no download), 'shakespeare', or a path to a text file",
    "tokenizer": "'char' or 'bpe' for GPT; 'wordpiece' or 'bpe' for the encoder",
    "vocab_size": "subword vocabulary size (ignored by the char tokenizer)",
    "gradient_accumulation_steps": "micro-batches summed into one update",
    "grad_clip": "clip the global gradient norm to this (0: off)",
    "eval_interval": "evaluate, log and checkpoint every this many iterations",
    "eval_iters": "batches per split in each evaluation",
    "resume": "continue the run saved in --out_dir",
    "progress": "show the progress bar",
    "device": "'cpu' or 'cuda' (needs CuPy)",
    "mlm_probability": "share of tokens to hide and predict",
}


def str2bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if text.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def config_from_args(config_cls, doc: str, argv=None, help_text: dict | None = None):
    """Parse ``argv`` into ``config_cls`` (a dataclass); ``doc`` is the script's docstring."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    helps = {**HELP, **(help_text or {})}
    for field in dataclasses.fields(config_cls):
        kind = {"int": int, "float": float, "str": str, "bool": bool}.get(field.type,
                                                                          field.type)
        default = (field.default if field.default is not dataclasses.MISSING
                   else field.default_factory())
        if kind is bool:
            parser.add_argument(f"--{field.name}", type=str2bool, nargs="?", const=True,
                                default=default, help=helps.get(field.name, " "))
        else:
            parser.add_argument(f"--{field.name}", type=kind, default=default,
                                help=helps.get(field.name, " "))
    return config_cls(**vars(parser.parse_args(argv)))


def run_cli(main, cfg):
    """Check the flags, then run ``main(cfg)``.  The errors a user causes and fixes from the
    command line -- a bad flag, a missing or unreadable file, a checkpoint that does not fit,
    no usable GPU -- print as one line; anything else is a bug and keeps its traceback.
    Ctrl-C exits with 130 (after the training loop has saved its state)."""
    from .backend import DeviceUnavailableError
    from .checkpoint import CheckpointError
    from .files import InputError
    try:
        cfg.validate()
    except (ValueError, DeviceUnavailableError) as e:
        sys.exit(f"error: {e}")
    try:
        return main(cfg)
    except KeyboardInterrupt:
        sys.exit(130)
    except (OSError, InputError, CheckpointError, DeviceUnavailableError) as e:
        sys.exit(f"error: {e}")
