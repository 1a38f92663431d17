"""The GPT training loop: exact resume, Ctrl-C, gradient accumulation, outputs, bad input,
and the two example scripts (train_char_lm.py, sample.py)."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm.nn import GPT
from tinygradlm.train import TrainConfig, train_gpt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))
import train_char_lm  # noqa: E402

from strategies import assert_matches, latest  # noqa: E402
# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A few KB of real text (some of the stdlib corpus), as a file."""
    text = tg.data.load_corpus("stdlib")[:20_000]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(text)
    return str(path)


def tiny(corpus, out_dir, **kw):
    cfg = dict(data=corpus, n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4,
               max_iters=20, lr_decay_iters=20, warmup_iters=3, eval_interval=5, eval_iters=2,
               dropout=0.1, progress=False, num_samples=0, out_dir=str(out_dir), seed=7)
    cfg.update(kw)
    return TrainConfig(**cfg)


def weights(directory):
    return {k: t.numpy() for k, t in GPT.from_pretrained(directory).state_dict().items()}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert_matches(wa[k], wb[k], err_msg=k)


def test_resume_is_exact(corpus, tmp_path):
    """10 iterations, stop, resume for 10 more == 20 straight (model, Adam state, schedule
    position and the random stream of batches and dropout all carried over)."""
    straight = tmp_path / "straight"
    train_gpt(tiny(corpus, straight, gradient_accumulation_steps=2))
    split = tmp_path / "split"
    first = train_gpt(tiny(corpus, split, gradient_accumulation_steps=2, max_iters=10))
    assert first["iters"] == 10
    second = train_gpt(tiny(corpus, split, gradient_accumulation_steps=2, resume=True))
    assert second["iters"] == 20
    assert_same_weights(latest(straight), latest(split))
    log = [json.loads(line) for line in open(split / "log.jsonl")]
    assert [r["iter"] for r in log] == [0, 5, 10, 15, 20]     # the resumed run appends


def test_ctrl_c_saves_and_resume_continues_exactly(corpus, tmp_path, monkeypatch):
    """A real SIGINT in the middle of iteration 13: the iteration is finished, its state saved
    (with the random state iteration 14 starts from), and --resume ends where an
    uninterrupted run ends, bit for bit."""
    straight = tmp_path / "straight"
    train_gpt(tiny(corpus, straight))
    real_get_batch, calls = tg.data.get_batch, {"n": 0}

    def interrupting_get_batch(ids, batch_size, block_size, device="cpu", generator=None):
        if generator is None:               # a training batch (evaluation passes its own)
            calls["n"] += 1
            if calls["n"] == 13:            # in the middle of iteration 13
                os.kill(os.getpid(), signal.SIGINT)
        return real_get_batch(ids, batch_size, block_size, device, generator)

    monkeypatch.setattr(tg.data, "get_batch", interrupting_get_batch)
    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        train_gpt(tiny(corpus, stopped))
    state = latest(stopped)
    assert state.name == "iter-00000013"        # iteration 13 was finished, then saved
    assert json.load(open(state / "trainer.json"))["meta"]["evaluated"]   # no eval due at 13
    monkeypatch.setattr(tg.data, "get_batch", real_get_batch)
    train_gpt(tiny(corpus, stopped, resume=True))
    assert (latest(straight) / "model.safetensors").read_bytes() == \
        (latest(stopped) / "model.safetensors").read_bytes()
    assert (latest(straight) / "optimizer.safetensors").read_bytes() == \
        (latest(stopped) / "optimizer.safetensors").read_bytes()


def test_gradient_accumulation_matches_one_big_batch(corpus, tmp_path, monkeypatch):
    """Two micro-batches of 4 with the loss scaled by 1/2 give the update of one batch of 8:
    clipping (on here at a value that bites) and AdamW see the same gradient."""
    tg.manual_seed(0)
    text = open(corpus).read()
    ids = tg.data.encode_corpus(tg.data.CharTokenizer.from_text(text), text)
    big = [tg.data.get_batch(ids, 8, 8) for _ in range(3)]
    halves = [(x[i:i + 4], y[i:i + 4]) for x, y in big for i in (0, 4)]

    real_get_batch = tg.data.get_batch

    def run(out_dir, batches, **kw):
        it = iter(batches)
        monkeypatch.setattr(tg.data, "get_batch",
                            lambda ids, b, t, device="cpu", generator=None:
                            next(it) if generator is None else
                            real_get_batch(ids, b, t, device, generator))
        train_gpt(tiny(corpus, out_dir, max_iters=3, dropout=0.0, grad_clip=0.05, **kw))
        return weights(latest(out_dir))

    one = run(tmp_path / "one", big, batch_size=8)
    two = run(tmp_path / "two", halves, batch_size=4, gradient_accumulation_steps=2)
    for k in one:
        np.testing.assert_allclose(one[k], two[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_outputs_summary_log_and_best_model(corpus, tmp_path):
    out = tmp_path / "run"
    summary = train_gpt(tiny(corpus, out, num_samples=2, sample_tokens=12, dropout=0.0))
    for key in ("val_loss", "best_val_loss", "train_loss", "iters", "ms_per_iter",
                "tokens_per_second", "wall_seconds", "perplexity", "bits_per_char", "config"):
        assert key in summary
    on_disk = json.load(open(out / "summary.json"))
    assert on_disk["iters"] == 20 and on_disk["config"]["n_embd"] == 16
    assert np.isclose(on_disk["perplexity"], np.exp(on_disk["val_loss"]))
    assert on_disk["best_val_loss"] <= on_disk["val_loss"] + 1e-12
    assert len(summary["samples"]) == 2 and all(isinstance(s, str) for s in summary["samples"])
    log = [json.loads(line) for line in open(out / "log.jsonl")]
    assert log[0]["iter"] == 0 and log[-1]["iter"] == 20
    assert log[-1]["val_loss"] < log[0]["val_loss"]         # it learned something
    model = GPT.from_pretrained(out)                         # the best model so far
    assert model.config.n_embd == 16 and not model.training
    assert (out / "tokenizer.json").exists()


def test_bad_input_gives_clear_errors(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("hello world, " * 3)
    with pytest.raises(ValueError, match="block_size"):
        train_gpt(TrainConfig(data=str(short), block_size=64, out_dir=str(tmp_path / "o"),
                              progress=False))
    with pytest.raises(FileNotFoundError, match="no_such_file.txt"):
        train_gpt(TrainConfig(data=str(tmp_path / "no_such_file.txt"), progress=False,
                              out_dir=str(tmp_path / "o")))
    with pytest.raises(FileNotFoundError, match="resume"):
        train_gpt(TrainConfig(data=str(short), resume=True, out_dir=str(tmp_path / "none"),
                              progress=False))
    with pytest.raises(ValueError, match="n_head"):
        TrainConfig(n_embd=10, n_head=4).validate()
    with pytest.raises(ValueError, match="tokenizer"):
        TrainConfig(tokenizer="words").validate()


def test_cli_accepts_both_flag_forms_and_booleans():
    a = train_char_lm.parse_args(["--max_iters=7", "--learning_rate", "3e-4", "--resume",
                                  "--bias=False", "--data", "x.txt"])
    assert (a.max_iters, a.learning_rate, a.resume, a.bias, a.data) == (7, 3e-4, True, False,
                                                                        "x.txt")
    d = train_char_lm.parse_args([])
    assert (d.n_layer, d.n_head, d.n_embd, d.block_size, d.batch_size, d.max_iters,
            d.learning_rate, d.min_lr, d.beta2, d.weight_decay, d.eval_interval,
            d.eval_iters, d.warmup_iters, d.lr_decay_iters, d.dropout, d.data) == (
        4, 4, 128, 64, 12, 2000, 1e-3, 1e-4, 0.99, 0.1, 250, 20, 100, 2000, 0.0, "stdlib")
    with pytest.raises(SystemExit):
        train_char_lm.parse_args(["--max_iters=lots"])


def test_bpe_tokenizer_run(corpus, tmp_path):
    summary = train_gpt(tiny(corpus, tmp_path / "bpe", tokenizer="bpe", vocab_size=300,
                             max_iters=4, eval_interval=2))
    assert summary["vocab_size"] <= 300 and np.isfinite(summary["bits_per_char"])
    assert tg.data.load_tokenizer(tmp_path / "bpe" / "tokenizer.json").vocab_size <= 300


def test_example_scripts_run_end_to_end(tmp_path):
    """The main job's command on the embedded corpus (shrunk to seconds), then sample.py."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": ROOT}
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "train_char_lm.py"), "--max_iters=3",
         "--n_layer=1", "--n_embd=16", "--n_head=2", "--block_size=16", "--eval_iters=1",
         "--eval_interval=3", "--progress=false", "--num_samples=1", "--sample_tokens=20",
         f"--out_dir={out}"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "val loss" in run.stdout and "bits per character" in run.stdout
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "sample.py"), f"--out_dir={out}",
         "--prompt", "def ", "--num_samples", "2", "--max_new_tokens", "10"],
        capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("--- sample") == 2 and "def " in run.stdout
    bad = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "train_char_lm.py"),
         "--data=/no/such/corpus.txt", f"--out_dir={tmp_path / 'other'}"], capture_output=True, text=True,
        env=env, timeout=300)
    assert bad.returncode != 0 and "/no/such/corpus.txt" in bad.stderr


def test_cli_shortens_only_user_errors():
    """A bad flag or a missing file is one line for the user; a bug keeps its traceback."""
    from tinygradlm.cli import run_cli

    with pytest.raises(SystemExit, match="error: --n_embd=10 must be divisible by --n_head=4"):
        run_cli(lambda cfg: None, TrainConfig(n_embd=10))

    def missing(cfg):
        raise FileNotFoundError("no such file: 'corpus.txt'")
    with pytest.raises(SystemExit, match="error: no such file: 'corpus.txt'"):
        run_cli(missing, TrainConfig())

    def bad_file(cfg):
        raise tg.files.InputError("'x.csv', line 3: no field 'label'")
    with pytest.raises(SystemExit, match="error: 'x.csv', line 3: no field 'label'"):
        run_cli(bad_file, TrainConfig())

    def bug(cfg):
        raise ValueError("an internal shape bug")
    with pytest.raises(ValueError, match="internal shape bug"):
        run_cli(bug, TrainConfig())


def test_schedule_keeps_each_groups_ratio_floor_included():
    """A group at a hundredth of --learning_rate stays at a hundredth, through warmup, decay
    and the --min_lr floor (it never rises to the floor of the others)."""
    from tinygradlm.train.loop import make_scheduler
    a, b = tg.nn.Parameter(tg.zeros(2)), tg.nn.Parameter(tg.zeros(2))
    cfg = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=3, lr_decay_iters=10)
    opt = tg.optim.AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1e-5}])
    sched = make_scheduler(cfg, opt)
    for it in range(14):
        head, body = (g["lr"] for g in opt.param_groups)
        assert body == pytest.approx(head / 100, rel=1e-12)
        sched.step()
    assert head == pytest.approx(1e-4) and body == pytest.approx(1e-6)
