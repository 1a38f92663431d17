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
  2. ``test_suite``: the tests on the GPU alone, in a subprocess from the repository root:
     ``python -m pytest -q --maxfail=20 -k cuda -p no:cacheprovider tests`` with
     ``TINYGRADLM_TEST_DEVICES=cuda`` and ``HYPOTHESIS_PROFILE=ci`` (timeout ``--tests-timeout``,
     240 s; ``--maxfail 1`` stops at the first failure).  Recorded:
     return code, pytest's summary line and counts, duration, the FAILED/ERROR lines, the last
     60 lines (the whole output goes to ``<out>_pytest.log`` beside the JSON).
  3. ``equality``: the same small GPT (n_layer 2, n_head 2, n_embd 64, block_size 32, vocab 65,
     dropout 0) built twice from one seed on the CPU, one copy moved with ``module.to("cuda")``,
     one int64 batch (4 x 32) on both; logits, loss and every parameter's gradient compared,
     GPU against CPU, in float64 and float32, with the fused kernels (the default) and with
     ``kernels.use("reference")``.  Per array: the max absolute error, the max relative error
     (over elements with |cpu| > atol), and pass/fail by the tests' one tolerance rule
     (``tests/strategies.py``: ``|gpu - cpu| <= rtol * |cpu| + atol * max(1, max|cpu|)``
     elementwise, rtol / atol from its ``TOLERANCE`` table by dtype).  Any NaN/inf fails.
  4. ``throughput``: nanoGPT's Shakespeare-char model (n_layer 6, n_head 6, n_embd 384,
     block_size 256, batch 64, dropout 0 for the benchmark, bias), float32, on the GPU.  One
     training step is ``bench_train.py``'s (``common.tg_step_fn`` / ``torch_step_fn``): forward
     with targets, backward, ``clip_grad_norm_(1.0)``, AdamW, ``zero_grad``, ``loss.item()``
     (which waits for the GPU).  Implementations: tinygradlm with the fused kernels
     (numba.cuda), tinygradlm with ``kernels.use("reference")`` (CuPy composites), and, when
     torch sees CUDA, ``tests/torch_reference.py``'s GPT.  All start from the same weights
     and step through the same 8 batches (already on the GPU).  Each first computes the first
     batch's loss (no grad; the three should agree to 1e-4), then makes one cold step (JIT /
     kernel compilation: reported as ``first_step_s``), warm-up steps, one step to estimate
     the time, and as many timed steps as fit in its share of the remaining budget (at most
     60 s and 50 steps each), each step timed with a device synchronisation before and after.
     Reported: median / min / mean / spread of ms per step, tokens/s, achieved TFLOP/s
     (``common.flops_per_step``), peak GPU memory (CuPy: the memory pool's size after the
     run, the pool being emptied before each implementation; torch:
     ``max_memory_allocated`` / ``max_memory_reserved``), and ``torch_ms / tinygradlm_ms``
     (above 1 = tinygradlm is faster).  Batches come from
     ``../shared/data/tinyshakespeare.txt`` when present, else the embedded stdlib corpus.

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
import gc
import os
import platform
import re
import signal
import subprocess
import sys
import time
import traceback
import warnings

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the tests load it by path
import common                       # noqa: E402  (first: puts the checkout on sys.path)
from common import FUSED, REF, ROOT, TORCH, TRAIN, error_text, torch, write_json
from strategies import TOLERANCE, allowed_error     # the tests' one tolerance rule

import tinygradlm as tg
from tinygradlm import backend, kernels

DEFAULT_OUT = os.path.join(common.RESULTS, "gpu_check.json")
MODES = {FUSED: "fused", REF: "reference"}
TAIL_LINES = 60             # lines of pytest output kept in the JSON

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
PREFIX_STEPS = 5            # losses of the first steps, recorded to compare trajectories
RESERVE_S = 10.0            # budget kept back for the end (tables, JSON)


# --- small helpers --------------------------------------------------------------------------
class Clock:
    """Seconds since the start, and what is left of the run's budget."""

    def __init__(self, budget_s):
        self.t0, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self):
        return time.perf_counter() - self.t0

    def remaining(self):
        return self.budget_s - self.elapsed()


def guarded(fn, *args, **kwargs):
    """``fn(...)``'s dict, or a record of the exception it raised (the run goes on)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:            # recorded, never fatal
        return error_record(exc)


def error_record(exc):
    return {"status": "error", "error": error_text(exc),
            "traceback": traceback.format_exc(limit=12)}


def synchronize(device):
    if device == "cuda":
        tg.cuda.synchronize()


def gpu_kernels_if_cuda(device):
    return common.gpu_kernel_state() if device == "cuda" and tg.cuda.is_available() else None


def torch_device_for(device):
    """The torch device to race on ``device``, or None (no torch, or torch without CUDA)."""
    if not torch:
        return None
    if device == "cuda":
        try:
            return "cuda" if torch.cuda.is_available() else None
        except Exception:
            return None
    return "cpu"


def torch_sync(tdev):
    if tdev == "cuda":
        torch.cuda.synchronize()


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
    print(f"tinygradlm.cuda.is_available(): {info['tinygradlm_cuda_is_available']}"
          + (f" ({info['cuda_unavailable_reason']})" if info["cuda_unavailable_reason"] else ""))
    if "gpu_kernels" in info:
        print(f"fused kernels on the GPU: {info['gpu_kernels']}")


# --- section 2: the test suite on the GPU ---------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|errors?|"
                    r"warnings?|rerun)\b")
_SUMMARY = re.compile(r"^=*\s*(?P<body>(?:\d+ \w+(?:, )?)+|no tests ran)\s+in\s+"
                      r"(?P<secs>[\d.]+)s\b.*?=*\s*$")


def parse_pytest_summary(output):
    """pytest's final summary line ("3 passed, 2 skipped in 1.20s", with or without the
    ``====`` frame and colours) -> {"line", "counts", "seconds"}; None when there is none.
    Counts use plural keys for errors and warnings ("1 error" -> {"errors": 1})."""
    for raw in reversed(output.splitlines()):
        line = _ANSI.sub("", raw).strip()
        m = _SUMMARY.match(line)
        if not m:
            continue
        counts = {}
        for n, word in _COUNT.findall(m.group("body")):
            word = {"error": "errors", "warning": "warnings"}.get(word, word)
            counts[word] = counts.get(word, 0) + int(n)
        return {"line": line.strip("= "), "counts": counts, "seconds": float(m.group("secs"))}
    return None


def pytest_command(device, extra_args=None, maxfail=1):
    stop = ["-x"] if maxfail == 1 else ([f"--maxfail={maxfail}"] if maxfail > 1 else [])
    cmd = [sys.executable, "-m", "pytest", "-q", *stop, "-k", device, "-p", "no:cacheprovider",
           "--color=no", "-rfEs"]
    return cmd + (list(extra_args) if extra_args is not None else ["tests"])


def run_test_suite(device, timeout_s, log_path=None, extra_args=None, cwd=ROOT, maxfail=1):
    """Run the tests selected for ``device`` in a subprocess (its own process group, so that
    a timeout ends everything it started); returns the record for the JSON."""
    cmd = pytest_command(device, extra_args, maxfail)
    env = dict(os.environ, TINYGRADLM_TEST_DEVICES=device, HYPOTHESIS_PROFILE="ci",
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH"))
                                          if p))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)     # the group this call started
        except (ProcessLookupError, PermissionError):
            proc.kill()
        output, _ = proc.communicate()
    duration = time.perf_counter() - t0
    output = output or ""
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        with open(log_path, "w") as f:
            f.write(output)
    summary = parse_pytest_summary(output)
    lines = output.splitlines()
    rc = proc.returncode
    rec = {"command": " ".join(cmd), "env": {"TINYGRADLM_TEST_DEVICES": device,
                                             "HYPOTHESIS_PROFILE": "ci"},
           "timeout_s": timeout_s, "timed_out": timed_out, "returncode": rc,
           "duration_s": duration, "summary": summary["line"] if summary else None,
           "counts": summary["counts"] if summary else {},
           "failures": [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:20],
           "tail": lines[-TAIL_LINES:], "log": log_path}
    rec["status"] = "ok" if (rc == 0 and not timed_out) else "failed"
    if rc == 5:
        rec["note"] = (f"no test selected (pytest exit code 5): do the device-parametrised "
                       f"tests honour TINYGRADLM_TEST_DEVICES={device} and carry "
                       f"'{device}' in their ids?")
    return rec


# --- section 3: CPU against GPU -------------------------------------------------------------
def compare_arrays(ref, got, rtol, atol):
    """Compare two dicts of arrays (``ref``: the CPU's, ``got``: the GPU's), key by key.

    Per key: ``max_abs_err``, ``max_rel_err`` (relative to |ref|, over the elements with
    |ref| > atol; 0 when there are none), ``max_abs_ref`` and ``passed``: every element within
    the tests' rule (``strategies.allowed_error``: ``|got - ref| <= rtol * |ref| + atol *
    max(1, max|ref|)``); a missing key, a shape mismatch or a NaN/inf fails.  Overall:
    ``passed``, the largest errors, the worst key (by ``|got - ref| / allowed``) and the list
    of failures."""
    entries, failures = {}, []
    worst_key, worst_ratio = None, -1.0
    for key in list(ref) + [k for k in got if k not in ref]:
        if key not in ref or key not in got:
            entries[key] = {"passed": False, "error": "missing on the "
                            + ("GPU" if key not in got else "CPU") + " side"}
            failures.append(key)
            continue
        a = np.asarray(ref[key], dtype=np.float64)
        b = np.asarray(got[key], dtype=np.float64)
        if a.shape != b.shape:
            entries[key] = {"passed": False,
                            "error": f"shape {list(b.shape)} against {list(a.shape)}"}
            failures.append(key)
            continue
        e = {"shape": list(a.shape)}
        if a.size == 0:
            entries[key] = {**e, "passed": True, "max_abs_err": 0.0, "max_rel_err": 0.0,
                            "max_abs_ref": 0.0}
            continue
        finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
        err = np.abs(b - a)
        mag = np.abs(a)
        allowed = allowed_error(a, rtol, atol)
        big = mag > atol
        e["max_abs_err"] = float(np.nanmax(err)) if finite else float("nan")
        e["max_rel_err"] = (float(np.nanmax(err[big] / mag[big])) if big.any() else 0.0) \
            if finite else float("nan")
        e["max_abs_ref"] = float(np.nanmax(mag)) if np.isfinite(mag).any() else float("nan")
        with np.errstate(divide="ignore", invalid="ignore"):
            over = np.where(allowed > 0, err / np.where(allowed > 0, allowed, 1.0),
                            np.where(err > 0, np.inf, 0.0))
        ratio = float(np.max(over)) if finite else float("inf")
        e["passed"] = finite and bool(np.all(err <= allowed))
        if not finite:
            e["error"] = "NaN or inf present"
        entries[key] = e
        if not e["passed"]:
            failures.append(key)
        if ratio > worst_ratio:
            worst_key, worst_ratio = key, ratio
    numeric = [e for e in entries.values() if "max_abs_err" in e]
    return {"rtol": rtol, "atol": atol,
            "rule": "|gpu - cpu| <= rtol * |cpu| + atol * max(1, max|cpu|) elementwise",
            "passed": not failures, "n_compared": len(entries), "failures": failures,
            "max_abs_err": max((e["max_abs_err"] for e in numeric), default=0.0),
            "max_rel_err": max((e["max_rel_err"] for e in numeric), default=0.0),
            "worst": worst_key, "worst_err_over_allowed": worst_ratio, "entries": entries}


def to_numpy(t):
    return np.array(t.detach().to("cpu").numpy())


def forward_backward(model, x, y, mode):
    """Logits, loss and every parameter gradient (as NumPy) for one batch, under kernel
    mode ``mode``."""
    with kernels.use(mode):
        logits, loss = model(x, y)
        loss.backward()
    out = {"logits": to_numpy(logits), "loss": to_numpy(loss)}
    for name, p in model.named_parameters():
        out[f"grad:{name}"] = to_numpy(p.grad) if p.grad is not None else None
    missing = [k for k, v in out.items() if v is None]
    if missing:
        raise RuntimeError(f"no gradient for {missing}")
    return out


def equality_case(cfg, batch_size, dtype, mode, device):
    rtol, atol = TOLERANCE[dtype]["rtol"], TOLERANCE[dtype]["atol"]
    rng = np.random.default_rng(0)
    x = rng.integers(0, cfg["vocab_size"], (batch_size, cfg["block_size"]), dtype=np.int64)
    y = rng.integers(0, cfg["vocab_size"], (batch_size, cfg["block_size"]), dtype=np.int64)
    cpu_model = common.build_gpt(cfg, dtype)
    dev_model = common.build_gpt(cfg, dtype).to(device)
    init = compare_arrays({k: to_numpy(t) for k, t in cpu_model.state_dict().items()},
                          {k: to_numpy(t) for k, t in dev_model.state_dict().items()}, 0.0, 0.0)
    ref = forward_backward(cpu_model, tg.Tensor(x, device="cpu"), tg.Tensor(y, device="cpu"),
                           mode)
    got = forward_backward(dev_model, tg.Tensor(x, device=device),
                           tg.Tensor(y, device=device), mode)
    cmp = compare_arrays(ref, got, rtol, atol)
    params = {k: v for k, v in cmp["entries"].items() if k.startswith("grad:")}
    grads_ok = all(e["passed"] for e in params.values())
    return {"status": "ok" if cmp["passed"] and init["passed"] else "failed",
            "dtype": dtype, "kernels": mode, "device": device,
            "initial_weights_identical": init["passed"],
            "loss_cpu": float(ref["loss"]), "loss_device": float(got["loss"]),
            "logits": {k: cmp["entries"]["logits"].get(k)
                       for k in ("max_abs_err", "max_rel_err", "passed")},
            "loss": {k: cmp["entries"]["loss"].get(k)
                     for k in ("max_abs_err", "max_rel_err", "passed")},
            "grads": {"passed": grads_ok, "n": len(params),
                      "max_abs_err": max((e.get("max_abs_err", 0.0) for e in params.values()),
                                         default=0.0),
                      "max_rel_err": max((e.get("max_rel_err", 0.0) for e in params.values()),
                                         default=0.0)},
            "comparison": cmp}


def section_equality(device, size, progress=None):
    cfg, batch = EQ_MODEL[size], EQ_BATCH[size]
    cases = {}
    for dtype in ("float64", "float32"):
        for mode in ("fused", "reference"):
            key = f"{dtype}/{mode}"
            if progress:
                progress({"cases": cases, "now": key})
            cases[key] = guarded(equality_case, cfg, batch, dtype, mode, device)
            c = cases[key]
            if c["status"] == "error":
                print(f"  {key}: ERROR {c['error']}")
            else:
                print(f"  {key}: {'OK' if c['status'] == 'ok' else '*** MISMATCH ***'} "
                      f"(max abs err {c['comparison']['max_abs_err']:.2e}, worst "
                      f"{c['comparison']['worst']})", flush=True)
            if progress:
                progress({"cases": cases})
    ok = all(c["status"] == "ok" for c in cases.values())
    return {"status": "ok" if ok else "failed", "device": device, "model": cfg,
            "batch_size": batch, "tolerances": TOLERANCE,
            "gpu_kernels": gpu_kernels_if_cuda(device), "cases": cases}


# --- section 4: training throughput ---------------------------------------------------------
def time_steps(step, sync, budget_s, timing):
    """One cold step, warm-up, one step to estimate, then as many timed steps as fit in
    ``budget_s`` (between ``min_steps`` and ``max_steps``; fewer when a step is too slow),
    each between two synchronisations."""
    t_start = time.perf_counter()

    def one():
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        return time.perf_counter() - t0

    rec = {"first_step_s": one()}
    times = []
    if rec["first_step_s"] * 2 > budget_s:
        rec["note"] = "one step takes more than half the budget: only the cold step was timed"
        times = [rec["first_step_s"]]
    else:
        for _ in range(timing["warmup"] - 1):
            if time.perf_counter() - t_start > budget_s / 3:
                break
            step()
        estimate = one()
        left = budget_s - (time.perf_counter() - t_start)
        n = int(left / max(estimate, 1e-6))
        n = max(1 if estimate * timing["min_steps"] > left else timing["min_steps"],
                min(timing["max_steps"], n))
        rec["estimate_s"] = estimate
        times = [one() for _ in range(n)]
    rec.update({"timed_steps": len(times), **common.summary(times), "times_s": times})
    return rec


def cupy_memory_reset(device):
    if device != "cuda":
        return
    gc.collect()
    cp = backend.xp_for("cuda")
    cp.get_default_memory_pool().free_all_blocks()


def cupy_memory(device):
    if device != "cuda":
        return {}
    pool = backend.xp_for("cuda").get_default_memory_pool()
    return {"peak_gpu_mib": pool.total_bytes() / 2 ** 20,
            "pool_used_mib_at_end": pool.used_bytes() / 2 ** 20,
            "peak_gpu_memory_is": "CuPy memory pool size after the run (emptied before it)"}


def throughput_impl(name, cfg, batches, device, clock, impls_left, timing, flops):
    common.fresh_heap()
    t0 = time.perf_counter()
    allot = min(timing["cap_s"], max(5.0, (clock.remaining() - RESERVE_S) / impls_left))
    tokens = timing["batch_size"] * cfg["block_size"]
    rec = {"allotted_s": allot, "device": device}
    if name == TORCH:
        tdev = torch_device_for(device)
        tmodel = common.torch_gpt_like(common.build_gpt(cfg), tdev)
        if tdev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        step = common.torch_step_fn(tmodel, batches, tdev)
        first = common.torch_first_loss(tmodel, batches[0], tdev)

        def sync():
            torch_sync(tdev)
    else:
        cupy_memory_reset(device)
        model = common.build_gpt(cfg).to(device)
        step = common.tg_step_fn(model, batches, MODES[name], device)
        first = common.tg_first_loss(model, batches[0], MODES[name], device)

        def sync():
            synchronize(device)
    rec["first_batch_loss"] = first
    budget = allot - (time.perf_counter() - t0)
    rec.update(time_steps(step, sync, max(budget, 1.0), timing))
    rec["last_loss"] = step.state["losses"][-1]
    rec["losses_first_steps"] = step.state["losses"][:PREFIX_STEPS]
    rec["steps_done"] = step.state["i"]
    rec["tokens_per_step"] = tokens
    rec["tokens_per_s"] = tokens / rec["median_s"]
    rec["ms_per_step"] = rec["median_s"] * 1e3
    rec["tflops_achieved"] = flops / rec["median_s"] / 1e12
    if name == TORCH:
        if tdev == "cuda":
            rec["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
            rec["peak_gpu_reserved_mib"] = torch.cuda.max_memory_reserved() / 2 ** 20
            rec["peak_gpu_memory_is"] = "torch.cuda.max_memory_allocated"
        del tmodel, step
        gc.collect()
        if tdev == "cuda":
            torch.cuda.empty_cache()
    else:
        rec.update(cupy_memory(device))
        del model, step
        cupy_memory_reset(device)
    rec["status"] = "ok"
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def section_throughput(device, size, timing, clock, data_path=None, progress=None):
    cfg0 = TP_MODEL[size]
    _, batches, data_info = common.load_batches(data_path, N_BATCHES, timing["batch_size"],
                                                cfg0["block_size"])
    source = data_info["source"]
    cfg = {**cfg0, "vocab_size": data_info["vocab_size"]}
    flops = common.flops_per_step(common.build_gpt(cfg), timing["batch_size"])["flops_per_step"]
    names = [FUSED, REF] + ([TORCH] if torch_device_for(device) else [])
    print(f"  model {cfg}, batch {timing['batch_size']}, float32, data "
          f"{os.path.basename(str(source))}; {', '.join(names)}")
    impls = {}
    for i, name in enumerate(names):
        if progress:
            progress({"model": cfg, "implementations": impls, "now": name})
        impls[name] = guarded(throughput_impl, name, cfg, batches, device, clock,
                              len(names) - i, timing, flops)
        r = impls[name]
        if r["status"] == "error":
            print(f"  {name}: ERROR {r['error']}")
        else:
            print(f"  {name}: {r['ms_per_step']:.1f} ms/step over {r['timed_steps']} steps "
                  f"(cold step {r['first_step_s']:.1f} s)", flush=True)
        if progress:
            progress({"model": cfg, "implementations": impls})
    ok = {k: v for k, v in impls.items() if v["status"] == "ok"}
    losses = {k: v["first_batch_loss"] for k, v in ok.items()}
    check = common.loss_check(losses)
    prefix = min((len(v["losses_first_steps"]) for v in ok.values()), default=0)
    if prefix and len(ok) > 1:      # same weights, same batches: the losses should track
        per_step = [[v["losses_first_steps"][i] for v in ok.values()] for i in range(prefix)]
        check["loss_per_step_max_abs_diff"] = [max(s) - min(s) for s in per_step]
        check["loss_per_step_note"] = ("recorded, not checked: float32 trajectories drift "
                                       "apart slowly")
    ratios = {}
    if TORCH in ok:
        for name in (FUSED, REF):
            if name in ok:
                ratios[f"{name}: torch_ms / tinygradlm_ms"] = \
                    ok[TORCH]["median_s"] / ok[name]["median_s"]
    if FUSED in ok and REF in ok:
        ratios["reference_ms / fused_ms"] = ok[REF]["median_s"] / ok[FUSED]["median_s"]
    failed = len(ok) < len(impls) or not check["match"]
    return {"status": "failed" if failed else "ok", "device": device, "model": cfg,
            "dtype": "float32", "train": {**TRAIN, "batch_size": timing["batch_size"],
                                          "lr_schedule": "constant"},
            "timing": timing, "data": data_info, "flops_per_step": flops,
            "flops_formula": common.FLOPS_FORMULA,
            "loss_check": check,
            "implementations": impls, "ratios": ratios,
            "ratio_is": "median ms of the other / median ms of this one: above 1 = this one "
                        "is faster",
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
        print("\n| dtype / kernels | logits max abs | loss abs | grads max abs | grads max rel "
              "| rtol / atol | result |\n|---|---:|---:|---:|---:|---|---|")
        for key, c in eq["cases"].items():
            if c["status"] == "error":
                print(f"| {key} | | | | | | ERROR: {c['error'][:60]} |")
                continue
            r, a = TOLERANCE[c["dtype"]]["rtol"], TOLERANCE[c["dtype"]]["atol"]
            print(f"| {key} | {c['logits']['max_abs_err']:.2e} | {c['loss']['max_abs_err']:.2e} "
                  f"| {c['grads']['max_abs_err']:.2e} | {c['grads']['max_rel_err']:.2e} | "
                  f"{r:g} / {a:g} | {'pass' if c['status'] == 'ok' else '*** FAIL ***'} |")
    tp = s.get("throughput")
    if tp and "implementations" in tp:
        print(f"\ntraining step, {tp['model']}, batch {tp['train']['batch_size']}, float32, "
              f"{tp['device']}")
        print("\n| implementation | ms/step (median) | min ms | tokens/s | TFLOP/s | steps | "
              "peak GPU MiB | first-batch loss | torch_ms / this |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        torch_ms = tp["implementations"].get(TORCH, {}).get("ms_per_step")
        for name, r in tp["implementations"].items():
            if r["status"] == "error":
                print(f"| {name} | ERROR: {r['error'][:80]} | | | | | | | |")
                continue
            mem = f"{r['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in r else ""
            ratio = f"{torch_ms / r['ms_per_step']:.2f}" if torch_ms else ""
            print(f"| {name} | {r['ms_per_step']:.1f} | {r['min_s'] * 1e3:.1f} | "
                  f"{r['tokens_per_s']:,.0f} | {r['tflops_achieved']:.2f} | "
                  f"{r['timed_steps']} | {mem} | {r['first_batch_loss']:.6f} | {ratio} |")
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
    section gets a callback that records (and writes) what it has done so far."""
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
    timing = TIMING[mode]
    clock = Clock(args.budget_s)
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
        usable = env.get("status") == "ok"
        if not usable and not args.smoke:
            result["cuda_missing"] = True
            print(f"\nCUDA is not usable here: {env.get('cuda_unavailable_reason')}\n"
                  "(run with --smoke to try the script's logic anyway)")
        else:
            if args.skip_tests or args.smoke:
                result["sections"]["test_suite"] = {"status": "skipped"}
            else:
                log = os.path.splitext(os.path.abspath(args.out))[0] + "_pytest.log"
                timeout = max(30.0, min(args.tests_timeout, clock.remaining() - 60.0))
                rec = run_section(result, "test_suite", args.out, run_test_suite, args.device,
                                  timeout, log, None, ROOT, args.maxfail)
                print("\n".join(rec.get("tail", [])[-15:]))
            run_section(result, "equality", args.out, section_equality, args.device, size,
                        progress=True)
            run_section(result, "throughput", args.out, section_throughput, args.device, size,
                        timing, clock, args.data, progress=True)
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
