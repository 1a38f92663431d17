"""Checkpoints: save_pretrained / load_pretrained round trips (hypothesis-drawn sizes and
dtypes), tied weights stored once, files read without pickle, every error a user can hit
(missing files, truncated or garbage safetensors, edited configs, mismatched weights), atomic
writes under simulated crashes, and exact resume of training (AdamW with groups and a schedule,
SGD with momentum) through save_checkpoint / load_checkpoint, with the sha256 check that
catches half-written saves.

The models here are defined in this file (a few layers and one tied weight) so that these
tests do not depend on the GPT code."""
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from safetensors.numpy import load_file, save_file

import tinygradlm as tg
import tinygradlm.nn.functional as F
from tinygradlm import backend, nn, optim
from tinygradlm.checkpoint import (CheckpointError, load_checkpoint, load_pretrained,
                                   save_checkpoint, save_pretrained, tokenizer_path, write_json)


# Every test here runs once per device (cpu, and cuda when usable): see conftest.py.
pytestmark = pytest.mark.usefixtures("device")


# --- a tiny model with every kind of state -----------------------------------------------------
@dataclass
class TinyConfig:
    vocab_size: int = 7
    n_embd: int = 4
    hidden: tuple[int, ...] = (6,)      # a tuple field: JSON stores a list, loading restores it
    block_size: int = 5
    width: int = field(init=False, default=0)   # derived, not passed to __init__

    def __post_init__(self):
        self.width = sum(self.hidden)


class TiedHead(nn.Module):
    """logits = x @ W^T with the embedding matrix W: the same Parameter under a second name."""

    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def forward(self, x):
        return x @ self.weight.T


class TinyModel(nn.Module):
    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        C, V, H = config.n_embd, config.vocab_size, config.hidden[0]
        self.wte = nn.Embedding(V, C)
        self.fc1 = nn.Linear(C, H)
        self.fc2 = nn.Linear(H, C)
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = TiedHead(self.wte.weight)
        # A buffer holding -inf (a causal mask): buffers may be non-finite, parameters not.
        T = config.block_size
        self.register_buffer("mask", tg.Tensor(np.triu(np.full((T, T), -np.inf, np.float32), 1)))

    def forward(self, idx):
        x = self.wte(idx)                               # (B, T, C)
        x = x + self.fc2(self.fc1(x).tanh())            # (B, T, C)
        return self.lm_head(self.ln_f(x))               # (B, T, V)


class OtherModel(TinyModel):
    pass


class FakeTokenizer:
    """Stands in for CharTokenizer / BPETokenizer: anything with ``save(path)``."""

    def __init__(self, chars="abc", fail=False):
        self.chars, self.fail = chars, fail

    def save(self, path):
        with open(path, "w") as f:
            f.write('{"chars": ')
            if self.fail:
                raise OSError("disk full (simulated)")
            f.write(json.dumps(self.chars) + "}")


def make_model(seed=0, dtype=None, **config):
    tg.manual_seed(seed)
    model = TinyModel(TinyConfig(**config))
    return model.to(dtype) if dtype is not None else model


def state_arrays(model):
    return {k: backend.to_numpy(t.data).copy() for k, t in model.state_dict().items()}


def assert_same_state(a, b):
    sa, sb = state_arrays(a), state_arrays(b)
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def listing(directory):
    return sorted(os.listdir(directory))


def snapshot(directory):
    return {name: (Path(directory) / name).read_bytes() for name in listing(directory)}


# --- save_pretrained / load_pretrained ----------------------------------------------------------
@settings(max_examples=15)
@given(vocab=st.integers(1, 9), n_embd=st.integers(1, 6), hidden=st.integers(1, 5),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_pretrained_round_trip(vocab, n_embd, hidden, dtype, seed):
    model = make_model(seed, dtype, vocab_size=vocab, n_embd=n_embd, hidden=(hidden,))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "nested" / "model"          # created, parents included
        save_pretrained(model, directory)
        assert listing(directory) == ["config.json", "model.safetensors"]
        saved = json.loads((directory / "config.json").read_text())
        assert saved == {"model_type": "TinyModel", "vocab_size": vocab, "n_embd": n_embd,
                         "hidden": [hidden], "block_size": 5, "width": hidden}
        loaded = load_pretrained(TinyModel, TinyConfig, directory)
    assert loaded.config == model.config                    # hidden is a tuple again
    assert_same_state(loaded, model)
    assert not loaded.training                               # eval mode, as from_pretrained


def test_pretrained_round_trip_on_device(tmp_path, device):
    model = make_model(1).to(device)
    save_pretrained(model, tmp_path)
    loaded = load_pretrained(TinyModel, TinyConfig, tmp_path, device=device)
    assert all(t.device == device for t in loaded.state_dict().values())
    assert_same_state(loaded, model)


def test_dtype_is_kept_unless_asked(tmp_path):
    save_pretrained(make_model(1, "float64"), tmp_path)
    assert load_pretrained(TinyModel, TinyConfig, tmp_path).wte.weight.dtype == np.float64
    cast = load_pretrained(TinyModel, TinyConfig, tmp_path, dtype="float32")
    assert {t.dtype for t in cast.state_dict().values()} == {np.dtype("float32")}


def test_files_get_normal_permissions_not_private_ones(tmp_path):
    save_pretrained(make_model(), tmp_path)
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


def test_transposed_arrays_are_saved_in_their_logical_order(tmp_path):
    """safetensors copies raw memory: a non-contiguous (transposed) array must be made
    C-ordered first, or its values come back scrambled."""
    model = make_model(1)
    weight = model.fc1.weight
    transposed = np.asfortranarray(backend.to_numpy(weight.data))
    weight.data = backend.to_device(transposed, weight.device)
    save_pretrained(model, tmp_path)
    assert_same_state(load_pretrained(TinyModel, TinyConfig, tmp_path), model)


def test_tied_weights_stored_once_and_tied_after_load(tmp_path):
    model = make_model(2)
    save_pretrained(model, tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    assert "wte.weight" in stored and "lm_head.weight" not in stored      # as Hugging Face
    loaded = load_pretrained(TinyModel, TinyConfig, tmp_path)
    assert loaded.lm_head.weight is loaded.wte.weight
    assert "lm_head.weight" in loaded.state_dict()
    np.testing.assert_array_equal(loaded.lm_head.weight.numpy(), model.wte.weight.numpy())


def test_weights_stored_under_every_name_also_load(tmp_path):
    """A file that stores a tied weight under both names (a plain dump of a state_dict)."""
    model = make_model(3)
    save_pretrained(model, tmp_path)
    save_file(state_arrays(model), tmp_path / "model.safetensors")
    assert_same_state(load_pretrained(TinyModel, TinyConfig, tmp_path), model)


def test_tokenizer_saved_and_found(tmp_path):
    save_pretrained(make_model(), tmp_path / "a")
    assert tokenizer_path(tmp_path / "a") is None
    save_pretrained(make_model(), tmp_path / "b", tokenizer=FakeTokenizer("xyz"))
    path = tokenizer_path(tmp_path / "b")
    assert path == tmp_path / "b" / "tokenizer.json"
    assert json.loads(path.read_text()) == {"chars": "xyz"}
    assert listing(tmp_path / "b") == ["config.json", "model.safetensors", "tokenizer.json"]


def test_files_are_safetensors_and_json_read_without_pickle(tmp_path, monkeypatch):
    model = make_model(4)
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    train(model, opt, batches(1))
    save_checkpoint(tmp_path, model, opt, {"iter_num": 1}, tokenizer=FakeTokenizer())
    assert listing(tmp_path) == ["config.json", "model.safetensors", "optimizer.safetensors",
                                 "tokenizer.json", "trainer.json"]
    for name in ("model.safetensors", "optimizer.safetensors"):
        # safetensors: 8 bytes of header length, a JSON header (dtype, shape, byte range of
        # each array), then the raw bytes, nothing else.
        data = (tmp_path / name).read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
        assert 8 + n + end == len(data)
    for name in ("config.json", "tokenizer.json", "trainer.json"):
        json.loads((tmp_path / name).read_text())

    def no_pickle(*args, **kwargs):
        raise AssertionError("a checkpoint was read with pickle")
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_pickle)
    fresh = make_model(5)
    fresh_opt = optim.AdamW(fresh.parameters(), lr=1e-2)
    assert load_checkpoint(tmp_path, fresh, fresh_opt) == {"iter_num": 1}
    assert_same_state(fresh, model)
    assert_same_state(load_pretrained(TinyModel, TinyConfig, tmp_path), model)


def test_import_tinygradlm_does_not_import_safetensors():
    code = "import sys, tinygradlm; assert 'safetensors' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- errors a user can hit ---------------------------------------------------------------------
def test_missing_directory_and_files_name_the_path(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        load_pretrained(TinyModel, TinyConfig, missing)
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        load_checkpoint(missing, make_model())

    save_pretrained(make_model(), tmp_path)
    with pytest.raises(FileNotFoundError, match="trainer.json") as info:
        load_checkpoint(tmp_path, make_model())
    assert str(tmp_path) in str(info.value)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_pretrained(TinyModel, TinyConfig, tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json") as info:
        load_pretrained(TinyModel, TinyConfig, tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.fixture
def saved(tmp_path):
    save_pretrained(make_model(5), tmp_path)
    return tmp_path


def edit_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_invalid_json_config(saved):
    (saved / "config.json").write_text('{"model_type": "TinyModel", ')
    with pytest.raises(CheckpointError, match="config.json"):
        load_pretrained(TinyModel, TinyConfig, saved)


def test_wrong_model_class(saved):
    with pytest.raises(CheckpointError, match="'TinyModel'.*'OtherModel'"):
        load_pretrained(OtherModel, TinyConfig, saved)


def test_unknown_config_keys_are_listed(saved):
    edit_config(saved, n_layers=3, flash=True)
    with pytest.raises(CheckpointError, match="flash, n_layers"):
        load_pretrained(TinyModel, TinyConfig, saved)


def test_config_that_does_not_match_the_weights(saved):
    edit_config(saved, n_embd=6)
    with pytest.raises(CheckpointError) as info:
        load_pretrained(TinyModel, TinyConfig, saved)
    message = str(info.value)
    assert "model.safetensors" in message
    assert "size mismatch for wte.weight: the checkpoint has (7, 4), the model has (7, 6)" \
        in message


@settings(max_examples=20)
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_weights_are_reported(fraction):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        save_pretrained(make_model(6), directory)
        data = (directory / "model.safetensors").read_bytes()
        (directory / "model.safetensors").write_bytes(data[:int(len(data) * fraction)])
        with pytest.raises(CheckpointError, match="model.safetensors is truncated or corrupt"):
            load_pretrained(TinyModel, TinyConfig, directory)


def test_half_written_and_garbage_weights(saved):
    path = saved / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated or corrupt"):
        load_pretrained(TinyModel, TinyConfig, saved)
    path.write_bytes(b"\x00garbage, not a safetensors file\xff" * 20)
    with pytest.raises(CheckpointError, match="model.safetensors is truncated or corrupt"):
        load_pretrained(TinyModel, TinyConfig, saved)
    path.write_bytes(data[:8] + b"{not json" + data[17:])              # a damaged header
    with pytest.raises(CheckpointError, match="model.safetensors is truncated or corrupt"):
        load_pretrained(TinyModel, TinyConfig, saved)


def rewrite_weights(directory, **changes):
    arrays = load_file(directory / "model.safetensors")
    arrays.update(changes)
    save_file(arrays, directory / "model.safetensors")


def test_missing_and_unexpected_weights_are_named(saved):
    arrays = load_file(saved / "model.safetensors")
    del arrays["fc2.bias"]
    arrays["fc3.weight"] = np.zeros(2, np.float32)
    save_file(arrays, saved / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model.safetensors does not fit.*missing keys: "
                                              r"fc2.bias.*unexpected keys: fc3.weight"):
        load_pretrained(TinyModel, TinyConfig, saved)


def test_integer_array_for_a_float_weight(saved):
    rewrite_weights(saved, **{"fc1.bias": np.arange(6)})
    with pytest.raises(CheckpointError, match="'fc1.bias' is int64 in the file but float32"):
        load_pretrained(TinyModel, TinyConfig, saved)


# --- atomic writes ----------------------------------------------------------------------------
def failing_replace(monkeypatch, fail_at):
    """os.replace that raises on its ``fail_at``-th call (0-based), as a crash would."""
    real, calls = os.replace, [0]

    def replace(src, dst):
        calls[0] += 1
        if calls[0] - 1 == fail_at:
            raise OSError("disk full (simulated)")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", replace)


def test_failed_pretrained_save_keeps_previous_files(saved, monkeypatch):
    before = snapshot(saved)
    failing_replace(monkeypatch, fail_at=0)             # the rename of model.safetensors
    with pytest.raises(OSError, match="simulated"):
        save_pretrained(make_model(8), saved)
    assert snapshot(saved) == before                        # same files, same bytes, no temp
    monkeypatch.undo()
    assert_same_state(load_pretrained(TinyModel, TinyConfig, saved), make_model(5))


def test_failure_while_writing_a_file_leaves_no_temp_file(tmp_path):
    save_pretrained(make_model(), tmp_path, tokenizer=FakeTokenizer("old"))
    before = snapshot(tmp_path)
    with pytest.raises(OSError, match="simulated"):
        save_pretrained(make_model(9), tmp_path, tokenizer=FakeTokenizer("new", fail=True))
    after = snapshot(tmp_path)
    assert list(after) == list(before)                      # no temp file left behind
    assert after["tokenizer.json"] == before["tokenizer.json"]


def test_unstorable_meta_writes_nothing(tmp_path):
    model = make_model()
    with pytest.raises(TypeError, match="ndarray"):
        save_checkpoint(tmp_path / "ckpt", model, None, {"oops": np.zeros(3)})
    assert not (tmp_path / "ckpt").exists()


# --- training checkpoints: exact resume ---------------------------------------------------------
def batches(n, seed=123, V=7, B=2, T=5):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))) for _ in range(n)]


def train(model, opt, data, sched=None):
    model.train()
    for x, y in data:
        loss = F.cross_entropy(model(tg.Tensor(x)).movedim(-1, 1), tg.Tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


def adamw(model):
    opt = optim.AdamW(optim.weight_decay_groups(model.named_parameters(), 0.1), lr=3e-2)
    return opt, optim.WarmupCosineLR(opt, warmup_iters=2, lr_decay_iters=6, min_lr=1e-3)


def sgd(model):
    return optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                     weight_decay=1e-2), None


@pytest.mark.parametrize("make_opt", [adamw, sgd], ids=["adamw", "sgd_momentum"])
def test_resume_is_exact(tmp_path, make_opt):
    data = batches(6)
    straight = make_model(10)                           # six steps without stopping
    opt, sched = make_opt(straight)
    train(straight, opt, data, sched)

    first = make_model(10)                              # three steps, save, three more
    opt, sched = make_opt(first)
    train(first, opt, data[:3], sched)
    meta = {"iter_num": 3, "best_val_loss": float("inf"), "rng": tg.get_rng_state(),
            "scheduler": sched.state_dict() if sched else None}
    save_checkpoint(tmp_path, first, opt, meta, tokenizer=FakeTokenizer())
    train(first, opt, data[3:], sched)
    assert_same_state(first, straight)                  # saving changed nothing

    resumed = make_model(99)                            # other weights until loaded
    opt, sched = make_opt(resumed)
    loaded_meta = load_checkpoint(tmp_path, resumed, opt)
    assert loaded_meta == meta                          # big RNG ints and inf included
    if sched is not None:
        sched.load_state_dict(loaded_meta["scheduler"])
        assert type(opt.state[id(resumed.wte.weight)]["step"]) is int
        assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    train(resumed, opt, data[3:], sched)
    assert_same_state(resumed, straight)                # bit for bit
    assert resumed.lm_head.weight is resumed.wte.weight


def test_checkpoint_directory_also_loads_as_pretrained(tmp_path):
    model = make_model(11)
    opt, _ = sgd(model)
    save_checkpoint(tmp_path, model, opt, {})
    assert_same_state(load_pretrained(TinyModel, TinyConfig, tmp_path), model)


@settings(max_examples=25)
@given(payload=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                               max_size=3),
    max_leaves=8))
def test_meta_round_trips_exactly(payload):
    model = make_model(12)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(tmp, model, None, {"payload": payload})
        assert load_checkpoint(tmp, make_model(13)) == {"payload": payload}


def test_non_finite_numbers_are_valid_json_null_with_a_note_and_come_back(tmp_path):
    """JSON has no NaN or Infinity (most parsers refuse Python's spelling): they are written
    as null with a note saying what was there, and a checkpoint's meta reads back the same."""
    meta = {"best": float("inf"), "last": {"val_loss": float("nan"), "iter": 3}, "ok": 1.5}
    save_checkpoint(tmp_path, make_model(12), None, meta)
    text = (tmp_path / "trainer.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    stored = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))["meta"]
    assert stored["best"] is None and stored["non_finite"] == {"best": "inf"}
    assert stored["last"] == {"val_loss": None, "iter": 3, "non_finite": {"val_loss": "nan"}}
    back = load_checkpoint(tmp_path, make_model(13))
    assert back["best"] == float("inf") and np.isnan(back["last"]["val_loss"])
    assert back["last"]["iter"] == 3 and back["ok"] == 1.5 and "non_finite" not in back


def test_rng_state_survives_json():
    """The one RNG state a checkpoint keeps: tinygradlm's CPU generator (the GPU's is reseeded
    from it by the training loop), stored in meta as JSON."""
    tg.manual_seed(3)
    text = json.dumps(tg.get_rng_state())
    first = tg.randn(4, device="cpu").numpy()
    tg.set_rng_state(json.loads(text))
    np.testing.assert_array_equal(tg.randn(4, device="cpu").numpy(), first)


# --- consistency of training checkpoints ------------------------------------------------------
@lru_cache(maxsize=None)
def checkpoint_files():
    """The files of one small training checkpoint (built once, copied by each example)."""
    model = make_model(14)
    opt, sched = adamw(model)
    train(model, opt, batches(2), sched)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(tmp, model, opt, {"iter_num": 2}, tokenizer=FakeTokenizer())
        return snapshot(tmp)


def load_files(files, directory):
    for name, data in files.items():
        (Path(directory) / name).write_bytes(data)
    model = make_model(15)
    return load_checkpoint(directory, model, adamw(model)[0])


@settings(max_examples=30)
@given(name=st.sampled_from(["config.json", "model.safetensors", "optimizer.safetensors",
                             "tokenizer.json"]),
       where=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255))
def test_any_changed_byte_is_detected(name, where, flip):
    files = dict(checkpoint_files())
    data = bytearray(files[name])
    data[int(where * len(data))] ^= flip
    files[name] = bytes(data)
    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(CheckpointError, match=f"inconsistent.*{name} does not match"):
            load_files(files, tmp)


def test_files_from_another_save_are_detected(tmp_path):
    """Same shapes, other values: only the checksum can tell."""
    with tempfile.TemporaryDirectory() as other:
        model = make_model(16)
        save_checkpoint(other, model, adamw(model)[0], {})
        other_weights = (Path(other) / "model.safetensors").read_bytes()
    files = dict(checkpoint_files(), **{"model.safetensors": other_weights})
    with pytest.raises(CheckpointError, match="partially written"):
        load_files(files, tmp_path)
    files = dict(checkpoint_files())
    del files["optimizer.safetensors"]
    (tmp_path / "fresh").mkdir()
    with pytest.raises(CheckpointError, match="optimizer.safetensors, which is missing"):
        load_files(files, tmp_path / "fresh")


@pytest.mark.parametrize("fail_at", range(5))
def test_crash_mid_checkpoint_never_loads_a_mix(tmp_path, monkeypatch, fail_at):
    """A crash at each of the five renames (model.safetensors, tokenizer.json, config.json,
    optimizer.safetensors, trainer.json): the old checkpoint loads unchanged, or the load
    refuses."""
    old = make_model(17)
    opt, _ = adamw(old)
    train(old, opt, batches(1))
    save_checkpoint(tmp_path, old, opt, {"iter_num": 1}, tokenizer=FakeTokenizer())

    new = make_model(17)
    opt_new, _ = adamw(new)
    train(new, opt_new, batches(2))
    failing_replace(monkeypatch, fail_at)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path, new, opt_new, {"iter_num": 2}, tokenizer=FakeTokenizer())
    monkeypatch.undo()
    assert listing(tmp_path) == ["config.json", "model.safetensors", "optimizer.safetensors",
                                 "tokenizer.json", "trainer.json"]     # no temp files
    fresh = make_model(18)
    if fail_at == 0:                                                   # nothing was replaced
        assert load_checkpoint(tmp_path, fresh, adamw(fresh)[0]) == {"iter_num": 1}
        assert_same_state(fresh, old)
    else:
        with pytest.raises(CheckpointError, match="inconsistent"):
            load_checkpoint(tmp_path, fresh, adamw(fresh)[0])
        assert_same_state(fresh, make_model(18))                       # model left untouched


def test_optimizer_mismatches(tmp_path):
    model = make_model(19)
    opt, _ = adamw(model)
    train(model, opt, batches(1))
    save_checkpoint(tmp_path, model, opt, {})
    fresh = make_model(20)
    with pytest.raises(CheckpointError, match="'AdamW' optimizer.*'SGD'"):
        load_checkpoint(tmp_path, fresh, optim.SGD(fresh.parameters()))
    reordered = optim.AdamW(list(fresh.parameters())[::-1])
    with pytest.raises(CheckpointError, match=r"state.0.exp_avg has shape \(7, 4\), but "
                                              r"parameter 0 of this optimizer has shape \(4,\)"):
        load_checkpoint(tmp_path, fresh, reordered)
    save_checkpoint(tmp_path / "no_opt", model, None, {})
    with pytest.raises(CheckpointError, match="without an optimizer"):
        load_checkpoint(tmp_path / "no_opt", fresh, optim.AdamW(fresh.parameters()))
    with pytest.raises(CheckpointError, match="'TinyModel' model.*'OtherModel'"):
        load_checkpoint(tmp_path, OtherModel(TinyConfig()))


def test_optimizer_before_its_first_step(tmp_path):
    model = make_model(22)
    opt, _ = adamw(model)
    save_checkpoint(tmp_path, model, opt, {"iter_num": 0})     # no state yet: no arrays
    fresh = make_model(23)
    opt_fresh, _ = adamw(fresh)
    assert load_checkpoint(tmp_path, fresh, opt_fresh) == {"iter_num": 0}
    assert opt_fresh.state == {}
    assert_same_state(fresh, model)


def test_malformed_trainer_json(tmp_path):
    model = make_model(21)
    opt, _ = sgd(model)
    train(model, opt, batches(1))
    save_checkpoint(tmp_path, model, opt, {})
    trainer = json.loads((tmp_path / "trainer.json").read_text())
    del trainer["optimizer"]["type"]
    (tmp_path / "trainer.json").write_text(json.dumps(trainer))
    with pytest.raises(CheckpointError, match="optimizer part of .*trainer.json is malformed"):
        load_checkpoint(tmp_path, model, opt)
    (tmp_path / "trainer.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a tinygradlm training checkpoint"):
        load_checkpoint(tmp_path, model, opt)
    (tmp_path / "trainer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="trainer.json'? is not valid JSON"):
        load_checkpoint(tmp_path, model, opt)


def test_write_json(tmp_path):
    path = write_json(tmp_path / "run" / "summary.json",
                      {"loss": np.float32(0.5), "n": np.int64(3), "best": float("inf")})
    assert json.loads(path.read_text()) == {"loss": 0.5, "n": 3, "best": None,
                                            "non_finite": {"best": "inf"}}
    with pytest.raises(TypeError, match="set"):
        write_json(path, {"oops": {1, 2}})
    assert json.loads(path.read_text())["n"] == 3                  # the old file is kept
    assert listing(path.parent) == ["summary.json"]
