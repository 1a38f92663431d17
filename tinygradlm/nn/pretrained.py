"""What GPT, BERT and the classifier share: saving and loading (``save_pretrained`` /
``from_pretrained``, Hugging Face's names) and, for the two language models, parameter counts
and the optimizer recipe."""
from __future__ import annotations

from .. import optim
from .module import Module


class PretrainedModel(Module):
    """A model built from one dataclass config (``config_class``) that it keeps as
    ``self.config``: that is all ``checkpoint.py`` needs to save and rebuild it."""

    config_class = None

    def save_pretrained(self, directory, tokenizer=None, format: str = "tinygradlm"):
        """Write ``config.json``, ``model.safetensors`` (and the tokenizer) into ``directory``.
        ``format="hf"`` writes a GPT as transformers' GPT2LMHeadModel and a BERT as its
        BertForMaskedLM, so that transformers' ``from_pretrained`` opens it."""
        if format == "hf":
            from ..huggingface import save
            return save(self, directory, tokenizer)
        if format != "tinygradlm":
            raise ValueError(f"save_pretrained: format must be 'tinygradlm' or 'hf', not "
                             f"{format!r}")
        from ..checkpoint import save_pretrained
        return save_pretrained(self, directory, tokenizer)

    @classmethod
    def from_pretrained(cls, name_or_path, device: str | None = None, dtype=None, *,
                        revision: str = "main", cache_dir=None, local_files_only=None):
        """A model rebuilt from a directory (in eval mode): this project's own
        (``save_pretrained``), or a Hugging Face GPT-2 / BERT checkpoint; or a Hub name
        ("gpt2"), found in the local Hugging Face cache or downloaded (``tinygradlm.hub``)."""
        from .. import hub
        from ..checkpoint import load_pretrained
        from ..huggingface import MODEL_TYPES, hf_model_type, load
        directory = hub.resolve(name_or_path, revision=revision, cache_dir=cache_dir,
                                local_files_only=local_files_only)
        kind = hf_model_type(directory)
        if kind in MODEL_TYPES:
            return load(cls, directory, device=device, dtype=dtype)
        if kind is not None:
            from ..checkpoint import CheckpointError
            raise CheckpointError(f"{directory / 'config.json'} is a Hugging Face {kind!r} "
                                  f"checkpoint; this library reads 'gpt2' (into GPT) and "
                                  f"'bert' (into BERT) ones")
        return load_pretrained(cls, cls.config_class, directory, device=device, dtype=dtype)


class TransformerModel(PretrainedModel):
    """A ``transformer.*`` body (``nn.gpt.Transformer``) plus an output head."""

    default_betas = (0.9, 0.999)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position embeddings (nanoGPT's count; the
        token embedding stays in because it is also the output layer)."""
        n = self.num_parameters()
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas=None,
                             eps: float = 1e-8):
        """AdamW with weight decay on matrices and embeddings (>= 2-D) only, nanoGPT-style."""
        groups = optim.weight_decay_groups(self.named_parameters(), weight_decay)
        return optim.AdamW(groups, lr=learning_rate, betas=betas or self.default_betas, eps=eps)

    def extra_repr(self):
        return f"{self.num_params() / 1e6:.2f}M parameters"
