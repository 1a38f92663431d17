"""``tinygradlm.profiler``: exact call counts per op (never timings), the optimizer, engine and
kernel rows, patches put back (after errors too), the table, and TINYGRADLM_PROFILE=1 in the
training loop."""
import sys

import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm import autograd, kernels, nn, ops, optim, profiler
from tinygradlm.train import TrainConfig, train_gpt

REDUCE, ACCUMULATE = "engine: reduce_to_shape", "engine: accumulate .grad"


def rows(prof):
    return {r.name: r for r in prof.key_averages()}


def small_graph():
    tg.manual_seed(0)
    return tg.randn(3, 4, requires_grad=True), tg.randn(4, 5, requires_grad=True)


def patched_now():
    """The attributes a profile replaces, as they are now."""
    found = [autograd.Function.__dict__["apply"], ops.MatMul.__dict__["backward"],
             autograd._fit, autograd._accumulate,
             optim.Optimizer.__dict__["step"], optim.clip_grad_norm_]
    jit = sys.modules.get("tinygradlm.kernels.jit")
    if jit is not None:
        found.append(jit.ParallelKernel.__dict__["__call__"])
    return found


def test_a_known_graph_gives_exact_counts():
    x, w = small_graph()
    with profiler.profile() as prof:
        y = (x @ w).relu().sum()        # MatMul, ReLU, Sum: one forward each
        y.backward()                    # and one backward each
    r = rows(prof)
    assert set(r) == {"MatMul", "ReLU", "Sum", REDUCE, ACCUMULATE, profiler.OUTSIDE}
    for op in ("MatMul", "ReLU", "Sum"):
        assert (r[op].kind, r[op].calls, r[op].backward_calls) == ("op", 1, 1)
    # _fit once per (input, gradient) pair: Sum -> relu's output, ReLU -> the product,
    # MatMul -> x and w; _accumulate once per leaf (x, w).
    assert (r[REDUCE].calls, r[REDUCE].backward_calls) == (0, 4)
    assert r[ACCUMULATE].backward_calls == 2
    assert r[profiler.OUTSIDE].kind == "python"
    shares = sum(row.share for row in r.values() if row.kind != "kernel")
    assert shares == pytest.approx(100.0)
    assert all(row.total_s >= 0 for row in r.values())


def test_no_grad_counts_forwards_and_no_backward():
    x, w = small_graph()
    with tg.no_grad(), profiler.profile() as prof:
        (x @ w).relu().sum()
    r = rows(prof)
    assert {name: row.calls for name, row in r.items() if row.kind == "op"} == {
        "MatMul": 1, "ReLU": 1, "Sum": 1}
    assert all(row.backward_calls == 0 for row in r.values())
    assert REDUCE not in r and ACCUMULATE not in r


def gpt_step(mode, n_layer):
    """One training step of a tiny GPT, profiled; the rows and the number of parameters."""
    tg.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(vocab_size=11, block_size=8, n_layer=n_layer, n_head=2,
                                n_embd=8))
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    idx = np.random.default_rng(0).integers(0, 11, (2, 6))
    with kernels.use(mode), profiler.profile() as prof:
        _, loss = model(idx, idx)
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return rows(prof), len(list(model.parameters()))


@pytest.mark.parametrize("mode", ["fused", "reference"])
def test_tiny_gpt_step(mode):
    if mode == "fused":
        pytest.importorskip("numba")
    n_layer = 2
    r, n_params = gpt_step(mode, n_layer)
    # Each block has 4 Linear layers (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) and the
    # tied LM head one more product (x @ wte^T); the embeddings are GetItem.  Fused, a Linear
    # layer is one ``Linear`` op; in the reference it is a MatMul plus an Add, and attention
    # adds two products per block (q @ k^T and weights @ v) that the fused Attention op does
    # inside itself.
    if mode == "fused":
        assert r["Linear"].calls == r["Linear"].backward_calls == 4 * n_layer
        assert r["MatMul"].calls == 1
    else:
        assert "Linear" not in r and r["MatMul"].calls == 6 * n_layer + 1
    assert r["MatMul"].backward_calls == r["MatMul"].calls      # every product needs grads
    assert (r["AdamW.step"].kind, r["AdamW.step"].calls) == ("optimizer", 1)
    assert r["clip_grad_norm_"].calls == 1
    # One .grad update per gradient that reaches a parameter: once for each of them, and
    # twice for wte, which is read by the embedding and (tied) by the LM head.
    assert r[ACCUMULATE].backward_calls == n_params + 1
    kernel_rows = [row for row in r.values() if row.kind == "kernel"]
    if mode == "fused":
        assert r["Attention"].calls == n_layer and r["LayerNorm"].calls == 2 * n_layer + 1
        assert kernel_rows and all(row.name.startswith("kernel: ") for row in kernel_rows)
        assert any(row.backward_calls for row in kernel_rows)   # backward kernels too
    else:
        assert not kernel_rows and "Attention" not in r and "Softmax" not in r
    shares = sum(row.share for row in r.values() if row.kind != "kernel")
    assert shares == pytest.approx(100.0)


def test_patches_are_put_back_after_the_block_and_after_an_error():
    before = patched_now()
    with profiler.profile():
        during = patched_now()
    assert all(a is not b for a, b in zip(before, during))
    assert all(a is b for a, b in zip(before, patched_now()))
    with pytest.raises(ValueError, match="matmul"):
        with profiler.profile():
            tg.randn(2, 3, requires_grad=True) @ tg.randn(4, 5)   # fails inside MatMul
    assert all(a is b for a, b in zip(before, patched_now()))
    x, w = small_graph()
    with profiler.profile() as prof:        # a failed op leaves nothing half-done
        (x @ w).sum().backward()
    assert rows(prof)["MatMul"].backward_calls == 1


def test_profiles_do_not_nest_and_the_outer_one_keeps_going():
    before = patched_now()
    x, w = small_graph()
    with profiler.profile() as outer:
        with pytest.raises(RuntimeError, match="do not nest"):
            with profiler.profile():
                pass
        x @ w
    assert rows(outer)["MatMul"].calls == 1
    assert all(a is b for a, b in zip(before, patched_now()))


def test_intervals_add_up_and_step_gives_means():
    x, w = small_graph()
    prof = profiler.profile()
    for _ in range(3):
        with prof:
            (x @ w).sum().backward()
        prof.step()
        x @ w                               # between intervals: not recorded
    assert prof.step_count == 3 and rows(prof)["MatMul"].calls == 3
    text = prof.table()
    assert "mean of 3" in text
    line = next(line for line in text.splitlines() if line.startswith("| MatMul"))
    assert [c.strip() for c in line.split("|")[2:5]][0::2] == ["1", "1"]   # calls per step


def table_names(text):
    return [line.split("|")[1].strip() for line in text.splitlines()[3:] if line.startswith("|")]


def test_table():
    x, w = small_graph()
    with profiler.profile() as prof:
        (x @ w).relu().sum().backward()
    text = prof.table()
    assert "| name" in text and "total ms" in text and "% wall" in text
    for name in ("MatMul", "ReLU", "Sum", REDUCE, ACCUMULATE, profiler.OUTSIDE, "total"):
        assert name in text
    names = table_names(prof.table(sort_by="calls"))
    calls = {r.name: r.calls + r.backward_calls for r in prof.key_averages()}
    ranked = [n for n in names if n in calls and n != profiler.OUTSIDE]
    assert ranked[0] == REDUCE                              # 4 calls, the most
    assert [calls[n] for n in ranked] == sorted((calls[n] for n in ranked), reverse=True)
    assert table_names(prof.table(sort_by="name"))[:3] == ["MatMul", "ReLU", "Sum"]
    assert "3 rows not shown" in prof.table(row_limit=2)
    with pytest.raises(ValueError, match="'total', 'forward', 'backward', 'calls', 'name'"):
        prof.table(sort_by="self")


def test_from_env(monkeypatch):
    monkeypatch.setenv("TINYGRADLM_PROFILE", "0")
    assert profiler.from_env() is None
    monkeypatch.setenv("TINYGRADLM_PROFILE", "1")
    assert isinstance(profiler.from_env(), profiler.profile)


def tiny_run(tmp_path, name):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(tg.data.load_corpus("stdlib")[:5_000])
    return TrainConfig(data=str(corpus), n_layer=1, n_head=2, n_embd=16, block_size=8,
                       batch_size=2, max_iters=3, lr_decay_iters=3, warmup_iters=1,
                       eval_interval=100, eval_iters=1, progress=False, num_samples=0,
                       out_dir=str(tmp_path / name), device="cpu")


def test_the_training_loop_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYGRADLM_PROFILE", "1")
    before = patched_now()
    train_gpt(tiny_run(tmp_path, "out"))
    out = capsys.readouterr().out
    assert "| MatMul" in out and "AdamW.step" in out and profiler.OUTSIDE in out
    assert "mean of 2" in out               # iterations 2 and 3 (the first compiles)
    assert all(a is b for a, b in zip(before, patched_now()))


def test_an_error_in_a_profiled_iteration_puts_the_patches_back(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGRADLM_PROFILE", "1")
    before = patched_now()
    real_get_batch, calls = tg.data.get_batch, {"n": 0}

    def failing_get_batch(*args, **kwargs):
        if kwargs.get("generator") is None and len(args) < 5:   # a training batch
            calls["n"] += 1
            if calls["n"] == 2:                 # iteration 2: the profile is recording
                calls["recording"] = profiler._recording is not None
                raise RuntimeError("disk on fire")
        return real_get_batch(*args, **kwargs)

    monkeypatch.setattr(tg.data, "get_batch", failing_get_batch)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train_gpt(tiny_run(tmp_path, "out"))
    assert calls == {"n": 2, "recording": True}
    assert all(a is b for a, b in zip(before, patched_now()))
