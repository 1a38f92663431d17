"""Training an encoder-decoder (``train_seq2seq``, ``examples/train_seq2seq.py``) end to end:
a synthetic task it must solve (reversing digit strings, >= 95% exact match), the built-in
code-summarisation task on a tiny model (summary keys, files, baseline), exact resume after
Ctrl-C, the batches, and the errors a user hits (a bad pairs file, a tokenizer that does not
fit the model, bad flags)."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm.train import Seq2SeqConfig, train_seq2seq
from tinygradlm.train import seq2seq as s2s

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUMMARY_KEYS = {"test_bleu", "test_chrf", "test_exact_match", "baseline_bleu", "val_loss",
                "wall_seconds", "config", "greedy_bleu", "baseline_chrf", "examples"}


def digit_pairs(path, n=2000, seed=0):
    """``3 8 1 4<TAB>4 1 8 3``: reverse a string of 3-6 digits (one token per digit)."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        digits = [str(d) for d in rng.integers(0, 10, rng.integers(3, 7))]
        lines.append(" ".join(digits) + "\t" + " ".join(reversed(digits)))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def tiny(data, out_dir, **kw):
    base = dict(data=data, out_dir=str(out_dir), vocab_size=300, n_layer=2, n_decoder_layer=2,
                n_head=4, n_embd=64, block_size=16, tgt_block_size=12, dropout=0.0,
                label_smoothing=0.0, batch_size=64, max_iters=400, lr_decay_iters=400,
                warmup_iters=20, learning_rate=1e-3, min_lr=1e-4, eval_interval=200,
                eval_iters=2, num_beams=2, num_samples=2, progress=False, device="cpu")
    return Seq2SeqConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return digit_pairs(tmp_path_factory.mktemp("digits") / "reverse.tsv")


# --- learning ----------------------------------------------------------------------------------
def test_learns_to_reverse_digit_strings(digits, tmp_path):
    summary = train_seq2seq(tiny(digits, tmp_path))
    assert summary["test_exact_match"] >= 0.95, summary
    assert summary["greedy_exact_match"] >= 0.95
    assert summary["test_bleu"] > 90 and summary["baseline_bleu"] < 20
    assert SUMMARY_KEYS <= set(summary)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "log.jsonl",
                 "summary.json", "loss.png"):
        assert (tmp_path / name).exists(), name
    assert json.loads((tmp_path / "summary.json").read_text())["test_bleu"] == pytest.approx(
        summary["test_bleu"])
    # the saved model and tokenizer reproduce an output
    model, tokenizer = s2s.load_trained(tmp_path)
    ids = tokenizer.encode("1 2 3 4")
    out = model.generate([ids], max_new_tokens=10).numpy()[0]
    assert tokenizer.decode(out[1:].tolist()).strip() == "4 3 2 1"


def test_code_summarisation_runs_end_to_end_on_a_tiny_model(tmp_path, capsys):
    cfg = Seq2SeqConfig(out_dir=str(tmp_path), vocab_size=400, n_layer=1, n_decoder_layer=1,
                        n_head=2, n_embd=16, block_size=32, tgt_block_size=8, max_iters=2,
                        lr_decay_iters=2, warmup_iters=1, eval_interval=2, eval_iters=1,
                        batch_size=64, num_beams=2, num_samples=2, progress=False)
    summary = train_seq2seq(cfg)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["pairs"]["test"] >= 500
    assert summary["baseline"] == "the function's name as a sentence"
    assert 0 <= summary["test_chrf"] <= 100 and 0 <= summary["test_exact_match"] <= 1
    assert summary["examples"][0]["reference"].endswith(".")
    captured = capsys.readouterr()
    assert "--- reference:" in captured.out and "baseline: the function's name" in captured.out
    assert "sources are longer than 32 tokens (--block_size) and were cut" in captured.err


# --- resume ------------------------------------------------------------------------------------
def test_ctrl_c_then_resume_is_exact(digits, tmp_path, monkeypatch):
    kw = dict(max_iters=6, lr_decay_iters=6, warmup_iters=2, eval_interval=2, dropout=0.1,
              num_beams=1, num_samples=0)
    whole = tmp_path / "whole"
    train_seq2seq(tiny(digits, whole, **kw))

    cut = tmp_path / "cut"
    calls = {"n": 0}
    real = s2s.pair_batch

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:                         # inside a training step, after iteration 3
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)
    monkeypatch.setattr(s2s, "pair_batch", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train_seq2seq(tiny(digits, cut, **kw))
    monkeypatch.setattr(s2s, "pair_batch", real)
    train_seq2seq(tiny(digits, cut, resume=True, **kw))
    assert (cut / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    rows = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in open(d / "log.jsonl")] for d in (whole, cut)]
    assert rows[0] == rows[1]


# --- pieces ------------------------------------------------------------------------------------
def test_pair_batch_pads_each_side_and_ignores_padding_in_the_loss():
    sources, targets = [[5, 6, 7], [8]], [[9, 3], [10, 11, 3]]
    src, mask, labels = s2s.pair_batch(sources, targets, [1, 0], pad_id=0)
    np.testing.assert_array_equal(src, [[8, 0, 0], [5, 6, 7]])
    np.testing.assert_array_equal(mask, [[True, False, False], [True, True, True]])
    np.testing.assert_array_equal(labels, [[10, 11, 3], [9, 3, -100]])


def test_long_pairs_are_cut_with_one_note_each(capsys):
    tok = tg.data.SubwordTokenizer.train("a b c d e f g h " * 50, 300,
                                         special_tokens=tg.data.BERT_SPECIAL_TOKENS)
    pairs = [("a b c d e f g h", "a b c d e f"), ("a b", "c")]
    src, tgt = s2s.encode_pairs(pairs, tok, max_source=4, max_target=3)
    assert [len(s) for s in src] == [4, 2]
    assert tgt[0][-1] == tok.sep_token_id and len(tgt[0]) == 3 and len(tgt[1]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 train sources are longer than 4 tokens (--block_size)" in err
    assert "1 of 2 train targets are longer than 2 tokens (--tgt_block_size)" in err


# --- bad input ---------------------------------------------------------------------------------
def run_script(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_seq2seq.py"),
                           *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT})


def test_script_names_the_bad_line_of_a_pairs_file(tmp_path):
    bad = tmp_path / "pairs.tsv"
    bad.write_text("one\tun\ntwo deux\nthree\ttrois\n")
    done = run_script(f"--data={bad}", f"--out_dir={tmp_path / 'out'}", "--progress=false")
    assert done.returncode == 1
    assert "pairs.tsv" in done.stderr and "line 2" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("flags,message", [
    (["--data=shakespeare"], "is a plain text, not (source, target) pairs"),
    (["--num_beams=0"], "--num_beams"),
    (["--tgt_block_size=1"], "--tgt_block_size"),
    (["--positions=rotary"], "--positions"),
])
def test_script_refuses_bad_flags(tmp_path, flags, message):
    done = run_script(*flags, f"--out_dir={tmp_path}", "--progress=false")
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_tokenizer_that_does_not_fit_the_model_is_refused(tmp_path):
    tg.manual_seed(0)
    model = tg.nn.EncoderDecoder(tg.nn.EncoderDecoderConfig(
        vocab_size=200, block_size=8, n_layer=1, n_head=2, n_embd=8))
    big = tg.data.SubwordTokenizer.train("some text to learn from " * 100, 400,
                                         special_tokens=tg.data.BERT_SPECIAL_TOKENS)
    assert len(big) > 200                   # byte-level BPE: 256 bytes + specials at least
    model.save_pretrained(tmp_path, big)
    with pytest.raises(tg.files.InputError, match=r"tokenizer .* has \d+ tokens but the model "
                                                  r".* has vocab_size=200"):
        s2s.load_trained(tmp_path)
