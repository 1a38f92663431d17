"""How many threads the CPU work runs on: one number for NumPy's BLAS and Numba together.

Two thread pools do a training step's work on the CPU: NumPy's BLAS (OpenBLAS in NumPy's
wheels) runs every matmul, Numba's runs the fused kernels.  They take turns, never work at
the same moment, so each may use every core -- but never more threads than there are cores:

* a container or a job scheduler often lets a process use fewer CPUs than the machine has
  (``os.cpu_count()`` counts the machine's), and a pool that starts one thread per machine
  CPU then time-slices dozens of threads over two cores;
* an idle OpenBLAS thread keeps spinning for a while after its matmul (~0.1 s by default),
  waiting for the next one, so the kernel or attention that wanted that core runs at half
  speed.  ``import tinygradlm`` sets ``OPENBLAS_THREAD_TIMEOUT=16`` (unless the user has set
  it): idle BLAS threads then spin for 2^16 cycles (~25 µs, enough to bridge the products of
  one layer's backward) and then sleep.  A scan of 4 (sleep at once: every product pays a
  wake-up), 16, 20, 24 and 28 (the default) put 16-20 best for both benchmark shapes.
  OpenBLAS reads it when NumPy loads it, so this works when tinygradlm is imported before
  NumPy (as the examples do); otherwise set the variable in the shell.

``set_num_threads(n)`` sets both pools (PyTorch's ``torch.set_num_threads``).  By default,
when the kernels first load, both are capped at ``available_cpus()``: the CPUs this process
may run on, after CPU affinity and a cgroup CPU quota.

``in_parts(fn, n)`` shares work out over tinygradlm's own threads, BLAS on one thread in each,
for attention's many small products (one per (batch, head) pair): OpenBLAS splits one small
product over its threads for almost no gain, so instead each thread takes a share of the
batch.  (Big products, a Linear layer's, are left to BLAS's own threads: sharing them out this
way measured slower.)
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_requested: list = []       # the last set_num_threads(n), applied to Numba when it loads


@functools.lru_cache(maxsize=None)
def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (read once:
    the ops ask for it every call)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for path, parse in (("/sys/fs/cgroup/cpu.max", lambda t: t.split()),          # cgroup v2
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", None)):         # cgroup v1
        try:
            with open(path) as f:
                text = f.read()
            if parse:
                quota, period = parse(text)
            else:
                with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                    quota, period = text.strip(), f.read().strip()
            if quota not in ("max", "-1"):
                n = min(n, max(1, math.ceil(int(quota) / int(period))))
        except (OSError, ValueError):
            continue
    return max(1, n or 1)


@functools.lru_cache(maxsize=None)
def openblas_function(name: str):
    """The function ``name`` (e.g. ``"get_num_threads"``) of the OpenBLAS bundled with NumPy's
    wheels (``numpy.libs``, its symbols prefixed ``scipy_openblas_`` or ``openblas_``, with
    ``64_`` after them in the 64-bit-integer build), or None."""
    pattern = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*")
    for path in glob.glob(pattern):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                fn = getattr(lib, f"{prefix}{name}{suffix}", None)
                if fn is not None:
                    return fn
    return None


def _openblas():
    """(get, set) thread functions of NumPy's bundled OpenBLAS, or None."""
    get = openblas_function("get_num_threads")
    return None if get is None else (get, openblas_function("set_num_threads"))


def blas_threads() -> int | None:
    """Threads NumPy's BLAS uses, or None when it cannot be asked (not NumPy's OpenBLAS)."""
    blas = _openblas()
    return int(blas[0]()) if blas else None


def get_num_threads() -> int:
    """The threads tinygradlm's CPU work runs on (``set_num_threads``'s, else the CPUs)."""
    return _requested[-1] if _requested else available_cpus()


def set_num_threads(n: int) -> None:
    """Run tinygradlm's CPU work on ``n`` threads: its matmuls and attention (shared out by
    ``in_parts``), the Numba kernels, and NumPy's BLAS for everything else."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    _requested.append(n)
    blas = _openblas()
    if blas:
        blas[1](n)
    apply_to_numba()


def apply_to_numba() -> None:
    """Give Numba the threads asked for (or, by default, no more than ``available_cpus()``)
    and cap BLAS the same way; a no-op until numba is imported (``kernels.jit`` calls it)."""
    if "numba" not in sys.modules:
        return
    import numba
    n = _requested[-1] if _requested else available_cpus()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    if not _requested:
        blas = _openblas()
        if blas and int(blas[0]()) > n:
            blas[1](n)


@contextlib.contextmanager
def single_threaded_blas():
    """NumPy's BLAS on one thread inside the block (its thread count restored after)."""
    blas = _openblas()
    n = int(blas[0]()) if blas else 1
    if n > 1:
        blas[1](1)
    try:
        yield
    finally:
        if n > 1:
            blas[1](n)


_pool: dict = {}
if hasattr(os, "register_at_fork"):     # a forked child has none of its parent's threads
    os.register_at_fork(after_in_child=_pool.clear)


def in_parts(fn, n_items: int, parts: int | None = None) -> None:
    """Call ``fn(part)`` for slices ``part`` that split ``range(n_items)`` into one share per
    thread (or ``parts`` shares), the shares at the same time (the main thread takes the
    first), with BLAS on one thread meanwhile.  ``fn`` must release the GIL to gain anything:
    NumPy's matmuls do, and so do Numba functions compiled with ``nogil=True``.  When NumPy's
    BLAS cannot be told to use one thread (it is not NumPy's own OpenBLAS), ``fn`` runs once
    on everything and BLAS shares it out as it does."""
    n = max(1, min(get_num_threads() if parts is None else parts, n_items))
    if _openblas() is None:
        fn(slice(None))
        return
    if n == 1:
        with single_threaded_blas():
            fn(slice(None))
        return
    if _pool.get("workers") != n - 1:
        if "pool" in _pool:
            _pool["pool"].shutdown()
        _pool["pool"], _pool["workers"] = ThreadPoolExecutor(n - 1), n - 1
    bounds = [n_items * i // n for i in range(n + 1)]
    shares = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
    with single_threaded_blas():
        futures = [_pool["pool"].submit(fn, share) for share in shares[1:]]
        try:
            fn(shares[0])
        finally:
            for f in futures:
                f.result()
