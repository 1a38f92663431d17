"""Hugging Face GPT-2 checkpoints (issue 14): ``GPT.from_pretrained`` on directories written
by transformers (tiny random models made here, no download), logits, loss and every gradient
in float64 against ``GPT2LMHeadModel``, padded batches, ``generate`` against transformers'
(greedy ids, eos lists, left padding, defaults), ``save_pretrained(format="hf")`` read back by
transformers, shards, the Hub's unprefixed names, and the errors for what is refused.  The
checked-in fixture in ``tests/fixtures/tiny-gpt2`` tests the loader without transformers."""
import json
from pathlib import Path

import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm import nn
from tinygradlm.checkpoint import CheckpointError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-gpt2"
V = 23


def hf_gpt2(tmp_path, seed=0, name="hf", **overrides):
    """A random float64 GPT2LMHeadModel saved by transformers into ``tmp_path / name``."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    options = dict(vocab_size=V, n_positions=16, n_embd=12, n_layer=2, n_head=3,
                   bos_token_id=0, eos_token_id=1)
    options.update(overrides)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**options)).double().eval()
    with torch.no_grad():                 # larger weights: peaked, tie-free distributions
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    path = tmp_path / name
    model.save_pretrained(path)
    return model, path


def ids(seed=0, B=2, T=7):
    return np.random.default_rng(seed).integers(2, V, (B, T))


# --- loading and numerics ---------------------------------------------------------------------
def test_logits_loss_and_every_gradient_equal_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    hf, path = hf_gpt2(tmp_path)
    model = nn.GPT.from_pretrained(path, dtype=tg.float64)
    assert not model.training and model.config.block_size == 16
    x = ids()
    shifted = np.concatenate([x[:, 1:], np.full((2, 1), -100)], axis=1)   # next-token targets
    logits, loss = model(x, targets=shifted)
    ref_logits = hf(torch.tensor(x)).logits
    np.testing.assert_allclose(logits.numpy(), ref_logits.detach().numpy(), atol=1e-12)
    # transformers' own loss is computed in float32; the same loss in float64 by hand
    ref_loss = torch.nn.functional.cross_entropy(ref_logits.reshape(-1, V),
                                                 torch.tensor(shifted).reshape(-1))
    assert abs(loss.item() - ref_loss.item()) < 1e-12
    loss.backward()
    ref_loss.backward()
    theirs = dict(hf.named_parameters())
    for name, p in model.named_parameters():
        g = theirs["transformer.wte.weight" if name == "lm_head.weight" else name].grad
        np.testing.assert_allclose(p.grad.numpy(), g.numpy(), atol=1e-11, err_msg=name)


def test_padded_batches_equal_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    hf, path = hf_gpt2(tmp_path, seed=1)
    model = nn.GPT.from_pretrained(path, dtype=tg.float64)
    x = ids(1, B=3, T=6)
    mask = np.ones_like(x)
    mask[0, :2] = 0                                  # left padding
    mask[2, -3:] = 0                                 # right padding
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    ours = model(x, attention_mask=mask, position_ids=positions)[0].numpy()
    ref = hf(torch.tensor(x), attention_mask=torch.tensor(mask),
             position_ids=torch.tensor(positions)).logits.detach().numpy()
    real = mask.astype(bool)                         # padded positions' logits mean nothing
    np.testing.assert_allclose(ours[real], ref[real], atol=1e-12)


def test_loads_in_float32_by_default_and_on_request(tmp_path):
    _, path = hf_gpt2(tmp_path)
    assert nn.GPT.from_pretrained(path).transformer.wte.weight.dtype == tg.float32
    assert nn.GPT.from_pretrained(path, dtype="float64").lm_head.weight.dtype == tg.float64


def test_hub_layout_sharded_and_prefixed_files_load_the_same(tmp_path):
    """The Hub's gpt2 files have no ``transformer.`` prefix and carry the causal-mask buffers;
    big checkpoints come in shards with an index."""
    from safetensors.numpy import load_file, save_file
    hf, path = hf_gpt2(tmp_path)
    reference = nn.GPT.from_pretrained(path, dtype=tg.float64)(ids())[0].numpy()
    arrays = load_file(path / "model.safetensors")
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "config.json").write_text((path / "config.json").read_text())
    plain = {k.removeprefix("transformer."): v for k, v in arrays.items()}
    for i in range(2):
        plain[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 16, 16), dtype=np.float32))
    plain["lm_head.weight"] = arrays["transformer.wte.weight"]         # tied, stored twice
    save_file(plain, hub / "model.safetensors", metadata={"format": "pt"})
    out = nn.GPT.from_pretrained(hub, dtype=tg.float64)(ids())[0].numpy()
    np.testing.assert_array_equal(out, reference)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="10KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    out = nn.GPT.from_pretrained(tmp_path / "sharded", dtype=tg.float64)(ids())[0].numpy()
    np.testing.assert_array_equal(out, reference)


def test_save_pretrained_hf_is_read_back_by_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tg.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=8,
                                eos_token_id=[1, 2])).double()
    model.save_pretrained(tmp_path / "out", format="hf")
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").double().eval()
    x = ids()
    np.testing.assert_allclose(back(torch.tensor(x)).logits.detach().numpy(),
                               model(x)[0].numpy(), atol=1e-12)
    assert back.config.eos_token_id == [1, 2]
    again = nn.GPT.from_pretrained(tmp_path / "out", dtype=tg.float64)
    np.testing.assert_array_equal(again(x)[0].numpy(), model(x)[0].numpy())


# --- generate against transformers' ---------------------------------------------------------
@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_ids_equal_transformers(tmp_path, use_cache):
    torch = pytest.importorskip("torch")
    hf, path = hf_gpt2(tmp_path, seed=2, eos_token_id=None)
    model = nn.GPT.from_pretrained(path, dtype=tg.float64)
    x = ids(2, B=2, T=4)
    ours = model.generate(x, max_new_tokens=9, use_cache=use_cache).numpy()
    ref = hf.generate(torch.tensor(x), max_new_tokens=9, do_sample=False,
                      attention_mask=torch.ones(x.shape, dtype=torch.long)).numpy()
    np.testing.assert_array_equal(ours, ref)
    # transformers' default length: 20 new tokens, but no further than the context (16)
    default = hf.generate(torch.tensor(x), attention_mask=torch.ones(x.shape, dtype=torch.long))
    assert model.generate(x).shape == tuple(default.shape) == (2, 16)


def test_eos_list_from_the_config_stops_each_row_at_any_of_them(tmp_path):
    torch = pytest.importorskip("torch")
    hf, path = hf_gpt2(tmp_path, seed=3, eos_token_id=None)
    model = nn.GPT.from_pretrained(path, dtype=tg.float64)
    x = ids(3, B=3, T=3)
    free = model.generate(x, max_new_tokens=10).numpy()[:, 3:]
    eos = [int(free[0, 2]), int(free[1, 4])]          # tokens each row will emit
    model.config.eos_token_id = eos
    hf.generation_config.eos_token_id = eos
    hf.generation_config.pad_token_id = 0
    ours = model.generate(x, max_new_tokens=10, pad_token_id=0).numpy()
    ref = hf.generate(torch.tensor(x), max_new_tokens=10,
                      attention_mask=torch.ones(x.shape, dtype=torch.long)).numpy()
    np.testing.assert_array_equal(ours, ref)
    for row in ours[:, 3:]:
        hits = np.flatnonzero(np.isin(row, eos))
        if hits.size:
            assert (row[hits[0] + 1:] == 0).all()


def test_left_padded_batch_equals_each_prompt_alone_and_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    hf, path = hf_gpt2(tmp_path, seed=4, eos_token_id=None, pad_token_id=0)
    model = nn.GPT.from_pretrained(path, dtype=tg.float64)
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    width = max(map(len, prompts))
    batch = np.array([[0] * (width - len(p)) + p for p in prompts])
    mask = (np.arange(width)[None] >= width - np.array([len(p) for p in prompts])[:, None])
    for use_cache in (True, False):
        out = model.generate(batch, attention_mask=mask.astype(int), max_new_tokens=8,
                             use_cache=use_cache).numpy()
        for row, p in zip(out, prompts):
            alone = model.generate([p], max_new_tokens=8).numpy()[0]
            np.testing.assert_array_equal(row[width - len(p):], alone)
    ref = hf.generate(torch.tensor(batch), attention_mask=torch.tensor(mask.astype(int)),
                      max_new_tokens=8, do_sample=False).numpy()
    np.testing.assert_array_equal(out, ref)
    # Without a mask, the pad id marks the padding (transformers' rule).
    np.testing.assert_array_equal(model.generate(batch, max_new_tokens=8).numpy(), ref)


def test_generation_config_json_gives_the_defaults(tmp_path):
    _, path = hf_gpt2(tmp_path, seed=5, eos_token_id=None)
    (path / "generation_config.json").write_text(json.dumps(
        {"max_length": 9, "do_sample": True, "top_k": 1, "_from_model_config": False}))
    model = nn.GPT.from_pretrained(path, dtype=tg.float64)
    x = ids(5, B=1, T=4)
    out = model.generate(x).numpy()                  # sampling with top_k=1 is greedy
    assert out.shape == (1, 9)
    np.testing.assert_array_equal(out, model.generate(x, max_length=9, do_sample=False).numpy())


# --- what is refused ---------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, named", [
    ("activation_function", "relu", "activation_function='relu'"),
    ("scale_attn_by_inverse_layer_idx", True, "scale_attn_by_inverse_layer_idx=True"),
    ("reorder_and_upcast_attn", True, "reorder_and_upcast_attn=True"),
    ("n_inner", 20, "n_inner=20"),
    ("tie_word_embeddings", False, "tie_word_embeddings=False"),
])
def test_unsupported_options_are_refused_by_name(tmp_path, option, value, named):
    _, path = hf_gpt2(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config[option] = value
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=named.replace("(", r"\(")):
        nn.GPT.from_pretrained(path)


def test_bad_checkpoints_get_errors_naming_the_file(tmp_path):
    _, path = hf_gpt2(tmp_path)
    weights = path / "model.safetensors"
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((path / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match=r"pickle.*safe_serialization=True"):
        nn.GPT.from_pretrained(pickled)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "n_embd": 24}))
    with pytest.raises(CheckpointError, match=r"model.safetensors does not fit the model"):
        nn.GPT.from_pretrained(path)
    (path / "config.json").write_text(json.dumps(config))
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"model.safetensors is truncated or corrupt"):
        nn.GPT.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(CheckpointError, match=r"'bert' checkpoint; GPT.from_pretrained reads "
                                              r"'gpt2'"):
        nn.GPT.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(CheckpointError, match=r"'llama'"):
        nn.GPT.from_pretrained(path)


# --- the checked-in fixture: the loader without transformers --------------------------------
def test_checked_in_fixture_gives_its_expected_logits():
    expected = json.loads((FIXTURE / "expected.json").read_text())
    model = nn.GPT.from_pretrained(FIXTURE, dtype=tg.float64)
    logits = model(np.array(expected["input_ids"]))[0].numpy()
    np.testing.assert_allclose(logits, np.array(expected["logits"]), atol=1e-5)
    greedy = model.generate(np.array(expected["input_ids"]), max_new_tokens=5).numpy()
    assert greedy.tolist() == expected["greedy_ids"]


def test_a_hub_name_loads_from_the_local_cache(tmp_path, monkeypatch):
    """``GPT.from_pretrained("org/name")`` finds the files in the Hugging Face cache (laid out
    here as huggingface_hub lays it out), with no network; not cached and offline, the error
    names the command that downloads it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, path = hf_gpt2(tmp_path)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--someone--tiny-gpt2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in path.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    model = nn.GPT.from_pretrained("someone/tiny-gpt2", cache_dir=tmp_path / "cache",
                                   dtype=tg.float64)
    reference = nn.GPT.from_pretrained(path, dtype=tg.float64)
    np.testing.assert_array_equal(model(ids())[0].numpy(), reference(ids())[0].numpy())
    with pytest.raises(FileNotFoundError, match="huggingface-cli download someone/other"):
        nn.GPT.from_pretrained("someone/other", cache_dir=tmp_path / "cache")


def test_bfloat16_weights_load_exactly_as_float32(tmp_path):
    """NumPy has no bfloat16: such a file is read by hand, each value widened to float32
    exactly (bfloat16 is float32's upper half)."""
    torch = pytest.importorskip("torch")
    hf, _ = hf_gpt2(tmp_path)
    half = hf.to(torch.bfloat16)
    half.save_pretrained(tmp_path / "bf16")
    model = nn.GPT.from_pretrained(tmp_path / "bf16")
    assert model.lm_head.weight.dtype == tg.float32
    widened = half.float()
    for name, p in model.named_parameters():
        theirs = dict(widened.named_parameters())[
            "transformer.wte.weight" if name == "lm_head.weight" else name]
        np.testing.assert_array_equal(p.numpy(), theirs.detach().numpy(), err_msg=name)
