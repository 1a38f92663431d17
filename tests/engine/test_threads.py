"""set_num_threads / get_num_threads: one number for NumPy's BLAS and the Numba kernels."""
import os

import pytest

import tinygradlm as tg
from tinygradlm import threads


def test_available_cpus_is_within_the_affinity_mask():
    n = threads.available_cpus()
    assert 1 <= n <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count())


def test_set_num_threads_sets_blas_and_numba_together():
    numba = pytest.importorskip("numba")
    import tinygradlm.kernels.jit  # noqa: F401  (loads numba's threads as training does)
    before = tg.get_num_threads()
    try:
        tg.set_num_threads(1)
        assert tg.get_num_threads() == 1 and numba.get_num_threads() == 1
        if threads.blas_threads() is not None:      # NumPy's own OpenBLAS: asked directly
            assert threads.blas_threads() == 1
    finally:
        tg.set_num_threads(before)
    assert numba.get_num_threads() == min(before, numba.config.NUMBA_NUM_THREADS)


def test_the_default_never_exceeds_the_cpus_available():
    numba = pytest.importorskip("numba")
    import tinygradlm.kernels.jit  # noqa: F401
    assert numba.get_num_threads() <= max(tg.get_num_threads(), threads.available_cpus())
    if threads.blas_threads() is not None:
        assert threads.blas_threads() <= max(tg.get_num_threads(), threads.available_cpus())


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="positive int"):
        tg.set_num_threads(bad)


def test_import_lets_idle_blas_threads_sleep_unless_the_user_said_otherwise():
    import subprocess
    import sys
    code = "import tinygradlm, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "16", out.stderr
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OPENBLAS_THREAD_TIMEOUT": "7"},
                         capture_output=True, text=True)
    assert out.stdout.strip() == "7", out.stderr
