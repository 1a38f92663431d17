"""Shared hypothesis strategies: shapes, broadcastable pairs, and float64 tensors whose values
stay away from an op's kinks and overflow."""
import sys

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygradlm as tg

def shapes(min_dims=0, max_dims=4, min_side=1, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable_pair(max_dims=4, max_side=4):
    """Two shapes that broadcast together (size-1 axes and missing leading axes)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=max_dims,
                                             max_side=max_side).map(lambda s: s.input_shapes)


@st.composite
def arrays(draw, shape, low=-2.0, high=2.0, avoid=(), gap=0.1):
    """float64 values in [low, high]; every value is at least ``gap`` from each point in
    ``avoid`` (kinks such as relu's 0, where finite differences straddle two slopes).
    Sometimes the array is a non-contiguous (transposed) view, to catch ops that assume C
    order.  No subnormals: x * 1.25 == x for the tiniest of them."""
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    a = draw(hnp.arrays(np.float64, shape, elements=elements))
    for c in avoid:
        d = a - c
        a = np.where(np.abs(d) < gap, c + np.where(d >= 0, gap, -gap), a)
    if a.ndim >= 2 and draw(st.booleans()):
        a = np.ascontiguousarray(a.T).T          # same values, Fortran order
    return a


@st.composite
def distinct_arrays(draw, shape, gap=0.05):
    """float64 values that differ pairwise by at least ``gap`` (no ties for max)."""
    n = int(np.prod(shape))
    perm = draw(st.permutations(range(n)))
    return (np.array(perm, dtype=np.float64) * gap - n * gap / 2).reshape(shape)


def T(a, requires_grad=True, device=None):
    """A float64 tensor of ``a`` on ``device`` (default: the test's device, see conftest)."""
    return tg.Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad, device=device)


# --- helpers that work on every device -----------------------------------------------------
def set_data(t, values):
    """Overwrite tensor ``t`` in place with host ``values`` (copied to t's device)."""
    t.data[...] = tg.backend.to_device(np.asarray(values, dtype=t.dtype), t.device)


def host(array):
    """A NumPy copy of a raw NumPy or CuPy array (tests compare on the host)."""
    return tg.backend.to_numpy(array)


def shares_memory(a, b):
    """Do two raw arrays (both NumPy, or both CuPy) overlap in memory?"""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.shares_memory(a, b)
    xp = tg.backend.get_array_module(a)
    return bool(xp.shares_memory(a, b))


# --- comparing floats computed two ways -------------------------------------------------
# One rule for every test (and benchmarks/gpu_check.py) that compares the same float computation
# done two ways -- GPU against CPU, tinygradlm against PyTorch -- elementwise:
#     |actual - expected| <= rtol * |expected| + atol * max(1, max |expected|)
# atol is scaled by the array's largest value so that the near-zero entries of a large gradient
# get the slack its big entries' rounding leaves them; below a magnitude of 1 it is plain atol.
TOLERANCE = {
    "float64": dict(rtol=1e-9, atol=1e-11),     # summation order and fused/unfused math only
    "float32": dict(rtol=2e-4, atol=2e-5),      # the same, through a whole GPT forward+backward
}


def atol_scale(expected):
    """What the rule multiplies atol by: max(1, the largest finite |expected|)."""
    mag = np.abs(np.asarray(expected, dtype=np.float64))
    finite = mag[np.isfinite(mag)]
    return max(1.0, float(finite.max())) if finite.size else 1.0


def allowed_error(expected, rtol, atol):
    """The largest ``|actual - expected|`` the rule allows, element by element."""
    return atol * atol_scale(expected) + rtol * np.abs(np.asarray(expected, dtype=np.float64))


def assert_close(actual, expected, rtol, atol, err_msg=""):
    """Assert the rule above (NumPy's ``assert_allclose``, whose message shows the worst
    element, with the scaled atol)."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * atol_scale(expected),
                               err_msg=err_msg)


def assert_matches(actual, expected, err_msg="", rtol=1e-5, atol=1e-6):
    """Equal bit for bit on the CPU (and on the tests' NumPy-backed CuPy stand-in).  On a real
    GPU only to rounding (``assert_close``): cuBLAS sums in another order than NumPy's BLAS, and
    the embedding's backward adds repeated ids with atomics in no fixed order, so two GPU runs
    may differ in the last bits."""
    cp = sys.modules.get("cupy")
    if tg.get_default_device() == "cuda" and not getattr(cp, "FAKE", False):
        assert_close(actual, expected, rtol, atol, err_msg)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=err_msg)


def latest(out_dir):
    """The directory of the newest training state of the run in ``out_dir``."""
    from pathlib import Path
    return tg.checkpoint.latest_state(Path(out_dir) / "resume")[0]


def compare_with_torch(fn, torch_fn, *arrays_, rtol=1e-9, atol=1e-12):
    """Value and every input's gradient against PyTorch, in float64.  The gradient is of a
    weighted sum of the output (fixed random weights), so that an op which routes gradients
    to the wrong elements cannot pass by summing them to the same total."""
    torch = pytest.importorskip("torch")
    ours = [tg.Tensor(a, requires_grad=True) for a in arrays_]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays_]
    out, ref = fn(*ours), torch_fn(*theirs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=rtol, atol=atol)
    if out.dtype.kind != "f":
        return
    weights = np.random.default_rng(0).uniform(0.5, 1.5, out.shape)
    (out * tg.Tensor(weights)).sum().backward()
    (ref * torch.tensor(weights)).sum().backward()
    for mine, their in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad.numpy(), their.grad.numpy(), rtol=rtol * 100,
                                   atol=atol * 100)
