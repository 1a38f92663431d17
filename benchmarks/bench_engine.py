"""How much does tinygradlm's autograd engine cost?  Ratios against references in the same run.

Every case times tinygradlm and one or more references in the same process and reports the
*ratio* of the medians (``common.timeit``: warm-ups, then each implementation in turn); the table
shows the median and the min per call, and the minor page faults per call (fresh memory from the
OS: a sign of allocation churn).

Cases
  1. ``mlp``:    one training step of a 3-layer MLP (float32, batch 256, 512 -> 512 -> 512 -> 10,
                 ReLU, cross-entropy, AdamW): forward + backward + optimizer step.
                 References: the same step hand-written in plain NumPy (manual backward, no
                 autograd) and PyTorch autograd.  All three start from the same weights and see
                 the same batch; their final losses go into the JSON as a check that they did
                 the same work.
  2. ``chain``:  20,000 tiny ops (``x = x * 1.0001 + 0.0`` on a 1-element tensor), forward and
                 backward, in microseconds per op.  The NumPy reference runs the same chain on a
                 1-element array, forward only, so the ratio is the engine's bookkeeping cost
                 (Tensor objects, Function nodes, dtype/device checks, the backward walk).
  3. ``matmul``: a batched matmul forward + backward at GPT-ish shapes,
                 (B=12, T=64, C=128) @ (128, 512), against NumPy by hand (the weight gradient as
                 one 2-D GEMM over the flattened batch) and, for reference, NumPy doing what the
                 engine does (a batched matmul, then a sum over the batch axis).

PyTorch is optional: without it the torch columns are skipped.  Torch gets as many intra-op
threads as NumPy's BLAS uses (recorded in the JSON with the versions and CPU count).

Run from the repository root:

    python benchmarks/bench_engine.py [--quick] [--out PATH] [--act relu|gelu] [--threads N]
                                      [--profile] [--system-malloc]

``--quick`` shrinks repeats and the chain (a few seconds; sizes stay the same); ``--profile``
also prints a cProfile of the tinygradlm MLP step (top 10 functions by own time).  Results go to
``benchmarks/results/bench_engine.json`` unless ``--out`` says otherwise.  Nothing here asserts
on a time.

Why the warm-ups, pauses, ``gc.freeze()`` and malloc tuning: see ``common.py``.
"""
from __future__ import annotations

import time


import common                       # first: puts the checkout on sys.path
from common import fresh_heap, print_table, ratios, summary, timeit, torch, write_json
import numpy as np

import tinygradlm as tg
from tinygradlm import nn
from tinygradlm import functional as F


# --- case 1: MLP training step ------------------------------------------------------------
def mlp_weights(sizes, rng):
    """(W, b) per layer, W stored (in, out) as tinygradlm's Linear; PyTorch-style uniform init."""
    out = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        out.append((rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32),
                    rng.uniform(-bound, bound, fan_out).astype(np.float32)))
    return out


GELU_C = np.float32(np.sqrt(2.0 / np.pi))


def np_act(h, act):
    """Activation and what its backward needs."""
    if act == "relu":
        return np.maximum(h, 0), h > 0
    t = np.tanh(GELU_C * (h + 0.044715 * (h * h * h)))      # GELU, tanh approximation
    return 0.5 * h * (1 + t), t


def np_act_backward(g, h, saved, act):
    if act == "relu":
        return g * saved
    t = saved
    return g * (0.5 * (1 + t) + 0.5 * h * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * h * h))


class NumpyAdamW:
    """The same AdamW update as tinygradlm.optim.AdamW, in place on plain arrays."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        self.params, self.lr, self.betas, self.eps, self.wd = params, lr, betas, eps, weight_decay
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            p *= 1 - self.lr * self.wd
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p -= (self.lr / (1 - b1 ** self.t)) * m / (np.sqrt(v / (1 - b2 ** self.t)) + self.eps)


def numpy_mlp_step_fn(weights, x, y, act):
    params = [a.copy() for wb in weights for a in wb]     # W1, b1, W2, b2, W3, b3
    opt = NumpyAdamW(params)
    n = x.shape[0]
    rows = np.arange(n)

    def step():
        # forward
        hs, acts, saved = [], [x], []
        for i in range(0, len(params) - 2, 2):
            h = acts[-1] @ params[i] + params[i + 1]
            a, s = np_act(h, act)
            hs.append(h), acts.append(a), saved.append(s)
        logits = acts[-1] @ params[-2] + params[-1]                 # (N, 10)
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        sum_e = e.sum(axis=1, keepdims=True)
        loss = -(shifted[rows, y] - np.log(sum_e[:, 0])).mean()
        # backward: dL/dlogits = (softmax - onehot) / N
        g = e / sum_e
        g[rows, y] -= 1
        g /= n
        grads = [None] * len(params)
        for i in range(len(params) - 2, -1, -2):
            grads[i] = acts[i // 2].T @ g
            grads[i + 1] = g.sum(axis=0)
            if i:
                g = np_act_backward(g @ params[i].T, hs[i // 2 - 1], saved[i // 2 - 1], act)
        opt.step(grads)
        return float(loss)
    return step


def tinygradlm_mlp_step_fn(weights, x, y, act):
    layers = []
    for W, b in weights:
        lin = nn.Linear(*W.shape)
        lin.weight.data[...] = W
        lin.bias.data[...] = b
        layers.append(lin)
    activation = nn.ReLU() if act == "relu" else nn.GELU("tanh")
    model = nn.Sequential(layers[0], activation, layers[1], activation, layers[2])
    opt = tg.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    xt, yt = tg.Tensor(x), tg.Tensor(y)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def torch_mlp_step_fn(weights, x, y, act):
    params = [torch.tensor(a, requires_grad=True) for wb in weights for a in wb]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    act_fn = torch.relu if act == "relu" else (
        lambda h: torch.nn.functional.gelu(h, approximate="tanh"))

    def step():
        opt.zero_grad(set_to_none=True)
        h = xt
        for i in range(0, len(params) - 2, 2):
            h = act_fn(h @ params[i] + params[i + 1])
        loss = torch.nn.functional.cross_entropy(h @ params[-2] + params[-1], yt)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def case_mlp(cfg, act):
    rng = np.random.default_rng(0)
    sizes = [cfg["in"], cfg["hidden"], cfg["hidden"], 10]
    weights = mlp_weights(sizes, rng)
    x = rng.standard_normal((cfg["batch"], cfg["in"])).astype(np.float32)
    y = rng.integers(0, 10, cfg["batch"]).astype(np.int64)
    makers = {"tinygradlm": tinygradlm_mlp_step_fn, "numpy": numpy_mlp_step_fn}
    if torch:
        makers["torch"] = torch_mlp_step_fn
    steps = {name: make(weights, x, y, act) for name, make in makers.items()}
    times = timeit(steps, cfg["repeats"], cfg["warmup"])
    # Same init, batch and number of steps: the losses should agree to float32 rounding.
    final_loss = {name: step() for name, step in steps.items()}
    return {"name": "mlp", "unit": "ms/step",
            "what": f"MLP train step {sizes}, batch {cfg['batch']}, {act}, float32, "
                    "cross-entropy + AdamW",
            "config": {**cfg, "sizes": sizes, "act": act}, "times": times,
            "final_loss_after_identical_steps": final_loss,
            "ratios": ratios(times, "tinygradlm", ["numpy", "torch"])}


# --- case 2: per-op engine overhead -------------------------------------------------------
def case_chain(cfg):
    n_ops = cfg["n_ops"]                  # one Mul + one Add per iteration

    def tinygradlm_fwd():
        x = tg.Tensor(np.ones(1, np.float32), requires_grad=True)
        y = x
        for _ in range(n_ops // 2):
            y = y * 1.0001 + 0.0
        return x, y

    split = {"forward": [], "backward": []}

    def tinygradlm_fwd_bwd():
        t0 = time.perf_counter()
        x, y = tinygradlm_fwd()
        t1 = time.perf_counter()
        y.sum().backward()
        split["forward"].append(t1 - t0)
        split["backward"].append(time.perf_counter() - t1)

    def tinygradlm_no_grad():
        with tg.no_grad():
            tinygradlm_fwd()

    def numpy_fwd():
        y = np.ones(1, np.float32)
        for _ in range(n_ops // 2):
            y = y * 1.0001 + 0.0

    fns = {"tinygradlm fwd+bwd": tinygradlm_fwd_bwd, "tinygradlm no_grad fwd": tinygradlm_no_grad,
           "numpy fwd": numpy_fwd}
    if torch:
        def torch_fwd_bwd():
            x = torch.ones(1, requires_grad=True)
            y = x
            for _ in range(n_ops // 2):
                y = y * 1.0001 + 0.0
            y.sum().backward()
        fns["torch fwd+bwd"] = torch_fwd_bwd
    measured = timeit(fns, cfg["repeats"], cfg["warmup"])
    for part, ts in split.items():      # the timed calls of tinygradlm fwd+bwd, split in two
        measured[f"  of which {part}"] = summary(ts[-cfg["repeats"]:])
    order = ["tinygradlm fwd+bwd", "  of which forward", "  of which backward"]
    order += [name for name in measured if name not in order]
    times = {name: per_op(measured[name], n_ops) for name in order}
    return {"name": "chain", "unit": "us/op",
            "what": f"chain of {n_ops} ops (x * 1.0001 + 0.0) on a 1-element float32 tensor",
            "config": cfg, "times": times,
            "ratios": ratios(times, "tinygradlm fwd+bwd", ["numpy fwd", "torch fwd+bwd"])}


def per_op(t, n_ops):
    """Add microseconds-per-op figures to a timing."""
    return {**t, "min_us_per_op": t["min_s"] / n_ops * 1e6,
            "median_us_per_op": t["median_s"] / n_ops * 1e6}


# --- case 3: batched matmul forward + backward --------------------------------------------
def case_matmul(cfg):
    B, T, C, H = cfg["B"], cfg["T"], cfg["C"], cfg["H"]
    rng = np.random.default_rng(1)
    a = rng.standard_normal((B, T, C)).astype(np.float32)
    w = (rng.standard_normal((C, H)) / np.sqrt(C)).astype(np.float32)
    g = rng.standard_normal((B, T, H)).astype(np.float32)    # upstream gradient dL/dout

    at, wt = tg.Tensor(a, requires_grad=True), tg.Tensor(w, requires_grad=True)

    def tinygradlm_fb():
        at.grad = wt.grad = None
        (at @ wt).backward(gradient=g)

    def numpy_2d():                          # what a person writes: one GEMM for dL/dW
        _ = a @ w
        _ = g @ w.T                          # dL/da (B, T, C)
        _ = a.reshape(-1, C).T @ g.reshape(-1, H)              # dL/dW (C, H)

    def numpy_batched():                     # what the engine does: batched, then sum
        _ = a @ w
        _ = g @ w.swapaxes(-1, -2)
        _ = (a.swapaxes(-1, -2) @ g).sum(axis=0)

    fns = {"tinygradlm": tinygradlm_fb, "numpy (2-D GEMM)": numpy_2d,
           "numpy (batched + sum)": numpy_batched}
    if torch:
        a_t = torch.tensor(a, requires_grad=True)
        w_t = torch.tensor(w, requires_grad=True)
        g_t = torch.from_numpy(g)

        def torch_fb():
            a_t.grad = w_t.grad = None
            (a_t @ w_t).backward(g_t)
        fns["torch"] = torch_fb
    times = timeit(fns, cfg["repeats"], cfg["warmup"])
    return {"name": "matmul", "unit": "ms/call",
            "what": f"({B}, {T}, {C}) @ ({C}, {H}) forward + backward, float32",
            "config": cfg, "times": times,
            "ratios": ratios(times, "tinygradlm",
                             ["numpy (2-D GEMM)", "numpy (batched + sum)", "torch"])}


# --- reporting ------------------------------------------------------------------------------
def print_case(case):
    print(f"\n[{case['name']}] {case['what']}")
    rows = []
    for name, t in case["times"].items():
        med, lo = ((t["median_us_per_op"], t["min_us_per_op"]) if case["unit"] == "us/op" else
                   (t["median_s"] * 1e3, t["min_s"] * 1e3))
        rows.append([name, f"{med:.3f}", f"{lo:.3f}",
                     f"{t['page_faults_per_call']:.0f}" if "page_faults_per_call" in t else ""])
    print_table(["implementation", f"median {case['unit']}", f"min {case['unit']}",
                 "page faults/call"], rows, "lrrr")
    for name, r in case["ratios"].items():
        print(f"  ratio {name}: {r:.2f}x")
    if "final_loss_after_identical_steps" in case:
        losses = ", ".join(f"{k} {v:.6f}" for k, v in
                           case["final_loss_after_identical_steps"].items())
        print(f"  final loss (same init, same steps): {losses}")


def profile_mlp(cfg, act):
    import cProfile
    import pstats
    rng = np.random.default_rng(0)
    weights = mlp_weights([cfg["in"], cfg["hidden"], cfg["hidden"], 10], rng)
    x = rng.standard_normal((cfg["batch"], cfg["in"])).astype(np.float32)
    y = rng.integers(0, 10, cfg["batch"]).astype(np.int64)
    step = tinygradlm_mlp_step_fn(weights, x, y, act)
    step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(cfg["repeats"]):
        step()
    prof.disable()
    print(f"\ncProfile of {cfg['repeats']} tinygradlm MLP steps, top 10 by tottime:")
    pstats.Stats(prof).sort_stats("tottime").print_stats(10)


CONFIGS = {
    "full": {"mlp": {"batch": 256, "in": 512, "hidden": 512, "repeats": 20, "warmup": 3},
             "chain": {"n_ops": 20_000, "repeats": 7, "warmup": 1},
             "matmul": {"B": 12, "T": 64, "C": 128, "H": 512, "repeats": 50, "warmup": 5}},
    "quick": {"mlp": {"batch": 256, "in": 512, "hidden": 512, "repeats": 7, "warmup": 2},
              "chain": {"n_ops": 5_000, "repeats": 5, "warmup": 1},
              "matmul": {"B": 12, "T": 64, "C": 128, "H": 512, "repeats": 20, "warmup": 3}},
}


def main(argv=None):
    parser = common.bench_parser(__doc__, "bench_engine",
                                 "fewer repeats and a shorter chain (a few seconds)")
    parser.add_argument("--act", choices=("relu", "gelu"), default="relu",
                        help="MLP activation (gelu = tanh approximation, a composite here)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile the tinygradlm MLP step (top 10 by tottime)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = CONFIGS[mode]
    env = common.start_bench(args)

    cases = []
    for run_case in (lambda: case_mlp(cfg["mlp"], args.act), lambda: case_chain(cfg["chain"]),
                     lambda: case_matmul(cfg["matmul"])):
        fresh_heap()
        cases.append(run_case())
        print_case(cases[-1])
    if args.profile:
        profile_mlp(cfg["mlp"], args.act)

    result = {**common.result_header("bench_engine", mode, env),
              "ratios_are": "median(tinygradlm) / median(reference)",
              "cases": {c["name"]: c for c in cases}}
    write_json(args.out, result)


if __name__ == "__main__":
    main()
