"""Fine-tune a pretrained encoder to classify text, and evaluate it on held-out data.

    python examples/finetune_classifier.py --compare_scratch   # the built-in task, see below
    python examples/finetune_classifier.py --data reviews.csv --text_column review

The built-in task needs no download: which standard-library package (asyncio, email, http,
importlib, logging, multiprocessing, unittest, xml) does a function's source come from?  The
split is by file, so the test functions come from files never seen in fine-tuning.

If ``--init_from`` (default ``out-pretrained``) holds no pretrained model, one is pretrained
first on the embedded corpus without the task's validation and test files: a GPT
(``--pretrain_objective causal``, the default) or a BERT-style encoder (``mlm``).  To fine-tune
the encoder of ``examples/train_mlm.py`` instead, pass ``--init_from out-mlm``.  The script then
fine-tunes it, reports test accuracy, macro-F1 and the confusion matrix, and with
``--compare_scratch`` trains the same architecture from random weights with the same budget.
Every field of ``tinygradlm.train.FinetuneConfig`` is a flag.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tinygradlm.cli import config_from_args, run_cli  # noqa: E402
from tinygradlm.train import FinetuneConfig, finetune_and_compare  # noqa: E402


def parse_args(argv=None) -> FinetuneConfig:
    return config_from_args(FinetuneConfig, __doc__, argv)


if __name__ == "__main__":
    run_cli(finetune_and_compare, parse_args())
