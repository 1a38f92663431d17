"""Fine-tune a pretrained body to classify text, and show what pretraining buys.

    python examples/finetune_classifier.py --compare_scratch   # the learning curve, see below
    python examples/finetune_classifier.py --data reviews.csv --text_column review

The built-in task needs no download: which standard-library package (asyncio, email, http,
importlib, logging, multiprocessing, unittest, xml) does a function's source come from?  The
split is by file, so the test functions come from files never seen in fine-tuning.

The body comes from ``--init_from``.  The default, ``out-pretrained``, is pretrained first when
it holds no model (about 5 minutes): a GPT on the embedded corpus without the task's validation
and test files (``--pretrain_objective mlm`` for a BERT-style encoder).  Any other directory
must hold a model -- one saved by this project (``--init_from out-mlm`` for the encoder of
``examples/train_mlm.py``), a Hugging Face BERT or GPT-2 -- or get ``--pretrain_if_missing``.
The script fine-tunes the body on the whole training set and reports test accuracy, macro-F1
and the confusion matrix.  ``--compare_scratch`` adds the learning curve: the pretrained body
and the same architecture from random weights, on the same class-balanced subsets of the
training set (``--budgets``, ``--seeds``), with mean ± std over seeds as a table,
``summary.json["curve"]`` and ``learning_curve.png``.  Every field of
``tinygradlm.train.FinetuneConfig`` is a flag.
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
