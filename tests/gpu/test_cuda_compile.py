"""The numba.cuda kernels compiled for a real GPU (PTX for sm_90, an H100/H200), no GPU needed.

The simulator (tests/gpu/test_cudasim.py) runs the kernels as Python, so it cannot see a typing
error that only the CUDA compiler would, nor a float32 kernel silently computing in float64.
Here every kernel goes through numba-cuda's real compiler (NVVM, from the ``nvidia-cuda-nvcc``
wheel that ``pip install "numba-cuda[cu12]"`` brings) with the argument types the launchers
pass, and the float32 PTX must contain no float64 instruction.  Skipped when numba-cuda or
NVVM is not installed, or under the simulator.
"""
import os

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
                                reason="the simulator replaces the CUDA compiler")

CC = (9, 0)


@pytest.fixture(scope="module")
def compile_ptx():
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (the gpu extra)")
    from numba import cuda
    import numba.cuda.dispatcher as dispatcher
    if not hasattr(dispatcher, "get_current_device"):
        pytest.skip("this numba-cuda version types device functions differently")
    real = dispatcher.get_current_device

    class Target:                   # what the compiler asks the (absent) GPU for
        compute_capability = CC

    dispatcher.get_current_device = lambda: Target()
    try:
        yield lambda fn, sig: cuda.compile_ptx(fn, sig, cc=CC)[0]
    finally:
        dispatcher.get_current_device = real


def signatures(nbt):
    """Each kernel's argument types, as the launchers in cuda_kernels.py pass them."""
    from numba import types
    a1, a2, a3 = (types.Array(nbt, n, "C") for n in (1, 2, 3))
    ids = types.Array(types.int64, 1, "C")
    mask = types.Array(types.boolean, 4, "C")
    attn = (a3, a3, a3)
    flags = (types.boolean, mask, types.boolean, types.int64)        # causal, mask, has, H
    return {
        "softmax_forward": (a2, a2),
        "softmax_backward": (a2, a2, a2),
        "cross_entropy_forward": (a2, ids, types.int64, nbt, a1, a1),       # nbt: smoothing
        "cross_entropy_backward": (a2, ids, types.int64, nbt, a1, a1, a2),
        "attention_forward": attn + (nbt,) + flags + (a3, a2),
        "attention_backward_dq": attn + (a3, a3, a2, nbt) + flags + (a3,),
        "attention_backward_dkv": attn + (a3, a3, a2, nbt) + flags + (a3, a3),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_kernel_compiles_to_ptx(compile_ptx, dtype):
    from numba import types
    from numba.cuda.cudadrv.error import NvvmSupportError
    from tinygradlm.kernels import cuda_kernels

    kernels = cuda_kernels._build(np.dtype(dtype).type)
    sigs = signatures(getattr(types, dtype))
    assert set(sigs) == set(kernels)                    # every kernel has a signature here
    for name, sig in sigs.items():
        try:
            ptx = compile_ptx(kernels[name].py_func, sig)
        except NvvmSupportError as exc:
            pytest.skip(f"NVVM is not installed: {exc}")
        assert ".entry" in ptx and ".target sm_90" in ptx, name
        if dtype == "float32":
            # constants typed like the data: not one float64 instruction in float32 kernels
            assert ".f64" not in ptx, f"{name}: float64 arithmetic in the float32 kernel"
        else:
            assert ".f64" in ptx, name
