"""Training: one loop, one file per objective.

    loop.py       TrainConfig and ``fit``, the flat loop every objective runs
    gpt.py        next-token pretraining of a GPT            (examples/train_char_lm.py)
    mlm.py        masked-LM pretraining of a BERT encoder     (examples/train_mlm.py)
    finetune.py   fine-tuning a classifier on labelled text   (examples/finetune_classifier.py)
    learning_curve.py   pretrained vs from scratch over label budgets and seeds (--compare_scratch)
    seq2seq.py    an encoder-decoder on (source, target) pairs  (examples/train_seq2seq.py)
"""
from .finetune import FinetuneConfig, finetune_and_compare, finetune_classifier, pretrained_body
from .gpt import train_gpt
from .loop import TrainConfig, fit, plot_loss_curve
from .mlm import MLMConfig, train_mlm
from .seq2seq import Seq2SeqConfig, train_seq2seq

__all__ = ["TrainConfig", "fit", "plot_loss_curve", "train_gpt", "MLMConfig", "train_mlm",
           "FinetuneConfig", "finetune_classifier", "finetune_and_compare", "pretrained_body",
           "Seq2SeqConfig", "train_seq2seq"]
