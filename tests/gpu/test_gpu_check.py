"""The logic of ``benchmarks/gpu_check.py`` that needs no GPU: argument parsing, the helpers it
takes from ``benchmarks/common.py`` (the CPU/GPU comparison, the pytest-summary parser, the
test-suite runner), what the script does when CUDA is missing, and a dry run of every section
against the CPU (``--device cpu``).  With a GPU
(or a fake CuPy that makes ``tinygradlm.cuda.is_available()`` true) the ``--smoke`` run is
made in-process too.  No test here needs torch or asserts on a time.

(No test name here contains "cuda": the GPU check runs ``pytest -k cuda``.)
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tinygradlm as tg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")
FAKE_CUPY = os.path.join(ROOT, "tests", "fake_cupy.py")
HAS_GPU = tg.cuda.is_available()


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def common(script):
    """``benchmarks/common.py``, as the script imported it."""
    return script.common


# --- arguments --------------------------------------------------------------------------------
def test_parse_args_defaults(script):
    a = script.parse_args([])
    assert a.out == script.DEFAULT_OUT and a.out.endswith(os.path.join("results", "gpu_check.json"))
    assert not (a.quick or a.skip_tests or a.smoke)
    assert a.device == "cuda" and a.tests_timeout == 240 and a.budget_s <= 480


def test_parse_args_flags(script):
    a = script.parse_args(["--quick", "--skip-tests", "--smoke", "--out", "x.json",
                       "--device", "cpu", "--tests-timeout", "30"])
    assert (a.quick, a.skip_tests, a.smoke, a.out, a.device, a.tests_timeout) == \
        (True, True, True, "x.json", "cpu", 30.0)
    with pytest.raises(SystemExit):
        script.parse_args(["--device", "tpu"])


# --- the comparison helper --------------------------------------------------------------------
def arrays(seed=0):
    r = np.random.default_rng(seed)
    return {"logits": r.standard_normal((2, 3, 5)), "loss": np.array(2.5),
            "grad:w": r.standard_normal((4, 4)) * 1e-3}


def test_compare_identical_passes(common):
    a = arrays()
    out = common.compare_arrays(a, {k: v.copy() for k, v in a.items()}, 1e-9, 1e-11)
    assert out["passed"] and out["failures"] == [] and out["n_compared"] == 3
    assert out["max_abs_err"] == 0.0 and out["max_rel_err"] == 0.0
    assert all(e["passed"] for e in out["entries"].values())


def test_compare_reports_max_errors(common):
    a = arrays()
    b = {k: v.copy() for k, v in a.items()}
    b["logits"][1, 2, 3] += 1e-6                 # within float32 tolerances
    b["grad:w"][0, 0] = a["grad:w"][0, 0] * (1 + 1e-5)
    out = common.compare_arrays(a, b, 2e-4, 2e-5)
    assert out["passed"]
    e = out["entries"]["logits"]
    assert e["max_abs_err"] == pytest.approx(1e-6, rel=1e-6)
    assert e["max_rel_err"] == pytest.approx(1e-6 / abs(a["logits"][1, 2, 3]), rel=1e-6)
    assert out["entries"]["grad:w"]["max_rel_err"] == pytest.approx(1e-5, rel=1e-6)
    assert out["max_abs_err"] == pytest.approx(1e-6, rel=1e-6)
    assert out["worst"] == "logits"


def test_compare_fails_beyond_tolerance(common):
    a = arrays()
    b = {k: v.copy() for k, v in a.items()}
    b["loss"] = a["loss"] + 1e-3                 # 4e-4 relative: > rtol 2e-4
    out = common.compare_arrays(a, b, 2e-4, 2e-5)
    assert not out["passed"] and out["failures"] == ["loss"]
    assert out["entries"]["loss"]["max_abs_err"] == pytest.approx(1e-3)
    assert not out["entries"]["loss"]["passed"] and out["entries"]["logits"]["passed"]
    assert out["worst"] == "loss" and out["worst_err_over_allowed"] > 1
    # the same arrays pass with a looser rtol, fail with float64's
    assert common.compare_arrays(a, b, 1e-3, 0.0)["passed"]
    assert not common.compare_arrays(a, b, 1e-9, 1e-11)["passed"]


def test_compare_atol_governs_tiny_values(common):
    ref = {"g": np.array([0.0, 1e-12, 0.5])}
    got = {"g": np.array([1e-6, 0.0, 0.5])}
    out = common.compare_arrays(ref, got, 2e-4, 2e-5)
    assert out["passed"]
    # relative error only where |ref| > atol: the zeros do not blow it up
    assert out["entries"]["g"]["max_rel_err"] == 0.0
    assert not common.compare_arrays(ref, got, 2e-4, 1e-7)["passed"]


def test_compare_atol_scales_with_magnitude(common):
    ref, got = {"x": np.array([100.0, 0.0])}, {"x": np.array([100.0, 5e-4])}
    # allowed at 0.0: atol * max(1, max|ref|) = 1e-5 * 100
    assert common.compare_arrays(ref, got, 0.0, 1e-5)["passed"]
    ref, got = {"x": np.array([1.0, 0.0])}, {"x": np.array([1.0, 5e-4])}
    assert not common.compare_arrays(ref, got, 0.0, 1e-5)["passed"]


def test_compare_nan_shape_and_missing_fail(common):
    a = arrays()
    b = {k: v.copy() for k, v in a.items()}
    b["logits"][0, 0, 0] = np.nan
    out = common.compare_arrays(a, b, 1.0, 1.0)
    assert not out["passed"] and out["failures"] == ["logits"]
    assert "NaN" in out["entries"]["logits"]["error"]
    b = {k: v.copy() for k, v in a.items()}
    b["grad:w"] = b["grad:w"][:3]
    b["grad:extra"] = np.zeros(2)
    del b["loss"]
    out = common.compare_arrays(a, b, 1.0, 1.0)
    assert set(out["failures"]) == {"grad:w", "loss", "grad:extra"}
    assert "shape" in out["entries"]["grad:w"]["error"]
    json.dumps(out)                              # JSON-ready as it is


def test_compare_mixed_dtypes(common):
    a = {"x": np.linspace(-1, 1, 7, dtype=np.float64)}
    b = {"x": a["x"].astype(np.float32)}
    assert common.compare_arrays(a, b, 2e-4, 2e-5)["passed"]
    assert not common.compare_arrays(a, b, 1e-12, 0.0)["passed"]


@pytest.mark.parametrize("seed", range(6))
def test_compare_uses_the_tests_tolerance_rule(common, seed):
    """One rule: the script's pass/fail is strategies.assert_close's, at every scale."""
    from strategies import TOLERANCE, assert_close
    r = np.random.default_rng(seed)
    ref = r.standard_normal(50) * 10.0 ** r.integers(-3, 3)
    for dtype, tol in TOLERANCE.items():
        for factor in (0.3, 0.9, 1.1, 3.0):         # errors around the allowed size
            got = ref + factor * (tol["rtol"] * np.abs(ref) + tol["atol"] *
                                  max(1.0, np.abs(ref).max())) * r.choice([-1, 1], 50)
            try:
                assert_close(got, ref, **tol)
                closes = True
            except AssertionError:
                closes = False
            assert common.compare_arrays({"x": ref}, {"x": got}, **tol)["passed"] == closes
            assert closes == (factor < 1), (dtype, factor)


# --- pytest's summary line --------------------------------------------------------------------
@pytest.mark.parametrize("text, counts, secs", [
    ("3 passed, 2 skipped in 1.2s", {"passed": 3, "skipped": 2}, 1.2),
    ("1 failed, 3 passed in 0.45s", {"failed": 1, "passed": 3}, 0.45),
    ("===== 10 passed, 1 warning in 12.01s =====", {"passed": 10, "warnings": 1}, 12.01),
    ("2 passed, 5 deselected, 3 warnings in 75.20s (0:01:15)",
     {"passed": 2, "deselected": 5, "warnings": 3}, 75.2),
    ("1 error in 0.31s", {"errors": 1}, 0.31),
    ("1 failed, 2 errors, 1 xfailed, 1 xpassed in 3.00s",
     {"failed": 1, "errors": 2, "xfailed": 1, "xpassed": 1}, 3.0),
    ("no tests ran in 0.01s", {}, 0.01),
    ("\x1b[32m\x1b[1m4 passed\x1b[0m\x1b[32m in 0.10s\x1b[0m", {"passed": 4}, 0.1),
])
def test_parse_pytest_summary(common, text, counts, secs):
    out = common.parse_pytest_summary(f"....s.x\n{text}\n")
    assert out["counts"] == counts and out["seconds"] == pytest.approx(secs)
    assert "=" not in out["line"] and "\x1b" not in out["line"]


def test_parse_pytest_summary_picks_the_last_line(common):
    text = ("tests/a.py ..F\n=== FAILURES ===\nE assert 1 == 2\n"
            "FAILED tests/a.py::test_x - assert 1 == 2\n"
            "!!!!! stopping after 1 failures !!!!!\n1 failed, 2 passed in 0.50s\n")
    out = common.parse_pytest_summary(text)
    assert out["counts"] == {"failed": 1, "passed": 2}
    assert out["line"] == "1 failed, 2 passed in 0.50s"
    assert common.parse_pytest_summary("ImportError: no module\n") is None
    assert common.parse_pytest_summary("") is None


def test_pytest_command(script, common):
    cmd = common.pytest_command("cuda")
    assert cmd[:3] == [sys.executable, "-m", "pytest"] and cmd[-1] == "tests"
    for a in ("-q", "-x", "-p", "no:cacheprovider"):
        assert a in cmd
    assert cmd[cmd.index("-k") + 1] == "cuda"
    assert "-x" not in common.pytest_command("cuda", maxfail=20)
    assert "--maxfail=20" in common.pytest_command("cuda", maxfail=20)
    assert script.parse_args(["--maxfail", "0"]).maxfail == 0


def test_run_test_suite_records_counts_failures_and_tail(common, tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import os, pytest\n"
        "def test_cpu_ok():\n    assert os.environ['TINYGRADLM_TEST_DEVICES'] == 'cpu'\n"
        "def test_cpu_skip():\n    pytest.skip('not here')\n"
        "def test_other():\n    pass\n"
        "def test_cpu_fails():\n    assert 1 == 2\n"
        "def test_cpu_never_run():\n    pass\n")           # -x stops before it
    log = tmp_path / "out" / "log.txt"
    rec = common.run_test_suite("cpu", 60, str(log), extra_args=[str(tmp_path)], cwd=str(tmp_path))
    assert rec["status"] == "failed" and rec["returncode"] == 1 and not rec["timed_out"]
    assert rec["counts"] == {"failed": 1, "passed": 1, "skipped": 1, "deselected": 1}, \
        rec["tail"]
    assert rec["summary"].startswith("1 failed, 1 passed")
    assert any("test_cpu_fails" in f for f in rec["failures"])
    assert log.read_text().splitlines()[-1] == rec["tail"][-1]


def test_run_test_suite_timeout(common, tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import time\ndef test_cpu_slow():\n    time.sleep(60)\n")
    rec = common.run_test_suite("cpu", 1, extra_args=[str(tmp_path)], cwd=str(tmp_path))
    assert rec["timed_out"] and rec["status"] == "failed" and rec["summary"] is None


# --- the whole script -------------------------------------------------------------------------
@pytest.mark.skipif(HAS_GPU, reason="checks the behaviour without a GPU")
def test_main_without_gpu_writes_reason_and_exits_2(script, tmp_path):
    out = tmp_path / "results" / "gpu_check.json"
    result = script.main(["--skip-tests", "--out", str(out)])
    assert result["exit_code"] == 2
    saved = json.loads(out.read_text())
    env = saved["sections"]["environment"]
    assert saved["exit_code"] == 2 and saved["cuda_missing"]
    assert env["tinygradlm_cuda_is_available"] is False and env["cuda_unavailable_reason"]
    assert set(saved["sections"]) == {"environment"}          # nothing else was tried
    assert saved["sections"]["environment"]["python"]


def check_smoke_result(result, saved, device):
    assert saved["exit_code"] == result["exit_code"] and saved["device"] == device
    assert saved["running"] is None and saved["mode"] == "smoke"
    assert set(saved["sections"]) == {"environment", "test_suite", "equality", "throughput"}
    assert saved["sections"]["test_suite"] == {"status": "skipped"}
    eq, tp = saved["sections"]["equality"], saved["sections"]["throughput"]
    assert set(eq["cases"]) == {"float64/fused", "float64/reference", "float32/fused",
                                "float32/reference"}
    assert eq["model"]["n_layer"] == 1 and tp["train"]["batch_size"] == 2
    assert {"tinygradlm (fused)", "tinygradlm (reference)"} <= set(tp["implementations"])
    return eq, tp


def test_smoke_dry_run_on_cpu(script, tmp_path):
    """Every section's logic end to end, with the CPU standing in for the GPU."""
    out = tmp_path / "gpu_check.json"
    result = script.main(["--smoke", "--device", "cpu", "--out", str(out)])
    eq, tp = check_smoke_result(result, json.loads(out.read_text()), "cpu")
    assert result["exit_code"] == 0, {k: v.get("error") for k, v in eq["cases"].items()}
    for case in eq["cases"].values():
        assert case["status"] == "ok" and case["initial_weights_identical"]
        assert case["comparison"]["max_abs_err"] == 0.0          # cpu against itself
        assert case["grads"]["n"] == len(case["comparison"]["entries"]) - 2
    for name, r in tp["implementations"].items():
        assert r["status"] == "ok", r.get("error")
        assert r["timed_steps"] == 2 and r["ms_per_step"] > 0 and r["tokens_per_s"] > 0
        assert r["tokens_per_step"] == 2 * 16 and np.isfinite(r["last_loss"])
    assert tp["loss_check"]["match"]
    assert len(tp["loss_check"]["loss_per_step_max_abs_diff"]) == 4    # cold, estimate, 2 timed


@pytest.mark.skipif(not HAS_GPU, reason="needs tinygradlm.cuda.is_available()")
def test_smoke_in_process_on_gpu(script, tmp_path):
    out = tmp_path / "gpu_check.json"
    result = script.main(["--smoke", "--skip-tests", "--out", str(out)])
    eq, tp = check_smoke_result(result, json.loads(out.read_text()), "cuda")
    assert saved_env_ok(out)
    for section in (eq, tp):
        assert section["status"] in ("ok", "failed")            # ran, did not crash


def saved_env_ok(path):
    env = json.loads(path.read_text())["sections"]["environment"]
    return env["status"] == "ok" and env["tinygradlm_cuda_is_available"]


@pytest.mark.skipif(HAS_GPU or not os.path.isfile(FAKE_CUPY),
                    reason="runs the GPU path with tests/fake_cupy.py where there is no GPU")
def test_script_smoke_with_fake_cupy(tmp_path):
    """The script run as a script, down the GPU path (CuPy faked with NumPy in a subprocess):
    it must get through every section and write its JSON, whatever the library's state."""
    out = tmp_path / "gpu_check.json"
    code = ("import runpy, sys\n"
            f"sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})\n"
            "import fake_cupy\nfake_cupy.install()\n"
            f"sys.argv = [{SCRIPT!r}, '--smoke', '--out', {str(out)!r}]\n"
            f"runpy.run_path({SCRIPT!r}, run_name='__main__')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert saved["exit_code"] == proc.returncode
    assert saved_env_ok(out)
    assert saved["sections"]["environment"]["cupy"]["version"].endswith("+fake")
    check_smoke_result(saved, saved, "cuda")
