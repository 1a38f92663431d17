"""How fast, and in how much memory, does tinygradlm train a GPT on the CPU against PyTorch?

Both in the same run, from the same weights, through the same batches.

Two shapes (``--shapes``, default both), char-level on Tiny Shakespeare when
``../shared/data/tinyshakespeare.txt`` is there (vocab 65), else on the embedded stdlib corpus:

* ``baby``: nanoGPT's CPU "baby GPT": n_layer=4, n_head=4, n_embd=128, block_size=64, batch 12;
* ``nano``: nanoGPT's Shakespeare-char shape: n_layer=6, n_head=6, n_embd=384, block_size=256,
  batch 8 (about a second a step on 2 CPUs).

Both with dropout 0 and biases.  One training step is ``common.tg_step_fn``'s, exactly
``tinygradlm.train``'s: forward with targets, backward, ``clip_grad_norm_(1.0)``, AdamW step
(lr 1e-3 held constant, betas (0.9, 0.99), weight decay 0.1 on >= 2-D weights only),
``zero_grad``, ``loss.item()``.  The PyTorch peer is ``tests/torch_reference.py``'s GPT (the
model the tests check tinygradlm's logits, loss and gradients against: tanh GELU,
``F.scaled_dot_product_attention(is_causal=True)``, LM head tied to ``wte``) holding a copy of
the same initial weights, with ``torch.optim.AdamW`` + ``clip_grad_norm_``.

The first line printed is the machine (``common.start_bench``), the second its CPU
(``common.cpu_record``: model, SIMD flags such as avx2 / avx512f, NumPy's BLAS and the kernels
it picked, Numba's threads and the CPU LLVM compiles for, torch's SIMD level; all in the JSON).

Cases
  1. ``step``, per shape: ms per training step (median, min, standard deviation), tokens/s and
     speed relative to torch, ``torch_ms / tinygradlm_ms`` (above 1 = tinygradlm is faster),
     for tinygradlm with the fused kernels, with ``kernels.use("reference")`` (baby only: it
     is slow on nano) and torch.  Timing is in interleaved rounds (``common.time_rounds``):
     each implementation steps once, then in every round each in turn pauses, warms up and
     makes k timed steps, the order rotating; the ratio is given per round as mean +- std and
     as the ratio of the medians of all steps.  Every implementation steps through the same
     batches the same number of times: the first-batch losses are compared (a mismatch is
     flagged, never asserted) and the last losses recorded.
     ``--load`` times every shape a second time with a busy process spinning on one core
     (``common.background_load``), labelled "under load".
  2. ``mfu``: model FLOPs utilisation per shape.  FLOPs per step as nanoGPT's
     ``estimate_mfu`` counts them, ``(6 N + 12 n_layer n_embd T) * B * T``
     (``common.flops_per_step``), over a *measured* peak: the best float32 2048 x 2048 NumPy
     matmul (2 n^3 FLOPs) with the same threads (torch's is recorded too).
  3. ``profile``, per shape: where a tinygradlm step (fused kernels) goes, by
     ``tinygradlm.profiler`` (per op forward and backward, compiled kernels, optimizer,
     engine, Python outside ops; its table is printed, its rows are in the JSON; for baby the
     reference kernels' rows too), and torch's top ops by ``torch.profiler`` (self CPU time).
  4. ``generation`` (baby): tokens/s of ``model.generate(prompt, max_new_tokens=63,
     do_sample=False)`` from a 1-token prompt with ``use_cache=True`` against ``False``, and
     whether both produce the same tokens.  Python overhead, not compute, sets the pace here,
     and on busy CPUs the cache-less path's small matmuls stall first.
  5. ``memory``, per shape: peak resident memory of each side, each in a fresh interpreter
     that imports only what it needs (``train_child``: tinygradlm with its Numba kernels, or
     torch), builds the model and optimizer, and makes a few training steps on random batches
     of the same shape.  Reported: RSS just before the first step (/proc VmRSS), the peak
     (VmHWM; ``ru_maxrss`` is recorded too, but on Linux it carries the parent's size over
     the fork), the difference ("training memory": activations, gradients, optimizer state,
     workspace, and for tinygradlm loading its compiled kernels) and ours / torch for both.
     tinygradlm's child tunes malloc as ``tinygradlm.train`` does (not with
     ``--system-malloc``); torch's runs as torch runs.
  6. ``cold``: the first-run compile cost.  ``train_child`` (baby, fused kernels) in a fresh
     interpreter with an empty Numba cache (``NUMBA_CACHE_DIR`` a new temporary directory),
     then again with the cache that run filled: seconds from process start to the end of the
     first training step for each, their difference (the compile cost; the issue's target
     is <= 5 s), and the kernels compiled (signatures per kernel, found by scanning the
     loaded ``tinygradlm.kernels`` modules for ``ParallelKernel``s and Numba dispatchers).
     Part of the full run; ``--cold`` runs only this case (results then go to
     ``bench_train_cold.json`` unless ``--out`` says otherwise); ``--quick`` leaves it out.

Hygiene (``common``): NumPy's BLAS, torch and (with ``--threads``) Numba get the same threads;
``gc.collect(); gc.freeze()`` before each case; malloc tuned unless ``--system-malloc``; a
pause before each implementation's turn, so that the last one's idle BLAS threads stop
spinning.

Run from the repository root:

    python benchmarks/bench_train.py [--quick] [--shapes baby,nano] [--load] [--cold]
                                     [--out PATH] [--threads N] [--data PATH] [--system-malloc]

``--quick`` makes fewer rounds and steps and skips case 6 (under a minute; the full run two to
three).  Results go to ``benchmarks/results/bench_train.json`` unless ``--out`` says otherwise.
Nothing here asserts on a time.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


import common                       # first: puts the checkout on sys.path
from common import FUSED, REF, TORCH, TRAIN, fresh_heap, print_table, timeit, torch, write_json
import numpy as np

from tinygradlm import kernels, profiler

SHAPES = {
    "baby": {"about": "nanoGPT's CPU baby GPT", "batch_size": 12,
             "model": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0,
                           bias=True)},
    "nano": {"about": "nanoGPT's Shakespeare-char shape", "batch_size": 8,
             "model": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.0,
                           bias=True)},
}
N_BATCHES = 16              # distinct batches each implementation cycles through
# Per shape: interleaved rounds of (warm-up + timed) steps, profiled steps (tinygradlm's and
# torch's), training steps of the memory children, and whether the reference kernels race.
CONFIGS = {
    "full": {"baby": {"rounds": 5, "warmup": 2, "steps": 6, "profile_steps": 10,
                      "torch_profile_steps": 5, "memory_steps": 5, "reference": True},
             "nano": {"rounds": 3, "warmup": 1, "steps": 2, "profile_steps": 2,
                      "torch_profile_steps": 2, "memory_steps": 3, "reference": False},
             "peak_repeats": 10, "gen_repeats": 7, "gen_warmup": 1, "cold": True},
    "quick": {"baby": {"rounds": 3, "warmup": 1, "steps": 3, "profile_steps": 4,
                       "torch_profile_steps": 3, "memory_steps": 2, "reference": True},
              "nano": {"rounds": 2, "warmup": 1, "steps": 1, "profile_steps": 1,
                       "torch_profile_steps": 1, "memory_steps": 2, "reference": False},
              "peak_repeats": 3, "gen_repeats": 2, "gen_warmup": 1, "cold": False},
}
GEN_NEW_TOKENS = 63         # a 1-token prompt + 63 new tokens = the baby's block_size 64
COLD_STEPS = 2              # the cold child's steps: the first compiles, the second does not
CHILD_TIMEOUT_S = 600
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def model_config(shape, vocab_size):
    return {**SHAPES[shape]["model"], "vocab_size": vocab_size}


def shape_title(shape):
    s = SHAPES[shape]
    return (f"{shape} ({s['about']}): " + ", ".join(f"{k}={v}" for k, v in s["model"].items()) +
            f", batch {s['batch_size']}")


# --- case 1: training step, interleaved rounds ----------------------------------------------
def build_implementations(shape, vocab_size, batches, with_reference):
    """The fused (and maybe reference) tinygradlm GPT and torch's copy, all from the same
    weights, their step functions on ``batches``, and the first-batch loss check."""
    config = model_config(shape, vocab_size)
    models = {FUSED: common.build_gpt(config)}
    if with_reference:
        models[REF] = common.build_gpt(config)
    if torch:
        models[TORCH] = common.torch_gpt_like(models[FUSED])
    losses = {name: common.first_loss(name, m, batches[0]) for name, m in models.items()}
    steps = {name: common.step_fn(name, m, batches) for name, m in models.items()}
    return models, steps, common.loss_check(losses)


def race(steps, cfg, tokens):
    """``common.time_rounds`` over the step functions; tokens/s and the speed ratios."""
    times = common.time_rounds(steps, cfg["rounds"], cfg["steps"], cfg["warmup"])
    for t in times.values():
        t["tokens_per_s"] = tokens / t["median_s"]
    speed = {name: common.round_ratios(times, TORCH, name)
             for name in times if TORCH in times and name != TORCH}
    return {"times": times, "speed_vs_torch": speed,
            "speed_is": "torch_ms / tinygradlm_ms: above 1 = tinygradlm is faster; per round "
                        "the ratio of the round's medians"}


def finish_loss_check(check, steps):
    """The losses after the same number of identical steps (recorded, not checked)."""
    last = {name: step.state["losses"][-1] for name, step in steps.items()}
    check["loss_after_identical_steps"] = last
    check["identical_steps"] = {name: step.state["i"] for name, step in steps.items()}
    check["loss_after_steps_max_abs_diff"] = max(last.values()) - min(last.values())
    return check


# --- case 2: MFU (FLOPs per step: common.flops_per_step) ----------------------------------
def measure_peak(repeats, n=2048):
    """Best-of float32 matmul GFLOP/s: NumPy (the peak used) and torch (recorded)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = {"n": n, "flops_per_matmul": 2 * n ** 3, "repeats": repeats}
    fns = {"numpy": lambda: a @ b}
    if torch:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fns["torch"] = lambda: ta @ tb
    for name, t in timeit(fns, repeats, 2).items():
        out[f"{name}_best_s"] = t["min_s"]
        out[f"{name}_gflops"] = 2 * n ** 3 / t["min_s"] / 1e9
    return out


def mfu_record(model, batch_size, times, peak):
    fl = common.flops_per_step(model, batch_size)
    peak_flops = peak["numpy_gflops"] * 1e9
    return {**fl, "peak_used": "numpy_gflops",
            "per_implementation": {name: fl["flops_per_step"] / t["median_s"] / peak_flops
                                   for name, t in times.items()},
            "achieved_gflops": {name: fl["flops_per_step"] / t["median_s"] / 1e9
                                for name, t in times.items()}}


# --- case 3: profile ------------------------------------------------------------------------
def profile_tg(step, n_steps):
    """``tinygradlm.profiler`` over ``n_steps`` calls of ``step``: (the record with the rows,
    totals in seconds, and the means per step; the table as text)."""
    prof = profiler.profile()
    prof.start()
    try:
        for _ in range(n_steps):
            step()
            prof.step()
    finally:
        prof.stop()
    rows = [{**dataclasses.asdict(r), "total_s": r.total_s,
             "ms_per_step": r.total_s / n_steps * 1e3} for r in prof.key_averages()]
    return ({"steps": n_steps, "wall_s": prof.wall_s,
             "ms_per_step": prof.wall_s / n_steps * 1e3, "rows": rows,
             "note": "tinygradlm.profiler: totals over the steps; kernel rows are inside their "
                     "op's time; share in percent of the profiled wall time"},
            prof.table(row_limit=14))


def profile_torch(step, n_steps):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n_steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return {"steps": n_steps, "note": "torch.profiler self CPU time (profiler overhead included)",
            "rows": [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / n_steps,
                      "calls_per_step": e.count / n_steps,
                      "pct": 100 * e.self_cpu_time_total / total} for e in events[:12]]}


def case_profile(shape, steps, cfg):
    """tinygradlm's profile (fused; reference too where it raced) and torch's, printed."""
    fresh_heap()
    out = {}
    out["fused"], table = profile_tg(steps[FUSED], cfg["profile_steps"])
    if REF in steps:
        out["reference"], _ = profile_tg(steps[REF], cfg["profile_steps"])
    print(f"\nwhere a tinygradlm step goes ({shape}, fused kernels, tinygradlm.profiler, "
          f"{cfg['profile_steps']} steps)\n")
    print(table)
    if TORCH in steps:
        out["torch"] = profile_torch(steps[TORCH], cfg["torch_profile_steps"])
        print_torch_profile(shape, out["torch"])
    return out


# --- case 4: generation with and without the KV cache ---------------------------------------
def case_generation(model, first_token, cfg):
    prompt = np.array([[first_token]], dtype=np.int64)
    outs = {}

    def gen(use_cache):
        def run():
            outs[use_cache] = model.generate(prompt, max_new_tokens=GEN_NEW_TOKENS,
                                             do_sample=False, use_cache=use_cache)
        return run
    times = timeit({"use_cache=True": gen(True), "use_cache=False": gen(False)},
                   cfg["gen_repeats"], cfg["gen_warmup"])
    for t in times.values():
        t["tokens_per_s"] = GEN_NEW_TOKENS / t["median_s"]
    same = bool(np.array_equal(outs[True].data, outs[False].data))
    return {"prompt_tokens": 1, "new_tokens": GEN_NEW_TOKENS, "batch": 1, "do_sample": False,
            "kernels": kernels.mode(), "times": times, "same_tokens": same,
            "speedup_cache": times["use_cache=False"]["median_s"] /
            times["use_cache=True"]["median_s"]}


# --- cases 5 and 6: a training run in a fresh interpreter -----------------------------------
# The child_* functions and train_child run in the child, not here: run_child sends their
# source with ``python -c``, so they import what they need themselves and use nothing else of
# this module.  (Importing this module, or common, would import torch, hypothesis and tests/
# into every child and inflate its memory by hundreds of MiB.)  Their steps are
# common.tg_step_fn's and common.torch_step_fn's, written again for that reason.
def child_rss_kib(field="VmRSS"):
    """This process' resident memory now (``VmHWM``: its peak so far), KiB, from
    /proc/self/status; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def child_tinygradlm_step(spec, batches):
    """tinygradlm's GPT and its training step (fused kernels); Numba and every kernel module
    are imported first, so that the baseline RSS has them."""
    import tinygradlm as tg
    from tinygradlm import backend, kernels, optim
    from tinygradlm.nn import GPT, GPTConfig
    info = {"malloc_tuned": bool(spec["tune_malloc"] and backend.tune_malloc())}
    for name in kernels._MODULES:
        kernels.load(name)
    train = spec["train"]
    tg.manual_seed(train["seed"])
    model = GPT(GPTConfig(**spec["config"]))
    model.train()
    opt = model.configure_optimizers(train["weight_decay"], train["learning_rate"],
                                     tuple(train["betas"]), train["eps"])
    params = list(model.parameters())
    tensors = [(tg.Tensor(x), tg.Tensor(y)) for x, y in batches]

    def step(i):
        x, y = tensors[i % len(tensors)]
        with kernels.use("fused"):
            _, loss = model(x, y)
            loss.backward()
            optim.clip_grad_norm_(params, train["grad_clip"])
            opt.step()
            opt.zero_grad()
        return loss.item()
    return step, info


def child_torch_step(spec, batches):
    """tests/torch_reference.py's GPT, initialised as GPT-2 (normal(0, 0.02) weights, zero
    biases; not tinygradlm's values, which memory does not depend on), and torch's step."""
    from types import SimpleNamespace
    import torch
    from torch_reference import build_torch_gpt
    torch.set_num_threads(spec["threads"])
    train = spec["train"]
    torch.manual_seed(train["seed"])
    model = build_torch_gpt(SimpleNamespace(**spec["config"])).train()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
            elif not name.split(".")[-2].startswith("ln"):
                p.zero_()               # biases (LayerNorms keep their ones and zeros)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": train["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=train["learning_rate"], betas=tuple(train["betas"]),
                            eps=train["eps"])
    params = list(model.parameters())
    tensors = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]

    def step(i):
        x, y = tensors[i % len(tensors)]
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, train["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    return step, {"malloc_tuned": False, "torch_threads": torch.get_num_threads()}


def child_compiled_kernels():
    """{kernel: compiled signatures, and how many came from Numba's cache} for every
    ``ParallelKernel`` (its parallel and serial dispatchers) and Numba dispatcher defined in
    the ``tinygradlm.kernels`` modules loaded now."""
    import sys
    from numba.core.dispatcher import Dispatcher
    from tinygradlm.kernels.jit import ParallelKernel

    def record(d):
        hits = sum(d.stats.cache_hits.values())
        return {"signatures": len(d.signatures), "from_cache": hits,
                "compiled": len(d.signatures) - hits}
    out = {}
    for modname in sorted(m for m in sys.modules if m.startswith("tinygradlm.kernels.")):
        for attr, obj in vars(sys.modules[modname]).items():
            if isinstance(obj, ParallelKernel) and obj.parallel.py_func.__module__ == modname:
                out[f"{modname.rsplit('.', 1)[1]}.{attr}"] = {
                    "parallel": record(obj.parallel), "serial": record(obj.serial)}
            elif isinstance(obj, Dispatcher) and obj.py_func.__module__ == modname:
                out[f"{modname.rsplit('.', 1)[1]}.{attr}"] = {"njit": record(obj)}
    return out


def train_child(spec):
    """Build ``spec``'s model (tinygradlm's or torch's) and optimizer, then make
    ``spec["steps"]`` training steps on random batches; print one JSON line: times (seconds
    since the parent spawned this process, and per step), RSS before the first step and
    after each, the peak, and with ``list_kernels`` the compiled kernels."""
    import json
    import sys
    import time

    def since():                    # wall clock, so that it counts from the parent's spawn
        return time.time() - spec["spawn_time"]
    sys.path[:0] = spec["paths"]
    import numpy as np
    out = {"impl": spec["impl"], "started_s": since()}
    rng = np.random.default_rng(0)
    shape, vocab = (spec["batch_size"], spec["config"]["block_size"]), spec["config"]["vocab_size"]
    batches = [tuple(rng.integers(0, vocab, shape, dtype=np.int64) for _ in "xy")
               for _ in range(2)]
    make = child_torch_step if spec["impl"] == "torch" else child_tinygradlm_step
    step, info = make(spec, batches)
    out.update(info, ready_s=since(), rss_before_first_step_kib=child_rss_kib())
    for key in ("step_s", "losses", "rss_after_step_kib", "peak_after_step_kib"):
        out[key] = []
    for i in range(spec["steps"]):
        t0 = time.perf_counter()
        out["losses"].append(step(i))
        out["step_s"].append(time.perf_counter() - t0)
        out["rss_after_step_kib"].append(child_rss_kib())
        out["peak_after_step_kib"].append(child_rss_kib("VmHWM"))
        if i == 0:
            out["first_step_end_s"] = since()
    # The peak: VmHWM, the high-water mark of this program's memory.  Not ``ru_maxrss``
    # alone: Linux carries it over exec from the process that was forked (here the parent,
    # torch and all), so a small child reports at least its parent's size.
    import resource
    out["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_kib"] = child_rss_kib("VmHWM") or out["ru_maxrss_kib"]
    if spec.get("list_kernels"):
        out["kernels"] = child_compiled_kernels()
    print(json.dumps(out))


CHILD_FUNCTIONS = (child_rss_kib, child_tinygradlm_step, child_torch_step,
                   child_compiled_kernels, train_child)


def run_child(spec, env=None):
    """``train_child(spec)`` in a fresh ``python -c``; its JSON record, or the error."""
    program = ("\n\n".join(inspect.getsource(f) for f in CHILD_FUNCTIONS) +
               "\n\nimport json, sys\ntrain_child(json.loads(sys.argv[1]))\n")
    spec = {**spec, "paths": [common.ROOT, os.path.join(common.ROOT, "tests")],
            "train": TRAIN, "spawn_time": time.time()}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", program, json.dumps(spec)],
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"timed out after {CHILD_TIMEOUT_S} s"}
    if proc.returncode != 0:
        return {"status": "error", "returncode": proc.returncode,
                "stderr_tail": proc.stderr.splitlines()[-15:]}
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"status": "ok", **rec, "process_wall_s": time.perf_counter() - t0}


def child_spec(shape, impl, vocab_size, steps, args, threads):
    return {"impl": impl, "config": model_config(shape, vocab_size),
            "batch_size": SHAPES[shape]["batch_size"], "steps": steps, "threads": threads,
            "tune_malloc": not args.system_malloc}


def thread_env(args):
    """The children get the parent's threads (torch's: ``spec["threads"]``)."""
    return {v: str(args.threads) for v in THREAD_VARS} if args.threads else {}


def case_memory(shape, vocab_size, cfg, args, threads):
    """Each side's child: RSS before the first step, peak, and their difference; ours/torch."""
    impls = [FUSED] + ([TORCH] if torch else [])
    runs = {}
    for impl in impls:
        spec = child_spec(shape, "torch" if impl == TORCH else "fused", vocab_size,
                          cfg["memory_steps"], args, threads)
        rec = run_child(spec, thread_env(args))
        if rec["status"] == "ok":
            rec["peak_mib"] = rec["peak_kib"] / 1024
            rec["before_first_step_mib"] = rec["rss_before_first_step_kib"] / 1024
            rec["training_mib"] = rec["peak_mib"] - rec["before_first_step_mib"]
        runs[impl] = rec
    out = {"runs": runs, "steps": cfg["memory_steps"],
           "note": "peak = VmHWM (else ru_maxrss, which on Linux includes the parent's size "
                   "at the fork) of a fresh interpreter that imports only its library; "
                   "training = peak - VmRSS just before the first step; random token batches"}
    if all(runs.get(i, {}).get("status") == "ok" for i in (FUSED, TORCH)):
        ours, theirs = runs[FUSED], runs[TORCH]
        out["ours_over_torch"] = {
            "peak": ours["peak_mib"] / theirs["peak_mib"],
            "training": (ours["training_mib"] / theirs["training_mib"]
                         if theirs["training_mib"] > 0 else float("nan"))}
        out["target"] = "peak memory <= PyTorch's (ours_over_torch.peak <= 1)"
    return out


def case_cold(vocab_size, args, threads):
    """The baby's first fused step with an empty Numba cache, then with the cache it filled."""
    cache = tempfile.mkdtemp(prefix="tinygradlm-numba-cache-")
    env = {**thread_env(args), "NUMBA_CACHE_DIR": cache}
    spec = {**child_spec("baby", "fused", vocab_size, COLD_STEPS, args, threads),
            "list_kernels": True}
    try:
        runs = {"cold": run_child(spec, env), "warm": run_child(spec, env)}
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out = {"runs": runs, "shape": "baby", "kernels": "fused",
           "measured": "seconds from spawning the process to the end of its first training "
                       "step (imports, model, first step); cold: empty NUMBA_CACHE_DIR, warm: "
                       "the cache the cold run filled",
           "target": "compile cost (cold - warm) <= 5 s"}
    if all(r["status"] == "ok" for r in runs.values()):
        out["cold_s"] = runs["cold"]["first_step_end_s"]
        out["warm_s"] = runs["warm"]["first_step_end_s"]
        out["compile_cost_s"] = out["cold_s"] - out["warm_s"]
    return out


# --- reporting ------------------------------------------------------------------------------
def print_step_table(shape, step, label):
    times, speed, mfu = step["times"], step["speed_vs_torch"], step["mfu"]
    t0 = next(iter(times.values()))
    print(f"\n{shape}: ms per training step, {label}: {t0['rounds']} interleaved rounds x "
          f"({t0['warmup_per_round']} warm-up + {t0['steps_per_round']} timed steps) each")
    rows = []
    for name, t in times.items():
        s = speed.get(name)
        rows.append([name, f"{t['median_s'] * 1e3:.1f}", f"{t['min_s'] * 1e3:.1f}",
                     f"{t['stdev_s'] * 1e3:.1f}", f"{t['tokens_per_s']:,.0f}",
                     f"{100 * mfu['per_implementation'][name]:.1f}%",
                     f"{s['ratio_of_medians']:.2f}x" if s else "-",
                     f"{s['mean']:.2f} ± {s['std']:.2f}" if s else "-"])
    print_table(["implementation", "median ms", "min ms", "sd ms", "tokens/s", "MFU",
                 "vs torch (medians)", "vs torch (rounds)"], rows, "lrrrrrrr")


def print_loss_check(chk):
    flag = "OK" if chk["match"] else "*** MISMATCH ***"
    print(f"\nloss check: first batch {flag} (max diff {chk['max_abs_diff']:.2e}); after "
          f"{next(iter(chk['identical_steps'].values()))} identical steps: " +
          ", ".join(f"{k} {v:.4f}" for k, v in chk["loss_after_identical_steps"].items()) +
          f" (max diff {chk['loss_after_steps_max_abs_diff']:.1e})")


def print_torch_profile(shape, tprof, top=8):
    print(f"\ntorch's top ops ({shape}, {tprof['note']}, {tprof['steps']} steps)")
    print_table(["op", "self ms/step", "%", "calls/step"],
                [[r["op"], f"{r['self_ms_per_step']:.2f}", f"{r['pct']:.1f}%",
                  f"{r['calls_per_step']:.0f}"] for r in tprof["rows"][:top]], "lrrr")


def print_generation(g):
    print(f"\ngeneration (baby, 1-token prompt, {g['new_tokens']} new tokens, greedy, "
          f"{g['kernels']} kernels)")
    print_table(["KV cache", "median ms", "min ms", "tokens/s"],
                [[name, f"{t['median_s'] * 1e3:.1f}", f"{t['min_s'] * 1e3:.1f}",
                  f"{t['tokens_per_s']:,.0f}"] for name, t in g["times"].items()], "lrrr")
    print(f"\nKV-cache speed-up: {g['speedup_cache']:.2f}x; same tokens with and without: "
          f"{'yes' if g['same_tokens'] else '*** NO ***'}")


def print_memory(memory):
    print("\npeak resident memory, each side in a fresh interpreter (MiB)")
    rows = []
    for shape, mem in memory.items():
        for impl, r in mem["runs"].items():
            if r["status"] != "ok":
                rows.append([shape, impl, "error", "", "", ""])
                continue
            rows.append([shape, impl, f"{r['before_first_step_mib']:.0f}",
                         f"{r['peak_mib']:.0f}", f"{r['training_mib']:.0f}",
                         f"{len(r['step_s'])}"])
    print_table(["shape", "implementation", "before 1st step", "peak", "training (peak - "
                 "before)", "steps"], rows, "llrrrr")
    for shape, mem in memory.items():
        if "ours_over_torch" in mem:
            r = mem["ours_over_torch"]
            print(f"{shape}: ours / torch: peak {r['peak']:.2f}x, training {r['training']:.2f}x"
                  f"  (target: peak <= 1)")


def print_cold(cold):
    print("\nfirst-run compile cost (baby, fused kernels; each run a fresh interpreter)")
    rows = []
    for name, r in cold["runs"].items():
        if r["status"] != "ok":
            rows.append([name, "error: " + str(r.get("error") or r.get("stderr_tail")),
                         "", "", "", ""])
            continue
        ks = [d for k in r["kernels"].values() for d in k.values()]
        rows.append([name, f"{r['first_step_end_s']:.2f}", f"{r['ready_s']:.2f}",
                     f"{r['step_s'][0]:.2f}", f"{r['step_s'][1]:.3f}",
                     f"{sum(d['compiled'] for d in ks)} / {sum(d['from_cache'] for d in ks)}"])
    print_table(["Numba cache", "start -> end of 1st step (s)", "imports + model (s)",
                 "1st step (s)", "2nd step (s)", "signatures compiled / from cache"], rows,
                "lrrrrr")
    if "compile_cost_s" in cold:
        print(f"\ncompile cost (cold - warm): {cold['compile_cost_s']:.2f} s "
              f"(target <= 5 s)")
    runs = cold["runs"]
    if runs["cold"]["status"] != "ok":
        return
    warm = runs["warm"].get("kernels", {})
    rows, idle = [], 0
    for name, k in runs["cold"]["kernels"].items():
        if not any(v["signatures"] for v in k.values()):
            idle += 1
            continue
        rows.append([name, " / ".join(k), " / ".join(str(v["compiled"]) for v in k.values()),
                     " / ".join(str(v["from_cache"]) for v in warm.get(name, {}).values())
                     or "-"])
    print_table(["kernel", "dispatchers", "compiled (cold run)", "loaded from cache (warm run)"],
                rows, "llrr")
    print(f"({idle} more kernels or helpers defined but not compiled on their own: unused by "
          f"this step, or inlined into their callers)")


# --- the run --------------------------------------------------------------------------------
def run_shape(shape, cfg, args, peak, threads):
    """Cases 1-3 for one shape; (its record, the fused model, the first batch)."""
    batch_size, block = SHAPES[shape]["batch_size"], SHAPES[shape]["model"]["block_size"]
    _, batches, data_info = common.load_batches(args.data, N_BATCHES, batch_size, block)
    print(f"\n## {shape_title(shape)}, vocab {data_info['vocab_size']} "
          f"({os.path.basename(str(data_info['source']))})")
    fresh_heap()
    models, steps, check = build_implementations(shape, data_info["vocab_size"], batches,
                                                 cfg["reference"])
    tokens = batch_size * block
    step = {"quiet": race(steps, cfg, tokens)}
    step["quiet"]["mfu"] = mfu_record(models[FUSED], batch_size, step["quiet"]["times"], peak)
    print_step_table(shape, step["quiet"], "quiet")
    if args.load:
        with common.background_load() as load:
            step["under_load"] = {**race(steps, cfg, tokens), "load": load}
        step["under_load"]["mfu"] = mfu_record(models[FUSED], batch_size,
                                               step["under_load"]["times"], peak)
        print_step_table(shape, step["under_load"], "under load (1 busy process)")
    print_loss_check(finish_loss_check(check, steps))
    print(f"MFU: {step['quiet']['mfu']['flops_per_step'] / 1e9:.2f} GFLOP/step, over the "
          f"measured peak")
    rec = {"model": SHAPES[shape]["model"], "batch_size": batch_size, "tokens_per_step": tokens,
           "data": data_info, "timing": cfg, "step": step, "loss_check": check,
           "profile": case_profile(shape, steps, cfg)}
    return rec, models[FUSED], batches[0], data_info["vocab_size"]


def parse_args(argv):
    parser = common.bench_parser(__doc__, "bench_train", "fewer rounds and steps, no cold "
                                 "case (under a minute)")
    parser.add_argument("--data", default=None,
                        help="corpus (default: Tiny Shakespeare at ../shared/data if present, "
                             "else the embedded stdlib corpus)")
    parser.add_argument("--shapes", default="baby,nano",
                        help=f"comma-separated, from {', '.join(SHAPES)} (default: both)")
    parser.add_argument("--load", action="store_true",
                        help="also time the steps with a busy process spinning on one core")
    parser.add_argument("--cold", action="store_true",
                        help="run only the first-run compile cost case (default out: "
                             "bench_train_cold.json)")
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        parser.error(f"--shapes: unknown {unknown}; choose from {list(SHAPES)}")
    if args.cold and args.out == parser.get_default("out"):
        args.out = os.path.join(common.RESULTS, "bench_train_cold.json")
    return args


def run_cases(args, cfg, result, threads, walls):
    """Cases 1-5: the peak, each shape in process, the generation, the memory children."""
    t0 = time.perf_counter()
    fresh_heap()
    peak = result["peak"] = measure_peak(cfg["peak_repeats"])
    print(f"peak: float32 {peak['n']}^2 NumPy matmul, best of {peak['repeats']}: "
          f"{peak['numpy_gflops']:.1f} GFLOP/s" +
          (f" (torch's: {peak['torch_gflops']:.1f})" if "torch_gflops" in peak else ""))
    walls["peak"] = time.perf_counter() - t0
    result["shapes"], vocab = {}, {}
    for shape in args.shapes:
        t0 = time.perf_counter()
        result["shapes"][shape], model, batch, vocab[shape] = run_shape(
            shape, cfg[shape], args, peak, threads)
        walls[shape] = time.perf_counter() - t0
        if shape == "baby":
            t0 = time.perf_counter()
            fresh_heap()
            result["generation"] = case_generation(model, int(batch[0][0, 0]), cfg)
            print_generation(result["generation"])
            walls["generation"] = time.perf_counter() - t0
        del model, batch
    t0 = time.perf_counter()
    memory = {shape: case_memory(shape, vocab[shape], cfg[shape], args, threads)
              for shape in args.shapes}
    for shape, mem in memory.items():
        result["shapes"][shape]["memory"] = mem
    print_memory(memory)
    walls["memory"] = time.perf_counter() - t0


def main(argv=None):
    args = parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = CONFIGS[mode]
    t_start = time.perf_counter()
    env = common.start_bench(args)
    cpu = common.cpu_record()
    print(common.cpu_summary(cpu))
    threads = env["numpy_blas_threads"]
    result = {**common.result_header("bench_train", "cold only" if args.cold else mode, env),
              "cpu": cpu,
              "config": {"shapes": {s: SHAPES[s] for s in args.shapes},
                         "train": {**TRAIN, "lr_schedule": "constant"}, "timing": cfg,
                         "load": args.load},
              "case_wall_s": {}}
    if not args.cold:
        run_cases(args, cfg, result, threads, result["case_wall_s"])
    if args.cold or cfg["cold"]:
        t0 = time.perf_counter()
        _, _, data_info = common.load_batches(args.data, 1, 1, 2)
        result["cold"] = case_cold(data_info["vocab_size"], args, threads)
        print_cold(result["cold"])
        result["case_wall_s"]["cold"] = time.perf_counter() - t0

    result["cpu"]["numba"]["threading_layer_in_use"] = common.numba_record()[
        "threading_layer_in_use"]
    result["loadavg_at_end"] = common.loadavg()
    result["wall_s"] = time.perf_counter() - t_start
    write_json(args.out, result)
    print(f"total {result['wall_s']:.0f} s (" +
          ", ".join(f"{k} {v:.0f} s" for k, v in result["case_wall_s"].items()) + ")")


if __name__ == "__main__":
    main()
