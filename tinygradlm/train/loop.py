"""The training loop every objective shares (next-token, masked-LM, classification).

``fit`` is one flat loop in the manner of nanoGPT's ``train.py``; this is its shape:

    resume: load weights, optimizer moments, schedule, iteration and random state
    evaluate once (the loss before any training)
    while iteration < max_iters:
        for each micro-batch:  (loss / accumulation_steps).backward()   (gradient accumulation)
        clip the gradient norm to grad_clip;  optimizer step;  zero the gradients
        scheduler step (warmup + cosine, from ``optim``)
        every eval_interval: evaluate, log a JSON line, save the best model and the resume state
    Ctrl-C: finish the update in progress, save the state, stop (``interrupt.py``)

What lands in ``out_dir``:

    config.json, model.safetensors, tokenizer.json   the best model so far (from_pretrained)
    resume/iter-NNNNNNNN/                             the two newest training states
    log.jsonl                                         one JSON line per evaluation
    loss.png                                          the loss curves (with matplotlib)
    summary.json                                      final numbers, written by the objective

Nothing is lost by surprise.  Each state is written beside the previous one and renamed into
place when complete (``checkpoint.save_state``), so a crash, a kill or a full disk at any
moment leaves a state --resume can continue from exactly; ``start_run`` refuses a new run
into a directory that holds an old one (``--overwrite`` deletes it), and --resume of a
finished run reports its results instead of training again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import ClassVar

from .. import backend, checkpoint, data, files, optim, profiler
from ..config import check_fields, flag
from ..autograd import no_grad
from ..tensor import get_default_device
from .interrupt import GracefulStop


@dataclass
class TrainConfig:
    """Everything a run needs; every field is a command-line flag of the examples, with its
    help and accepted range (``config.flag``).  The defaults train nanoGPT's CPU "baby GPT" on
    characters; MLM and fine-tuning override some (a field redefined without ``flag`` keeps
    the help and range given here)."""
    TOKENIZERS: ClassVar[tuple] = ("char", "bpe")      # what --tokenizer accepts here
    # Flags that change what the saved state means; --resume refuses to change them.
    RESUME_MUST_MATCH: ClassVar[tuple] = ("data", "tokenizer", "vocab_size", "n_layer",
                                          "n_head", "n_embd", "block_size", "bias", "dtype")
    # data
    data: str = flag("stdlib", "'stdlib' (the embedded corpus, no download), 'shakespeare' "
                     "(downloaded once) or a path to a text file")
    tokenizer: str = flag("char", "'char' or 'bpe' for GPT; 'bpe' or 'wordpiece' for BERT")
    vocab_size: int = flag(512, "subword vocabulary size (the char tokenizer uses the "
                           "corpus' characters)", at_least=1)
    # model
    n_layer: int = flag(4, "Transformer blocks", at_least=1)
    n_head: int = flag(4, "attention heads per block (must divide n_embd)", at_least=1)
    n_embd: int = flag(128, "width of the model (embedding size)", at_least=1)
    block_size: int = flag(64, "context length in tokens", at_least=1)
    dropout: float = flag(0.0, "dropout probability", at_least=0, below=1)
    bias: bool = flag(True, "biases in Linear and LayerNorm layers")
    # optimisation
    batch_size: int = flag(12, "sequences per micro-batch", at_least=1)
    gradient_accumulation_steps: int = flag(1, "micro-batches summed into one update",
                                            at_least=1)
    max_iters: int = flag(2000, "optimizer updates in the whole run", at_least=1)
    learning_rate: float = flag(1e-3, "peak learning rate (after warmup)", above=0)
    min_lr: float = flag(1e-4, "learning rate at the end of the cosine decay (at most "
                         "learning_rate)", at_least=0)
    warmup_iters: int = flag(100, "iterations of linear warmup", at_least=0)
    lr_decay_iters: int = flag(2000, "iteration where the cosine decay reaches min_lr",
                               at_least=1)
    decay_lr: bool = flag(True, "warmup + cosine decay (false: constant learning_rate)")
    weight_decay: float = flag(0.1, "AdamW weight decay (on matrices only)", at_least=0)
    beta1: float = flag(0.9, "AdamW's first-moment decay", at_least=0, below=1)
    beta2: float = flag(0.99, "AdamW's second-moment decay", at_least=0, below=1)
    grad_clip: float = flag(1.0, "clip the global gradient norm to this (0: off)", at_least=0)
    # evaluation, logging, checkpoints
    eval_interval: int = flag(250, "evaluate, log and save the state every this many "
                              "iterations", at_least=1)
    eval_iters: int = flag(20, "batches per split in each evaluation", at_least=1)
    out_dir: str = flag("out", "directory for the model, log, summary and training state")
    resume: bool = flag(False, "continue the run saved in out_dir")
    overwrite: bool = flag(False, "start a new run in an out_dir that holds an old one "
                           "(its files are deleted)")
    num_samples: int = flag(3, "samples printed at the end", at_least=0)
    sample_tokens: int = flag(200, "tokens per sample", at_least=1)
    progress: bool = flag(True, "show the progress bar")
    # the rest
    seed: int = flag(1337, "seed of every random choice (batches, dropout, initial weights)",
                     at_least=0)
    device: str = flag(None, "'cpu' or 'cuda' (needs CuPy); default $TINYGRADLM_DEVICE, "
                       "else cpu", default_factory=get_default_device)
    dtype: str = flag("float32", "floating point precision", choices=("float32", "float64"))

    def validate(self):
        """Refuse bad flags before any work starts: types and ranges (from the fields), the
        relations between flags, the data file, the device, the memory needed and the
        output directory."""
        check_fields(self)
        self.check_relations()
        if self.data not in ("stdlib", "shakespeare") and not os.path.isfile(self.data):
            raise FileNotFoundError(f"--data: no such file: {self.data!r} (or use stdlib or "
                                    f"shakespeare)")
        backend.xp_for(backend.normalize_device(self.device))  # no GPU: say why before any work
        check_memory(self)
        files.check_writable_dir(self.out_dir)
        if not self.resume and not self.overwrite and os.listdir(self.out_dir):
            raise files.InputError(
                f"--out_dir {self.out_dir!r} is not empty ("
                f"{', '.join(sorted(os.listdir(self.out_dir))[:6])}): continue its run with "
                f"--resume, choose another --out_dir, or pass --overwrite to delete the old "
                f"run's files")

    def check_relations(self):
        """What no single field's range can say (subclasses add their own)."""
        if self.n_embd % self.n_head:
            raise ValueError(f"--n_embd={self.n_embd} must be divisible by --n_head={self.n_head}")
        if self.tokenizer not in self.TOKENIZERS:
            raise ValueError(f"--tokenizer must be one of {self.TOKENIZERS}, not "
                             f"{self.tokenizer!r}")
        if self.min_lr > self.learning_rate:
            raise ValueError(f"--min_lr={self.min_lr} must not exceed --learning_rate="
                             f"{self.learning_rate} (the decay goes down to it)")
        if self.decay_lr and self.lr_decay_iters < self.warmup_iters:
            raise ValueError(f"--lr_decay_iters={self.lr_decay_iters} must be at least "
                             f"--warmup_iters={self.warmup_iters} (the decay follows the warmup)")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out_dir and --overwrite deletes "
                             "it: pass one of them")


def memory_estimate(cfg: TrainConfig) -> int:
    """Roughly the bytes one training step holds: weights, gradients and AdamW's two moments,
    plus what backward keeps per token -- about 20 numbers per unit of width in each block,
    the attention scores of every head (T of them per token, twice), and the logits three
    times.  Deliberately simple (within a factor of about 2); it only has to catch a
    --block_size or --n_embd typed with extra zeros before it takes the machine down."""
    vocab = 256 if cfg.tokenizer == "char" else cfg.vocab_size
    C, L, T, B = cfg.n_embd, cfg.n_layer, cfg.block_size, cfg.batch_size
    params = L * 12 * C * C + (vocab + T) * C
    per_token = L * (20 * C + 2 * cfg.n_head * T) + 3 * vocab
    return (4 * params + B * T * per_token) * (8 if cfg.dtype == "float64" else 4)


def check_memory(cfg: TrainConfig) -> None:
    """Refuse a model that cannot fit in this machine's memory, warn about one that needs most
    of it (CPU only: a GPU's memory is CuPy's to report, at the first allocation)."""
    if backend.normalize_device(cfg.device) != "cpu" or not hasattr(os, "sysconf"):
        return
    need, have = memory_estimate(cfg), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    gib = 2.0 ** 30
    sizes = (f"--n_layer={cfg.n_layer} --n_embd={cfg.n_embd} --block_size={cfg.block_size} "
             f"--batch_size={cfg.batch_size}")
    if need > have:
        raise files.InputError(f"{sizes} would need about {need / gib:.0f} GiB of memory to "
                               f"train, and this machine has {have / gib:.0f} GiB; make the "
                               f"model, the context or the batch smaller")
    if need > have / 2:
        print(f"warning: {sizes} needs about {need / gib:.1f} GiB of this machine's "
              f"{have / gib:.0f} GiB of memory", file=sys.stderr)


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


# --- starting or resuming a run -----------------------------------------------------------------
# What a run writes into out_dir; --overwrite deletes these (and nothing else there).
RUN_FILES = ("config.json", "model.safetensors", "tokenizer.json", "resume", "log.jsonl",
             "summary.json", "loss.png", "scratch", "curve", "learning_curve.png")


@dataclass
class Resume:
    """The newest complete training state of a run (found by ``start_run``)."""
    path: str               # its directory, out_dir/resume/iter-NNNNNNNN
    meta: dict              # iter_num, evaluated, best_score, last, rng_state, scheduler, ...
    tokenizer: object       # the run's tokenizer (token ids keep their meaning), or None


def start_run(cfg: TrainConfig) -> Resume | None:
    """Prepare ``out_dir`` before any work: remove what a crash left behind; with --overwrite,
    delete the old run's files; with --resume, find the newest complete state and check that
    the flags still describe the same run.  Returns that state (None for a new run)."""
    resume_dir = os.path.join(cfg.out_dir, "resume")
    for directory in (cfg.out_dir, resume_dir):
        for name in checkpoint.remove_leftovers(directory):
            print(f"removed {os.path.join(directory, name)} (left by an interrupted save)")
    if cfg.overwrite:
        old = [n for n in RUN_FILES if os.path.lexists(os.path.join(cfg.out_dir, n))]
        for name in old:
            path = os.path.join(cfg.out_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        if old:
            print(f"--overwrite: deleted {', '.join(old)} from {cfg.out_dir}")
    if not cfg.resume:
        return None
    try:
        path, trainer, skipped = checkpoint.latest_state(resume_dir)
    except FileNotFoundError:
        raise FileNotFoundError(f"--resume: no training state in {resume_dir!r} (one is saved "
                                f"after the first evaluation); start the run without --resume "
                                f"(with --overwrite if out_dir holds its files)") from None
    for line in skipped:
        print(f"warning: skipped the incomplete training state {line}", file=sys.stderr)
    meta = trainer["meta"]
    check_resume_flags(cfg, meta["train_config"])
    tokenizer_file = checkpoint.tokenizer_path(path)
    return Resume(str(path), meta, data.load_tokenizer(tokenizer_file) if tokenizer_file else None)


def check_resume_flags(cfg: TrainConfig, saved: dict) -> None:
    """Flags that differ from the saved run's: refused when they change what the state means
    (``RESUME_MUST_MATCH``), announced otherwise (a longer --max_iters, another --device)."""
    ignore = {"resume", "overwrite", "out_dir", "progress"}
    changed = {k: (saved[k], v) for k, v in dataclasses.asdict(cfg).items()
               if k not in ignore and k in saved and saved[k] != v}

    def listing(names):
        return ", ".join(f"--{k}={changed[k][1]!r} (saved: {changed[k][0]!r})" for k in names)
    fixed = [k for k in changed if k in cfg.RESUME_MUST_MATCH]
    if fixed:
        raise files.InputError(f"--resume continues the run saved in {cfg.out_dir!r}, but these "
                               f"flags would make it another run: {listing(fixed)}; drop them, "
                               f"or start a new run in another --out_dir")
    if changed:
        print(f"note: resuming with flags changed since the run was saved: "
              f"{listing(changed)}")


def finished_summary(cfg: TrainConfig, resume: Resume | None) -> dict | None:
    """--resume of a run that already reached --max_iters: its ``summary.json``, reported
    (nothing is trained or overwritten).  None when the run is not finished, or when it
    stopped before writing its summary (the objective then writes it from the saved state)."""
    # A larger --max_iters than the saved run's makes it unfinished again: it continues.
    if (resume is None or not resume.meta["evaluated"]
            or resume.meta["iter_num"] < cfg.max_iters):
        return None
    try:
        summary = files.read_json(os.path.join(cfg.out_dir, "summary.json"), "summary")
    except (OSError, ValueError):
        return None
    results = ", ".join(f"{k} {v:.4f}" for k, v in summary.items()
                        if isinstance(v, float) and k.startswith(("val_", "test_")))
    print(f"the run in {cfg.out_dir} already finished at iteration {resume.meta['iter_num']} "
          f"(--max_iters={cfg.max_iters}): {results or 'see summary.json'}. Pass a larger "
          f"--max_iters to train it further.")
    return summary


# --- the loop -----------------------------------------------------------------------------------
def fit(cfg: TrainConfig, model, optimizer, next_loss, evaluate, tokenizer=None,
        tokens_per_iter: int = 0, select: str = "val_loss", resume: Resume | None = None) -> dict:
    """Train ``model`` for ``cfg.max_iters`` iterations (see the module docstring).

    next_loss():  draws one micro-batch and returns its mean loss (a Tensor);
    evaluate():   returns a dict of numbers (run in eval mode without gradients), among them
                  ``select`` (lower is better), which picks the best model saved to out_dir;
    resume:       the state to continue from (``start_run``), or None for a new run.
    Returns {"last": the last evaluation, "best_score", "iters", "step_times",
    "train_loss" (the last iteration's), "log_path", "seconds"}.
    """
    from tqdm.auto import tqdm

    backend.tune_malloc()       # training reallocates the same big arrays every step
    resume_dir = os.path.join(cfg.out_dir, "resume")
    log_path = os.path.join(cfg.out_dir, "log.jsonl")
    scheduler = make_scheduler(cfg, optimizer)
    iter_num, best_score, last, evaluate_now, saved = 0, math.inf, None, True, None
    train_loss = math.nan                           # the last iteration's
    os.makedirs(cfg.out_dir, exist_ok=True)
    if resume is not None:
        meta = checkpoint.load_checkpoint(resume.path, model, optimizer)
        iter_num, evaluate_now = meta["iter_num"], not meta["evaluated"]
        last, train_loss = meta["last"], meta["train_loss"]
        best_score = meta["best_score"]
        scheduler.load_state_dict(meta["scheduler"])
        backend.set_rng_state(meta["rng_state"])
        saved = iter_num
        # Rows a crash left beyond the saved state are dropped: the resumed run logs them again.
        trim_log(log_path, iter_num if evaluate_now else iter_num + 1)
        print(f"resuming from {resume.path} at iteration {iter_num}")
    elif os.path.exists(log_path):
        os.remove(log_path)                         # a fresh run starts a fresh log
    bar = tqdm(total=cfg.max_iters, initial=min(iter_num, cfg.max_iters),
               disable=not cfg.progress, dynamic_ncols=True, unit="it")
    t_start = time.perf_counter()
    step_times = []
    prof = profiler.from_env()      # TINYGRADLM_PROFILE=1: time the ops of every iteration

    def save(evaluated: bool):
        """The training state of the iteration just completed (see ``save_state``)."""
        nonlocal saved
        with clear_save_errors("the training state", cfg, saved):
            save_state(cfg, model, optimizer, scheduler, tokenizer, iter_num, evaluated,
                       best_score, last, train_loss)
        saved = iter_num

    with GracefulStop() as stop:
        try:
            while not stop.requested:
                # --- evaluate, log, keep the best model, save the state --------------------
                if evaluate_now:
                    lr = scheduler.lr_at(max(iter_num - 1, 0), cfg.learning_rate)
                    with stop.interruptible():      # it changes nothing: Ctrl-C may cut it
                        last = run_evaluation(model, evaluate, iter_num, lr, t_start, log_path,
                                              bar)
                    evaluate_now = False
                    if last[select] < best_score:   # (a NaN never is)
                        best_score = last[select]
                        with clear_save_errors("the best model", cfg, saved):
                            model.save_pretrained(cfg.out_dir, tokenizer)
                    save(evaluated=True)
                if iter_num >= cfg.max_iters or stop.requested:
                    break
                # --- one iteration: the first Ctrl-C waits until it is complete ------------
                if backend.normalize_device(cfg.device) == "cuda":
                    backend.reseed_device_generators()  # GPU dropout follows the CPU state
                if prof is not None and step_times:     # not the first: it compiles kernels
                    prof.start()
                t0 = time.perf_counter()
                train_loss = 0.0
                for _ in range(cfg.gradient_accumulation_steps):
                    loss = next_loss()
                    # Scaled so the summed gradient is the mean over all micro-batches: clipping
                    # and the update then see exactly what one big batch would give.
                    (loss / cfg.gradient_accumulation_steps).backward()
                    train_loss += loss.item() / cfg.gradient_accumulation_steps
                if not math.isfinite(train_loss):   # before the update spoils the weights
                    raise FloatingPointError(
                        f"the training loss became {train_loss} at iteration {iter_num + 1}; "
                        f"try a lower --learning_rate" + (
                            f" (the state of iteration {saved} is in {resume_dir})"
                            if saved is not None else ""))
                if cfg.grad_clip > 0:
                    optim.clip_grad_norm_([p for g in optimizer.param_groups
                                           for p in g["params"]], cfg.grad_clip)
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                optimizer.zero_grad()
                scheduler.step()
                if prof is not None and step_times:
                    prof.stop()
                    prof.step()
                iter_num += 1
                step_times.append(time.perf_counter() - t0)
                bar.update(1)
                postfix = {"loss": f"{train_loss:.4f}", "lr": f"{lr:.2e}"}
                if tokens_per_iter:
                    postfix["tok/s"] = f"{tokens_per_iter / step_times[-1]:,.0f}"
                bar.set_postfix(postfix, refresh=False)
                evaluate_now = iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters
            if stop.requested and saved != iter_num:    # the first Ctrl-C, at a clean point
                save(evaluated=not evaluate_now)
        except KeyboardInterrupt:
            bar.close()
            try:
                if stop.forced or not stop.abandoned:   # no clean point to save from
                    raise
                save(evaluated=False)                   # the first Ctrl-C cut an evaluation
            except KeyboardInterrupt:
                print("\nstopped without saving; --resume continues from " + (
                    f"iteration {saved}" if saved is not None else "nothing (none was saved)"),
                    file=sys.stderr)
                raise
        finally:
            bar.close()
            if prof is not None:
                prof.stop()                 # an error or Ctrl-C: the ops are put back
    if prof is not None and prof.step_count:
        print(prof.table())
    if stop.requested:
        print(f"\ninterrupted at iteration {iter_num}; the training state is saved in "
              f"{resume_dir}: continue with --resume --out_dir {cfg.out_dir}")
        raise KeyboardInterrupt
    return {"last": last, "best_score": best_score, "iters": iter_num,
            "step_times": step_times, "train_loss": train_loss, "log_path": log_path,
            "seconds": time.perf_counter() - t_start}


def run_evaluation(model, evaluate, iter_num: int, lr: float, t_start: float, log_path: str,
                   bar) -> dict:
    """``evaluate()`` in eval mode without gradients; the result, with the iteration, the
    learning rate and the time, is appended to the JSONL log and printed above the bar."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            result = evaluate()
    finally:
        model.train(was_training)
    row = {"iter": iter_num, **result, "lr": lr,
           "seconds": round(time.perf_counter() - t_start, 3)}
    with open(log_path, "a") as f:
        f.write(json.dumps(files.finite(row), allow_nan=False) + "\n")
    bar.write(f"iter {iter_num}: " + ", ".join(
        f"{k.replace('_', ' ')} {v:.4f}" for k, v in result.items() if isinstance(v, float)))
    sys.stdout.flush()                              # visible at once when piped to a file
    return row


def read_log(log_path: str) -> list:
    """The rows of a JSONL log; a line cut short by a crash or a full disk is skipped."""
    rows = []
    if os.path.exists(log_path):
        with open(log_path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


def trim_log(log_path: str, first_dropped: int) -> None:
    """Keep the log's rows of iterations before ``first_dropped`` (atomically rewritten)."""
    if os.path.exists(log_path):
        rows = [r for r in read_log(log_path) if r.get("iter", math.inf) < first_dropped]
        files.atomic_write(log_path, "".join(json.dumps(r) + "\n" for r in rows).encode())


@contextlib.contextmanager
def clear_save_errors(what: str, cfg: TrainConfig, saved: int | None):
    """A save that fails (a full disk, a removed directory) stops the run with one line that
    says what is still there, instead of a traceback."""
    try:
        yield
    except OSError as exc:
        kept = (f"the training state of iteration {saved} is intact" if saved is not None
                else "no training state had been saved yet")
        raise OSError(exc.errno, f"could not save {what} in {cfg.out_dir!r}: "
                                 f"{exc.strerror or exc}; {kept}. Free some space, then "
                                 f"continue with --resume --out_dir {cfg.out_dir}") from None


def save_state(cfg, model, optimizer, scheduler, tokenizer, iter_num: int, evaluated: bool,
               best_score: float, last: dict | None, train_loss: float) -> None:
    """Everything --resume needs, as ``out_dir/resume/iter-NNNNNNNN`` (the previous state is
    kept until this one is complete).  Saved only between iterations, so the random state is
    the one the *next* iteration starts from; ``evaluated`` says whether that iteration's
    evaluation (if it has one) is done."""
    meta = {"iter_num": iter_num, "evaluated": evaluated,
            "best_score": best_score, "last": last, "train_loss": train_loss,
            "rng_state": backend.get_rng_state(), "scheduler": scheduler.state_dict(),
            "train_config": dataclasses.asdict(cfg)}
    checkpoint.save_state(os.path.join(cfg.out_dir, "resume"), iter_num, model, optimizer,
                          meta, tokenizer)


def speed(run: dict, tokens_per_iter: int) -> tuple[float | None, float | None]:
    """(median milliseconds per iteration, tokens per second) of a ``fit`` result; None when
    no iteration ran in this process (a resumed run that had already finished)."""
    if not run["step_times"]:
        return None, None
    ms = statistics.median(run["step_times"]) * 1e3
    return ms, tokens_per_iter / (ms / 1e3)


def speed_text(ms: float | None, tokens_per_second: float | None) -> str:
    if ms is None:
        return "no iteration ran in this process"
    return f"{ms:.1f} ms/iter | {tokens_per_second:,.0f} tokens/s"


def write_summary(cfg: TrainConfig, summary: dict, run: dict) -> bool:
    """``summary.json`` and ``loss.png`` into out_dir; returns whether the plot was drawn."""
    files.write_json(os.path.join(cfg.out_dir, "summary.json"), summary)
    return plot_loss_curve(run["log_path"], os.path.join(cfg.out_dir, "loss.png"))


def pyplot():
    """matplotlib's pyplot drawing to files (no window), or None when matplotlib is missing:
    a plot is a bonus, never a reason for a run to fail."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_plot(plt, fig, ax, png_path: str) -> None:
    """Legend, light grid, tight layout, then write ``png_path`` and free the figure."""
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def plot_loss_curve(log_path: str, png_path: str) -> bool:
    """Every ``*_loss`` column of the JSONL log against iteration; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    rows = read_log(log_path)
    keys = sorted({k for r in rows for k in r if k.endswith("_loss")})
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        points = [(r["iter"], r[key]) for r in rows if r.get(key) is not None]
        ax.plot(*zip(*points), marker="o", label=key.replace("_", " "))
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats per token)")
    save_plot(plt, fig, ax, png_path)
    return True
