"""tinygradlm: a small, honest tensor + autograd library for learning how language models work.

    import tinygradlm as tg
    x = tg.randn(3, 4, requires_grad=True)
    loss = (x @ x.T).sum()
    loss.backward()          # x.grad now holds d loss / d x
"""
import os

# Before NumPy loads OpenBLAS (when tinygradlm is imported first): OpenBLAS's idle threads
# spin for 2^16 cycles (~25 µs) after a matmul, not the default 2^28 (~0.1 s), so that they
# no longer take a core from the attention and kernels that run next (a 2-core training step
# of a 6-layer GPT ran ~10% faster).  ``threads.py`` tells the rest; a user's value is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

from . import backend  # noqa: E402
from .backend import get_rng_state, manual_seed, set_rng_state
from .autograd import Function, enable_grad, is_grad_enabled, no_grad
from .tensor import (Tensor, bool_, float16, float32, float64, get_default_device, int32, int64,
                     set_default_device, where)
from .creation import (arange, cat, empty, empty_like, eye, full, full_like, linspace, meshgrid,
                       ones, ones_like, rand, rand_like, randint, randn, randn_like, stack, tril,
                       triu, zeros, zeros_like)
from . import function_forms
from .function_forms import *  # noqa: F401,F403 -- tg.sin, tg.gather, tg.einsum, ... (its __all__)
from .gradcheck import gradcheck
from .threads import get_num_threads, set_num_threads
from . import checkpoint, data, files, functional, generate, hub, metrics, nn, optim, profiler, viz

__version__ = "0.1.0"


class cuda:
    """PyTorch's ``torch.cuda`` basics: ``is_available()`` (a CuPy install with a CUDA device
    that answers), ``device_count()``, and ``synchronize()`` (wait for the GPU: time GPU code
    only after it, since kernels run asynchronously)."""

    @staticmethod
    def is_available() -> bool:
        return backend.cuda_is_available()

    @staticmethod
    def device_count() -> int:
        if not backend.cuda_is_available():
            return 0
        return int(backend.xp_for("cuda").cuda.runtime.getDeviceCount())

    @staticmethod
    def synchronize() -> None:
        backend.xp_for("cuda").cuda.Device().synchronize()


def tensor(data, requires_grad=False, dtype=None, device=None) -> Tensor:
    """Same as ``Tensor(...)``; PyTorch's lowercase spelling."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


__all__ = [
    "Tensor", "tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "manual_seed",
    "get_rng_state", "set_rng_state", "get_num_threads", "set_num_threads", "gradcheck", "functional", "nn", "optim", "viz", "cuda",
    "data", "checkpoint", "files", "generate", "hub", "metrics", "profiler",
    "arange", "cat", "stack", "where", "tril", "triu", "zeros", "ones", "full", "randn", "rand",
    "randint", "zeros_like", "ones_like", "randn_like", "rand_like", "full_like", "empty",
    "empty_like", "eye", "linspace", "meshgrid", "set_default_device", "get_default_device",
    "float16", "float32", "float64", "int32", "int64", "bool_",
] + function_forms.__all__
