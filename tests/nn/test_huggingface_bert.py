"""Hugging Face BERT checkpoints (issue 14): ``BERT.from_pretrained`` on BertModel,
BertForMaskedLM and BertForSequenceClassification directories written by transformers (tiny
random models made here, no download) -- BERT's own layout (post-LayerNorm, token types, exact
GELU, eps 1e-12, pooler) -- logits, hidden states, pooled output, loss and every gradient in
float64, padded batches, and ``save_pretrained(format="hf")`` read back by transformers; and
``SequenceClassifier.from_pretrained`` on transformers' BERT and GPT-2 sequence classifiers."""
import json

import numpy as np
import pytest

import tinygradlm as tg
from tinygradlm import nn
from tinygradlm.checkpoint import CheckpointError

V = 31


def hf_bert(tmp_path, kind="BertForMaskedLM", seed=0, **overrides):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    options = dict(vocab_size=V, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                   intermediate_size=48, max_position_embeddings=16, type_vocab_size=2)
    options.update(overrides)
    model = getattr(transformers, kind)(transformers.BertConfig(**options)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    path = tmp_path / kind
    model.save_pretrained(path)
    return model, path


def batch(seed=0, B=2, T=7):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V, (B, T))
    types = rng.integers(0, 2, (B, T))
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, -3:] = 0                                          # right padding
    return ids, types, mask


def test_masked_lm_logits_loss_and_every_gradient_equal_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    hf, path = hf_bert(tmp_path)
    model = nn.BERT.from_pretrained(path, dtype=tg.float64)
    c = model.config
    assert (c.norm_first, c.type_vocab_size, c.gelu_approximate, c.layer_norm_eps) == (
        False, 2, "none", 1e-12)
    ids, types, mask = batch()
    real = mask.astype(bool)
    logits, _ = model(ids, attention_mask=mask, token_type_ids=types)
    ref = hf(torch.tensor(ids), attention_mask=torch.tensor(mask),
             token_type_ids=torch.tensor(types)).logits
    np.testing.assert_allclose(logits.numpy()[real], ref.detach().numpy()[real], atol=1e-12)
    labels = np.full_like(ids, -100)
    labels[0, 2], labels[1, 1], labels[0, 5] = 4, 9, 17
    _, loss = model(ids, attention_mask=mask, labels=labels, token_type_ids=types)
    ref_loss = torch.nn.functional.cross_entropy(ref.reshape(-1, V),
                                                 torch.tensor(labels).reshape(-1))
    assert abs(loss.item() - ref_loss.item()) < 1e-12
    loss.backward()
    ref_loss.backward()
    theirs = {name.removeprefix("bert."): p.grad for name, p in hf.named_parameters()}
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), their_grad(name, theirs, c.n_layer),
                                   atol=1e-11, err_msg=name)


def their_grad(name, theirs, n_layer):
    """transformers' gradient of this project's parameter ``name``: renamed, transposed back
    for Linear weights, and query/key/value side by side for ``c_attn``."""
    import torch
    from tinygradlm.huggingface import _bert_name_pairs
    if name.endswith("attn.c_attn.weight") or name.endswith("attn.c_attn.bias"):
        layer, kind = name.split(".")[2], name.rsplit(".", 1)[1]
        parts = [theirs[f"encoder.layer.{layer}.attention.self.{q}.{kind}"]
                 for q in ("query", "key", "value")]
        return torch.cat([g.T for g in parts], dim=1) if kind == "weight" else torch.cat(parts)
    for hf_name, ours in _bert_name_pairs(n_layer):
        if ours.removeprefix("W ") == name:
            g = theirs[hf_name]
            return g.T if ours.startswith("W ") else g
    raise KeyError(name)


def test_bert_model_layout_hidden_states_and_pooler(tmp_path):
    torch = pytest.importorskip("torch")
    hf, path = hf_bert(tmp_path, "BertModel", seed=1)
    with pytest.warns(UserWarning, match="no MLM head.*newly initialised"):
        model = nn.BERT.from_pretrained(path, dtype=tg.float64)
    ids, types, mask = batch(1)
    real = mask.astype(bool)
    h = model.hidden_states(ids, mask, types)
    out = hf(torch.tensor(ids), attention_mask=torch.tensor(mask),
             token_type_ids=torch.tensor(types))
    np.testing.assert_allclose(h.numpy()[real], out.last_hidden_state.detach().numpy()[real],
                               atol=1e-12)
    np.testing.assert_allclose(model.pooled(h).numpy(), out.pooler_output.detach().numpy(),
                               atol=1e-12)


def test_sequence_classification_body_pools_through_the_pooler(tmp_path):
    """A BertForSequenceClassification directory gives its body; a classifier on it with the
    same head weights computes what transformers' does."""
    torch = pytest.importorskip("torch")
    hf, path = hf_bert(tmp_path, "BertForSequenceClassification", seed=2, num_labels=3)
    with pytest.warns(UserWarning, match="no MLM head"):
        clf = nn.SequenceClassifier.from_pretrained_body(path, num_labels=3, dropout=0.0,
                                                         dtype=tg.float64)
    clf = clf.eval()
    clf.classifier.weight.data[...] = hf.classifier.weight.detach().numpy().T
    clf.classifier.bias.data[...] = hf.classifier.bias.detach().numpy()
    ids, types, mask = batch(2)
    ids[:, 0] = 2                                             # a [CLS]-like first token
    logits, _ = clf(ids, mask)
    ref = hf(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    np.testing.assert_allclose(logits.numpy(), ref.detach().numpy(), atol=1e-12)


def test_save_pretrained_hf_is_read_back_by_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf, path = hf_bert(tmp_path, seed=3)
    model = nn.BERT.from_pretrained(path, dtype=tg.float64)
    model.save_pretrained(tmp_path / "out", format="hf")
    back = transformers.BertForMaskedLM.from_pretrained(tmp_path / "out").double().eval()
    ids, types, mask = batch(3)
    args = dict(attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(types))
    np.testing.assert_allclose(back(torch.tensor(ids), **args).logits.detach().numpy(),
                               hf(torch.tensor(ids), **args).logits.detach().numpy(),
                               atol=1e-12)
    # this project's default BERT is pre-LN, which transformers' BERT cannot express
    with pytest.raises(ValueError, match="post-LayerNorm.*norm_first=True"):
        nn.BERT(nn.BERTConfig(vocab_size=V, n_embd=8, n_head=2)).save_pretrained(
            tmp_path / "pre", format="hf")


@pytest.mark.parametrize("option, value", [("hidden_act", "relu"),
                                           ("position_embedding_type", "relative_key"),
                                           ("intermediate_size", 40), ("is_decoder", True)])
def test_unsupported_bert_options_are_refused_by_name(tmp_path, option, value):
    _, path = hf_bert(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config[option] = value
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"{option}={value!r}"):
        nn.BERT.from_pretrained(path)


def test_a_gpt2_checkpoint_is_not_a_bert(tmp_path):
    _, path = hf_bert(tmp_path)
    with pytest.raises(CheckpointError, match=r"'bert' checkpoint; GPT.from_pretrained"):
        nn.GPT.from_pretrained(path)


@pytest.mark.parametrize("kind", ["BertForSequenceClassification",
                                  "GPT2ForSequenceClassification"])
def test_sequence_classifier_from_a_hugging_face_classifier(tmp_path, kind):
    """The whole classifier -- body, pooling, head and label names -- from transformers'
    BertForSequenceClassification or GPT2ForSequenceClassification."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    labels = {0: "neg", 1: "neutral", 2: "pos"}
    torch.manual_seed(4)
    if kind.startswith("Bert"):
        config = transformers.BertConfig(vocab_size=V, hidden_size=12, num_hidden_layers=2,
                                         num_attention_heads=3, intermediate_size=48,
                                         max_position_embeddings=16, id2label=labels)
    else:
        config = transformers.GPT2Config(vocab_size=V, n_positions=16, n_embd=12, n_layer=2,
                                         n_head=3, id2label=labels, pad_token_id=0)
    hf = getattr(transformers, kind)(config).double().eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    hf.save_pretrained(tmp_path / kind)
    clf = nn.SequenceClassifier.from_pretrained(tmp_path / kind, dtype=tg.float64)
    assert clf.config.label_names == ["neg", "neutral", "pos"] and not clf.training
    ids, types, mask = batch(4)
    ids = np.where(mask.astype(bool), ids, 0)               # padding is id 0
    logits, _ = clf(ids, mask)
    ref = hf(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    np.testing.assert_allclose(logits.numpy(), ref.detach().numpy(), atol=1e-12)
