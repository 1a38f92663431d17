"""Autoregressive (next-token) pretraining of a GPT: ``python examples/train_char_lm.py``.

    text ─> tokenizer ─> ids ─> random (B, T) windows x and the same windows shifted by one y
         ─> GPT(x) ─> cross-entropy against y, averaged over every position
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import backend, data, files, metrics
from ..autograd import no_grad
from ..nn.gpt import GPT, GPTConfig
from .loop import (TrainConfig, finished_summary, fit, language_model, model_shape, speed,
                   speed_text, start_run, write_summary)


def prepare_data(cfg: TrainConfig, tokenizer=None, exclude_files=()):
    """Corpus -> tokenizer (built here unless given) -> (tokenizer, train ids, val ids)."""
    text = data.load_corpus(cfg.data, exclude_files=exclude_files)
    if tokenizer is None:
        tokenizer = (data.CharTokenizer.from_text(text) if cfg.tokenizer == "char"
                     else data.SubwordTokenizer.train(text, cfg.vocab_size))
    ids = data.encode_corpus(tokenizer, text)
    train_ids, val_ids = data.train_val_split(ids, 0.9)
    need = cfg.block_size + 1
    for name, split in (("training", train_ids), ("validation", val_ids)):
        if len(split) < need:
            raise files.InputError(f"the corpus {cfg.data!r} is too short: its {name} split has "
                                   f"{len(split)} tokens but one batch row needs block_size + 1 = "
                                   f"{need}; use more text or a smaller --block_size")
    return tokenizer, train_ids, val_ids


@no_grad()
def estimate_loss(model, splits: dict, cfg: TrainConfig) -> dict:
    """Mean loss over ``eval_iters`` batches of each split.  The batches come from a generator
    seeded afresh each time, so every evaluation scores the same text (curves are less noisy)
    and training's random stream is left untouched (which keeps --resume exact)."""
    out = {}
    for name, ids in splits.items():
        gen = np.random.default_rng(cfg.seed + 1)
        losses = []
        for _ in range(cfg.eval_iters):
            x, y = data.get_batch(ids, cfg.batch_size, cfg.block_size, cfg.device, gen)
            losses.append(model(x, y)[1].item())
        out[f"{name}_loss"] = float(np.mean(losses))
    return out


def train_gpt(cfg: TrainConfig, tokenizer=None, exclude_files=()) -> dict:
    """Train (or, with ``cfg.resume``, continue training) a GPT on next-token prediction;
    returns the summary that is also written to ``out_dir/summary.json``.
    ``tokenizer``: use this one instead of building ``cfg.tokenizer`` (e.g. one with the
    special tokens fine-tuning needs); ``exclude_files``: stdlib files to leave out."""
    cfg.validate()
    resume = start_run(cfg)
    if (done := finished_summary(cfg, resume)) is not None:
        return done
    t_start = time.perf_counter()
    backend.manual_seed(cfg.seed)
    tokenizer, train_ids, val_ids = prepare_data(cfg, resume.tokenizer if resume else tokenizer,
                                                 exclude_files)
    model, optimizer, tokens_per_iter = language_model(
        cfg, GPT(GPTConfig(**model_shape(cfg, tokenizer))), train_ids)

    def next_loss():
        x, y = data.get_batch(train_ids, cfg.batch_size, cfg.block_size, cfg.device)
        return model(x, y)[1]

    splits = {"train": train_ids, "val": val_ids}
    run = fit(cfg, model, optimizer, next_loss, lambda: estimate_loss(model, splits, cfg),
              tokenizer, tokens_per_iter, resume=resume)

    last = run["last"]
    val_loss = last["val_loss"] if last else float("nan")
    n_chars = len(tokenizer.decode(val_ids[:100_000].tolist()))
    bpc = metrics.bits_per_char(val_loss, min(len(val_ids), 100_000), n_chars)
    ms, tokens_per_second = speed(run, tokens_per_iter)
    samples = sample_texts(model, tokenizer, cfg)
    summary = {
        "val_loss": val_loss, "best_val_loss": run["best_score"],
        "train_loss": last["train_loss"] if last else run["train_loss"],
        "last_batch_loss": run["train_loss"], "iters": run["iters"], "ms_per_iter": ms,
        "tokens_per_second": tokens_per_second,
        "wall_seconds": time.perf_counter() - t_start,
        "perplexity": metrics.perplexity(val_loss), "bits_per_char": bpc,
        "num_params": model.num_params(), "vocab_size": tokenizer.vocab_size,
        "config": dataclasses.asdict(cfg), "samples": samples,
    }
    plotted = write_summary(cfg, summary, run)
    print(f"\nval loss {val_loss:.4f} | perplexity {summary['perplexity']:.2f} | "
          f"{bpc:.3f} bits per character | {speed_text(ms, tokens_per_second)}")
    for i, text in enumerate(samples):
        print(f"\n--- sample {i + 1} ---\n{text}")
    print(f"\nsaved the best model to {cfg.out_dir}/ (summary.json, log.jsonl"
          f"{', loss.png' if plotted else ''})")
    return summary


def sample_texts(model, tokenizer, cfg: TrainConfig) -> list:
    """A few samples from a newline prompt (or the first token when there is none)."""
    if cfg.num_samples < 1:
        return []
    try:
        prompt = tokenizer.encode("\n")[:1] or [0]
    except ValueError:
        prompt = [0]
    out = model.generate([prompt], max_new_tokens=cfg.sample_tokens,
                         num_return_sequences=cfg.num_samples, do_sample=True, top_k=0)
    return [tokenizer.decode(row[1:]) for row in out.numpy().tolist()]
