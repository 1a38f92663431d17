"""Does tinygradlm work on a GPU, and how fast?  One command that checks a CUDA machine end to end.

Meant for a single short run on a machine with an NVIDIA GPU (an H200 in mind): every section
is wrapped so that a failure is recorded in the JSON and the run goes on, the JSON is rewritten
after every section and every case in it (a crash or a hang still leaves what was done, and
what was running), the whole run keeps within a time budget (``--budget-s``, default 420 s),
and a watchdog ends a hung run at the budget + 60 s, printing every thread's stack.

Sections
  1. ``environment``: Python, NumPy, Numba, numba-cuda, CuPy (CUDA runtime and driver versions,
     the device's name, compute capability, memory), PyTorch (and whether it sees CUDA),
     whether ``numba.cuda`` sees a GPU, ``nvidia-smi``'s line, and ``tinygradlm.cuda
     .is_available()``.  When CUDA is not usable the reason (the message of
     ``tinygradlm.backend.cuda_unavailable_reason()``) is printed and recorded, and the script
     exits with code 2 after writing the JSON (not with ``--smoke``).
  2. ``test_suite``: ``pytest -k cuda`` on ``tests`` in a subprocess with
     ``TINYGRADLM_TEST_DEVICES=cuda`` (``common.run_test_suite``; ``--tests-timeout``, 240 s;
     ``--maxfail``, 20): return code, pytest's summary and counts, the FAILED/ERROR lines and
     the last 60 lines (the whole output in ``<out>_pytest.log`` beside the JSON).
  3. ``equality``: a small GPT (n_layer 2, n_head 2, n_embd 64, block_size 32, vocab 65) built
     from one seed on the CPU and on the GPU, one 4 x 32 batch: logits, loss and every gradient
     compared in float64 and float32, fused and reference kernels, by the tests' one tolerance
     rule (``common.compare_devices``: ``tests/strategies.py``'s rule and ``TOLERANCE`` by
     dtype; max absolute and relative errors; any NaN/inf fails).
  4. ``throughput``: nanoGPT's Shakespeare-char model (n_layer 6, n_head 6, n_embd 384,
     block_size 256, batch 64, dropout 0, bias), float32: ``bench_train.py``'s training step
     (``common.tg_step_fn`` / ``torch_step_fn``) for tinygradlm's fused kernels (numba.cuda),
     its reference kernels (CuPy composites) and, when torch sees CUDA,
     ``tests/torch_reference.py``'s GPT, all from the same weights through the same 8 batches.
     Per implementation (``common.time_training``): the first batch's loss (they should agree
     to 1e-4), one cold step (compilation: ``first_step_s``), warm-up, then as many steps as
     fit in its share of the remaining budget (at most 60 s and 50 steps), each between two
     device synchronisations: ms per step (median, min, spread), tokens/s, TFLOP/s
     (``common.flops_per_step``), peak GPU memory, and ``torch_ms / tinygradlm_ms`` (above 1 =
     tinygradlm is faster).  Batches come from ``../shared/data/tinyshakespeare.txt`` when
     present, else the embedded stdlib corpus.

Run from the repository root:

    python benchmarks/gpu_check.py [--out PATH] [--quick] [--skip-tests] [--smoke]
                                   [--maxfail N] [--data PATH] [--budget-s S] [--device cpu]

``--quick`` times fewer steps (at most 15 s and 10 steps per implementation); ``--smoke`` runs
sections 1, 3 and 4 at toy sizes (1 layer, n_embd 32, block 16, batch 2, 2 timed steps),
skips the tests and does not stop when CUDA is missing (to try the script's logic);
``--device cpu`` runs the same code against the CPU (a dry run of the logic on any machine);
``--data`` names the corpus where ``../shared`` is not beside the checkout.
Results go to ``benchmarks/results/gpu_check.json`` unless ``--out`` says otherwise.  The exit
code is 0 when every section ran and every check passed, 1 otherwise, 2 without CUDA.
Nothing here asserts on a time.
"""
from __future__ import annotations

import argparse
import faulthandler
import os
import platform
import sys
import time
import warnings

import numba

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the tests load it by path
import common                       # noqa: E402  (first: puts the checkout on sys.path)
from common import FUSED, REF, TORCH, TRAIN, guarded, write_json
import numpy as np

import tinygradlm as tg
from tinygradlm import backend, kernels

DEFAULT_OUT = os.path.join(common.RESULTS, "gpu_check.json")

EQ_MODEL = {"default": dict(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=65,
                            dropout=0.0, bias=True),
            "smoke": dict(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=65,
                          dropout=0.0, bias=True)}
EQ_BATCH = {"default": 4, "smoke": 2}

TP_MODEL = {"default": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.0,
                            bias=True),
            "smoke": dict(n_layer=1, n_head=2, n_embd=32, block_size=16, dropout=0.0,
                          bias=True)}
TIMING = {  # per implementation: warm-up steps, the most timed steps, the most seconds
    "full": dict(batch_size=64, warmup=3, max_steps=50, cap_s=60.0, min_steps=2),
    "quick": dict(batch_size=64, warmup=2, max_steps=10, cap_s=15.0, min_steps=2),
    "smoke": dict(batch_size=2, warmup=1, max_steps=2, cap_s=10.0, min_steps=2),
}
N_BATCHES = 8
RESERVE_S = 10.0            # budget kept back for the end (tables, JSON)


def gpu_kernels_if_cuda(device):
    return common.gpu_kernel_state() if device == "cuda" and tg.cuda.is_available() else None


# --- section 1: environment -----------------------------------------------------------------
def section_environment(device):
    _, host = common.prepare_environment()
    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "tinygradlm": tg.__version__,
        "cupy": common.cupy_record(),
        "torch": common.torch_record(),
        "numba_cuda": common.numba_cuda_record(),
        "nvidia_smi": common.nvidia_smi(),
        "tinygradlm_cuda_is_available": bool(tg.cuda.is_available()),
        "cuda_unavailable_reason": backend.cuda_unavailable_reason(),
        "tinygradlm_kernels_mode": kernels.mode(),
        "env_vars": {k: v for k, v in sorted(os.environ.items())
                     if k.startswith(("CUPY_", "NUMBA_", "TINYGRADLM_", "CUDA_"))},
        "host": host,
    }
    if info["tinygradlm_cuda_is_available"]:
        info["gpu_kernels"] = common.gpu_kernel_state()
    usable = info["tinygradlm_cuda_is_available"] or device == "cpu"
    info["status"] = "ok" if usable else "failed"
    return info


def print_environment(info):
    cp, th, nc = info["cupy"], info["torch"], info["numba_cuda"]
    dev = cp.get("device") or {}
    print(f"python {info['python']} | numpy {info['numpy']} | numba {info['numba']} "
          f"(numba-cuda {nc.get('numba_cuda')}, numba.cuda sees a GPU: "
          f"{nc.get('is_available')}) | cupy {cp.get('version')} (runtime "
          f"{cp.get('cuda_runtime_version')}, driver {cp.get('cuda_driver_version')}) | "
          f"torch {th.get('version')} (cuda {th.get('cuda_available')})")
    if dev:
        print(f"device: {dev.get('name')}, compute capability {dev.get('compute_capability')}, "
              f"{dev.get('total_memory_gib')} GiB, {dev.get('multiprocessors')} SMs")
    if info.get("nvidia_smi"):
        print(f"nvidia-smi: {info['nvidia_smi']}")
    reason = info["cuda_unavailable_reason"]
    print(f"tinygradlm.cuda.is_available(): {info['tinygradlm_cuda_is_available']}"
          + (f" ({reason})" if reason else ""))
    if "gpu_kernels" in info:
        print(f"fused kernels on the GPU: {info['gpu_kernels']}")


# --- section 3: CPU against GPU (section 2, the tests, is common.run_test_suite) -------------
def section_equality(device, size, progress):
    config, batch = EQ_MODEL[size], EQ_BATCH[size]
    cases = {}
    for dtype in ("float64", "float32"):
        for mode in ("fused", "reference"):
            key = f"{dtype}/{mode}"
            progress({"cases": cases, "now": key})
            c = cases[key] = guarded(common.compare_devices, config, batch, dtype, mode, device)
            if c["status"] == "error":
                print(f"  {key}: ERROR {c['error']}")
            else:
                print(f"  {key}: {'OK' if c['status'] == 'ok' else '*** MISMATCH ***'} "
                      f"(max abs err {c['comparison']['max_abs_err']:.2e}, worst "
                      f"{c['comparison']['worst']})", flush=True)
            progress({"cases": cases})
    ok = all(c["status"] == "ok" for c in cases.values())
    return {"status": "ok" if ok else "failed", "device": device, "model": config,
            "batch_size": batch, "tolerances": common.TOLERANCE,
            "gpu_kernels": gpu_kernels_if_cuda(device), "cases": cases}


# --- section 4: training throughput ---------------------------------------------------------
def section_throughput(device, size, timing, clock, data_path, progress):
    shape = TP_MODEL[size]
    _, batches, data_info = common.load_batches(data_path, N_BATCHES, timing["batch_size"],
                                                shape["block_size"])
    config = {**shape, "vocab_size": data_info["vocab_size"]}
    flops = common.flops_per_step(common.build_gpt(config), timing["batch_size"])
    flops = flops["flops_per_step"]
    names = [FUSED, REF] + ([TORCH] if common.torch_runs_on(device) else [])
    print(f"  model {config}, batch {timing['batch_size']}, float32, data "
          f"{os.path.basename(str(data_info['source']))}; {', '.join(names)}")
    impls = {}
    for i, name in enumerate(names):
        progress({"model": config, "implementations": impls, "now": name})
        # an equal share of what is left, so that a slow first one cannot starve the rest
        share = (clock.remaining() - RESERVE_S) / (len(names) - i)
        allot = min(timing["cap_s"], max(5.0, share))
        r = impls[name] = guarded(common.time_training, name, config, batches, device, allot,
                                  timing, flops)
        if r["status"] == "error":
            print(f"  {name}: ERROR {r['error']}")
        else:
            print(f"  {name}: {r['ms_per_step']:.1f} ms/step over {r['timed_steps']} steps "
                  f"(cold step {r['first_step_s']:.1f} s)", flush=True)
        progress({"model": config, "implementations": impls})
    ok = {k: v for k, v in impls.items() if v["status"] == "ok"}
    check = common.loss_check({k: v["first_batch_loss"] for k, v in ok.items()},
                              {k: v["losses_first_steps"] for k, v in ok.items()})
    failed = len(ok) < len(impls) or not check["match"]
    return {"status": "failed" if failed else "ok", "device": device, "model": config,
            "dtype": "float32", "train": {**TRAIN, "batch_size": timing["batch_size"],
                                          "lr_schedule": "constant"},
            "timing": timing, "data": data_info, "flops_per_step": flops,
            "flops_formula": common.FLOPS_FORMULA, "loss_check": check,
            "implementations": impls,
            "ratios": common.speed_ratios({k: v["median_s"] for k, v in ok.items()}),
            "ratio_is": common.SPEED_RATIO_IS,
            "torch_note": (None if TORCH in names else
                           "torch is not installed or does not see CUDA: no torch line"),
            "gpu_kernels": gpu_kernels_if_cuda(device)}


# --- tables ---------------------------------------------------------------------------------
def print_tables(result):
    s = result["sections"]
    t = s.get("test_suite")
    if t and t.get("status") == "skipped":
        print(f"\ntests on {result['device']}: skipped")
    elif t:
        print(f"\ntests on {result['device']}: {t.get('status')} | "
              f"{t.get('summary') or t.get('error')} | rc {t.get('returncode')} | "
              f"{t.get('duration_s', 0):.0f} s")
    eq = s.get("equality")
    if eq and "cases" in eq:
        rows = []
        for key, c in eq["cases"].items():
            if c["status"] == "error":
                rows.append([key, "", "", "", "", "", f"ERROR: {c['error'][:60]}"])
                continue
            tol = common.TOLERANCE[c["dtype"]]
            rows.append([key, f"{c['logits']['max_abs_err']:.2e}",
                         f"{c['loss']['max_abs_err']:.2e}", f"{c['grads']['max_abs_err']:.2e}",
                         f"{c['grads']['max_rel_err']:.2e}", f"{tol['rtol']:g} / {tol['atol']:g}",
                         "pass" if c["status"] == "ok" else "*** FAIL ***"])
        common.print_table(["dtype / kernels", "logits max abs", "loss abs", "grads max abs",
                            "grads max rel", "rtol / atol", "result"], rows, "lrrrrll")
    tp = s.get("throughput")
    if tp and "implementations" in tp:
        print(f"\ntraining step, {tp['model']}, batch {tp['train']['batch_size']}, float32, "
              f"{tp['device']}")
        torch_ms = tp["implementations"].get(TORCH, {}).get("ms_per_step")
        rows = []
        for name, r in tp["implementations"].items():
            if r["status"] == "error":
                rows.append([name, f"ERROR: {r['error'][:80]}"] + [""] * 7)
                continue
            rows.append([name, f"{r['ms_per_step']:.1f}", f"{r['min_s'] * 1e3:.1f}",
                         f"{r['tokens_per_s']:,.0f}", f"{r['tflops_achieved']:.2f}",
                         r["timed_steps"],
                         f"{r['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in r else "",
                         f"{r['first_batch_loss']:.6f}",
                         f"{torch_ms / r['ms_per_step']:.2f}" if torch_ms else ""])
        common.print_table(["implementation", "ms/step (median)", "min ms", "tokens/s",
                            "TFLOP/s", "steps", "peak GPU MiB", "first-batch loss",
                            "torch_ms / this"], rows, "lrrrrrrrr")
        if (tp.get("gpu_kernels") or {}).get("numba_cuda_kernels_usable") is False:
            print("\nnote: numba.cuda could not launch the GPU kernels here, so the 'fused' "
                  "line ran the CuPy composites too")
        lc = tp["loss_check"]
        if lc["max_abs_diff"] is not None:
            print(f"\nfirst-batch loss spread {lc['max_abs_diff']:.2e} (tolerance "
                  f"{lc['tolerance']:g}): {'OK' if lc['match'] else '*** MISMATCH ***'}")


# --- main -----------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=DEFAULT_OUT, help="where to write the JSON results")
    p.add_argument("--quick", action="store_true", help="fewer timed steps")
    p.add_argument("--skip-tests", action="store_true", help="do not run the test suite")
    p.add_argument("--smoke", action="store_true",
                   help="toy sizes, no test suite, and go on without CUDA (tries the logic)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="device checked against the CPU and timed (cpu: a dry run)")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="seconds the whole run should take at most (throughput adapts)")
    p.add_argument("--tests-timeout", type=float, default=240.0,
                   help="seconds the test suite may take")
    p.add_argument("--maxfail", type=int, default=20,
                   help="stop the test suite after N failures (1: pytest -x; 0: never); "
                        "20 by default, so that one failure does not hide the others")
    p.add_argument("--data", default=None, help="corpus for the throughput batches")
    return p.parse_args(argv)


def run_section(result, name, out, fn, *args, progress=False):
    """Run one section, record it (or its error), rewrite the JSON.  With ``progress`` the
    section gets a callback that records (and writes) what it has done so far, so that a
    crash or a hang still leaves it."""
    print(f"\n== {name} ==", flush=True)
    result["running"] = name
    write_json(out, result, quiet=True)
    t0 = time.perf_counter()

    def record_progress(partial):
        result["sections"][name] = {"status": "running", **partial}
        write_json(out, result, quiet=True)

    kwargs = {"progress": record_progress} if progress else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = guarded(fn, *args, **kwargs)
    rec["duration_s"] = rec.get("duration_s", time.perf_counter() - t0)
    seen = {}
    for w in caught:        # each distinct warning once, with how often it came
        key = f"{w.category.__name__}: {w.message}"
        seen[key] = seen.get(key, 0) + 1
    if seen:
        rec["warnings"] = [{"warning": k[:500], "count": n} for k, n in list(seen.items())[:20]]
        for k, n in list(seen.items())[:5]:
            print(f"  warning (x{n}): {k[:300]}")
    result["sections"][name] = rec
    result["running"] = None
    if rec.get("status") == "error":
        print(f"{name}: ERROR {rec['error']}\n{rec['traceback']}", flush=True)
    write_json(out, result, quiet=True)
    return rec


def exit_code_of(result):
    if result.get("cuda_missing"):
        return 2
    bad = [n for n, s in result["sections"].items() if s.get("status") in ("error", "failed")]
    return 1 if bad else 0


def main(argv=None, watchdog=False):
    args = parse_args(argv)
    size = "smoke" if args.smoke else "default"
    mode = "smoke" if args.smoke else ("quick" if args.quick else "full")
    clock = common.Clock(args.budget_s)
    if watchdog:    # a hang still ends the process (with every thread's stack on stderr)
        faulthandler.dump_traceback_later(args.budget_s + 60, exit=True)
    result = {"benchmark": "gpu_check", "mode": mode, "device": args.device,
              "argv": sys.argv[:1] + (list(argv) if argv is not None else sys.argv[1:]),
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": args.budget_s,
              "sections": {}, "running": None}
    try:
        env = run_section(result, "environment", args.out, section_environment, args.device)
        if env.get("status") == "ok" or "python" in env:
            print_environment(env)
        if env.get("status") != "ok" and not args.smoke:
            result["cuda_missing"] = True
            print(f"\nCUDA is not usable here: {env.get('cuda_unavailable_reason')}\n"
                  "(run with --smoke to try the script's logic anyway)")
        else:
            if args.skip_tests or args.smoke:
                result["sections"]["test_suite"] = {"status": "skipped"}
            else:
                log = os.path.splitext(os.path.abspath(args.out))[0] + "_pytest.log"
                timeout = max(30.0, min(args.tests_timeout, clock.remaining() - 60.0))
                rec = run_section(result, "test_suite", args.out, common.run_test_suite,
                                  args.device, timeout, log, None, common.ROOT, args.maxfail)
                print("\n".join(rec.get("tail", [])[-15:]))
            run_section(result, "equality", args.out, section_equality, args.device, size,
                        progress=True)
            run_section(result, "throughput", args.out, section_throughput, args.device, size,
                        TIMING[mode], clock, args.data, progress=True)
            print_tables(result)
    finally:
        if watchdog:
            faulthandler.cancel_dump_traceback_later()
        result["wall_s"] = clock.elapsed()
        result["exit_code"] = exit_code_of(result)
        write_json(args.out, result, quiet=True)
    print(f"\nwrote {args.out}; {result['wall_s']:.0f} s; exit code {result['exit_code']}")
    return result


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)     # progress shows even through a pipe
    sys.exit(main(watchdog=True)["exit_code"])
