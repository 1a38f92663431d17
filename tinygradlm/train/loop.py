"""The training loop every objective shares (next-token, masked-LM, classification).

``fit`` is one flat loop in the manner of nanoGPT's ``train.py``; this is its shape:

    resume: load weights, optimizer moments, schedule, iteration and random state
    evaluate once (the loss before any training)
    while iteration < max_iters:
        for each micro-batch:  (loss / accumulation_steps).backward()   (gradient accumulation)
        clip the gradient norm to grad_clip;  optimizer step;  zero the gradients
        scheduler step (warmup + cosine, from ``optim``)
        every eval_interval: evaluate, log a JSON line, save the best model and the resume state
    Ctrl-C: save the last completed iteration's state, so --resume carries on exactly

What lands in ``out_dir``:

    config.json, model.safetensors, tokenizer.json   the best model so far (from_pretrained)
    resume/                                           the latest training state, for --resume
    log.jsonl                                         one JSON line per evaluation
    loss.png                                          the loss curves (with matplotlib)
    summary.json                                      final numbers, written by the objective
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
from typing import ClassVar

from .. import backend, checkpoint, data, files, optim
from ..autograd import no_grad
from ..tensor import get_default_device


@dataclass
class TrainConfig:
    """Everything a run needs; every field is a command-line flag of the examples.  The
    defaults train nanoGPT's CPU "baby GPT" on characters; MLM and fine-tuning override some."""
    TOKENIZERS: ClassVar[tuple] = ("char", "bpe")      # what --tokenizer accepts here
    # data
    data: str = "stdlib"          # "stdlib" (embedded), "shakespeare" (downloaded) or a path
    tokenizer: str = "char"       # one of TOKENIZERS
    vocab_size: int = 512         # for subword tokenizers (char uses the corpus' characters)
    # model
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
        """Refuse bad flags before any work starts."""
        positive = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters",
                    "gradient_accumulation_steps", "eval_interval", "eval_iters", "vocab_size")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"--n_embd={self.n_embd} must be divisible by --n_head={self.n_head}")
        backend.xp_for(backend.normalize_device(self.device))  # no GPU: say why before any work
        if self.tokenizer not in self.TOKENIZERS:
            raise ValueError(f"--tokenizer must be one of {self.TOKENIZERS}, not "
                             f"{self.tokenizer!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"--dtype must be float32 or float64, not {self.dtype!r}")


def make_scheduler(cfg: TrainConfig, optimizer) -> optim.LRScheduler:
    """nanoGPT's warmup + cosine decay from --learning_rate to --min_lr, or a constant rate with
    ``--decay_lr=False``.  The schedule is a shape relative to --learning_rate, so a group with
    another base rate (a pretrained body at --body_lr_scale) keeps its ratio to the others all
    the way down, its floor included."""
    if not cfg.decay_lr:
        return optim.ConstantLR(optimizer)
    floor = cfg.min_lr / cfg.learning_rate
    return optim.LambdaLR(optimizer, lambda it: optim.warmup_cosine_lr(
        it, 1.0, floor, cfg.warmup_iters, cfg.lr_decay_iters))


def model_shape(cfg: TrainConfig, tokenizer) -> dict:
    """The config fields a GPT and a BERT share, from the flags and the tokenizer."""
    return dict(vocab_size=tokenizer.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias)


def language_model(cfg: TrainConfig, model, train_ids):
    """``model`` in the run's dtype on its device, its AdamW (nanoGPT's recipe: decay on
    matrices only), and the tokens one iteration trains on, announced."""
    model = model.to(cfg.dtype).to(cfg.device)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate,
                                           (cfg.beta1, cfg.beta2))
    tokens_per_iter = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    print(f"{model.num_params() / 1e6:.2f}M parameters, vocab {model.config.vocab_size}, "
          f"{len(train_ids):,} training tokens, {tokens_per_iter:,} tokens per iteration")
    return model, optimizer, tokens_per_iter


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
    """Train ``model`` for ``cfg.max_iters`` iterations (see the module docstring).

    next_loss():  draws one micro-batch and returns its mean loss (a Tensor);
    evaluate():   returns a dict of numbers (run in eval mode without gradients), among them
                  ``select`` (lower is better), which picks the best model saved to out_dir.
    Returns {"last": the last evaluation, "best_score", "iters", "step_times",
    "train_loss" (the last iteration's), "log_path", "seconds"}.
    """
    from tqdm.auto import tqdm

    backend.tune_malloc()       # training reallocates the same big arrays every step
    resume_dir = os.path.join(cfg.out_dir, "resume")
    log_path = os.path.join(cfg.out_dir, "log.jsonl")
    scheduler = make_scheduler(cfg, optimizer)
    iter_num, best_score = 0, math.inf
    if cfg.resume:
        meta = checkpoint.load_checkpoint(resume_dir, model, optimizer)
        iter_num, best_score = meta["iter_num"], meta["best_score"]
        scheduler.load_state_dict(meta["scheduler"])
        backend.set_rng_state(meta["rng_state"])
        print(f"resuming from {resume_dir} at iteration {iter_num}")
    os.makedirs(cfg.out_dir, exist_ok=True)
    if not cfg.resume and os.path.exists(log_path):
        os.remove(log_path)                         # a fresh run starts a fresh log
    bar = tqdm(total=cfg.max_iters, initial=iter_num, disable=not cfg.progress,
               dynamic_ncols=True, unit="it")
    t_start = time.perf_counter()
    step_times, last, train_loss = [], None, float("nan")
    rng_at_iter_start = backend.get_rng_state()
    evaluate_now = iter_num == 0                    # the loss before any training
    try:
        while True:
            # --- evaluate, log, keep the best model and the resume state ---------------------
            if evaluate_now:
                lr = scheduler.lr_at(max(iter_num - 1, 0), cfg.learning_rate)
                last = run_evaluation(model, evaluate, iter_num, lr, t_start, log_path, bar)
                if last[select] < best_score:
                    best_score = last[select]
                    model.save_pretrained(cfg.out_dir, tokenizer)
                if iter_num > 0:
                    save_state(cfg, model, optimizer, scheduler, tokenizer, iter_num,
                               best_score, backend.get_rng_state())
            if iter_num >= cfg.max_iters:
                break
            # --- one iteration -------------------------------------------------------------
            rng_at_iter_start = backend.get_rng_state()
            if backend.normalize_device(cfg.device) == "cuda":
                backend.reseed_device_generators()  # GPU dropout masks follow the CPU state
            t0 = time.perf_counter()
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
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
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
            evaluate_now = iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters
    except KeyboardInterrupt:
        # Save the last *completed* iteration's state (the random stream as it was when the
        # interrupted iteration began), so --resume carries on as if never stopped.
        optimizer.zero_grad()
        save_state(cfg, model, optimizer, scheduler, tokenizer, iter_num, best_score,
                   rng_at_iter_start)
        bar.close()
        print(f"\ninterrupted at iteration {iter_num}; the training state is saved in "
              f"{resume_dir}: continue with --resume --out_dir {cfg.out_dir}")
        raise
    bar.close()
    return {"last": last, "best_score": best_score, "iters": iter_num,
            "step_times": step_times, "train_loss": train_loss, "log_path": log_path,
            "seconds": time.perf_counter() - t_start}


def run_evaluation(model, evaluate, iter_num: int, lr: float, t_start: float, log_path: str,
                   bar) -> dict:
    """``evaluate()`` in eval mode without gradients; the result, with the iteration, the
    learning rate and the time, is appended to the JSONL log and printed above the bar."""
    was_training = model.training
    model.eval()
    with no_grad():
        result = evaluate()
    model.train(was_training)
    row = {"iter": iter_num, **result, "lr": lr,
           "seconds": round(time.perf_counter() - t_start, 3)}
    with open(log_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    bar.write(f"iter {iter_num}: " + ", ".join(
        f"{k.replace('_', ' ')} {v:.4f}" for k, v in result.items() if isinstance(v, float)))
    sys.stdout.flush()                              # visible at once when piped to a file
    return row


def save_state(cfg, model, optimizer, scheduler, tokenizer, iter_num, best_score, rng_state):
    """Everything --resume needs, in ``out_dir/resume``."""
    meta = {"iter_num": iter_num, "best_score": best_score, "rng_state": rng_state,
            "scheduler": scheduler.state_dict(), "train_config": dataclasses.asdict(cfg)}
    checkpoint.save_checkpoint(os.path.join(cfg.out_dir, "resume"), model, optimizer, meta,
                               tokenizer)


def speed(run: dict, tokens_per_iter: int) -> tuple[float, float]:
    """(median milliseconds per iteration, tokens per second) of a ``fit`` result."""
    if not run["step_times"]:
        return float("nan"), float("nan")
    ms = statistics.median(run["step_times"]) * 1e3
    return ms, tokens_per_iter / (ms / 1e3)


def write_summary(cfg: TrainConfig, summary: dict, run: dict) -> bool:
    """``summary.json`` and ``loss.png`` into out_dir; returns whether the plot was drawn."""
    files.write_json(os.path.join(cfg.out_dir, "summary.json"), summary)
    return plot_loss_curve(run["log_path"], os.path.join(cfg.out_dir, "loss.png"))


def plot_loss_curve(log_path: str, png_path: str) -> bool:
    """Every ``*_loss`` column of the JSONL log against iteration; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    with open(log_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    keys = sorted({k for r in rows for k in r if k.endswith("_loss")})
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        points = [(r["iter"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*points), marker="o", label=key.replace("_", " "))
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return True
