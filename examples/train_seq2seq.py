"""Train an encoder-decoder Transformer to turn one text into another, and score it.

    python examples/train_seq2seq.py                        # code summarisation, no download
    python examples/train_seq2seq.py --data fra.tsv         # translation: source TAB target

The built-in task: read a standard-library function whose docstring has been removed, and
write the first sentence of that docstring.  The split is by file, so the test functions come
from files the model never saw.  ``--data`` takes any pairs file instead: ``.tsv`` / ``.txt``
with ``source<TAB>target`` per line (the format of Tatoeba / Anki exports, extra columns
ignored) or ``.jsonl`` with ``source`` and ``target``; it is split 80/10/10 into train, val
and test.

The run trains with the flat loop of the other examples (progress bar, ``log.jsonl``,
``loss.png``, atomic checkpoints, exact ``--resume``, Ctrl-C saves), then writes the test
outputs of the model best on val with greedy decoding and with beam search (``--num_beams``)
and scores them with corpus BLEU and chrF (both sacreBLEU's) and exact match, next to a simple
baseline's scores, in ``summary.json``.  Every field of ``tinygradlm.train.Seq2SeqConfig`` is a
flag.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tinygradlm.cli import config_from_args, run_cli  # noqa: E402
from tinygradlm.train import Seq2SeqConfig, train_seq2seq  # noqa: E402


def parse_args(argv=None) -> Seq2SeqConfig:
    return config_from_args(Seq2SeqConfig, __doc__, argv)


if __name__ == "__main__":
    run_cli(train_seq2seq, parse_args())
