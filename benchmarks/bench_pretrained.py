"""Speed and memory at real size: a GPT-2-small-shaped checkpoint in tinygradlm and transformers.

The checkpoint is made here, with no download: transformers' ``GPT2LMHeadModel(GPT2Config())``
(124M parameters: vocab 50257, n_positions 1024, n_embd 768, 12 layers, 12 heads) with random
weights (``torch.manual_seed(0)``), float32, written by ``save_pretrained`` into a temporary
directory (removed at the end) or into ``--cache DIR`` (kept, and reused when its config
matches).  Both libraries then read the very same files.

Cases, each measured for tinygradlm and transformers on the same machine, same threads, same run
  1. ``load``: seconds of ``tinygradlm.nn.GPT.from_pretrained(dir)`` against
     ``transformers.GPT2LMHeadModel.from_pretrained(dir)``.  Each load runs in a FRESH
     subprocess (this script re-run with ``--load-worker``), so that neither inherits the
     other's imports or caches; the subprocess imports what its library's loader needs first,
     and only the call itself is timed.  The implementations alternate (tinygradlm,
     transformers, tinygradlm, ...) and the file is read once beforehand, so both find it in
     the page cache.  The workers use the system's malloc (as a user's script does: the
     library never calls ``tune_malloc`` on import), and the same thread count
     (``OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS``).
  2. ``memory``: in the same subprocesses, the resident memory the load added (RSS after the
     load minus RSS before it, from ``/proc/self/statm``); the same once every weight has been
     read (a sum over each parameter): transformers memory-maps ``model.safetensors``, so its
     weights become resident (as file-backed pages) only when first read, which generation
     does; and the peak over the load and that read (``VmHWM`` of ``/proc/self/status``,
     reset through ``/proc/self/clear_refs`` just before the call, minus the RSS before).
     The last two are set against the weights' size on disk (``model.safetensors``); target
     <= 1.2x.  ``resource.getrusage(...).ru_maxrss`` is recorded too, but it cannot be reset
     and on Linux a child starts with its parent's high-water mark, so VmHWM is the one
     compared.  One more subprocess runs tinygradlm's load with timers on the library
     functions it calls, to show where its time and memory go.
  3. ``generate``: tokens/s of cached greedy generation, ``model.generate(ids,
     max_new_tokens=N, do_sample=False)`` in tinygradlm against ``hf.generate(ids,
     attention_mask=ones, max_new_tokens=N, do_sample=False, pad_token_id=eos)`` under
     ``torch.no_grad()``, both models loaded from the same directory in this process, for 1 and
     for 8 sequences with a 16-token prompt (random ids, seed 0).  tokens/s counts new tokens
     (batch x new, the 16-token prefill included in the time).  Then the greedy ids are
     compared: how many leading new tokens of each row agree (float32, so two correct
     implementations may part late where two logits nearly tie; transformers' top-1 - top-2
     logit gap at the first differing step is recorded to show whether that is what happened),
     and the prompt's logits of both (max |difference|).
  4. ``profile``: where tinygradlm's generation time goes: ``cProfile`` over a cached greedy
     generation (B=1 and B=8), by own time and by cumulative time of the model's pieces (the
     LM head, attention, ``KVCache.update``, the Linear layers, ...), plus the LM head alone
     for one new token per row (tinygradlm's ``LMHead``, ``x @ wte.T`` with 50257 columns)
     against ``torch.nn.functional.linear`` on the same weights.

Run from the repository root:

    python benchmarks/bench_pretrained.py [--quick] [--threads N] [--repeats N]
                                          [--new-tokens N] [--cache DIR] [--out PATH]

``--quick`` uses a smaller model (4 layers, n_embd 256, the full 50257 vocabulary) and fewer
tokens and repeats: a smoke run of about 30-50 s.  The full run takes about 2.5 minutes on a
quiet 2-CPU machine (about 9 while other jobs kept both CPUs busy), plus ~10 s to make the
checkpoint when it is not cached.  Results go to ``benchmarks/results/bench_pretrained.json`` (``--out``).  Nothing
here asserts on a time.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# --- the load worker (a fresh subprocess): only what its own library needs is imported -------
def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def proc_status(*keys):
    """Bytes of the given ``/proc/self/status`` fields (VmHWM, RssAnon, RssFile, ...)."""
    out = dict.fromkeys(keys)
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in out:
                out[key] = int(line.split()[1]) * 1024
    return out


def vm_hwm_bytes():
    return proc_status("VmHWM")["VmHWM"]


def reset_vm_hwm():
    """Reset the peak-RSS mark (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


RSS_KINDS = ("RssAnon", "RssFile", "RssShmem")


def load_worker(impl, directory):
    """Load ``directory`` with ``impl`` ("tinygradlm" or "transformers") once; print a JSON
    record of the call's time and memory on the last line of stdout.  After the load every
    weight is read once (a sum over each parameter) and the RSS taken again: a loader that
    memory-maps the file (transformers does) has its pages counted only once they are read,
    as generation will read them."""
    if impl == "tinygradlm":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import safetensors.numpy  # noqa: F401  (what the loader imports on its first call)
        import tinygradlm  # noqa: F401
        from tinygradlm import checkpoint, huggingface, hub  # noqa: F401
        from tinygradlm.nn import GPT

        def load():
            return GPT.from_pretrained(directory)

        def params(m):
            return [t.data for t in m.parameters()]

        def touch(p):
            return float(sum(float(a.sum()) for a in p))
    else:
        import torch
        from transformers import GPT2LMHeadModel
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        torch.set_grad_enabled(False)

        def load():
            return GPT2LMHeadModel.from_pretrained(directory)

        def params(m):
            return list(m.parameters())   # the tied lm_head listed once

        def touch(p):
            return float(sum(float(t.sum()) for t in p))
    import gc
    gc.collect()
    rss0, maxrss0 = rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kinds0 = proc_status(*RSS_KINDS)
    hwm_reset = reset_vm_hwm()
    t0 = time.perf_counter()
    model = load()
    load_s = time.perf_counter() - t0
    rss1, hwm = rss_bytes(), vm_hwm_bytes()
    maxrss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kinds1 = proc_status(*RSS_KINDS)
    p = params(model)
    t0 = time.perf_counter()
    touch(p)
    touch_s = time.perf_counter() - t0
    gc.collect()
    rss2, kinds2, hwm2 = rss_bytes(), proc_status(*RSS_KINDS), vm_hwm_bytes()
    rec = {"impl": impl, "load_s": load_s, "rss_before": rss0, "rss_after": rss1,
           "rss_after_touch": rss2, "touch_s": touch_s,
           "vm_hwm_after": hwm, "vm_hwm_after_touch": hwm2, "vm_hwm_was_reset": hwm_reset,
           "ru_maxrss_before": maxrss0, "ru_maxrss_after": maxrss1,
           "rss_kinds_before": kinds0, "rss_kinds_after": kinds1, "rss_kinds_after_touch": kinds2,
           "parameters": int(sum(n_items(t) for t in p)), "dtype": str(p[0].dtype),
           "parameter_bytes": int(sum(n_bytes(t) for t in p))}
    print(json.dumps(rec))


def n_items(a):
    """Elements of a NumPy array or a torch tensor."""
    return int(a.numel()) if hasattr(a, "numel") else int(a.size)


def n_bytes(a):
    return n_items(a) * (a.element_size() if hasattr(a, "element_size") else a.itemsize)


def stages_worker(directory):
    """Where tinygradlm's load time and memory go: the real ``GPT.from_pretrained(directory)``
    with timers on the library functions it calls (``huggingface.read_weights``,
    ``huggingface.gpt2_weights``, ``GPT.__init__``, ``Module.to``,
    ``checkpoint._load_weights``; wrapped in this subprocess only).  Each segment (a wrapped
    call, or the code between two of them) gets its seconds, the RSS at its end and the peak
    RSS during it (VmHWM, reset at each boundary), in MiB above the RSS before the call."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import gc

    import safetensors.numpy  # noqa: F401
    from tinygradlm import checkpoint, huggingface, hub  # noqa: F401
    from tinygradlm.nn import GPT, module
    gc.collect()
    base = rss_bytes()
    segments, last = [], {"label": "start", "t": 0.0}

    def boundary(label):
        t = time.perf_counter()
        segments.append({"segment": label, "s": t - last["t"],
                         "rss_after_mib": (rss_bytes() - base) / 2 ** 20,
                         "peak_during_mib": (vm_hwm_bytes() - base) / 2 ** 20})
        reset_vm_hwm()
        last["t"] = time.perf_counter()

    def timed(fn, name):
        def wrapper(*args, **kwargs):
            boundary(f"(between) ... before {name}")
            out = fn(*args, **kwargs)
            boundary(name)
            return out
        return wrapper

    patches = [(huggingface, "read_weights", "huggingface.read_weights (safetensors load_file)"),
               (huggingface, "gpt2_weights", "huggingface.gpt2_weights (renames, tied-head "
                                             "check)"),
               (GPT, "__init__", "GPT.__init__ (build the model)"),
               (module.Module, "to", "Module.to (dtype / device)"),
               (checkpoint, "_load_weights", "checkpoint._load_weights (check, copy in)")]
    for owner, attr, name in patches:
        setattr(owner, attr, timed(getattr(owner, attr), name))
    reset_vm_hwm()
    t0 = last["t"] = time.perf_counter()
    model = GPT.from_pretrained(directory)
    boundary("(between) ... to the end of from_pretrained")
    total = time.perf_counter() - t0
    merged = []             # "(between)" segments of a few ms are noise: fold them away
    for seg in segments:
        if seg["segment"].startswith("(between)") and seg["s"] < 0.005 and \
                seg["peak_during_mib"] <= seg["rss_after_mib"] + 1:
            continue
        merged.append(seg)
    print(json.dumps({"total_s": total, "rss_after_mib": (rss_bytes() - base) / 2 ** 20,
                      "segments": merged, "parameters": sum(t.numel() for t in
                                                            model.parameters())}))


if __name__ == "__main__" and sys.argv[1:2] == ["--load-worker"]:
    if sys.argv[2] == "stages":
        stages_worker(sys.argv[3])
    else:
        load_worker(sys.argv[2], sys.argv[3])
    sys.exit(0)


# --- the benchmark ----------------------------------------------------------------------------
import cProfile  # noqa: E402
import pstats  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402


import common  # noqa: E402  (first of the project's: puts the checkout on sys.path)
from common import fresh_heap, print_table, summary, timeit, torch, write_json  # noqa: E402
import numpy as np  # noqa: E402

import tinygradlm as tg  # noqa: E402
from tinygradlm.nn import GPT  # noqa: E402

TG, HF = "tinygradlm", "transformers"
MiB = 2 ** 20
PROMPT_TOKENS = 16
BATCHES = (1, 8)
# GPT2Config()'s defaults are GPT-2 small; quick mode shrinks everything but the vocabulary.
MODELS = {"full": {}, "quick": {"n_positions": 256, "n_embd": 256, "n_layer": 4, "n_head": 4}}
CONFIGS = {
    "full": {"load_repeats": 3, "repeats": 3, "warmup": 1, "new_tokens": 64,
             "profile_new_tokens": 16, "lm_head_repeats": 20},
    "quick": {"load_repeats": 1, "repeats": 2, "warmup": 1, "new_tokens": 8,
              "profile_new_tokens": 4, "lm_head_repeats": 5},
}
TARGETS = {"load_s": 2.0, "memory_x_weights": 1.2, "generate_speed_x_hf": 1.0}


# --- the checkpoint ---------------------------------------------------------------------------
MAKE_CHECKPOINT = """
import sys, json, torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging
logging.disable_progress_bar()
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(**json.loads(sys.argv[1]))).float().eval()
model.save_pretrained(sys.argv[2])
"""


def checkpoint_dir(model_cfg, cache, mode):
    """The directory of the checkpoint: ``cache``'s when it holds one with this config, else
    made there (or in a new temporary directory when ``cache`` is None).  Returns (directory,
    record, temporary root or None)."""
    tmp = None
    if cache:
        directory = os.path.join(os.path.abspath(cache), f"gpt2-random-seed0-{mode}")
    else:
        tmp = tempfile.mkdtemp(prefix="bench_pretrained_")
        directory = os.path.join(tmp, "gpt2")
    rec = {"directory": directory, "made_by": "GPT2LMHeadModel(GPT2Config(**overrides)), "
           "torch.manual_seed(0), float32, save_pretrained", "overrides": model_cfg}
    if have_checkpoint(directory, model_cfg):
        rec["reused"] = True
    else:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", MAKE_CHECKPOINT, json.dumps(model_cfg), directory],
                       check=True, env=worker_env(None))
        rec["reused"], rec["make_s"] = False, time.perf_counter() - t0
    weights = os.path.join(directory, "model.safetensors")
    rec["weights_bytes"] = os.path.getsize(weights)
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    rec["config"] = {k: cfg.get(k) for k in ("vocab_size", "n_positions", "n_embd", "n_layer",
                                             "n_head", "dtype", "torch_dtype")}
    return directory, rec, tmp


def have_checkpoint(directory, model_cfg):
    try:
        with open(os.path.join(directory, "config.json")) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return False
    from transformers import GPT2Config
    want = GPT2Config(**model_cfg)
    return (os.path.isfile(os.path.join(directory, "model.safetensors")) and
            all(cfg.get(k) == getattr(want, k) for k in
                ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")))


# --- case 1 and 2: load time and memory, fresh subprocesses -----------------------------------
def worker_env(threads):
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS"):
            env[var] = str(threads)
    env["TINYGRADLM_SYSTEM_MALLOC"] = "1"
    return env


def run_worker(impl, directory, threads):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--load-worker", impl,
                          directory], capture_output=True, text=True, env=worker_env(threads),
                         cwd=common.ROOT)
    if out.returncode:
        raise RuntimeError(f"the {impl} load worker failed:\n{out.stderr[-3000:]}")
    if out.stderr.strip():
        print(f"({impl} load worker's stderr: {out.stderr.strip()[-300:]})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def case_load(directory, weights_bytes, threads, repeats):
    with open(os.path.join(directory, "model.safetensors"), "rb") as f:   # into the page cache
        while f.read(64 * MiB):
            pass
    runs = {TG: [], HF: []}
    for _ in range(repeats):
        for impl in runs:
            runs[impl].append(run_worker(impl, directory, threads))
    out = {}
    for impl, recs in runs.items():
        def mib(key):
            return stats([(r[key] - r["rss_before"]) / MiB for r in recs])
        out[impl] = {
            "load": summary([r["load_s"] for r in recs]),
            "rss_added_mib": mib("rss_after"),
            "rss_added_after_reading_every_weight_mib": mib("rss_after_touch"),
            "peak_rss_added_during_load_mib": mib("vm_hwm_after"),
            "peak_rss_added_load_and_reading_every_weight_mib": mib("vm_hwm_after_touch"),
            "ru_maxrss_after_minus_rss_before_mib": mib("ru_maxrss_after"),
            "memory_is": "MiB above the RSS before the load call (imports done); peak from "
                         "VmHWM reset just before the call; ru_maxrss cannot be reset",
            "runs": recs,
        }
        for key in ("rss_added_mib", "rss_added_after_reading_every_weight_mib",
                    "peak_rss_added_during_load_mib",
                    "peak_rss_added_load_and_reading_every_weight_mib"):
            out[impl][key.replace("_mib", "_x_weights")] = \
                out[impl][key]["median"] * MiB / weights_bytes
    out["stages"] = run_worker("stages", directory, threads)
    return out


def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


# --- case 3: cached greedy generation ---------------------------------------------------------
def load_models(directory):
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tg_model = GPT.from_pretrained(directory)
    hf_model = GPT2LMHeadModel.from_pretrained(directory).eval()
    return tg_model, hf_model


def prompts(vocab_size, batch):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab_size - 1, size=(max(BATCHES), PROMPT_TOKENS), dtype=np.int64)
    return ids[:batch]          # never the end-of-text id (the last one), so nothing stops early


def hf_generate_fn(hf_model, ids, new_tokens, out, **extra):
    t_ids = torch.from_numpy(ids)
    mask = torch.ones_like(t_ids)
    eos = hf_model.config.eos_token_id

    def run():
        with torch.no_grad():
            out[HF] = hf_model.generate(t_ids, attention_mask=mask, max_new_tokens=new_tokens,
                                        do_sample=False, pad_token_id=eos, **extra)
    return run


def tg_generate_fn(tg_model, ids, new_tokens, out):
    def run():
        out[TG] = tg_model.generate(ids, max_new_tokens=new_tokens, do_sample=False).data
    return run


def leading_agreement(a, b, prompt_len):
    """Per row: how many leading new tokens of ``a`` and ``b`` are equal."""
    n = min(a.shape[1], b.shape[1]) - prompt_len
    rows = []
    for ra, rb in zip(a[:, prompt_len:prompt_len + n], b[:, prompt_len:prompt_len + n]):
        diff = np.nonzero(ra != rb)[0]
        rows.append(int(diff[0]) if len(diff) else int(n))
    return rows


def case_generate(tg_model, hf_model, batch, new_tokens, repeats, warmup):
    ids = prompts(tg_model.config.vocab_size, batch)
    outs = {}
    fns = {TG: tg_generate_fn(tg_model, ids, new_tokens, outs),
           HF: hf_generate_fn(hf_model, ids, new_tokens, outs)}
    times = timeit(fns, repeats, warmup)
    a, b = outs[TG], outs[HF].numpy()
    for impl, t in times.items():
        made = (a if impl == TG else b).shape[1] - PROMPT_TOKENS
        t["new_tokens"] = made
        t["tokens_per_s"] = batch * made / t["median_s"]
        t["tokens_per_s_best"] = batch * made / t["min_s"]
        t["ms_per_token_step"] = 1e3 * t["median_s"] / made
    agree = leading_agreement(a, b, PROMPT_TOKENS)
    # Why they part (if they do): transformers' own top-1 - top-2 gap at that step.
    gaps = None
    if min(agree) < min(a.shape[1], b.shape[1]) - PROMPT_TOKENS:
        scored = {}
        hf_generate_fn(hf_model, ids, new_tokens, scored, output_scores=True,
                       return_dict_in_generate=True)()
        scores = scored[HF].scores          # new_tokens x (B, V)
        gaps = []
        for row, k in enumerate(agree):
            if k < len(scores):
                top2 = torch.topk(scores[k][row].float(), 2).values
                gaps.append(float(top2[0] - top2[1]))
            else:
                gaps.append(None)
    with tg.no_grad():
        tg_logits = tg_model(ids)[0].data
    with torch.no_grad():
        hf_logits = hf_model(torch.from_numpy(ids)).logits.numpy()
    return {"batch": batch, "prompt_tokens": PROMPT_TOKENS, "new_tokens": new_tokens,
            "times": times,
            "speed_x_hf": times[HF]["median_s"] / times[TG]["median_s"],
            "speed_is": "transformers' median seconds / tinygradlm's: above 1 = tinygradlm is "
                        "faster (same tokens produced)",
            "agreement": {"leading_new_tokens_equal_per_row": agree,
                          "min_leading_equal": min(agree),
                          "all_equal": bool(a.shape == b.shape and np.array_equal(a, b)),
                          "hf_top1_top2_gap_at_first_difference": gaps,
                          "prompt_logits_max_abs_diff": float(np.abs(tg_logits - hf_logits)
                                                              .max()),
                          "prompt_logits_max_abs": float(np.abs(hf_logits).max())}}


# --- case 4: where tinygradlm's generation time goes ------------------------------------------
# (label, file suffix, function name): cumulative time of the model's pieces.
PIECES = [
    ("generate(): whole call", "tinygradlm/generate.py", "generate"),
    ("GPT.forward (model)", "tinygradlm/nn/gpt.py", "forward"),
    ("LMHead.forward: x @ wte.T (V=%d columns)", "tinygradlm/nn/gpt.py", "forward:LMHead"),
    ("Transformer.embed", "tinygradlm/nn/gpt.py", "embed"),
    ("TransformerBlock.forward", "tinygradlm/nn/attention.py", "forward:TransformerBlock"),
    ("MultiHeadAttention.forward", "tinygradlm/nn/attention.py", "forward:MultiHeadAttention"),
    ("KVCache.update (cat of the past)", "tinygradlm/nn/attention.py", "update"),
    ("F.scaled_dot_product_attention", "tinygradlm/functional.py",
     "scaled_dot_product_attention"),
    ("MLP.forward", "tinygradlm/nn/attention.py", "forward:MLP"),
    ("Linear.forward (all)", "tinygradlm/nn/layers.py", "forward:Linear"),
    ("LayerNorm.forward", "tinygradlm/nn/layers.py", "forward:LayerNorm"),
    ("generate: next_token (argmax on float64 copy)", "tinygradlm/generate.py", "next_token"),
    ("backend.to_numpy (last logits)", "tinygradlm/backend.py", "to_numpy"),
]


def first_line_of(cls, name):
    fn = getattr(cls, name, None)
    code = getattr(fn, "__code__", None)
    return code.co_firstlineno if code else None


def piece_keys():
    """pstats keys are (file, line, function); methods called ``forward`` are told apart by the
    line they start on."""
    from tinygradlm.nn import attention, gpt, layers
    lines = {"forward:LMHead": first_line_of(gpt.LMHead, "forward"),
             "forward:TransformerBlock": first_line_of(attention.TransformerBlock, "forward"),
             "forward:MultiHeadAttention": first_line_of(attention.MultiHeadAttention,
                                                         "forward"),
             "forward:MLP": first_line_of(attention.MLP, "forward"),
             "forward:Linear": first_line_of(layers.Linear, "forward"),
             "forward:LayerNorm": first_line_of(layers.LayerNorm, "forward"),
             "forward": first_line_of(gpt.GPT, "forward")}
    return lines


def profile_generate(tg_model, batch, new_tokens, top=12):
    ids = prompts(tg_model.config.vocab_size, batch)
    tg_model.generate(ids, max_new_tokens=2, do_sample=False)          # warm
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    tg_model.generate(ids, max_new_tokens=new_tokens, do_sample=False)
    prof.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(prof)
    total = st.total_tt
    lines = piece_keys()
    pieces = []
    for label, suffix, name in PIECES:
        func, _, which = name.partition(":")
        want_line = lines.get(name) if (which or func == "forward") else None
        cc = tt = ct = 0.0
        for (path, line, fname), (pcc, nc, ptt, pct, _) in st.stats.items():
            if fname == func and path.replace(os.sep, "/").endswith(suffix) and \
                    (want_line is None or line == want_line):
                cc, tt, ct = cc + nc, tt + ptt, ct + pct
        if "%d" in label:
            label = label % tg_model.config.vocab_size
        pieces.append({"piece": label, "calls": int(cc), "cumulative_s": ct,
                       "pct_of_profiled": 100 * ct / total if total else None})
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]
    own = [{"function": f"{os.path.relpath(path, common.ROOT) if path.startswith(common.ROOT) else path}"
                        f":{line}({fname})",
            "calls": nc, "own_s": tt, "cumulative_s": ct,
            "pct_own": 100 * tt / total if total else None}
           for (path, line, fname), (cc, nc, tt, ct, _) in rows]
    return {"batch": batch, "new_tokens": new_tokens, "profiled_wall_s": wall,
            "profiled_total_s": total, "pieces": pieces, "top_own_time": own}


def lm_head_alone(tg_model, hf_model, batch, repeats):
    """The LM head alone for ``batch`` rows of one new token, as a cached generation step
    calls it: tinygradlm's ``LMHead`` (``x @ wte.T`` through the op, which folds (B, 1, C) to
    (B, C) for one BLAS call) against torch's ``F.linear`` on the same weights."""
    W = tg_model.lm_head.weight.data                  # (V, C)
    x = np.random.default_rng(0).standard_normal((batch, 1, W.shape[1])).astype(np.float32)
    xt, tx, tw = tg.Tensor(x), torch.from_numpy(x), hf_model.lm_head.weight.detach()

    def ours():
        with tg.no_grad():
            return tg_model.lm_head(xt)

    with torch.no_grad():
        times = timeit({"tinygradlm LMHead": ours,
                        "torch F.linear": lambda: torch.nn.functional.linear(tx, tw)},
                       repeats, 2)
    return {"batch": batch, "shape": f"({batch}, 1, {W.shape[1]}) @ ({W.shape[1]}, {W.shape[0]})",
            "times": times, "bytes_of_weight": int(W.nbytes),
            "ours_over_torch": times["tinygradlm LMHead"]["median_s"] /
            times["torch F.linear"]["median_s"]}


# --- reporting --------------------------------------------------------------------------------
def fmt_range(med, lo, hi, fmt="{:.2f}"):
    return f"{fmt.format(med)} ({fmt.format(lo)}-{fmt.format(hi)})"


def verdict(ok):
    return "met" if ok else "MISSED"


def print_summary(load, gen, ckpt):
    wb = ckpt["weights_bytes"]
    rows = []
    lt, lh = load[TG]["load"], load[HF]["load"]
    rows.append(["load s: median (min-max)", fmt_range(lt["median_s"], lt["min_s"], lt["max_s"]),
                 fmt_range(lh["median_s"], lh["min_s"], lh["max_s"]),
                 f"{lt['median_s'] / lh['median_s']:.2f}x time",
                 f"<= {TARGETS['load_s']:.0f} s: {verdict(lt['median_s'] <= TARGETS['load_s'])}"])
    for key, label, target in (
            ("rss_added_mib", "RSS added by load, MiB", False),
            ("rss_added_after_reading_every_weight_mib", "RSS added, once every weight is read, "
             "MiB", True),
            ("peak_rss_added_load_and_reading_every_weight_mib",
             "peak RSS (load, then every weight read) - before, MiB", True)):
        a, b = load[TG][key], load[HF][key]
        xw = a["median"] * MiB / wb
        rows.append([label, f"{a['median']:.0f} ({xw:.2f}x weights)",
                     f"{b['median']:.0f} ({b['median'] * MiB / wb:.2f}x weights)",
                     f"{a['median'] / b['median']:.2f}x memory" if b["median"] > 0 else "-",
                     f"<= {TARGETS['memory_x_weights']}x weights: "
                     f"{verdict(xw <= TARGETS['memory_x_weights'])}" if target else "-"])
    for g in gen:
        t, h = g["times"][TG], g["times"][HF]
        rows.append([f"generate tokens/s, B={g['batch']} ({g['prompt_tokens']}+"
                     f"{g['new_tokens']} tokens): median (best)",
                     f"{t['tokens_per_s']:.1f} ({t['tokens_per_s_best']:.1f})",
                     f"{h['tokens_per_s']:.1f} ({h['tokens_per_s_best']:.1f})",
                     f"{g['speed_x_hf']:.2f}x speed",
                     f">= {TARGETS['generate_speed_x_hf']:.1f}x: "
                     f"{verdict(g['speed_x_hf'] >= TARGETS['generate_speed_x_hf'])}"])
    print(f"\nweights on disk (model.safetensors): {wb / MiB:.1f} MiB; config {ckpt['config']}")
    print_table(["case", TG, HF, "ratio (tinygradlm / transformers)", "target"], rows, "lrrrl")
    print("\ngenerate: median seconds per call (min-max) and ms per token step")
    for g in gen:
        print(f"  B={g['batch']}: " + "; ".join(
            f"{impl} {fmt_range(t['median_s'], t['min_s'], t['max_s'])} s, "
            f"{t['ms_per_token_step']:.1f} ms/step" for impl, t in g["times"].items()))
    print("\ngreedy ids, tinygradlm vs transformers (same weights, float32):")
    for g in gen:
        ag = g["agreement"]
        gaps = ag["hf_top1_top2_gap_at_first_difference"]
        print(f"  B={g['batch']}: leading new tokens equal per row "
              f"{ag['leading_new_tokens_equal_per_row']} of {g['times'][TG]['new_tokens']}; "
              f"prompt logits max |diff| {ag['prompt_logits_max_abs_diff']:.2e} (max |logit| "
              f"{ag['prompt_logits_max_abs']:.2f})" +
              (f"; transformers' top-1 - top-2 logit gap where they part: "
               f"{[None if x is None else float(f'{x:.2e}') for x in gaps]}" if gaps else ""))


def print_stages(stages):
    print(f"\nwhere tinygradlm's load goes: GPT.from_pretrained with timers on the library "
          f"functions it calls ({stages['total_s']:.2f} s; MiB above the RSS before the call; "
          f"mmap'd file pages count while mapped)")
    print_table(["segment", "s", "RSS at its end, MiB", "peak during, MiB"],
                [[r["segment"], f"{r['s']:.2f}", f"{r['rss_after_mib']:.0f}",
                  f"{r['peak_during_mib']:.0f}"] for r in stages["segments"]], "lrrr")


def print_profile(p, top=10):
    print(f"\nwhere tinygradlm's generation goes (cProfile, B={p['batch']}, {p['new_tokens']} new "
          f"tokens after a {PROMPT_TOKENS}-token prompt: {p['profiled_wall_s']:.2f} s profiled)")
    print_table(["piece (cumulative)", "s", "% of call", "calls"],
                [[r["piece"], f"{r['cumulative_s']:.3f}", f"{r['pct_of_profiled']:.1f}%",
                  r["calls"]] for r in p["pieces"] if r["calls"]], "lrrr")
    print_table(["function (own time)", "s", "% of call", "calls"],
                [[r["function"], f"{r['own_s']:.3f}", f"{r['pct_own']:.1f}%", r["calls"]]
                 for r in p["top_own_time"][:top]], "lrrr")


def main(argv=None):
    parser = common.bench_parser(__doc__, "bench_pretrained",
                                 "a smaller model, fewer tokens and repeats (under a minute)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed generate() calls per case and load subprocesses per "
                             "library (default: 3, --quick: 2 and 1)")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help="new tokens per generate() call (default 64, --quick 8)")
    parser.add_argument("--cache", default=None,
                        help="keep the random checkpoint in this directory and reuse it "
                             "(default: a temporary directory, removed at the end)")
    args = parser.parse_args(argv)
    if torch is None:
        parser.error("this benchmark compares against transformers: install torch and "
                     "transformers")
    mode = "quick" if args.quick else "full"
    cfg = dict(CONFIGS[mode])
    if args.repeats:
        cfg["repeats"] = cfg["load_repeats"] = args.repeats
    if args.new_tokens:
        cfg["new_tokens"] = args.new_tokens
        cfg["profile_new_tokens"] = min(cfg["profile_new_tokens"], args.new_tokens)
    t_start = time.perf_counter()
    env = common.start_bench(args)
    threads = env["numpy_blas_threads"]
    import transformers
    env["transformers"] = transformers.__version__

    directory, ckpt, tmp = checkpoint_dir(MODELS[mode], args.cache, mode)
    try:
        print(f"checkpoint: {directory} ({'reused' if ckpt['reused'] else 'made in %.1f s' % ckpt['make_s']})"
              f"; load: {cfg['load_repeats']} fresh subprocesses per library ({threads} threads)"
              f"; generate: {cfg['repeats']} timed calls, {cfg['new_tokens']} new tokens")
        fresh_heap()
        load = case_load(directory, ckpt["weights_bytes"], threads, cfg["load_repeats"])

        tg_model, hf_model = load_models(directory)
        fresh_heap()
        gen = []
        for batch in BATCHES:
            gen.append(case_generate(tg_model, hf_model, batch, cfg["new_tokens"],
                                     cfg["repeats"], cfg["warmup"]))
            fresh_heap()
        print_summary(load, gen, ckpt)
        print_stages(load["stages"])

        profiles = [profile_generate(tg_model, b, cfg["profile_new_tokens"]) for b in BATCHES]
        for p in profiles:
            print_profile(p)
        heads = [lm_head_alone(tg_model, hf_model, b, cfg["lm_head_repeats"]) for b in BATCHES]
        print("\nthe LM head alone, one new token per row (same weights, same threads): "
              "median ms (min-max)")
        print_table(["rows", "tinygradlm LMHead", "torch F.linear", "time ratio"],
                    [[h["batch"]] + [fmt_range(*(1e3 * h["times"][k][q] for q in
                                                 ("median_s", "min_s", "max_s")))
                                     for k in ("tinygradlm LMHead", "torch F.linear")] +
                     [f"{h['ours_over_torch']:.2f}x"] for h in heads], "rrrr")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    result = {**common.result_header("bench_pretrained", mode, env),
              "wall_s": time.perf_counter() - t_start,
              "config": {"model": ckpt, "timing": cfg, "prompt_tokens": PROMPT_TOKENS,
                         "batches": list(BATCHES), "targets": TARGETS,
                         "load_workers": "fresh subprocess each; system malloc "
                                         "(TINYGRADLM_SYSTEM_MALLOC=1); imports excluded"},
              "load": load, "generate": gen, "profile": profiles, "lm_head_alone": heads}
    write_json(args.out, result)
    print(f"total {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
