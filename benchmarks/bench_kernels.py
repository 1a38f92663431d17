"""How much do tinygradlm's fused kernels buy?  Fused vs reference (vs torch) in the same run.

Every case times forward + backward, float32, through the public API
(``tinygradlm.nn.functional``): the fused kernels (the default), the plain composites under
``with tinygradlm.kernels.use("reference"):``, and PyTorch when it is installed.  Timing is
``common.timeit``'s: everything warms up, then each implementation in turn warms up again and
makes ``repeats`` timed calls; the table shows median and min per call and the ratios of the
medians.  Before timing, each case also checks that fused and
reference agree (output and input gradients, max abs difference; recorded in the JSON).

Cases
  1. ``softmax``:   last-axis softmax on (768, 65), (768, 2048) and the attention-like
                    (12*4*256, 256).  Torch: ``torch.softmax``.
  2. ``cross_entropy``: logits (768, V), V in {65, 2048, 50257} (quick: 65, 2048), mean loss.
                    Torch: ``torch.nn.functional.cross_entropy``.
  3. ``attention``: B=12, H=4, D=32, causal, T in {64, 256, 1024} (quick: 64, 256).  Torch:
                    ``scaled_dot_product_attention(is_causal=True)``.  The reference at T=1024
                    takes seconds per call, so that row uses fewer repeats.
  4. ``attention_memory``: peak extra memory (tracemalloc, started after the inputs exist) of
                    one attention forward + backward at T=1024 (quick: T=256), fused vs
                    reference.  tracemalloc sees NumPy's allocations made from Python; Numba's
                    own buffers inside a kernel are not seen.  They are O(T*D) per thread:
                    zero-padded copies of one head's K^T and V^T (and its dK^T, dV^T sums in
                    backward) plus a few rows of scores; at T=1024, D=32 about 0.5 MiB per
                    thread in float32, against the reference's T x T score matrices.
  5. ``compile``:   seconds for the first fused softmax / cross_entropy / attention call
                    (forward + backward, small inputs) in a fresh ``python -c`` process with
                    ``NUMBA_CACHE_DIR`` pointing at an empty temp dir (cold compile), and again
                    in a second fresh process with the same dir (cached load).  The first
                    kernel timed (softmax) also pays for starting Numba's thread pool.

Targets (printed, never asserted): fused attention >= 3x faster than the reference at T=256;
fused peak memory at T=1024 <= 1/4 of the reference's; stretch goal: match torch.

Run from the repository root:

    python benchmarks/bench_kernels.py [--quick] [--out PATH] [--threads N] [--skip-compile]
                                       [--system-malloc]

Results go to ``benchmarks/results/bench_kernels.json`` unless ``--out`` says otherwise.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc


import common                       # first: puts the checkout on sys.path
from common import ROOT, fresh_heap, print_table, timeit, torch, write_json
import numpy as np

import tinygradlm as tg
from tinygradlm import kernels
import tinygradlm.nn.functional as F

FUSED, REF, TORCH = "fused", "reference", "torch"


def time_modes(make, atol, repeats, warmup):
    """Time the steps ``make(mode)`` builds for fused, reference and torch, after checking
    that fused and reference agree (max abs difference of every output within ``atol``)."""
    fns = {FUSED: make(FUSED), REF: make(REF)}
    if torch:
        fns[TORCH] = make(TORCH)
    outs = {m: [np.asarray(a, np.float64) for a in fns[m]()] for m in (FUSED, REF)}
    diffs = [float(np.max(np.abs(f - r))) for f, r in zip(outs[FUSED], outs[REF])]
    times = timeit(fns, repeats, warmup)
    return {"times": times, "ratios": common.ratios(times, FUSED, [REF, TORCH]),
            "check": {"max_abs_diff": diffs, "atol": atol, "ok": all(d <= atol for d in diffs)}}


def tg_step(mode, fn):
    """A tinygradlm step under the given kernel mode."""
    def step():
        with kernels.use(mode):
            return fn()
    return step


# --- case 1: softmax -----------------------------------------------------------------------
def case_softmax(shape, repeats, warmup):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    xt = tg.Tensor(x, requires_grad=True)

    def make(mode):
        if mode == TORCH:
            x_t = torch.tensor(x, requires_grad=True)
            g_t = torch.from_numpy(g)

            def step():
                x_t.grad = None
                y = torch.softmax(x_t, -1)
                y.backward(g_t)
                return [y.detach().numpy(), x_t.grad.numpy()]
            return step

        def fb():
            xt.grad = None
            y = F.softmax(xt, -1)
            y.backward(gradient=g)
            return [y.data, xt.grad.data]
        return tg_step(mode, fb)

    return {"what": f"softmax {shape}", "shape": list(shape),
            **time_modes(make, 1e-5, repeats, warmup)}


# --- case 2: cross-entropy -----------------------------------------------------------------
def case_cross_entropy(N, V, repeats, warmup):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, V)).astype(np.float32)
    t = rng.integers(0, V, N).astype(np.int64)
    xt, tt = tg.Tensor(x, requires_grad=True), tg.Tensor(t)

    def make(mode):
        if mode == TORCH:
            x_t = torch.tensor(x, requires_grad=True)
            t_t = torch.from_numpy(t)

            def step():
                x_t.grad = None
                loss = torch.nn.functional.cross_entropy(x_t, t_t)
                loss.backward()
                return [loss.detach().numpy(), x_t.grad.numpy()]
            return step

        def fb():
            xt.grad = None
            loss = F.cross_entropy(xt, tt)
            loss.backward()
            return [loss.data, xt.grad.data]
        return tg_step(mode, fb)

    return {"what": f"cross_entropy ({N}, {V})", "shape": [N, V],
            **time_modes(make, 1e-5, repeats, warmup)}


# --- case 3: attention ---------------------------------------------------------------------
def attention_inputs(B, H, T, D):
    rng = np.random.default_rng(2)
    q, k, v, g = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
    return q, k, v, g


def tg_attention_step(q, k, v, g):
    qt, kt, vt = (tg.Tensor(a, requires_grad=True) for a in (q, k, v))

    def fb():
        for t in (qt, kt, vt):
            t.grad = None
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
        out.backward(gradient=g)
        return [out.data] + [t.grad.data for t in (qt, kt, vt)]
    return fb


def case_attention(B, H, T, D, repeats, warmup):
    q, k, v, g = attention_inputs(B, H, T, D)
    fb = tg_attention_step(q, k, v, g)

    def make(mode):
        if mode == TORCH:
            ts = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
            g_t = torch.from_numpy(g)

            def step():
                for t in ts:
                    t.grad = None
                out = torch.nn.functional.scaled_dot_product_attention(*ts, is_causal=True)
                out.backward(g_t)
                return [out.detach().numpy()] + [t.grad.numpy() for t in ts]
            return step
        return tg_step(mode, fb)

    return {"what": f"attention B={B} H={H} T={T} D={D} causal", "T": T,
            **time_modes(make, 1e-4, repeats, warmup)}


# --- case 4: peak memory -------------------------------------------------------------------
def case_attention_memory(B, H, T, D):
    q, k, v, g = attention_inputs(B, H, T, D)
    fb = tg_attention_step(q, k, v, g)
    for mode in (FUSED, REF):           # compile / warm up outside the trace
        with kernels.use(mode):
            fb()
    peaks = {}
    for mode in (FUSED, REF):
        gc.collect()
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        with kernels.use(mode):
            fb()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peaks[mode] = (peak - base) / 2**20
    inputs = 4 * q.nbytes / 2**20
    return {"what": f"peak extra memory, attention fwd+bwd B={B} H={H} T={T} D={D} causal",
            "T": T, "peak_mib": peaks, "inputs_mib (q,k,v,g)": inputs,
            "ratio fused / reference": peaks[FUSED] / peaks[REF]}


# --- case 5: compile time ------------------------------------------------------------------
COMPILE_SNIPPET = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import tinygradlm as tg
import tinygradlm.nn.functional as F
rng = np.random.default_rng(0)
out = {{}}
x = tg.Tensor(rng.standard_normal((8, 16)).astype(np.float32), requires_grad=True)
t0 = time.perf_counter(); F.softmax(x, -1).backward(gradient=np.ones((8, 16), np.float32))
out["softmax"] = time.perf_counter() - t0
x = tg.Tensor(rng.standard_normal((8, 16)).astype(np.float32), requires_grad=True)
t = tg.Tensor(rng.integers(0, 16, 8).astype(np.int64))
t0 = time.perf_counter(); F.cross_entropy(x, t).backward()
out["cross_entropy"] = time.perf_counter() - t0
q, k, v = (tg.Tensor(rng.standard_normal((1, 2, 8, 4)).astype(np.float32), requires_grad=True)
           for _ in range(3))
t0 = time.perf_counter()
F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(
    gradient=np.ones((1, 2, 8, 4), np.float32))
out["attention"] = time.perf_counter() - t0
print("RESULT" + json.dumps(out))
"""


def case_compile():
    snippet = COMPILE_SNIPPET.format(root=ROOT)
    res = {}
    with tempfile.TemporaryDirectory(prefix="tinygradlm_numba_cache_") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        env.pop("TINYGRADLM_KERNELS", None)         # fused
        for phase in ("cold", "cached"):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", snippet], env=env, cwd=ROOT,
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t0
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
            if proc.returncode or not line:
                res[phase] = {"error": (proc.stderr or proc.stdout)[-2000:]}
                continue
            res[phase] = {**json.loads(line[-1][len("RESULT"):]), "process_wall_s": wall}
    return {"what": "first fused call (fwd+bwd, small inputs) in a fresh process, seconds",
            "results": res}


# --- reporting -----------------------------------------------------------------------------
def print_timed(title, cases, label, targets=None):
    print(f"\n[{title}] forward + backward, float32, ms per call (median / min)")
    rows = []
    for c in cases:
        ms = [f"{t['median_s'] * 1e3:.3f} / {t['min_s'] * 1e3:.3f}" if t else "-"
              for t in (c["times"].get(m) for m in (FUSED, REF, TORCH))]
        rt = c["ratios"].get(f"{FUSED} / {TORCH}")
        rows.append([c["label"], *ms, f"{c['ratios'][f'{FUSED} / {REF}']:.3f}x",
                     f"{rt:.3f}x" if rt else "-", "ok" if c["check"]["ok"] else "DIFF!"]
                    + ([targets(c)] if targets else []))
    print_table([label, FUSED, REF, TORCH, "fused/ref", "fused/torch", "agree"]
                + (["targets"] if targets else []), rows, "lrrrrrl" + ("l" if targets else ""))
    for c in cases:
        if not c["check"]["ok"]:
            print(f"{c['label']}: fused vs reference max abs diff {c['check']['max_abs_diff']} "
                  f"> atol {c['check']['atol']}")


def attention_target(c):
    speedup = 1 / c["ratios"][f"{FUSED} / {REF}"]
    notes = [f"speedup {speedup:.1f}x"]
    if c["T"] == 256:
        notes.append(f"target >=3x vs ref: {'MET' if speedup >= 3 else 'MISSED'}")
    rt = c["ratios"].get(f"{FUSED} / {TORCH}")
    if rt:
        notes.append(f"stretch (match torch): {'MET' if rt <= 1.0 else 'MISSED'}")
    return "; ".join(notes)


CONFIGS = {
    "full": {"softmax": {"repeats": 30, "warmup": 3},
             "ce_V": (65, 2048, 50257), "ce": {"repeats": 20, "warmup": 3},
             "att_T": (64, 256, 1024), "att": {"repeats": 15, "warmup": 2},
             "att_slow": {"repeats": 3, "warmup": 1}, "mem_T": 1024},
    "quick": {"softmax": {"repeats": 10, "warmup": 2},
              "ce_V": (65, 2048), "ce": {"repeats": 7, "warmup": 2},
              "att_T": (64, 256), "att": {"repeats": 5, "warmup": 1},
              "att_slow": {"repeats": 3, "warmup": 1}, "mem_T": 256},
}


def main(argv=None):
    parser = common.bench_parser(__doc__, "bench_kernels", "fewer repeats and sizes")
    parser.add_argument("--skip-compile", action="store_true",
                        help="skip the compile-time subprocesses")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    mode = "quick" if args.quick else "full"
    cfg = CONFIGS[mode]
    env = common.start_bench(args)

    sm = []
    for label, shape in (("(768, 65)", (768, 65)), ("(768, 2048)", (768, 2048)),
                         ("(12*4*256, 256)", (12 * 4 * 256, 256))):
        fresh_heap()
        sm.append({**case_softmax(shape, **cfg["softmax"]), "label": label})
    print_timed("softmax, last axis", sm, "shape (rows, C)")

    ce = []
    for V in cfg["ce_V"]:
        fresh_heap()
        ce.append({**case_cross_entropy(768, V, **cfg["ce"]), "label": f"(768, {V})"})
    print_timed("cross_entropy, mean", ce, "logits (N, V)")

    att = []
    for T in cfg["att_T"]:
        fresh_heap()
        rep = cfg["att_slow"] if T >= 1024 else cfg["att"]
        att.append({**case_attention(12, 4, T, 32, **rep), "label": f"T={T}"})
    print_timed("attention B=12 H=4 D=32 causal", att, "seq length",
                targets=attention_target)

    fresh_heap()
    mem = case_attention_memory(12, 4, cfg["mem_T"], 32)
    r = mem["ratio fused / reference"]
    print(f"\n[{mem['what']}] (tracemalloc)")
    print(f"  fused {mem['peak_mib'][FUSED]:.1f} MiB | reference {mem['peak_mib'][REF]:.1f} MiB"
          f" | fused/reference {r:.3f} | target <= 0.25: {'MET' if r <= 0.25 else 'MISSED'}"
          f" (inputs q,k,v,g: {mem['inputs_mib (q,k,v,g)']:.1f} MiB)")

    comp = None
    if not args.skip_compile:
        comp = case_compile()
        print(f"\n[compile] {comp['what']}")
        keys = ("softmax", "cross_entropy", "attention", "process_wall_s")
        print_table(["phase", "softmax", "cross_entropy", "attention", "process wall"],
                    [[phase, f"ERROR: {(d['error'].splitlines() or [''])[-1]}", "", "", ""]
                     if "error" in d else [phase, *(f"{d[k]:.3f}" for k in keys)]
                     for phase, d in comp["results"].items()], "lrrrr")

    total = time.perf_counter() - t_start
    result = {**common.result_header("bench_kernels", mode, env), "total_run_s": total,
              "ratios_are": "median(fused) / median(other); < 1 means fused is faster",
              "targets": {"attention_T256_fused_speedup_vs_reference": ">= 3x",
                          "attention_T1024_peak_memory_fused_over_reference": "<= 0.25",
                          "stretch": "match torch"},
              "cases": {"softmax": sm, "cross_entropy": ce, "attention": att,
                        "attention_memory": mem, "compile": comp}}
    print(f"\ntotal run time {total:.1f} s")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
