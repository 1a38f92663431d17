"""A small MLP learns a non-linear task (two interleaved moons) end to end: Module, Linear,
cross-entropy, backward, AdamW and a schedule all working together."""
import numpy as np

import tinygradlm as tg
import tinygradlm.nn as nn
import tinygradlm.nn.functional as F
from tinygradlm import optim
import pytest

# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")


def two_moons(n, noise, rng):
    t = rng.uniform(0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    x = np.concatenate([upper, lower]) + rng.normal(0, noise, (2 * n, 2))
    y = np.concatenate([np.zeros(n), np.ones(n)]).astype(np.int64)
    return x.astype(np.float32), y


def test_mlp_learns_two_moons():
    tg.manual_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = two_moons(200, 0.1, rng)
    x_test, y_test = two_moons(200, 0.1, rng)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 2))
    opt = optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.0)
    sched = optim.WarmupCosineLR(opt, warmup_iters=10, lr_decay_iters=300, min_lr=1e-3)
    X, Y = tg.Tensor(x_train), tg.Tensor(y_train)
    first = None
    for _ in range(300):
        loss = F.cross_entropy(model(X), Y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with tg.no_grad():
        pred = model(tg.Tensor(x_test)).argmax(dim=-1).numpy()
    accuracy = (pred == y_test).mean()
    assert loss.item() < 0.1 * first
    assert accuracy >= 0.97, accuracy
