"""Train a small MLP on two interleaved moons: the whole engine at work in 40 lines.

    python examples/two_moons.py [--steps 500] [--plot moons.png]

It prints the loss with a progress bar, the test accuracy, and (with --plot, when matplotlib
is installed) saves the decision boundary and the loss curve.
"""
import argparse

import numpy as np
from tqdm import tqdm

import tinygradlm as tg
import tinygradlm.nn as nn
import tinygradlm.nn.functional as F
from tinygradlm import optim


def two_moons(n, noise, rng):
    t = rng.uniform(0, np.pi, n)
    x = np.concatenate([np.stack([np.cos(t), np.sin(t)], 1),
                        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)])
    x += rng.normal(0, noise, x.shape)
    y = np.repeat([0, 1], n)
    return tg.Tensor(x.astype(np.float32)), tg.Tensor(y)       # on the default device


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=500, help="training steps")
    parser.add_argument("--lr", type=float, default=0.02, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--plot", default=None, help="save a PNG (needs matplotlib)")
    parser.add_argument("--device", default=tg.backend.default_device_from_env(),
                        help="'cpu' or 'cuda' (default: $TINYGRADLM_DEVICE, else cpu)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    try:
        tg.set_default_device(args.device)      # every tensor and parameter below goes there
        tg.zeros(1)                             # no usable GPU: say why now
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"error: {e}")

    tg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = two_moons(200, 0.1, rng)
    x_test, y_test = two_moons(200, 0.1, rng)

    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 2))
    print(model)
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = optim.WarmupCosineLR(opt, warmup_iters=20, lr_decay_iters=args.steps,
                                 min_lr=args.lr / 20)
    losses = []
    bar = tqdm(range(args.steps), desc="train")
    for _ in bar:
        loss = F.cross_entropy(model(x_train), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)

    with tg.no_grad():
        accuracy = float((model(x_test).argmax(dim=-1) == y_test).numpy().mean())
    print(f"final train loss {losses[-1]:.4f}, test accuracy {accuracy:.3f}")

    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed; skipping the plot")
            return
        grid = np.stack(np.meshgrid(np.linspace(-1.5, 2.5, 200), np.linspace(-1, 1.5, 200)), -1)
        with tg.no_grad():
            p = F.softmax(model(tg.Tensor(grid.reshape(-1, 2).astype(np.float32))))
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        ax1.contourf(grid[..., 0], grid[..., 1], p.numpy()[:, 1].reshape(200, 200), 20,
                     cmap="coolwarm", alpha=0.6)
        ax1.scatter(*x_test.numpy().T, c=y_test.numpy(), cmap="coolwarm", s=8)
        ax1.set_title(f"test accuracy {accuracy:.3f}")
        ax2.plot(losses)
        ax2.set_yscale("log")
        ax2.set_xlabel("step")
        ax2.set_ylabel("cross-entropy")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"saved {args.plot}")


if __name__ == "__main__":
    main()
