"""Train a small GPT on text, on the CPU, in a few minutes: the project's main job.

    python examples/train_char_lm.py                       # the embedded corpus (Python's stdlib)
    python examples/train_char_lm.py --data shakespeare    # Tiny Shakespeare (downloaded once)
    python examples/train_char_lm.py --data my.txt --tokenizer bpe --vocab_size 1024
    python examples/train_char_lm.py --max_iters=4000 --resume  # continue a run

Flags have nanoGPT's names and accept both ``--x=1`` and ``--x 1``; every field of
``tinygradlm.train.TrainConfig`` is a flag.  Ctrl-C saves the training state before exiting.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tinygradlm.cli import config_from_args, run_cli  # noqa: E402
from tinygradlm.train import TrainConfig, train_gpt  # noqa: E402


def parse_args(argv=None) -> TrainConfig:
    return config_from_args(TrainConfig, __doc__, argv)


def main(argv=None):
    return run_cli(train_gpt, parse_args(argv))


if __name__ == "__main__":
    main()
