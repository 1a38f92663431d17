"""Masked-LM pretraining (``train_mlm``) and fine-tuning (``finetune_classifier``,
``finetune_and_compare``, ``pretrained_body``) end to end on tiny models: the summaries and
files, exact resume, freezing, the from-scratch comparison, the errors a user hits, and the two
example scripts (train_mlm.py, finetune_classifier.py) run as a user would."""
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm.train import finetune as finetune_mod, learning_curve, mlm as mlm_mod
from tinygradlm.nn import BERT, GPT, GPTConfig, SequenceClassifier
from tinygradlm.train import (FinetuneConfig, MLMConfig, finetune_and_compare,
                              finetune_classifier, pretrained_body, train_mlm)

from strategies import assert_matches, latest
# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOCK = 32

# Three classes that a tiny model learns in a few dozen steps: each text is a bag of words
# from its own small set (all of them common in Python code, so the tokenizer knows them).
WORDS = {"loops": "for while break continue range iter next".split(),
         "imports": "import from as module package path sys".split(),
         "errors": "raise except try finally error exception assert".split()}


# --- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~30 KB of real text (the start of the stdlib corpus), as a file."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(tg.data.load_corpus("stdlib")[:30_000])
    return str(path)


def labelled_rows(n=120, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = list(WORDS)[i % 3]
        rows.append((" ".join(rng.choice(WORDS[label], size=int(rng.integers(4, 12)))), label))
    return rows


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The task as a JSONL file."""
    path = tmp_path_factory.mktemp("labelled") / "task.jsonl"
    with open(path, "w") as f:
        for text, label in labelled_rows():
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def labelled_csv(tmp_path_factory):
    """The same kind of task as a CSV file with other column names."""
    path = tmp_path_factory.mktemp("labelled") / "task.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["snippet", "kind"])
        w.writerows(labelled_rows(seed=1))
    return str(path)


def mlm_config(corpus, out_dir, **kw):
    cfg = dict(data=corpus, vocab_size=300, n_layer=1, n_head=2, n_embd=16, block_size=BLOCK,
               batch_size=4, max_iters=20, lr_decay_iters=20, warmup_iters=3, eval_interval=5,
               eval_iters=2, learning_rate=3e-3, dropout=0.1, progress=False,
               out_dir=str(out_dir), seed=7)
    return MLMConfig(**{**cfg, **kw})


def ft_config(data, init_from, out_dir, **kw):
    cfg = dict(data=data, init_from=str(init_from), max_length=BLOCK, batch_size=16,
               max_iters=20, lr_decay_iters=20, warmup_iters=2, eval_interval=5,
               learning_rate=3e-3, dropout=0.1, progress=False, out_dir=str(out_dir), seed=7,
               n_layer=1, n_head=2, n_embd=16, pooling="")     # each body's own pooling
    return FinetuneConfig(**{**cfg, **kw})


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    """A tiny masked-LM pretrained on the corpus: (its directory, its summary).  Byte-level
    BPE with the special tokens: unlike WordPiece its training is deterministic (see
    test_train_mlm_is_reproducible), so every number below is the same on every run.  The
    default WordPiece tokenizer is exercised by the example scripts and pretrained_body."""
    out = tmp_path_factory.mktemp("mlm") / "out"
    return out, train_mlm(mlm_config(corpus, out, tokenizer="bpe"))


@pytest.fixture
def pinned_tokenizer_training(monkeypatch):
    """SubwordTokenizer.train memoised on its arguments, so that two runs on one corpus get
    the same vocabulary: Hugging Face's WordPiece trainer is not deterministic (see
    test_train_mlm_is_reproducible), and the tests using this are about something else."""
    real, cache = tg.data.SubwordTokenizer.train, {}

    def train(text, vocab_size, model="bpe", special_tokens=(), min_frequency=2):
        key = (text, vocab_size, model, tuple(special_tokens), min_frequency)
        if key not in cache:
            cache[key] = real(text, vocab_size, model, special_tokens, min_frequency)
        return cache[key]

    monkeypatch.setattr(tg.data.SubwordTokenizer, "train", staticmethod(train))


def weights(model):
    return {k: t.numpy() for k, t in model.state_dict().items()}


def assert_same(a, b, keys=None):
    assert a.keys() == b.keys()
    for k in keys or a:
        assert_matches(a[k], b[k], err_msg=k)


# --- masked-LM pretraining --------------------------------------------------------------
def test_train_mlm_summary_files_and_model(pretrained):
    out, summary = pretrained
    for key in ("val_loss", "best_val_loss", "train_loss", "val_masked_accuracy", "perplexity",
                "unigram_baseline_loss", "unigram_baseline_perplexity", "iters", "ms_per_iter",
                "tokens_per_second", "wall_seconds", "num_params", "vocab_size", "config"):
        assert key in summary, key
    for name in ("config.json", "model.safetensors", "tokenizer.json", "log.jsonl",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert (latest(out) / "trainer.json").is_file()
    on_disk = json.load(open(out / "summary.json"))
    assert on_disk["iters"] == summary["iters"] == 20
    assert on_disk["config"]["block_size"] == BLOCK and on_disk["config"]["n_embd"] == 16
    assert np.isclose(summary["perplexity"], np.exp(summary["val_loss"]))
    assert np.isclose(summary["unigram_baseline_perplexity"],
                      np.exp(summary["unigram_baseline_loss"]))
    assert 0.0 <= summary["val_masked_accuracy"] <= 1.0
    assert summary["best_val_loss"] <= summary["val_loss"] + 1e-12
    assert all(np.isfinite(summary[k]) for k in ("train_loss", "unigram_baseline_loss"))
    log = [json.loads(line) for line in open(out / "log.jsonl")]
    assert [r["iter"] for r in log] == [0, 5, 10, 15, 20]
    assert {"train_loss", "val_loss", "val_masked_accuracy"} <= set(log[-1])
    assert log[-1]["val_loss"] < log[0]["val_loss"]               # it learned something
    tok = tg.data.load_tokenizer(out / "tokenizer.json")
    assert tok.special_tokens == tg.data.BERT_SPECIAL_TOKENS and tok.vocab_size == summary["vocab_size"]
    model = BERT.from_pretrained(out)                             # the best model so far
    assert not model.training
    assert (model.config.vocab_size, model.config.block_size, model.config.n_layer,
            model.config.n_embd, model.config.pad_token_id) == (tok.vocab_size, BLOCK, 1, 16,
                                                                tok.pad_token_id)
    ids, mask = tg.data.encode_batch(tok, ["def f(x):\n    return x", "import os"], BLOCK)
    logits, _ = model(ids, mask)
    assert logits.shape == (2, BLOCK, tok.vocab_size) and np.all(np.isfinite(logits.numpy()))


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_train_mlm_resume_is_exact(corpus, tmp_path, kind, pinned_tokenizer_training):
    """10 iterations, stop, resume to 20 == 20 straight: weights, Adam state, schedule, the
    random masks and the dropout stream all carry over (dropout > 0 here)."""
    kw = dict(gradient_accumulation_steps=2, tokenizer=kind)
    straight = tmp_path / "straight"
    train_mlm(mlm_config(corpus, straight, **kw))
    split = tmp_path / "split"
    first = train_mlm(mlm_config(corpus, split, max_iters=10, **kw))
    assert first["iters"] == 10
    second = train_mlm(mlm_config(corpus, split, resume=True, **kw))
    assert second["iters"] == 20
    assert_same(weights(BERT.from_pretrained(latest(straight))),
                weights(BERT.from_pretrained(latest(split))))
    log = [json.loads(line) for line in open(split / "log.jsonl")]
    assert [r["iter"] for r in log] == [0, 5, 10, 15, 20]          # the resumed run appends


@pytest.mark.parametrize("kind", ["bpe"])
def test_train_mlm_is_reproducible(corpus, tmp_path, kind):
    """The same config and seed twice give the same tokenizer and the same model (what makes
    runs comparable, and a lost run repeatable).  Only for "bpe", the default: the WordPiece
    trainer of tokenizers 0.23 is not deterministic (huggingface/tokenizers#1794), so a
    "wordpiece" run repeats exactly only through --resume, which reloads its tokenizer."""
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        train_mlm(mlm_config(corpus, out, tokenizer=kind, max_iters=2, eval_interval=2))
    va, vb = (tg.data.load_tokenizer(out / "tokenizer.json").tokenizer.get_vocab()
              for out in runs)
    differ = sorted(set(va.items()) ^ set(vb.items()))
    assert not differ, (f"the same text gave two different {kind} vocabularies "
                        f"({len(differ)} (token, id) pairs differ, e.g. {differ[:6]})")
    assert_same(weights(BERT.from_pretrained(latest(runs[0]))),
                weights(BERT.from_pretrained(latest(runs[1]))))


def test_train_mlm_bad_input(corpus, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("hello world, " * 20)
    with pytest.raises(ValueError, match="too short.*block_size"):
        train_mlm(mlm_config(str(short), tmp_path / "o", block_size=64))
    with pytest.raises(FileNotFoundError, match="no_such_file.txt"):
        train_mlm(mlm_config(str(tmp_path / "no_such_file.txt"), tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="resume"):
        train_mlm(mlm_config(corpus, tmp_path / "nothing", resume=True))
    with pytest.raises(ValueError, match="mlm_probability"):
        mlm_config(corpus, tmp_path, mlm_probability=0.0).validate()
    with pytest.raises(ValueError, match="tokenizer.*'char'"):
        mlm_config(corpus, tmp_path, tokenizer="char").validate()
    with pytest.raises(ValueError, match="block_size"):
        mlm_config(corpus, tmp_path, block_size=2).validate()


def test_mlm_length_check_matches_what_a_batch_needs(tmp_path, pretrained):
    """A split of exactly block_size - 2 tokens fills one [CLS] ... [SEP] row, which
    get_mlm_batch accepts, so prepare_mlm_data must accept it too; one token fewer is refused
    with a message naming both numbers."""
    path = tmp_path / "ab.txt"
    path.write_text("ab" * 50)                        # 100 characters: 90 train, 10 val
    char = tg.data.CharTokenizer.from_text("ab")
    wp = tg.data.load_tokenizer(pretrained[0] / "tokenizer.json")
    x, labels, _ = tg.data.get_mlm_batch(np.arange(5, 15), 2, 12, wp)   # 10 = 12 - 2 tokens
    assert x.shape == labels.shape == (2, 12)
    with pytest.raises(ValueError, match=r"validation split has 10 tokens.*= 11"):
        mlm_mod.prepare_mlm_data(mlm_config(str(path), tmp_path, block_size=13), char)
    _, train_ids, val_ids = mlm_mod.prepare_mlm_data(
        mlm_config(str(path), tmp_path, block_size=12), char)
    assert (len(train_ids), len(val_ids)) == (90, 10)


# --- fine-tuning ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compared(pretrained, labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "out"
    cfg = ft_config(labelled, pretrained[0], out, compare_scratch=True, max_iters=30,
                    lr_decay_iters=30, eval_interval=10, budgets="0.25,1", seeds=2,
                    min_iters=5)
    return cfg, finetune_and_compare(cfg)


def macro_f1(cm):
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    p = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    r = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(tp), where=(p + r) > 0)
    return f1.mean()


def test_finetune_and_compare_summary(compared, labelled):
    cfg, summary = compared
    out = cfg.out_dir
    for key in ("test_accuracy", "test_f1_macro", "num_classes", "test_loss", "label_names",
                "confusion_matrix", "best_val_accuracy", "iters", "scratch_test_accuracy",
                "scratch_test_f1_macro"):
        assert key in summary, key
    task = tg.data.labelled_from_file(labelled, seed=cfg.seed)
    assert summary["num_classes"] == 3 and summary["label_names"] == task.label_names
    assert summary["iters"] == 30 and summary["init"] == cfg.init_from
    cm = np.array(summary["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == len(task.test) == summary["examples"]["test"]
    assert cm.sum(1).tolist() == task.class_counts()["test"]        # rows: the true labels
    assert np.isclose(np.trace(cm) / cm.sum(), summary["test_accuracy"])
    assert np.isclose(macro_f1(cm), summary["test_f1_macro"])
    for key in ("test_accuracy", "test_f1_macro", "scratch_test_accuracy",
                "scratch_test_f1_macro"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["test_accuracy"] >= 0.75          # the task is learnable
    on_disk = json.load(open(os.path.join(out, "summary.json")))
    assert on_disk["scratch_test_accuracy"] == summary["scratch_test_accuracy"]
    scratch = json.load(open(os.path.join(out, "scratch", "summary.json")))
    assert scratch["init"] == "scratch" and scratch["test_accuracy"] == summary[
        "scratch_test_accuracy"]
    # Fine-tuning logs have no train_loss column: the plot draws what is there (matplotlib
    # is in the test extra, so this path runs in CI).
    assert os.path.isfile(os.path.join(out, "loss.png"))
    assert os.path.isfile(os.path.join(out, "scratch", "loss.png"))


def test_learning_curve_summary(compared, labelled):
    """``curve``: one point per budget with both arms' mean and std over seeds, computed from
    the runs listed in ``curve_runs``, each of which trained on what its twin trained on."""
    cfg, summary = compared
    task = tg.data.labelled_from_file(labelled, seed=cfg.seed)
    n = len(task.train)
    curve, runs = summary["curve"], summary["curve_runs"]
    assert [p["fraction"] for p in curve] == [0.25, 1.0]
    assert [p["n_train"] for p in curve] == [round(0.25 * n), n]
    assert [p["iters"] for p in curve] == [8, 30]        # ceil(0.25 * 30); the full budget
    assert len(runs) == 2 * 2 * 2                        # budgets x seeds x arms
    for point in curve:
        assert point["seeds"] == [cfg.seed, cfg.seed + 1]
        mine = [r for r in runs if r["fraction"] == point["fraction"]]
        for arm in ("pretrained", "scratch"):
            for metric, name in (("test_f1_macro", "f1"), ("test_accuracy", "accuracy")):
                values = [r[metric] for r in mine if r["arm"] == arm]
                assert all(0.0 <= v <= 1.0 for v in values)
                assert np.isclose(point[f"{arm}_{name}_mean"], np.mean(values))
                assert np.isclose(point[f"{arm}_{name}_std"], np.std(values, ddof=1))
        gains = [p["test_f1_macro"] - s["test_f1_macro"] for p, s in zip(
            *([r for r in mine if r["arm"] == arm] for arm in ("pretrained", "scratch")))]
        assert np.isclose(point["f1_gain_mean"], np.mean(gains))
    # Both arms of a point trained on the same examples -- read from each run's own summary.
    for r in runs:
        own = json.load(open(os.path.join(r["out_dir"], "summary.json")))
        assert own["train_sha256"] == r["train_sha256"] and own["iters"] == r["iters"]
        assert own["init"] == ("scratch" if r["arm"] == "scratch" else cfg.init_from)
        assert own["config"]["learning_rate"] == (          # each arm at its own rate
            cfg.scratch_learning_rate if r["arm"] == "scratch" else cfg.learning_rate)
        twin = [t for t in runs if (t["fraction"], t["seed"]) == (r["fraction"], r["seed"])]
        assert len({t["train_sha256"] for t in twin}) == 1 and len(twin) == 2
    small = {r["train_sha256"] for r in runs if r["fraction"] == 0.25}
    assert len(small) == 2                               # each seed draws its own subset
    assert len({r["train_sha256"] for r in runs if r["fraction"] == 1}) == 1
    # The full budget at the first seed is the top-level run and its scratch twin.
    first = {r["arm"]: r for r in runs if r["fraction"] == 1 and r["seed"] == cfg.seed}
    assert first["pretrained"]["test_accuracy"] == summary["test_accuracy"]
    assert first["scratch"]["test_f1_macro"] == summary["scratch_test_f1_macro"]
    assert json.load(open(os.path.join(cfg.out_dir, "summary.json")))["curve"] == curve
    assert os.path.isfile(os.path.join(cfg.out_dir, "learning_curve.png"))


def test_learning_curve_continues_where_it_stopped(compared, tmp_path):
    """A curve cut short (here: one run's directory gone) is finished by --resume, which
    reads the finished runs back and trains the missing one to the same result."""
    cfg, summary = compared
    copy = tmp_path / "copy"
    shutil.copytree(cfg.out_dir, copy)
    runs = summary["curve_runs"]
    lost = next(r for r in runs if r["fraction"] == 0.25 and r["arm"] == "scratch")
    shutil.rmtree(lost["out_dir"].replace(cfg.out_dir, str(copy)))
    again = finetune_and_compare(dataclasses.replace(cfg, out_dir=str(copy), resume=True))
    assert [{k: v for k, v in r.items() if k != "out_dir"} for r in again["curve_runs"]] == \
        [{k: v for k, v in r.items() if k != "out_dir"} for r in runs]
    assert again["curve"] == summary["curve"]


def test_curve_table_and_point_from_runs():
    runs = [{"fraction": 0.05, "n_train": 100, "iters": 40, "seed": s, "arm": arm,
             "test_f1_macro": f1, "test_accuracy": f1 + 0.1}
            for s, (p, q) in enumerate([(0.5, 0.3), (0.6, 0.5), (0.7, 0.4)])
            for arm, f1 in (("pretrained", p), ("scratch", q))]
    point = learning_curve.summarize(runs)
    assert np.isclose(point["pretrained_f1_mean"], 0.6)
    assert np.isclose(point["pretrained_f1_std"], 0.1)                  # sample std
    assert np.isclose(point["f1_gain_mean"], 0.2)                       # 0.2, 0.1, 0.3
    assert np.isclose(point["f1_gain_std"], 0.1)
    assert np.isclose(point["scratch_accuracy_mean"], 0.5)
    table = learning_curve.format_curve([point])
    assert "0.600 ± 0.100" in table and "0.200 ± 0.100" in table and "5%" in table


@pytest.mark.parametrize("budgets", ["0.5,0.1", "0,1", "1.5", "half", ""])
def test_bad_budgets_are_refused(labelled, pretrained, tmp_path, budgets):
    with pytest.raises(ValueError, match="--budgets"):
        ft_config(labelled, pretrained[0], tmp_path / "x", budgets=budgets).validate()


def test_finetuned_model_loads_and_reproduces_the_test_accuracy(compared, labelled):
    cfg, summary = compared
    model = SequenceClassifier.from_pretrained(cfg.out_dir)
    assert model.config.body_type == "BERT" and model.config.pooling == "cls"
    assert model.config.num_labels == 3 and model.config.label_names == summary["label_names"]
    tok = tg.data.load_tokenizer(os.path.join(cfg.out_dir, "tokenizer.json"))
    task = tg.data.labelled_from_file(labelled, seed=cfg.seed)
    true, pred = [], []
    for ids, mask, labels in tg.data.classification_batches(task.test, tok, 8, BLOCK,
                                                            shuffle=False):
        pred.append(model(ids, mask)[0].numpy().argmax(-1))
        true.append(labels.numpy())
    assert np.isclose(np.mean(np.concatenate(true) == np.concatenate(pred)),
                      summary["test_accuracy"])
    scratch = SequenceClassifier.from_pretrained(os.path.join(cfg.out_dir, "scratch"))
    assert scratch.config.body == model.config.body


def test_finetune_resume_is_exact(pretrained, labelled, tmp_path):
    """10 + 10 == 20, with dropout and a body learning rate half the head's (each group's
    ratio must survive the resume)."""
    kw = dict(body_lr_scale=0.5)
    straight = tmp_path / "straight"
    finetune_and_compare(ft_config(labelled, pretrained[0], straight, **kw))
    split = tmp_path / "split"
    first = finetune_and_compare(ft_config(labelled, pretrained[0], split, max_iters=10, **kw))
    assert first["iters"] == 10
    second = finetune_and_compare(ft_config(labelled, pretrained[0], split, resume=True, **kw))
    assert second["iters"] == 20
    assert_same(weights(SequenceClassifier.from_pretrained(latest(straight))),
                weights(SequenceClassifier.from_pretrained(latest(split))))


@pytest.mark.parametrize("how", ["freeze_body", "freeze_layers=0"])
def test_freezing_leaves_the_frozen_weights_unchanged(pretrained, labelled, tmp_path, how):
    kw = dict(freeze_body=True) if how == "freeze_body" else dict(freeze_layers=0)
    out = tmp_path / "out"
    finetune_and_compare(ft_config(labelled, pretrained[0], out, **kw))
    before = {f"body.{k}": v for k, v in weights(BERT.from_pretrained(pretrained[0])).items()}
    after = weights(SequenceClassifier.from_pretrained(latest(out)))
    frozen = ([k for k in before] if how == "freeze_body" else
              ["body.transformer.wte.weight", "body.transformer.wpe.weight"])
    for k in frozen:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    if how == "freeze_layers=0":     # the blocks did train
        assert not np.array_equal(after["body.transformer.h.0.attn.c_attn.weight"],
                                  before["body.transformer.h.0.attn.c_attn.weight"])
    log = [json.loads(line) for line in open(out / "log.jsonl")]
    assert log[-1]["val_loss"] != log[0]["val_loss"]                 # the head did train


def test_finetune_a_gpt_body(pretrained, labelled_csv, tmp_path):
    """A GPT pretrained with the same (special-token) tokenizer fine-tunes with last-token
    pooling over right-padded batches; a CSV file with other column names works."""
    tok = tg.data.load_tokenizer(pretrained[0] / "tokenizer.json")
    tg.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=BLOCK, n_layer=1, n_head=2,
                        n_embd=16))
    gpt.save_pretrained(tmp_path / "gpt", tok)
    out = tmp_path / "out"
    summary = finetune_and_compare(ft_config(labelled_csv, tmp_path / "gpt", out,
                                             text_column="snippet", label_column="kind"))
    assert summary["num_classes"] == 3 and np.isfinite(summary["test_loss"])
    model = SequenceClassifier.from_pretrained(out)
    assert model.config.body_type == "GPT" and model.config.pooling == "last"


@pytest.mark.parametrize("objective, body", [("mlm", "BERT"), ("causal", "GPT")])
def test_pretrained_body_pretrains_only_when_missing_and_asked(tmp_path, monkeypatch, capsys,
                                                                objective, body):
    init = tmp_path / f"new-{objective}"
    cfg = FinetuneConfig(init_from=str(init), pretrain_iters=2, n_layer=1, n_head=2,
                         n_embd=16, max_length=16, progress=False, vocab_size=300,
                         pretrain_objective=objective)
    task = tg.data.stdlib_function_dataset(packages=("json", "email", "logging"),
                                           max_per_class=20)
    # A missing body is an error that says how to get one, never a silent long pretraining.
    with pytest.raises(FileNotFoundError, match="--pretrain_if_missing"):
        pretrained_body(cfg, task)
    assert not init.exists()
    cfg.pretrain_if_missing = True
    assert pretrained_body(cfg, task) == str(init)
    model = (BERT if body == "BERT" else tg.nn.GPT).from_pretrained(init)
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd,
            model.config.block_size) == (1, 2, 16, 16)
    assert json.load(open(init / "summary.json"))["iters"] == 2
    assert (tg.data.load_tokenizer(init / "tokenizer.json").special_tokens
            == tg.data.BERT_SPECIAL_TOKENS)

    def no_training(*args, **kwargs):
        raise AssertionError("pretrained again although a model was there")

    monkeypatch.setattr(finetune_mod, "train_mlm", no_training)
    monkeypatch.setattr(finetune_mod, "train_gpt", no_training)
    assert pretrained_body(cfg, task) == str(init)
    # A pretraining that never finished (killed: no summary.json) is finished first when
    # asked, and otherwise used with a warning -- never taken silently for a finished one.
    (init / "summary.json").unlink()
    cfg.pretrain_if_missing = False
    assert pretrained_body(cfg, task) == str(init)
    assert "never finished" in capsys.readouterr().err
    monkeypatch.undo()
    cfg.pretrain_if_missing = True
    assert pretrained_body(cfg, task) == str(init)
    assert "continuing the unfinished" in capsys.readouterr().out
    assert json.load(open(init / "summary.json"))["iters"] == 2


def test_the_default_body_directory_is_pretrained_when_empty(tmp_path, monkeypatch):
    """`finetune_classifier.py --compare_scratch` on a fresh clone: the default --init_from
    (out-pretrained) gets a body pretrained first, announced, without --pretrain_if_missing."""
    monkeypatch.chdir(tmp_path)
    cfg = FinetuneConfig(pretrain_iters=2, n_layer=1, n_head=2, n_embd=16, max_length=16,
                         progress=False, vocab_size=300)
    assert cfg.init_from == finetune_mod.DEFAULT_BODY and not cfg.pretrain_if_missing
    task = tg.data.stdlib_function_dataset(packages=("json", "email", "logging"),
                                           max_per_class=20)
    assert pretrained_body(cfg, task) == finetune_mod.DEFAULT_BODY
    assert json.load(open(tmp_path / "out-pretrained" / "summary.json"))["iters"] == 2
    tg.nn.GPT.from_pretrained(tmp_path / "out-pretrained")


def test_pretraining_corpus_leaves_out_the_held_out_files():
    task = tg.data.stdlib_function_dataset(packages=("json", "email", "logging"),
                                           max_per_class=20)
    assert task.held_out_files
    full = tg.data.load_corpus("stdlib")
    kept = tg.data.load_corpus("stdlib", exclude_files=task.held_out_files)
    headers = [f"# ---- {path} ----" for path in task.held_out_files]
    assert sum(h in full for h in headers) >= len(headers) // 2   # (non-ASCII files never are)
    assert not any(h in kept for h in headers)


def test_invalid_finetune_options(pretrained, labelled, tmp_path):
    init = pretrained[0]
    with pytest.raises(ValueError, match="--pooling.*'max'"):
        finetune_and_compare(ft_config(labelled, init, tmp_path / "a", pooling="max"))
    with pytest.raises(ValueError, match=rf"max_length=64.*block_size={BLOCK}"):
        finetune_and_compare(ft_config(labelled, init, tmp_path / "b", max_length=64))
    with pytest.raises(ValueError, match="max_length"):
        finetune_and_compare(ft_config(labelled, init, tmp_path / "c", max_length=2))
    with pytest.raises(FileNotFoundError, match="no_such_labels.csv"):
        finetune_and_compare(ft_config(str(tmp_path / "no_such_labels.csv"), init,
                                       tmp_path / "d"))
    with pytest.raises(ValueError, match="n_head"):
        ft_config(labelled, init, tmp_path / "e", n_embd=10, n_head=4).validate()


def test_a_char_tokenizer_gpt_cannot_be_finetuned(labelled, tmp_path):
    text = open(labelled).read()
    tok = tg.data.CharTokenizer.from_text(text)
    tg.manual_seed(0)
    GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=BLOCK, n_layer=1, n_head=2,
                  n_embd=16)).save_pretrained(tmp_path / "char-gpt", tok)
    with pytest.raises(ValueError, match=r"no \[PAD\]/\[CLS\]/\[SEP\]"):
        finetune_and_compare(ft_config(labelled, tmp_path / "char-gpt", tmp_path / "out"))


def test_finetune_honours_the_dtype_flag(pretrained, labelled, tmp_path):
    """--dtype float64 fine-tunes (and saves) a float64 classifier, as train_gpt and train_mlm
    do with the same flag."""
    task = tg.data.labelled_from_file(labelled, seed=7)
    out = tmp_path / "out"
    finetune_classifier(ft_config(labelled, pretrained[0], out, dtype="float64", max_iters=2),
                        task)
    model = SequenceClassifier.from_pretrained(out)
    dtypes = {k: str(v.dtype) for k, v in weights(model).items()}
    assert set(dtypes.values()) == {"float64"}, dtypes


# --- the example scripts ----------------------------------------------------------------
def script(name, *args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_example_scripts_help():
    run = script("train_mlm.py", "--help")
    assert run.returncode == 0, run.stderr
    for flag in ("--mlm_probability", "--tokenizer", "--vocab_size", "--resume", "--out_dir"):
        assert flag in run.stdout, flag
    run = script("finetune_classifier.py", "--help")
    assert run.returncode == 0, run.stderr
    for flag in ("--compare_scratch", "--init_from", "--freeze_layers", "--freeze_body",
                 "--body_lr_scale", "--pooling", "--max_length", "--text_column"):
        assert flag in run.stdout, flag


def test_example_scripts_run_end_to_end(corpus, labelled_csv, tmp_path):
    mlm = tmp_path / "mlm"
    run = script("train_mlm.py", f"--data={corpus}", "--vocab_size=300", "--n_layer=1",
                 "--n_head=2", "--n_embd=16", f"--block_size={BLOCK}", "--batch_size=4",
                 "--max_iters=4", "--lr_decay_iters=4", "--warmup_iters=1",
                 "--eval_interval=2", "--eval_iters=1", "--progress=false", f"--out_dir={mlm}")
    assert run.returncode == 0, run.stderr
    for line in ("masked-token loss", "perplexity", "masked-token accuracy",
                 "unigram baseline loss", "saved the best model"):
        assert line in run.stdout, line
    assert json.load(open(mlm / "summary.json"))["iters"] == 4
    ft = tmp_path / "ft"
    run = script("finetune_classifier.py", f"--data={labelled_csv}", "--text_column=snippet",
                 "--label_column=kind", f"--init_from={mlm}", "--compare_scratch",
                 "--budgets=0.5,1", "--seeds=1", "--min_iters=2",
                 f"--max_length={BLOCK}", "--batch_size=8", "--max_iters=4",
                 "--lr_decay_iters=4", "--warmup_iters=1", "--eval_interval=2",
                 "--progress", "false", f"--out_dir={ft}")
    assert run.returncode == 0, run.stderr
    for line in ("test accuracy", "macro-F1", "true\\pred", "pretrained: accuracy",
                 "from scratch: accuracy", "learning curve: 2 label budgets x 1 seeds",
                 "budget  50.0%", "macro-F1: pretrained", "mean ± std over 1 seed(s)"):
        assert line in run.stdout, line
    summary = json.load(open(ft / "summary.json"))
    assert {"test_accuracy", "test_f1_macro", "num_classes", "scratch_test_accuracy",
            "scratch_test_f1_macro", "curve", "curve_runs"} <= set(summary)
    assert [p["fraction"] for p in summary["curve"]] == [0.5, 1.0]


def test_example_scripts_name_a_bad_data_path(tmp_path):
    run = script("train_mlm.py", "--data=/no/such/corpus.txt", f"--out_dir={tmp_path / 'a'}",
                 "--progress=false")
    assert run.returncode != 0 and "/no/such/corpus.txt" in run.stderr
    run = script("finetune_classifier.py", "--data=/no/such/labels.csv",
                 f"--init_from={tmp_path / 'none'}", f"--out_dir={tmp_path / 'b'}",
                 "--progress=false")
    assert run.returncode != 0 and "/no/such/labels.csv" in run.stderr
    assert not (tmp_path / "none").exists()           # failed before pretraining anything


def test_finetune_script_without_a_body_says_how_to_get_one(labelled_csv, tmp_path):
    run = script("finetune_classifier.py", f"--data={labelled_csv}", "--text_column=snippet",
                 "--label_column=kind", f"--init_from={tmp_path / 'none'}",
                 f"--out_dir={tmp_path / 'ft'}", "--progress=false")
    assert run.returncode != 0 and "--pretrain_if_missing" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "none").exists()


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_finetune_a_hugging_face_body(labelled, tmp_path, family):
    """--init_from a Hugging Face BERT (with its WordPiece vocab.txt) or GPT-2 (byte-level BPE,
    no [PAD]/[CLS]/[SEP]: padded with its end-of-text id, pooled at the last token)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import ByteLevelBPETokenizer
    texts = [json.loads(line)["text"] for line in open(labelled)]
    body = tmp_path / family
    torch.manual_seed(0)
    if family == "bert":
        words = sorted({w for t in texts for w in t.lower().replace("(", " ").split()})[:200]
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words,
                 *"abcdefghijklmnopqrstuvwxyz"]
        body.mkdir()
        (body / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
        tok = transformers.BertTokenizerFast.from_pretrained(body)
        model = transformers.BertModel(transformers.BertConfig(
            vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=BLOCK))
    else:
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(texts, vocab_size=400, special_tokens=["<|endoftext|>"])
        body.mkdir()
        bpe.save_model(str(body))
        tok = transformers.GPT2TokenizerFast.from_pretrained(body)
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=len(tok), n_positions=BLOCK, n_embd=16, n_layer=1, n_head=2,
            eos_token_id=tok.eos_token_id))
    model.save_pretrained(body)
    tok.save_pretrained(body)
    cfg = ft_config(labelled, body, tmp_path / "out", max_iters=10, lr_decay_iters=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # BertModel: no MLM head
        summary = finetune_and_compare(cfg)
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["init"] == str(body)
    clf = SequenceClassifier.from_pretrained(tmp_path / "out")
    assert clf.config.body_type == ("BERT" if family == "bert" else "GPT")
    assert clf.config.pooling == ("cls" if family == "bert" else "last")
    saved = tg.data.load_tokenizer(tmp_path / "out")            # the body's, saved beside
    assert saved.encode(texts[0]) == tok.encode(texts[0])
