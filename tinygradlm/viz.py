"""Draw the graph behind a tensor (DeZero's ``plot_dot_graph``): Graphviz DOT text, and an
SVG/PNG when the ``dot`` program is installed."""
from __future__ import annotations

import os
import shutil
import subprocess

from .tensor import Tensor


def to_dot(tensor: Tensor, names: dict | None = None) -> str:
    """DOT text of the graph that produced ``tensor``: ellipses are tensors (shape, dtype,
    and a name from ``names`` -- e.g. ``dict(model.named_parameters())`` -- when given),
    boxes are ops.  Arrows follow the forward computation.  Draw before ``backward()``
    (or backward with ``retain_graph=True``): backward frees the graph's links."""
    label_of = {id(t): n for n, t in (names or {}).items()}
    lines = ["digraph g {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];']
    seen, stack = set(), [tensor]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        color = "lightblue" if t.requires_grad and t.is_leaf else (
            "orange" if t is tensor else "white")
        name = f"{label_of[id(t)]}\\n" if label_of.get(id(t)) else ""
        label = name + ("x".join(str(n) for n in t.shape) or "scalar") + f" {t.dtype}"
        lines.append(f'  t{id(t)} [label="{label}", style=filled, fillcolor={color}];')
        fn = t._ctx
        if fn is not None:
            lines.append(f'  f{id(fn)} [label="{fn.name}", shape=box, style=filled, '
                         f'fillcolor=lightgrey];')
            lines.append(f"  f{id(fn)} -> t{id(t)};")
            for inp in fn.inputs:
                lines.append(f"  t{id(inp)} -> f{id(fn)};")
                stack.append(inp)
    lines.append("}")
    return "\n".join(lines) + "\n"


def plot_graph(tensor: Tensor, path: str = "graph.svg", names: dict | None = None) -> str:
    """Write the graph as an image (format from the file extension: .svg, .png, .pdf) with
    Graphviz's ``dot``; without Graphviz, write the ``.dot`` text and say how to render it."""
    text = to_dot(tensor, names)
    dot = shutil.which("dot")
    base, ext = os.path.splitext(path)
    if dot is None:
        dot_path = base + ".dot"
        with open(dot_path, "w") as f:
            f.write(text)
        raise FileNotFoundError(f"plot_graph: Graphviz's 'dot' program was not found, so only "
                                f"{dot_path} was written; install graphviz (e.g. apt-get install "
                                f"graphviz) or paste the text into an online DOT viewer")
    subprocess.run([dot, f"-T{ext.lstrip('.') or 'svg'}", "-o", path], input=text.encode(),
                   check=True)
    return path
