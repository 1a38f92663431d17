"""Masked-language-model pretraining of a BERT-style encoder: ``python examples/train_mlm.py``.

    text ─> subword tokenizer with [PAD] [UNK] [CLS] [SEP] [MASK] ─> rows [CLS] tokens [SEP]
         ─> hide 15% (80% [MASK], 10% a random token, 10% unchanged) ─> BERT
         ─> cross-entropy on the hidden positions only
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from .. import backend, data, files, metrics
from ..config import flag
from ..nn.bert import BERT, BERTConfig
from .loop import (TrainConfig, finished_summary, fit, language_model, model_shape, speed,
                   speed_text, start_run, write_summary)


@dataclass
class MLMConfig(TrainConfig):
    TOKENIZERS = data.SUBWORD_MODELS
    # Byte-level BPE is the default because tokenizers 0.23's WordPiece trainer is not
    # deterministic (huggingface/tokenizers#1794): the same seed would give another vocabulary.
    tokenizer: str = "bpe"
    vocab_size: int = 4096
    block_size: int = 128
    dropout: float = 0.1
    mlm_probability: float = flag(0.15, "share of tokens to hide and predict", above=0,
                                  below=1)
    max_iters: int = 1500
    lr_decay_iters: int = 1500
    out_dir: str = "out-mlm"

    def check_relations(self):
        super().check_relations()
        if self.block_size < 3:
            raise ValueError(f"--block_size must be at least 3 ([CLS] token [SEP]), got "
                             f"{self.block_size}")


def prepare_mlm_data(cfg: MLMConfig, tokenizer=None, exclude_files=()):
    """Corpus -> subword tokenizer with special tokens -> (tokenizer, train ids, val ids)."""
    text = data.load_corpus(cfg.data, exclude_files=exclude_files)
    if tokenizer is None:
        tokenizer = data.SubwordTokenizer.train(text, cfg.vocab_size, model=cfg.tokenizer,
                                                special_tokens=data.BERT_SPECIAL_TOKENS)
    ids = data.encode_corpus(tokenizer, text)
    train_ids, val_ids = data.train_val_split(ids, 0.9)
    for name, split in (("training", train_ids), ("validation", val_ids)):
        if len(split) < cfg.block_size - 2:
            raise files.InputError(f"the corpus {cfg.data!r} is too short: its {name} split has "
                                   f"{len(split)} tokens but one row needs block_size - 2 = "
                                   f"{cfg.block_size - 2}; use more text or a smaller --block_size")
    return tokenizer, train_ids, val_ids


def estimate_mlm(model, tokenizer, splits: dict, cfg: MLMConfig) -> dict:
    """Masked-token loss on each split and masked-token accuracy on val, over the same
    ``eval_iters`` batches every time (a generator seeded afresh)."""
    out = {}
    for name, ids in splits.items():
        gen = np.random.default_rng(cfg.seed + 1)
        losses, hits, count = [], 0, 0
        for _ in range(cfg.eval_iters):
            x, labels, mask = data.get_mlm_batch(ids, cfg.batch_size, cfg.block_size, tokenizer,
                                                 cfg.mlm_probability, cfg.device, gen)
            logits, loss = model(x, mask, labels)
            targets = labels.numpy()[labels.numpy() != data.IGNORE_INDEX]
            losses.append(loss.item() * len(targets))
            hits += int((logits.numpy().argmax(-1) == targets).sum())
            count += len(targets)
        out[f"{name}_loss"] = float(np.sum(losses) / max(count, 1))
        if name == "val":
            out["val_masked_accuracy"] = hits / max(count, 1)
    return out


def train_mlm(cfg: MLMConfig, exclude_files=()) -> dict:
    """Pretrain a BERT-style encoder with the masked-LM objective; returns the summary (also
    written to ``out_dir/summary.json``).  ``exclude_files``: stdlib files to leave out of the
    corpus (a downstream task's held-out files)."""
    cfg.validate()
    resume = start_run(cfg)
    if (done := finished_summary(cfg, resume)) is not None:
        return done
    t_start = time.perf_counter()
    backend.manual_seed(cfg.seed)
    tokenizer, train_ids, val_ids = prepare_mlm_data(cfg, resume.tokenizer if resume else None,
                                                     exclude_files)
    model, optimizer, tokens_per_iter = language_model(
        cfg, BERT(BERTConfig(**model_shape(cfg, tokenizer), pad_token_id=tokenizer.pad_token_id)),
        train_ids)

    def next_loss():
        x, labels, mask = data.get_mlm_batch(train_ids, cfg.batch_size, cfg.block_size,
                                             tokenizer, cfg.mlm_probability, cfg.device)
        return model(x, mask, labels)[1]

    splits = {"train": train_ids, "val": val_ids}
    run = fit(cfg, model, optimizer, next_loss,
              lambda: estimate_mlm(model, tokenizer, splits, cfg), tokenizer, tokens_per_iter,
              resume=resume)

    last = run["last"]
    # The baseline a model must beat: guess every masked token from word frequencies alone.
    gen = np.random.default_rng(cfg.seed + 1)
    _, labels, _ = data.get_mlm_batch(val_ids, cfg.batch_size * cfg.eval_iters, cfg.block_size,
                                      tokenizer, cfg.mlm_probability, "cpu", gen)
    baseline = data.unigram_baseline_loss(train_ids, labels.numpy(), tokenizer.vocab_size)
    ms, tokens_per_second = speed(run, tokens_per_iter)
    summary = {
        "val_loss": last["val_loss"], "best_val_loss": run["best_score"],
        "train_loss": last["train_loss"], "val_masked_accuracy": last["val_masked_accuracy"],
        "perplexity": metrics.perplexity(last["val_loss"]),
        "unigram_baseline_loss": baseline,
        "unigram_baseline_perplexity": metrics.perplexity(baseline),
        "iters": run["iters"], "ms_per_iter": ms, "tokens_per_second": tokens_per_second,
        "wall_seconds": time.perf_counter() - t_start, "num_params": model.num_params(),
        "vocab_size": tokenizer.vocab_size, "config": dataclasses.asdict(cfg),
    }
    write_summary(cfg, summary, run)
    print(f"\nmasked-token loss {summary['val_loss']:.4f} (perplexity "
          f"{summary['perplexity']:.1f}) | masked-token accuracy "
          f"{summary['val_masked_accuracy']:.1%} | unigram baseline loss {baseline:.4f} "
          f"(perplexity {summary['unigram_baseline_perplexity']:.1f}) | "
          f"{speed_text(ms, tokens_per_second)}")
    print(f"saved the best model to {cfg.out_dir}/")
    return summary
