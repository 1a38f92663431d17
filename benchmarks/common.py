"""What the benchmark scripts share: the machine's set-up, record and flags, the CPU's record
(model, SIMD flags, BLAS kernels, Numba's LLVM target), a busy neighbour process, timing
(repeats, interleaved rounds, or on a time budget with the GPU synchronised), the training
step (tinygradlm's and its PyTorch peer's), FLOP counts, GPU memory readings, comparing one
computation on two devices by the tests' tolerance rule, running the test suite in a
subprocess, Markdown tables, and writing the results.  The scripts themselves hold their
cases, their order and their printing.

Timing on a shared, noisy machine means little on its own, so every script times tinygradlm and
its references in the same process and reports ratios of medians, with the spread of the repeats
next to them.  Measurement hygiene (each found to swing a ratio by 1.5-2x on a 2-vCPU VM):

* ``fresh_heap()`` (``gc.collect(); gc.freeze()``) before each case: torch's imports (and its
  lazily imported modules, on first use) leave 100k+ objects that every full garbage collection
  would walk, which made the object-heavy engine look 30-40% slower per op.
* ``tinygradlm.backend.tune_malloc()`` (skipped with ``--system-malloc``): by default glibc may
  hand big freed blocks back to the OS and fault them in again on the next step, and whether it
  does depends on what ran before, so the first implementation timed paid thousands of page
  faults per step and the next none.
* A pause before each implementation's turn (``timeit``): idle OpenBLAS / OpenMP worker threads
  keep spinning for a while, and on 2 CPUs they starve the next library's threads.
* A multi-threaded BLAS can still stall when a vCPU is taken away; ``--threads 1`` gives steadier
  numbers on such a machine.
"""
from __future__ import annotations

import os

# As ``import tinygradlm`` does when it comes before NumPy: OpenBLAS's idle threads spin for
# ~25 µs, not ~0.1 s (tinygradlm/threads.py).  Every bench script imports this module before
# NumPy, for this line to count: OpenBLAS reads the variable when NumPy loads it.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

import argparse  # noqa: E402
import contextlib
import ctypes
import gc
import importlib.metadata
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback

import numba
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)            # run from a checkout without installing

import tinygradlm as tg             # noqa: E402
from tinygradlm import backend, data, files, kernels, optim, threads  # noqa: E402
# The kernels choose Numba's threading layer (workqueue) when they load, and Numba fixes its
# layer the first time anything asks it about threads (numba.get_num_threads() below): load
# them first, so the benchmarks run what a training run runs.
import tinygradlm.kernels.jit  # noqa: E402,F401
from tinygradlm.nn import GPT, GPTConfig  # noqa: E402

try:
    import torch
except ImportError:                 # torch is an optional peer: its columns are skipped
    torch = None

# The PyTorch peer timed here is the very model the tests check tinygradlm against (logits,
# loss and every gradient, tests/nn/test_gpt.py), and gpu_check.py judges GPU against CPU by the
# tests' tolerance rule, so both come from tests/ rather than being written a second time
# (the benchmarks therefore need the test extra, hypothesis with it); appended last on the path
# so that it shadows nothing.
sys.path.append(os.path.join(ROOT, "tests"))
from strategies import TOLERANCE, allowed_error  # noqa: E402
if torch:
    from torch_reference import build_torch_gpt, copy_weights_from  # noqa: E402

RESULTS = os.path.join(HERE, "results")
SHAKESPEARE = os.path.join(os.path.dirname(ROOT), "shared", "data", "tinyshakespeare.txt")
FUSED, REF, TORCH = "tinygradlm (fused)", "tinygradlm (reference)", "torch"
MODES = {FUSED: "fused", REF: "reference"}     # tinygradlm's implementations: kernel mode


# --- the machine ----------------------------------------------------------------------------
def usable_cpus():
    """The CPUs this process may use (affinity mask, cgroup quota): ``threads.available_cpus``."""
    return threads.available_cpus()


def loadavg():
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def _bundled_openblas():
    """(get_num_threads, set_num_threads, name) of the OpenBLAS that NumPy wheels bundle (in
    ``numpy.libs``), or None."""
    get = threads.openblas_function("get_num_threads")
    if get is None:
        return None
    return get, threads.openblas_function("set_num_threads"), f"numpy.libs openblas:{get.__name__}"


def numpy_blas_threads():
    """(threads NumPy's BLAS uses, where that came from): threadpoolctl if present, else the
    bundled OpenBLAS, else the environment, else the CPUs this process may run on."""
    try:
        import threadpoolctl
        infos = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            return infos[0]["num_threads"], "threadpoolctl"
    except ImportError:
        pass
    openblas = _bundled_openblas()
    if openblas:
        return int(openblas[0]()), openblas[2]
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var]), var
    return usable_cpus(), "usable CPUs (guess)"


def set_numpy_blas_threads(n):
    """Best effort: threadpoolctl if present, else NumPy's bundled OpenBLAS directly."""
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(n, user_api="blas")
        return
    except ImportError:
        pass
    openblas = _bundled_openblas()
    if openblas:
        openblas[1](int(n))
    else:
        print(f"warning: cannot set NumPy's BLAS threads here; set OPENBLAS_NUM_THREADS={n} "
              "(or OMP_NUM_THREADS) in the environment instead", file=sys.stderr)


def prepare_environment(threads_requested=None, tune_malloc=True):
    """Set NumPy's BLAS threads (torch's to match) and tune malloc, as asked; return the thread
    count and the record of the machine that every benchmark writes into its JSON."""
    if threads_requested:
        set_numpy_blas_threads(threads_requested)
    threads, thread_source = numpy_blas_threads()
    malloc = "system default"
    if tune_malloc and tg.backend.tune_malloc():
        malloc = "glibc mallopt: mmap threshold 64 MiB, trim threshold 256 MiB"
    if torch:
        torch.set_num_threads(threads)
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "numpy": np.__version__,
        "numpy_blas_threads": threads,
        "numpy_blas_threads_from": thread_source,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": numba.config.THREADING_LAYER,
        "tinygradlm": tg.__version__,
        "torch": torch.__version__ if torch else None,
        "loadavg_at_start": loadavg(),
        "gc": "gc.collect(); gc.freeze() before each case",
        "thread_env": {k: os.environ.get(k) for k in
                       ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    if torch:
        env["torch_num_threads"] = torch.get_num_threads()
        env["torch_num_interop_threads"] = torch.get_num_interop_threads()
        env["torch_threads_note"] = "torch.set_num_threads(numpy_blas_threads) before timing"
    return threads, {**env, "threads_requested": threads_requested, "malloc": malloc}


def bench_parser(doc, name, quick_help):
    """The flags every CPU benchmark takes; a script adds its own and parses."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--out", default=os.path.join(RESULTS, f"{name}.json"),
                   help="where to write the JSON results")
    p.add_argument("--threads", type=int, default=None,
                   help="set NumPy's BLAS, torch's and Numba's threads to N; default: leave "
                        "NumPy and Numba as configured, torch = NumPy's")
    p.add_argument("--system-malloc", action="store_true",
                   help="do not call tinygradlm.backend.tune_malloc() (see common.py)")
    return p


def start_bench(args):
    """Threads and malloc as ``bench_parser``'s flags ask, the one line every CPU benchmark
    prints first, and the machine's record for its JSON."""
    if args.threads:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threads, env = prepare_environment(args.threads, not args.system_malloc)
    torch_note = f"torch {torch.__version__} ({threads} threads)" if torch else "no torch"
    print(f"tinygradlm {tg.__version__} | python {env['python']} | numpy {np.__version__} "
          f"({threads} BLAS threads) | numba {env['numba']} ({env['numba_threads']} threads) | "
          f"{torch_note} | {env['cpus_usable']} usable CPUs | load {env['loadavg_at_start']} | "
          f"{'quick' if args.quick else 'full'} mode")
    return env


# --- the CPU: what a reader needs to place the numbers (an AVX-512 machine or not) ----------
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512cd",
             "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
             "amx_bf16", "amx_int8")


def _cpuinfo():
    """Model name, the ``CPU_FLAGS`` present and physical cores from ``/proc/cpuinfo``
    (Linux); {} where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return {}
    fields = {}
    cores = set()
    for block in text.strip().split("\n\n"):
        entry = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        entry = {k.strip(): v.strip() for k, v in entry.items()}
        fields = fields or entry                    # the first CPU's
        if "physical id" in entry and "core id" in entry:
            cores.add((entry["physical id"], entry["core id"]))
    flags = set(fields.get("flags", "").split())
    return {"model_name": fields.get("model name"),
            "flags": [f for f in CPU_FLAGS if f in flags],
            "flags_absent": [f for f in CPU_FLAGS if f not in flags],
            "physical_cores": len(cores) or None}


def _openblas_runtime():
    """The kernel set NumPy's bundled OpenBLAS picked for this CPU at run time (its
    ``get_corename``, e.g. ``Haswell`` or ``SkylakeX``) and its build line; {} elsewhere."""
    out = {}
    for key in ("corename", "config"):
        fn = threads.openblas_function(f"get_{key}")
        if fn is not None:
            fn.restype = ctypes.c_char_p
            out[f"openblas_{key}"] = fn().decode()
    return out


def numpy_blas_record():
    """NumPy's BLAS: name and version (``np.show_config``), the CPU kernels it chose, its
    threads, threadpoolctl's view when installed, and NumPy's own SIMD levels."""
    rec = {}
    try:
        cfg = np.show_config(mode="dicts")
        rec["build"] = {k: v for k, v in cfg["Build Dependencies"]["blas"].items()
                        if k in ("name", "version", "openblas configuration")}
        rec["numpy_simd"] = cfg.get("SIMD Extensions")
    except Exception as exc:            # older NumPy: no mode="dicts"
        rec["show_config_error"] = error_text(exc)
    rec.update(_openblas_runtime())
    rec["threads"], rec["threads_from"] = numpy_blas_threads()
    try:
        import threadpoolctl
        rec["threadpoolctl"] = [{k: i.get(k) for k in ("internal_api", "version",
                                                       "architecture", "num_threads")}
                                for i in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    return rec


def numba_record():
    """Numba's version, threading layer and threads, and the CPU LLVM compiles the kernels
    for (``NUMBA_CPU_NAME`` if set, else the host's) with the ``CPU_FLAGS``-like features it
    enables.  ``threading_layer_in_use`` exists only once a parallel kernel has run."""
    rec = {"version": numba.__version__,
           "threading_layer_configured": numba.config.THREADING_LAYER,
           "num_threads": numba.get_num_threads(),
           "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
           "NUMBA_CPU_NAME": numba.config.CPU_NAME, "NUMBA_CPU_FEATURES": numba.config.CPU_FEATURES}
    try:
        rec["threading_layer_in_use"] = numba.threading_layer()
    except ValueError:                  # no parallel kernel has run yet
        rec["threading_layer_in_use"] = None
    try:
        import llvmlite
        import llvmlite.binding as llvm
        rec["llvmlite"] = llvmlite.__version__
        rec["llvm_host_cpu"] = llvm.get_host_cpu_name()
        features = llvm.get_host_cpu_features()
        wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512cd", "avx512bw",
                  "avx512vl", "avx512vnni", "avx512bf16", "avxvnni", "amx-tile")
        rec["llvm_host_features"] = {k: bool(features.get(k)) for k in wanted if k in features}
    except Exception as exc:            # some platforms cannot report features
        rec["llvm_error"] = error_text(exc)
    rec["llvm_target_cpu"] = rec["NUMBA_CPU_NAME"] or rec.get("llvm_host_cpu")
    return rec


def cpu_record():
    """The CPU (model, the SIMD flags that matter, cores), NumPy's BLAS, Numba's compiler
    target and threads, and torch's SIMD level: for every CPU benchmark's JSON."""
    rec = {"processor": platform.processor() or platform.machine(),
           "logical_cpus": os.cpu_count(), "cpus_usable": usable_cpus(), **_cpuinfo(),
           "numpy_blas": numpy_blas_record(), "numba": numba_record()}
    if torch:
        rec["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        rec["torch_mkldnn"] = torch.backends.mkldnn.is_available()
    return rec


def cpu_summary(rec):
    """``cpu_record`` in one line."""
    flags = " ".join(rec.get("flags", [])) or "flags unknown"
    no512 = "" if "avx512f" in rec.get("flags", ["avx512f"]) else " (no avx512f)"
    blas, nb = rec["numpy_blas"], rec["numba"]
    blas_name = blas.get("build", {}).get("name", "BLAS")
    feats = nb.get("llvm_host_features", {})
    llvm = " ".join(("+" if feats[k] else "-") + k for k in ("avx2", "avx512f") if k in feats)
    line = (f"CPU: {rec.get('model_name') or rec['processor']}, {rec['logical_cpus']} logical "
            f"/ {rec['cpus_usable']} usable CPUs, {flags}{no512} | NumPy {blas_name} "
            f"{blas.get('build', {}).get('version', '')} kernels "
            f"{blas.get('openblas_corename', '?')}, {blas['threads']} threads | numba "
            f"{nb['version']} -> LLVM {nb.get('llvm_target_cpu')} ({llvm}), "
            f"{nb['threading_layer_configured']}, {nb['num_threads']} threads")
    if "torch_cpu_capability" in rec:
        line += f" | torch {rec['torch_cpu_capability']}"
    return line


# --- a busy neighbour: one core spinning while something is timed -----------------------------
# It stops by itself when its parent is gone (a parent killed with SIGKILL runs no cleanup)
# or after an hour, whichever comes first.
_SPIN = ("import os, time\nparent, end = os.getppid(), time.monotonic() + 3600\n"
         "while os.getppid() == parent and time.monotonic() < end:\n"
         "    for _ in range(200000):\n        pass\n")


@contextlib.contextmanager
def background_load(processes=1):
    """``with background_load():`` runs ``processes`` busy pure-Python loops (one core each)
    in subprocesses for the block and kills them when it ends, however it ends (an error,
    Ctrl-C).  Yields the record for the JSON."""
    procs = []
    try:
        for _ in range(processes):
            procs.append(subprocess.Popen([sys.executable, "-c", _SPIN]))
        time.sleep(SETTLE_S)            # let them start spinning
        yield {"busy_processes": processes, "busy_loop": "pure-Python for loop, one core each",
               "loadavg_at_start": loadavg()}
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


# --- the GPU's record (gpu_check.py): each probe records its error instead of raising ------
def error_text(exc):
    return f"{type(exc).__name__}: {exc}"


def dist_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    except Exception as exc:            # a broken install's metadata
        return f"? ({type(exc).__name__})"


def cupy_record():
    info = {"version": None,
            "distribution": next((f"{d} {v}" for d in ("cupy-cuda13x", "cupy-cuda12x",
                                                       "cupy-cuda11x", "cupy")
                                  if (v := dist_version(d))), None)}
    try:
        import cupy
    except Exception as exc:
        info["import_error"] = error_text(exc)
        return info
    info["version"] = cupy.__version__
    rt = cupy.cuda.runtime
    for key, call in (("cuda_runtime_version", rt.runtimeGetVersion),
                      ("cuda_driver_version", rt.driverGetVersion),
                      ("device_count", rt.getDeviceCount)):
        try:
            info[key] = call()
        except Exception as exc:
            info[key] = None
            info[f"{key}_error"] = error_text(exc)
    if info.get("device_count"):
        try:
            p = rt.getDeviceProperties(0)
            name = p.get("name", b"")
            info["device"] = {
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "compute_capability": f"{p.get('major')}.{p.get('minor')}",
                "total_memory_gib": round(p.get("totalGlobalMem", 0) / 2 ** 30, 2),
                "multiprocessors": p.get("multiProcessorCount"),
            }
        except Exception as exc:
            info["device_error"] = error_text(exc)
        try:
            free, _ = cupy.cuda.Device(0).mem_info
            info["free_memory_gib_at_start"] = round(free / 2 ** 30, 2)
        except Exception as exc:
            info["free_memory_error"] = error_text(exc)
    return info


def torch_record():
    if not torch:
        return {"version": None}
    info = {"version": torch.__version__, "cuda_build": getattr(torch.version, "cuda", None)}
    try:
        info["cuda_available"] = torch.cuda.is_available()
        if info["cuda_available"]:
            info["device"] = torch.cuda.get_device_name(0)
            info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
            info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    except Exception as exc:
        info["cuda_error"] = error_text(exc)
    return info


def numba_cuda_record():
    info = {"numba_cuda": dist_version("numba-cuda")}
    try:
        from numba import cuda as ncuda
        info["is_available"] = bool(ncuda.is_available())
        if info["is_available"]:
            dev = ncuda.get_current_device()
            name = dev.name
            info["device"] = name.decode() if isinstance(name, bytes) else str(name)
            info["compute_capability"] = list(dev.compute_capability)
    except Exception as exc:
        info["is_available"] = False
        info["error"] = error_text(exc)
    return info


def nvidia_smi():
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total,memory.used,"
                              "utilization.gpu,temperature.gpu,power.limit",
                              "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15)
        return out.stdout.strip() or out.stderr.strip()
    except Exception as exc:
        return error_text(exc)


def gpu_kernel_state():
    """Whether ``device="cuda"``'s fused mode really runs the numba.cuda kernels: the library
    falls back to the CuPy composites (with a warning) when numba.cuda cannot launch them."""
    try:
        return {"numba_cuda_kernels_usable": kernels.gpu_kernels() is not None}
    except Exception as exc:
        return {"numba_cuda_kernels_error": error_text(exc)}


# --- timing ---------------------------------------------------------------------------------
SETTLE_S = 0.3


def fresh_heap():
    """What exists now (imports, torch's lazy modules) is moved out of the collector's way."""
    gc.collect()
    gc.freeze()


def summary(ts):
    """Seconds per call of ``ts``: the median (what ratios use), the mean, and the spread (min,
    max, standard deviation) that any claim about them needs."""
    return {"min_s": min(ts), "median_s": statistics.median(ts), "repeats": len(ts),
            "mean_s": statistics.fmean(ts), "max_s": max(ts),
            "stdev_s": statistics.stdev(ts) if len(ts) > 1 else 0.0}


def minor_page_faults():
    """Page faults of this process so far: a fresh page for every big temporary array that
    the allocator had to get from the OS (costly in a VM), a sign of allocation churn."""
    try:
        import resource         # Unix only
    except ImportError:
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timeit(fns, repeats, warmup):
    """``summary`` of ``repeats`` calls of each ``fn()`` in the dict ``fns``, after ``warmup``
    calls, one function after the other, with page faults per call.

    Not round-robin: an idle OpenBLAS or OpenMP thread pool keeps spinning for a while after
    its last call, so on a small machine alternating NumPy and PyTorch makes each wait for the
    other's spinning threads.  Every function warms up once before any is timed, so that none
    pays for growing the memory allocator's heap (which made whichever ran first look slower).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out = {}
    for name, fn in fns.items():
        time.sleep(SETTLE_S)        # let the last one's idle BLAS/OpenMP threads stop spinning
        for _ in range(warmup):     # and warm up again just before its turn
            fn()
        times = []
        faults = minor_page_faults()
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = {**summary(times),
                     "page_faults_per_call": (minor_page_faults() - faults) / repeats}
    return out


def ratios(times, ours, refs):
    """median(ours) / median(ref) for each reference timed (``timeit``'s records)."""
    return {f"{ours} / {ref}": times[ours]["median_s"] / times[ref]["median_s"]
            for ref in refs if ref in times}


def time_rounds(fns, rounds, steps, warmup, settle_s=SETTLE_S):
    """Interleaved rounds: ``rounds`` times each ``fn()`` of the dict ``fns`` in turn pauses
    ``settle_s`` (``timeit``: the last one's idle BLAS / OpenMP threads stop spinning), makes
    ``warmup`` untimed and ``steps`` timed calls (with ``warmup`` 0, every function is called
    once before the first round: it compiles, grows the heap).  The order rotates from round to round, so that none is always
    first.  A slow drift of the machine (another job starting) then hits every function
    alike, and ``round_ratios`` shows how much a ratio moves from round to round.

    Returns {name: ``summary`` of all timed calls, plus ``round_medians_s``, ``times_s`` and
    page faults per call}; every function has made the same number of calls."""
    if not warmup:
        for fn in fns.values():
            fn()
    names = list(fns)
    per_round = {name: [] for name in names}
    faults = dict.fromkeys(names, 0)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            time.sleep(settle_s)
            for _ in range(warmup):
                fn()
            f0, ts = minor_page_faults(), []
            for _ in range(steps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            faults[name] += minor_page_faults() - f0
            per_round[name].append(ts)
    out = {}
    for name, rs in per_round.items():
        flat = [t for ts in rs for t in ts]
        out[name] = {**summary(flat), "rounds": rounds, "steps_per_round": steps,
                     "warmup_per_round": warmup,
                     "round_medians_s": [statistics.median(ts) for ts in rs],
                     "page_faults_per_call": faults[name] / len(flat), "times_s": flat}
    return out


def round_ratios(times, other, this):
    """``time_rounds``' records -> other's time over this one's (above 1 = this one is
    faster): per round (ratio of the round's medians), their mean and standard deviation,
    and the ratio of the overall medians."""
    per = [a / b for a, b in zip(times[other]["round_medians_s"],
                                 times[this]["round_medians_s"])]
    return {"per_round": per, "mean": statistics.fmean(per),
            "std": statistics.stdev(per) if len(per) > 1 else 0.0,
            "ratio_of_medians": times[other]["median_s"] / times[this]["median_s"]}


# --- one training step, tinygradlm's and PyTorch's ------------------------------------------
# As tinygradlm's GPT training: AdamW with weight decay on >= 2-D weights only, clip 1.0; the
# learning rate is held constant so that every timed step does the same work.
TRAIN = dict(learning_rate=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, grad_clip=1.0,
             seed=1337)
LOSS_TOL = 1e-4     # first-batch loss, float32, same weights: implementations agree to ~1e-6


def load_batches(source, n_batches, batch_size, block_size, seed=TRAIN["seed"]):
    """The corpus' char tokenizer, ``n_batches`` fixed (x, y) int64 arrays from the training
    split (drawn with their own generator: the same list for every implementation), and a
    record of the data."""
    source = source or (SHAKESPEARE if os.path.isfile(SHAKESPEARE) else "stdlib")
    text = data.load_corpus(source)
    tok = data.CharTokenizer.from_text(text)
    ids = data.encode_corpus(tok, text)
    train_ids, _ = data.train_val_split(ids, 0.9)
    gen = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        x, y = data.get_batch(train_ids, batch_size, block_size, "cpu", gen)
        batches.append((x.data, y.data))
    info = {"source": source, "vocab_size": tok.vocab_size, "tokens": int(len(ids)),
            "train_tokens": int(len(train_ids)), "distinct_batches": n_batches}
    return tok, batches, info


def build_gpt(config, dtype="float32", seed=TRAIN["seed"]):
    """A GPT built on the CPU from ``seed`` (every copy holds the same weights), training mode."""
    tg.manual_seed(seed)
    model = GPT(GPTConfig(**config))
    if dtype != "float32":
        model.to(dtype)
    model.train()
    return model


def torch_gpt_like(model, device="cpu"):
    """``tests/torch_reference.py``'s GPT holding a copy of ``model``'s weights (Linear
    weights transposed), in training mode on ``device``."""
    return copy_weights_from(model, build_torch_gpt(model.config)).to(device).train()


def first_loss(impl, model, batch, device="cpu"):
    """``impl``'s loss on ``batch`` without gradients: before any step, every implementation
    (same weights) should give the same number."""
    x, y = batch
    if impl == TORCH:
        with torch.no_grad():
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            return model(x, y)[1].item()
    with tg.no_grad(), kernels.use(MODES[impl]):
        return model(tg.Tensor(x, device=device), tg.Tensor(y, device=device))[1].item()


def step_fn(impl, model, batches, device="cpu"):
    """``impl``'s training step on ``model``: ``tg_step_fn`` or ``torch_step_fn`` below."""
    if impl == TORCH:
        return torch_step_fn(model, batches, device)
    return tg_step_fn(model, batches, MODES[impl], device)


def tg_step_fn(model, batches, mode, device="cpu"):
    """One training step per call, as ``tinygradlm.train`` does it, on the next batch of the
    shared list, under kernel mode ``mode``: forward with targets, backward, clip, AdamW step,
    ``zero_grad``, ``loss.item()`` (which also waits for a GPU).  ``step.state`` holds the
    count and the losses, ``step.opt`` the optimizer."""
    opt = model.configure_optimizers(TRAIN["weight_decay"], TRAIN["learning_rate"],
                                     TRAIN["betas"], TRAIN["eps"])
    tensors = [(tg.Tensor(x, device=device), tg.Tensor(y, device=device)) for x, y in batches]
    params = list(model.parameters())
    state = {"i": 0, "losses": []}

    def step():
        x, y = tensors[state["i"] % len(tensors)]
        state["i"] += 1
        with kernels.use(mode):
            _, loss = model(x, y)
            loss.backward()
            optim.clip_grad_norm_(params, TRAIN["grad_clip"])
            opt.step()
            opt.zero_grad()
        state["losses"].append(loss.item())
        return state["losses"][-1]
    step.state, step.opt = state, opt
    return step


def torch_step_fn(tmodel, batches, device="cpu"):
    """The same step in PyTorch: ``torch.optim.AdamW`` with the same groups, ``clip_grad_norm_``."""
    decay = [p for p in tmodel.parameters() if p.dim() >= 2]
    no_decay = [p for p in tmodel.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": TRAIN["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=TRAIN["learning_rate"], betas=TRAIN["betas"], eps=TRAIN["eps"])
    tensors = [(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
               for x, y in batches]
    params = list(tmodel.parameters())
    state = {"i": 0, "losses": []}

    def step():
        x, y = tensors[state["i"] % len(tensors)]
        state["i"] += 1
        _, loss = tmodel(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, TRAIN["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["losses"].append(loss.item())
        return state["losses"][-1]
    step.state, step.opt = state, opt
    return step


def loss_check(first_losses, step_losses=None):
    """Do the implementations' first-batch losses agree (same weights, same batch)?  A
    mismatch is flagged in the tables and the JSON, never asserted.  ``step_losses``
    ({implementation: the losses of its first steps}, same batches) adds their spread per
    step, recorded only: float32 trajectories drift apart slowly."""
    spread = (max(first_losses.values()) - min(first_losses.values())) if first_losses else None
    check = {"first_batch_loss": first_losses, "max_abs_diff": spread, "tolerance": LOSS_TOL,
             "match": spread is not None and spread <= LOSS_TOL}
    runs = list((step_losses or {}).values())
    prefix = min((len(r) for r in runs), default=0)
    if prefix and len(runs) > 1:
        check["loss_per_step_max_abs_diff"] = [max(s) - min(s)
                                               for s in zip(*(r[:prefix] for r in runs))]
        check["loss_per_step_note"] = ("recorded, not checked: float32 trajectories drift "
                                       "apart slowly")
    return check


SPEED_RATIO_IS = "median ms of the other / median ms of this one: above 1 = this one is faster"


def speed_ratios(median_s):
    """From {implementation: median seconds per step}: torch's time over each tinygradlm
    implementation's, and the reference's over the fused kernels' (``SPEED_RATIO_IS``)."""
    out = {f"{name}: torch_ms / tinygradlm_ms": median_s[TORCH] / median_s[name]
           for name in MODES if name in median_s and TORCH in median_s}
    if FUSED in median_s and REF in median_s:
        out["reference_ms / fused_ms"] = median_s[REF] / median_s[FUSED]
    return out


# --- FLOPs ----------------------------------------------------------------------------------
FLOPS_FORMULA = ("(6 N + 12 n_layer n_embd T) * B * T  (nanoGPT estimate_mfu / PaLM appendix B; "
                 "N = non-embedding params, attention counted in full)")


def flops_per_step(model, batch_size):
    """A GPT training step's FLOPs as nanoGPT's ``estimate_mfu`` counts them: 6 N per token for
    the matmuls' forward + backward (N = ``model.num_params()``: all weights but ``wpe``;
    ``wte`` counts because it is also the LM head), and 12 n_layer n_embd T per token for
    attention's QK^T and AV (all T x T scores, although causal attention needs half)."""
    c = model.config
    n = model.num_params()
    per_token = 6 * n + 12 * c.n_layer * c.n_embd * c.block_size
    return {"N_params_non_embedding": n, "flops_per_token": per_token,
            "flops_per_step": per_token * batch_size * c.block_size, "formula": FLOPS_FORMULA}


# --- a run on a time budget that records its failures (gpu_check.py) -----------------------
class Clock:
    """Seconds since the start, and what is left of the run's budget."""

    def __init__(self, budget_s):
        self.t0, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self):
        return time.perf_counter() - self.t0

    def remaining(self):
        return self.budget_s - self.elapsed()


def guarded(fn, *args, **kwargs):
    """``fn(...)``'s dict, or a record of the exception it raised, so that the run goes on."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:            # recorded, never fatal
        return {"status": "error", "error": error_text(exc),
                "traceback": traceback.format_exc(limit=12)}


def torch_runs_on(device):
    """Can the PyTorch peer race on ``device``?  Not without torch, nor on a GPU torch
    cannot see."""
    if not torch:
        return False
    if device != "cuda":
        return True
    try:
        return torch.cuda.is_available()
    except Exception:
        return False


def synchronize(device, impl=FUSED):
    """Wait for the GPU (nothing to wait for on the CPU): around a timed step, so that the
    time is the step's and not only its launch."""
    if device == "cuda" and impl == TORCH:
        torch.cuda.synchronize()
    elif device == "cuda":
        tg.cuda.synchronize()


def reset_gpu_memory(device, impl):
    """Empty the allocator's pool (CuPy's for tinygradlm, torch's caching allocator) and its
    peak, so that the next run's peak is its own."""
    if device != "cuda":
        return
    gc.collect()
    if impl == TORCH:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    else:
        backend.xp_for("cuda").get_default_memory_pool().free_all_blocks()


def gpu_memory(device, impl):
    """Peak GPU memory of the run since ``reset_gpu_memory``, in MiB ({} on the CPU)."""
    if device != "cuda":
        return {}
    if impl == TORCH:
        return {"peak_gpu_mib": torch.cuda.max_memory_allocated() / 2 ** 20,
                "peak_gpu_reserved_mib": torch.cuda.max_memory_reserved() / 2 ** 20,
                "peak_gpu_memory_is": "torch.cuda.max_memory_allocated"}
    pool = backend.xp_for("cuda").get_default_memory_pool()
    return {"peak_gpu_mib": pool.total_bytes() / 2 ** 20,
            "pool_used_mib_at_end": pool.used_bytes() / 2 ** 20,
            "peak_gpu_memory_is": "CuPy memory pool size after the run (emptied before it)"}


def time_steps(step, sync, budget_s, timing):
    """One cold step, warm-up, one step to estimate, then as many timed steps as fit in
    ``budget_s`` (between ``timing``'s ``min_steps`` and ``max_steps``; fewer when a step is
    too slow), each between two synchronisations."""
    t_start = time.perf_counter()

    def one():
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        return time.perf_counter() - t0

    rec = {"first_step_s": one()}
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
    rec.update({"timed_steps": len(times), **summary(times), "times_s": times})
    return rec


def time_training(impl, config, batches, device, budget_s, timing, flops, prefix_steps=5):
    """``impl``'s GPT (``build_gpt``'s weights) trained on ``device`` through ``batches``:
    the first batch's loss, then ``time_steps`` within ``budget_s``; per step the time, the
    tokens/s, the TFLOP/s achieved (``flops`` a step), and the peak GPU memory."""
    fresh_heap()
    t0 = time.perf_counter()
    reset_gpu_memory(device, impl)
    model = build_gpt(config)
    model = torch_gpt_like(model, device) if impl == TORCH else model.to(device)
    step = step_fn(impl, model, batches, device)
    rec = {"allotted_s": budget_s, "device": device,
           "first_batch_loss": first_loss(impl, model, batches[0], device)}
    left = budget_s - (time.perf_counter() - t0)
    rec.update(time_steps(step, lambda: synchronize(device, impl), max(left, 1.0), timing))
    tokens = timing["batch_size"] * config["block_size"]
    rec.update({"last_loss": step.state["losses"][-1],
                "losses_first_steps": step.state["losses"][:prefix_steps],
                "steps_done": step.state["i"], "tokens_per_step": tokens,
                "tokens_per_s": tokens / rec["median_s"], "ms_per_step": rec["median_s"] * 1e3,
                "tflops_achieved": flops / rec["median_s"] / 1e12,
                **gpu_memory(device, impl)})
    del model, step
    reset_gpu_memory(device, impl)
    rec["status"] = "ok"
    rec["wall_s"] = time.perf_counter() - t0
    return rec


# --- one computation on two devices ---------------------------------------------------------
RULE = "|gpu - cpu| <= rtol * |cpu| + atol * max(1, max|cpu|) elementwise"


def compare_arrays(ref, got, rtol, atol):
    """Compare two dicts of arrays (``ref``: the CPU's, ``got``: the GPU's), key by key.

    Per key: ``max_abs_err``, ``max_rel_err`` (relative to |ref|, over the elements with
    |ref| > atol; 0 when there are none), ``max_abs_ref`` and ``passed``: every element within
    the tests' rule (``strategies.allowed_error``, ``RULE``); a missing key, a shape mismatch
    or a NaN/inf fails.  Overall: ``passed``, the largest errors, the worst key (by
    ``|got - ref| / allowed``) and the list of failures."""
    entries, failures = {}, []
    worst_key, worst_ratio = None, -1.0
    for key in list(ref) + [k for k in got if k not in ref]:
        if key not in ref or key not in got:
            side = "GPU" if key not in got else "CPU"
            entries[key] = {"passed": False, "error": f"missing on the {side} side"}
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
        e["max_rel_err"] = float("nan")
        if finite:
            e["max_rel_err"] = float(np.nanmax(err[big] / mag[big])) if big.any() else 0.0
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
    return {"rtol": rtol, "atol": atol, "rule": RULE,
            "passed": not failures, "n_compared": len(entries), "failures": failures,
            "max_abs_err": max((e["max_abs_err"] for e in numeric), default=0.0),
            "max_rel_err": max((e["max_rel_err"] for e in numeric), default=0.0),
            "worst": worst_key, "worst_err_over_allowed": worst_ratio, "entries": entries}


def to_numpy(t):
    return np.array(t.detach().to("cpu").numpy())


def logits_loss_grads(model, x, y, mode):
    """Logits, loss and every parameter's gradient (as NumPy) for one batch, under kernel
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


def compare_devices(config, batch_size, dtype, mode, device):
    """The same GPT (one seed) on the CPU and on ``device``, one random batch: logits, loss
    and every gradient compared by ``compare_arrays`` at the tests' tolerance for ``dtype``."""
    rtol, atol = TOLERANCE[dtype]["rtol"], TOLERANCE[dtype]["atol"]
    rng = np.random.default_rng(0)
    shape = (batch_size, config["block_size"])
    x, y = (rng.integers(0, config["vocab_size"], shape, dtype=np.int64) for _ in range(2))
    cpu_model = build_gpt(config, dtype)
    dev_model = build_gpt(config, dtype).to(device)
    init = compare_arrays({k: to_numpy(t) for k, t in cpu_model.state_dict().items()},
                          {k: to_numpy(t) for k, t in dev_model.state_dict().items()}, 0.0, 0.0)
    ref = logits_loss_grads(cpu_model, tg.Tensor(x, device="cpu"),
                            tg.Tensor(y, device="cpu"), mode)
    got = logits_loss_grads(dev_model, tg.Tensor(x, device=device),
                            tg.Tensor(y, device=device), mode)
    cmp = compare_arrays(ref, got, rtol, atol)
    grads = [e for k, e in cmp["entries"].items() if k.startswith("grad:")]

    def brief(key):
        return {k: cmp["entries"][key].get(k) for k in ("max_abs_err", "max_rel_err", "passed")}
    return {"status": "ok" if cmp["passed"] and init["passed"] else "failed",
            "dtype": dtype, "kernels": mode, "device": device,
            "initial_weights_identical": init["passed"],
            "loss_cpu": float(ref["loss"]), "loss_device": float(got["loss"]),
            "logits": brief("logits"), "loss": brief("loss"),
            "grads": {"passed": all(e["passed"] for e in grads), "n": len(grads),
                      "max_abs_err": max((e.get("max_abs_err", 0.0) for e in grads),
                                         default=0.0),
                      "max_rel_err": max((e.get("max_rel_err", 0.0) for e in grads),
                                         default=0.0)},
            "comparison": cmp}


# --- the test suite in a subprocess ---------------------------------------------------------
TAIL_LINES = 60             # lines of pytest output kept in the JSON
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
    """``pytest -k device`` on ``tests`` (or ``extra_args``); ``maxfail`` 1 is ``-x``, 0 never
    stops."""
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
    found = parse_pytest_summary(output) or {"line": None, "counts": {}}
    lines = output.splitlines()
    rc = proc.returncode
    rec = {"command": " ".join(cmd), "env": {"TINYGRADLM_TEST_DEVICES": device,
                                             "HYPOTHESIS_PROFILE": "ci"},
           "timeout_s": timeout_s, "timed_out": timed_out, "returncode": rc,
           "duration_s": duration, "summary": found["line"], "counts": found["counts"],
           "failures": [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:20],
           "tail": lines[-TAIL_LINES:], "log": log_path,
           "status": "ok" if (rc == 0 and not timed_out) else "failed"}
    if rc == 5:
        rec["note"] = (f"no test selected (pytest exit code 5): do the device-parametrised "
                       f"tests honour TINYGRADLM_TEST_DEVICES={device} and carry "
                       f"'{device}' in their ids?")
    return rec


# --- tables and results ---------------------------------------------------------------------
def print_table(header, rows, align):
    """A Markdown table (pastes into the README as it is): ``align`` has one letter per
    column, ``r`` for right-aligned numbers, ``l`` for text."""
    print("\n| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def result_header(name, mode, env):
    """The keys every CPU benchmark's JSON starts with."""
    return {"benchmark": name, "mode": mode, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": env, "loadavg_at_end": loadavg()}


def write_json(path, result, quiet=False):
    """Write a benchmark's results atomically (``tinygradlm.files``): a run killed mid-write
    (gpu_check.py rewrites its JSON after every section) leaves the last complete copy."""
    files.write_json(path, result)
    if not quiet:
        print(f"\nwrote {path}")
