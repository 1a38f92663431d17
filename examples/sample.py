"""Print samples from a trained model.

    python examples/sample.py --out_dir out --prompt "def " --num_samples 3 --max_new_tokens 300

Every field of ``SampleConfig`` below is a flag; the sampling options mean what they mean in
Hugging Face's ``generate`` (``--top_k 0`` and ``--top_p 1`` turn those filters off).
"""
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinygradlm as tg  # noqa: E402
from tinygradlm.checkpoint import tokenizer_path  # noqa: E402
from tinygradlm.cli import config_from_args, run_cli  # noqa: E402
from tinygradlm.config import check_fields, flag  # noqa: E402
from tinygradlm.data import load_tokenizer  # noqa: E402
from tinygradlm.files import InputError  # noqa: E402
from tinygradlm.nn import GPT  # noqa: E402


@dataclass
class SampleConfig:
    out_dir: str = flag("out", "a directory written by train_char_lm.py")
    prompt: str = flag("\n", "text to continue (at least one character)")
    num_samples: int = flag(3, "samples to print", at_least=1)
    max_new_tokens: int = flag(300, "tokens to generate for each sample", at_least=0)
    temperature: float = flag(0.8, "divide the logits by this before sampling (lower: "
                              "safer text)", above=0)
    top_k: int = flag(0, "sample among the k most likely tokens only (0: all)", at_least=0)
    top_p: float = flag(1.0, "sample among the most likely tokens that hold this much "
                        "probability (1: all)", above=0, at_most=1)
    repetition_penalty: float = flag(1.0, "make tokens already in the text less likely "
                                     "(1: off)", above=0)
    greedy: bool = flag(False, "argmax decoding instead of sampling (one sample)")
    seed: int = flag(1337, "random seed of the sampling", at_least=0)
    device: str = flag(None, "'cpu' or 'cuda'; default $TINYGRADLM_DEVICE, else cpu",
                       default_factory=tg.backend.default_device_from_env)

    def validate(self):
        check_fields(self)
        if not self.prompt:
            raise ValueError("--prompt is empty: give at least one character for the model "
                             "to continue (the default is a newline)")
        tg.backend.xp_for(tg.backend.normalize_device(self.device))     # no GPU: say why


def main(cfg: SampleConfig):
    model = GPT.from_pretrained(cfg.out_dir, device=cfg.device)
    path = tokenizer_path(cfg.out_dir)
    if path is None:
        raise FileNotFoundError(f"no tokenizer.json in {cfg.out_dir!r}")
    tokenizer = load_tokenizer(path)
    try:
        prompt = tokenizer.encode(cfg.prompt)
    except ValueError as e:             # a character the model never saw
        raise InputError(f"--prompt: {e}") from None
    tg.manual_seed(cfg.seed)
    prompt = prompt[-model.config.block_size:]
    out = model.generate([prompt], max_new_tokens=cfg.max_new_tokens,
                         num_return_sequences=1 if cfg.greedy else cfg.num_samples,
                         do_sample=not cfg.greedy, temperature=cfg.temperature,
                         top_k=cfg.top_k, top_p=cfg.top_p,
                         repetition_penalty=cfg.repetition_penalty)
    for i, row in enumerate(out.numpy().tolist()):
        print(f"--- sample {i + 1} ---\n{cfg.prompt}{tokenizer.decode(row[len(prompt):])}\n")


if __name__ == "__main__":
    run_cli(main, config_from_args(SampleConfig, __doc__))
