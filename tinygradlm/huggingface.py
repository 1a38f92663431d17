"""Hugging Face checkpoints: the directories transformers' ``save_pretrained`` writes (and the
Hub serves), read into this project's models (GPT-2 into ``GPT``, BERT into ``BERT``) and
written back.

A Hugging Face model directory::

    config.json                    "model_type": "gpt2" or "bert", and the sizes
    generation_config.json         generate()'s defaults (eos id, max_length, ...), optional
    model.safetensors              the weights, by name -- or, for big models, shards:
    model.safetensors.index.json   {"weight_map": {name: "model-00001-of-00002.safetensors"}}
    tokenizer.json, vocab.json, merges.txt, vocab.txt, ...   the tokenizer's files

GPT-2's parameter names are this project's (``transformer.h.0.attn.c_attn.weight``, Linear
weights stored (in, out) as GPT-2's ``Conv1D`` stores them), so loading is mostly checking:
the config's options against what the model implements, every shape against the config, the
``transformer.`` prefix (the Hub's ``gpt2`` files have none), the causal-mask buffers
(``h.N.attn.bias``) that are not weights, and a tied ``lm_head.weight``.

``pytorch_model.bin`` files are never read: they are pickles, and unpickling runs whatever
code the file's author put in it.  Convert them once, in a trusted environment, with
transformers (``AutoModel.from_pretrained(d).save_pretrained(d, safe_serialization=True)``).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from . import backend
from .checkpoint import CheckpointError, _read_arrays, _read_json
from .creation import skip_init
from .files import atomic_write, json_bytes

CONFIG, WEIGHTS, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
GENERATION_CONFIG = "generation_config.json"
PICKLE_WEIGHTS = "pytorch_model.bin"
MODEL_TYPES = ("gpt2", "bert")


def hf_model_type(directory) -> str | None:
    """"gpt2" or "bert" when ``directory`` holds a Hugging Face checkpoint of one, else None
    (this project's own directories say ``"model_type": "GPT"``)."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        return None
    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, OSError, AttributeError):
        return None
    return kind if isinstance(kind, str) and kind.islower() else None


def read_weights(directory) -> dict:
    """Every array of the checkpoint, by the names in the file: ``model.safetensors``, or the
    shards listed by ``model.safetensors.index.json``."""
    directory = Path(directory)
    if (directory / WEIGHTS).is_file():
        return _read_arrays(directory / WEIGHTS)
    if (directory / INDEX).is_file():
        index = _read_json(directory / INDEX, "the index of the weight shards")
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{directory / INDEX} has no 'weight_map' (name -> shard file)")
        arrays = {}
        for shard in sorted(set(weight_map.values())):
            arrays.update(_read_arrays(directory / shard))
        missing = sorted(set(weight_map) - set(arrays))
        if missing:
            raise CheckpointError(f"{directory / INDEX} lists weights no shard holds: "
                                  f"{', '.join(missing[:5])}")
        return arrays
    if (directory / PICKLE_WEIGHTS).is_file():
        raise CheckpointError(
            f"{directory} has only {PICKLE_WEIGHTS}, a pickle: loading a pickle runs code chosen "
            f"by whoever wrote the file, so it is never read here.  Convert it once to "
            f"safetensors where you trust it, with transformers:\n"
            f"    from transformers import AutoModel\n"
            f"    AutoModel.from_pretrained({str(directory)!r}).save_pretrained("
            f"{str(directory)!r}, safe_serialization=True)")
    raise FileNotFoundError(f"no {WEIGHTS} (or {INDEX}) in {directory}")


def generation_defaults(directory) -> dict:
    """``generation_config.json``'s values (generate()'s defaults), or {} without one."""
    path = Path(directory) / GENERATION_CONFIG
    if not path.is_file():
        return {}
    values = _read_json(path, "the generation defaults")
    return {k: v for k, v in values.items() if not k.startswith(("_", "transformers_"))}


def _check_tied(path, name, head, wte):
    """An output layer stored beside the token embedding must equal it: the models here tie
    the two (one array), so a different head cannot be loaded."""
    if head is not None and wte is not None and not np.array_equal(head, wte):
        raise CheckpointError(f"{path}: {name} differs from the token embedding, but this "
                              f"model ties its output layer to it")


def _refuse(path, name, value, why):
    raise CheckpointError(f"{path}: {name}={value!r} is not supported here ({why})")


# --- GPT-2 ------------------------------------------------------------------------------------
def gpt2_config(hf: dict, path: Path):
    """A ``GPTConfig`` from GPT-2's config.json; options the model does not implement are
    refused by name rather than silently ignored."""
    from .nn.gpt import GPTConfig
    n_embd = hf.get("n_embd", 768)
    checks = [
        ("activation_function", hf.get("activation_function", "gelu_new"),
         lambda v: v in ("gelu_new", "gelu_pytorch_tanh"), "the MLP uses GELU's tanh form"),
        ("n_inner", hf.get("n_inner"), lambda v: v in (None, 4 * n_embd),
         f"the MLP is 4 * n_embd = {4 * n_embd} wide"),
        ("scale_attn_by_inverse_layer_idx", hf.get("scale_attn_by_inverse_layer_idx", False),
         lambda v: not v, "attention is scaled by 1/sqrt(head size) only"),
        ("reorder_and_upcast_attn", hf.get("reorder_and_upcast_attn", False), lambda v: not v,
         "attention runs in the model's dtype"),
        ("scale_attn_weights", hf.get("scale_attn_weights", True), lambda v: v,
         "attention scores are always scaled"),
        ("add_cross_attention", hf.get("add_cross_attention", False), lambda v: not v,
         "GPT is decoder-only"),
        ("tie_word_embeddings", hf.get("tie_word_embeddings", True), lambda v: v,
         "the LM head is the token embedding"),
    ]
    for name, value, ok, why in checks:
        if not ok(value):
            _refuse(path, name, value, why)
    drops = {hf.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(drops) > 1:
        _refuse(path, "resid/embd/attn_pdrop", sorted(drops),
                "one dropout rate is used everywhere; make them equal")
    return GPTConfig(vocab_size=hf.get("vocab_size", 50257),
                     block_size=hf.get("n_positions", 1024), n_layer=hf.get("n_layer", 12),
                     n_head=hf.get("n_head", 12), n_embd=n_embd, dropout=drops.pop(),
                     bias=True, layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                     bos_token_id=hf.get("bos_token_id"), eos_token_id=hf.get("eos_token_id"),
                     pad_token_id=hf.get("pad_token_id"))


def gpt2_weights(arrays: dict, path: Path) -> dict:
    """GPT-2's arrays under this project's names: ``transformer.`` added where the file has
    no prefix, the causal-mask buffers dropped, a tied ``lm_head.weight`` dropped (and a
    classifier's ``score`` head, which is not part of the body)."""
    named = {}
    for name, a in arrays.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")) and a.ndim != 1:
            continue                        # the causal-mask buffers of older transformers
        if name == "lm_head.weight":
            continue                        # checked against wte below
        if name.startswith("score."):
            continue                        # GPT2ForSequenceClassification's head
        named[name if name.startswith("transformer.") else "transformer." + name] = a
    _check_tied(path, "lm_head.weight", arrays.get("lm_head.weight"),
                named.get("transformer.wte.weight"))
    return named


def gpt2_files(model) -> tuple[dict, dict]:
    """(config.json, arrays) for transformers' ``GPT2LMHeadModel``."""
    c = model.config
    eos = c.eos_token_id
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": c.vocab_size, "n_positions": c.block_size, "n_embd": c.n_embd,
        "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": c.layer_norm_eps,
        "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout,
        "initializer_range": 0.02, "scale_attn_weights": True, "use_cache": True,
        "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True, "bos_token_id": c.bos_token_id, "eos_token_id": eos,
        "pad_token_id": c.pad_token_id,
    }
    if not c.bias:
        raise ValueError("save_pretrained(format='hf'): GPT-2 has biases; this model was built "
                         "with bias=False, which transformers' GPT2 cannot load")
    state = model.state_dict()
    arrays = {name: t.data for name, t in state.items() if name != "lm_head.weight"}
    return config, arrays


# --- BERT -------------------------------------------------------------------------------------
def bert_config(hf: dict, path: Path):
    """A ``BERTConfig`` in BERT's own layout (post-LayerNorm, token types, pooler) from BERT's
    config.json; options the model does not implement are refused by name."""
    from .nn.bert import BERTConfig
    n_embd = hf.get("hidden_size", 768)
    act = hf.get("hidden_act", "gelu")
    checks = [
        ("hidden_act", act, lambda v: v in ("gelu", "gelu_new", "gelu_pytorch_tanh"),
         "the MLP uses GELU"),
        ("intermediate_size", hf.get("intermediate_size", 4 * n_embd),
         lambda v: v == 4 * n_embd, f"the MLP is 4 * hidden_size = {4 * n_embd} wide"),
        ("position_embedding_type", hf.get("position_embedding_type", "absolute"),
         lambda v: v == "absolute", "positions are learned absolute embeddings"),
        ("is_decoder", hf.get("is_decoder", False), lambda v: not v, "BERT is an encoder"),
        ("add_cross_attention", hf.get("add_cross_attention", False), lambda v: not v,
         "BERT is an encoder"),
    ]
    for name, value, ok, why in checks:
        if not ok(value):
            _refuse(path, name, value, why)
    drops = {hf.get(k, 0.1) for k in ("hidden_dropout_prob", "attention_probs_dropout_prob")}
    if len(drops) > 1:
        _refuse(path, "hidden/attention_probs_dropout_prob", sorted(drops),
                "one dropout rate is used everywhere; make them equal")
    return BERTConfig(vocab_size=hf.get("vocab_size", 30522),
                      block_size=hf.get("max_position_embeddings", 512),
                      n_layer=hf.get("num_hidden_layers", 12),
                      n_head=hf.get("num_attention_heads", 12), n_embd=n_embd,
                      dropout=drops.pop(), bias=True, pad_token_id=hf.get("pad_token_id") or 0,
                      layer_norm_eps=hf.get("layer_norm_eps", 1e-12), norm_first=False,
                      type_vocab_size=hf.get("type_vocab_size", 2),
                      gelu_approximate="none" if act == "gelu" else "tanh", pooler=True)


# BERT's module names -> this project's (GPT-2's).  "W" marks a Linear weight, stored (out, in)
# by PyTorch and (in, out) here; query/key/value are one (C, 3C) matrix here (``c_attn``).
_BERT_NAMES = [
    ("embeddings.word_embeddings.weight", "transformer.wte.weight"),
    ("embeddings.position_embeddings.weight", "transformer.wpe.weight"),
    ("embeddings.token_type_embeddings.weight", "transformer.wtt.weight"),
    ("embeddings.LayerNorm.weight", "transformer.ln_e.weight"),
    ("embeddings.LayerNorm.bias", "transformer.ln_e.bias"),
    ("pooler.dense.weight", "W pooler.weight"), ("pooler.dense.bias", "pooler.bias"),
    ("cls.predictions.transform.dense.weight", "W mlm_head.dense.weight"),
    ("cls.predictions.transform.dense.bias", "mlm_head.dense.bias"),
    ("cls.predictions.transform.LayerNorm.weight", "mlm_head.ln.weight"),
    ("cls.predictions.transform.LayerNorm.bias", "mlm_head.ln.bias"),
    ("cls.predictions.bias", "mlm_head.bias"),
]
_BERT_LAYER_NAMES = [
    ("attention.output.dense.weight", "W attn.c_proj.weight"),
    ("attention.output.dense.bias", "attn.c_proj.bias"),
    ("attention.output.LayerNorm.weight", "ln_1.weight"),
    ("attention.output.LayerNorm.bias", "ln_1.bias"),
    ("intermediate.dense.weight", "W mlp.c_fc.weight"),
    ("intermediate.dense.bias", "mlp.c_fc.bias"),
    ("output.dense.weight", "W mlp.c_proj.weight"), ("output.dense.bias", "mlp.c_proj.bias"),
    ("output.LayerNorm.weight", "ln_2.weight"), ("output.LayerNorm.bias", "ln_2.bias"),
]


def _bert_name_pairs(n_layer: int):
    """(BERT's name, "W "-marked name here) for every weight but query/key/value."""
    pairs = list(_BERT_NAMES)
    for i in range(n_layer):
        for theirs, ours in _BERT_LAYER_NAMES:
            mark, _, name = ours.rpartition(" ")
            pairs.append((f"encoder.layer.{i}.{theirs}",
                          f"{mark} transformer.h.{i}.{name}".strip()))
    return pairs


def bert_weights(arrays: dict, path: Path) -> dict:
    """BERT's arrays (BertModel, BertForMaskedLM or BertForSequenceClassification layout)
    under this project's names.  LayerNorm's old ``gamma``/``beta`` names are accepted; the
    classifier's own head is not part of the body and is left out."""
    plain = {}
    for name, a in arrays.items():
        name = name.removeprefix("bert.").replace(".gamma", ".weight").replace(".beta", ".bias")
        plain[name] = a
    n_layer = 1 + max((int(k.split(".")[2]) for k in plain if k.startswith("encoder.layer.")),
                      default=-1)
    named = {}
    for theirs, ours in _bert_name_pairs(n_layer):
        if theirs in plain:
            transpose, name = ours.startswith("W "), ours.removeprefix("W ")
            named[name] = plain[theirs].T if transpose else plain[theirs]
    if "cls.predictions.decoder.bias" in plain and "mlm_head.bias" not in named:
        named["mlm_head.bias"] = plain["cls.predictions.decoder.bias"]
    for i in range(n_layer):
        qkv = [plain.get(f"encoder.layer.{i}.attention.self.{part}.{kind}")
               for kind in ("weight", "bias") for part in ("query", "key", "value")]
        if any(a is None for a in qkv):
            raise CheckpointError(f"{path}: layer {i} lacks its query/key/value weights")
        named[f"transformer.h.{i}.attn.c_attn.weight"] = np.concatenate(
            [w.T for w in qkv[:3]], axis=1)                         # (C, 3C)
        named[f"transformer.h.{i}.attn.c_attn.bias"] = np.concatenate(qkv[3:])
    _check_tied(path, "cls.predictions.decoder.weight",
                plain.get("cls.predictions.decoder.weight"), named.get("transformer.wte.weight"))
    return named


def bert_files(model) -> tuple[dict, dict]:
    """(config.json, arrays) for transformers' ``BertForMaskedLM``.  Only BERT's own layout
    (post-LayerNorm, ``norm_first=False``) exists in transformers."""
    c = model.config
    if c.norm_first or not c.bias:
        raise ValueError("save_pretrained(format='hf'): transformers' BERT is post-LayerNorm "
                         "with biases; this BERT was built with norm_first=True (the pre-LN "
                         "default) or bias=False, which it cannot load.  Save it with "
                         "format='tinygradlm'")
    config = {
        "architectures": ["BertForMaskedLM"], "model_type": "bert",
        "vocab_size": c.vocab_size, "hidden_size": c.n_embd, "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head, "intermediate_size": 4 * c.n_embd,
        "hidden_act": "gelu" if c.gelu_approximate == "none" else "gelu_new",
        "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.dropout,
        "max_position_embeddings": c.block_size, "type_vocab_size": max(c.type_vocab_size, 1),
        "layer_norm_eps": c.layer_norm_eps, "pad_token_id": c.pad_token_id,
        "position_embedding_type": "absolute", "initializer_range": 0.02,
        "tie_word_embeddings": True,
    }
    state = {k: backend.to_numpy(t.data) for k, t in model.state_dict().items()}
    arrays = {}
    for theirs, ours in _bert_name_pairs(c.n_layer):
        transpose, name = ours.startswith("W "), ours.removeprefix("W ")
        if name in state:
            arrays["bert." * (not theirs.startswith("cls.")) + theirs] = (
                state[name].T if transpose else state[name])
    if "transformer.wtt.weight" not in state:       # no segments: one all-zero type
        arrays["bert.embeddings.token_type_embeddings.weight"] = np.zeros(
            (1, c.n_embd), dtype=state["transformer.wte.weight"].dtype)
    for i in range(c.n_layer):
        w = state[f"transformer.h.{i}.attn.c_attn.weight"]          # (C, 3C)
        b = state[f"transformer.h.{i}.attn.c_attn.bias"]
        for j, part in enumerate(("query", "key", "value")):
            cut = slice(j * c.n_embd, (j + 1) * c.n_embd)
            arrays[f"bert.encoder.layer.{i}.attention.self.{part}.weight"] = w[:, cut].T
            arrays[f"bert.encoder.layer.{i}.attention.self.{part}.bias"] = b[cut]
    return config, arrays


# --- both -------------------------------------------------------------------------------------
def load(model_cls, directory, device=None, dtype=None):
    """A model of ``model_cls`` (GPT or BERT) from a Hugging Face directory, in eval mode, in
    ``dtype`` (default float32) on ``device``.  The config is checked before the model is
    built and every weight before any is loaded: a refused checkpoint returns no model."""
    from .checkpoint import _load_weights
    from .nn.gpt import init_gpt2_weights
    directory = Path(directory)
    kind = hf_model_type(directory)
    if model_cls.__name__ == "SequenceClassifier":
        return _load_classifier(model_cls, directory, kind, device, dtype)
    config_path = directory / CONFIG
    expected = {"GPT": "gpt2", "BERT": "bert"}.get(model_cls.__name__)
    if kind != expected:
        raise CheckpointError(f"{config_path} is a Hugging Face {kind!r} checkpoint; "
                              f"{model_cls.__name__}.from_pretrained reads {expected!r} ones")
    hf = _read_json(config_path, "the model's configuration")
    if kind == "gpt2":
        config = gpt2_config(hf, config_path)
        convert = gpt2_weights
    else:
        config, convert = bert_config(hf, config_path), bert_weights
    weights_path = directory / (WEIGHTS if (directory / WEIGHTS).is_file() else INDEX)
    arrays = convert(read_weights(directory), weights_path)
    target = np.dtype(dtype if dtype is not None else np.float32)
    arrays = {k: (a.astype(target, copy=False) if a.dtype.kind == "f" else a)
              for k, a in arrays.items()}
    if kind == "bert" and "pooler.weight" not in arrays:
        config.pooler = False                       # a checkpoint saved without its pooler
    with skip_init():                           # every weight is loaded right below
        model = model_cls(config).to(target)
    fresh = [n for n in model.state_dict() if n not in arrays and n.startswith("mlm_head.")
             and n != "mlm_head.weight"]
    if fresh:       # a BertModel without the MLM head: draw one as a new BERT would, say so
        warnings.warn(f"{weights_path} has no MLM head ({', '.join(fresh)}): those weights "
                      f"are newly initialised; fine-tune before using the MLM logits",
                      stacklevel=3)
        head = type(model.mlm_head)(config.n_embd, config.vocab_size, config.bias,
                                    config.gelu_approximate, config.layer_norm_eps)
        init_gpt2_weights(head, config.n_layer)
        drawn = head.to(target).state_dict()
        arrays.update({n: drawn[n.removeprefix("mlm_head.")].data for n in fresh})
    _load_weights(model, arrays, weights_path, assign=True)
    model.generation_config = generation_defaults(directory)
    return (model if device is None else model.to(device)).eval()


def _load_classifier(model_cls, directory, kind, device, dtype):
    """A ``SequenceClassifier`` from transformers' ``BertForSequenceClassification`` (the
    pooler, then ``classifier``) or ``GPT2ForSequenceClassification`` (the last real token,
    then ``score``, which has no bias); the labels from ``id2label``."""
    from .nn.bert import BERT
    from .nn.gpt import GPT
    hf = _read_json(directory / CONFIG, "the model's configuration")
    with warnings.catch_warnings():         # a classifier has no use for an MLM head
        warnings.simplefilter("ignore")
        body = load(BERT if kind == "bert" else GPT, directory, dtype=dtype)
    id2label = hf.get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=int)] if id2label else []
    num_labels = len(labels) or hf.get("num_labels", 2)
    dropout = hf.get("classifier_dropout")
    if dropout is None:
        dropout = hf.get("hidden_dropout_prob", hf.get("summary_first_dropout", 0.1))
    model = model_cls.from_body(body, num_labels, "cls" if kind == "bert" else "last",
                                dropout, labels)
    arrays = read_weights(directory)
    head = "classifier" if kind == "bert" else "score"
    weight = arrays.get(f"{head}.weight")
    if weight is None:
        warnings.warn(f"{directory} has no {head}.weight: the classification head is newly "
                      f"initialised; fine-tune it", stacklevel=4)
    else:
        if weight.shape != (num_labels, body.config.n_embd):
            raise CheckpointError(f"{directory}: {head}.weight {weight.shape} does not fit "
                                  f"{num_labels} labels of a {body.config.n_embd}-wide model")
        bias = arrays.get(f"{head}.bias", np.zeros(num_labels, dtype=weight.dtype))
        model.classifier.load_state_dict({"weight": weight.T, "bias": bias})
    return (model if device is None else model.to(device)).eval()


def save(model, directory, tokenizer=None) -> Path:
    """Write ``model`` (GPT or BERT) as transformers would: config.json, model.safetensors
    (and the tokenizer's files).  Both prepared before the first file is written."""
    directory = Path(directory)
    if type(model).__name__ == "GPT":
        config, arrays = gpt2_files(model)
    elif type(model).__name__ == "BERT":
        config, arrays = bert_files(model)
    else:
        raise TypeError(f"save_pretrained(format='hf'): only GPT and BERT have a Hugging Face "
                        f"layout, not {type(model).__name__}")
    floats = {a.dtype for a in arrays.values() if a.dtype.kind == "f"}
    config["torch_dtype"] = str(floats.pop()) if len(floats) == 1 else "float32"
    from safetensors.numpy import save as safetensors_bytes
    # transformers refuses a safetensors file whose metadata does not name its format.
    weights = safetensors_bytes({k: np.ascontiguousarray(backend.to_numpy(a))
                                 for k, a in arrays.items()}, metadata={"format": "pt"})
    atomic_write(directory / WEIGHTS, weights)
    if hasattr(tokenizer, "save_pretrained"):          # a Hugging Face tokenizer
        tokenizer.save_pretrained(directory)
    elif tokenizer is not None:
        tokenizer.save(directory / "tokenizer.json")
    atomic_write(directory / CONFIG, json_bytes(config))
    return directory
