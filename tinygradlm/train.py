"""Training loops.  ``train_gpt`` is autoregressive (next-token) pretraining of a GPT, written
as one flat, readable loop in the manner of nanoGPT's ``train.py``:

    for each iteration:
        lr <- warmup + cosine schedule
        for each micro-batch:  loss / accumulation_steps  .backward()    (gradient accumulation)
        clip the gradient norm to grad_clip;  AdamW step;  zero the gradients
        every eval_interval: mean train/val loss over eval_iters batches, log, checkpoint

What lands in ``out_dir``:

    config.json, model.npz, tokenizer.json   the best model so far (GPT.from_pretrained(out_dir))
    resume/                                  the latest full training state, for --resume
    log.jsonl                                one JSON line per evaluation
    loss.png                                 the loss curves (when matplotlib is installed)
    summary.json                             final numbers: losses, perplexity, speed, config
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import backend, checkpoint, data, metrics, optim
from .function import no_grad
from .nn.gpt import GPT, GPTConfig
from .tensor import get_default_device


@dataclass
class TrainConfig:
    # data
    data: str = "stdlib"          # "stdlib" (embedded), "shakespeare" (downloaded) or a path
    tokenizer: str = "char"       # "char" or "bpe"
    vocab_size: int = 512         # for --tokenizer bpe only (char uses the corpus' characters)
    # model (nanoGPT's CPU "baby GPT")
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    # optimisation
    batch_size: int = 12
    gradient_accumulation_steps: int = 1
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    decay_lr: bool = True
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0        # 0 turns clipping off
    # evaluation, logging, checkpoints
    eval_interval: int = 250
    eval_iters: int = 20
    out_dir: str = "out"
    resume: bool = False
    num_samples: int = 3          # samples printed at the end
    sample_tokens: int = 200
    progress: bool = True         # the tqdm progress bar
    # the rest
    seed: int = 1337
    # "cpu" or "cuda"; by default the default device: $TINYGRADLM_DEVICE, else "cpu"
    device: str = field(default_factory=get_default_device)
    dtype: str = "float32"

    def validate(self):
        positive = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters",
                    "gradient_accumulation_steps", "eval_interval", "eval_iters", "vocab_size")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"--n_embd={self.n_embd} must be divisible by --n_head={self.n_head}")
        backend.xp_for(backend.normalize_device(self.device))  # no GPU: say why before any work
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"--tokenizer must be 'char' or 'bpe', not {self.tokenizer!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"--dtype must be float32 or float64, not {self.dtype!r}")


def lr_at(it: int, cfg: TrainConfig) -> float:
    """The learning rate of iteration ``it``: warmup then cosine decay (or constant)."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    return optim.warmup_cosine_lr(it, cfg.learning_rate, cfg.min_lr, cfg.warmup_iters,
                                  cfg.lr_decay_iters)


@no_grad()
def estimate_loss(model, splits: dict, cfg: TrainConfig) -> dict:
    """Mean loss over ``eval_iters`` batches of each split, in eval mode (no dropout).

    The batches come from a generator seeded afresh each time, so every evaluation scores
    the same text (curves are less noisy) and training's random stream is left untouched
    (which keeps --resume exact)."""
    was_training = model.training
    model.eval()
    out = {}
    for name, ids in splits.items():
        gen = np.random.default_rng(cfg.seed + 1)
        losses = []
        for _ in range(cfg.eval_iters):
            x, y = data.get_batch(ids, cfg.batch_size, cfg.block_size, cfg.device, gen)
            _, loss = model(x, y)
            losses.append(loss.item())
        out[name] = float(np.mean(losses))
    model.train(was_training)
    return out


def prepare_data(cfg: TrainConfig, tokenizer=None, exclude_files=()):
    """Corpus -> tokenizer (built here unless given) -> (tokenizer, train ids, val ids)."""
    text = data.load_corpus(cfg.data, exclude_files=exclude_files)
    if tokenizer is None:
        if cfg.tokenizer == "char":
            tokenizer = data.CharTokenizer.from_text(text)
        else:
            tokenizer = data.BPETokenizer.train(text, cfg.vocab_size)
    ids = data.encode_corpus(tokenizer, text)
    train_ids, val_ids = data.train_val_split(ids, 0.9)
    need = cfg.block_size + 1
    for name, split in (("training", train_ids), ("validation", val_ids)):
        if len(split) < need:
            raise ValueError(f"the corpus {cfg.data!r} is too short: its {name} split has "
                             f"{len(split)} tokens but one batch row needs block_size + 1 = "
                             f"{need}; use more text or a smaller --block_size")
    return tokenizer, train_ids, val_ids


def resume_tokenizer(cfg: TrainConfig):
    """With --resume, the tokenizer saved with the run (so token ids mean what they meant)."""
    if not cfg.resume:
        return None
    resume_dir = os.path.join(cfg.out_dir, "resume")
    path = checkpoint.tokenizer_path(resume_dir)
    if path is None:
        raise FileNotFoundError(f"--resume: no training state in {resume_dir!r} (it is "
                                f"written at every evaluation); train without --resume "
                                f"first, or point --out_dir at the run to continue")
    return data.load_tokenizer(path)


def fit(cfg: TrainConfig, model, optimizer, next_loss, evaluate, tokenizer=None,
        tokens_per_iter: int = 0, select: str = "val_loss") -> dict:
    """The training loop shared by every objective (next-token, masked-LM, classification).

    next_loss():  draws one micro-batch and returns its mean loss (a Tensor);
    evaluate():   returns a dict of numbers, among them ``select`` (lower is better), which
                  picks the best model (the one saved to out_dir);
    Learning-rate schedule, gradient accumulation, clipping, the progress bar, the JSONL log,
    the best model, the resume state and Ctrl-C are all handled here, the same for all.
    Returns {"last": last evaluation, "best_score" (the lowest ``select`` seen), "iters",
    "step_times", "train_loss", ...}.
    """
    resume_dir = os.path.join(cfg.out_dir, "resume")
    iter_num, best_score = 0, math.inf
    if cfg.resume:
        meta = checkpoint.load_checkpoint(resume_dir, model, optimizer)
        iter_num, best_score = meta["iter_num"], meta["best_score"]
        backend.set_rng_state(meta["rng_state"])
        print(f"resuming from {resume_dir} at iteration {iter_num}")
    os.makedirs(cfg.out_dir, exist_ok=True)
    log_path = os.path.join(cfg.out_dir, "log.jsonl")
    if not cfg.resume and os.path.exists(log_path):
        os.remove(log_path)                         # a fresh run starts a fresh log
    t_start = time.perf_counter()
    step_times, last, train_loss = [], None, float("nan")

    def save_state(rng_state):
        meta = {"iter_num": iter_num, "best_score": best_score, "rng_state": rng_state,
                "train_config": dataclasses.asdict(cfg)}
        checkpoint.save_checkpoint(resume_dir, model, optimizer, meta, tokenizer)

    def run_evaluation():
        nonlocal best_score, last
        was_training = model.training
        model.eval()
        with no_grad():
            result = evaluate()
        model.train(was_training)
        last = {"iter": iter_num, **result, "lr": lr_at(max(iter_num - 1, 0), cfg),
                "seconds": round(time.perf_counter() - t_start, 3)}
        with open(log_path, "a") as f:
            f.write(json.dumps(last) + "\n")
        if result[select] < best_score:
            best_score = result[select]
            model.save_pretrained(cfg.out_dir, tokenizer)
        bar.write(f"iter {iter_num}: " + ", ".join(
            f"{k.replace('_', ' ')} {v:.4f}" for k, v in result.items()
            if isinstance(v, float)))
        sys.stdout.flush()                          # visible at once when piped to a file

    from tqdm.auto import tqdm
    bar = tqdm(total=cfg.max_iters, initial=iter_num, disable=not cfg.progress,
               dynamic_ncols=True, unit="it")
    rng_at_iter_start = backend.get_rng_state()
    try:
        if iter_num == 0:
            run_evaluation()                        # the loss before any training
        while iter_num < cfg.max_iters:
            rng_at_iter_start = backend.get_rng_state()
            if backend.normalize_device(cfg.device) == "cuda":
                backend.reseed_device_generators()  # GPU dropout masks follow the CPU state
            t0 = time.perf_counter()
            lr = lr_at(iter_num, cfg)
            for group in optimizer.param_groups:
                # Each group keeps its ratio to the base rate (e.g. a smaller body lr).
                group["lr"] = lr * group.setdefault("lr_scale", group["lr"] / cfg.learning_rate)
            train_loss = 0.0
            for _ in range(cfg.gradient_accumulation_steps):
                loss = next_loss()
                # Scaled so the summed gradient is the mean over all micro-batches: clipping
                # and the update then see exactly what one big batch would give.
                (loss / cfg.gradient_accumulation_steps).backward()
                train_loss += loss.item() / cfg.gradient_accumulation_steps
            if cfg.grad_clip > 0:
                optim.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                      cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
            iter_num += 1
            step_times.append(time.perf_counter() - t0)
            bar.update(1)
            postfix = {"loss": f"{train_loss:.4f}", "lr": f"{lr:.2e}"}
            if tokens_per_iter:
                postfix["tok/s"] = f"{tokens_per_iter / step_times[-1]:,.0f}"
            bar.set_postfix(postfix, refresh=False)
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"the training loss became {train_loss} at iteration "
                                         f"{iter_num}; try a lower --learning_rate")
            if iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters:
                run_evaluation()
                save_state(backend.get_rng_state())
    except KeyboardInterrupt:
        # Save the last *completed* iteration's state (the random stream as it was when the
        # interrupted iteration began), so --resume carries on as if never stopped.
        optimizer.zero_grad()
        save_state(rng_at_iter_start)
        bar.close()
        print(f"\ninterrupted at iteration {iter_num}; the training state is saved in "
              f"{resume_dir}: continue with --resume --out_dir {cfg.out_dir}")
        raise
    bar.close()
    return {"last": last, "best_score": best_score, "iters": iter_num,
            "step_times": step_times, "train_loss": train_loss, "log_path": log_path,
            "seconds": time.perf_counter() - t_start}


def train_gpt(cfg: TrainConfig, tokenizer=None, exclude_files=()) -> dict:
    """Train (or, with ``cfg.resume``, continue training) a GPT on next-token prediction;
    returns the summary dict that is also written to ``out_dir/summary.json``.
    ``tokenizer``: use this one instead of building ``cfg.tokenizer`` (e.g. one with the
    special tokens fine-tuning needs); ``exclude_files``: stdlib files to leave out."""
    cfg.validate()
    t_start = time.perf_counter()
    backend.manual_seed(cfg.seed)
    tokenizer, train_ids, val_ids = prepare_data(cfg, resume_tokenizer(cfg) or tokenizer,
                                                 exclude_files)
    model_cfg = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=cfg.block_size,
                          n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                          dropout=cfg.dropout, bias=cfg.bias)
    model = GPT(model_cfg).to(cfg.dtype).to(cfg.device)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate,
                                           (cfg.beta1, cfg.beta2))
    tokens_per_iter = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    print(f"{model.num_params() / 1e6:.2f}M parameters, vocab {tokenizer.vocab_size}, "
          f"{len(train_ids):,} training tokens, {tokens_per_iter:,} tokens per iteration")

    def next_loss():
        x, y = data.get_batch(train_ids, cfg.batch_size, cfg.block_size, cfg.device)
        return model(x, y)[1]

    splits = {"train": train_ids, "val": val_ids}
    run = fit(cfg, model, optimizer, next_loss, lambda: {
        f"{k}_loss": v for k, v in estimate_loss(model, splits, cfg).items()},
        tokenizer, tokens_per_iter)
    return _finish(cfg, model, tokenizer, val_ids, run["last"], run["best_score"],
                   run["train_loss"], run["iters"], run["step_times"], tokens_per_iter,
                   t_start, run["log_path"])


def _finish(cfg, model, tokenizer, val_ids, last, best_val_loss, train_loss, iter_num,
            step_times, tokens_per_iter, t_start, log_path) -> dict:
    """Final report: numbers on stdout and in summary.json, samples, the loss curve."""
    val_loss = last["val_loss"] if last else float("nan")
    n_chars = len(tokenizer.decode(val_ids[:100_000].tolist()))
    bpc = metrics.bits_per_char(val_loss, min(len(val_ids), 100_000), n_chars)
    ms = statistics.median(step_times) * 1e3 if step_times else float("nan")
    samples = sample_texts(model, tokenizer, cfg)
    summary = {
        "val_loss": val_loss, "best_val_loss": best_val_loss,
        "train_loss": last["train_loss"] if last else train_loss,
        "last_batch_loss": train_loss, "iters": iter_num, "ms_per_iter": ms,
        "tokens_per_second": tokens_per_iter / (ms / 1e3) if step_times else float("nan"),
        "wall_seconds": time.perf_counter() - t_start,
        "perplexity": metrics.perplexity(val_loss), "bits_per_char": bpc,
        "num_params": model.num_params(), "vocab_size": tokenizer.vocab_size,
        "config": dataclasses.asdict(cfg), "samples": samples,
    }
    checkpoint.write_json(os.path.join(cfg.out_dir, "summary.json"), summary)
    plot = plot_loss_curve(log_path, os.path.join(cfg.out_dir, "loss.png"))
    print(f"\nval loss {val_loss:.4f} | perplexity {summary['perplexity']:.2f} | "
          f"{bpc:.3f} bits per character | {ms:.1f} ms/iter | "
          f"{summary['tokens_per_second']:,.0f} tokens/s")
    for i, text in enumerate(samples):
        print(f"\n--- sample {i + 1} ---\n{text}")
    print(f"\nsaved the best model to {cfg.out_dir}/ (summary.json, log.jsonl"
          f"{', loss.png' if plot else ''})")
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
                         num_return_sequences=cfg.num_samples, do_sample=True, top_k=None)
    return [tokenizer.decode(row[1:]) for row in out.numpy().tolist()]


def plot_loss_curve(log_path: str, png_path: str) -> bool:
    """Train and val loss against iteration from the JSONL log; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    with open(log_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train_loss", "val_loss"):
        ax.plot([r["iter"] for r in rows], [r[key] for r in rows], marker="o",
                label=key.replace("_", " "))
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return True


# --- masked-LM pretraining (BERT-style) ------------------------------------------------------
@dataclass
class MLMConfig(TrainConfig):
    # "bpe" (byte-level, the default) or "wordpiece", both with [PAD] [UNK] [CLS] [SEP] [MASK].
    # BPE is the default because tokenizers 0.23's WordPiece trainer is not deterministic
    # (huggingface/tokenizers#1794): the same seed would give a different vocabulary.
    tokenizer: str = "bpe"
    vocab_size: int = 4096
    block_size: int = 128
    dropout: float = 0.1
    mlm_probability: float = 0.15
    max_iters: int = 1500
    lr_decay_iters: int = 1500
    out_dir: str = "out-mlm"

    def validate(self):
        if self.tokenizer not in data.TOKENIZER_KINDS:
            raise ValueError(f"--tokenizer must be one of {data.TOKENIZER_KINDS}, not "
                             f"{self.tokenizer!r}")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if self.block_size < 3:
            raise ValueError(f"--block_size must be at least 3 ([CLS] token [SEP]), got "
                             f"{self.block_size}")
        TrainConfig.validate(dataclasses.replace(self, tokenizer="char"))


def prepare_mlm_data(cfg: MLMConfig, tokenizer=None, exclude_files=()):
    """Corpus -> WordPiece/BPE tokenizer with special tokens -> (tokenizer, train, val ids)."""
    text = data.load_corpus(cfg.data, exclude_files=exclude_files)
    if tokenizer is None:
        tokenizer = data.WordPieceTokenizer.train(text, cfg.vocab_size, kind=cfg.tokenizer)
    ids = data.encode_corpus(tokenizer, text)
    train_ids, val_ids = data.train_val_split(ids, 0.9)
    for name, split in (("training", train_ids), ("validation", val_ids)):
        if len(split) < cfg.block_size - 2:
            raise ValueError(f"the corpus {cfg.data!r} is too short: its {name} split has "
                             f"{len(split)} tokens but one row needs block_size - 2 = "
                             f"{cfg.block_size - 2}; use more text or a smaller --block_size")
    return tokenizer, train_ids, val_ids


def estimate_mlm(model, tokenizer, splits: dict, cfg: MLMConfig) -> dict:
    """Masked-token loss on each split and masked-token accuracy on val, over the same
    ``eval_iters`` batches every time (a fixed generator)."""
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
    """Pretrain a BERT-style encoder with the masked-LM objective; returns the summary dict
    (also written to ``out_dir/summary.json``).  ``exclude_files``: stdlib files to leave out
    of the corpus (a downstream task's held-out files)."""
    from .nn.bert import BERT, BERTConfig
    cfg.validate()
    t_start = time.perf_counter()
    backend.manual_seed(cfg.seed)
    tokenizer, train_ids, val_ids = prepare_mlm_data(cfg, resume_tokenizer(cfg), exclude_files)
    model = BERT(BERTConfig(vocab_size=tokenizer.vocab_size, block_size=cfg.block_size,
                            n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                            dropout=cfg.dropout, bias=cfg.bias,
                            pad_token_id=tokenizer.pad_token_id))
    model = model.to(cfg.dtype).to(cfg.device)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate,
                                           (cfg.beta1, cfg.beta2))
    tokens_per_iter = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    print(f"{model.num_params() / 1e6:.2f}M parameters, vocab {tokenizer.vocab_size}, "
          f"{len(train_ids):,} training tokens, {tokens_per_iter:,} tokens per iteration")

    def next_loss():
        x, labels, mask = data.get_mlm_batch(train_ids, cfg.batch_size, cfg.block_size,
                                             tokenizer, cfg.mlm_probability, cfg.device)
        return model(x, mask, labels)[1]

    splits = {"train": train_ids, "val": val_ids}
    run = fit(cfg, model, optimizer, next_loss,
              lambda: estimate_mlm(model, tokenizer, splits, cfg), tokenizer, tokens_per_iter)
    last = run["last"]
    # The baseline a model must beat: guess every masked token from word frequencies alone.
    gen = np.random.default_rng(cfg.seed + 1)
    _, labels, _ = data.get_mlm_batch(val_ids, cfg.batch_size * cfg.eval_iters, cfg.block_size,
                                      tokenizer, cfg.mlm_probability, "cpu", gen)
    baseline = data.unigram_baseline_loss(train_ids, labels.numpy(), tokenizer.vocab_size)
    ms = statistics.median(run["step_times"]) * 1e3 if run["step_times"] else float("nan")
    summary = {
        "val_loss": last["val_loss"], "best_val_loss": run["best_score"],
        "train_loss": last["train_loss"], "val_masked_accuracy": last["val_masked_accuracy"],
        "perplexity": metrics.perplexity(last["val_loss"]),
        "unigram_baseline_loss": baseline,
        "unigram_baseline_perplexity": metrics.perplexity(baseline),
        "iters": run["iters"], "ms_per_iter": ms,
        "tokens_per_second": tokens_per_iter / (ms / 1e3) if run["step_times"] else float("nan"),
        "wall_seconds": time.perf_counter() - t_start, "num_params": model.num_params(),
        "vocab_size": tokenizer.vocab_size, "config": dataclasses.asdict(cfg),
    }
    checkpoint.write_json(os.path.join(cfg.out_dir, "summary.json"), summary)
    plot_loss_curve(run["log_path"], os.path.join(cfg.out_dir, "loss.png"))
    print(f"\nmasked-token loss {summary['val_loss']:.4f} (perplexity "
          f"{summary['perplexity']:.1f}) | masked-token accuracy "
          f"{summary['val_masked_accuracy']:.1%} | unigram baseline loss {baseline:.4f} "
          f"(perplexity {summary['unigram_baseline_perplexity']:.1f}) | {ms:.1f} ms/iter")
    print(f"saved the best model to {cfg.out_dir}/")
    return summary


# --- fine-tuning a classifier --------------------------------------------------------------
@dataclass
class FinetuneConfig(TrainConfig):
    data: str = "stdlib"          # "stdlib": which package is this function from? or a file
    text_column: str = "text"     # for CSV / TSV / JSONL data
    label_column: str = "label"
    max_per_class: int = 600      # the stdlib task's size
    init_from: str = "out-pretrained"  # a pretrained BERT or GPT directory
    pretrain_iters: int = 1500    # when init_from holds no model yet, pretrain one first,
    # "causal" (a GPT, the default) or "mlm" (a BERT encoder).  Measured at this budget, the
    # masked-LM encoder is still near its unigram plateau and fine-tunes no better than random
    # weights, while next-token pretraining, where every token is a target, does (README).
    pretrain_objective: str = "causal"
    tokenizer: str = "bpe"        # for that pretraining: "bpe" or "wordpiece"
    vocab_size: int = 4096
    pooling: str = ""             # "cls", "mean" or "last"; "" = the body's natural choice
    freeze_layers: int = -1       # -1: train all; k >= 0: freeze embeddings + first k blocks
    freeze_body: bool = False     # train the head only
    body_lr_scale: float = 1.0    # the body's learning rate = learning_rate * this
    max_length: int = 128
    batch_size: int = 32
    learning_rate: float = 5e-4
    min_lr: float = 5e-5
    warmup_iters: int = 30
    max_iters: int = 300
    lr_decay_iters: int = 300
    weight_decay: float = 0.01
    beta2: float = 0.999
    dropout: float = 0.1
    eval_interval: int = 50
    compare_scratch: bool = False  # also train the same architecture from random weights
    out_dir: str = "out-finetune"

    def validate(self):
        if self.pretrain_objective not in ("mlm", "causal"):
            raise ValueError(f"--pretrain_objective must be mlm or causal, not "
                             f"{self.pretrain_objective!r}")
        if self.pooling not in ("", "cls", "mean", "last"):
            raise ValueError(f"--pooling must be cls, mean or last, not {self.pooling!r}")
        if self.max_length < 3:
            raise ValueError(f"--max_length must be at least 3, got {self.max_length}")
        if self.tokenizer not in data.TOKENIZER_KINDS:
            raise ValueError(f"--tokenizer (for pretraining) must be one of "
                             f"{data.TOKENIZER_KINDS}, not {self.tokenizer!r}")
        TrainConfig.validate(dataclasses.replace(self, tokenizer="char"))


def load_labelled(cfg: FinetuneConfig):
    if cfg.data == "stdlib":
        return data.stdlib_function_dataset(max_per_class=cfg.max_per_class, seed=cfg.seed)
    return data.labelled_from_file(cfg.data, seed=cfg.seed, text_column=cfg.text_column,
                                   label_column=cfg.label_column)


def pretrained_body(cfg: FinetuneConfig, task=None):
    """The directory of the pretrained encoder, pretraining one first if it is not there --
    on the stdlib corpus without ``task``'s val and test files, so that fine-tuning is
    evaluated on source the encoder has never read."""
    if os.path.exists(os.path.join(cfg.init_from, "config.json")):
        return cfg.init_from
    held_out = getattr(task, "held_out_files", ())
    print(f"no pretrained model in {cfg.init_from!r}: pretraining one ({cfg.pretrain_objective}"
          f" objective) for {cfg.pretrain_iters} iterations first")
    if cfg.pretrain_objective == "causal":
        text = data.load_corpus("stdlib", exclude_files=held_out)
        tokenizer = data.WordPieceTokenizer.train(text, cfg.vocab_size, kind=cfg.tokenizer)
        train_gpt(TrainConfig(data="stdlib", out_dir=cfg.init_from, max_iters=cfg.pretrain_iters,
                              lr_decay_iters=cfg.pretrain_iters, n_layer=cfg.n_layer,
                              n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.max_length,
                              bias=cfg.bias, seed=cfg.seed, device=cfg.device, dtype=cfg.dtype,
                              progress=cfg.progress, num_samples=0),
                  tokenizer=tokenizer, exclude_files=held_out)
        return cfg.init_from
    train_mlm(MLMConfig(data="stdlib", out_dir=cfg.init_from, max_iters=cfg.pretrain_iters,
                        lr_decay_iters=cfg.pretrain_iters, tokenizer=cfg.tokenizer,
                        vocab_size=cfg.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                        n_embd=cfg.n_embd, block_size=cfg.max_length, bias=cfg.bias,
                        seed=cfg.seed, device=cfg.device, dtype=cfg.dtype,
                        progress=cfg.progress, num_samples=0),
              exclude_files=held_out)
    return cfg.init_from


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
    random weights of the same shape when ``scratch``.  Evaluates the best checkpoint (by
    validation loss) on the held-out test split."""
    from .nn.classifier import BODIES, SequenceClassifier
    cfg.validate()
    t_start = time.perf_counter()
    backend.manual_seed(cfg.seed)
    task = load_labelled(cfg) if task is None else task
    body_dir = pretrained_body(cfg, task) if body_dir is None else body_dir
    if tokenizer is None:
        path = checkpoint.tokenizer_path(body_dir)
        if path is None:
            raise FileNotFoundError(f"no tokenizer.json beside the pretrained model in "
                                    f"{body_dir!r}")
        tokenizer = data.load_tokenizer(path)
    if not hasattr(tokenizer, "pad_token_id"):
        raise ValueError(f"the tokenizer in {body_dir!r} has no [PAD]/[CLS]/[SEP] tokens; "
                         f"fine-tuning needs a model pretrained with a WordPiece or BPE "
                         f"tokenizer with special tokens (examples/train_mlm.py)")
    pooling = cfg.pooling or None
    model = SequenceClassifier.from_pretrained_body(body_dir, task.num_classes, pooling,
                                                    cfg.dropout, task.label_names, cfg.device)
    if scratch:     # same architecture and budget, random weights: what pretraining buys
        body_cls, body_cfg = BODIES[model.config.body_type]
        model = SequenceClassifier.from_body(body_cls(body_cfg(**model.config.body)),
                                             task.num_classes, pooling, cfg.dropout,
                                             task.label_names).to(cfg.device)
    model = model.to(cfg.dtype)
    if cfg.max_length > model.body.config.block_size:
        raise ValueError(f"--max_length={cfg.max_length} is longer than the pretrained "
                         f"model's block_size={model.body.config.block_size}")
    if cfg.freeze_body:
        model.freeze_body()
    elif cfg.freeze_layers >= 0:
        model.freeze_body(cfg.freeze_layers)
    model.train()
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate,
                                           cfg.learning_rate * cfg.body_lr_scale,
                                           (cfg.beta1, cfg.beta2))
    n_train = len(task.train)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{'from scratch' if scratch else 'from ' + body_dir}: {task.num_classes} classes, "
          f"{n_train} / {len(task.val)} / {len(task.test)} train / val / test examples, "
          f"{trainable / 1e6:.2f}M trainable parameters")
    batches = lambda split: list(data.classification_batches(  # noqa: E731
        getattr(task, split), tokenizer, cfg.batch_size, cfg.max_length, shuffle=False,
        device=cfg.device))
    val_batches, test_batches = batches("val"), batches("test")

    def next_loss():
        # A random batch each step (not epochs): the random stream alone says where training
        # is, so --resume continues exactly.
        pick = backend.generator("cpu").choice(n_train, min(cfg.batch_size, n_train),
                                               replace=False)
        ids, mask, labels = next(data.classification_batches(
            [task.train[i] for i in pick], tokenizer, len(pick), cfg.max_length,
            shuffle=False, device=cfg.device))
        return model(ids, mask, labels)[1]

    def evaluate():
        loss, true, pred = classify(model, val_batches)
        accuracy = metrics.accuracy(true, pred)
        return {"val_loss": loss, "val_accuracy": accuracy, "val_error": 1.0 - accuracy}

    # The best model is the most *accurate* on val: a classifier's val loss starts rising
    # (over-confidence) long before its accuracy stops improving.
    run = fit(cfg, model, optimizer, next_loss, evaluate, tokenizer, select="val_error")
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
        "wall_seconds": time.perf_counter() - t_start, "config": dataclasses.asdict(cfg),
    }
    checkpoint.write_json(os.path.join(cfg.out_dir, "summary.json"), summary)
    plot_loss_curve(run["log_path"], os.path.join(cfg.out_dir, "loss.png"))
    print(f"\ntest accuracy {summary['test_accuracy']:.1%} | macro-F1 "
          f"{summary['test_f1_macro']:.3f} | {task.num_classes} classes "
          f"({'from scratch' if scratch else 'pretrained'})")
    print(metrics.format_confusion_matrix(cm, task.label_names))
    return summary


def finetune_and_compare(cfg: FinetuneConfig) -> dict:
    """``finetune_classifier`` from the pretrained body and, with ``cfg.compare_scratch``,
    again from random weights with the same budget (into ``out_dir/scratch``); the combined
    summary (``scratch_test_accuracy``, ``scratch_test_f1_macro`` added) goes to
    ``out_dir/summary.json``."""
    cfg.validate()
    task = load_labelled(cfg)
    body_dir = pretrained_body(cfg, task)
    summary = finetune_classifier(cfg, task, body_dir=body_dir)
    if cfg.compare_scratch:
        scratch_cfg = dataclasses.replace(cfg, out_dir=os.path.join(cfg.out_dir, "scratch"),
                                          resume=False)
        scratch = finetune_classifier(scratch_cfg, task, body_dir=body_dir, scratch=True)
        summary.update({"scratch_test_accuracy": scratch["test_accuracy"],
                        "scratch_test_f1_macro": scratch["test_f1_macro"],
                        "scratch_test_loss": scratch["test_loss"]})
        checkpoint.write_json(os.path.join(cfg.out_dir, "summary.json"), summary)
        print(f"\npretrained: accuracy {summary['test_accuracy']:.1%}, macro-F1 "
              f"{summary['test_f1_macro']:.3f} | from scratch: accuracy "
              f"{scratch['test_accuracy']:.1%}, macro-F1 {scratch['test_f1_macro']:.3f}")
    return summary
