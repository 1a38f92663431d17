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

    def save_pretrained(self, directory, tokenizer=None):
        """Write ``config.json``, ``model.safetensors`` (and ``tokenizer.json``) into
        ``directory``."""
        from ..checkpoint import save_pretrained
        save_pretrained(self, directory, tokenizer)

    @classmethod
    def from_pretrained(cls, directory, device: str | None = None):
        """A model rebuilt from ``save_pretrained``'s files (in eval mode)."""
        from ..checkpoint import load_pretrained
        return load_pretrained(cls, cls.config_class, directory, device=device)


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
