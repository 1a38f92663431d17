"""Fused kernels, and the switch between them and the reference.

The reference is the composite in ``functional.py``: plain primitive ops whose gradients come
for free.  A fused kernel computes the same thing as one ``Function`` with a hand-written
forward and backward (``softmax.py``, ``cross_entropy.py``, ``attention.py``, ``gelu.py``,
``layer_norm.py``, ``linear.py``; the tests hold each one to its composite), and ``adam.py``
does the Adam/AdamW update in one pass (its reference is ``optim.Adam.update``'s array
formulas).  ``functional.py`` and ``optim.py`` run the fused versions by default; run the
reference to compare, either for the whole process with the environment variable
``TINYGRADLM_KERNELS=reference`` or for a block of code with::

    with tinygradlm.kernels.use("reference"):
        loss = model(x, y)

The CPU kernels are Numba code; their modules (and numba) are imported on the first fused
call (``load``), so ``import tinygradlm`` and the reference path need NumPy alone.  On the GPU
(CuPy arrays) softmax, cross-entropy and attention run the ``numba.cuda`` kernels of
``cuda_kernels.py``; when numba-cuda cannot launch kernels there (not installed, or no driver
it can use) the CuPy composites run instead, after a one-time warning.  GELU, LayerNorm and
the Adam update have CPU kernels only: on the GPU their composites are already a few CuPy
calls.  ``Linear`` is written in array calls and runs fused on both.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import os
import warnings

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


FLOATS = "fd"               # float32, float64 by dtype.char: a C attribute, cheaper than .name


def fused_cpu(x) -> bool:
    """Run a CPU-only fused kernel (GELU, LayerNorm) on tensor ``x``?"""
    return mode() == "fused" and x.device == "cpu" and x.dtype.char in FLOATS


def fused_any(x) -> bool:
    """Run a fused kernel that exists for both devices (softmax, cross-entropy, attention)
    on tensor ``x``?  On the GPU only when the numba.cuda kernels can run there."""
    return (mode() == "fused" and x.dtype.char in FLOATS
            and (x.device == "cpu" or gpu_kernels() is not None))


def fused_arrays(x) -> bool:
    """Run a fused op written in array calls alone (``Linear``), on any device, on ``x``?"""
    return mode() == "fused" and x.dtype.char in FLOATS


# Which module holds each fused Function.
_MODULES = {"Softmax": "softmax", "CrossEntropy": "cross_entropy", "Attention": "attention",
            "GELU": "gelu", "LayerNorm": "layer_norm", "Linear": "linear",
            "adam_step": "adam"}


@functools.lru_cache(maxsize=None)
def load(name: str):
    """The fused ``Function`` (or kernel function) called ``name`` (e.g. ``"Softmax"``),
    importing its module, and with it numba, the first time it is asked for."""
    try:
        module = importlib.import_module("." + _MODULES[name], __name__)
    except ImportError as exc:
        raise ImportError(f"the fused {name} kernel needs numba ({exc}): pip install numba, "
                          f"or run the reference (TINYGRADLM_KERNELS=reference)") from exc
    return getattr(module, name)


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
