"""Sequence classification on top of a pretrained body (fine-tuning).

    input_ids (B, T) ─> body.hidden_states ─> pool ─> dropout ─> Linear(C, num_labels)
                        (BERT or GPT)          (B, C)              ─> logits (B, num_labels)

Pooling turns T hidden states into one vector per sequence:
  * ``"cls"``  the first position (BERT puts ``[CLS]`` there; it sees the whole sequence),
    through BERT's pooler (dense + tanh) when the body has one, as Hugging Face's
    ``BertForSequenceClassification`` does,
  * ``"mean"`` the average over real (non-padding) tokens,
  * ``"last"`` the last real token -- the only one a causal GPT lets see the whole sequence.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from .. import functional as F
from .. import optim
from ..tensor import Tensor
from .bert import BERT, BERTConfig
from .gpt import GPT, GPTConfig
from .layers import Dropout, Linear
from .pretrained import PretrainedModel

BODIES = {"BERT": (BERT, BERTConfig), "GPT": (GPT, GPTConfig)}
HF_BODIES = {"bert": "BERT", "gpt2": "GPT"}            # Hugging Face's model_type -> ours


@dataclass
class ClassifierConfig:
    body_type: str = "BERT"                 # "BERT" or "GPT"
    body: dict = field(default_factory=dict)   # the body's config fields
    num_labels: int = 2
    pooling: str = "cls"                    # "cls", "mean" or "last"
    dropout: float = 0.1
    label_names: list = field(default_factory=list)


class SequenceClassifier(PretrainedModel):
    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        if config.body_type not in BODIES:
            raise ValueError(f"SequenceClassifier: body_type must be one of {sorted(BODIES)}, "
                             f"not {config.body_type!r}")
        if config.pooling not in ("cls", "mean", "last"):
            raise ValueError(f"SequenceClassifier: pooling must be 'cls', 'mean' or 'last', "
                             f"not {config.pooling!r}")
        if config.num_labels < 2:
            raise ValueError(f"SequenceClassifier: need at least 2 labels, got "
                             f"{config.num_labels}")
        self.config = config
        body_cls, body_cfg = BODIES[config.body_type]
        self.body = body_cls(body_cfg(**config.body))
        self.dropout = Dropout(config.dropout)
        self.classifier = Linear(self.body.config.n_embd, config.num_labels)

    @classmethod
    def from_body(cls, body, num_labels: int, pooling: str | None = None, dropout: float = 0.1,
                  label_names=()) -> "SequenceClassifier":
        """A classifier around an existing (e.g. pretrained) body; its weights are kept."""
        body_type = type(body).__name__
        pooling = pooling or ("last" if body_type == "GPT" else "cls")
        model = cls(ClassifierConfig(body_type, asdict(body.config), num_labels, pooling, dropout,
                                     list(label_names)))
        model.to(next(iter(body.parameters())).dtype)   # a float64 body stays float64
        model.body.load_state_dict(body.state_dict())
        model.body.train(body.training)
        return model

    @classmethod
    def from_pretrained_body(cls, directory, num_labels: int, pooling: str | None = None,
                             dropout: float = 0.1, label_names=(), device: str | None = None,
                             dtype=None):
        """Load a pretrained BERT or GPT -- saved with ``save_pretrained``, a Hugging Face
        BERT or GPT-2 directory, or a Hub name -- and put a fresh classification head on it."""
        from .. import hub
        if not os.path.isdir(directory) and not hub.looks_like_path(os.fspath(directory)):
            directory = hub.resolve(directory)          # a Hub name
        path = os.path.join(directory, "config.json")
        try:
            with open(path) as f:
                body_type = json.load(f).get("model_type")
        except FileNotFoundError:
            raise FileNotFoundError(f"no pretrained model in {directory!r}: {path} is missing; "
                                    f"pretrain one first (e.g. examples/train_mlm.py)") from None
        body_type = HF_BODIES.get(body_type, body_type)
        if body_type not in BODIES:
            raise ValueError(f"{path}: model_type {body_type!r} cannot be fine-tuned for "
                             f"classification (expected one of {sorted(BODIES)})")
        body = BODIES[body_type][0].from_pretrained(directory, device=device,
                                                    dtype=dtype).train()
        model = cls.from_body(body, num_labels, pooling, dropout, label_names)
        return model if device is None else model.to(device)

    def forward(self, input_ids, attention_mask=None, labels=None):
        """input_ids (B, T), attention_mask (B, T) (1 = real token), labels (B,) ->
        (logits (B, num_labels), mean cross-entropy or None)."""
        device = self.classifier.weight.device
        # Host ids stay on the host: the body's embedding range-checks them before the copy.
        ids = input_ids if isinstance(input_ids, Tensor) else Tensor(input_ids, device="cpu")
        if ids.ndim == 1:
            ids = ids.unsqueeze(0)
        if attention_mask is None:
            pad = getattr(self.body.config, "pad_token_id", None)
            mask = (ids.data != pad) if pad is not None else ids.xp.ones(ids.shape, dtype=bool)
        else:
            mask = attention_mask
        mask = Tensor(mask, device=device).data.astype(bool)         # (B, T)
        h = self.body.hidden_states(input_ids, mask)                # (B, T, C)
        pooled = self.dropout(self.pool(h, mask))                   # (B, C)
        logits = self.classifier(pooled)                            # (B, num_labels)
        if labels is None:
            return logits, None
        labels = labels if isinstance(labels, Tensor) else Tensor(labels, device=device)
        if labels.shape != (ids.shape[0],):
            raise ValueError(f"SequenceClassifier: labels {labels.shape} must be one id "
                             f"per sequence, ({ids.shape[0]},)")
        return logits, F.cross_entropy(logits, labels)

    def pool(self, h: Tensor, mask) -> Tensor:
        """(B, T, C) hidden states -> (B, C), looking only at real tokens."""
        if self.config.pooling == "cls":
            return self.body.pooled(h) if hasattr(self.body, "pooler") else h[:, 0, :]
        xp = h.xp
        mask = Tensor(mask, device=h.device).data                   # (B, T)
        if self.config.pooling == "mean":
            w = mask.astype(h.dtype)[:, :, None]                   # (B, T, 1)
            w = w / xp.maximum(w.sum(axis=1, keepdims=True), 1)
            return (h * Tensor._from_op(w)).sum(dim=1)
        last = xp.maximum(mask.sum(axis=1) - 1, 0)                  # (B,) index of last real
        return h[xp.arange(h.shape[0]), last, :]

    # --- fine-tuning controls -------------------------------------------------------------
    def freeze_body(self, n_layers: int | None = None):
        """Stop training the embeddings and the first ``n_layers`` blocks (all of the body
        when None).  Frozen parameters get no gradient and are left out of the optimizer."""
        t = self.body.transformer
        frozen = [self.body] if n_layers is None else [t.wte, t.wpe] + list(t.h)[:n_layers]
        for m in frozen:
            for p in m.parameters():
                p.requires_grad = False
        return self

    def configure_optimizers(self, weight_decay: float, learning_rate: float,
                             body_lr: float | None = None, betas=(0.9, 0.999)):
        """AdamW over the trainable parameters: the head at ``learning_rate``, the body at
        ``body_lr`` (default: the same), decay only on matrices."""
        body_lr = learning_rate if body_lr is None else body_lr
        groups = []
        for part, lr in ((self.body, body_lr), (self.classifier, learning_rate)):
            named = [(n, p) for n, p in part.named_parameters() if p.requires_grad]
            for g in optim.weight_decay_groups(named, weight_decay):
                if g["params"]:
                    groups.append({**g, "lr": lr})
        return optim.AdamW(groups, lr=learning_rate, betas=betas)
