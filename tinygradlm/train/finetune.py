"""Fine-tuning a sequence classifier on labelled text: ``python examples/finetune_classifier.py``.

    a pretrained body (GPT or BERT) + a new linear head ─> train on (text, label) pairs
    ─> keep the checkpoint most accurate on val ─> accuracy, macro-F1, confusion matrix on test

With ``--compare_scratch`` the same architecture is also trained from random weights, and both
at several label budgets and seeds (``learning_curve.py``): the difference is what pretraining
bought, and where.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from .. import backend, checkpoint, data, files, hub, metrics
from ..autograd import no_grad
from ..nn.classifier import BODIES, SequenceClassifier
from ..config import flag
from ..huggingface import hf_model_type
from . import learning_curve
from .gpt import train_gpt
from .loop import TrainConfig, finished_summary, fit, start_run, write_summary
from .mlm import MLMConfig, train_mlm


# Where the pretrained body lives unless --init_from says otherwise.  It is pretrained there
# when empty; any other directory must hold a model (a mistyped path is an error, never an
# unannounced pretraining) unless --pretrain_if_missing says to make one.
DEFAULT_BODY = "out-pretrained"


@dataclass
class FinetuneConfig(TrainConfig):
    TOKENIZERS = data.SUBWORD_MODELS       # for --pretrain_if_missing
    RESUME_MUST_MATCH = TrainConfig.RESUME_MUST_MATCH + (
        "init_from", "text_column", "label_column", "max_per_class", "pooling", "max_length",
        "freeze_layers", "freeze_body")
    data: str = flag("stdlib", "'stdlib' (the built-in task: which package is this function "
                     "from?) or a CSV / TSV / JSONL file of text + label")
    text_column: str = flag("text", "the text's column in a CSV / TSV / JSONL file")
    label_column: str = flag("label", "the label's column in a CSV / TSV / JSONL file")
    max_per_class: int = flag(600, "examples per class in the stdlib task", at_least=1)
    init_from: str = flag(DEFAULT_BODY, "directory of a pretrained BERT or GPT (the default "
                          "one is pretrained first when it holds none), a Hugging Face BERT "
                          "or GPT-2 checkpoint, or a downloaded Hub name")
    pretrain_if_missing: bool = flag(False, "another --init_from with no model in it (or an "
                                     "unfinished run): pretrain one there first (~5 min)")
    pretrain_iters: int = flag(1500, "iterations of that pretraining", at_least=1)
    # Measured at this budget, the masked-LM encoder is still near its unigram plateau and
    # fine-tunes no better than random weights, while next-token pretraining, where every
    # token is a target, does.
    pretrain_objective: str = flag("causal", "when pretraining first: 'causal' (GPT) or "
                                   "'mlm' (BERT encoder)", choices=("causal", "mlm"))
    tokenizer: str = flag("bpe", "when pretraining first: 'bpe' or 'wordpiece'")
    vocab_size: int = 4096
    # Measured on the built-in task (README, "Does pretraining pay?"): mean pooling beats the
    # last token of a GPT body by 5-9 macro-F1 points at 5% of the labels.
    pooling: str = flag("mean", "'mean', 'cls' or 'last'; '' = the body's natural choice "
                        "('cls' for BERT, 'last' for GPT)", choices=("", "cls", "mean", "last"))
    freeze_layers: int = flag(-1, "-1 trains everything; k freezes the embeddings and the "
                              "first k blocks", at_least=-1)
    freeze_body: bool = flag(False, "train only the classification head")
    body_lr_scale: float = flag(1.0, "the body's learning rate relative to the head's",
                                at_least=0)
    max_length: int = flag(128, "longest input in tokens (longer ones are cut)", at_least=3)
    batch_size: int = 32
    # The whole model, head and body, at 3e-3: at 5e-4 the new head barely moves in the few
    # iterations of a small budget, and a body held at a tenth of the head's rate gained less.
    # Random weights do better at 1e-3 (at 3e-3 some seeds stay at the majority class).
    learning_rate: float = 3e-3
    min_lr: float = 3e-4
    scratch_learning_rate: float = flag(1e-3, "--compare_scratch: the peak learning rate of "
                                        "the arm from random weights (--min_lr scales with "
                                        "it)", above=0)
    warmup_iters: int = 30
    max_iters: int = 300
    lr_decay_iters: int = 300
    weight_decay: float = 0.01
    beta2: float = 0.999
    dropout: float = 0.1
    eval_interval: int = 150
    compare_scratch: bool = flag(False, "the learning curve: fine-tune the pretrained body and "
                                 "the same architecture from random weights on the same "
                                 "class-balanced subsets at each --budgets, --seeds times")
    budgets: str = flag("0.02,0.05,0.1,0.25,1", "label budgets of the curve: fractions of the "
                        "training set, increasing")
    seeds: int = flag(3, "seeds per label budget (each its own subset and initialisation)",
                      at_least=1)
    min_iters: int = flag(40, "fewest fine-tuning iterations at a small budget (a budget b "
                          "trains max(min_iters, b * max_iters))", at_least=1)
    out_dir: str = "out-finetune"

    def check_relations(self):
        super().check_relations()
        learning_curve.parse_budgets(self.budgets)
        if os.path.realpath(self.init_from) == os.path.realpath(self.out_dir):
            raise ValueError(f"--init_from and --out_dir are the same directory "
                             f"({self.out_dir!r}): fine-tuning would overwrite the pretrained "
                             f"model; choose another --out_dir")


def load_labelled(cfg: FinetuneConfig):
    if cfg.data == "stdlib":
        return data.stdlib_function_dataset(max_per_class=cfg.max_per_class, seed=cfg.seed)
    return data.labelled_from_file(cfg.data, seed=cfg.seed, text_column=cfg.text_column,
                                   label_column=cfg.label_column)


def pretrained_body(cfg: FinetuneConfig, task=None) -> str:
    """The directory of the pretrained body.  When it holds no model, or a pretraining run
    that never finished: an error (or a warning) that says how to make one -- or, in the
    default ``out-pretrained`` or with ``--pretrain_if_missing``, a pretraining run first
    (resumed where it stopped), on the stdlib corpus without ``task``'s val and test files,
    so that fine-tuning is evaluated on source the body has never read."""
    pretrain = cfg.pretrain_if_missing or cfg.init_from == DEFAULT_BODY
    if not os.path.exists(cfg.init_from) and not pretrain:
        try:            # a Hub name ("bert-base-uncased") in the local Hugging Face cache
            return str(hub.resolve(cfg.init_from, local_files_only=True))
        except (hub.ModelNotFoundError, files.InputError):
            pass        # not one we have: the error below says how to make or get a model
    has_model = os.path.exists(os.path.join(cfg.init_from, "config.json"))
    states = checkpoint.state_dirs(os.path.join(cfg.init_from, "resume"))
    unfinished = bool(states) and not os.path.exists(os.path.join(cfg.init_from,
                                                                  "summary.json"))
    if has_model and not unfinished:
        return cfg.init_from
    if not pretrain:
        if has_model:
            print(f"warning: {cfg.init_from!r} holds a pretraining run that never finished "
                  f"(no summary.json); fine-tuning its best model so far. Add "
                  f"--pretrain_if_missing to finish the pretraining first", file=sys.stderr)
            return cfg.init_from
        raise FileNotFoundError(
            f"--init_from {cfg.init_from!r} holds no pretrained model (no config.json). "
            f"Add --pretrain_if_missing to pretrain one there first ({cfg.pretrain_objective} "
            f"objective, {cfg.pretrain_iters} iterations: about 5 minutes on 2 CPU cores), "
            f"or point --init_from at an encoder saved by examples/train_mlm.py (its tokenizer "
            f"has the [PAD]/[CLS]/[SEP] tokens fine-tuning needs), at a Hugging Face BERT or "
            f"GPT-2 directory, or at a Hub name you have downloaded (huggingface-cli download "
            f"NAME)")
    held_out = getattr(task, "held_out_files", ())
    print(f"{'continuing the unfinished' if states else 'no pretrained model in'} "
          f"{cfg.init_from!r}: pretraining ({cfg.pretrain_objective} objective) for "
          f"{cfg.pretrain_iters} iterations first")
    shape = dict(data="stdlib", out_dir=cfg.init_from, max_iters=cfg.pretrain_iters,
                 lr_decay_iters=cfg.pretrain_iters, resume=bool(states),
                 warmup_iters=min(TrainConfig.warmup_iters, cfg.pretrain_iters),
                 n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                 block_size=cfg.max_length, bias=cfg.bias, seed=cfg.seed, device=cfg.device,
                 dtype=cfg.dtype, progress=cfg.progress, num_samples=0)
    if cfg.pretrain_objective == "causal":
        tokenizer = None                # resumed: the run's own tokenizer
        if not states:                  # a subword tokenizer with the tokens fine-tuning needs
            text = data.load_corpus("stdlib", exclude_files=held_out)
            tokenizer = data.SubwordTokenizer.train(text, cfg.vocab_size, model=cfg.tokenizer,
                                                    special_tokens=data.BERT_SPECIAL_TOKENS)
        train_gpt(TrainConfig(**shape), tokenizer=tokenizer, exclude_files=held_out)
    else:
        train_mlm(MLMConfig(tokenizer=cfg.tokenizer, vocab_size=cfg.vocab_size, **shape),
                  exclude_files=held_out)
    return cfg.init_from


def warn_if_few(task) -> None:
    """A test split too small to measure anything gets a warning beside its accuracy."""
    n = len(task.test)
    if n < 50:
        print(f"warning: the test split has only {n} example(s); one example moves the "
              f"accuracy by {1 / max(n, 1):.0%}, so the accuracy below is mostly noise "
              f"(use more labelled data)", file=sys.stderr)


def classify(model, batches) -> tuple[float, np.ndarray, np.ndarray]:
    """(mean loss, true labels, predicted labels) over prepared batches, without gradients."""
    total, n, true, pred = 0.0, 0, [], []
    with no_grad():
        for ids, mask, labels in batches:
            logits, loss = model(ids, mask, labels)
            total += loss.item() * labels.shape[0]
            n += labels.shape[0]
            true.append(labels.numpy())
            pred.append(logits.numpy().argmax(-1))
    return total / n, np.concatenate(true), np.concatenate(pred)


def finetune_classifier(cfg: FinetuneConfig, task=None, tokenizer=None,
                        body_dir: str | None = None, scratch: bool = False) -> dict:
    """Fine-tune a sequence classifier on ``task`` (a ``data.LabelledData``; built from
    ``cfg.data`` when None) starting from the pretrained body in ``body_dir`` -- or from
    random weights of the same shape when ``scratch``.  Evaluates the checkpoint most accurate
    on val on the held-out test split."""
    cfg.validate()
    resume = start_run(cfg)
    if (done := finished_summary(cfg, resume)) is not None:
        return done
    t_start = time.perf_counter()
    backend.manual_seed(cfg.seed)
    task = load_labelled(cfg) if task is None else task
    warn_if_few(task)
    body_dir = pretrained_body(cfg, task) if body_dir is None else body_dir
    if resume is not None:
        tokenizer = resume.tokenizer
    if tokenizer is None and hf_model_type(body_dir) is not None:
        tokenizer = data.load_tokenizer(body_dir)   # a Hugging Face GPT-2 or BERT tokenizer
    if tokenizer is None:
        path = checkpoint.tokenizer_path(body_dir)
        if path is None:
            raise FileNotFoundError(f"no tokenizer.json beside the pretrained model in "
                                    f"{body_dir!r}")
        tokenizer = data.load_tokenizer(path)
    if not isinstance(tokenizer, data.PretrainedTokenizer) and \
            data.PAD_TOKEN not in getattr(tokenizer, "special_tokens", ()):
        raise files.InputError(f"the tokenizer in {body_dir!r} has no [PAD]/[CLS]/[SEP] tokens; "
                               f"fine-tuning needs a model pretrained with a WordPiece or BPE "
                               f"tokenizer with special tokens (examples/train_mlm.py)")
    pooling = cfg.pooling or None
    model = SequenceClassifier.from_pretrained_body(body_dir, task.num_classes, pooling,
                                                    cfg.dropout, task.label_names, cfg.device)
    if len(tokenizer) > model.body.config.vocab_size:
        raise files.InputError(f"the tokenizer of {body_dir!r} has {len(tokenizer)} tokens, "
                               f"more than the model's vocab_size="
                               f"{model.body.config.vocab_size}")
    if scratch:     # same architecture and budget, random weights: what pretraining buys
        body_cls, body_cfg = BODIES[model.config.body_type]
        model = SequenceClassifier.from_body(body_cls(body_cfg(**model.config.body)),
                                             task.num_classes, pooling, cfg.dropout,
                                             task.label_names).to(cfg.device)
    model = model.to(cfg.dtype)
    if cfg.max_length > model.body.config.block_size:
        raise files.InputError(f"--max_length={cfg.max_length} is longer than the pretrained "
                               f"model's block_size={model.body.config.block_size}")
    # Freezing and a slower body are ways to keep what pretraining learned; a body of random
    # weights has nothing to keep, so the scratch arm trains every weight at the full rate.
    if cfg.freeze_body and not scratch:
        model.freeze_body()
    elif cfg.freeze_layers >= 0 and not scratch:
        model.freeze_body(cfg.freeze_layers)
    model.train()
    optimizer = model.configure_optimizers(
        cfg.weight_decay, cfg.learning_rate,
        cfg.learning_rate * (1.0 if scratch else cfg.body_lr_scale), (cfg.beta1, cfg.beta2))
    n_train = len(task.train)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{'from scratch' if scratch else 'from ' + body_dir}: {task.num_classes} classes, "
          f"{n_train} / {len(task.val)} / {len(task.test)} train / val / test examples, "
          f"{trainable / 1e6:.2f}M trainable parameters")
    # Evaluation batches hold texts of similar length (order does not matter there): a batch
    # is padded to its longest row, and sorting cuts the padding by about a third.
    val_batches, test_batches = (list(data.classification_batches(
        sorted(split, key=lambda example: len(example[0])), tokenizer, cfg.batch_size,
        cfg.max_length, shuffle=False, device=cfg.device)) for split in (task.val, task.test))

    train_rows, train_labels = data.encode_labelled(task.train, tokenizer, cfg.max_length)
    pad_id = data.padding_id(tokenizer)

    def next_loss():
        # A random batch each step (not epochs): the random stream alone says where training
        # is, so --resume continues exactly.
        pick = backend.generator("cpu").choice(n_train, min(cfg.batch_size, n_train),
                                               replace=False)
        ids, mask, labels = data.labelled_batch(train_rows, train_labels, pick, pad_id,
                                                cfg.device)
        return model(ids, mask, labels)[1]

    def evaluate():
        loss, true, pred = classify(model, val_batches)
        accuracy = metrics.accuracy(true, pred)
        return {"val_loss": loss, "val_accuracy": accuracy, "val_error": 1.0 - accuracy}

    # The best model is the most *accurate* on val: a classifier's val loss starts rising
    # (over-confidence) long before its accuracy stops improving.
    run = fit(cfg, model, optimizer, next_loss, evaluate, tokenizer, select="val_error",
              resume=resume)
    best = SequenceClassifier.from_pretrained(cfg.out_dir, device=cfg.device)
    test_loss, true, pred = classify(best, test_batches)
    labels = list(range(task.num_classes))
    cm = metrics.confusion_matrix(true, pred, labels=labels)
    summary = {
        "test_accuracy": metrics.accuracy(true, pred),
        "test_f1_macro": metrics.f1_score(true, pred, average="macro", labels=labels),
        "test_loss": test_loss, "num_classes": task.num_classes,
        "label_names": task.label_names, "confusion_matrix": cm.tolist(),
        "best_val_accuracy": 1.0 - run["best_score"],
        "val_accuracy": run["last"]["val_accuracy"],
        "iters": run["iters"], "init": "scratch" if scratch else body_dir,
        "examples": {"train": n_train, "val": len(task.val), "test": len(task.test)},
        "train_sha256": learning_curve.examples_sha256(task.train),
        "wall_seconds": time.perf_counter() - t_start, "config": dataclasses.asdict(cfg),
    }
    write_summary(cfg, summary, run)
    print(f"\ntest accuracy {summary['test_accuracy']:.1%} | macro-F1 "
          f"{summary['test_f1_macro']:.3f} | {task.num_classes} classes "
          f"({'from scratch' if scratch else 'pretrained'})")
    print(metrics.format_confusion_matrix(cm, task.label_names))
    return summary


def finetune_and_compare(cfg: FinetuneConfig) -> dict:
    """``finetune_classifier`` from the pretrained body on the whole training set and, with
    ``cfg.compare_scratch``, the learning curve (``learning_curve.py``): both arms at every
    label budget and seed.  The top-level summary keys describe the full budget at
    ``cfg.seed`` (``scratch_test_accuracy`` etc. its from-scratch twin in
    ``out_dir/scratch``); ``curve`` holds one point per budget."""
    cfg.validate()
    task = load_labelled(cfg)
    body_dir = pretrained_body(cfg, task)
    summary = finetune_classifier(cfg, task, body_dir=body_dir)
    if not cfg.compare_scratch:
        return summary
    scratch_dir = learning_curve.run_dir(cfg, 1.0, cfg.seed, "scratch")
    scratch = finetune_classifier(
        learning_curve.budget_config(cfg, 1.0, cfg.seed, scratch_dir, "scratch"), task,
        body_dir=body_dir, scratch=True)
    summary.update({"scratch_test_accuracy": scratch["test_accuracy"],
                    "scratch_test_f1_macro": scratch["test_f1_macro"],
                    "scratch_test_loss": scratch["test_loss"]})
    print(f"\npretrained: accuracy {summary['test_accuracy']:.1%}, macro-F1 "
          f"{summary['test_f1_macro']:.3f} | from scratch: accuracy "
          f"{scratch['test_accuracy']:.1%}, macro-F1 {scratch['test_f1_macro']:.3f} "
          f"(the whole training set, seed {cfg.seed})")
    runs, curve = learning_curve.learning_curve(cfg, task, body_dir, finetune_classifier)
    return learning_curve.write_curve(cfg, summary, runs, curve)
