"""What the benchmark scripts share: the machine's set-up and record, timing, the training step
(tinygradlm's and its PyTorch peer's), FLOP counts, and writing the results.

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

import ctypes
import gc
import glob
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)            # run from a checkout without installing

import tinygradlm as tg             # noqa: E402
from tinygradlm import data, files, kernels, optim  # noqa: E402
from tinygradlm.nn import GPT, GPTConfig  # noqa: E402

try:
    import torch
except ImportError:                 # torch is an optional peer: its columns are skipped
    torch = None

# The PyTorch peer timed here is the very model the tests check tinygradlm against (logits,
# loss and every gradient, tests/nn/test_gpt.py), and gpu_check.py judges GPU against CPU by the
# tests' tolerance rule, so both come from tests/ rather than being written a second time;
# appended last on the path so that it shadows nothing.
sys.path.append(os.path.join(ROOT, "tests"))
if torch:
    from torch_reference import build_torch_gpt, copy_weights_from  # noqa: E402

RESULTS = os.path.join(HERE, "results")
SHAKESPEARE = os.path.join(os.path.dirname(ROOT), "shared", "data", "tinyshakespeare.txt")
FUSED, REF, TORCH = "tinygradlm (fused)", "tinygradlm (reference)", "torch"


# --- the machine ----------------------------------------------------------------------------
def usable_cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def loadavg():
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def _bundled_openblas():
    """(get_num_threads, set_num_threads, name) of the OpenBLAS that NumPy wheels bundle (in
    ``numpy.libs``), or None."""
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*")
    for path in glob.glob(libs):
        lib = ctypes.CDLL(path)
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                if hasattr(lib, f"{prefix}get_num_threads{suffix}"):
                    return (getattr(lib, f"{prefix}get_num_threads{suffix}"),
                            getattr(lib, f"{prefix}set_num_threads{suffix}"),
                            f"{os.path.basename(path)}:{prefix}get_num_threads{suffix}")
    return None


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


def tg_first_loss(model, batch, mode, device="cpu"):
    x, y = batch
    with tg.no_grad(), kernels.use(mode):
        return model(tg.Tensor(x, device=device), tg.Tensor(y, device=device))[1].item()


def torch_first_loss(tmodel, batch, device="cpu"):
    x, y = batch
    with torch.no_grad():
        return tmodel(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))[1].item()


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


def loss_check(first_losses):
    """Do the implementations' first-batch losses agree (same weights, same batch)?  A
    mismatch is flagged in the tables and the JSON, never asserted."""
    spread = (max(first_losses.values()) - min(first_losses.values())) if first_losses else None
    return {"first_batch_loss": first_losses, "max_abs_diff": spread, "tolerance": LOSS_TOL,
            "match": spread is not None and spread <= LOSS_TOL}


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


# --- results --------------------------------------------------------------------------------
def write_json(path, result, quiet=False):
    """Write a benchmark's results atomically (``tinygradlm.files``): a run killed mid-write
    (gpu_check.py rewrites its JSON after every section) leaves the last complete copy."""
    files.write_json(path, result)
    if not quiet:
        print(f"\nwrote {path}")
