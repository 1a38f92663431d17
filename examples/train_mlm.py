"""Pretrain a BERT-style encoder with the masked-language-model objective.

    python examples/train_mlm.py                          # the embedded corpus (Python's stdlib)
    python examples/train_mlm.py --data my.txt --vocab_size 8192 --max_iters 3000

15% of the tokens are chosen (80% shown as [MASK], 10% as a random token, 10% unchanged) and
the encoder, which sees both sides of each blank, learns to restore them.  Same flags, progress
bar, log, checkpoints, --resume and Ctrl-C behaviour as train_char_lm.py; every field of
``tinygradlm.train.MLMConfig`` is a flag.  Reports masked-token accuracy and perplexity next to
a unigram baseline (guessing from token frequencies alone).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tinygradlm.cli import config_from_args, run_cli  # noqa: E402
from tinygradlm.train import MLMConfig, train_mlm  # noqa: E402


def parse_args(argv=None) -> MLMConfig:
    return config_from_args(MLMConfig, __doc__, argv)


if __name__ == "__main__":
    run_cli(train_mlm, parse_args())
