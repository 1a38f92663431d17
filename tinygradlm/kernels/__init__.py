"""Fused kernels and the switch between them and the plain references.

Each kernel module holds a ``Function`` with a hand-written forward and backward, the Numba
CPU kernels it runs, and a plain NumPy reference beside them.  ``tinygradlm.nn.functional``
uses the fused kernels by default; select the references (the composites in
``functional.py``) to compare, either for the whole process with the environment variable
``TINYGRADLM_KERNELS=reference`` or for a block of code with::

    with tinygradlm.kernels.use("reference"):
        loss = model(x, y)

On the GPU (CuPy arrays) softmax, cross-entropy and attention run the ``numba.cuda`` kernels
of ``cuda_kernels.py``; when numba-cuda cannot launch kernels there (not installed, or no
driver it can use) the CuPy composites run instead, after a one-time warning.  GELU and
LayerNorm have CPU kernels only: on the GPU their composites are already a few CuPy calls.

Numba's default OpenMP threading layer can hang a process that forks (multiprocessing,
pytest-xdist); the ``workqueue`` layer is fork-safe and needs no extra library, so it is
chosen here before any parallel kernel runs (set ``NUMBA_THREADING_LAYER`` to override).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import types
import warnings

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

MODES = ("fused", "reference")
_override: list = []        # stack of modes set by use(); the innermost wins


def mode() -> str:
    """The kernel mode in force now: the innermost ``use(...)``, else the environment."""
    if _override:
        return _override[-1]
    env = os.environ.get("TINYGRADLM_KERNELS", "fused").strip().lower() or "fused"
    if env not in MODES:
        raise ValueError(f"TINYGRADLM_KERNELS={env!r}; expected one of {MODES}")
    return env


def fused() -> bool:
    return mode() == "fused"


FLOATS = ("float32", "float64")


def fused_cpu(x) -> bool:
    """Run a CPU-only fused kernel (GELU, LayerNorm) on tensor ``x``?"""
    return fused() and x.device == "cpu" and x.dtype.name in FLOATS


def fused_any(x) -> bool:
    """Run a fused kernel that exists for both devices (softmax, cross-entropy, attention)
    on tensor ``x``?  On the GPU only when the numba.cuda kernels can run there."""
    if not (fused() and x.dtype.name in FLOATS):
        return False
    return x.device == "cpu" or gpu_kernels() is not None


_gpu: dict = {}


def gpu_kernels():
    """The ``cuda_kernels`` module when numba.cuda can launch kernels, else None (once, with
    a warning that says what runs instead and how to get the kernels)."""
    if "module" not in _gpu:
        module, why = None, None
        try:
            from numba import cuda
            if cuda.is_available():
                module = importlib.import_module(".cuda_kernels", __name__)
                module.self_test()      # compile and run one kernel now, not mid-training
            else:
                why = "numba.cuda finds no usable GPU or CUDA driver"
        except Exception as exc:         # numba-cuda missing or broken: keep going without it
            module, why = None, f"{type(exc).__name__}: {exc}"
        if module is None:
            warnings.warn(f"tinygradlm: the Numba CUDA kernels cannot run ({why}); softmax, "
                          f"cross-entropy and attention on the GPU use the CuPy reference "
                          f"path instead (correct, slower, more memory). To get the kernels: "
                          f"pip install -e \".[gpu]\" (installs numba-cuda).",
                          RuntimeWarning, stacklevel=3)
        _gpu["module"] = module
    return _gpu["module"]


@contextlib.contextmanager
def use(name: str):
    """``with kernels.use("reference"):`` runs the plain composites inside the block."""
    if name not in MODES:
        raise ValueError(f"kernels.use: unknown mode {name!r}; expected one of {MODES}")
    _override.append(name)
    try:
        yield
    finally:
        _override.pop()


# --- small inputs ---------------------------------------------------------------------------
# Starting a ``parallel=True`` kernel costs ~80 µs (waking the worker threads), whatever the
# input size: more than the whole computation on, say, the one token of a generation step.
# Below this many elements a kernel's serial twin runs instead (same code, one thread).
SERIAL_BELOW = 1 << 14


def serial_twin(kernel):
    """``kernel`` (a ``numba.njit(parallel=True)`` function) compiled again without
    ``parallel``: ``prange`` then runs as ``range`` in the calling thread.  The twin is a copy
    of the Python function under another name, because Numba's on-disk cache is keyed by the
    function's name, not by its options (the two would otherwise overwrite each other)."""
    f = kernel.py_func
    twin = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial",
                              f.__defaults__, f.__closure__)
    twin.__qualname__ = f.__qualname__ + "_serial"
    options = {k: v for k, v in kernel.targetoptions.items()
               if k not in ("parallel", "nopython")}     # njit implies nopython
    return numba.njit(cache=True, **options)(twin)


def by_size(kernel, twin, n_elements: int):
    """The parallel kernel for big inputs, its serial twin for small ones."""
    return twin if n_elements < SERIAL_BELOW else kernel
