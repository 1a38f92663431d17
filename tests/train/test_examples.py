"""The example scripts run end to end as a student would run them."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_moons_example_learns():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "two_moons.py"),
                          "--steps", "300"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    accuracy = float(out.stdout.strip().splitlines()[-1].split("test accuracy")[1])
    assert accuracy >= 0.95


def _run_example(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT})


def _gpu_state():
    import tinygradlm as tg
    if os.environ.get("TINYGRADLM_FAKE_CUPY") == "1":
        return "fake"                   # the stand-in lives in this process only
    return "gpu" if tg.cuda.is_available() else "none"


def test_examples_take_device_and_say_why_without_a_gpu(tmp_path):
    state = _gpu_state()
    if state == "fake":
        import pytest
        pytest.skip("the CuPy stand-in is not installed in the example's own process")
    import tinygradlm as tg
    tg.manual_seed(0)
    tiny = tg.nn.GPT(tg.nn.GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1,
                                     n_embd=4))
    tiny.save_pretrained(tmp_path, tg.data.CharTokenizer.from_text("abcde"))
    runs = {"two_moons.py": _run_example("two_moons.py", "--steps", "20", "--device", "cuda"),
            "sample.py": _run_example("sample.py", "--out_dir", str(tmp_path), "--device", "cuda",
                                      "--prompt", "ab", "--max_new_tokens", "3")}
    for name, out in runs.items():
        if state == "gpu":
            assert out.returncode == 0, (name, out.stderr)
        else:
            assert out.returncode != 0, name
            assert "device 'cuda' is not available" in out.stderr, (name, out.stderr)
            assert '.[gpu]' in out.stderr and "Traceback" not in out.stderr, name
