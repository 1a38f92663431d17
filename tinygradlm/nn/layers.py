"""Basic layers: Linear, Embedding, LayerNorm, Dropout, activations and containers."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .. import functional as F
from ..creation import ones, rand, randn, skip_init, zeros
from ..tensor import Tensor
from .module import Module, Parameter


def uniform(shape, bound: float, dtype=None, device=None) -> Tensor:
    """Uniform in [-bound, bound); zeros under ``skip_init`` (weights about to be loaded:
    not even the scaling arithmetic is worth doing)."""
    kw = {} if dtype is None else {"dtype": dtype}
    if skip_init.active:
        return zeros(*shape, device=device, **kw)
    return rand(*shape, device=device, **kw) * (2 * bound) - bound


class Linear(Module):
    """y = x @ W + b, with W stored (in_features, out_features) so the code reads as the math
    (and GPT-2 checkpoints load without transposes).  x (..., in) -> y (..., out).
    Initialised uniformly in +-1/sqrt(in_features), as PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.weight = Parameter(uniform((in_features, out_features), bound))
        self.bias = Parameter(uniform((out_features,), bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """A lookup table: ids (...) -> vectors (..., embedding_dim).  Initialised N(0, 1)."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(randn(num_embeddings, embedding_dim))

    def forward(self, ids) -> Tensor:
        return F.embedding(ids, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


def sinusoidal_table(num_positions: int, dim: int):
    """The original Transformer's positions (Vaswani et al., 2017, section 3.5), a NumPy
    float64 array (num_positions, dim)::

        PE[pos, 2i]     = sin(pos / 10000^(2i / dim))
        PE[pos, 2i + 1] = cos(pos / 10000^(2i / dim))

    Each pair of columns is a clock at its own frequency, from one turn every 2*pi positions
    down to one every 10000*2*pi: nearby positions get similar vectors, and PE[pos + k] is a
    fixed rotation of PE[pos], which makes relative offsets easy to attend to."""
    pos = np.arange(num_positions, dtype=np.float64)[:, None]      # (P, 1)
    freq = 10000.0 ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)  # (ceil(dim/2),)
    table = np.zeros((num_positions, dim))
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq[:dim // 2])
    return table


class SinusoidalPositionalEmbedding(Module):
    """Fixed sinusoidal position vectors (``sinusoidal_table``): positions (...) ->
    (..., embedding_dim).  No parameters, so nothing to learn or save, and it is defined for
    any position up to ``num_positions``; its gradient simply stops here."""

    def __init__(self, num_positions: int, embedding_dim: int):
        super().__init__()
        self.num_positions, self.embedding_dim = num_positions, embedding_dim
        self.table = sinusoidal_table(num_positions, embedding_dim)   # NumPy, host

    def forward(self, positions, dtype=None, device=None) -> Tensor:
        """``dtype`` / ``device``: those of the token embeddings it is added to (default:
        float32 on the default device), so that it never widens a float32 model."""
        pos = np.asarray(positions.to("cpu").data if isinstance(positions, Tensor)
                         else positions)
        if pos.size and (pos.min() < 0 or pos.max() >= self.num_positions):
            raise IndexError(f"SinusoidalPositionalEmbedding: position {int(pos.max())} is out "
                             f"of range for {self.num_positions} positions")
        return Tensor(self.table[pos], dtype=dtype or "float32", device=device)

    def extra_repr(self):
        return f"{self.num_positions}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise the last dims to mean 0, variance 1, then scale (weight=1) and shift (bias=0)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        super().__init__()
        self.normalized_shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                                 else tuple(normalized_shape))
        self.eps = eps
        self.weight = Parameter(ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = Parameter(zeros(self.normalized_shape)) if elementwise_affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class Dropout(Module):
    """Randomly zero elements with probability p while training; the identity in eval()."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class GELU(Module):
    def __init__(self, approximate: str = "tanh"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class SiLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x)


class ELU(Module):
    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)


class Softplus(Module):
    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(x, self.beta, self.threshold)


class Hardtanh(Module):
    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x: Tensor) -> Tensor:
        return F.hardtanh(x, self.min_val, self.max_val)


class Softmax(Module):
    """Softmax over ``dim`` -- the last by default (PyTorch's default, None, picks a dim by a
    legacy rule and warns)."""
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self.dim)


class LogSoftmax(Softmax):
    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, self.dim)


class Softmin(Softmax):
    def forward(self, x: Tensor) -> Tensor:
        return F.softmin(x, self.dim)


class Identity(Module):
    """Returns its input: a placeholder where a layer is switched off."""
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class Mish(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.mish(x)


class SELU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.selu(x)


class CELU(Module):
    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.celu(x, self.alpha)


class Softsign(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.softsign(x)


class Hardsigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.hardsigmoid(x)


class Hardswish(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.hardswish(x)


class ReLU6(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x)


class LogSigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.logsigmoid(x)


class _Container(Module):
    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(_Container):
    """Modules applied one after another; ``Sequential(a, b)`` or ``Sequential(OrderedDict)``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                setattr(self, name, m)
        else:
            for i, m in enumerate(modules):
                setattr(self, str(i), m)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, x):
        for m in self:
            x = m(x)
        return x


class ModuleList(_Container):
    """A list of modules whose parameters are registered (a plain list would hide them)."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]


class ModuleDict(_Container):
    """A dict of named modules whose parameters are registered (nanoGPT's ``transformer``)."""

    def __init__(self, modules=None):
        super().__init__()
        for name, m in (modules or {}).items():
            setattr(self, name, m)

    def __getitem__(self, name):
        return self._modules[name]

    def __setitem__(self, name, module):
        setattr(self, name, module)

    def __contains__(self, name):
        return name in self._modules

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()
