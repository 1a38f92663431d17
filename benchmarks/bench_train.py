"""How fast does tinygradlm train a GPT?  The baby-GPT training step against PyTorch, same run.

The model is nanoGPT's CPU "baby GPT" (n_layer=4, n_head=4, n_embd=128, block_size=64,
batch_size=12, dropout 0, bias), char-level on Tiny Shakespeare when
``../shared/data/tinyshakespeare.txt`` is there (vocab 65), else on the embedded stdlib corpus.
One training step is ``common.tg_step_fn``'s, exactly ``tinygradlm.train``'s: forward with
targets, backward, ``clip_grad_norm_(1.0)``, AdamW step (lr 1e-3 held constant, betas
(0.9, 0.99), weight decay 0.1 on >= 2-D weights only), ``zero_grad``, ``loss.item()``.

Cases
  1. ``step``: ms per training step and tokens/s for tinygradlm with the fused kernels (the
     default), with ``tinygradlm.kernels.use("reference")``, and the same model in PyTorch,
     ``tests/torch_reference.py``'s (only when torch is importable; the model the tests check
     tinygradlm's logits, loss and gradients against): GPT-2 layout, tanh GELU,
     ``F.scaled_dot_product_attention(is_causal=True)``, LM head tied to ``wte``, the same
     initial weights copied in (tinygradlm's Linear weights are stored (in, out), so they are
     transposed for ``torch.nn.Linear``) and ``torch.optim.AdamW`` + ``clip_grad_norm_``.
     Every implementation starts from the same weights and steps through the same list of
     batches, so each step does the same work.  Before timing, the loss of the first batch is
     computed by each and compared (a mismatch is flagged in the table and the JSON, never
     asserted); the loss of the last step (after the same number of identical steps) is
     recorded as a second check.  The ratio reported is speed relative to torch:
     ``torch_ms / tinygradlm_ms`` (above 1 = tinygradlm is faster).
  2. ``mfu``: model FLOPs utilisation.  FLOPs per step as nanoGPT's ``estimate_mfu`` counts
     them, ``(6 N + 12 n_layer n_embd T) * B * T`` (``common.flops_per_step``).  The peak is
     *measured*: the best time of a float32 2048 x 2048 NumPy matmul
     (2 n^3 FLOPs) with the same threads.  The same matmul in torch is recorded too.
  3. ``profile``: where one tinygradlm step (fused kernels) goes.  ``Function.apply`` (forward
     of every op, including its bookkeeping: checks, the output Tensor) and each op class's
     ``backward`` are wrapped with timers keyed by class name (monkeypatched here, restored
     afterwards; no library file is touched), as are the engine's ``_fit`` (sum a gradient to
     its input's shape) and ``_accumulate`` (leaf ``.grad``); the optimizer step,
     clipping and ``zero_grad`` are timed around their calls.  What is left of the forward /
     backward / step is Python outside the ops (modules, the graph walk, gradient sums).  The
     same for the reference kernels goes into the JSON; torch's own top ops (``torch.profiler``,
     self CPU time) are printed when torch is there.
  4. ``generation``: tokens/s of ``model.generate(prompt, max_new_tokens=63, do_sample=False)``
     from a 1-token prompt (so the sequence stays within block_size) with ``use_cache=True``
     against ``use_cache=False``, and whether both produce the same tokens.  At this size
     a forward pass is ~230 small ops whatever T is, so Python overhead, not compute, sets the
     pace and the cache gains little.  This case is the most sensitive to other load: on busy
     CPUs the small matmuls of the cache-less path can stall, inflating the apparent speed-up.

Timing is ``common.timeit``'s (everything warms up, then each implementation in turn pauses,
warms up again and makes ``repeats`` timed calls; median and min per call, spread in the JSON)
with ``gc.collect(); gc.freeze()`` before each case.  Torch and (with ``--threads``) Numba get
as many threads as NumPy's BLAS.

Run from the repository root:

    python benchmarks/bench_train.py [--quick] [--out PATH] [--threads N] [--data PATH]
                                     [--system-malloc]

``--quick`` does fewer steps (about 10 s; the full run about 20 s).  Results go to
``benchmarks/results/bench_train.json`` unless ``--out`` says otherwise.  Nothing here asserts
on a time.
"""
from __future__ import annotations

import os
import time
from collections import defaultdict

import numpy as np

import common                       # first: puts the checkout on sys.path
from common import (FUSED, MODES, REF, TORCH, TRAIN, fresh_heap, print_table, timeit, torch,
                    write_json)

import tinygradlm as tg
from tinygradlm import autograd, kernels, optim

MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=True)
BATCH_SIZE = 12
CONFIGS = {
    "full": {"warmup": 5, "repeats": 30, "profile_steps": 10, "torch_profile_steps": 5,
             "peak_repeats": 10, "gen_repeats": 7, "gen_warmup": 1},
    "quick": {"warmup": 2, "repeats": 8, "profile_steps": 4, "torch_profile_steps": 3,
              "peak_repeats": 4, "gen_repeats": 2, "gen_warmup": 1},
}
GEN_NEW_TOKENS = 63         # a 1-token prompt + 63 new tokens = block_size 64


# --- case 1: training step ------------------------------------------------------------------
def case_step(cfg, vocab_size, batches):
    """Every implementation from the same weights through the same batches: ms per step, and
    the first-batch loss of each as a check that they compute the same thing."""
    tokens = BATCH_SIZE * MODEL["block_size"]
    config = {**MODEL, "vocab_size": vocab_size}
    models = {name: common.build_gpt(config) for name in MODES}
    if torch:
        models[TORCH] = common.torch_gpt_like(models[FUSED])
    first_loss = {name: common.first_loss(name, m, batches[0]) for name, m in models.items()}
    steps = {name: common.step_fn(name, m, batches) for name, m in models.items()}
    check = common.loss_check(first_loss)
    print("\nfirst-batch loss, same weights: " +
          ", ".join(f"{k} {v:.6f}" for k, v in first_loss.items()) +
          f"  (max diff {check['max_abs_diff']:.2e}: "
          f"{'OK' if check['match'] else '*** MISMATCH ***'})")

    times = timeit(steps, cfg["repeats"], cfg["warmup"])
    last = {name: step.state["losses"][-1] for name, step in steps.items()}
    n_steps = {name: step.state["i"] for name, step in steps.items()}
    check["loss_after_identical_steps"] = last
    check["identical_steps"] = n_steps
    check["loss_after_steps_max_abs_diff"] = max(last.values()) - min(last.values())
    for t in times.values():
        t["tokens_per_s"] = tokens / t["median_s"]
    speed = common.speed_ratios({name: t["median_s"] for name, t in times.items()})
    return {"tokens_per_step": tokens, "times": times, "loss_check": check,
            "speed_ratios": speed, "ratio_is": common.SPEED_RATIO_IS}, models, steps


# --- case 2: MFU (FLOPs per step: common.flops_per_step) ----------------------------------
def measure_peak(repeats, n=2048):
    """Best-of float32 matmul GFLOP/s: NumPy (the peak used) and torch (recorded)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = {"n": n, "flops_per_matmul": 2 * n ** 3}
    fns = {"numpy": lambda: a @ b}
    if torch:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fns["torch"] = lambda: ta @ tb
    for name, t in timeit(fns, repeats, 2).items():
        out[f"{name}_best_s"] = t["min_s"]
        out[f"{name}_gflops"] = 2 * n ** 3 / t["min_s"] / 1e9
    return out


# --- case 3: profile ------------------------------------------------------------------------
class OpTimers:
    """Monkeypatches ``Function.apply``, every op's ``backward`` and the engine's ``_fit`` and
    ``_accumulate`` (``tinygradlm.autograd``) with timers; ``restore()`` puts them back."""

    def __init__(self):
        self.t = defaultdict(float)
        self.n = defaultdict(int)
        self.depth = {"fwd": 0, "bwd": 0}
        self.saved = []

    def _timed(self, fn, kind, key_of):
        timers = self

        def wrapper(*args, **kwargs):
            if timers.depth[kind]:              # nested (super().backward, an op in an op)
                return fn(*args, **kwargs)
            timers.depth[kind] += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                key = key_of(args)
                timers.t[key] += time.perf_counter() - t0
                timers.n[key] += 1
                timers.depth[kind] -= 1
        return wrapper

    def _patch(self, owner, name, value):
        self.saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    def install(self):
        Function = autograd.Function
        apply = Function.__dict__["apply"].__func__
        self._patch(Function, "apply", classmethod(
            self._timed(apply, "fwd", lambda a: ("fwd", a[0].__name__))))
        for cls in all_subclasses(Function):
            if "backward" in cls.__dict__:
                self._patch(cls, "backward", self._timed(
                    cls.__dict__["backward"], "bwd", lambda a: ("bwd", type(a[0]).__name__)))
        self.depth["fit"] = self.depth["acc"] = 0
        self._patch(autograd, "_fit", self._timed(
            autograd._fit, "fit", lambda a: ("engine", "_fit (reduce_to_shape, dtype)")))
        self._patch(autograd, "_accumulate", self._timed(
            autograd._accumulate, "acc", lambda a: ("engine", "_accumulate (leaf .grad)")))
        return self

    def restore(self):
        for owner, name, value in reversed(self.saved):
            setattr(owner, name, value)
        self.saved = []


def all_subclasses(cls):
    out = []
    for sub in cls.__subclasses__():
        out += [sub] + all_subclasses(sub)
    return out


def profile_tg(model, opt, batches, mode, n_steps, warmup=2):
    """Per-step seconds by op (forward, backward), optimizer, clipping and the rest."""
    params = list(model.parameters())
    tensors = [(tg.Tensor(x), tg.Tensor(y)) for x, y in batches]
    parts = defaultdict(float)
    timers = OpTimers().install()
    try:
        for i in range(warmup + n_steps):
            if i == warmup:                         # the timers count from here
                timers.t.clear(), timers.n.clear(), parts.clear()
            x, y = tensors[i % len(tensors)]
            with kernels.use(mode):
                t0 = time.perf_counter()
                _, loss = model(x, y)
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                optim.clip_grad_norm_(params, TRAIN["grad_clip"])
                t3 = time.perf_counter()
                opt.step()
                t4 = time.perf_counter()
                opt.zero_grad()
                t5 = time.perf_counter()
            loss.item()
            t6 = time.perf_counter()
            for k, a, b in (("forward", t0, t1), ("backward", t1, t2), ("clip", t2, t3),
                            ("optimizer", t3, t4), ("zero_grad", t4, t5), ("step", t0, t6)):
                parts[k] += b - a
    finally:
        timers.restore()
    per = {k: v / n_steps for k, v in parts.items()}
    ops = {k: v / n_steps for k, v in timers.t.items()}
    calls = {k: v / n_steps for k, v in timers.n.items()}
    fwd_ops = sum(v for (kind, _), v in ops.items() if kind == "fwd")
    bwd_ops = sum(v for (kind, _), v in ops.items() if kind in ("bwd", "engine"))
    rows = [{"where": f"{kind} {name}" if kind != "engine" else f"backward engine: {name}",
             "s_per_step": v, "calls_per_step": calls[(kind, name)]}
            for (kind, name), v in ops.items()]
    rows += [
        {"where": "forward: Python outside ops (modules, checks, embedding ids)",
         "s_per_step": per["forward"] - fwd_ops},
        {"where": "backward engine: graph walk, gradient sums", "s_per_step":
         per["backward"] - bwd_ops},
        {"where": "clip_grad_norm_", "s_per_step": per["clip"]},
        {"where": "AdamW step", "s_per_step": per["optimizer"]},
        {"where": "zero_grad", "s_per_step": per["zero_grad"]},
        {"where": "rest (loss.item, loop)", "s_per_step":
         per["step"] - per["forward"] - per["backward"] - per["clip"] - per["optimizer"]
         - per["zero_grad"]},
    ]
    for r in rows:
        r["pct_of_step"] = 100 * r["s_per_step"] / per["step"]
    rows.sort(key=lambda r: -r["s_per_step"])
    return {"mode": mode, "steps": n_steps, "instrumented_step_s": per["step"],
            "forward_s": per["forward"], "backward_s": per["backward"],
            "ops_forward_calls_per_step": sum(v for (k, _), v in calls.items() if k == "fwd"),
            "rows": rows}


def profile_torch(step, n_steps):
    from torch.profiler import ProfilerActivity, profile
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n_steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return {"steps": n_steps, "note": "torch.profiler self CPU time (profiler overhead included)",
            "rows": [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / n_steps,
                      "calls_per_step": e.count / n_steps,
                      "pct": 100 * e.self_cpu_time_total / total} for e in events[:12]]}


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


# --- reporting ------------------------------------------------------------------------------
def print_step_table(step, mfu):
    times = step["times"]
    print_table(["implementation", "median ms/step", "min ms/step", "tokens/s", "MFU",
                 "speed vs torch"],
                [[name, f"{t['median_s'] * 1e3:.1f}", f"{t['min_s'] * 1e3:.1f}",
                  f"{t['tokens_per_s']:,.0f}", f"{100 * mfu['per_implementation'][name]:.1f}%",
                  f"{times[TORCH]['median_s'] / t['median_s']:.2f}x" if torch else "-"]
                 for name, t in times.items()], "lrrrrr")
    chk = step["loss_check"]
    flag = "OK" if chk["match"] else "*** MISMATCH ***"
    print(f"\nloss check: first batch {flag} (max diff {chk['max_abs_diff']:.2e}); after "
          f"{next(iter(chk['identical_steps'].values()))} identical steps: " +
          ", ".join(f"{k} {v:.4f}" for k, v in chk["loss_after_identical_steps"].items()))
    print(f"MFU: {mfu['flops_per_step'] / 1e9:.2f} GFLOP/step = {mfu['formula']}; peak = "
          f"float32 {mfu['peak']['n']}^2 NumPy matmul, best of {mfu['peak_repeats']}: "
          f"{mfu['peak']['numpy_gflops']:.1f} GFLOP/s" +
          (f" (torch's: {mfu['peak']['torch_gflops']:.1f})" if "torch_gflops" in mfu["peak"]
           else ""))


def print_profile(prof, step_median_s, top=12):
    print(f"\nwhere a tinygradlm step goes ({prof['mode']} kernels, {prof['steps']} instrumented "
          f"steps: {prof['instrumented_step_s'] * 1e3:.1f} ms/step vs {step_median_s * 1e3:.1f} "
          f"uninstrumented; forward {prof['forward_s'] * 1e3:.1f} ms, backward "
          f"{prof['backward_s'] * 1e3:.1f} ms, {prof['ops_forward_calls_per_step']:.0f} ops)")
    rows = [[r["where"], f"{r['s_per_step'] * 1e3:.2f}", f"{r['pct_of_step']:.1f}%",
             f"{r['calls_per_step']:.0f}" if "calls_per_step" in r else ""]
            for r in prof["rows"][:top]]
    rest = prof["rows"][top:]
    if rest:
        rows.append([f"({len(rest)} more entries)",
                     f"{sum(r['s_per_step'] for r in rest) * 1e3:.2f}",
                     f"{sum(r['pct_of_step'] for r in rest):.1f}%", ""])
    print_table(["where", "ms/step", "% of step", "calls/step"], rows, "lrrr")


def print_torch_profile(tprof, top=8):
    print(f"\ntorch's top ops ({tprof['note']}, {tprof['steps']} steps)")
    print_table(["op", "self ms/step", "%", "calls/step"],
                [[r["op"], f"{r['self_ms_per_step']:.2f}", f"{r['pct']:.1f}%",
                  f"{r['calls_per_step']:.0f}"] for r in tprof["rows"][:top]], "lrrr")


def print_generation(g):
    print(f"\ngeneration (1-token prompt, {g['new_tokens']} new tokens, greedy, "
          f"{g['kernels']} kernels)")
    print_table(["KV cache", "median ms", "min ms", "tokens/s"],
                [[name, f"{t['median_s'] * 1e3:.1f}", f"{t['min_s'] * 1e3:.1f}",
                  f"{t['tokens_per_s']:,.0f}"] for name, t in g["times"].items()], "lrrr")
    print(f"\nKV-cache speed-up: {g['speedup_cache']:.2f}x; same tokens with and without: "
          f"{'yes' if g['same_tokens'] else '*** NO ***'}")


def main(argv=None):
    parser = common.bench_parser(__doc__, "bench_train", "fewer steps (about 10 s)")
    parser.add_argument("--data", default=None,
                        help="corpus (default: Tiny Shakespeare at ../shared/data if present, "
                             "else the embedded stdlib corpus)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = CONFIGS[mode]
    t_start = time.perf_counter()

    env = common.start_bench(args)
    _, batches, data_info = common.load_batches(args.data, 16, BATCH_SIZE, MODEL["block_size"])
    print(f"baby GPT {MODEL}, batch {BATCH_SIZE}, vocab {data_info['vocab_size']} "
          f"({os.path.basename(str(data_info['source']))}); {cfg['warmup']} warm-up + "
          f"{cfg['repeats']} timed steps each")

    fresh_heap()
    step, models, steps = case_step(cfg, data_info["vocab_size"], batches)

    fresh_heap()
    fl = common.flops_per_step(models[FUSED], BATCH_SIZE)
    peak = measure_peak(cfg["peak_repeats"])
    peak_flops = peak["numpy_gflops"] * 1e9
    mfu = {**fl, "peak": peak, "peak_repeats": cfg["peak_repeats"],
           "peak_used": "numpy_gflops",
           "per_implementation": {name: fl["flops_per_step"] / t["median_s"] / peak_flops
                                  for name, t in step["times"].items()},
           "achieved_gflops": {name: fl["flops_per_step"] / t["median_s"] / 1e9
                               for name, t in step["times"].items()}}
    print_step_table(step, mfu)

    fresh_heap()
    profiles = {m: profile_tg(models[name], steps[name].opt, batches, m, cfg["profile_steps"])
                for m, name in (("fused", FUSED), ("reference", REF))}
    print_profile(profiles["fused"], step["times"][FUSED]["median_s"])
    tprof = None
    if torch:
        tprof = profile_torch(steps[TORCH], cfg["torch_profile_steps"])
        print_torch_profile(tprof)

    fresh_heap()
    gen = case_generation(models[FUSED], int(batches[0][0][0, 0]), cfg)
    print_generation(gen)

    result = {**common.result_header("bench_train", mode, env),
              "wall_s": time.perf_counter() - t_start,
              "config": {"model": MODEL, "train": {"batch_size": BATCH_SIZE, **TRAIN,
                                   "lr_schedule": "constant"},
                         "timing": cfg},
              "data": data_info, "step": step, "mfu": mfu, "profile": profiles,
              "torch_profile": tprof, "generation": gen}
    write_json(args.out, result)
    print(f"total {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
