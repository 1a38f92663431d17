"""``import tinygradlm`` and the reference path need NumPy alone: numba (a dependency all the
same) is imported on the first fused call, never at import.  Each check runs in a fresh
Python, since this process has long imported numba."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

IMPORT_CHECK = """
import sys
import tinygradlm as tg
assert "numba" not in sys.modules, "import tinygradlm imported numba"
tg.nn.functional.softmax(tg.randn(2, 3))
assert "numba" in sys.modules, "the first fused call did not load the kernels"
"""


def run(args, pythonpath=(), **env):
    path = os.pathsep.join([*map(str, pythonpath), ROOT, os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env, "PYTHONPATH": path})


def test_import_does_not_load_numba_and_the_first_fused_call_does():
    out = run(["-c", IMPORT_CHECK], TINYGRADLM_KERNELS="fused")
    assert out.returncode == 0, out.stderr


def test_engine_nn_and_gradchecks_run_where_numba_cannot_be_imported(tmp_path):
    """The engine, nn and the float64 gradchecks under ``TINYGRADLM_KERNELS=reference``, with a
    ``numba`` package first on the path whose import fails."""
    (tmp_path / "numba").mkdir()
    (tmp_path / "numba" / "__init__.py").write_text(
        'raise ImportError("numba is hidden by tests/kernels/test_numpy_only.py")\n')
    env = dict(TINYGRADLM_KERNELS="reference", HYPOTHESIS_PROFILE="ci")
    hidden = run(["-c", "import numba"], [tmp_path], **env)
    assert hidden.returncode != 0 and "numba is hidden" in hidden.stderr
    out = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/engine/test_ops_grad.py",
               "tests/engine/test_functional.py", "tests/nn/test_nn.py"], [tmp_path], **env)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " failed" not in out.stdout
