"""Training runs lose nothing: kill -9, Ctrl-C and a full disk at exact points (inside a step,
an evaluation and a save), each followed by --resume, end bit for bit where an uninterrupted
run ends; a finished run is reported, not retrained; an old run is never overwritten by
surprise.  Every run here is a real ``examples/train_char_lm.py`` process (through
``fault_run.py``, which injects the fault), so signals, exit codes and messages are the ones
a user sees."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import tinygradlm as tg

from strategies import latest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Evaluations (and saves) at iterations 0, 2, 4, 6 and 8; dropout on, so the random stream
# must be carried over exactly.  One save is 11 replaces (3 files of the best model, the
# tokenizer's own temporary file, 5 state files, the state directory, and from the third
# state on the removal of the oldest): the 11th replace commits the state of iteration 0.
FLAGS = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=8", "--batch_size=4",
         "--max_iters=8", "--eval_interval=2", "--eval_iters=1", "--warmup_iters=2",
         "--lr_decay_iters=8", "--dropout=0.1", "--num_samples=0", "--progress=false"]


def run(out_dir, *extra, fault=None, corpus):
    script = ([os.path.join(HERE, "fault_run.py"), fault[0], str(fault[1])] if fault else
              [os.path.join(ROOT, "examples", "train_char_lm.py")])
    # The reference kernels: no Numba compile in each of these short processes.
    env = {**os.environ, "PYTHONPATH": ROOT, "TINYGRADLM_KERNELS": "reference",
           "TINYGRADLM_DEVICE": "cpu"}
    return subprocess.run([sys.executable, *script, f"--data={corpus}", *FLAGS,
                           f"--out_dir={out_dir}", *extra], capture_output=True, text=True,
                          timeout=300, env=env)


def fingerprint(out):
    """What must be identical to an uninterrupted run: the final state's weights and AdamW
    moments (bytes), the best model, every log row (once each) and the summary's numbers."""
    state = latest(out)
    rows = [json.loads(line) for line in open(out / "log.jsonl")]
    summary = json.load(open(out / "summary.json"))
    hidden = [p.name for d in (out, out / "resume") for p in d.iterdir()
              if p.name.startswith(".")]
    return {"state": state.name, "hidden leftovers": hidden,
            "weights": (state / "model.safetensors").read_bytes(),
            "moments": (state / "optimizer.safetensors").read_bytes(),
            "best model": (out / "model.safetensors").read_bytes(),
            "log": [{k: v for k, v in r.items() if k != "seconds"} for r in rows],
            "summary": {k: summary[k] for k in ("val_loss", "best_val_loss", "train_loss",
                                                "last_batch_loss", "iters", "perplexity")}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(tg.data.load_corpus("stdlib")[:20_000])
    return str(path)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    done = run(out, corpus=corpus)
    assert done.returncode == 0, done.stderr
    print_ = fingerprint(out)
    assert print_["state"] == "iter-00000008" and len(print_["log"]) == 5
    return out, print_


def resume_after(out, corpus):
    """--resume; when the fault came before the first state was complete, --resume says so
    and a new run with --overwrite starts over."""
    had_state = bool(tg.checkpoint.state_dirs(out / "resume"))
    again = run(out, "--resume", corpus=corpus)
    if not had_state:
        assert again.returncode == 1 and "no training state" in again.stderr, again.stderr
        assert "Traceback" not in again.stderr
        again = run(out, "--overwrite", corpus=corpus)
    else:
        assert "resuming from" in again.stdout and "iter-" in again.stdout
    assert again.returncode == 0, again.stderr
    return again


KILL_POINTS = [("kill-before-replace", n) for n in (1, 9, 11, 14, 20, 22, 34, 45)] + \
              [("kill-after-replace", n) for n in (11, 22, 33)] + \
              [("kill-step", n) for n in (1, 5)]


@pytest.mark.parametrize("fault", KILL_POINTS, ids=[f"{k}-{n}" for k, n in KILL_POINTS])
def test_kill_9_anywhere_then_resume_is_exact(fault, corpus, reference, tmp_path):
    killed = run(tmp_path, fault=fault, corpus=corpus)
    assert killed.returncode == -9, killed.stderr
    resume_after(tmp_path, corpus)
    assert fingerprint(tmp_path) == reference[1]


# (fault, the iteration whose state is on disk after it, what the run says)
CTRL_C = [(("int-step", 3), 3, "interrupted at iteration 3"),      # iteration 3 finished
          (("int-step", 2), 2, "interrupted at iteration 2"),      # ... its evaluation left
          (("int-update", 20), 2, "interrupted at iteration 2"),   # AdamW half-way: finished
          (("int-eval", 3), 2, "interrupted at iteration 2"),      # evaluation at 2 cut short
          (("int-save", 20), 2, "interrupted at iteration 2"),     # the save finishes first
          (("int-save-twice", 20), 0, "stopped without saving; --resume continues from "
                                      "iteration 0")]              # the save abandoned


@pytest.mark.parametrize("fault, saved, says", CTRL_C, ids=[f"{f[0]}-{f[1]}" for f, _, _ in CTRL_C])
def test_ctrl_c_anywhere_then_resume_is_exact(fault, saved, says, corpus, reference, tmp_path):
    stopped = run(tmp_path, fault=fault, corpus=corpus)
    assert stopped.returncode == 130, stopped.stderr
    assert says in stopped.stdout + stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert latest(tmp_path).name == f"iter-{saved:08d}"
    resume_after(tmp_path, corpus)
    assert fingerprint(tmp_path) == reference[1]


@pytest.mark.parametrize("at", [14, 20, 22])    # the best model; trainer.json; the state dir
def test_full_disk_stops_with_one_line_and_keeps_the_last_state(at, corpus, reference,
                                                                tmp_path):
    full = run(tmp_path, fault=("full-disk", at), corpus=corpus)
    assert full.returncode == 1
    error = full.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and "Traceback" not in full.stderr
    assert "No space left on device" in error[0]
    assert "the training state of iteration 0 is intact" in error[0]
    assert latest(tmp_path).name == "iter-00000000"
    assert not [p for p in (tmp_path / "resume").iterdir() if p.name.startswith(".tmp")]
    resume_after(tmp_path, corpus)
    assert fingerprint(tmp_path) == reference[1]


def test_resume_of_a_finished_run_reports_it_and_longer_max_iters_continue(corpus, reference,
                                                                           tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    summary = (out / "summary.json").read_bytes()
    again = run(out, "--resume", corpus=corpus)
    assert again.returncode == 0, again.stderr
    assert "already finished at iteration 8" in again.stdout and "val_loss" in again.stdout
    assert (out / "summary.json").read_bytes() == summary          # nothing overwritten
    assert fingerprint(out) == reference[1]
    longer = run(out, "--resume", "--max_iters=10", corpus=corpus)
    assert longer.returncode == 0, longer.stderr
    assert "--max_iters=10 (saved: 8)" in longer.stdout
    assert json.load(open(out / "summary.json"))["iters"] == 10
    assert latest(out).name == "iter-00000010"


def test_finished_run_without_its_summary_writes_it_from_the_saved_state(corpus, reference,
                                                                         tmp_path):
    """Stopped after the last state was saved but before the summary (Ctrl-C while sampling):
    --resume writes the summary, valid JSON, with null and a reason for what it cannot time."""
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    (out / "summary.json").unlink()
    again = run(out, "--resume", corpus=corpus)
    assert again.returncode == 0, again.stderr
    text = (out / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text)
    assert summary["ms_per_iter"] is None and summary["val_loss"] == \
        reference[1]["summary"]["val_loss"]
    assert fingerprint(out) == reference[1]


def test_a_new_run_never_overwrites_an_old_one_by_surprise(corpus, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    best = (out / "model.safetensors").read_bytes()
    refused = run(out, corpus=corpus)
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    assert "--resume" in refused.stderr and "--overwrite" in refused.stderr
    assert (out / "model.safetensors").read_bytes() == best
    (out / "notes.txt").write_text("mine")
    again = run(out, "--overwrite", corpus=corpus)
    assert again.returncode == 0, again.stderr
    assert (out / "notes.txt").read_text() == "mine"          # only the run's files go
    assert fingerprint(out) == reference[1]
