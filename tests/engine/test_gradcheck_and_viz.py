"""The public gradcheck catches wrong gradients and says where; to_dot draws the graph."""
import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm import viz
from tinygradlm.autograd import Function
from tinygradlm.gradcheck import GradcheckError, gradcheck

from strategies import T

# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")


class WrongSquare(Function):
    """x**2 with a deliberately wrong backward (forgets the factor 2)."""

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, g):
        (x,) = self.saved
        return (g * x,)


def test_gradcheck_passes_a_correct_function():
    assert gradcheck(lambda x, y: (x * y).tanh(), T(np.linspace(-1, 1, 6).reshape(2, 3)),
                     T(np.linspace(0.5, 1, 3)))


def test_gradcheck_reports_the_worst_element():
    x = T(np.array([[0.5, -1.0], [2.0, 0.1]]))
    with pytest.raises(GradcheckError) as err:
        gradcheck(lambda t: WrongSquare.apply(t), x)
    report = str(err.value)
    assert "input 0 (shape (2, 2))" in report and "element (1, 0)" in report   # largest |x|
    assert "analytic" in report and "numerical" in report
    assert "out of tolerance: 4 of 4" in report
    assert gradcheck(lambda t: WrongSquare.apply(t), x, raise_exception=False) is False


def test_gradcheck_random_direction_for_large_inputs():
    x = T(np.linspace(0.1, 2, 500))
    assert gradcheck(lambda t: (t * t).sum(), x, max_elements=100)
    with pytest.raises(GradcheckError, match="random direction"):
        gradcheck(lambda t: WrongSquare.apply(t), x, max_elements=100)


def test_gradcheck_refuses_float32_and_no_grad_inputs():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * 2, tg.Tensor([1.0], requires_grad=True))
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda t: t * 2, T([1.0], requires_grad=False))


def test_gradcheck_of_a_function_that_ignores_an_input():
    assert gradcheck(lambda a, b: a * 3, T([1.0, 2.0]), T([5.0]))


def test_to_dot_shows_ops_shapes_and_names():
    w = T(np.ones((3, 2)))
    x = tg.Tensor(np.ones((4, 3), dtype=np.float32), requires_grad=True)
    y = (x.double() @ w).relu().sum()
    dot = viz.to_dot(y, names={"w": w})
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for op in ("MatMul", "ReLU", "Sum", "Cast"):
        assert f'label="{op}"' in dot
    assert "4x3 float32" in dot and "3x2 float64" in dot and "w\\n" in dot
    assert dot.count("->") == 4 + 5     # 4 ops, one edge out each; 5 inputs in all


def test_plot_graph_without_graphviz_writes_dot(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    y = (T([1.0]) * 2).sum()
    with pytest.raises(FileNotFoundError, match="Graphviz"):
        viz.plot_graph(y, str(tmp_path / "g.svg"))
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


@pytest.mark.skipif(viz.shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_plot_graph_with_graphviz(tmp_path):
    y = (T([1.0]) * 2).sum()
    path = viz.plot_graph(y, str(tmp_path / "g.svg"))
    assert "<svg" in open(path).read()
