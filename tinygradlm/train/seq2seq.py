"""Training an encoder-decoder on (source, target) pairs: ``python examples/train_seq2seq.py``.

    pairs ─> one subword tokenizer for both sides ─> source ids (cut to --block_size),
          target ids + [SEP] as end-of-text (cut to --tgt_block_size - 1)
          ─> random batches: the encoder reads the source, the decoder the target shifted right
          ─> cross-entropy on every target token (with --label_smoothing)
          ─> the model best on val ─> greedy and beam-search outputs on test
          ─> corpus BLEU, chrF, exact match against the references, and against a baseline

The built-in task is code summarisation (``data.stdlib_docstring_dataset``): a standard-library
function without its docstring -> that docstring's first sentence; its baseline writes the
function's name as a sentence.  ``--data pairs.tsv`` (source TAB target) or a JSONL file with
``source`` / ``target`` trains translation or any other task; its baseline answers every
source with the most frequent training target.
"""
from __future__ import annotations

import collections
import dataclasses
import sys
import time
from dataclasses import dataclass

import numpy as np

from .. import backend, data, files, metrics
from ..autograd import no_grad
from ..config import flag
from ..data.batches import pad_rows
from ..nn.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from .loop import (TrainConfig, finished_summary, fit, speed, speed_text, start_run,
                   write_summary)


@dataclass
class Seq2SeqConfig(TrainConfig):
    TOKENIZERS = data.SUBWORD_MODELS
    RESUME_MUST_MATCH = TrainConfig.RESUME_MUST_MATCH + (
        "tgt_block_size", "n_decoder_layer", "positions", "tie_embeddings", "split_identifiers")
    data: str = flag("stdlib", "'stdlib' (the built-in task: summarise a standard-library "
                     "function in one sentence), or a pairs file: .tsv/.txt (source TAB target "
                     "per line) or .jsonl ({\"source\": ..., \"target\": ...})")
    tokenizer: str = flag("bpe", "'bpe' or 'wordpiece': one subword vocabulary for both "
                          "sides, trained on the training pairs")
    vocab_size: int = 4096
    # 48 tokens hold a function's signature and first lines.  Measured (README): longer
    # sources (128, 192) trained 2-3x slower per step and scored no better.
    block_size: int = flag(48, "longest source in tokens; longer sources are cut (one "
                           "note says how many)", at_least=1)
    tgt_block_size: int = flag(40, "longest decoder input in tokens, the start token "
                               "included; longer targets are cut (one note)", at_least=2)
    n_layer: int = flag(3, "encoder blocks", at_least=1)
    n_decoder_layer: int = flag(3, "decoder blocks", at_least=1)
    positions: str = flag("learned", "position embeddings: 'learned' or 'sinusoidal' (the "
                          "original paper's fixed table)", choices=("learned", "sinusoidal"))
    tie_embeddings: bool = flag(True, "the output layer shares the decoder's token embedding")
    split_identifiers: bool = flag(True, "the built-in task: the model reads identifiers as "
                                   "lower-case words (get_full_url -> get full url), as "
                                   "code-summarisation models do (false: the raw code)")
    label_smoothing: float = flag(0.1, "cross-entropy label smoothing (the paper's 0.1)",
                                  at_least=0, below=1)
    dropout: float = 0.1
    batch_size: int = 32
    # The val loss stops improving after ~800 iterations (~9 passes over the training pairs).
    max_iters: int = 800
    lr_decay_iters: int = 800
    warmup_iters: int = 100
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    beta2: float = 0.98
    eval_interval: int = 200
    eval_iters: int = flag(8, "validation batches per evaluation (a fixed subset)", at_least=1)
    num_beams: int = flag(4, "beams for the test outputs (1: greedy only)", at_least=1)
    length_penalty: float = flag(1.0, "beam search: score / length^length_penalty (> 0 "
                                 "favours longer outputs)")
    num_samples: int = flag(5, "test examples printed (source -> reference -> output)",
                            at_least=0)
    out_dir: str = "out-seq2seq"

    def check_relations(self):
        super().check_relations()
        if self.data == "shakespeare":
            raise ValueError("--data shakespeare is a plain text, not (source, target) pairs; "
                             "use --data stdlib or a .tsv / .jsonl pairs file")


# --- data -------------------------------------------------------------------------------------
def load_pairs(cfg: Seq2SeqConfig):
    if cfg.data == "stdlib":
        return data.stdlib_docstring_dataset(seed=cfg.seed)
    return data.pairs_from_file(cfg.data, seed=cfg.seed)


def model_inputs(cfg: Seq2SeqConfig, pairs):
    """The pairs as the model reads them: the built-in task's code with its identifiers split
    into words (``--split_identifiers``); a pairs file as it is."""
    if cfg.data == "stdlib" and cfg.split_identifiers:
        return [(data.split_identifiers(s), t) for s, t in pairs]
    return list(pairs)


def build_tokenizer(cfg: Seq2SeqConfig, task):
    """One subword vocabulary for sources and targets, learned from the training pairs only;
    [PAD] pads, [CLS] starts every decoder input and [SEP] ends every target."""
    text = "\n".join(s + "\n" + t for s, t in model_inputs(cfg, task.train))
    return data.SubwordTokenizer.train(text, cfg.vocab_size, model=cfg.tokenizer,
                                       special_tokens=data.BERT_SPECIAL_TOKENS)


def encode_pairs(pairs, tokenizer, max_source: int, max_target: int, split: str = "train"):
    """Token id lists: sources cut to ``max_source`` tokens, targets to ``max_target - 1``
    followed by the end-of-text id ([SEP]).  One note per split says how many were cut."""
    sources = tokenizer.encode_many([s for s, _ in pairs])
    targets = tokenizer.encode_many([t for _, t in pairs])
    eos = tokenizer.sep_token_id
    cut_src = sum(len(s) > max_source for s in sources)
    cut_tgt = sum(len(t) > max_target - 1 for t in targets)
    for n, what, flagname, limit in ((cut_src, "sources", "--block_size", max_source),
                                     (cut_tgt, "targets", "--tgt_block_size", max_target - 1)):
        if n:
            print(f"note: {n} of {len(pairs)} {split} {what} are longer than {limit} tokens "
                  f"({flagname}) and were cut to it", file=sys.stderr)
    return ([s[:max_source] for s in sources],
            [t[:max_target - 1] + [eos] for t in targets])


def pair_batch(sources, targets, pick, pad_id: int, device=None):
    """Rows ``pick`` -> (source ids (B, Ts), source mask (B, Ts) bool, labels (B, Tt)); each
    side padded to its longest row in the batch, labels with -100 (no loss) after the end."""
    src, mask = pad_rows([sources[i] for i in pick], max(len(sources[i]) for i in pick),
                         pad_id)                                    # (B, Ts) each
    tgt, tmask = pad_rows([targets[i] for i in pick], max(len(targets[i]) for i in pick),
                          pad_id)                                   # (B, Tt) each
    labels = np.where(tmask, tgt, -100)
    if device not in (None, "cpu"):
        from ..tensor import Tensor
        return Tensor(src, device=device), Tensor(mask, device=device), Tensor(labels,
                                                                               device=device)
    return src, mask, labels


def similar_length_batch(order: np.ndarray, batch_size: int, generator) -> np.ndarray:
    """A random training batch of pairs of similar source length: ``batch_size`` neighbours
    in ``order`` (the pairs sorted by length), starting at a random place and wrapping around,
    so every pair is equally likely.  Padding to the longest row then wastes little: random
    pairs would pad a batch to ~1.8x its real tokens here (fairseq batches by length too)."""
    start = int(generator.integers(len(order)))
    return order[(start + np.arange(min(batch_size, len(order)))) % len(order)]


def length_sorted_batches(n: int, lengths, batch_size: int):
    """Index batches of examples of similar length (less padding); order kept otherwise."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


# --- evaluation -------------------------------------------------------------------------------
@no_grad()
def mean_loss(model, sources, targets, batches, pad_id, device) -> float:
    """Token-weighted mean cross-entropy (no label smoothing) over ``batches``."""
    total, count = 0.0, 0
    for pick in batches:
        src, mask, labels = pair_batch(sources, targets, pick, pad_id, device)
        _, loss = model(src, mask, labels=labels)
        n = int((np.asarray(labels if isinstance(labels, np.ndarray) else labels.numpy())
                 != -100).sum())
        total += loss.item() * n
        count += n
    return total / max(count, 1)


def write_outputs(model, tokenizer, sources, batch_size: int, max_new_tokens: int,
                  num_beams: int, length_penalty: float, device=None, desc="test") -> list[str]:
    """The model's output text for every source (greedy when ``num_beams`` is 1)."""
    from tqdm.auto import tqdm
    pad_id = tokenizer.pad_token_id
    outputs = [None] * len(sources)
    batches = length_sorted_batches(len(sources), [len(s) for s in sources], batch_size)
    how = "greedy" if num_beams == 1 else f"{num_beams} beams"
    for pick in tqdm(batches, desc=f"{desc} ({how})", leave=False,
                     disable=not sys.stderr.isatty()):
        src, mask = pad_rows([sources[i] for i in pick], max(len(sources[i]) for i in pick),
                             pad_id)
        out = model.generate(src, attention_mask=mask, max_new_tokens=max_new_tokens,
                             num_beams=num_beams, length_penalty=length_penalty,
                             early_stopping=True if num_beams > 1 else False).numpy()
        for i, row in zip(pick, out):
            outputs[i] = tokenizer.decode(row[1:].tolist()).strip()  # no start token, eos, pad
    return outputs


def scores(hypotheses, references) -> dict:
    refs = [[r] for r in references]
    return {"bleu": metrics.bleu(hypotheses, refs).score,
            "chrf": metrics.chrf(hypotheses, refs).score,
            "exact_match": metrics.exact_match(hypotheses, refs)}


def baseline(cfg: Seq2SeqConfig, task) -> tuple[str, list[str]]:
    """(name, outputs on test) of the simple baseline the model has to beat."""
    if cfg.data == "stdlib":
        return "the function's name as a sentence", [data.function_name_baseline(s)
                                                    for s, _ in task.test]
    common = collections.Counter(t for _, t in task.train).most_common(1)[0][0]
    return f"the most frequent training target ({common!r})", [common] * len(task.test)


def load_trained(directory, device=None):
    """(model, tokenizer) saved by a run in ``directory``; a tokenizer with ids the model has
    no embedding for (another run's tokenizer.json) is refused by name, not left to fail
    later as an index error."""
    from .. import checkpoint
    model = EncoderDecoder.from_pretrained(directory, device=device)
    path = checkpoint.tokenizer_path(directory)
    if path is None:
        raise FileNotFoundError(f"no tokenizer.json beside the model in {str(directory)!r}")
    tokenizer = data.load_tokenizer(path)
    vocab = min(model.config.vocab_size, model.config.tgt_vocab_size)
    if len(tokenizer) > vocab:
        raise files.InputError(f"the tokenizer {str(path)!r} has {len(tokenizer)} tokens but the "
                               f"model in {str(directory)!r} has vocab_size={vocab}: they come "
                               f"from different runs")
    return model, tokenizer


# --- the run ----------------------------------------------------------------------------------
def train_seq2seq(cfg: Seq2SeqConfig, task=None) -> dict:
    """Train (or, with ``cfg.resume``, continue) an encoder-decoder on ``task`` (a
    ``data.Seq2SeqData``; built from ``cfg.data`` when None), then score the model best on
    val on the test split; returns the summary also written to ``out_dir/summary.json``."""
    cfg.validate()
    resume = start_run(cfg)
    if (done := finished_summary(cfg, resume)) is not None:
        return done
    t_start = time.perf_counter()
    backend.manual_seed(cfg.seed)
    task = load_pairs(cfg) if task is None else task
    tokenizer = resume.tokenizer if resume else build_tokenizer(cfg, task)
    pad_id = tokenizer.pad_token_id
    splits = {name: encode_pairs(model_inputs(cfg, getattr(task, name)), tokenizer,
                                 cfg.block_size, cfg.tgt_block_size, name)
              for name in ("train", "val", "test")}
    model_cfg = EncoderDecoderConfig(
        vocab_size=tokenizer.vocab_size, block_size=cfg.block_size,
        tgt_block_size=cfg.tgt_block_size, n_layer=cfg.n_layer,
        n_decoder_layer=cfg.n_decoder_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
        dropout=cfg.dropout, bias=cfg.bias, positions=cfg.positions,
        tie_embeddings=cfg.tie_embeddings, pad_token_id=pad_id,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    train_src, train_tgt = splits["train"]
    model = EncoderDecoder(model_cfg).to(cfg.dtype).to(cfg.device)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate,
                                           (cfg.beta1, cfg.beta2))
    n_train = len(train_src)
    print(f"{model.num_params() / 1e6:.2f}M parameters, vocab {tokenizer.vocab_size}, "
          f"{n_train:,} / {len(task.val):,} / {len(task.test):,} train / val / test pairs")
    tokens_per_iter = cfg.batch_size * cfg.gradient_accumulation_steps * int(
        np.mean([len(s) + len(t) for s, t in zip(train_src, train_tgt)]))

    # Fixed random subsets of train and val, batched by length: every evaluation scores the
    # same pairs, and the gap between the two curves shows over-fitting.
    def fixed_batches(sources):
        subset = np.random.default_rng(cfg.seed).permutation(len(sources))[
            :cfg.eval_iters * cfg.batch_size]
        return [subset[b] for b in length_sorted_batches(
            len(subset), [len(sources[i]) for i in subset], cfg.batch_size)]
    val_src, val_tgt = splits["val"]
    val_batches, train_batches = fixed_batches(val_src), fixed_batches(train_src)

    by_length = np.argsort([len(s) for s in train_src], kind="stable")

    def next_loss():
        # A random batch each step (not epochs): the random stream alone says where training
        # is, so --resume continues exactly.
        pick = similar_length_batch(by_length, cfg.batch_size, backend.generator("cpu"))
        src, mask, labels = pair_batch(train_src, train_tgt, pick, pad_id, cfg.device)
        return model(src, mask, labels=labels, label_smoothing=cfg.label_smoothing)[1]

    def evaluate():
        return {"train_loss": mean_loss(model, train_src, train_tgt, train_batches, pad_id,
                                        cfg.device),
                "val_loss": mean_loss(model, val_src, val_tgt, val_batches, pad_id, cfg.device)}

    run = fit(cfg, model, optimizer, next_loss, evaluate, tokenizer, tokens_per_iter,
              resume=resume)
    best, _ = load_trained(cfg.out_dir, device=cfg.device)
    test_src, _ = splits["test"]
    references = [t for _, t in task.test]
    max_new = cfg.tgt_block_size - 1
    t_gen = time.perf_counter()
    greedy = write_outputs(best, tokenizer, test_src, cfg.batch_size, max_new, 1,
                           cfg.length_penalty, cfg.device)
    greedy_seconds = time.perf_counter() - t_gen
    outputs, beam_seconds = greedy, 0.0
    if cfg.num_beams > 1:
        t_gen = time.perf_counter()
        outputs = write_outputs(best, tokenizer, test_src, cfg.batch_size, max_new,
                                cfg.num_beams, cfg.length_penalty, cfg.device)
        beam_seconds = time.perf_counter() - t_gen
    base_name, base_outputs = baseline(cfg, task)
    ours, plain, base = scores(outputs, references), scores(greedy, references), \
        scores(base_outputs, references)
    ms, tokens_per_second = speed(run, tokens_per_iter)
    last = run["last"]
    summary = {
        "test_bleu": ours["bleu"], "test_chrf": ours["chrf"],
        "test_exact_match": ours["exact_match"],
        "greedy_bleu": plain["bleu"], "greedy_chrf": plain["chrf"],
        "greedy_exact_match": plain["exact_match"],
        "baseline_bleu": base["bleu"], "baseline_chrf": base["chrf"],
        "baseline_exact_match": base["exact_match"], "baseline": base_name,
        "num_beams": cfg.num_beams,
        "val_loss": last["val_loss"] if last else float("nan"),
        "best_val_loss": run["best_score"], "iters": run["iters"],
        "ms_per_iter": ms, "tokens_per_second": tokens_per_second,
        "generate_seconds": {"greedy": greedy_seconds, "beam": beam_seconds},
        "pairs": {"train": n_train, "val": len(task.val), "test": len(task.test)},
        "num_params": best.num_params(), "vocab_size": tokenizer.vocab_size,
        "examples": [{"source": s, "reference": r, "output": o}
                     for (s, r), o in list(zip(task.test, outputs))[:cfg.num_samples]],
        "wall_seconds": time.perf_counter() - t_start, "config": dataclasses.asdict(cfg),
    }
    plotted = write_summary(cfg, summary, run)
    print_report(summary, base_name, cfg, plotted, ms, tokens_per_second)
    return summary


def print_report(summary, base_name, cfg, plotted, ms, tokens_per_second) -> None:
    for ex in summary["examples"]:
        source = ex["source"] if len(ex["source"]) < 300 else ex["source"][:300] + " ..."
        print(f"\n--- source ---\n{source}\n--- reference: {ex['reference']}\n"
              f"--- output:    {ex['output']}")
    beams = f"beam search ({cfg.num_beams} beams)" if cfg.num_beams > 1 else "greedy"
    rows = [(beams, "test"), ("greedy", "greedy")] if cfg.num_beams > 1 else [(beams, "test")]
    rows.append((f"baseline: {base_name}", "baseline"))
    print(f"\n{'test':<48} {'BLEU':>6} {'chrF':>6} {'exact':>6}")
    for name, key in rows:
        name = name if len(name) <= 48 else name[:45] + "..."
        print(f"{name:<48} {summary[key + '_bleu']:6.2f} {summary[key + '_chrf']:6.2f} "
              f"{summary[key + '_exact_match']:6.1%}")
    print(f"\nval loss {summary['val_loss']:.4f} | {speed_text(ms, tokens_per_second)} | "
          f"{summary['wall_seconds'] / 60:.1f} min")
    print(f"saved the best model to {cfg.out_dir}/ (summary.json, log.jsonl"
          f"{', loss.png' if plotted else ''})")
