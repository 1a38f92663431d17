"""Every flag is checked before any work, names itself in the error, and has a --help line;
a resumed run says which flags changed; the remaining small faults of issue 12 (a diverging
run, a hand-edited config.json, sample.py's options, two_moons.py --steps 0)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm.cli import run_cli
from tinygradlm.train import FinetuneConfig, MLMConfig, TrainConfig, fit, train_gpt
from tinygradlm.train.loop import memory_estimate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def script(name, *args, **env):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT, **env})


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(tg.data.load_corpus("stdlib")[:20_000])
    return str(path)


BAD_FLAGS = [  # (flag values, what the error must say)
    (dict(learning_rate=-1), "--learning_rate must be > 0, got -1"),
    (dict(grad_clip=-1), "--grad_clip must be >= 0"),
    (dict(warmup_iters=-5), "--warmup_iters must be >= 0"),
    (dict(min_lr=0.5, learning_rate=0.1), "--min_lr=0.5 must not exceed --learning_rate=0.1"),
    (dict(beta1=1.5), "--beta1 must be in [0, 1), got 1.5"),
    (dict(beta2=1.0), "--beta2 must be in [0, 1), got 1.0"),
    (dict(weight_decay=-1), "--weight_decay must be >= 0"),
    (dict(sample_tokens=-1), "--sample_tokens must be >= 1"),
    (dict(num_samples=-1), "--num_samples must be >= 0"),
    (dict(dropout=1.0), "--dropout must be in [0, 1)"),
    (dict(max_iters=0), "--max_iters must be >= 1"),
    (dict(learning_rate=float("nan")), "--learning_rate must be > 0, got nan"),
    (dict(n_layer="4"), "--n_layer must be int, not str '4'"),
    (dict(dtype="float16"), "--dtype must be one of ('float32', 'float64')"),
    (dict(tokenizer="words"), "--tokenizer must be one of ('char', 'bpe')"),
    (dict(lr_decay_iters=10, warmup_iters=50), "--lr_decay_iters=10 must be at least "
                                               "--warmup_iters=50"),
    (dict(resume=True, overwrite=True), "pass one of them"),
    (dict(block_size=100_000), "would need about"),
    (dict(data="/no/such/corpus.txt"), "--data: no such file: '/no/such/corpus.txt'"),
    (dict(out_dir="/proc/tinygradlm-out"), "--out_dir '/proc/tinygradlm-out' cannot be "
                                           "written to"),
    (dict(out_dir="/sys/tinygradlm-out"), "--out_dir '/sys/tinygradlm-out' cannot be written"),
]


@pytest.mark.parametrize("flags, says", BAD_FLAGS, ids=[str(f) for f, _ in BAD_FLAGS])
def test_every_bad_flag_is_refused_before_any_work(flags, says, tmp_path):
    cfg = TrainConfig(**{"out_dir": str(tmp_path / "out"), **flags})
    with pytest.raises(SystemExit) as stop:      # the CLI: one line, no traceback
        run_cli(lambda cfg: pytest.fail("the run started"), cfg)
    assert says in str(stop.value) and str(stop.value).startswith("error: ")


def test_an_out_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        TrainConfig(out_dir=str(tmp_path / "file")).validate()


def test_model_sizes_are_estimated_sensibly():
    """Big enough to catch a typo, small enough never to refuse a real run: the default
    model is tens of MB, and a 100k context is refused, a 1k one on 24 GiB is not."""
    assert memory_estimate(TrainConfig()) < 2 ** 27
    assert memory_estimate(TrainConfig(block_size=1024)) < 2 ** 32
    assert memory_estimate(TrainConfig(block_size=100_000)) > 2 ** 40


def test_subclass_flags_keep_their_ranges():
    with pytest.raises(ValueError, match="--mlm_probability must be in"):
        MLMConfig(mlm_probability=0.0).validate()
    with pytest.raises(ValueError, match="--max_iters must be >= 1"):
        MLMConfig(max_iters=0).validate()           # redefined default, inherited range
    with pytest.raises(ValueError, match="--pooling must be one of"):
        FinetuneConfig(pooling="max").validate()


def test_init_from_and_out_dir_may_not_be_the_same(tmp_path):
    with pytest.raises(ValueError, match="would overwrite the pretrained model"):
        FinetuneConfig(init_from=str(tmp_path / "m"), out_dir=str(tmp_path / "m" / "."),
                       progress=False).validate()


@pytest.mark.parametrize("name", ["train_char_lm.py", "train_mlm.py",
                                  "finetune_classifier.py", "sample.py"])
def test_help_describes_every_flag_with_its_default(name):
    run = script(name, "--help")
    assert run.returncode == 0, run.stderr
    # Each option starts a line with two spaces and "--"; its wrapped lines are indented more.
    options = re.split(r"\n  (?=--)", run.stdout.split("options:")[1])[1:]
    entries = {e.split()[0].lstrip("-"): " ".join(e.split()) for e in options}
    entries.pop("help", None)
    assert len(entries) >= 10
    for flag_name, entry in entries.items():
        assert "(default:" in entry, entry
        described = entry.split("(default:")[0].split()[2:]     # past --flag and METAVAR
        assert len(described) >= 3, entry                       # words, not a blank


def test_resume_names_changed_flags_and_refuses_a_different_run(corpus, tmp_path):
    cfg = dict(data=corpus, n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4,
               max_iters=4, lr_decay_iters=4, warmup_iters=1, eval_interval=2, eval_iters=1,
               progress=False, num_samples=0, out_dir=str(tmp_path / "run"))
    train_gpt(TrainConfig(**cfg))
    for change, says in ((dict(n_embd=32), "--n_embd=32 (saved: 16)"),
                         (dict(tokenizer="bpe"), "--tokenizer='bpe' (saved: 'char')"),
                         (dict(data=corpus + ".copy"), "--data=")):
        if "data" in change:
            open(change["data"], "w").write(open(corpus).read())
        with pytest.raises(ValueError, match="would make it another run") as err:
            train_gpt(TrainConfig(**{**cfg, **change, "resume": True}))
        assert says in str(err.value)


def test_resume_announces_flags_that_may_change(corpus, tmp_path, capsys):
    cfg = dict(data=corpus, n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4,
               max_iters=2, lr_decay_iters=4, warmup_iters=1, eval_interval=2, eval_iters=1,
               progress=False, num_samples=0, out_dir=str(tmp_path / "run"))
    train_gpt(TrainConfig(**cfg))
    capsys.readouterr()
    train_gpt(TrainConfig(**{**cfg, "max_iters": 4, "eval_iters": 2, "resume": True}))
    out = capsys.readouterr().out
    assert "--max_iters=4 (saved: 2)" in out and "--eval_iters=2 (saved: 1)" in out


def test_a_diverging_run_stops_before_the_update_with_one_line(tmp_path):
    """The NaN loss is caught before optimizer.step(): the weights stay finite, the saved
    state is intact, and the CLI prints the advice without a traceback."""
    tg.manual_seed(0)
    model = tg.nn.GPT(tg.nn.GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1,
                                      n_embd=4))
    optimizer = model.configure_optimizers(0.0, 1e-3, (0.9, 0.99))
    x = tg.Tensor(np.array([[1, 2, 3, 4]]))
    losses = iter([1.0, 1.0, float("nan")])

    def next_loss():
        return model(x, x)[1] * next(losses)

    cfg = TrainConfig(out_dir=str(tmp_path), max_iters=5, eval_interval=2, progress=False)
    with pytest.raises(FloatingPointError, match=r"became nan at iteration 3; try a lower "
                                                 r"--learning_rate \(the state of iteration 2"):
        fit(cfg, model, optimizer, next_loss, lambda: {"val_loss": 1.0})
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())

    def diverge(cfg):
        raise FloatingPointError("the training loss became nan at iteration 3")
    with pytest.raises(SystemExit, match="^error: the training loss became nan"):
        run_cli(diverge, TrainConfig(out_dir=str(tmp_path / "other")))


def test_a_hand_edited_config_json_names_the_key(tmp_path):
    model = tg.nn.GPT(tg.nn.GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1,
                                      n_embd=4))
    model.save_pretrained(tmp_path)
    config = json.load(open(tmp_path / "config.json"))
    json.dump({**config, "n_layer": "4"}, open(tmp_path / "config.json", "w"))
    with pytest.raises(tg.checkpoint.CheckpointError,
                       match=r"config.json: 'n_layer' must be int, not str '4'"):
        tg.nn.GPT.from_pretrained(tmp_path)


def test_a_crafted_weights_header_is_refused_before_any_allocation(tmp_path):
    """A header that declares a huge array (a few bytes on disk) is a CheckpointError,
    not an attempt to allocate it (safetensors checks the header against the file)."""
    import struct
    model = tg.nn.GPT(tg.nn.GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1,
                                      n_embd=4))
    model.save_pretrained(tmp_path)
    raw = (tmp_path / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header = {name: {**header[name], "shape": [10 ** 6, 10 ** 6],
                     "data_offsets": [0, 4 * 10 ** 12]}}
    data = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(data)) + data +
                                                 raw[8 + n:])
    with pytest.raises(tg.checkpoint.CheckpointError, match="truncated or corrupt"):
        tg.nn.GPT.from_pretrained(tmp_path)


SAMPLE_OPTIONS = [("--prompt=", "--prompt is empty"),
                  ("--temperature=0", "--temperature must be > 0"),
                  ("--num_samples=0", "--num_samples must be >= 1"),
                  ("--top_k=-1", "--top_k must be >= 0"),
                  ("--top_p=1.5", "--top_p must be in (0, 1]"),
                  ("--prompt=\u20ac", "--prompt: character")]


def test_sample_script_refuses_bad_options_in_one_line(tmp_path):
    tok = tg.data.CharTokenizer.from_text("abcde\n")
    tg.nn.GPT(tg.nn.GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1,
                              n_embd=4)).save_pretrained(tmp_path, tok)
    for option, says in SAMPLE_OPTIONS:
        run = script("sample.py", f"--out_dir={tmp_path}", option, "--max_new_tokens=3")
        assert run.returncode == 1 and "Traceback" not in run.stderr, (option, run.stderr)
        assert says in run.stderr, (option, run.stderr)
    ok = script("sample.py", f"--out_dir={tmp_path}", "--top_k=0", "--prompt=ab",
                "--max_new_tokens=3", "--num_samples=2")
    assert ok.returncode == 0 and ok.stdout.count("--- sample") == 2, ok.stderr


def test_two_moons_refuses_zero_steps():
    run = script("two_moons.py", "--steps", "0")
    assert run.returncode == 2 and "--steps must be at least 1" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_one_class_file_and_a_tiny_test_split_are_called_out(tmp_path, capsys):
    one = tmp_path / "one.csv"
    one.write_text("text,label\n" + "".join(f"row {i},spam\n" for i in range(20)))
    with pytest.raises(ValueError, match=r"one.csv.*'spam'.*at least 2 classes"):
        tg.data.labelled_from_file(one)
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("text,label\na b,x\nc d,y\ne f,x\n")
    from tinygradlm.train.finetune import warn_if_few
    warn_if_few(tg.data.labelled_from_file(tiny))
    assert "only 1 example(s)" in capsys.readouterr().err
