"""Optimizers (SGD, Adam, AdamW), gradient clipping and learning-rate schedules.

Updates are written out as the formulas in the papers / PyTorch docs, on raw arrays and in
place (the parameters keep their identity, so modules and optimizer state stay linked).
"""
from __future__ import annotations

import math

import numpy as np

from . import backend, kernels
from .autograd import no_grad
from .tensor import Tensor


class Optimizer:
    """Holds ``param_groups`` (each a dict of hyper-parameters plus its ``params``) and a
    per-parameter ``state``.  Pass a list of parameters, or a list of group dicts to give
    different groups different settings (e.g. no weight decay on biases)."""

    def __init__(self, params, defaults: dict):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        self.state = {}                 # id(param) -> dict of arrays
        seen = set()
        for g in groups:
            group = {**defaults, **g, "params": list(g["params"])}
            for p in group["params"]:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise TypeError(f"{type(self).__name__}: can only optimize tensors that "
                                    f"require grad, got {type(p).__name__}")
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter of shape {p.shape} "
                                     f"appears in more than one group")
                seen.add(id(p))
            self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True):
        zero_grad(self._params(), set_to_none)

    @no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state.setdefault(id(p), {})
                    self.update(p, p.grad.data, _follow(state, p.device), group)

    def update(self, p, g, state, group):
        raise NotImplementedError

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    # --- state: plain numbers and host arrays, keyed by parameter position ---------------------

    def state_dict(self) -> dict:
        """``{"state": {index: {name: array or number}}, "param_groups": [...]}`` with
        parameters referred to by their position, as in PyTorch."""
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {index[pid]: {k: (backend.to_numpy(v).copy() if hasattr(v, "shape") else v)
                              for k, v in s.items()}
                 for pid, s in self.state.items() if pid in index}
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "params": [index[id(p)] for p in g["params"]]} for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        params = self._params()
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved groups hold "
                             f"{[len(g['params']) for g in groups]} parameters, this optimizer "
                             f"{[len(g['params']) for g in self.param_groups]}")
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            self.state[id(p)] = {k: (backend.to_device(v, p.device).astype(p.dtype)
                                     if hasattr(v, "shape") else v) for k, v in s.items()}


def zero_grad(params, set_to_none: bool = True):
    """Drop the gradients (or fill them with zeros) of ``params``: Optimizer and Module."""
    for p in params:
        p.grad = None if set_to_none or p.grad is None else Tensor._from_op(
            p.grad.xp.zeros_like(p.grad.data))


def _follow(state: dict, device: str) -> dict:
    """Move a parameter's state arrays to the parameter's device, in place: after
    ``model.to("cuda")`` the optimizer's moments follow the parameters at the next step."""
    for k, v in state.items():
        if hasattr(v, "shape") and backend.device_of(v) != device:
            state[k] = backend.to_device(v, device)
    return state


def _check_hyperparameters(name: str, lr, weight_decay, **others) -> None:
    """The ranges ``torch.optim`` checks, with its wording: a negative rate would climb the
    loss, and a beta of 1 divides by zero in Adam's bias correction."""
    checks = [("learning rate", lr, lr >= 0), ("weight_decay value", weight_decay,
                                              weight_decay >= 0)]
    if "momentum" in others:
        checks.append(("momentum value", others["momentum"], others["momentum"] >= 0))
    if "eps" in others:
        checks.append(("epsilon value", others["eps"], others["eps"] >= 0))
    for i, beta in enumerate(others.get("betas", ())):
        checks.append((f"beta parameter at index {i}", beta, 0 <= beta < 1))
    for what, value, ok in checks:
        if not ok:
            raise ValueError(f"{name}: Invalid {what}: {value}")


class SGD(Optimizer):
    """p -= lr * v, with v = momentum * v + (1 - dampening) * (g + weight_decay * p)
    (v = g on the first step; Nesterov uses g + momentum * v), as ``torch.optim.SGD``."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        _check_hyperparameters("SGD", lr, weight_decay, momentum=momentum)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def update(self, p, g, state, group):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        m = group["momentum"]
        if m:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= m
                buf += (1 - group["dampening"]) * g
            g = g + m * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma & Ba): running means of g and g^2, bias-corrected.
    ``weight_decay`` here is L2: it is added to the gradient (use AdamW for decoupled decay)."""

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        _check_hyperparameters(type(self).__name__, lr, weight_decay, eps=eps, betas=betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def update(self, p, g, state, group):
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = p.xp.zeros_like(p.data)
            state["exp_avg_sq"] = p.xp.zeros_like(p.data)
        state["step"] += 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if (kernels.fused_cpu(p) and p.data.flags.c_contiguous and g.flags.c_contiguous
                and g.dtype == p.dtype):
            # one pass over p, g, m, v (kernels/adam.py) instead of the ~15 below
            kernels.load("adam_step")(p.data, g, m, v, group["lr"], (beta1, beta2),
                                      group["eps"], group["weight_decay"],
                                      self.decoupled_weight_decay, state["step"])
            return
        if group["weight_decay"] and self.decoupled_weight_decay:
            p.data *= 1 - group["lr"] * group["weight_decay"]
        elif group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        t = state["step"]
        m *= beta1
        m += (1 - beta1) * g                         # m = b1 m + (1 - b1) g
        v *= beta2
        v += (1 - beta2) * (g * g)                   # v = b2 v + (1 - b2) g^2
        m_hat_scale = 1 / (1 - beta1 ** t)           # m_hat = m / (1 - b1^t)
        v_hat_scale = 1 / (1 - beta2 ** t)           # v_hat = v / (1 - b2^t)
        p.data -= (group["lr"] * m_hat_scale) * m / (p.xp.sqrt(v * v_hat_scale) + group["eps"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr * weight_decay,
    then the Adam step on the raw gradient.  Use ``weight_decay_groups`` to decay only
    matrices, not biases and LayerNorm gains."""

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def weight_decay_groups(named_parameters, weight_decay: float):
    """Two parameter groups, nanoGPT-style: weights with >= 2 dims (matmuls, embeddings) are
    decayed, the rest (biases, LayerNorm) are not."""
    named = list(named_parameters)
    return [
        {"params": [p for _, p in named if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0},
    ]


@no_grad()
def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0) -> float:
    """Scale all gradients together so their joint norm is at most ``max_norm``; returns the
    norm before clipping.  (Gradients are replaced, not scaled in place, so a gradient array
    shared between tensors is never scaled twice.)"""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    if norm_type == math.inf:
        parts, combine = [abs(p.grad.data).max() for p in grads], max
    elif norm_type == 2:
        parts, combine = [_sum_of_squares(p.grad.data) for p in grads], sum
    else:
        parts, combine = [(abs(p.grad.data) ** norm_type).sum() for p in grads], sum
    on_gpu = [p for p in grads if p.device != "cpu"]
    if on_gpu:
        # Combine the parts on the GPU and read back one number: a float() per parameter
        # would make the host wait for the GPU once per parameter, every step.
        xp = on_gpu[0].xp
        stacked = xp.stack([xp.asarray(part, dtype=xp.float64) for part in parts])
        parts = [stacked.max() if combine is max else stacked.sum()]
    total = combine(float(part) for part in parts)
    if norm_type != math.inf:
        total = total ** (1 / norm_type)
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for p in grads:
            p.grad = Tensor._from_op(p.grad.data * p.grad.dtype.type(coef))
    return total


def _sum_of_squares(a):
    """sum(a^2): on the CPU a BLAS dot product of the array with itself (no temporaries)."""
    if isinstance(a, np.ndarray):
        flat = a.reshape(-1)
        return np.dot(flat, flat)
    return (a * a).sum()


# --- learning-rate schedules ------------------------------------------------------------
def warmup_cosine_lr(it: int, lr: float, min_lr: float, warmup_iters: int,
                     lr_decay_iters: int) -> float:
    """nanoGPT's schedule: linear warmup to ``lr`` over ``warmup_iters`` steps, cosine decay
    to ``min_lr`` at ``lr_decay_iters``, then ``min_lr``."""
    if it < warmup_iters:
        return lr * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(lr_decay_iters - warmup_iters, 1)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))           # 1 -> 0
    return min_lr + coeff * (lr - min_lr)


class LRScheduler:
    """Sets ``group["lr"]`` on every ``step()`` from ``lr_at(iteration)``; state is the counter."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_iter = 0
        self._apply()

    def lr_at(self, it: int, base_lr: float) -> float:
        raise NotImplementedError

    def _apply(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.last_iter, base)

    def step(self):
        self.last_iter += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_iter": self.last_iter, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state):
        self.last_iter, self.base_lrs = state["last_iter"], list(state["base_lrs"])
        self._apply()


class LambdaLR(LRScheduler):
    """``base_lr * lr_lambda(iteration)`` for every group (PyTorch's ``LambdaLR``): one schedule
    shape, each group at its own scale."""

    def __init__(self, optimizer: Optimizer, lr_lambda):
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def lr_at(self, it, base_lr):
        return base_lr * self.lr_lambda(it)


class ConstantLR(LRScheduler):
    """The learning rate the optimizer was built with, at every step."""

    def lr_at(self, it, base_lr):
        return base_lr


class WarmupCosineLR(LRScheduler):
    """Linear warmup, then cosine decay to ``min_lr`` (``warmup_cosine_lr`` per group)."""

    def __init__(self, optimizer, warmup_iters: int, lr_decay_iters: int, min_lr: float = 0.0):
        self.warmup_iters, self.lr_decay_iters, self.min_lr = warmup_iters, lr_decay_iters, min_lr
        super().__init__(optimizer)

    def lr_at(self, it, base_lr):
        return warmup_cosine_lr(it, base_lr, self.min_lr, self.warmup_iters, self.lr_decay_iters)
