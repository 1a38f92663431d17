"""Tensor construction, properties, factories, conversions and the errors a student meets."""
import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm.autograd import _check_devices

# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")


def test_construction_dtypes():
    assert tg.Tensor(1.5).dtype == np.float32
    assert tg.Tensor([1.0, 2.0]).dtype == np.float32
    assert tg.Tensor([[1, 2], [3, 4]]).dtype == np.int64         # ids and targets
    assert tg.Tensor([True, False]).dtype == np.bool_
    assert tg.Tensor(np.zeros(3, dtype=np.float64)).dtype == np.float64   # arrays keep theirs
    assert tg.Tensor(np.zeros(3, dtype=np.int32)).dtype == np.int32
    assert tg.Tensor([1, 2], dtype=tg.float64).dtype == np.float64
    assert tg.tensor([1.0]).dtype == np.float32


def test_properties_and_conversions():
    t = tg.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6
    assert t.device == tg.get_default_device()          # the test's device (conftest)
    assert t.size() == (2, 3) and t.size(1) == 3 and len(t) == 2
    assert isinstance(t.numpy(), np.ndarray) and t.is_leaf and t.grad is None
    assert tg.Tensor([[4.0]]).item() == 4.0
    assert t.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert [row.shape for row in t] == [(3,), (3,)]
    assert t.float().dtype == np.float32 and t.double().dtype == np.float64
    assert t.long().dtype == np.int64 and (t > 2).dtype == np.bool_
    r = repr(t * 2)
    assert r.startswith("tensor(") and "grad_fn=<Mul>" in r and "float64" in r


def test_item_needs_one_element():
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        tg.Tensor([1.0, 2.0]).item()


def test_requires_grad_only_for_floats():
    with pytest.raises(TypeError, match="only floating-point"):
        tg.Tensor([1, 2], requires_grad=True)
    t = tg.Tensor([1.0]).requires_grad_()
    assert t.requires_grad


def test_comparisons_return_bool_without_grad():
    x = tg.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    for r in (x > 2, x >= 2, x < 2, x <= 2, x == 2, x != 2):
        assert r.dtype == np.bool_ and not r.requires_grad
    np.testing.assert_array_equal((x == 2).numpy(), [False, True, False])
    np.testing.assert_array_equal(((x > 1) & ~(x > 2)).numpy(), [False, True, False])
    assert x.argmax().item() == 2


def test_factories():
    tg.manual_seed(0)
    assert tg.zeros(2, 3).shape == (2, 3) and tg.zeros((2, 3)).numpy().sum() == 0
    assert tg.ones(4, dtype=tg.float64).dtype == np.float64
    assert tg.full((2, 2), 7.0).numpy().tolist() == [[7, 7], [7, 7]]
    assert tg.arange(5).dtype == np.int64 and tg.arange(0, 1, 0.25).dtype == np.float32
    np.testing.assert_array_equal(tg.arange(2, 8, 3).numpy(), [2, 5])
    r = tg.rand(1000)
    assert 0 <= r.numpy().min() and r.numpy().max() < 1 and r.dtype == np.float32
    n = tg.randn(20000)
    assert abs(float(n.numpy().mean())) < 0.05 and abs(float(n.numpy().std()) - 1) < 0.05
    ids = tg.randint(0, 10, (3, 4))
    assert ids.shape == (3, 4) and ids.dtype == np.int64 and ids.numpy().max() < 10
    assert tg.randn(3, requires_grad=True).requires_grad
    assert tg.zeros_like(n).shape == n.shape and tg.ones_like(ids).dtype == np.int64


def test_numpy_array_on_the_left_defers_to_tensor():
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    y = np.array([2.0, 2.0], dtype=np.float32) * x
    assert isinstance(y, tg.Tensor) and y.requires_grad


def test_float_scalars_keep_the_tensor_dtype():
    x = tg.Tensor(np.ones(2, dtype=np.float64))
    assert (x * 0.5 + 1).dtype == np.float64
    assert (tg.Tensor([1.0]) * 0.5).dtype == np.float32
    assert (tg.Tensor([1, 2]) / tg.Tensor([2, 2])).dtype == np.float32


# --- errors that teach ------------------------------------------------------------------------
def test_shape_mismatch_names_op_and_both_shapes():
    a, b = tg.zeros(2, 3), tg.zeros(4)
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        a + b
    with pytest.raises(ValueError, match=r"mul: shapes \(2, 3\) and \(4,\)"):
        a * b


def test_matmul_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) are not aligned"):
        tg.zeros(2, 3) @ tg.zeros(4, 5)
    with pytest.raises(ValueError, match=r"batch dimensions of \(2, 3, 4\) and \(5, 4, 1\)"):
        tg.zeros(2, 3, 4) @ tg.zeros(5, 4, 1)


def test_index_out_of_range_names_index_and_size():
    x = tg.zeros(5, 3)
    with pytest.raises(IndexError, match=r"index 10 is out of bounds for axis 0 with size 5.*"
                                         r"\(5, 3\)"):
        x[10]
    with pytest.raises(IndexError, match=r"index 7 is out of bounds.*size 3"):
        x[:, np.array([0, 7])]


def test_device_mix_names_both_devices():
    class Fake:             # stands in for a CUDA tensor on a machine without a GPU
        def __init__(self, device):
            self.device, self.shape = device, (2,)
    with pytest.raises(RuntimeError, match=r"mul: expected all tensors on one device, found "
                                           r"cpu and cuda"):
        _check_devices("Mul", (Fake("cpu"), Fake("cuda")))


@pytest.mark.skipif(not tg.cuda.is_available(), reason="needs CuPy and a CUDA device")
def test_device_mix_real_gpu():
    with pytest.raises(RuntimeError, match="cpu and cuda"):
        tg.zeros(2, device="cpu") + tg.zeros(2, device="cuda")


@pytest.mark.skipif(tg.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_says_why():
    with pytest.raises(RuntimeError, match="device 'cuda' is not available: CuPy"):
        tg.zeros(2, device="cuda")


def test_unknown_device():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tg.Tensor([1.0], device="tpu")


def test_dtype_mix_is_an_error():
    with pytest.raises(TypeError, match="add: dtype mix float32 and float64"):
        tg.zeros(2) + tg.zeros(2, dtype=tg.float64)


def test_reshape_and_other_shape_errors():
    with pytest.raises(ValueError, match=r"reshape: cannot view a tensor of shape \(2, 3\) "
                                         r"\(6 elements\) as shape \(4, 2\)"):
        tg.zeros(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match="expand: cannot expand shape"):
        tg.zeros(2, 3).expand(4, 3)
    with pytest.raises(ValueError, match=r"cat: tensors must have the same shape except in dim 0"):
        tg.cat([tg.zeros(2, 3), tg.zeros(2, 4)])
    with pytest.raises(IndexError, match="sum: dim 2 is out of range for a tensor with 2 dims"):
        tg.zeros(2, 3).sum(dim=2)
    with pytest.raises(ValueError, match="split: sizes"):
        tg.zeros(5).split([2, 2])
    with pytest.raises(TypeError, match="masked_fill: the mask must be boolean"):
        tg.zeros(2).masked_fill(tg.Tensor([1, 0]), 0.0)


def test_half_precision_random_factories_and_clear_dtype_errors():
    """NumPy's generators draw float32/float64 only: float16 is drawn wide and rounded."""
    tg.manual_seed(0)
    for factory in (tg.randn, tg.rand):
        x = factory(3, 4, dtype=tg.float16)
        assert x.dtype == np.float16 and x.shape == (3, 4)
        assert np.isfinite(x.numpy()).all()
    assert ((tg.rand(1000, dtype=tg.float16).numpy() >= 0) &
            (tg.rand(1000, dtype=tg.float16).numpy() <= 1)).all()
    with pytest.raises(TypeError, match="randn: dtype must be a floating point type, got int64"):
        tg.randn(2, dtype=tg.int64)


def test_to_an_unknown_device_names_it():
    with pytest.raises(ValueError, match=r"to: 'mps' is neither a device \(cpu, cuda\) nor "
                                         r"a dtype"):
        tg.zeros(2).to("mps")
