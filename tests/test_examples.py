"""The example scripts run end to end as a student would run them."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_moons_example_learns():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "two_moons.py"),
                          "--steps", "300"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    accuracy = float(out.stdout.strip().splitlines()[-1].split("test accuracy")[1])
    assert accuracy >= 0.95
