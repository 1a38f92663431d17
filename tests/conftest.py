import os

import pytest
from hypothesis import HealthCheck, settings

# JIT warm-up and the first call of an op can be slow: never let a deadline flake a test.
# The `device` fixture below only sets the default device, the same for every example, so
# hypothesis's warning about function-scoped fixtures does not apply to it.
_quiet = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("dev", deadline=None, max_examples=40, suppress_health_check=_quiet)
settings.register_profile("ci", deadline=None, max_examples=20, derandomize=True,
                          suppress_health_check=_quiet)
settings.register_profile("thorough", deadline=None, max_examples=400,
                          suppress_health_check=_quiet)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# TINYGRADLM_FAKE_CUPY=1: run the "cuda" cases on tests/fake_cupy.py, a NumPy-backed CuPy
# stand-in that refuses every NumPy call on its arrays; it checks the device plumbing
# (nothing above backend.py touches device data with NumPy) on a machine without a GPU.
# Installed before tinygradlm is imported, so that the library finds it as `cupy`.
if os.environ.get("TINYGRADLM_FAKE_CUPY") == "1":
    import fake_cupy
    fake_cupy.install()

import tinygradlm as tg  # noqa: E402


def _device_params():
    """cpu, and cuda (skipped with the reason when no GPU is usable); the environment
    variable TINYGRADLM_TEST_DEVICES (e.g. "cuda") narrows the list."""
    wanted = os.environ.get("TINYGRADLM_TEST_DEVICES", "cpu,cuda")
    params = []
    for name in (d.strip() for d in wanted.split(",") if d.strip()):
        marks = ()
        if name == "cuda" and not tg.cuda.is_available():
            marks = pytest.mark.skip(reason=f"no usable GPU: "
                                            f"{tg.backend.cuda_unavailable_reason()}")
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=_device_params())
def device(request):
    """The device a test runs on.  While the test runs it is also the default device, so
    the tensors and models the test makes without naming a device land there.  A test
    module opts in whole with ``pytestmark = pytest.mark.usefixtures("device")``, or a test
    takes ``device`` as an argument."""
    tg.set_default_device(request.param)
    try:
        yield request.param
    finally:
        tg.set_default_device("cpu")
