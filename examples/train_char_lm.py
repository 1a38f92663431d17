"""Train a small GPT on text, on the CPU, in a few minutes: the project's main job.

    python examples/train_char_lm.py                       # the embedded corpus (Python's stdlib)
    python examples/train_char_lm.py --data shakespeare    # Tiny Shakespeare (downloaded once)
    python examples/train_char_lm.py --data my.txt --tokenizer bpe --vocab_size 1024
    python examples/train_char_lm.py --max_iters=4000 --resume  # continue a run

Flags have nanoGPT's names and accept both ``--x=1`` and ``--x 1``; every field of
``tinygradlm.train.TrainConfig`` is a flag.  Ctrl-C saves the training state before exiting.
"""
import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tinygradlm.train import TrainConfig, train_gpt  # noqa: E402

HELP = {
    "data": "'stdlib' (default, no download), 'shakespeare', or a path to a text file",
    "tokenizer": "'char' or 'bpe' (a byte-level BPE trained on the corpus)",
    "vocab_size": "BPE vocabulary size (--tokenizer bpe)",
    "gradient_accumulation_steps": "micro-batches summed into one update",
    "grad_clip": "clip the global gradient norm to this (0: off)",
    "eval_interval": "evaluate, log and checkpoint every this many iterations",
    "eval_iters": "batches per split in each evaluation",
    "resume": "continue the run saved in --out_dir",
    "progress": "show the progress bar",
    "device": "'cpu' or 'cuda' (needs CuPy)",
}


def str2bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if text.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def parse_args(argv=None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for field in dataclasses.fields(TrainConfig):
        help_text = HELP.get(field.name, " ")
        if field.type in ("bool", bool):
            # --resume alone means true; --resume=False / --resume false also work.
            parser.add_argument(f"--{field.name}", type=str2bool, nargs="?", const=True,
                                default=field.default, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}.get(field.type, field.type)
            parser.add_argument(f"--{field.name}", type=kind, default=field.default,
                                help=help_text)
    return TrainConfig(**vars(parser.parse_args(argv)))


def main(argv=None):
    cfg = parse_args(argv)
    try:
        train_gpt(cfg)
    except KeyboardInterrupt:
        sys.exit(130)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
