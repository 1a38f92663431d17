"""Array backends: NumPy for ``"cpu"``, CuPy for ``"cuda"``.

Everything above this module asks a tensor for its array module (``xp``) instead of importing
numpy or cupy to touch tensor data, so the same model code runs on both devices.  CuPy is
optional: without it (or without a working GPU) asking for ``"cuda"`` raises an error that
says why and how to fix it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import random

import numpy as np

_cupy = None            # the cupy module once it has been imported successfully
_cupy_error = None      # why cupy could not be used, as a sentence for the user

DEVICES = ("cpu", "cuda")
GPU_INSTALL_HINT = ('install the GPU extra: pip install -e ".[gpu]" (CuPy for CUDA 12 and '
                    'numba-cuda)')


class DeviceUnavailableError(RuntimeError):
    """``device="cuda"`` was asked for on a machine where CuPy cannot use a GPU."""


def _load_cupy():
    """Import cupy lazily and check that a device answers (``import cupy`` alone succeeds on
    machines without a GPU and only fails at the first allocation)."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy
    except ImportError as exc:
        _cupy_error = f"CuPy is not installed ({exc}); {GPU_INSTALL_HINT}"
        return None
    try:
        cupy.cuda.runtime.getDeviceCount()
        cupy.zeros(1)
    except Exception as exc:  # driver missing, no device, CUDA runtime mismatch, ...
        _cupy_error = (f"CuPy is installed but no CUDA device is usable "
                       f"({type(exc).__name__}: {exc}); check that `nvidia-smi` lists a GPU, "
                       f"that the NVIDIA driver is installed and that CUDA_VISIBLE_DEVICES "
                       f"does not hide it, and that the CuPy wheel matches the CUDA version "
                       f"({GPU_INSTALL_HINT})")
        return None
    _cupy = cupy
    return _cupy


def cuda_is_available() -> bool:
    """True only when CuPy imports and a CUDA device answers."""
    return _load_cupy() is not None


def cuda_unavailable_reason() -> str | None:
    """Why ``"cuda"`` cannot be used (None when it can)."""
    return None if cuda_is_available() else _cupy_error


def default_device_from_env() -> str:
    """``TINYGRADLM_DEVICE`` (``cpu`` or ``cuda``) if set, else ``"cpu"``.  Only the name is
    checked here; whether a GPU is there is checked when the first tensor is made on it."""
    name = os.environ.get("TINYGRADLM_DEVICE", "").strip()
    try:
        return normalize_device(name) if name else "cpu"
    except ValueError:
        raise ValueError(f"TINYGRADLM_DEVICE={name!r}: expected one of {DEVICES}") from None


def normalize_device(device) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:0"`` -> the canonical device name."""
    name = str(device).lower()
    if name.startswith("cuda"):
        name = "cuda"
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    return name


def xp_for(device: str):
    """The array module (numpy or cupy) that holds data on ``device``."""
    if device == "cpu":
        return np
    cp = _load_cupy()
    if cp is None:
        raise DeviceUnavailableError(f"device 'cuda' is not available: {_cupy_error}")
    return cp


def device_of(array) -> str:
    """``"cuda"`` for a CuPy array (anything with ``__cuda_array_interface__``), else
    ``"cpu"`` (NumPy arrays and scalars, Python lists and numbers)."""
    if isinstance(array, (np.ndarray, np.generic)):     # the common case first
        return "cpu"
    return "cuda" if hasattr(array, "__cuda_array_interface__") else "cpu"


def get_array_module(array):
    """numpy or cupy, whichever owns ``array`` (DeZero's ``get_array_module``)."""
    return np if device_of(array) == "cpu" else _load_cupy()


def to_device(array, device: str):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    if device_of(array) == device:
        return array if hasattr(array, "shape") else np.asarray(array)
    if device == "cpu":
        return array.get()
    return xp_for("cuda").asarray(array)


def to_numpy(array) -> np.ndarray:
    return to_device(array, "cpu")


# --- random numbers ---------------------------------------------------------------------
# One generator per backend so that manual_seed() makes every random draw in the library
# (initialisation, dropout, batches, sampling) repeatable.  The CPU and GPU generators are
# different algorithms (NumPy's PCG64, cuRAND's Philox), so the same seed gives different
# numbers on the two devices: a model initialised on the GPU differs from one initialised on
# the CPU.  Build on the CPU and move with ``.to("cuda")`` to get the same weights on both.
_generators: dict = {"cpu": np.random.default_rng(0)}
_seed = {"value": 0}                # the last manual_seed, for a GPU generator made later


def generator(device: str = "cpu"):
    if device not in _generators:
        _generators[device] = (np.random.default_rng(_seed["value"]) if device == "cpu"
                               else _gpu_generator(_seed["value"]))
    return _generators[device]


def _gpu_generator(seed: int):
    """A CuPy generator on cuRAND's Philox: counter-based, so seeding it (every training
    iteration, see ``reseed_device_generators``) is cheap, unlike ``cupy.random.default_rng``'s
    XORWOW, whose initialisation skips ahead each of its 256,000 sub-streams."""
    cp = xp_for("cuda")
    return cp.random.Generator(cp.random.Philox4x3210(seed))


def manual_seed(seed: int) -> None:
    """Seed every random source: Python's ``random``, NumPy's global and ours, and CuPy's
    (now if CuPy is in use, else when the GPU generator is first needed)."""
    seed = int(seed)
    _seed["value"] = seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _generators["cpu"] = np.random.default_rng(seed)
    _generators.pop("cuda", None)
    if _cupy is not None:
        _cupy.random.seed(seed)


def reseed_device_generators() -> None:
    """Seed the GPU generator from a draw of the CPU one.  The training loop calls this at
    the start of every iteration on the GPU: the CPU generator's state is what a checkpoint
    saves (CuPy's cannot be saved and restored), so resuming reproduces the GPU's dropout
    masks too."""
    if _cupy is not None:
        _generators["cuda"] = _gpu_generator(int(_generators["cpu"].integers(2**63)))


def get_rng_state() -> dict:
    """The CPU generator's state as plain data (JSON-friendly), for exact resume."""
    return _generators["cpu"].bit_generator.state


def set_rng_state(state: dict) -> None:
    _generators["cpu"] = np.random.default_rng()
    _generators["cpu"].bit_generator.state = state


# --- special functions ------------------------------------------------------------------
def erf(x):
    """Elementwise error function (NumPy has none): cupyx's on the GPU; on the CPU
    ``math.erf`` compiled into a NumPy ufunc by numba, or, where numba is not installed,
    ``math.erf`` called element by element (same values, slower)."""
    if device_of(x) == "cuda":
        from cupyx.scipy.special import erf as cupy_erf
        return cupy_erf(x)
    return _erf_ufunc()(x)


@functools.cache
def _erf_ufunc():
    try:
        import numba
    except ImportError:
        return _erf_python

    @numba.vectorize(["float32(float32)", "float64(float64)"], cache=True)
    def erf_ufunc(v):
        return math.erf(v)
    return erf_ufunc


def _erf_python(x):
    x = np.asarray(x)
    dtype = np.result_type(x.dtype, np.float32)      # the dtype the numba ufunc returns
    return np.asarray(np.frompyfunc(math.erf, 1, 1)(x), dtype=dtype)


# --- memory -----------------------------------------------------------------------------
def tune_malloc() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning them to the OS.

    Training frees and re-allocates the same activation-sized arrays every step; glibc serves
    blocks over 128 KiB with mmap and unmaps them on free, so every step faults fresh pages in
    again.  Raising the mmap and trim thresholds keeps them, at the price of a process that
    holds on to its peak memory: a whole-process setting, so the training loop and benchmarks
    call this, never the import.  ``TINYGRADLM_SYSTEM_MALLOC=1`` leaves malloc alone.  Returns
    whether the setting took effect (False off glibc, e.g. on macOS or Windows)."""
    if os.environ.get("TINYGRADLM_SYSTEM_MALLOC", "") not in ("", "0"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 64 << 20)
                    and libc.mallopt(M_TRIM_THRESHOLD, 256 << 20))
    except (OSError, AttributeError):
        return False
