"""How fast does tinygradlm train and run its encoder-decoder?  The seq2seq example's model
against the same model in PyTorch, same run; then greedy and beam-search generation.

The model is ``examples/train_seq2seq.py``'s default (``tinygradlm.train.seq2seq.Seq2SeqConfig``,
read from it, so the two cannot drift apart): ``EncoderDecoder`` with a 3-block encoder and a
3-block decoder, n_head 4, n_embd 128, sources up to 48 tokens, decoder inputs up to 40,
learned positions, one 4096-token BPE vocabulary shared by both sides and tied to the output
layer, biases, float32.  One change: dropout 0 (the example trains with 0.1), so that both
frameworks compute exactly the same thing and their losses can be compared step by step.

The data are the example's own: the built-in task (summarise a standard-library function in
one sentence, ``data.stdlib_docstring_dataset``), its BPE tokenizer trained on the training
pairs (~5 s), and batches of 32 training pairs drawn as the training loop draws them
(``similar_length_batch``: neighbours in source length, so little padding) and made by
``pair_batch``: each side padded to its longest row (source padding masked, labels -100 after
each target's end).  A fixed list of such batches is drawn once with a seed, and both
frameworks step through that same list in the same order.

Cases
  1. ``step``: ms per training step -- forward with labels (label smoothing 0.1), backward,
     ``clip_grad_norm_(1.0)``, AdamW step (lr 2e-3 held constant so every step does the same
     work, betas (0.9, 0.98), eps 1e-8, weight decay 0.1 on >= 2-D weights only), ``zero_grad``,
     ``loss.item()`` -- for tinygradlm with its fused kernels and for
     ``tests/torch_reference.py``'s ``TorchEncoderDecoder`` (the model the tests check
     tinygradlm's logits, loss and every gradient against; same parameter names, tinygradlm's
     initial weights copied in, ``torch.optim.AdamW`` with the same two groups,
     ``torch.nn.utils.clip_grad_norm_``).  The decoder input (labels shifted right) is made
     once per batch for both, with ``model.shift_right``.
     Timing: both warm up, then ``--repeats`` rounds; in each round each framework pauses
     (idle BLAS / OpenMP threads of the other stop spinning), makes one untimed step, then
     ``--steps`` timed steps; the order of the two alternates between rounds so that a slow
     spell of the machine does not always hit the same one.  Reported: the median ms/step of
     each over all timed steps, the speed ratio ``torch_ms / tinygradlm_ms`` (above 1 =
     tinygradlm is faster) of those medians, and the spread of the per-round ratios (mean,
     standard deviation, min, max).
     Check: both start from the same weights and take the same steps on the same batches, so
     their losses must agree step by step within float32 rounding.  The first batch's loss
     before any step, and the loss of every step, are compared; the largest difference over
     the first ``--check-steps`` steps must be below ``STEP_LOSS_TOL`` or the run fails (exit
     code 1, after the JSON is written).  Later steps' differences are recorded only: float32
     trajectories drift apart slowly.
  2. ``generation``: tokens per second of ``model.generate(src, attention_mask=mask,
     max_new_tokens=39)`` on 32 test-split sources, greedy (``num_beams=1``) and beam search
     (``num_beams=4``, length_penalty 1.0, early_stopping True, as the example writes its test
     outputs), tinygradlm only (no PyTorch peer: the reference model has no ``generate``).
     The weights are the untrained initial ones and the config has no end-of-text id
     (``eos_token_id=None``), so every sequence runs the full 39 new tokens: the outputs are
     random tokens, and the work is the same in every run.  Reported: new tokens per second
     (32 x 39 per call) and decoder rows per second (beam search decodes 4 rows per source).

Run from the repository root:

    python benchmarks/bench_seq2seq.py [--quick] [--repeats R] [--steps S] [--check-steps N]
                                       [--out PATH] [--threads N] [--system-malloc]

A full run takes about 25 s on 2 quiet CPUs (building the task and tokenizer ~5 s);
``--quick`` (2 rounds of 2 steps, one generation repeat) is a smoke test whose ratios mean
little.  Results go to
``benchmarks/results/seq2seq.json`` unless ``--out`` says otherwise.  Nothing here asserts on
a time; the only failure is a loss mismatch.
"""
from __future__ import annotations

import statistics
import sys
import time


import common                       # first: puts the checkout and tests/ on sys.path
from common import (SETTLE_S, TORCH, fresh_heap, print_table, summary, timeit, torch,
                    write_json)
import numpy as np

import tinygradlm as tg
from tinygradlm import kernels, optim
from tinygradlm.nn import EncoderDecoder, EncoderDecoderConfig
from tinygradlm.train.seq2seq import (Seq2SeqConfig, build_tokenizer, encode_pairs, load_pairs,
                                      model_inputs, pair_batch, similar_length_batch)

if torch:
    from torch_reference import build_torch_encoder_decoder, copy_weights_from

OURS = "tinygradlm (fused)"
DEFAULTS = Seq2SeqConfig()          # the example's defaults: the model and training timed here
MODEL = dict(block_size=DEFAULTS.block_size, tgt_block_size=DEFAULTS.tgt_block_size,
             n_layer=DEFAULTS.n_layer, n_decoder_layer=DEFAULTS.n_decoder_layer,
             n_head=DEFAULTS.n_head, n_embd=DEFAULTS.n_embd, bias=DEFAULTS.bias,
             positions=DEFAULTS.positions, tie_embeddings=DEFAULTS.tie_embeddings,
             dropout=0.0)           # the example's 0.1 would make the two runs differ
TRAIN = dict(batch_size=DEFAULTS.batch_size, learning_rate=DEFAULTS.learning_rate,
             betas=(DEFAULTS.beta1, DEFAULTS.beta2), eps=1e-8,
             weight_decay=DEFAULTS.weight_decay, grad_clip=DEFAULTS.grad_clip,
             label_smoothing=DEFAULTS.label_smoothing, seed=DEFAULTS.seed)
GEN = dict(batch=32, num_beams=DEFAULTS.num_beams, max_new_tokens=DEFAULTS.tgt_block_size - 1,
           length_penalty=DEFAULTS.length_penalty)
N_BATCHES = 8                       # distinct batches, cycled
CONFIGS = {
    "full": {"warmup": 2, "repeats": 5, "steps": 3, "check_steps": 20,
             "gen_repeats": 3, "gen_warmup": 1},
    "quick": {"warmup": 1, "repeats": 2, "steps": 2, "check_steps": 7,
              "gen_repeats": 1, "gen_warmup": 1},
}
FIRST_LOSS_TOL = common.LOSS_TOL    # same weights, same batch: agree to ~1e-6
# After n AdamW steps the two differ by the float32 rounding that Adam's normalised updates
# carry forward: 3e-5 after 7 steps here.  A wrong loss, gradient or mask already shows in
# the first batch; a subtle optimizer difference shows within steps: decaying the 1-D weights
# too in torch (tried once by hand) put the losses 4e-4 apart at step 5, 2.4e-3 at step 13.
STEP_LOSS_TOL = 1e-3


# --- the data: the example's task, tokenizer and batches -----------------------------------
def load_task(seed):
    """The example's train and test pairs as token ids, its tokenizer, and a record."""
    t0 = time.perf_counter()
    cfg = Seq2SeqConfig(seed=seed)
    task = load_pairs(cfg)
    tok = build_tokenizer(cfg, task)
    train, test = (encode_pairs(model_inputs(cfg, pairs), tok, cfg.block_size,
                                cfg.tgt_block_size, name)
                   for name, pairs in (("train", task.train), ("test", task.test)))
    src_len = np.array([len(s) for s in train[0]])
    tgt_len = np.array([len(t) for t in train[1]])
    info = {"task": "stdlib docstring summarisation (data.stdlib_docstring_dataset)",
            "tokenizer": f"{cfg.tokenizer}, vocab {tok.vocab_size}",
            "train_pairs": len(src_len), "test_pairs": len(test[0]),
            "source_tokens": {"mean": float(src_len.mean()), "median": float(np.median(src_len)),
                              "max": int(src_len.max()),
                              "cut_to_block_size": float((src_len == cfg.block_size).mean())},
            "target_tokens_with_eos": {"mean": float(tgt_len.mean()),
                                       "median": float(np.median(tgt_len)),
                                       "max": int(tgt_len.max())},
            "load_s": time.perf_counter() - t0}
    return tok, train, test, info


def training_batches(train, pad_id, seed, n=N_BATCHES, batch_size=TRAIN["batch_size"]):
    """``n`` batches drawn as the training loop draws them (``similar_length_batch``: pairs
    of similar source length), each (src (B, Ts), mask (B, Ts) bool, labels (B, Tt) with
    -100 padding)."""
    rng = np.random.default_rng(seed)
    sources, targets = train
    order = np.argsort([len(s) for s in sources], kind="stable")
    return [pair_batch(sources, targets, similar_length_batch(order, batch_size, rng), pad_id)
            for _ in range(n)]


def build_model(vocab_size, pad_id, start_id, seed=TRAIN["seed"]):
    """tinygradlm's encoder-decoder from ``seed`` (every copy holds the same weights), float32,
    training mode; no end-of-text id, so that generation always runs to max_new_tokens."""
    tg.manual_seed(seed)
    config = EncoderDecoderConfig(vocab_size=vocab_size, pad_token_id=pad_id,
                                  bos_token_id=start_id, eos_token_id=None, **MODEL)
    model = EncoderDecoder(config)
    model.train()
    return model


# --- case 1: the training step ---------------------------------------------------------------
def tg_step_fn(model, batches):
    """One training step per call on the next batch of the list, as ``train_seq2seq`` takes
    it (constant lr); ``step.state`` holds the count and the losses."""
    opt = model.configure_optimizers(TRAIN["weight_decay"], TRAIN["learning_rate"],
                                     TRAIN["betas"], TRAIN["eps"])
    params = list(model.parameters())
    data = [(tg.Tensor(src), mask, tg.Tensor(model.shift_right(labels)), tg.Tensor(labels))
            for src, mask, labels in batches]
    state = {"i": 0, "losses": []}

    def step():
        src, mask, dec_in, labels = data[state["i"] % len(data)]
        state["i"] += 1
        with kernels.use("fused"):
            _, loss = model(src, mask, decoder_input_ids=dec_in, labels=labels,
                            label_smoothing=TRAIN["label_smoothing"])
            loss.backward()
            optim.clip_grad_norm_(params, TRAIN["grad_clip"])
            opt.step()
            opt.zero_grad()
        state["losses"].append(loss.item())
    step.state = state
    return step


def torch_step_fn(tmodel, model, batches):
    """The same step in PyTorch: AdamW with the same two groups (decay on >= 2-D weights)."""
    params = list(tmodel.parameters())          # the tied embedding once, as in tinygradlm
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": TRAIN["weight_decay"]},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=TRAIN["learning_rate"], betas=TRAIN["betas"], eps=TRAIN["eps"])
    data = [tuple(torch.from_numpy(a) for a in (src, mask, model.shift_right(labels), labels))
            for src, mask, labels in batches]
    state = {"i": 0, "losses": []}

    def step():
        src, mask, dec_in, labels = data[state["i"] % len(data)]
        state["i"] += 1
        _, loss = tmodel(src, mask, dec_in, labels, label_smoothing=TRAIN["label_smoothing"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, TRAIN["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["losses"].append(loss.item())
    step.state = state
    return step


def first_losses(model, tmodel, batch):
    """Each framework's loss on ``batch`` before any step, without gradients."""
    src, mask, labels = batch
    with tg.no_grad(), kernels.use("fused"):
        ours = model(src, mask, labels=labels,
                     label_smoothing=TRAIN["label_smoothing"])[1].item()
    out = {OURS: ours}
    if tmodel is not None:
        with torch.no_grad():
            t = [torch.from_numpy(a) for a in (src, mask, model.shift_right(labels), labels)]
            out[TORCH] = tmodel(*t, label_smoothing=TRAIN["label_smoothing"])[1].item()
    return out


def time_rounds(steps, cfg):
    """Seconds of each timed step, per implementation and round (see the docstring)."""
    for step in steps.values():             # everything warms up before anything is timed
        for _ in range(cfg["warmup"]):
            step()
    per_round = {name: [] for name in steps}
    names = list(steps)
    for r in range(cfg["repeats"]):
        for name in (names if r % 2 == 0 else names[::-1]):
            time.sleep(SETTLE_S)            # the other library's idle threads stop spinning
            steps[name]()                   # one untimed step: caches and heap are ours again
            ts = []
            for _ in range(cfg["steps"]):
                t0 = time.perf_counter()
                steps[name]()
                ts.append(time.perf_counter() - t0)
            per_round[name].append(ts)
    return per_round


def case_step(cfg, vocab_size, pad_id, start_id, batches):
    model = build_model(vocab_size, pad_id, start_id)
    tmodel = None
    if torch:
        tmodel = copy_weights_from(model, build_torch_encoder_decoder(model.config)).train()
    first = first_losses(model, tmodel, batches[0])
    steps = {OURS: tg_step_fn(model, batches)}
    if tmodel is not None:
        steps[TORCH] = torch_step_fn(tmodel, model, batches)
    rounds = time_rounds(steps, cfg)
    times = {name: {**summary([t for ts in r for t in ts]), "per_round_median_s":
                    [statistics.median(ts) for ts in r]} for name, r in rounds.items()}
    tokens = [int(mask.sum()) + int((labels != -100).sum()) for _, mask, labels in batches]
    for t in times.values():
        t["ms_per_step"] = t["median_s"] * 1e3
        t["real_tokens_per_s"] = statistics.fmean(tokens) / t["median_s"]
    out = {"times": times, "first_batch_loss": first,
           "real_tokens_per_step_mean": statistics.fmean(tokens),
           "real_tokens_are": "source tokens under the mask + target tokens with a label",
           "batch_shapes": [{"source": list(src.shape), "labels": list(labels.shape)}
                            for src, _, labels in batches]}
    if TORCH in times:
        per = [t / o for t, o in zip(times[TORCH]["per_round_median_s"],
                                     times[OURS]["per_round_median_s"])]
        out["speed_ratio"] = {
            "is": common.SPEED_RATIO_IS, "torch_ms / tinygradlm_ms":
            times[TORCH]["median_s"] / times[OURS]["median_s"],
            "per_round": per, "mean": statistics.fmean(per),
            "stdev": statistics.stdev(per) if len(per) > 1 else 0.0,
            "min": min(per), "max": max(per)}
        out["loss_check"] = loss_check(first, steps, cfg["check_steps"])
    else:
        out["loss_check"] = {"note": "torch not installed: nothing to compare with"}
    out["losses"] = {name: step.state["losses"] for name, step in steps.items()}
    return out


def loss_check(first, steps, check_steps):
    """First-batch losses and every step's losses of both (same weights, same batches)."""
    ours, theirs = steps[OURS].state["losses"], steps[TORCH].state["losses"]
    diffs = [abs(a - b) for a, b in zip(ours, theirs)]
    n = min(check_steps, len(diffs))
    first_diff = abs(first[OURS] - first[TORCH])
    checked = max(diffs[:n])
    return {"first_batch_max_abs_diff": first_diff, "first_batch_tolerance": FIRST_LOSS_TOL,
            "checked_steps": n, "steps_max_abs_diff": checked,
            "steps_tolerance": STEP_LOSS_TOL, "per_step_abs_diff": diffs,
            "all_steps_max_abs_diff": max(diffs), "steps_done": len(diffs),
            "match": bool(first_diff <= FIRST_LOSS_TOL and checked <= STEP_LOSS_TOL)}


# --- case 2: generation ----------------------------------------------------------------------
def case_generation(cfg, vocab_size, pad_id, start_id, test, seed):
    """Greedy and beam-search tokens/s on ``GEN['batch']`` test sources (random weights)."""
    model = build_model(vocab_size, pad_id, start_id)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(test[0]), GEN["batch"], replace=False)
    src, mask, _ = pair_batch(test[0], test[1], pick, pad_id)
    new = GEN["max_new_tokens"]
    outs = {}

    def gen(name, beams):
        def run():
            outs[name] = model.generate(src, attention_mask=mask, max_new_tokens=new,
                                        num_beams=beams, length_penalty=GEN["length_penalty"],
                                        early_stopping=beams > 1).numpy()
        return run
    modes = {"greedy": 1, f"beam search ({GEN['num_beams']} beams)": GEN["num_beams"]}
    fns = {name: gen(name, beams) for name, beams in modes.items()}
    for fn in fns.values():         # one warm-up call each (kernels loaded, heap grown) ...
        for _ in range(cfg["gen_warmup"]):
            fn()
    # ... and none again before each turn: no PyTorch runs in between here (a call lasts
    # seconds, and a second warm-up would double the case's time).
    times = timeit(fns, cfg["gen_repeats"], 0)
    for name, t in times.items():
        B = len(src)
        t["num_beams"] = modes[name]
        t["output_shape"] = list(outs[name].shape)
        t["new_tokens_per_s"] = B * new / t["median_s"]
        t["decoder_rows_per_s"] = B * modes[name] * new / t["median_s"]
        t["ms_per_new_token_step"] = t["median_s"] * 1e3 / new
    return {"batch": len(src), "source_shape": list(src.shape),
            "source_tokens_real": int(mask.sum()), "max_new_tokens": new,
            "eos_token_id": None, "weights": "untrained (random init, seed "
            f"{TRAIN['seed']}): the outputs are random tokens", "kernels": kernels.mode(),
            "length_penalty": GEN["length_penalty"], "times": times}


# --- reporting -------------------------------------------------------------------------------
def print_step(step, cfg):
    times = step["times"]
    rows = [[name, f"{t['ms_per_step']:.0f}", f"{t['min_s'] * 1e3:.0f}",
             f"{t['max_s'] * 1e3:.0f}", f"{t['real_tokens_per_s']:,.0f}"]
            for name, t in times.items()]
    print_table(["implementation", "median ms/step", "min ms", "max ms", "real tokens/s"],
                rows, "lrrrr")
    if "speed_ratio" in step:
        s = step["speed_ratio"]
        print(f"\nspeed ratio torch_ms / tinygradlm_ms = {s['torch_ms / tinygradlm_ms']:.2f} "
              f"(above 1: tinygradlm faster); per round ({cfg['repeats']} rounds of "
              f"{cfg['steps']} steps): mean {s['mean']:.2f} +- {s['stdev']:.2f}, "
              f"min {s['min']:.2f}, max {s['max']:.2f}")
        c = step["loss_check"]
        print(f"loss check: first batch |diff| {c['first_batch_max_abs_diff']:.2e} "
              f"(tol {c['first_batch_tolerance']:.0e}); max |diff| over the first "
              f"{c['checked_steps']} steps {c['steps_max_abs_diff']:.2e} "
              f"(tol {c['steps_tolerance']:.0e}); over all {c['steps_done']} steps "
              f"{c['all_steps_max_abs_diff']:.2e}: "
              f"{'OK' if c['match'] else '*** MISMATCH ***'}")
        print("losses at steps 1, 5, 10, 20, last: " + "; ".join(
            f"{name} " + ", ".join(f"{ls[i]:.4f}" for i in (0, 4, 9, 19, -1) if i < len(ls))
            for name, ls in step["losses"].items()))


def print_generation(g):
    print(f"\ngeneration: {g['batch']} test sources {tuple(g['source_shape'])}, "
          f"{g['max_new_tokens']} new tokens each (no eos), {g['kernels']} kernels, "
          f"{g['weights']}")
    print_table(["decoding", "median s", "min s", "new tokens/s", "decoder rows/s",
                 "ms per step"],
                [[name, f"{t['median_s']:.2f}", f"{t['min_s']:.2f}",
                  f"{t['new_tokens_per_s']:,.0f}", f"{t['decoder_rows_per_s']:,.0f}",
                  f"{t['ms_per_new_token_step']:.1f}"] for name, t in g["times"].items()],
                "lrrrrr")


def main(argv=None):
    parser = common.bench_parser(__doc__, "seq2seq",
                                 "2 rounds of 2 steps, 1 generation repeat (about a minute)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per framework (default: 5; --quick 2)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed training steps per round (default: 4; --quick 2)")
    parser.add_argument("--check-steps", type=int, default=None,
                        help="steps whose losses must agree (default: 20; --quick 7)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = dict(CONFIGS[mode])
    for key in ("repeats", "steps", "check_steps"):
        if getattr(args, key) is not None:
            cfg[key] = max(1, getattr(args, key))
    t_start = time.perf_counter()

    env = common.start_bench(args)
    tok, train, test, data_info = load_task(TRAIN["seed"])
    pad_id, start_id = tok.pad_token_id, tok.cls_token_id
    batches = training_batches(train, pad_id, TRAIN["seed"])
    data_info["training_batches"] = len(batches)
    print(f"encoder-decoder {MODEL}, vocab {tok.vocab_size}, batch {TRAIN['batch_size']}; "
          f"data: {data_info['train_pairs']} train pairs, sources mean "
          f"{data_info['source_tokens']['mean']:.0f} tokens, targets mean "
          f"{data_info['target_tokens_with_eos']['mean']:.0f}; batch shapes (source, labels) "
          + ", ".join(f"{s.shape[1]}x{y.shape[1]}" for s, _, y in batches))
    print(f"training step: {cfg['warmup']} warm-up + {cfg['repeats']} rounds x (1 + "
          f"{cfg['steps']}) steps each; {TRAIN}")

    fresh_heap()
    step = case_step(cfg, tok.vocab_size, pad_id, start_id, batches)
    print_step(step, cfg)

    fresh_heap()
    gen = case_generation(cfg, tok.vocab_size, pad_id, start_id, test, TRAIN["seed"])
    print_generation(gen)

    result = {**common.result_header("bench_seq2seq", mode, env),
              "wall_s": time.perf_counter() - t_start,
              "config": {"model": {**MODEL, "vocab_size": tok.vocab_size,
                                   "dropout_note": "0 here (the example trains with 0.1) so "
                                                   "that both frameworks compute the same"},
                         "train": {**TRAIN, "lr_schedule": "constant"},
                         "generation": GEN, "timing": cfg},
              "data": data_info, "step": step, "generation": gen}
    write_json(args.out, result)
    print(f"total {result['wall_s']:.0f} s")
    check = step["loss_check"]
    if check.get("match") is False:
        sys.exit(f"FAIL: tinygradlm's and torch's losses differ (first batch "
                 f"{check['first_batch_max_abs_diff']:.2e}, first {check['checked_steps']} "
                 f"steps {check['steps_max_abs_diff']:.2e}): see 'loss check' above")


if __name__ == "__main__":
    main()
