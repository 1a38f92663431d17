"""Print samples from a trained model.

    python examples/sample.py --out_dir out --prompt "def " --num_samples 3 --max_new_tokens 300
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinygradlm as tg  # noqa: E402
from tinygradlm.checkpoint import tokenizer_path  # noqa: E402
from tinygradlm.data import load_tokenizer  # noqa: E402
from tinygradlm.nn import GPT  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out_dir", default="out", help="a directory written by train_char_lm.py")
    p.add_argument("--prompt", default="\n", help="text to continue")
    p.add_argument("--num_samples", type=int, default=3)
    p.add_argument("--max_new_tokens", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top_k", type=int, default=None)
    p.add_argument("--top_p", type=float, default=None)
    p.add_argument("--repetition_penalty", type=float, default=1.0)
    p.add_argument("--greedy", action="store_true", help="argmax decoding (one sample)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default=tg.backend.default_device_from_env(),
                   help="'cpu' or 'cuda' (default: $TINYGRADLM_DEVICE, else cpu)")
    args = p.parse_args(argv)

    try:
        model = GPT.from_pretrained(args.out_dir, device=args.device)
        path = tokenizer_path(args.out_dir)
        if path is None:
            raise FileNotFoundError(f"no tokenizer.json in {args.out_dir!r}")
        tokenizer = load_tokenizer(path)
        prompt = tokenizer.encode(args.prompt)
    except (FileNotFoundError, ValueError, RuntimeError) as e:    # RuntimeError: no GPU
        sys.exit(f"error: {e}")
    tg.manual_seed(args.seed)
    prompt = prompt[-model.config.block_size:]
    out = model.generate([prompt], max_new_tokens=args.max_new_tokens,
                         num_return_sequences=1 if args.greedy else args.num_samples,
                         do_sample=not args.greedy, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p,
                         repetition_penalty=args.repetition_penalty)
    for i, row in enumerate(out.numpy().tolist()):
        print(f"--- sample {i + 1} ---\n{args.prompt}{tokenizer.decode(row[len(prompt):])}\n")


if __name__ == "__main__":
    main()
