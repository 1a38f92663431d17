"""The example scripts run end to end as a student would run them."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_moons_example_learns():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "two_moons.py"),
                          "--steps", "300"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    accuracy = float(out.stdout.strip().splitlines()[-1].split("test accuracy")[1])
    assert accuracy >= 0.95


def _run_example(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT})


def _gpu_state():
    import tinygradlm as tg
    if os.environ.get("TINYGRADLM_FAKE_CUPY") == "1":
        return "fake"                   # the stand-in lives in this process only
    return "gpu" if tg.cuda.is_available() else "none"


def test_examples_take_device_and_say_why_without_a_gpu(tmp_path):
    state = _gpu_state()
    if state == "fake":
        import pytest
        pytest.skip("the CuPy stand-in is not installed in the example's own process")
    import tinygradlm as tg
    tg.manual_seed(0)
    tiny = tg.nn.GPT(tg.nn.GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1,
                                     n_embd=4))
    tiny.save_pretrained(tmp_path, tg.data.CharTokenizer.from_text("abcde"))
    runs = {"two_moons.py": _run_example("two_moons.py", "--steps", "20", "--device", "cuda"),
            "sample.py": _run_example("sample.py", "--out_dir", str(tmp_path), "--device", "cuda",
                                      "--prompt", "ab", "--max_new_tokens", "3")}
    for name, out in runs.items():
        if state == "gpu":
            assert out.returncode == 0, (name, out.stderr)
        else:
            assert out.returncode != 0, name
            assert "device 'cuda' is not available" in out.stderr, (name, out.stderr)
            assert '.[gpu]' in out.stderr and "Traceback" not in out.stderr, name


def test_generate_example_on_a_hugging_face_gpt2_and_on_a_model_trained_here(tmp_path):
    """examples/generate.py: the seed's transformers lesson, on a tiny GPT-2 written by
    transformers (with its tokenizer) and on a directory this project saved."""
    import pytest
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import ByteLevelBPETokenizer
    import tinygradlm as tg

    text = "Once upon a time there was a tiny model. It told stories, time after time.\n" * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>"])
    bpe.save_model(str(tmp_path))                   # vocab.json + merges.txt, as GPT-2's
    tok = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)).eval()
    hf.save_pretrained(tmp_path / "gpt2-tiny")
    tok.save_pretrained(tmp_path / "gpt2-tiny")
    out = _run_example("generate.py", "--model", str(tmp_path / "gpt2-tiny"), "--prompt",
                       "Once upon a time", "--max_length", "12")
    assert out.returncode == 0, out.stderr
    ids = tok.encode("Once upon a time", return_tensors="pt")
    expected = tok.decode(hf.generate(ids, max_length=12, do_sample=False,
                                      attention_mask=torch.ones_like(ids))[0],
                          skip_special_tokens=True)
    assert out.stdout.split("--- 1 ---\n")[1].rstrip("\n") == expected
    sampled = _run_example("generate.py", "--model", str(tmp_path / "gpt2-tiny"),
                           "--max_new_tokens", "5", "--do_sample", "--num_return_sequences",
                           "3", "--top_p", "0.9", "--temperature", "0.7")
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout.count("--- ") == 3
    tg.manual_seed(0)
    own = tg.nn.GPT(tg.nn.GPTConfig(vocab_size=6, block_size=16, n_layer=1, n_head=1,
                                    n_embd=4))
    own.save_pretrained(tmp_path / "own", tg.data.CharTokenizer.from_text("abcde "))
    out = _run_example("generate.py", "--model", str(tmp_path / "own"), "--prompt", "ab",
                       "--max_new_tokens", "4")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split("--- 1 ---\n")[1].rstrip("\n")) == 6
    bad = _run_example("generate.py", "--model", str(tmp_path / "nowhere" / "x"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "no such directory" in bad.stderr.lower(), bad.stderr
