"""Continue a prompt with a pretrained model: GPT-2 from Hugging Face, or one trained here.

    python examples/generate.py --model gpt2 --prompt "Once upon a time" --max_length 50 \\
        --num_return_sequences 3 --do_sample --top_k 50 --top_p 0.95 --temperature 0.8

The same steps as transformers' version of this lesson, line for line (transformers, then
this project)::

    tokenizer = AutoTokenizer.from_pretrained("gpt2")     tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained("gpt2")  model = GPT.from_pretrained(path)
    ids = tokenizer.encode(prompt, return_tensors="pt")   ids = [tokenizer.encode(prompt)]
    output = model.generate(ids, max_length=50, ...)      output = model.generate(ids, ...)
    tokenizer.decode(output[0], skip_special_tokens=True) the same

``--model`` is a directory (a Hugging Face GPT-2 checkpoint, or ``out`` written by
``train_char_lm.py``) or a Hub name, read from the local Hugging Face cache or downloaded with
``pip install "tinygradlm[hub]"``.  The options mean what they mean in transformers'
``generate``: greedy unless ``--do_sample``; ``--max_length`` counts the prompt.
"""
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinygradlm as tg  # noqa: E402
from tinygradlm import hub  # noqa: E402
from tinygradlm.cli import config_from_args, run_cli  # noqa: E402
from tinygradlm.config import check_fields, flag  # noqa: E402
from tinygradlm.data import CharTokenizer, load_tokenizer  # noqa: E402
from tinygradlm.files import InputError  # noqa: E402
from tinygradlm.nn import GPT  # noqa: E402


@dataclass
class GenerateConfig:
    model: str = flag("gpt2", "a model directory or a Hugging Face Hub name")
    prompt: str = flag("Once upon a time", "text to continue")
    max_length: int = flag(50, "length of each output, the prompt included", at_least=1)
    max_new_tokens: int = flag(0, "tokens to add, when > 0 (then --max_length is ignored)",
                               at_least=0)
    num_return_sequences: int = flag(1, "continuations of the prompt (with --do_sample)",
                                     at_least=1)
    do_sample: bool = flag(False, "sample instead of always taking the most likely token")
    top_k: int = flag(50, "sample among the k most likely tokens only (0: all)", at_least=0)
    top_p: float = flag(1.0, "sample among the most likely tokens that hold this much "
                        "probability (1: all)", above=0, at_most=1)
    temperature: float = flag(1.0, "divide the logits by this before sampling", above=0)
    repetition_penalty: float = flag(1.0, "make tokens already in the text less likely "
                                     "(1: off)", above=0)
    seed: int = flag(1337, "random seed of the sampling", at_least=0)
    device: str = flag(None, "'cpu' or 'cuda'; default $TINYGRADLM_DEVICE, else cpu",
                       default_factory=tg.backend.default_device_from_env)

    def validate(self):
        check_fields(self)
        if not self.prompt:
            raise ValueError("--prompt is empty: give at least one character to continue")
        if self.num_return_sequences > 1 and not self.do_sample:
            raise ValueError("--num_return_sequences > 1 needs --do_sample (greedy decoding "
                             "gives the same text every time)")
        tg.backend.xp_for(tg.backend.normalize_device(self.device))     # no GPU: say why


def main(cfg: GenerateConfig):
    directory = hub.resolve(cfg.model)
    model = GPT.from_pretrained(directory, device=cfg.device)
    tokenizer = load_tokenizer(directory)
    if len(tokenizer) > model.config.vocab_size:
        raise InputError(f"the tokenizer in {str(directory)!r} has {len(tokenizer)} tokens but "
                         f"the model only {model.config.vocab_size}")
    try:
        prompt = tokenizer.encode(cfg.prompt)
    except ValueError as e:             # a character a char-level model never saw
        raise InputError(f"--prompt: {e}") from None
    if not prompt:
        raise InputError(f"--prompt {cfg.prompt!r} encodes to no tokens")
    tg.manual_seed(cfg.seed)
    out = model.generate([prompt], max_length=cfg.max_length,
                         max_new_tokens=cfg.max_new_tokens or None,
                         num_return_sequences=cfg.num_return_sequences,
                         do_sample=cfg.do_sample, top_k=cfg.top_k, top_p=cfg.top_p,
                         temperature=cfg.temperature, repetition_penalty=cfg.repetition_penalty)
    texts = []
    for i, row in enumerate(out.numpy().tolist()):
        text = (tokenizer.decode(row) if isinstance(tokenizer, CharTokenizer)
                else tokenizer.decode(row, skip_special_tokens=True))
        texts.append(text)
        print(f"--- {i + 1} ---\n{text}\n")
    return texts


if __name__ == "__main__":
    run_cli(main, config_from_args(GenerateConfig, __doc__))
