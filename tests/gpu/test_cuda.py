"""Devices: the clear errors without a GPU, the default device, moving tensors, modules and
optimizer state, and the kernels' fallback on a GPU without numba-cuda.

The tests that need a device run on a GPU, or on tests/fake_cupy.py (TINYGRADLM_FAKE_CUPY=1,
as .ci/run's device pass); on a plain CPU machine they skip with the reason.
"""
import sys
import types
import warnings

import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm import backend, kernels
from tinygradlm.nn import GPT, GPTConfig
import tinygradlm.nn.functional as F

needs_cuda = pytest.mark.skipif(not tg.cuda.is_available(),
                                reason=f"no usable GPU: {backend.cuda_unavailable_reason()}")


@pytest.fixture
def fresh_cupy_state(monkeypatch):
    """Forget what backend learnt about CuPy, so a test can show it another `cupy`."""
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupy_error", None)
    return monkeypatch


# --- no GPU: errors that say why and what to install ----------------------------------------

def test_cuda_without_cupy_says_how_to_install(fresh_cupy_state):
    fresh_cupy_state.setitem(sys.modules, "cupy", None)          # `import cupy` fails
    assert not tg.cuda.is_available() and tg.cuda.device_count() == 0
    with pytest.raises(backend.DeviceUnavailableError):
        tg.cuda.synchronize()
    with pytest.raises(backend.DeviceUnavailableError) as err:
        tg.zeros(2, device="cuda")
    msg = str(err.value)
    assert "device 'cuda' is not available" in msg and "CuPy is not installed" in msg
    assert 'pip install -e ".[gpu]"' in msg
    assert tg.backend.cuda_unavailable_reason() in msg
    with pytest.raises(backend.DeviceUnavailableError, match="CuPy is not installed"):
        tg.Tensor([1.0]).to("cuda")
    with pytest.raises(backend.DeviceUnavailableError):
        tg.nn.Linear(2, 2).to("cuda")


def test_cupy_without_a_device_says_why(fresh_cupy_state):
    # `import cupy` works on machines without a GPU; the first call into CUDA fails.
    class CUDARuntimeError(RuntimeError):
        pass

    def no_device():
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    fresh_cupy_state.setitem(sys.modules, "cupy", cupy)
    assert not tg.cuda.is_available()
    reason = backend.cuda_unavailable_reason()
    assert "CuPy is installed but no CUDA device is usable" in reason
    assert "cudaErrorNoDevice" in reason and "nvidia-smi" in reason and ".[gpu]" in reason
    with pytest.raises(backend.DeviceUnavailableError, match="cudaErrorNoDevice"):
        tg.randn(3, device="cuda")


def test_unknown_device_names_the_choices():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tg.zeros(1, device="tpu")
    assert backend.normalize_device("cuda:0") == "cuda"


def test_default_device_from_environment(monkeypatch):
    monkeypatch.delenv("TINYGRADLM_DEVICE", raising=False)
    assert backend.default_device_from_env() == "cpu"
    monkeypatch.setenv("TINYGRADLM_DEVICE", "CUDA")
    assert backend.default_device_from_env() == "cuda"
    monkeypatch.setenv("TINYGRADLM_DEVICE", "tpu")
    with pytest.raises(ValueError, match="TINYGRADLM_DEVICE='tpu'"):
        backend.default_device_from_env()
    from tinygradlm.train import TrainConfig
    assert TrainConfig().device == tg.get_default_device()   # the flag's default follows it


def test_training_on_cuda_without_a_gpu_stops_before_any_work(fresh_cupy_state, capsys):
    fresh_cupy_state.setitem(sys.modules, "cupy", None)
    sys.path.insert(0, "examples")
    try:
        import train_char_lm
    finally:
        sys.path.remove("examples")
    with pytest.raises(SystemExit) as stop:
        train_char_lm.main(["--device", "cuda", "--max_iters", "1", "--progress", "false"])
    assert "device 'cuda' is not available" in str(stop.value.code)
    assert ".[gpu]" in str(stop.value.code)


def test_set_default_device_checks_the_name():
    with pytest.raises(ValueError):
        tg.set_default_device("gpu0")
    assert tg.get_default_device() == "cpu"


# --- with a device ------------------------------------------------------------------------

@needs_cuda
def test_device_count_and_synchronize():
    assert tg.cuda.device_count() >= 1
    x = tg.randn(64, 64, device="cuda")
    y = x @ x
    tg.cuda.synchronize()                                       # returns once the GPU is idle
    np.testing.assert_allclose(y.numpy(), x.numpy() @ x.numpy(), rtol=1e-4, atol=1e-4)


@needs_cuda
def test_cuda_tensor_round_trip_and_gradient_flows_back():
    x = tg.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and x.device == "cpu"
    assert "device='cuda'" in repr(y)
    (y * y).sum().backward()                                    # grad copied back to the CPU
    np.testing.assert_array_equal(x.grad.numpy(), 2 * np.arange(6.0).reshape(2, 3))
    assert x.grad.device == "cpu"
    assert y.cpu().device == "cpu" and y.cuda() is y


@needs_cuda
def test_mixing_devices_names_both():
    a, b = tg.ones(2, 3), tg.ones(2, 3, device="cuda")
    with pytest.raises(RuntimeError, match="cpu and cuda"):
        a + b
    with pytest.raises(RuntimeError, match="cpu.*cuda|cuda.*cpu"):
        a @ b.T
    logits = tg.zeros(4, 5, device="cuda")
    with pytest.raises(RuntimeError, match="targets .* on cpu"):
        F.cross_entropy(logits, tg.Tensor([0, 1, 2, 3]))
    model = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4))
    model.to("cuda")
    with pytest.raises(RuntimeError, match="on cpu but the model's weights on cuda"):
        model(tg.Tensor([[1, 2]], device="cpu"))


@needs_cuda
def test_default_device_places_factories_and_host_data():
    tg.set_default_device("cuda")
    try:
        assert tg.zeros(2).device == tg.randn(2).device == tg.arange(3).device == "cuda"
        assert tg.Tensor(np.ones(2)).device == "cuda"          # host data goes there too
        assert tg.nn.Linear(2, 3).weight.device == "cuda"
        assert tg.Tensor(tg.ones(1, device="cpu")).device == "cpu"  # a tensor stays put
    finally:
        tg.set_default_device("cpu")


@needs_cuda
def test_optimizer_state_follows_the_module():
    tg.manual_seed(0)
    model = tg.nn.Linear(3, 2)
    opt = tg.optim.AdamW(model.parameters(), lr=0.1)
    x = tg.randn(4, 3)
    model(x).sum().backward()
    opt.step()
    model.to("cuda")
    opt.zero_grad()
    model(x.to("cuda")).sum().backward()
    opt.step()                                                  # moments moved on the way
    for state in opt.state.values():
        assert backend.device_of(state["exp_avg"]) == "cuda"
    # the same two steps on the CPU give the same weights
    tg.manual_seed(0)
    ref = tg.nn.Linear(3, 2)
    ref_opt = tg.optim.AdamW(ref.parameters(), lr=0.1)
    for _ in range(2):
        ref_opt.zero_grad()
        ref(x).sum().backward()
        ref_opt.step()
    np.testing.assert_allclose(model.weight.numpy(), ref.weight.numpy(), rtol=1e-5, atol=1e-6)


@needs_cuda
def test_checkpoints_save_host_arrays_and_load_onto_the_device(tmp_path):
    cfg = GPTConfig(vocab_size=9, block_size=6, n_layer=1, n_head=2, n_embd=8)
    tg.manual_seed(1)
    model = GPT(cfg).to("cuda")
    model.save_pretrained(tmp_path)
    from safetensors.numpy import load_file
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert saved and all(isinstance(v, np.ndarray) for v in saved.values())
    back = GPT.from_pretrained(tmp_path, device="cuda")
    assert back.transformer.wte.weight.device == "cuda"
    on_cpu = GPT.from_pretrained(tmp_path, device="cpu")
    ids = np.array([[1, 2, 3]])
    a = back(tg.Tensor(ids, device="cuda"))[0].numpy()
    b = on_cpu(tg.Tensor(ids))[0].numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_cuda
def test_kernels_fall_back_with_one_warning_without_numba_cuda(monkeypatch):
    monkeypatch.setattr(kernels, "_gpu", {})
    import numba.cuda
    monkeypatch.setattr(numba.cuda, "is_available", lambda: False)
    x = tg.randn(3, 5, device="cuda", requires_grad=True)
    with pytest.warns(RuntimeWarning, match="numba-cuda"):
        y = F.softmax(x, dim=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # only once
        y2 = F.softmax(x, dim=-1)
    np.testing.assert_allclose(y.numpy(), F.softmax(x.to("cpu")).numpy(), rtol=1e-5, atol=1e-7)
    assert y2.device == "cuda" and kernels.gpu_kernels() is None
