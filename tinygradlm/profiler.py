"""Where does a training step's time go?  A profiler that answers op by op.

    import tinygradlm as tg
    with tg.profiler.profile() as prof:
        for x, y in batches:
            _, loss = model(x, y); loss.backward(); opt.step(); opt.zero_grad()
            prof.step()                 # optional: the table then shows means per step
    print(prof.table())                 # slowest first, like torch's key_averages().table()
    rows = prof.key_averages()          # the same numbers as data (ProfileRow)

Or for a training run (``fit`` prints the table; the first iteration, which compiles the
kernels, is left out): ``TINYGRADLM_PROFILE=1 python examples/train_char_lm.py``.

**What it measures.**  Every op is one ``Function`` class, and every call goes through
``Function.apply`` (the forward plus its bookkeeping: checks, recording the node) and later
the class's ``backward``.  Inside the block these methods are swapped for timed wrappers
(monkeypatching); the originals come back at the end, so code outside a profile pays nothing.
Each op class gets a row: forward calls and time, backward calls and time.  The optimizer's
``step`` (``AdamW.step``) and ``optim.clip_grad_norm_`` get rows too.

**Why the engine shows up.**  Between the ops' backwards, ``autograd.backward`` works too: it
sums each gradient back to its input's shape (``_fit``: broadcasting undone) and adds the
leaves' gradients into ``.grad`` (``_accumulate``).  Those are the ``engine:`` rows.

**Why kernel time is inside op time.**  A fused op (Attention, LayerNorm, ...) calls a compiled
Numba kernel from its forward or backward.  A ``kernel:`` row says how much of the op's time
the compiled code takes (the rest is the op's Python), so it is never added to the total.

**Nothing counts twice.**  Time belongs to the outermost timed call: an op inside another op,
a ``super().backward``, the ops inside ``clip_grad_norm_`` are part of the outer call's row.
So the rows (kernels aside) never overlap, and "Python outside ops" (the wall time minus all
of them: modules, the graph walk itself, ``loss.item()``) makes the shares add up to 100%.

**Limits.**  Op classes are found at the start (``Function.__subclasses__()``): a class made
later has its forward timed but not its backward.  Fused ops load on first use, so in fused
mode the start loads them.  Profiles do not nest.  On the GPU an op returns before the GPU
is done: rows show launch times and the wait lands where the host first reads a result
(``loss.item()``).  A wrapper costs about a microsecond per call.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace

from . import autograd, kernels, optim

# The helpers of autograd.backward that get rows, by their names in autograd.py.
ENGINE = {"_fit": "engine: reduce_to_shape", "_accumulate": "engine: accumulate .grad"}
OUTSIDE = "Python outside ops"
KERNEL_MODULE = "tinygradlm.kernels.jit"      # home of ParallelKernel, the CPU kernels' class

_recording = None                              # the profile that is recording now, if any


@dataclass
class ProfileRow:
    """One row of the table, totals over the whole profile (``table`` divides by steps)."""
    name: str                 # "MatMul", "AdamW.step", "engine: accumulate .grad", "kernel: ..."
    kind: str                 # "op", "optimizer", "engine", "kernel" or "python"
    calls: int = 0            # forward calls of an op or kernel; calls of an optimizer row
    forward_s: float = 0.0    # seconds in Function.apply; an optimizer or python row's time
    backward_calls: int = 0   # calls of the op's backward (engine rows: they run in backward)
    backward_s: float = 0.0
    share: float = 0.0        # percent of the profiled wall time (kernels: inside their op's)

    @property
    def total_s(self) -> float:
        return self.forward_s + self.backward_s


SORT_KEYS = {
    "total": lambda r: (-r.total_s, r.name),
    "forward": lambda r: (-r.forward_s, r.name),
    "backward": lambda r: (-r.backward_s, r.name),
    "calls": lambda r: (-(r.calls + r.backward_calls), r.name),
    "name": lambda r: r.name,
}


class profile:
    """Time every op, optimizer step and engine helper called inside ``with profile():``
    (or between ``start()`` and ``stop()``; several intervals add up).  ``step()`` marks the
    end of a training step, so that ``table()`` shows means per step."""

    def __init__(self):
        self.wall_s = 0.0         # seconds recorded (all start..stop intervals)
        self.step_count = 0       # times step() was called
        self._rows = {}           # name -> ProfileRow
        self._patches = []        # (owner, attribute, original value), to put back
        self._t0 = None           # perf_counter() at start(); None when not recording
        self._running = None      # phase of the timed call in progress ("forward", ...)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        global _recording
        if _recording is not None:
            raise RuntimeError("profiler: a profile is already recording; profiles do not "
                               "nest (stop the outer one first)")
        _load_fused_kernels()
        self._running = None
        try:
            self._patch_all()
        except BaseException:
            self._restore()
            raise
        _recording = self
        self._t0 = time.perf_counter()

    def stop(self):
        """Stop recording and put every patched method back (nothing happens if stopped)."""
        global _recording
        if self._t0 is None:
            return
        self.wall_s += time.perf_counter() - self._t0
        self._t0 = None
        self._restore()
        _recording = None

    def step(self):
        self.step_count += 1

    # --- the patches ----------------------------------------------------------------------
    def _patch_all(self):
        Function = autograd.Function
        for cls in [Function, *_subclasses(Function)]:
            if isinstance(cls.__dict__.get("apply"), classmethod):
                timed = self._timed(cls.__dict__["apply"].__func__, "forward", "op",
                                    lambda args: args[0].__name__)      # args[0] is the class
                self._patch(cls, "apply", classmethod(timed))
            if "backward" in cls.__dict__:
                self._patch(cls, "backward", self._timed(
                    cls.__dict__["backward"], "backward", "op", lambda a: type(a[0]).__name__))
        Optimizer = getattr(optim, "Optimizer", None)
        for cls in [Optimizer, *_subclasses(Optimizer)] if Optimizer else []:
            if "step" in cls.__dict__:      # the base class's step says which optimizer ran
                self._patch(cls, "step", self._timed(
                    cls.__dict__["step"], "other", "optimizer",
                    lambda a: f"{type(a[0]).__name__}.step"))
        if hasattr(optim, "clip_grad_norm_"):
            self._patch(optim, "clip_grad_norm_", self._timed(
                optim.clip_grad_norm_, "other", "optimizer", lambda a: "clip_grad_norm_"))
        for attr, name in ENGINE.items():   # looked up as globals by autograd.backward
            if hasattr(autograd, attr):
                self._patch(autograd, attr, self._timed(
                    getattr(autograd, attr), "backward", "engine", lambda a, n=name: n))
        ParallelKernel = getattr(sys.modules.get(KERNEL_MODULE), "ParallelKernel", None)
        if ParallelKernel is not None:
            self._patch(ParallelKernel, "__call__", self._timed_kernel(
                ParallelKernel.__dict__["__call__"]))

    def _patch(self, owner, attribute, value):
        self._patches.append((owner, attribute, owner.__dict__[attribute]))
        setattr(owner, attribute, value)

    def _restore(self):
        while self._patches:
            owner, attribute, original = self._patches.pop()
            setattr(owner, attribute, original)

    def _timed(self, fn, phase, kind, name_of):
        """``fn``, adding its time to the row ``name_of(args)`` -- unless another timed call
        is running, which then owns this time (so nothing is counted twice)."""
        def timed(*args, **kwargs):
            if self._running is not None:
                return fn(*args, **kwargs)
            self._running = phase
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._running = None
                self._add(name_of(args), kind, phase, time.perf_counter() - t0)
        return timed

    def _timed_kernel(self, call):
        """``ParallelKernel.__call__``, timed always: a kernel runs inside an op."""
        def timed(kernel, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return call(kernel, *args, **kwargs)
            finally:
                phase = "backward" if self._running == "backward" else "forward"
                self._add("kernel: " + _kernel_name(kernel), "kernel", phase,
                          time.perf_counter() - t0)
        return timed

    def _add(self, name, kind, phase, seconds):
        row = self._rows.get(name)
        if row is None:
            row = self._rows[name] = ProfileRow(name, kind)
        if phase == "backward":
            row.backward_calls += 1
            row.backward_s += seconds
        else:
            row.calls += 1
            row.forward_s += seconds

    # --- the results ----------------------------------------------------------------------
    def key_averages(self) -> list:
        """The rows (copies), slowest first, then "Python outside ops"; totals, in seconds."""
        wall = self.wall_s + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)
        rows = sorted((replace(r) for r in self._rows.values()), key=SORT_KEYS["total"])
        accounted = sum(r.total_s for r in rows if r.kind != "kernel")
        rows.append(ProfileRow(OUTSIDE, "python", forward_s=max(wall - accounted, 0.0)))
        for r in rows:
            r.share = 100.0 * r.total_s / wall if wall > 0 else 0.0
        return rows

    def table(self, sort_by: str = "total", row_limit: int | None = None) -> str:
        """A fixed-width Markdown table; means per step when ``step()`` was called."""
        if sort_by not in SORT_KEYS:
            raise ValueError(f"table: sort_by={sort_by!r}; expected one of {tuple(SORT_KEYS)}")
        *rows, outside = self.key_averages()
        wall = sum(r.total_s for r in rows if r.kind != "kernel") + outside.total_s
        n = self.step_count or 1
        ops = sorted((r for r in rows if r.kind != "kernel"), key=SORT_KEYS[sort_by])
        kernel_rows = sorted((r for r in rows if r.kind == "kernel"), key=SORT_KEYS[sort_by])
        lines = [("name", "calls", "fwd ms", "bwd calls", "bwd ms", "total ms", "% wall"),
                 *(_cells(r, n) for r in ops[:row_limit]), _cells(outside, n),
                 ("total (wall time)", "", "", "", "", _ms(wall / n), "100.0"),
                 *(_cells(r, n) for r in kernel_rows[:row_limit])]
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        text = ["| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(line, widths))) + " |"
                for line in lines]
        rule = [":" + "-" * (widths[0] + 1)] + ["-" * (w + 1) + ":" for w in widths[1:]]
        text.insert(1, "|" + "|".join(rule) + "|")          # Markdown: numbers align right
        per = f"ms per step (mean of {self.step_count})" if self.step_count else "ms (totals)"
        notes = [f"profile: {wall:.3f} s of wall time; times in {per}", *text]
        if any(r.kind == "engine" for r in rows):
            notes.append("engine: rows are autograd.backward's own work between the ops.")
        if row_limit is not None and len(ops) > row_limit:
            notes.append(f"row_limit={row_limit}: {len(ops) - row_limit} rows not shown.")
        if kernel_rows:
            notes.append("kernel: rows are compiled code, already inside their op's time "
                         "above; they are not in the total.")
        return "\n".join(notes)


def _cells(r: ProfileRow, n: int) -> tuple:
    """One table line; a column is blank where the row has no such calls."""
    timed = r.kind in ("op", "kernel", "engine")
    return (r.name,
            f"{r.calls / n:.4g}" if r.calls else "",
            _ms(r.forward_s / n) if r.calls and timed else "",
            f"{r.backward_calls / n:.4g}" if r.backward_calls else "",
            _ms(r.backward_s / n) if r.backward_calls else "",
            _ms(r.total_s / n), f"{r.share:.1f}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def _subclasses(cls) -> list:
    """Every subclass of ``cls``, at any depth, each once."""
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return list(dict.fromkeys(out))


def _kernel_name(kernel) -> str:
    """The Python function a ParallelKernel compiled (``softmax_forward``), else its repr."""
    func = getattr(getattr(kernel, "parallel", None), "py_func", None)
    return getattr(func, "__name__", None) or repr(kernel)


def _load_fused_kernels():
    """Fused ops are imported on their first call; in fused mode import them now, so that
    their classes and kernels are patched from the first step."""
    if kernels.mode() != "fused":
        return
    for name in getattr(kernels, "_MODULES", {}):
        try:
            kernels.load(name)
        except ImportError:             # no numba: the reference composites run instead
            return


def from_env(variable: str = "TINYGRADLM_PROFILE"):
    """A new ``profile`` when ``$TINYGRADLM_PROFILE`` is set (1, true, yes, on), else None:
    how the training loop is profiled without a flag."""
    value = os.environ.get(variable, "").strip().lower()
    return None if value in ("", "0", "false", "no", "off") else profile()
