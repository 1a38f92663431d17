"""``Module`` and ``Parameter``: the containers every layer and model is built from."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import backend, optim
from ..tensor import Tensor


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Parameter(Tensor):
    """A tensor that is a learnable weight of a module: it requires grad, and assigning it as
    a module attribute registers it (so ``parameters()`` and ``state_dict()`` find it)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data,
                         requires_grad=requires_grad)

    @classmethod
    def _from_op(cls, array, requires_grad=False):
        # What an op computes from a parameter is a plain tensor, as in PyTorch: assigning
        # ``self.h = self.weight * 2`` must not register a new parameter.
        return Tensor._from_op(array, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models.  Subclasses set sub-modules and parameters as
    attributes in ``__init__`` and compute in ``forward``; call the module like a function.

    Parameters, buffers and sub-modules are kept in insertion order, so ``state_dict()`` keys
    come out in the order the model was built, every time.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before assigning {name!r}")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = value         # a new value for a buffer keeps it a buffer
            return
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        if isinstance(value, (Parameter, Module)):
            self.__dict__.pop(name, None)       # or the old plain attribute would shadow it
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Called only when normal lookup fails: look in the registries.
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, tensor):
        """A non-learnable tensor that belongs to the module's state (e.g. a fixed mask)."""
        self._buffers[name] = tensor

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- walking the tree -----------------------------------------------------------------
    def named_modules(self, prefix="", remove_duplicate: bool = True):
        """(name, module) for this module and every descendant, depth first, each once; with
        ``remove_duplicate=False`` a shared sub-module comes under each of its names (as
        ``state_dict`` needs)."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if remove_duplicate and id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            stack.extend(reversed([(_join(name, k), c) for k, c in m._modules.items()]))

    def _named_tensors(self):
        """Every parameter and buffer under every name it has, in build order."""
        for mod_name, m in self.named_modules(remove_duplicate=False):
            for store in (m._parameters, m._buffers):
                for k, t in store.items():
                    if t is not None:
                        yield _join(mod_name, k), t

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        """(name, parameter) pairs; a parameter shared by two modules (tied weights) is
        listed once, under the first name."""
        seen = set()
        for mod_name, m in self.named_modules(prefix):
            for k, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield _join(mod_name, k), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        for mod_name, m in self.named_modules():
            for k, b in m._buffers.items():
                yield _join(mod_name, k), b

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module and then on self (e.g. for initialisation)."""
        for m in reversed(list(self.modules())):
            fn(m)
        return self

    # --- modes, gradients, devices --------------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True):
        optim.zero_grad(self.parameters(), set_to_none)

    def to(self, target):
        """Move every parameter and buffer to a device, or cast the floating-point ones to a
        dtype (integer and boolean buffers such as masks keep theirs), in place; returns self."""
        if target is None:
            raise TypeError(f"{type(self).__name__}.to: expected a device ('cpu', 'cuda') or a "
                            f"dtype, got None")
        to_device = isinstance(target, str) and target.split(":")[0] in backend.DEVICES
        for m in self.modules():
            for store in (m._parameters, m._buffers):
                for t in store.values():
                    if t is None or (not to_device and t.dtype.kind != "f"):
                        continue
                    moved = t.detach().to(target)
                    t.data = moved.data
                    if t.grad is not None:
                        t.grad = t.grad.to(target)
        return self

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    # --- state ----------------------------------------------------------------------------
    def state_dict(self):
        """Name -> tensor (sharing data with the module) for every parameter and buffer, in
        build order.  Tied parameters appear under each of their names, as in PyTorch."""
        return OrderedDict((name, t.detach()) for name, t in self._named_tensors())

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy values into the module's own tensors (in place, so optimizers keep working).
        Raises a KeyError/ValueError that names every missing, unexpected or mis-shaped entry.
        ``assign=True`` (PyTorch's) makes each tensor take the given array instead of a copy
        of it: a freshly built model loading a big checkpoint then never holds every weight
        twice."""
        own = OrderedDict(self._named_tensors())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        values = {k: (state_dict[k].data if isinstance(state_dict[k], Tensor) else state_dict[k])
                  for k in own if k in state_dict}
        for k, value in values.items():
            shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
            if shape != own[k].shape:
                problems.append(f"size mismatch for {k}: the checkpoint has {shape}, "
                                f"the model has {own[k].shape}")
        if problems:
            raise KeyError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for k, value in values.items():
            t = own[k]
            value = backend.to_device(value, t.device).astype(t.dtype, copy=False)
            if not assign:
                t.data[...] = value
            elif value.ndim == t.data.ndim:     # the caller's array, if it can be written to
                xp = backend.get_array_module(value)
                value = xp.ascontiguousarray(value)
                writable = getattr(getattr(value, "flags", None), "writeable", True)
                t.data = value if writable else value.copy()
            else:                               # a scalar for a 0-d tensor
                t.data = t.xp.asarray(value, dtype=t.dtype).copy()
        return self

    # --- printing -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
